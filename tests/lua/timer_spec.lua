-- luring.timer.at / every (issue 15, point 1): fn(premature, ...) runs on a
-- coroutine of its own outside any request, on the worker's io_uring loop;
-- it may sleep and fetch (a real nginx origin here); a handle cancels it;
-- errors are logged and the worker serves on; max_timers bounds them;
-- reload and graceful drain run pending timers once with premature = true.
-- Timing bounds are generous (ASan builds, a shared machine).
local helper = require "helper"
local origin = require "origin"
local socket = require "socket"

local SCRIPT = [[
luring.config{ max_timers = 64 }
local app = luring.app()
app:listen("@LISTEN@")
local o = luring.origin{ name = "o", url = "@ORIGIN@" }
local results = {}
local top_runs = 0
luring.timer.at(0, function(premature) top_runs = top_runs + 1 end)

app:get("/get/:key", function(req) return tostring(results[req.params.key]) end)
app:get("/ping", function(req) return "pong" end)
app:get("/top", function(req) return tostring(top_runs) end)

app:get("/at/:ms", function(req)
  local t0 = luring.now()
  results.at = nil
  local h, err = luring.timer.at(tonumber(req.params.ms) / 1000, function(premature, ...)
    local a, b, c = ...
    results.at = string.format("%d %s %s %s %s %d", luring.now() - t0, tostring(premature),
      tostring(a), tostring(b), tostring(c), select("#", ...))
  end, 1, nil, "x")
  return h and type(h.id) or tostring(err)
end)

local every_h
app:get("/every/start", function(req)
  results.every = 0
  every_h = luring.timer.every(0.1, function(premature)
    results.every = results.every + 1
  end)
  return "started"
end)
app:get("/every/cancel", function(req)
  local ok, err = every_h:cancel()
  return tostring(ok) .. " " .. tostring(err)
end)

app:get("/cancel/pending", function(req)
  results.cancelled = nil
  local h = luring.timer.at(0.3, function() results.cancelled = "ran" end)
  local ok1, err1 = h:cancel()
  local ok2, err2 = h:cancel()
  return table.concat({ tostring(ok1), tostring(err1), tostring(ok2), tostring(err2) }, " ")
end)

app:get("/cancel/running", function(req)
  results.long = nil
  local h = luring.timer.at(0, function()
    luring.sleep(300)
    results.long = "finished"
  end)
  luring.sleep(100)
  local ok, err = h:cancel()
  return tostring(ok) .. " " .. tostring(err) .. " " .. luring.timer.running_count()
end)

app:get("/cancel/self", function(req)
  results.selfn = 0
  local h
  h = luring.timer.every(0.02, function()
    results.selfn = results.selfn + 1
    if results.selfn == 3 then assert(h:cancel()) end
  end)
  return "ok"
end)

app:get("/fetch", function(req)
  results.fetch = nil
  luring.timer.at(0, function(premature)
    luring.sleep(50)
    local st, headers, body = o:fetch("/data.txt")
    local st2, h2, reader = o:request{ path = "/data.txt" }
    local parts = {}
    while true do
      local piece, err = reader:read()
      if not piece then break end
      parts[#parts + 1] = piece
    end
    results.fetch = st .. " " .. headers["content-type"] .. " " .. body
                    .. " | " .. st2 .. " " .. table.concat(parts)
  end)
  return "scheduled"
end)

local errors_n = 0
app:get("/errors", function(req)
  luring.timer.at(0, function() error("boom-at") end)
  luring.timer.every(0.05, function()
    errors_n = errors_n + 1
    error("boom-every " .. errors_n)
  end)
  return "ok"
end)
app:get("/errors/n", function(req) return tostring(errors_n) end)

app:get("/badargs", function(req)
  local _, e1 = pcall(luring.timer.at, "soon", function() end)
  local _, e2 = pcall(luring.timer.every, 0, function() end)
  local _, e3 = pcall(luring.timer.at, 1)
  return e1 .. "\n" .. e2 .. "\n" .. e3
end)
]]

local tsan = helper.tsan

local function get(srv, path)
  local res = helper.get(srv:port(), path)
  assert.are.equal(200, res.status, path .. ": " .. tostring(res.body))
  return res.body
end

-- Poll `path` until its body satisfies pred (or equals it), within timeout.
local function wait_body(srv, path, pred, timeout)
  local body
  local ok = helper.wait_until(function()
    body = get(srv, path)
    if type(pred) == "function" then return pred(body) end
    return body == pred
  end, timeout or 5, 0.02)
  return ok, body
end

local function signal(srv, sig)
  os.execute("kill -" .. sig .. " " .. math.floor(srv:pid()) .. " 2>/dev/null")
end

-- Lines of srv's stderr containing s (a plain string).
local function count_lines(srv, s)
  local n = 0
  for line in srv:stderr():gmatch("[^\n]+") do
    if line:find(s, 1, true) then n = n + 1 end
  end
  return n
end

describe("luring.timer", function()
  local srv, o

  lazy_setup(function()
    o = origin.start{ files = { ["data.txt"] = "timer data\n" } }
    srv = helper.start((SCRIPT:gsub("@ORIGIN@", o:url())))
  end)

  lazy_teardown(function()
    helper.stop_all()
    origin.stop_all()
  end)

  it("a timer made by the main chunk runs once (one worker)", function()
    assert.truthy(wait_body(srv, "/top", "1", 3))
  end)

  it("at(0.2, fn, 1, nil, 'x') runs fn(false, 1, nil, 'x') about 200 ms later", function()
    assert.are.equal("number", get(srv, "/at/200"))
    local ok, body = wait_body(srv, "/get/at", function(b) return b ~= "nil" end, 3)
    assert.truthy(ok, body)
    local ms, rest = body:match("^(%d+) (.*)$")
    assert.are.equal("false 1 nil x 3", rest)
    ms = tonumber(ms)
    assert.truthy(ms >= 190 and ms < 1500, "ran after " .. ms .. " ms")
  end)

  it("every(0.1) runs about ten times a second until cancelled", function()
    assert.are.equal("started", get(srv, "/every/start"))
    socket.sleep(1.05)
    local n = tonumber(get(srv, "/get/every"))
    assert.truthy(n >= 5 and n <= 12, "ran " .. n .. " times in 1.05 s")
    assert.are.equal("true nil", get(srv, "/every/cancel"))
    local after = tonumber(get(srv, "/get/every"))
    socket.sleep(0.35)
    assert.are.equal(after, tonumber(get(srv, "/get/every")))
    assert.are.equal("nil done", get(srv, "/every/cancel"))
  end)

  it("cancel: a pending timer never runs; a second cancel says done", function()
    assert.are.equal("true nil nil done", get(srv, "/cancel/pending"))
    socket.sleep(0.5)
    assert.are.equal("nil", get(srv, "/get/cancelled"))
  end)

  it("cancel: an `at` already running can't be cancelled and finishes", function()
    assert.are.equal("nil running 1", get(srv, "/cancel/running"))
    assert.truthy(wait_body(srv, "/get/long", "finished", 3))
  end)

  it("an every that cancels itself from its function stops there", function()
    get(srv, "/cancel/self")
    assert.truthy(wait_body(srv, "/get/selfn", "3", 3))
    socket.sleep(0.2)
    assert.are.equal("3", get(srv, "/get/selfn"))
  end)

  it("a timer sleeps, fetches from a real nginx (origin:fetch and origin:request), "
     .. "and a handler serves what it stored", function()
    assert.are.equal("scheduled", get(srv, "/fetch"))
    local ok, body = wait_body(srv, "/get/fetch", function(b) return b ~= "nil" end, 5)
    assert.truthy(ok, body)
    assert.are.equal("200 text/plain timer data\n | 200 timer data\n", body)
  end)

  it("errors are logged with the timer's id; the worker serves on; every goes on", function()
    assert.are.equal("ok", get(srv, "/errors"))
    assert.truthy(wait_body(srv, "/errors/n", function(b) return tonumber(b) >= 3 end, 5))
    assert.are.equal("pong", get(srv, "/ping"))
    local log = srv:stderr()
    assert.truthy(log:match("timer %d+ failed: [^\n]*boom%-at[^\n]*"), log)
    assert.truthy(log:match("timer %d+ failed: [^\n]*boom%-every 3"), log)
    -- the error's traceback ends with the id of the run (as a request's)
    assert.truthy(log:match("%(request %x+%)"), log)
    assert.truthy(srv:alive())
  end)

  it("misuse raises, naming the argument", function()
    local body = get(srv, "/badargs")
    assert.truthy(body:find("bad argument #1 to 'at' (seconds from 0 to 31536000 expected, got string)", 1, true), body)
    assert.truthy(body:find("bad argument #1 to 'every' (the interval must be at least 0.001 s)", 1, true), body)
    assert.truthy(body:find("bad argument #2 to 'at' (function expected, got nil)", 1, true), body)
  end)
end)

describe("luring.timer bounds", function()
  after_each(function() helper.stop_all() end)

  it("max_timers: the next one is nil, \"too many timers\"; a cancel frees a place", function()
    local srv = helper.start([[
luring.config{ max_timers = 3 }
local app = luring.app()
app:listen("@LISTEN@")
local hs = {}
app:get("/fill", function(req)
  local n = 0
  while true do
    local h, err = luring.timer.at(60, function() end)
    if not h then return n .. " " .. err .. " " .. luring.timer.pending_count() end
    n = n + 1
    hs[#hs + 1] = h
  end
end)
app:get("/again", function(req)
  assert(hs[1]:cancel())
  local h, err = luring.timer.at(60, function() end)
  local h2, err2 = luring.timer.every(60, function() end)
  return tostring(h ~= nil) .. " " .. tostring(err2)
end)
]])
    assert.are.equal("3 too many timers 3", get(srv, "/fill"))
    assert.are.equal("true too many timers", get(srv, "/again"))
  end)

  it("a busy every (every 1 ms, some work each run) does not hold /ping up", function()
    local srv = helper.start([[
local app = luring.app()
app:listen("@LISTEN@")
local runs = 0
luring.timer.every(0.001, function()
  local x = 0
  for i = 1, 20000 do x = x + i end
  runs = runs + 1
end)
app:get("/ping", function(req) return tostring(runs) end)
]])
    local first = tonumber(get(srv, "/ping"))
    local worst = 0
    for _ = 1, 40 do
      local t0 = helper.now()
      get(srv, "/ping")
      worst = math.max(worst, helper.now() - t0)
      socket.sleep(0.01)
    end
    local last = tonumber(get(srv, "/ping"))
    assert.truthy(last - first >= 40, "the timer ran only " .. (last - first) .. " times")
    assert.truthy(worst < 0.25, ("a /ping took %.3f s"):format(worst))
  end)
end)

describe("luring.timer runs", function()
  after_each(function() helper.stop_all() end)

  it("an every whose run outlasts its interval never overlaps itself", function()
    local srv = helper.start([[
local app = luring.app()
app:listen("@LISTEN@")
local runs, inside, most = 0, 0, 0
luring.timer.every(0.05, function()
  inside = inside + 1
  if inside > most then most = inside end
  luring.sleep(120)
  inside = inside - 1
  runs = runs + 1
end)
app:get("/", function(req) return runs .. " " .. most end)
]])
    socket.sleep(1)
    local runs, most = get(srv, "/"):match("^(%d+) (%d+)$")
    runs = tonumber(runs)
    assert.are.equal("1", most)
    -- one run every ~120 ms (the next follows a late one at once)
    assert.truthy(runs >= 4 and runs <= 9, "runs: " .. runs)
  end)

  -- as access_log_spec: the budget's interrupt does not reach a loop under
  -- ThreadSanitizer (scripts/test runs this file there: it has --workers)
  ;(tsan() and pending or it)("lua_budget stops a timer that loops; it is logged and the worker serves on", function()
    local srv = helper.start([[
luring.config{ lua_budget = 0.2 }
local app = luring.app()
app:listen("@LISTEN@")
local runs = 0
luring.timer.every(0.3, function()
  runs = runs + 1
  while true do end
end)
app:get("/", function(req) return tostring(runs) end)
]])
    assert.truthy(wait_body(srv, "/", function(b) return tonumber(b) >= 2 end, 5))
    assert.truthy(srv:stderr():match("timer 1 failed: [^\n]*lua_budget"), srv:stderr())
  end)
end)

describe("examples/timer.lua", function()
  after_each(function()
    helper.stop_all()
    origin.stop_all()
  end)

  it("serves what its timers fetched from the origin; /stop-refresh cancels the every", function()
    local o = origin.start{ files = { ["index.html"] = "from the origin\n" } }
    local srv = helper.start(nil, { file = helper.repo_root() .. "/examples/timer.lua",
                                    env = { ORIGIN = o:url() } })
    local ok, body = wait_body(srv, "/latest", "from the origin\n", 5)
    assert.truthy(ok, body)
    local res = helper.get(srv:port(), "/latest")
    assert.are.equal("0", res.headers["x-worker"])
    assert.truthy(tonumber(res.headers["x-age-ms"]) >= 0)
    local c = helper.connect(srv:port())
    c:write(helper.request("POST", "/stop-refresh", nil, ""))
    assert.are.equal("stopped\n", c:response().body)
    c:write(helper.request("POST", "/stop-refresh", nil, ""))
    assert.are.equal("done\n", c:response().body)
    c:close()
  end)
end)

describe("luring.timer with --workers 2", function()
  after_each(function() helper.stop_all() end)

  it("the main chunk's timers run in each worker; luring.worker.id()/count()", function()
    local srv = helper.start([[
local app = luring.app()
app:listen("@LISTEN@")
local top, ticks = 0, 0
luring.timer.at(0, function() top = top + 1 end)
luring.timer.every(0.05, function() ticks = ticks + 1 end)
app:get("/who", function(req)
  return luring.worker.id() .. " " .. luring.worker.count() .. " " .. top .. " " .. ticks
end)
]], { args = { "--workers", "2" } })
    socket.sleep(0.3)
    local seen = {}
    for _ = 1, 200 do
      local body = get(srv, "/who")
      local id, count, top, ticks = body:match("^(%d+) (%d+) (%d+) (%d+)$")
      assert.are.equal("2", count, body)
      assert.are.equal("1", top, body)
      assert.truthy(tonumber(ticks) >= 1, body)
      seen[id] = true
      if seen["0"] and seen["1"] then break end
    end
    assert.truthy(seen["0"] and seen["1"], "requests reached one worker only")
  end)
end)

describe("luring.timer on reload and drain", function()
  after_each(function() helper.stop_all() end)

  local function script(v)
    local s = ([[
local app = luring.app()
app:listen("@LISTEN@")
luring.timer.every(0.05, function(premature)
  luring.log("info", premature and "every %s premature" or "tick %s")
end)
luring.timer.at(60, function(premature)
  luring.log("info", "at %s premature=" .. tostring(premature))
end)
luring.timer.at(0, function(premature)
  luring.sleep(600)
  luring.log("info", "long %s done")
end)
app:get("/", function(req) return "%s" end)
]]):gsub("%%s", v)
    return s
  end

  it("SIGHUP: the old script's pending timers run once with premature = true, "
     .. "a running one finishes, the old every stops, the new script's run", function()
    local srv = helper.start(script("v1"))
    assert.truthy(srv:wait_stderr("tick v1", 3), srv:stderr())
    helper.writefile(srv:script_path(), (script("v2"):gsub("@LISTEN@", srv:addr())))
    signal(srv, "HUP")
    assert.truthy(srv:wait_stderr("every v1 premature", 3), srv:stderr())
    assert.truthy(srv:wait_stderr("at v1 premature=true", 3), srv:stderr())
    assert.truthy(srv:wait_stderr("tick v2", 3), srv:stderr())
    assert.truthy(srv:wait_stderr("long v1 done", 3), srv:stderr())
    assert.truthy(srv:wait_stderr("closed a replaced script state", 3), srv:stderr())
    local v1 = count_lines(srv, "tick v1")
    socket.sleep(0.3)
    assert.are.equal(v1, count_lines(srv, "tick v1"))
    assert.are.equal("v2", get(srv, "/"))
  end)

  for _, workers in ipairs({ 1, 2 }) do
    it(("SIGTERM with an every and a 60 s timer pending: premature runs, exit 0 promptly (--workers %d)")
       :format(workers), function()
      local srv = helper.start(script("v1"), { args = { "--workers", tostring(workers) } })
      assert.truthy(srv:wait_stderr("long v1 done", 3), srv:stderr())
      local t0 = helper.now()
      signal(srv, "TERM")
      assert.truthy(helper.wait_until(function() return not srv:alive() end, 3, 0.01),
        "still running 3 s after SIGTERM")
      local took = helper.now() - t0
      srv:stop()
      assert.are.equal(0, srv:exit_code(), srv:stderr())
      assert.truthy(took < 1.5, ("exited %.2f s after SIGTERM"):format(took))
      assert.are.equal(workers, count_lines(srv, "every v1 premature"), srv:stderr())
      assert.are.equal(workers, count_lines(srv, "at v1 premature=true"), srv:stderr())
      assert.is_nil(helper.crash_report(srv:stderr()), srv:stderr())
    end)
  end

  it("a reload that fails drops the timers its main chunk made; the running script's go on", function()
    local srv = helper.start(script("v1"))
    assert.truthy(srv:wait_stderr("tick v1", 3), srv:stderr())
    helper.writefile(srv:script_path(), [[
luring.timer.at(0, function() luring.log("info", "broken ran") end)
luring.timer.every(0.01, function() luring.log("info", "broken ran") end)
error("broken script")
]])
    signal(srv, "HUP")
    assert.truthy(srv:wait_stderr("still running the previous script", 3), srv:stderr())
    local v1 = count_lines(srv, "tick v1")
    socket.sleep(0.3)
    assert.truthy(count_lines(srv, "tick v1") > v1, "the old every stopped")
    assert.are.equal(0, count_lines(srv, "broken ran"), srv:stderr())
    assert.are.equal(0, count_lines(srv, "premature"), srv:stderr())
  end)

  it("a replaced script's handler in flight gets nil, \"reloaded\" for a delay, at(0) still runs", function()
    local src = [[
local app = luring.app()
app:listen("@LISTEN@")
app:get("/late", function(req)
  luring.sleep(500)
  local h, err = luring.timer.at(1, function() end)
  local h0 = luring.timer.at(0, function() luring.log("info", "at0 of @V@ ran") end)
  return tostring(h) .. " " .. tostring(err) .. " " .. tostring(h0 ~= nil)
end)
]]
    local srv = helper.start((src:gsub("@V@", "v1")))
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/late"))
    socket.sleep(0.1)
    helper.writefile(srv:script_path(), (src:gsub("@V@", "v2"):gsub("@LISTEN@", srv:addr())))
    signal(srv, "HUP")
    local res = c:response({ timeout = 5 })
    assert.are.equal("nil reloaded true", res.body)
    assert.truthy(srv:wait_stderr("at0 of v1 ran", 3), srv:stderr())
  end)

  it("while draining: nil, \"draining\" for a delay, at(0) still runs", function()
    local srv = helper.start([[
local app = luring.app()
app:listen("@LISTEN@")
app:get("/late", function(req)
  luring.sleep(500)
  local h, err = luring.timer.every(1, function() end)
  local h0 = luring.timer.at(0, function() luring.sleep(100) luring.log("info", "at0 ran") end)
  return tostring(h) .. " " .. tostring(err) .. " " .. tostring(h0 ~= nil)
end)
]])
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/late"))
    socket.sleep(0.1)
    signal(srv, "TERM")
    local res = c:response({ timeout = 5 })
    assert.are.equal("nil draining true", res.body)
    assert.truthy(helper.wait_until(function() return not srv:alive() end, 3, 0.01))
    srv:stop()
    assert.are.equal(0, srv:exit_code(), srv:stderr())
    assert.truthy(srv:stderr():find("at0 ran", 1, true), srv:stderr())
  end)

  it("--check runs the main chunk's timer calls without running them", function()
    local path, cleanup = helper.temp_script([[
local app = luring.app()
app:listen("127.0.0.1:1")
local h = assert(luring.timer.every(0.01, function() error("must not run") end))
assert(luring.timer.at(0, function() error("must not run") end))
assert(luring.worker.id() == 0 and luring.worker.count() == 1)
]])
    local rc, out, err = helper.run({ "--check", path }, 10)
    cleanup()
    assert.are.equal(0, rc, err)
    assert.falsy(err:find("must not run", 1, true), err)
  end)

  it("drain waits for a timer's run in progress (within drain_timeout)", function()
    local srv = helper.start([[
local app = luring.app()
app:listen("@LISTEN@")
app:get("/bg", function(req)
  luring.timer.at(0, function()
    luring.sleep(500)
    luring.log("info", "background done")
  end)
  return "ok"
end)
]])
    assert.are.equal("ok", get(srv, "/bg"))
    signal(srv, "TERM")
    assert.truthy(helper.wait_until(function() return not srv:alive() end, 3, 0.01))
    srv:stop()
    assert.are.equal(0, srv:exit_code(), srv:stderr())
    assert.truthy(srv:stderr():find("background done", 1, true), srv:stderr())
  end)
end)
