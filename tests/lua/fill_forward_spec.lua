-- cache:fetch fills forward the request of the client that triggered them
-- (issue 11 point 2): its end-to-end fields as luring.proxy forwards them
-- (RFC 9110 §7.6), minus Cookie, Authorization, conditionals and ranges,
-- as a GET, Host as the client sent it unless the script sets another; and
-- a response whose Vary names request fields is never served to a request
-- with other values of them (RFC 9111 §4.1): each variant is stored beside
-- the others (rfc9111_vary_spec.lua has the rest), a coalesced waiter of
-- another variant is released.  The
-- origin is a real nginx echoing what it received ($http_*).
local helper = require "helper"
local origin = require "origin"
local socket = require "socket"

local ECHO = [[
      echo "method=$request_method";
      echo "uri=$request_uri";
      echo "host=$http_host";
      echo "ua=$http_user_agent";
      echo "accept=$http_accept";
      echo "custom=$http_x_custom";
      echo "via=$http_via";
      echo "xff=$http_x_forwarded_for";
      echo "xfp=$http_x_forwarded_proto";
      echo "cookie=$http_cookie";
      echo "auth=$http_authorization";
      echo "range=$http_range";
      echo "ifrange=$http_if_range";
      echo "inm=$http_if_none_match";
      echo "ims=$http_if_modified_since";
      echo "im=$http_if_match";
      echo "ius=$http_if_unmodified_since";
      echo "secret=$http_x_secret";
      echo "te=$http_te";
      echo "keepalive=$http_keep_alive";
      echo "upgrade=$http_upgrade";
      echo "proxyauth=$http_proxy_authorization";
      echo "ae=$http_accept_encoding";
]]

local LOCATIONS = [[
    location /echo/ {
]] .. ECHO .. [[
    }
    location /vary/ {
      add_header Vary "Accept-Encoding";
      echo "ae=$http_accept_encoding";
    }
    location /vary2/ {
      add_header Vary "Accept-Encoding, X-Lang";
      echo "ae=$http_accept_encoding";
      echo "lang=$http_x_lang";
    }
    location /slowvary/ {
      add_header Vary "Accept-Encoding";
      echo_sleep 0.6;
      echo "ae=$http_accept_encoding";
      echo "host=$http_host";
    }
    location /flushvary/ {
      add_header Vary "Accept-Encoding";
      echo "ae=$http_accept_encoding";
      echo_flush;
      echo_sleep 0.6;
      echo "end";
    }
]]

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local o = luring.origin{ name = "o", url = "@ORIGIN@" }
local c = luring.cache{ name = "c", cookie = "lookup", authorization = "lookup" }
local ch = luring.cache{ name = "ch", host = "cache-host.test" }
app:get("/echo/*", function(req) return c:fetch(req, req.path, o) end)
app:get("/hostcache/*", function(req)
  return ch:fetch(req, req.path, o, { path = "/echo" .. req.path })
end)
app:get("/hostcall/*", function(req)
  return ch:fetch(req, req.path, o, { path = "/echo" .. req.path, host = "call.test" })
end)
app:get("/vary/*", function(req) return c:fetch(req, req.path, o) end)
app:get("/vary2/*", function(req) return c:fetch(req, req.path, o) end)
app:get("/slowvary/*", function(req) return c:fetch(req, req.path, o) end)
app:get("/slowhost/*", function(req)
  return c:fetch(req, req.path, o, { path = "/slowvary" .. req.path, host = "call.test" })
end)
app:get("/flushvary/*", function(req) return c:fetch(req, req.path, o) end)
app:get("/direct/*", function(req)
  local status, _, body = o:fetch("/echo" .. req.path)
  return status, nil, body
end)
app:get("/stats", function(req)
  local s = c:stats()
  return 200, nil, ("hits=%d misses=%d coalesced=%d released=%d\n")
    :format(s.hits, s.misses, s.coalesced, s.released)
end)
]]

local ngx, srv

local function exchange(method, path, headers)
  local c = helper.connect(srv:port())
  c:write(helper.request(method, path, headers))
  local res = c:response{ method = method, timeout = 10 }
  c:close()
  return res
end

-- The echo body as a table: key -> value.
local function echoed(res)
  local t = {}
  for k, v in (res.body or ""):gmatch("(%w+)=([^\n]*)") do
    if t[k] == nil then t[k] = v end
  end
  return t
end

local function stats()
  local t = {}
  for k, v in exchange("GET", "/stats").body:gmatch("(%w+)=(%d+)") do t[k] = tonumber(v) end
  return t
end

-- Start a GET on its own connection; read it later with finish().
local function start(path, headers)
  local c = helper.connect(srv:port())
  c:write(helper.request("GET", path, headers))
  return c
end

local function finish(c)
  local res = c:response{ timeout = 10 }
  c:close()
  return res
end

describe("cache:fetch", function()
  setup(function()
    ngx = origin.start{ locations = LOCATIONS }
    srv = helper.start((SCRIPT:gsub("@ORIGIN@", ngx:url())))
  end)

  teardown(function()
    helper.stop_all()
    origin.stop_all()
  end)

describe("a fill forwards the client's request", function()
  it("sends the client's User-Agent, Accept and own fields, Host as sent (RFC 9110 §7.6)", function()
    local res = exchange("GET", "/echo/ua", { ["User-Agent"] = "curl/8.0", Accept = "text/html",
                                              ["X-Custom"] = "kept", Host = "client.test:8080" })
    assert.are.equal(200, res.status)
    assert.are.equal("MISS", res.headers["x-cache"])
    local e = echoed(res)
    assert.are.equal("GET", e.method)
    assert.are.equal("/echo/ua", e.uri)
    assert.are.equal("curl/8.0", e.ua)
    assert.are.equal("text/html", e.accept)
    assert.are.equal("kept", e.custom)
    assert.are.equal("client.test:8080", e.host)
  end)

  it("adds Via and X-Forwarded-For/-Proto (RFC 9110 §7.6.3)", function()
    local e = echoed(exchange("GET", "/echo/via", { Via = "1.0 edge",
                                                    ["X-Forwarded-For"] = "10.0.0.1" }))
    assert.are.equal("1.0 edge, 1.1 luring", e.via)
    assert.are.equal("10.0.0.1, 127.0.0.1", e.xff)
    assert.are.equal("http", e.xfp)
  end)

  it("sends the cache's host option, and a call's over it (RFC 9110 §7.2)", function()
    local e = echoed(exchange("GET", "/hostcache/a", { Host = "client.test" }))
    assert.are.equal("cache-host.test", e.host)
    assert.are.equal("/echo/hostcache/a", e.uri)
    e = echoed(exchange("GET", "/hostcall/a", { Host = "client.test" }))
    assert.are.equal("call.test", e.host)
    -- HTTP/1.0 without Host: the origin's
    local c = helper.connect(srv:port())
    c:write("GET /echo/ten HTTP/1.0\r\n\r\n")
    e = echoed(c:response())
    c:close()
    assert.are.equal("127.0.0.1:" .. ngx:port(), e.host)
  end)

  it("never forwards Cookie, Authorization, Range or a conditional (RFC 9111 §3, RFC 9110 §13.1, §14.2)", function()
    local res = exchange("GET", "/echo/cred", {
      Cookie = "sid=1", Authorization = "Basic eDp5", Range = "bytes=0-3",
      ["If-Range"] = "\"v1\"", ["If-None-Match"] = "\"v1\"",
      ["If-Modified-Since"] = "Sun, 06 Nov 1994 08:49:37 GMT", ["If-Match"] = "*",
      ["If-Unmodified-Since"] = "Sun, 06 Nov 1994 08:49:37 GMT", ["X-Custom"] = "here",
    })
    assert.are.equal(200, res.status) -- the full response, not a 206 or 304
    local e = echoed(res)
    assert.are.equal("here", e.custom) -- the fill did forward the client's fields
    for _, k in ipairs{ "cookie", "auth", "range", "ifrange", "inm", "ims", "im", "ius" } do
      assert.are.equal("", e[k], k)
    end
  end)

  it("fetches a HEAD miss with GET and fills the cache for both (RFC 9110 §9.3.2)", function()
    local res = exchange("HEAD", "/echo/head", { ["X-Custom"] = "h" })
    assert.are.equal(200, res.status)
    assert.are.equal("MISS", res.headers["x-cache"])
    -- the HEAD's answer ends at its head, so the fill's body may still be
    -- arriving: the GET joins it (COALESCED) or finds it stored (HIT)
    res = exchange("GET", "/echo/head")
    local xc = res.headers["x-cache"]
    assert.is_true(xc == "HIT" or xc == "COALESCED", xc)
    local e = echoed(res)
    assert.are.equal("GET", e.method)
    assert.are.equal("h", e.custom)
    assert.are.equal(1, ngx:wait_count("/echo/head", 1, 3, 0.1))
  end)

  it("drops hop-by-hop fields and those Connection names (RFC 9110 §7.6.1)", function()
    local e = echoed(exchange("GET", "/echo/hop", {
      { "X-Custom", "kept" }, { "Connection", "keep-alive, X-Secret" }, { "X-Secret", "s3cr3t" },
      { "TE", "trailers" }, { "Keep-Alive", "timeout=5" }, { "Upgrade", "h2c" },
      { "Connection", "Upgrade" }, { "Proxy-Authorization", "Basic eDp5" },
    }))
    assert.are.equal("kept", e.custom)
    for _, k in ipairs{ "secret", "te", "keepalive", "upgrade", "proxyauth" } do
      assert.are.equal("", e[k], k)
    end
  end)

  it("origin:fetch, with no client request behind it, sends the fixed request", function()
    local e = echoed(exchange("GET", "/direct/x", { ["User-Agent"] = "curl/8.0",
                                                    ["X-Custom"] = "no" }))
    assert.are.equal("luring", e.ua)
    assert.are.equal("", e.custom)
    assert.are.equal("127.0.0.1:" .. ngx:port(), e.host)
  end)
end)

describe("a stored response with Vary (RFC 9111 §4.1)", function()
  local GZ = { ["Accept-Encoding"] = "gzip" }
  local ID = { ["Accept-Encoding"] = "identity" }

  it("is not served to a request with another value; each variant is stored", function()
    local res = exchange("GET", "/vary/a", GZ)
    assert.are.equal("MISS", res.headers["x-cache"])
    assert.are.equal("gzip", echoed(res).ae)
    assert.are.equal("Accept-Encoding", res.headers["vary"])
    res = exchange("GET", "/vary/a", GZ)
    assert.are.equal("HIT", res.headers["x-cache"])
    assert.are.equal("gzip", echoed(res).ae)
    -- an identity client never gets the gzip client's response
    res = exchange("GET", "/vary/a", ID)
    assert.are.equal("MISS", res.headers["x-cache"])
    assert.are.equal("identity", echoed(res).ae)
    res = exchange("GET", "/vary/a", ID)
    assert.are.equal("HIT", res.headers["x-cache"])
    assert.are.equal("identity", echoed(res).ae)
    -- and the gzip variant is still there beside the identity one
    res = exchange("GET", "/vary/a", GZ)
    assert.are.equal("HIT", res.headers["x-cache"])
    assert.are.equal("gzip", echoed(res).ae)
    assert.are.equal(2, ngx:wait_count("/vary/a", 2, 3, 0.1))
  end)

  it("tells an absent field from an empty one, and compares every field Vary names", function()
    local res = exchange("GET", "/vary/absent")
    assert.are.equal("MISS", res.headers["x-cache"])
    assert.are.equal("HIT", exchange("GET", "/vary/absent").headers["x-cache"])
    assert.are.equal("MISS", exchange("GET", "/vary/absent", { ["Accept-Encoding"] = "" })
      .headers["x-cache"])
    assert.are.equal("HIT", exchange("GET", "/vary/absent", { ["Accept-Encoding"] = "" })
      .headers["x-cache"])
    -- Vary: Accept-Encoding, X-Lang: both must match
    local h = { ["Accept-Encoding"] = "gzip", ["X-Lang"] = "fr" }
    assert.are.equal("MISS", exchange("GET", "/vary2/x", h).headers["x-cache"])
    assert.are.equal("HIT", exchange("GET", "/vary2/x", h).headers["x-cache"])
    res = exchange("GET", "/vary2/x", { ["Accept-Encoding"] = "gzip", ["X-Lang"] = "de" })
    assert.are.equal("MISS", res.headers["x-cache"])
    assert.are.equal("de", echoed(res).lang)
  end)

  it("compares values normalized: trimmed, repeated lines joined with \", \"", function()
    local c = helper.connect(srv:port())
    c:write("GET /vary/join HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n"
            .. "Accept-Encoding: br\r\n\r\n")
    assert.are.equal("MISS", c:response().headers["x-cache"])
    c:write("GET /vary/join HTTP/1.1\r\nHost: x\r\nAccept-Encoding:  gzip, br \t\r\n\r\n")
    assert.are.equal("HIT", c:response().headers["x-cache"])
    c:write("GET /vary/join HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip,br\r\n\r\n")
    assert.are.equal("HIT", c:response().headers["x-cache"])
    c:write("GET /vary/join HTTP/1.1\r\nHost: x\r\nAccept-Encoding: br, gzip\r\n\r\n")
    assert.are.equal("MISS", c:response().headers["x-cache"])
    c:close()
  end)

  it("releases a coalesced waiter of another variant to fetch on its own", function()
    local before = stats()
    local a = start("/slowvary/c", GZ)
    -- A's fill is in flight (its head comes after 0.6 s)
    assert(helper.wait_until(function() return stats().misses > before.misses end, 3, 0.01))
    local b = start("/slowvary/c", ID)
    local d = start("/slowvary/c", GZ)
    local ra, rb, rd = finish(a), finish(b), finish(d)
    assert.are.equal("MISS", ra.headers["x-cache"])
    assert.are.equal("gzip", echoed(ra).ae)
    assert.are.equal("COALESCED", rd.headers["x-cache"])
    assert.are.equal("gzip", echoed(rd).ae)
    assert.are.equal("MISS", rb.headers["x-cache"])
    assert.are.equal("identity", echoed(rb).ae)
    local after = stats()
    assert.are.equal(before.released + 1, after.released)
    assert.are.equal(2, ngx:wait_count("/slowvary/c", 2, 3, 0.1))
  end)

  it("a released waiter's own fill sends the call's host", function()
    local before = stats()
    local a = start("/slowhost/h", GZ)
    assert(helper.wait_until(function() return stats().misses > before.misses end, 3, 0.01))
    local b = start("/slowhost/h", ID)
    local ra, rb = finish(a), finish(b)
    assert.are.equal("call.test", echoed(ra).host)
    assert.are.equal("MISS", rb.headers["x-cache"])
    assert.are.equal("identity", echoed(rb).ae)
    assert.are.equal("call.test", echoed(rb).host)
    assert.are.equal(before.released + 1, stats().released)
  end)

  it("does not join a fill of another variant whose head is in", function()
    local a = start("/flushvary/f", GZ)
    -- the head and the first line are in, the body comes 0.6 s later
    local deadline = socket.gettime() + 3
    while not a.buf:find("\r\n\r\n", 1, true) do assert(a:fill(deadline)) end
    local d = start("/flushvary/f", GZ) -- joins A's fill (same variant)
    while not d.buf:find("\r\n\r\n", 1, true) do assert(d:fill(deadline)) end
    local b = start("/flushvary/f", ID)
    local ra, rb, rd = finish(a), finish(b), finish(d)
    assert.are.equal("gzip", echoed(ra).ae)
    assert.are.equal("COALESCED", rd.headers["x-cache"])
    assert.are.equal("gzip", echoed(rd).ae)
    assert.are.equal("MISS", rb.headers["x-cache"])
    assert.are.equal("identity", echoed(rb).ae)
    assert.are.equal("end", rb.body:match("\n(end)\n$"))
    assert.are.equal(2, ngx:wait_count("/flushvary/f", 2, 3, 0.1))
    -- B's response, the newest, is the key's one variant now
    assert.are.equal("HIT", exchange("GET", "/flushvary/f", ID).headers["x-cache"])
  end)

  it("answers pipelined GET, HEAD and GET of two variants right (RFC 9112 §9.3.2)", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/vary/p", GZ) .. helper.request("HEAD", "/vary/p", GZ)
            .. helper.request("HEAD", "/vary/p", ID) .. helper.request("GET", "/vary/p", ID)
            .. helper.request("GET", "/vary/p", ID))
    local r1 = c:response()
    local r2 = c:response{ method = "HEAD" }
    local r3 = c:response{ method = "HEAD" }
    local r4 = c:response()
    local r5 = c:response()
    assert.are.equal("gzip", echoed(r1).ae)
    assert.are.equal("MISS", r1.headers["x-cache"])
    assert.are.equal("HIT", r2.headers["x-cache"])
    assert.are.equal(tostring(#r1.body), r2.headers["content-length"])
    assert.are.equal("", r2.body or "")
    assert.are.equal("MISS", r3.headers["x-cache"]) -- fetched with GET, identity
    assert.are.equal("HIT", r4.headers["x-cache"])
    assert.are.equal("identity", echoed(r4).ae)
    assert.are.equal("HIT", r5.headers["x-cache"])
    assert.are.equal("", c:read_available(0.2))
    c:close()
    assert.are.equal(2, ngx:wait_count("/vary/p", 2, 3, 0.1))
  end)
end)
end)
