/* test_date.c - http/date.c: the three HTTP-date formats a recipient
 * accepts and IMF-fixdate output (RFC 9110 §5.6.7). */
#include "test.h"

#include <stdint.h>
#include <time.h>

#include "http/date.h"

#define NOW 1798761600LL /* 2027-01-01T00:00:00Z */

static int64_t P(const char *s) { return http_date_parse(s, strlen(s), NOW); }

/* §5.6.7: the example date in each of the three formats */
static void test_formats(void)
{
    CHECK_EQ(P("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777LL);
    CHECK_EQ(P("Sunday, 06-Nov-94 08:49:37 GMT"), 784111777LL);
    CHECK_EQ(P("Sun Nov  6 08:49:37 1994"), 784111777LL);
    CHECK_EQ(P("Sun Nov 16 08:49:37 1994"), 784111777LL + 10 * 86400);
    CHECK_EQ(P(" \tSun, 06 Nov 1994 08:49:37 GMT  "), 784111777LL);
    CHECK_EQ(P("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
    CHECK_EQ(P("Wed, 31 Dec 1969 23:59:59 GMT"), -1);
    CHECK_EQ(P("Fri, 31 Dec 9999 23:59:59 GMT"), HTTP_DATE_MAX);
    CHECK_EQ(P("Mon, 01 Jan 1900 00:00:00 GMT"), HTTP_DATE_MIN);
    CHECK_EQ(P("Tue, 29 Feb 2028 12:00:00 GMT"), 1835438400LL);
    /* a leap second reads as :59 */
    CHECK_EQ(P("Sat, 31 Dec 2016 23:59:60 GMT"), 1483228799LL);
}

/* §5.6.7: a two-digit year more than 50 years ahead is in the past */
static void test_rfc850_century(void)
{
    /* now is 2027: 2070 is 43 years ahead, 2077 exactly 50, 2078 is 51 */
    CHECK_EQ(P("Thursday, 01-Jan-70 00:00:00 GMT"), P("Wed, 01 Jan 2070 00:00:00 GMT"));
    CHECK_EQ(P("Friday, 01-Jan-77 00:00:00 GMT"), P("Fri, 01 Jan 2077 00:00:00 GMT"));
    CHECK_EQ(P("Sunday, 01-Jan-78 00:00:00 GMT"), P("Sun, 01 Jan 1978 00:00:00 GMT"));
    CHECK(P("Sun, 01 Jan 1978 00:00:00 GMT") == 252460800LL);
    CHECK_EQ(P("Tuesday, 01-Jan-30 00:00:00 GMT"), 1893456000LL);
}

static void test_invalid(void)
{
    const char *bad[] = {
        "", "0", "-1", "tomorrow", "Sun, 06 Nov 1994 08:49:37",
        "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Nov 1994 08:49:37 gmt",
        "sun, 06 Nov 1994 08:49:37 GMT", "Sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT", "Sun, 29 Feb 1900 00:00:00 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT", "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 1899 08:49:37 GMT", "Sun, 06 Nov 10000 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT junk", "Sun,06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT", "Sun, 06 Nov +994 08:49:37 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT", "Sunday 06-Nov-94 08:49:37 GMT",
        "Sun Nov 6 08:49:37 1994", "Sun Nov  6 08:49:37 94",
        "Sun Nov  6 08:49:37 1994 GMT", "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT\r\nX: y",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (P(bad[i]) != INT64_MIN)
            printf("accepted: \"%s\"\n", bad[i]);
        CHECK_EQ(P(bad[i]), INT64_MIN);
    }
    /* a NUL inside: exact-length reader */
    CHECK_EQ(http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT\0", 30, NOW),
             INT64_MIN);
    CHECK_EQ(http_date_parse("Sun, 06 Nov 1994 08:49:37 GMTX", 29, NOW),
             784111777LL);
}

/* format -> parse is the identity over the whole range, and agrees with
 * gmtime */
static void test_format(void)
{
    char out[HTTP_DATE_LEN + 1];
    CHECK_EQ(http_date_format(784111777LL, out), HTTP_DATE_LEN);
    out[HTTP_DATE_LEN] = 0;
    CHECK(strcmp(out, "Sun, 06 Nov 1994 08:49:37 GMT") == 0);
    http_date_format(INT64_MAX, out);
    CHECK(strcmp(out, "Fri, 31 Dec 9999 23:59:59 GMT") == 0);
    http_date_format(INT64_MIN, out);
    CHECK(strcmp(out, "Mon, 01 Jan 1900 00:00:00 GMT") == 0);
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int64_t t = HTTP_DATE_MIN +
                    (int64_t)(x % (uint64_t)(HTTP_DATE_MAX - HTTP_DATE_MIN + 1));
        http_date_format(t, out);
        if (http_date_parse(out, HTTP_DATE_LEN, NOW) != t) {
            CHECK_EQ(http_date_parse(out, HTTP_DATE_LEN, NOW), t);
            break;
        }
        time_t tt = (time_t)t;
        struct tm tm;
        char ref[64];
        gmtime_r(&tt, &tm);
        strftime(ref, sizeof ref, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        if (memcmp(ref, out, HTTP_DATE_LEN) != 0) {
            printf("%lld: %s != %s\n", (long long)t, out, ref);
            CHECK(0);
            break;
        }
    }
}

int main(void)
{
    test_watchdog(20);
    TEST(test_formats);
    TEST(test_rfc850_century);
    TEST(test_invalid);
    TEST(test_format);
    return test_report();
}
