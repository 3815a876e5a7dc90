-- Lua errors in handlers: 500 + traceback in the log, server keeps serving;
-- error after req:start closes the connection.
local helper = require "helper"

-- Line numbers matter: the traceback must mention the handler's call site.
local SCRIPT = table.concat({
  'local app = luring.app()',                                    -- 1
  'app:listen("@LISTEN@")',                                      -- 2
  'local function explode_now(what)',                            -- 3
  '  error("kaboom-" .. what)',                                  -- 4
  'end',                                                         -- 5
  'app:get("/boom", function(req)',                              -- 6
  '  explode_now("sync")',                                       -- 7  <- handler call site
  'end)',                                                        -- 8
  'app:get("/boom-after-sleep", function(req)',                  -- 9
  '  luring.sleep(20)',                                          -- 10
  '  explode_now("slept")',                                      -- 11
  'end)',                                                        -- 12
  'app:get("/boom-table", function(req)',                        -- 13
  '  error({ code = 1 })',                                       -- 14
  'end)',                                                        -- 15
  'app:get("/boom-streaming", function(req)',                    -- 16
  '  req:start(200, { ["Content-Type"] = "text/plain" })',       -- 17
  '  req:write("partial")',                                      -- 18
  '  luring.sleep(20)',                                          -- 19
  '  explode_now("streaming")',                                  -- 20
  'end)',                                                        -- 21
  'app:get("/ok", function(req) return 200, nil, "fine" end)',   -- 22
  'app:get("/bad-return", function(req) return {} end)',         -- 23
  'app:get("/bad-name", function(req)',                          -- 24
  '  return 200, { ["X-Ok"] = "1", ["Bad Name\\r\\nX-Injected"] = "1" }, "b"',
  'end)',
  'app:get("/bad-value", function(req)',
  '  return 200, { ["X-Ok"] = "a\\r\\nX-Injected: 1" }, "b"',
  'end)',
  'app:get("/bad-start", function(req)',
  '  req:start(200, { ["X-Ok"] = "a\\nX-Injected: 1" })',
  '  req:write("never")',
  'end)',
  'app:get("/ctl/*", function(req)',
  '  return 200, { ["X-Ok"] = "a" .. string.char(tonumber(req.params["*"])) .. "b" }, "b"',
  'end)',
}, "\n") .. "\n"

describe("handler errors", function()
  local srv

  lazy_setup(function()
    srv = helper.start(SCRIPT)
  end)

  lazy_teardown(function()
    helper.stop_all()
  end)

  it("a Lua error gives 500 and a logged traceback, then the server still serves", function()
    local res = helper.get(srv:port(), "/boom")
    assert.are.equal(500, res.status)
    assert.truthy(srv:wait_stderr("kaboom-sync", 2), "error message not logged:\n" .. srv:stderr())
    local log = srv:stderr()
    assert.truthy(log:find("traceback", 1, true), "no traceback in log:\n" .. log)
    assert.truthy(log:find("app.lua:7:", 1, true),
      "traceback does not mention the handler (app.lua:7):\n" .. log)
    -- the next request on a fresh connection succeeds
    local ok = helper.get(srv:port(), "/ok")
    assert.are.equal(200, ok.status)
    assert.are.equal("fine", ok.body)
  end)

  it("an error after luring.sleep gives 500 with a traceback", function()
    local res = helper.get(srv:port(), "/boom-after-sleep")
    assert.are.equal(500, res.status)
    assert.truthy(srv:wait_stderr("kaboom-slept", 2), srv:stderr())
    assert.truthy(srv:stderr():find("app.lua:11:", 1, true), srv:stderr())
    assert.are.equal("fine", helper.get(srv:port(), "/ok").body)
  end)

  it("a non-string error value gives 500", function()
    local res = helper.get(srv:port(), "/boom-table")
    assert.are.equal(500, res.status)
    assert.are.equal("fine", helper.get(srv:port(), "/ok").body)
  end)

  it("an invalid return value gives 500", function()
    local res = helper.get(srv:port(), "/bad-return")
    assert.are.equal(500, res.status)
    assert.are.equal("fine", helper.get(srv:port(), "/ok").body)
  end)

  it("a header name or value that would split the head gives 500, nothing of it sent", function()
    local c = helper.connect(srv:port())
    for _, path in ipairs({ "/bad-name", "/bad-value", "/bad-start" }) do
      c:write(helper.request("GET", path))
      local res = c:response()
      assert.are.equal(500, res.status, path)
      assert.is_nil(res.headers["x-injected"], path)
      assert.is_nil(res.headers["x-ok"], path)
      assert.truthy(res.body:find("Internal Server Error", 1, true), path)
    end
    -- the same keep-alive connection still serves
    c:write(helper.request("GET", "/ok"))
    assert.are.equal("fine", c:response().body)
    c:close()
    assert.truthy(srv:wait_stderr("invalid header", 2), srv:stderr())
  end)

  it("a header value with any control character but HTAB gives 500 (RFC 9110 §5.5); HTAB and obs-text pass", function()
    local c = helper.connect(srv:port())
    for _, b in ipairs({ 0, 1, 8, 10, 11, 12, 13, 27, 31, 127 }) do
      c:write(helper.request("GET", "/ctl/" .. b))
      local res = c:response()
      assert.are.equal(500, res.status, "byte " .. b)
      assert.is_nil(res.headers["x-ok"], "byte " .. b)
    end
    for _, b in ipairs({ 9, 32, 126, 128, 255 }) do
      c:write(helper.request("GET", "/ctl/" .. b))
      local res = c:response()
      assert.are.equal(200, res.status, "byte " .. b)
    end
    c:close()
  end)

  it("several errors in a row on one keep-alive connection do not wedge it", function()
    local c = helper.connect(srv:port())
    for _ = 1, 3 do
      c:write(helper.request("GET", "/boom"))
      local res, err = c:read_response()
      if not res then
        -- the server may close after a 500; then a fresh connection must work
        assert.is_true(c.closed, "no response and not closed: " .. tostring(err))
        c:close()
        c = helper.connect(srv:port())
      else
        assert.are.equal(500, res.status)
        if (res.headers["connection"] or ""):lower() == "close" then
          c:close()
          c = helper.connect(srv:port())
        end
      end
    end
    c:write(helper.request("GET", "/ok"))
    assert.are.equal("fine", c:response().body)
    c:close()
  end)

  it("an error after req:start closes the connection (no terminating chunk)", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/boom-streaming"))
    local res, err, partial = c:read_response()
    assert.is_nil(res, "a complete response was received, the stream should have been cut")
    assert.is_not_nil(partial, tostring(err))
    assert.are.equal(200, partial.status)
    assert.are.equal("partial", partial.body)
    assert.is_true(c.closed, "connection not closed: " .. tostring(err))
    c:close()
    assert.truthy(srv:wait_stderr("kaboom-streaming", 2), srv:stderr())
    assert.are.equal("fine", helper.get(srv:port(), "/ok").body)
  end)

  it("no crash reports in the log", function()
    assert.is_true(srv:alive())
    assert.is_nil(helper.crash_report(srv:stderr()))
  end)
end)
