-- HEAD: GET routes answer HEAD with the same status/headers/Content-Length
-- and no body.
local helper = require "helper"

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
app:get("/doc", function(req)
  return 200, { ["Content-Type"] = "text/html", ["X-Custom"] = "yes" }, "<p>hello head</p>"
end)
app:get("/big", function(req)
  return 200, nil, string.rep("b", 100000)
end)
app:head("/only-head", function(req)
  return 200, { ["X-Head"] = "explicit" }, nil
end)
]]

local function strip_volatile(res)
  local t = {}
  for k, v in pairs(res.headers) do
    if k ~= "date" then t[k] = v end
  end
  return t
end

describe("HEAD", function()
  local srv

  lazy_setup(function()
    srv = helper.start(SCRIPT)
  end)

  lazy_teardown(function()
    helper.stop_all()
  end)

  it("returns the GET headers and Content-Length without a body", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/doc"))
    local get = c:response()
    c:write(helper.request("HEAD", "/doc"))
    local head = c:response({ method = "HEAD" })
    assert.are.equal(200, head.status)
    assert.are.equal(get.status, head.status)
    assert.are.equal(tostring(#"<p>hello head</p>"), head.headers["content-length"])
    assert.are.same(strip_volatile(get), strip_volatile(head))
    -- no body bytes may follow the HEAD response
    local extra = c:read_available(0.2)
    assert.are.equal("", extra, "HEAD response carried a body")
    -- and the connection is still usable
    c:write(helper.request("GET", "/doc"))
    assert.are.equal("<p>hello head</p>", c:response().body)
    c:close()
  end)

  it("HEAD followed by a pipelined GET parses cleanly", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("HEAD", "/big") .. helper.request("GET", "/doc"))
    local head = c:response({ method = "HEAD" })
    assert.are.equal(200, head.status)
    assert.are.equal("100000", head.headers["content-length"])
    local get, err = c:read_response()
    assert.is_not_nil(get, "GET after HEAD: " .. tostring(err))
    assert.are.equal(200, get.status)
    assert.are.equal("<p>hello head</p>", get.body)
    c:close()
  end)

  it("HEAD on an unknown path is 404 without body", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("HEAD", "/missing") .. helper.request("GET", "/doc"))
    local head = c:response({ method = "HEAD" })
    assert.are.equal(404, head.status)
    assert.are.equal("<p>hello head</p>", c:response().body)
    c:close()
  end)

  it("an explicit app:head route is used", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("HEAD", "/only-head"))
    local head = c:response({ method = "HEAD" })
    assert.are.equal(200, head.status)
    assert.are.equal("explicit", head.headers["x-head"])
    assert.are.equal("", c:read_available(0.2))
    c:close()
  end)
end)
