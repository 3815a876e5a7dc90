-- Keep-alive: several requests on one connection, HTTP/1.0 default close,
-- HTTP/1.0 + Connection: keep-alive, Connection: close honoured.
local helper = require "helper"

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
app:get("/n/:n", function(req)
  return 200, { ["Content-Type"] = "text/plain" }, "n=" .. req.params.n
end)
]]

describe("keep-alive", function()
  local srv

  lazy_setup(function()
    srv = helper.start(SCRIPT)
  end)

  lazy_teardown(function()
    helper.stop_all()
  end)

  it("serves several sequential requests on one HTTP/1.1 connection", function()
    local c = helper.connect(srv:port())
    for i = 1, 5 do
      c:write(helper.request("GET", "/n/" .. i))
      local res = c:response()
      assert.are.equal(200, res.status)
      assert.are.equal("n=" .. i, res.body)
      assert.is_not.equal("close", (res.headers["connection"] or ""):lower(),
        "keep-alive response announces close:\n" .. res.raw_head)
    end
    -- still open and usable
    c:write(helper.request("GET", "/n/last"))
    assert.are.equal("n=last", c:response().body)
    c:close()
  end)

  it("closes an HTTP/1.0 connection after the response by default", function()
    local c = helper.connect(srv:port())
    c:write("GET /n/10 HTTP/1.0\r\n\r\n")
    local res = c:response()
    assert.are.equal(200, res.status)
    assert.are.equal("n=10", res.body)
    assert.are.equal("close", (res.headers["connection"] or ""):lower(),
      "expected Connection: close on a closing HTTP/1.0 response:\n" .. res.raw_head)
    local closed, why = c:expect_closed(3)
    assert.is_true(closed, why)
    c:close()
  end)

  it("keeps an HTTP/1.0 connection open with Connection: keep-alive", function()
    local c = helper.connect(srv:port())
    for i = 1, 3 do
      c:write("GET /n/" .. i .. " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
      local res = c:response()
      assert.are.equal(200, res.status)
      assert.are.equal("n=" .. i, res.body)
      assert.is_not_nil(res.headers["content-length"],
        "keep-alive HTTP/1.0 response needs Content-Length:\n" .. res.raw_head)
    end
    c:close()
  end)

  it("honours Connection: close on HTTP/1.1", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/n/1"))
    assert.are.equal("n=1", c:response().body)
    c:write(helper.request("GET", "/n/2", { Connection = "close" }))
    local res = c:response()
    assert.are.equal(200, res.status)
    assert.are.equal("n=2", res.body)
    assert.are.equal("close", (res.headers["connection"] or ""):lower(),
      "expected Connection: close:\n" .. res.raw_head)
    local closed, why = c:expect_closed(3)
    assert.is_true(closed, why)
    c:close()
  end)

  it("treats the Connection header case-insensitively (CLOSE)", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/n/3", { { "connection", "CLOSE" } }))
    assert.are.equal("n=3", c:response().body)
    local closed, why = c:expect_closed(3)
    assert.is_true(closed, why)
    c:close()
  end)

  it("keeps serving after a keep-alive 404", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/nope"))
    assert.are.equal(404, c:response().status)
    c:write(helper.request("GET", "/n/after404"))
    assert.are.equal("n=after404", c:response().body)
    c:close()
  end)
end)
