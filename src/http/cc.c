/* cc.c - Cache-Control, Expires, Set-Cookie and Vary of a response
 * head, for a shared cache (see cc.h). */
#define _GNU_SOURCE
#include "http/cc.h"
#include "http/date.h"
#include "http/fields.h"

#include <string.h>
#include <strings.h>
#include <time.h>


static bool is_ows(char ch) { return ch == ' ' || ch == '\t'; }

static bool same(const char *p, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

int64_t cc_delta_seconds(const char *p, size_t n)
{
    if (n >= 2 && p[0] == '"' && p[n - 1] == '"') {
        p++;
        n -= 2;
    }
    if (n == 0)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        if (v < DELTA_SECONDS_MAX)
            v = v * 10 + (p[i] - '0');
    }
    return v < DELTA_SECONDS_MAX ? v : DELTA_SECONDS_MAX;
}

/* An HTTP-date in any of its three formats (RFC 9110 §5.6.7) as seconds
 * since the epoch, or `bad` when invalid. Times before 1970 read as 0.
 * The clock is read only to place an RFC 850 date's two-digit year. */
static int64_t parse_date(const char *p, size_t n, int64_t bad)
{
    int64_t t = http_date_parse(p, n, (int64_t)time(NULL));
    if (t == INT64_MIN)
        return bad;
    return t > 0 ? t : 0;
}

/* A directive's argument: token or quoted-string; [*v, *v + *vn). Returns
 * where it ends, or NULL when it is neither (an unclosed quote, no token). */
static const char *directive_arg(const char *p, const char *end,
                                 const char **v, size_t *vn)
{
    *v = p;
    if (p < end && *p == '"') {
        const char *q = p + 1;
        while (q < end && *q != '"')
            q += (*q == '\\' && q + 1 < end) ? 2 : 1;
        if (q >= end)
            return NULL; /* unclosed */
        q++; /* the closing quote */
        *vn = (size_t)(q - p);
        return q;
    }
    while (p < end && field_is_tchar((unsigned char)*p))
        p++;
    *vn = (size_t)(p - *v);
    return *vn ? p : NULL;
}

static void set_delta(struct cc_resp *rr, int64_t *dst, bool has_arg,
                      const char *v, size_t vn)
{
    if (*dst >= 0)
        return; /* first occurrence wins (§4.2.1) */
    int64_t d = has_arg ? cc_delta_seconds(v, vn) : -1;
    if (d < 0)
        rr->invalid = true;
    else
        *dst = d;
}

/* One directive of a Cache-Control value: `name` (nn bytes), with its
 * argument [v, v + vn) when has_arg (a token, or a quoted-string with its
 * quotes). */
struct cc_dir {
    const char *name, *v;
    size_t nn, vn;
    bool has_arg;
};

/* The next directive of the list [*pp, end) (RFC 9111 §5.2: `name`,
 * `name=token` or `name="quoted"`, separated by commas): true with *d
 * set and *pp past it; false at the end of the list, or with *bad set
 * when the value does not follow that grammar (junk between directives,
 * an unclosed quote, a name that is not a token). */
static bool next_directive(const char **pp, const char *end,
                           struct cc_dir *d, bool *bad)
{
    const char *p = *pp;
    while (p < end && (*p == ',' || is_ows(*p)))
        p++;
    if (p == end)
        return false;
    d->name = p;
    while (p < end && field_is_tchar((unsigned char)*p))
        p++;
    d->nn = (size_t)(p - d->name);
    while (p < end && is_ows(*p))
        p++;
    d->v = NULL;
    d->vn = 0;
    d->has_arg = p < end && *p == '=';
    if (d->has_arg) {
        p++;
        while (p < end && is_ows(*p))
            p++;
        p = directive_arg(p, end, &d->v, &d->vn);
        if (p == NULL) {
            *bad = true;
            return false;
        }
        while (p < end && is_ows(*p))
            p++;
    }
    if (d->nn == 0 || (p < end && *p != ',')) {
        *bad = true; /* not a directive list */
        return false;
    }
    *pp = p;
    return true;
}

/* One Cache-Control field value of a response. A value that is not a
 * list of directives (next_directive) can't be trusted to say what it
 * means: the response is then stale (rr->invalid), never shared. */
static void parse_cache_control(struct cc_resp *rr, const char *p,
                                const char *end)
{
    struct cc_dir d;
    bool bad = false;
    while (next_directive(&p, end, &d, &bad)) {
        const char *name = d.name, *v = d.v;
        size_t nn = d.nn, vn = d.vn;
        bool has_arg = d.has_arg;
        if (same(name, nn, "no-store"))
            rr->no_store = true;
        else if (same(name, nn, "no-cache"))
            rr->no_cache = true;
        else if (same(name, nn, "private"))
            rr->is_private = true;
        else if (same(name, nn, "public"))
            rr->is_public = true;
        else if (same(name, nn, "must-revalidate"))
            rr->must_revalidate = true;
        else if (same(name, nn, "proxy-revalidate"))
            rr->proxy_revalidate = true;
        else if (same(name, nn, "stale-while-revalidate") && rr->swr < 0)
            rr->swr = has_arg ? cc_delta_seconds(v, vn) : -1;
        else if (same(name, nn, "stale-if-error") && rr->sie < 0)
            rr->sie = has_arg ? cc_delta_seconds(v, vn) : -1;
        else if (same(name, nn, "max-age"))
            set_delta(rr, &rr->max_age, has_arg, v, vn);
        else if (same(name, nn, "s-maxage"))
            set_delta(rr, &rr->s_maxage, has_arg, v, vn);
    }
    if (bad)
        rr->invalid = true;
}

/* Vary: a list of field names, or "*" (RFC 9110 §12.5.5). */
static bool has_star(const char *p, const char *end)
{
    while (p < end) {
        while (p < end && (*p == ',' || is_ows(*p)))
            p++;
        const char *e = p;
        while (e < end && *e != ',' && !is_ows(*e))
            e++;
        if (e - p == 1 && *p == '*')
            return true;
        p = e;
    }
    return false;
}

void cc_parse(struct cc_resp *rr, const char *lines, size_t len)
{
    memset(rr, 0, sizeof *rr);
    rr->max_age = rr->s_maxage = rr->expires = -1;
    rr->date = rr->last_modified = rr->swr = rr->sie = -1;
    size_t i = 0;
    struct field_line f;
    while (field_line_next(lines, len, &i, &f)) {
        /* a line without a colon has no name, and matches none */
        const char *p = f.name, *v = f.value, *ve = f.value + f.vlen;
        size_t nn = f.nlen;
        if (same(p, nn, "cache-control"))
            parse_cache_control(rr, v, ve);
        else if (same(p, nn, "expires") && rr->expires < 0)
            rr->expires = parse_date(v, (size_t)(ve - v), 0);
        else if (same(p, nn, "date") && rr->date < 0)
            rr->date = parse_date(v, (size_t)(ve - v), -1);
        else if (same(p, nn, "last-modified") && rr->last_modified < 0)
            rr->last_modified = parse_date(v, (size_t)(ve - v), -1);
        else if (same(p, nn, "etag"))
            rr->has_etag = true;
        else if (same(p, nn, "age") && rr->age == 0 &&
                 (rr->age = cc_delta_seconds(v, (size_t)(ve - v))) < 0)
            rr->age = 0; /* invalid: ignored (RFC 9111 §5.1) */
        else if (same(p, nn, "set-cookie"))
            rr->set_cookie = true;
        else if (same(p, nn, "vary") && has_star(v, ve))
            rr->vary_star = true;
    }
}

int64_t cc_lifetime(const struct cc_resp *rr, int64_t now)
{
    if (rr->invalid)
        return 0;
    if (rr->s_maxage >= 0)
        return rr->s_maxage;
    if (rr->max_age >= 0)
        return rr->max_age;
    if (rr->expires >= 0) {
        int64_t base = rr->date >= 0 ? rr->date : now;
        int64_t life = rr->expires > base ? rr->expires - base : 0;
        return life < DELTA_SECONDS_MAX ? life : DELTA_SECONDS_MAX;
    }
    return -1;
}

/* A request directive's delta-seconds argument (§1.2.2: clamped to 2^31)
 * into *dst unless an earlier occurrence set it; one without a valid
 * argument is ignored (`any`: taken as 2^31 when it has no argument at
 * all, max-stale's "any staleness", §5.2.1.2). */
static void req_delta(int64_t *dst, const struct cc_dir *d, bool any)
{
    if (*dst >= 0)
        return; /* the first valid occurrence wins */
    if (!d->has_arg)
        *dst = any ? DELTA_SECONDS_MAX : -1;
    else
        *dst = cc_delta_seconds(d->v, d->vn);
}

unsigned cc_request(const char *v, size_t n, struct cc_req *q)
{
    q->flags = 0;
    q->max_age = q->max_stale = q->min_fresh = -1;
    const char *p = v, *end = v + n;
    struct cc_dir d;
    bool bad = false;
    unsigned f = 0;
    while (next_directive(&p, end, &d, &bad)) {
        if (same(d.name, d.nn, "no-cache"))
            f |= CC_REQ_NO_CACHE;
        else if (same(d.name, d.nn, "only-if-cached"))
            f |= CC_REQ_ONLY_IF_CACHED;
        else if (same(d.name, d.nn, "no-store"))
            f |= CC_REQ_NO_STORE;
        else if (same(d.name, d.nn, "max-age"))
            req_delta(&q->max_age, &d, false);
        else if (same(d.name, d.nn, "max-stale"))
            req_delta(&q->max_stale, &d, true);
        else if (same(d.name, d.nn, "min-fresh"))
            req_delta(&q->min_fresh, &d, false);
    }
    if (bad) { /* not a directive list: nothing it says is taken */
        q->max_age = q->max_stale = q->min_fresh = -1;
        return 0;
    }
    if (q->max_age == 0)
        f |= CC_REQ_NO_CACHE; /* nothing stored is fresh enough */
    q->flags = f;
    return f;
}
