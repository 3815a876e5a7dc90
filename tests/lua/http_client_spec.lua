-- luring.http.request{url=, method=, headers=, body=, timeout=, keepalive=}:
-- the HTTP client of issue 15 point 3, against the real binary, a real
-- nginx (tests/lua/origin.lua) and an origin that sends exact bytes
-- (tests/lua/raw_origin.py). Each test names the RFC section it checks.
local helper = require "helper"
local origin = require "origin"
local raw_origin = require "raw_origin"
local socket = require "socket"

local LOCATIONS = [[
    location /echo/ {
      client_body_buffer_size 4m;
      client_max_body_size 8m;
      echo_read_request_body;
      echo "method=$request_method";
      echo "uri=$request_uri";
      echo "host=$http_host";
      echo "custom=$http_x_custom";
      echo "multi=$http_x_multi";
      echo "conn=$http_connection";
      echo "cl=$http_content_length";
      echo "ua=$http_user_agent";
      echo "cid=$connection";
      echo -n "body=";
      echo_request_body;
    }
    location /files/ { }
    location /chunks/ { echo "one"; echo_flush; echo_sleep 0.2; echo "two"; echo_flush; echo_sleep 0.2; echo "three"; }
    location /cookies/ {
      add_header Set-Cookie "a=1; Path=/";
      add_header Set-Cookie "b=2; Path=/";
      add_header X-Twice one;
      add_header X-Twice two;
      return 200 "cookies\n";
    }
    location /nothing/ { return 204; }
    location /slow/ { echo_sleep 3; echo "late"; }
    location /slowbody/ { echo "first"; echo_flush; echo_sleep 3; echo "late"; }
]]

local RAW = {
  -- RFC 9112 §6.3: read until the connection closes
  close = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end{close}",
  -- RFC 9112 §7.1: chunked, with an extension and a trailer
  chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            .. "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
  -- RFC 9112 §6.3: two different Content-Length values
  twocl = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
  -- RFC 9112 §7.1: a chunk size that is not hex
  badchunk = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
  -- RFC 9112 §6.3: more bytes than Content-Length announced
  overlong = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA BYTES",
  -- RFC 9112 §6.3: fewer bytes than Content-Length, then the close
  short = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..{close}",
  -- RFC 9112 §4: not a status line
  garbage = "HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok",
  -- RFC 9110 §15.3.5: a 204 ends at its head, whatever it says
  nocontent = "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
  -- RFC 9110 §15.4.5: so does a 304
  notmod = "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nContent-Length: 5\r\n\r\n",
  -- RFC 9110 §15.2: an interim response, then the final one
  interim = "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            .. "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
}

local BIG = 64 * 1024 * 1024

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local ORIGIN, RAW, DOWN = "@ORIGIN@", "@RAW@", "@DOWN@"
local http = luring.http
-- a declared origin at nginx's address: luring.http uses its pool
local declared = luring.origin{ name = "declared", url = ORIGIN }

local ok, err = pcall(http.request, { url = ORIGIN .. "/echo/x" })
MAIN_ERR = err

local function dump(res, body)
  local names = {}
  for k in pairs(res.headers) do names[#names + 1] = k end
  table.sort(names)
  local out = { "status=" .. res.status }
  for _, k in ipairs(names) do
    local v = res.headers[k]
    if type(v) == "table" then v = "[" .. table.concat(v, "|") .. "]" end
    out[#out + 1] = k .. "=" .. v
  end
  return table.concat(out, "\n") .. "\n--\n" .. (body or "")
end

local function show(res, err)
  if not res then return 200, nil, "err=" .. tostring(err) .. "\n" end
  local body, e = res:read_body()
  return 200, nil, dump(res, body) .. (e and ("\nerr=" .. e) or "")
end

app:get("/main_err", function() return 200, nil, tostring(MAIN_ERR) .. "\n" end)

-- GET ORIGIN/echo/<rest> with the script's fields
app:get("/get/*", function(req)
  return show(http.request{ url = ORIGIN .. "/echo/" .. req.params["*"] .. "?q=1#frag",
    headers = { ["X-Custom"] = "c v", ["X-Multi"] = { "m1", "m2" } } })
end)

app:post("/post", function(req)
  return show(http.request{ url = ORIGIN .. "/echo/post", method = "POST",
                            body = req:body(), headers = { ["User-Agent"] = "mine" } })
end)

app:get("/url", function(req)
  return show(http.request{ url = req:header("X-Url") })
end)

app:get("/cookies", function(req) return show(http.request{ url = ORIGIN .. "/cookies/x" }) end)
app:get("/chunks", function(req)
  local res = assert(http.request{ url = ORIGIN .. "/chunks/x" })
  local pieces = {}
  for piece in res.body_reader do pieces[#pieces + 1] = piece end
  return 200, nil, table.concat(pieces, "|")
end)
app:get("/head", function(req)
  local res = assert(http.request{ url = ORIGIN .. "/files/small.txt", method = "HEAD" })
  local b, e = res:read()
  return 200, nil, ("status=%d cl=%s body=%s err=%s\n"):format(res.status,
    tostring(res.headers["Content-Length"]), tostring(b), tostring(e))
end)
app:get("/nothing", function(req) return show(http.request{ url = ORIGIN .. "/nothing/x" }) end)

app:get("/raw/:name", function(req)
  local res, err = http.request{ url = RAW .. "/" .. req.params.name, timeout = 2 }
  return show(res, err)
end)
app:get("/rawkeep/:name", function(req)
  -- two requests one after the other: was the connection reused?
  local a = assert(http.request{ url = RAW .. "/" .. req.params.name })
  local ab = a:read_body()
  local b = assert(http.request{ url = RAW .. "/" .. req.params.name })
  local bb = b:read_body()
  return 200, nil, ab .. "|" .. bb .. "\n"
end)

-- 64 MiB in pieces as they come; the first piece before the rest is sent
app:get("/big", function(req)
  local res = assert(http.request{ url = ORIGIN .. "/files/big.bin" })
  local first = assert(res:read())
  luring.sleep(1000) -- the origin is paused meanwhile
  local n, pieces, max, sum, off = #first, 1, #first, 0, 0
  local function add(p) -- a byte every 4099 of the body, wherever pieces end
    for i = (4099 - off % 4099) % 4099 + 1, #p, 4099 do
      sum = (sum + p:byte(i)) % 1000000007
    end
    off = off + #p
  end
  add(first)
  while true do
    local piece, e = res:read()
    if not piece then assert(not e, e) break end
    n, pieces = n + #piece, pieces + 1
    if #piece > max then max = #piece end
    add(piece)
  end
  return 200, nil, ("n=%d\npieces=%d\nmax=%d\nsum=%d\n"):format(n, pieces, max, sum)
end)

app:get("/sized", function(req)
  local res = assert(http.request{ url = ORIGIN .. "/files/small.txt" })
  local out = {}
  while true do
    local p, e = res.body_reader(5)
    if not p then break end
    out[#out + 1] = p
  end
  return 200, nil, table.concat(out, "|") .. "\n"
end)

app:get("/toolarge", function(req)
  local res = assert(http.request{ url = ORIGIN .. "/files/big.bin" })
  local body, err = res:read_body(100000)
  return 200, nil, tostring(body) .. " " .. tostring(err) .. "\n"
end)

-- keep-alive: the nginx connection number of n requests in a row
app:get("/cids", function(req)
  local keep = req.query ~= "close"
  local ids = {}
  for i = 1, 3 do
    local res = assert(http.request{ url = ORIGIN .. "/echo/k" .. i, keepalive = keep })
    ids[#ids + 1] = res:read_body():match("cid=(%d+)")
  end
  return 200, nil, table.concat(ids, " ") .. "\n"
end)
-- an abandoned body: the connection is not reused
app:get("/abandon", function(req)
  local res = assert(http.request{ url = ORIGIN .. "/files/big.bin" })
  assert(res:read())
  res:close()
  local p, e = res:read()
  local res2 = assert(http.request{ url = ORIGIN .. "/echo/after" })
  return 200, nil, tostring(p) .. " " .. tostring(e) .. " " .. res2:read_body():match("cid=(%d+)") .. "\n"
end)

app:get("/timeout/:what", function(req)
  local t0 = luring.now()
  local res, err, body
  if req.params.what == "head" then
    res, err = http.request{ url = ORIGIN .. "/slow/x", timeout = 0.3 }
  else
    res = assert(http.request{ url = ORIGIN .. "/slowbody/x", timeout = 0.3 })
    body, err = res:read_body()
  end
  return 200, nil, ("%s %s %d\n"):format(tostring(res and body), tostring(err),
    math.floor(luring.now() - t0))
end)

app:get("/declared", function(req)
  local s0 = declared:stats()
  for i = 1, 2 do
    assert(http.request{ url = ORIGIN .. "/echo/d" .. i }):read_body()
  end
  local s1 = declared:stats()
  return 200, nil, ("requests=%d reused=%d\n"):format(s1.requests - s0.requests,
                                                      s1.reused - s0.reused)
end)

-- holds a response open (read in part) while it sleeps
app:get("/hold", function(req)
  local res = assert(http.request{ url = ORIGIN .. "/files/big.bin" })
  assert(res:read())
  luring.sleep(10000)
  return 200, nil, "not reached\n"
end)

app:get("/derrors", function(req) return 200, nil, declared:stats().errors .. "\n" end)

-- the client leaves while this waits for the head
app:get("/leave", function(req)
  http.request{ url = ORIGIN .. "/slow/leave" }
  return 200, nil, "not reached\n"
end)

-- many addresses, none listening: pools made and let go past 256
app:get("/many", function(req)
  local port, n, refused = tonumber(req.query), 0, 0
  for a = 1, 300 do
    local res, err = http.request{ url = ("http://127.0.%d.%d:%d/x"):format(math.floor(a / 250), a % 250 + 2, port) }
    n = n + 1
    if err == "connection refused" then refused = refused + 1 end
  end
  return 200, nil, n .. " " .. refused .. "\n"
end)

app:get("/refused", function(req) return show(http.request{ url = DOWN .. "/x" }) end)

app:get("/ping", function(req) return 200, nil, "pong\n" end)
app:get("/metrics", luring.metrics())

-- a request made by a timer's function
app:get("/timer", function(req)
  TIMER_RESULT = nil
  luring.timer.at(0, function(premature)
    local res, err = http.request{ url = ORIGIN .. "/echo/timer" }
    if not res then TIMER_RESULT = "err " .. err return end
    TIMER_RESULT = res.status .. " " .. res:read_body():match("uri=([^\n]*)")
  end)
  for _ = 1, 100 do
    if TIMER_RESULT then break end
    luring.sleep(50)
  end
  return 200, nil, tostring(TIMER_RESULT) .. "\n"
end)

-- two responses open at once, read in turns, each on its connection
app:get("/two", function(req)
  local a = assert(http.request{ url = ORIGIN .. "/files/big.bin" })
  local b = assert(http.request{ url = ORIGIN .. "/files/big.bin" })
  local na, nb, turns = 0, 0, 0
  while true do
    local pa = a:read()
    local pb = b:read()
    if not pa and not pb then break end
    na, nb, turns = na + #(pa or ""), nb + #(pb or ""), turns + 1
  end
  return 200, nil, ("%d %d %s\n"):format(na, nb, tostring(turns > 100))
end)

local BAD = {
  name = { url = ORIGIN .. "/echo/x", headers = { ["bad name"] = "v" } },
  crlf = { url = ORIGIN .. "/echo/x", headers = { ["X-A"] = "v\r\nX-Injected: 1" } },
  method = { url = ORIGIN .. "/echo/x", method = "GE T" },
  field = { url = ORIGIN .. "/echo/x", header = {} },
  body = { url = ORIGIN .. "/echo/x", body = {} },
  nourl = { method = "GET" },
  timeout = { url = ORIGIN .. "/echo/x", timeout = -1 },
}
app:get("/bad/:what", function(req)
  local ok, err = pcall(http.request, BAD[req.params.what])
  return 200, nil, tostring(ok) .. " " .. tostring(err) .. "\n"
end)
app:get("/coroutine", function(req)
  local co = coroutine.create(function() return http.request{ url = ORIGIN .. "/echo/x" } end)
  local ok, err = coroutine.resume(co)
  return 200, nil, tostring(ok) .. " " .. tostring(err) .. "\n"
end)
]]

local ngx, raw, srv

local function get(path, headers)
  local c = helper.connect(srv:port(), 60)
  c:write(helper.request("GET", path, headers))
  local res = c:response{ timeout = 60 }
  c:close()
  return res
end

local function kv(text)
  local t = {}
  for k, v in text:gmatch("([%w%-]+)=([^\n]*)") do
    if t[k] == nil then t[k] = v end
  end
  return t
end

local function status_kb(pid, field)
  local s = helper.readfile("/proc/" .. math.floor(pid) .. "/status") or ""
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

describe("luring.http.request", function()
  setup(function()
    ngx = origin.start{ locations = LOCATIONS, files = {
      ["files/big.bin"] = helper.payload(BIG, "big"),
      ["files/small.txt"] = "twelve bytes",
    } }
    raw = raw_origin.start{ responses = RAW, delay = 0 }
    local script = SCRIPT:gsub("@ORIGIN@", ngx:url()):gsub("@RAW@", raw:url())
      :gsub("@DOWN@", "http://127.0.0.1:" .. helper.free_port())
    srv = helper.start(script)
  end)

  teardown(function()
    helper.stop_all()
    raw_origin.stop_all()
    origin.stop_all()
  end)

  it("sends a GET with the URL's path and query, Host from its authority and the script's fields (RFC 9110 §7.2, §5.3; RFC 9112 §3.2.1)", function()
    local res = get("/get/a")
    assert.are.equal(200, res.status)
    local head, body = res.body:match("^(.-)%-%-\n(.*)$")
    local h, e = kv(head), kv(body)
    assert.are.equal("200", h.status)
    assert.are.equal("GET", e.method)
    assert.are.equal("/echo/a?q=1", e.uri) -- the fragment is not sent
    assert.are.equal(ngx:url():match("//(.*)$"), e.host)
    assert.are.equal("c v", e.custom)
    assert.are.equal("m1", e.multi)
    assert.are.equal("luring", e.ua)
    assert.are.equal("", e.conn) -- keep-alive is HTTP/1.1's default
  end)

  it("sends a POST body with Content-Length (RFC 9110 §8.6, RFC 9112 §6.2)", function()
    local c = helper.connect(srv:port(), 30)
    c:write(helper.request("POST", "/post", { ["Content-Length"] = "11" }, "hello world"))
    local res = c:response{ timeout = 30 }
    c:close()
    local e = kv(res.body:match("%-%-\n(.*)$"))
    assert.are.equal("POST", e.method)
    assert.are.equal("11", e.cl)
    assert.are.equal("hello world", e.body)
    assert.are.equal("mine", e.ua)
  end)

  it("returns headers lowercased, repeated ones joined, Set-Cookie as a list (RFC 9110 §5.3, RFC 6265 §3)", function()
    local h = kv(get("/cookies").body)
    assert.are.equal("200", h.status)
    assert.are.equal("[a=1; Path=/|b=2; Path=/]", h["set-cookie"])
    assert.are.equal("one, two", h["x-twice"])
    assert.are.equal("8", h["content-length"])
  end)

  it("reads a chunked body as its chunks arrive (RFC 9112 §7.1)", function()
    -- three reads: each chunk came 200 ms after the previous one
    assert.are.equal("one\n|two\n|three\n", get("/chunks").body)
    local res = get("/raw/chunked")
    assert.matches("%-%-\nhello world$", res.body)
  end)

  it("reads a body delimited by the connection's close (RFC 9112 §6.3 item 8)", function()
    assert.matches("%-%-\nuntil the end$", get("/raw/close").body)
  end)

  it("ends a HEAD, 204 and interim responses at their head (RFC 9110 §9.3.2, §15.3.5, §15.2)", function()
    assert.are.equal("status=200 cl=12 body=nil err=nil\n", get("/head").body)
    assert.matches("^status=204\n.*%-%-\n$", get("/nothing").body)
    assert.matches("^status=204\n.*%-%-\n$", get("/raw/nocontent").body)
    local nm = get("/raw/notmod").body
    assert.matches("^status=304\n", nm)
    assert.matches("%-%-\n$", nm)
    local r = get("/raw/interim").body
    assert.matches("^status=200\n", r)
    assert.matches("%-%-\nfinal$", r)
    assert.is_nil(r:match("link="))
  end)

  it("streams 64 MiB piece by piece with bounded memory (RFC 9112 §6.3)", function()
    local pid = srv:pid()
    local before = status_kb(pid, "VmRSS")
    local res = get("/big")
    local peak = status_kb(pid, "VmHWM")
    local t = kv(res.body)
    assert.are.equal(tostring(BIG), t.n)
    assert(tonumber(t.max) <= 64 * 1024, "a piece larger than a chunk: " .. t.max)
    assert(tonumber(t.pieces) >= BIG / (64 * 1024), "pieces: " .. t.pieces)
    local want, sum = helper.payload(BIG, "big"), 0
    for i = 1, #want, 4099 do sum = (sum + want:byte(i)) % 1000000007 end
    -- the sum samples one byte per 4099 over the pieces as the script saw them
    assert.are.equal(tostring(sum), t.sum)
    -- never the whole body in memory: the peak stays far below 64 MiB more
    if os.getenv("HTTP_SPEC_RSS") then print(("\npeak RSS grew by %d KiB"):format(peak - before)) end
    assert(helper.sanitized() or peak - before < 24 * 1024,
           ("peak RSS grew by %d KiB"):format(peak - before))
  end)

  it("reads pieces of a given size, and bounds read_body", function()
    assert.are.equal("twelv|e byt|es\n", get("/sized").body)
    assert.matches("^nil body too large %(more than 100000 bytes%)\n$", get("/toolarge").body)
  end)

  it("reuses a kept-alive connection, and not with keepalive = false (RFC 9112 §9.3)", function()
    local ids = {}
    for id in get("/cids").body:gmatch("%d+") do ids[#ids + 1] = id end
    assert.are.equal(3, #ids)
    assert.are.equal(ids[1], ids[2])
    assert.are.equal(ids[2], ids[3])
    local cl = {}
    for id in get("/cids?close").body:gmatch("%d+") do cl[#cl + 1] = id end
    assert.are.equal(3, #cl)
    assert.are_not.equal(cl[1], cl[2])
    assert.are_not.equal(cl[2], cl[3])
  end)

  it("keeps its pools across a reload (SIGHUP)", function()
    local ids = {}
    for id in get("/cids").body:gmatch("%d+") do ids[#ids + 1] = id end
    local n = select(2, srv:stderr():gsub("reloaded", ""))
    os.execute("kill -HUP " .. srv:pid())
    assert(helper.wait_until(function()
      return select(2, srv:stderr():gsub("reloaded", "")) > n
    end, 5), srv:stderr())
    local after = get("/cids").body:match("^(%d+)")
    assert.are.equal(ids[3], after) -- the pooled connection, taken again
  end)

  it("closes the connection of an abandoned body (RFC 9112 §9.6)", function()
    local before = #ngx:log_entries()
    local r = get("/abandon").body
    local p, e, cid = r:match("^(%S+) (%S+) (%d+)\n$")
    assert.are.equal("nil", p)
    assert.are.equal("closed", e)
    -- the next request came on another connection than the big one's
    helper.wait_until(function() return #ngx:log_entries() >= before + 2 end, 5)
    local entries = ngx:log_entries()
    local big
    for i = before + 1, #entries do
      if entries[i].uri == "/files/big.bin" then big = entries[i].conn end
    end
    assert.is_not_nil(big)
    assert.are_not.equal(tostring(big), cid)
  end)

  it("fails with timeout when the head or the body is late, without blocking the worker", function()
    local c = helper.connect(srv:port(), 30)
    c:write(helper.request("GET", "/timeout/head"))
    local t0 = socket.gettime()
    assert.are.equal("pong\n", get("/ping").body) -- served meanwhile
    assert(socket.gettime() - t0 < 0.25, "the worker blocked")
    local r = c:response{ timeout = 30 }.body
    c:close()
    local body, err, ms = r:match("^(%S+) (%S+) (%d+)\n$")
    assert.are.equal("timeout", err)
    assert(tonumber(ms) >= 250 and tonumber(ms) < 1500, "after " .. ms .. " ms")
    body, err, ms = get("/timeout/body").body:match("^(%S+) (%S+) (%d+)\n$")
    assert.are.equal("nil", body)
    assert.are.equal("timeout", err)
    assert(tonumber(ms) >= 250 and tonumber(ms) < 1500, "after " .. ms .. " ms")
  end)

  it("closes the origin connection when its client leaves during the wait", function()
    local errors = tonumber(get("/derrors").body)
    local c = helper.connect(srv:port(), 5)
    c:write(helper.request("GET", "/leave"))
    socket.sleep(0.3)
    c:abort() -- a reset: gone (a FIN alone is a half-close, RFC 9112 §9.6)
    -- the request failed at once (the head comes after 3 s), its
    -- connection closed: counted in the errors of the origin whose pool
    -- it used
    assert(helper.wait_until(function()
      return tonumber(get("/derrors").body) > errors
    end, 2), "the abandoned request went on")
    assert.are.equal("pong\n", get("/ping").body)
  end)

  it("serves 64 concurrent handlers that each make a request", function()
    local results = helper.burst(srv:port(), 64, "/get/burst", 30)
    for i, r in ipairs(results) do
      assert.is_nil(r.err, "client " .. i .. ": " .. tostring(r.err))
      assert.matches("uri=/echo/burst%?q=1", r.body)
    end
  end)

  it("makes room for new addresses past 256 per worker", function()
    assert.are.equal("300 300\n", get("/many?" .. helper.free_port()).body)
  end)

  it("fails with connection refused", function()
    assert.are.equal("err=connection refused\n", get("/refused").body)
  end)

  it("rejects malformed responses with a reason (RFC 9112 §6.3, §7.1, §4)", function()
    assert.are.equal("err=Content-Length repeated\n", get("/raw/twocl").body)
    local bad = get("/raw/badchunk").body
    assert.matches("^status=200\n", bad) -- the head was valid
    assert.matches("\nerr=invalid chunked body$", bad)
    assert.matches("^err=", get("/raw/garbage").body)
    local short = get("/raw/short").body
    assert.matches("\nerr=connection closed before the response ended$", short)
  end)

  it("takes no more than Content-Length and drops the connection (RFC 9112 §6.3)", function()
    local before = raw:connections()
    assert.matches("%-%-\nok$", get("/raw/overlong").body)
    assert.are.equal("ok|ok\n", get("/rawkeep/overlong").body)
    -- one connection per response: none was reused after the extra bytes
    assert.are.equal(before + 3, raw:connections())
  end)

  it("reuses the connection to the raw origin otherwise (RFC 9112 §9.3), counted in /metrics", function()
    local function reused()
      local m = get("/metrics").body
      local name = 'luring_origin_connections_reused_total{origin="' .. raw:url() .. '"}'
      local i = m:find(name, 1, true)
      return i and tonumber(m:match("^ (%d+)", i + #name)) or 0
    end
    local r0 = reused()
    local before = raw:connections()
    assert.are.equal("hello world|hello world\n", get("/rawkeep/chunked").body)
    assert.are.equal(before + 1, raw:connections())
    assert.are.equal(r0 + 1, reused())
  end)

  it("uses the pool of a declared origin with the URL's address", function()
    local r = get("/declared").body
    assert.are.equal("2", r:match("requests=(%d+)"))
    assert(tonumber(r:match("reused=(%d+)")) >= 1, r) -- the second at least
  end)

  it("looks up a host name without blocking: localhost (RFC 9110 §4.2.1)", function()
    local url = "http://localhost:" .. ngx:port() .. "/echo/byname"
    local e = kv(get("/url", { ["X-Url"] = url }).body:match("%-%-\n(.*)$"))
    assert.are.equal("/echo/byname", e.uri)
    assert.are.equal("localhost:" .. ngx:port(), e.host)
  end)

  it("says when a name does not resolve", function()
    local r = get("/url", { ["X-Url"] = "http://no-such-host.invalid/x" }).body
    assert.matches("^err=no%-such%-host%.invalid could not be resolved %(", r)
  end)

  it("refuses https and malformed URLs with nil, err (RFC 9110 §4.2)", function()
    local function url(u) return get("/url", { ["X-Url"] = u }).body end
    assert.are.equal("err=https is not supported\n", url("https://example.com/"))
    assert.matches("^err=bad url", url("ftp://example.com/"))
    assert.matches("^err=bad url", url("example.com/x"))
    assert.matches("^err=bad url", url("http://user:pw@127.0.0.1/x"))
    assert.matches("^err=bad url", url("http://127.0.0.1:99999/x"))
    assert.matches("^err=bad url", url("http:///x"))
    assert.matches("^err=bad url", url("http://127.0.0.1/a b"))
    -- no path: "/" (RFC 9112 §3.2.1)
    local before = raw:count("/")
    assert.matches("^status=404", url(raw:url() .. "?only=query"))
    assert.are.equal(before + 1, raw:count("/"))
  end)

  it("works from a timer", function()
    assert.are.equal("200 /echo/timer\n", get("/timer").body)
  end)

  it("keeps two responses open at once in one handler, each on its own connection", function()
    assert.are.equal(("%d %d true\n"):format(BIG, BIG), get("/two").body)
  end)

  it("raises on misuse, outside handlers and timers included", function()
    assert.matches("only inside a request handler or a timer", get("/main_err").body)
    assert.matches("^false .*invalid header name 'bad name'", get("/bad/name").body)
    assert.matches("^false .*control character", get("/bad/crlf").body)
    assert.matches("^false .*invalid method", get("/bad/method").body)
    assert.matches("^false .*unknown field 'header'", get("/bad/field").body)
    assert.matches("^false .*body must be a string", get("/bad/body").body)
    assert.matches("^false .*url must be a string", get("/bad/nourl").body)
    assert.matches("^false .*timeout must be seconds", get("/bad/timeout").body)
    assert.matches("^false .*only inside a request handler", get("/coroutine").body)
  end)

  it("has not crashed, and stops at once with a response open", function()
    assert.is_true(srv:alive())
    assert.is_nil(helper.crash_report(srv:stderr()))
    local c = helper.connect(srv:port(), 5)
    c:write(helper.request("GET", "/hold"))
    socket.sleep(0.5)
    local rc, killed = srv:stop("INT")
    c:close()
    assert.is_nil(helper.crash_report(srv:stderr()))
    assert.are.equal(0, rc)
    assert.is_falsy(killed)
  end)
end)
