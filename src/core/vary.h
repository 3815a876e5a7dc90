/* vary.h - never the wrong variant (RFC 9111 §4.1): a stored response
 * whose Vary names request fields remembers the values the request behind
 * its fill sent (each field's lines normalized: one list, elements
 * trimmed, joined with ", "; or absent); a request presenting other
 * values must not be served it. The store keeps several such responses
 * per key side by side and picks the newest that matches (cache_select,
 * store/cache.h); this module decides what matches. */
#ifndef LURING_VARY_H
#define LURING_VARY_H

#include <stdbool.h>

#include "store/cache.h"

struct h1_msg;

/** Keep a copy of m's fields with o (o->vary_req) until its head is known
 * (vary_record). 0, or -1 when out of memory: a response with Vary then
 * is not shared. */
int vary_capture(struct cache_obj *o, const struct h1_msg *m);

/** o's head is in o->hdrs: record in o->vary the captured values of the
 * fields its Vary lines name, and drop the copy. false when o must not be
 * shared: Vary names something that is not a field name, or a field whose
 * value the fill makes (X-Forwarded-For, Via), the values take more than
 * 16 KiB, or they are not known (no copy, out of memory). A field the
 * request's Connection names is recorded absent (the fill did not send
 * it). A response with a Content-Encoding varies on Accept-Encoding
 * whether its Vary says so or not. `Vary: *` is fetch_head's. */
bool vary_record(struct cache_obj *o);

/** vary_match for an o with Vary (o->vary set). */
bool vary_match_fields(const struct cache_obj *o, const struct h1_msg *m);

/** vary_match_fields for cache_select (a cache_match_pt): m is the
 * request's struct h1_msg. */
bool vary_match_req(const struct cache_obj *o, const void *m);

/** May o's response go to the request m (the same values of every field
 * its Vary names as the request behind the fill)? Without Vary, true at
 * the cost of one test. */
static inline bool vary_match(const struct cache_obj *o,
                              const struct h1_msg *m)
{
    return o->vary == NULL || vary_match_fields(o, m);
}

#endif
