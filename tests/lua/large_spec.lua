-- Large response bodies returned in one go (exercises short sends).
local helper = require "helper"

local SIZE = 2 * 1024 * 1024

local SCRIPT = helper.PAYLOAD_LUA .. [[
local app = luring.app()
app:listen("@LISTEN@")
local big = payload(]] .. SIZE .. [[, "L")
app:get("/big", function(req)
  return 200, { ["Content-Type"] = "application/octet-stream" }, big
end)
app:get("/small", function(req)
  return 200, nil, "small"
end)
]]

describe("large response", function()
  local srv
  local expected = helper.payload(SIZE, "L")

  lazy_setup(function()
    srv = helper.start(SCRIPT)
  end)

  lazy_teardown(function()
    helper.stop_all()
  end)

  it("a 2 MB body arrives intact with the right Content-Length", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/big"))
    local res = c:response({ timeout = 10 })
    assert.are.equal(200, res.status)
    assert.are.equal(tostring(SIZE), res.headers["content-length"])
    assert.is_true(res.body == expected, helper.diff(expected, res.body))
    c:write(helper.request("GET", "/small"))
    assert.are.equal("small", c:response().body)
    c:close()
  end)

  it("a 2 MB body to a client that reads late arrives intact", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/big"))
    helper.sleep(0.3)   -- let the socket buffers fill: the server must resume sending
    local res = c:response({ timeout = 10 })
    assert.is_true(res.body == expected, helper.diff(expected, res.body))
    c:close()
  end)

  it("three pipelined 2 MB responses arrive intact and in order", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/big") .. helper.request("GET", "/small")
            .. helper.request("GET", "/big") .. helper.request("GET", "/big"))
    for i, want in ipairs({ expected, "small", expected, expected }) do
      local res, err = c:read_response({ timeout = 10 })
      assert.is_not_nil(res, "response " .. i .. ": " .. tostring(err))
      assert.is_true(res.body == want, "response " .. i .. ": " .. helper.diff(want, res.body))
    end
    c:close()
  end)

  it("several concurrent clients each get the full 2 MB", function()
    local conns = {}
    for i = 1, 5 do
      conns[i] = helper.connect(srv:port())
      conns[i]:write(helper.request("GET", "/big"))
    end
    for i = 5, 1, -1 do
      local res = conns[i]:response({ timeout = 15 })
      assert.is_true(res.body == expected, "client " .. i .. ": " .. helper.diff(expected, res.body))
      conns[i]:close()
    end
  end)

  it("a client closing mid-download does not hurt the server", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/big"))
    local got = c:read_available(0.1)
    assert.truthy(#got > 0)
    c:abort()
    assert.are.equal("small", helper.get(srv:port(), "/small").body)
    assert.is_true(srv:alive())
    assert.is_nil(helper.crash_report(srv:stderr()))
  end)
end)
