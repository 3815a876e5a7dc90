/* shdict.c - shared dictionaries (see shdict.h): a chained hash table
 * plus an LRU list, one mutex per dictionary, and the process's registry
 * of dictionaries by name. */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "store/shdict.h"

/* ==== entries ==== */

struct shdict_entry {
    struct shdict_entry *hnext;       /* hash chain */
    struct shdict_entry *prev, *next; /* LRU list: d->lru.next is the most
                                       * recently used */
    uint64_t hash;
    int64_t expires_us;               /* 0: never */
    double num;                       /* SHDICT_NUM, SHDICT_BOOL */
    size_t vlen;                      /* SHDICT_STR: bytes after the key */
    uint32_t flags;                   /* the user's */
    uint16_t klen;
    uint8_t type;                     /* enum shdict_type, never NIL */
    char data[];                      /* key, then a string value */
};

struct shdict {
    pthread_mutex_t mu;                /* guards everything below */
    char name[SHDICT_NAME_MAX];
    size_t capacity, used;             /* bytes: budget, accounted */
    size_t count;                      /* entries */
    struct shdict_entry **buckets;     /* nbuckets, a power of two */
    size_t nbuckets;
    struct shdict_entry lru;           /* sentinel of the LRU list */
    uint64_t seed;                     /* of the hash (per dictionary) */
    struct shdict *next;               /* registry */
};

size_t shdict_entry_cost(size_t klen, size_t vlen)
{
    return SHDICT_ENTRY_OVERHEAD + klen + vlen;
}

static size_t cost(const struct shdict_entry *e)
{
    return shdict_entry_cost(e->klen, e->vlen);
}

/* FNV-1a over the key from a per-dictionary seed, then a 64-bit finalizer
 * (murmur3's fmix64) so that the low bits (the bucket) depend on all. */
static uint64_t hash_key(uint64_t seed, const char *k, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)k[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static bool expired(const struct shdict_entry *e, int64_t now_us)
{
    return e->expires_us != 0 && e->expires_us <= now_us;
}

static int64_t deadline(int64_t ttl_us, int64_t now_us)
{
    return ttl_us > 0 ? now_us + ttl_us : 0;
}

static void lru_unlink(struct shdict_entry *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
}

static void lru_push(struct shdict *d, struct shdict_entry *e)
{
    e->prev = &d->lru;
    e->next = d->lru.next;
    d->lru.next->prev = e;
    d->lru.next = e;
}

static void lru_touch(struct shdict *d, struct shdict_entry *e)
{
    if (d->lru.next != e) {
        lru_unlink(e);
        lru_push(d, e);
    }
}

/* The entry of key (hash h), or NULL. */
static struct shdict_entry *find(struct shdict *d, const char *key,
                                 size_t klen, uint64_t h)
{
    struct shdict_entry *e = d->buckets[h & (d->nbuckets - 1)];
    for (; e; e = e->hnext)
        if (e->hash == h && e->klen == klen && memcmp(e->data, key, klen) == 0)
            break;
    return e;
}

/* key's entry if it has not expired at now_us, else NULL; under d->mu. */
static struct shdict_entry *find_live(struct shdict *d, const char *key,
                                      size_t klen, uint64_t h, int64_t now_us)
{
    struct shdict_entry *e = find(d, key, klen, h);
    return e && !expired(e, now_us) ? e : NULL;
}

/* Unlink e from its chain and the LRU list, and free it. */
static void remove_entry(struct shdict *d, struct shdict_entry *e)
{
    struct shdict_entry **p = &d->buckets[e->hash & (d->nbuckets - 1)];
    while (*p != e)
        p = &(*p)->hnext;
    *p = e->hnext;
    lru_unlink(e);
    d->used -= cost(e);
    d->count--;
    free(e);
}

/* Twice the buckets once there are more entries than buckets; a failed
 * malloc leaves the table as it is (longer chains, still correct). */
static void maybe_grow(struct shdict *d)
{
    if (d->count <= d->nbuckets)
        return;
    size_t n = d->nbuckets * 2;
    struct shdict_entry **b = calloc(n, sizeof *b);
    if (b == NULL)
        return;
    for (size_t i = 0; i < d->nbuckets; i++) {
        struct shdict_entry *e = d->buckets[i], *next;
        for (; e; e = next) {
            next = e->hnext;
            struct shdict_entry **slot = &b[e->hash & (n - 1)];
            e->hnext = *slot;
            *slot = e;
        }
    }
    free(d->buckets);
    d->buckets = b;
    d->nbuckets = n;
}

/* Make room for need more bytes, keep not counted (it is being replaced:
 * its bytes are given back by the caller, never evicted here), from the
 * least recently used end: expired entries first in list order, live ones
 * too unless safe. true when it fits. */
static bool make_room(struct shdict *d, size_t need, size_t freed,
                      const struct shdict_entry *keep, bool safe,
                      int64_t now_us, bool *forcible)
{
    struct shdict_entry *e = d->lru.prev, *prev;
    for (; d->used - freed + need > d->capacity && e != &d->lru; e = prev) {
        prev = e->prev;
        if (e == keep)
            continue;
        bool live = !expired(e, now_us);
        if (live && safe)
            continue;
        if (live && forcible)
            *forcible = true;
        remove_entry(d, e);
    }
    return d->used - freed + need <= d->capacity;
}

/* ==== one dictionary ==== */

struct shdict *shdict_new(const char *name, size_t capacity)
{
    struct shdict *d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    d->nbuckets = 64;
    d->buckets = calloc(d->nbuckets, sizeof *d->buckets);
    if (d->buckets == NULL) {
        free(d);
        return NULL;
    }
    snprintf(d->name, sizeof d->name, "%s", name);
    d->capacity = capacity;
    d->lru.next = d->lru.prev = &d->lru;
    /* a different hash per dictionary and run: chains an attacker built
     * for one can't be replayed (FNV is not a keyed hash, though) */
    d->seed = (uint64_t)(uintptr_t)d * 0x9e3779b97f4a7c15ULL ^
              (uint64_t)(uintptr_t)&d;
    pthread_mutex_init(&d->mu, NULL);
    return d;
}

void shdict_free(struct shdict *d)
{
    if (d == NULL)
        return;
    struct shdict_entry *e = d->lru.next, *next;
    for (; e != &d->lru; e = next) {
        next = e->next;
        free(e);
    }
    free(d->buckets);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

const char *shdict_name(const struct shdict *d) { return d->name; }

/* shdict_store with d->mu held. */
static int store_locked(struct shdict *d, const char *key, size_t klen,
                        uint64_t h, const struct shdict_val *v,
                        int64_t ttl_us, unsigned mode, int64_t now_us,
                        bool *forcible)
{
    struct shdict_entry *e = find(d, key, klen, h);
    bool live = e && !expired(e, now_us);
    if ((mode & SHDICT_ADD) && live)
        return -EEXIST;
    if ((mode & SHDICT_REPLACE) && !live)
        return -ENOENT;
    if (v->type == SHDICT_NIL) {
        if (e)
            remove_entry(d, e);
        return 0;
    }
    size_t vlen = v->type == SHDICT_STR ? v->len : 0;
    if (vlen > d->capacity || shdict_entry_cost(klen, vlen) > d->capacity)
        return -ENOMEM;
    size_t need = shdict_entry_cost(klen, vlen);
    if (e && e->vlen == vlen) { /* same size: in place */
        if (!make_room(d, need, cost(e), e, mode & SHDICT_SAFE, now_us,
                       forcible))
            return -ENOMEM; /* cannot happen: it fits where it was */
    } else {
        if (!make_room(d, need, e ? cost(e) : 0, e, mode & SHDICT_SAFE,
                       now_us, forcible))
            return -ENOMEM;
        struct shdict_entry *n = malloc(sizeof *n + klen + vlen);
        if (n == NULL)
            return -ENOMEM;
        if (e)
            remove_entry(d, e);
        memcpy(n->data, key, klen);
        n->klen = (uint16_t)klen;
        n->vlen = vlen;
        n->hash = h;
        /* at the chain's head: make_room may have freed what was its end */
        struct shdict_entry **slot = &d->buckets[h & (d->nbuckets - 1)];
        n->hnext = *slot;
        *slot = n;
        lru_push(d, n);
        d->used += need;
        d->count++;
        e = n;
    }
    if (vlen > 0)
        memcpy(e->data + klen, v->str, vlen);
    e->type = (uint8_t)v->type;
    e->num = v->type == SHDICT_STR ? 0 : v->num;
    e->flags = v->flags;
    e->expires_us = deadline(ttl_us, now_us);
    lru_touch(d, e);
    maybe_grow(d);
    return 0;
}

int shdict_store(struct shdict *d, const char *key, size_t klen,
                 const struct shdict_val *v, int64_t ttl_us, unsigned mode,
                 int64_t now_us, bool *forcible)
{
    if (forcible)
        *forcible = false;
    assert(klen > 0 && klen <= SHDICT_KEY_MAX);
    uint64_t h = hash_key(d->seed, key, klen);
    pthread_mutex_lock(&d->mu);
    int rc = store_locked(d, key, klen, h, v, ttl_us, mode, now_us, forcible);
    pthread_mutex_unlock(&d->mu);
    return rc;
}

int shdict_get(struct shdict *d, const char *key, size_t klen,
               int64_t now_us, bool stale, struct shdict_val *out,
               struct buf *copy, bool *was_expired)
{
    uint64_t h = hash_key(d->seed, key, klen);
    int rc = 0;
    pthread_mutex_lock(&d->mu);
    struct shdict_entry *e = find(d, key, klen, h);
    bool old = e && expired(e, now_us);
    if (e == NULL || (old && !stale)) {
        rc = -ENOENT;
        goto out;
    }
    out->type = (enum shdict_type)e->type;
    out->num = e->num;
    out->flags = e->flags;
    out->str = NULL;
    out->len = 0;
    if (e->type == SHDICT_STR) {
        buf_reset(copy, 64 * 1024);
        if (buf_append(copy, e->data + e->klen, e->vlen) < 0) {
            rc = -ENOMEM;
            goto out;
        }
        out->str = copy->data ? copy->data : "";
        out->len = e->vlen;
    }
    if (!old)
        lru_touch(d, e);
    if (was_expired)
        *was_expired = old;
out:
    pthread_mutex_unlock(&d->mu);
    return rc;
}

int shdict_incr(struct shdict *d, const char *key, size_t klen, double n,
                const double *init, int64_t init_ttl_us, int64_t now_us,
                double *out, bool *forcible)
{
    if (forcible)
        *forcible = false;
    uint64_t h = hash_key(d->seed, key, klen);
    int rc = 0;
    pthread_mutex_lock(&d->mu);
    struct shdict_entry *e = find_live(d, key, klen, h, now_us);
    if (e) {
        if (e->type != SHDICT_NUM) {
            rc = -EINVAL;
        } else {
            e->num += n;
            *out = e->num;
            lru_touch(d, e);
        }
    } else if (init == NULL) {
        rc = -ENOENT;
    } else {
        struct shdict_val v = {.type = SHDICT_NUM, .num = *init + n};
        rc = store_locked(d, key, klen, h, &v, init_ttl_us, 0, now_us,
                          forcible);
        if (rc == 0)
            *out = v.num;
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

int shdict_delete(struct shdict *d, const char *key, size_t klen)
{
    uint64_t h = hash_key(d->seed, key, klen);
    pthread_mutex_lock(&d->mu);
    struct shdict_entry *e = find(d, key, klen, h);
    if (e)
        remove_entry(d, e);
    pthread_mutex_unlock(&d->mu);
    return e ? 0 : -ENOENT;
}

int shdict_ttl(struct shdict *d, const char *key, size_t klen,
               int64_t now_us, int64_t *ttl_us)
{
    uint64_t h = hash_key(d->seed, key, klen);
    int rc = 0;
    pthread_mutex_lock(&d->mu);
    struct shdict_entry *e = find_live(d, key, klen, h, now_us);
    if (e == NULL)
        rc = -ENOENT;
    else
        *ttl_us = e->expires_us ? e->expires_us - now_us : 0;
    pthread_mutex_unlock(&d->mu);
    return rc;
}

int shdict_expire(struct shdict *d, const char *key, size_t klen,
                  int64_t ttl_us, int64_t now_us)
{
    uint64_t h = hash_key(d->seed, key, klen);
    int rc = 0;
    pthread_mutex_lock(&d->mu);
    struct shdict_entry *e = find_live(d, key, klen, h, now_us);
    if (e == NULL)
        rc = -ENOENT;
    else
        e->expires_us = deadline(ttl_us, now_us);
    pthread_mutex_unlock(&d->mu);
    return rc;
}

void shdict_flush_all(struct shdict *d)
{
    pthread_mutex_lock(&d->mu);
    struct shdict_entry *e = d->lru.next, *next;
    for (; e != &d->lru; e = next) {
        next = e->next;
        free(e);
    }
    memset(d->buckets, 0, d->nbuckets * sizeof *d->buckets);
    d->lru.next = d->lru.prev = &d->lru;
    d->used = 0;
    d->count = 0;
    pthread_mutex_unlock(&d->mu);
}

size_t shdict_flush_expired(struct shdict *d, int64_t now_us, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&d->mu);
    struct shdict_entry *e = d->lru.prev, *prev;
    for (; e != &d->lru && (max == 0 || n < max); e = prev) {
        prev = e->prev;
        if (expired(e, now_us)) {
            remove_entry(d, e);
            n++;
        }
    }
    pthread_mutex_unlock(&d->mu);
    return n;
}

long shdict_keys(struct shdict *d, int64_t now_us, size_t max,
                 struct buf *out)
{
    long n = 0;
    pthread_mutex_lock(&d->mu);
    struct shdict_entry *e = d->lru.next;
    for (; e != &d->lru && (max == 0 || (size_t)n < max); e = e->next) {
        if (expired(e, now_us))
            continue;
        uint16_t kl = e->klen;
        if (buf_append(out, &kl, sizeof kl) < 0 ||
            buf_append(out, e->data, kl) < 0) {
            n = -1;
            break;
        }
        n++;
    }
    pthread_mutex_unlock(&d->mu);
    return n;
}

void shdict_resize(struct shdict *d, size_t capacity)
{
    pthread_mutex_lock(&d->mu);
    d->capacity = capacity;
    while (d->used > d->capacity && d->lru.prev != &d->lru)
        remove_entry(d, d->lru.prev);
    pthread_mutex_unlock(&d->mu);
}

void shdict_stats(struct shdict *d, struct shdict_stats *st)
{
    pthread_mutex_lock(&d->mu);
    st->capacity = d->capacity;
    st->used = d->used;
    st->entries = d->count;
    pthread_mutex_unlock(&d->mu);
}

/* ==== the registry ==== */

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct shdict *reg_head, **reg_tail = &reg_head; /* creation order */

struct shdict *shdict_bind(const char *name, size_t capacity, char *err,
                           size_t errlen)
{
    size_t nl = strlen(name);
    if (nl == 0 || nl >= SHDICT_NAME_MAX) {
        snprintf(err, errlen, "name must be 1 to %d bytes",
                 SHDICT_NAME_MAX - 1);
        return NULL;
    }
    pthread_mutex_lock(&reg_mu);
    struct shdict *d = reg_head;
    while (d && strcmp(d->name, name) != 0)
        d = d->next;
    if (d) {
        pthread_mutex_lock(&d->mu);
        size_t old = d->capacity;
        pthread_mutex_unlock(&d->mu);
        if (old != capacity) { /* a reload declared another size */
            log_info("shared dict %s: size %zu -> %zu bytes%s", name, old,
                     capacity, capacity < old ? " (least recently used "
                                                "entries evicted to fit)"
                                              : "");
            shdict_resize(d, capacity);
        }
    } else {
        d = shdict_new(name, capacity);
        if (d == NULL) {
            snprintf(err, errlen, "out of memory");
        } else {
            *reg_tail = d;
            reg_tail = &d->next;
        }
    }
    pthread_mutex_unlock(&reg_mu);
    return d;
}

void shdict_each(void (*fn)(void *ud, const char *name,
                            const struct shdict_stats *st),
                 void *ud)
{
    pthread_mutex_lock(&reg_mu);
    for (struct shdict *d = reg_head; d; d = d->next) {
        struct shdict_stats st;
        shdict_stats(d, &st);
        fn(ud, d->name, &st);
    }
    pthread_mutex_unlock(&reg_mu);
}

void shdict_free_all(void)
{
    pthread_mutex_lock(&reg_mu);
    struct shdict *d = reg_head, *next;
    for (; d; d = next) {
        next = d->next;
        shdict_free(d);
    }
    reg_head = NULL;
    reg_tail = &reg_head;
    pthread_mutex_unlock(&reg_mu);
}
