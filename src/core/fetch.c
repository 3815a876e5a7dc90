/* fetch.c - the verdict on a fetched response (see fetch.h). */
#include "core/fetch.h"
#include "core/vary.h"
#include "http/cc.h"
#include "store/cache.h"

#include <time.h>

void fetch_head(struct cache_obj *o, int status, int64_t total, int64_t now)
{
    struct cache *c = o->cache;
    struct cc_resp cc;
    cc_parse(&cc, o->hdrs.data, o->hdrs.len);
    int64_t life = cc_lifetime(&cc, (int64_t)time(NULL));
    int64_t ttl_ms = life < 0 ? c->ttl_ms : life * 1000;
    /* what it spent in caches upstream counts (RFC 9111 §4.2.3: fresh
     * while the lifetime exceeds the current age; Varnish dates its ttl
     * from now - Age): Age 100000 with max-age=60 is stale already */
    if (cc.age > 0)
        ttl_ms = ttl_ms > cc.age * 1000 ? ttl_ms - cc.age * 1000 : 0;
    bool share = status == 200 && ttl_ms > 0 && !cc.no_store &&
                 !cc.no_cache && !cc.is_private && !cc.vary_star &&
                 (!o->req_auth || cc.is_public || cc.s_maxage >= 0 ||
                  cc.must_revalidate);
    /* the fill's request values of what Vary names (core/vary.h) */
    if (share && !vary_record(o))
        share = false;
    if (share && c->decide)
        ttl_ms = c->decide(c, o, ttl_ms, cc.set_cookie); /* admit/ttl hooks */
    else if (cc.set_cookie)
        ttl_ms = 0; /* no hook to store it explicitly */
    if (cc.set_cookie && ttl_ms <= 0)
        share = false;
    cache_obj_head(o, status, total, share, ttl_ms, now);
}
