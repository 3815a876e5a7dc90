/* fuzz_llhttp.h - what the differential targets (fuzz_diff_llhttp_*.c)
 * accept where llhttp's strict mode refuses: the places where we follow
 * the RFC and llhttp is stricter on purpose. Anything else we accept and
 * llhttp refuses is a finding. */
#ifndef LURING_FUZZ_LLHTTP_H
#define LURING_FUZZ_LLHTTP_H

#include <stdbool.h>
#include <stdint.h>
#include <llhttp.h>

#include "http/h1_parse.h"

enum { R_ACCEPT, R_REJECT, R_MORE }; /* a parser's verdict on the input */

/* Where our framing (RFC 9112 §6.3) ends the message whose head, as h
 * parsed it, is p[0..head_end): R_ACCEPT and *end; R_MORE when more bytes
 * are needed (or the body ends at the close, which is not compared);
 * R_REJECT for an invalid chunked body. */
static inline int ours_message_end(const char *p, size_t n,
                                   const struct h1_head *h, size_t head_end,
                                   size_t *end)
{
    size_t off = head_end;
    if (h->body == H1B_LENGTH) {
        if ((uint64_t)h->content_length > n - off)
            return R_MORE;
        off += (size_t)h->content_length;
    } else if (h->body == H1B_CHUNKED) {
        struct h1_chunked d;
        h1_chunked_init(&d, 1 << 20);
        for (;;) {
            if (off == n)
                return R_MORE;
            size_t used, dn;
            const char *dd;
            enum h1_chunk_res cr = h1_chunked_feed(&d, p + off, n - off,
                                                   &used, &dd, &dn);
            off += used;
            if (cr == H1C_BAD)
                return R_REJECT;
            if (cr == H1C_DONE)
                break;
        }
    } else if (h->body == H1B_CLOSE) {
        return R_MORE;
    }
    *end = off;
    return R_ACCEPT;
}

/* e: llhttp's error; body: how we frame the message; after_head: llhttp
 * failed in the body (past our head's end); ws: a field name was
 * followed by whitespace (removed from a response, RFC 9112 §5.1). */
static inline bool llhttp_known_difference(llhttp_errno_t e, int body,
                                           bool after_head, bool ws)
{
    switch (e) {
    case HPE_INVALID_METHOD:  /* llhttp knows a fixed list of methods */
    case HPE_INVALID_VERSION: /* HTTP/1.2-1.9 read as 1.1 (RFC 9110 §2.5) */
        return true;
    case HPE_INVALID_HEADER_TOKEN:
        return ws;
    case HPE_INVALID_CONTENT_LENGTH:
        /* OWS around a Content-Length we read as 1*DIGIT (RFC 9110 §5.5:
         * not part of the value); or, in a chunked body's trailer, a
         * framing field, which we drop (RFC 9110 §6.5.1) */
        return body == H1B_LENGTH || (body == H1B_CHUNKED && after_head);
    case HPE_INVALID_TRANSFER_ENCODING:
        /* OWS after "chunked" (RFC 9110 §5.5), or one in a trailer */
        return body == H1B_CHUNKED;
    case HPE_UNEXPECTED_CONTENT_LENGTH:
        return body == H1B_CHUNKED && after_head; /* in a trailer */
    case HPE_STRICT:
    case HPE_INVALID_CHUNK_SIZE:
        /* BWS in a chunk extension: RFC 9112 §7.1.1 allows it */
        return body == H1B_CHUNKED && after_head;
    default:
        return false;
    }
}

#endif
