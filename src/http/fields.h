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

#endif
