-- The access log (issue 14, point 1): luring.access_log{ path, format }
-- writes one line per request when the request is over, through io_uring,
-- buffered per worker (flushed at 64 KiB and on the 100 ms tick); SIGUSR1
-- reopens the file.  The origin is a real nginx that echoes the
-- X-Request-Id it received, so the id in the log, the one the origin saw
-- and req.id in Lua can be compared.
local helper = require "helper"
local origin = require "origin"
local socket = require "socket"

local LOCATIONS = [[
    location / {
      add_header Cache-Control "max-age=60" always;
      echo "rid=$http_x_request_id";
    }
    location /slow/ {
      add_header Cache-Control "max-age=60" always;
      echo_sleep 0.3;
      echo "rid=$http_x_request_id";
    }
    location /r/ {
      expires 1s;
    }
    location /trace/ {
      echo "trace=$http_x_trace rid=$http_x_request_id";
    }
    location /nocache/ {
      add_header Cache-Control "no-store" always;
      echo "rid=$http_x_request_id";
    }
    location /stream/ {
      echo_sleep 0.2;
      echo "part1";
      echo_flush;
      echo_sleep 1;
      echo "part2";
    }
]]

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
luring.access_log{ path = "@LOG@", format = @FORMAT@ }
local o = luring.origin{ name = "o", url = "@ORIGIN@", keepalive = 16 }
local c = luring.cache{ name = "main", ttl = 60, client_no_cache = "revalidate" }
app:get("/id/*", function(req)
  return 200, { ["Content-Type"] = "text/plain" }, "id=" .. req.id .. "\n"
end)
app:get("/sleep/*", function(req)
  luring.sleep(500)
  return 200, {}, "late\n"
end)
app:get("/said/*", function(req)
  luring.log("info", "req.id=" .. req.id)
  return c:fetch(req, req.path, o, "/nocache" .. req.path)
end)
app:get("/proxy/*", function(req) return luring.proxy(req, o) end)
app:get("/stream/*", function(req) return luring.proxy(req, o) end)
app:route("*", "/*", function(req)
  return c:fetch(req, req.path, o, req.path)
end)
]]

local LURING_RE = '^(%S+) %- %- %[([^%]]+)%] "([^"]*)" (%d+) (%d+) "([^"]*)" "([^"]*)" '
  .. "(%S+) (%S+) (%S+) (%d+) (%d+) (%x+)$"

local function parse(line)
  local addr, time, req, status, body, ref, ua, cs, ups, upt, rt, bytes, id = line:match(LURING_RE)
  if not addr then return nil end
  return { addr = addr, time = time, request = req, status = tonumber(status),
           body_bytes = tonumber(body), referer = ref, ua = ua, cache = cs,
           up_status = ups, up_time = upt, rtime = tonumber(rt), bytes = tonumber(bytes),
           id = id }
end

local function lines_of(path)
  local t = {}
  local f = io.open(path, "rb")
  if not f then return t end
  for l in f:read("*a"):gmatch("([^\n]*)\n") do t[#t + 1] = l end
  f:close()
  return t
end

-- Wait (bounded) until the log holds at least n lines.
local function wait_lines(path, n, timeout)
  local t
  helper.wait_until(function()
    t = lines_of(path)
    return #t >= n
  end, timeout or 5)
  return lines_of(path)
end

local function tmpdir()
  local p = os.tmpname()
  os.remove(p)
  os.execute("mkdir -p " .. p)
  return p
end

local function start(ngx, dir, format, opts)
  local log = dir == "stderr" and dir or dir .. "/access.log"
  if dir ~= "stderr" then os.execute("mkdir -p " .. dir) end
  local src = SCRIPT:gsub("@ORIGIN@", ngx:url()):gsub("@LOG@", log)
                    :gsub("@FORMAT@", function() return format end)
  return helper.start(src, opts), log
end

-- ThreadSanitizer delivers a signal only when the thread next enters a
-- function it intercepts: the watchdog's signal never reaches a worker
-- spinning in pure Lua, so lua_budget can't be seen working under it.
local tsan = helper.tsan

local function get(port, path, headers)
  return helper.get(port, path, headers)
end

describe("luring.access_log", function()
  local ngx, dir
  lazy_setup(function()
    ngx = origin.start{ locations = LOCATIONS, files = { ["r/f.txt"] = "stored\n" } }
    dir = tmpdir()
  end)
  lazy_teardown(function()
    origin.teardown()
    os.execute("rm -rf " .. dir)
  end)

  describe('format = "luring"', function()
    local srv, log
    lazy_setup(function()
      srv, log = start(ngx, dir .. "/l", '"luring"')
    end)
    lazy_teardown(function() srv:stop() end)

    it("logs MISS, HIT, PASS and the upstream status and time of the request that fetched", function()
      local r1 = get(srv:port(), "/a", { ["User-Agent"] = "t/1", Referer = "http://r.test/" })
      local r2 = get(srv:port(), "/a")
      local r3 = helper.connect(srv:port())
      r3:write(helper.request("POST", "/a", nil, "x"))
      local res3 = r3:read_response()
      r3:close()
      assert.are.equal("MISS", r1.headers["x-cache"])
      assert.are.equal("HIT", r2.headers["x-cache"])
      assert.are.equal("PASS", res3.headers["x-cache"])
      local t = wait_lines(log, 3)
      assert.are.equal(3, #t)
      local a, b, c = parse(t[1]), parse(t[2]), parse(t[3])
      assert.is_truthy(a and b and c, table.concat(t, "\n"))
      assert.are.equal("127.0.0.1", a.addr)
      assert.are.equal("GET /a HTTP/1.1", a.request)
      assert.are.equal(200, a.status)
      assert.are.equal("t/1", a.ua)
      assert.are.equal("http://r.test/", a.referer)
      assert.are.equal("-", b.ua)
      assert.are.equal("MISS", a.cache)
      assert.are.equal("200", a.up_status)
      assert.is_truthy(tonumber(a.up_time) > 0)
      assert.is_truthy(a.rtime >= tonumber(a.up_time))
      -- the origin's body had no length: sent chunked, framing counted
      -- in $body_bytes_sent as nginx counts it
      assert.are.equal("chunked", r1.headers["transfer-encoding"])
      assert.is_truthy(a.body_bytes > #r1.body)
      assert.are.equal(#r1.raw_head + 4 + a.body_bytes, a.bytes)
      assert.are.equal(#r2.body, b.body_bytes)
      assert.are.equal("HIT", b.cache)
      assert.are.equal("-", b.up_status)
      assert.are.equal("-", b.up_time)
      assert.are.equal(#r2.raw_head + 4 + #r2.body, b.bytes)
      assert.are.equal("PASS", c.cache)
      assert.are.equal("POST /a HTTP/1.1", c.request)
      assert.are.equal("200", c.up_status)
      -- the time is nginx's: 10/Oct/2000:13:55:36 +0000
      assert.is_truthy(a.time:match("^%d%d/%a%a%a/%d%d%d%d:%d%d:%d%d:%d%d [+-]%d%d%d%d$"))
    end)

    it("logs COALESCED for requests that joined a fill", function()
      local n0 = #lines_of(log)
      local res = helper.burst(srv:port(), 3, "/slow/c", 10)
      for i = 1, 3 do assert.are.equal(200, res[i].status) end
      local t = wait_lines(log, n0 + 3)
      local seen = {}
      for i = n0 + 1, #t do
        local e = parse(t[i])
        seen[e.cache] = (seen[e.cache] or 0) + 1
        assert.are.equal(200, e.status)
        if e.cache == "COALESCED" then assert.are.equal("-", e.up_status) end
      end
      assert.are.same({ MISS = 1, COALESCED = 2 }, seen)
    end)

    it("logs REVALIDATED with the origin's 304, then STALE without an upstream (RFC 9111 §4.3, RFC 5861)", function()
      local n0 = #lines_of(log)
      assert.are.equal("MISS", get(srv:port(), "/r/f.txt").headers["x-cache"])
      local r = get(srv:port(), "/r/f.txt", { ["Cache-Control"] = "no-cache" })
      assert.are.equal("REVALIDATED", r.headers["x-cache"])
      socket.sleep(1.2)
      assert.are.equal("STALE", get(srv:port(), "/r/f.txt").headers["x-cache"])
      local t = wait_lines(log, n0 + 3)
      local a, b, c = parse(t[n0 + 1]), parse(t[n0 + 2]), parse(t[n0 + 3])
      assert.are.same({ "MISS", "200" }, { a.cache, a.up_status })
      assert.are.same({ "REVALIDATED", "304", 200 }, { b.cache, b.up_status, b.status })
      assert.are.same({ "STALE", "-", 200 }, { c.cache, c.up_status, c.status })
      assert.are.equal(#r.raw_head + 4 + 7, b.bytes)
    end)

    it("puts req.id in the log and sends it to the origin as X-Request-Id", function()
      local n0 = #lines_of(log)
      local r = get(srv:port(), "/id/x")
      local id = r.body:match("^id=(%x+)\n$")
      assert.are.equal(16, #id)
      local m = get(srv:port(), "/nocache/y", { ["X-Request-Id"] = "client-chosen" })
      local sent = m.body:match("rid=(%S+)")
      local p = get(srv:port(), "/proxy/z", { ["X-Request-Id"] = "client-chosen" })
      local psent = p.body:match("rid=(%S+)")
      local t = wait_lines(log, n0 + 3)
      assert.are.equal(id, parse(t[n0 + 1]).id)
      -- the client's X-Request-Id is replaced by luring's (nginx's $request_id)
      assert.are.equal(parse(t[n0 + 2]).id, sent)
      assert.are.equal(parse(t[n0 + 3]).id, psent)
      assert.are_not.equal(id, sent)
      assert.are_not.equal(sent, psent)
    end)

    it("ties one request's req.id, its log line and the X-Request-Id its origin got", function()
      local n0 = #lines_of(log)
      local r = get(srv:port(), "/said/1")
      local sent = r.body:match("rid=(%x+)")
      local t = wait_lines(log, n0 + 1)
      assert.are.equal(16, #sent)
      assert.are.equal(sent, parse(t[n0 + 1]).id)
      assert.is_truthy(srv:wait_stderr("req.id=" .. sent, 5))
    end)

    it("gives pipelined requests one line each, in order", function()
      local n0 = #lines_of(log)
      local c = helper.connect(srv:port())
      local req = ""
      for i = 1, 5 do req = req .. helper.request("GET", "/id/p" .. i) end
      c:write(req)
      for _ = 1, 5 do assert.are.equal(200, c:read_response().status) end
      c:close()
      local t = wait_lines(log, n0 + 5)
      assert.are.equal(n0 + 5, #t)
      for i = 1, 5 do
        assert.are.equal("GET /id/p" .. i .. " HTTP/1.1", parse(t[n0 + i]).request)
      end
    end)

    it("logs 499 for a client that closes before its response", function()
      local n0 = #lines_of(log)
      local c = helper.connect(srv:port())
      c:write(helper.request("GET", "/sleep/x"))
      socket.sleep(0.1)
      -- a reset, not a FIN: a half-closed client still gets its answer
      c.sock:setoption("linger", { on = true, timeout = 0 })
      c:close()
      local t = wait_lines(log, n0 + 1)
      local e = parse(t[n0 + 1])
      assert.are.equal(499, e.status)
      assert.are.equal(0, e.bytes)
      assert.are.equal("GET /sleep/x HTTP/1.1", e.request)
      assert.are.equal("127.0.0.1", e.addr)
    end)

    it("logs the status and the bytes sent of a response cut short by the client", function()
      local n0 = #lines_of(log)
      local c = helper.connect(srv:port())
      c:write(helper.request("GET", "/stream/x"))
      socket.sleep(0.5)
      c.sock:setoption("linger", { on = true, timeout = 0 })
      c:close()
      local t = wait_lines(log, n0 + 1, 5)
      local e = parse(t[n0 + 1])
      assert.are.equal(200, e.status)
      assert.is_truthy(e.body_bytes > 0 and e.body_bytes < 20, t[n0 + 1])
    end)

    it("escapes quotes and control bytes in request strings as nginx does", function()
      local n0 = #lines_of(log)
      get(srv:port(), "/id/e", { ["User-Agent"] = 'a"b\\c\233' })
      local t = wait_lines(log, n0 + 1)
      assert.are.equal('a\\x22b\\x5Cc\\xE9', parse(t[n0 + 1]).ua)
    end)
  end)

  it("takes a format string with $variables", function()
    local srv, log = start(ngx, dir .. "/f", '"$request_method $request_uri $status $cache_status $http_x_test [$request_id] ${worker}."')
    local r = get(srv:port(), "/id/fmt", { ["X-Test"] = "yes" })
    local id = r.body:match("id=(%x+)")
    local t = wait_lines(log, 1)
    srv:stop()
    assert.are.same({ "GET /id/fmt 200 - yes [" .. id .. "] 0." }, t)
  end)

  it("takes a Lua function", function()
    local srv, log = start(ngx, dir .. "/fn", [[function(rec)
      return rec.method .. " " .. rec.uri .. " " .. rec.status .. " "
        .. (rec.cache_status or "-") .. " " .. rec.request_id .. " "
        .. (rec.headers["x-test"] or "none")
    end]])
    local r = get(srv:port(), "/id/fn", { ["X-Test"] = "v" })
    get(srv:port(), "/m1")
    local id = r.body:match("id=(%x+)")
    local t = wait_lines(log, 2)
    srv:stop()
    assert.are.equal("GET /id/fn 200 - " .. id .. " v", t[1])
    assert.is_truthy(t[2]:match("^GET /m1 200 MISS %x+ none$"), t[2])
  end)

  it("runs the Lua function outside the request: it may call luring.log", function()
    local srv, log = start(ngx, dir .. "/fnlog", [[function(rec)
      luring.log("info", "fmt saw " .. rec.uri)
      return rec.uri .. " " .. rec.request_time_us
    end]])
    local c = helper.connect(srv:port())
    local req = ""
    for i = 1, 3 do req = req .. helper.request("GET", "/id/q" .. i) end
    c:write(req)
    for _ = 1, 3 do assert.are.equal(200, c:read_response().status) end
    c:close()
    local t = wait_lines(log, 3)
    assert.is_truthy(srv:wait_stderr("fmt saw /id/q3", 5))
    srv:stop()
    for i = 1, 3 do assert.is_truthy(t[i]:match("^/id/q" .. i .. " %d+$"), t[i]) end
  end)

  ;(tsan() and pending or it)("interrupts a Lua function over lua_budget and falls back to the luring format", function()
    local d = dir .. "/loop"
    os.execute("mkdir -p " .. d)
    local src = ([[
luring.config{ lua_budget = 0.2 }
local app = luring.app()
app:listen("@LISTEN@")
luring.access_log{ path = "%s/access.log", format = function(rec)
  while true do end
end }
app:get("/*", function(req) return 200, {}, "ok\n" end)
]]):format(d)
    local srv = helper.start(src)
    get(srv:port(), "/spin")
    local t = wait_lines(d .. "/access.log", 1, 10)
    assert.are.equal(200, get(srv:port(), "/after").status)
    t = wait_lines(d .. "/access.log", 2, 10)
    srv:stop()
    assert.are.equal("GET /spin HTTP/1.1", parse(t[1]).request)
    assert.are.equal("GET /after HTTP/1.1", parse(t[2]).request)
    assert.is_truthy(srv:stderr():find("lua budget exceeded", 1, true), srv:stderr())
  end)

  it("falls back to the luring format when the Lua function fails, logging it once", function()
    local srv, log = start(ngx, dir .. "/bad", [[function(rec) error("boom") end]])
    get(srv:port(), "/id/1")
    get(srv:port(), "/id/2")
    local t = wait_lines(log, 2)
    srv:stop()
    assert.is_truthy(parse(t[1]) and parse(t[2]), table.concat(t, "\n"))
    local _, n = srv:stderr():gsub("boom", "")
    assert.are.equal(1, n)
  end)

  it("fails to start on an unknown variable", function()
    local d = dir .. "/u"
    os.execute("mkdir -p " .. d)
    local src = SCRIPT:gsub("@ORIGIN@", ngx:url()):gsub("@LOG@", d .. "/a.log")
                      :gsub("@FORMAT@", '"$nope"')
    local ok, err = pcall(helper.start, src)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("unknown variable $nope", 1, true), err)
  end)

  it("reopens the file on SIGUSR1 after a rename: nothing lost (logrotate)", function()
    local srv, log = start(ngx, dir .. "/rot", '"luring"', { args = { "--workers", "2" } })
    for i = 1, 20 do get(srv:port(), "/id/before" .. i) end
    wait_lines(log, 20)
    assert.is_true(os.rename(log, log .. ".1"))
    for i = 1, 5 do get(srv:port(), "/id/between" .. i) end
    os.execute("kill -USR1 " .. srv:pid())
    -- each worker reopens on its own loop (as nginx's do): the rotation is
    -- complete once both have said so
    assert.is_true(helper.wait_until(function()
      local _, n = srv:stderr():gsub("access log reopened", "")
      return n == 2
    end, 5), srv:stderr())
    assert.is_truthy(io.open(log))
    for i = 1, 20 do get(srv:port(), "/id/after" .. i) end
    local new = wait_lines(log, 20)
    local old = lines_of(log .. ".1")
    srv:stop()
    assert.are.equal(25, #old)
    assert.are.equal(20, #new)
    for _, l in ipairs(old) do assert.is_truthy(l:find("/id/before", 1, true) or l:find("/id/between", 1, true)) end
    for _, l in ipairs(new) do assert.is_truthy(l:find("/id/after", 1, true)) end
  end)

  it("keeps every line whole with 2 workers writing at once", function()
    local srv, log = start(ngx, dir .. "/conc", '"luring"', { args = { "--workers", "2" } })
    local n, conns = 400, 20
    local ua = ("u"):rep(300)
    for _ = 1, n / conns do
      local res = helper.burst(srv:port(), conns, "/id/c", 10, { ["User-Agent"] = ua })
      for i = 1, conns do assert.are.equal(200, res[i].status) end
    end
    local t = wait_lines(log, n)
    local workers = {}
    srv:stop()
    assert.are.equal(n, #t)
    local ids = {}
    for _, l in ipairs(t) do
      local e = parse(l)
      assert.is_truthy(e, l)
      assert.are.equal(ua, e.ua)
      assert.is_nil(ids[e.id])
      ids[e.id] = true
      workers[e.id:sub(1, 2)] = true
    end
    -- the worker is the id's top byte: both wrote
    assert.is_truthy(workers["00"] and workers["01"])
  end)

  it("is written when the buffer passes 64 KiB, before the tick", function()
    local srv, log = start(ngx, dir .. "/big", '"$request_uri"')
    local c = helper.connect(srv:port())
    local path = "/id/" .. ("x"):rep(1000)
    for _ = 1, 70 do
      c:write(helper.request("GET", path))
      assert.are.equal(200, c:read_response().status)
    end
    c:close()
    local t = wait_lines(log, 70)
    srv:stop()
    assert.are.equal(70, #t)
  end)

  it("follows a reload (SIGHUP): off, then on, then another path and format", function()
    local d = dir .. "/reload"
    os.execute("mkdir -p " .. d)
    local body = [[
local app = luring.app()
app:listen("@LISTEN@")
%s
app:get("/*", function(req) return 200, {}, "ok\n" end)
]]
    local srv = helper.start(body:format(""))
    local script = srv:script_path()
    local function reload(cfg, n)
      local f = assert(io.open(script, "w"))
      f:write((body:format(cfg):gsub("@LISTEN@", srv:addr())))
      f:close()
      os.execute("kill -HUP " .. srv:pid())
      local _, k
      assert.is_true(helper.wait_until(function()
        _, k = srv:stderr():gsub("reloaded", "")
        return k >= n
      end, 5))
    end
    get(srv:port(), "/off")
    reload(('luring.access_log{ path = "%s/a.log", format = "A $request_uri" }'):format(d), 1)
    get(srv:port(), "/on")
    reload(('luring.access_log{ path = "%s/b.log", format = "B $request_uri $status" }'):format(d), 2)
    get(srv:port(), "/moved")
    local a = wait_lines(d .. "/a.log", 1)
    local b = wait_lines(d .. "/b.log", 1)
    srv:stop()
    assert.are.same({ "A /on" }, a)
    assert.are.same({ "B /moved 200" }, b)
  end)

  it("goes to stderr", function()
    local srv = start(ngx, "stderr", '"$request_uri $status stderr-line"')
    local src = srv
    get(src:port(), "/id/se")
    assert.is_truthy(src:wait_stderr("/id/se 200 stderr-line", 5))
    src:stop()
  end)
end)

describe("luring.config{ request_id_header }", function()
  local ngx
  lazy_setup(function() ngx = origin.start{ locations = LOCATIONS } end)
  lazy_teardown(origin.teardown)

  it("names the field, or false sends none", function()
    for _, case in ipairs({ { '"X-Trace"', "trace=%x+ rid=mine\n" },
                            { "false", "trace= rid=mine\n" } }) do
      local src = ([[
luring.config{ request_id_header = %s }
local app = luring.app()
app:listen("@LISTEN@")
local o = luring.origin{ name = "o", url = "@ORIGIN@" }
app:get("/*", function(req) return luring.proxy(req, o) end)
]]):format(case[1]):gsub("@ORIGIN@", ngx:url())
      local srv = helper.start(src)
      local r = get(srv:port(), "/trace/", { ["X-Request-Id"] = "mine" })
      srv:stop()
      -- the client's X-Request-Id passes as it is when luring sends its
      -- id under another name, or none
      assert.is_truthy(r.body:match("^" .. case[2] .. "$"), r.body)
    end
  end)

  it("is checked: a field name or false", function()
    local src = [[luring.config{ request_id_header = "bad name" }
local app = luring.app()
app:listen("@LISTEN@")
app:get("/", function() return 200, {}, "x" end)]]
    local ok, err = pcall(helper.start, src)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("request_id_header must be", 1, true), err)
  end)
end)
