-- Variants (RFC 9111 §4.1, issue 12 point 6): responses with Vary are
-- stored side by side under one key, each selected by the normalized values
-- of the request fields its Vary names; a per-key limit (max_variants)
-- drops the oldest; `Vary: *` never matches; purge removes every variant.
-- The origin is a real nginx whose body echoes the header values it got
-- ($http_*), so each response says which request it was made for.
local helper = require "helper"
local origin = require "origin"
local socket = require "socket"

local LOCATIONS = [[
    location /ae/ {
      add_header Vary "Accept-Encoding";
      echo "ae=$http_accept_encoding";
    }
    location /two/ {
      add_header Vary "Accept-Encoding, Accept-Language";
      echo "ae=$http_accept_encoding";
      echo "lang=$http_accept_language";
    }
    location /star/ {
      add_header Vary "*";
      echo "ae=$http_accept_encoding";
    }
    location /lim/ {
      add_header Vary "X-V";
      echo "v=$http_x_v";
    }
    location /slow/ {
      add_header Vary "Accept-Encoding";
      echo_sleep 0.5;
      echo "ae=$http_accept_encoding";
    }
]]

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local o = luring.origin{ name = "o", url = "@ORIGIN@" }
local c = luring.cache{ name = "c" }
local l = luring.cache{ name = "l", max_variants = 8 }
app:get("/lim/*", function(req) return l:fetch(req, req.path, o) end)
app:get("/purge/*", function(req)
  return 200, nil, tostring(c:purge(req.path:sub(7))) .. "\n"
end)
app:get("/stats", function(req)
  local s = c:stats()
  return 200, nil, ("objects=%d max_variants=%d\n"):format(s.objects, s.max_variants)
end)
app:get("/*", function(req) return c:fetch(req, req.path, o) end)
]]

local ngx, srv

local function exchange(path, headers)
  local c = helper.connect(srv:port())
  c:write(helper.request("GET", path, headers))
  local res = c:response{ timeout = 10 }
  c:close()
  return res
end

-- X-Cache and the echoed value of `k` ("ae", "lang", "v").
local function get(path, headers, k)
  local res = exchange(path, headers)
  assert.are.equal(200, res.status)
  return res.headers["x-cache"], (res.body or ""):match((k or "ae") .. "=([^\n]*)")
end

local function stats()
  local t = {}
  for k, v in exchange("/stats").body:gmatch("([%w_]+)=(%d+)") do t[k] = tonumber(v) end
  return t
end

local function AE(v) return { ["Accept-Encoding"] = v } end

describe("RFC 9111 §4.1 variants", function()
  setup(function()
    ngx = origin.start{ locations = LOCATIONS }
    srv = helper.start((SCRIPT:gsub("@ORIGIN@", ngx:url())))
  end)

  teardown(function()
    helper.stop_all()
    origin.stop_all()
  end)

  it("§4.1: two Accept-Encoding variants are both stored, each HIT with its own body", function()
    assert.are.same({ "MISS", "gzip" }, { get("/ae/a", AE("gzip")) })
    assert.are.same({ "MISS", "identity" }, { get("/ae/a", AE("identity")) })
    assert.are.same({ "HIT", "gzip" }, { get("/ae/a", AE("gzip")) })
    assert.are.same({ "HIT", "identity" }, { get("/ae/a", AE("identity")) })
    assert.are.same({ "HIT", "gzip" }, { get("/ae/a", AE("gzip")) })
    assert.are.equal(2, ngx:wait_count("/ae/a", 2, 3, 0.1))
    assert.are.equal(8, stats().max_variants) -- the default
  end)

  it("§4.1: normalized values select the same variant (OWS, commas, repeated lines)", function()
    assert.are.same({ "MISS", "gzip,  br" }, { get("/ae/n", AE("gzip,  br")) })
    assert.are.same({ "HIT", "gzip,  br" }, { get("/ae/n", AE("gzip, br")) })
    assert.are.same({ "HIT", "gzip,  br" }, { get("/ae/n", AE(" gzip ,br\t")) })
    assert.are.same({ "HIT", "gzip,  br" },
      { get("/ae/n", { { "Accept-Encoding", "gzip" }, { "Accept-Encoding", "br" } }) })
    assert.are.same({ "HIT", "gzip,  br" },
      { get("/ae/n", { { "accept-encoding", "gzip" }, { "ACCEPT-ENCODING", "br" } }) })
    -- order and case are the client's: other values
    assert.are.same({ "MISS", "br, gzip" }, { get("/ae/n", AE("br, gzip")) })
    assert.are.same({ "MISS", "GZIP, br" }, { get("/ae/n", AE("GZIP, br")) })
    assert.are.equal(3, ngx:wait_count("/ae/n", 3, 3, 0.1))
  end)

  it("§4.1: a request without the field matches only a variant stored without it", function()
    assert.are.same({ "MISS", "gzip" }, { get("/ae/absent", AE("gzip")) })
    assert.are.same({ "MISS", "" }, { get("/ae/absent") })
    assert.are.same({ "HIT", "" }, { get("/ae/absent") })
    assert.are.same({ "HIT", "gzip" }, { get("/ae/absent", AE("gzip")) })
    -- an empty value is a value, not an absence
    assert.are.same({ "MISS", "" }, { get("/ae/absent", AE("")) })
    assert.are.same({ "HIT", "" }, { get("/ae/absent", AE("")) })
    assert.are.same({ "HIT", "" }, { get("/ae/absent") })
    assert.are.equal(3, ngx:wait_count("/ae/absent", 3, 3, 0.1))
  end)

  it("§4.1: Vary: * never matches, so it is never stored", function()
    assert.are.same({ "MISS", "gzip" }, { get("/star/x", AE("gzip")) })
    assert.are.same({ "MISS", "gzip" }, { get("/star/x", AE("gzip")) })
    assert.are.same({ "MISS", "" }, { get("/star/x") })
    assert.are.equal(3, ngx:wait_count("/star/x", 3, 3, 0.1))
  end)

  it("§4.1: a Vary naming two fields selects on both", function()
    local function h(ae, lang) return { ["Accept-Encoding"] = ae, ["Accept-Language"] = lang } end
    assert.are.same({ "MISS", "fr" }, { get("/two/x", h("gzip", "fr"), "lang") })
    assert.are.same({ "MISS", "de" }, { get("/two/x", h("gzip", "de"), "lang") })
    assert.are.same({ "MISS", "identity" }, { get("/two/x", h("identity", "fr")) })
    assert.are.same({ "HIT", "fr" }, { get("/two/x", h("gzip", "fr"), "lang") })
    assert.are.same({ "HIT", "de" }, { get("/two/x", h("gzip", "de"), "lang") })
    assert.are.same({ "HIT", "identity" }, { get("/two/x", h("identity", "fr")) })
    assert.are.same({ "MISS", "gzip" }, { get("/two/x", { ["Accept-Encoding"] = "gzip" }) })
    assert.are.equal(4, ngx:wait_count("/two/x", 4, 3, 0.1))
  end)

  it("§4.1 (max_variants = 8): a ninth variant drops the oldest, which is fetched again", function()
    for i = 1, 9 do
      assert.are.same({ "MISS", tostring(i) }, { get("/lim/a", { ["X-V"] = tostring(i) }, "v") })
    end
    for i = 9, 2, -1 do
      assert.are.same({ "HIT", tostring(i) }, { get("/lim/a", { ["X-V"] = tostring(i) }, "v") })
    end
    assert.are.same({ "MISS", "1" }, { get("/lim/a", { ["X-V"] = "1" }, "v") })
    assert.are.equal(10, ngx:wait_count("/lim/a", 10, 3, 0.1))
    -- 1 came back and dropped the oldest left, 2
    assert.are.same({ "HIT", "1" }, { get("/lim/a", { ["X-V"] = "1" }, "v") })
    assert.are.same({ "MISS", "2" }, { get("/lim/a", { ["X-V"] = "2" }, "v") })
  end)

  it("§4.1, §4: 20 concurrent requests of two variants for a cold key: one origin request per variant", function()
    local n, conns, by_sock, res = 20, {}, {}, {}
    for i = 1, n do
      conns[i] = helper.connect(srv:port(), 5)
      by_sock[conns[i].sock] = i
    end
    for i = 1, n do
      local ae = i % 2 == 1 and "gzip" or "identity"
      assert(conns[i]:send(helper.request("GET", "/slow/c", AE(ae))))
    end
    local left, deadline = n, socket.gettime() + 10
    while left > 0 and socket.gettime() < deadline do
      local socks = {}
      for i = 1, n do if not res[i] then socks[#socks + 1] = conns[i].sock end end
      for _, s in ipairs(socket.select(socks, nil, 0.5) or {}) do
        local i = by_sock[s]
        local data, err, partial = s:receive(65536)
        conns[i].buf = (conns[i].buf or "") .. (data or partial or "")
        local r = helper.parse_response(conns[i].buf)
        if r then res[i] = r; left = left - 1
        elseif r == false or (err and err ~= "timeout") then error("request " .. i .. ": " .. tostring(err)) end
      end
    end
    assert.are.equal(0, left)
    local xc = {}
    for i = 1, n do
      conns[i]:close()
      local want = i % 2 == 1 and "gzip" or "identity"
      assert.are.equal(200, res[i].status)
      assert.are.equal("ae=" .. want .. "\n", res[i].body, "request " .. i)
      local x = res[i].headers["x-cache"]
      xc[x] = (xc[x] or 0) + 1
    end
    print(("\n[vary burst] X-Cache MISS=%d COALESCED=%d HIT=%d"):format(
      xc.MISS or 0, xc.COALESCED or 0, xc.HIT or 0))
    assert.are.equal(2, xc.MISS)
    assert.are.equal(2, ngx:wait_count("/slow/c", 2, 3, 0.2))
    assert.are.same({ "HIT", "gzip" }, { get("/slow/c", AE("gzip")) })
    assert.are.same({ "HIT", "identity" }, { get("/slow/c", AE("identity")) })
  end)

  it("§4.1: cache:purge(key) removes every variant of the key", function()
    assert.are.same({ "MISS", "gzip" }, { get("/ae/p", AE("gzip")) })
    assert.are.same({ "MISS", "br" }, { get("/ae/p", AE("br")) })
    assert.are.same({ "HIT", "br" }, { get("/ae/p", AE("br")) })
    local before = stats().objects
    assert.are.equal("true\n", exchange("/purge/ae/p").body)
    assert.are.equal(before - 2, stats().objects)
    assert.are.equal("false\n", exchange("/purge/ae/p").body)
    assert.are.same({ "MISS", "gzip" }, { get("/ae/p", AE("gzip")) })
    assert.are.same({ "MISS", "br" }, { get("/ae/p", AE("br")) })
    assert.are.equal(4, ngx:wait_count("/ae/p", 4, 3, 0.1))
  end)
end)
