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

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "store/keyidx.h"
#include "store/policy.h"
#include "store/tagidx.h"
#include "store/wake.h"

#define CACHE_CHUNK (64 * 1024)
/* A stream object's fill pauses when its reader is this far behind, and
 * goes on once the reader is within half of it. */
#define CACHE_STREAM_AHEAD (1024 * 1024)

struct worker; /* opaque: only passed through (cache_obj_release) */


enum obj_state {
    OBJ_FILLING,  /* fetch in flight: head and/or body still arriving */
    OBJ_COMPLETE, /* whole body present */
    OBJ_FAILED,   /* fetch failed or truncated: never served as complete */
};

struct cache_obj {
    struct cache *cache;
    char *key;
    size_t klen;
    struct cache_obj *hnext;         /* hash chain (bucket: hash); the
                                      * variants of a key newest first */
    uint64_t hash;                   /* cache_hash(key) */
    struct policy_node pn; /* eviction policy state (key id, size) */
    bool in_policy;      /* complete and linked in the cache's policy */
    bool indexed;        /* reachable by key (holds one ref) */
    bool head_ready;     /* published (cache_obj_head_known) */
    bool cacheable;      /* may stay indexed once complete */
    bool shareable;      /* head known and the response may be delivered
                          * to requests other than the one that caused the
                          * fill (RFC 9111 §3); false: only its owner gets it */
    bool hfm;            /* a hit-for-miss marker: no body; requests that
                          * find it fetch on their own, without waiting */
    bool index_late;     /* not indexed yet: indexed when its head turns out
                          * storable, replaced by a marker otherwise */
    bool req_auth;       /* the request behind the fill had Authorization */
    uint64_t gen;        /* the cache's inval_gen when o was made: an
                          * invalidation after it may concern o's
                          * response although it could not reach o */
    void *vary_req;      /* the fill's request fields until its head
                          * (core/vary.c); freed with the object */
    char *vary;          /* the fill's request values of the fields the
                          * response's Vary names (core/vary.c), vary_len
                          * bytes; NULL: no Vary */
    size_t vary_len;
    enum obj_state state; /* published (cache_obj_state) */
    int status;          /* origin status, or 502/504 when failed early */
    /* the fill's origin exchange as core/origin.c saw it, for the access
     * log of the request that caused it: monotonic µs (0: not yet) */
    int64_t up_start_us; /* the request was started (connect included) */
    int64_t up_head_us;  /* its response head was parsed */
    int64_t up_end_us;   /* the fill ended (complete or failed) */
    int up_status;       /* the status the origin sent (a 304 to a
                          * revalidation too); 0: no head came */
    struct buf hdrs;     /* origin header lines to forward, "N: v\r\n"... */
    int64_t total;       /* Content-Length, or -1 (never changed once the
                          * head is published: complete, len is the length) */
    size_t len;          /* bytes filled (the fill cursor), published
                          * (cache_obj_filled) */
    char **chunks;
    unsigned nchunks, chunks_cap;
    size_t mem;          /* bytes charged to the cache: its budget
                          * (bytes), or held while not indexed */
    bool held;           /* mem is in cache->held, not cache->bytes */
    int64_t expires;     /* monotonic ms */
    int64_t born;        /* monotonic ms at which the stored response's
                          * age was 0: when its head came (cache_obj_head)
                          * minus init_age; Age = (now - born) / 1000
                          * (core/deliver.c) */
    int64_t init_age;    /* its corrected initial age in seconds (RFC 9111
                          * §4.2.3), set before cache_obj_head; 0: none */
    int64_t origin_age;  /* the Age the origin sent (delta-seconds), -1:
                          * none; kept out of hdrs, sent recomputed */
    bool has_date;       /* hdrs hold the origin's Date (RFC 9110 §6.6.1),
                          * sent instead of the server's own */
    /* stale serving and revalidation (RFC 9111 §4.2.4, §4.3; RFC 5861),
     * windows set by core/fetch.c before cache_obj_head, counted from
     * expires; the object stays indexed until stale_until */
    int64_t grace_ms;    /* served stale at once while one refresh runs */
    int64_t keep_ms;     /* kept to be revalidated (it has a validator) */
    int64_t sie_ms;      /* may replace an error (stale-if-error) */
    int64_t stale_until; /* monotonic ms: expires + the longest window */
    bool no_stale;       /* must-revalidate, proxy-revalidate, s-maxage or
                          * no-cache: never served stale, whatever a
                          * request's max-stale says (§4.2.4, §5.2.2.2) */
    struct cache_obj *refresh;  /* the fill in flight refreshing this one
                                 * (no ref: it clears this when done) */
    struct cache_obj *reval_of; /* a refresh: the stale object it refreshes
                                 * (one ref, until cache_obj_done) */
    bool fallback;       /* a refresh whose fill fails before its head
                          * gives its waiters reval_of's response instead
                          * (stale-if-error, cache_obj_substitute) */
    bool cond_sent;      /* a refresh that sent reval_of's validators */
    bool revalidated;    /* made from reval_of by a 304 (core/fetch.c) */
    bool stale_sub;      /* holds reval_of's response instead of an error */
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
    /* invalidation (RFC 9111 §4.4, cache_ban, cache_purge_tag): linked
     * while indexed, unlinked by cache_unindex */
    struct keyidx_node kn; /* in cache->keys */
    struct tag_link *tags; /* ntags links in cache->tags (cache_obj_set_tags) */
    unsigned ntags;
    /* what answering conditionals and ranges needs of the head (read by
     * core/cond.c cond_note before the head is published, cond_noted,
     * which also puts luring's own Accept-Ranges in hdrs in place of the
     * origin's; copied with hdrs by cache_obj_substitute): offsets into
     * hdrs */
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
    /* index + subscribers + queued send segments; atomic (a send on any
     * worker drops one). On a cache line of its own: every hit on every
     * worker writes it twice, and the fields above are what the other
     * workers' hits read (objects are allocated 64-byte aligned). */
    int refs __attribute__((aligned(64)));
};

/* What a delivery on any worker reads of an object being filled: the
 * fill stores each with release after the fields and bytes it covers
 * (status, hdrs and the cond_note fields before head_ready; the bytes
 * before len; total before state), so these acquire loads see them. The
 * chunk directory is replaced, never moved (cache_obj_at). */
static inline bool cache_obj_head_known(const struct cache_obj *o)
{
    return __atomic_load_n(&o->head_ready, __ATOMIC_ACQUIRE);
}
static inline enum obj_state cache_obj_state(const struct cache_obj *o)
{
    return __atomic_load_n(&o->state, __ATOMIC_ACQUIRE);
}
static inline size_t cache_obj_filled(const struct cache_obj *o)
{
    return __atomic_load_n(&o->len, __ATOMIC_ACQUIRE);
}

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
    uint64_t stale;        /* requests served a stale object (grace, or
                            * instead of an error) */
    uint64_t refreshes;    /* refresh fills started (background or not) */
    uint64_t revalidated;  /* 304s from the origin that freshened an object */
    uint64_t locks;        /* a shared cache: its lock taken (cache_lock) */
    uint64_t lock_waits;   /* ... of which it was held by another worker */
} __attribute__((aligned(64))); /* a worker's own lines (CACHE_ST) */

/* The invalidations a cache remembers (struct cache inval_log): the last
 * CACHE_INVAL_LOG purges, bans and tag purges, for the fills in flight
 * that they could not reach. */
#define CACHE_INVAL_LOG 64

enum cache_inval_kind {
    INVAL_KEY,    /* cache_purge_key: s is the key */
    INVAL_PREFIX, /* cache_ban: s is the prefix ("" for all) */
    INVAL_TAG,    /* cache_purge_tag: s is the tag */
    INVAL_ALL,    /* out of memory to remember it: matches everything */
};

struct cache_inval {
    uint64_t gen;       /* cache->inval_gen it made */
    enum cache_inval_kind kind;
    char *s;            /* n bytes, owned */
    size_t n;
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
    /* shared by every worker (cache_new_shared): `mu` (recursive) is held
     * by each function of this file that changes or walks the index,
     * an object's waiters, the budget, the policy or the invalidation
     * indexes; callers hold it (cache_lock) across a lookup and what they
     * do about it; waiters are told through their worker's inbox
     * (store/wake.h). Objects are read without it (cache_obj_at, the
     * published fields). Unshared caches take no lock. */
    bool shared;
    /* on a cache line of its own (each lock moves it between cores; the
     * fields next to it are read by every lookup); struct cache is
     * allocated 64-byte aligned */
    pthread_mutex_t mu __attribute__((aligned(64)));
    bool scratch __attribute__((aligned(64)));          /* objects nobody looks up (origin:fetch,
                             * passes): relayed, never evaluated (cond.h) */
    cache_decide_pt decide; /* NULL: keep ttl_ms (called by the fetch) */
    void *decide_ctx;       /* for decide: the Lua runtime (struct lrt) whose
                             * current script runs the hooks */
    size_t max_bytes, max_objects;
    int64_t ttl_ms;       /* default TTL when the origin gives none, and
                           * the least heuristic lifetime (core/fetch.h) */
    double heuristic_fraction; /* of the Last-Modified age (RFC 9111
                                * §4.2.2), 0: no heuristic, ttl_ms */
    int64_t heuristic_max_ms;  /* the greatest heuristic lifetime */
    int64_t hfm_ms;       /* hit-for-miss marker lifetime; 0: no markers */
    unsigned max_variants; /* stored responses per key, at least 1
                            * (the variants section below) */
    int64_t grace_ms;     /* least grace of a stored response (RFC 9111
                           * §4.2.4; Varnish's default_grace) */
    int64_t keep_ms;      /* how long past grace a response with a validator
                           * stays to be revalidated (Varnish's keep) */
    int64_t sie_ms;       /* least stale-if-error window (RFC 5861 §4) */
    bool client_revalidate; /* a request's no-cache, max-age, min-fresh
                             * and max-stale are honoured (RFC 9111
                             * §5.2.1.1-4: lua/l_cache.c req_wants);
                             * false: ignored */
    bool lookup_cookie;   /* requests with Cookie are looked up (else passed) */
    bool lookup_auth;     /* requests with Authorization are looked up */
    char fill_host[256];  /* Host fills send (luring.cache{host}); "": the
                           * client's */
    bool deliver_hook;    /* the script gave luring.cache{} a deliver hook
                           * (looked up by lua/l_cache.c per fetch) */
    size_t bytes, nobj;   /* charged bytes (indexed objects: stored ones and
                           * fills that may be stored), indexed objects */
    size_t held;          /* bytes of live objects no index reaches (see
                           * mem_add in cache.c): not in the budget */
    struct cache_obj **buckets;
    unsigned nbuckets;
    struct policy *pol;   /* eviction: capacity max_bytes, unit bytes */
    char policy[128];     /* its name or Lua file */
    struct cache_stats *stw; /* one per worker (CACHE_ST; padded): each
                              * written by its worker only, summed by
                              * cache_stats_sum */
    unsigned nstw;
    /* invalidation: every indexed object is in keys, and in tags under
     * each tag its response named */
    struct keyidx keys;   /* key order: cache_ban */
    struct tagidx tags;   /* tag -> objects: cache_purge_tag */
    char tag_header[64];  /* the field whose value lists a response's tags
                           * (core/inval.c); "": Surrogate-Key and Cache-Tag */
    /* what no index can reach: a fill whose object is indexed only once
     * its head comes (index_late) is not found by key, and no fill is
     * found by tag before its head; each invalidation counts (inval_gen)
     * and is remembered (inval_log[gen % CACHE_INVAL_LOG]), and such a
     * fill's head is checked against those made since it started
     * (cache_obj_head, cache_obj_set_tags) */
    uint64_t inval_gen;
    struct cache_inval inval_log[CACHE_INVAL_LOG];
    struct cache_obj *spare; /* freed stream objects kept, with their key,
                              * chunk array and header buffer, for
                              * cache_obj_new (linked by hnext; at most
                              * CACHE_SPARE): a pass-through makes and frees
                              * one per request */
    unsigned nspare;
};

/* This worker's counters of c (unshared caches: the one set). Increment
 * with CACHE_COUNT: a relaxed store, so that cache_stats_sum may read
 * them from another thread. */
#define CACHE_ST(c)                                                       \
    (&(c)->stw[(c)->shared && store_self > 0 ? (unsigned)store_self : 0])
#define CACHE_COUNT(c, f)                                                 \
    do {                                                                  \
        struct cache_stats *st_ = CACHE_ST(c);                            \
        __atomic_store_n(&st_->f, st_->f + 1, __ATOMIC_RELAXED);         \
    } while (0)
/** The sum of every worker's counters of c (any thread). */
void cache_stats_sum(const struct cache *c, struct cache_stats *out);
/** c's charged bytes (the budget: stored objects and fills that may be
 * stored), indexed objects, bytes held by objects no index reaches
 * (passes, responses not stored, evicted ones still being sent: their
 * readers free them), and its max_bytes, read under its lock (any
 * thread: a reload may be changing max_bytes on another worker). */
void cache_usage(struct cache *c, size_t *bytes, size_t *objects,
                 size_t *held, size_t *max_bytes);

/* The lock of a shared cache (recursive; nothing for an unshared one):
 * held across a lookup and its consequences (lua/l_cache.c), so that
 * two workers finding no object for one key make one fill. */
static inline void cache_lock(struct cache *c)
{
    if (!c->shared)
        return;
    /* counted the way Varnish's LCK counters are: every take, and the
     * takes that had to wait (the contention the store costs) */
    bool count = store_self >= 0; /* a worker's thread: its own slot */
    if (count)
        CACHE_COUNT(c, locks);
    if (__builtin_expect(pthread_mutex_trylock(&c->mu) != 0, 0)) {
        if (count)
            CACHE_COUNT(c, lock_waits);
        pthread_mutex_lock(&c->mu);
    }
}
static inline void cache_unlock(struct cache *c)
{
    if (c->shared)
        pthread_mutex_unlock(&c->mu);
}

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
/** Make new cache c shared by every worker (store_nworkers() counter
 * sets; before any worker uses it). 0, or -1 when out of memory. */
int cache_share(struct cache *c);

/** A live (not expired, not failed) object for key, or NULL: the newest
 * of its variants, whatever its Vary (cache_select picks by request). A
 * hit on a complete object is reported to the eviction policy. An expired
 * one leaves the index unless it is within its stale windows. */
struct cache_obj *cache_lookup(struct cache *c, const char *key, size_t klen,
                               int64_t now);
/* What cache_select found (RFC 9111 §4.2, §4.2.4). */
enum cache_fresh {
    CACHE_FRESH,  /* within its freshness lifetime (or not complete yet) */
    CACHE_GRACE,  /* stale, within grace: may be served while refreshed */
    CACHE_STALE,  /* stale past grace: only revalidated, or served in
                   * place of an error (keep, stale-if-error windows) */
};

/** o's fill failed or brought an error: give o's waiters the response of
 * complete object `from` instead (a stale one, RFC 5861 §4): its status,
 * header lines and body are copied into o, which completes at once and is
 * never stored; the rest of o's fill is ignored (cache_obj_data and
 * cache_obj_done do nothing). false when out of memory (o unchanged). */
bool cache_obj_substitute(struct cache_obj *o, const struct cache_obj *from);

/** A new object in the FILLING state, indexed under key in front of the
 * objects already there (variants of the key; when its head is stored,
 * the older responses of its variant go: cache_variants_stored). refs: 1 for
 * the index. NULL when out of memory. */
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
 * subscribers still without a head get, unless o is a refresh with
 * `fallback` whose stale object is still indexed: they get that one
 * (cache_obj_substitute). Nothing for an object completed already. */
void cache_obj_done(struct cache_obj *o, bool ok, int status);
/** Remove from the index (object lives on while referenced). */
void cache_unindex(struct cache_obj *o);

/** Pointer to `*n` contiguous bytes at offset off (n ≤ what is filled). */
const char *cache_obj_at(const struct cache_obj *o, size_t off, size_t *n);

/* ==== invalidation (RFC 9111 §4.4; docs/API.md "Invalidation") ====
 * Each takes what it finds out of the index (cache_unindex: markers too),
 * so it is no longer served; an object still being filled goes on for the
 * requests that wait for it and is then not stored; sends in flight keep
 * their object until done. A fill in flight that the indexes can't reach
 * (not indexed before its head; tags unknown before its head) is not
 * stored either when its key (or, once its head is known, one of its
 * tags) matches an invalidation made after it started (struct cache
 * inval_log; when more than CACHE_INVAL_LOG came meanwhile, it is not
 * stored at all). Each costs what it removes (plus a hash lookup, or
 * O(log n) comparisons for a prefix, and a copy of its argument), never
 * a walk of the cache. */

/** Remove every response stored under key (all its variants). Returns how
 * many responses went (hit-for-miss markers go too, uncounted). */
size_t cache_purge_key(struct cache *c, const char *key, size_t klen);
/** Remove every object whose key starts with the plen bytes at prefix
 * (plen 0: every object). Returns how many responses went, as above. */
size_t cache_ban(struct cache *c, const char *prefix, size_t plen);
/** Remove every object tagged `tag` (n bytes; cache_obj_set_tags). Returns
 * how many responses went. */
size_t cache_purge_tag(struct cache *c, const char *tag, size_t n);

/** A tag as given to cache_obj_set_tags: n bytes at p. */
struct cache_tag {
    const char *p;
    size_t n;
};
/** Index the indexed object o under the n tags t (at most TAG_MAX; each 1
 * to TAG_LEN_MAX bytes, distinct: core/inval.c reads them from the
 * response) until it leaves the index; their memory (links, names) is
 * charged to o. Replaces tags o had. Nothing when o is not indexed. When
 * one of the tags was purged after o's fill started (cache_purge_tag
 * could not find o then), o leaves the index instead (its waiters still
 * get it). 0; -1 when out of memory (o keeps no tags). */
int cache_obj_set_tags(struct cache_obj *o, const struct cache_tag *t,
                       unsigned n);

/** Evict until within budget. */
void cache_enforce(struct cache *c);

/* ==== variants (store/variants.c) ====
 *
 * Several stored responses per key (RFC 9111 §4.1). The
 * objects of one key sit side by side in its hash chain, newest first
 * (index order, kept by rehash); each records in o->vary the request
 * values its Vary selects on (core/vary.c), NULL without Vary. A lookup
 * takes the first (most recent, §4.1) whose values match the request; a
 * stored response replaces the older ones of its own variant only, and a
 * key keeps at most c->max_variants of them (the oldest goes). Varnish
 * does the same under one objhead: every variant kept, the first match
 * taken, most recent first (without a per-key limit).
 *
 * Iterating a key's objects: cache_first, then cache_next_variant until
 * NULL; take the next before cache_unindex. cache_purge_key removes them
 * all; cache_ban and cache_purge_tag find each variant in their indexes.
 */
/* max_variants unless luring.cache{ max_variants } says otherwise */
#define CACHE_MAX_VARIANTS 8

/** Does the stored response o (with Vary: o->vary set) go to the request
 * arg? (core/vary.h vary_match_req) */
typedef bool (*cache_match_pt)(const struct cache_obj *o, const void *arg);

/** FNV-1a 64 of key[0..n): its bucket and, without Vary, its policy id
 * (inline: computed on every lookup). */
static inline uint64_t cache_hash(const char *p, size_t n)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a 64 */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/** The newest indexed object under key (any state, expired or not), or
 * NULL. */
struct cache_obj *cache_first(struct cache *c, const char *key, size_t klen);
/** The next older indexed object with o's key, or NULL (o indexed). */
struct cache_obj *cache_next_variant(const struct cache_obj *o);

/** What a request finds under key at `now` (monotonic ms): a hit-for-miss
 * marker (per key); else the newest object whose head is known and that
 * goes to the request (no Vary, or match(o, arg)): complete (a hit) or
 * still filling (to join); else the newest fill whose head is unknown (to
 * join: its waiters of another variant are released when it comes); else
 * NULL. Expired objects met on the way are unindexed (st.expired) unless
 * still within their stale windows (stale_until): a stale one of the
 * request's variant is returned like a hit, *fr saying how stale
 * (CACHE_GRACE, CACHE_STALE; else CACHE_FRESH). The one returned, if
 * complete, counts as a hit for the policy. Without Vary it costs what
 * cache_lookup does. */
struct cache_obj *cache_select(struct cache *c, const char *key, size_t klen,
                               int64_t now, cache_match_pt match,
                               const void *arg, enum cache_fresh *fr);

/** o (indexed, head known, to be stored) is the newest response of its
 * variant: the older objects of the key whose head is known and that it
 * makes unreachable go (all of them when o has no Vary, else those with
 * the same recorded values), a hit-for-miss marker goes, and while more
 * than c->max_variants remain the oldest other goes (st.evictions).
 * Called by cache_obj_head. */
void cache_variants_stored(struct cache *c, struct cache_obj *o);

/** The policy id of a variant: cache_hash of its key continued over its
 * recorded values, so that each variant is a key of its own to the
 * policy (Lua policies refuse two resident nodes with one id). */
uint64_t cache_variant_key(const struct cache_obj *o);

#endif
