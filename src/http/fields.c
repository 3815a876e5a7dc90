/* fields.c - field grammar (see fields.h). */
#include "http/fields.h"

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
