/* buf.h - a growable byte buffer. Growth reallocates: pointers into the data
 * are invalidated by any append; keep offsets instead. */
#ifndef LURING_BUF_H
#define LURING_BUF_H

#include <stddef.h>
#include <string.h>

struct buf {
    char *data;
    size_t len, cap;
};

/** Make room for `extra` more bytes. Returns 0, or -1 when out of memory. */
int buf_reserve(struct buf *b, size_t extra);
/** buf_append's growing path (buf_append calls it when b is full). */
int buf_append_grow(struct buf *b, const void *p, size_t n);
/** Append; returns 0 or -1 (out of memory, b unchanged). Inline when the
 * bytes fit: most appends are a few bytes to a buffer with room. */
static inline int buf_append(struct buf *b, const void *p, size_t n)
{
    if (n > b->cap - b->len)
        return buf_append_grow(b, p, n);
    if (n > 0) /* memcpy of 0 bytes from or to NULL is undefined */
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}
/** Drop the first n bytes. */
void buf_consume(struct buf *b, size_t n);
/** Empty the buffer; memory above `keep` bytes is returned to the system. */
void buf_reset(struct buf *b, size_t keep);
void buf_free(struct buf *b);

/** Make room for entry n of a pointer array (*arrp) that holds n entries
 * and grows at powers of two. arrp: address of the array pointer (any
 * `T **`). Returns 0, or -1 when out of memory (array unchanged). */
int ptrs_reserve(void *arrp, unsigned n);

#endif
