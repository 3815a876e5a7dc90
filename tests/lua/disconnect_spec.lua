-- Client disconnects: mid-head, mid-body, while the handler sleeps (and
-- repeatedly), with FIN and with RST.  The server must keep serving, must
-- not log a crash/sanitizer report, and must exit 0 on SIGTERM afterwards.
local helper = require "helper"

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
app:get("/", function(req) return 200, nil, "alive" end)
app:get("/sleep/:tag", function(req)
  luring.log("info", "sleeper-start " .. req.params.tag)
  luring.sleep(300)
  return 200, nil, "woke " .. req.params.tag
end)
app:post("/upload", function(req)
  return 200, nil, tostring(#req:body())
end)
app:get("/stream-sleep/:tag", function(req)
  req:start(200, nil)
  req:write("first")
  luring.log("info", "streamer-start " .. req.params.tag)
  luring.sleep(300)
  req:write("second")
end)
]]

-- How long to wait so that every 300 ms handler timer has fired.
local TIMER_GRACE = 0.45

local function assert_healthy(srv)
  assert.is_true(srv:alive(), "server exited (" .. tostring(srv:exit_code()) .. "):\n" .. srv:stderr())
  local res = helper.get(srv:port(), "/")
  assert.are.equal(200, res.status)
  assert.are.equal("alive", res.body)
  local crash = helper.crash_report(srv:stderr())
  assert.is_nil(crash, crash)
end

describe("client disconnects", function()
  local srv

  lazy_setup(function()
    srv = helper.start(SCRIPT)
  end)

  lazy_teardown(function()
    helper.stop_all()
  end)

  it("partial request head then close", function()
    local c = helper.connect(srv:port())
    c:write("GET /sleep/x HTTP/1.1\r\nHost: x\r\nX-Half")
    c:close()
    assert_healthy(srv)
  end)

  it("partial request head then RST", function()
    local c = helper.connect(srv:port())
    c:write("GET / HTTP/1.1\r\nHo")
    c:abort()
    assert_healthy(srv)
  end)

  it("partial request body then close", function()
    local c = helper.connect(srv:port())
    c:write("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
    c:close()
    local c2 = helper.connect(srv:port())
    c2:write("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc")
    c2:close()
    assert_healthy(srv)
  end)

  it("close while the handler sleeps, then the timer fires", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/sleep/one"))
    assert.truthy(srv:wait_stderr("sleeper-start one", 3), "handler never started:\n" .. srv:stderr())
    c:close()
    assert_healthy(srv)               -- serves while the abandoned handler sleeps
    helper.sleep(TIMER_GRACE)         -- let the handler's timer expire
    assert_healthy(srv)
  end)

  it("RST while the handler sleeps, then the timer fires", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/sleep/two"))
    assert.truthy(srv:wait_stderr("sleeper-start two", 3), srv:stderr())
    c:abort()
    helper.sleep(TIMER_GRACE)
    assert_healthy(srv)
  end)

  it("close while pipelined sleeping requests are queued", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/sleep/p1") .. helper.request("GET", "/sleep/p2")
            .. helper.request("GET", "/sleep/p3"))
    assert.truthy(srv:wait_stderr("sleeper-start p1", 3), srv:stderr())
    c:close()
    helper.sleep(TIMER_GRACE * 3)
    assert_healthy(srv)
  end)

  it("close while a streaming handler sleeps between writes", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/stream-sleep/s1"))
    assert.truthy(srv:wait_stderr("streamer-start s1", 3), srv:stderr())
    c:close()
    helper.sleep(TIMER_GRACE)
    assert_healthy(srv)
  end)

  it("50 quick disconnects while handlers sleep leave the server alive", function()
    for i = 1, 50 do
      local c = helper.connect(srv:port())
      c:write(helper.request("GET", "/sleep/q" .. i))
      if i % 2 == 0 then c:abort() else c:close() end
    end
    assert_healthy(srv)
    helper.sleep(TIMER_GRACE)
    assert_healthy(srv)
    -- and it can still do concurrent sleeping work afterwards
    local conns = {}
    for i = 1, 5 do
      conns[i] = helper.connect(srv:port())
      conns[i]:write(helper.request("GET", "/sleep/after" .. i))
    end
    for i = 1, 5 do
      assert.are.equal("woke after" .. i, conns[i]:response().body)
      conns[i]:close()
    end
  end)

  it("exits 0 on SIGTERM with no crash report after all of the above", function()
    local rc, killed = srv:stop()
    assert.is_falsy(killed, "needed SIGKILL")
    assert.are.equal(0, rc, "exit status " .. tostring(rc) .. "\n" .. srv:stderr())
    local crash = helper.crash_report(srv:stderr())
    assert.is_nil(crash, crash)
  end)
end)
