/* test_cache.c - the object store without any network: index, LRU and
 * max_objects eviction, the byte budget, TTL expiry, refcounts that keep
 * unindexed objects alive, failed fills, chunk boundaries. */
#define _GNU_SOURCE
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
    CHECK(CACHE_ST(c)->expired == 1);
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
    CHECK(CACHE_ST(c)->evictions >= 1);
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
    /* memory still in use by the send: held by it, out of the budget */
    CHECK(c->bytes + c->held == charged && c->held == o->mem);
    size_t n;
    CHECK(cache_obj_at(o, 0, &n) != NULL && n == CACHE_CHUNK);
    cache_obj_release(&w, o, 0);    /* the send completed */
    CHECK(c->bytes == 0 && c->held == 0);

    /* a fill that fails is never served as complete */
    struct cache_obj *f = cache_insert(c, "f", 1);
    cache_obj_ref(f);
    head(f, 200, 1000, -1);
    cache_obj_data(f, "abc", 3);
    CHECK(cache_lookup(c, "f", 1, now) == f); /* joinable while filling */
    cache_obj_done(f, true, 0);     /* "ok" but short of Content-Length */
    CHECK(f->state == OBJ_FAILED);
    CHECK(cache_lookup(c, "f", 1, now) == NULL);
    CHECK(CACHE_ST(c)->fill_errors == 1);
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
    CHECK(CACHE_ST(s3)->uncacheable == 1);
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


/* respond() for a request with the fields `req` ("Name: v\r\n"...). */
static void req_msg(struct h1_msg *m, const char *lines);
static struct cache_obj *respond_req(struct cache *c, const char *key,
                                     const char *req, const char *hdrs,
                                     bool late)
{
    struct cache_obj *o;
    if (late) {
        o = cache_obj_new(c, key, strlen(key));
        o->index_late = true;
    } else {
        o = cache_insert(c, key, strlen(key));
        cache_obj_ref(o); /* the fetch's ref */
    }
    struct h1_msg m;
    req_msg(&m, req);
    vary_capture(o, &m);
    free(m.head.data);
    buf_append(&o->hdrs, hdrs, strlen(hdrs));
    head(o, 200, 2, 60000);
    return o;
}

/* ==== variants (RFC 9111 §4.1) ==== */

/* A request whose fields are `lines` ("Name: value\r\n"...). */
static void req_msg(struct h1_msg *m, const char *lines)
{
    memset(m, 0, sizeof *m);
    size_t n = strlen(lines);
    m->head.data = malloc(n + 1);
    memcpy(m->head.data, lines, n + 1);
    m->head.len = m->head.cap = n;
    const char *h = m->head.data, *p = h;
    while (*p) {
        const char *colon = strchr(p, ':'), *eol = strstr(p, "\r\n");
        struct hdr *f = &m->hdrs[m->nhdrs++];
        f->name = (uint32_t)(p - h);
        f->nlen = (uint32_t)(colon - p);
        f->val = (uint32_t)(colon + 1 - h);
        f->vlen = (uint32_t)(eol - colon - 1);
        p = eol + 2;
    }
}

/* A complete fill of key for the request `req` whose response has the
 * header lines `hdrs` (max-age=60 added); late: fetched alone. Returns the
 * object (indexed or not; alive while the cache holds it). */
static struct cache_obj *vfill(struct cache *c, const char *key,
                               const char *req, const char *hdrs, bool late)
{
    struct cache_obj *o = respond_req(c, key, req, hdrs, late);
    cache_obj_ref(o); /* kept for the caller's checks (vdrop) */
    finish_fill(o);
    return o;
}

static void vdrop(struct cache_obj *o) { cache_obj_unref(o); }

static struct cache_obj *vselect(struct cache *c, const char *key,
                                 const char *req, int64_t now)
{
    enum cache_fresh fr;
    struct h1_msg m;
    req_msg(&m, req);
    struct cache_obj *o =
        cache_select(c, key, strlen(key), now, vary_match_req, &m, &fr);
    free(m.head.data);
    return o;
}

static size_t count_key(struct cache *c, const char *key)
{
    size_t n = 0;
    for (struct cache_obj *o = cache_first(c, key, strlen(key)); o;
         o = cache_next_variant(o))
        n++;
    return n;
}

static void test_variants(void)
{
    struct cache *c = cache_new("v", 1 << 30, 100000, 60000, "lru", err, sizeof err);
    int64_t now = loop_now(w.loop);
    const char *ae = "Vary: Accept-Encoding\r\n";
    /* side by side, each selected by its values */
    struct cache_obj *g = vfill(c, "k", "Accept-Encoding: gzip\r\n", ae, false);
    struct cache_obj *i = vfill(c, "k", "Accept-Encoding: identity\r\n", ae, true);
    CHECK(g->indexed && i->indexed && c->nobj == 2 && count_key(c, "k") == 2);
    CHECK(g->pn.key != i->pn.key && g->hash == i->hash); /* policy ids */
    CHECK(vselect(c, "k", "Accept-Encoding: gzip\r\n", now) == g);
    CHECK(vselect(c, "k", "accept-encoding:  identity \r\n", now) == i);
    CHECK(vselect(c, "k", "Accept-Encoding: br\r\n", now) == NULL);
    CHECK(vselect(c, "k", "", now) == NULL);
    /* a request without the field: only a variant stored without it */
    struct cache_obj *none = vfill(c, "k", "", ae, false);
    CHECK(vselect(c, "k", "", now) == none && c->nobj == 3);
    /* the same variant again replaces that one only */
    struct cache_obj *g2 = vfill(c, "k", "Accept-Encoding: gzip\r\n", ae, false);
    CHECK(!g->indexed && g2->indexed && i->indexed && none->indexed);
    CHECK(vselect(c, "k", "Accept-Encoding: gzip\r\n", now) == g2);
    CHECK(c->nobj == 3);
    /* normalized values select the same variant */
    struct cache_obj *gb = vfill(c, "k", "Accept-Encoding: gzip\r\nAccept-Encoding: br\r\n", ae, false);
    CHECK(vselect(c, "k", "Accept-Encoding: gzip,  br\r\n", now) == gb);
    CHECK(vselect(c, "k", "Accept-Encoding: gzip ,br\r\n", now) == gb);
    /* budget: every variant charged, all of it back once gone */
    size_t sum = 0;
    for (struct cache_obj *o = cache_first(c, "k", 1); o; o = cache_next_variant(o))
        sum += o->mem;
    /* g: unindexed, still referenced: held, out of the budget */
    CHECK(c->bytes == sum && c->held == g->mem);
    CHECK(c->pol->count == 4);       /* each its own policy node */
    /* a fill in flight (head unknown) in front: stored variants still hit,
     * other requests join the fill */
    struct cache_obj *f = cache_insert(c, "k", 1);
    CHECK(vselect(c, "k", "Accept-Encoding: identity\r\n", now) == i);
    CHECK(vselect(c, "k", "Accept-Encoding: zstd\r\n", now) == f);
    /* purge: every variant, the fill too */
    CHECK(cache_purge_key(c, "k", 1) == 5);
    CHECK(count_key(c, "k") == 0 && c->nobj == 0 && c->pol->count == 0);
    vdrop(g); vdrop(i); vdrop(none); vdrop(g2); vdrop(gb);
    CHECK(c->bytes == 0);

    /* a ban and a tag purge find every variant too (keyidx, tagidx) */
    struct cache_obj *b1 = vfill(c, "ban/k", "X-V: 1\r\n", "Vary: X-V\r\n", false);
    struct cache_obj *b2 = vfill(c, "ban/k", "X-V: 2\r\n", "Vary: X-V\r\n", true);
    struct cache_tag tg = {"t1", 2};
    CHECK(cache_obj_set_tags(b1, &tg, 1) == 0 && cache_obj_set_tags(b2, &tg, 1) == 0);
    CHECK(cache_purge_tag(c, "t1", 2) == 2 && count_key(c, "ban/k") == 0);
    vdrop(b1); vdrop(b2);
    b1 = vfill(c, "ban/k", "X-V: 1\r\n", "Vary: X-V\r\n", false);
    b2 = vfill(c, "ban/k", "X-V: 2\r\n", "Vary: X-V\r\n", true);
    CHECK(cache_ban(c, "ban/", 4) == 2 && count_key(c, "ban/k") == 0);
    CHECK(c->keys.n == c->nobj);
    vdrop(b1); vdrop(b2);
    CHECK(c->bytes == 0);

    /* the per-key limit: the oldest variant goes */
    c->max_variants = 3;
    struct cache_obj *v[4];
    char req[64];
    for (int k = 0; k < 4; k++) {
        snprintf(req, sizeof req, "X-V: %d\r\n", k);
        v[k] = vfill(c, "l", req, "Vary: X-V\r\n", k % 2);
    }
    uint64_t ev = CACHE_ST(c)->evictions;
    CHECK(!v[0]->indexed && v[1]->indexed && v[2]->indexed && v[3]->indexed);
    CHECK(count_key(c, "l") == 3 && ev >= 1);
    CHECK(vselect(c, "l", "X-V: 0\r\n", now) == NULL);
    CHECK(vselect(c, "l", "X-V: 3\r\n", now) == v[3]);
    /* a response without Vary makes every older variant unreachable */
    struct cache_obj *plain = vfill(c, "l", "X-V: 9\r\n", "X-A: 1\r\n", false);
    CHECK(count_key(c, "l") == 1 && vselect(c, "l", "X-V: 1\r\n", now) == plain);
    for (int k = 0; k < 4; k++)
        vdrop(v[k]);
    vdrop(plain);

    /* a response not shareable: the whole key is hit-for-miss */
    c->max_variants = 8;
    struct cache_obj *a = vfill(c, "m", "X-V: a\r\n", "Vary: X-V\r\n", false);
    struct cache_obj *b = vfill(c, "m", "X-V: b\r\n", "Vary: X-V\r\n", false);
    struct cache_obj *p = respond_req(c, "m", "X-V: c\r\n",
                                      "Vary: X-V\r\nCache-Control: private\r\n", false);
    finish_fill(p);
    CHECK(!a->indexed && !b->indexed && count_key(c, "m") == 1);
    CHECK(vselect(c, "m", "X-V: a\r\n", now)->hfm);
    /* a storable response replaces the marker */
    struct cache_obj *d = vfill(c, "m", "X-V: d\r\n", "Vary: X-V\r\n", true);
    CHECK(count_key(c, "m") == 1 && vselect(c, "m", "X-V: d\r\n", now) == d);
    CHECK(vselect(c, "m", "X-V: a\r\n", now) == NULL);
    vdrop(a); vdrop(b); vdrop(d);

    /* two variants both matching a request: the most recent, also after
     * the index grew (rehash keeps each key's order) */
    struct cache_obj *x1 = vfill(c, "n", "X-V: 1\r\nX-W: 1\r\n", "Vary: X-V\r\n", false);
    struct cache_obj *x2 = vfill(c, "n", "X-V: 1\r\nX-W: 1\r\n", "Vary: X-W\r\n", false);
    CHECK(vselect(c, "n", "X-V: 1\r\nX-W: 1\r\n", now) == x2);
    CHECK(vselect(c, "n", "X-V: 1\r\nX-W: 2\r\n", now) == x1);
    unsigned nb = c->nbuckets;
    for (unsigned k = 0; k < 2 * nb; k++) {
        char key[32];
        snprintf(key, sizeof key, "fill%u", k);
        vdrop(vfill(c, key, "", "X-A: 1\r\n", false));
    }
    CHECK(c->nbuckets > nb);
    CHECK(vselect(c, "n", "X-V: 1\r\nX-W: 1\r\n", now) == x2);
    vdrop(x1); vdrop(x2);
    /* expired variants go when met */
    CHECK(vselect(c, "n", "X-V: 1\r\nX-W: 1\r\n", now + 61000) == NULL);
    CHECK(count_key(c, "n") == 0);
    cache_free(c);
}

/* Variants under a Lua policy (which refuses two resident nodes with one
 * id) and s3fifo: each variant is a key of its own to the policy, evicted
 * by it like any object. */
static void test_variant_policies(void)
{
    char lua_lru[1024];
    snprintf(lua_lru, sizeof lua_lru, "%s", __FILE__);
    char *slash = strrchr(lua_lru, '/');
    snprintf(slash ? slash + 1 : lua_lru, 200, "../../examples/policies/lru.lua");
    const char *specs[] = {lua_lru, "s3fifo", "lfu"};
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        struct cache *c = cache_new("vp", 1 << 20, 1000, 60000, specs[k], err, sizeof err);
        CHECK(c != NULL);
        if (c == NULL)
            continue;
        int64_t now = loop_now(w.loop);
        struct cache_obj *a = vfill(c, "k", "X-V: a\r\n", "Vary: X-V\r\n", false);
        struct cache_obj *b = vfill(c, "k", "X-V: b\r\n", "Vary: X-V\r\n", true);
        struct cache_obj *a2 = vfill(c, "k", "X-V: a\r\n", "Vary: X-V\r\n", false);
        CHECK(policy_error(c->pol) == NULL);
        CHECK(b->in_policy && a2->in_policy && !a->in_policy);
        CHECK(vselect(c, "k", "X-V: a\r\n", now) == a2);
        CHECK(vselect(c, "k", "X-V: b\r\n", now) == b);
        CHECK(cache_purge_key(c, "k", 1) == 2 && c->pol->count == 0);
        CHECK(policy_error(c->pol) == NULL);
        vdrop(a); vdrop(b); vdrop(a2);
        cache_free(c);
    }
}

static bool match_any(const struct cache_obj *o, const void *arg)
{
    (void)o;
    (void)arg;
    return true;
}

/* cache_select for a request that matches every variant */
static struct cache_obj *cache_lookup_stale(struct cache *c, const char *key,
                                            size_t klen, int64_t now,
                                            enum cache_fresh *fr)
{
    return cache_select(c, key, klen, now, match_any, NULL, fr);
}

/* Stale windows (RFC 9111 §4.2.4, RFC 5861): cache_select reports
 * grace and stale objects and drops them past every window; cache_lookup
 * still sees only fresh ones. A refresh's 304 freshens into a new object
 * with merged fields and the stored body (§4.3.4); a failed refresh with
 * a fallback gives the stale response (cache_obj_substitute). */
static void test_stale(void)
{
    struct cache *c = cache_new("s", 1 << 30, 1000, 60000, "lru", err, sizeof err);
    c->grace_ms = 2000;
    c->keep_ms = 5000;
    c->sie_ms = 0;
    int64_t now = loop_now(w.loop);
    enum cache_fresh fr;
    /* with a validator: grace 2 s then keep 5 s */
    struct cache_obj *o = cache_insert(c, "v", 1);
    cache_obj_ref(o);
    buf_append(&o->hdrs, "ETag: \"a\"\r\nX-A: 1\r\nX-B: 1\r\n", 27);
    head(o, 200, 4, 1000);
    CHECK(cache_obj_data(o, "body", 4) == 0);
    cache_obj_done(o, true, 0);
    cache_obj_unref(o);
    CHECK(o->grace_ms == 2000 && o->keep_ms == 5000 && o->sie_ms == 0);
    CHECK(cache_lookup_stale(c, "v", 1, now + 500, &fr) == o && fr == CACHE_FRESH);
    CHECK(cache_lookup(c, "v", 1, now + 1500) == NULL); /* stale: not here */
    CHECK(o->indexed);
    CHECK(cache_lookup_stale(c, "v", 1, now + 1500, &fr) == o && fr == CACHE_GRACE);
    CHECK(cache_lookup_stale(c, "v", 1, now + 4000, &fr) == o && fr == CACHE_STALE);
    /* a refresh answered 304 with a new X-A, another Content-Length */
    cache_obj_ref(o); /* to look at it once replaced */
    struct cache_obj *n = cache_obj_new(c, "v", 1);
    n->index_late = true;
    n->reval_of = o;
    cache_obj_ref(o);
    o->refresh = n;
    n->cond_sent = true;
    buf_append(&n->hdrs, "X-A: 2\r\nETag: W/\"a\"\r\n", 21);
    fetch_head(n, 304, 0, now + 4000);
    CHECK(n->revalidated && n->indexed && !o->indexed && n->status == 200);
    CHECK(n->len == 4 && memcmp(n->chunks[0], "body", 4) == 0);
    CHECK(memmem(n->hdrs.data, n->hdrs.len, "X-A: 1", 6) == NULL);
    CHECK(memmem(n->hdrs.data, n->hdrs.len, "X-A: 2", 6) != NULL);
    CHECK(memmem(n->hdrs.data, n->hdrs.len, "X-B: 1", 6) != NULL);
    cache_obj_done(n, true, 0);
    CHECK(n->state == OBJ_COMPLETE && o->refresh == NULL && n->reval_of == NULL);
    cache_obj_unref(o);
    CHECK(cache_lookup(c, "v", 1, now + 4500) == n);
    CHECK(CACHE_ST(c)->revalidated == 1);
    /* must-revalidate: no grace, no stale-if-error; kept (validator) */
    c->sie_ms = 3000;
    struct cache_obj *m = cache_insert(c, "m", 1);
    cache_obj_ref(m);
    const char *mh = "Cache-Control: must-revalidate\r\nETag: \"m\"\r\n";
    buf_append(&m->hdrs, mh, strlen(mh));
    head(m, 200, 0, 1000);
    cache_obj_done(m, true, 0);
    cache_obj_unref(m);
    CHECK(m->grace_ms == 0 && m->sie_ms == 0 && m->keep_ms == 5000);
    CHECK(cache_lookup_stale(c, "m", 1, now + 1500, &fr) == m && fr == CACHE_STALE);
    /* no validator: no keep; stale-if-error 3 s; past it, gone */
    struct cache_obj *e = fill(c, "e", 3, 1000);
    CHECK(e->keep_ms == 0 && e->grace_ms == 2000 && e->sie_ms == 3000);
    cache_obj_ref(e);
    CHECK(cache_lookup_stale(c, "e", 1, now + 3500, &fr) == e && fr == CACHE_STALE);
    struct cache_obj *f = cache_obj_new(c, "e", 1);
    f->index_late = true;
    f->reval_of = e;
    cache_obj_ref(e);
    e->refresh = f;
    f->fallback = true;
    cache_obj_done(f, false, 502); /* connection refused */
    CHECK(f->stale_sub && f->state == OBJ_COMPLETE && f->status == 200);
    CHECK(f->len == 3 && !f->indexed && e->refresh == NULL);
    CHECK(cache_obj_data(f, "late", 4) == 0 && f->len == 3); /* ignored */
    cache_obj_done(f, true, 0);                                 /* nothing */
    cache_obj_unref(f);
    CHECK(cache_lookup_stale(c, "e", 1, now + 4100, &fr) == NULL);
    CHECK(!e->indexed);
    cache_obj_unref(e);
    cache_obj_unref(n); /* the fill's ref (as the origin would drop it) */
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
    test_variants();
    test_variant_policies();
    test_stale();
    loop_free(w.loop);
    printf("%s (%d failures)\n", test_failures ? "FAIL" : "PASS", test_failures);
    return test_failures ? 1 : 0;
}
