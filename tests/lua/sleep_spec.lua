-- luring.sleep / luring.now: sleeping takes time, and sleeping requests
-- on separate connections overlap.
local helper = require "helper"

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
app:get("/sleep/:ms", function(req)
  local t0 = luring.now()
  luring.sleep(tonumber(req.params.ms))
  local t1 = luring.now()
  return 200, nil, string.format("%.3f", t1 - t0)
end)
app:get("/now", function(req)
  local a = luring.now()
  local b = luring.now()
  return 200, nil, string.format("%s %s %s", type(a), tostring(a), tostring(b - a))
end)
app:get("/", function(req) return 200, nil, "ok" end)
]]

describe("luring.sleep", function()
  local srv

  lazy_setup(function()
    srv = helper.start(SCRIPT)
  end)

  lazy_teardown(function()
    helper.stop_all()
  end)

  it("a 200 ms sleep takes at least ~200 ms", function()
    local t0 = helper.now()
    local res = helper.get(srv:port(), "/sleep/200")
    local elapsed = helper.now() - t0
    assert.are.equal(200, res.status)
    assert.truthy(elapsed >= 0.19, ("request took only %.3fs"):format(elapsed))
    assert.truthy(elapsed < 1.5, ("request took %.3fs"):format(elapsed))
    -- luring.now() is in milliseconds
    local inside = tonumber(res.body)
    assert.truthy(inside and inside >= 190 and inside < 1500,
      "luring.now() difference across sleep(200): " .. tostring(res.body))
  end)

  it("luring.now returns a number", function()
    local res = helper.get(srv:port(), "/now")
    local ty, a, d = res.body:match("^(%S+) (%S+) (%S+)$")
    assert.are.equal("number", ty)
    assert.truthy(tonumber(a) and tonumber(a) > 0, res.body)
    assert.truthy(tonumber(d) and tonumber(d) >= 0, "not monotonic: " .. res.body)
  end)

  it("10 concurrent 200 ms sleeps on separate connections overlap", function()
    local conns = {}
    local t0 = helper.now()
    for i = 1, 10 do
      conns[i] = helper.connect(srv:port())
      conns[i]:write(helper.request("GET", "/sleep/200"))
    end
    for i = 1, 10 do
      local res, err = conns[i]:read_response()
      assert.is_not_nil(res, "request " .. i .. ": " .. tostring(err))
      assert.are.equal(200, res.status)
      conns[i]:close()
    end
    local elapsed = helper.now() - t0
    assert.truthy(elapsed >= 0.19, ("took only %.3fs"):format(elapsed))
    assert.truthy(elapsed < 1.0, ("10 x 200 ms took %.3fs: sleeps do not overlap"):format(elapsed))
  end)

  it("a sleeping request does not block other requests", function()
    local sleeper = helper.connect(srv:port())
    sleeper:write(helper.request("GET", "/sleep/1000"))
    local t0 = helper.now()
    local res = helper.get(srv:port(), "/")
    local fast = helper.now() - t0
    assert.are.equal("ok", res.body)
    assert.truthy(fast < 0.5, ("plain request waited %.3fs behind a sleeping one"):format(fast))
    assert.are.equal(200, sleeper:response().status)
    sleeper:close()
  end)

  it("sleep(0) returns", function()
    local res = helper.get(srv:port(), "/sleep/0")
    assert.are.equal(200, res.status)
  end)
end)
