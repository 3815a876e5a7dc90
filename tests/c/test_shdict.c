/* test_shdict.c - shared dictionaries (store/shdict.h): every operation
 * and its errors, expiry on an injected clock, LRU eviction and forcible,
 * memory accounting, resize, the registry, and threads hammering one
 * dictionary (run under ThreadSanitizer by scripts/test). */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>

#include "store/shdict.h"
#include "test.h"

#define S(x) x, sizeof x - 1
#define SEC 1000000LL

static struct shdict_val str(const char *s)
{
    return (struct shdict_val){.type = SHDICT_STR, .str = s, .len = strlen(s)};
}

static struct shdict_val num(double n)
{
    return (struct shdict_val){.type = SHDICT_NUM, .num = n};
}

static int set(struct shdict *d, const char *k, struct shdict_val v,
               int64_t ttl, unsigned mode, int64_t now, bool *forcible)
{
    return shdict_store(d, k, strlen(k), &v, ttl, mode, now, forcible);
}

/* the string under k, or NULL (into b) */
static const char *get_str(struct shdict *d, const char *k, int64_t now,
                           struct buf *b)
{
    struct shdict_val v;
    if (shdict_get(d, k, strlen(k), now, false, &v, b, NULL) < 0 ||
        v.type != SHDICT_STR || buf_append(b, "", 1) < 0)
        return NULL;
    return b->data;
}

static bool has(struct shdict *d, const char *k, int64_t now)
{
    struct buf b = {0};
    struct shdict_val v;
    int rc = shdict_get(d, k, strlen(k), now, false, &v, &b, NULL);
    buf_free(&b);
    return rc == 0;
}

static void test_types(void)
{
    struct shdict *d = shdict_new("t", 1 << 20);
    REQUIRE(d);
    struct buf b = {0};
    struct shdict_val v;
    CHECK_EQ(set(d, "s", str("hello"), 0, 0, 1, NULL), 0);
    CHECK(get_str(d, "s", 1, &b) && strcmp(b.data, "hello") == 0);
    /* binary-safe strings, the empty string */
    struct shdict_val bin = {.type = SHDICT_STR, .str = "a\0b", .len = 3};
    CHECK_EQ(shdict_store(d, S("bin"), &bin, 0, 0, 1, NULL), 0);
    CHECK_EQ(shdict_get(d, S("bin"), 1, false, &v, &b, NULL), 0);
    CHECK(v.type == SHDICT_STR && v.len == 3 && memcmp(v.str, "a\0b", 3) == 0);
    CHECK_EQ(set(d, "e", str(""), 0, 0, 1, NULL), 0);
    CHECK_EQ(shdict_get(d, S("e"), 1, false, &v, &b, NULL), 0);
    CHECK(v.type == SHDICT_STR && v.len == 0);
    /* numbers are doubles; booleans; flags */
    struct shdict_val n = num(-2.5);
    n.flags = 7;
    CHECK_EQ(shdict_store(d, S("n"), &n, 0, 0, 1, NULL), 0);
    CHECK_EQ(shdict_get(d, S("n"), 1, false, &v, &b, NULL), 0);
    CHECK(v.type == SHDICT_NUM && v.num == -2.5 && v.flags == 7);
    struct shdict_val t = {.type = SHDICT_BOOL, .num = 1};
    CHECK_EQ(shdict_store(d, S("b"), &t, 0, 0, 1, NULL), 0);
    CHECK_EQ(shdict_get(d, S("b"), 1, false, &v, &b, NULL), 0);
    CHECK(v.type == SHDICT_BOOL && v.num == 1 && v.flags == 0);
    /* a value of another type replaces, in place or not */
    CHECK_EQ(set(d, "n", str("now a string"), 0, 0, 1, NULL), 0);
    CHECK(get_str(d, "n", 1, &b) && strcmp(b.data, "now a string") == 0);
    CHECK_EQ(set(d, "s", str("hellO"), 0, 0, 1, NULL), 0); /* same length */
    CHECK(get_str(d, "s", 1, &b) && strcmp(b.data, "hellO") == 0);
    /* nil deletes */
    struct shdict_val nil = {.type = SHDICT_NIL};
    CHECK_EQ(shdict_store(d, S("s"), &nil, 0, 0, 1, NULL), 0);
    CHECK_EQ(shdict_get(d, S("s"), 1, false, &v, &b, NULL), -ENOENT);
    CHECK_EQ(shdict_delete(d, S("b")), 0);
    CHECK_EQ(shdict_delete(d, S("b")), -ENOENT);
    CHECK(!has(d, "b", 1));
    /* the longest key */
    static char big[SHDICT_KEY_MAX];
    memset(big, 'k', sizeof big);
    CHECK_EQ(shdict_store(d, big, sizeof big, &n, 0, 0, 1, NULL), 0);
    CHECK_EQ(shdict_get(d, big, sizeof big, 1, false, &v, &b, NULL), 0);
    buf_free(&b);
    shdict_free(d);
}

static void test_modes(void)
{
    struct shdict *d = shdict_new("m", 1 << 20);
    REQUIRE(d);
    struct buf b = {0};
    CHECK_EQ(set(d, "k", str("1"), 0, SHDICT_REPLACE, 1, NULL), -ENOENT);
    CHECK_EQ(set(d, "k", str("1"), 0, SHDICT_ADD, 1, NULL), 0);
    CHECK_EQ(set(d, "k", str("2"), 0, SHDICT_ADD, 1, NULL), -EEXIST);
    CHECK_EQ(set(d, "k", str("2"), 0, SHDICT_ADD | SHDICT_SAFE, 1, NULL), -EEXIST);
    CHECK(get_str(d, "k", 1, &b) && strcmp(b.data, "1") == 0);
    CHECK_EQ(set(d, "k", str("3"), 0, SHDICT_REPLACE, 1, NULL), 0);
    CHECK(get_str(d, "k", 1, &b) && strcmp(b.data, "3") == 0);
    /* an expired entry counts as absent for add and replace */
    CHECK_EQ(set(d, "x", str("old"), 1 * SEC, 0, 1, NULL), 0);
    CHECK_EQ(set(d, "x", str("r"), 0, SHDICT_REPLACE, 1 + SEC, NULL), -ENOENT);
    CHECK_EQ(set(d, "x", str("new"), 0, SHDICT_ADD, 1 + SEC, NULL), 0);
    CHECK(get_str(d, "x", 1 + SEC, &b) && strcmp(b.data, "new") == 0);
    buf_free(&b);
    shdict_free(d);
}

static void test_expiry(void)
{
    struct shdict *d = shdict_new("x", 1 << 20);
    REQUIRE(d);
    struct buf b = {0};
    struct shdict_val v;
    int64_t t0 = 1000 * SEC, ttl;
    CHECK_EQ(set(d, "k", str("v"), 2 * SEC, 0, t0, NULL), 0);
    CHECK_EQ(shdict_ttl(d, S("k"), t0 + SEC / 2, &ttl), 0);
    CHECK_EQ(ttl, 3 * SEC / 2);
    CHECK(has(d, "k", t0 + 2 * SEC - 1));
    CHECK(!has(d, "k", t0 + 2 * SEC));
    CHECK_EQ(shdict_ttl(d, S("k"), t0 + 2 * SEC, &ttl), -ENOENT);
    /* stale reads see it until it is removed */
    bool old = false;
    CHECK_EQ(shdict_get(d, S("k"), t0 + 3 * SEC, true, &v, &b, &old), 0);
    CHECK(old && v.type == SHDICT_STR && v.len == 1);
    CHECK_EQ(shdict_get(d, S("k"), t0, true, &v, &b, &old), 0);
    CHECK(!old);
    /* expire: longer, shorter, never; not on an expired key */
    CHECK_EQ(shdict_expire(d, S("k"), 10 * SEC, t0 + SEC), 0);
    CHECK(has(d, "k", t0 + 10 * SEC));
    CHECK_EQ(shdict_expire(d, S("k"), 0, t0 + SEC), 0);
    CHECK_EQ(shdict_ttl(d, S("k"), t0 + 99 * SEC, &ttl), 0);
    CHECK_EQ(ttl, 0);
    CHECK_EQ(shdict_expire(d, S("nope"), SEC, t0), -ENOENT);
    CHECK_EQ(shdict_expire(d, S("k"), SEC, t0), 0);
    CHECK_EQ(shdict_expire(d, S("k"), SEC, t0 + 2 * SEC), -ENOENT);
    /* a set without a time clears the old expiry */
    CHECK_EQ(set(d, "k", str("w"), 0, 0, t0, NULL), 0);
    CHECK(has(d, "k", t0 + 1000 * SEC));
    /* flush_expired, flush_all */
    for (int i = 0; i < 10; i++) {
        char k[16];
        snprintf(k, sizeof k, "e%d", i);
        CHECK_EQ(set(d, k, num(i), SEC, 0, t0, NULL), 0);
    }
    struct shdict_stats st;
    shdict_stats(d, &st);
    CHECK_EQ(st.entries, 11);
    CHECK_EQ(shdict_flush_expired(d, t0 + SEC, 3), 3);
    CHECK_EQ(shdict_flush_expired(d, t0 + SEC, 0), 7);
    CHECK_EQ(shdict_flush_expired(d, t0 + SEC, 0), 0);
    shdict_stats(d, &st);
    CHECK_EQ(st.entries, 1);
    CHECK_EQ(st.used, shdict_entry_cost(1, 1));
    shdict_flush_all(d);
    shdict_stats(d, &st);
    CHECK(st.entries == 0 && st.used == 0);
    CHECK(!has(d, "k", t0));
    CHECK_EQ(set(d, "k", str("again"), 0, 0, t0, NULL), 0);
    CHECK(has(d, "k", t0));
    buf_free(&b);
    shdict_free(d);
}

static void test_incr(void)
{
    struct shdict *d = shdict_new("i", 1 << 20);
    REQUIRE(d);
    double out = 0, init = 10;
    bool forcible = true;
    CHECK_EQ(shdict_incr(d, S("c"), 1, NULL, 0, 1, &out, NULL), -ENOENT);
    CHECK_EQ(shdict_incr(d, S("c"), 1, &init, 0, 1, &out, &forcible), 0);
    CHECK(out == 11 && !forcible);
    CHECK_EQ(shdict_incr(d, S("c"), -0.5, &init, 0, 1, &out, NULL), 0);
    CHECK(out == 10.5); /* init only for a missing key */
    CHECK_EQ(set(d, "s", str("12"), 0, 0, 1, NULL), 0);
    CHECK_EQ(shdict_incr(d, S("s"), 1, &init, 0, 1, &out, NULL), -EINVAL);
    /* an existing counter keeps its expiry; init_ttl for a new one */
    int64_t ttl;
    CHECK_EQ(shdict_incr(d, S("t"), 1, &init, 5 * SEC, 1, &out, NULL), 0);
    CHECK_EQ(shdict_incr(d, S("t"), 1, &init, 0, 1 + SEC, &out, NULL), 0);
    CHECK(out == 12);
    CHECK_EQ(shdict_ttl(d, S("t"), 1 + SEC, &ttl), 0);
    CHECK_EQ(ttl, 4 * SEC);
    /* an expired counter starts again from init */
    CHECK_EQ(shdict_incr(d, S("t"), 1, NULL, 0, 1 + 5 * SEC, &out, NULL), -ENOENT);
    CHECK_EQ(shdict_incr(d, S("t"), 1, &init, 0, 1 + 5 * SEC, &out, NULL), 0);
    CHECK(out == 11);
    shdict_free(d);
}

/* a dictionary holding exactly n entries of a 2-byte key and 8-byte value */
static void test_lru(void)
{
    size_t one = shdict_entry_cost(2, 8);
    struct shdict *d = shdict_new("l", 4 * one);
    REQUIRE(d);
    struct buf b = {0};
    bool forcible = true;
    const char *keys[] = {"k0", "k1", "k2", "k3", "k4", "k5"};
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(set(d, keys[i], str("12345678"), 0, 0, 1, &forcible), 0);
        CHECK(!forcible);
    }
    struct shdict_stats st;
    shdict_stats(d, &st);
    CHECK(st.used == 4 * one && st.entries == 4 && st.capacity == 4 * one);
    /* k0 used again: k1 is the least recently used and goes */
    CHECK(has(d, "k0", 1));
    CHECK_EQ(set(d, "k4", str("12345678"), 0, 0, 1, &forcible), 0);
    CHECK(forcible);
    CHECK(!has(d, "k1", 1));
    CHECK(has(d, "k0", 1) && has(d, "k2", 1) && has(d, "k3", 1) && has(d, "k4", 1));
    /* safe_set and safe_add never evict a live entry */
    CHECK_EQ(set(d, "k5", str("12345678"), 0, SHDICT_SAFE, 1, &forcible), -ENOMEM);
    CHECK_EQ(set(d, "k5", str("12345678"), 0, SHDICT_SAFE | SHDICT_ADD, 1, &forcible),
             -ENOMEM);
    CHECK(!forcible);
    /* ... but take an expired entry's room, wherever it is */
    CHECK_EQ(shdict_expire(d, S("k3"), SEC, 1), 0);
    CHECK_EQ(set(d, "k5", str("12345678"), 0, SHDICT_SAFE, 1 + SEC, &forcible), 0);
    CHECK(!forcible);
    CHECK(has(d, "k0", 2 * SEC) && has(d, "k5", 2 * SEC));
    /* evicting an expired entry is not forcible */
    CHECK_EQ(shdict_expire(d, S("k0"), SEC, 1), 0);
    CHECK(has(d, "k2", 1)); /* k0 the least recently used now */
    CHECK(has(d, "k4", 1));
    CHECK(has(d, "k5", 1));
    CHECK_EQ(set(d, "k1", str("12345678"), 0, 0, 1 + SEC, &forcible), 0);
    CHECK(!forcible);
    /* a larger value for a key evicts others, never itself */
    CHECK_EQ(set(d, "k1", str("123456781234567812345678"), 0, 0, 2, &forcible), 0);
    CHECK(forcible);
    CHECK(has(d, "k1", 2));
    shdict_stats(d, &st);
    CHECK(st.used <= st.capacity);
    CHECK_EQ(st.used, shdict_entry_cost(2, 24) + (st.entries - 1) * one);
    /* an entry larger than the whole dictionary: no memory, nothing lost */
    static char huge[1024];
    memset(huge, 'h', sizeof huge - 1);
    huge[sizeof huge - 1] = 0;
    size_t before = st.entries;
    CHECK_EQ(set(d, "k1", str(huge), 0, 0, 2, &forcible), -ENOMEM);
    shdict_stats(d, &st);
    CHECK_EQ(st.entries, before);
    CHECK(has(d, "k1", 2));
    /* keys: most recently used first, live only, max */
    b.len = 0;
    CHECK_EQ(shdict_keys(d, 2, 0, &b), (long)st.entries);
    uint16_t kl;
    memcpy(&kl, b.data, sizeof kl);
    CHECK(kl == 2 && memcmp(b.data + 2, "k1", 2) == 0);
    b.len = 0;
    CHECK_EQ(shdict_keys(d, 2, 1, &b), 1);
    /* shrinking evicts the least recently used */
    shdict_resize(d, one + 10);
    shdict_stats(d, &st);
    CHECK_EQ(st.entries, 0); /* k1 is larger than one entry */
    shdict_resize(d, 10 * one);
    CHECK_EQ(set(d, "k1", str("12345678"), 0, 0, 2, NULL), 0);
    CHECK_EQ(set(d, "k2", str("12345678"), 0, 0, 2, NULL), 0);
    shdict_resize(d, one);
    CHECK(has(d, "k2", 2) && !has(d, "k1", 2));
    buf_free(&b);
    shdict_free(d);
}

static void test_many(void)
{
    struct shdict *d = shdict_new("g", 64 << 20);
    REQUIRE(d);
    enum { N = 50000 };
    char k[32];
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "key-%d", i);
        CHECK_EQ(set(d, k, num(i), 0, 0, 1, NULL), 0);
    }
    struct buf b = {0};
    struct shdict_val v;
    int bad = 0;
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "key-%d", i);
        if (shdict_get(d, k, strlen(k), 1, false, &v, &b, NULL) != 0 || v.num != i)
            bad++;
    }
    CHECK_EQ(bad, 0);
    for (int i = 0; i < N; i += 2) {
        snprintf(k, sizeof k, "key-%d", i);
        CHECK_EQ(shdict_delete(d, k, strlen(k)), 0);
    }
    struct shdict_stats st;
    shdict_stats(d, &st);
    CHECK_EQ(st.entries, N / 2);
    buf_free(&b);
    shdict_free(d);
}

static void test_registry(void)
{
    char err[128];
    struct shdict *a = shdict_bind("reg", 1 << 20, err, sizeof err);
    REQUIRE(a);
    CHECK_EQ(set(a, "k", str("v"), 0, 0, 1, NULL), 0);
    struct shdict *again = shdict_bind("reg", 1 << 20, err, sizeof err);
    CHECK(again == a && has(again, "k", 1));
    struct shdict *bigger = shdict_bind("reg", 2 << 20, err, sizeof err);
    CHECK(bigger == a && has(a, "k", 1));
    struct shdict_stats st;
    shdict_stats(a, &st);
    CHECK_EQ(st.capacity, 2 << 20);
    struct shdict *other = shdict_bind("other", 1 << 20, err, sizeof err);
    CHECK(other && other != a && !has(other, "k", 1));
    CHECK(shdict_bind("", 1 << 20, err, sizeof err) == NULL);
    static char longname[SHDICT_NAME_MAX + 1];
    memset(longname, 'n', SHDICT_NAME_MAX);
    CHECK(shdict_bind(longname, 1 << 20, err, sizeof err) == NULL);
    shdict_free_all();
    /* made afresh after a free_all */
    struct shdict *fresh = shdict_bind("reg", 1 << 20, err, sizeof err);
    CHECK(fresh && !has(fresh, "k", 1));
    shdict_free_all();
}

/* ==== threads ==== */

enum { THREADS = 4, ROUNDS = 100000 };
static struct shdict *hd;

static void *hammer_incr(void *arg)
{
    double init = 0, out;
    for (int i = 0; i < ROUNDS; i++)
        if (shdict_incr(hd, S("n"), 1, &init, 0, 1, &out, NULL) != 0)
            return arg; /* a failure: reported by join */
    return NULL;
}

/* sets, gets, deletes and evictions of strings on shared keys: values
 * must come back whole (each one is a byte repeated) */
static void *hammer_mixed(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    struct buf b = {0};
    char val[200], k[16];
    void *bad = NULL;
    for (int i = 0; i < ROUNDS / 4; i++) {
        snprintf(k, sizeof k, "m%d", (int)((i * 7 + id) % 64));
        size_t len = 1 + (size_t)(i * 13 + id) % sizeof val;
        memset(val, 'a' + (int)(i % 26), len);
        struct shdict_val v = {.type = SHDICT_STR, .str = val, .len = len};
        shdict_store(hd, k, strlen(k), &v, i % 3 ? 0 : 1, 0, 1 + i % 5, NULL);
        struct shdict_val out;
        if (shdict_get(hd, k, strlen(k), 2, true, &out, &b, NULL) == 0) {
            for (size_t j = 1; j < out.len; j++)
                if (out.str[j] != out.str[0])
                    bad = arg;
        }
        if (i % 17 == 0)
            shdict_delete(hd, k, strlen(k));
    }
    buf_free(&b);
    return bad;
}

static void test_threads(void)
{
    hd = shdict_new("h", 8 * 1024); /* small: evictions all along */
    REQUIRE(hd);
    pthread_t t[2 * THREADS];
    for (uintptr_t i = 0; i < THREADS; i++) {
        CHECK(pthread_create(&t[i], NULL, hammer_incr, (void *)(i + 1)) == 0);
        CHECK(pthread_create(&t[THREADS + i], NULL, hammer_mixed,
                             (void *)(i + 1)) == 0);
    }
    for (int i = 0; i < 2 * THREADS; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        CHECK(ret == NULL);
    }
    /* the counter is the most recently used entry the incr threads touch:
     * it may be evicted by the mixed threads, so count differently */
    shdict_free(hd);

    hd = shdict_new("h", 1 << 20);
    REQUIRE(hd);
    for (uintptr_t i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, hammer_incr, (void *)(i + 1)) == 0);
    for (int i = 0; i < THREADS; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        CHECK(ret == NULL);
    }
    struct buf b = {0};
    struct shdict_val v;
    CHECK_EQ(shdict_get(hd, S("n"), 1, false, &v, &b, NULL), 0);
    CHECK_EQ((long long)v.num, (long long)THREADS * ROUNDS);
    buf_free(&b);
    shdict_free(hd);
}

int main(void)
{
    test_watchdog(120);
    TEST(test_types);
    TEST(test_modes);
    TEST(test_expiry);
    TEST(test_incr);
    TEST(test_lru);
    TEST(test_many);
    TEST(test_registry);
    TEST(test_threads);
    return test_report();
}
