/* fuzz_chunked.c - the chunked transfer coding decoder (http/h1_parse.h:
 * h1_chunked_init/feed). Input: a split selector (fuzz.h), a control
 * byte, then bytes.
 *
 * Control bit 0 clear: the bytes are a chunked body, decoded whole and in
 * pieces. Both give the same result, the same decoded bytes and, at
 * H1C_DONE, the same count of bytes used; decoded bytes never outnumber
 * the bytes fed; each H1C_DATA points inside what it used; H1C_MORE used
 * everything.
 * Control bit 0 set: a round trip. The bytes are data, cut into chunks
 * (sizes from the selector), each chunk-size line written with leading
 * zeros, hex digits in either case and chunk extensions (RFC 9112 §7.1.1,
 * control bits 1-3), a trailer section (bit 4), and more bytes after the
 * body (bit 5: a pipelined message). Decoding it, whole and in pieces,
 * gives H1C_DONE, exactly the data, and uses exactly the encoded body.
 * Bits 6-7: the trailer limit, 0, 16, 256 or 4096 bytes (the round trip's
 * trailer fits in 16). */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "http/h1_parse.h"

static const uint32_t trailer_limits[4] = {0, 16, 256, 4096};

struct decoded {
    enum h1_chunk_res res;
    size_t used;    /* bytes of input used (all of the body at H1C_DONE) */
    uint8_t *out;   /* decoded data */
    size_t len;
};

static void decode(struct decoded *d, const uint8_t *p, size_t n,
                   uint32_t max_trailer, struct fuzz_split *split)
{
    struct h1_chunked c;
    h1_chunked_init(&c, max_trailer);
    d->res = H1C_MORE;
    d->used = 0;
    d->len = 0;
    size_t off = 0;
    while (off < n) {
        /* a piece: the rest of the input, or the selector's next size */
        size_t end = split ? off + fuzz_split_next(split, n - off) : n;
        while (off < end) {
            size_t used = 0, dlen = 0;
            const char *data = NULL;
            const char *q = (const char *)p + off;
            d->res = h1_chunked_feed(&c, q, end - off, &used, &data, &dlen);
            FUZZ_CHECK(used <= end - off);
            if (d->res == H1C_DATA) {
                FUZZ_CHECK(dlen > 0 && data >= q && data + dlen <= q + used);
                memcpy(d->out + d->len, data, dlen);
                d->len += dlen;
                FUZZ_CHECK(d->len <= off + used);
            } else if (d->res == H1C_MORE) {
                FUZZ_CHECK(used == end - off);
            } else {
                FUZZ_CHECK(dlen == 0);
            }
            off += used;
            if (d->res == H1C_DONE || d->res == H1C_BAD) {
                d->used = off;
                return;
            }
        }
    }
    d->used = off;
}

/* Write `v` in hex at `o`: lower or upper case digits, `zeros` leading
 * zeros. Returns the length. */
static size_t put_hex(char *o, size_t v, bool upper, unsigned zeros)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char t[32];
    size_t n = 0;
    do {
        t[n++] = digits[v & 15];
        v >>= 4;
    } while (v);
    size_t k = 0;
    while (zeros--)
        o[k++] = '0';
    while (n)
        o[k++] = t[--n];
    return k;
}

/* A chunk extension, or none (RFC 9112 §7.1.1: BWS ";" BWS name
 * [BWS "=" BWS value], value a token or a quoted-string). */
static const char *const exts[8] = {
    "",
    ";a",
    ";name=value",
    ";q=\"quoted \\\" string; with = and ,\"",
    ";a=1;b;c=\"\"",
    " ;a = b",
    "\t;\ta\t=\t\"x\"",
    ";!#$%&'*+-.^_`|~=!#$%&'*+-.^_`|~",
};

static uint8_t out1[1 << 16], out2[1 << 16], enc[1 << 20];

static void round_trip(const uint8_t *data, size_t size, uint8_t ctl,
                       uint32_t max_trailer, struct fuzz_split *split)
{
    const char *ext = exts[(ctl >> 1) & 7];
    bool trailer = ctl & 16, after = ctl & 32;
    char *o = (char *)enc;
    size_t k = 0, off = 0;
    unsigned i = 0;
    while (off < size) {
        size_t len = fuzz_split_next(split, size - off);
        uint8_t b = split->n ? split->sel[i % split->n] : (uint8_t)i;
        i++;
        k += put_hex(o + k, len, b & 0x40, (b >> 7) * 3);
        memcpy(o + k, ext, strlen(ext));
        k += strlen(ext);
        memcpy(o + k, "\r\n", 2), k += 2;
        memcpy(o + k, data + off, len), k += len;
        memcpy(o + k, "\r\n", 2), k += 2;
        off += len;
    }
    fuzz_split_rewind(split);
    memcpy(o + k, "0", 1), k += 1;
    memcpy(o + k, ext, strlen(ext));
    k += strlen(ext);
    memcpy(o + k, "\r\n", 2), k += 2;
    if (trailer && max_trailer >= 16) {
        memcpy(o + k, "X-T: 1\r\n", 8);
        k += 8;
    }
    memcpy(o + k, "\r\n", 2), k += 2;
    size_t body = k;
    if (after) {
        memcpy(o + k, "GET / HTTP/1.1\r\n\r\n", 18);
        k += 18;
    }

    struct decoded whole = {.out = out1}, pieces = {.out = out2};
    decode(&whole, enc, k, max_trailer, NULL);
    decode(&pieces, enc, k, max_trailer, split);
    FUZZ_CHECK(whole.res == H1C_DONE && pieces.res == H1C_DONE);
    FUZZ_CHECK(whole.used == body && pieces.used == body);
    FUZZ_CHECK(whole.len == size && memcmp(out1, data, size) == 0);
    FUZZ_CHECK(pieces.len == size && memcmp(out2, data, size) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_split split;
    fuzz_split_take(&split, &data, &size);
    if (size == 0 || size > sizeof out1)
        return 0;
    uint8_t ctl = data[0];
    data++, size--;
    uint32_t max_trailer = trailer_limits[ctl >> 6];

    if (ctl & 1) {
        if (size > 1024)
            return 0; /* 1-byte chunks with long extensions: 50 KiB */
        round_trip(data, size, ctl, max_trailer, &split);
        return 0;
    }
    struct decoded whole = {.out = out1}, pieces = {.out = out2};
    decode(&whole, data, size, max_trailer, NULL);
    decode(&pieces, data, size, max_trailer, &split);
    FUZZ_CHECK(whole.len <= size);
    FUZZ_CHECK(whole.res == pieces.res);
    if (whole.res == H1C_DONE)
        FUZZ_CHECK(whole.used == pieces.used);
    if (whole.res != H1C_BAD) {
        FUZZ_CHECK(whole.len == pieces.len);
        FUZZ_CHECK(memcmp(out1, out2, whole.len) == 0);
    }
    return 0;
}
