-- A client that sends its requests and then shuts its write side (what
-- `printf ... | nc`, shell scripts and some load balancers do) gets every
-- response to what it sent in full, in order, and then the close
-- (RFC 9112 §9.6: a FIN ends the client's requests, not its interest in
-- the responses). A request the FIN cuts short is dropped without waiting
-- for a timeout.
local helper = require "helper"
local socket = require "socket"

local SCRIPT = [[
luring.config{ header_timeout = 5, body_timeout = 5 }
local app = luring.app()
app:listen("@LISTEN@")
app:get("/n/:n", function(req) return "n=" .. req.params.n end)
app:get("/slow/:n", function(req)
  luring.sleep(200)
  return "slow=" .. req.params.n
end)
app:post("/echo", function(req) return "len=" .. #req:body() end)
app:get("/stream", function(req)
  req:start(200, nil)
  for i = 1, 3 do req:write("part" .. i .. ";") luring.sleep(50) end
end)
]]

-- Send `data`, shut the write side, read everything until the server
-- closes: the bytes, and the seconds it took (nil bytes: no close in 4 s).
local function half_close(port, data)
  local c = helper.connect(port)
  c:write(data)
  c.sock:shutdown("send")
  local t0 = socket.gettime()
  local all = c:read_to_close(socket.gettime() + 4)
  local took = socket.gettime() - t0
  c:close()
  assert.is_not_nil(all, "the server did not close within 4 s")
  return all, took
end

describe("half-closed clients (RFC 9112 §9.6)", function()
  local srv
  lazy_setup(function() srv = helper.start(SCRIPT) end)
  lazy_teardown(helper.stop_all)

  it("three pipelined requests, then FIN: three responses in order, then the close", function()
    local data = helper.request("GET", "/n/1") .. helper.request("GET", "/n/2")
      .. helper.request("GET", "/n/3")
    local all, took = half_close(srv:port(), data)
    local bodies = {}
    for b in all:gmatch("n=%d") do bodies[#bodies + 1] = b end
    assert.are.same({ "n=1", "n=2", "n=3" }, bodies)
    assert.truthy(took < 2, ("closed after %.2fs"):format(took))
  end)

  it("a handler still running when the FIN arrives answers, then the close", function()
    local data = helper.request("GET", "/slow/1") .. helper.request("GET", "/slow/2")
    local all, took = half_close(srv:port(), data)
    assert.truthy(all:find("slow=1", 1, true), all)
    assert.truthy(all:find("slow=2", 1, true), all)
    assert.truthy(all:find("slow=1", 1, true) < all:find("slow=2", 1, true))
    assert.truthy(took < 2, ("closed after %.2fs"):format(took))
  end)

  it("a streamed response goes out whole after the FIN", function()
    local all = half_close(srv:port(), helper.request("GET", "/stream"))
    assert.truthy(all:find("part1;", 1, true) and all:find("part3;", 1, true), all)
    assert.truthy(all:sub(-5) == "0\r\n\r\n", "chunked body not terminated:\n" .. all)
  end)

  it("request bodies, Content-Length and chunked, then FIN", function()
    local data = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
      .. "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    local all = half_close(srv:port(), data)
    assert.truthy(all:find("len=5", 1, true), all)
    assert.truthy(all:find("len=3", 1, true), all)
  end)

  it("a request cut by the FIN is dropped at once, the ones before it answered", function()
    local cases = {
      helper.request("GET", "/n/7") .. "GET /n/8 HTTP/1.1\r\nHost: x\r\n",      -- head cut
      helper.request("GET", "/n/7") .. "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
    }
    for i, data in ipairs(cases) do
      local all, took = half_close(srv:port(), data)
      assert.truthy(all:find("n=7", 1, true), "case " .. i .. ": " .. all)
      assert.is_nil(all:find("n=8", 1, true), "case " .. i)
      assert.is_nil(all:find("408", 1, true), "case " .. i .. " waited for a timeout")
      assert.truthy(took < 2, ("case %d: closed after %.2fs"):format(i, took))
    end
  end)

  it("Connection: close and HTTP/1.0 requests, then FIN", function()
    local all = half_close(srv:port(),
      "GET /n/4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert.truthy(all:find("n=4", 1, true), all)
    all = half_close(srv:port(), "GET /n/5 HTTP/1.0\r\n\r\n")
    assert.truthy(all:find("n=5", 1, true), all)
  end)

  it("an idle keep-alive connection that gets a FIN is closed at once", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/n/6"))
    assert.are.equal("n=6", c:read_response().body)
    c.sock:shutdown("send")
    local t0 = socket.gettime()
    c:read_to_close(socket.gettime() + 3)
    assert.truthy(socket.gettime() - t0 < 1)
    c:close()
    assert.is_true(srv:alive())
    assert.is_nil(helper.crash_report(srv:stderr()))
  end)
end)

-- After a FIN the handler has send_timeout to answer: a client that closed
-- for good can't keep its slot for as long as a handler waits (here
-- max_connections = 1, so a held slot would keep out the next client).
describe("half-closed clients and slow handlers", function()
  local srv
  lazy_setup(function()
    srv = helper.start([[
luring.config{ max_connections = 1, send_timeout = 1 }
local app = luring.app()
app:listen("@LISTEN@")
app:get("/forever", function(req) luring.sleep(60000) return "late" end)
app:get("/n", function(req) return "n" end)
]])
  end)
  lazy_teardown(helper.stop_all)

  it("a closed client's slot comes free after send_timeout, not after the handler", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/forever"))
    helper.sleep(0.1)
    c:close()
    local t0 = socket.gettime()
    local r = helper.get(srv:port(), "/n")   -- waits in the backlog meanwhile
    local took = socket.gettime() - t0
    assert.are.equal("n", r.body)
    assert.truthy(took < 4, ("the slot came free after %.2fs"):format(took))
  end)
end)

