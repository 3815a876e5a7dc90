/* fields.h - the grammar of HTTP fields (RFC 9110 §5): tokens. Pure
 * functions, shared by everything that reads or writes a field name or a
 * token-valued parameter. */
#ifndef LURING_FIELDS_H
#define LURING_FIELDS_H

#include <stdbool.h>
#include <stddef.h>

/** tchar (RFC 9110 §5.6.2): ALPHA / DIGIT / "!#$%&'*+-.^_`|~". */
bool field_is_tchar(unsigned char ch);
/** token = 1*tchar: false for an empty string. */
bool field_is_token(const char *s, size_t n);

/** A hop-by-hop field a proxy never forwards, in either direction (RFC
 * 9110 §7.6.1, RFC 9112 §6.1, §7.4): Connection, Keep-Alive,
 * Proxy-Connection, TE, Transfer-Encoding, Trailer, Upgrade,
 * Proxy-Authenticate, Proxy-Authorization (name case-insensitive).
 * Fields named by Connection are hop-by-hop too: see h1_list_has. */
bool field_is_hop_by_hop(const char *name, size_t n);

#endif
