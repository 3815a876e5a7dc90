-- Deliver hooks (issue 11, point 7): a script function edits the header
-- fields of responses luring sends from cache objects (cache:fetch's HIT,
-- MISS, COALESCED and PASS, luring.proxy) before the head goes out. The
-- origin is a real nginx. Each test names the RFC section it checks.
local helper = require "helper"
local origin = require "origin"

local LOCATIONS = [[
    location /c/ {
      add_header X-Remove-Me gone;
      add_header X-Keep kept;
      add_header Cache-Control "max-age=60";
      return 200 "body of $request_method $uri\n";
    }
    location /c/slow/ {
      add_header Cache-Control "max-age=60";
      echo_sleep 0.5;
      echo "slow";
    }
    location /c/cookie/ {
      add_header Set-Cookie "a=1";
      add_header Set-Cookie "b=2";
      return 200 "cookie\n";
    }
    location ^~ /p/big/ { echo_duplicate 200000 "0123456789"; }
    location ~ ^/(p|nohook)/ {
      add_header X-Remove-Me gone;
      return 200 "proxied $request_method\n";
    }
]]

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local o = luring.origin{ name = "o", url = "@ORIGIN@" }

local function hook(req, res)
  local h = res.headers
  local mode = req:header("x-mode")
  h["X-Hook"] = "yes"
  h["X-Seen-Cache"] = h["X-Cache"] or "none"
  h["X-Seen-Status"] = res.status
  h["X-Remove-Me"] = nil
  h["x-path"] = req.path
  if mode == "error" then error("boom in the hook") end
  if mode == "cl" then h["Content-Length"] = "5" end
  if mode == "te" then h["Transfer-Encoding"] = "chunked" end
  if mode == "conn" then h["Connection"] = "close" end
  if mode == "date" then h["Date"] = "yesterday" end
  if mode == "crlf" then h["X-Bad"] = "a\r\nX-Injected: 1" end
  if mode == "lf" then h["X-Bad"] = { "ok", "a\nX-Injected: 1" } end
  if mode == "name" then h["Bad Name"] = "v" end
  if mode == "sleep" then luring.sleep(10) end
  if mode == "yield" then coroutine.yield() end
  if mode == "start" then req:start(200) end
  if mode == "fetch" then return luring.proxy(req, o) end
  if mode == "status" then res.status = 404 end
  if mode == "nocache" then h["x-cache"] = nil end
  if mode == "cookie" then
    local c = h["set-cookie"] or {}
    c[#c + 1] = "added=3"
    h["Set-Cookie"] = c
  end
end

local cache = luring.cache{ name = "c", ttl = 60, deliver = hook }
local plain = luring.cache{ name = "plain", ttl = 60 }

app:route("*", "/c/*", function(req) return cache:fetch(req, req.path, o) end)
app:get("/plain/*", function(req)
  return plain:fetch(req, req.path, o, "/c/" .. req.params["*"])
end)
app:get("/override/*", function(req)
  return cache:fetch(req, req.path, o, { path = "/c/" .. req.params["*"],
    deliver = function(req, res) res.headers["X-Other"] = "1" end })
end)
app:route("*", "/p/*", function(req) return luring.proxy(req, o, { deliver = hook }) end)
app:get("/nohook/*", function(req) return luring.proxy(req, o) end)
]]

local ngx, srv

local function exchange(method, path, headers)
  local c = helper.connect(srv:port(), 10)
  c:write(helper.request(method, path, headers))
  local res = c:response{ method = method, timeout = 10 }
  c:close()
  return res
end

local function get(path, mode)
  return exchange("GET", path, mode and { ["X-Mode"] = mode } or nil)
end

local function count(res, name)
  local n = 0
  for _, f in ipairs(res.header_list) do
    if f[1]:lower() == name then n = n + 1 end
  end
  return n
end

describe("deliver hook", function()
  setup(function()
    ngx = origin.start{ locations = LOCATIONS }
    srv = helper.start((SCRIPT:gsub("@ORIGIN@", ngx:url())))
  end)

  teardown(function()
    helper.stop_all()
    origin.stop_all()
  end)

  it("edits a MISS and then a HIT: adds, removes, sees X-Cache and the status (RFC 9111 §4)", function()
    for i, want in ipairs{ "MISS", "HIT" } do
      local res = get("/c/a")
      assert.are.equal(200, res.status)
      assert.are.equal("body of GET /c/a\n", res.body)
      assert.are.equal("yes", res.headers["x-hook"], want)
      assert.are.equal(want, res.headers["x-seen-cache"])
      assert.are.equal(want, res.headers["x-cache"]) -- left as it was
      assert.are.equal("200", res.headers["x-seen-status"])
      assert.are.equal("/c/a", res.headers["x-path"])
      assert.is_nil(res.headers["x-remove-me"])
      assert.are.equal("kept", res.headers["x-keep"])
      assert.are.equal(tostring(#res.body), res.headers["content-length"])
      assert.are.equal(1, count(res, "server")) -- luring's own, once
    end
    -- the origin's spelling and order stay for the fields the hook kept
    local res = get("/c/a")
    local names = {}
    for _, f in ipairs(res.header_list) do names[#names + 1] = f[1] end
    local s = table.concat(names, " ")
    assert.matches("Content%-Type .*X%-Keep .*Cache%-Control .*X%-Cache", s)
  end)

  it("runs for a request that joined a fill in flight (COALESCED)", function()
    local results = helper.burst(srv:port(), 2, "/c/slow/x", 10)
    local seen = {}
    for _, res in ipairs(results) do
      assert.are.equal(200, res.status)
      assert.are.equal("slow\n", res.body)
      assert.are.equal("yes", res.headers["x-hook"])
      seen[#seen + 1] = res.headers["x-seen-cache"]
    end
    table.sort(seen)
    assert.are.same({ "COALESCED", "MISS" }, seen)
  end)

  it("runs for a request cache:fetch passes (RFC 9111 §3: a POST is not stored)", function()
    local res = exchange("POST", "/c/post", nil)
    assert.are.equal(200, res.status)
    assert.are.equal("body of POST /c/post\n", res.body)
    assert.are.equal("PASS", res.headers["x-seen-cache"])
    assert.are.equal("yes", res.headers["x-hook"])
    assert.is_nil(res.headers["x-remove-me"])
  end)

  it("runs for luring.proxy responses given deliver =, and not without", function()
    local res = get("/p/x")
    assert.are.equal("proxied GET\n", res.body)
    assert.are.equal("yes", res.headers["x-hook"])
    assert.are.equal("none", res.headers["x-seen-cache"])
    assert.is_nil(res.headers["x-cache"])
    assert.is_nil(res.headers["x-remove-me"])
    local plain = get("/nohook/p/x")
    assert.is_nil(plain.headers["x-hook"])
    assert.are.equal("gone", plain.headers["x-remove-me"])
  end)

  it("answers 500 when the hook of a luring.proxy response fails, its origin connection closed (RFC 9112 §9.6)", function()
    for _, mode in ipairs{ "error", "cl" } do
      local c = helper.connect(srv:port(), 10)
      c:write(helper.request("GET", "/p/big/x", { ["X-Mode"] = mode }))
      local res = c:response{ timeout = 10 }
      assert.are.equal(500, res.status, mode)
      c:write(helper.request("GET", "/p/big/y"))
      local ok = c:response{ timeout = 10 }
      c:close()
      assert.are.equal(200, ok.status)
      assert.are.equal(2000000, #ok.body)
    end
    assert(srv:alive())
  end)

  it("runs for a HEAD: the head only, Content-Length kept (RFC 9110 §9.3.2)", function()
    get("/c/h")
    local res = exchange("HEAD", "/c/h")
    assert.are.equal(200, res.status)
    assert.are.equal("yes", res.headers["x-hook"])
    assert.are.equal(tostring(#"body of GET /c/h\n"), res.headers["content-length"])
  end)

  it("leaves responses of a cache without a hook as they were", function()
    local res = get("/plain/a")
    assert.is_nil(res.headers["x-hook"])
    assert.are.equal("gone", res.headers["x-remove-me"])
  end)

  it("takes the deliver option of a cache:fetch call instead of the cache's", function()
    local res = get("/override/b")
    assert.are.equal("1", res.headers["x-other"])
    assert.is_nil(res.headers["x-hook"])
  end)

  it("can remove X-Cache and add Set-Cookie lines (RFC 6265 §3)", function()
    local res = get("/c/a", "nocache")
    assert.is_nil(res.headers["x-cache"])
    res = get("/c/cookie/x", "cookie")
    assert.are.equal(200, res.status)
    assert.are.equal(3, count(res, "set-cookie"))
    assert.are.equal("cookie\n", res.body)
  end)

  -- the failures, each on a MISS (the hook runs when the origin's head
  -- arrives) and on the HIT after it (it runs inside cache:fetch)
  local failures = {
    error = "boom in the hook",
    cl = "content%-length can't be set: luring frames the response",
    te = "transfer%-encoding can't be set: luring frames the response",
    conn = "connection can't be set: luring frames the response",
    date = "date can't be set: luring sends its own",
    crlf = "invalid header 'x%-bad'",
    lf = "invalid header 'x%-bad'",
    name = "invalid header 'bad name'",
    sleep = "only inside a request handler",
    yield = "a deliver hook may not yield",
    start = "req:start: not inside a deliver hook",
    fetch = "only from the request's own handler",
    status = "res.status is read%-only",
  }
  for mode, msg in pairs(failures) do
    it("answers 500 and logs when the hook fails (" .. mode .. ", RFC 9112 §6, RFC 9110 §5.5)", function()
      local path = "/c/fail-" .. mode
      for i, want in ipairs{ "MISS", "HIT" } do
        local c = helper.connect(srv:port(), 10)
        c:write(helper.request("GET", path, { ["X-Mode"] = mode }))
        local res = c:response{ timeout = 10 }
        assert.are.equal(500, res.status, want)
        assert.is_nil(res.headers["x-injected"])
        assert.is_nil(res.headers["x-hook"])
        assert.is_nil(res.raw_head:find("X-Injected", 1, true))
        assert.are.equal("Internal Server Error\n", res.body)
        -- the connection goes on: the 500 is a whole response
        c:write(helper.request("GET", "/c/a"))
        local next = c:response{ timeout = 10 }
        c:close()
        assert.are.equal(200, next.status)
      end
      assert(srv:wait_stderr("deliver hook failed", 2))
      assert.matches(msg, srv:stderr())
      assert.is_nil(srv:stderr():find("X-Injected: 1\r", 1, true))
      -- the fill went on for the cache: a request without the fault hits
      local res = get(path)
      assert.are.equal("HIT", res.headers["x-cache"])
      assert(srv:alive())
    end)
  end

  it("refuses a hook that is not a function", function()
    local path, cleanup = helper.temp_script([[
      luring.cache{ name = "x", deliver = "nope" }
      luring.app():listen("127.0.0.1:1")
    ]])
    local rc, _, err = helper.run({ "--check", path }, 10)
    cleanup()
    assert.are.equal(1, rc)
    assert.matches("luring.cache: deliver must be a function", err)
  end)
end)
