-- Attacks on the cache shared by 4 workers (issue 13), as a stranger would
-- try them: many connections spread by the kernel over the workers, each
-- asking something that makes one worker fill while others wait, refresh,
-- revalidate, purge, evict, abort or reload. Every body is checked byte for
-- byte (never another key's or another client's data, never cut short
-- without an error), every wait is bounded, and origin requests are
-- counted from nginx's access log.
local helper = require "helper"
local origin = require "origin"
local socket = require "socket"

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local web = luring.origin{ name = "web", url = "@ORIGIN@" }
local dead = luring.origin{ name = "dead", url = "http://127.0.0.1:@DEAD@",
                            connect_timeout = 0.5 }
local main = luring.cache{ name = "main", max_bytes = 3000000, ttl = 60,
                           max_variants = 2, grace = 10, keep = 60 }
local reval = luring.cache{ name = "reval", ttl = 60, grace = 0, keep = 60 }
local sie = luring.cache{ name = "sie", ttl = 60, grace = 0, keep = 60,
                          stale_if_error = 30 }
local small = luring.cache{ name = "small", max_bytes = 200000, ttl = 60 }
local lua = luring.cache{ name = "lua", max_bytes = 400000, ttl = 60,
                          policy = "@POLICY@" }
local caches = { main = main, reval = reval, sie = sie, small = small, lua = lua }
local function worker(req) return req.id:sub(1, 2) end
local function hook(r, res)
  if r:header("x-fail") then error("deliver hook fails on purpose") end
  res.headers["X-Worker"] = worker(r)
end
app:get("/c/:cache/*", function(req)
  local c = caches[req.params.cache]
  local o = req:header("x-down") and dead or web
  local ok, err = c:fetch(req, req.path, o, { path = "/" .. req.params["*"], deliver = hook })
  if not ok then return 502, {}, tostring(err) end
end)
app:post("/c/:cache/*", function(req)
  local c = caches[req.params.cache]
  local ok, err = c:fetch(req, "/c/" .. req.params.cache .. "/" .. req.params["*"], web,
                          { path = "/" .. req.params["*"] })
  if not ok then return 502, {}, tostring(err) end
end)
app:get("/k/:cache/:key/*", function(req)
  return caches[req.params.cache]:fetch(req, "/k/" .. req.params.key, web, "/" .. req.params["*"])
end)
app:get("/purgek/:cache/:key", function(req)
  return 200, {}, tostring(caches[req.params.cache]:purge("/k/" .. req.params.key)) .. "\n"
end)
app:get("/of/*", function(req)
  local st, h, body = web:fetch("/" .. req.params["*"])
  if not st then return 502, {}, tostring(h) end
  return st, { ["X-Len"] = tostring(#body) }, body
end)
app:get("/or/*", function(req)
  local st, h, rd = web:request{ method = "GET", path = "/" .. req.params["*"] }
  if not st then return 502, {}, tostring(h) end
  local parts = {}
  while true do
    local piece, err = rd:read()
    if piece == nil then
      if err then return 502, {}, err end
      break
    end
    parts[#parts + 1] = piece
  end
  return st, {}, table.concat(parts)
end)
app:get("/purge/:cache/*", function(req)
  return 200, {}, tostring(caches[req.params.cache]:purge("/c/" .. req.params.cache .. "/" .. req.params["*"])) .. "\n"
end)
app:get("/ban/:cache/*", function(req)
  return 200, {}, tostring(caches[req.params.cache]:ban("/c/" .. req.params.cache .. "/" .. req.params["*"])) .. "\n"
end)
app:get("/tag/:cache/:tag", function(req)
  return 200, {}, tostring(caches[req.params.cache]:purge_tag(req.params.tag)) .. "\n"
end)
app:get("/w", function(req) return 200, {}, worker(req) end)
app:get("/metrics", luring.metrics())
app:get("/st/:cache", function(req)
  local s = caches[req.params.cache]:stats()
  return 200, {}, ("%d %d %d %d %d\n"):format(s.hits, s.misses, s.coalesced, s.fills, s.objects)
end)
app:get("/stats/:cache", function(req)
  local s = caches[req.params.cache]:stats()
  return 200, {}, ("%d %d %d %d %d %d %d %d\n"):format(s.bytes, s.objects, s.max_bytes,
                                                     s.evictions, s.refreshes, s.revalidated, s.stale,
                                                     s.held_bytes)
end)
]]

local KB = 1024

local LOCATIONS = [[
    location /slow/ { add_header Cache-Control "max-age=60"; add_header Surrogate-Key "slowtag"; echo_sleep 0.4; echo "slow $request_id"; }
    location /swr/ { add_header Cache-Control "max-age=1"; echo_sleep 0.3; echo "swr $request_id"; }
    location /sie/ { add_header Cache-Control "max-age=1"; echo "sie $request_id"; }
    location /vary/ { add_header Cache-Control "max-age=60"; add_header Vary "Accept-Language";
                      echo_sleep 0.2; echo "lang=$http_accept_language $request_id"; }
    location /stream/ {
      add_header Cache-Control "max-age=60";
      echo "part one $request_id"; echo_flush; echo_sleep 0.2;
      echo "part two"; echo_flush; echo_sleep 0.2;
      echo "part three";
    }
    location /files/ { add_header Cache-Control "max-age=60"; }
    location /etag/ { add_header Cache-Control "max-age=1"; }
    location /private/ { add_header Cache-Control "private"; echo_sleep 0.2; echo "p $request_id"; }
]]

-- Connections to open at once: each { path, headers, method, body }. All
-- requests are written before any response is read (the server works on
-- them concurrently). Returns the responses ({ err = } for a failure).
local function many(port, reqs, timeout)
  local conns, res = {}, {}
  for i, q in ipairs(reqs) do
    local c = helper.connect(port)
    c:write(helper.request(q.method or "GET", q.path, q.headers, q.body))
    conns[i] = c
  end
  for i, c in ipairs(conns) do
    local ok, r = pcall(function() return c:response{ timeout = timeout or 10 } end)
    res[i] = ok and r or { err = tostring(r) }
    c:close()
  end
  return res
end

local function stats(srv, name)
  local r = helper.get(srv:port(), "/stats/" .. name)
  local t = {}
  for n in r.body:gmatch("%d+") do t[#t + 1] = tonumber(n) end
  return { bytes = t[1], objects = t[2], max_bytes = t[3], evictions = t[4],
           refreshes = t[5], revalidated = t[6], stale = t[7], held = t[8] }
end

local function start(script, ngx, policy)
  local src = script:gsub("@ORIGIN@", ngx:url()):gsub("@DEAD@", tostring(helper.free_port()))
                    :gsub("@POLICY@", policy)
  local srv = helper.start(src, { args = { "--workers", "4" } })
  srv:wait_workers(4, "/w")
  return srv
end

describe("attacks on a cache shared by 4 workers (issue 13)", function()
  local ngx, srv
  local files = {}

  lazy_setup(function()
    files["files/big.bin"] = helper.payload(300 * KB, "big")        -- > small's max_bytes
    files["files/huge.bin"] = helper.payload(4 * 1024 * KB, "huge") -- backpressure
    files["files/rng.bin"] = helper.payload(2 * 1024 * KB, "rng")
    files["files/head.bin"] = helper.payload(700 * KB, "head")
    for i = 1, 30 do files["files/e" .. i .. ".bin"] = helper.payload(90 * KB, "e" .. i) end
    files["etag/doc.txt"] = helper.payload(20 * KB, "etag")
    ngx = origin.start{ locations = LOCATIONS, files = files }
    local lru = helper.repo_root() .. "/examples/policies/lru.lua"
    srv = start(SCRIPT, ngx, lru)
  end)

  lazy_teardown(helper.teardown_with(function()
    origin.stop_all()
  end))

  it("serves stale on every worker while one refresh runs in the background (RFC 5861 §3, RFC 9111 §4.2.4)", function()
    local r0 = helper.get(srv:port(), "/c/main/swr/a")
    assert.are.equal(200, r0.status)
    socket.sleep(1.3) -- stale now, within grace
    local reqs = {}
    for i = 1, 80 do reqs[i] = { path = "/c/main/swr/a" } end
    local res = many(srv:port(), reqs)
    local bodies = {}
    for i, r in ipairs(res) do
      assert.are.equal(200, r.status, tostring(r.err))
      assert.matches("^swr %x+\n$", r.body)
      bodies[r.body] = true
    end
    -- the stale body, and (for late ones) the refreshed one: never more
    local n = 0
    for _ in pairs(bodies) do n = n + 1 end
    assert.truthy(n <= 2, n .. " bodies")
    assert.truthy(bodies[r0.body], "nobody got the stale response during grace")
    assert.are.equal(2, ngx:wait_count("/swr/a", 2, 3, 0.3)) -- one refresh
    -- the refresh replaced it for everyone
    local new
    for _ = 1, 20 do
      local r = helper.get(srv:port(), "/c/main/swr/a")
      assert.are_not.equal(r0.body, r.body)
      new = new or r.body
      assert.are.equal(new, r.body)
    end
    assert.are.equal(2, ngx:count("/swr/a"))
  end)

  it("never serves the purged response once a purge lands during a background refresh (RFC 9111 §4.4, RFC 5861 §3)", function()
    for round = 1, 3 do
      local path = "/c/main/swr/p" .. round
      local r0 = helper.get(srv:port(), path)
      socket.sleep(1.2)
      -- the refresh starts (300 ms at the origin) on one worker...
      local c = helper.connect(srv:port())
      c:write(helper.request("GET", path))
      assert.are.equal(r0.body, c:response{ timeout = 5 }.body) -- grace
      c:close()
      -- ...a purge on any worker, then every worker
      assert.are.equal("true\n", helper.get(srv:port(), "/purge/main/swr/p" .. round).body)
      local reqs = {}
      for i = 1, 30 do reqs[i] = { path = path } end
      for _, r in ipairs(many(srv:port(), reqs)) do
        assert.are.equal(200, r.status, tostring(r.err))
        assert.are_not.equal(r0.body, r.body)
        assert.matches("^swr %x+\n$", r.body)
      end
    end
  end)

  it("keeps serving stale during grace when the background refresh fails, then refreshes (RFC 5861 §3)", function()
    local r0 = helper.get(srv:port(), "/c/main/swr/f")
    socket.sleep(1.2)
    local reqs = {}
    for i = 1, 30 do reqs[i] = { path = "/c/main/swr/f", headers = { ["X-Down"] = "1" } } end
    for _, r in ipairs(many(srv:port(), reqs)) do
      assert.are.equal(200, r.status, tostring(r.err))
      assert.are.equal(r0.body, r.body)
    end
    socket.sleep(0.6) -- the refresh failed (connection refused)
    local r = helper.get(srv:port(), "/c/main/swr/f")
    assert.are.equal(200, r.status)
    assert.matches("^swr %x+\n$", r.body)
    assert.truthy(ngx:wait_count("/swr/f", 2, 3, 0.3) == 2)
    socket.sleep(0.4)
    local r2 = helper.get(srv:port(), "/c/main/swr/f")
    assert.are_not.equal(r0.body, r2.body)
  end)

  it("revalidates once with a 304 for waiters on every worker, each getting the stored body whole (RFC 9111 §4.3.3, §4.3.4)", function()
    local want = files["etag/doc.txt"]
    local r0 = helper.get(srv:port(), "/c/reval/etag/doc.txt")
    assert.are.equal(want, r0.body)
    for round = 1, 2 do
      socket.sleep(1.2)
      local reqs = {}
      for i = 1, 60 do
        reqs[i] = { path = "/c/reval/etag/doc.txt",
                    headers = i % 3 == 0 and { Range = "bytes=100-199" } or
                              i % 3 == 1 and { ["If-None-Match"] = r0.headers["etag"] } or nil }
      end
      local res = many(srv:port(), reqs)
      for i, r in ipairs(res) do
        if i % 3 == 0 then
          assert.are.equal(206, r.status, tostring(r.err))
          assert.are.equal(want:sub(101, 200), r.body)
        elseif i % 3 == 1 then
          assert.are.equal(304, r.status, tostring(r.err))
          assert.are.equal("", r.body)
        else
          assert.are.equal(200, r.status, tostring(r.err))
          assert.are.equal(#want, #r.body)
          assert.are.equal(want, r.body)
        end
      end
      assert.are.equal(1 + round, ngx:wait_count("/etag/doc.txt", 1 + round, 3, 0.3))
    end
  end)

  it("serves the stale response on every worker when the origin is down (RFC 5861 §4)", function()
    local r0 = helper.get(srv:port(), "/c/sie/sie/a")
    assert.are.equal(200, r0.status)
    socket.sleep(1.2)
    local reqs = {}
    for i = 1, 40 do reqs[i] = { path = "/c/sie/sie/a", headers = { ["X-Down"] = "1" } } end
    local t0 = socket.gettime()
    local res = many(srv:port(), reqs)
    for _, r in ipairs(res) do
      assert.are.equal(200, r.status, tostring(r.err))
      assert.are.equal(r0.body, r.body)
    end
    assert.truthy(socket.gettime() - t0 < 5)
    -- the origin back: one fetch replaces it
    local r = helper.get(srv:port(), "/c/sie/sie/a")
    assert.are_not.equal(r0.body, r.body)
    assert.are.equal(2, ngx:wait_count("/sie/a", 2, 3, 0.2))
  end)

  it("fills Vary variants from every worker at once, each client its own variant (RFC 9111 §4.1)", function()
    local langs = { "en", "fr", "de", "it", "es", "nl" }
    for round = 1, 2 do
      local reqs = {}
      for i = 1, 60 do
        reqs[i] = { path = "/c/main/vary/x" .. round, headers = { ["Accept-Language"] = langs[i % #langs + 1] } }
      end
      local res = many(srv:port(), reqs)
      for i, r in ipairs(res) do
        assert.are.equal(200, r.status, tostring(r.err))
        assert.matches("^lang=" .. langs[i % #langs + 1] .. " %x+\n$", r.body)
      end
    end
    -- max_variants = 2: no more than 2 variants of a key stay
    local n = ngx:count("/vary/x1")
    assert.truthy(n >= 6 and n <= 60, n)
  end)

  it("answers Range and If-None-Match requests joining a fill in progress (RFC 9110 §14.2, §13.1.2)", function()
    -- a length known from the head (a chunked fill gets 200: docs/API.md)
    local want = files["files/rng.bin"]
    local kinds = {
      { h = { Range = "bytes=0-7" }, st = 206, body = want:sub(1, 8) },
      { h = { Range = "bytes=-11" }, st = 206, body = want:sub(-11) },
      { h = { Range = "bytes=1500000-1500099" }, st = 206, body = want:sub(1500001, 1500100) },
      { h = { Range = "bytes=0-0,-1" }, st = 206 },
      { h = { ["If-None-Match"] = "*" }, st = 304, body = "" },
      { h = { ["If-None-Match"] = '"nope"' }, st = 200, body = want },
      { h = nil, st = 200, body = want },
    }
    local reqs = {}
    for i = 1, 42 do reqs[i] = { path = "/c/main/files/rng.bin", headers = kinds[i % #kinds + 1].h } end
    for i, r in ipairs(many(srv:port(), reqs)) do
      local k = kinds[i % #kinds + 1]
      assert.are.equal(k.st, r.status, tostring(r.err))
      if k.body then
        assert.are.equal(#k.body, #r.body)
        assert.are.equal(k.body, r.body, "request " .. i)
      else
        assert.matches("multipart/byteranges", r.headers["content-type"])
      end
    end
    assert.are.equal(1, ngx:count("/files/rng.bin"))
  end)

  it("answers HEAD and GET requests of one cold key on every worker from one fill (RFC 9110 §9.3.2)", function()
    local want = files["files/head.bin"]
    local reqs = {}
    for i = 1, 40 do reqs[i] = { method = i % 2 == 0 and "HEAD" or "GET", path = "/c/main/files/head.bin" } end
    local conns = {}
    for i, q in ipairs(reqs) do
      conns[i] = helper.connect(srv:port())
      conns[i]:write(helper.request(q.method, q.path))
    end
    for i = 1, 40 do
      local r = conns[i]:response{ timeout = 10, method = reqs[i].method }
      assert.are.equal(200, r.status)
      if reqs[i].method == "HEAD" then
        assert.are.equal("", r.body)
        assert.are.equal(tostring(#want), r.headers["content-length"])
      else
        assert.are.equal(want, r.body)
      end
      conns[i]:close()
    end
    assert.are.equal(1, ngx:wait_count("/files/head.bin", 1, 2, 0.2))
  end)

  it("gives every waiter a whole body when purge, ban and purge_tag hit fills in flight (RFC 9111 §4.4)", function()
    for _, inval in ipairs({ "/purge/main/slow/p", "/ban/main/slow/", "/tag/main/slowtag" }) do
      local conns = {}
      for i = 1, 30 do
        conns[i] = helper.connect(srv:port())
        conns[i]:write(helper.request("GET", "/c/main/slow/p"))
      end
      socket.sleep(0.15)
      for _ = 1, 4 do helper.get(srv:port(), inval) end
      local body
      for i = 1, 30 do
        local r = conns[i]:response{ timeout = 10 }
        assert.are.equal(200, r.status)
        assert.matches("^slow %x+\n$", r.body)
        body = body or r.body
        assert.are.equal(body, r.body)
        conns[i]:close()
      end
      -- invalidated before its head: not stored, the next one fetches
      local r = helper.get(srv:port(), "/c/main/slow/p")
      assert.are_not.equal(body, r.body)
      helper.get(srv:port(), "/purge/main/slow/p")
    end
  end)

  it("passes a response larger than max_bytes whole to many waiters on every worker", function()
    local want = files["files/big.bin"]
    for _ = 1, 2 do
      local reqs = {}
      for i = 1, 30 do reqs[i] = { path = "/c/small/files/big.bin" } end
      for i, r in ipairs(many(srv:port(), reqs)) do
        assert.are.equal(200, r.status, tostring(r.err))
        assert.are.equal(#want, #r.body)
        assert.are.equal(want, r.body, "waiter " .. i)
      end
    end
    local s = stats(srv, "small")
    assert.truthy(s.bytes <= 200000, s.bytes)
  end)

  -- A fill found too large (Content-Length > max_bytes at its head, or past max_bytes while
  -- it grows) leaves the index; its chunks stay until its last reader is done. Found here:
  -- they were charged to the budget (4,195,092 bytes of 200,000), and every other fill then
  -- evicted the whole store to make room. Now an object no index reaches is *held* by its
  -- readers (cache:stats().held_bytes, luring_cache_held_bytes), out of the budget.
  it("keeps the store within max_bytes + a chunk per fill while a response larger than max_bytes goes to slow readers (issue 13 point 6)", function()
    local want = files["files/huge.bin"]
    local conns = {}
    for i = 1, 4 do
      conns[i] = helper.connect(srv:port())
      conns[i]:write(helper.request("GET", "/c/small/files/huge.bin"))
      conns[i]:read_until("\r\n\r\n", helper.now() + 5)
    end
    socket.sleep(0.5) -- the origin is fast, the readers are not
    local s = stats(srv, "small")
    for i = 1, 4 do
      local body = conns[i]:read_n(#want, helper.now() + 20)
      assert.are.equal(want, body)
      conns[i]:close()
    end
    assert.truthy(s.bytes <= s.max_bytes + 64 * KB, "bytes " .. s.bytes .. " of " .. s.max_bytes)
    -- held by readers whose sends the kernel has not taken yet: at most one
    -- copy per fill. Each reader here asks after the one before got its head,
    -- when that fill had already left the index (too large), so each may be
    -- a fill of its own; how much of each the kernel took within the 0.5 s
    -- depends on the machine's load (one copy was asserted before, which a
    -- busy machine failed with 4 copies held: 16,780,656 bytes)
    assert.truthy(s.held < #conns * (#want + 64 * KB), "held " .. s.held)
    assert(helper.wait_until(function() return stats(srv, "small").held < 64 * KB end, 5),
           "held after the readers left: " .. stats(srv, "small").held)
  end)

  it("keeps caching other keys while a response larger than max_bytes is read slowly (RFC 9111 §3)", function()
    helper.get(srv:port(), "/ban/small/")
    assert.are.equal(files["files/e3.bin"], helper.get(srv:port(), "/c/small/files/e3.bin").body)
    local slow = helper.connect(srv:port())
    slow:write(helper.request("GET", "/c/small/files/huge.bin"))
    slow:read_until("\r\n\r\n", helper.now() + 5)
    socket.sleep(0.5)
    local hit = helper.get(srv:port(), "/c/small/files/e3.bin")
    helper.get(srv:port(), "/c/small/files/e4.bin")
    local e4 = helper.get(srv:port(), "/c/small/files/e4.bin")
    slow:abort()
    assert.are.equal("HIT", hit.headers["x-cache"])
    assert.are.equal("HIT", e4.headers["x-cache"])
  end)

  it("keeps bodies whole while evictions take what other workers stream (budget pressure)", function()
    -- 30 objects of 90 KiB through 3 MB and the Lua policy's 400 KB
    for _, name in ipairs({ "main", "lua" }) do
      local reqs = {}
      for i = 1, 60 do reqs[i] = { path = "/c/" .. name .. "/files/e" .. (i % 30 + 1) .. ".bin" } end
      for i, r in ipairs(many(srv:port(), reqs)) do
        assert.are.equal(200, r.status, tostring(r.err))
        assert.are.equal(files["files/e" .. (i % 30 + 1) .. ".bin"], r.body, name .. " " .. i)
      end
      local s = stats(srv, name)
      assert.truthy(s.bytes <= s.max_bytes, s.bytes)
    end
    -- the store asked the Lua policy for a victim with none resident
    -- (fills in flight held the budget): lru.lua's evict() failed on nil,
    -- and a failed policy evicts nothing ever after (store/policy.c)
    assert.is_nil(srv:stderr():match("lua policy: [^\n]*"))
  end)

  it("survives clients leaving at every point of a big fill while slow readers get every byte", function()
    local want = files["files/huge.bin"]
    helper.get(srv:port(), "/purge/main/files/huge.bin")
    local conns = {}
    for i = 1, 24 do
      conns[i] = helper.connect(srv:port())
      conns[i]:write(helper.request("GET", "/c/main/files/huge.bin"))
    end
    -- leave: before the head, after the head, mid-body
    for i = 1, 24, 3 do conns[i]:abort() end
    for i = 2, 24, 3 do conns[i]:read_until("\r\n\r\n", helper.now() + 5) end
    for i = 2, 24, 3 do conns[i]:abort() end
    socket.sleep(0.3) -- the others sit on full socket buffers (OUT_HIGH)
    for i = 3, 24, 3 do
      local r = conns[i]:response{ timeout = 20 }
      assert.are.equal(200, r.status)
      assert.are.equal(#want, #r.body)
      assert.are.equal(want, r.body)
      conns[i]:close()
    end
    assert.are.equal(200, helper.get(srv:port(), "/w").status)
  end)

  it("mixes origin:fetch with cache:fetch of the same resources on every worker", function()
    local reqs = {}
    for i = 1, 60 do
      reqs[i] = { path = (i % 2 == 0 and "/of/" or "/c/main/") .. "files/e" .. (i % 5 + 1) .. ".bin" }
    end
    for i, r in ipairs(many(srv:port(), reqs)) do
      assert.are.equal(200, r.status, tostring(r.err))
      assert.are.equal(files["files/e" .. (i % 5 + 1) .. ".bin"], r.body)
    end
  end)

  it("keeps a stored object whole for slow readers while fills on other workers evict it (max_bytes)", function()
    local want = files["files/rng.bin"]
    helper.get(srv:port(), "/ban/main/")
    local n0 = ngx:count("/files/rng.bin")
    assert.are.equal(want, helper.get(srv:port(), "/c/main/files/rng.bin").body)
    -- 12 readers take the head and a little, then sit on full buffers
    local slow = {}
    for i = 1, 12 do
      slow[i] = helper.connect(srv:port())
      slow[i]:write(helper.request("GET", "/c/main/files/rng.bin"))
      slow[i]:read_until("\r\n\r\n", helper.now() + 5)
    end
    -- 2.7 MB of other objects through the 3 MB store: rng.bin goes
    local reqs = {}
    for i = 1, 30 do reqs[i] = { path = "/c/main/files/e" .. i .. ".bin" } end
    for i, r in ipairs(many(srv:port(), reqs)) do
      assert.are.equal(files["files/e" .. i .. ".bin"], r.body)
    end
    local s = stats(srv, "main")
    assert.truthy(s.bytes <= s.max_bytes, s.bytes)
    for i = 1, 12 do
      local body = slow[i]:read_n(#want, helper.now() + 20)
      assert.are.equal(#want, #body)
      assert.are.equal(want, body)
      slow[i]:close()
    end
    -- evicted: the next one fetches again
    assert.are.equal(want, helper.get(srv:port(), "/c/main/files/rng.bin").body)
    assert.are.equal(n0 + 2, ngx:wait_count("/files/rng.bin", n0 + 2, 3, 0.2))
  end)

  it("streams origin:request bodies on every worker while cache:fetch fills the same paths", function()
    local reqs = {}
    for i = 1, 40 do
      reqs[i] = { path = (i % 2 == 0 and "/or/" or "/c/small/") .. "files/e" .. (i % 4 + 11) .. ".bin" }
    end
    for i, r in ipairs(many(srv:port(), reqs)) do
      assert.are.equal(200, r.status, tostring(r.err))
      assert.are.equal(files["files/e" .. (i % 4 + 11) .. ".bin"], r.body)
    end
  end)

  it("keeps fills whole when a reload changes max_bytes and the policy under them", function()
    local path = srv:script_path()
    local orig = helper.readfile(path)
    local variants = {
      (orig:gsub('max_bytes = 400000, ttl = 60,\n%s*policy = "[^"]*"', 'max_bytes = 250000, ttl = 60, policy = "s3fifo"')),
      (orig:gsub('max_bytes = 3000000', 'max_bytes = 1000000')),
      orig,
    }
    assert.are_not.equal(orig, variants[1])
    assert.are_not.equal(orig, variants[2])
    for round, src in ipairs(variants) do
      local conns = {}
      for i = 1, 30 do
        local name = i % 2 == 0 and "lua" or "main"
        conns[i] = { c = helper.connect(srv:port()), want = files["files/e" .. (i % 15 + 1) .. ".bin"] }
        conns[i].c:write(helper.request("GET", "/c/" .. name .. "/files/e" .. (i % 15 + 1) .. ".bin"))
      end
      helper.writefile(path, src)
      os.execute("kill -HUP " .. math.floor(srv:pid()))
      for i = 1, 30 do
        local r = conns[i].c:response{ timeout = 10 }
        assert.are.equal(200, r.status, "round " .. round)
        assert.are.equal(conns[i].want, r.body)
        conns[i].c:close()
      end
      socket.sleep(0.3) -- every worker reloaded
    end
    for _, name in ipairs({ "main", "lua" }) do
      local s = stats(srv, name)
      assert.truthy(s.bytes <= s.max_bytes, name .. " " .. s.bytes)
    end
    assert.is_nil(srv:stderr():match("lua policy: [^\n]*"))
  end)

  it("survives a mixed storm: fills, hits, ranges, purges, bans, aborts and private fills over 20 keys", function()
    -- a fixed seed: the same storm every run
    math.randomseed(13)
    local keys = {}
    for i = 1, 10 do keys[#keys + 1] = { path = "/c/main/files/e" .. (i + 15) .. ".bin", want = files["files/e" .. (i + 15) .. ".bin"] } end
    for i = 1, 4 do keys[#keys + 1] = { path = "/c/main/stream/storm" .. i, pat = "^part one %x+\npart two\npart three\n$" } end
    for i = 1, 3 do keys[#keys + 1] = { path = "/c/main/slow/storm" .. i, pat = "^slow %x+\n$" } end
    for i = 1, 3 do keys[#keys + 1] = { path = "/c/small/files/big.bin", want = files["files/big.bin"] } end
    for round = 1, 4 do
      local conns = {}
      for i = 1, 80 do
        local k = keys[math.random(#keys)]
        local q = { k = k, c = helper.connect(srv:port()), act = math.random(10) }
        local h
        if q.act == 1 and k.want then h = { Range = "bytes=10-" .. (10 + math.random(5000)) } end
        q.h = h
        q.c:write(helper.request("GET", k.path, h))
        conns[i] = q
        if math.random(8) == 1 then
          local inval = ({ "/purge/main/files/e" .. math.random(16, 25) .. ".bin", "/ban/main/stream/",
                           "/tag/main/slowtag", "/ban/small/" })[math.random(4)]
          helper.get(srv:port(), inval)
        end
      end
      socket.sleep(0.05)
      for _, q in ipairs(conns) do
        if q.act == 2 then q.c:abort() end -- gone before or around the head
      end
      for _, q in ipairs(conns) do
        if q.act == 3 then
          q.c:read_available(0.05)
          q.c:abort() -- mid-body (or mid-wait)
        elseif q.act ~= 2 then
          local r = q.c:response{ timeout = 10 }
          if q.h then
            assert.are.equal(206, r.status)
            local a, b = q.h.Range:match("(%d+)-(%d+)")
            assert.are.equal(q.k.want:sub(a + 1, b + 1), r.body)
          else
            assert.are.equal(200, r.status)
            if q.k.want then
              assert.are.equal(#q.k.want, #r.body)
              assert.are.equal(q.k.want, r.body)
            else
              assert.matches(q.k.pat, r.body)
            end
          end
          q.c:close()
        end
      end
    end
    assert.are.equal(200, helper.get(srv:port(), "/w").status)
  end)

  it("keeps a Lua policy's books while markers, variants and responses replace each other under one key (RFC 9111 §4.1)", function()
    local langs = { "en", "fr", "de" }
    local origins = { "private/m", "vary/m", "files/e1.bin", "files/e2.bin", "slow/m" }
    for round = 1, 6 do
      local reqs = {}
      for i = 1, 40 do
        local key = "k" .. (i % 4)
        local o = origins[(i + round) % #origins + 1]
        reqs[i] = { path = "/k/lua/" .. key .. "/" .. o, o = o,
                    headers = { ["Accept-Language"] = langs[i % 3 + 1] } }
      end
      for i, r in ipairs(many(srv:port(), reqs)) do
        assert.are.equal(200, r.status, tostring(r.err))
        -- a response of this key from any of its origins: never cut short
        if r.body:match("^lang=") then
          assert.matches("^lang=%a+ %x+\n$", r.body)
        elseif r.body:match("^e%d") then
          assert.are.equal(#files["files/e1.bin"], #r.body)
          assert.truthy(r.body == files["files/e1.bin"] or r.body == files["files/e2.bin"])
        else
          assert.truthy(r.body:match("^p %x+\n$") or r.body:match("^slow %x+\n$"), r.body:sub(1, 40))
        end
      end
      for k = 0, 3 do
        if (k + round) % 2 == 0 then helper.get(srv:port(), "/purgek/lua/k" .. k) end
      end
    end
    assert.is_nil(srv:stderr():match("lua policy: [^\n]*"))
  end)

  it("answers pipelined requests for fills on other workers in order, whoever leaves early (RFC 9112 §9.3.2)", function()
    local paths = { "/c/main/stream/pl1", "/c/main/slow/pl2", "/c/main/files/e20.bin", "/c/main/stream/pl1",
                    "/c/main/private/pl3", "/c/main/vary/pl4" }
    local conns = {}
    for i = 1, 30 do
      local c = helper.connect(srv:port())
      local q = {}
      for k = 1, 4 do q[k] = paths[(i + k) % #paths + 1] end
      local wire = {}
      for k = 1, 4 do wire[k] = helper.request("GET", q[k], { ["Accept-Language"] = "en" }) end
      c:write(table.concat(wire))
      conns[i] = { c = c, q = q }
    end
    for i, t in ipairs(conns) do
      local n = i % 3 == 0 and 1 or 4 -- every third leaves after its first response
      for k = 1, n do
        local r = t.c:response{ timeout = 10 }
        assert.are.equal(200, r.status, "conn " .. i .. " request " .. k)
        local p = t.q[k]
        if p:match("stream") then assert.matches("^part one %x+\npart two\npart three\n$", r.body)
        elseif p:match("slow") then assert.matches("^slow %x+\n$", r.body)
        elseif p:match("files") then assert.are.equal(files["files/e20.bin"], r.body)
        elseif p:match("private") then assert.matches("^p %x+\n$", r.body)
        else assert.matches("^lang=en %x+\n$", r.body) end
      end
      t.c:abort()
    end
    assert.are.equal(200, helper.get(srv:port(), "/w").status)
  end)

  it("reports the same store figures in /metrics as cache:stats() on every worker, once each", function()
    for _ = 1, 20 do helper.get(srv:port(), "/c/main/files/e30.bin") end
    socket.sleep(0.3) -- every worker's 100 ms tick
    local st = helper.get(srv:port(), "/st/main").body
    local hits, misses, coalesced, fills, objects = st:match("(%d+) (%d+) (%d+) (%d+) (%d+)")
    for _ = 1, 8 do -- whichever worker answers the scrape
      local m = helper.get(srv:port(), "/metrics").body
      local function metric(name)
        return m:match("\n" .. name .. '{cache="main"} (%d+)')
      end
      assert.are.equal(hits, metric("luring_cache_hits_total"))
      assert.are.equal(misses, metric("luring_cache_misses_total"))
      assert.are.equal(coalesced, metric("luring_cache_coalesced_total"))
      assert.are.equal(fills, metric("luring_cache_fills_total"))
      assert.are.equal(objects, metric("luring_cache_objects"))
    end
  end)

  it("invalidates a key on a POST while GETs of it coalesce on other workers (RFC 9111 §4.4)", function()
    local old = helper.get(srv:port(), "/c/main/slow/post").body
    helper.get(srv:port(), "/purge/main/slow/post")
    local reqs = {}
    for i = 1, 40 do
      reqs[i] = i % 10 == 0 and { method = "POST", path = "/c/main/slow/post", body = "x=1",
                                   headers = { ["Content-Type"] = "text/plain" } }
                             or { path = "/c/main/slow/post" }
    end
    for i, r in ipairs(many(srv:port(), reqs)) do
      assert.truthy(r.status, tostring(r.err))
      if i % 10 ~= 0 then
        assert.are.equal(200, r.status)
        assert.matches("^slow %x+\n$", r.body)
        assert.are_not.equal(old, r.body)
      end
    end
    -- after the POSTs: nothing from before them is served
    assert.are.equal(200, helper.get(srv:port(), "/w").status)
  end)

  it("fails only the deliveries whose hook errs while others coalesce on the same fill", function()
    local reqs = {}
    for i = 1, 40 do
      reqs[i] = { path = "/c/main/stream/hook", headers = i % 4 == 0 and { ["X-Fail"] = "1" } or nil }
    end
    local body
    for i, r in ipairs(many(srv:port(), reqs)) do
      if i % 4 == 0 then
        assert.are.equal(500, r.status, tostring(r.err))
      else
        assert.are.equal(200, r.status, tostring(r.err))
        body = body or r.body
        assert.are.equal(body, r.body)
      end
    end
    assert.matches("^part one %x+\npart two\npart three\n$", body)
    assert.are.equal(1, ngx:count("/stream/hook"))
  end)

  it("releases private fills on every worker with no body crossing clients (RFC 9111 §3)", function()
    local reqs = {}
    for i = 1, 60 do reqs[i] = { path = "/c/main/private/x" .. (i % 3) } end
    local seen = {}
    for _, r in ipairs(many(srv:port(), reqs)) do
      assert.are.equal(200, r.status, tostring(r.err))
      assert.is_nil(seen[r.body], "a private response reached two clients")
      seen[r.body] = true
    end
  end)

  it("keeps serving fills in flight through SIGHUP reloads", function()
    local reqs = {}
    for i = 1, 40 do reqs[i] = { path = "/c/main/stream/hup" .. (i % 4) } end
    local conns = {}
    for i, q in ipairs(reqs) do
      conns[i] = helper.connect(srv:port())
      conns[i]:write(helper.request("GET", q.path))
    end
    socket.sleep(0.05)
    os.execute("kill -HUP " .. math.floor(srv:pid()))
    socket.sleep(0.1)
    os.execute("kill -HUP " .. math.floor(srv:pid()))
    local bodies = {}
    for i = 1, 40 do
      local r = conns[i]:response{ timeout = 10 }
      assert.are.equal(200, r.status)
      assert.matches("^part one %x+\npart two\npart three\n$", r.body)
      local k = i % 4
      bodies[k] = bodies[k] or r.body
      assert.are.equal(bodies[k], r.body)
      conns[i]:close()
    end
    for k = 0, 3 do assert.are.equal(1, ngx:count("/stream/hup" .. k)) end
  end)

  it("finishes a fill through a graceful drain when only other workers wait for it (SIGTERM)", function()
    local lru = helper.repo_root() .. "/examples/policies/lru.lua"
    local s2 = start(SCRIPT, ngx, lru)
    for _ = 1, 5 do
      local conns = {}
      for i = 1, 40 do
        conns[i] = helper.connect(s2:port())
        conns[i]:write(helper.request("GET", "/c/main/stream/orphan"))
      end
      -- the heads are out (part one flushed): who fills, who waits where
      local heads, owner = {}, nil
      for i = 1, 40 do
        local h = conns[i]:read_until("\r\n\r\n", helper.now() + 5):lower()
        heads[i] = h
        if h:match("x%-cache: miss") then owner = h:match("x%-worker: (%x+)") end
      end
      assert.truthy(owner)
      -- every client of the filling worker leaves, the fill goes on
      local left = 0
      for i = 1, 40 do
        if heads[i]:match("x%-worker: " .. owner) then conns[i]:abort() conns[i] = nil left = left + 1 end
      end
      if left < 40 then
        os.execute("kill -TERM " .. math.floor(s2:pid()))
        for i = 1, 40 do
          if conns[i] then
            local rest = conns[i]:read_to_close(helper.now() + 10)
            -- chunked: the whole body and the last chunk, never cut short
            assert.matches("part two\n.*part three\n\r\n0\r\n\r\n$", rest)
          end
        end
        assert(helper.wait_until(function() return s2:exit_code() ~= nil end, 10), "no exit after drain")
        s2:stop()
        assert.is_nil(helper.crash_report(s2:stderr()))
        return
      end
      for i = 1, 40 do if conns[i] then conns[i]:close() end end
      helper.get(s2:port(), "/purge/main/stream/orphan")
    end
    error("the fill's worker took every connection 5 times")
  end)

  it("finishes fills in flight with waiters on every worker through a graceful drain (SIGTERM)", function()
    local conns = {}
    for i = 1, 40 do
      conns[i] = helper.connect(srv:port())
      conns[i]:write(helper.request("GET", "/c/main/stream/drain"))
    end
    socket.sleep(0.1)
    os.execute("kill -TERM " .. math.floor(srv:pid()))
    local body
    for i = 1, 40 do
      local r = conns[i]:response{ timeout = 10 }
      assert.are.equal(200, r.status)
      body = body or r.body
      assert.are.equal(body, r.body)
      assert.matches("^part one %x+\npart two\npart three\n$", r.body)
      conns[i]:close()
    end
    assert(helper.wait_until(function() return srv:exit_code() ~= nil end, 10), "no exit after drain")
    srv:stop() -- exited already: only leaves the helper's list
    assert.is_nil(helper.crash_report(srv:stderr()))
    assert.are.equal(0, srv:exit_code(), srv:stderr():sub(-3000))
  end)
end)
