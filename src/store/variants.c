/* variants.c - a key's stored responses side by side in its hash chain
 * (the variants section of cache.h). */
#include "store/cache.h"

#include <string.h>

struct cache_obj *cache_first(struct cache *c, const char *key, size_t klen)
{
    uint64_t h = cache_hash(key, klen);
    struct cache_obj *o = c->buckets[h & (c->nbuckets - 1)];
    for (; o; o = o->hnext)
        if (o->hash == h && o->klen == klen && memcmp(o->key, key, klen) == 0)
            break;
    return o;
}

struct cache_obj *cache_next_variant(const struct cache_obj *o)
{
    struct cache_obj *x = o->hnext;
    for (; x; x = x->hnext)
        if (x->hash == o->hash && x->klen == o->klen &&
            memcmp(x->key, o->key, o->klen) == 0)
            break;
    return x;
}

static struct cache_obj *select_l(struct cache *c, const char *key,
                                  size_t klen, int64_t now,
                                  cache_match_pt match, const void *arg,
                                  enum cache_fresh *fr);

struct cache_obj *cache_select(struct cache *c, const char *key, size_t klen,
                               int64_t now, cache_match_pt match,
                               const void *arg, enum cache_fresh *fr)
{
    cache_lock(c);
    struct cache_obj *o = select_l(c, key, klen, now, match, arg, fr);
    cache_unlock(c);
    return o;
}

static struct cache_obj *select_l(struct cache *c, const char *key,
                                  size_t klen, int64_t now,
                                  cache_match_pt match, const void *arg,
                                  enum cache_fresh *fr)
{
    struct cache_obj *o = cache_first(c, key, klen), *next, *fill = NULL;
    *fr = CACHE_FRESH;
    for (; o; o = next) {
        if (o->state == OBJ_COMPLETE && o->expires <= now) {
            next = cache_next_variant(o);
            if (now >= o->stale_until) {
                CACHE_COUNT(c, expired);
                cache_unindex(o);
            } else if (o->vary == NULL || match(o, arg)) {
                /* stale, of r's variant (RFC 9111 §4.2.4): the caller
                 * serves it (grace) or revalidates it */
                *fr = now - o->expires < o->grace_ms ? CACHE_GRACE
                                                     : CACHE_STALE;
                if (o->in_policy)
                    policy_hit(c->pol, &o->pn);
                return o;
            }
            continue;
        }
        /* the common case ends here: a head known, no Vary */
        if (o->head_ready && (o->vary == NULL || match(o, arg))) {
            if (o->in_policy)
                policy_hit(c->pol, &o->pn);
            return o;
        }
        if (!o->head_ready && fill == NULL)
            fill = o;
        next = cache_next_variant(o);
    }
    return fill;
}

size_t cache_unindex_key(struct cache *c, const char *key, size_t klen)
{
    size_t n = 0;
    struct cache_obj *o = cache_first(c, key, klen), *next;
    for (; o; o = next) {
        next = cache_next_variant(o);
        n += !o->hfm;
        cache_unindex(o);
    }
    return n;
}

/* Does every request that x's recorded values select also select o's?
 * (o without Vary selects every request.) Only then is x unreachable
 * behind the newer o. */
static bool shadowed(const struct cache_obj *x, const struct cache_obj *o)
{
    return o->vary == NULL ||
           (x->vary != NULL && x->vary_len == o->vary_len &&
            memcmp(x->vary, o->vary, o->vary_len) == 0);
}

void cache_variants_stored(struct cache *c, struct cache_obj *o)
{
    unsigned n = 1;
    struct cache_obj *x, *next;
    for (x = cache_first(c, o->key, o->klen); x; x = next) {
        next = cache_next_variant(x);
        if (x == o || !x->head_ready)
            continue; /* a fill in flight decides when its head comes */
        if (x->hfm || shadowed(x, o))
            cache_unindex(x);
        else
            n++;
    }
    unsigned max = c->max_variants ? c->max_variants : 1;
    while (n > max) { /* the oldest other one goes */
        struct cache_obj *old = NULL;
        for (x = cache_first(c, o->key, o->klen); x; x = cache_next_variant(x))
            if (x != o && x->head_ready)
                old = x;
        if (old == NULL)
            break;
        CACHE_COUNT(c, evictions);
        cache_unindex(old);
        n--;
    }
}

uint64_t cache_variant_key(const struct cache_obj *o)
{
    uint64_t h = o->hash ^ 0xff; /* a separator: never the key's own id */
    h *= 1099511628211ull;
    for (size_t i = 0; i < o->vary_len; i++) {
        h ^= (unsigned char)o->vary[i];
        h *= 1099511628211ull;
    }
    return h;
}
