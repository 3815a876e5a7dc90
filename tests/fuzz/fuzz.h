/* fuzz.h - helpers shared by the libFuzzer targets of tests/fuzz.
 *
 *   FUZZ_CHECK(cond)     an invariant: abort with a message when it fails
 *                        (libFuzzer then keeps the input as a crash)
 *   struct fuzz_split    split points taken from the input's first bytes,
 *                        so a test can feed a message in pieces and compare
 *                        with feeding it whole */
#ifndef LURING_FUZZ_H
#define LURING_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,        \
                    __LINE__, #cond);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* Piece sizes for feeding a message in pieces: `n` bytes of the input,
 * used cyclically; a piece is 1 + byte % 64 bytes long (0 bytes of
 * selector: pieces of one byte). */
struct fuzz_split {
    const uint8_t *sel;
    size_t n, i;
};

/* Take the selector from the input: its first byte says how many selector
 * bytes follow (0..15); the input is advanced past them. */
static inline void fuzz_split_take(struct fuzz_split *s, const uint8_t **data,
                                   size_t *size)
{
    s->sel = NULL;
    s->n = s->i = 0;
    if (*size == 0)
        return;
    size_t k = (*data)[0] & 15;
    if (k > *size - 1)
        k = *size - 1;
    s->sel = *data + 1;
    s->n = k;
    *data += 1 + k;
    *size -= 1 + k;
}

/* The next piece's length, at most `left`. */
static inline size_t fuzz_split_next(struct fuzz_split *s, size_t left)
{
    size_t len = 1;
    if (s->n) {
        len = 1 + s->sel[s->i % s->n] % 64;
        s->i++;
    }
    return len < left ? len : left;
}

/* Restart the sequence of pieces (for a second pass over the same
 * message). */
static inline void fuzz_split_rewind(struct fuzz_split *s) { s->i = 0; }

#endif
