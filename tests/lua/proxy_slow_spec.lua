-- luring.proxy and a slow origin (issue 11, point 2): a request waiting
-- for an origin that takes 2 s to answer holds one origin connection and
-- nothing else, so other requests (other connections, the same origin
-- object) are answered meanwhile; and a client that leaves before the
-- origin's head arrives does not keep that origin connection until the
-- head (or the first-byte timeout) comes.  The origin is nginx (echo_sleep
-- is a timer: nginx answers other requests meanwhile).
local helper = require "helper"
local origin = require "origin"

local LOCATIONS = [[
    location /slow/ { echo_sleep 2; echo "late $request_uri"; }
    location /fast/ { echo "fast $request_uri"; }
]]

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local o = luring.origin{ name = "o", url = "@ORIGIN@", keepalive = 64,
                         first_byte_timeout = 30 }
app:get("/slow/*", function(req) return luring.proxy(req, o) end)
app:get("/fast/*", function(req) return luring.proxy(req, o) end)
app:get("/ostats", function(req)
  local s = o:stats()
  return ("requests=%d errors=%d timeouts=%d connects=%d idle=%d")
    :format(s.requests, s.errors, s.timeouts, s.connects, s.idle)
end)
]]

local ngx, srv

local function stats()
  local t = {}
  for k, v in helper.get(srv:port(), "/ostats").body:gmatch("(%w+)=(%d+)") do
    t[k] = tonumber(v)
  end
  return t
end

describe("luring.proxy and a slow origin", function()
  lazy_setup(function()
    ngx = origin.start{ locations = LOCATIONS }
    srv = helper.start((SCRIPT:gsub("@ORIGIN@", ngx:url())))
  end)
  lazy_teardown(origin.teardown)

  it("a request waiting 2 s for its origin does not hold up 20 others (RFC 9112 §9.3)", function()
    local slow = helper.connect(srv:port(), 10)
    local t0 = helper.now()
    slow:write(helper.request("GET", "/slow/one"))
    helper.sleep(0.1) -- the slow request is at the origin
    local results = helper.burst(srv:port(), 20, "/fast/x", 5)
    local elapsed = helper.now() - t0
    for i = 1, 20 do
      assert(not results[i].err, "request " .. i .. ": " .. tostring(results[i].err))
      assert.are.equal(200, results[i].status)
      assert.are.equal("fast /fast/x\n", results[i].body)
    end
    assert(elapsed < 1.2, ("20 fast requests took until %.2f s, behind the slow one"):format(elapsed))
    local res = slow:response{ timeout = 5 }
    slow:close()
    assert.are.equal("late /slow/one\n", res.body)
    assert(helper.now() - t0 >= 1.9, "the slow one was not slow")
  end)

  it("a client that resets before the origin's head: the origin connection is closed at once (RFC 9112 §9.6)", function()
    local s0 = stats()
    local c = helper.connect(srv:port())
    local t0 = helper.now()
    c:write(helper.request("GET", "/slow/gone"))
    helper.sleep(0.2)
    c:abort()
    -- the fetch ends when the client goes, not when the origin answers
    assert(helper.wait_until(function() return stats().errors >= s0.errors + 1 end, 1.5),
           "the origin fetch was not ended")
    assert(helper.now() - t0 < 1.5, ("ended after %.2f s"):format(helper.now() - t0))
    -- once the origin would have answered, nothing came back to the pool
    -- from that connection, and the pool goes on
    helper.sleep(2.2 - (helper.now() - t0))
    local s1 = stats()
    assert(s1.idle <= s0.idle, "the abandoned connection went back to the pool")
    assert.are.equal(s0.errors + 1, s1.errors)
    assert.are.equal("fast /fast/after\n", helper.get(srv:port(), "/fast/after").body)
  end)

  it("a client that half-closes before the head still gets the response (RFC 9112 §9.6)", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/slow/half"))
    c.sock:shutdown("send")
    local res = c:response{ timeout = 5 }
    assert.are.equal("late /slow/half\n", res.body)
    assert(c:expect_closed(2), "connection left open")
    c:close()
  end)

  it("kept serving throughout, no crash", function()
    assert.is_true(srv:alive())
    assert.is_nil(helper.crash_report(srv:stderr()))
  end)
end)
