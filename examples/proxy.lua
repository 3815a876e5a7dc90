-- proxy.lua: a reverse proxy cache in front of one site (issue 11, point 8).
--   Every method and every path goes to the origin in $ORIGIN (default
--   http://127.0.0.1:8081). GET and HEAD go through the cache, keyed by the
--   Host, the path and the query string (/a?x=1 and /a?x=2 are two objects,
--   and so are a.example/a and b.example/a: a fill sends the client's Host,
--   so an origin serving several names answers each by its own; keyed on
--   the path alone, one client's `Host: other.example` would store the
--   other site's page for everyone, as Varnish avoids by hashing Host);
--   a HEAD
--   miss is fetched with GET and fills the cache, as Varnish does; a fill
--   sends the client's Host and fields (not Cookie, Authorization, Range or
--   conditionals), and a response with Vary goes only to requests with the
--   same values of the fields it names (one variant per key). Other
--   methods, and requests with Cookie or Authorization, pass: the request
--   goes to the origin as it came (headers and body, Via and
--   X-Forwarded-For added) and the response comes back unstored
--   (X-Cache: PASS). Responses that may not be shared (Set-Cookie,
--   private, no-store, Vary: *, not a 200, ...) go only to the request
--   that fetched them. See docs/API.md, "Caches and origins".
-- Run (an origin on 127.0.0.1:9000):
--   ORIGIN=http://127.0.0.1:9000 luring --listen 127.0.0.1:8080 examples/proxy.lua
--   curl -i http://127.0.0.1:8080/          (twice: X-Cache: MISS, then HIT)
-- Without --listen it listens on 127.0.0.1:8080. CACHE_BYTES (256 MiB) and
-- CACHE_TTL (60 s: used when the origin gives no Cache-Control/Expires).
-- Invalidation (RFC 9111 §4.4, docs/API.md "Invalidation"): a POST, PUT,
-- PATCH or DELETE the origin answers with 2xx/3xx removes the stored
-- response of its URL (and of a same-host Location / Content-Location).
-- PURGE requests from the addresses in PURGE_ALLOW (comma-separated,
-- default "127.0.0.1,::1") are answered here, never sent to the origin:
--   curl -X PURGE http://127.0.0.1:8080/a.html         -- that URL (Host + path + query)
--   curl -X PURGE -H 'X-Ban: prefix' http://127.0.0.1:8080/img/  -- every URL under it
--   curl -X PURGE -H 'Surrogate-Key: t1 t2' http://127.0.0.1:8080/ -- tagged t1 or t2
-- 200 "purged N" when something went, 404 when nothing was stored, 403 from
-- any other address. Each reaches every worker.
-- ACCESS_LOG=/path/access.log (or "stderr"): one line per request in the
-- "luring" format (combined + cache status, upstream status and time, total
-- µs, bytes sent, request id); SIGUSR1 reopens it after logrotate.
if os.getenv("ACCESS_LOG") then
    luring.access_log{ path = os.getenv("ACCESS_LOG"), format = "luring" }
end
local origin = luring.origin{
    name = "site",
    url = os.getenv("ORIGIN") or "http://127.0.0.1:8081",
    connect_timeout = 5, first_byte_timeout = 30, idle_timeout = 30,
    keepalive = 64,
}
local cache = luring.cache{
    name = "site",
    max_bytes = tonumber(os.getenv("CACHE_BYTES")) or 256 * 1024 * 1024,
    ttl = tonumber(os.getenv("CACHE_TTL")) or 60,
}

local app = luring.app()
app:listen("127.0.0.1:8080")   -- --listen replaces it

local purge_allow = {}
for a in (os.getenv("PURGE_ALLOW") or "127.0.0.1,::1"):gmatch("[^,%s]+") do
    purge_allow[a] = true
end
local text = { ["Content-Type"] = "text/plain" }

local function key_of(req)
    local target = req.query and (req.path .. "?" .. req.query) or req.path
    return (req:header("host") or ""):lower() .. target, target
end

app:route("PURGE", "/*", function(req)
    if not purge_allow[req.remote_addr] then
        return 403, text, "forbidden\n"
    end
    local key = key_of(req)
    local n
    local tags = req:header("surrogate-key")
    if tags then                 -- every response tagged with one of them
        n = 0
        for t in tags:gmatch("[^%s,]+") do n = n + cache:purge_tag(t) end
    elseif (req:header("x-ban") or ""):lower() == "prefix" then
        n = cache:ban(key)       -- every URL starting with this one
    else
        n = cache:purge(key) and 1 or 0
    end
    if n == 0 then
        return 404, text, "not found\n"
    end
    return 200, text, "purged " .. n .. "\n"
end)

-- Any method, any path: cache:fetch looks up GET and HEAD and passes the rest.
app:route("*", "/*", function(req)
    local key, target = key_of(req)
    return cache:fetch(req, key, origin, target)
end)
