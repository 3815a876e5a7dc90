-- cache.lua: the fan-out caching server of seed 001, scripted.
--   GET /health         200 OK
--   GET /object/<id>    from the cache; a miss while the same object is
--                       being fetched joins that fetch and streams with it;
--                       otherwise one origin fetch fills the cache
--                       (its request: the client's fields and Host, less
--                       Cookie, Authorization, Range and conditionals;
--                       set host = "..." in luring.cache{} to send another)
--   GET /metrics        Prometheus text: cache and origin counters
-- Run (an origin on 127.0.0.1:8081, e.g. nginx serving /object/*):
--   luring examples/cache.lua
--   ORIGIN=http://127.0.0.1:9000 luring --listen 127.0.0.1:8080 examples/cache.lua
-- ACCESS_LOG=/path/access.log (or "stderr"): one line per request in the
-- "luring" format (combined + cache status, upstream status and time, total
-- µs, bytes sent, request id); SIGUSR1 reopens it after logrotate.
if os.getenv("ACCESS_LOG") then
    luring.access_log{ path = os.getenv("ACCESS_LOG"), format = "luring" }
end
local origin = luring.origin{
    name = "objects",
    url = os.getenv("ORIGIN") or "http://127.0.0.1:8081",
    connect_timeout = 2, first_byte_timeout = 10, idle_timeout = 10,
}
local cache = luring.cache{
    name = "objects",
    max_bytes = tonumber(os.getenv("CACHE_BYTES")) or 256 * 1024 * 1024,
    ttl = tonumber(os.getenv("CACHE_TTL")) or 60,
}

local app = luring.app()
app:listen("127.0.0.1:8080")

local text = { ["Content-Type"] = "text/plain" }

app:get("/health", function(req)
    return 200, text, "OK\n"
end)

app:get("/object/:id", function(req)
    -- the Host is in the key: fills send the client's (an origin serving
    -- several names answers each by its own; without it one client could
    -- store another site's object for everyone)
    local path = "/object/" .. req.params.id
    local host = (req:header("host") or ""):lower()
    return cache:fetch(req, host .. path, origin, path)
end)

app:get("/metrics", function(req)
    local out = {}
    for k, v in pairs(cache:stats()) do
        if type(v) == "number" then
            out[#out + 1] = ("luring_cache_%s{cache=%q} %d"):format(k, "objects", v)
        end
    end
    for k, v in pairs(origin:stats()) do
        out[#out + 1] = ("luring_origin_%s{origin=%q} %d"):format(k, "objects", v)
    end
    table.sort(out)
    return 200, { ["Content-Type"] = "text/plain; version=0.0.4" },
           table.concat(out, "\n") .. "\n"
end)
