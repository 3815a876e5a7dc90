-- Origin responses are parsed as strictly as requests (the hardening issue,
-- points 1 and 4): a response whose framing is ambiguous or malformed is a
-- failed fill -- 502 when its head is at fault, a cut response when its
-- body is -- and is never cached (every request goes to the origin again).
-- Bytes an origin sends on an idle pooled connection are never read as the
-- response to the next request that takes it (RFC 9112 §9.3: the response
-- to a request follows that request).
local helper = require "helper"
local raw = require "raw_origin"
local socket = require "socket"

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local o = luring.origin{ name = "o", url = "@ORIGIN@", keepalive = 8 }
local c = luring.cache{ name = "c", ttl = 60 }
app:get("/c/:name", function(req)
  -- the cache key carries the query; the origin gets the bare name
  local key = "/" .. req.params.name .. "?" .. (req.query or "")
  return c:fetch(req, key, o, "/" .. req.params.name .. "?" .. (req.query or ""))
end)
app:get("/w", function(req) return "w" end)
app:get("/busy", function(req)
  local t = os.clock()
  while os.clock() - t < 0.15 do end   -- holds the only worker
  return "busy"
end)
]]

local MAXAGE = "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n"

-- Malformed heads: 502, never cached. RFC 9112 sections per family.
local BAD_HEAD = {
  { "bare LF line ends (§2.2)", "HTTP/1.1 200 OK\nCache-Control: max-age=60\nContent-Length: 5\n\nhello" },
  { "bare CR in a field (§2.2)", MAXAGE .. "A: b\rc\r\nContent-Length: 5\r\n\r\nhello" },
  { "obs-fold (§5.2)", MAXAGE .. "X-A: b\r\n  c\r\nContent-Length: 5\r\n\r\nhello" },
  { "Content-Length and Transfer-Encoding (§6.3)",
    MAXAGE .. "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" },
  { "Content-Length twice, different (§6.3)", MAXAGE .. "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!" },
  { "Content-Length twice, equal (§6.3)", MAXAGE .. "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello" },
  { "Content-Length with a sign (RFC 9110 §8.6)", MAXAGE .. "Content-Length: +5\r\n\r\nhello" },
  { "Content-Length list (RFC 9110 §8.6)", MAXAGE .. "Content-Length: 5, 5\r\n\r\nhello" },
  { "Content-Length hex (RFC 9110 §8.6)", MAXAGE .. "Content-Length: 0x5\r\n\r\nhello" },
  { "Content-Length overflow (RFC 9110 §8.6)", MAXAGE .. "Content-Length: 99999999999999999999\r\n\r\nhello" },
  { "whitespace before a framing field's colon (§5.1)",
    MAXAGE .. "Transfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" },
  { "whitespace before Content-Length's colon (§5.1)", MAXAGE .. "Content-Length\t: 5\r\n\r\nhello" },
  { "Transfer-Encoding twice (§6.1)",
    MAXAGE .. "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" },
  { "Transfer-Encoding not chunked (§6.3)", MAXAGE .. "Transfer-Encoding: gzip\r\n\r\nhello" },
  { "Transfer-Encoding chunked, chunked (§6.1)",
    MAXAGE .. "Transfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" },
  { "Transfer-Encoding in HTTP/1.0 (§6.1)",
    "HTTP/1.0 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" },
  { "status 99 (§4)", "HTTP/1.1 099 Odd\r\nContent-Length: 5\r\n\r\nhello" },
  { "four-digit status (§4)", "HTTP/1.1 2000 OK\r\nContent-Length: 5\r\n\r\nhello" },
  { "HTTP/2 status line (§4)", "HTTP/2 200 OK\r\nContent-Length: 5\r\n\r\nhello" },
  { "control character in the reason (§4)", "HTTP/1.1 200 O\1K\r\nContent-Length: 5\r\n\r\nhello" },
  { "NUL in a field value (§5.5)", MAXAGE .. "X-A: b\0c\r\nContent-Length: 5\r\n\r\nhello" },
  { "field name not a token (§5.1)", MAXAGE .. "X(A): b\r\nContent-Length: 5\r\n\r\nhello" },
  { "101 not asked for (RFC 9110 §15.2.2)", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nhello" },
  { "head over 64 KiB", MAXAGE .. "X-Big: " .. ("x"):rep(70000) .. "\r\nContent-Length: 5\r\n\r\nhello" },
}

-- Heads that are fine, bodies that are not: the fill fails, the client's
-- response is cut (never a complete one), nothing is cached (§7.1).
local CHUNKED = MAXAGE .. "Transfer-Encoding: chunked\r\n\r\n"
local BAD_BODY = {
  { "chunk data not followed by CRLF", CHUNKED .. "5\r\nhelloXY0\r\n\r\n" },
  { "chunk size with junk", CHUNKED .. "5 0\r\nhello\r\n0\r\n\r\n" },
  { "chunk size overflow", CHUNKED .. "ffffffffffffffff1\r\nhello\r\n0\r\n\r\n" },
  { "chunk size 2^63", CHUNKED .. "8000000000000000\r\nhello\r\n0\r\n\r\n" },
  { "bare LF in a chunk extension", CHUNKED .. "5;a\nb\r\nhello\r\n0\r\n\r\n" },
  { "bare LF after chunk data", CHUNKED .. "5\r\nhello\n0\r\n\r\n" },
  { "obs-fold in the trailer", CHUNKED .. "5\r\nhello\r\n0\r\nT: 1\r\n  2\r\n\r\n" },
}

-- Unusual but valid: served and cached (one origin request for two).
local GOOD = {
  { "chunk extensions and trailer fields", CHUNKED .. "5;a=b;c=\"d e\"\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", "hello" },
  { "status line without a reason", "HTTP/1.1 200\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n\r\nhello", "hello" },
  { "Content-Length with leading zeros", MAXAGE .. "Content-Length: 0005\r\n\r\nhello", "hello" },
  { "an interim 103 first", "HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" .. MAXAGE .. "Content-Length: 5\r\n\r\nhello", "hello" },
  { "Transfer-Encoding in any case", MAXAGE .. "Transfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "hello" },
  { "whitespace around a value", MAXAGE .. "Content-Length:   5  \r\n\r\nhello", "hello" },
}

-- GET path on a fresh connection with Connection: close; the raw bytes.
local function fetch_raw(port, path)
  local c = helper.connect(port)
  c:write("GET " .. path .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
  local all = c:read_available(3)
  c:close()
  return all
end

-- Did a raw response stream end as a complete 200 whose body is `body`?
local function complete_200(rawr)
  local res = helper.parse_response(rawr)
  if not res or res.status ~= 200 then return false end
  local te = res.headers["transfer-encoding"]
  if te then return rawr:sub(-5) == "0\r\n\r\n" end
  local cl = tonumber(res.headers["content-length"])
  return cl ~= nil and #res.body == cl
end

describe("origin responses parsed strictly (RFC 9112)", function()
  local srv, rawo
  lazy_setup(function()
    local responses = {
      plain = MAXAGE .. "Content-Length: {len}\r\n\r\nplain {id}",
      hop = MAXAGE .. "Connection: keep-alive, X-Secret\r\nX-Secret: s3cr3t\r\n"
        .. "X-Kept: kept\r\nConnection: x-other\r\nX-Other: o\r\nContent-Length: 3\r\n\r\nhop",
      race = MAXAGE .. "Content-Length: {len}\r\n\r\nrace {id}{then}"
        .. MAXAGE .. "Content-Length: 6\r\n\r\nforged",
    }
    for i, case in ipairs(BAD_HEAD) do responses["h" .. i] = case[2] end
    for i, case in ipairs(BAD_BODY) do responses["b" .. i] = case[2] end
    for i, case in ipairs(GOOD) do responses["g" .. i] = case[2] end
    rawo = raw.start{ delay = 0, responses = responses }
    srv = helper.start((SCRIPT:gsub("@ORIGIN@", rawo:url())), { args = { "--workers", "1" } })
  end)
  lazy_teardown(raw.teardown)

  for i, case in ipairs(BAD_HEAD) do
    it("502, not cached: " .. case[1], function()
      for round = 1, 2 do
        local r = helper.parse_response(fetch_raw(srv:port(), "/c/h" .. i))
        assert.is_not_nil(r, "no response, round " .. round)
        assert.are.equal(502, r.status, "round " .. round)
      end
      assert.are.equal(2, rawo:count("/h" .. i), "cached or not fetched")
    end)
  end

  for i, case in ipairs(BAD_BODY) do
    it("cut, not cached: " .. case[1], function()
      for round = 1, 2 do
        local rawr = fetch_raw(srv:port(), "/c/b" .. i)
        assert.is_false(complete_200(rawr), "a complete response, round " .. round .. ":\n" .. rawr)
      end
      assert.are.equal(2, rawo:count("/b" .. i), "cached or not fetched")
    end)
  end

  for i, case in ipairs(GOOD) do
    it("served and cached: " .. case[1], function()
      local r1 = helper.get(srv:port(), "/c/g" .. i)
      local r2 = helper.get(srv:port(), "/c/g" .. i)
      assert.are.equal(200, r1.status)
      assert.are.equal(case[3], r1.body)
      assert.are.equal(case[3], r2.body)
      assert.are.equal("HIT", r2.headers["x-cache"])
      assert.are.equal(1, rawo:count("/g" .. i))
    end)
  end

  -- RFC 9110 §7.6.1: fields named by Connection are hop-by-hop; they
  -- reach neither the client nor the cache.
  it("fields named by the origin's Connection field are dropped, on the miss and the hit", function()
    for round = 1, 2 do
      local r = helper.get(srv:port(), "/c/hop")
      assert.are.equal("hop", r.body)
      assert.is_nil(r.headers["x-secret"], "round " .. round)
      assert.is_nil(r.headers["x-other"], "round " .. round)
      assert.are.equal("kept", r.headers["x-kept"])
      assert.are.equal(round == 1 and "MISS" or "HIT", r.headers["x-cache"])
    end
    assert.are.equal(1, rawo:count("/hop"))
  end)

  -- The race of the issue: an origin sends a forged response 50 ms after
  -- a real one on a connection that went back to the pool; meanwhile the
  -- only worker is busy, so the next request for another key and those
  -- bytes are handled in one batch of completions. The forged bytes must
  -- never be that request's response, nor cached under its key.
  it("bytes on an idle pooled connection are never the next response (§9.3)", function()
    local forged = 0
    for i = 1, 8 do
      -- connections already open (their receives armed), so the request
      -- and the origin's bytes complete in the same batch
      local pc = helper.connect(srv:port())
      pc:write("GET /w HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.is_not_nil(pc:read_response())
      local busy = helper.connect(srv:port())
      busy:write("GET /w HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.is_not_nil(busy:read_response())
      local r = helper.get(srv:port(), "/c/race?" .. i)
      assert.truthy(r.body:match("^race %d+$"), r.body)
      -- the worker is busy from now for 150 ms; the forged bytes arrive
      -- at +50 ms, the next request at +20 ms
      busy:write("GET /busy HTTP/1.1\r\nHost: x\r\n\r\n")
      socket.sleep(0.02)
      pc:write("GET /c/plain?" .. i .. " HTTP/1.1\r\nHost: x\r\n\r\n")
      local p = assert(pc:read_response())
      if p.body == "forged" then forged = forged + 1 end
      assert.truthy(p.body == "forged" or p.body:match("^plain %d+$"), p.body)
      local again = helper.get(srv:port(), "/c/plain?" .. i)
      assert.are.equal(p.body, again.body)
      busy:close()
      pc:close()
    end
    assert.are.equal(0, forged, "forged responses served")
    assert.is_true(srv:alive())
    assert.is_nil(helper.crash_report(srv:stderr()))
  end)
end)
