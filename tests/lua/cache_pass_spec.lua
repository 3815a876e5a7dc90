-- cache:fetch never looks up or stores what may be private (issue 11,
-- point 4): only GET and HEAD are looked up or stored (RFC 9111 §3: a cache
-- stores a response only when it "understands" the method and the method is
-- cacheable; RFC 9110 §9.2.3); any other method, and by default a request
-- with Cookie or Authorization (Varnish's builtin vcl_recv: `return (pass)`),
-- passes to the origin as luring.proxy sends it, every time, without a
-- lookup, a store or coalescing (X-Cache: PASS). The script may look such
-- requests up instead: luring.cache{ cookie = "lookup", authorization =
-- "lookup" }, or per call cache:fetch(req, key, origin, { cookie = "lookup" }).
-- Responses with Set-Cookie or Vary: * are never shared: private_spec.lua.
local helper = require "helper"
local origin = require "origin"

local ECHO = [[
      echo_read_request_body;
      add_header X-Id $request_id always;
      add_header Cache-Control "max-age=60" always;
      echo "id=$request_id";
      echo "method=$request_method";
      echo "cookie=$http_cookie";
      echo "auth=$http_authorization";
      echo -n "body=";
      echo_request_body;
]]

local LOCATIONS = [[
    location / {
]] .. ECHO .. [[
    }
    location /slow/ {
      echo_sleep 0.3;
]] .. ECHO .. [[
    }
]]

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local o = luring.origin{ name = "o", url = "@ORIGIN@", keepalive = 64 }
local files = luring.origin{ name = "files", root = "@ROOT@" }
local caches = {
  main = luring.cache{ name = "main", ttl = 60 },
  lookup = luring.cache{ name = "lookup", ttl = 60, cookie = "lookup",
                         authorization = "lookup" },
}
local text = { ["Content-Type"] = "text/plain" }
app:get("/stats/:cache", function(req)
  local s = caches[req.params.cache]:stats()
  return 200, text, ("passes=%d hits=%d misses=%d coalesced=%d\n")
    :format(s.passes, s.hits, s.misses, s.coalesced)
end)
app:route("*", "/percall/*", function(req)
  local key = req.path:sub(#"/percall" + 1)
  return caches.main:fetch(req, key, o, { path = key, cookie = "lookup" })
end)
app:route("*", "/files/*", function(req)
  return caches.main:fetch(req, req.path, files, req.path:sub(#"/files" + 1))
end)
app:route("*", "/c/:cache/*", function(req)
  local key = req.path:match("^/c/[^/]+(/.*)$")
  return caches[req.params.cache]:fetch(req, key, o)
end)
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

local function stats(name)
  local t = {}
  for k, v in helper.get(srv:port(), "/stats/" .. name).body:gmatch("(%w+)=(%d+)") do
    t[k] = tonumber(v)
  end
  return t
end

describe("cache:fetch passes what may be private (RFC 9111 §3, §3.5; Varnish builtin vcl_recv)", function()
  lazy_setup(function()
    ngx = origin.start{ locations = LOCATIONS }
    local dir = helper.mktempdir()
    helper.writefile(dir .. "/a.txt", "file a\n")
    srv = helper.start((SCRIPT:gsub("@ORIGIN@", ngx:url()):gsub("@ROOT@", dir)))
  end)
  lazy_teardown(origin.teardown)

  it("passes every method but GET and HEAD, each time, with its body, never stored (RFC 9111 §3)", function()
    local warm = exchange("GET", "/c/main/m")
    assert.are.equal("MISS", warm.headers["x-cache"])
    assert.are.equal("HIT", exchange("GET", "/c/main/m").headers["x-cache"])
    local s0 = stats("main")
    for _, m in ipairs{ "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "BREW" } do
      for _ = 1, 2 do
        local res = exchange(m, "/c/main/m", nil, "data " .. m)
        assert.are.equal(200, res.status, m)
        assert.are.equal("PASS", res.headers["x-cache"], m)
        local e = echoed(res)
        assert.are.equal(m, e.method)
        assert.are.equal("data " .. m, e.body)
      end
    end
    assert.are.equal(1 + 12, ngx:wait_count("/m", 13, 3, 0.1))
    local s1 = stats("main")
    assert.are.equal(12, s1.passes - s0.passes)
    assert.are.equal(0, s1.hits - s0.hits)
    assert.are.equal(0, s1.misses - s0.misses)
    -- the passed requests did not store anything, but the unsafe ones
    -- that succeeded invalidated the stored GET response (RFC 9111 §4.4;
    -- rfc9111_invalidation_spec.lua): the next GET is a miss
    local after = exchange("GET", "/c/main/m")
    assert.are.equal("MISS", after.headers["x-cache"])
    assert.are_not.equal(warm.body, after.body)
  end)

  it("does not coalesce passed requests: 10 concurrent POSTs to a 300 ms resource take one round trip", function()
    local t0 = helper.now()
    local cs = {}
    for i = 1, 10 do
      cs[i] = helper.connect(srv:port())
      cs[i]:write(helper.request("POST", "/c/main/slow/p", nil, "n" .. i))
    end
    local ids = {}
    for i = 1, 10 do
      local res = cs[i]:response{ method = "POST", timeout = 10 }
      cs[i]:close()
      local e = echoed(res)
      assert.are.equal("n" .. i, e.body)
      ids[e.id] = true
    end
    local n = 0
    for _ in pairs(ids) do n = n + 1 end
    assert.are.equal(10, n)
    local elapsed = helper.now() - t0
    assert.is_true(elapsed < 0.9, ("took %.3fs"):format(elapsed))
  end)

  it("answers HEAD from a stored GET response; a HEAD miss fills it with a GET (Varnish)", function()
    local h = exchange("HEAD", "/c/main/h")
    assert.are.equal(200, h.status)
    assert.are.equal("MISS", h.headers["x-cache"])
    local g = exchange("GET", "/c/main/h")
    assert.are.equal("HIT", g.headers["x-cache"])
    assert.are.equal("GET", echoed(g).method)
    local h2 = exchange("HEAD", "/c/main/h")
    assert.are.equal("HIT", h2.headers["x-cache"])
    assert.are.equal(g.headers["content-length"], h2.headers["content-length"])
    assert.are.equal(1, ngx:wait_count("/h", 1, 3, 0.1))
  end)

  it("passes a request with Cookie by default: the origin sees it, nothing is stored", function()
    for i = 1, 2 do
      local res = exchange("GET", "/c/main/ck", { Cookie = "sid=" .. i })
      assert.are.equal("PASS", res.headers["x-cache"])
      assert.are.equal("sid=" .. i, echoed(res).cookie)
    end
    assert.are.equal("MISS", exchange("GET", "/c/main/ck").headers["x-cache"])
    assert.are.equal(3, ngx:wait_count("/ck", 3, 3, 0.1))
  end)

  it("looks a request with Cookie up when the cache says cookie = \"lookup\" (the Cookie is not forwarded)", function()
    local a = exchange("GET", "/c/lookup/ck", { Cookie = "sid=1" })
    assert.are.equal("MISS", a.headers["x-cache"])
    assert.are.equal("", echoed(a).cookie)
    local b = exchange("GET", "/c/lookup/ck", { Cookie = "sid=2" })
    assert.are.equal("HIT", b.headers["x-cache"])
    assert.are.equal(a.body, b.body)
  end)

  it("or when the call says so: cache:fetch(req, key, origin, { cookie = \"lookup\" })", function()
    assert.are.equal("MISS", exchange("GET", "/percall/pc", { Cookie = "a=1" }).headers["x-cache"])
    assert.are.equal("HIT", exchange("GET", "/percall/pc", { Cookie = "a=2" }).headers["x-cache"])
    -- still only GET and HEAD
    assert.are.equal("PASS", exchange("POST", "/percall/pc", { Cookie = "a=2" }, "x").headers["x-cache"])
  end)

  it("passes a request with Authorization by default: the credentials reach the origin (RFC 9111 §3.5)", function()
    for _ = 1, 2 do
      local res = exchange("GET", "/c/main/au", { Authorization = "Bearer s3cret" })
      assert.are.equal("PASS", res.headers["x-cache"])
      assert.are.equal("Bearer s3cret", echoed(res).auth)
    end
    assert.are.equal("MISS", exchange("GET", "/c/main/au").headers["x-cache"])
  end)

  it("authorization = \"lookup\": looked up, shared only under public/s-maxage/must-revalidate (private_spec)", function()
    local a = exchange("GET", "/c/lookup/au", { Authorization = "Bearer x" })
    assert.are.equal("MISS", a.headers["x-cache"])
    assert.are.equal("", echoed(a).auth)
    -- max-age alone: not shared with the next request (§3.5)
    assert.are_not.equal("HIT", exchange("GET", "/c/lookup/au", { Authorization = "Bearer x" }).headers["x-cache"])
  end)

  it("a file origin answers only GET and HEAD: 405 for the rest", function()
    assert.are.equal("file a\n", exchange("GET", "/files/a.txt").body)
    assert.are.equal("file a\n", exchange("GET", "/files/a.txt", { Cookie = "x=1" }).body)
    assert.are.equal(405, exchange("POST", "/files/a.txt", nil, "x").status)
  end)

  it("luring.cache and cache:fetch reject other modes", function()
    local bad, clean = helper.temp_script([[luring.cache{ name = "x", cookie = "yes" }]])
    local rc, out, err = helper.run({ "--check", bad }, 10)
    clean()
    assert.are_not.equal(0, rc)
    assert.truthy((out .. err):find('cookie must be "pass" or "lookup"', 1, true), out .. err)
  end)

  it("kept serving throughout, no sanitizer report", function()
    assert.is_true(srv:alive())
  end)
end)
