-- Conditional requests answered from stored responses (RFC 9110 §13,
-- §15.4.5; RFC 9111 §4.3.2): a cache fill never sends the client's If-*
-- (tests/lua/fill_forward_spec.lua), so luring evaluates them itself against
-- the stored ETag and Last-Modified, for hits, coalesced requests and the
-- miss that filled the object. A real nginx serves static files (its ETag
-- and Last-Modified); an exact-bytes origin (raw_origin.py) sends weak tags
-- and odd validators.
local helper = require "helper"
local origin = require "origin"
local raw_origin = require "raw_origin"

local SIZE = 10000
local BODY = helper.payload(SIZE, "c")

local LOCATIONS = [[
    location /f/ { expires 1h; add_header Vary "Accept-Encoding"; }
    location /pass/ { alias @ROOT@/f/; }
]]

local RAW = {
  weak = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: W/\"w1\"\r\n" ..
         "Cache-Control: max-age=60\r\nContent-Length: {len}\r\n\r\nweak body\n",
  nolm = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: max-age=60\r\n" ..
         "Content-Length: {len}\r\n\r\nno validators\n",
  lmonly = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: max-age=60\r\n" ..
           "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Location: /lmonly.txt\r\n" ..
           "Set-Cookie: x=1\r\nContent-Length: {len}\r\n\r\nlm only\n",
  notfound = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nETag: \"nf\"\r\n" ..
             "Cache-Control: max-age=60\r\nContent-Length: {len}\r\n\r\nnot here\n",
}

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local o = luring.origin{ name = "o", url = "@ORIGIN@" }
local r = luring.origin{ name = "r", url = "@RAW@" }
local c = luring.cache{ name = "c", ttl = 60 }
local hooked = luring.cache{ name = "h", ttl = 60, deliver = function(req, res)
  res.headers["X-Hook-Status"] = tostring(res.status)
end }
app:get("/stats", function(req)
  local s = c:stats()
  return 200, nil, ("not_modified=%d partial=%d hits=%d\n"):format(s.not_modified, s.partial, s.hits)
end)
app:get("/f/*", function(req) return c:fetch(req, req.path, o) end)
app:get("/hook/*", function(req) return hooked:fetch(req, req.path, o, { path = "/f/" .. req.params["*"] }) end)
app:get("/raw/*", function(req) return c:fetch(req, req.path, r, { path = "/" .. req.params["*"] }) end)
app:get("/pass/*", function(req) return luring.proxy(req, o) end)
]]

local ngx, raw, srv, etag, lm

local function exchange(method, path, headers)
  local conn = helper.connect(srv:port())
  conn:write(helper.request(method, path, headers))
  local res = conn:response{ method = method, timeout = 10 }
  conn:close()
  return res
end

local function get(path, headers) return exchange("GET", path, headers) end

-- The ETag nginx gives a file, asked directly.
local function origin_etag(path)
  local conn = helper.connect(ngx:port())
  conn:write(helper.request("HEAD", path))
  local res = conn:response{ method = "HEAD" }
  conn:close()
  return res.headers["etag"]
end

local function stats()
  local t = {}
  for k, v in get("/stats").body:gmatch("(%w[%w_]*)=(%d+)") do t[k] = tonumber(v) end
  return t
end

-- An HTTP-date `delta` seconds from the stored Last-Modified.
local function lm_plus(delta)
  local months = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8,
                   Sep = 9, Oct = 10, Nov = 11, Dec = 12 }
  local d, mon, y, hh, mm, ss = lm:match("^%a+, (%d+) (%a+) (%d+) (%d+):(%d+):(%d+) GMT$")
  local t = os.time{ year = tonumber(y), month = months[mon], day = tonumber(d),
                     hour = tonumber(hh), min = tonumber(mm), sec = tonumber(ss), isdst = false }
  -- os.time reads local time; so does os.date without "!": they cancel out
  return os.date("!%a, %d %b %Y %H:%M:%S GMT", t + delta - (os.time() - os.time(os.date("!*t"))))
end

describe("RFC 9110 conditional requests from the cache", function()
  setup(function()
    ngx = origin.start{ files = { ["f/a.txt"] = BODY, ["f/b.txt"] = BODY, ["f/m.txt"] = BODY,
                                  ["f/h.txt"] = BODY, ["f/p.txt"] = BODY, ["f/hook.txt"] = BODY } }
    ngx:restart{ locations = (LOCATIONS:gsub("@ROOT@", ngx:root())) }
    raw = raw_origin.start{ responses = RAW, delay = 0 }
    srv = helper.start((SCRIPT:gsub("@ORIGIN@", ngx:url()):gsub("@RAW@", raw:url())))
    local first = get("/f/a.txt")
    assert.are.equal(200, first.status)
    assert.are.equal("MISS", first.headers["x-cache"])
    etag, lm = first.headers["etag"], first.headers["last-modified"]
    assert.is_truthy(etag and etag:match('^"[^"]+"$'), "nginx sends a strong ETag")
    assert.is_truthy(lm, "nginx sends Last-Modified")
  end)

  teardown(function()
    helper.stop_all()
    origin.stop_all()
    raw_origin.stop_all()
  end)

  describe("§13.1.2 If-None-Match", function()
    it("§13.1.2 a matching strong tag gives 304 from cache", function()
      local res = get("/f/a.txt", { ["If-None-Match"] = etag })
      assert.are.equal(304, res.status)
      assert.are.equal("HIT", res.headers["x-cache"])
      assert.are.equal("", res.body)
    end)

    it("§13.1.2 uses the weak comparison: W/ on the client's tag still matches (§8.8.3.2)", function()
      assert.are.equal(304, get("/f/a.txt", { ["If-None-Match"] = "W/" .. etag }).status)
    end)

    it("§13.1.2 matches a member of a list, empty elements allowed (§5.6.1)", function()
      local res = get("/f/a.txt", { ["If-None-Match"] = '"x", , W/"y",' .. etag })
      assert.are.equal(304, res.status)
      -- the list split over two field lines
      res = get("/f/a.txt", { { "If-None-Match", '"x"' }, { "If-None-Match", etag } })
      assert.are.equal(304, res.status)
      -- a long one
      res = get("/f/a.txt", { ["If-None-Match"] = string.rep('"a",', 1500) .. etag })
      assert.are.equal(304, res.status)
    end)

    it("§13.1.2 `*` matches the stored representation", function()
      assert.are.equal(304, get("/f/a.txt", { ["If-None-Match"] = "*" }).status)
    end)

    it("§13.1.2 no matching tag gives the full 200", function()
      local res = get("/f/a.txt", { ["If-None-Match"] = '"other", W/"other2"' })
      assert.are.equal(200, res.status)
      assert.are.equal(BODY, res.body)
    end)

    it("§13.1.2 a malformed list is no match: 200, never a crash", function()
      for _, v in ipairs{ "garbage", etag .. " junk", '"unterminated', "**", string.rep('"a",', 1500) .. "x" } do
        local res = get("/f/a.txt", { ["If-None-Match"] = v })
        assert.are.equal(200, res.status, v:sub(1, 40))
        assert.are.equal(BODY, res.body)
      end
    end)

    it("§13.1.2 weak stored tags match weakly (the origin's W/\"w1\")", function()
      assert.are.equal(200, get("/raw/weak").status)
      local res = get("/raw/weak", { ["If-None-Match"] = '"w1"' })
      assert.are.equal(304, res.status)
      assert.are.equal('W/"w1"', res.headers["etag"])
    end)

    it("§13.1.2 the miss that fills the object answers 304 itself (its fill sent no If-None-Match)", function()
      local res = get("/f/m.txt", { ["If-None-Match"] = origin_etag("/f/m.txt") })
      assert.are.equal("MISS", res.headers["x-cache"])
      assert.are.equal(304, res.status)
      res = get("/f/m.txt") -- the 304 went out before the fill ended: maybe still filling
      assert.is_truthy(res.headers["x-cache"] == "HIT" or res.headers["x-cache"] == "COALESCED")
      assert.are.equal(BODY, res.body)
    end)

    it("§13.2.2 If-None-Match takes precedence over If-Modified-Since", function()
      local res = get("/f/a.txt", { ["If-None-Match"] = '"other"', ["If-Modified-Since"] = lm })
      assert.are.equal(200, res.status)
      res = get("/f/a.txt", { ["If-None-Match"] = etag, ["If-Modified-Since"] = lm_plus(-86400) })
      assert.are.equal(304, res.status)
    end)
  end)

  describe("§13.1.3 If-Modified-Since", function()
    it("§13.1.3 the Last-Modified date itself gives 304", function()
      assert.are.equal(304, get("/f/a.txt", { ["If-Modified-Since"] = lm }).status)
    end)

    it("§13.1.3 a later date gives 304", function()
      assert.are.equal(304, get("/f/a.txt", { ["If-Modified-Since"] = lm_plus(3600) }).status)
    end)

    it("§13.1.3 an earlier date gives 200 with the body", function()
      local res = get("/f/a.txt", { ["If-Modified-Since"] = lm_plus(-1) })
      assert.are.equal(200, res.status)
      assert.are.equal(BODY, res.body)
    end)

    it("§13.1.3 the obsolete date formats count (§5.6.7)", function()
      local rfc850 = lm_plus(10):gsub("^(%a+), (%d+) (%a+) %d%d(%d%d)", function(d, dd, mon, yy)
        local long = { Mon = "Monday", Tue = "Tuesday", Wed = "Wednesday", Thu = "Thursday",
                       Fri = "Friday", Sat = "Saturday", Sun = "Sunday" }
        return ("%s, %s-%s-%s"):format(long[d], dd, mon, yy)
      end)
      assert.are.equal(304, get("/f/a.txt", { ["If-Modified-Since"] = rfc850 }).status)
    end)

    it("§13.1.3 a garbage or repeated date is ignored: 200", function()
      for _, v in ipairs{ "yesterday", "Sun, 99 Nov 1994 08:49:37 GMT", "0", string.rep("9", 40),
                          lm .. ", " .. lm } do
        local res = get("/f/a.txt", { ["If-Modified-Since"] = v })
        assert.are.equal(200, res.status, v)
        assert.are.equal(BODY, res.body)
      end
    end)

    it("§13.1.3 is ignored without Last-Modified (RFC 9111 §4.3.2: nor a stored Date)", function()
      assert.are.equal(200, get("/raw/nolm").status)
      local res = get("/raw/nolm", { ["If-Modified-Since"] = "Fri, 01 Jan 2100 00:00:00 GMT" })
      assert.are.equal(200, res.status)
      assert.are.equal("no validators\n", res.body)
    end)
  end)

  describe("§13.1.1 If-Match and §13.1.4 If-Unmodified-Since", function()
    it("§13.1.1 a matching strong tag passes: 200", function()
      local res = get("/f/a.txt", { ["If-Match"] = '"x", ' .. etag })
      assert.are.equal(200, res.status)
      assert.are.equal(BODY, res.body)
    end)

    it("§13.1.1 `*` passes", function()
      assert.are.equal(200, get("/f/a.txt", { ["If-Match"] = "*" }).status)
    end)

    it("§13.1.1 no matching tag fails with 412", function()
      local res = get("/f/a.txt", { ["If-Match"] = '"other"' })
      assert.are.equal(412, res.status)
      assert.are.equal("Precondition Failed\n", res.body)
      assert.is_nil(res.headers["accept-ranges"])
    end)

    it("§13.1.1 uses the strong comparison: a weak tag fails (§8.8.3.2)", function()
      assert.are.equal(412, get("/f/a.txt", { ["If-Match"] = "W/" .. etag }).status)
      assert.are.equal(412, get("/raw/weak", { ["If-Match"] = 'W/"w1"' }).status)
    end)

    it("§13.1.1 a malformed If-Match fails: 412", function()
      assert.are.equal(412, get("/f/a.txt", { ["If-Match"] = "garbage" }).status)
    end)

    it("§13.1.4 If-Unmodified-Since at or after Last-Modified passes, before it fails with 412", function()
      assert.are.equal(200, get("/f/a.txt", { ["If-Unmodified-Since"] = lm }).status)
      assert.are.equal(200, get("/f/a.txt", { ["If-Unmodified-Since"] = lm_plus(60) }).status)
      assert.are.equal(412, get("/f/a.txt", { ["If-Unmodified-Since"] = lm_plus(-60) }).status)
    end)

    it("§13.1.4 a garbage If-Unmodified-Since is ignored", function()
      assert.are.equal(200, get("/f/a.txt", { ["If-Unmodified-Since"] = "not a date" }).status)
    end)

    it("§13.2.2 If-Match is evaluated before If-None-Match and If-Unmodified-Since is ignored with it", function()
      assert.are.equal(412, get("/f/a.txt", { ["If-Match"] = '"other"', ["If-None-Match"] = etag }).status)
      assert.are.equal(304, get("/f/a.txt", { ["If-Match"] = etag, ["If-None-Match"] = etag }).status)
      assert.are.equal(200, get("/f/a.txt", { ["If-Match"] = etag,
                                             ["If-Unmodified-Since"] = lm_plus(-60) }).status)
    end)

    it("§13.2.1 preconditions are ignored on a stored non-2xx response", function()
      local res = get("/raw/notfound", { ["If-Match"] = '"zzz"' })
      assert.are.equal(404, res.status)
      res = get("/raw/notfound", { ["If-None-Match"] = '"nf"' })
      assert.are.equal(404, res.status)
      assert.are.equal("not here\n", res.body)
      assert.is_nil(res.headers["accept-ranges"])
    end)
  end)

  describe("§15.4.5 the 304 response", function()
    it("§15.4.5 carries ETag, Date, Vary, Cache-Control, Expires and no body or representation metadata", function()
      local res = get("/f/a.txt", { ["If-None-Match"] = etag })
      assert.are.equal(304, res.status)
      assert.are.equal(etag, res.headers["etag"])
      assert.is_truthy(res.headers["date"])
      assert.are.equal("Accept-Encoding", res.headers["vary"])
      assert.are.equal("max-age=3600", res.headers["cache-control"])
      assert.is_truthy(res.headers["expires"])
      assert.are.equal("HIT", res.headers["x-cache"])
      for _, f in ipairs{ "content-length", "content-type", "transfer-encoding", "accept-ranges",
                          "last-modified" } do
        assert.is_nil(res.headers[f], f)
      end
    end)

    it("§15.4.5 sends Last-Modified and Content-Location when there is no ETag, never Set-Cookie", function()
      local full = get("/raw/lmonly")
      assert.are.equal(200, full.status)
      local res = get("/raw/lmonly", { ["If-Modified-Since"] = "Sun, 06 Nov 1994 08:49:37 GMT" })
      assert.are.equal(304, res.status)
      assert.are.equal("Sun, 06 Nov 1994 08:49:37 GMT", res.headers["last-modified"])
      assert.are.equal("/lmonly.txt", res.headers["content-location"])
      assert.is_nil(res.headers["set-cookie"])
      assert.is_nil(res.headers["content-type"])
    end)

    it("§15.4.5 a 304 has no body: the connection goes on with the next pipelined request", function()
      local conn = helper.connect(srv:port())
      conn:write(helper.request("GET", "/f/a.txt", { ["If-None-Match"] = etag }) ..
                 helper.request("GET", "/f/a.txt", { ["If-Modified-Since"] = lm }) ..
                 helper.request("GET", "/f/a.txt"))
      local r1 = conn:response{ timeout = 10 }
      local r2 = conn:response{ timeout = 10 }
      local r3 = conn:response{ timeout = 10 }
      conn:close()
      assert.are.equal(304, r1.status)
      assert.are.equal(304, r2.status)
      assert.are.equal(200, r3.status)
      assert.are.equal(BODY, r3.body)
    end)

    it("§9.3.2 HEAD gets the same 304, and the same head as GET otherwise", function()
      local res = exchange("HEAD", "/f/a.txt", { ["If-None-Match"] = etag })
      assert.are.equal(304, res.status)
      assert.are.equal(etag, res.headers["etag"])
      res = exchange("HEAD", "/f/a.txt")
      assert.are.equal(200, res.status)
      assert.are.equal(tostring(SIZE), res.headers["content-length"])
      assert.are.equal("bytes", res.headers["accept-ranges"])
      res = exchange("HEAD", "/f/a.txt", { ["If-Match"] = '"no"' })
      assert.are.equal(412, res.status)
    end)

    it("runs the deliver hook for a 304 and a 412, with their status", function()
      assert.are.equal(200, get("/hook/hook.txt").status)
      local tag = origin_etag("/f/hook.txt")
      local res = get("/hook/hook.txt", { ["If-None-Match"] = tag })
      assert.are.equal(304, res.status)
      assert.are.equal("304", res.headers["x-hook-status"])
      assert.are.equal(tag, res.headers["etag"])
      assert.is_nil(res.headers["content-type"])
      res = get("/hook/hook.txt", { ["If-Match"] = '"no"' })
      assert.are.equal(412, res.status)
      assert.are.equal("412", res.headers["x-hook-status"])
      res = get("/hook/hook.txt")
      assert.are.equal(200, res.status)
      assert.are.equal("bytes", res.headers["accept-ranges"])
      assert.are.equal(BODY, res.body)
    end)

    it("counts 304s in cache:stats()", function()
      local before = stats().not_modified
      get("/f/a.txt", { ["If-None-Match"] = etag })
      assert.are.equal(before + 1, stats().not_modified)
    end)
  end)

  describe("passes", function()
    it("relay the origin's own answer to conditionals (luring.proxy forwards them)", function()
      local res = get("/pass/p.txt", { ["If-None-Match"] = origin_etag("/f/p.txt") })
      assert.are.equal(304, res.status) -- nginx's 304
      assert.is_nil(res.headers["x-cache"])
      res = get("/pass/p.txt", { ["If-Match"] = '"other"' })
      assert.are.equal(412, res.status)
      res = get("/pass/p.txt")
      assert.are.equal("bytes", res.headers["accept-ranges"]) -- nginx's own
    end)
  end)
end)
