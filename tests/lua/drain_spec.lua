-- Graceful drain (issue 14, point 4): SIGTERM or SIGQUIT stop accepting,
-- close idle keep-alive connections, let requests in flight finish (a slow
-- reader of an 8 MB response gets every byte) with "Connection: close",
-- and exit 0 once no connection is left, or at drain_timeout; a second
-- SIGTERM stops at once; SIGINT stays immediate.
local helper = require "helper"
local socket = require "socket"

local BIG = 8 * 1024 * 1024

local SCRIPT = helper.PAYLOAD_LUA .. [[
luring.config{ drain_timeout = @DRAIN@ }
local body = payload(65536, "d"):rep(]] .. BIG / 65536 .. [[)
local app = luring.app()
app:listen("@LISTEN@")
app:get("/big", function(req) return 200, { ["Content-Type"] = "text/plain" }, body end)
app:get("/small", function(req) return "small" end)
app:get("/sleep/:ms", function(req)
  luring.sleep(tonumber(req.params.ms))
  return "slept " .. req.params.ms
end)
]]

local function start(drain, workers)
  return helper.start((SCRIPT:gsub("@DRAIN@", tostring(drain or 30))),
    { args = { "--workers", tostring(workers or 1) } })
end

local function signal(srv, sig)
  os.execute("kill -" .. sig .. " " .. math.floor(srv:pid()) .. " 2>/dev/null")
end

-- Did srv exit by itself within timeout? Then it is stopped for the
-- helper too (its status and stderr kept), and must not have logged a
-- crash or sanitizer report.
local function wait_exit(srv, timeout)
  local gone = helper.wait_until(function() return not srv:alive() end, timeout, 0.01)
  if gone then
    srv:stop()
    assert.is_nil(helper.crash_report(srv:stderr()), srv:stderr())
  end
  return gone
end

local function refused(port)
  local s = socket.tcp()
  s:settimeout(1)
  local ok = s:connect("127.0.0.1", port)
  s:close()
  return not ok
end

describe("graceful drain", function()
  after_each(function() helper.stop_all() end)

  for _, sig in ipairs({ "TERM", "QUIT" }) do
    it(("SIG%s: a slow reader of an 8 MB response gets every byte, then exit 0"):format(sig), function()
      local srv = start(30, 2)
      local c = helper.connect(srv:port(), 20)
      c.sock:setoption("tcp-nodelay", true)
      c:write(helper.request("GET", "/big"))
      local head = c:read_until("\r\n\r\n", helper.now() + 5)
      assert.truthy(head and head:match("^HTTP/1%.1 200"), tostring(head))
      local got = {}
      local first = c:read_n(64 * 1024, helper.now() + 5)
      got[#got + 1] = first
      signal(srv, sig)
      assert.truthy(srv:wait_stderr("draining", 2), srv:stderr())
      -- no new connection while draining
      assert.truthy(helper.wait_until(function() return refused(srv:port()) end, 2),
        "a new connection was accepted while draining")
      -- read the rest slowly: 256 KiB every 50 ms (about 1.6 s)
      local have = #first
      while have < BIG do
        local n = math.min(256 * 1024, BIG - have)
        local part = c:read_n(n, helper.now() + 10)
        assert.truthy(part, "connection ended after " .. have .. " of " .. BIG .. " bytes")
        got[#got + 1] = part
        have = have + #part
        socket.sleep(0.05)
      end
      local body = table.concat(got)
      assert.are.equal(BIG, #body)
      assert.truthy(body == helper.payload(65536, "d"):rep(BIG / 65536), "body differs")
      assert.truthy(c:expect_closed(5), "connection not closed after the response")
      c:close()
      assert.truthy(wait_exit(srv, 3), "still running after the last connection")
      assert.are.equal(0, srv:exit_code(), srv:stderr())
      assert.truthy(srv:stderr():find("drained: stopping", 1, true), srv:stderr())
    end)
  end

  it("closes idle keep-alive connections at once; a request in flight ends with Connection: close", function()
    local srv = start(30)
    local idle = helper.connect(srv:port())
    idle:write(helper.request("GET", "/small"))
    assert.are.equal("small", idle:response().body)
    local busy = helper.connect(srv:port())
    busy:write(helper.request("GET", "/sleep/600"))
    socket.sleep(0.1)
    local t0 = helper.now()
    signal(srv, "TERM")
    assert.truthy(idle:expect_closed(2), "the idle keep-alive connection was not closed")
    assert.truthy(helper.now() - t0 < 1, "idle connection closed late")
    local res = busy:response({ timeout = 5 })
    assert.are.equal(200, res.status)
    assert.are.equal("slept 600", res.body)
    assert.are.equal("close", (res.headers["connection"] or ""):lower())
    assert.truthy(busy:expect_closed(2))
    assert.truthy(wait_exit(srv, 3))
    assert.are.equal(0, srv:exit_code(), srv:stderr())
  end)

  it("drain_timeout: a request still running then is cut and the process exits", function()
    local srv = start(0.5)
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/sleep/10000"))
    socket.sleep(0.1)
    local t0 = helper.now()
    signal(srv, "TERM")
    assert.truthy(wait_exit(srv, 4), "still running 4 s after SIGTERM")
    local took = helper.now() - t0
    assert.truthy(took >= 0.45 and took < 3, ("exited after %.2f s"):format(took))
    assert.are.equal(0, srv:exit_code(), srv:stderr())
    assert.truthy(srv:stderr():find("drain_timeout", 1, true), srv:stderr())
    c:close()
  end)

  it("a second SIGTERM stops at once", function()
    local srv = start(30)
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/sleep/10000"))
    socket.sleep(0.1)
    signal(srv, "TERM")
    assert.truthy(srv:wait_stderr("draining", 2), srv:stderr())
    socket.sleep(0.3)
    assert.truthy(srv:alive(), "did not wait for the request in flight")
    local t0 = helper.now()
    signal(srv, "TERM")
    assert.truthy(wait_exit(srv, 3), "the second SIGTERM did not stop it")
    assert.truthy(helper.now() - t0 < 2)
    assert.are.equal(0, srv:exit_code(), srv:stderr())
    c:close()
  end)

  it("SIGINT stops at once, requests in flight or not", function()
    local srv = start(30)
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/sleep/10000"))
    socket.sleep(0.1)
    local t0 = helper.now()
    signal(srv, "INT")
    assert.truthy(wait_exit(srv, 3))
    assert.truthy(helper.now() - t0 < 2)
    assert.are.equal(0, srv:exit_code(), srv:stderr())
    c:close()
  end)
end)
