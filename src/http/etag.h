/* etag.h - entity tags (RFC 9110 §8.8.3): the grammar, the strong and weak
 * comparisons (§8.8.3.2), and the lists of If-Match (§13.1.1) and
 * If-None-Match (§13.1.2), `*` included. Pure functions over field values;
 * no allocation. */
#ifndef LURING_ETAG_H
#define LURING_ETAG_H

#include <stdbool.h>
#include <stddef.h>

/* One entity-tag: its opaque-tag (quotes included) inside some buffer. */
struct etag {
    const char *tag; /* the opaque-tag, DQUOTE *etagc DQUOTE */
    size_t len;      /* its length, quotes included (>= 2) */
    bool weak;       /* it had the "W/" prefix (case-sensitive, §8.8.3) */
};

/** Parse a whole ETag field value p[0..n) (RFC 9110 §8.8.3):
 * entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E /
 * obs-text, with optional spaces and tabs around it. Returns 0 and fills
 * *t (pointing into p), or -1 when p is not one entity-tag. */
int etag_parse(const char *p, size_t n, struct etag *t);

/** Strong comparison (§8.8.3.2): both strong and the opaque-tags equal
 * octet for octet. */
bool etag_strong_eq(const struct etag *a, const struct etag *b);
/** Weak comparison (§8.8.3.2): the opaque-tags equal, W/ ignored. */
bool etag_weak_eq(const struct etag *a, const struct etag *b);

enum etag_match {
    ETAG_INVALID = -1, /* the value is neither `*` nor a list of tags */
    ETAG_NONE = 0,     /* a valid list, no member matches */
    ETAG_MATCH = 1,    /* `*` (with a current representation), or a member
                        * that matches */
};

/** Match the value p[0..n) of an If-Match or If-None-Match field line
 * against the stored representation's tag `cur` (NULL: it has none):
 * `*` matches any current representation (it exists: the caller only asks
 * for stored 2xx responses, §13.1.1); otherwise a #entity-tag list
 * (RFC 9110 §5.6.1: empty elements and spaces around commas allowed, at
 * least one tag), compared strongly (`strong`, If-Match) or weakly
 * (If-None-Match). A list that does not parse to its end is ETAG_INVALID,
 * even when an earlier member matched. */
enum etag_match etag_list_match(const char *p, size_t n,
                                const struct etag *cur, bool strong);

#endif
