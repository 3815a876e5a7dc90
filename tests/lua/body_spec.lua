-- Request bodies: Content-Length, chunked, Expect: 100-continue.
local helper = require "helper"

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
app:post("/echo", function(req)
  return 200, { ["Content-Type"] = "application/octet-stream" }, req:body()
end)
app:put("/len", function(req)
  local b = req:body()
  return 200, nil, tostring(#b)
end)
app:get("/nobody", function(req)
  return 200, nil, "[" .. req:body() .. "]"
end)
]]

describe("request bodies", function()
  local srv

  lazy_setup(function()
    srv = helper.start(SCRIPT)
  end)

  lazy_teardown(function()
    helper.stop_all()
  end)

  it("POST with Content-Length is echoed", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("POST", "/echo", nil, "hello=world&x=1"))
    local res = c:response()
    assert.are.equal(200, res.status)
    assert.are.equal("hello=world&x=1", res.body)
    c:close()
  end)

  it("binary body with NUL and CR/LF bytes is echoed", function()
    local body = "a\0b\r\n\r\nc\255\0"
    local c = helper.connect(srv:port())
    c:write(helper.request("POST", "/echo", nil, body))
    assert.are.equal(body, c:response().body)
    c:close()
  end)

  it("req:body() is empty for a GET without a body", function()
    local res = helper.get(srv:port(), "/nobody")
    assert.are.equal("[]", res.body)
  end)

  it("POST with Content-Length: 0 gives an empty body", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("POST", "/echo", nil, ""))
    local res = c:response()
    assert.are.equal(200, res.status)
    assert.are.equal("", res.body)
    c:close()
  end)

  it("POST with chunked Transfer-Encoding is echoed", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("POST", "/echo", { ["Transfer-Encoding"] = "chunked" },
      helper.chunked({ "Hello, ", "chunked", " world" })))
    local res = c:response()
    assert.are.equal(200, res.status)
    assert.are.equal("Hello, chunked world", res.body)
    c:close()
  end)

  it("chunked body with chunk extensions and a trailer is accepted", function()
    local body = "5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    local c = helper.connect(srv:port())
    c:write(helper.request("POST", "/echo", { ["Transfer-Encoding"] = "chunked" }, body))
    local res = c:response()
    assert.are.equal(200, res.status)
    assert.are.equal("hello world", res.body)
    -- connection still in sync
    c:write(helper.request("POST", "/echo", nil, "next"))
    assert.are.equal("next", c:response().body)
    c:close()
  end)

  it("a 900 kB body sent in pieces arrives intact", function()
    local body = helper.payload(900 * 1024, "B")
    local c = helper.connect(srv:port())
    local req = helper.request("POST", "/echo", nil, body)
    for i = 1, #req, 65536 do
      c:write(req:sub(i, i + 65535))
    end
    local res = c:response({ timeout = 10 })
    assert.are.equal(200, res.status)
    assert.is_true(res.body == body, helper.diff(body, res.body))
    c:close()
  end)

  it("a large chunked body (many chunks) arrives intact", function()
    local parts = {}
    for i = 1, 200 do parts[i] = helper.payload(1000 + i, "c" .. i) end
    local c = helper.connect(srv:port())
    c:write(helper.request("PUT", "/len", { ["Transfer-Encoding"] = "chunked" }, helper.chunked(parts)))
    local res = c:response()
    assert.are.equal(200, res.status)
    assert.are.equal(tostring(#table.concat(parts)), res.body)
    c:close()
  end)

  it("Expect: 100-continue gets 100 Continue before the body is sent", function()
    local c = helper.connect(srv:port())
    c:write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
    local interim, err = c:read_response({ timeout = 3 })
    assert.is_not_nil(interim, "no 100 Continue before the body was sent: " .. tostring(err))
    assert.are.equal(100, interim.status)
    assert.truthy(interim.status_line:match("^HTTP/1%.1 100 Continue$"), interim.status_line)
    c:write("hello there")
    local res = c:response()
    assert.are.equal(200, res.status)
    assert.are.equal("hello there", res.body)
    c:close()
  end)

  it("Expect: 100-continue with a chunked body", function()
    local c = helper.connect(srv:port())
    c:write("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
    local interim, err = c:read_response({ timeout = 3 })
    assert.is_not_nil(interim, "no 100 Continue: " .. tostring(err))
    assert.are.equal(100, interim.status)
    c:write(helper.chunked({ "abc", "def" }))
    local res = c:response()
    assert.are.equal(200, res.status)
    assert.are.equal("abcdef", res.body)
    c:close()
  end)

  it("Expect: 100-continue with the body sent immediately keeps the connection in sync", function()
    local c = helper.connect(srv:port())
    c:write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\nbody"
            .. helper.request("POST", "/echo", nil, "second"))
    local res = c:response()
    if res.status == 100 then res = c:response() end   -- an interim 100 is allowed here
    assert.are.equal(200, res.status)
    assert.are.equal("body", res.body)
    local res2 = c:response()
    assert.are.equal(200, res2.status, "stray response after the final one: " .. res2.raw_head)
    assert.are.equal("second", res2.body)
    c:close()
  end)

  it("a request body split across writes with pauses is assembled", function()
    local c = helper.connect(srv:port())
    c:write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\nhel")
    helper.sleep(0.05)
    c:write("lo wo")
    helper.sleep(0.05)
    c:write("rld!")
    local res = c:response()
    assert.are.equal("hello world!", res.body)
    c:close()
  end)
end)
