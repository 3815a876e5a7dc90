/* range.c - Range: bytes=... (RFC 9110 §14.1.2), normalised against a
 * known length (§14.1.1, §14.2, §14.6). */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "http/fields.h"
#include "http/range.h"

static bool is_ows(char ch) { return ch == ' ' || ch == '\t'; }
static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* 1*DIGIT at p[*i..n), saturating at RANGE_POS_MAX; -1 when no digit. */
static int64_t digits(const char *p, size_t n, size_t *i)
{
    size_t k = *i;
    int64_t v = 0;
    if (k >= n || !is_digit(p[k]))
        return -1;
    for (; k < n && is_digit(p[k]); k++)
        v = v > RANGE_POS_MAX / 10 ? RANGE_POS_MAX
                                   : v * 10 + (p[k] - '0');
    if (v > RANGE_POS_MAX)
        v = RANGE_POS_MAX;
    *i = k;
    return v;
}

static bool overlap(const struct range *a, const struct range *b)
{
    return a->first <= b->last && b->first <= a->last;
}

/* Sort (insertion: at most RANGE_MAX) and coalesce overlapping or adjacent
 * ranges; returns the new count. */
static int coalesce(struct range *r, int n)
{
    for (int i = 1; i < n; i++) {
        struct range x = r[i];
        int j = i;
        while (j > 0 && r[j - 1].first > x.first) {
            r[j] = r[j - 1];
            j--;
        }
        r[j] = x;
    }
    int k = 0;
    for (int i = 1; i < n; i++) {
        if (r[i].first <= r[k].last + 1) {
            if (r[i].last > r[k].last)
                r[k].last = r[i].last;
        } else {
            r[++k] = r[i];
        }
    }
    return k + 1;
}

/* The Range nearly every client sends: one int-range straight after
 * "bytes=" (any case), "first-last" or "first-", each at most 18 digits
 * (no saturation), nothing around it. Returns what the general reading
 * below returns for it (fuzz_range checks that they agree), or -2 when
 * p[0..n) is not of that form. */
static int one_range(const char *p, size_t n, int64_t len, struct range *out)
{
    uint32_t w, bytes;
    if (n < 8)
        return -2;
    memcpy(&w, p, 4);
    memcpy(&bytes, "byte", 4);
    if ((w | 0x20202020u) != bytes || (p[4] | 0x20) != 's' || p[5] != '=')
        return -2; /* only letters fold onto letters */
    size_t i = 6, s = i;
    int64_t f = 0, l = 0;
    while (i < n && i - s < 18 && is_digit(p[i]))
        f = f * 10 + (p[i++] - '0');
    if (i == s || i >= n || p[i] != '-')
        return -2;
    s = ++i;
    while (i < n && i - s < 18 && is_digit(p[i]))
        l = l * 10 + (p[i++] - '0');
    if (i != n)
        return -2;
    if (len <= 0)
        return RANGE_IGNORE;
    if (i == s)
        l = len - 1;
    else if (l < f)
        return RANGE_IGNORE; /* invalid int-range */
    else if (l > len - 1)
        l = len - 1;
    if (f >= len)
        return RANGE_UNSATISFIABLE;
    out[0].first = f;
    out[0].last = l;
    return 1;
}

/* Any other Range value: the grammar of range.h, step by step (out of
 * line: the fast path above does not pay for its frame). */
static __attribute__((noinline)) int
range_list(const char *p, size_t n, int64_t len, struct range *out)
{
    size_t i = 0;
    while (i < n && is_ows(p[i]))
        i++;
    while (n > i && is_ows(p[n - 1]))
        n--;
    size_t u = i;
    while (i < n && field_is_tchar((unsigned char)p[i]))
        i++;
    if (i == u || i >= n || p[i] != '=')
        return RANGE_IGNORE; /* not a ranges-specifier */
    if (i - u != 5 || strncasecmp(p + u, "bytes", 5) != 0)
        return RANGE_IGNORE; /* a unit we don't serve (§14.2) */
    i++;
    if (len <= 0)
        return RANGE_IGNORE;
    int specs = 0, nr = 0;
    for (;;) {
        while (i < n && (is_ows(p[i]) || p[i] == ','))
            i++;
        if (i == n)
            break;
        if (++specs > RANGE_MAX)
            return RANGE_IGNORE;
        struct range r;
        if (p[i] == '-') { /* suffix-range */
            i++;
            int64_t sl = digits(p, n, &i);
            if (sl < 0)
                return RANGE_IGNORE;
            if (sl == 0)
                goto next; /* unsatisfiable (§14.1.1) */
            r.first = sl >= len ? 0 : len - sl;
            r.last = len - 1;
        } else {
            int64_t f = digits(p, n, &i);
            if (f < 0 || i >= n || p[i] != '-')
                return RANGE_IGNORE;
            i++;
            int64_t l = len - 1;
            if (i < n && is_digit(p[i])) {
                l = digits(p, n, &i);
                if (l < f)
                    return RANGE_IGNORE; /* invalid int-range */
                if (l > len - 1)
                    l = len - 1;
            }
            if (f >= len)
                goto next; /* unsatisfiable */
            r.first = f;
            r.last = l;
        }
        out[nr++] = r;
    next:
        while (i < n && is_ows(p[i]))
            i++;
        if (i < n && p[i] != ',')
            return RANGE_IGNORE;
    }
    if (specs == 0)
        return RANGE_IGNORE; /* "bytes=": 1#range-spec needs one */
    for (int a = 0; a < nr; a++)
        for (int b = a + 1; b < nr; b++)
            if (overlap(&out[a], &out[b]))
                return coalesce(out, nr);
    return nr;
}

int range_eval(const char *p, size_t n, int64_t len, struct range *out)
{
    int k = one_range(p, n, len, out);
    return k != -2 ? k : range_list(p, n, len, out);
}
