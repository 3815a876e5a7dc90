-- examples/proxy.lua as a user runs it (issue 11, point 8):
--   ORIGIN=http://127.0.0.1:<port> luring --listen 127.0.0.1:<port> examples/proxy.lua
-- in front of a real nginx (tests/lua/origin.lua) that echoes what it
-- received and gives each response a unique id, so a cached response is
-- told from a fresh one.
local helper = require "helper"
local origin = require "origin"

local ECHO = [[
      echo_read_request_body;
      add_header X-Id $request_id always;
      echo "id=$request_id";
      echo "method=$request_method";
      echo "uri=$request_uri";
      echo "cookie=$http_cookie";
      echo "via=$http_via";
      echo -n "body=";
      echo_request_body;
]]

local LOCATIONS = [[
    client_body_buffer_size 64k;
    location / {
      add_header Cache-Control "max-age=60" always;
]] .. ECHO .. [[
    }
    location /login/ {
      add_header Cache-Control "max-age=60" always;
      add_header Set-Cookie "sid=$request_id" always;
]] .. ECHO .. [[
    }
]]

local ngx, srv

local function exchange(method, path, headers, body)
  local c = helper.connect(srv:port())
  c:write(helper.request(method, path, headers, body))
  local res = assert(c:response{ method = method, timeout = 10 })
  c:close()
  return res
end

local function echoed(res)
  local t = {}
  for k, v in (res.body or ""):gmatch("(%w+)=([^\n]*)") do
    if t[k] == nil then t[k] = v end
  end
  t.body = (res.body or ""):match("\nbody=(.*)$")
  return t
end

describe("examples/proxy.lua", function()
  lazy_setup(function()
    ngx = origin.start{ locations = LOCATIONS }
    srv = helper.start(nil, { file = helper.repo_root() .. "/examples/proxy.lua",
                              env = { ORIGIN = ngx:url() } })
  end)
  lazy_teardown(origin.teardown)

  it("caches a GET: the second is a HIT with the same body (RFC 9111 §3, §4)", function()
    local a = exchange("GET", "/page/a")
    assert.are.equal(200, a.status)
    assert.are.equal("MISS", a.headers["x-cache"])
    assert.are.equal("GET", echoed(a).method)
    local b = exchange("GET", "/page/a")
    assert.are.equal("HIT", b.headers["x-cache"])
    assert.are.equal(a.body, b.body)
    assert.are.equal(1, ngx:wait_count("/page/a", 1, 3, 0.1))
  end)

  it("answers HEAD from the cache, and fills it with a GET on a miss (as Varnish)", function()
    local h = exchange("HEAD", "/page/head")
    assert.are.equal(200, h.status)
    assert.are.equal("", h.body or "")
    local g = exchange("GET", "/page/head")
    assert.are.equal("HIT", g.headers["x-cache"])
    assert.are.equal("GET", echoed(g).method)
    local again = exchange("HEAD", "/page/head")
    assert.are.equal("HIT", again.headers["x-cache"])
    assert.are.equal(g.headers["content-length"], again.headers["content-length"])
    assert.are.equal("", again.body or "")
    assert.are.equal(1, ngx:wait_count("/page/head", 1, 3, 0.1))
  end)

  it("keys by path and query string: ?x=1 and ?x=2 are two objects", function()
    local one = exchange("GET", "/page/q?x=1")
    local two = exchange("GET", "/page/q?x=2")
    assert.are.equal("MISS", one.headers["x-cache"])
    assert.are.equal("MISS", two.headers["x-cache"])
    assert.are.equal("/page/q?x=1", echoed(one).uri)
    assert.are.equal("/page/q?x=2", echoed(two).uri)
    local again = exchange("GET", "/page/q?x=1")
    assert.are.equal("HIT", again.headers["x-cache"])
    assert.are.equal(one.body, again.body)
    local bare = exchange("GET", "/page/q")
    assert.are.equal("MISS", bare.headers["x-cache"])
    assert.are.equal("/page/q", echoed(bare).uri)
    assert.are.equal(1, ngx:wait_count("/page/q?x=1", 1, 3, 0.1))
  end)

  it("passes a POST to the origin each time, with its body (RFC 9110 §9.3.3)", function()
    local body = helper.payload(20000, "post")
    local ids = {}
    for i = 1, 2 do
      local res = exchange("POST", "/form/send?n=1", { ["Content-Type"] = "text/plain" }, body)
      assert.are.equal(200, res.status)
      assert.are.equal("PASS", res.headers["x-cache"])
      local e = echoed(res)
      assert.are.equal("POST", e.method)
      assert.are.equal("/form/send?n=1", e.uri)
      assert.are.equal("1.1 luring", e.via)
      assert.are.equal(#body, #e.body)
      assert.is_true(e.body == body, "the body reached the origin unchanged")
      ids[i] = e.id
    end
    assert.are_not.equal(ids[1], ids[2])
    assert.are.equal(2, ngx:wait_count("/form/send?n=1", 2, 3, 0.1))
    -- a GET of the same URL afterwards was never filled by the POSTs
    assert.are.equal("MISS", exchange("GET", "/form/send?n=1").headers["x-cache"])
  end)

  it("passes every other method, unknown tokens too", function()
    for _, m in ipairs{ "PUT", "PATCH", "DELETE", "OPTIONS", "BREW" } do
      local res = exchange(m, "/any/" .. m:lower(), nil, "x")
      assert.are.equal(200, res.status, m)
      assert.are.equal(m, echoed(res).method)
      assert.are.equal("PASS", res.headers["x-cache"])
    end
  end)

  it("does not store a response with Set-Cookie: each client gets its own cookie", function()
    local a = exchange("GET", "/login/x")
    local b = exchange("GET", "/login/x")
    assert.are.equal(200, a.status)
    assert.are_not.equal("HIT", b.headers["x-cache"])
    assert.are.equal("sid=" .. a.headers["x-id"], a.headers["set-cookie"])
    assert.are.equal("sid=" .. b.headers["x-id"], b.headers["set-cookie"])
    assert.are_not.equal(a.headers["set-cookie"], b.headers["set-cookie"])
    assert.are.equal(2, ngx:wait_count("/login/x", 2, 3, 0.1))
  end)

  it("passes a request with Cookie, which reaches the origin (Varnish's builtin vcl_recv)", function()
    local warm = exchange("GET", "/page/c")
    assert.are.equal("MISS", warm.headers["x-cache"])
    assert.are.equal("HIT", exchange("GET", "/page/c").headers["x-cache"])
    local res = exchange("GET", "/page/c", { Cookie = "sid=abc" })
    assert.are.equal("PASS", res.headers["x-cache"])
    assert.are.equal("sid=abc", echoed(res).cookie)
    assert.are_not.equal(warm.headers["x-id"], res.headers["x-id"])
    assert.are.equal(2, ngx:wait_count("/page/c", 2, 3, 0.1))
    -- and its response did not replace the stored one
    local after = exchange("GET", "/page/c")
    assert.are.equal("HIT", after.headers["x-cache"])
    assert.are.equal(warm.body, after.body)
  end)

  it("kept serving throughout, no sanitizer report", function()
    assert.is_true(srv:alive())
  end)
end)
