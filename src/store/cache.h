/* cache.h - the object store: objects stored as chunks with a fill cursor,
 * refcounted so memory referenced by a send in flight is never freed, an
 * index by key, TTLs, hit-for-miss markers, a memory budget that counts
 * objects being filled, eviction by a policy (policy.h). The store tells
 * waiters (store_waiter) when an object changes and never delivers
 * anything itself; it decides nothing about HTTP (the caller says whether
 * a response is shareable and for how long) and takes `now` as an
 * argument. */
#ifndef LURING_CACHE_H
#define LURING_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "store/policy.h"

#define CACHE_CHUNK (64 * 1024)
/* A stream object's fill pauses when its reader is this far behind, and
 * goes on once the reader is within half of it. */
#define CACHE_STREAM_AHEAD (1024 * 1024)

struct worker; /* opaque: only passed through (cache_obj_release) */

/* Someone who wants to know when an object changes (head known, bytes
 * added, complete, failed): embedded in the watcher, which finds itself
 * from the pointer. notify may unwatch the waiter it is given. */
struct store_waiter {
    struct store_waiter *next;
    void (*notify)(struct store_waiter *sw);
};

enum obj_state {
    OBJ_FILLING,  /* fetch in flight: head and/or body still arriving */
    OBJ_COMPLETE, /* whole body present */
    OBJ_FAILED,   /* fetch failed or truncated: never served as complete */
};

struct cache_obj {
    struct cache *cache;
    char *key;
    size_t klen;
    struct cache_obj *hnext;         /* hash chain (bucket: pn.key) */
    struct policy_node pn; /* eviction policy state (key id, size) */
    bool in_policy;      /* complete and linked in the cache's policy */
    int refs;            /* index + subscribers + queued send segments */
    bool indexed;        /* reachable by key (holds one ref) */
    bool head_ready;
    bool cacheable;      /* may stay indexed once complete */
    bool shareable;      /* head known and the response may be delivered
                          * to requests other than the one that caused the
                          * fill (RFC 9111 §3); false: only its owner gets it */
    bool hfm;            /* a hit-for-miss marker: no body; requests that
                          * find it fetch on their own, without waiting */
    bool index_late;     /* not indexed yet: indexed when its head turns out
                          * storable, replaced by a marker otherwise */
    bool req_auth;       /* the request behind the fill had Authorization */
    void *vary_req;      /* the fill's request fields until its head
                          * (core/vary.c); freed with the object */
    char *vary;          /* the fill's request values of the fields the
                          * response's Vary names (core/vary.c), vary_len
                          * bytes; NULL: no Vary */
    size_t vary_len;
    enum obj_state state;
    int status;          /* origin status, or 502/504 when failed early */
    struct buf hdrs;     /* origin header lines to forward, "N: v\r\n"... */
    int64_t total;       /* Content-Length, or -1 */
    size_t len;          /* bytes filled (the fill cursor) */
    char **chunks;
    unsigned nchunks, chunks_cap;
    size_t mem;          /* bytes charged to the cache's budget */
    int64_t expires;     /* monotonic ms */
    struct store_waiter *waiters; /* told about every change */
    /* a stream object (cache_obj_stream): a pass-through response with one
     * reader, never indexed; the chunks its reader's sends are done with
     * are freed, and the fill pauses while the reader is far behind */
    bool stream;
    bool fill_paused;    /* the fill stopped reading (cache_obj_fill_pause) */
    bool head_only;      /* the response to a HEAD request: no body */
    int64_t head_cl;     /* head_only: the origin's Content-Length, or -1 */
    size_t read_off;     /* stream: body bytes the reader has taken */
    uint32_t *sent;      /* stream: per chunk, bytes whose send is done */
    uint32_t last_sz;    /* bytes of the last chunk allocated: CACHE_CHUNK,
                          * or less when it holds the rest of a body of
                          * known length (then no chunk follows it) */
    void (*fill_wake)(void *arg); /* stream: the paused fill may go on */
    void *fill_arg;
    /* what answering conditionals and ranges needs of the head (read by
     * core/cond.c at its first delivery, cond_noted, which also puts
     * luring's own Accept-Ranges in hdrs in place of the origin's: code
     * that replaces hdrs later clears cond_noted): offsets into hdrs */
    bool cond_noted;
    uint32_t etag_off, etag_len; /* the first ETag's opaque-tag, when it
                                  * is a valid entity-tag (etag_weak: W/) */
    bool etag_weak;
    bool has_etag;       /* an ETag line, valid or not */
    uint32_t ctype_off, ctype_len;
    uint8_t nm_n;        /* spans of hdrs a 304 carries (§15.4.5), in
                          * nm_span[i] = {off, len}; 0xff: too many */
    uint32_t nm_span[6][2];
    int64_t last_mod;    /* Last-Modified, seconds since the epoch;
                          * INT64_MIN: none or invalid */
    int64_t date;        /* Date, likewise */
};

struct cache_stats {
    uint64_t hits, misses, coalesced, fills, fill_errors, evictions,
        expired, uncacheable;
    uint64_t hit_for_miss; /* requests that found a hit-for-miss marker */
    uint64_t released;     /* coalesced requests sent to fetch on their own
                            * because the fill was not shareable */
    uint64_t passes;       /* requests passed to the origin without a lookup
                            * (method, Cookie, Authorization: lua/l_cache.c) */
    uint64_t not_modified; /* 304s answered from stored responses */
    uint64_t partial;      /* 206s answered from stored responses */
};

struct cache;
/** Decide the fate of a shareable response once its head is known: returns
 * the TTL in ms (0: do not store). `ttl_ms` is the freshness lifetime from
 * the origin's headers or the cache default. `set_cookie`: the response
 * carries Set-Cookie, and is stored only if the hook says so explicitly
 * (otherwise return 0: it is then delivered to its own request only). Set
 * by the Lua binding for admit/ttl hooks. */
typedef int64_t (*cache_decide_pt)(struct cache *c, struct cache_obj *o,
                                   int64_t ttl_ms, bool set_cookie);

struct cache {
    char name[64];
    cache_decide_pt decide; /* NULL: keep ttl_ms (called by the fetch) */
    void *decide_ctx;       /* for decide: the Lua runtime (struct lrt) whose
                             * current script runs the hooks */
    size_t max_bytes, max_objects;
    int64_t ttl_ms;       /* default TTL when the origin gives none */
    int64_t hfm_ms;       /* hit-for-miss marker lifetime; 0: no markers */
    bool lookup_cookie;   /* requests with Cookie are looked up (else passed) */
    bool lookup_auth;     /* requests with Authorization are looked up */
    char fill_host[256];  /* Host fills send (luring.cache{host}); "": the
                           * client's */
    bool deliver_hook;    /* the script gave luring.cache{} a deliver hook
                           * (looked up by lua/l_cache.c per fetch) */
    size_t bytes, nobj;   /* charged bytes (all live objects), indexed objects */
    struct cache_obj **buckets;
    unsigned nbuckets;
    struct policy *pol;   /* eviction: capacity max_bytes, unit bytes */
    char policy[128];     /* its name or Lua file */
    struct cache_stats st;
};

/** A cache evicting with `policy` (a built-in name or a Lua file, see
 * policy_open). NULL with err on failure. */
struct cache *cache_new(const char *name, size_t max_bytes,
                        size_t max_objects, int64_t ttl_ms, const char *policy,
                        char *err, size_t errlen);
/** Change limits and policy (a reloaded script). 0, or -1 with err. */
int cache_configure(struct cache *c, size_t max_bytes, size_t max_objects,
                    int64_t ttl_ms, const char *policy, char *err,
                    size_t errlen);
void cache_free(struct cache *c);

/** A live (not expired, not failed) object for key, or NULL. A hit on a
 * complete object is reported to the eviction policy. */
struct cache_obj *cache_lookup(struct cache *c, const char *key, size_t klen,
                               int64_t now);
/** A new object in the FILLING state, indexed under key (replacing any
 * older one). refs: 1 for the index. NULL when out of memory. */
struct cache_obj *cache_insert(struct cache *c, const char *key, size_t klen);

/** A FILLING object that is not indexed (private to its creator), refs 1.
 * Set index_late to have it indexed when its head is storable. */
struct cache_obj *cache_obj_new(struct cache *c, const char *key, size_t klen);
/** Make the new object o a stream object (see struct cache_obj): `wake`
 * (arg) is called when a paused fill may read again (its reader caught up,
 * or left). 0, or -1 when out of memory. */
int cache_obj_stream(struct cache_obj *o, void (*wake)(void *arg), void *arg);
/** Stream objects: should the fill stop reading now (its reader is
 * CACHE_STREAM_AHEAD behind)? true marks it paused until fill_wake. */
bool cache_obj_fill_pause(struct cache_obj *o);
/** Stream objects: nobody reads any more (the reader left while it was
 * being filled): the fill should end. */
bool cache_obj_abandoned(const struct cache_obj *o);
/** Stream objects: the reader has taken the body up to `off`. */
void cache_obj_read(struct cache_obj *o, size_t off);
/** The aux of a send segment of a stream object: chunk i, n bytes (for
 * cache_obj_release, which then frees chunks whose bytes are all sent). */
#define CACHE_SEG(i, n) ((intptr_t)(((uint64_t)(i) << 24) | (uint64_t)(n)))
void cache_obj_ref(struct cache_obj *o);
void cache_obj_unref(struct cache_obj *o);
/** seg_release_pt-compatible unref, for queued send segments. */
void cache_obj_release(struct worker *w, void *arg, intptr_t aux);

/** Tell sw about every change of o from now on (until unwatched). */
void cache_obj_watch(struct cache_obj *o, struct store_waiter *sw);
void cache_obj_unwatch(struct cache_obj *o, struct store_waiter *sw);

/* Filling, called by fetches. Each notifies the waiters. */
/** The response's status and header lines (o->hdrs) are known; `total` is
 * the body length or -1. `shareable`: it may go to requests other than the
 * one that caused the fetch (decided by the caller, core/fetch.c); if not,
 * waiters see o->shareable false (only the fetch's own may take it) and a
 * hit-for-miss marker replaces whatever is under its key for hfm_ms. A shareable response is stored for
 * ttl_ms (> 0) unless the budget or its size say otherwise. `now`:
 * monotonic ms. */
void cache_obj_head(struct cache_obj *o, int status, int64_t total,
                    bool shareable, int64_t ttl_ms, int64_t now);
/** Append body bytes. Returns 0, or -1 when out of memory. */
int cache_obj_data(struct cache_obj *o, const char *p, size_t n);
/** Writable space at the fill cursor (*n bytes), for reading straight
 * into the object; NULL when out of memory or the body is complete. */
char *cache_obj_reserve(struct cache_obj *o, size_t *n);
/** n bytes were written at the cursor returned by cache_obj_reserve. */
void cache_obj_commit(struct cache_obj *o, size_t n);
/** The fetch ended. ok=false: failed/truncated; `status` (502/504) is what
 * subscribers still without a head get. */
void cache_obj_done(struct cache_obj *o, bool ok, int status);
/** Remove from the index (object lives on while referenced). */
void cache_unindex(struct cache_obj *o);

/** Pointer to `*n` contiguous bytes at offset off (n ≤ what is filled). */
const char *cache_obj_at(const struct cache_obj *o, size_t off, size_t *n);

/** Evict until within budget. */
void cache_enforce(struct cache *c);

#endif
