/* fields.c - field grammar (see fields.h). */
#include "http/fields.h"

#include <string.h>
#include <strings.h>

#define T1(c) [c] = 1
const unsigned char field_tchar[256] = {
    T1('!'), T1('#'), T1('$'), T1('%'), T1('&'), T1('\''), T1('*'), T1('+'),
    T1('-'), T1('.'), T1('^'), T1('_'), T1('`'), T1('|'), T1('~'),
    T1('0'), T1('1'), T1('2'), T1('3'), T1('4'), T1('5'), T1('6'), T1('7'),
    T1('8'), T1('9'),
    T1('A'), T1('B'), T1('C'), T1('D'), T1('E'), T1('F'), T1('G'), T1('H'),
    T1('I'), T1('J'), T1('K'), T1('L'), T1('M'), T1('N'), T1('O'), T1('P'),
    T1('Q'), T1('R'), T1('S'), T1('T'), T1('U'), T1('V'), T1('W'), T1('X'),
    T1('Y'), T1('Z'),
    T1('a'), T1('b'), T1('c'), T1('d'), T1('e'), T1('f'), T1('g'), T1('h'),
    T1('i'), T1('j'), T1('k'), T1('l'), T1('m'), T1('n'), T1('o'), T1('p'),
    T1('q'), T1('r'), T1('s'), T1('t'), T1('u'), T1('v'), T1('w'), T1('x'),
    T1('y'), T1('z'),
};
#undef T1

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
#define IS(s) field_name_is(n, nl, s, sizeof(s) - 1)
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

bool field_line_next(const char *p, size_t n, size_t *off,
                     struct field_line *f)
{
    size_t s = *off;
    if (s >= n)
        return false;
    const char *lf = memchr(p + s, '\n', n - s);
    size_t le = lf ? (size_t)(lf - p) : n; /* the LF, or the end */
    *off = lf ? le + 1 : n;
    f->line = p + s;
    f->llen = *off - s;
    if (le > s && p[le - 1] == '\r')
        le--;
    const char *c = memchr(p + s, ':', le - s);
    f->name = p + s;
    f->nlen = c ? (size_t)(c - (p + s)) : 0;
    size_t v = c ? (size_t)(c - p) + 1 : le, ve = le;
    while (v < ve && (p[v] == ' ' || p[v] == '\t'))
        v++;
    while (ve > v && (p[ve - 1] == ' ' || p[ve - 1] == '\t'))
        ve--;
    f->value = p + v;
    f->vlen = ve - v;
    return true;
}
