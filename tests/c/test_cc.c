/* test_rules.c - cc.c: Cache-Control response directives (RFC 9111
 * §5.2.2), delta-seconds (§1.2.2), Expires (§5.3), the freshness lifetime
 * for a shared cache (§4.2.1), Set-Cookie and Vary: *. */
#include "test.h"

#include <stdint.h>

#include "http/cc.h"

static struct cc_resp parse(const char *lines)
{
    struct cc_resp rr;
    cc_parse(&rr, lines, strlen(lines));
    return rr;
}

/* §1.2.2: digits only; quoted form accepted (§5.2); overflow -> 2^31 */
static void test_delta_seconds(void)
{
    CHECK_EQ(cc_delta_seconds("0", 1), 0);
    CHECK_EQ(cc_delta_seconds("600", 3), 600);
    CHECK_EQ(cc_delta_seconds("\"600\"", 5), 600);
    CHECK_EQ(cc_delta_seconds("2147483647", 10), 2147483647LL);
    CHECK_EQ(cc_delta_seconds("2147483648", 10), DELTA_SECONDS_MAX);
    CHECK_EQ(cc_delta_seconds("9223372036854776", 16), DELTA_SECONDS_MAX);
    CHECK_EQ(cc_delta_seconds("99999999999999999999999999999999999999", 38),
             DELTA_SECONDS_MAX);
    CHECK_EQ(cc_delta_seconds("", 0), -1);
    CHECK_EQ(cc_delta_seconds("\"\"", 2), -1);
    CHECK_EQ(cc_delta_seconds("-1", 2), -1);
    CHECK_EQ(cc_delta_seconds("+5", 2), -1);
    CHECK_EQ(cc_delta_seconds("5s", 2), -1);
    CHECK_EQ(cc_delta_seconds("1.5", 3), -1);
    CHECK_EQ(cc_delta_seconds("\"5", 2), -1);
}

static void test_cache_control(void)
{
    struct cc_resp rr = parse("Cache-Control: max-age=60\r\n");
    CHECK_EQ(rr.max_age, 60);
    CHECK_EQ(rr.s_maxage, -1);
    CHECK(!rr.no_store && !rr.no_cache && !rr.is_private && !rr.is_public);
    CHECK_EQ(cc_lifetime(&rr, 0), 60);

    /* several lines combine; names case-insensitive; s-maxage wins */
    rr = parse("cache-control: s-maxage=600\r\nCACHE-CONTROL: Max-Age=0\r\n");
    CHECK_EQ(rr.s_maxage, 600);
    CHECK_EQ(rr.max_age, 0);
    CHECK_EQ(cc_lifetime(&rr, 0), 600);

    rr = parse("Cache-Control: public, max-age=\"600\", must-revalidate\r\n");
    CHECK(rr.is_public && rr.must_revalidate);
    CHECK_EQ(rr.max_age, 600);

    rr = parse("Cache-Control: no-store,no-cache ,  private\r\n");
    CHECK(rr.no_store && rr.no_cache && rr.is_private);

    /* qualified forms count as the plain directive */
    rr = parse("Cache-Control: private=\"Set-Cookie, X-A\", no-cache=\"X-B\"\r\n");
    CHECK(rr.is_private && rr.no_cache);

    /* a quoted argument that contains a comma and a directive name */
    rr = parse("Cache-Control: ext=\"a, private, no-store\", max-age=5\r\n");
    CHECK(!rr.is_private && !rr.no_store);
    CHECK_EQ(rr.max_age, 5);

    /* names that merely contain a directive are other directives */
    rr = parse("Cache-Control: xprivate, no-storey, max-agex=5\r\n");
    CHECK(!rr.is_private && !rr.no_store);
    CHECK_EQ(rr.max_age, -1);
    CHECK_EQ(cc_lifetime(&rr, 0), -1);

    /* overflow clamps, never wraps (a UBSan abort before) */
    rr = parse("Cache-Control: max-age=9223372036854776\r\n");
    CHECK_EQ(rr.max_age, DELTA_SECONDS_MAX);
    CHECK_EQ(cc_lifetime(&rr, 0), DELTA_SECONDS_MAX);

    /* the first occurrence of a directive wins */
    rr = parse("Cache-Control: max-age=10, max-age=99\r\n");
    CHECK_EQ(rr.max_age, 10);

    /* whitespace around '=' and ',' */
    rr = parse("Cache-Control: max-age = 7 , no-store\r\n");
    CHECK_EQ(rr.max_age, 7);
    CHECK(rr.no_store);
    CHECK(!rr.invalid);

    /* invalid values make the response stale (§4.2.1); so does a value
     * that is not a directive list: it can't be trusted, so a "private" or
     * "no-store" it hides never lets the response be shared */
    const char *invalid[] = {
        "Cache-Control: max-age=abc\r\n",
        "Cache-Control: max-age=-5\r\n",
        "Cache-Control: max-age\r\n",
        "Cache-Control: max-age=\r\n",
        "Cache-Control: s-maxage=1e3, max-age=60\r\n",
        "Cache-Control: max-age=60 private\r\n",
        "Cache-Control: max-age=60 no-store\r\n",
        "Cache-Control: public no-store, max-age=60\r\n",
        "Cache-Control: max-age=60, x=\"unterminated, private\r\n",
        "Cache-Control: max-age=60, private;\r\n",
        "Cache-Control: max-age=60, =5\r\n",
        "Cache-Control: max-age=60, x=\r\n",
        "Cache-Control: max-age=60, x=\"a\"b\r\n",
        "Cache-Control: max-age=60, pri\x01vate\r\n",
    };
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        rr = parse(invalid[i]);
        if (!rr.invalid)
            printf("not invalid: %s", invalid[i]);
        CHECK(rr.invalid);
        CHECK_EQ(cc_lifetime(&rr, 0), 0);
    }
    /* unknown extension directives with token or quoted arguments are fine */
    rr = parse("Cache-Control: max-age=60, stale-while-revalidate=30, "
               "community=\"UCI\", immutable\r\n");
    CHECK(!rr.invalid);
    CHECK_EQ(cc_lifetime(&rr, 0), 60);

    /* lines without CR, a last line without an end, empty values */
    rr = parse("Cache-Control:\nCache-Control: , ,\nCache-Control: private");
    CHECK(rr.is_private);
}

static void test_expires(void)
{
    /* 2030-01-01T00:00:00Z = 1893456000 */
    struct cc_resp rr = parse("Expires: Tue, 01 Jan 2030 00:00:00 GMT\r\n");
    CHECK_EQ(rr.expires, 1893456000LL);
    CHECK_EQ(cc_lifetime(&rr, 1893456000LL - 90), 90);
    CHECK_EQ(cc_lifetime(&rr, 1893456000LL + 5), 0);
    /* max-age wins over Expires (§5.3) */
    rr = parse("Expires: Tue, 01 Jan 2030 00:00:00 GMT\r\nCache-Control: max-age=3\r\n");
    CHECK_EQ(cc_lifetime(&rr, 0), 3);
    /* invalid dates, "0" in particular, are in the past (§5.3) */
    const char *past[] = {"Expires: 0\r\n", "Expires: tomorrow\r\n",
                          "Expires: Tue, 01 Jan 2030 00:00:00 GMT junk\r\n",
                          "Expires:\r\n"};
    for (size_t i = 0; i < sizeof past / sizeof past[0]; i++) {
        rr = parse(past[i]);
        CHECK_EQ(cc_lifetime(&rr, 1000), 0);
    }
    /* a NUL ends the string strptime sees, not the value: what follows
     * it still makes the date invalid */
    static const char nul[] = "Expires: Tue, 01 Jan 2030 00:00:00 GMT\0junk\r\n";
    cc_parse(&rr, nul, sizeof nul - 1);
    CHECK_EQ(rr.expires, 0);
    CHECK_EQ(cc_lifetime(&rr, 1000), 0);
    /* the three formats of RFC 9110 §5.6.7 */
    rr = parse("Expires: Tuesday, 01-Jan-30 00:00:00 GMT\r\n");
    CHECK_EQ(rr.expires, 1893456000LL);
    rr = parse("Expires: Tue Jan  1 00:00:00 2030\r\n");
    CHECK_EQ(rr.expires, 1893456000LL);
    /* Expires - Date, not Expires - now (RFC 9111 §4.2.1): the origin's
     * clock decides */
    rr = parse("Date: Tue, 01 Jan 2030 00:00:00 GMT\r\n"
               "Expires: Tue, 01 Jan 2030 00:10:00 GMT\r\n");
    CHECK_EQ(rr.date, 1893456000LL);
    CHECK_EQ(cc_lifetime(&rr, 5), 600);
    rr = parse("Date: Tue, 01 Jan 2030 00:10:00 GMT\r\n"
               "Expires: Tue, 01 Jan 2030 00:00:00 GMT\r\n");
    CHECK_EQ(cc_lifetime(&rr, 5), 0);
    /* nothing about freshness: the cache's default applies */
    rr = parse("Content-Type: text/plain\r\n");
    CHECK_EQ(cc_lifetime(&rr, 1000), -1);
}

/* stale-while-revalidate, stale-if-error (RFC 5861), proxy-revalidate
 * (RFC 9111 §5.2.2.8), validators and Date */
static void test_stale_and_validators(void)
{
    struct cc_resp rr = parse("Cache-Control: max-age=1, stale-while-revalidate=30,"
                              " stale-if-error=\"600\", proxy-revalidate\r\n");
    CHECK_EQ(rr.swr, 30);
    CHECK_EQ(rr.sie, 600);
    CHECK(rr.proxy_revalidate && !rr.must_revalidate);
    CHECK(!rr.invalid);
    rr = parse("Cache-Control: stale-while-revalidate=x, stale-if-error\r\n");
    CHECK_EQ(rr.swr, -1);
    CHECK_EQ(rr.sie, -1);
    CHECK(!rr.invalid); /* RFC 5861: an invalid value is ignored */
    rr = parse("Content-Type: text/plain\r\n");
    CHECK(rr.swr == -1 && rr.sie == -1 && rr.date == -1 &&
          rr.last_modified == -1 && !rr.has_etag);
    rr = parse("ETag: \"x\"\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
               "Date: garbage\r\n");
    CHECK(rr.has_etag);
    CHECK_EQ(rr.last_modified, 784111777LL);
    CHECK_EQ(rr.date, -1);
}

static void test_cookie_and_vary(void)
{
    struct cc_resp rr = parse("Set-Cookie: sid=1\r\n");
    CHECK(rr.set_cookie);
    rr = parse("set-cookie: sid=1\r\nSET-COOKIE: b=2\r\n");
    CHECK(rr.set_cookie);
    rr = parse("Set-Cookie2: x\r\nX-Set-Cookie: y\r\n");
    CHECK(!rr.set_cookie);
    rr = parse("Vary: *\r\n");
    CHECK(rr.vary_star);
    rr = parse("Vary: Accept-Encoding\r\nvary: Accept ,* \r\n");
    CHECK(rr.vary_star);
    rr = parse("Vary: Accept-Encoding, User-Agent\r\n");
    CHECK(!rr.vary_star);
    rr = parse("Vary: X-*\r\n");
    CHECK(!rr.vary_star);
}

static unsigned req(const char *s, struct cc_req *q)
{
    return cc_request(s, strlen(s), q);
}

static void test_request(void)
{
    struct cc_req q;
#define REQ(s) req(s, &q)
    CHECK_EQ(REQ("no-cache"), CC_REQ_NO_CACHE);
    CHECK_EQ(REQ("max-age=0"), CC_REQ_NO_CACHE);
    CHECK_EQ(q.max_age, 0);
    CHECK_EQ(REQ("Max-Age=\"0\""), CC_REQ_NO_CACHE);
    CHECK_EQ(REQ("max-age=5"), 0);
    CHECK_EQ(q.max_age, 5);
    CHECK(q.max_stale == -1 && q.min_fresh == -1);
    CHECK_EQ(REQ("only-if-cached, max-stale=10"), CC_REQ_ONLY_IF_CACHED);
    CHECK_EQ(q.max_stale, 10);
    CHECK_EQ(REQ("no-cache, only-if-cached"), CC_REQ_NO_CACHE | CC_REQ_ONLY_IF_CACHED);
    CHECK_EQ(REQ("no-cache junk"), 0); /* not a directive list: ignored */
    CHECK(q.max_age == -1 && q.max_stale == -1 && q.min_fresh == -1);
    CHECK_EQ(REQ("max-stale=5, min-fresh=3 junk"), 0);
    CHECK(q.max_stale == -1 && q.min_fresh == -1);
    CHECK_EQ(REQ("max-age=x"), 0);
    CHECK_EQ(q.max_age, -1);
    CHECK_EQ(REQ("no-cache, max-age=x"), CC_REQ_NO_CACHE); /* only it ignored */
    CHECK_EQ(REQ(""), 0);
    /* max-stale (§5.2.1.2): without a value any staleness (2^31) */
    REQ("max-stale");
    CHECK_EQ(q.max_stale, DELTA_SECONDS_MAX);
    REQ("MAX-STALE = \"30\"");
    CHECK_EQ(q.max_stale, 30);
    REQ("max-stale=abc");
    CHECK_EQ(q.max_stale, -1); /* invalid: ignored, not "any" */
    REQ("max-stale=-1");
    CHECK_EQ(q.max_stale, -1);
    /* §1.2.2: too large, however many digits, is 2^31 */
    REQ("max-stale=99999999999999999999999999, min-fresh=2147483649, max-age=4294967296");
    CHECK_EQ(q.max_stale, DELTA_SECONDS_MAX);
    CHECK_EQ(q.min_fresh, DELTA_SECONDS_MAX);
    CHECK_EQ(q.max_age, DELTA_SECONDS_MAX);
    /* min-fresh (§5.2.1.3) needs its value */
    REQ("min-fresh=7");
    CHECK_EQ(q.min_fresh, 7);
    REQ("min-fresh");
    CHECK_EQ(q.min_fresh, -1);
    REQ("max-age");
    CHECK_EQ(q.max_age, -1);
    /* the first valid occurrence counts */
    REQ("max-age=9, max-age=0");
    CHECK_EQ(q.max_age, 9);
    CHECK_EQ(q.flags, 0u);
    REQ("min-fresh=x, min-fresh=4, min-fresh=8");
    CHECK_EQ(q.min_fresh, 4);
    REQ("max-stale=3, max-stale");
    CHECK_EQ(q.max_stale, 3);
#undef REQ
}

int main(void)
{
    test_watchdog(10);
    TEST(test_delta_seconds);
    TEST(test_cache_control);
    TEST(test_expires);
    TEST(test_stale_and_validators);
    TEST(test_cookie_and_vary);
    TEST(test_request);
    return test_report();
}
