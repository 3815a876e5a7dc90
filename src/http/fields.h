/* fields.h - the grammar of HTTP fields (RFC 9110 §5): tokens. Pure
 * functions, shared by everything that reads or writes a field name or a
 * token-valued parameter. */
#ifndef LURING_FIELDS_H
#define LURING_FIELDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* tchar by byte value: 1 for ALPHA / DIGIT / "!#$%&'*+-.^_`|~". */
extern const unsigned char field_tchar[256];

/** tchar (RFC 9110 §5.6.2): ALPHA / DIGIT / "!#$%&'*+-.^_`|~". */
static inline bool field_is_tchar(unsigned char ch) { return field_tchar[ch]; }
/** Is the field name n[0..nl) `lit` (len bytes, no NUL), ignoring ASCII
 * case (RFC 9110 §5.1), as strncasecmp in the C locale? The lengths first:
 * most names cost no comparison; then inline, byte by byte (names are
 * short: a call to strncasecmp cost more than the comparison). */
static inline bool field_name_is(const char *n, size_t nl, const char *lit,
                                 size_t len)
{
    if (nl != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char a = (unsigned char)n[i], b = (unsigned char)lit[i];
        /* equal, or the same letter in two cases */
        if (a != b && ((a | 0x20) != (b | 0x20) ||
                       (unsigned char)((a | 0x20) - 'a') > 'z' - 'a'))
            return false;
    }
    return true;
}

/** field_name_is for a name known to be a token (tchar only, as every
 * name h1_parse_head accepts) and a literal `lit` of lower-case letters,
 * digits and "-" only: OR-ing 0x20 into a byte folds an upper-case letter
 * onto its lower case and leaves those bytes as they are, and no other
 * tchar folds onto one of them (only CR onto "-", controls onto digits),
 * so eight bytes compare at once (the last word overlapping the one
 * before), four for names of 4 to 7 bytes. */
static inline bool field_token_is(const char *n, size_t nl, const char *lit,
                                  size_t len)
{
    if (nl != len)
        return false;
    if (len >= 8) {
        const uint64_t f = 0x2020202020202020ULL;
        uint64_t a, b;
        size_t i = 0;
        for (; i + 8 <= len; i += 8) {
            memcpy(&a, n + i, 8);
            memcpy(&b, lit + i, 8);
            if ((a | f) != b)
                return false;
        }
        if (i == len)
            return true;
        memcpy(&a, n + len - 8, 8);
        memcpy(&b, lit + len - 8, 8);
        return (a | f) == b;
    }
    if (len >= 4) {
        uint32_t a, b;
        memcpy(&a, n, 4);
        memcpy(&b, lit, 4);
        if ((a | 0x20202020u) != b)
            return false;
        memcpy(&a, n + len - 4, 4);
        memcpy(&b, lit + len - 4, 4);
        return (a | 0x20202020u) == b;
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)(n[i] | 0x20) != (unsigned char)lit[i])
            return false;
    return true;
}

/** The length of the field line at n if its bytes are exactly
 * "<name>: <value>\r\n" (name n[0..nl), value v[0..vl), both inside one
 * head that holds the line's CRLF), else 0: such a line is forwarded with
 * one copy instead of four. */
static inline size_t field_line_len(const char *n, size_t nl, const char *v,
                                    size_t vl)
{
    if (v != n + nl + 2 || n[nl] != ':' || n[nl + 1] != ' ' || v[vl] != '\r')
        return 0;
    return nl + 2 + vl + 2;
}

/* One "Name: value" line of a field block (core/origin.c stores an
 * object's fields as such lines, "Name: value\r\n" each). */
struct field_line {
    const char *name;  /* nlen bytes; nlen 0: a line without a colon */
    const char *value; /* vlen bytes, spaces and tabs around it removed */
    const char *line;  /* the whole line, its CRLF or LF included */
    size_t nlen, vlen, llen;
};

/** The next line of the block p[0..n) from *off, which moves past it:
 * a line ends at LF (a CR before it is not part of the value) or at n.
 * false at the end. Pure; reads nothing outside p[0..n). */
bool field_line_next(const char *p, size_t n, size_t *off,
                     struct field_line *f);

/** A field value a sender may generate (RFC 9110 §5.5): field-vchar
 * (VCHAR, obs-text), SP and HTAB; no other control character (CR, LF,
 * NUL, VT, DEL...). */
static inline bool field_value_ok(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)v[i];
        if ((b < 0x20 && b != '\t') || b == 0x7f)
            return false;
    }
    return true;
}

/** Only visible ASCII (0x21-0x7e): what a request-target may hold (RFC
 * 9112 §3.2, RFC 3986: anything else percent-encoded). A SP, CR or LF
 * there would end the request line early (request splitting). */
static inline bool target_is_visible(const char *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
            return false;
    return true;
}

/** token = 1*tchar: false for an empty string. */
bool field_is_token(const char *s, size_t n);

/** A hop-by-hop field a proxy never forwards, in either direction (RFC
 * 9110 §7.6.1, RFC 9112 §6.1, §7.4): Connection, Keep-Alive,
 * Proxy-Connection, TE, Transfer-Encoding, Trailer, Upgrade,
 * Proxy-Authenticate, Proxy-Authorization (name case-insensitive).
 * Fields named by Connection are hop-by-hop too: see h1_list_has. */
bool field_is_hop_by_hop(const char *name, size_t n);

#endif
