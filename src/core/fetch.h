/* fetch.h - what a fetched response means for the cache: whether it may be
 * shared with other requests and for how long it may be stored (RFC 9111
 * §3, §4.2.1), decided once its head is known and handed to the store. */
#ifndef LURING_FETCH_H
#define LURING_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cache;
struct cache_obj;
struct cc_resp;

/** A heuristic freshness lifetime in ms (RFC 9111 §4.2.2) for a response
 * without an explicit one: with Last-Modified, c->heuristic_fraction of
 * the time between it and Date (or `now`, seconds since the epoch, when
 * Date is absent), within c->ttl_ms .. c->heuristic_max_ms (the largest
 * of the two); without Last-Modified (or a fraction of 0), c->ttl_ms. */
int64_t fetch_heuristic_ms(const struct cache *c, const struct cc_resp *cc,
                           int64_t now);

/** The head of o's response is known: `status`, `total` (body length or
 * -1), header lines in o->hdrs. Reads them (http/cc.h) and calls
 * cache_obj_head with the verdict. Shareable: a heuristically cacheable
 * status (RFC 9110 §15.1), or a 302/307 with explicit freshness (as
 * Varnish), that is fresh (RFC 9111 §4.2: its freshness lifetime, or
 * else fetch_heuristic_ms, less its corrected initial age, §4.2.3, is
 * above 0), without no-store,
 * no-cache, private or Vary: *, with public, s-maxage or
 * must-revalidate when the request had Authorization (§3.5), without
 * Set-Cookie unless the cache's decide hook stores it explicitly, and
 * with the values of what its Vary names recorded (core/vary.h). Stored
 * for the TTL the decide hook (admit/ttl) leaves. Sets o->init_age and the
 * stale windows (grace_ms, keep_ms, sie_ms: RFC 9111 §4.2.4, RFC 5861).
 * For a refresh (o->reval_of: the stale object it refreshes), the
 * response to the revalidation first (RFC 9111 §4.3.3, §4.3.4): a 304
 * that matches freshens the stale response into o (its fields updated,
 * its body copied), a 5xx may give o's waiters the stale one
 * (stale-if-error) and never removes it. `now`: monotonic ms. */
void fetch_head(struct cache_obj *o, int status, int64_t total, int64_t now);

/** The validators of stored response s for a conditional request (RFC
 * 9111 §4.3.1): its ETag when it is a valid entity-tag (RFC 9110 §8.8.3),
 * *etag (el bytes), for If-None-Match; its Last-Modified when it is a
 * valid HTTP-date, *lm (ll bytes), for If-Modified-Since. Views into
 * s->hdrs; NULL when absent or invalid. true when there is either. */
bool fetch_validators(const struct cache_obj *s, const char **etag,
                      size_t *el, const char **lm, size_t *ll);

#endif
