/* fetch.h - what a fetched response means for the cache: whether it may be
 * shared with other requests and for how long it may be stored (RFC 9111
 * §3, §4.2.1), decided once its head is known and handed to the store. */
#ifndef LURING_FETCH_H
#define LURING_FETCH_H

#include <stdint.h>

struct cache_obj;

/** The head of o's response is known: `status`, `total` (body length or
 * -1), header lines in o->hdrs. Reads them (http/cc.h) and calls
 * cache_obj_head with the verdict. Shareable: a 200 that is fresh (its
 * freshness lifetime, or the cache's default ttl when it gives none, is
 * above 0), without no-store, no-cache, private or Vary: *, with public,
 * s-maxage or must-revalidate when the request had Authorization (§3.5),
 * without Set-Cookie unless the cache's decide hook stores it
 * explicitly, and with the values of what its Vary names recorded
 * (core/vary.h). Stored for the TTL the decide hook (admit/ttl) leaves.
 * `now`: monotonic ms. */
void fetch_head(struct cache_obj *o, int status, int64_t total, int64_t now);

#endif
