/* fetch.c - the verdict on a fetched response (see fetch.h). */
#include "core/fetch.h"
#include "core/inval.h"
#include "core/vary.h"
#include "http/cc.h"
#include "store/cache.h"

#include <time.h>

/* Statuses a cache may give a heuristic freshness lifetime (RFC 9110
 * §15.1: "heuristically cacheable"). */
static bool heuristic_status(int status)
{
    switch (status) {
    case 200: case 203: case 204: case 300: case 301: case 308:
    case 404: case 405: case 410: case 414: case 501:
        return true;
    default:
        return false;
    }
}

int64_t fetch_heuristic_ms(const struct cache *c, const struct cc_resp *cc,
                           int64_t now)
{
    if (cc->last_modified < 0 || c->heuristic_fraction <= 0)
        return c->ttl_ms;
    int64_t base = cc->date >= 0 ? cc->date : now;
    int64_t since = base > cc->last_modified ? base - cc->last_modified : 0;
    double ms = (double)since * 1000.0 * c->heuristic_fraction;
    int64_t lo = c->ttl_ms, hi = c->heuristic_max_ms > lo ? c->heuristic_max_ms : lo;
    if (ms < (double)lo)
        return lo;
    return ms > (double)hi ? hi : (int64_t)ms;
}

void fetch_head(struct cache_obj *o, int status, int64_t total, int64_t now)
{
    struct cache *c = o->cache;
    struct cc_resp cc;
    cc_parse(&cc, o->hdrs.data, o->hdrs.len);
    int64_t wall = (int64_t)time(NULL);
    int64_t life = cc_lifetime(&cc, wall);
    int64_t ttl_ms;
    /* what is stored (RFC 9111 §3 allows any final status with explicit
     * freshness; luring, as Varnish, is narrower): the heuristically
     * cacheable statuses, and the temporary redirects 302 and 307 when
     * their freshness is explicit. Never a 206 (luring asked for the
     * whole) nor a 304 (it asked for no validation), nor a 201, 500 or
     * 503 whatever it says. */
    bool heur = heuristic_status(status);
    bool storable = heur || ((status == 302 || status == 307) && life >= 0);
    if (life >= 0)
        ttl_ms = life * 1000;
    else if (heur)
        ttl_ms = fetch_heuristic_ms(c, &cc, wall); /* §4.2.2 */
    else
        ttl_ms = 0;
    /* the corrected initial age (§4.2.3): the Age the origin sent (what
     * the response spent in caches upstream), or the apparent age from
     * its Date if larger; a response older than its freshness lifetime
     * arrives stale. Varnish dates its ttl from now - Age likewise. Date
     * and the clock read in whole seconds, so one second apart may be a
     * millisecond: the apparent age is the difference less one (else a
     * max-age=1 response could arrive stale). */
    int64_t age = o->origin_age > 0 ? o->origin_age : 0;
    if (cc.date >= 0 && wall - 1 > cc.date && wall - 1 - cc.date > age)
        age = wall - 1 - cc.date;
    o->init_age = age;
    ttl_ms = ttl_ms > age * 1000 ? ttl_ms - age * 1000 : 0;
    bool share = storable && ttl_ms > 0 && !cc.no_store &&
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
    if (o->indexed && o->cacheable) /* to be stored: under its tags too */
        inval_tag_obj(o);
}
