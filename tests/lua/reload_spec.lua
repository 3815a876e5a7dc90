-- Hot reload: SIGHUP and --watch swap the script without dropping
-- connections, in-flight requests finish on the old script, caches survive,
-- a broken script is reported and the old one stays.
local helper = require "helper"
local socket = require "socket"

local function script(version, origin_dir)
  return ([[
local app = luring.app()
app:listen("@LISTEN@")
local files = luring.origin{ name = "files", root = %q }
local cache = luring.cache{ name = "objects", max_bytes = 1000000 }
app:get("/", function(req) return "%s\n" end)
app:get("/slow", function(req) luring.sleep(400); return "slow-%s\n" end)
app:get("/file/:name", function(req)
  return cache:fetch(req, req.params.name, files, "/" .. req.params.name)
end)
]]):format(origin_dir, version, version)
end

local function write(path, data)
  local f = assert(io.open(path .. ".tmp", "w"))
  f:write(data)
  f:close()
  assert(os.rename(path .. ".tmp", path)) -- atomic, as editors do
end

local function body(port, path)
  local res = helper.get(port, path)
  return res and res.body, res
end

describe("hot reload", function()
  local dir

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir .. "/files"))
    local f = assert(io.open(dir .. "/files/a.txt", "w"))
    f:write("file a\n")
    f:close()
  end)

  after_each(function()
    helper.stop_all()
    os.execute("rm -rf " .. dir)
  end)

  it("SIGHUP: new requests get the new script, in-flight ones finish on the old", function()
    local srv = helper.start(script("v1", dir .. "/files"))
    local path = srv:script_path()
    assert.are.equal("v1\n", body(srv:port(), "/"))
    -- a request parked in luring.sleep on the v1 script
    local slow = helper.connect(srv:port())
    slow:write(helper.request("GET", "/slow"))
    socket.sleep(0.1)
    local f = assert(io.open(path, "r"))
    local src = f:read("*a")
    f:close()
    write(path, (src:gsub("v1", "v2")))
    os.execute("kill -HUP " .. srv:pid())
    assert.truthy(srv:wait_stderr("reloaded", 5), srv:stderr())
    assert.are.equal("v2\n", body(srv:port(), "/"))
    local res = slow:response()
    assert.are.equal(200, res.status)
    assert.are.equal("slow-v1\n", res.body)
    slow:close()
    -- the old state is closed once its last request is done
    assert.truthy(srv:wait_stderr("closed a replaced script state", 5), srv:stderr())
  end)

  it("a script that fails to load is reported and the old one keeps serving", function()
    local srv = helper.start(script("v1", dir .. "/files"))
    write(srv:script_path(), "this is not lua (\n")
    os.execute("kill -HUP " .. srv:pid())
    assert.truthy(srv:wait_stderr("reload of", 5), srv:stderr())
    assert.truthy(srv:stderr():find("still running the previous script", 1, true))
    assert.are.equal("v1\n", body(srv:port(), "/"))
    assert.is_true(srv:alive())
  end)

  it("--watch reloads when the script file changes", function()
    local srv = helper.start(script("v1", dir .. "/files"), { args = { "--watch" } })
    assert.are.equal("v1\n", body(srv:port(), "/"))
    local f = assert(io.open(srv:script_path(), "r"))
    local src = f:read("*a")
    f:close()
    write(srv:script_path(), (src:gsub("v1", "v3")))
    assert.truthy(helper.wait_until(function()
      return body(srv:port(), "/") == "v3\n"
    end, 5), srv:stderr())
  end)

  it("caches survive a reload (bound by name)", function()
    local srv = helper.start(script("v1", dir .. "/files"))
    local b, res = body(srv:port(), "/file/a.txt")
    assert.are.equal("file a\n", b)
    assert.are.equal("MISS", res.headers["x-cache"])
    os.execute("kill -HUP " .. srv:pid())
    assert.truthy(srv:wait_stderr("reloaded", 5), srv:stderr())
    b, res = body(srv:port(), "/file/a.txt")
    assert.are.equal("file a\n", b)
    assert.are.equal("HIT", res.headers["x-cache"])
  end)

  it("20 reloads under load: zero failed requests", function()
    local srv = helper.start(script("v1", dir .. "/files"))
    local out = os.tmpname()
    -- 4 s of keep-alive load on 16 connections, in the background
    assert(os.execute(("timeout 20 wrk -t2 -c16 -d4s http://127.0.0.1:%d/ > %s 2>&1 &")
      :format(srv:port(), out)))
    socket.sleep(0.3)
    local f = assert(io.open(srv:script_path(), "r"))
    local src = f:read("*a")
    f:close()
    for i = 1, 20 do
      write(srv:script_path(), (src:gsub("v1", "v" .. (i + 1))))
      os.execute("kill -HUP " .. srv:pid())
      socket.sleep(0.1)
    end
    assert.truthy(helper.wait_until(function()
      local h = io.open(out)
      local text = h and h:read("*a") or ""
      if h then h:close() end
      return text:find("Requests/sec", 1, true) ~= nil
    end, 15), "wrk did not finish")
    local h = assert(io.open(out))
    local report = h:read("*a")
    h:close()
    os.remove(out)
    local n = tonumber(report:match("(%d+) requests in"))
    assert.truthy(n and n > 100, report)
    assert.is_nil(report:find("Socket errors", 1, true), report)
    assert.is_nil(report:find("Non%-2xx"), report)
    local _, reloads = srv:stderr():gsub("reloaded", "")
    assert.are.equal(20, reloads)
    assert.are.equal("v21\n", body(srv:port(), "/"))
  end)
end)
