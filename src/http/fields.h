/* fields.h - the grammar of HTTP fields (RFC 9110 §5): tokens. Pure
 * functions, shared by everything that reads or writes a field name or a
 * token-valued parameter. */
#ifndef LURING_FIELDS_H
#define LURING_FIELDS_H

#include <stdbool.h>
#include <stddef.h>
#include <strings.h>

/* tchar by byte value: 1 for ALPHA / DIGIT / "!#$%&'*+-.^_`|~". */
extern const unsigned char field_tchar[256];

/** tchar (RFC 9110 §5.6.2): ALPHA / DIGIT / "!#$%&'*+-.^_`|~". */
static inline bool field_is_tchar(unsigned char ch) { return field_tchar[ch]; }
/** Is the field name n[0..nl) `lit` (len bytes), ignoring case (RFC 9110
 * §5.1)? The lengths first: most names cost no comparison. */
static inline bool field_name_is(const char *n, size_t nl, const char *lit,
                                 size_t len)
{
    return nl == len && strncasecmp(n, lit, len) == 0;
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
