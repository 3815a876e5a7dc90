/* fetch.c - the verdict on a fetched response (see fetch.h). */
#include "core/cond.h"
#include "core/fetch.h"
#include "core/inval.h"
#include "core/vary.h"
#include "http/cc.h"
#include "http/date.h"
#include "http/etag.h"
#include "http/fields.h"
#include "store/cache.h"

#include <string.h>
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

/* How long past its expiry o may still serve (RFC 9111 §4.2.4; RFC 5861;
 * Varnish's grace and keep): grace, the cache's or the response's
 * stale-while-revalidate if longer; stale-if-error likewise; keep, for a
 * response with a validator only (nothing to revalidate otherwise). A
 * response with must-revalidate, proxy-revalidate (luring is a shared
 * cache, §5.2.2.8), s-maxage (which carries proxy-revalidate's semantics
 * for a shared cache, §5.2.2.10; §4.2.4 names it) or no-cache (§5.2.2.4;
 * not stored today anyway) is never served stale (o->no_stale): no grace,
 * no stale-if-error, no request's max-stale; it may still be kept and
 * revalidated. */
static void stale_windows(struct cache_obj *o, const struct cc_resp *cc)
{
    const struct cache *c = o->cache;
    o->keep_ms = cc->has_etag || cc->last_modified >= 0 ? c->keep_ms : 0;
    o->no_stale = cc->must_revalidate || cc->proxy_revalidate ||
                  cc->s_maxage >= 0 || cc->no_cache;
    if (o->no_stale) {
        o->grace_ms = o->sie_ms = 0;
        return;
    }
    int64_t swr = cc->swr > 0 ? cc->swr * 1000 : 0;
    int64_t sie = cc->sie > 0 ? cc->sie * 1000 : 0;
    o->grace_ms = swr > c->grace_ms ? swr : c->grace_ms;
    o->sie_ms = sie > c->sie_ms ? sie : c->sie_ms;
}

static void verdict(struct cache_obj *o, int status, int64_t total,
                    int64_t now);

/* ==== revalidation (RFC 9111 §4.3) ==== */

/* The value of the first field called name (nl bytes) in hdrs, or NULL. */
static const char *field_value(const struct buf *h, const char *name,
                               size_t nl, size_t *vl)
{
    size_t i = 0;
    struct field_line f;
    while (field_line_next(h->data, h->len, &i, &f))
        if (field_name_is(f.name, f.nlen, name, nl)) {
            *vl = f.vlen;
            return f.value;
        }
    return NULL;
}

bool fetch_validators(const struct cache_obj *s, const char **etag,
                      size_t *el, const char **lm, size_t *ll)
{
    *etag = field_value(&s->hdrs, "etag", 4, el);
    struct etag t; /* an entity-tag (RFC 9110 §8.8.3) or nothing */
    if (*etag && etag_parse(*etag, *el, &t) < 0)
        *etag = NULL;
    *lm = field_value(&s->hdrs, "last-modified", 13, ll);
    if (*lm && http_date_parse(*lm, *ll, (int64_t)time(NULL)) == INT64_MIN)
        *lm = NULL;
    return *etag || *lm;
}

/* Does the 304 in o->hdrs select stored response s (RFC 9111 §4.3.4)? An
 * ETag in the 304 must be s's (weak comparison, RFC 9110 §8.8.3.2: the
 * opaque tags); a 304 without one is taken for s, whose validators were
 * what luring sent (Varnish takes any 304 to a conditional fetch), and so
 * is one whose ETag is not an entity-tag (no validator, §8.8.3). */
static bool selects(const struct cache_obj *o, const struct cache_obj *s)
{
    size_t nl, sl;
    struct etag a, b;
    const char *n = field_value(&o->hdrs, "etag", 4, &nl);
    if (n == NULL || etag_parse(n, nl, &a) < 0)
        return true;
    const char *t = field_value(&s->hdrs, "etag", 4, &sl);
    return t && etag_parse(t, sl, &b) == 0 && etag_weak_eq(&a, &b);
}

/* Freshen with the 304 in o->hdrs (RFC 9111 §4.3.4, §3.2): o's fields
 * become s's, each one the 304 has replaced by the 304's (all of its
 * lines: up_field already left out Content-Length and the hop-by-hop
 * ones, so the framing of s's body stays); s's Date goes in any case (the
 * 304's is the new one; without one the server's own is sent and the age
 * starts at 0). false when out of memory. */
static bool merge_fields(struct cache_obj *o, const struct cache_obj *s)
{
    struct buf h = {0};
    size_t i = 0, xl;
    struct field_line f;
    while (field_line_next(s->hdrs.data, s->hdrs.len, &i, &f)) {
        if (!field_name_is(f.name, f.nlen, "date", 4) &&
            field_value(&o->hdrs, f.name, f.nlen, &xl) == NULL &&
            buf_append(&h, f.line, f.llen) < 0)
            goto oom;
    }
    if (buf_append(&h, o->hdrs.data, o->hdrs.len) < 0)
        goto oom;
    buf_free(&o->hdrs);
    o->hdrs = h;
    return true;
oom:
    buf_free(&h);
    return false;
}

/* The head of a refresh of stale object s = o->reval_of (RFC 9111
 * §4.3.3). A 304 that selects s freshens it: o becomes s with the 304's
 * fields and s's body, which is not fetched again (every waiter gets it,
 * X-Cache: REVALIDATED), stored for the lifetime the merged fields give
 * and aged from the 304 (init_age, born). A 304 that does not select s
 * (another ETag, or an answer to a request that was not conditional)
 * fails o (502) and drops s, so the next request fetches it whole. A 5xx
 * gives o's waiters s instead when stale-if-error allows (o->fallback),
 * or else is not stored and leaves s where it is (no hit-for-miss marker:
 * as Varnish's builtin VCL abandons a background fetch's 5xx). Anything
 * else is a new response, judged as any (a 200 replaces s). true: handled
 * here. The old object is never changed in place: a 304 builds a new one
 * (o), as the shared store of issue 13 needs (ARCHITECTURE.md §6). */
static bool refresh_head(struct cache_obj *o, int status, int64_t now)
{
    struct cache_obj *s = o->reval_of;
    if (status == 304) {
        /* s may have left the index meanwhile (evicted, another variant
         * stored): the origin says its body is still the one. Purged,
         * banned or untagged: o is not stored (store/cache.c invalidate),
         * its waiters get it still */
        if (!o->cond_sent || !selects(o, s) || !merge_fields(o, s)) {
            cache_unindex(s);
            cache_obj_done(o, false, 502);
            return true;
        }
        o->revalidated = true;
        CACHE_COUNT(o->cache, revalidated);
        verdict(o, s->status, (int64_t)s->len, now);
        for (size_t off = 0; off < s->len;) {
            size_t k;
            const char *p = cache_obj_at(s, off, &k);
            if (cache_obj_data(o, p, k) < 0)
                break; /* out of memory: truncated, cache_obj_done fails it */
            off += k;
        }
        return true;
    }
    if (status >= 500) {
        cache_lock(o->cache); /* s->indexed: another worker may evict s */
        bool sub = o->fallback && s->indexed && cache_obj_substitute(o, s);
        cache_unlock(o->cache);
        if (sub)
            return true;
        o->index_late = false; /* not stored, no marker: s stays */
    }
    return false;
}

void fetch_head(struct cache_obj *o, int status, int64_t total, int64_t now)
{
    if (o->reval_of && refresh_head(o, status, now))
        return;
    verdict(o, status, total, now);
}

/* The verdict on o's response, once it is the response to store (a 304
 * merged with the stale one first, refresh_head). */
static void verdict(struct cache_obj *o, int status, int64_t total,
                    int64_t now)
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
    stale_windows(o, &cc);
    o->status = status; /* cond_note reads it */
    cond_note(o);
    cache_obj_head(o, status, total, share, ttl_ms, now);
    /* to be stored: under its tags too (indexed may change on another
     * worker: a purge, an eviction) */
    cache_lock(o->cache);
    if (o->indexed && o->cacheable)
        inval_tag_obj(o);
    cache_unlock(o->cache);
}
