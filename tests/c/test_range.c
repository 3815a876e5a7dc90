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

int main(void)
{
    test_watchdog(10);
    TEST(test_single);
    TEST(test_unsatisfiable);
    TEST(test_ignored);
    TEST(test_multiple);
    return test_report();
}
