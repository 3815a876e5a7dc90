-- One cache for every worker (issue 13): with --workers 4 a cache named in
-- the script is one store for the whole process. Requests spread over the
-- workers by the kernel (SO_REUSEPORT, one connection each) must find what
-- any worker filled, wait for a fill in flight on any worker (one origin
-- request however many ask), see a purge at once, and keep the budget of
-- the one store. Threads outnumber the 2 cores here on purpose.
local helper = require "helper"
local origin = require "origin"
local socket = require "socket"

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local web = luring.origin{ name = "web", url = "@ORIGIN@" }
local impatient = luring.origin{ name = "impatient", url = "@ORIGIN@",
                                 first_byte_timeout = 0.5 }
local cache = luring.cache{ name = "main", max_bytes = @MAX@, ttl = 60 }
local function worker(req) return req.id:sub(1, 2) end
app:get("/c/*", function(req)
  local ok, err = cache:fetch(req, req.path, web, { path = "/" .. req.params["*"],
    deliver = function(r, res) res.headers["X-Worker"] = worker(r) end })
  if not ok then return 502, {}, tostring(err) end
end)
app:get("/purge/*", function(req)
  return 200, { ["X-Worker"] = worker(req) },
         tostring(cache:purge("/c/" .. req.params["*"])) .. "\n"
end)
app:get("/ban/*", function(req)
  return 200, {}, tostring(cache:ban("/c/" .. req.params["*"])) .. "\n"
end)
app:get("/t/*", function(req)
  return cache:fetch(req, req.path, impatient, { path = "/" .. req.params["*"],
    deliver = function(r, res) res.headers["X-Worker"] = worker(r) end })
end)
app:get("/w", function(req) return 200, {}, worker(req) end)
app:get("/stats", function(req)
  local s = cache:stats()
  return 200, {}, ("%d %d %d %d %d %d\n"):format(s.hits, s.misses, s.coalesced,
                                                 s.fills, s.bytes, s.objects)
end)
]]

local LOCATIONS = [[
    location /slow/ { add_header Cache-Control "max-age=60"; echo_sleep 0.3; echo "slow $request_id"; }
    location /id/ { add_header Cache-Control "max-age=60"; echo "id $request_id"; }
    location /stream/ {
      add_header Cache-Control "max-age=60";
      echo "part one $request_id"; echo_flush; echo_sleep 0.2;
      echo "part two"; echo_flush; echo_sleep 0.2;
      echo "part three";
    }
    location /files/ { add_header Cache-Control "max-age=60"; }
    location /private/ { add_header Cache-Control "private"; echo_sleep 0.3; echo "p $request_id"; }
    location /late/ { add_header Cache-Control "max-age=60"; echo_sleep 2; echo "late"; }
]]

local function stats(srv)
  local r = helper.get(srv:port(), "/stats")
  local t = {}
  for n in r.body:gmatch("%d+") do t[#t + 1] = tonumber(n) end
  return { hits = t[1], misses = t[2], coalesced = t[3], fills = t[4], bytes = t[5],
           objects = t[6] }
end

-- n one-connection GETs of path, each on a fresh connection: the kernel
-- spreads them over the workers. Returns the responses.
local function spread(srv, path, n)
  local res = {}
  for i = 1, n do res[i] = helper.get(srv:port(), path) end
  return res
end

describe("a cache shared by 4 workers (issue 13)", function()
  local ngx, srv
  local KB64 = 64 * 1024

  lazy_setup(function()
    local files = {}
    for i = 1, 40 do files["files/o" .. i .. ".bin"] = helper.payload(KB64 - 200, "o" .. i) end
    ngx = origin.start{ locations = LOCATIONS, files = files }
    srv = helper.start((SCRIPT:gsub("@ORIGIN@", ngx:url()):gsub("@MAX@", "1000000")),
                       { args = { "--workers", "4" } })
    srv:wait_workers(4, "/w")
  end)

  lazy_teardown(helper.teardown_with(function()
    origin.stop_all()
  end))

  it("makes 1 origin request for 500 concurrent requests of one cold key, every worker waiting (RFC 9111 §4)", function()
    local res = helper.burst(srv:port(), 500, "/c/slow/a", 30)
    local body, workers = nil, {}
    for i = 1, 500 do
      assert.are.equal(200, res[i].status, tostring(res[i].err))
      body = body or res[i].body
      assert.are.equal(body, res[i].body) -- one fill's body for all
      workers[res[i].headers["x-worker"]] = true
    end
    assert.matches("^slow %x+\n$", body)
    assert.are.equal(1, ngx:count("/slow/a"))
    local n = 0
    for _ in pairs(workers) do n = n + 1 end
    assert.are.equal(4, n, "the 500 connections did not reach all 4 workers")
    local s = stats(srv)
    assert.are.equal(1, s.misses)
    assert.are.equal(499, s.coalesced + s.hits)
  end)

  it("streams a fill in flight on one worker to waiters on all (RFC 9111 §3)", function()
    local res = helper.burst(srv:port(), 40, "/c/stream/x", 10)
    local first = res[1].body
    assert.matches("^part one %x+\npart two\npart three\n$", first)
    local workers = {}
    for i = 1, 40 do
      assert.are.equal(200, res[i].status, tostring(res[i].err))
      assert.are.equal(first, res[i].body)
      workers[res[i].headers["x-worker"]] = true
    end
    assert.are.equal(1, ngx:count("/stream/x"))
  end)

  it("gives a HIT on every worker for what one worker filled", function()
    local r1 = helper.get(srv:port(), "/c/id/hit")
    assert.are.equal("MISS", r1.headers["x-cache"])
    local workers = {}
    for _, r in ipairs(spread(srv, "/c/id/hit", 120)) do
      assert.are.equal(200, r.status)
      assert.are.equal("HIT", r.headers["x-cache"])
      assert.are.equal(r1.body, r.body)
      workers[r.headers["x-worker"]] = true
    end
    local n = 0
    for _ in pairs(workers) do n = n + 1 end
    assert.are.equal(4, n)
    assert.are.equal(1, ngx:count("/id/hit"))
  end)

  it("sees a purge and a ban on every worker at once (RFC 9111 §4.4)", function()
    local old = helper.get(srv:port(), "/c/id/p").body
    for _ = 1, 20 do assert.are.equal(old, helper.get(srv:port(), "/c/id/p").body) end
    local p = helper.get(srv:port(), "/purge/id/p")
    assert.are.equal("true\n", p.body)
    -- the very next requests, whatever worker takes them: never the old body
    local new
    for _, r in ipairs(spread(srv, "/c/id/p", 40)) do
      assert.are_not.equal(old, r.body)
      new = new or r.body
      assert.are.equal(new, r.body)
    end
    assert.are.equal(2, ngx:count("/id/p"))
    -- a ban of a prefix: counted once for the whole store
    for i = 1, 5 do helper.get(srv:port(), "/c/id/ban" .. i) end
    assert.are.equal("5\n", helper.get(srv:port(), "/ban/id/ban").body)
    for i = 1, 5 do
      assert.are.equal("MISS", helper.get(srv:port(), "/c/id/ban" .. i).headers["x-cache"])
    end
  end)

  it("releases waiters on every worker at once when the fill is private (RFC 9111 §3, §5.2.2.7)", function()
    -- hit-for-miss: nobody waits for a response that is not shared, so 60
    -- requests of 300 ms each over 4 workers end in about 300 ms, not 60 x
    local t0 = socket.gettime()
    local res = helper.burst(srv:port(), 60, "/c/private/x", 20)
    local took = socket.gettime() - t0
    local bodies = {}
    for i = 1, 60 do
      assert.are.equal(200, res[i].status, tostring(res[i].err))
      assert.are.equal("MISS", res[i].headers["x-cache"])
      assert.is_nil(bodies[res[i].body], "a private response went to two clients")
      bodies[res[i].body] = true
    end
    assert.truthy(took < 2.5, ("60 private requests took %.2f s"):format(took))
    assert.are.equal(60, ngx:count("/private/x"))
  end)

  it("gives every waiter on every worker the fill's error, then fetches again (RFC 9110 §15.6.5)", function()
    local t0 = socket.gettime()
    local res = helper.burst(srv:port(), 40, "/t/late/x", 10)
    local took = socket.gettime() - t0
    local workers = {}
    for i = 1, 40 do
      assert.are.equal(504, res[i].status, tostring(res[i].err))
      workers[res[i].headers["x-worker"] or "?"] = true
    end
    assert.truthy(took < 2, ("the waiters were answered after %.2f s"):format(took))
    -- nginx logs each abandoned request when its 2 s sleep ends
    assert.are.equal(1, ngx:wait_count("/late/x", 1, 5, 0.2))
    -- the failed fill left no object behind: the next request fetches
    local r = helper.get(srv:port(), "/t/late/x")
    assert.are.equal(504, r.status)
    assert.are.equal(2, ngx:wait_count("/late/x", 2, 5, 0.2))
  end)

  it("lets waiters on any worker leave mid-fill; the others get every byte", function()
    local conns = {}
    for i = 1, 40 do
      conns[i] = helper.connect(srv:port())
      conns[i]:write(helper.request("GET", "/c/stream/leave"))
    end
    socket.sleep(0.1) -- all joined the fill; half of them leave now
    for i = 1, 40, 2 do conns[i]:close() end
    local body
    for i = 2, 40, 2 do
      local r = conns[i]:response{ timeout = 10 }
      assert.are.equal(200, r.status)
      body = body or r.body
      assert.are.equal(body, r.body)
      conns[i]:close()
    end
    assert.matches("^part one %x+\npart two\npart three\n$", body)
    assert.are.equal(1, ngx:count("/stream/leave"))
    assert.are.equal(200, helper.get(srv:port(), "/c/stream/leave").status) -- still serving
  end)

  it("keeps the one store when every worker reloads the script", function()
    local r1 = helper.get(srv:port(), "/c/id/reload")
    assert.are.equal("MISS", r1.headers["x-cache"])
    -- every worker runs the new script (each closes its replaced state)
    local _, before = srv:stderr():gsub("closed a replaced script state", "")
    os.execute("kill -HUP " .. math.floor(srv:pid()))
    assert(helper.wait_until(function()
      local _, n = srv:stderr():gsub("closed a replaced script state", "")
      return n >= before + 4
    end, 10), srv:stderr())
    for _, r in ipairs(spread(srv, "/c/id/reload", 40)) do
      assert.are.equal("HIT", r.headers["x-cache"])
      assert.are.equal(r1.body, r.body)
    end
    assert.are.equal(1, ngx:count("/id/reload"))
  end)

  it("holds one byte budget for the whole store while 4 workers fill (max_bytes + a chunk per fill)", function()
    -- 40 objects of ~64 KiB (2.6 MB) through a 1 MB store, 10 at a time
    local peak = 0
    for round = 0, 3 do
      local conns = {}
      for i = 1, 10 do
        local c = helper.connect(srv:port())
        c:write(helper.request("GET", "/c/files/o" .. (round * 10 + i) .. ".bin"))
        conns[i] = c
      end
      for i = 1, 10 do
        local r = conns[i]:response{ timeout = 10 }
        assert.are.equal(200, r.status)
        assert.are.equal(KB64 - 200, #r.body)
        conns[i]:close()
      end
      local s = stats(srv)
      if s.bytes > peak then peak = s.bytes end
    end
    local s = stats(srv)
    assert.truthy(peak <= 1000000 + 10 * KB64, "bytes " .. peak)
    assert.truthy(s.bytes <= 1000000, "bytes " .. s.bytes)
    assert.truthy(s.objects >= 1 and s.objects <= 16, "objects " .. s.objects)
  end)
end)
