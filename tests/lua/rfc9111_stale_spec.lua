-- RFC 9111 stale responses and validation, end to end (issue 12 points 3
-- and 4): revalidation with If-None-Match / If-Modified-Since and the 304
-- that freshens a stored response (§4.3.1, §4.3.3, §4.3.4), grace with one
-- background refresh (§4.2.4; RFC 5861 stale-while-revalidate, Varnish's
-- grace), stale-if-error (RFC 5861 §4), what forbids serving stale
-- (§5.2.2.2 must-revalidate, §5.2.2.8 proxy-revalidate, §5.2.2.4
-- no-cache), the client's no-cache / max-age / max-stale / min-fresh /
-- only-if-cached / no-store (§5.2.1).
--
-- The origin (written below, Python) answers /<name> as its config file
-- <dir>/<name>.cfg says (key=value lines, re-read per request): cc
-- (Cache-Control), etag, lm (Last-Modified), body, delay (seconds), mode
-- (ok | 500 | always304), etag304 (the ETag a 304 carries), extra304 (a
-- field line added to a 304), extra (one added to a 200), echo (a request
-- field whose value is appended to the body). A request whose If-None-Match equals etag,
-- or (without If-None-Match) whose If-Modified-Since equals lm, gets a 304.
-- Every response carries X-Ver: <how many requests /<name> had>. Each
-- request is logged as "<name> <If-None-Match or -> <If-Modified-Since or
-- ->" in <dir>/log.
local helper = require "helper"
local socket = require "socket"

local now = helper.now

local ORIGIN_PY = [=[
import os, socket, socketserver, sys, threading, time
PORT, DIR = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
counts = {}

def cfg(name):
    c = {}
    try:
        with open(os.path.join(DIR, name + ".cfg"), encoding="latin-1") as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition("=")
                if k:
                    c[k] = v
    except OSError:
        pass
    return c

def answer(path, fields):
    name = path.split("?", 1)[0].strip("/")
    c = cfg(name)
    inm, ims = fields.get("if-none-match"), fields.get("if-modified-since")
    with lock:
        counts[name] = counts.get(name, 0) + 1
        n = counts[name]
        with open(os.path.join(DIR, "log"), "a") as log:
            log.write("%s %s %s\n" % (name, inm or "-", ims or "-"))
    time.sleep(float(c.get("delay", "0")))
    mode = c.get("mode", "ok")
    if mode == "500":
        return b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 6\r\n\r\nerror\n"
    head = "X-Ver: %d\r\n" % n
    if c.get("cc"):
        head += "Cache-Control: %s\r\n" % c["cc"]
    etag, lm = c.get("etag"), c.get("lm")
    hit = (inm is not None and etag is not None and inm == etag) or \
          (inm is None and ims is not None and lm is not None and ims == lm)
    if hit or mode == "always304":
        e = c.get("etag304", etag)
        if e:
            head += "ETag: %s\r\n" % e
        if c.get("extra304"):
            head += c["extra304"] + "\r\n"
        return ("HTTP/1.1 304 Not Modified\r\n" + head + "\r\n").encode("latin-1")
    if etag:
        head += "ETag: %s\r\n" % etag
    if lm:
        head += "Last-Modified: %s\r\n" % lm
    if c.get("extra"):
        head += c["extra"] + "\r\n"
    b = c.get("body", "body of " + name)
    if c.get("echo"):
        b += " " + fields.get(c["echo"], "-")
    body = b.encode("latin-1")
    return ("HTTP/1.1 200 OK\r\n" + head + "Content-Length: %d\r\n\r\n" % len(body)).encode("latin-1") + body

class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = self.request.recv(65536)
                if not data:
                    return
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            fields = {}
            for l in lines[1:]:
                k, _, v = l.partition(":")
                fields[k.strip().lower()] = v.strip()
            self.request.sendall(answer(lines[0].split(" ")[1], fields))

class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

srv = Server(("127.0.0.1", PORT), Handler)
threading.Timer(600, os._exit, args=(0,)).start()
srv.serve_forever()
]=]

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local o = luring.origin{ name = "o", url = "@ORIGIN@", keepalive = 64 }
local o2 = luring.origin{ name = "o2", url = "@ORIGIN2@", connect_timeout = 1,
                          first_byte_timeout = 2 }
local caches = {
  -- no grace: stale objects are only revalidated (keep) or replace errors
  nograce = luring.cache{ name = "nograce", ttl = 1, grace = 0, keep = 60 },
  grace = luring.cache{ name = "grace", ttl = 1, grace = 5, keep = 60 },
  sie = luring.cache{ name = "sie", ttl = 1, grace = 0, keep = 0, stale_if_error = 2 },
  reval = luring.cache{ name = "reval", ttl = 1, grace = 0, client_no_cache = "revalidate" },
  revalg = luring.cache{ name = "revalg", ttl = 1, grace = 5, client_no_cache = "revalidate" },
}
local text = { ["Content-Type"] = "text/plain" }
app:get("/stats/:cache", function(req)
  local out = {}
  for k, v in pairs(caches[req.params.cache]:stats()) do
    out[#out + 1] = k .. "=" .. tostring(v)
  end
  return 200, text, table.concat(out, "\n") .. "\n"
end)
app:get("/inval/:cache/:how/:arg", function(req)
  local c, how, arg = caches[req.params.cache], req.params.how, req.params.arg
  local n = how == "purge" and c:purge("/" .. arg) or how == "ban" and c:ban("/" .. arg)
            or c:purge_tag(arg)
  return 200, text, tostring(n)
end)
app:get("/c/:cache/:name", function(req)
  return caches[req.params.cache]:fetch(req, "/" .. req.params.name, o)
end)
app:get("/d/:cache/:name", function(req)
  return caches[req.params.cache]:fetch(req, "/" .. req.params.name, o2)
end)
]]

local Origin = {}
Origin.__index = Origin

local function start_origin()
  local self = setmetatable({ dir = helper.mktempdir(), port = helper.free_port() }, Origin)
  helper.writefile(self.dir .. "/origin.py", ORIGIN_PY)
  self.pid = helper.spawn(self.dir, { "python3", self.dir .. "/origin.py", tostring(self.port), self.dir })
  assert(helper.wait_until(function()
    local c = socket.tcp()
    c:settimeout(0.2)
    local r = c:connect("127.0.0.1", self.port)
    c:close()
    return r
  end, 5), "origin did not listen: " .. tostring(helper.readfile(self.dir .. "/stderr")))
  return self
end

function Origin:url() return "http://127.0.0.1:" .. self.port end

-- set /<name>'s config: t is { cc = ..., etag = ..., ... }
function Origin:set(name, t)
  local lines = {}
  for k, v in pairs(t) do lines[#lines + 1] = k .. "=" .. v end
  helper.writefile(self.dir .. "/" .. name .. ".cfg", table.concat(lines, "\n") .. "\n")
end

-- the requests /<name> had: { { inm = ..., ims = ... }, ... }
function Origin:log(name)
  local out = {}
  for line in (helper.readfile(self.dir .. "/log") or ""):gmatch("[^\n]+") do
    local n, inm, ims = line:match("^(%S+) (.-) (%S.*)$")
    if n == name then
      out[#out + 1] = { inm = inm ~= "-" and inm or nil, ims = ims ~= "-" and ims or nil }
    end
  end
  return out
end

function Origin:stop()
  if self.pid then
    os.execute("kill -KILL " .. math.floor(self.pid) .. " 2>/dev/null")
    self.pid = nil
  end
end

local LM = "Wed, 21 Oct 2015 07:28:00 GMT"

describe("RFC 9111 stale responses and validation", function()
  local srv, orig, orig2
  lazy_setup(function()
    orig = start_origin()
    orig2 = start_origin()
    local script = SCRIPT:gsub("@ORIGIN@", orig:url()):gsub("@ORIGIN2@", orig2:url())
    srv = helper.start(script, { args = { "--workers", "1" } })
  end)
  lazy_teardown(helper.teardown_with(function()
    if orig then orig:stop() end
    if orig2 then orig2:stop() end
  end))

  local function get(path, headers) return helper.get(srv:port(), path, headers) end

  local function stats(name)
    local res = get("/stats/" .. name)
    local t = {}
    for k, v in res.body:gmatch("([%w_]+)=([^\n]*)") do t[k] = tonumber(v) or v end
    return t
  end

  local function timed(path, headers)
    local t0 = now()
    local res = get(path, headers)
    return res, now() - t0
  end

  it("§4.3.1, §4.3.4: a stale response with an ETag is revalidated with If-None-Match; the 304 freshens it", function()
    orig:set("etag", { cc = "max-age=1", etag = '"v1"', body = "etag body\0\255 exact" })
    local a = get("/c/nograce/etag")
    assert.are.equal(200, a.status)
    assert.are.equal("MISS", a.headers["x-cache"])
    assert.are.equal("1", a.headers["x-ver"])
    helper.sleep(1.2)
    local b = get("/c/nograce/etag")
    assert.are.equal(200, b.status)
    assert.are.equal("REVALIDATED", b.headers["x-cache"])
    assert.are.equal("etag body\0\255 exact", b.body, helper.diff("etag body\0\255 exact", b.body))
    assert.are.equal("2", b.headers["x-ver"]) -- the 304's field replaced the stored one
    assert.are.equal('"v1"', b.headers["etag"])
    assert.are.equal(tostring(#a.body), b.headers["content-length"])
    local log = orig:log("etag")
    assert.are.equal(2, #log)
    assert.is_nil(log[1].inm)
    assert.are.equal('"v1"', log[2].inm)
    -- freshened: a hit now, with the new fields, age from the 304
    local c = get("/c/nograce/etag")
    assert.are.equal("HIT", c.headers["x-cache"])
    assert.are.equal("2", c.headers["x-ver"])
    assert.are.equal("0", c.headers["age"])
    assert.are.equal(a.body, c.body)
    assert.are.equal(2, #orig:log("etag"))
    assert.is_true(stats("nograce").revalidated >= 1)
  end)

  it("§4.3.1: a response with only Last-Modified is revalidated with If-Modified-Since", function()
    orig:set("lm", { cc = "max-age=1", lm = LM, body = "lm body" })
    assert.are.equal("MISS", get("/c/nograce/lm").headers["x-cache"])
    helper.sleep(1.2)
    local b = get("/c/nograce/lm")
    assert.are.equal("REVALIDATED", b.headers["x-cache"])
    assert.are.equal("lm body", b.body)
    local log = orig:log("lm")
    assert.are.equal(2, #log)
    assert.is_nil(log[2].inm)
    assert.are.equal(LM, log[2].ims)
  end)

  it("§4.3.3: a 200 to the revalidation replaces the stored response", function()
    orig:set("replace", { cc = "max-age=1", etag = '"v1"', body = "old body" })
    assert.are.equal("old body", get("/c/nograce/replace").body)
    orig:set("replace", { cc = "max-age=60", etag = '"v2"', body = "new body" })
    helper.sleep(1.2)
    local b = get("/c/nograce/replace")
    assert.are.equal("MISS", b.headers["x-cache"])
    assert.are.equal("new body", b.body)
    assert.are.equal('"v1"', orig:log("replace")[2].inm)
    local c = get("/c/nograce/replace")
    assert.are.equal("HIT", c.headers["x-cache"])
    assert.are.equal("new body", c.body)
    assert.are.equal('"v2"', c.headers["etag"])
  end)

  it("§4.3.1: past grace, 30 clients wait for one conditional request and all get the freshened response", function()
    orig:set("coal", { cc = "max-age=1", etag = '"k1"', body = "coalesced body" })
    get("/c/nograce/coal")
    orig:set("coal", { cc = "max-age=60", etag = '"k1"', body = "coalesced body", delay = "0.5" })
    helper.sleep(1.2)
    local results = helper.burst(srv:port(), 30, "/c/nograce/coal", 10)
    for i = 1, 30 do
      local r = results[i]
      assert(not r.err, tostring(r.err))
      assert.are.equal(200, r.status)
      assert.are.equal("coalesced body", r.body)
      assert.are.equal("REVALIDATED", r.headers["x-cache"])
      assert.are.equal("2", r.headers["x-ver"])
    end
    local log = orig:log("coal")
    assert.are.equal(2, #log)
    assert.are.equal('"k1"', log[2].inm)
  end)

  it("§4.3.1: the client's own conditionals never reach the origin on a revalidation", function()
    orig:set("own", { cc = "max-age=1", etag = '"w1"', body = "own body" })
    get("/c/nograce/own")
    helper.sleep(1.2)
    local b = get("/c/nograce/own", { ["If-None-Match"] = '"zzz"', ["If-Modified-Since"] = LM })
    assert.are.equal(200, b.status)
    assert.are.equal("own body", b.body)
    local log = orig:log("own")
    assert.are.equal('"w1"', log[2].inm)
    assert.is_nil(log[2].ims)
  end)

  it("§4.2.4 grace: a stale response is served at once to 50 clients while one background refresh runs", function()
    orig:set("grace", { cc = "max-age=1", etag = '"g1"', body = "grace old" })
    assert.are.equal("grace old", get("/c/grace/grace").body)
    orig:set("grace", { cc = "max-age=60", etag = '"g2"', body = "grace new", delay = "1" })
    helper.sleep(1.2)
    local results = helper.burst(srv:port(), 50, "/c/grace/grace", 10)
    for i = 1, 50 do
      local r = results[i]
      assert(not r.err, tostring(r.err))
      assert.are.equal(200, r.status)
      assert.are.equal("grace old", r.body)
      assert.are.equal("STALE", r.headers["x-cache"])
      assert(r.latency < 0.6, "waited for the origin: " .. r.latency)
    end
    helper.sleep(1.3)
    assert.are.equal(2, #orig:log("grace")) -- exactly one background request
    assert.are.equal('"g1"', orig:log("grace")[2].inm)
    local c = get("/c/grace/grace")
    assert.are.equal("HIT", c.headers["x-cache"])
    assert.are.equal("grace new", c.body)
    assert.are.equal(2, #orig:log("grace"))
    assert.is_true(stats("grace").refreshes >= 1)
  end)

  it("§4.2.4 grace: a 304 to the background refresh freshens the stored response", function()
    orig:set("grace304", { cc = "max-age=1", etag = '"h1"', body = "kept body" })
    get("/c/grace/grace304")
    helper.sleep(1.2)
    local b = get("/c/grace/grace304")
    assert.are.equal("STALE", b.headers["x-cache"])
    assert.are.equal("1", b.headers["x-ver"])
    helper.wait_until(function() return #orig:log("grace304") == 2 end, 3)
    helper.sleep(0.1)
    local c = get("/c/grace/grace304")
    assert.are.equal("HIT", c.headers["x-cache"])
    assert.are.equal("2", c.headers["x-ver"])
    assert.are.equal("kept body", c.body)
  end)

  it("§4.1, §4.2.4: each variant is served stale and refreshed on its own", function()
    orig:set("vary", { cc = "max-age=1", extra = "Vary: X-V", echo = "x-v", body = "vb" })
    assert.are.equal("vb a", get("/c/grace/vary", { ["X-V"] = "a" }).body)
    assert.are.equal("vb b", get("/c/grace/vary", { ["X-V"] = "b" }).body)
    orig:set("vary", { cc = "max-age=60", extra = "Vary: X-V", echo = "x-v", body = "new" })
    helper.sleep(1.2)
    local a = get("/c/grace/vary", { ["X-V"] = "a" })
    assert.are.equal("STALE", a.headers["x-cache"])
    assert.are.equal("vb a", a.body)
    local b = get("/c/grace/vary", { ["X-V"] = "b" })
    assert.are.equal("STALE", b.headers["x-cache"])
    assert.are.equal("vb b", b.body)
    helper.wait_until(function() return #orig:log("vary") == 4 end, 3)
    helper.sleep(0.1)
    local a2 = get("/c/grace/vary", { ["X-V"] = "a" })
    assert.are.equal("HIT", a2.headers["x-cache"])
    assert.are.equal("new a", a2.body)
    assert.are.equal("new b", get("/c/grace/vary", { ["X-V"] = "b" }).body)
    assert.are.equal(4, #orig:log("vary"))
  end)

  it("RFC 5861 §3: stale-while-revalidate from the origin gives grace per response", function()
    orig:set("swr", { cc = "max-age=1, stale-while-revalidate=5", body = "swr old" })
    get("/c/nograce/swr")
    orig:set("swr", { cc = "max-age=60", body = "swr new", delay = "1" })
    helper.sleep(1.2)
    local b, t = timed("/c/nograce/swr")
    assert.are.equal("STALE", b.headers["x-cache"])
    assert.are.equal("swr old", b.body)
    assert(t < 0.6, "waited for the origin: " .. t)
    helper.sleep(1.3)
    assert.are.equal("swr new", get("/c/nograce/swr").body)
  end)

  -- s-maxage: "incorporates the semantics of the proxy-revalidate response
  -- directive for a shared cache" (§5.2.2.10), and §4.2.4 names "an
  -- applicable s-maxage" among what forbids a stale response.
  for _, d in ipairs{ { "must-revalidate", "§5.2.2.2" }, { "proxy-revalidate", "§5.2.2.8" },
                      { "s-maxage=1", "§5.2.2.10" } } do
    it(d[2] .. ": " .. d[1] .. " forbids serving stale: the request waits for the revalidation", function()
      local name = d[1]:gsub("[-=]", "")
      orig:set(name, { cc = "max-age=1, " .. d[1], etag = '"m1"', body = "mr body" })
      get("/c/grace/" .. name)
      orig:set(name, { cc = "max-age=1, " .. d[1], etag = '"m1"', body = "mr body", delay = "0.5" })
      helper.sleep(1.2)
      local b, t = timed("/c/grace/" .. name)
      assert.are.equal("REVALIDATED", b.headers["x-cache"])
      assert.are.equal("mr body", b.body)
      assert(t >= 0.45, "served stale: " .. t)
      assert.are.equal(2, #orig:log(name))
    end)
  end

  -- §4.4: an invalidation (purge, ban, purge_tag) that comes while a
  -- refresh of the stored response is in flight must win: the refresh's
  -- answer goes to the requests waiting for it, but is not stored, or a
  -- 304 would bring the purged response back, fresh.
  for _, cache in ipairs{ "nograce", "grace" } do
    for _, answer in ipairs{ "304", "200" } do
      for _, how in ipairs{ "purge", "ban", "tag" } do
        it("§4.4, §4.3.3: " .. how .. " during a " .. cache .. " refresh answered " .. answer ..
           " leaves nothing stored", function()
          local name = "inv" .. cache .. answer .. how
          local arg = how == "tag" and "tag" .. name or name
          orig:set(name, { cc = "max-age=1", etag = '"i1"', body = "purged body",
                           extra = "Surrogate-Key: tag" .. name })
          assert.are.equal("purged body", get("/c/" .. cache .. "/" .. name).body)
          helper.sleep(1.2)
          local new = answer == "304" and { etag = '"i1"', body = "purged body" }
                                      or { etag = '"i2"', body = "new body" }
          orig:set(name, { cc = "max-age=60", etag = new.etag, body = new.body, delay = "0.5",
                           extra = "Surrogate-Key: tag" .. name })
          local c = helper.connect(srv:port())
          assert(c:send(helper.request("GET", "/c/" .. cache .. "/" .. name)))
          helper.sleep(0.2) -- the refresh is waiting for the origin
          local removed = get("/inval/" .. cache .. "/" .. how .. "/" .. arg).body
          assert(removed == "true" or removed == "1", removed) -- the stale one
          local during = c:response()
          c:close()
          assert.are.equal(200, during.status)
          helper.sleep(0.6) -- the refresh is done (also a background one)
          orig:set(name, { cc = "max-age=60", etag = '"i3"', body = "after" })
          local after = get("/c/" .. cache .. "/" .. name)
          assert.are.equal("after", after.body)
          assert.are.equal("MISS", after.headers["x-cache"])
        end)
      end
    end
  end

  it("§5.2.2.4: a no-cache response is never served without the origin", function()
    orig:set("nocache", { cc = "no-cache, max-age=60", etag = '"n1"', body = "nc body" })
    get("/c/grace/nocache")
    local b = get("/c/grace/nocache")
    assert.are_not.equal("HIT", b.headers["x-cache"])
    assert.are_not.equal("STALE", b.headers["x-cache"])
    assert.are.equal(2, #orig:log("nocache"))
  end)

  it("RFC 5861 §4 stale-if-error: a 500 after expiry gives the stale response within the window, the error after it", function()
    orig:set("sie500", { cc = "max-age=1", body = "sie body" })
    get("/c/sie/sie500")
    orig:set("sie500", { mode = "500" })
    helper.sleep(1.2)
    local b = get("/c/sie/sie500")
    assert.are.equal(200, b.status)
    assert.are.equal("STALE", b.headers["x-cache"])
    assert.are.equal("sie body", b.body)
    helper.sleep(2)
    local c = get("/c/sie/sie500")
    assert.are.equal(500, c.status)
  end)

  it("RFC 5861 §4: stale-if-error from the origin's response sets the window", function()
    orig:set("siecc", { cc = "max-age=1, stale-if-error=2", body = "siecc body" })
    get("/c/nograce/siecc")
    orig:set("siecc", { mode = "500" })
    helper.sleep(1.2)
    local b = get("/c/nograce/siecc")
    assert.are.equal(200, b.status)
    assert.are.equal("STALE", b.headers["x-cache"])
    assert.are.equal("siecc body", b.body)
  end)

  it("RFC 5861 §4: must-revalidate wins over stale-if-error", function()
    orig:set("siemr", { cc = "max-age=1, must-revalidate, stale-if-error=5", body = "x" })
    get("/c/sie/siemr")
    orig:set("siemr", { mode = "500" })
    helper.sleep(1.2)
    assert.are.equal(500, get("/c/sie/siemr").status)
  end)

  it("§4.2.4, §5.2.2.10: s-maxage forbids stale-if-error (the cache's or the response's)", function()
    orig:set("siesm", { cc = "s-maxage=1, stale-if-error=5", body = "x" })
    get("/c/sie/siesm")
    orig:set("siesm", { mode = "500" })
    helper.sleep(1.2)
    assert.are.equal(500, get("/c/sie/siesm").status)
  end)

  it("§5.2.1.4: the client's no-cache and max-age=0 revalidate when client_no_cache = \"revalidate\"", function()
    orig:set("cnc", { cc = "max-age=60", etag = '"c1"', body = "cnc body" })
    assert.are.equal("MISS", get("/c/reval/cnc").headers["x-cache"])
    assert.are.equal("HIT", get("/c/reval/cnc").headers["x-cache"])
    local b = get("/c/reval/cnc", { ["Cache-Control"] = "no-cache" })
    assert.are.equal("REVALIDATED", b.headers["x-cache"])
    assert.are.equal("cnc body", b.body)
    local c = get("/c/reval/cnc", { ["Cache-Control"] = "max-age=0" })
    assert.are.equal("REVALIDATED", c.headers["x-cache"])
    local log = orig:log("cnc")
    assert.are.equal(3, #log)
    assert.are.equal('"c1"', log[3].inm)
    -- ignored by default (as Varnish)
    orig:set("cnc2", { cc = "max-age=60", etag = '"c1"', body = "cnc body" })
    get("/c/nograce/cnc2")
    assert.are.equal("HIT", get("/c/nograce/cnc2", { ["Cache-Control"] = "no-cache" }).headers["x-cache"])
    assert.are.equal(1, #orig:log("cnc2"))
  end)

  it("§5.2.1.5: a request's no-store: its response (miss, stale, after a marker) is not stored; a fresh hit is served", function()
    orig:set("nsreq", { cc = "max-age=1", etag = '"ns1"', body = "ns body" })
    local nostore = { ["Cache-Control"] = "no-store" }
    local a = get("/c/grace/nsreq", nostore)
    assert.are.equal("ns body", a.body)
    assert.are.equal("MISS", get("/c/grace/nsreq").headers["x-cache"]) -- nothing was stored
    assert.are.equal("HIT", get("/c/grace/nsreq", nostore).headers["x-cache"])
    helper.sleep(1.2) -- stale: no refresh for a no-store request, no 304 stored
    orig:set("nsreq", { cc = "max-age=60", etag = '"ns1"', body = "ns body 2" })
    local b = get("/c/grace/nsreq", nostore)
    assert.are.equal("MISS", b.headers["x-cache"])
    assert.are.equal("ns body 2", b.body)
    local n = #orig:log("nsreq")
    local c = get("/c/grace/nsreq") -- the stale one is still there, refreshed now
    assert.are.equal("STALE", c.headers["x-cache"])
    assert.are.equal("ns body", c.body)
    helper.sleep(0.3)
    assert.are.equal(n + 1, #orig:log("nsreq"))
    -- after a hit-for-miss marker
    orig:set("nsreq2", { cc = "private", body = "p" })
    get("/c/grace/nsreq2")
    orig:set("nsreq2", { cc = "max-age=60", body = "shared" })
    assert.are.equal("shared", get("/c/grace/nsreq2", nostore).body)
    assert.are_not.equal("HIT", get("/c/grace/nsreq2").headers["x-cache"])
  end)

  -- the request's max-age, max-stale and min-fresh (§5.2.1.1-3), honoured
  -- with client_no_cache = "revalidate" (caches reval: no grace; revalg:
  -- 5 s of grace)
  local function cc(v) return { ["Cache-Control"] = v } end

  it("§5.2.1.2: max-stale=N: a response stale by at most N s is served at once, refreshed in the background", function()
    orig:set("ms", { cc = "max-age=1", etag = '"s1"', body = "ms old" })
    assert.are.equal("MISS", get("/c/reval/ms").headers["x-cache"])
    orig:set("ms", { cc = "max-age=60", etag = '"s2"', body = "ms new", delay = "0.6" })
    helper.sleep(1.2)
    local b, t = timed("/c/reval/ms", cc("max-stale=30"))
    assert.are.equal(200, b.status)
    assert.are.equal("STALE", b.headers["x-cache"])
    assert.are.equal("ms old", b.body)
    assert(t < 0.45, "waited for the origin: " .. t)
    assert(helper.wait_until(function() return #orig:log("ms") == 2 end, 3))
    helper.sleep(0.8) -- the background refresh's answer is stored
    local c = get("/c/reval/ms")
    assert.are.equal("HIT", c.headers["x-cache"])
    assert.are.equal("ms new", c.body)
    assert.are.equal(2, #orig:log("ms"))
  end)

  it("§5.2.1.2: without max-stale, or stale by more than its N s, the request waits for the revalidation", function()
    for _, n in ipairs{ "ms0", "ms1", "msany" } do
      orig:set(n, { cc = "max-age=1", etag = '"x1"', body = n .. " body" })
      assert.are.equal("MISS", get("/c/reval/" .. n).headers["x-cache"])
      orig:set(n, { cc = "max-age=1", etag = '"x1"', body = n .. " body", delay = "0.5" })
    end
    helper.sleep(2.3) -- stale by 1.3 s
    local a, ta = timed("/c/reval/ms0")
    assert.are.equal("REVALIDATED", a.headers["x-cache"])
    assert(ta >= 0.45, "served stale: " .. ta)
    local b, tb = timed("/c/reval/ms1", cc("max-stale=1"))
    assert.are.equal("REVALIDATED", b.headers["x-cache"])
    assert.are.equal("ms1 body", b.body)
    assert(tb >= 0.45, "served stale: " .. tb)
    assert.are.equal('"x1"', orig:log("ms1")[2].inm)
    -- max-stale without a value: any staleness
    local c, tc = timed("/c/reval/msany", cc("max-stale"))
    assert.are.equal("STALE", c.headers["x-cache"])
    assert.are.equal("msany body", c.body)
    assert(tc < 0.45, "waited for the origin: " .. tc)
  end)

  it("§4.2.4, §5.2.2.2, §5.2.2.8, §5.2.2.10: max-stale never serves a must-revalidate, proxy-revalidate or s-maxage response stale", function()
    local ds = { "must-revalidate", "proxy-revalidate", "s-maxage=1" }
    for i, d in ipairs(ds) do
      orig:set("msmr" .. i, { cc = "max-age=1, " .. d, etag = '"r1"', body = "mr" })
      get("/c/revalg/msmr" .. i)
      orig:set("msmr" .. i, { cc = "max-age=1, " .. d, etag = '"r1"', body = "mr", delay = "0.5" })
    end
    helper.sleep(1.2)
    for i, d in ipairs(ds) do
      local b, t = timed("/c/revalg/msmr" .. i, cc("max-stale=60"))
      assert.are.equal("REVALIDATED", b.headers["x-cache"], d)
      assert.are.equal("mr", b.body)
      assert(t >= 0.45, d .. ": served stale: " .. t)
      assert.are.equal(2, #orig:log("msmr" .. i))
    end
  end)

  it("§5.2.1.3: min-fresh=N: a response fresh for less than N more seconds is revalidated, one fresh long enough is a hit", function()
    orig:set("mf", { cc = "max-age=60", etag = '"f1"', body = "mf body" })
    assert.are.equal("MISS", get("/c/reval/mf").headers["x-cache"])
    assert.are.equal("HIT", get("/c/reval/mf", cc("min-fresh=30")).headers["x-cache"])
    assert.are.equal(1, #orig:log("mf"))
    local b = get("/c/reval/mf", cc("min-fresh=100"))
    assert.are.equal("REVALIDATED", b.headers["x-cache"])
    assert.are.equal("mf body", b.body)
    local log = orig:log("mf")
    assert.are.equal(2, #log)
    assert.are.equal('"f1"', log[2].inm)
  end)

  it("§5.2.1.1: max-age=N: a stored response older than N s is revalidated, a younger one is a hit", function()
    orig:set("ma", { cc = "max-age=60", etag = '"a1"', body = "ma body" })
    assert.are.equal("MISS", get("/c/reval/ma").headers["x-cache"])
    helper.sleep(2.1)
    local a = get("/c/reval/ma", cc("max-age=10"))
    assert.are.equal("HIT", a.headers["x-cache"])
    assert.are.equal("2", a.headers["age"])
    local b = get("/c/reval/ma", cc("max-age=1"))
    assert.are.equal("REVALIDATED", b.headers["x-cache"])
    assert.are.equal("ma body", b.body)
    assert.are.equal(2, #orig:log("ma"))
    local c = get("/c/reval/ma", cc("max-age=1")) -- aged from the 304 now
    assert.are.equal("HIT", c.headers["x-cache"])
    assert.are.equal("0", c.headers["age"])
  end)

  it("§5.2.1.1: max-age=N without max-stale refuses a stale response within grace; with max-stale it is served", function()
    for _, n in ipairs{ "mag", "magms" } do
      orig:set(n, { cc = "max-age=1", etag = '"g1"', body = n .. " body" })
      get("/c/revalg/" .. n)
      orig:set(n, { cc = "max-age=1", etag = '"g1"', body = n .. " body", delay = "0.5" })
    end
    helper.sleep(1.2)
    local a, ta = timed("/c/revalg/mag", cc("max-age=100"))
    assert.are.equal("REVALIDATED", a.headers["x-cache"])
    assert(ta >= 0.45, "served stale: " .. ta)
    local b, tb = timed("/c/revalg/magms", cc("max-age=100, max-stale=100"))
    assert.are.equal("STALE", b.headers["x-cache"])
    assert.are.equal("magms body", b.body)
    assert(tb < 0.45, "waited for the origin: " .. tb)
    -- and max-age=1 with max-stale: older than 1 s, so not acceptable
    local c = get("/c/revalg/magms", cc("max-age=0, max-stale=100"))
    assert.are_not.equal("STALE", c.headers["x-cache"])
  end)

  it("§1.2.2, §5.2.1.2: max-stale=abc is ignored; a max-stale or max-age too large for 2^31 is taken as 2^31", function()
    for _, n in ipairs{ "mbad", "mbig" } do
      orig:set(n, { cc = "max-age=1", etag = '"b1"', body = n .. " body" })
      get("/c/reval/" .. n)
      orig:set(n, { cc = "max-age=1", etag = '"b1"', body = n .. " body", delay = "0.5" })
    end
    helper.sleep(1.2)
    local a, ta = timed("/c/reval/mbad", cc("max-stale=abc"))
    assert.are.equal("REVALIDATED", a.headers["x-cache"])
    assert(ta >= 0.45, "served stale: " .. ta)
    local b, tb = timed("/c/reval/mbig", cc("max-stale=99999999999999999999999999999, max-age=18446744073709551617"))
    assert.are.equal("STALE", b.headers["x-cache"])
    assert.are.equal("mbig body", b.body)
    assert(tb < 0.45, "waited for the origin: " .. tb)
    orig:set("mhuge", { cc = "max-age=60", body = "huge" })
    get("/c/reval/mhuge")
    assert.are.equal("HIT", get("/c/reval/mhuge", cc("max-age=99999999999999999999, min-fresh=1")).headers["x-cache"])
  end)

  it("§5.2.1.7, §5.2.1.2: only-if-cached takes a stale response max-stale allows, and a 504 when min-fresh refuses the fresh one", function()
    orig:set("oicms", { cc = "max-age=1", etag = '"o1"', body = "oic body" })
    get("/c/reval/oicms")
    orig:set("oicmf", { cc = "max-age=60", body = "oicmf body" })
    get("/c/reval/oicmf")
    helper.sleep(1.2)
    local a = get("/c/reval/oicms", cc("only-if-cached, max-stale=60"))
    assert.are.equal(200, a.status)
    assert.are.equal("STALE", a.headers["x-cache"])
    assert.are.equal("oic body", a.body)
    local b = get("/c/reval/oicmf", cc("only-if-cached, min-fresh=3600"))
    assert.are.equal(504, b.status)
    assert.are.equal(1, #orig:log("oicmf"))
  end)

  it("§5.2.1: client_no_cache = \"ignore\" (the default, as Varnish) ignores max-stale, min-fresh and max-age", function()
    orig:set("ign", { cc = "max-age=1", etag = '"i1"', body = "ign body" })
    get("/c/nograce/ign")
    orig:set("ignf", { cc = "max-age=60", etag = '"i1"', body = "ignf body" })
    get("/c/nograce/ignf")
    assert.are.equal("HIT", get("/c/nograce/ignf", cc("min-fresh=3600")).headers["x-cache"])
    helper.sleep(1.2)
    assert.are.equal("HIT", get("/c/nograce/ignf", cc("max-age=1")).headers["x-cache"])
    assert.are.equal(1, #orig:log("ignf"))
    local a = get("/c/nograce/ign", cc("max-stale=60"))
    assert.are.equal("REVALIDATED", a.headers["x-cache"])
  end)

  it("§5.2.1.7: only-if-cached gets a 504 when nothing fresh is stored", function()
    local b = get("/c/nograce/nothing", { ["Cache-Control"] = "only-if-cached" })
    assert.are.equal(504, b.status)
    assert.are.equal(0, #orig:log("nothing"))
  end)

  it("§4.3.1: garbage validators are not sent; a 304 to a request that was not conditional is not used", function()
    orig:set("garbage", { cc = "max-age=1", etag = "not-quoted", lm = "yesterday", body = "g body" })
    get("/c/nograce/garbage")
    orig:set("garbage", { cc = "max-age=1", etag = "not-quoted", lm = "yesterday", mode = "always304" })
    helper.sleep(1.2)
    local b = get("/c/nograce/garbage")
    assert.are.equal(502, b.status)
    local log = orig:log("garbage")
    assert.is_nil(log[2].inm)
    assert.is_nil(log[2].ims)
    orig:set("garbage", { cc = "max-age=60", body = "g new" })
    local c = get("/c/nograce/garbage")
    assert.are.equal(200, c.status)
    assert.are.equal("g new", c.body)
  end)

  it("§4.3.4: a 304 with another ETag does not freshen the stored response", function()
    orig:set("other", { cc = "max-age=1", etag = '"o1"', etag304 = '"o9"', body = "o body" })
    get("/c/nograce/other")
    helper.sleep(1.2)
    local b = get("/c/nograce/other")
    assert.are.equal(502, b.status)
    orig:set("other", { cc = "max-age=60", etag = '"o2"', body = "o new" })
    local c = get("/c/nograce/other")
    assert.are.equal("MISS", c.headers["x-cache"])
    assert.are.equal("o new", c.body)
    assert.is_nil(orig:log("other")[3].inm) -- the stale one was dropped
  end)

  it("§4.3.4, RFC 9110 §8.8.3.2: a 304 whose ETag is the stored one by weak comparison, or not an entity-tag, freshens it", function()
    orig:set("weak304", { cc = "max-age=1", etag = '"w1"', etag304 = 'W/"w1"', body = "weak body" })
    orig:set("junk304", { cc = "max-age=1", etag = '"j1"', etag304 = "junk", body = "junk body" })
    get("/c/nograce/weak304")
    get("/c/nograce/junk304")
    helper.sleep(1.2)
    local a = get("/c/nograce/weak304")
    assert.are.equal("REVALIDATED", a.headers["x-cache"])
    assert.are.equal("weak body", a.body)
    local b = get("/c/nograce/junk304")
    assert.are.equal("REVALIDATED", b.headers["x-cache"])
    assert.are.equal("junk body", b.body)
  end)

  it("§3.2: a 304 cannot change Content-Length", function()
    orig:set("cl", { cc = "max-age=1", etag = '"l1"', extra304 = "Content-Length: 999", body = "twelve bytes" })
    get("/c/nograce/cl")
    helper.sleep(1.2)
    local b = get("/c/nograce/cl")
    assert.are.equal("REVALIDATED", b.headers["x-cache"])
    assert.are.equal("12", b.headers["content-length"])
    assert.are.equal("twelve bytes", b.body)
    local c = get("/c/nograce/cl")
    assert.are.equal("HIT", c.headers["x-cache"])
    assert.are.equal("twelve bytes", c.body)
  end)

  it("RFC 5861 §4: origin down after expiry: the stale response within the window, an error after it", function()
    orig2:set("down", { cc = "max-age=1", body = "down body" })
    assert.are.equal("down body", get("/d/sie/down").body)
    orig2:stop()
    helper.sleep(1.2)
    local b = get("/d/sie/down")
    assert.are.equal(200, b.status)
    assert.are.equal("STALE", b.headers["x-cache"])
    assert.are.equal("down body", b.body)
    helper.sleep(2)
    local c = get("/d/sie/down")
    assert(c.status >= 500, "status " .. c.status)
    assert.is_true(stats("sie").stale >= 1)
  end)
end)
