/* fields.c - field grammar (see fields.h). */
#include "http/fields.h"

#include <strings.h>

bool field_is_tchar(unsigned char ch)
{
    if (((ch | 32) >= 'a' && (ch | 32) <= 'z') || (ch >= '0' && ch <= '9'))
        return true;
    switch (ch) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
    case '+': case '-': case '.': case '^': case '_': case '`': case '|':
    case '~':
        return true;
    default:
        return false;
    }
}

bool field_is_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!field_is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

bool field_is_hop_by_hop(const char *n, size_t nl)
{
#define IS(s) (nl == sizeof(s) - 1 && strncasecmp(n, s, nl) == 0)
    switch (nl) {
    case 2: return IS("te");
    case 7: return IS("trailer") || IS("upgrade");
    case 10: return IS("connection") || IS("keep-alive");
    case 16: return IS("proxy-connection");
    case 17: return IS("transfer-encoding");
    case 18: return IS("proxy-authenticate");
    case 19: return IS("proxy-authorization");
    default: return false;
    }
#undef IS
}
