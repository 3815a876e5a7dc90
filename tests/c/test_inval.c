/* test_inval.c - the invalidation indexes (RFC 9111 §4.4, docs/API.md
 * "Invalidation") without any network: the ordered key index (keyidx) and
 * the tag index (tagidx) under random inserts and removals, checked against
 * a naive model; the store's cache_purge_key / cache_ban / cache_purge_tag
 * with eviction in between; tag reading bounds; Location keys. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "core/fetch.h"
#include "core/inval.h"
#include "store/cache.h"
#include "store/keyidx.h"
#include "store/tagidx.h"

static uint64_t rng = 88172645463325252ull;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

/* ==== keyidx against a model: every live key, prefix queries by scan ==== */

#define NK 600
struct mkey {
    struct keyidx_node kn;
    char k[8];
    size_t n;
    int live;
};

static int has_prefix(const struct mkey *m, const char *p, size_t pl)
{
    return m->n >= pl && memcmp(m->k, p, pl) == 0;
}

static void test_keyidx_model(void)
{
    static struct mkey keys[NK];
    struct keyidx ki;
    keyidx_init(&ki);
    const char alpha[3] = { 'a', 'b', '\0' }; /* NUL is a byte like others */
    size_t live = 0;
    for (int step = 0; step < 20000; step++) {
        struct mkey *m = &keys[rnd(NK)];
        if (m->live) {
            keyidx_remove(&ki, &m->kn);
            m->live = 0;
            live--;
        } else {
            m->n = rnd(6); /* duplicates happen: equal keys must coexist */
            for (size_t i = 0; i < m->n; i++)
                m->k[i] = alpha[rnd(3)];
            m->kn.key = m->k;
            m->kn.klen = m->n;
            keyidx_insert(&ki, &m->kn);
            m->live = 1;
            live++;
        }
        CHECK_EQ(ki.n, live);
        if (step % 50 != 0)
            continue;
        char p[8];
        size_t pl = rnd(5);
        for (size_t i = 0; i < pl; i++)
            p[i] = alpha[rnd(3)];
        size_t want = 0, got = 0;
        for (int i = 0; i < NK; i++)
            want += keys[i].live && has_prefix(&keys[i], p, pl);
        const struct keyidx_node *prev = NULL;
        for (struct keyidx_node *n = keyidx_prefix_first(&ki, p, pl); n;
             n = keyidx_prefix_next(&ki, n, p, pl)) {
            struct mkey *mk = (struct mkey *)n;
            CHECK(mk->live && has_prefix(mk, p, pl));
            if (prev) { /* in order: memcmp, then the shorter */
                size_t l = prev->klen < n->klen ? prev->klen : n->klen;
                int d = l ? memcmp(prev->key, n->key, l) : 0;
                CHECK(d < 0 || (d == 0 && prev->klen <= n->klen));
            }
            prev = n;
            got++;
        }
        CHECK_EQ(got, want);
    }
}

/* ==== tagidx against a model: per tag, how many links ==== */

#define NL 400
static void test_tagidx_model(void)
{
    static struct tag_link links[NL];
    static int which[NL]; /* the tag of link i, -1: unlinked */
    struct tagidx ti;
    tagidx_init(&ti);
    for (int i = 0; i < NL; i++)
        which[i] = -1;
    for (int step = 0; step < 20000; step++) {
        int i = (int)rnd(NL);
        char name[16];
        if (which[i] >= 0) {
            tagidx_unlink(&ti, &links[i]);
            which[i] = -1;
        } else {
            int t = (int)rnd(40);
            int n = snprintf(name, sizeof name, "t%d", t);
            links[i].owner = &links[i];
            CHECK(tagidx_link(&ti, &links[i], name, (size_t)n) == 0);
            which[i] = t;
        }
        if (step % 100 == 0) {
            for (int t = 0; t < 40; t++) {
                int n = snprintf(name, sizeof name, "t%d", t);
                size_t want = 0, got = 0;
                for (int k = 0; k < NL; k++)
                    want += which[k] == t;
                CHECK_EQ(tagidx_count(&ti, name, (size_t)n), want);
                for (struct tag_link *l = tagidx_first(&ti, name, (size_t)n);
                     l; l = l->next) {
                    CHECK(which[l - links] == t);
                    got++;
                }
                CHECK_EQ(got, want);
            }
        }
    }
    for (int i = 0; i < NL; i++)
        tagidx_unlink(&ti, &links[i]);
    CHECK_EQ(ti.ntags, 0);
    char big[TAG_LEN_MAX + 1];
    memset(big, 'x', sizeof big);
    struct tag_link l;
    CHECK(tagidx_link(&ti, &l, big, sizeof big) < 0); /* too long */
    CHECK(tagidx_link(&ti, &l, big, 0) < 0);
    CHECK(tagidx_link(&ti, &l, big, TAG_LEN_MAX) == 0);
    tagidx_unlink(&ti, &l);
    tagidx_free(&ti);
}

/* ==== the store ==== */

/* A stored response under key with header lines hdrs (may be ""). */
static struct cache_obj *store(struct cache *c, const char *key, size_t klen,
                               const char *hdrs)
{
    struct cache_obj *o = cache_insert(c, key, klen);
    if (o == NULL)
        return NULL;
    cache_obj_ref(o);
    buf_append(&o->hdrs, hdrs, strlen(hdrs));
    fetch_head(o, 200, 3, 0);
    cache_obj_data(o, "abc", 3);
    cache_obj_done(o, true, 0);
    cache_obj_unref(o);
    return o;
}

static void test_store(void)
{
    char err[256];
    struct cache *c = cache_new("t", 1 << 30, 100, 60000, "lru", err,
                                sizeof err);
    REQUIRE(c != NULL);
    store(c, "h/a", 3, "Surrogate-Key: x  y\r\n");
    store(c, "h/ab", 4, "Cache-Tag: y,z\r\n");
    store(c, "h/b", 3, "Cache-Tag: z, x ,x\r\n");
    store(c, "g/a", 3, "");
    store(c, "h\0/n", 4, "Surrogate-Key: nul\r\n"); /* NUL in a key */
    CHECK_EQ(c->nobj, 5);
    CHECK_EQ(tagidx_count(&c->tags, "x", 1), 2); /* "x ,x": once */
    CHECK_EQ(cache_ban(c, "h/a", 3), 2);         /* h/a, h/ab */
    CHECK(cache_lookup(c, "h/b", 3, 0) != NULL);
    CHECK_EQ(tagidx_count(&c->tags, "y", 1), 0); /* its objects went */
    CHECK_EQ(cache_purge_tag(c, "x", 1), 1);     /* h/b */
    CHECK_EQ(cache_purge_tag(c, "z", 1), 0);     /* gone with h/b */
    CHECK_EQ(cache_purge_key(c, "h\0/n", 4), 1);
    CHECK_EQ(cache_purge_key(c, "h\0/n", 4), 0);
    CHECK_EQ(cache_purge_tag(c, "nul", 3), 0);
    CHECK_EQ(c->nobj, 1);
    CHECK_EQ(cache_ban(c, "", 0), 1);            /* "": everything */
    CHECK_EQ(c->nobj, 0);
    CHECK_EQ(c->tags.ntags, 0);
    CHECK_EQ(c->keys.n, 0);
    cache_free(c);
}

/* Fill far more than max_objects with random tags: evictions unlink the
 * evicted from tags and keys; purges then remove exactly what the model
 * of what is still indexed says. */
static void test_store_eviction(void)
{
    char err[256];
    struct cache *c = cache_new("t", 1 << 30, 50, 60000, "lru", err,
                                sizeof err);
    REQUIRE(c != NULL);
    for (int i = 0; i < 2000; i++) {
        char key[32], hdr[64];
        int kn = snprintf(key, sizeof key, "k%d/%d", i % 7, i);
        snprintf(hdr, sizeof hdr, "Surrogate-Key: t%u t%u all\r\n", rnd(5),
                 rnd(5));
        store(c, key, (size_t)kn, hdr);
        if (i % 97 == 0)
            cache_purge_tag(c, "t1", 2);
        if (i % 131 == 0)
            cache_ban(c, "k3/", 3);
    }
    CHECK(c->nobj <= 50);
    CHECK_EQ(c->keys.n, c->nobj);
    CHECK_EQ(tagidx_count(&c->tags, "all", 3), c->nobj);
    size_t t1 = tagidx_count(&c->tags, "t1", 2);
    CHECK_EQ(cache_purge_tag(c, "t1", 2), t1);
    size_t k2 = 0;
    for (struct keyidx_node *n = keyidx_prefix_first(&c->keys, "k2/", 3); n;
         n = keyidx_prefix_next(&c->keys, n, "k2/", 3))
        k2++;
    CHECK_EQ(cache_ban(c, "k2/", 3), k2);
    size_t left = c->nobj;
    CHECK_EQ(cache_purge_tag(c, "all", 3), left);
    CHECK_EQ(c->nobj, 0);
    CHECK_EQ(c->tags.ntags, 0);
    cache_free(c);
}

/* A fill the indexes can't reach, as a request fetching on its own after
 * a hit-for-miss marker makes it (index_late): refs 1, the caller's. */
static struct cache_obj *late(struct cache *c, const char *key)
{
    struct cache_obj *o = cache_obj_new(c, key, strlen(key));
    if (o)
        o->index_late = true;
    return o;
}

/* o's response comes (a storable 200 with header lines hdrs): is it
 * stored? Drops the caller's ref. */
static bool finish(struct cache_obj *o, const char *hdrs)
{
    buf_append(&o->hdrs, hdrs, strlen(hdrs));
    fetch_head(o, 200, 3, 0);
    cache_obj_data(o, "abc", 3);
    cache_obj_done(o, true, 0);
    bool stored = o->indexed;
    cache_obj_unref(o);
    return stored;
}

/* An invalidation made while a fill is in flight that it could not reach
 * (not indexed before its head; no tags before its head) keeps the fill
 * from being stored when it matches its key or, once known, a tag; one
 * made before it started, or matching something else, changes nothing;
 * more than CACHE_INVAL_LOG of them meanwhile: not stored. */
static void test_inflight(void)
{
    char err[256];
    struct cache *c = cache_new("t", 1 << 30, 1000, 60000, "lru", err,
                                sizeof err);
    REQUIRE(c != NULL);
    struct cache_obj *o = late(c, "a/1");
    REQUIRE(o != NULL);
    CHECK_EQ(cache_purge_key(c, "a/1", 3), 0); /* it can't find it */
    CHECK(!finish(o, ""));
    CHECK(cache_lookup(c, "a/1", 3, 0) == NULL);

    o = late(c, "a/2");
    cache_purge_key(c, "a/22", 4);
    cache_purge_key(c, "a/", 2);
    cache_ban(c, "b/", 2);
    cache_ban(c, "a/20", 4);
    cache_purge_tag(c, "zz", 2);
    cache_purge_key(c, "", 0);
    cache_purge_tag(c, "", 0);
    CHECK(finish(o, "Surrogate-Key: t2 t\r\n"));
    CHECK(cache_lookup(c, "a/2", 3, 0) != NULL);

    o = late(c, "a/4");
    cache_ban(c, "a/", 2);
    CHECK(!finish(o, ""));
    o = late(c, "a/5");
    cache_ban(c, "", 0); /* everything */
    CHECK(!finish(o, ""));

    o = late(c, "a/7"); /* its tag purged before its head */
    cache_purge_tag(c, "t7", 2);
    CHECK(!finish(o, "Surrogate-Key: x t7\r\n"));
    CHECK_EQ(c->tags.ntags, 0);

    o = cache_insert(c, "a/8", 3); /* indexed at once, no tags yet */
    REQUIRE(o != NULL);
    cache_obj_ref(o);
    cache_purge_tag(c, "t8", 2);
    CHECK(o->indexed);
    CHECK(!finish(o, "Cache-Tag: t8\r\n"));
    CHECK(cache_lookup(c, "a/8", 3, 0) == NULL);

    cache_purge_key(c, "a/9", 3); /* before it started */
    o = late(c, "a/9");
    CHECK(finish(o, "Cache-Tag: t8\r\n"));

    o = late(c, "a/10"); /* CACHE_INVAL_LOG others: all remembered */
    for (int i = 0; i < CACHE_INVAL_LOG; i++)
        cache_purge_key(c, "other", 5);
    CHECK(finish(o, ""));
    o = late(c, "a/11"); /* one more: some forgotten, not stored */
    for (int i = 0; i <= CACHE_INVAL_LOG; i++)
        cache_purge_key(c, "other", 5);
    CHECK(!finish(o, ""));
    cache_free(c);
}

/* hostile responses: a thousand tags, a tag too long */
static void test_tag_bounds(void)
{
    char err[256];
    struct cache *c = cache_new("t", 1 << 30, 100, 60000, "lru", err,
                                sizeof err);
    REQUIRE(c != NULL);
    struct buf h = { 0 };
    buf_append(&h, "Surrogate-Key:", 14);
    for (int i = 0; i < 1000; i++) {
        char t[16];
        int n = snprintf(t, sizeof t, " t%d", i);
        buf_append(&h, t, (size_t)n);
    }
    buf_append(&h, "\r\nCache-Tag: ", 13);
    for (int i = 0; i < TAG_LEN_MAX + 1; i++)
        buf_append(&h, "L", 1);
    buf_append(&h, "\r\n\0", 3);
    struct cache_obj *o = store(c, "k", 1, h.data);
    REQUIRE(o != NULL);
    CHECK_EQ(o->ntags, TAG_MAX);
    CHECK_EQ(tagidx_count(&c->tags, "t63", 3), 1);
    CHECK_EQ(tagidx_count(&c->tags, "t64", 3), 0);
    CHECK_EQ(c->tags.ntags, TAG_MAX);
    /* a tag_header of the script's replaces both */
    snprintf(c->tag_header, sizeof c->tag_header, "x-tags");
    store(c, "k2", 2, "Surrogate-Key: a\r\nX-Tags: b c\r\n");
    CHECK_EQ(tagidx_count(&c->tags, "a", 1), 0);
    CHECK_EQ(tagidx_count(&c->tags, "c", 1), 1);
    buf_free(&h);
    cache_free(c);
}

static void uri(const char *u, const char *want)
{
    struct buf out = { 0 };
    const char *key = "ex.com/p/q?x"; /* base "ex.com", target "/p/q?x" */
    bool ok = inval_uri_key(key, 6, "Ex.COM", 6, u, strlen(u), &out);
    if (want == NULL) {
        CHECK(!ok);
        if (ok)
            printf("  %s -> %.*s, wanted none\n", u, (int)out.len, out.data);
    } else {
        CHECK(ok && out.len == strlen(want) &&
              memcmp(out.data, want, out.len) == 0);
        if (!ok || out.len != strlen(want) || memcmp(out.data, want, out.len))
            printf("  %s -> %.*s, wanted %s\n", u, ok ? (int)out.len : 0,
                   ok ? out.data : "", want);
    }
    buf_free(&out);
}

static void test_uri_key(void)
{
    uri("/a/b", "ex.com/a/b");
    uri("/a?b=1#frag", "ex.com/a?b=1");
    uri("http://ex.com/a", "ex.com/a");
    uri("HTTPS://EX.com/a?q", "ex.com/a?q");
    uri("//ex.com/z", "ex.com/z");
    uri("http://ex.com", "ex.com/");
    uri("http://ex.com?q", "ex.com/?q");
    uri("http://other.com/a", NULL);   /* another host: RFC 9111 §4.4 */
    uri("http://ex.com:8080/a", NULL); /* another authority */
    uri("http://u@ex.com/a", NULL);
    uri("a/b", NULL);                  /* relative: not resolved */
    uri("ftp://ex.com/a", NULL);
    uri("", NULL);
}

int main(void)
{
    test_watchdog(60);
    TEST(test_keyidx_model);
    TEST(test_tagidx_model);
    TEST(test_store);
    TEST(test_store_eviction);
    TEST(test_inflight);
    TEST(test_tag_bounds);
    TEST(test_uri_key);
    return test_report();
}
