-- idle_timeout and body_timeout.
local helper = require "helper"

local SCRIPT = [[
luring.config{ idle_timeout = 0.5, body_timeout = 0.5 }
local app = luring.app()
app:listen("@LISTEN@")
app:get("/", function(req) return 200, nil, "ok" end)
app:post("/echo", function(req) return 200, nil, req:body() end)
app:get("/sleep", function(req) luring.sleep(800) return 200, nil, "slept" end)
]]

describe("timeouts", function()
  local srv

  lazy_setup(function()
    srv = helper.start(SCRIPT)
  end)

  lazy_teardown(function()
    helper.stop_all()
  end)

  it("idle_timeout closes an idle keep-alive connection", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/"))
    assert.are.equal("ok", c:response().body)
    local t0 = helper.now()
    local data = c:read_available(3)
    local elapsed = helper.now() - t0
    assert.is_true(c.closed, "idle connection still open after 3s (idle_timeout = 0.5)")
    assert.truthy(data == "" or data:match("^HTTP/1%.1 408"), ("unexpected data %q"):format(data))
    assert.truthy(elapsed >= 0.4, ("closed after only %.3fs"):format(elapsed))
    c:close()
  end)

  it("activity keeps a connection open past idle_timeout", function()
    local c = helper.connect(srv:port())
    for i = 1, 4 do
      c:write(helper.request("GET", "/"))
      local res, err = c:read_response()
      assert.is_not_nil(res, "request " .. i .. ": " .. tostring(err))
      assert.are.equal("ok", res.body)
      helper.sleep(0.25)   -- total > idle_timeout, but each gap is shorter
    end
    c:close()
  end)

  it("a handler running longer than idle_timeout is not cut off", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/sleep"))
    local res, err = c:read_response()
    assert.is_not_nil(res, tostring(err))
    assert.are.equal("slept", res.body)
    c:close()
  end)

  it("body_timeout closes a connection whose body stalls", function()
    local c = helper.connect(srv:port())
    c:write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
    local t0 = helper.now()
    local data = c:read_available(3)
    local elapsed = helper.now() - t0
    assert.is_true(c.closed, "stalled body: connection still open after 3s (body_timeout = 0.5)")
    assert.truthy(data == "" or data:match("^HTTP/1%.1 408"), ("unexpected data %q"):format(data))
    assert.truthy(elapsed >= 0.4, ("closed after only %.3fs"):format(elapsed))
    c:close()
  end)

  it("a body trickling faster than body_timeout is accepted", function()
    local c = helper.connect(srv:port())
    c:write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n")
    for _, ch in ipairs({ "a", "b", "c", "d" }) do
      helper.sleep(0.2)
      c:write(ch)
    end
    local res, err = c:read_response()
    assert.is_not_nil(res, tostring(err))
    assert.are.equal("abcd", res.body)
    c:close()
  end)

  it("the server still serves", function()
    assert.are.equal("ok", helper.get(srv:port(), "/").body)
    assert.is_nil(helper.crash_report(srv:stderr()))
  end)
end)
