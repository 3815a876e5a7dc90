/* policy.c - the eviction policies of policy.h: LRU, FIFO, CLOCK, SIEVE,
 * LFU and S3-FIFO with libCacheSim's exact rules (shared/traces/REFERENCE.md
 * §3 and §9), and the adapter that runs a policy written in Lua. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store/policy.h"

/* ==== queues ==== */

/* A doubly linked queue of nodes, newest at the head. `used` is the sum of
 * the sizes of its nodes. */
struct queue {
    struct policy_node *head, *tail;
    uint64_t used;
};

static void q_push_head(struct queue *q, struct policy_node *n)
{
    n->prev = NULL;
    n->next = q->head;
    if (q->head)
        q->head->prev = n;
    else
        q->tail = n;
    q->head = n;
    q->used += n->size;
}

static void q_unlink(struct queue *q, struct policy_node *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        q->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        q->tail = n->prev;
    n->prev = n->next = NULL;
    q->used -= n->size;
}

/* ==== LRU, FIFO, CLOCK, SIEVE: one queue ==== */

struct qpolicy {
    struct policy base;
    struct queue q;
    struct policy_node *hand; /* sieve: next node to examine; NULL = tail */
};

static struct policy *qp_create(uint64_t capacity)
{
    return calloc(1, sizeof(struct qpolicy));
}

static void qp_destroy(struct policy *p)
{
    free(p);
}

static void qp_insert_head(struct policy *p, struct policy_node *n)
{
    n->freq = 0;
    q_push_head(&((struct qpolicy *)p)->q, n);
}

static bool qp_insert(struct policy *p, struct policy_node *n)
{
    qp_insert_head(p, n);
    return true;
}

static void qp_remove(struct policy *p, struct policy_node *n)
{
    struct qpolicy *qp = (struct qpolicy *)p;
    if (qp->hand == n) /* sieve: the hand moves on to the newer neighbour */
        qp->hand = n->prev;
    q_unlink(&qp->q, n);
}

static struct policy_node *qp_evict_tail(struct policy *p)
{
    struct qpolicy *qp = (struct qpolicy *)p;
    struct policy_node *n = qp->q.tail;
    if (n)
        q_unlink(&qp->q, n);
    return n;
}

static void lru_hit(struct policy *p, struct policy_node *n)
{
    struct qpolicy *qp = (struct qpolicy *)p;
    if (qp->q.head == n) /* already the newest: no write (a hot object's
                          * hits on every worker of a shared cache) */
        return;
    q_unlink(&qp->q, n);
    q_push_head(&qp->q, n);
}

static void fifo_hit(struct policy *p, struct policy_node *n)
{
}

/* clock and sieve: one visited bit */
static void bit_hit(struct policy *p, struct policy_node *n)
{
    if (n->freq != 1) /* written once, not per hit */
        n->freq = 1;
}

/* FIFO-reinsertion: a visited tail loses its bit and goes to the head. */
static struct policy_node *clock_evict(struct policy *p)
{
    struct qpolicy *qp = (struct qpolicy *)p;
    struct policy_node *n;
    while ((n = qp->q.tail) != NULL && n->freq) {
        q_unlink(&qp->q, n);
        qp_insert_head(p, n);
    }
    return qp_evict_tail(p);
}

/* The hand walks from old to new (wrapping from the head to the tail),
 * clearing visited bits; survivors stay where they are. It stops just newer
 * than the victim, or unset when the victim was the head. */
static struct policy_node *sieve_evict(struct policy *p)
{
    struct qpolicy *qp = (struct qpolicy *)p;
    if (qp->q.tail == NULL)
        return NULL;
    struct policy_node *n = qp->hand ? qp->hand : qp->q.tail;
    while (n->freq) {
        n->freq = 0;
        n = n->prev ? n->prev : qp->q.tail;
    }
    qp->hand = n->prev;
    q_unlink(&qp->q, n);
    return n;
}

/* ==== LFU ==== */

/* Nodes of one frequency, in the order they reached it (newest at the
 * head). Buckets form a list in increasing frequency. */
struct lfu_bucket {
    uint64_t freq;
    struct queue q;
    struct lfu_bucket *lower, *higher;
};

struct lfu {
    struct policy base;
    struct lfu_bucket *min;   /* lowest frequency present, NULL when empty */
    struct lfu_bucket *spare; /* unused buckets, linked by `higher` */
};

/* A bucket for `freq` linked between lower and lower->higher (or as the new
 * minimum when lower is NULL); NULL when out of memory. Buckets are never
 * returned to malloc before lfu_destroy, so an empty LFU always has a spare
 * (lfu_create makes the first). */
static struct lfu_bucket *lfu_bucket_new(struct lfu *l, uint64_t freq,
                                         struct lfu_bucket *lower)
{
    struct lfu_bucket *b = l->spare;
    if (b)
        l->spare = b->higher;
    else if ((b = malloc(sizeof *b)) == NULL)
        return NULL;
    b->freq = freq;
    b->q = (struct queue){0};
    b->lower = lower;
    b->higher = lower ? lower->higher : l->min;
    if (b->higher)
        b->higher->lower = b;
    if (lower)
        lower->higher = b;
    else
        l->min = b;
    return b;
}

static void lfu_bucket_release_if_empty(struct lfu *l, struct lfu_bucket *b)
{
    if (b->q.head)
        return;
    if (b->lower)
        b->lower->higher = b->higher;
    else
        l->min = b->higher;
    if (b->higher)
        b->higher->lower = b->lower;
    b->higher = l->spare;
    l->spare = b;
}

static void lfu_link(struct lfu_bucket *b, struct policy_node *n)
{
    q_push_head(&b->q, n);
    n->aux = b;
    n->freq = b->freq > UINT32_MAX ? UINT32_MAX : (uint32_t)b->freq;
}

static struct policy *lfu_create(uint64_t capacity)
{
    struct lfu *l = calloc(1, sizeof *l);
    if (l == NULL || (l->spare = calloc(1, sizeof *l->spare)) == NULL) {
        free(l);
        return NULL;
    }
    return &l->base;
}

static void lfu_destroy(struct policy *p)
{
    struct lfu *l = (struct lfu *)p;
    for (int pass = 0; pass < 2; pass++) {
        struct lfu_bucket *b = pass ? l->spare : l->min;
        while (b) {
            struct lfu_bucket *next = b->higher;
            free(b);
            b = next;
        }
    }
    free(l);
}

static bool lfu_insert(struct policy *p, struct policy_node *n)
{
    struct lfu *l = (struct lfu *)p;
    struct lfu_bucket *b = l->min;
    if (b == NULL || b->freq != 1) {
        struct lfu_bucket *nb = lfu_bucket_new(l, 1, NULL);
        if (nb)
            b = nb; /* out of memory: join the minimum frequency instead */
    }
    lfu_link(b, n);
    return true;
}

/* Moves n to the newest end of the next frequency; out of memory, the hit
 * is not counted. */
static void lfu_hit(struct policy *p, struct policy_node *n)
{
    struct lfu *l = (struct lfu *)p;
    struct lfu_bucket *b = n->aux, *nb = b->higher;
    if (nb == NULL || nb->freq != b->freq + 1)
        if ((nb = lfu_bucket_new(l, b->freq + 1, b)) == NULL)
            return;
    q_unlink(&b->q, n);
    lfu_link(nb, n);
    lfu_bucket_release_if_empty(l, b);
}

static void lfu_remove(struct policy *p, struct policy_node *n)
{
    struct lfu_bucket *b = n->aux;
    q_unlink(&b->q, n);
    n->aux = NULL;
    lfu_bucket_release_if_empty((struct lfu *)p, b);
}

/* The minimum frequency's oldest arrival. */
static struct policy_node *lfu_evict(struct policy *p)
{
    struct lfu *l = (struct lfu *)p;
    if (l->min == NULL)
        return NULL;
    struct policy_node *n = l->min->q.tail;
    lfu_remove(p, n);
    return n;
}

/* ==== S3-FIFO ==== */

enum { S3_SMALL = 1, S3_MAIN = 2, S3_GHOST = 3 };

/* A key evicted from small, remembered (key and size only) on the ghost
 * FIFO and in a chained hash table. */
struct ghost {
    struct policy_node node; /* on s3fifo.ghost */
    struct ghost *hnext;     /* hash chain, or the free list */
};

struct s3fifo {
    struct policy base;
    struct queue small, main, ghost;
    uint64_t s, m, g;        /* capacities of small, main and ghost */
    struct ghost **gtab;     /* ghost hash buckets */
    unsigned gbits;          /* log2 of the number of buckets */
    uint64_t gcount;         /* ghost entries */
    struct ghost *gfree;     /* recycled entries */
};

static struct policy *s3_create(uint64_t capacity)
{
    struct s3fifo *s3 = calloc(1, sizeof *s3);
    if (s3 == NULL)
        return NULL;
    /* libCacheSim: int64 truncation of C x ratio, main gets the rest */
    s3->s = (uint64_t)((double)capacity * 0.1);
    s3->m = capacity - s3->s;
    s3->g = (uint64_t)((double)capacity * 0.9);
    return &s3->base;
}

static void s3_destroy(struct policy *p)
{
    struct s3fifo *s3 = (struct s3fifo *)p;
    struct policy_node *n, *next;
    for (n = s3->ghost.head; n; n = next) {
        next = n->next;
        free(n); /* the struct ghost it starts */
    }
    for (struct ghost *gh = s3->gfree, *hnext; gh; gh = hnext) {
        hnext = gh->hnext;
        free(gh);
    }
    free(s3->gtab);
    free(s3);
}

static struct ghost **ghost_slot(struct s3fifo *s3, uint64_t key)
{
    /* Fibonacci hashing: ids need not be well mixed */
    return &s3->gtab[(key * 0x9e3779b97f4a7c15ull) >> (64 - s3->gbits)];
}

/* Doubles the ghost table; out of memory, chains just get longer. */
static void ghost_grow(struct s3fifo *s3)
{
    unsigned bits = s3->gtab ? s3->gbits + 1 : 6;
    struct ghost **tab = calloc((size_t)1 << bits, sizeof *tab);
    if (tab == NULL)
        return;
    free(s3->gtab);
    s3->gtab = tab;
    s3->gbits = bits;
    for (struct policy_node *n = s3->ghost.head; n; n = n->next) {
        struct ghost *gh = (struct ghost *)n, **slot = ghost_slot(s3, n->key);
        gh->hnext = *slot;
        *slot = gh;
    }
}

/* The hash slot pointing at key's ghost, or NULL. */
static struct ghost **ghost_find(struct s3fifo *s3, uint64_t key)
{
    if (s3->gtab == NULL)
        return NULL;
    struct ghost **slot = ghost_slot(s3, key);
    for (; *slot; slot = &(*slot)->hnext)
        if ((*slot)->node.key == key)
            return slot;
    return NULL;
}

static void ghost_drop(struct s3fifo *s3, struct ghost **slot)
{
    struct ghost *gh = *slot;
    *slot = gh->hnext;
    q_unlink(&s3->ghost, &gh->node);
    gh->hnext = s3->gfree;
    s3->gfree = gh;
    s3->gcount--;
}

/* Whether key was a ghost; the entry is consumed. */
static bool ghost_take(struct s3fifo *s3, uint64_t key)
{
    struct ghost **slot = ghost_find(s3, key);
    if (slot == NULL)
        return false;
    ghost_drop(s3, slot);
    return true;
}

/* Records key as a ghost of `size` units, dropping the oldest ghosts to
 * fit; too large for the ghost FIFO (or already there): nothing. */
static void ghost_put(struct s3fifo *s3, uint64_t key, uint64_t size)
{
    if (size > s3->g || ghost_find(s3, key))
        return;
    while (s3->ghost.used + size > s3->g)
        ghost_drop(s3, ghost_find(s3, s3->ghost.tail->key));
    if (s3->gcount >= ((uint64_t)1 << s3->gbits) || s3->gtab == NULL) {
        ghost_grow(s3);
        if (s3->gtab == NULL)
            return;
    }
    struct ghost *gh = s3->gfree;
    if (gh)
        s3->gfree = gh->hnext;
    else if ((gh = calloc(1, sizeof *gh)) == NULL)
        return;
    gh->node.key = key;
    gh->node.size = size;
    gh->node.queue = S3_GHOST;
    q_push_head(&s3->ghost, &gh->node);
    struct ghost **slot = ghost_slot(s3, key);
    gh->hnext = *slot;
    *slot = gh;
    s3->gcount++;
}

static bool s3_can_insert(struct policy *p, uint64_t size)
{
    return size <= ((struct s3fifo *)p)->s;
}

static void s3_miss(struct policy *p, struct policy_node *n)
{
    n->ghost_hit = ghost_take((struct s3fifo *)p, n->key);
}

static void s3_push(struct s3fifo *s3, struct queue *q, struct policy_node *n)
{
    n->freq = 0;
    n->queue = q == &s3->small ? S3_SMALL : S3_MAIN;
    q_push_head(q, n);
}

/* Ghost hit: main, else small. Quirk Q1: libCacheSim admits to small only
 * when size < s, although can_insert allowed size == s (and the evictions
 * for it have happened). */
static bool s3_insert(struct policy *p, struct policy_node *n)
{
    struct s3fifo *s3 = (struct s3fifo *)p;
    bool ghost_hit = n->ghost_hit;
    n->ghost_hit = 0;
    if (ghost_hit)
        s3_push(s3, &s3->main, n);
    else if (n->size >= s3->s)
        return false;
    else
        s3_push(s3, &s3->small, n);
    return true;
}

/* The count is uncapped in libCacheSim; every decision reads min(freq, 3),
 * so saturating at 3 is the same policy. */
static void s3_hit(struct policy *p, struct policy_node *n)
{
    if (n->freq < 3)
        n->freq++;
}

static void s3_remove(struct policy *p, struct policy_node *n)
{
    struct s3fifo *s3 = (struct s3fifo *)p;
    q_unlink(n->queue == S3_SMALL ? &s3->small : &s3->main, n);
}

/* Small's tail goes to main when hit twice while in small (main may
 * overflow: nothing is evicted from it here), else leaves as a ghost. NULL
 * when small emptied without a victim. */
static struct policy_node *s3_evict_small(struct s3fifo *s3)
{
    struct policy_node *n;
    while ((n = s3->small.tail) != NULL) {
        q_unlink(&s3->small, n);
        if (n->freq >= 2) {
            s3_push(s3, &s3->main, n);
            continue;
        }
        ghost_put(s3, n->key, n->size);
        return n;
    }
    return NULL;
}

/* FIFO-reinsertion with a 2-bit counter; victims leave no ghost. */
static struct policy_node *s3_evict_main(struct s3fifo *s3)
{
    struct policy_node *n;
    while ((n = s3->main.tail) != NULL) {
        q_unlink(&s3->main, n);
        if (n->freq == 0)
            return n;
        uint32_t freq = (n->freq < 3 ? n->freq : 3) - 1;
        s3_push(s3, &s3->main, n);
        n->freq = freq;
    }
    return NULL;
}

/* Quirk Q2: main is chosen by its own overflow (or an empty small), so
 * small is not capped at s while main has room. */
static struct policy_node *s3_evict(struct policy *p)
{
    struct s3fifo *s3 = (struct s3fifo *)p;
    while (s3->small.head || s3->main.head) {
        struct policy_node *n = s3->main.used > s3->m || !s3->small.head
                                    ? s3_evict_main(s3)
                                    : s3_evict_small(s3);
        if (n)
            return n;
    }
    return NULL;
}

/* ==== policies written in Lua ==== */

/* Stack slots of the adapter's Lua state. */
enum {
    LP_NODES = 1, /* key string -> node (light userdata) of resident keys */
    LP_INSERT,
    LP_HIT,
    LP_EVICT,
    LP_REMOVE,
    LP_MISS, /* nil when the policy has no miss() */
    LP_TRACEBACK,
};

struct lua_policy {
    struct policy base;
    lua_State *L;
};

const struct policy_lua_guard *policy_lua_guard;

/* lua_pcall under the embedder's guard (its CPU budget), if any. */
static int lp_pcall(lua_State *L, int nargs, int nres, int errfunc)
{
    const struct policy_lua_guard *g = policy_lua_guard;
    if (g == NULL)
        return lua_pcall(L, nargs, nres, errfunc);
    lua_State *prev = g->enter(L);
    int rc = lua_pcall(L, nargs, nres, errfunc);
    g->leave(L, prev);
    return rc;
}

static int lp_traceback(lua_State *L)
{
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

/* Records the first error; the policy is dead from then on. */
__attribute__((format(printf, 2, 3)))
static void lp_fail(struct lua_policy *lp, const char *fmt, ...)
{
    if (lp->base.err[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(lp->base.err, sizeof lp->base.err, fmt, ap);
    va_end(ap);
}

static void lp_push_key(lua_State *L, uint64_t key)
{
    static const char hex[] = "0123456789abcdef";
    char s[16];
    for (int i = 15; i >= 0; i--, key >>= 4)
        s[i] = hex[key & 15];
    lua_pushlstring(L, s, sizeof s);
}

/* Calls the policy function in `slot` with (key[, size]); false after
 * recording the error. */
static bool lp_call(struct lua_policy *lp, int slot, const char *what,
                    const struct policy_node *n, bool with_size)
{
    lua_State *L = lp->L;
    if (lp->base.err[0])
        return false;
    lua_pushvalue(L, slot);
    lp_push_key(L, n->key);
    if (with_size)
        lua_pushnumber(L, (lua_Number)n->size);
    if (lp_pcall(L, with_size ? 2 : 1, 0, LP_TRACEBACK) != 0) {
        lp_fail(lp, "lua policy: %s: %s", what, lua_tostring(L, -1));
        lua_settop(L, LP_TRACEBACK);
        return false;
    }
    return true;
}

static void lp_destroy(struct policy *p)
{
    lua_close(((struct lua_policy *)p)->L);
    free(p);
}

static void lp_miss(struct policy *p, struct policy_node *n)
{
    struct lua_policy *lp = (struct lua_policy *)p;
    if (!lua_isnil(lp->L, LP_MISS))
        lp_call(lp, LP_MISS, "miss()", n, true);
}

static bool lp_insert(struct policy *p, struct policy_node *n)
{
    struct lua_policy *lp = (struct lua_policy *)p;
    lua_State *L = lp->L;
    if (p->err[0])
        return true; /* counted as linked so the caller's books balance */
    lp_push_key(L, n->key);
    lua_pushvalue(L, -1);
    lua_rawget(L, LP_NODES);
    bool taken = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (taken) {
        lp_fail(lp, "lua policy: insert(): key %s is already resident",
                lua_tostring(L, -1));
        lua_pop(L, 1);
        return true;
    }
    lua_pushlightuserdata(L, n);
    lua_rawset(L, LP_NODES);
    lp_call(lp, LP_INSERT, "insert()", n, true);
    return true;
}

static void lp_hit(struct policy *p, struct policy_node *n)
{
    lp_call((struct lua_policy *)p, LP_HIT, "hit()", n, true);
}

static void lp_forget(lua_State *L, uint64_t key)
{
    lp_push_key(L, key);
    lua_pushnil(L);
    lua_rawset(L, LP_NODES);
}

static void lp_remove(struct policy *p, struct policy_node *n)
{
    struct lua_policy *lp = (struct lua_policy *)p;
    if (p->err[0])
        return;
    lp_forget(lp->L, n->key);
    lp_call(lp, LP_REMOVE, "remove()", n, false);
}

static struct policy_node *lp_evict(struct policy *p)
{
    struct lua_policy *lp = (struct lua_policy *)p;
    lua_State *L = lp->L;
    if (p->err[0])
        return NULL;
    lua_pushvalue(L, LP_EVICT);
    if (lp_pcall(L, 0, 1, LP_TRACEBACK) != 0) {
        lp_fail(lp, "lua policy: %s: %s", "evict()", lua_tostring(L, -1));
        lua_settop(L, LP_TRACEBACK);
        return NULL;
    }
    struct policy_node *n = NULL;
    if (lua_type(L, -1) == LUA_TSTRING) {
        lua_pushvalue(L, -1);
        lua_rawget(L, LP_NODES);
        n = lua_touserdata(L, -1);
        lua_pop(L, 1);
    }
    if (n == NULL) {
        bool str = lua_type(L, -1) == LUA_TSTRING;
        lp_fail(lp, "lua policy: evict() returned %s%.64s%s, which is not a "
                "resident key", str ? "\"" : "",
                str ? lua_tostring(L, -1) : luaL_typename(L, -1),
                str ? "\"" : "");
        lua_settop(L, LP_TRACEBACK);
        return NULL;
    }
    lua_settop(L, LP_TRACEBACK);
    lp_forget(L, n->key);
    return n;
}

static const struct policy_ops lua_ops = {
    .name = "lua",
    .destroy = lp_destroy,
    .miss = lp_miss,
    .insert = lp_insert,
    .hit = lp_hit,
    .remove = lp_remove,
    .evict = lp_evict,
};

/* Leaves the policy table's functions in the LP_* slots; 0, or -1 with a
 * message in err. */
static int lp_load(lua_State *L, const char *path, uint64_t capacity,
                   char *err, size_t errlen)
{
    static const char *const names[] = {"insert", "hit", "evict", "remove",
                                        "miss"};
    lua_newtable(L); /* LP_NODES */
    if (luaL_loadfile(L, path) != 0 || lp_pcall(L, 0, 1, 0) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        return -1;
    }
    if (lua_isfunction(L, -1)) {
        lua_pushnumber(L, (lua_Number)capacity);
        if (lp_pcall(L, 1, 1, 0) != 0) {
            snprintf(err, errlen, "%s: constructor: %s", path,
                     lua_tostring(L, -1));
            return -1;
        }
    }
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "%s: must return a policy table or a "
                 "function(capacity) returning one, not %s", path,
                 luaL_typename(L, -1));
        return -1;
    }
    int t = lua_gettop(L);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        lua_getfield(L, t, names[i]);
        bool optional = i == sizeof names / sizeof *names - 1;
        if (!lua_isfunction(L, -1) && !(optional && lua_isnil(L, -1))) {
            snprintf(err, errlen, "%s: the policy's %s must be a function",
                     path, names[i]);
            return -1;
        }
    }
    lua_remove(L, t);
    lua_pushcfunction(L, lp_traceback);
    return 0;
}

struct policy *policy_lua_new(const char *path, uint64_t capacity, char *err,
                              size_t errlen)
{
    struct lua_policy *lp = calloc(1, sizeof *lp);
    if (lp == NULL || (lp->L = luaL_newstate()) == NULL) {
        snprintf(err, errlen, "out of memory");
        free(lp);
        return NULL;
    }
    luaL_openlibs(lp->L);
    if (policy_lua_guard)
        policy_lua_guard->opened(lp->L);
    if (lp_load(lp->L, path, capacity, err, errlen) < 0) {
        lp_destroy(&lp->base);
        return NULL;
    }
    lp->base.ops = &lua_ops;
    lp->base.capacity = capacity;
    return &lp->base;
}

/* ==== registry and the calls every cache makes ==== */

static const struct policy_ops builtins[] = {
    {.name = "lru", .create = qp_create, .destroy = qp_destroy,
     .insert = qp_insert, .hit = lru_hit, .remove = qp_remove,
     .evict = qp_evict_tail},
    {.name = "fifo", .create = qp_create, .destroy = qp_destroy,
     .insert = qp_insert, .hit = fifo_hit, .remove = qp_remove,
     .evict = qp_evict_tail},
    {.name = "clock", .create = qp_create, .destroy = qp_destroy,
     .insert = qp_insert, .hit = bit_hit, .remove = qp_remove,
     .evict = clock_evict},
    {.name = "sieve", .create = qp_create, .destroy = qp_destroy,
     .insert = qp_insert, .hit = bit_hit, .remove = qp_remove,
     .evict = sieve_evict},
    {.name = "s3fifo", .create = s3_create, .destroy = s3_destroy,
     .can_insert = s3_can_insert, .miss = s3_miss, .insert = s3_insert,
     .hit = s3_hit, .remove = s3_remove, .evict = s3_evict},
    {.name = "lfu", .create = lfu_create, .destroy = lfu_destroy,
     .insert = lfu_insert, .hit = lfu_hit, .remove = lfu_remove,
     .evict = lfu_evict},
};

const struct policy_ops *policy_by_name(const char *name)
{
    for (size_t i = 0; i < sizeof builtins / sizeof *builtins; i++)
        if (strcasecmp(name, builtins[i].name) == 0)
            return &builtins[i];
    return NULL;
}

const char *policy_names(void)
{
    return "lru, fifo, clock, sieve, s3fifo, lfu";
}

struct policy *policy_new(const struct policy_ops *ops, uint64_t capacity)
{
    struct policy *p = ops->create(capacity);
    if (p) {
        p->ops = ops;
        p->capacity = capacity;
    }
    return p;
}

struct policy *policy_open(const char *spec, uint64_t capacity, char *err,
                           size_t errlen)
{
    size_t len = strlen(spec);
    if (len > 4 && strcmp(spec + len - 4, ".lua") == 0)
        return policy_lua_new(spec, capacity, err, errlen);
    const struct policy_ops *ops = policy_by_name(spec);
    if (ops == NULL) {
        snprintf(err, errlen, "unknown policy '%s' (built-ins: %s; or a "
                 "file.lua)", spec, policy_names());
        return NULL;
    }
    struct policy *p = policy_new(ops, capacity);
    if (p == NULL)
        snprintf(err, errlen, "out of memory");
    return p;
}

void policy_free(struct policy *p)
{
    if (p)
        p->ops->destroy(p);
}

void policy_miss(struct policy *p, struct policy_node *n)
{
    n->ghost_hit = 0;
    if (p->ops->miss)
        p->ops->miss(p, n);
}

bool policy_can_insert(const struct policy *p, uint64_t size)
{
    return size <= p->capacity &&
           (p->ops->can_insert == NULL ||
            p->ops->can_insert((struct policy *)p, size));
}

bool policy_full(const struct policy *p, uint64_t size)
{
    return p->used > p->capacity || size > p->capacity - p->used;
}

bool policy_insert(struct policy *p, struct policy_node *n)
{
    if (!p->ops->insert(p, n))
        return false;
    p->used += n->size;
    p->count++;
    return true;
}

void policy_hit(struct policy *p, struct policy_node *n)
{
    p->ops->hit(p, n);
}

void policy_remove(struct policy *p, struct policy_node *n)
{
    p->ops->remove(p, n);
    p->used -= n->size;
    p->count--;
}

struct policy_node *policy_evict(struct policy *p)
{
    /* nothing resident, nothing to pick: the store asks while fills in
     * flight hold the budget, and a Lua policy's evict() may assume a
     * resident key (examples/policies/lru.lua fails on nil, for good) */
    if (p->count == 0)
        return NULL;
    struct policy_node *n = p->ops->evict(p);
    if (n) {
        p->used -= n->size;
        p->count--;
    }
    return n;
}

const char *policy_error(const struct policy *p)
{
    return p->err[0] ? p->err : NULL;
}
