/* deliver.h - sending a cache object's response to a request: a request
 * subscribes to an object (hit, in-flight fill, or a fill it started) and
 * receives the body from the object's own chunks as far as it is filled,
 * never more than OUT_HIGH queued at once. */
#ifndef LURING_DELIVER_H
#define LURING_DELIVER_H

#include <stdbool.h>

struct cache_obj;
struct req;

/** Subscribe r to o's response (HIT, COALESCED or MISS in X-Cache). owner:
 * r's own fetch fills o, so r gets the response even if it turns out not
 * shareable; other subscribers are then released (req_defer). What o
 * holds already is queued at once, except for an object of a shared cache
 * (store/cache.h), subscribed under its lock: the caller calls serve_pump
 * after cache_unlock. */
void serve_subscribe(struct req *r, struct cache_obj *o, const char *xcache,
                     bool owner);
void serve_unsubscribe(struct req *r);
/** Queue what r can take now (the connection's queue drained). */
void serve_pump(struct req *r);
/** Queue a whole plain-text error response with `status` for r. */
void serve_error(struct req *r, int status);

#endif
