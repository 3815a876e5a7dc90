-- `luring sim`: the trace-replay simulator's command line — the result
-- line, P% and N sizes, --bytes, Lua policy files, and errors (exit 1 with
-- a message on stderr).
local helper = require "helper"

local ROOT = helper.repo_root()
local LRU_LUA = ROOT .. "/examples/policies/lru.lua"
-- the reference traces of tests/data/traces, unpacked by the build beside
-- the binary (CMakeLists.txt: <build>/traces)
local BIN = helper.BIN:sub(1, 1) == "/" and helper.BIN or ROOT .. "/" .. helper.BIN
local TRACES = BIN:match("^(.*)/[^/]+$") .. "/traces"

-- A deterministic trace of n requests over `keys` keys (low keys hot);
-- key k always has size 1 + k % 13.  Returns the CSV and the request list.
local function gen_trace(n, keys, seed)
  local x = seed or 12345
  local lines, reqs = { "timestamp,key,size" }, {}
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
    local r = x % keys
    local k = math.floor(r * r / keys)
    local size = 1 + k % 13
    reqs[i] = { key = "k" .. k, size = size }
    lines[#lines + 1] = ("%d,k%d,%d"):format(i, k, size)
  end
  return table.concat(lines, "\n") .. "\n", reqs
end

-- Misses of a straightforward LRU (a list scanned linearly) on reqs, with
-- libCacheSim's rules: too large = miss without eviction.
local function lru_misses(reqs, cap, bytes)
  local list, used, misses, missed = {}, 0, 0, 0
  for _, r in ipairs(reqs) do
    local size = bytes and r.size or 1
    local at
    for i, e in ipairs(list) do
      if e.key == r.key then at = i break end
    end
    if at then
      table.insert(list, 1, table.remove(list, at))
    else
      misses, missed = misses + 1, missed + size
      if size <= cap then
        while used + size > cap do
          used = used - table.remove(list).size
        end
        table.insert(list, 1, { key = r.key, size = size })
        used = used + size
      end
    end
  end
  return misses, missed
end

local function parse(line)
  local t = {}
  for k, v in line:gmatch("([%w_]+)=(%S+)") do t[k] = v end
  return t
end

describe("luring sim", function()
  local cleanups = {}

  local function file(text, name)
    local path, cleanup = helper.temp_script(text, name or "trace.csv")
    cleanups[#cleanups + 1] = cleanup
    return path
  end

  local function sim(args)
    local argv = { "sim" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    return helper.run(argv, 60)
  end

  -- Runs and returns the parsed result lines, asserting exit 0.
  local function results(args)
    local rc, out, err = sim(args)
    assert.are.equal(0, rc, "stdout:\n" .. out .. "\nstderr:\n" .. err)
    assert.is_nil(helper.crash_report(err), err)
    local rows = {}
    for line in out:gmatch("[^\n]+") do rows[#rows + 1] = parse(line) end
    return rows, out
  end

  local function fails(args, pattern)
    local rc, out, err = sim(args)
    assert.are.equal(1, rc, "stdout:\n" .. out .. "\nstderr:\n" .. err)
    assert.is_nil(helper.crash_report(err), err)
    assert.truthy(err:find(pattern), "stderr lacks " .. pattern .. ":\n" .. err)
    return err
  end

  after_each(function()
    for _, f in ipairs(cleanups) do f() end
    cleanups = {}
  end)

  it("prints one result line with exact counts and 4+ decimal ratios", function()
    local csv, reqs = gen_trace(3000, 200)
    local path = file(csv)
    local rows, out = results({ "--policy", "lru", "--size", "20", path })
    assert.are.equal(1, #rows)
    assert.truthy(out:match("^policy=lru size=20 mode=objects requests=3000 misses=%d+ "
      .. "miss_ratio=0%.%d%d%d%d+ byte_miss_ratio=0%.%d%d%d%d+ missed_bytes=%d+\n$"), out)
    local want = lru_misses(reqs, 20, false)
    local r = rows[1]
    assert.are.equal(want, tonumber(r.misses))
    assert.are.equal(want, tonumber(r.missed_bytes)) -- object mode: sizes 1
    assert.are.equal(r.miss_ratio, r.byte_miss_ratio)
    assert.is_true(math.abs(tonumber(r.miss_ratio) - want / 3000) < 1e-6)
  end)

  it("takes P% of the working set: distinct keys, or first-seen bytes", function()
    -- 10 keys; sizes 1..10 by first sight (the repeat of k1 says 100)
    local lines = { "timestamp,key,size" }
    for i = 1, 10 do lines[#lines + 1] = ("0,k%d,%d"):format(i, i) end
    lines[#lines + 1] = "0,k1,100"
    local path = file(table.concat(lines, "\n") .. "\n")
    local rows = results({ "--policy", "fifo", "--size", "50%,25%,100%", path })
    assert.are.same({ "5", "2", "10" }, { rows[1].size, rows[2].size, rows[3].size })
    rows = results({ "--policy", "fifo", "--size", "50%,10%", "--bytes", path })
    -- WSS = 55 bytes: 27.5 and 5.5 truncate
    assert.are.same({ "27", "5" }, { rows[1].size, rows[2].size })
    assert.are.equal("bytes", rows[1].mode)
  end)

  it("--bytes uses each request's size for capacity and byte counts", function()
    local csv, reqs = gen_trace(3000, 200, 99)
    local path = file(csv)
    local rows = results({ "--policy", "lru", "--size", "60", "--bytes", path })
    local misses, missed = lru_misses(reqs, 60, true)
    assert.are.equal(misses, tonumber(rows[1].misses))
    assert.are.equal(missed, tonumber(rows[1].missed_bytes))
    assert.are_not.equal(rows[1].miss_ratio, rows[1].byte_miss_ratio)
  end)

  it("runs every policy x size of comma-separated lists", function()
    local path = file((gen_trace(2000, 100)))
    local rows = results({ "--policy", "lru,fifo,clock,sieve,s3fifo,lfu",
                           "--size", "10,30", path })
    assert.are.equal(12, #rows)
    for i, name in ipairs({ "lru", "fifo", "clock", "sieve", "s3fifo", "lfu" }) do
      assert.are.equal(name, rows[2 * i - 1].policy)
      assert.are.equal("30", rows[2 * i].size)
      assert.are.equal("2000", rows[2 * i].requests)
    end
  end)

  it("runs a Lua policy file: examples/policies/lru.lua matches lru", function()
    local path = file((gen_trace(5000, 300, 7)))
    for _, extra in ipairs({ {}, { "--bytes" } }) do
      local args = { "--policy", LRU_LUA .. ",lru", "--size", "10%,37" }
      for _, a in ipairs(extra) do args[#args + 1] = a end
      args[#args + 1] = path
      local rows = results(args)
      assert.are.equal(4, #rows)
      assert.are.equal(LRU_LUA, rows[1].policy)
      for i = 1, 2 do
        assert.are.equal(rows[i + 2].misses, rows[i].misses)
        assert.are.equal(rows[i + 2].missed_bytes, rows[i].missed_bytes)
      end
    end
  end)

  it("gives a Lua constructor the capacity and calls miss()", function()
    local policy = file([[
return function(capacity)
  assert(capacity == 7, "capacity " .. tostring(capacity))
  local q, first, last, misses = {}, 1, 0, 0
  return {
    insert = function(k, size) last = last + 1; q[last] = k end,
    hit = function() end,
    miss = function() misses = misses + 1 end,
    evict = function()
      local k = q[first]; q[first] = nil; first = first + 1
      return k
    end,
    remove = function() end,
  }
end
]], "fifo.lua")
    local path = file((gen_trace(2000, 50, 3)))
    local rows = results({ "--policy", policy .. ",fifo", "--size", "7", path })
    assert.are.equal(rows[2].misses, rows[1].misses)
  end)

  it("matches libCacheSim on cloudphysics_io (tests/data/traces)", function()
    local trace = TRACES .. "/cloudphysics_io.csv"
    assert.truthy(helper.readfile(trace), "missing " .. trace .. " (the build unpacks it)")
    local rows = results({ "--policy", "lru,s3fifo", "--size", "1%", "--bytes", trace })
    assert.are.equal("20297697", rows[1].size)
    assert.are.equal("94956", rows[1].misses)
    assert.are.equal("4280799744", rows[1].missed_bytes)
    assert.are.equal("0.833884", rows[1].miss_ratio)
    assert.are.equal("93706", rows[2].misses)
    assert.are.equal("4265741824", rows[2].missed_bytes)
  end)

  describe("fails with exit 1 and a message", function()
    it("for a missing trace file", function()
      fails({ "--policy", "lru", "--size", "5", "/nonexistent/t.csv" },
            "/nonexistent/t%.csv")
    end)

    it("for a bad CSV line, naming its line number", function()
      local path = file("timestamp,key,size\n1,a,1\n2,b,1\n3,c\n4,d,1\n")
      fails({ "--policy", "lru", "--size", "5", path }, "trace%.csv:4:")
      path = file("timestamp,key,size\n1,a,1\n2,b,zero\n")
      fails({ "--policy", "lru", "--size", "5", path }, "trace%.csv:3: bad size")
      path = file("key,size\n1,1\n")
      fails({ "--policy", "lru", "--size", "5", path }, "trace%.csv:1: expected the header")
    end)

    it("for an unknown policy or a missing policy file", function()
      local path = file("timestamp,key,size\n1,a,1\n")
      local err = fails({ "--policy", "lru,nope", "--size", "5", path }, "unknown policy 'nope'")
      assert.truthy(err:find("s3fifo", 1, true), err)
      fails({ "--policy", "/nonexistent/p.lua", "--size", "5", path }, "/nonexistent/p%.lua")
    end)

    it("for a bad size", function()
      local path = file("timestamp,key,size\n1,a,1\n2,b,1\n")
      for _, size in ipairs({ "0", "abc", "-3", "5x", "%", "-1%", "x%" }) do
        fails({ "--policy", "lru", "--size", size, path }, "size")
      end
      fails({ "--policy", "lru", "--size", "10%", path }, "is 0") -- 10 % of 2 keys
    end)

    it("for missing arguments", function()
      fails({ "--policy", "lru" }, "%-%-size is required")
      fails({ "--size", "5", "t.csv" }, "%-%-policy is required")
      fails({ "--policy", "lru", "--size", "5" }, "one trace file")
      fails({ "--policy", "lru", "--size", "5", "--frobnicate", "t.csv" }, "frobnicate")
    end)

    it("for a Lua policy that raises or breaks the protocol", function()
      local path = file((gen_trace(500, 50)))
      local raising = file([[
return { insert = function(k) error("boom at insert") end,
         hit = function() end, evict = function() end, remove = function() end }
]], "raising.lua")
      fails({ "--policy", raising, "--size", "5", path }, "insert%(%): .*boom at insert")
      local bogus = file([[
return { insert = function() end, hit = function() end,
         evict = function() return "not-a-key" end, remove = function() end }
]], "bogus.lua")
      fails({ "--policy", bogus, "--size", "5", path }, "not%-a%-key")
      local broken = file("return {", "broken.lua")
      fails({ "--policy", broken, "--size", "5", path }, "broken%.lua")
      local notpolicy = file("return { insert = function() end }", "notpolicy.lua")
      fails({ "--policy", notpolicy, "--size", "5", path }, "hit must be a function")
    end)
  end)
end)
