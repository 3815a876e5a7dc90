-- origin:request{method=, path=, headers=, body=}: a streaming origin
-- request made by a handler (issue 11, point 7). The origin is a real nginx
-- that echoes what it received, plus a raw origin (tests/lua/raw_origin.py)
-- for exact response bytes. Each test names the RFC section it checks.
local helper = require "helper"
local origin = require "origin"
local raw_origin = require "raw_origin"
local socket = require "socket"

local ECHO = [[
      client_body_buffer_size 4m;
      client_max_body_size 8m;
      echo_read_request_body;
      echo "method=$request_method";
      echo "uri=$request_uri";
      echo "host=$http_host";
      echo "custom=$http_x_custom";
      echo "multi=$http_x_multi";
      echo "te=$http_te";
      echo "conn=$http_connection";
      echo "tenc=$http_transfer_encoding";
      echo "cl=$http_content_length";
      echo "ua=$http_user_agent";
      echo -n "body=";
      echo_request_body;
]]

local LOCATIONS = [[
    location /echo/ {
]] .. ECHO .. [[
    }
    location /files/ { }
    location /rawhead/ { echo -n $echo_client_request_headers; }
    location /cookies/ {
      add_header Set-Cookie "a=1; Path=/";
      add_header Set-Cookie "b=2; Path=/";
      add_header X-Twice one;
      add_header X-Twice two;
      return 200 "cookies\n";
    }
    location /slow/ { echo_sleep 2; echo "late"; }
]]

local RAW = {
  -- RFC 9112 §4: not a status line
  garbage = "HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok",
  -- RFC 9112 §6.3: fewer bytes than Content-Length, then nothing
  short = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..",
  -- RFC 9110 §5.1: a field name is a token of any length
  longname = "HTTP/1.1 200 OK\r\nX-" .. ("A"):rep(300) .. ": long\r\nContent-Length: 2\r\n\r\nok",
}

local BIG = 20 * 1024 * 1024

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local o = luring.origin{ name = "o", url = "@ORIGIN@", keepalive = 8 }
local down = luring.origin{ name = "down", url = "@DOWN@" }
local slow = luring.origin{ name = "slow", url = "@ORIGIN@", first_byte_timeout = 0.3 }
local raw = luring.origin{ name = "raw", url = "@RAW@", idle_timeout = 0.3 }

-- main chunk: not a handler
local ok, err = pcall(o.request, o, { path = "/echo/x" })
MAIN_ERR = err

local function read_all(rd)
  local parts, n = {}, 0
  while true do
    local piece, e = rd:read()
    if not piece then return table.concat(parts), e, n end
    n = n + 1
    parts[#parts + 1] = piece
  end
end

local function dump(status, headers)
  local names = {}
  for k in pairs(headers) do names[#names + 1] = k end
  table.sort(names)
  local out = { "status=" .. status }
  for _, k in ipairs(names) do
    local v = headers[k]
    if type(v) == "table" then v = "[" .. table.concat(v, "|") .. "]" end
    out[#out + 1] = k .. "=" .. v
  end
  return table.concat(out, "\n") .. "\n"
end

app:get("/main_err", function() return 200, nil, tostring(MAIN_ERR) end)

-- the request described by the query: m=METHOD, b=body
app:get("/req/*", function(req)
  local method = req.query and req.query:match("m=(%w+)") or nil
  local body = req.query and req.query:match("b=(%w+)") or nil
  local status, headers, rd = o:request{
    method = method, path = "/echo/" .. req.params["*"] .. "?q=1",
    headers = { ["X-Custom"] = "c v", ["X-Multi"] = { "m1", "m2" }, ["User-Agent"] = 7 },
    body = body,
  }
  local text = read_all(rd)
  return 200, nil, dump(status, headers) .. "--\n" .. text
end)

app:get("/rawhead", function(req)
  local _, _, rd = o:request{ path = "/rawhead/x", headers = { ["X-Multi"] = { "m1", "m2" } } }
  return 200, nil, (read_all(rd))
end)

app:get("/longname", function(req)
  local status, headers, rd = raw:request{ path = "/longname" }
  local out = {}
  for k, v in pairs(headers) do
    if #k > 100 then out[#out + 1] = #k .. " " .. k:sub(1, 4) .. " " .. v end
  end
  return 200, nil, table.concat(out, ",") .. " " .. headers["X-" .. ("a"):rep(300)] .. "\n"
end)

app:get("/host", function(req)
  local _, _, rd = o:request{ path = "/echo/h", headers = { host = "other.test" } }
  return 200, nil, (read_all(rd))
end)

app:get("/hop", function(req)
  local _, _, rd = o:request{ method = "POST", path = "/echo/hop", body = "abc",
    headers = { Connection = "close", ["Transfer-Encoding"] = "chunked",
                ["Content-Length"] = "99", TE = "trailers", Expect = "100-continue" } }
  return 200, nil, (read_all(rd))
end)

app:get("/head", function(req)
  local status, headers, rd = o:request{ method = "HEAD", path = "/files/small.txt" }
  local body, err = rd:read()
  return 200, nil, ("status=%d cl=%s body=%s err=%s\n"):format(status,
    tostring(headers["Content-Length"]), tostring(body), tostring(err))
end)

app:get("/cookies", function(req)
  local status, headers, rd = o:request{ path = "/cookies/x" }
  return 200, nil, dump(status, headers) .. "--\n" .. read_all(rd)
end)

-- a streaming proxy in Lua: the origin's status, fields and body as they come
app:get("/stream/*", function(req)
  local status, headers, rd = o:request{ path = "/" .. req.params["*"] }
  if not status then return 502, nil, headers .. "\n" end
  req:start(status, headers)
  while true do
    local piece, err = rd:read()
    if not piece then
      if err then error(err) end
      break
    end
    req:write(piece)
  end
end)

-- 20 MiB read piece by piece; stalls 1 s after the first piece
app:get("/big", function(req)
  local status, headers, rd = o:request{ path = "/files/big.bin" }
  local first = assert(rd:read())
  luring.sleep(1000)
  local n, pieces, max, last = #first, 1, #first, first
  local head = first:sub(1, 64)
  while true do
    local piece, err = rd:read()
    if not piece then assert(not err, err) break end
    n, pieces = n + #piece, pieces + 1
    if #piece > max then max = #piece end
    last = piece
  end
  local function hex(x) return (x:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end)) end
  return 200, nil, ("n=%d\npieces=%d\nmax=%d\nhead=%s\ntail=%s\n"):format(n, pieces, max,
    hex(head), hex(last:sub(-64)))
end)

-- abandoned readers: closed, dropped to the GC, or left when the handler ends
app:get("/abandon/:how", function(req)
  local status, headers, rd = o:request{ path = "/files/big.bin" }
  assert(rd:read())
  local how = req.params.how
  if how == "close" then
    rd:close()
    local p, e = rd:read()
    return 200, nil, ("after close: %s %s\n"):format(tostring(p), tostring(e))
  elseif how == "gc" then
    rd = nil
    collectgarbage()
    collectgarbage()
    luring.sleep(200) -- the fill ends with the connection meanwhile
  end
  return 200, nil, "left\n"
end)

-- the client leaves while the handler holds a reader: parked elsewhere
-- (a sleep), or waiting for a response head
app:get("/leave/sleep", function(req)
  local _, _, rd = o:request{ path = "/files/big.bin" }
  assert(rd:read())
  luring.sleep(1500)
  return 200, nil, "not reached\n"
end)
app:get("/leave/head", function(req)
  local status = o:request{ path = "/slow/leave" }
  return 200, nil, "not reached\n"
end)

app:get("/stats", function(req)
  local s = o:stats()
  return 200, nil, ("requests=%d reused=%d connects=%d errors=%d idle=%d\n")
    :format(s.requests, s.reused, s.connects, s.errors, s.idle)
end)

-- two responses in flight at once, read interleaved
app:get("/two", function(req)
  local s1, _, r1 = o:request{ path = "/echo/one" }
  local s2, _, r2 = o:request{ path = "/echo/two" }
  local b2 = read_all(r2)
  local b1 = read_all(r1)
  return 200, nil, s1 .. " " .. s2 .. "\n" .. b1:match("uri=[^\n]*") .. "\n" .. b2:match("uri=[^\n]*") .. "\n"
end)

app:get("/err/:what", function(req)
  local w = req.params.what
  local a, b, c
  if w == "refused" then a, b = down:request{ path = "/x" }
  elseif w == "timeout" then a, b = slow:request{ path = "/slow/x" }
  elseif w == "invalid" then a, b = raw:request{ path = "/garbage" }
  elseif w == "truncated" then
    local status, _, rd = raw:request{ path = "/short" }
    local got = {}
    while true do
      local p, e = rd:read()
      if not p then a, b = table.concat(got), e break end
      got[#got + 1] = p
    end
    return 200, nil, ("status=%d got=%s err=%s\n"):format(status, a, tostring(b))
  end
  return 200, nil, ("%s %s\n"):format(tostring(a), tostring(b))
end)

-- misuse: a Lua error with a clear message (caught here to show it)
local BAD = {
  name = { path = "/echo/x", headers = { ["bad name"] = "v" } },
  colon = { path = "/echo/x", headers = { ["X-A:"] = "v" } },
  crlf = { path = "/echo/x", headers = { ["X-A"] = "v\r\nX-Injected: 1" } },
  lf = { path = "/echo/x", headers = { ["X-A"] = { "ok", "v\nX-Injected: 1" } } },
  nul = { path = "/echo/x", headers = { ["X-A"] = "v\0w" } },
  value = { path = "/echo/x", headers = { ["X-A"] = true } },
  path_space = { path = "/echo/a b" },
  path_crlf = { path = "/echo/a\r\nX-Injected: 1" },
  path_rel = { path = "echo/x" },
  no_path = { method = "GET" },
  method = { method = "GE T", path = "/echo/x" },
  field = { path = "/echo/x", header = {} },
  body = { path = "/echo/x", body = {} },
}
app:get("/bad/:what", function(req)
  local ok, err = pcall(o.request, o, BAD[req.params.what])
  return 200, nil, tostring(ok) .. " " .. tostring(err) .. "\n"
end)

app:get("/coroutine", function(req)
  local co = coroutine.create(function() return o:request{ path = "/echo/x" } end)
  local ok, err = coroutine.resume(co)
  return 200, nil, tostring(ok) .. " " .. tostring(err) .. "\n"
end)

app:get("/foreign", function(req)
  local ok, err = pcall(function() return KEPT:read() end)
  return 200, nil, tostring(ok) .. " " .. tostring(err) .. "\n"
end)
app:get("/keep", function(req)
  local _, _, rd = o:request{ path = "/echo/keep" }
  KEPT = rd
  return 200, nil, "kept\n"
end)
]]

local ngx, raw, srv

local function get(path)
  local c = helper.connect(srv:port(), 30)
  c:write(helper.request("GET", path))
  local res = c:response{ timeout = 30 }
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

local function stats()
  local t = {}
  for k, v in get("/stats").body:gmatch("(%w+)=(%d+)") do t[k] = tonumber(v) end
  return t
end

local function rss_kb(pid)
  local s = helper.readfile("/proc/" .. math.floor(pid) .. "/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

describe("origin:request", function()
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

  it("sends a GET with the script's fields and the origin's Host (RFC 9110 §7.2, §5.3)", function()
    local res = get("/req/a")
    assert.are.equal(200, res.status)
    local head, body = res.body:match("^(.-)%-%-\n(.*)$")
    local h, e = kv(head), kv(body)
    assert.are.equal("200", h.status)
    assert.are.equal("application/octet-stream", h["content-type"])
    assert.are.equal("GET", e.method)
    assert.are.equal("/echo/a?q=1", e.uri)
    assert.are.equal(ngx:url():match("//(.*)$"), e.host)
    assert.are.equal("c v", e.custom)
    assert.are.equal("m1", e.multi) -- nginx's $http_ shows the first line
    -- a list: one field line each (RFC 9110 §5.3)
    local raw_head = get("/rawhead").body
    assert.matches("\r\nX%-Multi: m1\r\n", raw_head)
    assert.matches("\r\nX%-Multi: m2\r\n", raw_head)
    assert.are.equal("7", e.ua)
  end)

  it("sends a body with Content-Length, and other methods (RFC 9110 §8.6, §9.3)", function()
    for _, m in ipairs{ "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "BREW" } do
      local res = get("/req/m?m=" .. m .. "&b=payload" .. m)
      local e = kv(res.body:match("%-%-\n(.*)$"))
      assert.are.equal(m, e.method, m)
      assert.are.equal("payload" .. m, e.body, m)
      assert.are.equal(tostring(#("payload" .. m)), e.cl, m)
      assert.are.equal("", e.tenc, m)
    end
    -- POST without a body: Content-Length: 0 (RFC 9110 §8.6)
    local e = kv(get("/req/m?m=POST").body:match("%-%-\n(.*)$"))
    assert.are.equal("0", e.cl)
    assert.are.equal("", e.body)
  end)

  it("sends the Host the script gives instead (RFC 9110 §7.2)", function()
    assert.are.equal("other.test", kv(get("/host").body).host)
  end)

  it("leaves out hop-by-hop and framing fields the script passes (RFC 9110 §7.6.1, RFC 9112 §6.2)", function()
    local e = kv(get("/hop").body)
    assert.are.equal("POST", e.method)
    assert.are.equal("", e.te)
    assert.are.equal("", e.tenc)
    assert.are.equal("3", e.cl) -- luring's, not the script's 99
    assert.are.equal("abc", e.body)
  end)

  it("answers a HEAD with the head only (RFC 9110 §9.3.2)", function()
    assert.are.equal("status=200 cl=12 body=nil err=nil\n", get("/head").body)
  end)

  it("returns headers with lowercased names, repeated ones joined, Set-Cookie as a list (RFC 9110 §5.3, RFC 6265 §3)", function()
    local res = get("/cookies")
    local h = kv(res.body)
    assert.are.equal("200", h.status)
    assert.are.equal("[a=1; Path=/|b=2; Path=/]", h["set-cookie"])
    assert.are.equal("one, two", h["x-twice"])
    assert.are.equal("8", h["content-length"])
    assert.matches("%-%-\ncookies\n$", res.body)
  end)

  it("lowercases a long field name (RFC 9110 §5.1)", function()
    assert.are.equal("302 x-aa long long\n", get("/longname").body)
  end)

  it("streams a response to the client through req:start/req:write (RFC 9110 §6.4)", function()
    local res = get("/stream/cookies/x")
    assert.are.equal(200, res.status)
    assert.are.equal("cookies\n", res.body)
    local n = 0
    for _, f in ipairs(res.header_list) do
      if f[1]:lower() == "set-cookie" then n = n + 1 end
    end
    assert.are.equal(2, n) -- the list went out as two field lines
    assert.are.equal("8", res.headers["content-length"])
    local big = get("/stream/files/big.bin")
    assert.are.equal(BIG, #big.body)
    assert(big.body == helper.payload(BIG, "big"), "body differs")
  end)

  it("reads 20 MiB piece by piece with bounded memory (RFC 9112 §9.3)", function()
    local pid = srv:pid()
    local before = rss_kb(pid)
    local c = helper.connect(srv:port(), 60)
    c:write(helper.request("GET", "/big"))
    socket.sleep(0.7) -- the handler sleeps after one piece: the origin is paused
    local during = rss_kb(pid)
    local res = c:response{ timeout = 60 }
    c:close()
    local after = rss_kb(pid)
    local t = kv(res.body)
    local want = helper.payload(BIG, "big")
    assert.are.equal(tostring(BIG), t.n)
    assert(tonumber(t.max) <= 64 * 1024, "a piece larger than a chunk: " .. t.max)
    assert(tonumber(t.pieces) >= BIG / (64 * 1024), "pieces: " .. t.pieces)
    local function hex(x) return (x:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end)) end
    assert.are.equal(hex(want:sub(1, 64)), t.head)
    assert.are.equal(hex(want:sub(-64)), t.tail)
    if os.getenv("SPEC_VERBOSE") then print("rss KiB", before, during, after) end
    if not helper.sanitized() then
      assert((during - before) < 8 * 1024,
             ("RSS grew by %d KiB while the reader stalled"):format(during - before))
      assert((after - before) < 16 * 1024,
             ("RSS grew by %d KiB over the transfer"):format(after - before))
    end
  end)

  for _, how in ipairs{ "close", "gc", "end" } do
    it("closes the origin connection of a response not read to its end (" .. how .. ") (RFC 9112 §9.6)", function()
      local before = stats()
      local res = get("/abandon/" .. how)
      if how == "close" then
        assert.are.equal("after close: nil closed\n", res.body)
      end
      -- the abandoned fill ends and its connection is closed, never pooled
      assert(helper.wait_until(function() return stats().idle == 0 end, 5),
             "connection still pooled")
      local mid = stats()
      assert.are.equal(before.requests + 1, mid.requests)
      -- the next request needs a new connection: nothing was left to reuse
      local r2 = get("/req/next")
      assert.are.equal(200, r2.status)
      local after = stats()
      assert.are.equal(mid.connects + 1, after.connects)
      assert.are.equal(mid.reused, after.reused)
      -- nginx did not get to send the whole body
      local entries = ngx:log_entries()
      local sent
      for _, e in ipairs(entries) do
        if e.uri == "/files/big.bin" then sent = e.bytes end
      end
      assert(sent and sent < BIG, "nginx sent " .. tostring(sent))
    end)
  end

  for _, where in ipairs{ "sleep", "head" } do
    it("closes a reader when its client leaves while the handler waits (" .. where .. ") (RFC 9112 §9.6)", function()
      local before = stats()
      local c = helper.connect(srv:port(), 5)
      c:write(helper.request("GET", "/leave/" .. where))
      socket.sleep(0.5)
      c:abort()
      -- the sleep ends at 1.5 s, the slow head comes at 2 s: then the
      -- abandoned fill ends and its connection is closed
      assert(helper.wait_until(function()
        local s = stats()
        return s.errors > before.errors and s.idle == 0
      end, 6), "the abandoned response's connection was not closed")
      local mid = stats()
      assert.are.equal(200, get("/req/after-leave").status)
      local after = stats()
      assert.are.equal(mid.connects + 1, after.connects)
      assert(srv:alive())
    end)
  end

  it("keeps two responses in flight in one handler", function()
    local res = get("/two")
    assert.are.equal("200 200\nuri=/echo/one\nuri=/echo/two\n", res.body)
  end)

  it("returns nil, \"bad gateway\" when the origin refuses (RFC 9110 §15.6.3)", function()
    assert.are.equal("nil bad gateway\n", get("/err/refused").body)
  end)

  it("returns nil, \"timeout\" after first_byte_timeout (RFC 9110 §15.6.5)", function()
    local t0 = helper.now()
    assert.are.equal("nil timeout\n", get("/err/timeout").body)
    assert(helper.now() - t0 < 1.5, "took " .. (helper.now() - t0))
  end)

  it("returns nil, \"bad gateway\" for an invalid response (RFC 9112 §4)", function()
    assert.are.equal("nil bad gateway\n", get("/err/invalid").body)
  end)

  it("reader:read returns nil, \"truncated\" when the body stops short (RFC 9112 §6.3)", function()
    assert.are.equal("status=200 got=only ten.. err=truncated\n", get("/err/truncated").body)
  end)

  local errors = {
    name = "invalid header name 'bad name'",
    colon = "invalid header name 'X%-A:'",
    crlf = "header 'X%-A': the value holds a control character",
    lf = "header 'X%-A': the value holds a control character",
    nul = "header 'X%-A': the value holds a control character",
    value = "header 'X%-A': string, number or list of them expected",
    path_space = "the path must be visible ASCII",
    path_crlf = "the path must be visible ASCII",
    path_rel = "the path must start with /",
    no_path = "path is required",
    method = "invalid method",
    field = "unknown field 'header'",
    body = "body must be a string",
  }
  for what, msg in pairs(errors) do
    it("raises a clear error for a bad request (" .. what .. ", RFC 9110 §5.5, RFC 9112 §3.2)", function()
      local before = ngx:count("/echo/x")
      local body = get("/bad/" .. what).body
      assert.matches("^false [^\n]*origin:request: " .. msg, body)
      assert.are.equal(before, ngx:count("/echo/x")) -- nothing was sent
    end)
  end

  it("is only for a request handler", function()
    assert.matches("only inside a request handler", get("/main_err").body)
    assert.matches("^false [^\n]*only inside a request handler", get("/coroutine").body)
    get("/keep")
    assert.matches("^true nil", get("/foreign").body) -- closed with its request
  end)

  it("leaves the server serving", function()
    assert.are.equal(200, get("/req/last").status)
    assert(srv:alive())
  end)
end)

describe("examples/stream_proxy.lua", function()
  local ngx2, srv2

  lazy_setup(function()
    ngx2 = origin.start{ locations = LOCATIONS, files = {
      ["files/big.bin"] = helper.payload(4 * 1024 * 1024, "ex"),
    } }
    srv2 = helper.start(nil, { file = helper.repo_root() .. "/examples/stream_proxy.lua",
                               env = { ORIGIN = ngx2:url() } })
  end)
  lazy_teardown(origin.teardown)

  local function ex(method, path, headers, body)
    local c = helper.connect(srv2:port(), 20)
    c:write(helper.request(method, path, headers, body))
    local res = c:response{ method = method, timeout = 20 }
    c:close()
    return res
  end

  it("passes a POST with its fields and body, and the origin's answer (RFC 9110 §9.3.3)", function()
    local res = ex("POST", "/echo/x?y=1", { ["X-Custom"] = "hello" }, "the body")
    assert.are.equal(200, res.status)
    assert.are.equal("luring stream_proxy.lua", res.headers["x-served-by"])
    local e = kv(res.body)
    assert.are.equal("POST", e.method)
    assert.are.equal("/echo/x?y=1", e.uri)
    assert.are.equal("hello", e.custom)
    assert.are.equal("the body", e.body)
  end)

  it("streams a large body and keeps Set-Cookie lines apart (RFC 6265 §3)", function()
    local res = ex("GET", "/files/big.bin")
    assert.are.equal(4 * 1024 * 1024, #res.body)
    assert(res.body == helper.payload(4 * 1024 * 1024, "ex"), "body differs")
    res = ex("GET", "/cookies/x")
    local n = 0
    for _, f in ipairs(res.header_list) do
      if f[1]:lower() == "set-cookie" then n = n + 1 end
    end
    assert.are.equal(2, n)
  end)

  it("answers 502 when the origin is down", function()
    ngx2:stop()
    local res = ex("GET", "/echo/x")
    assert.are.equal(502, res.status)
    assert.are.equal("bad gateway\n", res.body)
  end)
end)
