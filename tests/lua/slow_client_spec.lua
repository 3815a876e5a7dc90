-- Slow clients: requests arriving one byte at a time.
local helper = require "helper"

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
app:get("/slow/:id", function(req)
  return 200, nil, "id=" .. req.params.id .. " ua=" .. (req:header("User-Agent") or "none")
end)
app:post("/echo", function(req)
  return 200, nil, req:body()
end)
]]

describe("slow client", function()
  local srv

  lazy_setup(function()
    srv = helper.start(SCRIPT)
  end)

  lazy_teardown(function()
    helper.stop_all()
  end)

  it("a GET sent one byte at a time gets the right response", function()
    local c = helper.connect(srv:port())
    local req = "GET /slow/77 HTTP/1.1\r\nHost: x\r\nUser-Agent: trickle\r\n\r\n"
    assert.is_true(c:send_slowly(req, 0.005))
    local res = c:response()
    assert.are.equal(200, res.status)
    assert.are.equal("id=77 ua=trickle", res.body)
    c:close()
  end)

  it("a POST with Content-Length body sent one byte at a time is echoed", function()
    local c = helper.connect(srv:port())
    assert.is_true(c:send_slowly(helper.request("POST", "/echo", nil, "slow body!"), 0.003))
    local res = c:response()
    assert.are.equal("slow body!", res.body)
    c:close()
  end)

  it("a chunked POST sent one byte at a time is echoed", function()
    local c = helper.connect(srv:port())
    local req = helper.request("POST", "/echo", { ["Transfer-Encoding"] = "chunked" },
      helper.chunked({ "ab", "cdefghijklmnopq", "r" }))
    assert.is_true(c:send_slowly(req, 0.003))
    assert.are.equal("abcdefghijklmnopqr", c:response().body)
    c:close()
  end)

  it("the request head split at awkward places (inside CRLF CRLF) still works", function()
    local c = helper.connect(srv:port())
    c:write("GET /slow/1 HTTP/1.1\r\nHost: x\r")
    helper.sleep(0.05)
    c:write("\n\r")
    helper.sleep(0.05)
    c:write("\nGET /slow/2 HTTP/1.1\r\nHo")
    helper.sleep(0.05)
    c:write("st: x\r\n\r\n")
    assert.are.equal("id=1 ua=none", c:response().body)
    assert.are.equal("id=2 ua=none", c:response().body)
    c:close()
  end)

  it("other clients are served while a slow client trickles", function()
    local slow = helper.connect(srv:port())
    slow:write("GET /slow/s HTTP/1.1\r\nHost: x\r\n")
    local t0 = helper.now()
    local res = helper.get(srv:port(), "/slow/fast")
    assert.are.equal("id=fast ua=none", res.body)
    assert.truthy(helper.now() - t0 < 1, "fast client was blocked by the slow one")
    slow:write("\r\n")
    assert.are.equal("id=s ua=none", slow:response().body)
    slow:close()
  end)
end)
