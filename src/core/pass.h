/* pass.h - the PASS step: a client's request forwarded to an origin as it
 * came (any method, its target, its end-to-end header fields, its body)
 * and the origin's response streamed back through a private stream object
 * (store/cache.h), never shared and never stored. */
#ifndef LURING_PASS_H
#define LURING_PASS_H

#include <stdbool.h>
#include <stddef.h>

struct cache;
struct cache_obj;
struct origin;
struct req;

struct pass_opts {
    const char *target; /* request-target sent (origin-form); NULL: the
                         * client's (cache:fetch passes its path) */
    size_t target_len;    const char *host;   /* Host sent to the origin; NULL: the client's */
    size_t host_len;
    bool via;           /* append "Via: 1.x luring" (RFC 9110 §7.6.3) */
    bool xff;           /* append the client to X-Forwarded-For */
    bool xfp;           /* set X-Forwarded-Proto: http */
    bool fwd;           /* append this hop to Forwarded (RFC 7239) */
    /* a fill that revalidates a stored response (RFC 9111 §4.3.1): its
     * validators (core/fetch.h fetch_validators), NULL: none */
    const char *inm;    /* If-None-Match: the stored ETag */
    size_t inm_len;
    const char *ims;    /* If-Modified-Since: the stored Last-Modified */
    size_t ims_len;
};

/** Send r's request to HTTP origin o and subscribe r to the response, in a
 * stream object of `scratch` (core/deliver.c sends it as it arrives; r->obj
 * is NULL again once it is queued or failed). A body not read yet is
 * streamed to the origin as it arrives (core/origin.h
 * origin_request_stream); one read whole by the script goes with the
 * head. 0; -1 when out of memory; -2 when the body was streamed before
 * (nothing started either way). The client may be gone on return
 * (r->m.c NULL). */
int pass_start(struct req *r, struct origin *o, struct cache *scratch,
               const struct pass_opts *po);

/** Start the cache fill of obj (takes a ref on obj) for r. From an HTTP
 * origin: `GET po->target` with r's fields as a pass sends them (po's
 * host, via, xff, xfp, fwd) except Cookie, Authorization, Range, If-Range,
 * If-Match, If-None-Match, If-Modified-Since and If-Unmodified-Since, and
 * no body; r's fields are kept with obj for its Vary (core/vary.h); then
 * po's If-None-Match / If-Modified-Since when it revalidates. r is not
 * referred to once this returns: the fill may outlive it (a background
 * refresh). From a file origin: the file at po->target. */
void pass_fill(const struct req *r, struct origin *o, struct cache_obj *obj,
               const struct pass_opts *po);

#endif
