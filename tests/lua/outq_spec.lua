-- Output ordering: a response queued while an earlier one is still being
-- sent (the client reads slowly) must follow it, not wait forever.
local helper = require "helper"
local socket = require "socket"

describe("output queue", function()
  local srv

  lazy_setup(function()
    srv = helper.start([[
local app = luring.app()
app:listen("@LISTEN@")
local big = string.rep("b", 3 * 1024 * 1024)
app:get("/big", function(req) return big end)
app:get("/small", function(req) return "small" end)
app:get("/stream", function(req)
  req:start(200, { ["Content-Type"] = "application/octet-stream" })
  local chunk = string.rep("s", 32 * 1024)
  for i = 1, 40 do req:write(chunk) end
end)
]])
  end)

  lazy_teardown(function() helper.stop_all() end)

  it("streams every chunk written while a send is in flight (slow reader)", function()
    local c = assert(socket.tcp())
    c:settimeout(5)
    assert(c:connect("127.0.0.1", srv:port()))
    c:send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    local buf, deadline = {}, socket.gettime() + 10
    while socket.gettime() < deadline do
      local data, err, partial = c:receive(16384)
      data = data or partial
      if data and #data > 0 then
        buf[#buf + 1] = data
        if table.concat(buf):find("\r\n0\r\n\r\n$") then break end
        socket.sleep(0.005) -- a slow reader keeps sends in flight
      elseif err == "closed" then
        break
      end
    end
    c:close()
    local text = table.concat(buf)
    assert.truthy(text:find("\r\n0\r\n\r\n$"), ("stream stalled after %d bytes"):format(#text))
    local body = text:match("\r\n\r\n(.*)$")
    local _, n = body:gsub("s", "")
    assert.are.equal(40 * 32 * 1024, n)
  end)

  it("sends a response queued during a slow send once that send ends", function()
    local c = assert(socket.tcp())
    c:setoption("tcp-nodelay", true)
    c:settimeout(5)
    assert(c:connect("127.0.0.1", srv:port()))
    c:send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    -- let the first send stall on our full receive window
    local first = assert(c:receive(1000))
    socket.sleep(0.3)
    c:send("GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
    socket.sleep(0.3)
    -- now drain everything: both responses must arrive, in order
    local want = 3 * 1024 * 1024
    local buf = { first }
    local total = #first
    local deadline = socket.gettime() + 10
    local text
    while socket.gettime() < deadline do
      local data, err, partial = c:receive(65536)
      data = data or partial
      if data and #data > 0 then
        buf[#buf + 1] = data
        total = total + #data
        text = table.concat(buf)
        if text:find("\r\n\r\nsmall$") then break end
      elseif err == "closed" then
        break
      end
    end
    c:close()
    text = text or table.concat(buf)
    assert.truthy(total > want, ("only %d bytes arrived"):format(total))
    assert.truthy(text:find("\r\n\r\nsmall$"), "second response missing at the end")
    local _, n = text:gsub("HTTP/1%.1 200 OK", "")
    assert.are.equal(2, n)
  end)
end)
