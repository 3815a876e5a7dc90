/* cache.c - object store: hash index, TTL, memory budget, eviction through
 * a policy, chunked object bodies with a fill cursor, refcounts (see
 * cache.h). */
#include "store/cache.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* a shared cache's lock (recursive: the functions below call each other) */
#define LOCK(c) cache_lock(c)
#define UNLOCK(c) cache_unlock(c)
/* The public `name`: name##_l under the lock of cache `lc` (an expression
 * of the parameters). */
#define LOCKED(ret, name, lc, params, args)                               \
    ret name params                                                       \
    {                                                                     \
        struct cache *lc_ = (lc);                                         \
        LOCK(lc_);                                                        \
        ret rv_ = name##_l args;                                          \
        UNLOCK(lc_);                                                      \
        return rv_;                                                       \
    }
#define LOCKED_VOID(name, lc, params, args)                               \
    void name params                                                      \
    {                                                                     \
        struct cache *lc_ = (lc);                                         \
        LOCK(lc_);                                                        \
        name##_l args;                                                    \
        UNLOCK(lc_);                                                      \
    }


/* ==== memory ==== */

/* An object's memory (o->mem) is charged to c->bytes, the store's budget
 * (what max_bytes bounds and eviction makes room in: stored objects and
 * fills that may be stored), or, while o->held, to c->held: objects no
 * index reaches (passes, responses too large or not shareable, evicted or
 * purged ones still being sent), which their readers hold and free. A
 * response that can't be stored thus never evicts what is stored. */
static void mem_add(struct cache_obj *o, size_t n)
{
    o->mem += n;
    *(o->held ? &o->cache->held : &o->cache->bytes) += n;
}

static void mem_sub(struct cache_obj *o, size_t n)
{
    o->mem -= n;
    *(o->held ? &o->cache->held : &o->cache->bytes) -= n;
}

/* o moves to the other count (indexed: the budget; unindexed: held). */
static void set_held(struct cache_obj *o, bool held)
{
    if (o->held == held)
        return;
    size_t n = o->mem;
    mem_sub(o, n);
    o->held = held;
    mem_add(o, n);
}

/* ==== hashing ==== */

/* One hash per key (cache_hash, cache.h): it picks the bucket (o->hash)
 * and is the key id the eviction policy knows the object by (ghost lists),
 * except for a variant with Vary, which has an id of its own
 * (store/variants.c). */

static int rehash(struct cache *c, unsigned n)
{
    struct cache_obj **b = calloc(n, sizeof *b);
    if (b == NULL)
        return -1;
    for (unsigned i = 0; i < c->nbuckets; i++) {
        /* reversed first, so that pushing keeps the order of each key's
         * variants (newest first, cache.h: variants) */
        struct cache_obj *o = c->buckets[i], *next, *rev = NULL;
        for (; o; o = next) {
            next = o->hnext;
            o->hnext = rev;
            rev = o;
        }
        for (o = rev; o; o = next) {
            next = o->hnext;
            o->hnext = b[o->hash & (n - 1)];
            b[o->hash & (n - 1)] = o;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
    return 0;
}

struct cache *cache_new(const char *name, size_t max_bytes,
                        size_t max_objects, int64_t ttl_ms, const char *policy,
                        char *err, size_t errlen)
{
    struct cache *c = aligned_alloc(64, sizeof *c); /* mu's own line */
    if (c != NULL)
        memset(c, 0, sizeof *c);
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->pol = policy_open(policy, max_bytes, err, errlen);
    if (c->pol == NULL) {
        free(c);
        return NULL;
    }
    c->stw = calloc(1, sizeof *c->stw);
    if (c->stw == NULL) {
        policy_free(c->pol);
        free(c);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->nstw = 1;
    snprintf(c->policy, sizeof c->policy, "%s", policy);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->max_bytes = max_bytes;
    c->max_objects = max_objects;
    c->ttl_ms = ttl_ms;
    c->hfm_ms = 120000;
    c->max_variants = CACHE_MAX_VARIANTS;
    c->heuristic_fraction = 0.1;
    c->heuristic_max_ms = 86400000;
    if (rehash(c, 1024) < 0) {
        policy_free(c->pol);
        free(c->stw);
        free(c);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    return c;
}

int cache_share(struct cache *c)
{
    unsigned n = store_nworkers();
    /* each worker's counters on cache lines of their own */
    struct cache_stats *st = aligned_alloc(64, n * sizeof *st);
    if (st == NULL)
        return -1;
    memset(st, 0, n * sizeof *st);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&c->mu, &a);
    pthread_mutexattr_destroy(&a);
    st[0] = c->stw[0];
    free(c->stw);
    c->stw = st;
    c->nstw = n;
    c->shared = true;
    return 0;
}

void cache_stats_sum(const struct cache *c, struct cache_stats *out)
{
    /* every field a uint64_t: summed as an array */
    uint64_t *o = (uint64_t *)(void *)out;
    size_t nf = sizeof *out / sizeof(uint64_t);
    for (size_t f = 0; f < nf; f++)
        o[f] = 0;
    for (unsigned i = 0; i < c->nstw; i++) {
        const uint64_t *x = (const uint64_t *)(const void *)&c->stw[i];
        for (size_t f = 0; f < nf; f++)
            o[f] += __atomic_load_n(&x[f], __ATOMIC_RELAXED);
    }
}

void cache_usage(struct cache *c, size_t *bytes, size_t *objects,
                 size_t *held, size_t *max_bytes)
{
    LOCK(c);
    *bytes = c->bytes;
    *objects = c->nobj;
    *held = c->held;
    *max_bytes = c->max_bytes;
    UNLOCK(c);
}

static int configure(struct cache *c, size_t max_bytes, size_t max_objects,
                     int64_t ttl_ms, const char *policy, char *err,
                     size_t errlen);

int cache_configure(struct cache *c, size_t max_bytes, size_t max_objects,
                    int64_t ttl_ms, const char *policy, char *err,
                    size_t errlen)
{
    LOCK(c);
    int rc = configure(c, max_bytes, max_objects, ttl_ms, policy, err, errlen);
    UNLOCK(c);
    return rc;
}

static int configure(struct cache *c, size_t max_bytes, size_t max_objects,
                     int64_t ttl_ms, const char *policy, char *err,
                     size_t errlen)
{
    if (strcmp(policy, c->policy) != 0 || max_bytes != c->max_bytes) {
        /* a new policy instance; complete objects move over */
        struct policy *np = policy_open(policy, max_bytes, err, errlen);
        if (np == NULL)
            return -1;
        struct policy *old = c->pol;
        c->pol = np;
        for (unsigned i = 0; i < c->nbuckets; i++)
            for (struct cache_obj *o = c->buckets[i]; o; o = o->hnext)
                if (o->in_policy) {
                    policy_remove(old, &o->pn);
                    o->in_policy = false;
                    policy_miss(np, &o->pn);
                    if (policy_can_insert(np, o->pn.size) &&
                        !policy_full(np, o->pn.size) &&
                        policy_insert(np, &o->pn))
                        o->in_policy = true;
                }
        policy_free(old);
        snprintf(c->policy, sizeof c->policy, "%s", policy);
    }
    /* only what changed: a shared cache's readers of these take no lock */
    if (c->max_bytes != max_bytes)
        c->max_bytes = max_bytes;
    if (c->max_objects != max_objects)
        c->max_objects = max_objects;
    if (c->ttl_ms != ttl_ms)
        c->ttl_ms = ttl_ms;
    /* objects the new policy didn't take are dropped; then the budget */
    for (unsigned i = 0; i < c->nbuckets; i++) {
        struct cache_obj *o = c->buckets[i], *next;
        for (; o; o = next) {
            next = o->hnext;
            if (!o->in_policy && o->state == OBJ_COMPLETE)
                cache_unindex(o);
        }
    }
    cache_enforce(c);
    return 0;
}

/* ==== eviction policy ==== */

#define OBJ_OF(n) ((struct cache_obj *)((char *)(n) - offsetof(struct cache_obj, pn)))

/* Evict one object chosen by the policy. false: nothing left to evict. */
static bool evict_one(struct cache *c)
{
    struct policy_node *n = policy_evict(c->pol);
    if (n == NULL) {
        const char *e = policy_error(c->pol);
        if (e)
            log_err("cache %s: policy %s: %s", c->name, c->policy, e);
        return false;
    }
    struct cache_obj *o = OBJ_OF(n);
    o->in_policy = false;
    CACHE_COUNT(c, evictions);
    cache_unindex(o);
    return true;
}

/* A complete, cacheable object joins the policy (evicting to make room),
 * or leaves the index when the policy won't take it. */
static void policy_admit(struct cache *c, struct cache_obj *o)
{
    o->pn.size = o->mem;
    if (policy_can_insert(c->pol, o->pn.size)) {
        while (policy_full(c->pol, o->pn.size) && evict_one(c))
            ;
        if (policy_insert(c->pol, &o->pn)) {
            o->in_policy = true;
            return;
        }
    }
    CACHE_COUNT(c, uncacheable);
    cache_unindex(o);
}

/* ==== objects ==== */

#define CACHE_SPARE 64          /* stream objects kept for reuse, per cache */
#define CACHE_SPARE_HDRS 4096   /* header buffer a spare object keeps */

/* A refresh ended (or its object goes): the stale object it refreshed
 * may start another, and is no longer held by it. */
static void refresh_end(struct cache_obj *o)
{
    struct cache_obj *s = o->reval_of;
    if (s == NULL)
        return;
    o->reval_of = NULL;
    if (s->refresh == o)
        s->refresh = NULL;
    cache_obj_unref(s);
}

static void obj_free(struct cache_obj *o)
{
    struct cache *c = o->cache;
    refresh_end(o); /* o->refresh is NULL: a refresh holds a ref on o */
    mem_sub(o, o->mem);
    for (unsigned i = 0; i < o->nchunks; i++)
        free(o->chunks[i]); /* NULL: a stream chunk freed already */
    if (o->stream && c->nspare < CACHE_SPARE) {
        /* kept with its key, chunks, sent and hdrs (cache_obj_new) */
        free(o->vary_req);
        free(o->vary);
        buf_reset(&o->hdrs, CACHE_SPARE_HDRS);
        o->hnext = c->spare;
        c->spare = o;
        c->nspare++;
        return;
    }
    if (o->stream) {
        free(o->chunks);
    } else if (o->chunks) { /* the directory and the ones it replaced */
        for (char **d = o->chunks - 1; d;) {
            char **prev = (char **)(void *)d[0];
            free(d);
            d = prev;
        }
    }
    free(o->sent);
    buf_free(&o->hdrs);
    free(o->vary_req);
    free(o->vary);
    free(o->key);
    free(o);
}

static void fill_resume(struct cache_obj *o);

void cache_obj_ref(struct cache_obj *o)
{
    __atomic_fetch_add(&o->refs, 1, __ATOMIC_RELAXED);
}

void cache_obj_watch(struct cache_obj *o, struct store_waiter *sw)
{
    LOCK(o->cache);
    sw->worker = store_self;
    sw->queued = false;
    sw->next = o->waiters;
    o->waiters = sw;
    UNLOCK(o->cache);
}

void cache_obj_unwatch(struct cache_obj *o, struct store_waiter *sw)
{
    struct cache *c = o->cache;
    LOCK(c);
    if (c->shared)
        store_wake_cancel(sw);
    for (struct store_waiter **pp = &o->waiters; *pp; pp = &(*pp)->next)
        if (*pp == sw) {
            *pp = sw->next;
            break;
        }
    sw->next = NULL;
    if (o->stream && o->waiters == NULL && o->fill_wake) {
        /* the reader left: tell the fill, paused or not (it may still be
         * waiting for the origin's head), so it ends now */
        o->fill_paused = false;
        o->fill_wake(o->fill_arg);
    }
    UNLOCK(c);
}

/* o changed: tell every waiter (each may unwatch itself, or drop the last
 * ref but the caller's). The caller holds a ref across the call. */
static void notify_held(struct cache_obj *o)
{
    struct store_waiter *sw = o->waiters, *next;
    if (o->cache->shared) { /* each on its own worker, after the lock */
        for (; sw; sw = sw->next)
            store_wake_post(sw);
        return;
    }
    for (; sw; sw = next) {
        next = sw->next;
        sw->notify(sw);
    }
}

/* notify for a caller that holds no ref of its own across the call */
static void notify(struct cache_obj *o)
{
    cache_obj_ref(o);
    notify_held(o);
    cache_obj_unref(o);
}

void cache_obj_unref(struct cache_obj *o)
{
    if (__atomic_sub_fetch(&o->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        struct cache *c = o->cache;
        LOCK(c);
        obj_free(o);
        UNLOCK(c);
    }
}

/* A stream object's chunk i had n more bytes sent: free it once all of
 * it is (the reader never goes back). */
static void chunk_sent(struct cache_obj *o, unsigned i, uint32_t n)
{
    if (i >= o->nchunks || o->chunks[i] == NULL)
        return;
    /* only the last chunk may be smaller (ensure_chunk) */
    size_t sz = i + 1 == o->nchunks ? o->last_sz : CACHE_CHUNK;
    o->sent[i] += n;
    if (o->sent[i] < sz)
        return;
    free(o->chunks[i]);
    o->chunks[i] = NULL;
    mem_sub(o, sz);
}

void cache_obj_release(struct worker *w, void *arg, intptr_t aux)
{
    (void)w;
    struct cache_obj *o = arg;
    if (aux != 0)
        chunk_sent(o, (unsigned)((uint64_t)aux >> 24),
                   (uint32_t)(aux & 0xffffff));
    cache_obj_unref(o);
}

int cache_obj_stream(struct cache_obj *o, void (*wake)(void *arg), void *arg)
{
    o->stream = true;
    o->cacheable = false;
    o->fill_wake = wake;
    o->fill_arg = arg;
    return 0;
}

/* The paused fill of o may read again. */
static void fill_resume(struct cache_obj *o)
{
    if (!o->fill_paused)
        return;
    o->fill_paused = false;
    if (o->fill_wake)
        o->fill_wake(o->fill_arg);
}

bool cache_obj_fill_pause(struct cache_obj *o)
{
    if (!o->stream || o->waiters == NULL ||
        o->len - o->read_off < CACHE_STREAM_AHEAD)
        return false;
    o->fill_paused = true;
    return true;
}

bool cache_obj_abandoned(const struct cache_obj *o)
{
    return o->stream && o->waiters == NULL;
}

void cache_obj_read(struct cache_obj *o, size_t off)
{
    o->read_off = off;
    if (o->fill_paused && o->len - off < CACHE_STREAM_AHEAD / 2)
        fill_resume(o);
}

static void obj_untag(struct cache_obj *o);
static bool inval_since(const struct cache_obj *o, const struct cache_tag *t,
                        unsigned nt);

static void cache_unindex_l(struct cache_obj *o)
{
    struct cache *c = o->cache;
    if (!o->indexed)
        return;
    struct cache_obj **pp = &c->buckets[o->hash & (c->nbuckets - 1)];
    while (*pp && *pp != o)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = o->hnext;
    o->hnext = NULL;
    if (o->in_policy) {
        policy_remove(c->pol, &o->pn);
        o->in_policy = false;
    }
    keyidx_remove(&c->keys, &o->kn);
    obj_untag(o);
    o->indexed = false;
    c->nobj--;
    set_held(o, true); /* its readers' until they are done */
    cache_obj_unref(o);
}

LOCKED_VOID(cache_unindex, o->cache, (struct cache_obj *o), (o))

/* The indexed object under key (hash h), expired or not. */
static struct cache_obj *find(const struct cache *c, const char *key,
                              size_t klen, uint64_t h)
{
    struct cache_obj *o = c->buckets[h & (c->nbuckets - 1)];
    for (; o; o = o->hnext)
        if (o->hash == h && o->klen == klen && memcmp(o->key, key, klen) == 0)
            break;
    return o;
}

static struct cache_obj *cache_lookup_l(struct cache *c, const char *key,
                                        size_t klen,
                               int64_t now)
{
    struct cache_obj *o = find(c, key, klen, cache_hash(key, klen));
    if (o == NULL)
        return NULL;
    if (o->state == OBJ_COMPLETE && o->expires <= now) {
        if (now < o->stale_until)
            return NULL; /* kept for cache_select: stale */
        CACHE_COUNT(c, expired);
        cache_unindex(o);
        return NULL;
    }
    if (o->in_policy)
        policy_hit(c->pol, &o->pn);
    return o;
}

LOCKED(struct cache_obj *, cache_lookup, c,
       (struct cache *c, const char *key, size_t klen, int64_t now),
       (c, key, klen, now))

/* A spare stream object (c->spare) as calloc would make it, keeping its
 * allocations: its key when klen fits in it, its chunk array (no chunks),
 * its sent counts (zeroed) and its header buffer (empty). NULL when there
 * is none, or out of memory for the key. */
static struct cache_obj *spare_take(struct cache *c, size_t klen)
{
    struct cache_obj *o = c->spare;
    if (o == NULL)
        return NULL;
    c->spare = o->hnext;
    c->nspare--;
    char *key = o->key, **chunks = o->chunks;
    uint32_t *sent = o->sent;
    unsigned cap = o->chunks_cap;
    struct buf hdrs = o->hdrs;
    if (klen > o->klen) {
        free(key);
        key = malloc(klen + 1);
    }
    memset(o, 0, sizeof *o);
    if (key == NULL) {
        free(chunks);
        free(sent);
        buf_free(&hdrs);
        free(o);
        return NULL;
    }
    o->key = key;
    o->chunks = chunks;
    o->chunks_cap = cap;
    o->sent = sent;
    if (sent)
        memset(sent, 0, cap * sizeof *sent);
    o->hdrs = hdrs;
    o->hdrs.len = 0;
    return o;
}

static struct cache_obj *cache_obj_new_l(struct cache *c, const char *key,
                                size_t klen)
{
    struct cache_obj *o = spare_take(c, klen);
    if (o == NULL && (o = aligned_alloc(64, sizeof *o)) != NULL &&
        (memset(o, 0, sizeof *o), o->key = malloc(klen + 1)) == NULL) {
        free(o);
        return NULL;
    }
    if (o == NULL)
        return NULL;
    memcpy(o->key, key, klen);
    o->key[klen] = 0;
    o->klen = klen;
    o->hash = o->pn.key = cache_hash(key, klen);
    o->cache = c;
    o->state = OBJ_FILLING;
    o->total = -1;
    o->cacheable = true;
    o->head_cl = -1;
    o->origin_age = -1;
    o->gen = c->inval_gen;
    o->held = true; /* until indexed (index_obj) */
    o->mem = 0;
    mem_add(o, sizeof *o + klen);
    o->refs = 1;
    return o;
}

LOCKED(struct cache_obj *, cache_obj_new, c,
       (struct cache *c, const char *key, size_t klen),
       (c, key, klen))

/* Link o into the index under its key, in front of the objects already
 * there (older variants: cache_variants_stored decides which stay). The
 * index takes a ref. */
static void index_obj(struct cache *c, struct cache_obj *o)
{
    if (c->nobj >= c->nbuckets && rehash(c, c->nbuckets * 2) < 0) {
        /* keep the smaller table: chains get longer, nothing breaks */
    }
    unsigned b = (unsigned)(o->hash & (c->nbuckets - 1));
    o->hnext = c->buckets[b];
    c->buckets[b] = o;
    policy_miss(c->pol, &o->pn); /* s3fifo: ghost hit decides placement */
    o->kn.key = o->key;
    o->kn.klen = o->klen;
    keyidx_insert(&c->keys, &o->kn); /* a miss's cost, never a hit's */
    cache_obj_ref(o);
    o->indexed = true;
    set_held(o, false); /* the store's now: the budget counts it */
    c->nobj++;
}

static struct cache_obj *cache_insert_l(struct cache *c, const char *key,
                                        size_t klen)
{
    struct cache_obj *o = cache_obj_new(c, key, klen);
    if (o == NULL)
        return NULL;
    index_obj(c, o);
    cache_obj_unref(o); /* the index's ref is the one that stays */
    cache_enforce(c);
    return o;
}

LOCKED(struct cache_obj *, cache_insert, c,
       (struct cache *c, const char *key, size_t klen),
       (c, key, klen))

/* Evict, in the policy's order, until the byte budget and the object
 * limit hold. Objects being filled are not in the policy: they can't be
 * evicted, but their bytes count. Objects still referenced by sends leave
 * the index now and free their memory when the last send completes. */
static void cache_enforce_l(struct cache *c)
{
    while ((c->bytes > c->max_bytes || c->nobj > c->max_objects) &&
           evict_one(c))
        ;
}

LOCKED_VOID(cache_enforce, c, (struct cache *c), (c))

void cache_free(struct cache *c)
{
    if (c == NULL)
        return;
    for (unsigned i = 0; i < c->nbuckets; i++)
        while (c->buckets[i])
            cache_unindex(c->buckets[i]);
    free(c->buckets);
    tagidx_free(&c->tags); /* every link went with its object above */
    for (unsigned i = 0; i < CACHE_INVAL_LOG; i++)
        free(c->inval_log[i].s);
    while (c->spare) {
        struct cache_obj *o = c->spare;
        c->spare = o->hnext;
        free(o->chunks);
        free(o->sent);
        buf_free(&o->hdrs);
        free(o->key);
        free(o);
    }
    policy_free(c->pol);
    free(c->stw);
    if (c->shared)
        pthread_mutex_destroy(&c->mu);
    free(c);
}

/* ==== invalidation (see cache.h) ==== */

/* Unlink o from its tags and give their memory back. */
static void obj_untag(struct cache_obj *o)
{
    if (o->tags == NULL)
        return;
    size_t mem = o->ntags * sizeof *o->tags;
    for (unsigned i = 0; i < o->ntags; i++) {
        if (o->tags[i].tag)
            mem += tagidx_link_len(&o->tags[i]);
        tagidx_unlink(&o->cache->tags, &o->tags[i]);
    }
    free(o->tags);
    o->tags = NULL;
    o->ntags = 0;
    mem_sub(o, mem);
}

static int cache_obj_set_tags_l(struct cache_obj *o, const struct cache_tag *t,
                       unsigned n)
{
    obj_untag(o);
    if (!o->indexed || n == 0)
        return 0;
    if (o->gen != o->cache->inval_gen && inval_since(o, t, n)) {
        /* purged by tag before its head came: not stored (§4.4) */
        o->cacheable = false;
        cache_unindex(o);
        return 0;
    }
    if (n > TAG_MAX)
        n = TAG_MAX;
    o->tags = calloc(n, sizeof *o->tags);
    if (o->tags == NULL)
        return -1;
    o->ntags = n;
    size_t mem = n * sizeof *o->tags;
    for (unsigned i = 0; i < n; i++) {
        o->tags[i].owner = o;
        if (tagidx_link(&o->cache->tags, &o->tags[i], t[i].p, t[i].n) < 0) {
            mem_add(o, mem); /* what obj_untag gives back */
            obj_untag(o);
            return -1;
        }
        mem += t[i].n;
    }
    mem_add(o, mem); /* charged before the policy sizes o (policy_admit) */
    return 0;
}

LOCKED(int, cache_obj_set_tags, o->cache,
       (struct cache_obj *o, const struct cache_tag *t, unsigned n),
       (o, t, n))

/* Remember an invalidation of `kind` with argument s (n bytes) for the
 * fills in flight it can't reach (struct cache inval_log). */
static void inval_note(struct cache *c, enum cache_inval_kind kind,
                       const char *s, size_t n)
{
    c->inval_gen++;
    struct cache_inval *e = &c->inval_log[c->inval_gen % CACHE_INVAL_LOG];
    free(e->s);
    e->gen = c->inval_gen;
    e->kind = kind;
    e->n = n;
    e->s = n ? malloc(n) : NULL;
    if (e->s)
        memcpy(e->s, s, n);
    else if (n)
        e->kind = INVAL_ALL;
}

/* Does an invalidation made after o started match o: its key (INVAL_KEY,
 * INVAL_PREFIX) or, with tags (nt of them), one of them (INVAL_TAG)?
 * true as well when some of them are forgotten already. */
static bool inval_since(const struct cache_obj *o, const struct cache_tag *t,
                        unsigned nt)
{
    const struct cache *c = o->cache;
    if (c->inval_gen - o->gen > CACHE_INVAL_LOG)
        return true; /* too many to know: not stored, to be safe */
    for (uint64_t g = o->gen + 1; g <= c->inval_gen; g++) {
        const struct cache_inval *e = &c->inval_log[g % CACHE_INVAL_LOG];
        switch (e->kind) {
        case INVAL_ALL:
            return true;
        case INVAL_KEY: /* e->s is NULL when e->n is 0 (never memcmp'd) */
            if (!t && e->n == o->klen &&
                (e->n == 0 || memcmp(e->s, o->key, e->n) == 0))
                return true;
            break;
        case INVAL_PREFIX:
            if (!t && e->n <= o->klen &&
                (e->n == 0 || memcmp(e->s, o->key, e->n) == 0))
                return true;
            break;
        case INVAL_TAG:
            for (unsigned i = 0; t && e->n && i < nt; i++)
                if (t[i].n == e->n && memcmp(t[i].p, e->s, e->n) == 0)
                    return true;
            break;
        }
    }
    return false;
}

/* Invalidate o (RFC 9111 §4.4): out of the index, and a refresh of it in
 * flight (not indexed before its head) is not stored either: its waiters
 * get its answer, but its 304 would bring o's body back, and its 200
 * what was invalidated meanwhile (as for an indexed fill that is
 * removed). */
static void invalidate(struct cache_obj *o)
{
    if (o->refresh)
        o->refresh->index_late = false;
    cache_unindex(o); /* may free o, never another object */
}

static size_t cache_purge_key_l(struct cache *c, const char *key, size_t klen)
{
    uint64_t h = cache_hash(key, klen);
    size_t n = 0;
    struct cache_obj *o;
    inval_note(c, INVAL_KEY, key, klen);
    /* every variant of the key, fills in flight, a marker */
    while ((o = find(c, key, klen, h)) != NULL) {
        n += !o->hfm;
        invalidate(o);
    }
    return n;
}

LOCKED(size_t, cache_purge_key, c,
       (struct cache *c, const char *key, size_t klen),
       (c, key, klen))

#define OBJ_OF_KN(n) \
    ((struct cache_obj *)((char *)(n) - offsetof(struct cache_obj, kn)))

static size_t cache_ban_l(struct cache *c, const char *prefix, size_t plen)
{
    size_t n = 0;
    inval_note(c, INVAL_PREFIX, prefix, plen);
    struct keyidx_node *kn = keyidx_prefix_first(&c->keys, prefix, plen);
    while (kn) {
        struct keyidx_node *next =
            keyidx_prefix_next(&c->keys, kn, prefix, plen);
        struct cache_obj *o = OBJ_OF_KN(kn);
        n += !o->hfm;
        invalidate(o);
        kn = next;
    }
    return n;
}

LOCKED(size_t, cache_ban, c,
       (struct cache *c, const char *prefix, size_t plen),
       (c, prefix, plen))

static size_t cache_purge_tag_l(struct cache *c, const char *tag, size_t tlen)
{
    size_t n = 0;
    struct tag_link *l;
    inval_note(c, INVAL_TAG, tag, tlen);
    /* each unindex unlinks the object's every link, the first one too */
    while ((l = tagidx_first(&c->tags, tag, tlen)) != NULL) {
        struct cache_obj *o = l->owner;
        n += !o->hfm;
        invalidate(o);
    }
    return n;
}

LOCKED(size_t, cache_purge_tag, c,
       (struct cache *c, const char *tag, size_t tlen),
       (c, tag, tlen))

/* ==== filling ==== */

/* A response for o's key was not shareable: until hfm_ms from now,
 * requests for the key fetch on their own instead of waiting for each
 * other (Varnish's hit-for-miss). The newest response decides: whatever
 * is under the key goes, every variant (markers are per key), except
 * while a fill whose head is still unknown is there (it will decide for
 * itself: only o goes). */
static void set_marker(struct cache *c, struct cache_obj *o, int64_t now)
{
    struct cache_obj *x, *next, *cur = NULL;
    for (x = cache_first(c, o->key, o->klen); x; x = cache_next_variant(x))
        if (x != o && x->state == OBJ_FILLING && !x->head_ready) {
            cache_unindex(o);
            return;
        }
    int64_t until = now + c->hfm_ms;
    for (x = cache_first(c, o->key, o->klen); x; x = next) {
        next = cache_next_variant(x);
        if (x->hfm && c->hfm_ms > 0 && cur == NULL)
            cur = x; /* kept, refreshed */
        else
            cache_unindex(x);
    }
    if (cur) {
        cur->expires = until;
        return;
    }
    if (c->hfm_ms <= 0)
        return;
    struct cache_obj *m = cache_obj_new(c, o->key, o->klen);
    if (m == NULL)
        return; /* no marker: the next request coalesces again */
    m->hfm = true;
    __atomic_store_n(&m->state, OBJ_COMPLETE, __ATOMIC_RELAXED);
    __atomic_store_n(&m->head_ready, true, __ATOMIC_RELEASE);
    m->expires = until;
    index_obj(c, m);
    cache_obj_unref(m); /* the index holds it */
    policy_admit(c, m); /* evictable like any object */
}

static void cache_obj_head_l(struct cache_obj *o, int status, int64_t total,
                    bool shareable, int64_t ttl_ms, int64_t now)
{
    struct cache *c = o->cache;
    cache_obj_ref(o); /* unindexing below may drop the last other ref */
    o->status = status;
    o->total = total;
    /* its header lines and Vary record are stored with the body: charged,
     * so that max_bytes bounds them too (a hostile origin's tens of KiB of
     * fields over a 1-byte body, or a request's large varying values) */
    size_t hm = o->hdrs.len + o->vary_len;
    mem_add(o, hm);
    o->shareable = shareable;
    o->expires = now + ttl_ms;
    o->born = now - o->init_age * 1000;
    int64_t w = o->grace_ms > o->keep_ms ? o->grace_ms : o->keep_ms;
    o->stale_until = o->expires + (w > o->sie_ms ? w : o->sie_ms);
    /* a fill not indexed yet: did a purge or ban of its key come since
     * it started (they could not find it)? Then it goes to its waiters
     * only: storing it would bring back what was invalidated (§4.4) */
    if (o->index_late && o->gen != c->inval_gen && inval_since(o, NULL, 0))
        o->index_late = false;
    if (!shareable || ttl_ms <= 0 ||
        hm > c->max_bytes ||
        (total > 0 && (size_t)total > c->max_bytes - hm)) {
        o->cacheable = false;
        CACHE_COUNT(c, uncacheable);
        if (!shareable && (o->indexed || o->index_late))
            set_marker(c, o, now);
        else
            cache_unindex(o); /* waiters keep it alive */
    } else if (o->indexed || o->index_late) {
        if (o->vary != NULL) { /* the policy knows each variant apart */
            o->pn.key = cache_variant_key(o);
            if (o->indexed)
                policy_miss(c->pol, &o->pn); /* again: s3fifo's ghosts */
        }
        if (o->index_late)
            index_obj(c, o); /* a fetch of its own turned out storable */
        cache_variants_stored(c, o); /* older ones of its variant go */
        cache_enforce(c);
    }
    o->index_late = false;
    /* published last: a delivery that sees it sees all of the above */
    __atomic_store_n(&o->head_ready, true, __ATOMIC_RELEASE);
    notify_held(o); /* the ref taken above keeps o */
    cache_obj_unref(o);
}

LOCKED_VOID(cache_obj_head, o->cache,
            (struct cache_obj *o, int status, int64_t total, bool shareable,
             int64_t ttl_ms, int64_t now),
            (o, status, total, shareable, ttl_ms, now))

/* Make sure the chunk under the fill cursor exists; charge the budget. */
static int ensure_chunk(struct cache_obj *o)
{
    struct cache *c = o->cache;
    if (o->len % CACHE_CHUNK != 0 || o->len / CACHE_CHUNK < o->nchunks)
        return 0;
    /* exactly sized when the rest of the body is smaller than a chunk:
     * also for a stream object, whose 1 KiB response would otherwise take
     * (and give back) 64 KiB of heap per request; glibc trims a thread
     * arena's top once it is that large (madvise, then page faults on
     * the next fill) */
    size_t sz = CACHE_CHUNK;
    if (o->total >= 0 && (size_t)o->total > o->len &&
        (size_t)o->total - o->len < sz)
        sz = (size_t)o->total - o->len;
    if (o->nchunks == o->chunks_cap) {
        unsigned cap = o->chunks_cap ? o->chunks_cap * 2 : 4;
        /* the whole body's at once (up to 256 MiB of it) */
        while (!o->stream && cap < 4096 && o->total > 0 &&
               (uint64_t)cap * CACHE_CHUNK < (uint64_t)o->total)
            cap *= 2;
        if (o->stream) { /* one reader, on this worker */
            char **ch = realloc(o->chunks, cap * sizeof *ch);
            if (ch == NULL)
                return -1;
            o->chunks = ch;
        } else {
            /* a reader on another worker may be reading the directory:
             * it is replaced, never moved, and the old one is kept (in
             * slot -1 of the new) until the object goes */
            char **d = malloc((cap + 1) * sizeof *d);
            if (d == NULL)
                return -1;
            d[0] = o->chunks ? (char *)(void *)(o->chunks - 1) : NULL;
            if (o->nchunks)
                memcpy(d + 1, o->chunks, o->nchunks * sizeof *d);
            __atomic_store_n(&o->chunks, d + 1, __ATOMIC_RELEASE);
        }
        if (o->stream) {
            uint32_t *sent = realloc(o->sent, cap * sizeof *sent);
            if (sent == NULL)
                return -1;
            memset(sent + o->chunks_cap, 0,
                   (cap - o->chunks_cap) * sizeof *sent);
            o->sent = sent;
        }
        o->chunks_cap = cap;
    }
    char *chunk = malloc(sz);
    if (chunk == NULL)
        return -1;
    o->chunks[o->nchunks++] = chunk;
    o->last_sz = (uint32_t)sz;
    mem_add(o, sz);
    if (!o->held && c->bytes > c->max_bytes) {
        cache_enforce(c);
        if (c->bytes > c->max_bytes && o->indexed) {
            /* nothing left to evict: this one is passed through */
            o->cacheable = false;
            CACHE_COUNT(c, uncacheable);
            cache_unindex(o);
        }
    }
    return 0;
}

/* Room at the fill cursor: bytes writable in the current chunk. */
static size_t chunk_room(const struct cache_obj *o)
{
    size_t room = CACHE_CHUNK - o->len % CACHE_CHUNK;
    if (o->total >= 0 && (size_t)o->total - o->len < room)
        room = (size_t)o->total - o->len;
    return room;
}

static char *cache_obj_reserve_l(struct cache_obj *o, size_t *n)
{
    if ((o->total >= 0 && o->len >= (size_t)o->total) || ensure_chunk(o) < 0)
        return NULL;
    *n = chunk_room(o);
    return o->chunks[o->len / CACHE_CHUNK] + o->len % CACHE_CHUNK;
}

LOCKED(char *, cache_obj_reserve, o->cache,
       (struct cache_obj *o, size_t *n),
       (o, n))

static void cache_obj_commit_l(struct cache_obj *o, size_t n)
{
    __atomic_store_n(&o->len, o->len + n, __ATOMIC_RELEASE);
    notify(o);
}

LOCKED_VOID(cache_obj_commit, o->cache,
            (struct cache_obj *o, size_t n),
            (o, n))

static int cache_obj_data_l(struct cache_obj *o, const char *p, size_t n)
{
    if (o->stale_sub)
        return 0; /* the rest of an error that a stale object replaced */
    while (n > 0) {
        size_t room;
        char *dst = cache_obj_reserve(o, &room);
        if (dst == NULL)
            return -1; /* out of memory, or more than Content-Length */
        size_t k = n < room ? n : room;
        memcpy(dst, p, k);
        __atomic_store_n(&o->len, o->len + k, __ATOMIC_RELEASE);
        p += k;
        n -= k;
    }
    notify(o);
    return 0;
}

LOCKED(int, cache_obj_data, o->cache,
       (struct cache_obj *o, const char *p, size_t n),
       (o, p, n))

static void cache_obj_done_l(struct cache_obj *o, bool ok, int status)
{
    struct cache *c = o->cache;
    if (o->state != OBJ_FILLING)
        return; /* completed early (cache_obj_substitute) */
    if (!ok && !o->head_ready && o->fallback && o->reval_of &&
        o->reval_of->indexed && cache_obj_substitute(o, o->reval_of))
        return;
    cache_obj_ref(o);
    refresh_end(o);
    if (ok && o->total >= 0 && o->len != (size_t)o->total)
        ok = false; /* truncated */
    if (ok) {
        /* total stays what the head said (a delivery on another worker
         * may be reading it): a complete object's length is len */
        __atomic_store_n(&o->state, OBJ_COMPLETE, __ATOMIC_RELEASE);
        CACHE_COUNT(c, fills);
        if (o->indexed)
            policy_admit(c, o);
    } else {
        if (!o->head_ready)
            o->status = status;
        __atomic_store_n(&o->state, OBJ_FAILED, __ATOMIC_RELEASE);
        CACHE_COUNT(c, fill_errors);
        cache_unindex(o); /* never served as complete */
    }
    notify_held(o); /* the ref taken above keeps o */
    cache_obj_unref(o);
}

LOCKED_VOID(cache_obj_done, o->cache,
            (struct cache_obj *o, bool ok, int status),
            (o, ok, status))

const char *cache_obj_at(const struct cache_obj *o, size_t off, size_t *n)
{
    size_t i = off / CACHE_CHUNK, k = off % CACHE_CHUNK;
    size_t avail = __atomic_load_n(&o->len, __ATOMIC_ACQUIRE) - off;
    size_t room = CACHE_CHUNK - k;
    *n = avail < room ? avail : room;
    return __atomic_load_n(&o->chunks, __ATOMIC_ACQUIRE)[i] + k;
}

static bool cache_obj_substitute_l(struct cache_obj *o,
                                   const struct cache_obj *from)
{
    struct buf h = {0};
    if (buf_append(&h, from->hdrs.data, from->hdrs.len) < 0) {
        buf_free(&h);
        return false;
    }
    cache_obj_ref(o);
    buf_free(&o->hdrs);
    o->hdrs = h;
    o->status = from->status;
    o->total = (int64_t)from->len;
    o->has_date = from->has_date;
    o->init_age = from->init_age;
    o->origin_age = from->origin_age;
    o->born = from->born;
    o->expires = from->expires;
    o->cond_noted = from->cond_noted; /* offsets into the same lines */
    o->etag_off = from->etag_off;
    o->etag_len = from->etag_len;
    o->etag_weak = from->etag_weak;
    o->has_etag = from->has_etag;
    o->ctype_off = from->ctype_off;
    o->ctype_len = from->ctype_len;
    o->nm_n = from->nm_n;
    memcpy(o->nm_span, from->nm_span, sizeof o->nm_span);
    o->last_mod = from->last_mod;
    o->date = from->date;
    o->shareable = true; /* it was stored, so shared */
    o->cacheable = false;
    o->index_late = false;
    for (size_t off = 0; off < from->len;) {
        size_t n;
        const char *p = cache_obj_at(from, off, &n);
        size_t room;
        char *dst = cache_obj_reserve(o, &room);
        if (dst == NULL)
            break; /* out of memory: fails below, truncated */
        if (n > room)
            n = room;
        memcpy(dst, p, n);
        __atomic_store_n(&o->len, o->len + n, __ATOMIC_RELEASE);
        off += n;
    }
    bool ok = o->len == from->len;
    CACHE_COUNT(o->cache, stale);
    o->stale_sub = true;
    __atomic_store_n(&o->state, ok ? OBJ_COMPLETE : OBJ_FAILED,
                     __ATOMIC_RELEASE);
    __atomic_store_n(&o->head_ready, true, __ATOMIC_RELEASE);
    refresh_end(o);
    cache_unindex(o);
    notify_held(o);
    cache_obj_unref(o);
    return true;
}

LOCKED(bool, cache_obj_substitute, o->cache,
       (struct cache_obj *o, const struct cache_obj *from),
       (o, from))
