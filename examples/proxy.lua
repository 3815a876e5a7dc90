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

-- Any method, any path: cache:fetch looks up GET and HEAD and passes the rest.
app:route("*", "/*", function(req)
    local target = req.query and (req.path .. "?" .. req.query) or req.path
    local host = (req:header("host") or ""):lower()
    return cache:fetch(req, host .. target, origin, target)
end)
