/* cc.h - what a response's header fields say about storing it in
 * a shared cache (RFC 9111): the Cache-Control response directives
 * (§5.2.2, and RFC 5861's stale-while-revalidate and stale-if-error),
 * Expires (§5.3), Age (§5.1), Date, the validators (ETag, Last-Modified),
 * Set-Cookie and Vary: *. Pure functions over the header lines of a
 * response; no I/O, no allocation. */
#ifndef LURING_CC_H
#define LURING_CC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The greatest delta-seconds value: larger ones, and overflows, are taken
 * as 2^31 (RFC 9111 §1.2.2). */
#define DELTA_SECONDS_MAX 2147483648LL

/* One response head, as far as caching is concerned. */
struct cc_resp {
    bool no_store;        /* §5.2.2.5 */
    bool no_cache;        /* §5.2.2.4, qualified or not */
    bool is_private;      /* §5.2.2.7, qualified or not */
    bool is_public;       /* §5.2.2.9 */
    bool must_revalidate; /* §5.2.2.2 */
    bool proxy_revalidate; /* §5.2.2.8 */
    bool has_etag;        /* an ETag field is present (RFC 9110 §8.8.3) */
    bool set_cookie;      /* a Set-Cookie field is present */
    bool vary_star;       /* Vary contains "*" (RFC 9110 §12.5.5) */
    bool invalid;         /* max-age or s-maxage present but invalid, or
                           * a Cache-Control value that is not a list of
                           * directives: the response is stale (§4.2.1) */
    int64_t max_age;      /* seconds, -1: absent (first occurrence wins) */
    int64_t s_maxage;     /* seconds, -1: absent */
    int64_t expires;      /* seconds since the epoch, -1: absent; 0 (long
                           * past) when invalid, RFC 9111 §5.3 */
    int64_t date;         /* Date (RFC 9110 §6.6.1), seconds since the
                           * epoch; -1: absent or invalid */
    int64_t last_modified; /* Last-Modified (RFC 9110 §8.8.2), seconds
                            * since the epoch; -1: absent or invalid */
    int64_t swr;          /* stale-while-revalidate (RFC 5861 §3), seconds,
                           * -1: absent or invalid */
    int64_t sie;          /* stale-if-error (RFC 5861 §4), seconds, -1 */
    int64_t age;          /* Age (§5.1): seconds the response has already
                           * spent in caches upstream, 0: absent or invalid */
};

/** Parse delta-seconds (RFC 9111 §1.2.2): one or more digits, optionally
 * in double quotes (recipients accept the quoted form, §5.2). Values above
 * 2^31, however many digits, are clamped to 2^31. Returns -1 when `p[0..n)`
 * is not delta-seconds. */
int64_t cc_delta_seconds(const char *p, size_t n);

/** Read the header lines of a response, `lines` being "Name: value\r\n"
 * repeated (len bytes; names in any case). Several Cache-Control or Vary
 * lines combine; directive names are case-insensitive; unknown directives
 * are ignored. */
void cc_parse(struct cc_resp *rr, const char *lines, size_t len);

/* What a request's Cache-Control asks of a cache (RFC 9111 §5.2.1). */
enum {
    CC_REQ_NO_CACHE = 1,       /* no-cache (§5.2.1.4), or max-age=0
                                * (§5.2.1.1: nothing stored is fresh enough) */
    CC_REQ_ONLY_IF_CACHED = 2, /* only-if-cached (§5.2.1.7) */
    CC_REQ_NO_STORE = 4,       /* no-store (§5.2.1.5): no response to this
                                * request is stored */
};

/* One request's Cache-Control, read by cc_request. */
struct cc_req {
    unsigned flags;     /* CC_REQ_* */
    int64_t max_age;    /* max-age=N (§5.2.1.1): no response older than N
                         * seconds, nor a stale one unless max-stale
                         * allows; -1: absent */
    int64_t max_stale;  /* max-stale[=N] (§5.2.1.2): a response stale by
                         * at most N seconds is acceptable; 2^31 without a
                         * value (any staleness); -1: absent */
    int64_t min_fresh;  /* min-fresh=N (§5.2.1.3): only a response still
                         * fresh N seconds from now; -1: absent */
};

/** Read one request Cache-Control field value (v, n bytes) into *q and
 * return q->flags. Directive names are case-insensitive, unknown ones
 * ignored; arguments are delta-seconds, quoted or not, clamped to 2^31
 * (§1.2.2); a directive whose argument is missing (max-age, min-fresh)
 * or invalid is ignored; of several occurrences the first valid one
 * counts. A value that is not a directive list is ignored whole (flags 0,
 * every number -1). */
unsigned cc_request(const char *v, size_t n, struct cc_req *q);

/** The freshness lifetime for a shared cache in seconds (RFC 9111 §4.2.1):
 * s-maxage, else max-age, else Expires minus Date (minus `now`, seconds
 * since the epoch, when there is no valid Date; an Expires before it
 * gives 0). 0 when the response is invalid (stale); -1 when the response
 * gives none (a heuristic or the cache's default applies). */
int64_t cc_lifetime(const struct cc_resp *rr, int64_t now);

#endif
