/* fuzz_cc.c - the response-head readers of http/cc.c: cc_delta_seconds,
 * cc_parse (Cache-Control, Expires, Set-Cookie, Vary) and cc_lifetime on
 * arbitrary bytes. A crash or undefined behaviour is a finding, and so is
 * a broken invariant:
 *   - cc_delta_seconds agrees with a plain reference (digits, optionally
 *     quoted, clamped to 2^31);
 *   - max-age, s-maxage, stale-while-revalidate and stale-if-error in
 *     [-1, 2^31]; Expires, Date and Last-Modified -1 or a time in years
 *     1970..9999; a lifetime in [-1, 2^31] or, from Expires, at most
 *     Expires - Date (Expires - now without a Date); an invalid head is
 *     stale (0);
 *   - a field that is absent sets nothing (no "cache-control" in the
 *     input: no directive; no "vary": no Vary: *; ...);
 *   - field names and directive names are case-insensitive: the input in
 *     upper case reads the same (dates aside);
 *   - read as a request's Cache-Control (cc_request), only the CC_REQ_*
 *     flags come back, each only with its directive's name in the input;
 *     max-age, max-stale and min-fresh in [-1, 2^31], -1 without their
 *     name; max-age=0 means no-cache; all -1 and no flag when the value
 *     is not a directive list (no flag at all); the upper-case input
 *     reads the same. */
#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "http/cc.h"
#include "http/date.h"

static int64_t ref_delta_seconds(const uint8_t *p, size_t n)
{
    if (n >= 2 && p[0] == '"' && p[n - 1] == '"') {
        p++;
        n -= 2;
    }
    if (n == 0)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit(p[i]))
            return -1;
        v = v * 10 + (p[i] - '0');
        if (v > DELTA_SECONDS_MAX)
            v = DELTA_SECONDS_MAX;
    }
    return v;
}

/* Does the input contain `lit` (lower case), in any case? */
static bool has_ci(const uint8_t *p, size_t n, const char *lit)
{
    size_t k = strlen(lit);
    for (size_t i = 0; i + k <= n; i++) {
        size_t j = 0;
        while (j < k && tolower(p[i + j]) == lit[j])
            j++;
        if (j == k)
            return true;
    }
    return false;
}

/* The latest HTTP-date: 9999-12-31T23:59:59Z (http/date.h) */
#define EXPIRES_MAX HTTP_DATE_MAX

static void check_lifetime(const struct cc_resp *rr, int64_t now)
{
    int64_t life = cc_lifetime(rr, now);
    FUZZ_CHECK(life >= -1);
    if (rr->invalid) {
        FUZZ_CHECK(life == 0);
    } else if (rr->s_maxage >= 0) {
        FUZZ_CHECK(life == rr->s_maxage);
    } else if (rr->max_age >= 0) {
        FUZZ_CHECK(life == rr->max_age);
    } else if (rr->expires >= 0) {
        int64_t base = rr->date >= 0 ? rr->date : now; /* §4.2.1 */
        FUZZ_CHECK(life >= 0 && life <= (rr->expires > base ? rr->expires - base : 0));
    } else {
        FUZZ_CHECK(life == -1);
    }
    if (life >= 0 && rr->expires < 0)
        FUZZ_CHECK(life <= DELTA_SECONDS_MAX);
}

static bool same_resp(const struct cc_resp *a, const struct cc_resp *b)
{
    return a->no_store == b->no_store && a->no_cache == b->no_cache &&
           a->is_private == b->is_private && a->is_public == b->is_public &&
           a->must_revalidate == b->must_revalidate &&
           a->set_cookie == b->set_cookie && a->vary_star == b->vary_star &&
           a->invalid == b->invalid && a->max_age == b->max_age &&
           a->s_maxage == b->s_maxage;
}

static uint8_t upper[1 << 16];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* delta-seconds on the whole input (it is an exact-length reader) */
    int64_t d = cc_delta_seconds((const char *)data, size);
    FUZZ_CHECK(d == ref_delta_seconds(data, size));
    FUZZ_CHECK(d >= -1 && d <= DELTA_SECONDS_MAX);

    /* the input as a request's Cache-Control value (cc_request): only
     * its three flags, each only when its directive's name is there */
    struct cc_req cq;
    unsigned q = cc_request((const char *)data, size, &cq);
    FUZZ_CHECK(q == cq.flags);
    FUZZ_CHECK((q & ~(unsigned)(CC_REQ_NO_CACHE | CC_REQ_ONLY_IF_CACHED |
                                CC_REQ_NO_STORE)) == 0);
    if (!has_ci(data, size, "no-store"))
        FUZZ_CHECK(!(q & CC_REQ_NO_STORE));
    if (!has_ci(data, size, "only-if-cached"))
        FUZZ_CHECK(!(q & CC_REQ_ONLY_IF_CACHED));
    FUZZ_CHECK(cq.max_age >= -1 && cq.max_age <= DELTA_SECONDS_MAX);
    FUZZ_CHECK(cq.max_stale >= -1 && cq.max_stale <= DELTA_SECONDS_MAX);
    FUZZ_CHECK(cq.min_fresh >= -1 && cq.min_fresh <= DELTA_SECONDS_MAX);
    if (!has_ci(data, size, "max-age"))
        FUZZ_CHECK(cq.max_age == -1);
    if (!has_ci(data, size, "max-stale"))
        FUZZ_CHECK(cq.max_stale == -1);
    if (!has_ci(data, size, "min-fresh"))
        FUZZ_CHECK(cq.min_fresh == -1);
    if (cq.max_age == 0)
        FUZZ_CHECK(q & CC_REQ_NO_CACHE);
    if (!has_ci(data, size, "no-cache") && cq.max_age != 0)
        FUZZ_CHECK(!(q & CC_REQ_NO_CACHE));
    if (size <= sizeof upper) { /* names are case-insensitive */
        for (size_t i = 0; i < size; i++)
            upper[i] = (uint8_t)toupper(data[i]);
        struct cc_req cu;
        unsigned qu = cc_request((const char *)upper, size, &cu);
        FUZZ_CHECK(qu == q && cu.max_age == cq.max_age &&
                   cu.max_stale == cq.max_stale &&
                   cu.min_fresh == cq.min_fresh);
    }

    /* the input as the header lines of a response */
    struct cc_resp rr;
    cc_parse(&rr, (const char *)data, size);
    FUZZ_CHECK(rr.max_age >= -1 && rr.max_age <= DELTA_SECONDS_MAX);
    FUZZ_CHECK(rr.s_maxage >= -1 && rr.s_maxage <= DELTA_SECONDS_MAX);
    FUZZ_CHECK(rr.expires >= -1 && rr.expires <= EXPIRES_MAX);
    FUZZ_CHECK(rr.date >= -1 && rr.date <= EXPIRES_MAX);
    FUZZ_CHECK(rr.last_modified >= -1 && rr.last_modified <= EXPIRES_MAX);
    FUZZ_CHECK(rr.swr >= -1 && rr.swr <= DELTA_SECONDS_MAX);
    FUZZ_CHECK(rr.sie >= -1 && rr.sie <= DELTA_SECONDS_MAX);
    if (!has_ci(data, size, "cache-control")) {
        FUZZ_CHECK(!rr.no_store && !rr.no_cache && !rr.is_private &&
                   !rr.is_public && !rr.must_revalidate && !rr.invalid);
        FUZZ_CHECK(rr.max_age == -1 && rr.s_maxage == -1);
    }
    if (!has_ci(data, size, "max-age"))
        FUZZ_CHECK(rr.max_age == -1);
    if (!has_ci(data, size, "s-maxage"))
        FUZZ_CHECK(rr.s_maxage == -1);
    if (!has_ci(data, size, "expires"))
        FUZZ_CHECK(rr.expires == -1);
    if (!has_ci(data, size, "set-cookie"))
        FUZZ_CHECK(!rr.set_cookie);
    if (!has_ci(data, size, "vary") || !memchr(data, '*', size))
        FUZZ_CHECK(!rr.vary_star);

    check_lifetime(&rr, 0);
    check_lifetime(&rr, 1700000000);           /* 2023 */
    check_lifetime(&rr, 4102444800LL);         /* 2100 */
    check_lifetime(&rr, EXPIRES_MAX);

    /* case-insensitive names: the input in upper case reads the same
     * (dates aside: HTTP-date is case-sensitive, RFC 9110 §5.6.7) */
    if (size <= sizeof upper) {
        for (size_t i = 0; i < size; i++)
            upper[i] = (uint8_t)toupper(data[i]);
        struct cc_resp ru;
        cc_parse(&ru, (const char *)upper, size);
        FUZZ_CHECK(same_resp(&rr, &ru));
    }
    return 0;
}
