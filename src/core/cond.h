/* cond.h - a stored response answering the request's preconditions and
 * Range (RFC 9110 §13, §14; RFC 9111 §4.3.2): the status a response
 * delivered from a cache object gets (200, 206, 304, 412, 416), the fields
 * it carries, and the slices of the object its body is made of. Used by
 * core/deliver.c for the subscriptions of cache:fetch (HIT, COALESCED, and
 * the MISS whose fill stripped the client's conditionals and Range, see
 * core/pass.c), never for passes or origin:fetch. */
#ifndef LURING_COND_H
#define LURING_COND_H

#include <stdbool.h>
#include <stdint.h>

#include "base/buf.h"

struct cache_obj;
struct req;

/** Decide r's response from o's head (head_ready), in the order of RFC
 * 9110 §13.2.2: If-Match (strong, §13.1.1) else If-Unmodified-Since
 * (§13.1.4) failing → 412; If-None-Match (weak, §13.1.2) matching → 304,
 * else If-Modified-Since (§13.1.3, against Last-Modified, or the stored
 * Date when there is none, RFC 9111 §4.3.2) not modified → 304; then
 * Range (GET only, a stored 200 of known length, If-Range §13.1.5) →
 * 206 or 416. Preconditions are ignored unless the stored status is 2xx
 * (§13.2.1). Returns the status to send and sets *len to the body length
 * the head announces (unchanged for 200: the caller's; -1 chunked).
 * Sets r->obj_off and r->obj_end to the body slice to send (obj_end 0:
 * none of the object's bytes) and, for several ranges, r->parts (NULL
 * when out of memory: then the answer is 200). */
int cond_decide(struct req *r, struct cache_obj *o, int64_t *len);

/** Read once what cond_decide needs of o's head (validators, dates, the
 * spans of a 304, RFC 9110 §15.4.5) and put luring's own Accept-Ranges in
 * o->hdrs in place of the origin's (§14.3). Called by the fetch before
 * cache_obj_head publishes the head, so that a delivery on any worker
 * only reads the object. Nothing for stream and scratch objects (relayed
 * as the origin sent them). */
void cond_note(struct cache_obj *o);

/** Add the fields of r's response with `status` (from cond_decide) to its
 * head, or when `into` is not NULL append them there instead (for a
 * deliver hook): the stored lines less Accept-Ranges (RFC 9110 §14.3:
 * luring's own, "bytes", on a stored 200 and its 206s), plus
 * Content-Range for 206 and 416 (§14.4), the multipart Content-Type for
 * several ranges (§14.6); for 304 only the stored Content-Location, ETag,
 * Vary, Cache-Control, Expires (and Last-Modified when there is no ETag),
 * §15.4.5; for 412 and 416 a text/plain type of their own. 0, or -1 when
 * out of memory building `into`. */
int cond_fields(struct req *r, const struct cache_obj *o, int status,
                struct buf *into);

/** After the head: queue what the body starts with (412/416: the reason
 * text; several ranges: the first part's head). */
void cond_body_begin(struct req *r, int status);

/** r's current slice is all queued: start the next part of a multipart
 * body (its head queued, r->obj_off/obj_end set) and return true, or
 * queue the closing delimiter (once) and return false when none is left.
 * false at once without parts. */
bool cond_next_part(struct req *r);

/** Free r's parts (the subscription ends). */
void cond_free(struct req *r);

#endif
