-- A shared cache never hands one client's response to another unless the
-- response may be shared (RFC 9111 §3): requests that joined a fill whose
-- response turns out not shareable are released to fetch on their own, a
-- hit-for-miss marker then lets later requests go straight to the origin,
-- and Set-Cookie responses are stored only when the script says so
-- explicitly.  The origin is a real nginx that gives every response a
-- unique id ($request_id) in the body and in X-Id, so each response can be
-- told apart and matched to its own head.
local helper = require "helper"
local origin = require "origin"

local now = helper.now

-- Each location answers after 0.3 s (so concurrent requests all join the
-- first fill while its head is unknown) with "body <id>".
local function loc(name, directives)
  return ("    location /%s/ { echo_sleep 0.3; add_header X-Id $request_id always; %s echo \"body $request_id\"; }\n")
    :format(name, directives or "")
end

local LOCATIONS = table.concat{
  -- not shareable (RFC 9111 §3, §3.5, §4.2.1; RFC 9110 §12.5.5)
  loc("private", 'add_header Cache-Control "private, max-age=60" always;'),
  loc("nostore", 'add_header Cache-Control "no-store" always;'),
  loc("nocache", 'add_header Cache-Control "no-cache, max-age=60" always;'),
  loc("cookie", 'add_header Cache-Control "max-age=60" always; add_header Set-Cookie "sid=$request_id" always;'),
  loc("s201", 'echo_status 201; add_header Cache-Control "max-age=60" always;'),
  loc("s500", 'echo_status 500;'),
  loc("s503", 'echo_status 503;'),
  loc("auth", 'add_header Cache-Control "max-age=60" always;'),
  loc("varystar", 'add_header Cache-Control "max-age=60" always; add_header Vary "*" always;'),
  loc("maxage0", 'add_header Cache-Control "max-age=0" always;'),
  loc("expired", 'add_header Expires "Thu, 01 Jan 1970 00:00:00 GMT" always;'),
  loc("badage", 'add_header Cache-Control "max-age=soon" always;'),
  -- shareable
  loc("public", 'add_header Cache-Control "max-age=60" always;'),
  loc("authpublic", 'add_header Cache-Control "public, max-age=60" always;'),
  loc("authsmaxage", 'add_header Cache-Control "s-maxage=60" always;'),
  loc("authmustrev", 'add_header Cache-Control "max-age=60, must-revalidate" always;'),
  loc("varyae", 'add_header Cache-Control "max-age=60" always; add_header Vary "Accept-Encoding" always;'),
  -- private or storable, as the query says
  [[
    location /flip/ {
      echo_sleep 0.3;
      set $cc "private";
      if ($arg_cc = "store") { set $cc "max-age=60"; }
      add_header Cache-Control $cc always;
      add_header X-Id $request_id always;
      echo "body $request_id";
    }
]],
}

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local o = luring.origin{ name = "o", url = "@ORIGIN@", keepalive = 64,
                         first_byte_timeout = 10 }
local caches = {
  -- requests with Authorization are looked up here (they pass by default:
  -- cache_pass_spec.lua), so §3.5 decides whether their responses are shared
  main = luring.cache{ name = "main", ttl = 60, authorization = "lookup" },
  cookies = luring.cache{ name = "cookies", ttl = 60,
                          admit = function(key, status, h) return "set-cookie" end },
  truthy = luring.cache{ name = "truthy", ttl = 60,
                         admit = function(key, status, h) return true end },
  nohfm = luring.cache{ name = "nohfm", ttl = 60, hit_for_miss = 0 },
  shorthfm = luring.cache{ name = "shorthfm", ttl = 60, hit_for_miss = 1 },
}
local text = { ["Content-Type"] = "text/plain" }
app:get("/stats/:cache", function(req)
  local out = {}
  for k, v in pairs(caches[req.params.cache]:stats()) do
    out[#out + 1] = k .. "=" .. tostring(v)
  end
  return 200, text, table.concat(out, "\n") .. "\n"
end)
-- /c/<cache><path>: key <path>, fetched as <path>?<query>
app:get("/c/:cache/*", function(req)
  local key = req.path:match("^/c/[^/]+(/.*)$")
  local path = req.query and (key .. "?" .. req.query) or key
  return caches[req.params.cache]:fetch(req, key, o, path)
end)
]]

local ngx, srv

local function stats(name)
  local res = helper.get(srv:port(), "/stats/" .. name)
  local t = {}
  for k, v in res.body:gmatch("([%w_]+)=([^\n]*)") do t[k] = tonumber(v) or v end
  return t
end

local function get(path, headers)
  return helper.get(srv:port(), path, headers)
end

-- n concurrent requests; checks that each got a whole response whose head
-- and body came from the same origin response (X-Id = the body's id).
-- Returns the responses, the distinct ids and X-Cache counts.
local function wave(n, path, headers, status)
  local results = helper.burst(srv:port(), n, path, 15, headers)
  local ids, nids, xc, maxlat = {}, 0, {}, 0
  for i = 1, n do
    local r = results[i]
    assert(not r.err, ("request %d of %s: %s"):format(i, path, tostring(r.err)))
    assert.are.equal(status or 200, r.status, path .. ": " .. (r.raw_head or ""))
    local id = r.body:match("^body (%x+)\n$")
    assert(id, path .. ": body " .. ("%q"):format(r.body))
    assert.are.equal(id, r.headers["x-id"], "head and body of different responses")
    if r.headers["set-cookie"] then
      assert.are.equal("sid=" .. id, r.headers["set-cookie"], "someone else's cookie")
    end
    if not ids[id] then ids[id] = true; nids = nids + 1 end
    local x = r.headers["x-cache"] or "none"
    xc[x] = (xc[x] or 0) + 1
    if r.latency > maxlat then maxlat = r.latency end
  end
  return { n = nids, xc = xc, maxlat = maxlat, results = results }
end

local function delta(before, after, k) return (after[k] or 0) - (before[k] or 0) end

describe("responses that may not be shared (RFC 9111 §3)", function()
  lazy_setup(function()
    ngx = origin.start{ locations = LOCATIONS }
    local src = SCRIPT:gsub("@ORIGIN@", ngx:url())
    srv = helper.start(src)
  end)
  lazy_teardown(origin.teardown)

  local N = 10
  local kinds = {
    { "Cache-Control: private (§5.2.2.7)", "/private/a" },
    { "Cache-Control: no-store (§5.2.2.5)", "/nostore/a" },
    { "Cache-Control: no-cache, no revalidation support (§5.2.2.4)", "/nocache/a" },
    { "Set-Cookie, no admit hook", "/cookie/a" },
    { "status 201 (not stored)", "/s201/a", nil, 201 },
    { "status 500 (not stored, §3)", "/s500/a", nil, 500 },
    { "status 503 (not stored)", "/s503/a", nil, 503 },
    { "request with Authorization, no public/s-maxage/must-revalidate (§3.5)",
      "/auth/a", { Authorization = "Bearer secret" } },
    { "Vary: * (RFC 9110 §12.5.5)", "/varystar/a" },
    { "max-age=0: never fresh (§4.2.1)", "/maxage0/a" },
    { "Expires in the past (§5.3)", "/expired/a" },
    { "invalid max-age: stale (§4.2.1)", "/badage/a" },
  }
  for _, k in ipairs(kinds) do
    local what, path, headers, status = k[1], k[2], k[3], k[4]
    it(what .. ": " .. N .. " concurrent requests get " .. N .. " bodies of their own, twice", function()
      local s0 = stats("main")
      local w1 = wave(N, "/c/main" .. path, headers, status)
      assert.are.equal(N, w1.n, "distinct bodies in the first wave")
      assert.are.equal(N, w1.xc.MISS, "X-Cache MISS")
      assert.are.equal(N, ngx:wait_count(path, N, 3, 0.1), ngx:access_log():sub(-2000))
      local s1 = stats("main")
      assert.are.equal(N - 1, delta(s0, s1, "released"))
      -- the marker: nobody waits for anybody (one origin round trip)
      local w2 = wave(N, "/c/main" .. path, headers, status)
      assert.are.equal(N, w2.n, "distinct bodies in the second wave")
      assert.are.equal(2 * N, ngx:wait_count(path, 2 * N, 3, 0.1))
      local s2 = stats("main")
      assert.are.equal(N, delta(s1, s2, "hit_for_miss"))
      assert.are.equal(0, delta(s1, s2, "released"))
      assert.are.equal(0, delta(s0, s2, "hits"))
      assert.is_true(w2.maxlat < 0.58, ("second wave took %.3fs"):format(w2.maxlat))
    end)
  end

  local shareable = {
    { "max-age=60", "/public/a" },
    { "Authorization with public (§3.5)", "/authpublic/a", { Authorization = "Bearer x" } },
    { "Authorization with s-maxage (§3.5)", "/authsmaxage/a", { Authorization = "Bearer x" } },
    { "Authorization with must-revalidate (§3.5)", "/authmustrev/a", { Authorization = "Bearer x" } },
    { "Vary: Accept-Encoding (the origin sees no request header of the client)", "/varyae/a" },
  }
  for _, k in ipairs(shareable) do
    local what, path, headers = k[1], k[2], k[3]
    it(what .. ": still one origin request for " .. N .. " concurrent requests, then HITs", function()
      local w1 = wave(N, "/c/main" .. path, headers)
      assert.are.equal(1, w1.n, "one body for all")
      assert.are.equal(1, w1.xc.MISS)
      assert.are.equal(N - 1, w1.xc.COALESCED)
      local r = get("/c/main" .. path, headers)
      assert.are.equal("HIT", r.headers["x-cache"])
      assert.are.equal(1, ngx:wait_count(path, 1, 3, 0.1))
    end)
  end

  it("50 concurrent requests for a private 300 ms resource take about 300 ms, each with its own body", function()
    local first = get("/c/main/private/lat")
    assert.are.equal("MISS", first.headers["x-cache"])
    local s0 = stats("main")
    local t0 = now()
    local w = wave(50, "/c/main/private/lat")
    local elapsed = now() - t0
    print(("\n[hit-for-miss] 50 private requests in %.3fs, slowest %.3fs"):format(elapsed, w.maxlat))
    assert.are.equal(50, w.n)
    assert.are.equal(51, ngx:wait_count("/private/lat", 51, 3, 0.1))
    assert.are.equal(50, delta(s0, stats("main"), "hit_for_miss"))
    assert.is_true(w.maxlat < 0.58, ("slowest %.3fs"):format(w.maxlat))
  end)

  it("50 concurrent requests for a cold private 300 ms key: the joiners are released at once, all done in well under 50 x 300 ms (issue 11 point 5)", function()
    -- no marker yet: all 50 join the first fill, whose head says private;
    -- the 49 joiners then fetch at the same time (about 0.6 s in all)
    local s0 = stats("main")
    local t0 = now()
    local w = wave(50, "/c/main/private/cold50")
    local elapsed = now() - t0
    print(("\n[released] 50 cold private requests in %.3fs, slowest %.3fs"):format(elapsed, w.maxlat))
    assert.are.equal(50, w.n)
    assert.are.equal(50, w.xc.MISS)
    assert.are.equal(50, ngx:wait_count("/private/cold50", 50, 3, 0.1))
    assert.are.equal(49, delta(s0, stats("main"), "released"))
    assert.is_true(elapsed < 1.5, ("50 requests took %.3fs"):format(elapsed))
  end)

  it("the owner of a private fill leaves before its head: every joiner is released", function()
    local owner = helper.connect(srv:port())
    owner:write(helper.request("GET", "/c/main/private/owner"))
    helper.sleep(0.05)
    owner:close()
    local w = wave(5, "/c/main/private/owner")
    assert.are.equal(5, w.n)
    assert.are.equal(6, ngx:wait_count("/private/owner", 6, 3, 0.1))
    assert.is_true(srv:alive())
  end)

  it("Set-Cookie is stored when admit returns \"set-cookie\", and only then", function()
    -- explicitly stored: coalesced and then a HIT with the stored cookie
    local w = wave(N, "/c/cookies/cookie/b")
    assert.are.equal(1, w.n)
    local r = get("/c/cookies/cookie/b")
    assert.are.equal("HIT", r.headers["x-cache"])
    assert.are.equal(1, ngx:wait_count("/cookie/b", 1, 3, 0.1))
    -- admit returning true is not enough
    w = wave(N, "/c/truthy/cookie/c")
    assert.are.equal(N, w.n)
    r = get("/c/truthy/cookie/c")
    assert.are_not.equal("HIT", r.headers["x-cache"])
    assert.are.equal(N + 1, ngx:wait_count("/cookie/c", N + 1, 3, 0.1))
    -- while other responses through that cache are stored as before
    w = wave(N, "/c/truthy/public/c")
    assert.are.equal(1, w.n)
  end)

  it("a storable response replaces the marker; a private one replaces the stored response", function()
    local r = get("/c/main/flip/a?cc=private")
    assert.are.equal("MISS", r.headers["x-cache"])
    r = get("/c/main/flip/a?cc=store")   -- hit-for-miss, storable: stored
    assert.are.equal("MISS", r.headers["x-cache"])
    local stored = r.body
    r = get("/c/main/flip/a?cc=private") -- same key: a HIT
    assert.are.equal("HIT", r.headers["x-cache"])
    assert.are.equal(stored, r.body)
    assert.is_true(get("/c/main/flip/a?cc=store").headers["x-cache"] == "HIT")
  end)

  it("hit_for_miss = 0: no marker, every wave coalesces and is released again", function()
    local s0 = stats("nohfm")
    local w1 = wave(N, "/c/nohfm/private/z")
    local w2 = wave(N, "/c/nohfm/private/z")
    assert.are.equal(N, w1.n)
    assert.are.equal(N, w2.n)
    local s1 = stats("nohfm")
    assert.are.equal(2 * (N - 1), delta(s0, s1, "released"))
    assert.are.equal(0, delta(s0, s1, "hit_for_miss"))
    assert.are.equal(2 * N, ngx:wait_count("/private/z", 2 * N, 3, 0.1))
  end)

  it("the marker lives hit_for_miss seconds", function()
    local s0 = stats("shorthfm")
    get("/c/shorthfm/private/y")
    get("/c/shorthfm/private/y")
    local s1 = stats("shorthfm")
    assert.are.equal(1, delta(s0, s1, "hit_for_miss"))
    helper.sleep(1.1)
    local w = wave(3, "/c/shorthfm/private/y")   -- coalesced, then released
    assert.are.equal(3, w.n)
    assert.are.equal(2, delta(s1, stats("shorthfm"), "released"))
  end)

  it("luring.cache rejects a bad hit_for_miss", function()
    for _, v in ipairs({ "-1", "'x'", "1e99" }) do
      local script, cleanup = helper.temp_script(('luring.cache{ name = "c", hit_for_miss = %s }\n'
        .. 'local app = luring.app() app:listen("127.0.0.1:1")'):format(v))
      local rc, _, err = helper.run({ "--check", script }, 10)
      cleanup()
      assert.are_not.equal(0, rc, v)
      assert.truthy(err:find("hit_for_miss", 1, true), err)
    end
  end)

  it("kept serving throughout, no sanitizer report", function()
    assert.is_true(srv:alive())
    assert.is_nil(helper.crash_report(srv:stderr()))
  end)
end)

-- Responses nginx can't be made to send, from an origin that sends exact
-- bytes: what they hide must not make them shareable.
describe("responses that may not be shared, in odd framings", function()
  local raw = require "raw_origin"
  local rawo
  local function resp(head, body)
    return "HTTP/1.1 200 OK\r\n" .. head .. "Content-Length: {len}\r\n\r\n" .. (body or "body {id}\n")
  end
  lazy_setup(function()
    rawo = raw.start{ responses = {
      -- RFC 9112 §5.1: a proxy removes whitespace before the colon
      spcookie = resp("Cache-Control: max-age=60\r\nX-Id: {id}\r\nSet-Cookie : sid={id}\r\n"),
      spprivate = resp("Cache-Control : private\r\nX-Id: {id}\r\n"),
      -- a Cache-Control value that is not a directive list (§5.2)
      junkcc = resp("Cache-Control: max-age=60 private\r\nX-Id: {id}\r\n"),
      openquote = resp("Cache-Control: max-age=60, x=\"unterminated, private\r\nX-Id: {id}\r\n"),
      -- an interim response's fields are not the final response's (RFC 9110 §15.2)
      early = "HTTP/1.1 103 Early Hints\r\nCache-Control: max-age=600\r\nLink: </style.css>\r\n\r\n"
        .. resp("Cache-Control: max-age=0\r\nX-Id: {id}\r\n"),
      -- and a normal storable one, for contrast
      plain = resp("Cache-Control: max-age=60\r\nX-Id: {id}\r\n"),
      -- a field name that is not a token: an invalid response
      badname = resp("X Bad: 1\r\nX-Id: {id}\r\n"),
    } }
    srv = helper.start((SCRIPT:gsub("@ORIGIN@", rawo:url())))
  end)
  lazy_teardown(raw.teardown)

  local N = 8
  for _, k in ipairs({
    { "Set-Cookie with a space before the colon (RFC 9112 §5.1)", "spcookie" },
    { "Cache-Control : private (RFC 9112 §5.1)", "spprivate" },
    { "Cache-Control that is not a directive list", "junkcc" },
    { "Cache-Control with an unclosed quote", "openquote" },
    { "max-age=0 after a 103 that said max-age=600 (RFC 9110 §15.2)", "early" },
  }) do
    it(k[1] .. ": " .. N .. " concurrent requests, " .. N .. " bodies", function()
      local w = wave(N, "/c/main/" .. k[2])
      assert.are.equal(N, w.n)
      assert.are.equal(N, rawo:count("/" .. k[2]))
      for _, r in ipairs(w.results) do
        assert.is_nil(r.headers["link"], "a 103's field in the final response")
        for _, h in ipairs(r.header_list or {}) do
          assert.is_nil(h[1]:find("%s"), "field name with whitespace: " .. h[1])
        end
      end
      local r = get("/c/main/" .. k[2])
      assert.are_not.equal("HIT", r.headers["x-cache"])
    end)
  end

  it("a storable response from the same origin still coalesces", function()
    local w = wave(N, "/c/main/plain")
    assert.are.equal(1, w.n)
    assert.are.equal(1, rawo:count("/plain"))
  end)

  it("a field name that is not a token: 502, nothing stored", function()
    local r = get("/c/main/badname")
    assert.are.equal(502, r.status)
    assert.are.equal(502, get("/c/main/badname").status)
    assert.is_true(srv:alive())
    assert.is_nil(helper.crash_report(srv:stderr()))
  end)
end)
