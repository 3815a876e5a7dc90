-- 200 concurrent keep-alive connections, each doing a few requests.
local helper = require "helper"

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
app:get("/c/:conn/:req", function(req)
  if req.params.req == "2" then luring.sleep(10) end
  return 200, nil, req.params.conn .. ":" .. req.params.req
end)
]]

local N, ROUNDS = 200, 3

describe("many connections", function()
  local srv

  lazy_setup(function()
    srv = helper.start(SCRIPT)
  end)

  lazy_teardown(function()
    helper.stop_all()
  end)

  it(N .. " concurrent keep-alive connections x " .. ROUNDS .. " requests", function()
    local conns = {}
    local ok, err = pcall(function()
      for i = 1, N do
        conns[i] = helper.connect(srv:port())
      end
      for r = 1, ROUNDS do
        for i = 1, N do
          conns[i]:write(helper.request("GET", ("/c/%d/%d"):format(i, r)))
        end
        for i = 1, N do
          local res, rerr = conns[i]:read_response({ timeout = 10 })
          assert(res, ("conn %d round %d: %s"):format(i, r, tostring(rerr)))
          assert(res.status == 200, ("conn %d round %d: status %d"):format(i, r, res.status))
          assert(res.body == i .. ":" .. r, ("conn %d round %d: body %q"):format(i, r, res.body))
        end
      end
    end)
    for _, c in pairs(conns) do c:close() end
    assert.is_true(ok, tostring(err))
    assert.is_true(srv:alive())
    assert.is_nil(helper.crash_report(srv:stderr()))
  end)

  it("serves again after all of them closed", function()
    assert.are.equal("1:1", helper.get(srv:port(), "/c/1/1").body)
  end)
end)
