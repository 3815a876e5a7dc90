-- luring.proxy(req, origin, { forwarded = true }): the RFC 7239 Forwarded
-- field (issue 11, point 2), off by default, beside X-Forwarded-For/-Proto
-- (on by default, as nginx recipes do).  The origin is nginx echoing the
-- fields it received; the client comes over 127.0.0.1 and over ::1.
local helper = require "helper"
local origin = require "origin"
local socket = require "socket"

local LOCATIONS = [[
    location / {
      echo "fwd=$http_forwarded";
      echo "xff=$http_x_forwarded_for";
      echo "xfp=$http_x_forwarded_proto";
    }
]]

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
app:listen("[::1]:@PORT6@")
local o = luring.origin{ name = "o", url = "@ORIGIN@" }
app:get("/plain/*", function(req) return luring.proxy(req, o) end)
app:get("/fwd/*", function(req) return luring.proxy(req, o, { forwarded = true }) end)
app:get("/only/*", function(req)
  return luring.proxy(req, o, { forwarded = true, x_forwarded_for = false,
                                x_forwarded_proto = false })
end)
app:get("/host/*", function(req)
  return luring.proxy(req, o, { forwarded = true, host = "inner.test" })
end)
]]

local ngx, srv, port6, Conn

local function echoed(res)
  local t = {}
  for k, v in res.body:gmatch("(%w+)=([^\n]*)") do t[k] = v end
  return t
end

local function get(raw_request, v6)
  local c
  if v6 then
    local s = socket.tcp6()
    s:settimeout(5)
    assert(s:connect("::1", port6))
    s:settimeout(0)
    -- helper.connect speaks IPv4 only: the same reader on an IPv6 socket
    c = setmetatable({ sock = s, buf = "", closed = false, timeout = 5 }, Conn)
  else
    c = helper.connect(srv:port())
  end
  c:write(raw_request)
  local res = c:response{ timeout = 5 }
  c:close()
  assert.are.equal(200, res.status)
  return echoed(res)
end

describe("luring.proxy forwarded = true (RFC 7239)", function()
  lazy_setup(function()
    ngx = origin.start{ locations = LOCATIONS }
    port6 = helper.free_port()
    srv = helper.start((SCRIPT:gsub("@ORIGIN@", ngx:url()):gsub("@PORT6@", port6)))
    local c = helper.connect(srv:port())
    Conn = getmetatable(c)
    c:close()
  end)
  lazy_teardown(origin.teardown)

  it("is off by default: a client's Forwarded passes as it is (RFC 7239 §4)", function()
    local e = get(helper.request("GET", "/plain/a"))
    assert.are.equal("", e.fwd)
    assert.are.equal("127.0.0.1", e.xff)
    e = get(helper.request("GET", "/plain/a", { Forwarded = "for=192.0.2.60" }))
    assert.are.equal("for=192.0.2.60", e.fwd)
  end)

  it("adds for, host and proto; X-Forwarded-* stay (RFC 7239 §5.2, §5.3, §5.4)", function()
    local e = get(helper.request("GET", "/fwd/a", { Host = "example.test" }))
    assert.are.equal("for=127.0.0.1;host=example.test;proto=http", e.fwd)
    assert.are.equal("127.0.0.1", e.xff)
    assert.are.equal("http", e.xfp)
  end)

  it("quotes a value that is not a token: a Host with a port (RFC 7239 §4)", function()
    local e = get(helper.request("GET", "/fwd/a", { Host = "example.test:8080" }))
    assert.are.equal('for=127.0.0.1;host="example.test:8080";proto=http', e.fwd)
  end)

  it("brackets and quotes an IPv6 client (RFC 7239 §6.1)", function()
    local e = get(helper.request("GET", "/fwd/a", { Host = "[::1]" }), true)
    assert.are.equal('for="[::1]";host="[::1]";proto=http', e.fwd)
    assert.are.equal("::1", e.xff)
  end)

  it("appends to the client's Forwarded fields as one list (RFC 7239 §4, §7.1)", function()
    local e = get(helper.request("GET", "/fwd/a", {
      { "Host", "h.test" },
      { "Forwarded", "for=192.0.2.60;proto=https;by=203.0.113.43" },
      { "Forwarded", 'for="[2001:db8:cafe::17]:4711"' },
    }))
    assert.are.equal('for=192.0.2.60;proto=https;by=203.0.113.43, '
                     .. 'for="[2001:db8:cafe::17]:4711", for=127.0.0.1;host=h.test;proto=http',
                     e.fwd)
  end)

  it("leaves host out when the client sent no Host; host is the received one with opts.host (RFC 7239 §5.3)", function()
    local e = get("GET /fwd/a HTTP/1.0\r\n\r\n")
    assert.are.equal("for=127.0.0.1;proto=http", e.fwd)
    e = get(helper.request("GET", "/host/a", { Host = "outer.test" }))
    assert.are.equal("for=127.0.0.1;host=outer.test;proto=http", e.fwd)
  end)

  it("goes without X-Forwarded-* when they are turned off", function()
    local e = get(helper.request("GET", "/only/a", { ["X-Forwarded-For"] = "10.0.0.1" }))
    assert.are.equal("for=127.0.0.1;proto=http", (e.fwd:gsub(";host=[^;]*", "")))
    assert.are.equal("10.0.0.1", e.xff)
    assert.are.equal("", e.xfp)
  end)
end)
