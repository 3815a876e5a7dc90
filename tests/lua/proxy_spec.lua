-- luring.proxy(req, origin [, opts]): any request passed through to the
-- origin and its response streamed back, never cached (issue 11, points
-- 1-3 and 7 in part).  The origin is a real nginx that echoes what it
-- received ($request_method, $request_uri, $http_*, $request_body), plus a
-- raw origin (tests/lua/raw_origin.py) for exact response bytes.  Each test
-- names the RFC section it checks.
local helper = require "helper"
local origin = require "origin"
local raw_origin = require "raw_origin"
local socket = require "socket"

local ECHO = [[
      client_body_buffer_size 4m;
      client_max_body_size 8m;
      echo_read_request_body;
      echo "method=$request_method";
      echo "uri=$request_uri";
      echo "host=$http_host";
      echo "xff=$http_x_forwarded_for";
      echo "xfp=$http_x_forwarded_proto";
      echo "via=$http_via";
      echo "custom=$http_x_custom";
      echo "secret=$http_x_secret";
      echo "te=$http_te";
      echo "keepalive=$http_keep_alive";
      echo "upgrade=$http_upgrade";
      echo "proxyauth=$http_proxy_authorization";
      echo "expect=$http_expect";
      echo "cl=$http_content_length";
      echo "tenc=$http_transfer_encoding";
      echo "blen=$content_length";
      echo -n "body=";
      echo_request_body;
]]

local LOCATIONS = [[
    location / {
]] .. ECHO .. [[
    }
    location /files/ { }
    location /slow/ { echo_sleep 2; echo "late"; }
    location /teapot/ { return 418 "short and stout\n"; }
    location /created/ { return 201 "made\n"; }
    location /nothing/ { return 204; }
]]

local RAW = {
  -- RFC 9110 §15.2: a 103 before the final response, with fields of its own
  early = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n"
    .. "Cache-Control: no-store\r\n\r\n"
    .. "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nX-Final: yes\r\n\r\nfinal {id}",
  -- RFC 9112 §6.3: a 204 ends at the blank line whatever Content-Length says
  nocontent = "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\nX-A: 1\r\n\r\n",
  notmod = "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 10\r\n\r\n",
  -- a HEAD response: its Content-Length is the GET's, no body follows
  headcl = "HTTP/1.1 200 OK\r\nContent-Length: 12345\r\nX-H: 1\r\n\r\n",
  ok = "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\nok {id}",
  -- RFC 9110 §7.6.1: hop-by-hop response fields
  hop = "HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: s3cr3t\r\n"
    .. "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n"
    .. "Upgrade: h2c\r\nTrailer: X-T\r\nX-Ok: yes\r\nContent-Length: {len}\r\n\r\nhop",
  -- RFC 9112 §6.3: Content-Length with Transfer-Encoding: not a response
  bad = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. "5\r\nhello\r\n0\r\n\r\n",
}

local METHODS = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "BREW" }

local SCRIPT = [[
luring.config{ max_body_size = 4 * 1024 * 1024 }
local app = luring.app()
app:listen("@LISTEN@")
local o = luring.origin{ name = "o", url = "@ORIGIN@", keepalive = 64 }
local raw = luring.origin{ name = "raw", url = "@RAW@" }
local down = luring.origin{ name = "down", url = "@DOWN@" }
local slow = luring.origin{ name = "slow", url = "@ORIGIN@", first_byte_timeout = 0.3 }
local function pass(req) return luring.proxy(req, o) end
for _, m in ipairs{ @METHODS@ } do
  app:route(m, "/echo/*", pass)
  app:route(m, "/files/*", pass)
end
app:get("/", pass)
app:get("/teapot/*", pass)
app:post("/created/*", pass)
app:get("/nothing/*", pass)
app:get("/host/*", function(req) return luring.proxy(req, o, { host = "other.test" }) end)
app:get("/plain/*", function(req)
  return luring.proxy(req, o, { via = false, x_forwarded_for = false,
                                x_forwarded_proto = false })
end)
app:get("/raw/*", function(req) return luring.proxy(req, raw) end)
app:get("/down/*", function(req) return luring.proxy(req, down) end)
app:get("/slow/*", function(req) return luring.proxy(req, slow) end)
app:get("/whoami", function(req)
  return 200, nil, req.remote_addr .. " " .. req.remote_port .. "\n"
end)
app:get("/stats", function(req)
  local s = o:stats()
  return 200, nil, ("requests=%d reused=%d errors=%d idle=%d\n")
    :format(s.requests, s.reused, s.errors, s.idle)
end)
]]

local BIG = 20 * 1024 * 1024

local ngx, raw, srv

local function exchange(method, path, headers, body)
  local c = helper.connect(srv:port())
  c:write(helper.request(method, path, headers, body))
  local res = c:response{ method = method, timeout = 10 }
  c:close()
  return res
end

-- The echo body as a table: key -> value.
local function echoed(res)
  local t = {}
  for k, v in res.body:gmatch("(%w+)=([^\n]*)") do
    if t[k] == nil then t[k] = v end
  end
  t.body = res.body:match("\nbody=(.*)$")
  return t
end

local function rss_kb(pid)
  local s = helper.readfile("/proc/" .. math.floor(pid) .. "/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

describe("luring.proxy", function()
  setup(function()
    ngx = origin.start{ locations = LOCATIONS,
                        files = { ["files/big.bin"] = helper.payload(BIG, "big") } }
    raw = raw_origin.start{ responses = RAW, delay = 0 }
    local quoted = {}
    for i, m in ipairs(METHODS) do quoted[i] = ("%q"):format(m) end
    local script = SCRIPT:gsub("@ORIGIN@", ngx:url()):gsub("@RAW@", raw:url())
      :gsub("@DOWN@", "http://127.0.0.1:" .. helper.free_port())
      :gsub("@METHODS@", table.concat(quoted, ", "))
    srv = helper.start(script)
  end)

  teardown(function()
    helper.stop_all()
    raw_origin.stop_all()
    origin.stop_all()
  end)

  it("passes every method with its target as received (RFC 9110 §9, RFC 9112 §3.2)", function()
    for _, m in ipairs(METHODS) do
      local res = exchange(m, "/echo/" .. m:lower() .. "?a=1&b=%20")
      assert.are.equal(200, res.status, m)
      if m == "HEAD" then
        assert.are.equal("", res.body or "")
      else
        local e = echoed(res)
        assert.are.equal(m, e.method)
        assert.are.equal("/echo/" .. m:lower() .. "?a=1&b=%20", e.uri)
      end
      assert.is_nil(res.headers["x-cache"])
    end
  end)

  it("sends an absolute-form target in origin-form (RFC 9112 §3.2.2)", function()
    local c = helper.connect(srv:port())
    c:write("GET http://example.test/echo/abs?q=1 HTTP/1.1\r\nHost: example.test\r\n\r\n")
    local e = echoed(c:response())
    c:close()
    assert.are.equal("/echo/abs?q=1", e.uri)
    assert.are.equal("example.test", e.host)
  end)

  it("an absolute-form target with an empty path is sent as \"/\" (RFC 9112 §3.2.1)", function()
    for _, target in ipairs{ "http://example.test?q=1", "http://example.test" } do
      local c = helper.connect(srv:port())
      c:write("GET " .. target .. " HTTP/1.1\r\nHost: example.test\r\n\r\n")
      local res = c:response()
      c:close()
      assert.are.equal(200, res.status, target)
      assert.are.equal(target:find("?", 1, true) and "/?q=1" or "/", echoed(res).uri)
    end
  end)

  it("forwards an HTTP/1.0 request as HTTP/1.1 with a Host (RFC 9110 §6.2, §7.6.3)", function()
    local c = helper.connect(srv:port())
    c:write("GET /echo/ten HTTP/1.0\r\n\r\n")
    local res = c:response()
    local e = echoed(res)
    assert.are.equal("/echo/ten", e.uri)
    assert.matches("^127%.0%.0%.1:%d+$", e.host)
    assert.are.equal("1.0 luring", e.via)
    assert(c:expect_closed(2), "HTTP/1.0 connection left open")
    c:close()
  end)

  it("passes any status, with its body (RFC 9110 §15)", function()
    local res = exchange("GET", "/teapot/x")
    assert.are.equal(418, res.status)
    assert.are.equal("short and stout\n", res.body)
    res = exchange("POST", "/created/x", nil, "abc")
    assert.are.equal(201, res.status)
    assert.are.equal("made\n", res.body)
    res = exchange("GET", "/nothing/x")
    assert.are.equal(204, res.status)
    assert.is_nil(res.headers["content-length"])
  end)

  it("never caches: each request reaches the origin (RFC 9111 §3)", function()
    local before = ngx:count("/echo/again")
    for _ = 1, 3 do assert.are.equal(200, exchange("GET", "/echo/again").status) end
    assert.are.equal(before + 3, ngx:wait_count("/echo/again", before + 3, 3, 0.1))
  end)

  it("keeps Host as the client sent it, or opts.host (RFC 9110 §7.2, §7.6)", function()
    local e = echoed(exchange("GET", "/echo/h", { Host = "example.test:8080" }))
    assert.are.equal("example.test:8080", e.host)
    e = echoed(exchange("GET", "/host/h", { Host = "example.test" }))
    assert.are.equal("other.test", e.host)
  end)

  it("adds Via, X-Forwarded-For (appended) and X-Forwarded-Proto (RFC 9110 §7.6.3)", function()
    local e = echoed(exchange("GET", "/echo/x"))
    assert.are.equal("1.1 luring", e.via)
    assert.are.equal("127.0.0.1", e.xff)
    assert.are.equal("http", e.xfp)
    e = echoed(exchange("GET", "/echo/x", { ["X-Forwarded-For"] = "10.0.0.1, 10.0.0.2",
                                            Via = "1.0 edge", ["X-Forwarded-Proto"] = "https" }))
    assert.are.equal("10.0.0.1, 10.0.0.2, 127.0.0.1", e.xff)
    assert.are.equal("1.0 edge, 1.1 luring", e.via)
    assert.are.equal("http", e.xfp)
    e = echoed(exchange("GET", "/plain/x", { ["X-Forwarded-For"] = "10.0.0.9" }))
    assert.are.equal("", e.via)
    assert.are.equal("10.0.0.9", e.xff)
    assert.are.equal("", e.xfp)
  end)

  it("forwards end-to-end request fields, not hop-by-hop ones (RFC 9110 §7.6.1)", function()
    local e = echoed(exchange("GET", "/echo/f", {
      { "X-Custom", "kept" }, { "Connection", "keep-alive, X-Secret" }, { "X-Secret", "s3cr3t" },
      { "TE", "trailers" }, { "Keep-Alive", "timeout=5" }, { "Upgrade", "h2c" },
      { "Connection", "Upgrade" }, { "Proxy-Authorization", "Basic eDp5" },
    }))
    assert.are.equal("kept", e.custom)
    assert.are.equal("", e.secret)
    assert.are.equal("", e.te)
    assert.are.equal("", e.keepalive)
    assert.are.equal("", e.upgrade)
    assert.are.equal("", e.proxyauth)
  end)

  it("ignores Upgrade: the body is read as framed, then the connection closes (RFC 9110 §7.8)", function()
    -- llhttp ends such a message at its head and hands the connection to
    -- the new protocol; luring does not tunnel: it reads the body exactly
    -- as announced, answers, and closes, so no byte after the message is
    -- ever read as a request of its own
    for _, up in ipairs{ "websocket", "h2c" } do
      local c = helper.connect(srv:port())
      c:write(helper.request("POST", "/echo/up", {
                { "Connection", "Upgrade" }, { "Upgrade", up },
                { "Transfer-Encoding", "chunked" } }, helper.chunked({ "hel", "lo" }))
              .. helper.request("GET", "/echo/next"))
      local r = c:response{ timeout = 5 }
      assert.are.equal(200, r.status)
      assert.are.equal("close", r.headers["connection"])
      local e = echoed(r)
      assert.are.equal("POST", e.method)
      assert.are.equal("hello", e.body)
      assert.are.equal("", e.upgrade)
      assert(c:expect_closed(2), "connection stayed open after an Upgrade request")
      c:close()
    end
  end)

  it("sends request bodies with the client's framing: CL, chunked (re-chunked), 0 and 1 MiB (RFC 9112 §6, §7.1)", function()
    local e = echoed(exchange("POST", "/echo/b", nil, "hello body"))
    assert.are.equal("10", e.cl)
    assert.are.equal("hello body", e.body)
    e = echoed(exchange("PUT", "/echo/b", nil, ""))
    assert.are.equal("0", e.cl)
    assert.are.equal("", e.body)
    e = echoed(exchange("POST", "/echo/b", { ["Transfer-Encoding"] = "chunked" },
                        helper.chunked({ "abc", "defg", "h" })))
    -- streamed: decoded and chunked again, never the client's chunk bytes
    assert.are.equal("", e.cl)
    assert.are.equal("chunked", e.tenc)
    assert.are.equal("abcdefgh", e.body)
    local mib = helper.payload(1024 * 1024, "m")
    e = echoed(exchange("PATCH", "/echo/b", nil, mib))
    assert.are.equal(tostring(#mib), e.cl)
    assert(e.body == mib, "1 MiB body differs")
    e = echoed(exchange("POST", "/echo/b", { ["Transfer-Encoding"] = "chunked" },
                        helper.chunked({ mib:sub(1, 500000), mib:sub(500001) })))
    assert.are.equal("chunked", e.tenc)
    assert(e.body == mib, "1 MiB chunked body differs")
  end)

  it("does not forward Expect: luring answers it with 100 when the proxy starts (RFC 9110 §10.1.1)", function()
    local c = helper.connect(srv:port())
    c:write("POST /echo/e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    local cont = c:response{ timeout = 5 }
    assert.are.equal(100, cont.status)
    c:write("xyz")
    local e = echoed(c:response{ timeout = 5 })
    c:close()
    assert.are.equal("", e.expect)
    assert.are.equal("xyz", e.body)
  end)

  it("drops hop-by-hop response fields, the Connection-named ones too (RFC 9110 §7.6.1)", function()
    local res = exchange("GET", "/raw/hop")
    assert.are.equal(200, res.status)
    assert.are.equal("hop", res.body)
    assert.are.equal("yes", res.headers["x-ok"])
    for _, h in ipairs{ "x-secret", "keep-alive", "proxy-connection", "upgrade", "trailer" } do
      assert.is_nil(res.headers[h], h)
    end
    assert.is_nil(res.raw_head:lower():find("s3cr3t", 1, true))
  end)

  it("drops a 103 and keeps the final response's fields (RFC 9110 §15.2)", function()
    local res = exchange("GET", "/raw/early")
    assert.are.equal(200, res.status)
    assert.matches("^final %d+$", res.body)
    assert.are.equal("yes", res.headers["x-final"])
    assert.is_nil(res.headers["link"])
    assert.is_nil(res.headers["cache-control"])
  end)

  it("ends 204, 304 and HEAD responses at the blank line; a pipelined request is answered (RFC 9112 §6.3)", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/raw/nocontent") .. helper.request("GET", "/raw/ok")
            .. helper.request("GET", "/raw/notmod") .. helper.request("HEAD", "/raw/headcl")
            .. helper.request("GET", "/raw/ok"))
    local r1 = c:response{ timeout = 5 }
    assert.are.equal(204, r1.status)
    assert.is_nil(r1.headers["content-length"])
    assert.are.equal("1", r1.headers["x-a"])
    local r2 = c:response{ timeout = 5 }
    assert.are.equal(200, r2.status)
    assert.matches("^ok %d+$", r2.body)
    local r3 = c:response{ timeout = 5 }
    assert.are.equal(304, r3.status)
    assert.are.equal('"v1"', r3.headers["etag"])
    local r4 = c:response{ method = "HEAD", timeout = 5 }
    assert.are.equal(200, r4.status)
    -- RFC 9110 §9.3.2, §8.6: the HEAD response keeps the origin's length
    assert.are.equal("12345", r4.headers["content-length"])
    local r5 = c:response{ timeout = 5 }
    assert.are.equal(200, r5.status)
    assert.matches("^ok %d+$", r5.body)
    assert(c:expect_closed(0.3) == false, "connection closed")
    c:close()
  end)

  it("answers 502 for an origin that is down or malformed, 504 for a timeout (RFC 9110 §15.6.3, §15.6.5)", function()
    assert.are.equal(502, exchange("GET", "/down/x").status)
    assert.are.equal(502, exchange("GET", "/raw/bad").status)
    local t0 = helper.now()
    assert.are.equal(504, exchange("GET", "/slow/x").status)
    assert(helper.now() - t0 < 1.5, "timeout took too long")
    -- the server goes on
    assert.are.equal(200, exchange("GET", "/echo/after").status)
  end)

  it("exposes the client's address as req.remote_addr, req.remote_port", function()
    local c = helper.connect(srv:port())
    local _, port = c.sock:getsockname()
    c:write(helper.request("GET", "/whoami"))
    local res = c:response()
    c:close()
    assert.are.equal("127.0.0.1 " .. port .. "\n", res.body)
  end)

  it("gives 50 concurrent pass-through requests each its own response (RFC 9110 §7.6)", function()
    local conns = {}
    for i = 1, 50 do
      conns[i] = helper.connect(srv:port(), 10)
      conns[i]:write(helper.request("POST", "/echo/c" .. i, nil, "client " .. i .. " " .. ("x"):rep(i * 100)))
    end
    for i = 1, 50 do
      local res = conns[i]:response{ timeout = 10 }
      conns[i]:close()
      local e = echoed(res)
      assert.are.equal("/echo/c" .. i, e.uri)
      assert.are.equal("client " .. i .. " " .. ("x"):rep(i * 100), e.body)
    end
  end)

  it("bounds what it buffers for a slow client: a 20 MB body, the reader stalled (RFC 9112 §9.3)", function()
    local pid = srv:pid()
    local before = rss_kb(pid)
    local c = helper.connect(srv:port(), 20)
    c.sock:setoption("keepalive", true)
    c:write(helper.request("GET", "/files/big.bin"))
    local head = c:read_until("\r\n\r\n", helper.now() + 5)
    assert(head, "no head")
    assert.matches("Content%-Length: " .. BIG, head)
    socket.sleep(1.5) -- the client reads nothing; luring stops reading nginx
    local during = rss_kb(pid)
    local body = c:read_n(BIG, helper.now() + 20)
    c:close()
    assert(body and #body == BIG, "body incomplete")
    assert(body == helper.payload(BIG, "big"), "body differs")
    local after = rss_kb(pid)
    if os.getenv("PROXY_SPEC_VERBOSE") then print("rss KiB", before, during, after) end
    -- RSS says nothing under AddressSanitizer (its quarantine keeps freed
    -- chunks): the bound is checked in the plain build
    if not helper.sanitized() then
      assert((during - before) < 8 * 1024,
             ("RSS grew by %d KiB while the client stalled"):format(during - before))
      assert((after - before) < 12 * 1024,
             ("RSS grew by %d KiB over the transfer"):format(after - before))
    end
  end)

  it("ends the origin fetch when the client leaves mid-body, and goes on (RFC 9112 §9.6)", function()
    local function stats()
      local t = {}
      for k, v in exchange("GET", "/stats").body:gmatch("(%w+)=(%d+)") do t[k] = tonumber(v) end
      return t
    end
    local before = stats()
    for _ = 1, 3 do
      local c = helper.connect(srv:port(), 20)
      c:write(helper.request("GET", "/files/big.bin"))
      assert(c:read_until("\r\n\r\n", helper.now() + 5), "no head")
      socket.sleep(0.3)
      c:abort()
    end
    assert(helper.wait_until(function() return stats().errors >= before.errors + 3 end, 5),
           "the fetches were not ended")
    -- the pool goes on: a request on a reused connection is answered
    local res = exchange("GET", "/echo/after-abandon")
    assert.are.equal(200, res.status)
    assert.are.equal("/echo/after-abandon", echoed(res).uri)
    assert(srv:alive(), "luring died")
  end)

  it("reuses pooled origin connections for pass-through requests", function()
    local before = exchange("GET", "/stats").body:match("reused=(%d+)")
    local c = helper.connect(srv:port())
    for i = 1, 5 do
      c:write(helper.request("POST", "/echo/pool" .. i, nil, "b" .. i))
      assert.are.equal("b" .. i, echoed(c:response()).body)
    end
    c:close()
    local after = exchange("GET", "/stats").body:match("reused=(%d+)")
    assert(tonumber(after) >= tonumber(before) + 4, "pool not reused: " .. before .. " -> " .. after)
  end)
end)
