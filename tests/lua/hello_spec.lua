-- Basic serving: GET / -> "Hello, World!", curl, the examples/hello.lua
-- script with --listen, log line on start-up, SIGTERM exit status, workers.
local helper = require "helper"

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local text = { ["Content-Type"] = "text/plain" }
app:get("/", function(req)
  return 200, text, "Hello, World!"
end)
app:get("/health", function(req)
  return 200, text, "OK\n"
end)
app:get("/plain", function(req)
  return "just text"
end)
]]

describe("hello", function()
  local srv

  lazy_setup(function()
    srv = helper.start(SCRIPT)
  end)

  lazy_teardown(function()
    helper.stop_all()
  end)

  it("GET / returns 200 Hello, World! with server-added headers", function()
    local res = helper.get(srv:port(), "/")
    assert.are.equal(200, res.status)
    assert.are.equal("1.1", res.version)
    assert.are.equal("Hello, World!", res.body)
    assert.are.equal("13", res.headers["content-length"])
    assert.are.equal("text/plain", res.headers["content-type"])
    assert.is_nil(res.headers["transfer-encoding"])
    assert.is_not_nil(res.headers["server"], "Server header missing:\n" .. res.raw_head)
    assert.is_not_nil(res.headers["date"], "Date header missing:\n" .. res.raw_head)
    -- Date must be an IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT"
    assert.truthy(res.headers["date"]:match("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$"),
      "bad Date: " .. tostring(res.headers["date"]))
  end)

  it("GET /health returns 200", function()
    local res = helper.get(srv:port(), "/health")
    assert.are.equal(200, res.status)
    assert.are.equal("OK\n", res.body)
  end)

  it("a handler returning only a string gives 200 text/plain", function()
    local res = helper.get(srv:port(), "/plain")
    assert.are.equal(200, res.status)
    assert.are.equal("just text", res.body)
    assert.truthy((res.headers["content-type"] or ""):find("text/plain", 1, true),
      "content-type: " .. tostring(res.headers["content-type"]))
  end)

  it("logs the listening address on stderr", function()
    local line = "[info] luring w0: listening on " .. srv:addr()
    assert.truthy(srv:wait_stderr(line, 2), "expected '" .. line .. "' in stderr:\n" .. srv:stderr())
  end)

  it("serves curl", function()
    local rc, out = helper.curl({ "-i", "http://" .. srv:addr() .. "/" })
    assert.are.equal(0, rc, "curl failed: " .. tostring(out))
    assert.truthy(out:match("^HTTP/1%.1 200"), out)
    assert.truthy(out:find("\r\n\r\nHello, World!$"), out)
  end)

  it("serves curl with two URLs over one connection", function()
    local rc, out = helper.curl({ "-v", "http://" .. srv:addr() .. "/",
                                  "http://" .. srv:addr() .. "/health" })
    assert.are.equal(0, rc, "curl failed: " .. tostring(out))
    assert.truthy(out:find("Hello, World!", 1, true), out)
    assert.truthy(out:find("OK\n", 1, true), out)
    assert.truthy(out:find("Re%-using existing connection") or out:find("Reusing existing connection"),
      "curl did not reuse the connection:\n" .. out)
  end)
end)

describe("hello: process", function()
  after_each(function()
    helper.stop_all()
  end)

  it("runs examples/hello.lua with --listen overriding its address", function()
    local file = helper.repo_root() .. "/examples/hello.lua"
    assert.truthy(helper.readfile(file), "missing " .. file)
    local srv = helper.start(nil, { file = file })
    local res = helper.get(srv:port(), "/")
    assert.are.equal(200, res.status)
    assert.are.equal("Hello, World!", res.body)
    local health = helper.get(srv:port(), "/health")
    assert.are.equal(200, health.status)
    assert.truthy(srv:wait_stderr("listening on " .. srv:addr(), 2), srv:stderr())
  end)

  it("SIGTERM stops the server with exit status 0", function()
    local srv = helper.start(SCRIPT)
    assert.are.equal(200, helper.get(srv:port(), "/").status)
    local rc, killed = srv:stop("TERM")
    assert.is_falsy(killed, "server ignored SIGTERM for " .. helper.STOP_TIMEOUT .. "s")
    assert.are.equal(0, rc, "exit status " .. tostring(rc) .. "\n" .. srv:stderr())
    assert.is_nil(helper.crash_report(srv:stderr()))
  end)

  it("SIGTERM with an open idle keep-alive connection still exits promptly", function()
    local srv = helper.start(SCRIPT)
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/"))
    assert.are.equal(200, c:response().status)
    local t0 = helper.now()
    local rc, killed = srv:stop("TERM")
    c:close()
    assert.is_falsy(killed, "server ignored SIGTERM while a connection was open")
    assert.are.equal(0, rc, srv:stderr())
    assert.truthy(helper.now() - t0 < 3, "took " .. (helper.now() - t0) .. "s to exit")
  end)

  it("--workers 2 serves requests", function()
    local srv = helper.start(SCRIPT, { args = { "--workers", "2" } })
    local conns = {}
    for i = 1, 20 do
      conns[i] = helper.connect(srv:port())
      conns[i]:write(helper.request("GET", "/"))
    end
    for i = 1, 20 do
      local res = conns[i]:response()
      assert.are.equal(200, res.status)
      assert.are.equal("Hello, World!", res.body)
      conns[i]:close()
    end
  end)
end)
