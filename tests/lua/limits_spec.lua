-- Numbers a script gives luring are checked before they become integers
-- (the hardening issue, point 2): math.huge, NaN, negative or absurd
-- values in luring.config{}, luring.cache{}, luring.origin{} and
-- luring.sleep() are refused with a message naming the setting, never
-- converted (a float out of an integer's range is undefined behaviour).
local helper = require "helper"

local function check(body)
  local script, cleanup = helper.temp_script(body ..
    '\nlocal app = luring.app() app:listen("127.0.0.1:1")\n')
  local rc, out, err = helper.run({ "--check", script }, 10)
  cleanup()
  return rc, out .. err
end

describe("numbers from scripts", function()
  local cases = {
    { "luring.config{ workers = math.huge }", "workers" },
    { "luring.config{ workers = 1e12 }", "workers" },
    { "luring.config{ max_connections = 1e300 }", "max_connections" },
    { "luring.config{ idle_timeout = math.huge }", "idle_timeout" },
    { "luring.config{ header_timeout = 0.0001 }", "header_timeout" },
    { "luring.config{ max_body_size = 2^70 }", "max_body_size" },
    { "luring.config{ batch_wait = 0.02 }", "batch_wait" },
    { "luring.config{ batch_wait = -0.0001 }", "batch_wait" },
    { "luring.config{ batch_wait = 0/0 }", "batch_wait" },
    { "luring.config{ batch_wait = math.huge }", "batch_wait" },
    { 'luring.config{ batch_wait = "0.0003" }', "batch_wait" },
    { 'luring.cache{ name = "c", ttl = math.huge }', "ttl" },
    { 'luring.cache{ name = "c", max_bytes = 2^64 }', "max_bytes" },
    { 'luring.cache{ name = "c", max_objects = 0/0 }', "max_objects" },
    { 'luring.cache{ name = "c", hit_for_miss = math.huge }', "hit_for_miss" },
    { 'luring.origin{ name = "o", url = "http://127.0.0.1:9", connect_timeout = 1e300 }', "connect_timeout" },
    { 'luring.origin{ name = "o", url = "http://127.0.0.1:9", keepalive = 2^40 }', "keepalive" },
    { 'luring.origin{ name = "o", url = "http://127.0.0.1:9", idle_timeout = -1 }', "idle_timeout" },
  }
  for _, c in ipairs(cases) do
    it(c[1] .. " is refused, naming " .. c[2], function()
      local rc, out = check(c[1])
      assert.are_not.equal(0, rc, out)
      assert.truthy(out:find(c[2], 1, true), out)
      assert.is_nil(helper.crash_report(out), out)
    end)
  end

  it("the largest allowed values are accepted", function()
    local rc, out = check([[
luring.config{ workers = 2, idle_timeout = 31536000, max_body_size = 2^40,
                batch_wait = 0.01 }
luring.cache{ name = "c", ttl = 31536000, max_bytes = 2^50, hit_for_miss = 31536000 }
luring.origin{ name = "o", url = "http://127.0.0.1:9", connect_timeout = 31536000, keepalive = 65535 }]])
    assert.are.equal(0, rc, out)
  end)

  describe("luring.sleep", function()
    local srv
    lazy_setup(function()
      srv = helper.start([[
local app = luring.app()
app:listen("@LISTEN@")
app:get("/sleep/:v", function(req)
  local v = ({ huge = math.huge, nan = 0/0, neg = -1, big = 1e300 })[req.params.v]
  luring.sleep(v)
  return "slept"
end)
app:get("/ok", function() return "ok" end)
]])
    end)
    lazy_teardown(function() helper.stop_all() end)

    for _, v in ipairs({ "huge", "nan", "neg", "big" }) do
      it("luring.sleep(" .. v .. ") is a Lua error: 500, and the server goes on", function()
        local res = helper.get(srv:port(), "/sleep/" .. v)
        assert.are.equal(500, res.status)
        assert.are.equal("ok", helper.get(srv:port(), "/ok").body)
        assert.truthy(srv:stderr():find("milliseconds", 1, true))
        assert.is_nil(helper.crash_report(srv:stderr()))
      end)
    end
  end)

  -- docs/API.md, Batched waits: whatever the cap, a loaded worker answers
  -- every request (a cap the kernel misread would leave waits hanging),
  -- and 0 (off) serves as well
  describe("luring.config{ batch_wait }", function()
    for _, bw in ipairs({ "0", "0.0001", "0.01" }) do
      it("batch_wait = " .. bw .. ": 3 bursts of 100 concurrent requests on 2 workers, every answer right", function()
        local srv = helper.start([[
luring.config{ batch_wait = ]] .. bw .. [[ }
local app = luring.app()
app:listen("@LISTEN@")
app:get("/n/:i", function(req) return 200, {}, "n=" .. req.params.i end)
]], { args = { "--workers", "2" } })
        for round = 1, 3 do
          local path = "/n/" .. round
          local res = helper.burst(srv:port(), 100, path, 20)
          for i = 1, 100 do
            assert.is_nil(res[i].err, res[i].err)
            assert.are.equal(200, res[i].status)
            assert.are.equal("n=" .. round, res[i].body)
          end
        end
        assert.is_true(srv:alive())
        assert.is_nil(helper.crash_report(srv:stderr()))
        helper.stop_all()
      end)
    end
  end)
end)
