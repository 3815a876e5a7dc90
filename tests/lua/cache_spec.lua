-- The cache and origins (luring.cache{}, luring.origin{}, cache:fetch,
-- origin:fetch) end to end: the real luring binary in front of a real nginx
-- (tests/lua/origin.lua) on loopback.  nginx's access log is the ground truth
-- for how many requests reached the origin.
local helper = require "helper"
local origin = require "origin"
local socket = require "socket"

local now = helper.now

-- nginx locations shared by every describe block below.
local LOCATIONS = [[
    location /static/ { }
    location /slow/ { echo_sleep 0.3; echo "slow body for $uri"; }
    location /chunked/ { echo "part1"; echo_flush; echo_sleep 0.5; echo "part2"; }
    location /hang/ { echo_sleep 5; echo "too late"; }
    location /close/ { return 444; }
    location /ttl/ { add_header Cache-Control "max-age=1"; }
    location /nostore/ { add_header Cache-Control "no-store"; }
    location /private/ { add_header Cache-Control "private, max-age=60"; }
    location /ka/ { keepalive_timeout 1s; }
    location /hdr/ { add_header X-Test "hello-origin"; }
    location /slowfill/ { echo "a"; echo_flush; echo_sleep 1; echo "b"; }
    location /latehead/ { echo_sleep 0.6; echo "late"; }
    location /status/500 { return 500 "error\n"; }
@EXTRA@
]]

-- The luring script: caches and origins by name, one generic route
--   /c/<cache>/<origin><origin path>   cache:fetch(req, <origin path>, origin)
-- plus /stats/<cache>, /ostats/<origin>, /raw/<origin><path> (origin:fetch).
local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local ORIGIN = "@ORIGIN@"
local origins = {
  o = luring.origin{ name = "o", url = ORIGIN, connect_timeout = 2,
                     first_byte_timeout = 10, idle_timeout = 10, keepalive = 32 },
  fbt = luring.origin{ name = "fbt", url = ORIGIN, connect_timeout = 2,
                       first_byte_timeout = 0.5, idle_timeout = 10 },
  down = luring.origin{ name = "down", url = "http://127.0.0.1:@DOWNPORT@",
                        connect_timeout = 2, first_byte_timeout = 10 },
  files = luring.origin{ name = "files", root = "@FILEROOT@" },
}
local caches = {
  -- grace = 0, keep = 0: expired objects go (stale serving and
  -- revalidation: rfc9111_stale_spec.lua)
  main = luring.cache{ name = "main", max_bytes = 64 * 1024 * 1024, ttl = 60,
                       grace = 0, keep = 0 },
  evict = luring.cache{ name = "evict", max_bytes = 300000, ttl = 60 },
  short = luring.cache{ name = "short", ttl = 1, grace = 0, keep = 0 },
}
local text = { ["Content-Type"] = "text/plain" }

local function dump(t)
  local out = {}
  for k, v in pairs(t) do out[#out + 1] = k .. "=" .. tostring(v) end
  table.sort(out)
  return table.concat(out, "\n") .. "\n"
end

app:get("/stats/:cache", function(req)
  local c = caches[req.params.cache]
  if not c then return 404, text, "no such cache\n" end
  return 200, text, dump(c:stats())
end)

app:get("/ostats/:origin", function(req)
  local o = origins[req.params.origin]
  if not o then return 404, text, "no such origin\n" end
  return 200, text, dump(o:stats())
end)

app:get("/c/:cache/:origin/*", function(req)
  local c, o = caches[req.params.cache], origins[req.params.origin]
  if not c or not o then return 404, text, "no such cache/origin\n" end
  local key = req.path:match("^/c/[^/]+/[^/]+(/.*)$")
  return c:fetch(req, key, o)
end)

app:get("/raw/:origin/*", function(req)
  local o = origins[req.params.origin]
  local path = req.path:match("^/raw/[^/]+(/.*)$")
  local st, h, body = o:fetch(path)
  if not st then
    return 200, { ["X-Fetch-Error"] = tostring(h) }, "error"
  end
  local names = {}
  for k, v in pairs(h) do names[#names + 1] = k end
  table.sort(names)
  return 200, { ["X-Origin-Status"] = tostring(st),
                ["X-Origin-Test"] = h["x-test"] or "-",
                ["X-Origin-Type"] = h["content-type"] or "-",
                ["X-Origin-Names"] = table.concat(names, ","),
                ["X-Body-Type"] = type(body) }, body
end)
]]

---------------------------------------------------------------------------
-- helpers
---------------------------------------------------------------------------

local function subst(s, map)
  return (s:gsub("@(%u+)@", function(k) return map[k] end))
end

-- Start nginx (LOCATIONS + opts.extra, opts.files) and luring in front of it.
local function start_pair(opts)
  opts = opts or {}
  local ngx = origin.start{ locations = subst(LOCATIONS, { EXTRA = opts.extra or "" }),
                            files = opts.files }
  local src = subst(SCRIPT, { LISTEN = "@LISTEN@", ORIGIN = ngx:url(),
                              DOWNPORT = tostring(helper.free_port()),
                              FILEROOT = opts.fileroot or "/nonexistent-luring-root" })
  local ok, srv = pcall(helper.start, src)
  if not ok then
    origin.stop_all()
    error(srv, 2)
  end
  return ngx, srv
end

local teardown = origin.teardown

local function get(srv, path, opts)
  local c = helper.connect(srv:port())
  c:write(helper.request("GET", path))
  local res, err = c:read_response(opts)
  c:close()
  if not res then error("GET " .. path .. ": " .. tostring(err), 2) end
  return res
end

local function parse_kv(body)
  local t = {}
  for k, v in body:gmatch("([%w_]+)=([^\n]*)") do t[k] = tonumber(v) or v end
  return t
end

local function cache_stats(srv, name)
  local res = get(srv, "/stats/" .. name)
  assert.are.equal(200, res.status)
  return parse_kv(res.body)
end

local function origin_stats(srv, name)
  local res = get(srv, "/ostats/" .. name)
  assert.are.equal(200, res.status)
  return parse_kv(res.body)
end

local function random_bytes(n)
  local f = assert(io.open("/dev/urandom", "rb"))
  local s = f:read(n)
  f:close()
  assert(#s == n)
  return s
end

local function count_header(res, name)
  local n = 0
  for _, h in ipairs(res.header_list) do
    if h[1]:lower() == name then n = n + 1 end
  end
  return n
end

local function describe_res(res)
  if not res then return "no response" end
  return ("%s\n(body %d bytes: %q)"):format(res.raw_head or "?", #(res.body or ""),
                                            (res.body or ""):sub(1, 120))
end

local burst = helper.burst

-- A GET whose response is read slowly: `step` bytes, then `pause` seconds.
-- The socket has a small receive buffer so the server really has to wait.
-- Returns head (string), headers (lowercased), body, closed-early flag.
local function slow_get(port, path, step, pause, timeout)
  local s = socket.tcp()
  s:setoption("recv-buffer-size", 16384)
  s:settimeout(5)
  assert(s:connect("127.0.0.1", port))
  local probe = helper.connect(port)
  local c = setmetatable({ sock = s, buf = "", closed = false, timeout = 5 }, getmetatable(probe))
  probe:close()
  s:settimeout(0)
  c:write(helper.request("GET", path))
  local deadline = now() + (timeout or 20)
  local head = assert(c:read_until("\r\n\r\n", deadline))
  local headers = {}
  for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
    headers[name:lower()] = value
  end
  local total = tonumber(headers["content-length"])
  assert(total, "no Content-Length in " .. head)
  local parts, have = {}, 0
  while have < total do
    local piece, err, partial = c:read_n(math.min(step, total - have), deadline)
    if not piece then
      parts[#parts + 1] = partial or ""
      c:close()
      return head, headers, table.concat(parts),
             ("read failed after %d of %d body bytes: %s"):format(have + #(partial or ""), total, tostring(err))
    end
    parts[#parts + 1] = piece
    have = have + #piece
    socket.sleep(pause)
  end
  c:close()
  return head, headers, table.concat(parts), nil
end

---------------------------------------------------------------------------
-- 1. miss then hit
---------------------------------------------------------------------------

describe("cache: miss then hit", function()
  local ngx, srv
  local BODY = "object one from nginx\n"

  lazy_setup(function()
    ngx, srv = start_pair{ files = { ["static/one.txt"] = BODY } }
  end)
  lazy_teardown(teardown)

  it("first GET is a MISS with the origin's body, the second a HIT; one origin request", function()
    local r1 = get(srv, "/c/main/o/static/one.txt")
    assert.are.equal(200, r1.status, describe_res(r1))
    assert.are.equal("MISS", r1.headers["x-cache"], describe_res(r1))
    assert.are.equal(BODY, r1.body)
    assert.are.equal("text/plain", r1.headers["content-type"])
    assert.is_truthy(r1.headers["etag"], "origin ETag not forwarded:\n" .. r1.raw_head)
    assert.is_truthy(r1.headers["last-modified"], "origin Last-Modified not forwarded")
    assert.are.equal(tostring(#BODY), r1.headers["content-length"], describe_res(r1))

    local r2 = get(srv, "/c/main/o/static/one.txt")
    assert.are.equal(200, r2.status)
    assert.are.equal("HIT", r2.headers["x-cache"], describe_res(r2))
    assert.are.equal(BODY, r2.body)
    assert.are.equal(r1.headers["etag"], r2.headers["etag"])
    assert.are.equal(tostring(#BODY), r2.headers["content-length"])
    -- framing / hop-by-hop headers of the origin are not forwarded twice
    for _, name in ipairs({ "content-length", "server", "date", "transfer-encoding", "connection" }) do
      assert.is_true(count_header(r2, name) <= 1, name .. " repeated:\n" .. r2.raw_head)
      assert.is_true(count_header(r1, name) <= 1, name .. " repeated:\n" .. r1.raw_head)
    end
    assert.is_nil(r2.headers["transfer-encoding"])

    assert.are.equal(1, ngx:wait_count("/static/one.txt", 1, 3, 0.2), ngx:access_log())
    local st = cache_stats(srv, "main")
    assert.are.equal(1, st.misses)
    assert.are.equal(1, st.hits)
    assert.are.equal(1, st.fills)
    assert.are.equal(1, st.objects)
  end)
end)

---------------------------------------------------------------------------
-- 2. 500 simultaneous requests for one cold key
---------------------------------------------------------------------------

describe("cache: 500-request burst on a cold key", function()
  local ngx, srv
  local N = 500

  lazy_setup(function()
    ngx, srv = start_pair()
  end)
  lazy_teardown(teardown)

  it("makes exactly one origin request and serves all " .. N, function()
    local path = "/slow/burst1"
    local want = "slow body for " .. path .. "\n"
    local t0 = now()
    local results = burst(srv:port(), N, "/c/main/o" .. path, 20)
    local elapsed = now() - t0

    local ok_n, xc, lat, errors = 0, {}, {}, {}
    for i = 1, N do
      local r = results[i]
      if r.err then
        errors[#errors + 1] = ("#%d: %s"):format(i, r.err)
      elseif r.status ~= 200 or r.body ~= want then
        errors[#errors + 1] = ("#%d: status %d body %q"):format(i, r.status, r.body or "")
      else
        ok_n = ok_n + 1
        lat[#lat + 1] = r.latency
      end
      if r.headers then
        local x = r.headers["x-cache"] or "none"
        xc[x] = (xc[x] or 0) + 1
      end
    end
    table.sort(lat)
    local p50 = lat[math.max(1, math.ceil(#lat * 0.50))] or -1
    local p99 = lat[math.max(1, math.ceil(#lat * 0.99))] or -1
    print(("\n[cache burst] %d/%d ok in %.3fs; latency p50 %.3fs p99 %.3fs max %.3fs; X-Cache %s")
      :format(ok_n, N, elapsed, p50, p99, lat[#lat] or -1,
              (function() local s = {} for k, v in pairs(xc) do s[#s + 1] = k .. "=" .. v end
                 table.sort(s) return table.concat(s, " ") end)()))

    assert.are.equal(N, ok_n, table.concat(errors, "\n"):sub(1, 3000))
    assert.are.equal(1, xc.MISS, "X-Cache MISS count")
    assert.are.equal(N - 1, xc.COALESCED, "X-Cache COALESCED count")

    assert.are.equal(1, ngx:wait_count(path, 1, 3, 0.3),
                     "origin requests for " .. path .. ":\n" .. ngx:access_log():sub(1, 2000))
    local st = cache_stats(srv, "main")
    assert.are.equal(1, st.misses)
    assert.are.equal(N - 1, st.coalesced)
    assert.are.equal(0, st.hits)
    assert.are.equal(1, st.fills)

    assert.is_true(p99 < 2.0, ("p99 latency %.3fs"):format(p99))
    -- the next one is a plain hit
    local r = get(srv, "/c/main/o" .. path)
    assert.are.equal("HIT", r.headers["x-cache"])
    assert.are.equal(want, r.body)
    assert.is_true(srv:alive())
  end)
end)

---------------------------------------------------------------------------
-- 3. large object
---------------------------------------------------------------------------

describe("cache: large object (1.3 MB)", function()
  local ngx, srv
  local SIZE = 1300000
  -- slow readers on a MISS (distinct objects), with different read sizes
  local STEPS = { 65536, 65536, 65536, 65536, 65536, 65536 }
  local NSLOW = #STEPS
  local DATA = random_bytes(SIZE)
  local SLOWDATA, files = {}, { ["static/big.bin"] = DATA }
  for i = 1, NSLOW do
    SLOWDATA[i] = random_bytes(SIZE)
    files["static/slow" .. i .. ".bin"] = SLOWDATA[i]
  end

  lazy_setup(function()
    ngx, srv = start_pair{ files = files }
  end)
  lazy_teardown(teardown)

  it("is intact on MISS and on HIT, with Content-Length", function()
    local r1 = get(srv, "/c/main/o/static/big.bin", { timeout = 15 })
    assert.are.equal(200, r1.status)
    assert.are.equal("MISS", r1.headers["x-cache"])
    assert.are.equal(tostring(SIZE), r1.headers["content-length"], r1.raw_head)
    assert.is_true(r1.body == DATA, helper.diff(DATA, r1.body))
    local r2 = get(srv, "/c/main/o/static/big.bin", { timeout = 15 })
    assert.are.equal("HIT", r2.headers["x-cache"])
    assert.are.equal(tostring(SIZE), r2.headers["content-length"], r2.raw_head)
    assert.is_true(r2.body == DATA, helper.diff(DATA, r2.body))
    assert.are.equal(1, ngx:wait_count("/static/big.bin", 1, 3, 0.1))
  end)

  it("reaches a slow reader intact on a HIT", function()
    local head, h, body, err = slow_get(srv:port(), "/c/main/o/static/big.bin", 65536, 0.03, 8)
    assert.is_nil(err, err)
    assert.are.equal("HIT", h["x-cache"], head)
    assert.is_true(body == DATA, helper.diff(DATA, body))
  end)

  -- Before 33335c3 (outq: send what was queued during a flight) this stalled
  -- in roughly a third of the runs: the tail queued during a partial send was
  -- never flushed (queued >= 256 KiB, no send in flight, not dirty).
  it("reaches slow readers intact on MISSes (" .. NSLOW .. " objects)", function()
    for i = 1, NSLOW do
      local path = "/c/main/o/static/slow" .. i .. ".bin"
      local head, h, body, err = slow_get(srv:port(), path, STEPS[i], 0.04, 8)
      assert.is_nil(err, ("slow reader of %s (MISS, %d bytes per read): %s\n%s")
        :format(path, STEPS[i], tostring(err), head))
      assert.are.equal("MISS", h["x-cache"], head)
      assert.are.equal(tostring(SIZE), h["content-length"])
      assert.is_true(body == SLOWDATA[i], helper.diff(SLOWDATA[i], body))
      -- and it was stored complete while the client was slow
      local r = get(srv, path, { timeout = 15 })
      assert.are.equal("HIT", r.headers["x-cache"])
      assert.is_true(r.body == SLOWDATA[i], helper.diff(SLOWDATA[i], r.body))
    end
  end)
end)

---------------------------------------------------------------------------
-- 4. streaming coalescing with unknown length
---------------------------------------------------------------------------

describe("cache: coalescing streams a chunked fill", function()
  local ngx, srv

  lazy_setup(function()
    ngx, srv = start_pair()
  end)
  lazy_teardown(teardown)

  it("a joiner gets COALESCED, the full body, and part1 long before part2", function()
    local path = "/c/main/o/chunked/s1"
    local t0 = now()
    local a = helper.connect(srv:port())
    a:write(helper.request("GET", path))
    -- wait for the MISS client's head: the fill is then in flight
    local ra_head = a:read_until("\r\n\r\n", now() + 3)
    assert.is_truthy(ra_head, "no head for the first client")
    assert.is_truthy(ra_head:find("X-Cache: MISS", 1, true), ra_head)
    helper.sleep(0.1)
    local b = helper.connect(srv:port())
    local tb = now()
    b:write(helper.request("GET", path))
    local rb, err = b:read_response({ timeout = 5 })
    b:close()
    assert.is_truthy(rb, err)
    assert.are.equal(200, rb.status)
    assert.are.equal("COALESCED", rb.headers["x-cache"], rb.raw_head)
    assert.are.equal("part1\npart2\n", rb.body)
    assert.is_true(rb.chunked, "unknown length must go out chunked:\n" .. rb.raw_head)
    -- when did part1 / part2 arrive at the joiner?
    local acc, t_part1, t_part2 = "", nil, nil
    for i, size in ipairs(rb.chunk_sizes) do
      acc = acc .. ("x"):rep(size)
      if not t_part1 and #acc >= #"part1\n" then t_part1 = rb.chunk_times[i] end
      if not t_part2 and #acc >= #"part1\npart2\n" then t_part2 = rb.chunk_times[i] end
    end
    print(("\n[cache stream] joiner: head +%.3fs part1 +%.3fs part2 +%.3fs (from first request)")
      :format(rb.t_head - t0, t_part1 - t0, t_part2 - t0))
    assert.is_true(t_part2 - t_part1 > 0.25,
      ("part1 at +%.3f, part2 at +%.3f: the joiner did not get part1 before the fill completed")
        :format(t_part1 - tb, t_part2 - tb))
    -- the first client streams too, and gets the same body
    a.buf = ra_head .. "\r\n\r\n" .. a.buf
    local ra, aerr = a:read_response({ timeout = 5 })
    a:close()
    assert.is_truthy(ra, aerr)
    assert.are.equal("part1\npart2\n", ra.body)

    assert.are.equal(1, ngx:wait_count("/chunked/s1", 1, 3, 0.1))
    local st = cache_stats(srv, "main")
    assert.are.equal(1, st.misses)
    assert.are.equal(1, st.coalesced)
    -- complete now: a HIT with a known length
    local r = get(srv, path)
    assert.are.equal("HIT", r.headers["x-cache"])
    assert.are.equal("part1\npart2\n", r.body)
    assert.are.equal("12", r.headers["content-length"], r.raw_head)
  end)
end)

---------------------------------------------------------------------------
-- 5. truncated origin bodies
---------------------------------------------------------------------------

describe("cache: truncated origin body", function()
  local ngx, srv
  local SIZE = 1000000
  local DATA = random_bytes(SIZE)
  local SLOW = [[
    location /rate/ { limit_rate 100k; }
    location /stall/ { echo "part1"; echo_flush; echo_sleep 30; echo "part2"; }
]]
  local FAST = [[
    location /rate/ { }
    location /stall/ { echo "complete"; }
]]

  lazy_setup(function()
    ngx, srv = start_pair{ extra = SLOW, files = { ["rate/big.bin"] = DATA } }
  end)
  lazy_teardown(teardown)

  it("with Content-Length: the client connection closes early, nothing truncated is cached", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/c/main/o/rate/big.bin"))
    local head = c:read_until("\r\n\r\n", now() + 5)
    assert.is_truthy(head, "no head")
    assert.is_truthy(head:find("X-Cache: MISS", 1, true), head)
    assert.is_truthy(head:find("Content-Length: " .. SIZE, 1, true), head)
    helper.sleep(0.5)
    ngx:kill()                                   -- mid-body
    local rest, err, partial = c:read_to_close(now() + 5)
    c:close()
    local got = rest or partial or ""
    assert.is_truthy(rest, "connection not closed after the origin died: " .. tostring(err)
                     .. " (" .. #got .. " body bytes)")
    assert.is_true(#got < SIZE, "got " .. #got .. " bytes: served as complete")
    assert.is_true(#got > 0)
    assert.is_true(got == DATA:sub(1, #got), "the bytes sent are not the object's prefix")

    -- origin down: not a HIT of the truncated object
    local r = get(srv, "/c/main/o/rate/big.bin")
    assert.are_not.equal("HIT", r.headers["x-cache"], describe_res(r))
    assert.are.equal(502, r.status, describe_res(r))

    local st = cache_stats(srv, "main")
    assert.is_true(st.fill_errors >= 1, "fill_errors " .. tostring(st.fill_errors))
    assert.are.equal(0, st.fills)

    -- origin back (without the rate limit): a MISS that fills completely
    ngx:restart{ locations = subst(LOCATIONS, { EXTRA = FAST }) }
    local r2 = get(srv, "/c/main/o/rate/big.bin", { timeout = 10 })
    assert.are.equal(200, r2.status)
    assert.are.equal("MISS", r2.headers["x-cache"], r2.raw_head)
    assert.is_true(r2.body == DATA, helper.diff(DATA, r2.body))
    local r3 = get(srv, "/c/main/o/rate/big.bin", { timeout = 10 })
    assert.are.equal("HIT", r3.headers["x-cache"])
    assert.is_true(r3.body == DATA, helper.diff(DATA, r3.body))
  end)

  it("chunked: no terminating chunk reaches the client, the next request is a MISS", function()
    ngx:restart{ locations = subst(LOCATIONS, { EXTRA = SLOW }) }
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/c/main/o/stall/x"))
    local t0 = now()
    -- the head and part1 arrive, then the origin stalls
    local head = c:read_until("\r\n\r\n", now() + 3)
    assert.is_truthy(head, "no head")
    assert.is_truthy(helper.wait_until(function()
      if c.buf:find("part1", 1, true) then return true end
      c:fill(now() + 0.05)
    end, 3), "part1 did not arrive before the origin stalled")
    c.buf = head .. "\r\n\r\n" .. c.buf
    helper.sleep(0.2)
    ngx:kill()
    local res, err, partial = c:read_response({ timeout = 5 })
    c:close()
    assert.is_nil(res, "a truncated chunked body was served as complete: " .. describe_res(res))
    assert.is_truthy(partial, err)
    assert.are.equal(200, partial.status)
    assert.are.equal("MISS", partial.headers["x-cache"])
    assert.is_truthy(tostring(err):find("closed", 1, true), err)
    assert.are.equal("part1\n", partial.body)
    assert.is_true(now() - t0 < 5)

    ngx:restart{ locations = subst(LOCATIONS, { EXTRA = FAST }) }
    local r = get(srv, "/c/main/o/stall/x")
    assert.are.equal(200, r.status)
    assert.are.equal("MISS", r.headers["x-cache"], describe_res(r))
    assert.are.equal("complete\n", r.body)
  end)
end)

---------------------------------------------------------------------------
-- 6. origin down / not answering
---------------------------------------------------------------------------

describe("cache: origin failures before the head", function()
  local ngx, srv

  lazy_setup(function()
    ngx, srv = start_pair()
  end)
  lazy_teardown(teardown)

  it("nothing listening: 502 quickly", function()
    local t0 = now()
    local r = get(srv, "/c/main/down/static/x.txt")
    local dt = now() - t0
    assert.are.equal(502, r.status, describe_res(r))
    assert.is_true(dt < 1.0, ("took %.3fs"):format(dt))
    -- not cached: again 502
    local r2 = get(srv, "/c/main/down/static/x.txt")
    assert.are.equal(502, r2.status)
    assert.are_not.equal("HIT", r2.headers["x-cache"])
    local os_ = origin_stats(srv, "down")
    assert.is_true(os_.errors >= 2, "origin errors " .. tostring(os_.errors))
  end)

  it("origin closes the connection without a response (nginx return 444): 502", function()
    local t0 = now()
    local r = get(srv, "/c/main/o/close/x")
    assert.are.equal(502, r.status, describe_res(r))
    assert.is_true(now() - t0 < 2.0)
  end)

  it("origin accepts but never answers: 504 after first_byte_timeout", function()
    local t0 = now()
    local r = get(srv, "/c/main/fbt/hang/x", { timeout = 8 })
    local dt = now() - t0
    print(("\n[cache 504] after %.3fs"):format(dt))
    assert.are.equal(504, r.status, describe_res(r))
    assert.is_true(dt >= 0.45 and dt < 1.5, ("took %.3fs (first_byte_timeout 0.5)"):format(dt))
    local os_ = origin_stats(srv, "fbt")
    assert.is_true(os_.timeouts >= 1)
    assert.is_true(cache_stats(srv, "main").fill_errors >= 1)
  end)
end)

---------------------------------------------------------------------------
-- 7. TTL
---------------------------------------------------------------------------

describe("cache: TTL and uncacheable responses", function()
  local ngx, srv

  lazy_setup(function()
    ngx, srv = start_pair{ files = {
      ["ttl/a.txt"] = "ttl object\n",
      ["nostore/n.txt"] = "no-store object\n",
      ["private/p.txt"] = "private object\n",
      ["static/plain.txt"] = "plain object\n",
    } }
  end)
  lazy_teardown(teardown)

  -- GET repeatedly until X-Cache is not HIT; returns the response and the
  -- time its request was sent (relative to t0), or nil after `limit` s.
  local function poll_until_miss(path, t0, limit)
    local deadline = now() + limit
    while now() < deadline do
      local ts = now()
      local r = get(srv, path)
      if r.headers["x-cache"] ~= "HIT" then return r, ts - t0 end
      helper.sleep(0.05)
    end
    return nil
  end

  it("Cache-Control: max-age=1 -> HIT within the second, MISS again after it", function()
    local path = "/c/main/o/ttl/a.txt"
    local t0 = now()
    local r1 = get(srv, path)
    assert.are.equal("MISS", r1.headers["x-cache"])
    assert.are.equal("max-age=1", r1.headers["cache-control"], r1.raw_head)
    local r2 = get(srv, path)
    assert.are.equal("HIT", r2.headers["x-cache"], "not a HIT right after the fill")
    assert.is_true(now() - t0 < 0.9, "too slow to check the HIT within the second")
    local r3, when = poll_until_miss(path, t0, 3)
    assert.is_truthy(r3, "still a HIT 3 s after a max-age=1 response")
    print(("\n[cache ttl] first non-HIT sent at +%.3fs"):format(when))
    assert.are.equal("MISS", r3.headers["x-cache"])
    assert.are.equal("ttl object\n", r3.body)
    assert.is_true(when >= 0.7, ("expired early, at +%.3fs"):format(when))
    assert.is_true(when <= 2.0, ("expired late, at +%.3fs"):format(when))
    assert.are.equal(2, ngx:wait_count("/ttl/a.txt", 2, 3, 0.1))
    assert.is_true(cache_stats(srv, "main").expired >= 1)
  end)

  it("no Cache-Control from the origin: the cache's ttl (1 s) applies", function()
    local path = "/c/short/o/static/plain.txt"
    local t0 = now()
    assert.are.equal("MISS", get(srv, path).headers["x-cache"])
    assert.are.equal("HIT", get(srv, path).headers["x-cache"])
    local r, when = poll_until_miss(path, t0, 3)
    assert.is_truthy(r, "still a HIT 3 s after filling a ttl=1 cache")
    assert.are.equal("MISS", r.headers["x-cache"])
    assert.is_true(when >= 0.7 and when <= 2.0, ("expired at +%.3fs"):format(when))
  end)

  it("no-store and private responses are never HITs", function()
    for _, p in ipairs({ { "/nostore/n.txt", "no-store object\n" },
                         { "/private/p.txt", "private object\n" } }) do
      for i = 1, 3 do
        local r = get(srv, "/c/main/o" .. p[1])
        assert.are.equal(200, r.status)
        assert.are.equal("MISS", r.headers["x-cache"], ("request %d for %s:\n%s"):format(i, p[1], r.raw_head))
        assert.are.equal(p[2], r.body)
      end
      assert.are.equal(3, ngx:wait_count(p[1], 3, 3, 0.1))
    end
    assert.is_true(cache_stats(srv, "main").uncacheable >= 6)
  end)

  it("a 404 from the origin is cached: heuristically cacheable (RFC 9110 §15.1, RFC 9111 §4.2.2)", function()
    for i = 1, 2 do
      local r = get(srv, "/c/main/o/static/missing.txt")
      assert.are.equal(404, r.status, describe_res(r))
      assert.are.equal(i == 1 and "MISS" or "HIT", r.headers["x-cache"])
      assert.is_truthy(r.body:find("404", 1, true))
    end
    assert.are.equal(1, ngx:wait_count("/static/missing.txt", 1, 3, 0.1))
  end)

  it("a 500 without explicit freshness is not cached (RFC 9111 §3)", function()
    for _ = 1, 2 do
      local r = get(srv, "/c/main/o/status/500")
      assert.are.equal(500, r.status, describe_res(r))
      assert.are_not.equal("HIT", r.headers["x-cache"])
    end
  end)
end)

---------------------------------------------------------------------------
-- 8. eviction
---------------------------------------------------------------------------

describe("cache: eviction under max_bytes", function()
  local ngx, srv
  local OBJ = 100000
  local files, bodies = {}, {}
  for i = 1, 6 do
    bodies[i] = helper.payload(OBJ, "ev" .. i .. "-")
    files["static/ev/" .. i .. ".bin"] = bodies[i]
  end

  lazy_setup(function()
    ngx, srv = start_pair{ files = files }
  end)
  lazy_teardown(teardown)

  it("stays within 300000 bytes, evicts the oldest, keeps the newest", function()
    for i = 1, 6 do
      local r = get(srv, "/c/evict/o/static/ev/" .. i .. ".bin")
      assert.are.equal(200, r.status)
      assert.are.equal("MISS", r.headers["x-cache"])
      assert.is_true(r.body == bodies[i], helper.diff(bodies[i], r.body))
    end
    local st = cache_stats(srv, "evict")
    print(("\n[cache evict] bytes %d objects %d evictions %d"):format(st.bytes, st.objects, st.evictions))
    assert.is_true(st.bytes <= 300000, "bytes " .. st.bytes)
    assert.is_true(st.evictions > 0, "evictions " .. st.evictions)
    assert.are.equal(300000, st.max_bytes)

    local r6 = get(srv, "/c/evict/o/static/ev/6.bin")
    assert.are.equal("HIT", r6.headers["x-cache"])
    assert.is_true(r6.body == bodies[6])
    local r1 = get(srv, "/c/evict/o/static/ev/1.bin")
    assert.are.equal("MISS", r1.headers["x-cache"])
    assert.is_true(r1.body == bodies[1])
    assert.are.equal(2, ngx:wait_count("/static/ev/1.bin", 2, 3, 0.1))
    assert.is_true(cache_stats(srv, "evict").bytes <= 300000)
  end)
end)

---------------------------------------------------------------------------
-- 9. file origin
---------------------------------------------------------------------------

describe("cache: file origin", function()
  local srv, dir
  local SECRET = "top secret outside the root\n"

  lazy_setup(function()
    dir = helper.mktempdir()
    os.execute("mkdir -p " .. helper.shquote(dir .. "/root/sub"))
    helper.writefile(dir .. "/root/hello.txt", "hello from a file\n")
    helper.writefile(dir .. "/root/sub/inner.txt", "inner file\n")
    helper.writefile(dir .. "/secret.txt", SECRET)
    local _
    _, srv = start_pair{ fileroot = dir .. "/root" }
  end)
  lazy_teardown(function()
    teardown()
    if dir and dir:match("^/tmp/luring%-test%.") then os.execute("rm -rf " .. helper.shquote(dir)) end
  end)

  it("serves files through the cache (MISS then HIT)", function()
    local r1 = get(srv, "/c/main/files/hello.txt")
    assert.are.equal(200, r1.status, describe_res(r1))
    assert.are.equal("MISS", r1.headers["x-cache"])
    assert.are.equal("hello from a file\n", r1.body)
    local r2 = get(srv, "/c/main/files/hello.txt")
    assert.are.equal("HIT", r2.headers["x-cache"])
    assert.are.equal("hello from a file\n", r2.body)
    local r3 = get(srv, "/c/main/files/sub/inner.txt")
    assert.are.equal(200, r3.status)
    assert.are.equal("inner file\n", r3.body)
  end)

  it("404 for a missing file, not cached", function()
    for _ = 1, 2 do
      local r = get(srv, "/c/main/files/missing.txt")
      assert.are.equal(404, r.status, describe_res(r))
      assert.are_not.equal("HIT", r.headers["x-cache"])
    end
    local r = get(srv, "/c/main/files/sub")     -- a directory
    assert.are.equal(404, r.status, describe_res(r))
  end)

  it("no path traversal out of the root", function()
    for _, p in ipairs({ "/../secret.txt", "/sub/../../secret.txt", "/..", "/sub/..",
                         "/%2e%2e/secret.txt", "/sub/../hello.txt/../../secret.txt" }) do
      local c = helper.connect(srv:port())
      c:write(helper.request("GET", "/c/main/files" .. p))
      local r, err = c:read_response()
      c:close()
      if r then
        assert.is_truthy(r.status == 400 or r.status == 404,
                         ("GET %s -> %d\n%s"):format(p, r.status, describe_res(r)))
        assert.is_falsy(r.body:find("top secret", 1, true), "secret served for " .. p)
      else
        assert.is_truthy(tostring(err):find("closed", 1, true), p .. ": " .. tostring(err))
      end
    end
    assert.is_true(srv:alive())
  end)
end)

---------------------------------------------------------------------------
-- 10. origin:fetch
---------------------------------------------------------------------------

describe("origin:fetch", function()
  local ngx, srv

  lazy_setup(function()
    ngx, srv = start_pair{ files = { ["hdr/h.txt"] = "with a header\n" } }
  end)
  lazy_teardown(teardown)

  it("returns status, lowercased headers and body inside a handler; not cached", function()
    for _ = 1, 2 do
      local r = get(srv, "/raw/o/hdr/h.txt")
      assert.are.equal(200, r.status, describe_res(r))
      assert.is_nil(r.headers["x-fetch-error"], r.raw_head)
      assert.are.equal("200", r.headers["x-origin-status"], r.raw_head)
      assert.are.equal("hello-origin", r.headers["x-origin-test"], r.raw_head)
      assert.are.equal("text/plain", r.headers["x-origin-type"], r.raw_head)
      assert.are.equal("string", r.headers["x-body-type"])
      assert.are.equal("with a header\n", r.body)
      local names = r.headers["x-origin-names"]
      assert.are.equal(names:lower(), names, "header names not lowercased: " .. names)
      assert.is_nil(r.headers["x-cache"])
    end
    assert.are.equal(2, ngx:wait_count("/hdr/h.txt", 2, 3, 0.1))
  end)

  it("gives the origin's status for a 404 and nil, err when the origin is down", function()
    local r = get(srv, "/raw/o/static/missing.txt")
    assert.are.equal("404", r.headers["x-origin-status"], describe_res(r))
    assert.is_truthy(r.body:find("404", 1, true))
    local r2 = get(srv, "/raw/down/static/x.txt")
    assert.are.equal(200, r2.status)
    assert.is_truthy(r2.headers["x-fetch-error"], describe_res(r2))
    assert.are.equal("error", r2.body)
    -- the server still serves normally
    assert.are.equal("200", get(srv, "/raw/o/hdr/h.txt").headers["x-origin-status"])
  end)
end)

---------------------------------------------------------------------------
-- 11. keep-alive pool
---------------------------------------------------------------------------

describe("origin keep-alive pool", function()
  local ngx, srv
  local files = {}
  for i = 1, 8 do files["ka/" .. i .. ".txt"] = "keepalive object " .. i .. "\n" end

  lazy_setup(function()
    ngx, srv = start_pair{ files = files }
  end)
  lazy_teardown(teardown)

  it("reuses connections for sequential misses", function()
    for i = 1, 5 do
      local r = get(srv, "/c/main/o/ka/" .. i .. ".txt")
      assert.are.equal(200, r.status)
      assert.are.equal("MISS", r.headers["x-cache"])
      assert.are.equal("keepalive object " .. i .. "\n", r.body)
    end
    local os_ = origin_stats(srv, "o")
    print(("\n[cache keepalive] requests %d connects %d reused %d idle %d")
      :format(os_.requests, os_.connects, os_.reused, os_.idle))
    assert.are.equal(5, os_.requests)
    assert.is_true(os_.reused > 0, "reused " .. os_.reused)
    assert.is_true(os_.connects < 5, "connects " .. os_.connects)
    -- nginx agrees: fewer connections than requests
    ngx:wait_count("/ka/5.txt", 1, 3)
    local conns = {}
    local nconn = 0
    for _, e in ipairs(ngx:log_entries()) do
      if e.uri:match("^/ka/") and not conns[e.conn] then conns[e.conn] = true nconn = nconn + 1 end
    end
    assert.is_true(nconn < 5, nconn .. " nginx connections for 5 requests")
  end)

  it("survives the origin closing idle connections (keepalive_timeout 1s)", function()
    helper.sleep(1.5)
    local before = origin_stats(srv, "o")
    for i = 6, 8 do
      local r = get(srv, "/c/main/o/ka/" .. i .. ".txt")
      assert.are.equal(200, r.status, describe_res(r))
      assert.are.equal("MISS", r.headers["x-cache"])
      assert.are.equal("keepalive object " .. i .. "\n", r.body)
    end
    local after = origin_stats(srv, "o")
    print(("\n[cache keepalive] after idle close: idle before %d, connects %d -> %d, errors %d -> %d")
      :format(before.idle, before.connects, after.connects, before.errors, after.errors))
    assert.are.equal(before.errors, after.errors)
    assert.is_true(after.connects > before.connects, "no new connection after nginx closed the idle ones")
  end)
end)

---------------------------------------------------------------------------
-- 12. client disconnects during a fill
---------------------------------------------------------------------------

describe("cache: client disconnects while subscribed", function()
  local ngx, srv

  lazy_setup(function()
    ngx, srv = start_pair()
  end)
  lazy_teardown(teardown)

  local function wait_fills(n)
    return helper.wait_until(function() return cache_stats(srv, "main").fills >= n end, 4, 0.05)
  end

  it("after the head: the fill completes and the next request is a HIT", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/c/main/o/slowfill/1"))
    local head = c:read_until("\r\n\r\n", now() + 3)
    assert.is_truthy(head)
    assert.is_truthy(head:find("X-Cache: MISS", 1, true), head)
    c:abort()                                    -- RST while the fill waits for "b"
    assert.is_truthy(wait_fills(1), "fill did not complete")
    local r = get(srv, "/c/main/o/slowfill/1")
    assert.are.equal("HIT", r.headers["x-cache"], describe_res(r))
    assert.are.equal("a\nb\n", r.body)
    assert.are.equal(1, ngx:count("/slowfill/1"))
  end)

  it("before the head: the fill completes and the next request is a HIT", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/c/main/o/latehead/1"))
    helper.sleep(0.15)
    c:close()
    assert.is_truthy(wait_fills(2), "fill did not complete")
    local r = get(srv, "/c/main/o/latehead/1")
    assert.are.equal("HIT", r.headers["x-cache"], describe_res(r))
    assert.are.equal("late\n", r.body)
  end)

  it("the starter leaves, a coalesced client still gets the whole body", function()
    local a = helper.connect(srv:port())
    a:write(helper.request("GET", "/c/main/o/slowfill/2"))
    assert.is_truthy(a:read_until("\r\n\r\n", now() + 3))
    local b = helper.connect(srv:port())
    b:write(helper.request("GET", "/c/main/o/slowfill/2"))
    helper.sleep(0.1)
    a:abort()
    local rb, err = b:read_response({ timeout = 5 })
    b:close()
    assert.is_truthy(rb, err)
    assert.are.equal("COALESCED", rb.headers["x-cache"])
    assert.are.equal("a\nb\n", rb.body)
    assert.are.equal("HIT", get(srv, "/c/main/o/slowfill/2").headers["x-cache"])
    assert.is_true(srv:alive())
    assert.is_nil(helper.crash_report(srv:stderr()))
  end)
end)
