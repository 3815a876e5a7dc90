-- Pipelining: many requests in one write, responses in order, including
-- across handlers that yield (luring.sleep) and requests with bodies.
local helper = require "helper"

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
app:get("/echo/:v", function(req)
  return 200, nil, "echo:" .. req.params.v
end)
app:get("/sleep/:ms/:v", function(req)
  luring.sleep(tonumber(req.params.ms))
  return 200, nil, "slept:" .. req.params.v
end)
app:post("/body", function(req)
  return 200, nil, "body:" .. req:body()
end)
]]

describe("pipelining", function()
  local srv

  lazy_setup(function()
    srv = helper.start(SCRIPT)
  end)

  lazy_teardown(function()
    helper.stop_all()
  end)

  it("answers 12 pipelined GETs in order, across sleeping handlers", function()
    local reqs, expect = {}, {}
    for i = 1, 12 do
      if i % 3 == 1 then
        -- earlier requests sleep longer than later ones
        local ms = (13 - i) * 10
        reqs[#reqs + 1] = helper.request("GET", ("/sleep/%d/%d"):format(ms, i))
        expect[i] = "slept:" .. i
      else
        reqs[#reqs + 1] = helper.request("GET", "/echo/" .. i)
        expect[i] = "echo:" .. i
      end
    end
    local c = helper.connect(srv:port())
    c:write(table.concat(reqs))   -- one write
    for i = 1, 12 do
      local res, err = c:read_response()
      assert.is_not_nil(res, ("response %d: %s"):format(i, tostring(err)))
      assert.are.equal(200, res.status)
      assert.are.equal(expect[i], res.body, "response " .. i .. " out of order")
    end
    -- nothing extra
    local extra = c:read_available(0.1)
    assert.are.equal("", extra)
    c:close()
  end)

  it("answers 50 pipelined requests in order", function()
    local reqs = {}
    for i = 1, 50 do reqs[i] = helper.request("GET", "/echo/" .. i) end
    local c = helper.connect(srv:port())
    c:write(table.concat(reqs))
    for i = 1, 50 do
      local res, err = c:read_response()
      assert.is_not_nil(res, ("response %d: %s"):format(i, tostring(err)))
      assert.are.equal("echo:" .. i, res.body)
    end
    c:close()
  end)

  it("pipelines POSTs with bodies (Content-Length and chunked) between GETs", function()
    local data = table.concat({
      helper.request("GET", "/echo/a"),
      helper.request("POST", "/body", nil, "first body"),
      helper.request("POST", "/body", { ["Transfer-Encoding"] = "chunked" },
        helper.chunked({ "chunked ", "second" })),
      helper.request("GET", "/sleep/30/b"),
      helper.request("POST", "/body", nil, ""),
      helper.request("GET", "/echo/c"),
    })
    local expect = { "echo:a", "body:first body", "body:chunked second", "slept:b", "body:", "echo:c" }
    local c = helper.connect(srv:port())
    c:write(data)
    for i, e in ipairs(expect) do
      local res, err = c:read_response()
      assert.is_not_nil(res, ("response %d: %s"):format(i, tostring(err)))
      assert.are.equal(e, res.body)
    end
    c:close()
  end)

  it("ends a pipeline at a Connection: close request", function()
    local data = table.concat({
      helper.request("GET", "/echo/1"),
      helper.request("GET", "/sleep/20/2"),
      helper.request("GET", "/echo/3", { Connection = "close" }),
      helper.request("GET", "/echo/4"),   -- must not be answered
    })
    local c = helper.connect(srv:port())
    c:write(data)
    assert.are.equal("echo:1", c:response().body)
    assert.are.equal("slept:2", c:response().body)
    local res = c:response()
    assert.are.equal("echo:3", res.body)
    assert.are.equal("close", (res.headers["connection"] or ""):lower(), res.raw_head)
    local closed, why = c:expect_closed(3)
    assert.is_true(closed, why)
    c:close()
  end)
end)
