/* test_range.c - range.c: Range: bytes=... (RFC 9110 §14.1.2) evaluated
 * against a known length: first/last, open-ended, suffix, clamping,
 * unsatisfiable (§15.5.17), ignored forms (§14.2), coalescing (§14.6). */
#include "test.h"

#include "http/range.h"

static struct range out[RANGE_MAX];

static int ev(const char *s, int64_t len)
{
    memset(out, 0xee, sizeof out);
    return range_eval(s, strlen(s), len, out);
}

#define R(i, f, l) (out[i].first == (f) && out[i].last == (l))

static void test_single(void)
{
    CHECK_EQ(ev("bytes=0-499", 10000), 1);
    CHECK(R(0, 0, 499));
    CHECK_EQ(ev("bytes=500-999", 10000), 1);
    CHECK(R(0, 500, 999));
    CHECK_EQ(ev("bytes=9500-", 10000), 1);     /* open-ended */
    CHECK(R(0, 9500, 9999));
    CHECK_EQ(ev("bytes=-500", 10000), 1);      /* suffix */
    CHECK(R(0, 9500, 9999));
    CHECK_EQ(ev("bytes=-20000", 10000), 1);    /* longer suffix: all */
    CHECK(R(0, 0, 9999));
    CHECK_EQ(ev("bytes=0-0", 1), 1);
    CHECK(R(0, 0, 0));
    CHECK_EQ(ev("bytes=5-100000", 10), 1);     /* last-pos clamped */
    CHECK(R(0, 5, 9));
    CHECK_EQ(ev("BYTES=1-2", 10), 1);          /* unit case-insensitive */
    CHECK_EQ(ev(" bytes=1-2 ", 10), 1);
    /* 20-digit numbers saturate */
    CHECK_EQ(ev("bytes=0-99999999999999999999", 10), 1);
    CHECK(R(0, 0, 9));
    CHECK_EQ(ev("bytes=-99999999999999999999", 10), 1);
    CHECK(R(0, 0, 9));
    CHECK_EQ(ev("bytes=99999999999999999999-", 10), RANGE_UNSATISFIABLE);
}

static void test_unsatisfiable(void)
{
    CHECK_EQ(ev("bytes=10-20", 10), RANGE_UNSATISFIABLE);
    CHECK_EQ(ev("bytes=10-", 10), RANGE_UNSATISFIABLE);
    CHECK_EQ(ev("bytes=-0", 10), RANGE_UNSATISFIABLE);
    CHECK_EQ(ev("bytes=10-11,-0,20-", 10), RANGE_UNSATISFIABLE);
    /* one satisfiable spec is enough */
    CHECK_EQ(ev("bytes=10-11,3-4", 10), 1);
    CHECK(R(0, 3, 4));
}

static void test_ignored(void)
{
    CHECK_EQ(ev("items=0-1", 10), RANGE_IGNORE);    /* other unit */
    CHECK_EQ(ev("bytes 0-1", 10), RANGE_IGNORE);
    CHECK_EQ(ev("bytes=", 10), RANGE_IGNORE);
    CHECK_EQ(ev("bytes=,", 10), RANGE_IGNORE);
    CHECK_EQ(ev("bytes=5-4", 10), RANGE_IGNORE);    /* invalid int-range */
    CHECK_EQ(ev("bytes=a-b", 10), RANGE_IGNORE);
    CHECK_EQ(ev("bytes=1-2-3", 10), RANGE_IGNORE);
    CHECK_EQ(ev("bytes=--1", 10), RANGE_IGNORE);
    CHECK_EQ(ev("bytes=-", 10), RANGE_IGNORE);
    CHECK_EQ(ev("bytes=+1-2", 10), RANGE_IGNORE);
    CHECK_EQ(ev("bytes=1 -2", 10), RANGE_IGNORE);
    CHECK_EQ(ev("bytes = 1-2", 10), RANGE_IGNORE);
    CHECK_EQ(ev("=1-2", 10), RANGE_IGNORE);
    CHECK_EQ(ev("", 10), RANGE_IGNORE);
    CHECK_EQ(ev("bytes=0-1", 0), RANGE_IGNORE);     /* empty representation */
    CHECK_EQ(ev("bytes=-1", 0), RANGE_IGNORE);
    /* RANGE_MAX specs are served, one more is ignored */
    CHECK_EQ(ev("bytes=0-0,2-2,4-4,6-6,8-8,10-10,12-12,14-14,16-16,18-18,"
                "20-20,22-22,24-24,26-26,28-28,30-30", 100), 16);
    CHECK_EQ(ev("bytes=0-0,2-2,4-4,6-6,8-8,10-10,12-12,14-14,16-16,18-18,"
                "20-20,22-22,24-24,26-26,28-28,30-30,32-32", 100),
             RANGE_IGNORE);
}

static void test_multiple(void)
{
    CHECK_EQ(ev("bytes=0-9, 20-29 ,, -5", 100), 3); /* order kept */
    CHECK(R(0, 0, 9) && R(1, 20, 29) && R(2, 95, 99));
    CHECK_EQ(ev("bytes=50-59,0-9", 100), 2);         /* no overlap: as asked */
    CHECK(R(0, 50, 59) && R(1, 0, 9));
    CHECK_EQ(ev("bytes=0-9,5-14", 100), 1);          /* overlap: coalesced */
    CHECK(R(0, 0, 14));
    CHECK_EQ(ev("bytes=50-59,0-9,55-70,10-12", 100), 2); /* sorted, merged */
    CHECK(R(0, 0, 12) && R(1, 50, 70));
    CHECK_EQ(ev("bytes=0-,0-,0-,-100", 100), 1);
    CHECK(R(0, 0, 99));
    CHECK_EQ(ev("bytes=0-9,200-300", 100), 1);       /* one left */
    CHECK(R(0, 0, 9));
}

/* The common "bytes=first-last" / "bytes=first-" is read on a fast path:
 * it must answer as the general reading does (a leading space keeps a
 * value off the fast path). */
static void test_fast_path_agrees(void)
{
    static const char *const v[] = {
        "bytes=0-99", "bytes=0-", "Bytes=5-3", "bytes=1000-", "bytes=999-",
        "bytes=0-0", "bytes=10-1000000", "bYtEs=3-4", "bytes=-5", "bytes=1-2,",
        "bytes=1-2 ", "bytes=x-2", "bytes=1-x", "bytes=-", "bytes=1--2",
        "bytes=123456789012345678-", "bytes=1234567890123456789-",
        "bytes=0-123456789012345678", "bytes=0-1234567890123456789",
        "bytes=0-99999999999999999999", "bytez=0-1", "bytes:0-1", "bytes=",
    };
    static const int64_t lens[] = { 0, 1, 100, 1000, INT64_C(1) << 62 };
    struct range a[RANGE_MAX], b[RANGE_MAX];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char sp[64];
        size_t n = strlen(v[i]);
        sp[0] = ' ';
        memcpy(sp + 1, v[i], n);
        for (size_t j = 0; j < sizeof lens / sizeof lens[0]; j++) {
            int k = range_eval(v[i], n, lens[j], a);
            int k2 = range_eval(sp, n + 1, lens[j], b);
            if (k != k2)
                printf("   \"%s\" on %lld bytes: %d vs %d\n", v[i],
                       (long long)lens[j], k, k2);
            CHECK_EQ(k, k2);
            if (k > 0 && k == k2)
                CHECK(memcmp(a, b, (size_t)k * sizeof a[0]) == 0);
        }
    }
    CHECK_EQ(ev("bytes=1000-", 1000), RANGE_UNSATISFIABLE);
    CHECK_EQ(ev("bytes=5-3", 1000), RANGE_IGNORE);
    CHECK_EQ(ev("bytes=0-99", 0), RANGE_IGNORE);
    CHECK_EQ(ev("bytes=0-99", 1024), 1);
    CHECK(R(0, 0, 99));
}

int main(void)
{
    test_watchdog(10);
    TEST(test_single);
    TEST(test_unsatisfiable);
    TEST(test_ignored);
    TEST(test_multiple);
    TEST(test_fast_path_agrees);
    return test_report();
}
