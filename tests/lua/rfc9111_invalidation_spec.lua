-- Invalidation (RFC 9111 §4.4) and purging (issue 12 point 7): an unsafe
-- request the origin answers with 2xx/3xx removes its target's stored
-- response and those of same-host Location / Content-Location URIs;
-- cache:purge, cache:ban(prefix), cache:purge_tag(tag) from Lua, on every
-- worker; examples/proxy.lua's PURGE. Against a real nginx origin that
-- gives each response a unique id (X-Id), so a stored response is told
-- from a fresh one.
local helper = require "helper"
local origin = require "origin"

local HOSTILE_TAGS = "t0 t1 t2 t3 t4 t5 t6 t7 t8 t9 t10 t11 t12 t13 t14 t15 t16 t17 t18 t19 t20 t21 t22 t23 t24 t25 t26 t27 t28 t29 t30 t31 t32 t33 t34 t35 t36 t37 t38 t39 t40 t41 t42 t43 t44 t45 t46 t47 t48 t49 t50 t51 t52 t53 t54 t55 t56 t57 t58 t59 t60 t61 t62 t63 t64 t65 t66 t67 t68 t69 t70 t71 t72 t73 t74 t75 t76 t77 t78 t79 t80 t81 t82 t83 t84 t85 t86 t87 t88 t89 t90 t91 t92 t93 t94 t95 t96 t97 t98 t99 t100 t101 t102 t103 t104 t105 t106 t107 t108 t109 t110 t111 t112 t113 t114 t115 t116 t117 t118 t119 t120 t121 t122 t123 t124 t125 t126 t127 t128 t129 t130 t131 t132 t133 t134 t135 t136 t137 t138 t139 t140 t141 t142 t143 t144 t145 t146 t147 t148 t149 t150 t151 t152 t153 t154 t155 t156 t157 t158 t159 t160 t161 t162 t163 t164 t165 t166 t167 t168 t169 t170 t171 t172 t173 t174 t175 t176 t177 t178 t179 t180 t181 t182 t183 t184 t185 t186 t187 t188 t189 t190 t191 t192 t193 t194 t195 t196 t197 t198 t199 t200 t201 t202 t203 t204 t205 t206 t207 t208 t209 t210 t211 t212 t213 t214 t215 t216 t217 t218 t219 t220 t221 t222 t223 t224 t225 t226 t227 t228 t229 t230 t231 t232 t233 t234 t235 t236 t237 t238 t239 t240 t241 t242 t243 t244 t245 t246 t247 t248 t249 t250 t251 t252 t253 t254 t255 t256 t257 t258 t259 t260 t261 t262 t263 t264 t265 t266 t267 t268 t269 t270 t271 t272 t273 t274 t275 t276 t277 t278 t279 t280 t281 t282 t283 t284 t285 t286 t287 t288 t289 t290 t291 t292 t293 t294 t295 t296 t297 t298 t299"
local LONG_TAG = "LLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL"

local CC = 'add_header Cache-Control "max-age=60" always; add_header X-Id $request_id always;'
local LOCATIONS = [[
    location /a/ {
      ]] .. CC .. [[

      add_header Location $arg_loc always;
      add_header Content-Location $arg_cl always;
      if ($arg_st = 201) { return 201 "created $request_id\n"; }
      if ($arg_st = 303) { return 303 "/a/elsewhere"; }
      if ($arg_st = 404) { return 404 "nf $request_id\n"; }
      if ($arg_st = 500) { return 500 "err $request_id\n"; }
      echo "body $request_id";
    }
    location /red/ { ]] .. CC .. [[ add_header Surrogate-Key "red  blue" always; echo "body $request_id"; }
    location /green/ { ]] .. CC .. [[ add_header Cache-Tag "green,red" always; echo "body $request_id"; }
    location /short/ { add_header Cache-Control "max-age=1" always; add_header X-Id $request_id always;
                       add_header Surrogate-Key "short" always; echo "body $request_id"; }
    location /hostile/ { ]] .. CC .. [[ add_header Surrogate-Key "]] .. HOSTILE_TAGS .. [[" always;
                         add_header Cache-Tag "]] .. LONG_TAG .. [[ ok" always; echo "body $request_id"; }
    location /slow/ { ]] .. CC .. [[ echo_sleep 2; echo "body $request_id"; }
    location /hfm/ {
      if ($arg_priv) { add_header Cache-Control "private" always; echo "private $request_id"; }
      ]] .. CC .. [[ add_header Surrogate-Key "hfmtag" always; echo_sleep 1; echo "body $request_id";
    }
    location / { ]] .. CC .. [[ echo "body $request_id"; }
]]

-- /p/...: keyed as examples/proxy.lua (Host + path + query), the target
-- the path and query; /k/...: keyed on the path alone (the query is only
-- sent), so a status asked for in the query hits the same key; /z/...: a
-- key with a NUL byte.
local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local o = luring.origin{ name = "o", url = "@ORIGIN@" }
local c = luring.cache{ name = "c", ttl = 60, grace = 0, keep = 0 } -- expiry: plain
local small = luring.cache{ name = "small", ttl = 60, max_objects = 20 }
local text = { ["Content-Type"] = "text/plain" }
local function arg(req) return req:header("x-arg") or "" end
app:get("/_purge", function(req) return tostring(c:purge(arg(req))) end)
app:get("/_ban", function(req) return tostring(c:ban(arg(req))) end)
app:get("/_tag", function(req) return tostring(c:purge_tag(arg(req))) end)
app:get("/_small_tag", function(req) return tostring(small:purge_tag(arg(req))) end)
app:get("/_objects", function(req) return tostring(c:stats().objects) end)
app:get("/_nul", function(req) return tostring(c:purge("\0z" .. arg(req))) end)
app:route("*", "/p/*", function(req)
  local target = req.query and (req.path .. "?" .. req.query) or req.path
  local path = target:sub(3)
  return c:fetch(req, (req:header("host") or ""):lower() .. path, o, path)
end)
app:route("*", "/k/*", function(req)
  local path = req.path:sub(3)
  return c:fetch(req, path, o, req.query and (path .. "?" .. req.query) or path)
end)
app:route("*", "/s/*", function(req)
  return small:fetch(req, req.path, o, req.path:sub(3))
end)
app:get("/z/*", function(req)
  return c:fetch(req, "\0z" .. req.path:sub(3), o, req.path:sub(3))
end)
]]

local ngx, srv

local function exchange(method, path, headers, body, port)
  local conn = helper.connect(port or srv:port())
  conn:write(helper.request(method, path, headers, body))
  local res = assert(conn:response{ method = method, timeout = 10 })
  conn:close()
  return res
end

local function get(path, headers) return exchange("GET", path, headers) end
local function xc(path, headers) return get(path, headers).headers["x-cache"] end
local function call(what, a) return get(what, { ["X-Arg"] = a }).body end

-- GET path twice: stored (MISS, then HIT)
local function stored(path, headers)
  assert.are.equal("MISS", xc(path, headers), path)
  assert.are.equal("HIT", xc(path, headers), path)
end

describe("invalidation (RFC 9111 §4.4)", function()
  lazy_setup(function()
    ngx = origin.start{ locations = LOCATIONS }
    srv = helper.start((SCRIPT:gsub("@ORIGIN@", ngx:url())))
  end)
  lazy_teardown(origin.teardown)

  for _, m in ipairs{ "POST", "PUT", "PATCH", "DELETE" } do
    it("RFC 9111 §4.4: a " .. m .. " answered 200 invalidates its target URI", function()
      local p = "/p/a/" .. m:lower()
      stored(p)
      local r = exchange(m, p, nil, "x=1")
      assert.are.equal(200, r.status)
      assert.are.equal("PASS", r.headers["x-cache"])
      assert.are.equal("MISS", xc(p))
      assert.are.equal("HIT", xc(p))
    end)
  end

  for _, st in ipairs{ 201, 303 } do
    it("RFC 9111 §4.4: a POST answered " .. st .. " (non-error) invalidates", function()
      stored("/k/a/st" .. st)
      assert.are.equal(st, exchange("POST", "/k/a/st" .. st .. "?st=" .. st, nil, "x").status)
      assert.are.equal("MISS", xc("/k/a/st" .. st))
    end)
  end

  for _, st in ipairs{ 404, 500 } do
    it("RFC 9111 §4.4: a POST answered " .. st .. " (an error) does not invalidate", function()
      stored("/k/a/e" .. st)
      assert.are.equal(st, exchange("POST", "/k/a/e" .. st .. "?st=" .. st, nil, "x").status)
      assert.are.equal("HIT", xc("/k/a/e" .. st))
    end)
  end

  it("RFC 9111 §4.4: safe methods (GET with a Cookie: passed; OPTIONS) invalidate nothing", function()
    stored("/p/a/safe")
    local r = get("/p/a/safe", { Cookie = "a=1" })
    assert.are.equal("PASS", r.headers["x-cache"])
    exchange("OPTIONS", "/p/a/safe")
    assert.are.equal("HIT", xc("/p/a/safe"))
  end)

  it("RFC 9111 §4.4: Location and Content-Location on the same host are invalidated", function()
    stored("/p/a/loc1")
    stored("/p/a/loc2")
    stored("/p/a/loc3?q=1")
    exchange("POST", "/p/a/form?loc=/a/loc1&cl=http://LOCALHOST/a/loc3?q=1", nil, "x")
    assert.are.equal("MISS", xc("/p/a/loc1"))
    assert.are.equal("HIT", xc("/p/a/loc2"))
    assert.are.equal("MISS", xc("/p/a/loc3?q=1"))
    exchange("PUT", "/p/a/form2?loc=//localhost/a/loc2", nil, "x")
    assert.are.equal("MISS", xc("/p/a/loc2"))
  end)

  it("RFC 9111 §4.4: a Location on another host is not invalidated", function()
    stored("/p/a/other")
    stored("/p/a/other", { Host = "elsewhere" })
    exchange("POST", "/p/a/f3?loc=http://elsewhere/a/other", nil, "x")
    exchange("POST", "/p/a/f4?cl=http://localhost:1/a/other", nil, "x")
    assert.are.equal("HIT", xc("/p/a/other"))
    assert.are.equal("HIT", xc("/p/a/other", { Host = "elsewhere" }))
  end)

  it("RFC 9111 §4.4: an unsafe request whose client leaves before the answer still invalidates", function()
    stored("/p/slowpost/x")
    local conn = helper.connect(srv:port())
    conn:write(helper.request("DELETE", "/p/slowpost/x"))
    conn:close()
    assert.is_true(helper.wait_until(function() return xc("/p/slowpost/x") == "MISS" end, 5, 0.05))
  end)

  it("RFC 9111 §4.4: a server stopping while an unsafe request's answer is awaited exits cleanly", function()
    local s2 = helper.start((SCRIPT:gsub("@ORIGIN@", ngx:url())))
    local conn = helper.connect(s2:port())
    conn:write(helper.request("POST", "/k/slow/x", nil, "body"))
    conn:close() -- the answer is still awaited, for the invalidation
    helper.sleep(0.2)
    local rc, killed = s2:stop()
    assert.are.equal(0, rc, s2:stderr())
    assert.is_falsy(killed)
    assert.is_nil(s2:stderr():find("Sanitizer", 1, true), s2:stderr())
  end)

  it("RFC 9111 §4.4: cache:purge(key) removes the stored response", function()
    stored("/k/a/purge")
    assert.are.equal("true", call("/_purge", "/a/purge"))
    assert.are.equal("false", call("/_purge", "/a/purge"))
    assert.are.equal("MISS", xc("/k/a/purge"))
  end)

  it("RFC 9111 §4.4: cache:ban(prefix) removes exactly the keys starting with the prefix", function()
    for _, k in ipairs{ "/ban/a", "/ban/ab", "/ban/a/c", "/ban/b", "/bam/a" } do stored("/k" .. k) end
    assert.are.equal("3", call("/_ban", "/ban/a"))
    for _, k in ipairs{ "/ban/a", "/ban/ab", "/ban/a/c" } do assert.are.equal("MISS", xc("/k" .. k)) end
    for _, k in ipairs{ "/ban/b", "/bam/a" } do assert.are.equal("HIT", xc("/k" .. k)) end
    assert.are.equal("0", call("/_ban", "/nothing/"))
  end)

  it("RFC 9111 §4.4: cache:purge_tag with Surrogate-Key (spaces) and Cache-Tag (commas)", function()
    stored("/k/red/1"); stored("/k/red/2"); stored("/k/green/1"); stored("/k/plain")
    assert.are.equal("2", call("/_tag", "blue"))
    assert.are.equal("MISS", xc("/k/red/1"))
    assert.are.equal("HIT", xc("/k/green/1"))
    assert.are.equal("2", call("/_tag", "red")) -- /red/1 stored again, /green/1
    assert.are.equal("MISS", xc("/k/green/1"))
    assert.are.equal("MISS", xc("/k/red/2")) -- went with blue
    assert.are.equal("HIT", xc("/k/plain"))
    assert.are.equal("0", call("/_tag", "nosuchtag"))
  end)

  it("RFC 9111 §4.4: evicted and expired objects leave the tag lists (purge after churn)", function()
    for i = 1, 100 do get("/s/red/" .. i) end
    -- max_objects 20: the evicted 80 left the lists
    assert.are.equal("20", call("/_small_tag", "red"))
    assert.are.equal("0", call("/_small_tag", "blue"))
    stored("/k/short/x")
    helper.sleep(1.3)
    assert.are.equal("MISS", xc("/k/short/x")) -- expired, replaced
    assert.are.equal("1", call("/_tag", "short"))
    assert.are.equal("MISS", xc("/k/short/x"))
  end)

  it("RFC 9111 §4.4 (hostile origin): 300 tags and a 300-byte tag cost 64 tags at most", function()
    stored("/k/hostile/1")
    assert.are.equal("0", call("/_tag", "t64"))
    assert.are.equal("0", call("/_tag", LONG_TAG))
    assert.are.equal("1", call("/_tag", "t63"))
    stored("/k/hostile/1")
    assert.are.equal("0", call("/_tag", "ok")) -- after the 64th: skipped
    assert.are.equal("1", call("/_tag", "t0"))
  end)

  it("RFC 9111 §4.4: a key with a NUL byte is purged by its exact bytes", function()
    stored("/z/plain")
    assert.are.equal("false", call("/_purge", "z/plain"))
    assert.are.equal("true", call("/_nul", "/plain"))
    assert.are.equal("MISS", xc("/z/plain"))
  end)

  it("RFC 9111 §4.4: cache:ban(\"\") removes everything", function()
    stored("/k/all/1"); stored("/k/all/2")
    assert.is_true(tonumber(call("/_ban", "")) >= 2)
    assert.are.equal("0", get("/_objects").body)
    assert.are.equal("MISS", xc("/k/all/1"))
  end)

  -- A fill started after a hit-for-miss marker is indexed only when its
  -- head comes (storable after all): a purge, ban or tag purge made while
  -- it is in flight can't find it, and before, its head stored what was
  -- invalidated meanwhile. /hfm/ answers in 1 s, tagged hfmtag; with
  -- ?priv=1 at once, private (the marker).
  for _, case in ipairs{
    { "purge", "/_purge", "/hfm/purge" },
    { "ban", "/_ban", "/hfm/" },
    { "purge_tag", "/_tag", "hfmtag" },
  } do
    it("RFC 9111 §4.4: a " .. case[1] .. " while a fill after a hit-for-miss marker is in flight: it is not stored", function()
      local p = "/k/hfm/" .. case[1]
      assert.are.equal("private", get(p .. "?priv=1").body:match("^%a+"))
      local conn = helper.connect(srv:port())
      conn:write(helper.request("GET", p)) -- its own fill: the marker
      helper.sleep(0.3)
      call(case[2], case[3])
      local during = assert(conn:response{ timeout = 10 })
      conn:close()
      assert.are.equal(200, during.status)
      assert.are.equal("body", during.body:match("^%a+"))
      local after = get(p)
      assert.are.equal("MISS", after.headers["x-cache"])
      assert.are_not.equal(during.body, after.body)
      assert.are.equal("HIT", xc(p))
    end)
  end

  it("RFC 9111 §4.4: a purge_tag while a plain miss is in flight (its tags not known yet): it is not stored", function()
    local p = "/k/hfm/tagmiss"
    local conn = helper.connect(srv:port())
    conn:write(helper.request("GET", p))
    helper.sleep(0.3)
    call("/_tag", "hfmtag")
    local during = assert(conn:response{ timeout = 10 })
    conn:close()
    assert.are.equal("MISS", during.headers["x-cache"])
    local after = get(p)
    assert.are.equal("MISS", after.headers["x-cache"])
    assert.are_not.equal(during.body, after.body)
  end)

  it("RFC 9111 §4.4: an invalidation of other keys or tags during such a fill leaves it stored", function()
    local p = "/k/hfm/kept"
    get(p .. "?priv=1")
    local conn = helper.connect(srv:port())
    conn:write(helper.request("GET", p))
    helper.sleep(0.3)
    call("/_purge", "/hfm/kep")
    call("/_ban", "/hfm/kept/")
    call("/_tag", "othertag")
    local during = assert(conn:response{ timeout = 10 })
    conn:close()
    local after = get(p)
    assert.are.equal("HIT", after.headers["x-cache"])
    assert.are.equal(during.body, after.body)
  end)
end)

describe("invalidation on every worker (RFC 9111 §4.4)", function()
  local srv2
  lazy_setup(function()
    ngx = origin.start{ locations = LOCATIONS }
    srv2 = helper.start((SCRIPT:gsub("@ORIGIN@", ngx:url())), { args = { "--workers", "2" } })
  end)
  lazy_teardown(origin.teardown)

  local function objects_everywhere(n)
    for _ = 1, 12 do
      if exchange("GET", "/_objects", nil, nil, srv2:port()).body ~= tostring(n) then return false end
    end
    return true
  end

  for _, case in ipairs{
    { "purge", "/_purge", "/w/x" },
    { "ban", "/_ban", "/w/" },
    { "purge_tag", "/_tag", "red" },
    { "a POST", nil, "/w/x" },
  } do
    it("RFC 9111 §4.4: " .. case[1] .. " reaches the cache of every worker", function()
      -- new connections until both workers store both (a worker still
      -- starting takes no connection yet)
      assert.is_true(helper.wait_until(function()
        for _ = 1, 6 do
          exchange("GET", "/k/red/w", nil, nil, srv2:port())
          exchange("GET", "/k/w/x", nil, nil, srv2:port())
        end
        return objects_everywhere(2)
      end, 10, 0.05))
      if case[2] then
        exchange("GET", case[2], { ["X-Arg"] = case[3] }, nil, srv2:port())
      else
        exchange("POST", "/k" .. case[3], nil, "x", srv2:port())
      end
      assert.is_true(helper.wait_until(function() return objects_everywhere(1) end, 3, 0.05))
      exchange("GET", "/_ban", { ["X-Arg"] = "" }, nil, srv2:port())
      assert.is_true(helper.wait_until(function() return objects_everywhere(0) end, 3, 0.05))
    end)
  end
end)

describe("examples/proxy.lua PURGE (RFC 9111 §4.4)", function()
  local px
  lazy_setup(function()
    ngx = origin.start{ locations = LOCATIONS }
    px = helper.start(nil, { file = helper.repo_root() .. "/examples/proxy.lua",
                             env = { ORIGIN = ngx:url() } })
  end)
  lazy_teardown(origin.teardown)

  local function pget(path, h) return exchange("GET", path, h, nil, px:port()) end
  local function purge(path, h) return exchange("PURGE", path, h, nil, px:port()) end

  it("RFC 9111 §4.4: PURGE from an allowed address removes the URL (200), then 404", function()
    assert.are.equal("MISS", pget("/pp/a").headers["x-cache"])
    assert.are.equal("HIT", pget("/pp/a").headers["x-cache"])
    local r = purge("/pp/a")
    assert.are.equal(200, r.status)
    assert.are.equal("purged 1\n", r.body)
    assert.are.equal(404, purge("/pp/a").status)
    assert.are.equal("MISS", pget("/pp/a").headers["x-cache"])
  end)

  it("RFC 9111 §4.4: PURGE with X-Ban: prefix and with Surrogate-Key", function()
    pget("/pp/b/1"); pget("/pp/b/2"); pget("/pp/c")
    local r = purge("/pp/b/", { ["X-Ban"] = "prefix" })
    assert.are.equal("purged 2\n", r.body)
    assert.are.equal("HIT", pget("/pp/c").headers["x-cache"])
    pget("/red/1"); pget("/green/1")
    assert.are.equal("purged 2\n", purge("/", { ["Surrogate-Key"] = "blue green" }).body)
  end)

  it("RFC 9111 §4.4: PURGE from an address not in PURGE_ALLOW gets 403", function()
    local other = helper.start(nil, { file = helper.repo_root() .. "/examples/proxy.lua",
                                      env = { ORIGIN = ngx:url(), PURGE_ALLOW = "10.9.9.9" } })
    exchange("GET", "/pp/f", nil, nil, other:port())
    local r = exchange("PURGE", "/pp/f", nil, nil, other:port())
    assert.are.equal(403, r.status)
    assert.are.equal("HIT", exchange("GET", "/pp/f", nil, nil, other:port()).headers["x-cache"])
    other:stop()
  end)

  it("RFC 9111 §4.4: a POST through proxy.lua invalidates the URL", function()
    pget("/pp/post")
    assert.are.equal("HIT", pget("/pp/post").headers["x-cache"])
    exchange("POST", "/pp/post", nil, "a=1", px:port())
    assert.are.equal("MISS", pget("/pp/post").headers["x-cache"])
  end)
end)
