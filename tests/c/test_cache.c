/* test_cache.c - the object store without any network: index, LRU and
 * max_objects eviction, the byte budget, TTL expiry, refcounts that keep
 * unindexed objects alive, failed fills, chunk boundaries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "server.h"

static int failures;
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            printf("%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);    \
            failures++;                                                        \
        }                                                                      \
    } while (0)

static struct worker w;
static char err[256];

static struct cache_obj *fill(struct cache *c, const char *key, size_t size,
                              int64_t ttl_ms)
{
    struct cache_obj *o = cache_insert(c, key, strlen(key));
    cache_obj_ref(o); /* the fetch's ref, as an origin holds */
    cache_obj_head(o, 200, (int64_t)size, ttl_ms);
    char *data = malloc(size ? size : 1);
    for (size_t i = 0; i < size; i++)
        data[i] = (char)(i * 7 + key[0]);
    /* in uneven pieces, as a network fill would */
    for (size_t off = 0; off < size;) {
        size_t n = size - off < 1000 ? size - off : 1000 + off % 3000;
        if (n > size - off)
            n = size - off;
        CHECK(cache_obj_data(o, data + off, n) == 0);
        off += n;
    }
    cache_obj_done(o, true, 0);
    free(data);
    cache_obj_unref(o); /* may free it when not indexed */
    return o;
}

static void test_hit_and_content(void)
{
    struct cache *c = cache_new(&w, "t", 1 << 30, 1000, 60000, "lru", err, sizeof err);
    int64_t now = loop_now(w.loop);
    CHECK(cache_lookup(c, "a", 1, now) == NULL);
    struct cache_obj *o = fill(c, "a", 200000, -1); /* spans 4 chunks */
    CHECK(o->state == OBJ_COMPLETE);
    CHECK(cache_lookup(c, "a", 1, now) == o);
    /* contents round-trip across chunk boundaries */
    size_t off = 0, pieces = 0;
    int bad = 0;
    while (off < o->len) {
        size_t n;
        const char *p = cache_obj_at(o, off, &n);
        CHECK(n > 0 && n <= CACHE_CHUNK);
        for (size_t i = 0; i < n; i++)
            if (p[i] != (char)((off + i) * 7 + 'a'))
                bad++;
        off += n;
        pieces++;
    }
    CHECK(bad == 0);
    CHECK(pieces == 4);
    /* a small object with a known length gets an exactly sized chunk */
    struct cache_obj *s = fill(c, "s", 100, -1);
    CHECK(s->nchunks == 1 && s->mem < 100 + 1024);
    /* more than Content-Length is refused */
    struct cache_obj *x = cache_insert(c, "x", 1); /* indexed: kept */
    cache_obj_head(x, 200, 10, -1);
    CHECK(cache_obj_data(x, "0123456789abc", 13) == -1);
    cache_free(c);
}

static void test_ttl(void)
{
    struct cache *c = cache_new(&w, "t", 1 << 30, 1000, 60000, "lru", err, sizeof err);
    int64_t now = loop_now(w.loop);
    fill(c, "k", 10, 1000);
    CHECK(cache_lookup(c, "k", 1, now + 500) != NULL);
    CHECK(cache_lookup(c, "k", 1, now + 1500) == NULL);
    CHECK(c->st.expired == 1);
    CHECK(c->nobj == 0);
    /* ttl 0 (no-store) and non-200 statuses are never indexed */
    fill(c, "n", 10, 0);
    CHECK(cache_lookup(c, "n", 1, now) == NULL);
    struct cache_obj *o = cache_insert(c, "e", 1);
    cache_obj_ref(o);
    cache_obj_head(o, 404, 0, -1);
    CHECK(!o->indexed && cache_lookup(c, "e", 1, now) == NULL);
    cache_obj_unref(o);
    cache_free(c);
}

static void test_budget_and_lru(void)
{
    struct cache *c = cache_new(&w, "t", 350000, 1000, 60000, "lru", err, sizeof err); /* 3 fit */
    int64_t now = loop_now(w.loop);
    fill(c, "1", 100000, -1);
    fill(c, "2", 100000, -1);
    CHECK(cache_lookup(c, "1", 1, now) != NULL); /* 1 is now most recent */
    fill(c, "3", 100000, -1);
    fill(c, "4", 100000, -1);
    CHECK(c->bytes <= c->max_bytes);
    CHECK(c->st.evictions >= 1);
    CHECK(cache_lookup(c, "2", 1, now) == NULL); /* least recently used */
    CHECK(cache_lookup(c, "4", 1, now) != NULL);
    CHECK(cache_lookup(c, "1", 1, now) != NULL);
    cache_free(c);

    /* max_objects */
    c = cache_new(&w, "t", 1 << 30, 3, 60000, "lru", err, sizeof err);
    for (char k = 'a'; k <= 'e'; k++) {
        char key[2] = {k, 0};
        fill(c, key, 10, -1);
    }
    CHECK(c->nobj == 3);
    CHECK(cache_lookup(c, "a", 1, now) == NULL);
    CHECK(cache_lookup(c, "e", 1, now) != NULL);
    cache_free(c);
}

static void test_refs_and_failure(void)
{
    struct cache *c = cache_new(&w, "t", 1 << 30, 1000, 60000, "lru", err, sizeof err);
    int64_t now = loop_now(w.loop);
    struct cache_obj *o = fill(c, "r", 70000, -1);
    cache_obj_ref(o); /* as a queued send would */
    size_t charged = c->bytes;
    CHECK(cache_lookup(c, "r", 1, now) == o);
    cache_unindex(o);
    CHECK(cache_lookup(c, "r", 1, now) == NULL);
    CHECK(c->bytes == charged);     /* memory still in use by the send */
    size_t n;
    CHECK(cache_obj_at(o, 0, &n) != NULL && n == CACHE_CHUNK);
    cache_obj_release(&w, o, 0);    /* the send completed */
    CHECK(c->bytes == 0);

    /* a fill that fails is never served as complete */
    struct cache_obj *f = cache_insert(c, "f", 1);
    cache_obj_ref(f);
    cache_obj_head(f, 200, 1000, -1);
    cache_obj_data(f, "abc", 3);
    CHECK(cache_lookup(c, "f", 1, now) == f); /* joinable while filling */
    cache_obj_done(f, true, 0);     /* "ok" but short of Content-Length */
    CHECK(f->state == OBJ_FAILED);
    CHECK(cache_lookup(c, "f", 1, now) == NULL);
    CHECK(c->st.fill_errors == 1);
    cache_obj_unref(f);
    /* objects being filled are not evicted */
    struct cache *small = cache_new(&w, "s", 1000, 1000, 60000, "lru", err, sizeof err);
    struct cache_obj *g = cache_insert(small, "g", 1);
    cache_obj_ref(g);               /* the fetch's ref */
    cache_obj_head(g, 200, -1, -1);
    CHECK(cache_obj_data(g, "x", 1) == 0);
    CHECK(g->state == OBJ_FILLING);
    CHECK(!g->indexed);             /* over budget: passed through... */
    cache_obj_done(g, true, 0);
    CHECK(g->state == OBJ_COMPLETE);/* ...but still complete for its readers */
    cache_obj_unref(g);
    CHECK(small->bytes == 0);
    cache_free(small);
    cache_free(c);
}

/* The same access pattern under different policies: LRU keeps the
 * touched object, FIFO doesn't; a Lua policy file behaves as its LRU. */
static void test_policies(void)
{
    char lua_lru[1024];
    snprintf(lua_lru, sizeof lua_lru, "%s", __FILE__);
    char *slash = strrchr(lua_lru, '/');
    snprintf(slash ? slash + 1 : lua_lru, 200, "../../examples/policies/lru.lua");
    const char *specs[] = {"lru", "fifo", "sieve", "clock", lua_lru};
    /* survivors of "1" after: 1, 2, touch 1, 3, 4 (room for 3) */
    const bool keeps1[] = {true, false, true, true, true};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        struct cache *c = cache_new(&w, "p", 350000, 1000, 60000, specs[i],
                                    err, sizeof err);
        if (c == NULL) {
            printf("%s: %s\n", specs[i], err);
            failures++;
            continue;
        }
        int64_t now = loop_now(w.loop);
        fill(c, "1", 100000, -1);
        fill(c, "2", 100000, -1);
        CHECK(cache_lookup(c, "1", 1, now) != NULL);
        fill(c, "3", 100000, -1);
        fill(c, "4", 100000, -1);
        CHECK(c->bytes <= c->max_bytes);
        bool has1 = cache_lookup(c, "1", 1, now) != NULL;
        if (has1 != keeps1[i]) {
            printf("%s: object 1 %s\n", specs[i], has1 ? "kept" : "evicted");
            failures++;
        }
        CHECK(cache_lookup(c, "4", 1, now) != NULL);
        cache_free(c);
    }
    /* s3fifo admits only objects up to its small queue (10 %) */
    struct cache *s3 = cache_new(&w, "p", 1000000, 1000, 60000, "s3fifo", err,
                                 sizeof err);
    int64_t now = loop_now(w.loop);
    fill(s3, "small", 50000, -1);
    fill(s3, "large", 200000, -1);
    CHECK(cache_lookup(s3, "small", 5, now) != NULL);
    CHECK(cache_lookup(s3, "large", 5, now) == NULL);
    CHECK(s3->st.uncacheable == 1);
    cache_free(s3);
    CHECK(cache_new(&w, "p", 1000, 10, 1000, "nope", err, sizeof err) == NULL);
    CHECK(strstr(err, "nope") != NULL);
}

int main(void)
{
    struct loop_config lc = {.entries = 8, .nbufs = 8, .buf_size = 64};
    w.loop = loop_new(&lc, err, sizeof err);
    if (w.loop == NULL) {
        printf("SKIP: %s\n", err);
        return 77;
    }
    test_hit_and_content();
    test_ttl();
    test_budget_and_lru();
    test_refs_and_failure();
    test_policies();
    loop_free(w.loop);
    printf("%s (%d failures)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
