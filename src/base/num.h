/* num.h - small number writers shared by the layers that build protocol
 * text by hand (snprintf costs hundreds of instructions per call on paths
 * taken for every request). */
#ifndef LURING_NUM_H
#define LURING_NUM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/** Write v in decimal at p (room for 20 bytes, no NUL); returns the
 * number of digits written. The length first (comparisons), then two
 * digits per division from the end: a digit a division, and a reversal
 * after, cost about three times as much on the 1-4 digit numbers of a
 * head (Content-Length, Content-Range, Age). */
static inline size_t num_put_dec(char *p, uint64_t v)
{
    static const char d2[201] =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
        "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
        "8081828384858687888990919293949596979899";
    if (v < 100) { /* Age: 0, a range's first byte... */
        if (v < 10) {
            p[0] = (char)('0' + v);
            return 1;
        }
        memcpy(p, d2 + 2 * v, 2);
        return 2;
    }
    size_t n = 3;
    for (uint64_t t = 1000; n < 20 && v >= t; t *= 10)
        n++; /* t wraps past 10^19, when n is 20 and the loop ends */
    char *q = p + n;
    while (v >= 100) {
        uint64_t k = v % 100;
        v /= 100;
        q -= 2;
        memcpy(q, d2 + 2 * k, 2);
    }
    if (v >= 10)
        memcpy(q - 2, d2 + 2 * v, 2);
    else
        q[-1] = (char)('0' + v);
    return n;
}

#endif
