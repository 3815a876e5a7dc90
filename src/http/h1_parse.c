/* h1_parse.c - a strict HTTP/1.1 message parser (see h1_parse.h). */
#define _GNU_SOURCE /* memrchr */
#include "http/h1_parse.h"
#include "http/fields.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define CL_MAX (1LL << 62)     /* the largest Content-Length or chunk size */
#define CHUNK_LINE_MAX 4096    /* a chunk-size line with its extensions */

/* ==== character classes ==== */

/* field-vchar, SP and HTAB (RFC 9110 §5.5): what a field value may hold. */
static inline bool is_value_char(unsigned char ch)
{
    return ch >= 0x20 ? ch != 0x7f : ch == '\t';
}

/* A request-target byte: visible ASCII (RFC 9112 §3.2; RFC 3986 has no
 * room for CTLs, SP or bytes >= 0x80). */
static inline bool is_target_char(unsigned char ch)
{
    return ch > 0x20 && ch < 0x7f;
}

static inline bool is_ows(unsigned char ch) { return ch == ' ' || ch == '\t'; }

/* Eight bytes at a time (SWAR): a field value is scanned a word at a time
 * while no byte of the word can end or spoil it, then byte by byte. */
#define ONES  0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

static inline uint64_t load8(const char *p)
{
    uint64_t x;
    memcpy(&x, p, 8); /* unaligned; one load */
    return x;
}

/* The bytes of x below 0x20 or 0x7f, flagged by their high bit (bytes
 * >= 0x80 are neither); 0 when there are none. (The classic "has a byte
 * less than n" and "has a zero byte" tests: exact about whether there is
 * one, and about the first one in memory order, though a borrow may flag
 * bytes after it.) A word without such a byte is all field-vchar and SP:
 * value bytes; from the first one on (the CR, a HTAB, a control)
 * is_value_char decides. */
static inline uint64_t ctl_or_del(uint64_t x)
{
    uint64_t y = x ^ (ONES * 0x7f);
    return (((x - ONES * 0x20) & ~x) | ((y - ONES) & ~y)) & HIGHS;
}

/* Index of the first flagged byte of a non-zero ctl_or_del() mask. */
static inline size_t first_flagged(uint64_t m)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (size_t)__builtin_ctzll(m) / 8;
#else
    (void)m;
    return 0; /* the byte loop finds it */
#endif
}

static inline int hex_val(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch |= 0x20;
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* ==== finding the end of a head ==== */

/* The index of the first CR or LF in p[i..n), or n. Sixteen bytes at a
 * time with SSE2 (both bytes in one pass: two memchr per line cost about
 * twice as much), else eight (SWAR: the first flagged byte is exact, see
 * ctl_or_del), then byte by byte. */
static inline size_t cr_or_lf(const char *p, size_t i, size_t n)
{
#ifdef __SSE2__
    const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
    for (; i + 16 <= n; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
        unsigned m = (unsigned)_mm_movemask_epi8(
            _mm_or_si128(_mm_cmpeq_epi8(x, cr), _mm_cmpeq_epi8(x, lf)));
        if (m)
            return i + (size_t)__builtin_ctz(m);
    }
#else
    for (; i + 8 <= n; i += 8) {
        uint64_t x = load8(p + i);
        uint64_t a = x ^ (ONES * '\r'), b = x ^ (ONES * '\n');
        uint64_t m = (((a - ONES) & ~a) | ((b - ONES) & ~b)) & HIGHS;
        if (m) {
            i += first_flagged(m);
            break;
        }
    }
#endif
    while (i < n && p[i] != '\r' && p[i] != '\n')
        i++;
    return i;
}

enum h1_scan_res h1_scan(struct h1_scan *s, const char *p, size_t n,
                         size_t *end)
{
    size_t i = s->off;
    enum h1_scan_res res = H1S_MORE;
    while (i < n) {
        if (!s->cr) {
            /* up to the next CR or LF; an LF first is a bare LF */
            size_t stop = cr_or_lf(p, i, n);
            s->line += (uint32_t)(stop - i);
            i = stop;
            if (i == n)
                break;
            if (p[i] == '\n') {
                res = H1S_BAD;
                break;
            }
            s->cr = true;
            if (++i == n)
                break;
        }
        if (p[i++] != '\n') {
            res = H1S_BAD; /* a bare CR */
            break;
        }
        s->cr = false;
        if (s->line == 0 && s->started) {
            *end = i;
            res = H1S_DONE;
            break;
        }
        if (s->line)
            s->started = true;
        s->line = 0;
    }
    s->off = (uint32_t)i;
    return res;
}

/* ==== values ==== */

int64_t h1_content_length(const char *v, size_t n)
{
    if (n == 0)
        return -1;
    int64_t len = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned char)v[i] - '0';
        if (d > 9)
            return -1;
        if (len > (CL_MAX - d) / 10)
            return -1; /* checked before the arithmetic: no overflow */
        len = len * 10 + d;
    }
    return len;
}

/* Next element of a comma-separated list (RFC 9110 §5.6.1) from *pos:
 * its bytes without OWS (may be empty). false at the end. */
static bool list_next(const char *v, size_t n, size_t *pos, const char **e,
                      size_t *elen)
{
    size_t i = *pos;
    if (i > n)
        return false;
    while (i < n && is_ows((unsigned char)v[i]))
        i++;
    size_t start = i;
    while (i < n && v[i] != ',')
        i++;
    size_t stop = i;
    while (stop > start && is_ows((unsigned char)v[stop - 1]))
        stop--;
    *e = v + start;
    *elen = stop - start;
    *pos = i + 1; /* past the comma; > n after the last element */
    return true;
}

bool h1_list_has(const char *v, size_t n, const char *tok, size_t tlen)
{
    size_t pos = 0;
    const char *e;
    size_t elen;
    while (list_next(v, n, &pos, &e, &elen))
        if (field_name_is(e, elen, tok, tlen))
            return true;
    return false;
}

void h1_conn_names(struct h1_conn_names *cn, const char *head,
                   const struct hdr *f, unsigned nf)
{
    cn->n = 0;
    cn->many = false;
    for (unsigned i = 0; i < nf; i++) {
        if (!field_name_is(head + f[i].name, f[i].nlen, "connection", 10))
            continue;
        size_t pos = 0;
        const char *e;
        size_t elen;
        while (list_next(head + f[i].val, f[i].vlen, &pos, &e, &elen)) {
            if (elen == 0 || field_name_is(e, elen, "keep-alive", 10) ||
                field_name_is(e, elen, "close", 5))
                continue;
            if (cn->n == sizeof cn->tok / sizeof cn->tok[0]) {
                cn->many = true;
                continue;
            }
            cn->tok[cn->n].p = e;
            cn->tok[cn->n++].len = (uint32_t)elen;
        }
    }
}

bool h1_conn_named(const struct h1_conn_names *cn, const char *head,
                   const struct hdr *f, unsigned nf, const char *name,
                   size_t nl)
{
    for (unsigned k = 0; k < cn->n; k++)
        if (field_name_is(cn->tok[k].p, cn->tok[k].len, name, nl))
            return true;
    if (!cn->many)
        return false;
    for (unsigned i = 0; i < nf; i++) /* rare: look in every list */
        if (field_name_is(head + f[i].name, f[i].nlen, "connection", 10) &&
            h1_list_has(head + f[i].val, f[i].vlen, name, nl))
            return true;
    return false;
}

/* Transfer-Encoding (RFC 9112 §6.1): 1 when the codings are exactly
 * "chunked"; 0 when chunked is the last of several (unsupported codings
 * first: 501); -1 when chunked is not last, repeated, or an element is
 * not a token. */
static int te_value(const char *v, size_t n)
{
    size_t pos = 0, count = 0;
    const char *e;
    size_t elen;
    bool last_chunked = false;
    unsigned chunked = 0;
    while (list_next(v, n, &pos, &e, &elen)) {
        if (!field_is_token(e, elen))
            return -1; /* empty elements and parameters included */
        count++;
        last_chunked = field_name_is(e, elen, "chunked", 7);
        chunked += last_chunked;
    }
    if (!last_chunked || chunked != 1)
        return -1;
    return count == 1 ? 1 : 0;
}

bool h1_host_ok(const char *v, size_t n)
{
    /* ALPHA / DIGIT / "-._~!$&'()*+,;=:[]%", by byte value (a strchr
     * per "." or ":" of "127.0.0.1:8080" cost more than the rest) */
    static const unsigned char ok[256] = {
        ['!'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['('] = 1,
        [')'] = 1, ['*'] = 1, ['+'] = 1, [','] = 1, ['-'] = 1, ['.'] = 1,
        ['0' ... '9'] = 1, [':'] = 1, [';'] = 1, ['='] = 1, ['A' ... 'Z'] = 1,
        ['['] = 1, [']'] = 1, ['_'] = 1, ['a' ... 'z'] = 1, ['~'] = 1,
    };
    for (size_t i = 0; i < n; i++)
        if (!ok[(unsigned char)v[i]])
            return false;
    return true;
}

/* ==== methods ==== */

static const char *const method_names[H1_M_N] = {
    [H1_M_OTHER] = "",      [H1_M_GET] = "GET",     [H1_M_HEAD] = "HEAD",
    [H1_M_POST] = "POST",   [H1_M_PUT] = "PUT",     [H1_M_DELETE] = "DELETE",
    [H1_M_CONNECT] = "CONNECT", [H1_M_OPTIONS] = "OPTIONS",
    [H1_M_TRACE] = "TRACE", [H1_M_PATCH] = "PATCH", [H1_M_PURGE] = "PURGE",
};

const char *h1_method_name(enum h1_method m)
{
    return (unsigned)m < H1_M_N ? method_names[m] : "";
}

/* Methods are case-sensitive (RFC 9110 §9.1). */
static uint8_t method_of(const char *p, size_t n)
{
    if (n == 3 && memcmp(p, "GET", 3) == 0)
        return H1_M_GET;
    for (unsigned m = H1_M_HEAD; m < H1_M_N; m++)
        if (strlen(method_names[m]) == n && memcmp(p, method_names[m], n) == 0)
            return (uint8_t)m;
    return H1_M_OTHER;
}

/* ==== parsing a head ==== */

/* A request's last field line so far is of kind k (enum h1_pre). */
static inline void pre_note(struct h1_head *h, unsigned k)
{
    unsigned bit = 1u << k, i = h->nfields - 1;
    if (h->pre_seen & bit) {
        h->pre_many |= (uint8_t)bit;
    } else if (i < 256) { /* always: H1_MAX_HEADERS */
        h->pre_seen |= (uint8_t)bit;
        h->pre_first[k] = (uint8_t)i;
    }
}

#define FAIL(code, sentence) \
    do {                     \
        *why = sentence;     \
        return code;         \
    } while (0)

/* "HTTP/1.1" at p (8 bytes available): 0 and h->minor, or an error. */
static int parse_version(const char *p, struct h1_head *h, const char **why)
{
    if (memcmp(p, "HTTP/", 5) != 0 || p[6] != '.' ||
        (unsigned char)(p[5] - '0') > 9 || (unsigned char)(p[7] - '0') > 9)
        FAIL(H1E_BAD, "malformed HTTP version");
    if (p[5] != '1')
        FAIL(H1E_VERSION, "HTTP major version other than 1");
    /* HTTP/1.2-1.9: read as the highest minor we have (RFC 9110 §2.5) */
    h->minor = p[7] == '0' ? 0 : 1;
    return 0;
}

/* The request line p[0..n) (no CRLF): method SP request-target SP
 * HTTP-version (RFC 9112 §3), single spaces. */
static int request_line(const char *p, size_t n, size_t base, struct h1_head *h,
                        size_t max_target, const char **why)
{
    /* a token; of its characters only upper-case letters, "-" and "_",
     * as in every registered method (IANA) and as nginx accepts */
    size_t i = 0;
    while (i < n && ((p[i] >= 'A' && p[i] <= 'Z') || p[i] == '-' ||
                     p[i] == '_'))
        i++;
    if (i == 0 || i == n || p[i] != ' ')
        FAIL(H1E_BAD, "malformed method");
    h->method_off = (uint32_t)base;
    h->method_len = (uint32_t)i;
    h->method = method_of(p, i);
    size_t t = ++i;
    while (i < n && is_target_char((unsigned char)p[i]))
        i++;
    if (i == t)
        FAIL(H1E_BAD, "empty request target");
    if (i == n || p[i] != ' ')
        FAIL(H1E_BAD, "a control character, a byte >= 0x80 or no version "
                      "after the request target");
    if (i - t > max_target)
        FAIL(H1E_URI, "request target too long");
    h->target = (uint32_t)(base + t);
    h->target_len = (uint32_t)(i - t);
    /* the forms of RFC 9112 §3.2 */
    const char *tg = p + t;
    size_t tl = i - t;
    if (h->method == H1_M_CONNECT) {
        /* authority-form: uri-host ":" port (§3.2.3) */
        const char *colon = memrchr(tg, ':', tl);
        size_t hl = colon ? (size_t)(colon - tg) : 0, pl = tl - hl - 1;
        bool port_ok = colon && pl >= 1 && pl <= 5;
        for (size_t k = 0; port_ok && k < pl; k++)
            port_ok = isdigit((unsigned char)colon[1 + k]);
        if (!port_ok || hl == 0 || !h1_host_ok(tg, hl))
            FAIL(H1E_BAD, "CONNECT target not in authority-form");
    } else if (tg[0] != '/' && !(tl == 1 && tg[0] == '*' &&
                                 h->method == H1_M_OPTIONS)) {
        /* absolute-form: scheme "://" ... (§3.2.2; RFC 3986 §3.1) */
        size_t k = 0;
        while (k < tl && (isalpha((unsigned char)tg[k]) ||
                          (k > 0 && (isdigit((unsigned char)tg[k]) ||
                                     tg[k] == '+' || tg[k] == '-' ||
                                     tg[k] == '.'))))
            k++;
        if (k == 0 || k + 3 > tl || memcmp(tg + k, "://", 3) != 0)
            FAIL(H1E_BAD, "request target in no form of RFC 9112 3.2");
        /* an empty authority ("x://", "x:///p") names no host: rejected,
         * as RFC 9110 §4.2.1 has an http URI with an empty host */
        if (k + 3 == tl || tg[k + 3] == '/' || tg[k + 3] == '?' ||
            tg[k + 3] == '#')
            FAIL(H1E_BAD, "absolute-form target without a host");
    }
    i++;
    if (n - i != 8)
        FAIL(H1E_BAD, "malformed HTTP version");
    return parse_version(p + i, h, why);
}

/* The status line p[0..n): HTTP-version SP 3DIGIT [SP reason-phrase]
 * (RFC 9112 §4; the SP after the code is tolerated missing). */
static int status_line(const char *p, size_t n, struct h1_head *h,
                       const char **why)
{
    if (n < 12 || p[8] != ' ')
        FAIL(H1E_BAD, "malformed status line");
    int e = parse_version(p, h, why);
    if (e)
        return e;
    int st = 0;
    for (int k = 9; k < 12; k++) {
        unsigned d = (unsigned char)p[k] - '0';
        if (d > 9)
            FAIL(H1E_BAD, "malformed status code");
        st = st * 10 + (int)d;
    }
    if (st < 100 || st > 599)
        FAIL(H1E_BAD, "status code out of range");
    h->status = st;
    if (n > 12) {
        if (p[12] != ' ')
            FAIL(H1E_BAD, "malformed status line");
        for (size_t k = 13; k < n; k++)
            if (!is_value_char((unsigned char)p[k]))
                FAIL(H1E_BAD, "a control character in the reason phrase");
    }
    return 0;
}

const char *h1_field(const char *head, const struct hdr *f, unsigned nf,
                     const char *name, size_t nlen, size_t *vlen)
{
    for (unsigned i = 0; i < nf; i++)
        if (field_name_is(head + f[i].name, f[i].nlen, name, nlen)) {
            *vlen = f[i].vlen;
            return head + f[i].val;
        }
    return NULL;
}

int h1_parse_head(enum h1_kind kind, const char *p, size_t n, struct h1_head *h,
                  size_t max_target, bool head_request, const char **why)
{
    *why = NULL;
    h->nfields = 0;
    h->method = H1_M_OTHER;
    h->method_off = h->method_len = h->target = h->target_len = 0;
    h->status = 0;
    h->body = H1B_NONE;
    h->content_length = -1;
    h->keep_alive = false;
    h->upgrade = h->expect_continue = h->ws_before_colon = false;
    h->pre_seen = h->pre_many = 0;

    /* empty lines before the start line are skipped (RFC 9112 §2.2) */
    size_t i = 0;
    while (i + 1 < n && p[i] == '\r' && p[i + 1] == '\n')
        i += 2;
    h->start = (uint32_t)i;
    const char *eol = memchr(p + i, '\r', n - i);
    if (eol == NULL)
        FAIL(H1E_BAD, "no start line");
    size_t ln = (size_t)(eol - (p + i));
    int e = kind == H1_REQUEST
                ? request_line(p + i, ln, i, h, max_target, why)
                : status_line(p + i, ln, h, why);
    if (e)
        return e;
    i += ln + 2;

    int te = -2;          /* Transfer-Encoding: none yet */
    unsigned nhost = 0;
    bool conn_close = false, conn_keep = false, conn_upgrade = false;
    bool has_upgrade = false;
    /* field lines until the empty line (RFC 9112 §5) */
    for (;;) {
        if (i + 1 >= n)
            FAIL(H1E_BAD, "head without its empty line");
        if (p[i] == '\r')
            break; /* the empty line: h1_scan made sure it is CRLF */
        if (is_ows((unsigned char)p[i]))
            FAIL(H1E_BAD, "obs-fold (a field line continued)");
        size_t ns = i;
        /* four at a time while all are tchar, then one at a time */
        while (i + 4 <= n && (field_tchar[(unsigned char)p[i]] &
                              field_tchar[(unsigned char)p[i + 1]] &
                              field_tchar[(unsigned char)p[i + 2]] &
                              field_tchar[(unsigned char)p[i + 3]]))
            i += 4;
        while (i < n && field_is_tchar((unsigned char)p[i]))
            i++;
        size_t nl = i - ns;
        if (i < n && is_ows((unsigned char)p[i])) {
            /* RFC 9112 §5.1: a server rejects it; a proxy removes it
             * from a response, but not from a field that frames it: who
             * can say which length the origin meant */
            if (kind == H1_REQUEST)
                FAIL(H1E_BAD, "whitespace between a field name and colon");
            if (field_name_is(p + ns, nl, "content-length", 14) ||
                field_name_is(p + ns, nl, "transfer-encoding", 17))
                FAIL(H1E_BAD, "whitespace between a framing field's name "
                              "and colon");
            while (i < n && is_ows((unsigned char)p[i]))
                i++;
            h->ws_before_colon = true;
        }
        if (nl == 0 || i >= n || p[i] != ':')
            FAIL(H1E_BAD, "malformed field line");
        i++;
        while (i < n && is_ows((unsigned char)p[i]))
            i++;
        size_t vs = i;
        while (i + 8 <= n) {
            uint64_t m = ctl_or_del(load8(p + i));
            if (m) {
                i += first_flagged(m);
                break;
            }
            i += 8;
        }
        while (i < n && is_value_char((unsigned char)p[i]))
            i++;
        if (i + 1 >= n || p[i] != '\r')
            FAIL(H1E_BAD, "a control character in a field value");
        size_t ve = i;
        while (ve > vs && is_ows((unsigned char)p[ve - 1]))
            ve--;
        i += 2;
        if (h->nfields == h->max_fields)
            FAIL(H1E_FIELDS, "too many field lines");
        struct hdr *f = &h->fields[h->nfields++];
        f->name = (uint32_t)ns;
        f->nlen = (uint32_t)nl;
        f->val = (uint32_t)vs;
        f->vlen = (uint32_t)(ve - vs);

        /* the fields that frame the message or manage the connection */
        const char *nm = p + ns, *v = p + vs;
        size_t vl = ve - vs;
        /* and the preconditions and Range (enum h1_pre): the name a word
         * at a time (names are tokens) */
#define REQ_I (kind == H1_REQUEST && (nm[0] | 0x20) == 'i')
        switch (nl) {
        case 5:
            if (kind == H1_REQUEST && field_token_is(nm, nl, "range", 5))
                pre_note(h, H1P_RANGE);
            break;
        case 8:
            if (REQ_I && field_token_is(nm, nl, "if-match", 8))
                pre_note(h, H1P_IF_MATCH);
            else if (REQ_I && field_token_is(nm, nl, "if-range", 8))
                pre_note(h, H1P_IF_RANGE);
            break;
        case 13:
            if (REQ_I && field_token_is(nm, nl, "if-none-match", 13))
                pre_note(h, H1P_IF_NONE_MATCH);
            break;
        case 19:
            if (REQ_I && field_token_is(nm, nl, "if-unmodified-since", 19))
                pre_note(h, H1P_IF_UNMODIFIED_SINCE);
            break;
        case 4:
            if (field_name_is(nm, nl, "host", 4)) {
                if (++nhost > 1)
                    FAIL(H1E_BAD, "Host repeated");
                if (!h1_host_ok(v, vl))
                    FAIL(H1E_BAD, "malformed Host");
            }
            break;
        case 6:
            if (field_name_is(nm, nl, "expect", 6) && vl == 12 &&
                strncasecmp(v, "100-continue", 12) == 0)
                h->expect_continue = true;
            break;
        case 7:
            if (field_name_is(nm, nl, "upgrade", 7))
                has_upgrade = true;
            break;
        case 10:
            if (field_name_is(nm, nl, "connection", 10)) {
                /* one pass over the options, as h1_list_has would
                 * make three */
                size_t pos = 0, ol;
                const char *opt;
                while (list_next(v, vl, &pos, &opt, &ol)) {
                    conn_close |= field_name_is(opt, ol, "close", 5);
                    conn_keep |= field_name_is(opt, ol, "keep-alive", 10);
                    conn_upgrade |= field_name_is(opt, ol, "upgrade", 7);
                }
            }
            break;
        case 14:
            if (field_name_is(nm, nl, "content-length", 14)) {
                if (h->content_length >= 0)
                    FAIL(H1E_BAD, "Content-Length repeated");
                if ((h->content_length = h1_content_length(v, vl)) < 0)
                    FAIL(H1E_BAD, "Content-Length is not 1*DIGIT");
            }
            break;
        case 17:
            if (field_name_is(nm, nl, "transfer-encoding", 17)) {
                if (te != -2)
                    FAIL(H1E_BAD, "Transfer-Encoding repeated");
                te = te_value(v, vl);
            } else if (REQ_I &&
                       field_token_is(nm, nl, "if-modified-since", 17)) {
                pre_note(h, H1P_IF_MODIFIED_SINCE);
            }
            break;
        }
#undef REQ_I
    }

    /* the body length (RFC 9112 §6.3) */
    if (te != -2) {
        if (h->content_length >= 0)
            FAIL(H1E_BAD, "Transfer-Encoding and Content-Length");
        if (h->minor == 0)
            FAIL(H1E_BAD, "Transfer-Encoding in HTTP/1.0");
        if (te < 0)
            FAIL(H1E_BAD, "Transfer-Encoding not ending in one chunked");
        if (te == 0)
            FAIL(H1E_TE, "a transfer coding other than chunked");
    }
    bool no_body = kind == H1_RESPONSE &&
                   (head_request || h->status < 200 || h->status == 204 ||
                    h->status == 304);
    if (no_body) {
        h->body = H1B_NONE;
        h->content_length = -1;
    } else if (te == 1) {
        h->body = H1B_CHUNKED;
    } else if (h->content_length >= 0) {
        h->body = H1B_LENGTH;
    } else {
        h->body = kind == H1_RESPONSE ? H1B_CLOSE : H1B_NONE;
    }
    if (kind == H1_REQUEST) {
        /* CONNECT has no content; what follows its head would be a tunnel
         * (RFC 9110 §9.3.6), which is never read as a body */
        if (h->method == H1_M_CONNECT && (te != -2 || h->content_length >= 0))
            FAIL(H1E_BAD, "CONNECT with content");
        if (h->minor == 1 && nhost == 0)
            FAIL(H1E_BAD, "HTTP/1.1 request without Host");
        h->upgrade = h->method == H1_M_CONNECT || (has_upgrade && conn_upgrade);
    }
    h->keep_alive = h->minor == 1 ? !conn_close : conn_keep && !conn_close;
    if (h->body == H1B_CLOSE || h->upgrade)
        h->keep_alive = false;
    return 0;
}

/* ==== the chunked transfer coding ==== */

enum {
    CK_SIZE0,     /* the first hex digit of a chunk-size */
    CK_SIZE,      /* more hex digits, BWS, ";" or CR */
    CK_BWS,       /* BWS after the size: only ";" may follow */
    /* chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ), the value
     * a token or a quoted-string (RFC 9112 §7.1.1) */
    CK_EXT,       /* after ";": BWS, then the name */
    CK_EXT_NAME,  /* in the name */
    CK_EXT_BWS,   /* BWS after the name: "=", ";" or CR */
    CK_EXT_VBWS,  /* after "=": BWS, then the value */
    CK_EXT_VAL,   /* in a token value */
    CK_EXT_QS,    /* inside a quoted-string value */
    CK_EXT_QP,    /* after a backslash in it */
    CK_EXT_END,   /* after a value: BWS, ";" or CR */
    CK_SIZE_LF,   /* the LF of the size line */
    CK_DATA,      /* chunk-data */
    CK_DATA_CR,   /* the CRLF after chunk-data */
    CK_DATA_LF,
    CK_TR_START,  /* a trailer field line, or the final CRLF */
    CK_TR_NAME,
    CK_TR_VALUE,
    CK_TR_LF,
    CK_END_LF,    /* the LF of the final CRLF */
    CK_DONE,
};

void h1_chunked_init(struct h1_chunked *d, uint32_t max_trailer)
{
    memset(d, 0, sizeof *d);
    d->state = CK_SIZE0;
    d->max_trailer = max_trailer;
}

enum h1_chunk_res h1_chunked_feed(struct h1_chunked *d, const char *p,
                                  size_t n, size_t *used, const char **data,
                                  size_t *dlen)
{
    size_t i = 0;
    enum h1_chunk_res res = H1C_MORE;
    while (i < n) {
        if (d->state == CK_DATA) {
            size_t take = n - i;
            if ((uint64_t)take > d->left)
                take = (size_t)d->left;
            *data = p + i;
            *dlen = take;
            i += take;
            d->left -= take;
            if (d->left == 0)
                d->state = CK_DATA_CR;
            res = H1C_DATA;
            break;
        }
        unsigned char ch = (unsigned char)p[i++];
        if (d->state <= CK_SIZE_LF && ++d->line > CHUNK_LINE_MAX)
            goto bad;
        /* trailer bytes count against their limit; the final CRLF not */
        if (d->state >= CK_TR_START && d->state <= CK_TR_LF &&
            !(d->state == CK_TR_START && ch == '\r') &&
            ++d->trailer > d->max_trailer)
            goto bad;
        switch (d->state) {
        case CK_SIZE0:
        case CK_SIZE: {
            int v = hex_val(ch);
            if (v >= 0) {
                if (d->left >> 58)
                    goto bad; /* over 2^62: an overflow in the making */
                d->left = d->left << 4 | (unsigned)v;
                d->state = CK_SIZE;
            } else if (d->state == CK_SIZE0) {
                goto bad;
            } else if (ch == '\r') {
                d->state = CK_SIZE_LF;
            } else if (ch == ';') {
                d->state = CK_EXT;
            } else if (is_ows(ch)) {
                d->state = CK_BWS;
            } else {
                goto bad; /* "5 0", "5x" */
            }
            break;
        }
        case CK_BWS:
            if (ch == ';')
                d->state = CK_EXT;
            else if (!is_ows(ch))
                goto bad;
            break;
        case CK_EXT:
            if (field_is_tchar(ch))
                d->state = CK_EXT_NAME;
            else if (!is_ows(ch))
                goto bad; /* an empty name, a bare LF, a control character */
            break;
        case CK_EXT_NAME:
        case CK_EXT_BWS:
            if (ch == '\r')
                d->state = CK_SIZE_LF;
            else if (ch == ';')
                d->state = CK_EXT;
            else if (ch == '=')
                d->state = CK_EXT_VBWS;
            else if (is_ows(ch))
                d->state = CK_EXT_BWS;
            else if (!field_is_tchar(ch) || d->state == CK_EXT_BWS)
                goto bad;
            break;
        case CK_EXT_VBWS:
            if (ch == '"')
                d->state = CK_EXT_QS;
            else if (field_is_tchar(ch))
                d->state = CK_EXT_VAL;
            else if (!is_ows(ch))
                goto bad;
            break;
        case CK_EXT_VAL:
        case CK_EXT_END:
            if (ch == '\r')
                d->state = CK_SIZE_LF;
            else if (ch == ';')
                d->state = CK_EXT;
            else if (is_ows(ch))
                d->state = CK_EXT_END;
            else if (!field_is_tchar(ch) || d->state == CK_EXT_END)
                goto bad;
            break;
        case CK_EXT_QS:
            if (ch == '"')
                d->state = CK_EXT_END;
            else if (ch == '\\')
                d->state = CK_EXT_QP;
            else if (!is_value_char(ch))
                goto bad;
            break;
        case CK_EXT_QP:
            if (!is_value_char(ch))
                goto bad;
            d->state = CK_EXT_QS;
            break;
        case CK_SIZE_LF:
            if (ch != '\n')
                goto bad;
            d->line = 0;
            d->state = d->left ? CK_DATA : CK_TR_START;
            break;
        case CK_DATA_CR:
            if (ch != '\r')
                goto bad; /* chunk data longer than its size */
            d->state = CK_DATA_LF;
            break;
        case CK_DATA_LF:
            if (ch != '\n')
                goto bad;
            d->state = CK_SIZE0;
            break;
        case CK_TR_START:
            if (ch == '\r') {
                d->state = CK_END_LF;
            } else if (field_is_tchar(ch)) {
                d->state = CK_TR_NAME;
            } else {
                goto bad; /* obs-fold, whitespace, a control character */
            }
            break;
        case CK_TR_NAME:
            if (ch == ':')
                d->state = CK_TR_VALUE;
            else if (!field_is_tchar(ch))
                goto bad;
            break;
        case CK_TR_VALUE:
            if (ch == '\r')
                d->state = CK_TR_LF;
            else if (!is_value_char(ch))
                goto bad;
            break;
        case CK_TR_LF:
            if (ch != '\n')
                goto bad;
            d->state = CK_TR_START;
            break;
        case CK_END_LF:
            if (ch != '\n')
                goto bad;
            d->state = CK_DONE;
            *used = i;
            return H1C_DONE;
        default:
            goto bad;
        }
    }
    *used = i;
    return res;
bad:
    d->state = CK_DONE + 1;
    *used = i;
    return H1C_BAD;
}
