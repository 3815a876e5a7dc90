-- Issue 10 point 6, "A stuck script cannot take the server down": Lua code
-- that runs longer than luring.config{ lua_budget } without yielding is
-- interrupted (500, a failed hook or policy call, a failed reload), /health
-- keeps answering, SIGINT ends the process within shutdown_timeout even
-- when a worker is stuck, and a handler that reaches lua_max_memory gets
-- 500 while the worker goes on serving large responses. docs/API.md
-- ("Lua budget and memory") describes the behaviour; src/lua/budget.c the
-- mechanism. Ports 18700-18720.
local helper = require "helper"
local socket = require "socket"

local BUDGET = 0.3
-- how late an interrupt may come: the watchdog looks every budget/8 (at most
-- 100 ms); the rest is slack for a busy machine or a sanitizer build
local LATE = 1.5

local SCRIPT = ([[
luring.config{ lua_budget = %g, shutdown_timeout = 2 }
local app = luring.app()
app:listen("@LISTEN@")
app:get("/health", function(req) return "ok\n" end)
app:get("/while", function(req) while true do end end)
app:get("/for", function(req) for i = 1, 1e12 do end return "done\n" end)
app:get("/concat", function(req)
  local s = ""
  while true do s = s .. "x" if #s > 4096 then s = "" end end
end)
local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end
local function forever(n) return forever(n + 1) end
app:get("/fib", function(req) return tostring(fib(40)) end)
app:get("/tail", function(req) return forever(1) end)
app:get("/pcall", function(req)
  local caught = 0
  while true do
    local ok = pcall(function() while true do end end)
    if not ok then caught = caught + 1 end
  end
end)
app:get("/xpcall", function(req)
  while true do xpcall(function() while true do end end, function(e) return e end) end
end)
app:get("/after-sleep", function(req) luring.sleep(10) while true do end end)
app:get("/sleepy", function(req)
  -- 130 x 10 ms of CPU work, yielding in between: never over the budget
  -- (short slices: on a loaded machine a slice of CPU time takes several
  -- times as long in wall time, which is what the budget measures)
  for i = 1, 130 do
    local t = os.clock() -- CPU time: luring.now() stands still in a run
    while os.clock() - t < 0.01 do end
    luring.sleep(1)
  end
  return "slept\n"
end)
]]):format(BUDGET)

local function timed_get(port, path)
  local t = socket.gettime()
  local res = helper.get(port, path)
  return res, socket.gettime() - t
end

describe("lua_budget (issue 10 point 6)", function()
  local srv

  lazy_setup(function()
    srv = helper.start(SCRIPT, { port = 18700 })
  end)

  lazy_teardown(function()
    helper.stop_all()
  end)

  for _, path in ipairs({ "/while", "/for", "/concat", "/fib", "/tail", "/pcall",
                          "/xpcall", "/after-sleep" }) do
    it(path .. ": interrupted after the budget with a 500 and a log line", function()
      local res, took = timed_get(srv:port(), path)
      assert.are.equal(500, res.status)
      assert.is_true(took >= BUDGET * 0.9, ("answered after %.3f s"):format(took))
      assert.is_true(took < BUDGET + LATE, ("answered after %.3f s"):format(took))
      assert.truthy(srv:wait_stderr("lua budget exceeded", 2), srv:stderr())
      -- the worker serves again
      assert.are.equal("ok\n", helper.get(srv:port(), "/health").body)
    end)
  end

  it("a handler that yields often may run far longer than the budget", function()
    local res, took = timed_get(srv:port(), "/sleepy")
    assert.are.equal(200, res.status)
    assert.are.equal("slept\n", res.body)
    assert.is_true(took > 1.2, ("took %.3f s"):format(took))
  end)

  it("a budget error can't be caught: the pcall loop's count of catches never returns", function()
    local _, n = srv:stderr():gsub("lua budget exceeded", "")
    local res = helper.get(srv:port(), "/pcall")
    assert.are.equal(500, res.status)
    assert.truthy(helper.wait_until(function()
      local _, m = srv:stderr():gsub("lua budget exceeded", "")
      return m > n
    end, 2))
  end)

  it("no crash reports in the log", function()
    assert.is_true(srv:alive())
    assert.is_nil(helper.crash_report(srv:stderr()))
  end)
end)

describe("lua_budget: /health while a handler is stuck (issue 10 point 6)", function()
  after_each(function() helper.stop_all() end)

  it("with two workers, /health answers at once on the free one", function()
    local srv = helper.start(([[
luring.config{ lua_budget = 3, workers = 2 }
local app = luring.app()
app:listen("@LISTEN@")
app:get("/health", function(req) return "ok\n" end)
app:get("/while", function(req) while true do end end)
]]), { port = 18701 })
    local stuck = helper.connect(srv:port())
    stuck:write(helper.request("GET", "/while"))
    socket.sleep(0.2)
    -- new connections go to either worker (SO_REUSEPORT): those on the
    -- free worker answer at once, those on the stuck one after the budget
    local results = helper.burst(srv:port(), 12, "/health", 10)
    local fast = 0
    for i, res in ipairs(results) do
      assert.are.equal("ok\n", res.body, tostring(res.err) .. " #" .. i)
      if res.latency < 0.5 then fast = fast + 1 end
    end
    assert.is_true(fast >= 1, ("%d of 12 /health requests answered fast"):format(fast))
    local res = stuck:response({ timeout = 10 })
    assert.are.equal(500, res.status)
    stuck:close()
  end)

  it("with one worker, /health answers once the budget interrupts the handler", function()
    local srv = helper.start(([[
luring.config{ lua_budget = 0.5 }
local app = luring.app()
app:listen("@LISTEN@")
app:get("/health", function(req) return "ok\n" end)
app:get("/while", function(req) while true do end end)
]]), { port = 18702 })
    local stuck = helper.connect(srv:port())
    stuck:write(helper.request("GET", "/while"))
    socket.sleep(0.1)
    local res, took = timed_get(srv:port(), "/health")
    assert.are.equal("ok\n", res.body)
    assert.is_true(took < 0.5 + LATE, ("took %.3f s"):format(took))
    assert.are.equal(500, stuck:response().status)
    stuck:close()
  end)
end)

describe("lua_budget: cache hooks, policies and reloads (issue 10 point 6)", function()
  local dir

  before_each(function()
    dir = helper.mktempdir()
    assert(os.execute("mkdir -p " .. dir .. "/files"))
    helper.writefile(dir .. "/files/a.txt", "file a\n")
    helper.writefile(dir .. "/files/b.txt", ("b"):rep(600))
    helper.writefile(dir .. "/files/c.txt", ("c"):rep(600))
    -- a policy whose evict() never returns
    helper.writefile(dir .. "/stuck.lua", [[
return { insert = function() end, hit = function() end, remove = function() end,
         evict = function() while true do end end }
]])
  end)

  after_each(function()
    helper.stop_all()
    os.execute("rm -rf " .. helper.shquote(dir))
  end)

  it("an admit hook that loops fails (logged, default used) and the response is served", function()
    local srv = helper.start(([[
luring.config{ lua_budget = 0.3 }
local app = luring.app()
app:listen("@LISTEN@")
local files = luring.origin{ name = "files", root = %q }
local cache = luring.cache{ name = "c", admit = function() while true do end end }
app:get("/f/:n", function(req) return cache:fetch(req, req.params.n, files, "/" .. req.params.n) end)
app:get("/health", function(req) return "ok\n" end)
]]):format(dir .. "/files"), { port = 18703 })
    local res, took = timed_get(srv:port(), "/f/a.txt")
    assert.are.equal(200, res.status)
    assert.are.equal("file a\n", res.body)
    assert.is_true(took < 0.3 + LATE, ("took %.3f s"):format(took))
    assert.truthy(srv:wait_stderr("admit hook failed", 2), srv:stderr())
    assert.truthy(srv:stderr():find("lua budget exceeded", 1, true), srv:stderr())
    assert.are.equal("ok\n", helper.get(srv:port(), "/health").body)
  end)

  it("a Lua policy whose evict() loops is interrupted; the server goes on", function()
    local srv = helper.start(([[
luring.config{ lua_budget = 0.3 }
local app = luring.app()
app:listen("@LISTEN@")
local files = luring.origin{ name = "files", root = %q }
local cache = luring.cache{ name = "c", max_bytes = 1500, policy = %q }
app:get("/f/:n", function(req) return cache:fetch(req, req.params.n, files, "/" .. req.params.n) end)
app:get("/health", function(req) return "ok\n" end)
]]):format(dir .. "/files", dir .. "/stuck.lua"), { port = 18704 })
    assert.are.equal(200, helper.get(srv:port(), "/f/b.txt").status)
    -- c.txt does not fit beside b.txt (about 1200 bytes stored each, with
    -- their fields and key): evict() runs (a policy with nothing resident
    -- is never asked: store/policy.c policy_evict)
    local res, took = timed_get(srv:port(), "/f/c.txt")
    assert.are.equal(200, res.status)
    assert.are.equal(("c"):rep(600), res.body)
    assert.is_true(took < 0.3 + LATE, ("took %.3f s"):format(took))
    assert.truthy(srv:wait_stderr("evict(): lua budget exceeded", 2), srv:stderr())
    assert.are.equal("ok\n", helper.get(srv:port(), "/health").body)
  end)

  it("a reloaded main chunk that loops: the reload fails, the old script serves", function()
    local srv = helper.start([[
luring.config{ lua_budget = 0.3 }
local app = luring.app()
app:listen("@LISTEN@")
app:get("/", function(req) return "v1\n" end)
]], { port = 18705 })
    local src = helper.readfile(srv:script_path())
    helper.writefile(srv:script_path(), "while true do end\n" .. src:gsub("v1", "v2"))
    os.execute("kill -HUP " .. srv:pid())
    assert.truthy(srv:wait_stderr("reload of", 3), srv:stderr())
    assert.truthy(srv:stderr():find("still running the previous script: lua budget exceeded", 1, true),
      srv:stderr())
    assert.are.equal("v1\n", helper.get(srv:port(), "/").body)
    -- a good script after that is taken
    helper.writefile(srv:script_path(), (src:gsub("v1", "v3")))
    os.execute("kill -HUP " .. srv:pid())
    assert.truthy(helper.wait_until(function()
      return helper.get(srv:port(), "/").body == "v3\n"
    end, 3), srv:stderr())
  end)
end)

describe("lua_budget: stopping (SIGINT) with a stuck worker (issue 10 point 6)", function()
  after_each(function() helper.stop_all() end)

  local function stop_timed(srv)
    local t = socket.gettime()
    local rc, killed = srv:stop()
    return rc, killed, socket.gettime() - t
  end

  it("interrupts the handler at once and exits 0", function()
    local srv = helper.start([[
luring.config{ lua_budget = 60, shutdown_timeout = 5 }
local app = luring.app()
app:listen("@LISTEN@")
app:get("/while", function(req) while true do end end)
]], { port = 18706 })
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/while"))
    socket.sleep(0.3)
    local rc, killed, took = stop_timed(srv)
    c:close()
    assert.is_falsy(killed)
    assert.are.equal(0, rc, srv:stderr())
    assert.is_true(took < 2, ("stopped after %.3f s"):format(took))
  end)

  it("with lua_jit = true a compiled loop can't be interrupted: exit 1 at shutdown_timeout", function()
    local srv = helper.start([[
luring.config{ lua_budget = 0.2, shutdown_timeout = 1, lua_jit = true }
local app = luring.app()
app:listen("@LISTEN@")
app:get("/while", function(req) while true do end end)
]], { port = 18707 })
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/while"))
    -- the documented limit: the JIT compiled the loop, no hook runs in it
    local res = c:read_response({ timeout = 0.8 })
    assert.is_nil(res)
    local rc, killed, took = stop_timed(srv)
    c:close()
    assert.is_falsy(killed)
    assert.are.equal(1, rc)
    assert.is_true(took >= 0.9 and took < 3, ("stopped after %.3f s"):format(took))
    assert.truthy(srv:stderr():find("did not stop within shutdown_timeout", 1, true), srv:stderr())
  end)
end)

describe("lua_max_memory (issue 10 point 6)", function()
  local srv

  lazy_setup(function()
    srv = helper.start([[
luring.config{ lua_budget = 20, lua_max_memory = 48 * 2^20 }
local app = luring.app()
app:listen("@LISTEN@")
app:get("/oom", function(req)
  local t = {}
  while true do t[#t + 1] = ("x"):rep(2^20) .. #t end
end)
app:get("/oom-caught", function(req)
  local t = {}
  local ok, err = pcall(function() while true do t[#t + 1] = ("x"):rep(2^20) .. #t end end)
  return 200, nil, tostring(ok) .. " " .. tostring(err)
end)
app:get("/big", function(req) return ("y"):rep(5 * 2^20) end)
]], { port = 18708 })
  end)

  lazy_teardown(function()
    helper.stop_all()
  end)

  it("a handler that allocates without end gets 500; 5 MB responses still go out, repeatedly", function()
    for i = 1, 3 do
      local res = helper.get(srv:port(), "/oom")
      assert.are.equal(500, res.status, "round " .. i)
      local big = helper.get(srv:port(), "/big")
      assert.are.equal(200, big.status, "round " .. i)
      assert.are.equal(5 * 2^20, #big.body, "round " .. i)
    end
    assert.truthy(srv:stderr():find("lua_max_memory", 1, true), srv:stderr())
  end)

  it("a handler that catches the memory error goes on; so does the worker", function()
    local res = helper.get(srv:port(), "/oom-caught")
    assert.are.equal(200, res.status)
    assert.truthy(res.body:find("false not enough memory", 1, true), res.body)
    assert.are.equal(5 * 2^20, #helper.get(srv:port(), "/big").body)
  end)

  it("no crash reports in the log", function()
    assert.is_true(srv:alive())
    assert.is_nil(helper.crash_report(srv:stderr()))
  end)
end)
