-- luring.proxy and an origin whose response framing is odd or broken
-- (issue 11, points 2 and 3, and "bad input"): the same framings that
-- origin_framing_spec.lua and origin_strict_spec.lua send through
-- cache:fetch, here through pass-through.  The origin is
-- tests/lua/raw_origin.py (exact bytes, {then}: bytes sent later unasked,
-- {close}: the origin closes).  For each case: what the client reads (a
-- correct response or a clear failure, never bytes of another response),
-- whether the client connection goes on (a pipelined request answered),
-- and whether the origin connection is reused (origin:stats() and the
-- connections raw_origin.py accepted).  Each test names its RFC section.
local helper = require "helper"
local raw_origin = require "raw_origin"

local FORGED = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"

local RAW = {
  ok = "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\nok {id}",
  -- RFC 9112 §6.3 (8): no framing, the body ends when the origin closes
  close = "HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil the close {id}{close}",
  close10 = "HTTP/1.0 200 OK\r\nX-A: 1\r\n\r\nten {id}{close}",
  -- RFC 9112 §6.3 (3): both framings
  clte = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. "5\r\nhello\r\n0\r\n\r\n",
  tecl = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
    .. "5\r\nhello\r\n0\r\n\r\n",
  -- RFC 9112 §6.3 (5): Content-Length invalid or repeated with other values
  dupcl = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
  listcl = "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!",
  badcl = "HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello",
  negcl = "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello",
  -- RFC 9112 §6.3, last paragraph: bytes beyond the length are not part
  -- of the response; in the same send, and 50 ms later
  extra = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" .. FORGED,
  late = "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\nlate {id}{then}" .. FORGED,
  -- RFC 9112 §6.3 (1): no body whatever Content-Length says, bytes follow
  nobody204 = "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\nX-A: 1\r\n\r\n0123456789",
  nobody304 = "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 10\r\n\r\n0123456789",
  headbody = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-H: 1\r\n\r\n0123456789",
  -- RFC 9110 §15.2: interim responses before the final one
  early = "HTTP/1.1 100 Continue\r\n\r\n"
    .. "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n"
    .. "Cache-Control: no-store\r\nX-Interim: 1\r\n\r\n"
    .. "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: {len}\r\n\r\nfinal {id}",
  -- RFC 9110 §7.6.1: hop-by-hop response fields, the Connection-named too
  hop = "HTTP/1.1 200 OK\r\nConnection: X-Secret, keep-alive\r\nX-Secret: s3cr3t\r\n"
    .. "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-Ok: yes\r\n"
    .. "Content-Length: {len}\r\n\r\nhop",
  -- RFC 9110 §7.6.1 and RFC 9111 §3: fields a cache decides by, named
  -- by Connection (meant for luring, not forwarded)
  hidecc = "HTTP/1.1 200 OK\r\nConnection: Cache-Control\r\n"
    .. "Cache-Control: private, max-age=60\r\nContent-Length: {len}\r\n\r\nmine {id}",
  hidecookie = "HTTP/1.1 200 OK\r\nConnection: keep-alive, Set-Cookie\r\n"
    .. "Set-Cookie: sid={id}\r\nContent-Length: {len}\r\n\r\nmine {id}",
  hidevary = "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nConnection: vary\r\n"
    .. "Vary: *\r\nContent-Length: {len}\r\n\r\nmine {id}",
  -- RFC 9110 §11.7.1, §6.6.1, §10.2.4: what luring replaces or drops
  fields = "HTTP/1.1 200 OK\r\nProxy-Authenticate: Basic realm=\"origin\"\r\n"
    .. "Date: {imf-2}\r\nServer: origin-server/1\r\n"
    .. "WWW-Authenticate: Basic realm=\"site\"\r\nX-Ok: yes\r\n"
    .. "Content-Length: {len}\r\n\r\nfields",
  -- RFC 9112 §8: incomplete messages
  shortcl = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b{close}",
  shortchunk = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n{close}",
  shorthead = "HTTP/1.1 200 OK\r\nContent-Le{close}",
  nothing = "{close}",
  -- RFC 9112 §4, §5: heads luring refuses (H1_RESP_MAX_FIELDS, _MAX_HEAD)
  manyfields = "HTTP/1.1 200 OK\r\n" .. ("X-F: 1\r\n"):rep(200) .. "Content-Length: 2\r\n\r\nno",
  hugehead = "HTTP/1.1 200 OK\r\nX-Big: " .. ("b"):rep(70 * 1024) .. "\r\nContent-Length: 2\r\n\r\nno",
  badstatus = "HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nno",
  badversion = "HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nno",
  switching = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\nno",
  -- RFC 9112 §7.1.1, §7.1.2: extensions and trailers, not forwarded
  trailer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. "5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
}

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local o = luring.origin{ name = "raw", url = "@RAW@", keepalive = 8,
                         first_byte_timeout = 5 }
local truncated = 0
app:route("GET", "/r/*", function(req)
  local ok, err = luring.proxy(req, o)
  if not ok and err == "truncated" then truncated = truncated + 1 end
end)
app:route("HEAD", "/r/*", function(req) return luring.proxy(req, o) end)
local cache = luring.cache{ name = "c", ttl = 60 }
app:get("/c/*", function(req)
  return cache:fetch(req, req.path:match("^/c(/.*)$"), o)
end)
app:get("/ostats", function(req)
  local s = o:stats()
  return ("connects=%d reused=%d errors=%d requests=%d idle=%d truncated=%d")
    :format(s.connects, s.reused, s.errors, s.requests, s.idle, truncated)
end)
]]

local raw, srv

local function stats()
  local t = {}
  for k, v in helper.get(srv:port(), "/ostats").body:gmatch("(%w+)=(%d+)") do
    t[k] = tonumber(v)
  end
  return t
end

-- One request on its own connection; the response (raises if incomplete).
local function exchange(method, path)
  local c = helper.connect(srv:port())
  c:write(helper.request(method, path))
  local res = c:response{ method = method, timeout = 5 }
  c:close()
  return res
end

-- fn() sends the odd request and then one for /r/ok, which must not get
-- the odd one's origin connection: with exactly one connection pooled
-- before (the odd request takes it), /r/ok must open a new one, as luring
-- counts (origin:stats()) and as the origin sees it (accepted connections).
local function assert_not_reused(what, fn)
  assert.are.equal(200, exchange("GET", "/r/ok").status)
  local s0, n0 = stats(), raw:connections()
  assert.are.equal(1, s0.idle, "one pooled connection before " .. what)
  fn()
  local s1 = stats()
  assert.are.equal(s0.reused + 1, s1.reused, what .. ": took the pooled connection")
  assert.are.equal(s0.connects + 1, s1.connects, what .. ": its connection was reused")
  assert.are.equal(n0 + 1, raw:connections(), what .. ": the origin saw no new connection")
end

describe("luring.proxy and odd origin framings", function()
  lazy_setup(function()
    raw = raw_origin.start{ responses = RAW, delay = 0 }
    srv = helper.start((SCRIPT:gsub("@RAW@", raw:url())))
  end)
  lazy_teardown(raw_origin.teardown)

  it("a close-delimited body reaches an HTTP/1.1 client chunked, and its connection goes on (RFC 9112 §6.3, §7.1)", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/r/close") .. helper.request("GET", "/r/ok"))
    local r1 = c:response{ timeout = 5 }
    assert.are.equal(200, r1.status)
    assert.is_true(r1.chunked)
    assert.is_nil(r1.headers["content-length"])
    assert.are.equal("1", r1.headers["x-a"])
    assert.matches("^until the close %d+$", r1.body)
    local r2 = c:response{ timeout = 5 }
    assert.are.equal(200, r2.status)
    assert.matches("^ok %d+$", r2.body)
    assert(c:expect_closed(0.3) == false, "client connection closed")
    c:close()
  end)

  it("a close-delimited HTTP/1.0 response reaches an HTTP/1.0 client delimited by the close (RFC 9112 §6.3, §9.3)", function()
    -- a close-delimited response ends with its origin connection
    assert_not_reused("/r/close10", function()
      local c = helper.connect(srv:port())
      c:write("GET /r/close10 HTTP/1.0\r\n\r\n")
      local res = c:response{ timeout = 5 }
      c:close()
      assert.are.equal(200, res.status)
      assert.is_true(res.until_close)
      assert.matches("^ten %d+$", res.body)
      assert.are.equal(200, exchange("GET", "/r/ok").status)
    end)
  end)

  for _, k in ipairs{
    { "clte", "Content-Length then Transfer-Encoding (RFC 9112 §6.3 (3), §6.1)" },
    { "tecl", "Transfer-Encoding then Content-Length (RFC 9112 §6.3 (3), §6.1)" },
    { "dupcl", "two Content-Length fields with different values (RFC 9112 §6.3 (5))" },
    { "listcl", "a Content-Length list with different values (RFC 9112 §6.3 (5))" },
    { "badcl", "an invalid Content-Length (RFC 9112 §6.3 (5), RFC 9110 §8.6)" },
    { "negcl", "a negative Content-Length (RFC 9112 §6.3 (5), RFC 9110 §8.6)" },
  } do
    local name, what = k[1], k[2]
    it(what .. ": 502, the origin connection is closed, the client's goes on", function()
      local s0 = stats()
      assert_not_reused("/r/" .. name, function()
        local c = helper.connect(srv:port())
        c:write(helper.request("GET", "/r/" .. name) .. helper.request("GET", "/r/ok"))
        local r1 = c:response{ timeout = 5 }
        assert.are.equal(502, r1.status)
        assert.is_nil(r1.body:find("hello", 1, true))
        local r2 = c:response{ timeout = 5 }
        assert.are.equal(200, r2.status)
        assert.matches("^ok %d+$", r2.body)
        c:close()
      end)
      assert.are.equal(s0.errors + 1, stats().errors)
    end)
  end

  it("bytes beyond Content-Length in the same send: the response whole, never the extra bytes; the origin connection closed (RFC 9112 §6.3)", function()
    assert_not_reused("/r/extra", function()
      local c = helper.connect(srv:port())
      c:write(helper.request("GET", "/r/extra") .. helper.request("GET", "/r/ok"))
      local r1 = c:response{ timeout = 5 }
      assert.are.equal(200, r1.status)
      assert.are.equal("hello", r1.body)
      local r2 = c:response{ timeout = 5 }
      assert.are.equal(200, r2.status)
      assert.matches("^ok %d+$", r2.body)
      assert.are.equal("", (c:read_available(0.2)))
      c:close()
    end)
    assert.truthy(srv:wait_stderr("beyond the response's framing", 2))
  end)

  it("bytes sent later on an idle pooled connection: never read as a response, the connection dropped (RFC 9112 §6.3, §9.3)", function()
    assert_not_reused("/r/late", function()
      local res = exchange("GET", "/r/late")
      assert.are.equal(200, res.status)
      assert.matches("^late %d+$", res.body)
      helper.sleep(0.3) -- the forged response is in luring's socket by now
      res = exchange("GET", "/r/ok")
      assert.matches("^ok %d+$", res.body)
    end)
    assert.truthy(srv:wait_stderr("bytes on an idle connection", 2))
  end)

  for _, k in ipairs{
    { "GET", "nobody204", 204, "a 204" },
    { "GET", "nobody304", 304, "a 304" },
    { "HEAD", "headbody", 200, "a response to HEAD" },
  } do
    local method, name, status, what = k[1], k[2], k[3], k[4]
    it(what .. " with Content-Length and bytes after it ends at the blank line; a pipelined request is answered (RFC 9112 §6.3 (1))", function()
      -- the bytes after the blank line are beyond the framing
      assert_not_reused("/r/" .. name, function()
        local c = helper.connect(srv:port())
        c:write(helper.request(method, "/r/" .. name) .. helper.request("GET", "/r/ok"))
        local r1 = c:response{ method = method, timeout = 5 }
        assert.are.equal(status, r1.status)
        assert.are.equal("", r1.body)
        if method == "HEAD" then -- RFC 9110 §9.3.2: the GET's length
          assert.are.equal("10", r1.headers["content-length"])
        else
          assert.is_nil(r1.headers["content-length"])
        end
        local r2 = c:response{ timeout = 5 }
        assert.are.equal(200, r2.status, "the pipelined request got: " .. r2.raw_head)
        assert.matches("^ok %d+$", r2.body)
        local rest = c:read_available(0.2)
        assert.is_nil(rest:find("0123456789", 1, true))
        c:close()
      end)
    end)
  end

  it("interim responses are dropped, the final one's fields kept as they are (RFC 9110 §15.2, RFC 9112 §6.3)", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/r/early"))
    local res = c:response{ timeout = 5 }
    c:close()
    assert.matches("^HTTP/1%.1 200 ", res.raw_head) -- the first bytes the client read
    assert.matches("^final %d+$", res.body)
    assert.are.equal("max-age=60", res.headers["cache-control"])
    assert.is_nil(res.headers["link"])
    assert.is_nil(res.headers["x-interim"])
  end)

  it("a Connection-named field never reaches the client (RFC 9110 §7.6.1)", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/r/hop"))
    local res = c:response{ timeout = 5 }
    c:close()
    assert.are.equal("hop", res.body)
    assert.are.equal("yes", res.headers["x-ok"])
    for _, h in ipairs{ "x-secret", "keep-alive", "proxy-connection" } do
      assert.is_nil(res.headers[h], h)
    end
    assert.is_nil(res.raw_head:find("s3cr3t", 1, true))
  end)

  it("Proxy-Authenticate is dropped; Server is luring's, Date the origin's (one); WWW-Authenticate passes, passed, filled and hit alike (RFC 9110 §11.7.1, §6.6.1, §10.2.4)", function()
    for _, path in ipairs{ "/r/fields", "/c/fields", "/c/fields" } do
      local res = exchange("GET", path)
      assert.are.equal("fields", res.body, path)
      assert.is_nil(res.headers["proxy-authenticate"], path)
      assert.are.equal('Basic realm="site"', res.headers["www-authenticate"], path)
      assert.is_nil(res.raw_head:find("origin-server", 1, true), path)
      local dates = 0
      for _, f in ipairs(res.header_list) do
        if f[1]:lower() == "date" then dates = dates + 1 end
      end
      assert.are.equal(1, dates, path)
      -- the origin's: two seconds behind luring's clock
      local d = res.headers["date"]
      local ts = os.time{ year = tonumber(d:sub(13, 16)), month = ({ Jan = 1, Feb = 2, Mar = 3,
        Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11,
        Dec = 12 })[d:sub(9, 11)], day = tonumber(d:sub(6, 7)), hour = tonumber(d:sub(18, 19)),
        min = tonumber(d:sub(21, 22)), sec = tonumber(d:sub(24, 25)), isdst = false }
      local now = os.time(os.date("!*t"))
      assert.is_true(now - ts >= 2 and now - ts <= 6, d)
      assert.are.equal("yes", res.headers["x-ok"], path)
    end
    assert.are.equal(1, raw:count("/fields"), "the second /c/fields is not a HIT")
  end)

  it("a field a cache decides by, named by Connection: not forwarded, and the response never shared (RFC 9110 §7.6.1, RFC 9111 §3)", function()
    for name, hidden in pairs{ hidecc = "cache-control", hidecookie = "set-cookie",
                               hidevary = "vary" } do
      local r = exchange("GET", "/r/" .. name)
      assert.matches("^mine %d+$", r.body)
      assert.is_nil(r.headers[hidden], name)
      -- through a cache: two fetches, two bodies, never a HIT
      local b1 = exchange("GET", "/c/" .. name)
      local b2 = exchange("GET", "/c/" .. name)
      assert.are.equal("MISS", b1.headers["x-cache"], name)
      assert.are.equal("MISS", b2.headers["x-cache"], name)
      assert.are_not.equal(b1.body, b2.body, name)
      assert.are.equal(2, raw:count("/" .. name), name)
    end
  end)

  it("a body cut short of its Content-Length: fewer bytes, then the close (RFC 9112 §8, §6.3)", function()
    local s0 = stats()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/r/shortcl") .. helper.request("GET", "/r/ok"))
    local head = c:read_until("\r\n\r\n", helper.now() + 5)
    assert.matches("^HTTP/1%.1 200 ", head)
    assert.matches("Content%-Length: 100\r\n", head .. "\r\n")
    local body = c:read_to_close(helper.now() + 5)
    c:close()
    assert.are.equal("only ten b", body) -- and the pipelined request is not answered
    local s1 = stats()
    assert.are.equal(s0.errors + 1, s1.errors)
    assert.are.equal(s0.truncated + 1, s1.truncated)
  end)

  it("a chunked body cut short: no terminating chunk, then the close (RFC 9112 §7.1, §8)", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/r/shortchunk"))
    local head = c:read_until("\r\n\r\n", helper.now() + 5)
    assert.matches("Transfer%-Encoding: chunked", head)
    local body = c:read_to_close(helper.now() + 5)
    c:close()
    assert.are.equal("5\r\nhello\r\n", body)
  end)

  it("a head cut short, or a close before any byte: 502, the client connection goes on (RFC 9112 §8, RFC 9110 §15.6.3)", function()
    for _, name in ipairs{ "shorthead", "nothing" } do
      local c = helper.connect(srv:port())
      c:write(helper.request("GET", "/r/" .. name) .. helper.request("GET", "/r/ok"))
      assert.are.equal(502, c:response{ timeout = 5 }.status, name)
      local r2 = c:response{ timeout = 5 }
      assert.matches("^ok %d+$", r2.body)
      c:close()
    end
  end)

  it("a head with too many fields, too large, with a bad status or version, or a 101 not asked for: 502 (RFC 9112 §4, §2.3, RFC 9110 §15.2.2)", function()
    for _, name in ipairs{ "manyfields", "hugehead", "badstatus", "badversion", "switching" } do
      local c = helper.connect(srv:port())
      c:write(helper.request("GET", "/r/" .. name) .. helper.request("GET", "/r/ok"))
      local r1 = c:response{ timeout = 5 }
      assert.are.equal(502, r1.status, name)
      local r2 = c:response{ timeout = 5 }
      assert.matches("^ok %d+$", r2.body)
      c:close()
    end
  end)

  it("chunk extensions and trailers are not forwarded; the body is (RFC 9112 §7.1.1, §7.1.2)", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/r/trailer") .. helper.request("GET", "/r/ok"))
    local r1 = c:response{ timeout = 5 }
    assert.are.equal("hello", r1.body)
    assert.are.same({}, r1.trailers or {})
    assert.are.same({ 5 }, r1.chunk_sizes)
    local r2 = c:response{ timeout = 5 }
    assert.matches("^ok %d+$", r2.body)
    c:close()
  end)

  it("kept serving throughout, no crash", function()
    assert.is_true(srv:alive())
    assert.is_nil(helper.crash_report(srv:stderr()))
  end)
end)
