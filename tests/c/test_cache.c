/* test_cache.c - the object store without any network: index, LRU and
 * max_objects eviction, the byte budget, TTL expiry, refcounts that keep
 * unindexed objects alive, failed fills, chunk boundaries. */
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "app/worker.h"
#include "core/fetch.h"
#include "core/vary.h"
#include "http/date.h"
#include "store/cache.h"

static int test_failures;
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            printf("%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);    \
            test_failures++;                                                   \
        }                                                                      \
    } while (0)

static struct worker w;
static char err[256];

/* The origin's head: status, length and a freshness lifetime as an origin
 * would give it (Cache-Control: max-age, in whole seconds; ttl_ms < 0: no
 * Cache-Control, so the cache's default applies). */
static void head(struct cache_obj *o, int status, int64_t total, int64_t ttl_ms)
{
    if (ttl_ms >= 0) {
        char line[64];
        int n = snprintf(line, sizeof line, "Cache-Control: max-age=%lld\r\n",
                         (long long)(ttl_ms / 1000));
        buf_append(&o->hdrs, line, (size_t)n);
    }
    fetch_head(o, status, total, loop_now(w.loop));
}

static struct cache_obj *fill(struct cache *c, const char *key, size_t size,
                              int64_t ttl_ms)
{
    struct cache_obj *o = cache_insert(c, key, strlen(key));
    cache_obj_ref(o); /* the fetch's ref, as an origin holds */
    head(o, 200, (int64_t)size, ttl_ms);
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
    struct cache *c = cache_new("t", 1 << 30, 1000, 60000, "lru", err, sizeof err);
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
    head(x, 200, 10, -1);
    CHECK(cache_obj_data(x, "0123456789abc", 13) == -1);
    cache_free(c);
}

static void test_ttl(void)
{
    struct cache *c = cache_new("t", 1 << 30, 1000, 60000, "lru", err, sizeof err);
    int64_t now = loop_now(w.loop);
    fill(c, "k", 10, 1000);
    CHECK(cache_lookup(c, "k", 1, now + 500) != NULL);
    CHECK(cache_lookup(c, "k", 1, now + 1500) == NULL);
    CHECK(c->st.expired == 1);
    CHECK(c->nobj == 0);
    /* max-age=0, and statuses that are not heuristically cacheable
     * without explicit freshness, are never stored: a hit-for-miss marker
     * takes their place for hfm_ms */
    struct cache_obj *n = fill(c, "n", 10, 0);
    struct cache_obj *m = cache_lookup(c, "n", 1, now);
    CHECK(m != NULL && m != n && m->hfm && m->len == 0);
    struct cache_obj *o = cache_insert(c, "e", 1);
    cache_obj_ref(o);
    head(o, 500, 0, -1);
    CHECK(!o->indexed && !o->shareable);
    m = cache_lookup(c, "e", 1, now);
    CHECK(m != NULL && m->hfm);
    cache_obj_unref(o);
    CHECK(cache_lookup(c, "e", 1, now + c->hfm_ms + 1) == NULL); /* expired */
    cache_free(c);
}

static void test_budget_and_lru(void)
{
    struct cache *c = cache_new("t", 350000, 1000, 60000, "lru", err, sizeof err); /* 3 fit */
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
    c = cache_new("t", 1 << 30, 3, 60000, "lru", err, sizeof err);
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
    struct cache *c = cache_new("t", 1 << 30, 1000, 60000, "lru", err, sizeof err);
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
    head(f, 200, 1000, -1);
    cache_obj_data(f, "abc", 3);
    CHECK(cache_lookup(c, "f", 1, now) == f); /* joinable while filling */
    cache_obj_done(f, true, 0);     /* "ok" but short of Content-Length */
    CHECK(f->state == OBJ_FAILED);
    CHECK(cache_lookup(c, "f", 1, now) == NULL);
    CHECK(c->st.fill_errors == 1);
    cache_obj_unref(f);
    /* objects being filled are not evicted */
    struct cache *small = cache_new("s", 1000, 1000, 60000, "lru", err, sizeof err);
    struct cache_obj *g = cache_insert(small, "g", 1);
    cache_obj_ref(g);               /* the fetch's ref */
    head(g, 200, -1, -1);
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

/* A fill for key, for a request without fields (its Vary values: all
 * absent), whose origin answers `status` with header lines `hdrs`; auth:
 * the request had Authorization; late: fetched alone (index_late). */
static struct cache_obj *respond(struct cache *c, const char *key, int status,
                                 const char *hdrs, bool auth, bool late)
{
    struct cache_obj *o;
    if (late) {
        o = cache_obj_new(c, key, strlen(key));
        o->index_late = true;
    } else {
        o = cache_insert(c, key, strlen(key));
        cache_obj_ref(o); /* the fetch's ref */
    }
    o->req_auth = auth;
    static struct h1_msg none;
    vary_capture(o, &none);
    buf_append(&o->hdrs, hdrs, strlen(hdrs));
    head(o, status, 2, -1);
    return o;
}

static void finish_fill(struct cache_obj *o)
{
    cache_obj_data(o, "ok", 2);
    cache_obj_done(o, true, 0);
    cache_obj_unref(o);
}

static int64_t admit_cookies;
static int64_t decide_stub(struct cache *c, struct cache_obj *o, int64_t ttl,
                           bool set_cookie)
{
    return set_cookie ? admit_cookies : ttl;
}

/* RFC 9111 §3: what may be delivered to other requests (shareable) and
 * stored; hit-for-miss markers for the rest. */
static void test_shareable(void)
{
    struct cache *c = cache_new("t", 1 << 30, 1000, 60000, "lru", err, sizeof err);
    int64_t now = loop_now(w.loop);
    static const struct {
        int status;
        const char *hdrs;
        bool auth, shareable;
    } cases[] = {
        {200, "", false, true},
        {200, "Cache-Control: max-age=60\r\n", false, true},
        {200, "Cache-Control: private\r\n", false, false},
        {200, "Cache-Control: PRIVATE, max-age=60\r\n", false, false},
        {200, "Cache-Control: private=\"Set-Cookie\"\r\n", false, false},
        {200, "Cache-Control: no-store\r\n", false, false},
        {200, "Cache-Control: public\r\nCache-Control: no-store\r\n", false, false},
        {200, "Cache-Control: no-cache\r\n", false, false},
        {200, "Cache-Control: max-age=0\r\n", false, false},
        {200, "Cache-Control: max-age=abc\r\n", false, false},
        {200, "Expires: Thu, 01 Jan 1970 00:00:00 GMT\r\n", false, false},
        {200, "Expires: 0\r\n", false, false},
        {200, "Set-Cookie: a=b\r\n", false, false},
        {200, "set-cookie: a=b\r\nCache-Control: public, max-age=60\r\n", false, false},
        {200, "Vary: *\r\n", false, false},
        {200, "Vary: Accept-Encoding, *\r\n", false, false},
        {200, "Vary: Accept-Encoding\r\n", false, true},
        {200, "", true, false},
        {200, "Cache-Control: max-age=60\r\n", true, false},
        {200, "Cache-Control: public\r\n", true, true},
        {200, "Cache-Control: s-maxage=60\r\n", true, true},
        {200, "Cache-Control: must-revalidate, max-age=60\r\n", true, true},
        /* RFC 9111 §3, §4.2.2: heuristically cacheable statuses (RFC 9110
         * §15.1) are stored without explicit freshness (negative caching);
         * 302 and 307 only with it (as Varnish); others never */
        {404, "", false, true},
        {410, "", false, true},
        {501, "", false, true},
        {302, "Cache-Control: max-age=60\r\n", false, true},
        {302, "", false, false},
        {307, "", false, false},
        {500, "", false, false},
        {503, "Expires: 0\r\n", false, false},
        {500, "Cache-Control: public\r\n", false, false},
        {500, "Cache-Control: max-age=60\r\n", false, false},
        {201, "Cache-Control: max-age=60\r\n", false, false},
        {307, "Cache-Control: max-age=60\r\n", false, true},
        {206, "Cache-Control: max-age=60\r\n", false, false},
        {304, "Cache-Control: max-age=60\r\n", false, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%zu", i);
        struct cache_obj *o = respond(c, key, cases[i].status, cases[i].hdrs,
                                      cases[i].auth, false);
        if (o->shareable != cases[i].shareable) {
            printf("case %zu (%d, %s, auth %d): shareable %d\n", i,
                   cases[i].status, cases[i].hdrs, cases[i].auth, o->shareable);
            test_failures++;
        }
        finish_fill(o);
        struct cache_obj *found = cache_lookup(c, key, strlen(key), now);
        CHECK(found != NULL);
        if (found)
            CHECK(found->hfm == !cases[i].shareable);
    }

    /* a fetch of its own (after a marker) that turns out storable replaces
     * the marker; one that doesn't keeps it */
    struct cache_obj *p = respond(c, "m", 200, "Cache-Control: private\r\n", false, false);
    finish_fill(p);
    struct cache_obj *m = cache_lookup(c, "m", 1, now);
    CHECK(m && m->hfm);
    p = respond(c, "m", 200, "Cache-Control: no-store\r\n", false, true);
    CHECK(cache_lookup(c, "m", 1, now) == m); /* the same marker, refreshed */
    finish_fill(p);
    p = respond(c, "m", 200, "Cache-Control: max-age=60\r\n", false, true);
    CHECK(p->indexed && cache_lookup(c, "m", 1, now) == p);
    finish_fill(p);
    m = cache_lookup(c, "m", 1, now);
    CHECK(m && !m->hfm && m->state == OBJ_COMPLETE && m->len == 2);
    /* ...and a newer private response replaces the stored one */
    p = respond(c, "m", 200, "Cache-Control: private\r\n", false, true);
    finish_fill(p);
    m = cache_lookup(c, "m", 1, now);
    CHECK(m && m->hfm);

    /* a marker never replaces a fill whose head is still unknown */
    struct cache_obj *f = cache_insert(c, "u", 1);
    cache_obj_ref(f);
    p = respond(c, "u", 200, "Cache-Control: private\r\n", false, true);
    CHECK(cache_lookup(c, "u", 1, now) == f);
    finish_fill(p);
    head(f, 200, 2, 60000);
    finish_fill(f);
    CHECK(cache_lookup(c, "u", 1, now) == f);

    /* hit_for_miss = 0: no marker, the key is simply not cached */
    c->hfm_ms = 0;
    p = respond(c, "z", 200, "Cache-Control: private\r\n", false, false);
    finish_fill(p);
    CHECK(cache_lookup(c, "z", 1, now) == NULL);
    c->hfm_ms = 120000;

    /* Set-Cookie: stored only when the decide hook says so explicitly */
    c->decide = decide_stub;
    admit_cookies = 0;
    p = respond(c, "sc", 200, "Set-Cookie: a=b\r\n", false, false);
    CHECK(!p->shareable);
    finish_fill(p);
    admit_cookies = 30000;
    p = respond(c, "sc", 200, "Set-Cookie: a=b\r\n", false, true);
    CHECK(p->shareable && p->indexed);
    finish_fill(p);
    m = cache_lookup(c, "sc", 2, now);
    CHECK(m && !m->hfm && m->expires == now + 30000);
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
        struct cache *c = cache_new("p", 350000, 1000, 60000, specs[i],
                                    err, sizeof err);
        if (c == NULL) {
            printf("%s: %s\n", specs[i], err);
            test_failures++;
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
            test_failures++;
        }
        CHECK(cache_lookup(c, "4", 1, now) != NULL);
        cache_free(c);
    }
    /* s3fifo admits only objects up to its small queue (10 %) */
    struct cache *s3 = cache_new("p", 1000000, 1000, 60000, "s3fifo", err,
                                 sizeof err);
    int64_t now = loop_now(w.loop);
    fill(s3, "small", 50000, -1);
    fill(s3, "large", 200000, -1);
    CHECK(cache_lookup(s3, "small", 5, now) != NULL);
    CHECK(cache_lookup(s3, "large", 5, now) == NULL);
    CHECK(s3->st.uncacheable == 1);
    cache_free(s3);
    CHECK(cache_new("p", 1000, 10, 1000, "nope", err, sizeof err) == NULL);
    CHECK(strstr(err, "nope") != NULL);
}

/* RFC 9111 §4.2.2 heuristic freshness and §4.2.3 initial age */
static void test_heuristic_and_age(void)
{
    struct cache *c = cache_new("t", 1 << 30, 1000, 60000, "lru", err, sizeof err);
    int64_t now = loop_now(w.loop);
    char date[40], lm[40], line[160];
    time_t t = time(NULL);
    static const struct { int64_t lm_age; int64_t ttl; } cases[] = {
        { 100, 60 },          /* 10 s < the cache's ttl: the ttl */
        { 10000, 1000 },      /* 10 % of the Last-Modified age */
        { 100 * 86400, 86400 }, /* capped at heuristic_max */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http_date_format((int64_t)t, date);
        date[HTTP_DATE_LEN] = 0;
        http_date_format((int64_t)t - cases[i].lm_age, lm);
        lm[HTTP_DATE_LEN] = 0;
        snprintf(line, sizeof line, "Date: %s\r\nLast-Modified: %s\r\n", date, lm);
        struct cache_obj *o = cache_insert(c, "h", 1);
        cache_obj_ref(o);
        buf_append(&o->hdrs, line, strlen(line));
        fetch_head(o, 200, 2, now);
        int64_t ttl = (o->expires - now) / 1000;
        /* a second may pass between Date and the fetch's clock */
        CHECK(ttl >= cases[i].ttl - 2 && ttl <= cases[i].ttl);
        CHECK(o->shareable);
        finish_fill(o);
    }
    /* Age and an old Date both make a response older on arrival */
    struct cache_obj *o = cache_insert(c, "a", 1);
    cache_obj_ref(o);
    o->origin_age = 50;
    buf_append(&o->hdrs, "Cache-Control: max-age=60\r\n", 27);
    fetch_head(o, 200, 2, now);
    CHECK(o->init_age == 50);
    CHECK(o->expires - now == 10000);
    CHECK(now - o->born == 50000);
    finish_fill(o);
    o = cache_insert(c, "d", 1);
    cache_obj_ref(o);
    http_date_format((int64_t)time(NULL) - 100, date);
    snprintf(line, sizeof line, "Cache-Control: max-age=60\r\nDate: %.29s\r\n", date);
    buf_append(&o->hdrs, line, strlen(line));
    fetch_head(o, 200, 2, now);
    CHECK(o->init_age >= 99 && o->init_age <= 101);
    CHECK(!o->shareable); /* arrived stale */
    finish_fill(o);
    cache_free(c);
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
    test_shareable();
    test_heuristic_and_age();
    test_policies();
    loop_free(w.loop);
    printf("%s (%d failures)\n", test_failures ? "FAIL" : "PASS", test_failures);
    return test_failures ? 1 : 0;
}
