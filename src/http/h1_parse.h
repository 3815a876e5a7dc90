/* h1_parse.h - a strict HTTP/1.1 message parser (RFC 9112), shared by the
 * server (requests from clients) and the client (responses from origins).
 * Pure functions over bytes: no allocation, no I/O.
 *
 * A message head is parsed in two steps. h1_scan finds its end, byte by
 * byte as it arrives, and rejects a line terminator that is not CRLF (a
 * bare CR or a bare LF, RFC 9112 §2.2) before anything else looks at the
 * bytes. h1_parse_head then parses the complete head in one pass: the
 * start line, each field line (RFC 9112 §5), and the message's framing
 * (RFC 9112 §6.3): a request or response is either rejected or has exactly
 * one body length. The chunked transfer coding (RFC 9112 §7.1) is decoded
 * incrementally by h1_chunked.
 *
 * What is refused, and why: everything where two implementations could
 * disagree about where a message ends (request smuggling, response
 * splitting): whitespace before a field's colon, obs-fold, Content-Length
 * that is not 1*DIGIT or repeated, Transfer-Encoding beside
 * Content-Length, repeated, not ending in chunked or in HTTP/1.0,
 * chunk sizes that overflow or carry junk, chunk data not followed by
 * CRLF, control characters in the request target or in field values. */
#ifndef LURING_H1_PARSE_H
#define LURING_H1_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ==== finding the end of a head ==== */

/* Where h1_scan is in a head that has not ended yet. */
struct h1_scan {
    uint32_t off;     /* bytes of the head scanned so far */
    uint32_t line;    /* bytes in the current line so far */
    bool cr;          /* the last byte scanned was a CR */
    bool started;     /* a non-empty line has been seen (requests: empty
                         lines before the request line are skipped) */
};

enum h1_scan_res {
    H1S_MORE = 0, /* no end yet: call again with more bytes */
    H1S_DONE,     /* *end: the head's length, final CRLF included */
    H1S_BAD,      /* a bare CR or bare LF: not HTTP/1.1 */
};

static inline void h1_scan_init(struct h1_scan *s)
{
    s->off = s->line = 0;
    s->cr = s->started = false;
}

/** Scan p[s->off..n): p is the head from its first byte (n grows between
 * calls; the bytes before s->off must be the same ones). H1S_DONE sets
 * *end to the head's length, its final empty line included. */
enum h1_scan_res h1_scan(struct h1_scan *s, const char *p, size_t n,
                         size_t *end);

/* ==== parsing a head ==== */

/* A field line: offsets and lengths into the head. The name is a token;
 * the value has no leading or trailing whitespace (RFC 9112 §5). */
struct hdr {
    uint32_t name, nlen, val, vlen;
};

/* Methods known by number (others are H1_M_OTHER: the method is then the
 * token at method/method_len). */
enum h1_method {
    H1_M_OTHER = 0,
    H1_M_GET,
    H1_M_HEAD,
    H1_M_POST,
    H1_M_PUT,
    H1_M_DELETE,
    H1_M_CONNECT,
    H1_M_OPTIONS,
    H1_M_TRACE,
    H1_M_PATCH,
    H1_M_PURGE,
    H1_M_N
};
/** The name of a known method ("GET"...), "" for H1_M_OTHER. */
const char *h1_method_name(enum h1_method m);

enum h1_kind { H1_REQUEST, H1_RESPONSE };

/* Body length of a message (RFC 9112 §6.3). */
enum h1_body {
    H1B_NONE,    /* no body */
    H1B_LENGTH,  /* content_length bytes */
    H1B_CHUNKED, /* the chunked transfer coding */
    H1B_CLOSE,   /* responses only: until the connection closes */
};

/* The request fields a cache answers itself from a stored response (RFC
 * 9110 §13.1, §14.2; core/cond.c), noted while the head is parsed: a
 * request without any of them costs the cache nothing more, one with them
 * no second look at every field. */
enum h1_pre {
    H1P_IF_MATCH,
    H1P_IF_NONE_MATCH,
    H1P_IF_MODIFIED_SINCE,
    H1P_IF_UNMODIFIED_SINCE,
    H1P_RANGE,
    H1P_IF_RANGE,
    H1P_N
};

struct h1_head {
    /* the start line */
    uint32_t start;             /* empty lines skipped before it */
    uint8_t method;             /* requests: enum h1_method */
    uint32_t method_off, method_len;
    uint32_t target, target_len; /* requests: the request-target */
    int status;                 /* responses: 100..599 */
    uint8_t minor;              /* HTTP/1.minor: 0 or 1 (1.2-1.9 read as 1) */
    /* the field lines */
    struct hdr *fields;         /* the caller's array */
    unsigned nfields, max_fields;
    /* framing and connection, from the fields */
    enum h1_body body;
    int64_t content_length;     /* H1B_LENGTH: the length; else -1 */
    bool keep_alive;            /* the connection may carry another one */
    bool upgrade;               /* requests: Upgrade + Connection: upgrade,
                                   or CONNECT (not followed: the connection
                                   closes after the response) */
    bool expect_continue;       /* requests: Expect: 100-continue */
    bool ws_before_colon;       /* responses: a field name was followed by
                                   whitespace (removed, RFC 9112 §5.1) */
    /* requests: the fields of enum h1_pre (names compared ignoring case) */
    uint8_t pre_seen;           /* bit k: at least one line of kind k */
    uint8_t pre_many;           /* bit k: more than one line of kind k */
    uint8_t pre_first[H1P_N];   /* kind k seen: the index in fields of its
                                   first line (fields < 256: H1_MAX_HEADERS) */
};

/* h1_parse_head's errors: an HTTP status for a request (a response that
 * fails is a 502 from a proxy). */
enum {
    H1E_BAD = 400,       /* malformed */
    H1E_URI = 414,       /* the request target is longer than allowed */
    H1E_FIELDS = 431,    /* too many field lines */
    H1E_TE = 501,        /* a transfer coding other than chunked */
    H1E_VERSION = 505,   /* not HTTP/1.x */
};

/** A Host value (RFC 9110 §7.2): uri-host [ ":" port ], only the bytes
 * RFC 3986 allows there (reg-name, IP literals, pct-encoding); no
 * userinfo ("@" is not among them). Empty is accepted (HTTP/1.1 allows
 * an empty Host when the target has no authority). */
bool h1_host_ok(const char *v, size_t n);

/** Parse the complete head p[0..n) (as h1_scan found it) of a request or a
 * response into h (whose fields array the caller set). `max_target`:
 * the longest request target accepted (414). `head_request`: responses
 * only, the request was HEAD (no body whatever the fields say). 0, or an
 * error above, and *why a sentence for the log. */
int h1_parse_head(enum h1_kind kind, const char *p, size_t n, struct h1_head *h,
                  size_t max_target, bool head_request, const char **why);

/** The value of the first field named `name` (lower case, length nlen;
 * matched case-insensitively), or NULL. */
const char *h1_field(const char *head, const struct hdr *f, unsigned nf,
                     const char *name, size_t nlen, size_t *vlen);

/** Content-Length's value: 1*DIGIT, at most 2^62 (RFC 9110 §8.6).
 * -1 for anything else. */
int64_t h1_content_length(const char *v, size_t n);

/** Is `tok` (lower case) one of the comma-separated elements of a list
 * field value (case-insensitively; RFC 9110 §5.6.1)? */
bool h1_list_has(const char *v, size_t n, const char *tok, size_t tlen);

/* The field names a message's Connection fields list (RFC 9110 §7.6.1),
 * "keep-alive" and "close" left out (they name no field anyone sends):
 * for the usual Connection value the set is empty. */
struct h1_conn_names {
    struct { const char *p; uint32_t len; } tok[16];
    unsigned n;
    bool many; /* more names than tok holds */
};

/** Collect the names of the Connection fields among f[0..nf) of head. */
void h1_conn_names(struct h1_conn_names *cn, const char *head,
                   const struct hdr *f, unsigned nf);
/** Is the field named name[0..nl) one of them (case-insensitively)? */
bool h1_conn_named(const struct h1_conn_names *cn, const char *head,
                   const struct hdr *f, unsigned nf, const char *name,
                   size_t nl);

/* ==== the chunked transfer coding (RFC 9112 §7.1) ==== */

struct h1_chunked {
    uint8_t state;
    uint8_t ndigits;
    bool quoted, escaped;
    uint64_t left;        /* chunk-data bytes still to come */
    uint32_t line;        /* bytes in the current size or trailer line */
    uint32_t trailer;     /* bytes of trailer fields so far */
    uint32_t max_trailer; /* limit on the trailer section */
};

enum h1_chunk_res {
    H1C_MORE = 0, /* all input used: call again with more */
    H1C_DATA,     /* data, dlen: body bytes; call again with the rest */
    H1C_DONE,     /* the body ended (after its trailer section) */
    H1C_BAD,      /* not a valid chunked body */
};

/** Ready for a chunked body whose trailer section may hold max_trailer
 * bytes. */
void h1_chunked_init(struct h1_chunked *d, uint32_t max_trailer);
/** Decode from p[0..n): *used bytes were consumed (for H1C_DATA the data
 * is within them). Trailer fields are checked and dropped. */
enum h1_chunk_res h1_chunked_feed(struct h1_chunked *d, const char *p,
                                  size_t n, size_t *used, const char **data,
                                  size_t *dlen);

#endif
