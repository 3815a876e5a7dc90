-- A handler can't forge a response for the next request on its connection
-- (the hardening issue, point 5): a body longer than its Content-Length is
-- cut at it and the connection closes after it, so no byte of the excess
-- is read as a response (RFC 9112 §6.3: the length ends the message); a
-- Content-Length that is not 1*DIGIT (RFC 9110 §8.6) gives 500 and sends
-- nothing of the head; a body shorter than announced closes the connection.
local helper = require "helper"

local FORGED = "HTTP/1.1 200 OK\\r\\nContent-Length: 6\\r\\n\\r\\nforged"

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
app:get("/ok", function(req) return "fine" end)
-- streamed: the second write would be a whole forged response
app:get("/over-write", function(req)
  req:start(200, { ["Content-Length"] = "5" })
  req:write("hello")
  req:write("@FORGED@")
end)
-- one write that crosses the announced length
app:get("/over-one", function(req)
  req:start(200, { ["Content-Length"] = "5" })
  req:write("hello@FORGED@")
end)
app:get("/short", function(req)
  req:start(200, { ["Content-Length"] = "10" })
  req:write("hello")
end)
app:get("/cl/:v", function(req)
  local v = ({ alpha = "abc", neg = "-1", plus = "+5", junk = "5x",
               empty = "", space = " 5", hex = "0x10", huge = "1234567890123456789",
               float = "5.0" })[req.params.v]
  return 200, { ["Content-Length"] = v }, "hello"
end)
app:get("/start-cl/:v", function(req)
  req:start(200, { ["Content-Length"] = req.params.v == "neg" and "-1" or "abc" })
  req:write("hello")
end)
]]

describe("handlers can't forge responses", function()
  local srv

  lazy_setup(function()
    srv = helper.start((SCRIPT:gsub("@FORGED@", FORGED)))
  end)
  lazy_teardown(function() helper.stop_all() end)

  -- two pipelined requests; everything the server sends until it closes
  local function pipelined(path)
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", path) .. helper.request("GET", "/ok"))
    local all = c:read_to_close(helper.now() + 5)
    c:close()
    return all or ""
  end

  for _, path in ipairs({ "/over-write", "/over-one" }) do
    it(path .. ": the body stops at Content-Length, the connection closes, nothing forged", function()
      local all = pipelined(path)
      local head, body = all:match("^(.-\r\n\r\n)(.*)$")
      assert.truthy(head, all)
      assert.truthy(head:find("^HTTP/1.1 200 "), head)
      assert.truthy(head:lower():find("content%-length: 5\r\n"), head)
      -- the head went out before the excess was written: the close comes
      -- after the body, and the pipelined request gets no answer
      assert.are.equal("hello", body, "bytes after the announced length")
      assert.is_nil(all:find("forged", 1, true))
      assert.truthy(srv:wait_stderr("longer than its Content-Length", 2))
    end)
  end

  it("a body shorter than its Content-Length closes the connection after it", function()
    local all = pipelined("/short")
    local head, body = all:match("^(.-\r\n\r\n)(.*)$")
    assert.truthy(head, all)
    assert.truthy(head:lower():find("content%-length: 10\r\n"), head)
    assert.are.equal("hello", body)  -- then EOF: the client sees it short
  end)

  for _, v in ipairs({ "alpha", "neg", "plus", "junk", "empty", "space", "hex", "huge", "float" }) do
    it("Content-Length " .. v .. " returned by a handler: 500", function()
      local res = helper.get(srv:port(), "/cl/" .. v)
      assert.are.equal(500, res.status, res.raw_head)
      assert.is_nil(res.body:find("hello", 1, true))
    end)
  end

  for _, v in ipairs({ "neg", "alpha" }) do
    it("Content-Length " .. v .. " in req:start: 500, nothing of that head sent", function()
      local res = helper.get(srv:port(), "/start-cl/" .. v)
      assert.are.equal(500, res.status, res.raw_head)
    end)
  end

  it("the same connection goes on after a 500 for a bad Content-Length", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/cl/alpha") .. helper.request("GET", "/ok"))
    local r1 = assert(c:read_response())
    local r2 = assert(c:read_response())
    c:close()
    assert.are.equal(500, r1.status)
    assert.are.equal("fine", r2.body)
  end)

  it("kept serving, no sanitizer report", function()
    assert.is_true(srv:alive())
    assert.is_nil(helper.crash_report(srv:stderr()))
  end)
end)
