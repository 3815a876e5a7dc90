/* num.h - small number writers shared by the layers that build protocol
 * text by hand (snprintf costs hundreds of instructions per call on paths
 * taken for every request). */
#ifndef LURING_NUM_H
#define LURING_NUM_H

#include <stddef.h>
#include <stdint.h>

/** Write v in decimal at p (room for 20 bytes, no NUL); returns the
 * number of digits written. */
static inline size_t num_put_dec(char *p, uint64_t v)
{
    char t[20];
    size_t n = 0;
    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        p[i] = t[n - 1 - i];
    return n;
}

#endif
