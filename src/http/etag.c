/* etag.c - entity tags and the lists of If-Match / If-None-Match
 * (RFC 9110 §8.8.3, §13.1.1, §13.1.2). */
#include <string.h>

#include "http/etag.h"

static bool is_ows(char ch) { return ch == ' ' || ch == '\t'; }

/* etagc = %x21 / %x23-7E / obs-text */
static bool is_etagc(unsigned char ch)
{
    return ch == 0x21 || (ch >= 0x23 && ch != 0x7f);
}

/* One entity-tag at p[*i..n): advances *i past it; -1 when there is none
 * (nothing consumed that the caller relies on). */
static int tag_at(const char *p, size_t n, size_t *i, struct etag *t)
{
    size_t k = *i;
    t->weak = false;
    if (n - k >= 2 && p[k] == 'W' && p[k + 1] == '/') {
        t->weak = true;
        k += 2;
    }
    if (k >= n || p[k] != '"')
        return -1;
    size_t start = k++;
    while (k < n && is_etagc((unsigned char)p[k]))
        k++;
    if (k >= n || p[k] != '"')
        return -1;
    k++;
    t->tag = p + start;
    t->len = k - start;
    *i = k;
    return 0;
}

int etag_parse(const char *p, size_t n, struct etag *t)
{
    size_t i = 0;
    while (i < n && is_ows(p[i]))
        i++;
    if (tag_at(p, n, &i, t) < 0)
        return -1;
    while (i < n && is_ows(p[i]))
        i++;
    return i == n ? 0 : -1;
}

bool etag_weak_eq(const struct etag *a, const struct etag *b)
{
    return a->len == b->len && memcmp(a->tag, b->tag, a->len) == 0;
}

bool etag_strong_eq(const struct etag *a, const struct etag *b)
{
    return !a->weak && !b->weak && etag_weak_eq(a, b);
}

enum etag_match etag_list_match(const char *p, size_t n,
                                const struct etag *cur, bool strong)
{
    size_t i = 0;
    while (i < n && is_ows(p[i]))
        i++;
    if (i < n && p[i] == '*') { /* "*" alone */
        i++;
        while (i < n && is_ows(p[i]))
            i++;
        return i == n ? ETAG_MATCH : ETAG_INVALID;
    }
    bool match = false, any = false;
    for (;;) {
        /* empty elements: ", ," (§5.6.1) */
        while (i < n && (is_ows(p[i]) || p[i] == ','))
            i++;
        if (i == n)
            break;
        struct etag t;
        if (tag_at(p, n, &i, &t) < 0)
            return ETAG_INVALID;
        any = true;
        if (cur && (strong ? etag_strong_eq(&t, cur) : etag_weak_eq(&t, cur)))
            match = true;
        while (i < n && is_ows(p[i]))
            i++;
        if (i < n && p[i] != ',')
            return ETAG_INVALID; /* two tags without a comma, or junk */
    }
    if (!any)
        return ETAG_INVALID;
    return match ? ETAG_MATCH : ETAG_NONE;
}
