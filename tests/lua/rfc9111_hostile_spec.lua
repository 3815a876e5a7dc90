-- A hostile origin and hostile clients against the cache's bounds (RFC
-- 9111 §3, §4.1; docs/API.md "Caches and origins": max_bytes): what a
-- stored response costs is charged to the cache's byte budget, its header
-- lines and the Vary record of its request included, so max_bytes bounds
-- the memory of a cache whatever the shape of its responses. The origin
-- sends exact bytes (raw_origin.py).
local helper = require "helper"
local raw = require "raw_origin"

local PAD = ("p"):rep(30000)
local BUDGET = 256 * 1024

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local o = luring.origin{ name = "o", url = "@ORIGIN@" }
local c = luring.cache{ name = "c", ttl = 60, max_bytes = @BUDGET@, max_variants = 65535 }
local tiny = luring.cache{ name = "tiny", ttl = 60, max_bytes = 20000 }
app:get("/tiny/:name", function(req) return tiny:fetch(req, "/" .. req.params.name, o) end)
app:get("/stats", function(req)
  local s = c:stats()
  return 200, nil, ("objects=%d bytes=%d\n"):format(s.objects, s.bytes)
end)
app:get("/pad/:n", function(req) return c:fetch(req, "/pad" .. req.params.n, o, "/pad") end)
app:get("/vary", function(req) return c:fetch(req, "/vary", o) end)
]]

describe("RFC 9111 cache against a hostile origin", function()
  local srv, orig
  lazy_setup(function()
    orig = raw.start{ delay = 0, responses = {
      pad = "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nX-Pad: " .. PAD ..
            "\r\nContent-Length: 1\r\n\r\nb",
      vary = "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nVary: X-V\r\n" ..
             "Content-Length: 1\r\n\r\nb",
    } }
    local script = SCRIPT:gsub("@ORIGIN@", orig:url()):gsub("@BUDGET@", tostring(BUDGET))
    srv = helper.start(script, { args = { "--workers", "1" } })
  end)
  lazy_teardown(raw.teardown)

  local function stats()
    local b = helper.get(srv:port(), "/stats").body
    return tonumber(b:match("objects=(%d+)")), tonumber(b:match("bytes=(%d+)"))
  end

  it("§3: 30 KB of header lines over a 1-byte body are charged: 100 of them stay within max_bytes", function()
    for i = 1, 100 do
      local res = helper.get(srv:port(), "/pad/" .. i)
      assert.are.equal(200, res.status)
      assert.are.equal(PAD, res.headers["x-pad"])
    end
    local objects, bytes = stats()
    assert(bytes <= BUDGET, "bytes " .. bytes)
    assert(objects * #PAD <= BUDGET, objects .. " objects of " .. #PAD .. " bytes of fields")
    -- the last ones are stored and served whole
    local res = helper.get(srv:port(), "/pad/100")
    assert.are.equal("HIT", res.headers["x-cache"])
    assert.are.equal(PAD, res.headers["x-pad"])
  end)

  it("§4.1: the Vary records of 100 variants with 6 KB values are charged", function()
    for i = 1, 100 do
      local v = ("%03d"):format(i) .. ("v"):rep(6000)
      assert.are.equal(200, helper.get(srv:port(), "/vary", { ["X-V"] = v }).status)
    end
    local _, bytes = stats()
    assert(bytes <= BUDGET, "bytes " .. bytes)
    local res = helper.get(srv:port(), "/vary", { ["X-V"] = "100" .. ("v"):rep(6000) })
    assert.are.equal("HIT", res.headers["x-cache"])
    local old = helper.get(srv:port(), "/vary", { ["X-V"] = "001" .. ("v"):rep(6000) })
    assert.are.equal("MISS", old.headers["x-cache"]) -- evicted, as the budget says
  end)

  it("§3: a head larger than max_bytes is served whole, never stored", function()
    for _ = 1, 2 do
      local res = helper.get(srv:port(), "/tiny/pad")
      assert.are.equal(200, res.status)
      assert.are.equal(PAD, res.headers["x-pad"])
      assert.are.equal("MISS", res.headers["x-cache"])
    end
  end)
end)
