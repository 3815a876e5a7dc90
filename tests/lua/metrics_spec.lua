-- Built-in metrics (issue 14, point 3): app:get("/metrics", luring.metrics())
-- answers the Prometheus text format for the whole process (every worker):
-- requests by status class, request and origin latency histograms,
-- connections, Lua errors, reloads, and per cache and per origin counters.
-- Each scrape is parsed by a real Prometheus text parser (Debian's
-- python3-prometheus-client), and the figures are checked against what the
-- test did, with --workers 2 (connections land on both workers).
local helper = require "helper"
local origin = require "origin"
local socket = require "socket"

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local web = luring.origin{ name = "web \"1\"", url = "@ORIGIN@" }
local cache = luring.cache{ name = "main", max_bytes = 10e6, ttl = 60 }
app:get("/metrics", luring.metrics())
app:get("/c/*", function(req)
  return cache:fetch(req, req.path, web, "/files/" .. req.params["*"])
end)
app:get("/files/*", function(req) return luring.proxy(req, web) end)
app:get("/boom", function(req) error("boom") end)
]]

local PY = [[
import sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
for fam in text_string_to_metric_families(text):
    assert fam.type in ("counter", "gauge", "histogram"), fam.type
    for s in fam.samples:
        labels = ",".join("%s=%s" % (k, v) for k, v in sorted(s.labels.items()))
        print("%s|%s|%s|%s|%s" % (fam.type, fam.name, s.name, labels, repr(float(s.value))))
]]

-- Scrape and parse: samples["name|labels"] = value; types[name] = type.
local function scrape(srv, dir)
  local res = helper.get(srv:port(), "/metrics")
  assert.are.equal(200, res.status)
  assert.truthy((res.headers["content-type"] or ""):find("text/plain; version=0.0.4", 1, true))
  helper.writefile(dir .. "/m.txt", res.body)
  helper.writefile(dir .. "/p.py", PY)
  local p = assert(io.popen("/usr/bin/python3 " .. helper.shquote(dir .. "/p.py") .. " "
    .. helper.shquote(dir .. "/m.txt") .. " 2>&1; echo rc=$?"))
  local out = p:read("*a")
  p:close()
  assert.truthy(out:match("rc=0%s*$"), "the Prometheus parser refused the text:\n" .. out
    .. "\n--- text ---\n" .. res.body)
  local samples, types = {}, {}
  for typ, fam, name, labels, v in out:gmatch("(%w+)|([%w_]+)|([%w_]+)|([^|]*)|([^\n]+)\n") do
    samples[name .. "|" .. labels] = tonumber(v)
    types[fam] = typ
  end
  return samples, types, res.body
end

describe("metrics", function()
  local ngx, srv, dir

  lazy_setup(function()
    ngx = origin.start{
      locations = [[ location /files/ { add_header Cache-Control "max-age=60"; } ]],
      files = { ["files/a.txt"] = ("a"):rep(1000) },
    }
    srv = helper.start((SCRIPT:gsub("@ORIGIN@", ngx:url())), { args = { "--workers", "2" } })
    dir = helper.mktempdir()
  end)

  lazy_teardown(helper.teardown_with(function()
    origin.stop_all()
    os.execute("rm -rf " .. helper.shquote(dir))
  end))

  it("sums every worker's requests, latencies, errors, caches and origins", function()
    -- one connection per request: the kernel spreads them over both workers
    for _ = 1, 10 do assert.are.equal(200, helper.get(srv:port(), "/c/a.txt").status) end
    for _ = 1, 5 do assert.are.equal(200, helper.get(srv:port(), "/files/a.txt").status) end
    for _ = 1, 2 do assert.are.equal(500, helper.get(srv:port(), "/boom").status) end
    for _ = 1, 3 do assert.are.equal(404, helper.get(srv:port(), "/nope").status) end
    socket.sleep(0.35) -- the other worker publishes on its 100 ms tick
    local m, types = scrape(srv, dir)
    assert.are.equal(2, m["luring_workers|"])
    -- the parser names a counter's family without _total
    assert.are.equal("counter", types["luring_requests"])
    assert.are.equal(15, m["luring_requests_total|code=2xx"])
    assert.are.equal(3, m["luring_requests_total|code=4xx"])
    assert.are.equal(2, m["luring_requests_total|code=5xx"])
    assert.are.equal(0, m["luring_requests_total|code=1xx"])
    -- request latency: a histogram over the 20 requests
    assert.are.equal("histogram", types["luring_request_duration_seconds"])
    assert.are.equal(20, m["luring_request_duration_seconds_count|"])
    assert.are.equal(20, m["luring_request_duration_seconds_bucket|le=+Inf"])
    assert.truthy(m["luring_request_duration_seconds_sum|"] > 0)
    local prev = 0
    for _, le in ipairs({ "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
                          "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf" }) do
      local v = m["luring_request_duration_seconds_bucket|le=" .. le]
      assert.is_not_nil(v, "no bucket le=" .. le)
      assert.truthy(v >= prev, "buckets must be cumulative")
      prev = v
    end
    -- the cache: one store for both workers (issue 13), so one miss, and
    -- its size and budget once
    local hits = m["luring_cache_hits_total|cache=main"]
    local coalesced = m["luring_cache_coalesced_total|cache=main"]
    local misses = m["luring_cache_misses_total|cache=main"]
    assert.are.equal(1, misses)
    assert.are.equal(10, hits + coalesced + misses)
    assert.are.equal(1, m["luring_cache_objects|cache=main"])
    assert.truthy(m["luring_cache_bytes|cache=main"] >= 1000)
    assert.are.equal(10e6, m["luring_cache_max_bytes|cache=main"])
    -- the origin (its name escaped in the label): the fills and the passes
    local o = 'origin=web "1"'
    assert.are.equal(misses + 5, m["luring_origin_requests_total|" .. o])
    assert.are.equal(0, m["luring_origin_errors_total|" .. o])
    assert.are.equal(misses + 5, m["luring_origin_duration_seconds_count|"])
    assert.truthy(m["luring_origin_connects_total|" .. o] >= 1)
    assert.is_not_nil(m["luring_origin_connections_reused_total|" .. o])
    assert.is_not_nil(m["luring_origin_idle_connections|" .. o])
    -- connections and Lua errors
    assert.truthy(m["luring_connections_accepted_total|"] >= 20)
    assert.truthy(m["luring_connections_open|"] >= 1) -- the scrape's own
    assert.are.equal(2, m["luring_lua_errors_total|"])
  end)

  it("counts reloads (every worker reloads; counted once)", function()
    local before = scrape(srv, dir)["luring_reloads_total|result=ok"]
    os.execute("kill -HUP " .. math.floor(srv:pid()))
    assert.truthy(srv:wait_stderr("reload", 3), srv:stderr())
    local after
    helper.wait_until(function()
      after = scrape(srv, dir)["luring_reloads_total|result=ok"]
      return after == before + 1
    end, 3, 0.05)
    assert.are.equal(before + 1, after)
  end)

end)

describe("metrics under failures and concurrency", function()
  after_each(function() helper.stop_all() end)

  it("counts failed origin fetches (refused, first-byte timeout) in luring_origin_duration_seconds", function()
    -- a port nothing listens on, and a listener that never answers
    local closed = assert(socket.bind("127.0.0.1", 0))
    local _, cport = closed:getsockname()
    closed:close()
    local mute = assert(socket.bind("127.0.0.1", 0))
    local _, mport = mute:getsockname()
    local srv = helper.start(([[
local app = luring.app()
app:listen("@LISTEN@")
local refused = luring.origin{ name = "refused", url = "http://127.0.0.1:%d" }
local mute = luring.origin{ name = "mute", url = "http://127.0.0.1:%d", first_byte_timeout = 0.2 }
local cache = luring.cache{ name = "c", max_bytes = 1e6, ttl = 60 }
app:get("/metrics", luring.metrics())
app:get("/refused", function(req) return cache:fetch(req, "r", refused, "/") end)
app:get("/mute", function(req) return cache:fetch(req, "m", mute, "/") end)
]]):format(cport, mport))
    local dir = helper.mktempdir()
    assert.are.equal(502, helper.get(srv:port(), "/refused").status)
    assert.are.equal(504, helper.get(srv:port(), "/mute").status)
    local m = scrape(srv, dir)
    mute:close()
    os.execute("rm -rf " .. helper.shquote(dir))
    assert.are.equal(1, m["luring_origin_errors_total|origin=refused"])
    assert.are.equal(1, m["luring_origin_timeouts_total|origin=mute"])
    -- both fetches took time and are latencies an operator must see
    assert.are.equal(2, m["luring_origin_duration_seconds_count|"])
    assert.truthy(m["luring_origin_duration_seconds_sum|"] >= 0.2)
    assert.are.equal(1, m["luring_origin_duration_seconds_bucket|le=0.1"]) -- the refused one
    assert.are.equal(2, m["luring_origin_duration_seconds_bucket|le=+Inf"])
  end)

  it("answers concurrent scrapes with --workers 4 under load: each parses, the totals add up", function()
    local srv = helper.start([[
local app = luring.app()
app:listen("@LISTEN@")
app:get("/metrics", luring.metrics())
app:get("/", function(req) return "ok" end)
]], { args = { "--workers", "4" } })
    local dir = helper.mktempdir()
    helper.writefile(dir .. "/load.py", ([[
import threading, urllib.request
from prometheus_client.parser import text_string_to_metric_families
port = %d
bad = []
def scrape():
    for _ in range(25):
        t = urllib.request.urlopen("http://127.0.0.1:%%d/metrics" %% port).read().decode()
        fams = {f.name for f in text_string_to_metric_families(t)}
        if "luring_requests" not in fams: bad.append(t)
def load():
    for _ in range(100):
        assert urllib.request.urlopen("http://127.0.0.1:%%d/" %% port).read() == b"ok"
ts = [threading.Thread(target=scrape) for _ in range(8)] + [threading.Thread(target=load) for _ in range(8)]
for t in ts: t.start()
for t in ts: t.join()
print("bad", len(bad))
]]):format(srv:port()))
    local p = assert(io.popen("/usr/bin/python3 " .. helper.shquote(dir .. "/load.py") .. " 2>&1"))
    local out = p:read("*a")
    p:close()
    assert.truthy(out:find("bad 0", 1, true), out)
    -- 800 requests to / and 200 scrapes, on 4 workers, all counted once
    -- (another worker's figures are at most one 100 ms tick old)
    -- (a scrape is counted once it is over: the k-th one here sees k - 1)
    local m, k = nil, 0
    helper.wait_until(function()
      k = k + 1
      m = scrape(srv, dir)
      return m["luring_requests_total|code=2xx"] == 1000 + k - 1
    end, 3, 0.2)
    os.execute("rm -rf " .. helper.shquote(dir))
    assert.are.equal(4, m["luring_workers|"])
    assert.are.equal(1000 + k - 1, m["luring_requests_total|code=2xx"])
    assert.are.equal(0, m["luring_requests_total|code=5xx"])
  end)
end)
