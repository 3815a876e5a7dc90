-- Cache poisoning and request forging through what fills now forward (the
-- client's Host and fields, core/pass.c) and through Vary (core/vary.c):
-- a hostile client or origin must not get a response stored for other
-- clients that they would not get from the origin themselves, nor make
-- luring send the origin anything but one well-formed request per fill.
-- Origins: a real nginx echoing what it received ($http_*), and
-- raw_origin.py for responses nginx can't be made to send.
local helper = require "helper"
local origin = require "origin"
local raw_origin = require "raw_origin"
local socket = require "socket"

local LOCATIONS = [[
    location /page/ {
      add_header Cache-Control "max-age=60";
      echo "host=$http_host";
    }
    location /cors/ {
      add_header Cache-Control "max-age=60";
      add_header Vary "Origin";
      echo "origin=$http_origin";
    }
    location /ip/ {
      add_header Cache-Control "max-age=60";
      add_header Vary "X-Forwarded-For";
      echo "xff=$http_x_forwarded_for";
    }
    location /echo/ {
      echo "host=$http_host";
    }
]]

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local o = luring.origin{ name = "o", url = "@ORIGIN@" }
local r = luring.origin{ name = "r", url = "@RAW@" }
local c = luring.cache{ name = "c" }
local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end
app:get("/cors/*", function(req) return c:fetch(req, req.path, o) end)
app:get("/ip/*", function(req) return c:fetch(req, req.path, o) end)
app:get("/echo/*", function(req) return c:fetch(req, req.path, o) end)
app:get("/bomb/*", function(req) return c:fetch(req, req.path, r, "/bomb") end)
app:get("/aged", function(req) return c:fetch(req, req.path, r) end)
app:get("/young", function(req) return c:fetch(req, req.path, r) end)
app:get("/gz", function(req) return c:fetch(req, req.path, r) end)
app:get("/hidden_age", function(req) return c:fetch(req, req.path, r) end)
-- a script that builds the origin path from decoded client input
app:get("/decoded/*", function(req)
  return c:fetch(req, "k", r, "/" .. unescape(req.params["*"]))
end)
app:get("/decoded-pass/*", function(req)
  return c:fetch(req, "k", r, "/" .. unescape(req.params["*"]))
end)
app:get("/direct/*", function(req)
  local st, _, body = r:fetch("/" .. unescape(req.params["*"]))
  return st, nil, body
end)
]]

-- Vary: a,a,a,... filling most of a 64 KiB response head
local BOMB = "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nVary: "
  .. ("a,"):rep(30000) .. "a\r\nContent-Length: {len}\r\n\r\nbomb {id}"

local ngx, raw, srv, proxy

local function exchange(port, path, headers, version)
  local c = helper.connect(port)
  c:write(helper.request("GET", path, headers, nil, version))
  local res = assert(c:response{ timeout = 10 })
  c:close()
  return res
end

-- A connection from another loopback address (another client).
local function connect_from(src, port)
  local probe = helper.connect(port)
  local mt = getmetatable(probe)
  probe:close()
  local s = socket.tcp()
  s:settimeout(5)
  assert(s:bind(src, 0))
  assert(s:connect("127.0.0.1", port))
  s:setoption("tcp-nodelay", true)
  s:settimeout(0)
  return setmetatable({ sock = s, buf = "", closed = false, timeout = 5 }, mt)
end

local function rss_kb(pid)
  local s = helper.readfile("/proc/" .. math.floor(pid) .. "/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

describe("poisoning through fills and Vary", function()
  lazy_setup(function()
    ngx = origin.start{ locations = LOCATIONS }
    raw = raw_origin.start{ responses = { bomb = BOMB, ok = "HTTP/1.1 200 OK\r\n"
      .. "Cache-Control: max-age=60\r\nContent-Length: {len}\r\n\r\nok {id}",
      smuggled = "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\nsmuggled {id}",
      aged = "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nAge: 100000\r\n"
        .. "Content-Length: {len}\r\n\r\naged {id}",
      hidden_age = "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nConnection: Age\r\n"
        .. "Age: 100000\r\nContent-Length: {len}\r\n\r\nhidden {id}",
      gz = "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Encoding: gzip\r\n"
        .. "Content-Length: {len}\r\n\r\ngz {id}",
      young = "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nAge: 30\r\n"
        .. "Content-Length: {len}\r\n\r\nyoung {id}" },
      delay = 0 }
    srv = helper.start((SCRIPT:gsub("@ORIGIN@", ngx:url()):gsub("@RAW@", raw:url())))
    proxy = helper.start(nil, { file = helper.repo_root() .. "/examples/proxy.lua",
                                env = { ORIGIN = ngx:url() } })
  end)
  lazy_teardown(function()
    raw_origin.stop_all()
    origin.teardown()
  end)

  it("examples/proxy.lua: a client's Host does not choose what other hosts get (the key has the Host, as Varnish's vcl_hash)", function()
    -- the origin answers by Host (name-based hosts, absolute links);
    -- fills send the client's Host (RFC 9110 §7.2, §7.6)
    local evil = exchange(proxy:port(), "/page/a", { Host = "evil.test" })
    assert.are.equal("host=evil.test\n", evil.body)
    local victim = exchange(proxy:port(), "/page/a", { Host = "www.test" })
    assert.are.equal("host=www.test\n", victim.body)
    assert.are.equal("MISS", victim.headers["x-cache"])
    -- each host's response is still cached, names compared case-blind
    local again = exchange(proxy:port(), "/page/a", { Host = "WWW.test" })
    assert.are.equal("HIT", again.headers["x-cache"])
    assert.are.equal("host=www.test\n", again.body)
  end)

  it("a field the client's Connection names is recorded for Vary as absent, as the fill sent it (RFC 9110 §7.6.1, RFC 9111 §4.1)", function()
    -- the attacker: Origin named by Connection, so the fill sends none and
    -- nginx answers the variant without Origin
    local a = exchange(srv:port(), "/cors/1", { Origin = "https://app.test",
                                               Connection = "Origin" })
    assert.are.equal("origin=\n", a.body)
    -- a browser of app.test must get its own variant, not that one
    local v = exchange(srv:port(), "/cors/1", { Origin = "https://app.test" })
    assert.are.equal("origin=https://app.test\n", v.body)
    assert.are.equal("MISS", v.headers["x-cache"])
    -- the attacker's response still serves requests without Origin
    exchange(srv:port(), "/cors/2", { Origin = "https://app.test", Connection = "Origin" })
    local n = exchange(srv:port(), "/cors/2")
    assert.are.equal("origin=\n", n.body)
    assert.are.equal("HIT", n.headers["x-cache"])
  end)

  it("Vary naming X-Forwarded-For (whose value a fill makes) is not shared: one client's response never reaches another (RFC 9111 §4.1)", function()
    local function get_from(src)
      local c = connect_from(src, srv:port())
      c:write(helper.request("GET", "/ip/1"))
      local res = assert(c:response{ timeout = 10 })
      c:close()
      return res
    end
    local one = get_from("127.0.0.2")
    assert.are.equal("xff=127.0.0.2\n", one.body)
    local two = get_from("127.0.0.3")
    assert.are.equal("xff=127.0.0.3\n", two.body)
    assert.are.equal("MISS", two.headers["x-cache"])
  end)

  it("Connection: Host does not take the Host out of a fill (RFC 9112 §3.2: an HTTP/1.1 request has one)", function()
    local res = exchange(srv:port(), "/echo/1", { Host = "www.test", Connection = "Host" })
    assert.are.equal(200, res.status)
    assert.are.equal("host=www.test\n", res.body)
  end)

  it("a Vary repeating a name does not make an object hold its request's values thousands of times", function()
    local pid = srv:pid()
    local before = rss_kb(pid)
    local value = ("x"):rep(8000)
    local r1 = exchange(srv:port(), "/bomb/1", { a = value })
    assert.are.equal(200, r1.status)
    assert.matches("^bomb %d+$", r1.body)
    local r2 = exchange(srv:port(), "/bomb/1", { a = value })
    -- not shared: its values would take more than vary.c keeps
    assert.are.equal("MISS", r2.headers["x-cache"])
    if not helper.sanitized() then
      local grown = rss_kb(pid) - before
      assert(grown < 32 * 1024, ("RSS grew by %d KiB"):format(grown))
    end
  end)

  it("a fill's path from decoded client input can't split the origin request (RFC 9112 §3: the request-target has no CR, LF or SP)", function()
    local inj = "ok%20HTTP/1.1%0d%0aHost:%20x%0d%0a%0d%0aGET%20/smuggled"
    for _, case in ipairs{ { "/decoded/" }, { "/decoded-pass/", { Cookie = "c=1" } },
                           { "/direct/" } } do
      local res = exchange(srv:port(), case[1] .. inj, case[2])
      assert.are.equal(500, res.status, case[1])
    end
    socket.sleep(0.2)
    assert.are.equal(0, raw:count("/smuggled"))
    assert.are.equal(0, raw:count("/ok"))
    -- a plain path still works
    assert.are.equal(200, exchange(srv:port(), "/direct/ok").status)
  end)
  it("a coded response (Content-Encoding) without Vary: Accept-Encoding reaches only requests with the fill's Accept-Encoding (RFC 9110 §8.4, §12.5.3)", function()
    -- fills forward the client's Accept-Encoding; an origin that compresses
    -- without saying Vary (nginx: gzip on, gzip_vary off by default)
    local a = exchange(srv:port(), "/gz", { ["Accept-Encoding"] = "gzip, br" })
    assert.are.equal("gzip", a.headers["content-encoding"])
    local a2 = exchange(srv:port(), "/gz", { ["Accept-Encoding"] = "gzip, br" })
    assert.are.equal("HIT", a2.headers["x-cache"])
    assert.are.equal(a.body, a2.body)
    -- a client that accepts no coding never gets that body from the cache
    local b = exchange(srv:port(), "/gz")
    assert.are.equal("MISS", b.headers["x-cache"])
    assert.are_not.equal(a.body, b.body)
  end)

  it("a response older than its lifetime (Age, from a cache upstream) is not stored as fresh (RFC 9111 §4.2.3, §5.1)", function()
    local a1 = exchange(srv:port(), "/aged")
    assert.are.equal(200, a1.status)
    local a2 = exchange(srv:port(), "/aged")
    assert.are.equal("MISS", a2.headers["x-cache"])
    assert.are_not.equal(a1.body, a2.body)
    -- nor when its Connection names Age (hop-by-hop, meant for luring: not
    -- forwarded, and what it said can't be ignored, RFC 9110 §7.6.1)
    exchange(srv:port(), "/hidden_age")
    assert.are.equal("MISS", exchange(srv:port(), "/hidden_age").headers["x-cache"])
    -- one with lifetime left is
    exchange(srv:port(), "/young")
    assert.are.equal("HIT", exchange(srv:port(), "/young").headers["x-cache"])
  end)

  -- RFC 9112 §3.2.2: a proxy (and an origin server) receiving an
  -- absolute-form target MUST ignore the Host field and use the target's
  -- authority; a proxy that forwards the request MUST generate Host from
  -- the target. Anything in front of luring that routes, filters or caches
  -- by the authority must agree with what the origin serves (nginx: the
  -- authority picks the server block; Varnish moves it into Host).
  it("an absolute-form target's authority is the Host the origin gets (RFC 9112 §3.2.2)", function()
    local c = helper.connect(srv:port())
    c:write("GET http://www.test/echo/abs HTTP/1.1\r\nHost: evil.test\r\n\r\n")
    local res = assert(c:response{ timeout = 10 })
    c:close()
    assert.are.equal("host=www.test\n", res.body)
  end)

  it("an HTTP/1.0 absolute-form request without Host: the authority is its Host (RFC 9112 §3.2.2)", function()
    local c = helper.connect(srv:port())
    c:write("GET http://old.test:8080/echo/abs10 HTTP/1.0\r\n\r\n")
    local res = assert(c:response{ timeout = 10 })
    c:close()
    assert.are.equal("host=old.test:8080\n", res.body)
  end)

  for _, t in ipairs{
    { "userinfo (RFC 9110 §4.2.4)", "http://user@www.test/echo/ui" },
    { "an empty host (RFC 9110 §4.2.1)", "http:///echo/empty" },
    { "a port without a host", "http://:80/echo/port" },
    { "a fragment in the authority", "http://www.test#x" },
  } do
    it("an absolute-form target with " .. t[1] .. " gets 400", function()
      local c = helper.connect(srv:port())
      c:write("GET " .. t[2] .. " HTTP/1.1\r\nHost: www.test\r\n\r\n")
      local res = assert(c:response{ timeout = 10 })
      c:close()
      assert.are.equal(400, res.status)
    end)
  end
end)
