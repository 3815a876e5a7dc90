-- The error log (issue 14, point 2): every line on stderr starts with an
-- RFC 3339 UTC timestamp (with milliseconds), then [level], then who logs
-- (w<N> for worker N, main for the main thread); --log-level sets the
-- least level written (debug, info, warn, error, crit).
local helper = require "helper"

local SCRIPT = [[
luring.log("info", "loaded-info")
luring.log("debug", "loaded-debug")
luring.log("warn", "loaded-warn")
local app = luring.app()
app:listen("@LISTEN@")
app:get("/", function(req)
  luring.log("err", "handler-err")
  return "ok"
end)
app:get("/id", function(req)
  luring.log("warn", "handler-id")
  return req.id
end)
]]

-- 2026-12-01T00:04:51.225Z [info] luring w0: message
local LINE = "^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)%.(%d%d%d)Z "
  .. "%[(%a+)%] luring (%w+): (.*)$"

local function lines(text)
  local t = {}
  for l in text:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

describe("error log", function()
  after_each(function() helper.stop_all() end)

  it("each line: RFC 3339 UTC time with ms, [level], luring w<N>/main, message", function()
    local t0 = os.time()
    local srv = helper.start(SCRIPT, { args = { "--workers", "2" } })
    assert.are.equal(200, helper.get(srv:port(), "/").status)
    assert.truthy(srv:wait_stderr("handler-err", 2), srv:stderr())
    srv:stop()
    local seen, workers = {}, {}
    for _, l in ipairs(lines(srv:stderr())) do
      local y, mo, d, h, mi, s, ms, level, who, msg = l:match(LINE)
      assert.is_not_nil(y, "not an error log line: " .. l)
      local t = os.time({ year = tonumber(y), month = tonumber(mo), day = tonumber(d),
        hour = tonumber(h), min = tonumber(mi), sec = tonumber(s), isdst = false })
      -- os.time reads the table as local time: compare in UTC
      local utc = t + os.difftime(os.time(), os.time(os.date("!*t")))
      assert.truthy(math.abs(utc - t0) < 60, "timestamp far from now: " .. l)
      assert.truthy(level == "info" or level == "warn" or level == "error", l)
      assert.truthy(who == "main" or who:match("^w%d+$"), l)
      seen[(msg:gsub(" %(request %x+%)$", ""))] = level
      if msg == "loaded-info" then workers[who] = true end
    end
    assert.are.equal("info", seen["loaded-info"])
    assert.are.equal("warn", seen["loaded-warn"])
    assert.are.equal("error", seen["handler-err"])
    assert.is_nil(seen["loaded-debug"], "debug is below the default level")
    assert.truthy(workers.w0 and workers.w1, "each worker loads the script and says so")
  end)

  it("--log-level debug writes debug lines; --log-level warn drops info", function()
    local srv = helper.start(SCRIPT, { args = { "--log-level", "debug" } })
    assert.truthy(srv:wait_stderr("loaded-debug", 2), srv:stderr())
    srv:stop()
    local srv2 = helper.start(SCRIPT, { args = { "--log-level", "warn" } })
    assert.are.equal(200, helper.get(srv2:port(), "/").status)
    assert.truthy(srv2:wait_stderr("handler-err", 2), srv2:stderr())
    local err = srv2:stderr()
    assert.truthy(err:find("loaded-warn", 1, true), err)
    assert.falsy(err:find("loaded-info", 1, true), err)
    assert.falsy(err:find("listening on", 1, true), err)
  end)

  it("a line logged while a request runs ends with its req.id", function()
    local srv = helper.start(SCRIPT)
    local res = helper.get(srv:port(), "/id")
    assert.are.equal(200, res.status)
    assert.truthy(res.body:match("^%x+$") and #res.body == 16, res.body)
    assert.truthy(srv:wait_stderr("handler-id (request " .. res.body .. ")", 2), srv:stderr())
    -- lines of no request carry none
    for l in srv:stderr():gmatch("[^\n]+") do
      if l:find("listening on", 1, true) then
        assert.falsy(l:find("(request", 1, true), l)
      end
    end
  end)

  it("luring.log takes the level names the log writes and --log-level takes", function()
    -- "[error]" and "[crit]" in the log, --log-level error|crit: a script
    -- may say luring.log("error") and luring.log("crit") (and "err")
    local srv = helper.start([[
local app = luring.app()
app:listen("@LISTEN@")
app:get("/", function(req)
  for _, l in ipairs{ "debug", "info", "warn", "err", "error", "crit" } do
    luring.log(l, "lv-" .. l)
  end
  local ok, e = pcall(luring.log, "loud", "x")
  return ok and "accepted" or tostring(e)
end)
]], { args = { "--log-level", "debug" } })
    local r = helper.get(srv:port(), "/")
    assert.are.equal(200, r.status, srv:stderr())
    assert.truthy(r.body:find("invalid option 'loud'", 1, true), r.body)
    assert.truthy(srv:wait_stderr("lv-crit", 2), srv:stderr())
    local want = { debug = "debug", info = "info", warn = "warn", err = "error",
                   error = "error", crit = "crit" }
    for name, level in pairs(want) do
      local found = false
      for _, l in ipairs(lines(srv:stderr())) do
        local lv, _, msg = select(8, l:match(LINE))
        if msg and msg:find("^lv%-" .. name .. " ") then
          assert.are.equal(level, lv, l)
          found = true
        end
      end
      assert.is_true(found, name .. ":\n" .. srv:stderr())
    end
  end)

  it("--log-level with an unknown level: exit 1 with a message", function()
    local path, clean = helper.temp_script(SCRIPT:gsub("@LISTEN@", "127.0.0.1:1"))
    local rc, _, err = helper.run({ "--log-level", "loud", path }, 10)
    clean()
    assert.are.equal(1, rc)
    assert.truthy(err:find("--log-level takes debug, info, warn, error or crit", 1, true), err)
  end)
end)
