-- Out of file descriptors (RLIMIT_NOFILE below max_connections, as under a
-- service manager's default of 1024): an accept that fails with EMFILE
-- leaves the connection in the backlog, and one re-armed at once fails
-- again at once. The worker must pause accepting for a while (nginx
-- disables accept events for 500 ms), not spin and flood its log, and
-- accept again once descriptors are free.
local helper = require "helper"
local socket = require "socket"

local SCRIPT = [[
local app = luring.app()
app:listen("127.0.0.1:8080") -- --listen replaces it
app:get("/", function(req) return "ok" end)
]]

local function cpu_ticks(pid)
  local s = helper.readfile("/proc/" .. math.floor(pid) .. "/stat") or ""
  local rest = s:match("%) (.*)$") or ""
  local f = {}
  for x in rest:gmatch("%S+") do f[#f + 1] = x end
  return (tonumber(f[12]) or 0) + (tonumber(f[13]) or 0)
end

describe("accept out of file descriptors", function()
  local dir, pid, port
  lazy_setup(function()
    dir = helper.mktempdir()
    port = helper.free_port()
    local script = dir .. "/app.lua"
    helper.writefile(script, SCRIPT)
    pid = helper.spawn(dir, { "sh", "-c", 'ulimit -n 64 && exec "$0" "$@"',
                              helper.BIN:sub(1, 1) == "/" and helper.BIN
                                or (helper.repo_root() .. "/" .. helper.BIN),
                              "--listen", "127.0.0.1:" .. port, script })
    assert(helper.wait_until(function()
      return (helper.readfile(dir .. "/stderr") or ""):find("listening", 1, true)
    end, 10), "luring did not start: " .. (helper.readfile(dir .. "/stderr") or ""))
  end)
  lazy_teardown(function()
    if pid then os.execute("kill -TERM " .. math.floor(pid) .. " 2>/dev/null") end
    helper.wait_until(function() return helper.readfile(dir .. "/rc") ~= nil end, 5)
    if dir and dir:match("^/tmp/luring%-test%.") then os.execute("rm -rf " .. helper.shquote(dir)) end
  end)

  it("pauses accepting (no busy loop, a warning at most every 100 ms) and accepts again when descriptors are free", function()
    local held = {}
    for i = 1, 100 do -- beyond the 64 descriptors: the rest wait in the backlog
      local s = socket.tcp()
      s:settimeout(2)
      assert(s:connect("127.0.0.1", port))
      held[#held + 1] = s
    end
    socket.sleep(0.3)
    local lines0 = select(2, (helper.readfile(dir .. "/stderr") or ""):gsub("\n", ""))
    local t0 = cpu_ticks(pid)
    socket.sleep(1)
    local ticks = cpu_ticks(pid) - t0
    local lines = select(2, (helper.readfile(dir .. "/stderr") or ""):gsub("\n", "")) - lines0
    assert(ticks < 30, ("%d CPU ticks (1/100 s) in 1 s while out of descriptors"):format(ticks))
    assert(lines <= 15, ("%d log lines in 1 s"):format(lines))
    for _, s in ipairs(held) do s:close() end
    -- served again (the connections closed free their descriptors)
    local ok = helper.wait_until(function()
      local c = helper.try_connect(port, 1)
      if not c then return false end
      c:write(helper.request("GET", "/"))
      local res = c:response{ timeout = 2 }
      c:close()
      return res and res.status == 200
    end, 5, 0.1)
    assert.is_truthy(ok)
  end)
end)
