-- Range requests answered from stored responses (RFC 9110 §14, §15.3.7,
-- §15.5.17): single, suffix, open-ended and multiple ranges (a
-- multipart/byteranges body, §14.6), If-Range (§13.1.5), 416, and ranges
-- on an object still being filled, which wait only for the bytes they
-- need. The fill itself always fetches the whole object (its Range is not
-- forwarded). A real nginx serves the files (and throttles one with
-- limit_rate to make a slow fill); bodies are compared byte for byte.
local helper = require "helper"
local origin = require "origin"
local socket = require "socket"

local SIZE = 10000
local BODY = helper.payload(SIZE, "r")
local BIG = 400 * 1024
local BIGBODY = helper.payload(BIG, "s")

local LOCATIONS = [[
    location /f/ { }
    location /slow/ { alias @ROOT@/f/; limit_rate 100k; }
    location /chunked/ { echo_flush; echo "part one"; echo_sleep 0.5; echo "part two"; }
    location /pass/ { alias @ROOT@/f/; }
]]

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local o = luring.origin{ name = "o", url = "@ORIGIN@" }
local c = luring.cache{ name = "c", ttl = 60 }
app:get("/stats", function(req)
  local s = c:stats()
  return 200, nil, ("partial=%d hits=%d\n"):format(s.partial, s.hits)
end)
app:get("/f/*", function(req) return c:fetch(req, req.path, o) end)
app:get("/slow/*", function(req) return c:fetch(req, req.path, o) end)
app:get("/chunked/*", function(req) return c:fetch(req, req.path, o) end)
app:get("/pass/*", function(req) return luring.proxy(req, o) end)
]]

local ngx, srv, etag, lm

local function exchange(method, path, headers)
  local conn = helper.connect(srv:port())
  conn:write(helper.request(method, path, headers))
  local res = conn:response{ method = method, timeout = 10 }
  conn:close()
  return res
end

local function get(path, headers) return exchange("GET", path, headers) end

local function range(path, spec, more)
  local h = { Range = spec }
  for k, v in pairs(more or {}) do h[k] = v end
  return get(path, h)
end

-- The parts of a multipart/byteranges body (§14.6): { {headers, body}... }
local function parts(res)
  local ct = res.headers["content-type"]
  local b = ct and ct:match("^multipart/byteranges; boundary=(%S+)$")
  assert.is_truthy(b, "multipart Content-Type: " .. tostring(ct))
  local body, out, pos = res.body, {}, 1
  local delim = "--" .. b
  while true do
    local s, e = body:find(delim, pos, true)
    assert.is_truthy(s, "delimiter")
    if body:sub(e + 1, e + 2) == "--" then
      assert.are.equal("\r\n", body:sub(e + 3))
      break
    end
    local hend = body:find("\r\n\r\n", e, true)
    local head = body:sub(e + 3, hend - 1)
    local h = {}
    for name, value in (head .. "\r\n"):gmatch("([^:\r\n]+): ([^\r\n]*)\r\n") do h[name:lower()] = value end
    local f, l, total = h["content-range"]:match("^bytes (%d+)-(%d+)/(%d+)$")
    f, l = tonumber(f), tonumber(l)
    local data = body:sub(hend + 4, hend + 4 + (l - f))
    assert.are.equal("\r\n" .. delim, body:sub(hend + 4 + (l - f) + 1, hend + 4 + (l - f) + 2 + #delim))
    out[#out + 1] = { h = h, first = f, last = l, total = tonumber(total), data = data }
    pos = hend + 4 + (l - f) + 1
  end
  return out
end

describe("RFC 9110 range requests from the cache", function()
  setup(function()
    ngx = origin.start{ files = { ["f/a.txt"] = BODY, ["f/big.bin"] = BIGBODY, ["f/big2.bin"] = BIGBODY,
                                  ["f/m.txt"] = BODY } }
    ngx:restart{ locations = (LOCATIONS:gsub("@ROOT@", ngx:root())) }
    -- files written a moment ago have a Last-Modified in the second of
    -- their Date: a weak validator (RFC 9110 §8.8.2.2), which If-Range
    -- may not use; made 100 s older, it is strong
    os.execute(("touch -d @%d %s/f/*"):format(os.time() - 100, helper.shquote(ngx:root())))
    srv = helper.start((SCRIPT:gsub("@ORIGIN@", ngx:url())))
    local first = get("/f/a.txt")
    assert.are.equal(200, first.status)
    assert.are.equal(BODY, first.body)
    etag, lm = first.headers["etag"], first.headers["last-modified"]
  end)

  teardown(function()
    helper.stop_all()
    origin.stop_all()
  end)

  describe("§14.1.2 single ranges", function()
    it("§14.1.2 first-byte-pos to last-byte-pos gives 206 with those bytes and Content-Range (§14.4)", function()
      local res = range("/f/a.txt", "bytes=0-99")
      assert.are.equal(206, res.status)
      assert.are.equal("HIT", res.headers["x-cache"])
      assert.are.equal("bytes 0-99/" .. SIZE, res.headers["content-range"])
      assert.are.equal("100", res.headers["content-length"])
      assert.are.equal(BODY:sub(1, 100), res.body)
      assert.are.equal("text/plain", res.headers["content-type"])
      assert.are.equal(etag, res.headers["etag"])
      res = range("/f/a.txt", "bytes=1234-5678")
      assert.are.equal(BODY:sub(1235, 5679), res.body)
    end)

    it("§14.1.2 a suffix range gives the last bytes", function()
      local res = range("/f/a.txt", "bytes=-500")
      assert.are.equal(206, res.status)
      assert.are.equal(("bytes %d-%d/%d"):format(SIZE - 500, SIZE - 1, SIZE), res.headers["content-range"])
      assert.are.equal(BODY:sub(-500), res.body)
      res = range("/f/a.txt", "bytes=-20000") -- longer than the representation: all of it
      assert.are.equal(206, res.status)
      assert.are.equal(BODY, res.body)
    end)

    it("§14.1.2 an open-ended range runs to the end", function()
      local res = range("/f/a.txt", "bytes=9900-")
      assert.are.equal(206, res.status)
      assert.are.equal(BODY:sub(9901), res.body)
    end)

    it("§14.1.2 a last-byte-pos past the end is the end; 20-digit numbers too", function()
      local res = range("/f/a.txt", "bytes=9990-99999999999999999999")
      assert.are.equal(206, res.status)
      assert.are.equal("bytes 9990-9999/" .. SIZE, res.headers["content-range"])
      assert.are.equal(BODY:sub(9991), res.body)
    end)

    it("§14.2 overlapping ranges are coalesced into one (§14.6)", function()
      local res = range("/f/a.txt", "bytes=0-99,50-149,100-120")
      assert.are.equal(206, res.status)
      assert.are.equal("bytes 0-149/" .. SIZE, res.headers["content-range"])
      assert.are.equal(BODY:sub(1, 150), res.body)
    end)

    it("§14.2 the miss that fills the object answers the range itself; the fill fetches it whole", function()
      local res = range("/f/m.txt", "bytes=10-19")
      assert.are.equal("MISS", res.headers["x-cache"])
      assert.are.equal(206, res.status)
      assert.are.equal(BODY:sub(11, 20), res.body)
      res = get("/f/m.txt") -- the 206 went out before the fill ended: maybe still filling
      assert.is_truthy(res.headers["x-cache"] == "HIT" or res.headers["x-cache"] == "COALESCED")
      assert.are.equal(BODY, res.body)
    end)

    it("§14.2 a 206 leaves the connection ready for the next pipelined request", function()
      local conn = helper.connect(srv:port())
      conn:write(helper.request("GET", "/f/a.txt", { Range = "bytes=5-9" }) ..
                 helper.request("GET", "/f/a.txt", { Range = "bytes=0-4,10-14" }) ..
                 helper.request("GET", "/f/a.txt"))
      local r1, r2, r3 = conn:response(), conn:response(), conn:response()
      conn:close()
      assert.are.equal(BODY:sub(6, 10), r1.body)
      assert.are.equal(2, #parts(r2))
      assert.are.equal(BODY, r3.body)
    end)
  end)

  describe("§14.6 multiple ranges", function()
    it("§14.6 several ranges give a multipart/byteranges body, each part's bytes exact", function()
      local res = range("/f/a.txt", "bytes=0-9, 100-199 ,-5")
      assert.are.equal(206, res.status)
      assert.is_nil(res.headers["content-range"])
      assert.are.equal(tostring(#res.body), res.headers["content-length"])
      local p = parts(res)
      assert.are.equal(3, #p)
      local want = { { 0, 9 }, { 100, 199 }, { SIZE - 5, SIZE - 1 } }
      for i, w in ipairs(want) do
        assert.are.equal(w[1], p[i].first)
        assert.are.equal(w[2], p[i].last)
        assert.are.equal(SIZE, p[i].total)
        assert.are.equal("text/plain", p[i].h["content-type"])
        assert.are.equal(BODY:sub(w[1] + 1, w[2] + 1), p[i].data)
      end
    end)

    it("§14.6 each response has its own boundary", function()
      local a = range("/f/a.txt", "bytes=0-0,2-2").headers["content-type"]
      local b = range("/f/a.txt", "bytes=0-0,2-2").headers["content-type"]
      assert.are_not.equal(a, b)
    end)

    it("§14.2 more than 16 ranges are ignored: 200 with the whole body", function()
      local specs = {}
      for i = 0, 16 do specs[#specs + 1] = ("%d-%d"):format(i * 10, i * 10) end
      local res = range("/f/a.txt", "bytes=" .. table.concat(specs, ","))
      assert.are.equal(200, res.status)
      assert.are.equal(BODY, res.body)
      specs[#specs] = nil -- 16 are served
      res = range("/f/a.txt", "bytes=" .. table.concat(specs, ","))
      assert.are.equal(206, res.status)
      assert.are.equal(16, #parts(res))
    end)

    it("§14.2 many overlapping ranges never send a byte twice", function()
      local res = range("/f/a.txt", "bytes=0-,0-,0-,0-,0-,0-,0-,0-,0-,0-,0-,0-,0-,0-,0-,0-")
      assert.are.equal(206, res.status)
      assert.are.equal(BODY, res.body)
    end)
  end)

  describe("§15.5.17 unsatisfiable and invalid ranges", function()
    it("§15.5.17 a range past the end gives 416 with Content-Range: bytes */N", function()
      local res = range("/f/a.txt", "bytes=10000-20000")
      assert.are.equal(416, res.status)
      assert.are.equal("bytes */" .. SIZE, res.headers["content-range"])
      assert.are.equal("Range Not Satisfiable\n", res.body)
      assert.is_nil(res.headers["accept-ranges"])
      res = range("/f/a.txt", "bytes=99999999999999999999-")
      assert.are.equal(416, res.status)
      res = range("/f/a.txt", "bytes=-0")
      assert.are.equal(416, res.status)
    end)

    it("§14.2 an unknown unit or garbage is ignored: 200 with the body", function()
      for _, v in ipairs{ "items=0-1", "bytes=abc", "bytes=5-1", "bytes", "bytes=", "bytes=0-1;x",
                          "bytes=" .. string.rep("9", 100) .. "-" .. string.rep("9", 200) .. "x" } do
        local res = range("/f/a.txt", v)
        assert.are.equal(200, res.status, v)
        assert.are.equal(BODY, res.body, v)
      end
    end)

    it("§14.2 Range on HEAD is ignored: the 200 head", function()
      local res = exchange("HEAD", "/f/a.txt", { Range = "bytes=0-9" })
      assert.are.equal(200, res.status)
      assert.are.equal(tostring(SIZE), res.headers["content-length"])
    end)

    it("§14.2 Range is ignored on a stored response that is not a 200", function()
      local res = range("/f/none.txt", "bytes=0-9")
      assert.are.equal(404, res.status)
      assert.is_nil(res.headers["accept-ranges"])
    end)
  end)

  describe("§13.1.5 If-Range", function()
    it("§13.1.5 a matching strong ETag lets the range through: 206", function()
      assert.are.equal(206, range("/f/a.txt", "bytes=0-9", { ["If-Range"] = etag }).status)
    end)

    it("§13.1.5 another ETag, a weak one, or garbage gives the whole 200", function()
      for _, v in ipairs{ '"other"', "W/" .. etag, "garbage", "" } do
        local res = range("/f/a.txt", "bytes=0-9", { ["If-Range"] = v })
        assert.are.equal(200, res.status, v)
        assert.are.equal(BODY, res.body)
      end
    end)

    it("§13.1.5 the Last-Modified date lets the range through, another date does not", function()
      assert.are.equal(206, range("/f/a.txt", "bytes=0-9", { ["If-Range"] = lm }).status)
      local res = range("/f/a.txt", "bytes=0-9", { ["If-Range"] = "Sun, 06 Nov 1994 08:49:37 GMT" })
      assert.are.equal(200, res.status)
    end)
  end)

  describe("§14.3 Accept-Ranges", function()
    it("§14.3 stored 200s and their 206s say Accept-Ranges: bytes, once", function()
      local res = get("/f/a.txt")
      assert.are.equal("bytes", res.headers["accept-ranges"])
      local n = 0
      for _, h in ipairs(res.header_list) do
        if h[1]:lower() == "accept-ranges" then n = n + 1 end
      end
      assert.are.equal(1, n)
      assert.are.equal("bytes", range("/f/a.txt", "bytes=0-1").headers["accept-ranges"])
    end)

    it("§14.2 a pass relays the origin's own answer to Range", function()
      local res = range("/pass/a.txt", "bytes=0-9")
      assert.are.equal(206, res.status) -- nginx's
      assert.is_nil(res.headers["x-cache"])
      assert.are.equal(BODY:sub(1, 10), res.body)
    end)
  end)

  describe("§14.2 ranges on an object being filled", function()
    it("§14.2 a range at the start is answered before the slow fill ends; one at the end waits for its bytes", function()
      -- nginx sends 400 KiB at 100 KiB/s: the fill takes seconds
      local t0 = socket.gettime()
      local miss = helper.connect(srv:port())
      miss:write(helper.request("GET", "/slow/big.bin", { Range = "bytes=0-999" }))
      local r1 = miss:response{ timeout = 10 }
      local t1 = socket.gettime()
      assert.are.equal(206, r1.status)
      assert.are.equal("MISS", r1.headers["x-cache"])
      assert.are.equal(BIGBODY:sub(1, 1000), r1.body)
      -- a coalesced request for bytes near the start, and for the end
      local co = helper.connect(srv:port())
      co:write(helper.request("GET", "/slow/big.bin", { Range = "bytes=1000-1999" }))
      local tail = helper.connect(srv:port())
      tail:write(helper.request("GET", "/slow/big.bin", { Range = "bytes=-1000" }))
      local r2 = co:response{ timeout = 10 }
      local t2 = socket.gettime()
      local r3 = tail:response{ timeout = 10 }
      local t3 = socket.gettime()
      miss:close(); co:close(); tail:close()
      assert.are.equal(206, r2.status)
      assert.are.equal("COALESCED", r2.headers["x-cache"])
      assert.are.equal(BIGBODY:sub(1001, 2000), r2.body)
      assert.are.equal(206, r3.status)
      assert.are.equal(BIGBODY:sub(-1000), r3.body)
      assert.is_true(t1 - t0 < 1.0, ("first range took %.2f s"):format(t1 - t0))
      assert.is_true(t2 - t0 < 1.0, ("second range took %.2f s"):format(t2 - t0))
      assert.is_true(t3 - t0 > 1.5, ("the tail came at %.2f s, before its bytes could"):format(t3 - t0))
      local whole = get("/slow/big.bin")
      assert.are.equal("HIT", whole.headers["x-cache"])
      assert.are.equal(BIG, #whole.body)
      assert.is_true(whole.body == BIGBODY, helper.diff(BIGBODY, whole.body))
    end)

    it("§14.6 several ranges of a filling object come byte-exact", function()
      local res = range("/slow/big2.bin", "bytes=0-9,200000-200099,-10")
      assert.are.equal(206, res.status)
      local p = parts(res)
      assert.are.equal(BIGBODY:sub(1, 10), p[1].data)
      assert.are.equal(BIGBODY:sub(200001, 200100), p[2].data)
      assert.are.equal(BIGBODY:sub(-10), p[3].data)
    end)

    it("§14.2 a fill of unknown length (chunked) gets the whole 200; once stored, a 206", function()
      local res = range("/chunked/x", "bytes=0-3")
      assert.are.equal(200, res.status)
      assert.are.equal("part one\npart two\n", res.body)
      res = range("/chunked/x", "bytes=0-3")
      assert.are.equal("HIT", res.headers["x-cache"])
      assert.are.equal(206, res.status)
      assert.are.equal("part", res.body)
    end)

    it("counts 206s in cache:stats()", function()
      local before = tonumber(get("/stats").body:match("partial=(%d+)"))
      range("/f/a.txt", "bytes=0-0")
      assert.are.equal(before + 1, tonumber(get("/stats").body:match("partial=(%d+)")))
    end)
  end)
end)
