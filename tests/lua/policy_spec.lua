-- Cache policies chosen from the script (built-in or a Lua file) and the
-- admission / TTL hooks, end to end with a file origin.
local helper = require "helper"
local socket = require "socket"

local root = helper.repo_root()

local function make_files(dir, names)
  assert(os.execute("mkdir -p " .. dir))
  for name, size in pairs(names) do
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(string.rep(name:sub(1, 1), size))
    f:close()
  end
end

local function script(dir, cache_opts)
  return ([[
local app = luring.app()
app:listen("@LISTEN@")
local files = luring.origin{ name = "files", root = %q }
local cache = luring.cache{ name = "c", %s }
app:get("/f/:name", function(req)
  return cache:fetch(req, req.params.name, files, "/" .. req.params.name)
end)
app:get("/stats", function(req)
  local s = cache:stats()
  return ("policy=%%s objects=%%d bytes=%%d evictions=%%d\n"):format(
    s.policy, s.objects, s.bytes, s.evictions)
end)
]]):format(dir, cache_opts)
end

local function xcache(srv, name)
  local res = helper.get(srv:port(), "/f/" .. name)
  assert.are.equal(200, res.status, res.body)
  return res.headers["x-cache"]
end

describe("cache policies and hooks", function()
  local dir

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    make_files(dir, { a = 100000, b = 100000, c = 100000, d = 100000,
                      private = 10, short = 10 })
  end)

  after_each(function()
    helper.stop_all()
    os.execute("rm -rf " .. dir)
  end)

  -- 1, 2, touch 1, 3, 4 with room for three objects
  local function pattern(srv)
    xcache(srv, "a")
    xcache(srv, "b")
    assert.are.equal("HIT", xcache(srv, "a"))
    xcache(srv, "c")
    xcache(srv, "d")
  end

  it("lru keeps the touched object, fifo evicts it", function()
    local lru = helper.start(script(dir, 'max_bytes = 350000, policy = "lru"'))
    pattern(lru)
    assert.are.equal("HIT", xcache(lru, "a"))
    assert.are.equal("MISS", xcache(lru, "b"))
    assert.truthy(helper.get(lru:port(), "/stats").body:find("policy=lru", 1, true))
    local fifo = helper.start(script(dir, 'max_bytes = 350000, policy = "fifo"'))
    pattern(fifo)
    assert.are.equal("MISS", xcache(fifo, "a"))
  end)

  it("a policy written in Lua runs inside the server's cache", function()
    local srv = helper.start(script(dir, ('max_bytes = 350000, policy = %q')
      :format(root .. "/examples/policies/lru.lua")))
    pattern(srv)
    assert.are.equal("HIT", xcache(srv, "a"))
    assert.are.equal("MISS", xcache(srv, "b"))
    local stats = helper.get(srv:port(), "/stats").body
    local bytes = tonumber(stats:match("bytes=(%d+)"))
    assert.truthy(bytes <= 350000, stats)
  end)

  it("a Lua policy of a cache shared by 2 workers decides for the one store (issue 13)", function()
    -- each request on its own connection, so the two workers take them in
    -- turn; the policy's state is one (its calls serialized by the cache's
    -- lock), so the outcome is the single worker's
    local srv = helper.start(script(dir, ('max_bytes = 350000, policy = %q')
      :format(root .. "/examples/policies/lru.lua")), { args = { "--workers", "2" } })
    pattern(srv)
    assert.are.equal("HIT", xcache(srv, "a"))
    assert.are.equal("MISS", xcache(srv, "b"))
    local stats = helper.get(srv:port(), "/stats").body
    assert.truthy(tonumber(stats:match("bytes=(%d+)")) <= 350000, stats)
    assert.truthy(tonumber(stats:match("evictions=(%d+)")) >= 1, stats)
  end)

  it("an unknown policy is a load error", function()
    local src = script(dir, 'policy = "nope"'):gsub("@LISTEN@", "127.0.0.1:1")
    local path, cleanup = helper.temp_script(src)
    local rc, _, err = helper.run({ "--check", path })
    cleanup()
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("nope", 1, true), err)
  end)

  it("admit and ttl hooks decide what is cached and for how long", function()
    local srv = helper.start(script(dir, [[
      grace = 0, keep = 0, -- "short" expires plainly (rfc9111_stale_spec.lua)
      admit = function(key, status, headers)
        return not key:find("private")
      end,
      ttl = function(key, status, headers, ttl)
        if key == "short" then return 0.3 end
        return ttl
      end]]))
    assert.are.equal("MISS", xcache(srv, "private"))
    assert.are.equal("MISS", xcache(srv, "private"))
    assert.are.equal("MISS", xcache(srv, "a"))
    assert.are.equal("HIT", xcache(srv, "a"))
    assert.are.equal("MISS", xcache(srv, "short"))
    assert.are.equal("HIT", xcache(srv, "short"))
    assert.truthy(helper.wait_until(function()
      return xcache(srv, "short") == "MISS"
    end, 3, 0.1))
  end)

  it("a failing hook is logged and the default applies", function()
    local srv = helper.start(script(dir, [[
      admit = function(key) error("hook boom") end]]))
    assert.are.equal("MISS", xcache(srv, "a"))
    assert.are.equal("HIT", xcache(srv, "a"))
    assert.truthy(srv:wait_stderr("hook boom", 3), srv:stderr())
  end)
end)
