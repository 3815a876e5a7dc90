-- max_connections: accept pauses (not drops) at the limit.
local helper = require "helper"

local SCRIPT = [[
luring.config{ max_connections = 2 }
local app = luring.app()
app:listen("@LISTEN@")
app:get("/who/:n", function(req) return 200, nil, "conn " .. req.params.n end)
]]

describe("max_connections", function()
  local srv

  lazy_setup(function()
    srv = helper.start(SCRIPT)
  end)

  lazy_teardown(function()
    helper.stop_all()
  end)

  local function open_and_use(n)
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/who/" .. n))
    local res, err = c:read_response()
    assert.is_not_nil(res, "connection " .. n .. ": " .. tostring(err))
    assert.are.equal("conn " .. n, res.body)
    return c
  end

  it("a third connection waits until one of the first two closes, then is served", function()
    local c1 = open_and_use(1)
    local c2 = open_and_use(2)
    -- the kernel completes the handshake (backlog); the server must not serve it yet
    local c3 = helper.connect(srv:port())
    c3:write(helper.request("GET", "/who/3"))
    local early, closed = c3:read_available(0.5)
    assert.are.equal("", early, "third connection served beyond max_connections = 2")
    assert.is_false(closed, "third connection was dropped instead of waiting")
    -- the first two are still fine
    c2:write(helper.request("GET", "/who/2"))
    assert.are.equal("conn 2", c2:response().body)
    -- free a slot: now the third one must be served
    c1:close()
    local res, err = c3:read_response({ timeout = 5 })
    assert.is_not_nil(res, "third connection not served after a slot was freed: " .. tostring(err))
    assert.are.equal(200, res.status)
    assert.are.equal("conn 3", res.body)
    c2:close()
    c3:close()
  end)

  it("a slot freed by the server (Connection: close) also resumes accepting", function()
    local c1 = open_and_use(1)
    local c2 = open_and_use(2)
    local c3 = helper.connect(srv:port())
    c3:write(helper.request("GET", "/who/3"))
    assert.are.equal("", (c3:read_available(0.3)))
    c1:write(helper.request("GET", "/who/1", { Connection = "close" }))
    assert.are.equal("conn 1", c1:response().body)
    local res, err = c3:read_response({ timeout = 5 })
    assert.is_not_nil(res, "third connection not served: " .. tostring(err))
    assert.are.equal("conn 3", res.body)
    c1:close()
    c2:close()
    c3:close()
  end)

  it("many queued connections are all served eventually, two at a time", function()
    local conns = {}
    for i = 1, 8 do
      conns[i] = helper.connect(srv:port())
      conns[i]:write(helper.request("GET", "/who/" .. i, { Connection = "close" }))
    end
    for i = 1, 8 do
      local res, err = conns[i]:read_response({ timeout = 5 })
      assert.is_not_nil(res, "connection " .. i .. ": " .. tostring(err))
      assert.are.equal("conn " .. i, res.body)
      conns[i]:close()
    end
  end)
end)
