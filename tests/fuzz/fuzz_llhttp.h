/* fuzz_llhttp.h - what the differential targets (fuzz_diff_llhttp_*.c)
 * accept where llhttp's strict mode refuses: the places where we follow
 * the RFC and llhttp is stricter on purpose. Anything else we accept and
 * llhttp refuses is a finding. */
#ifndef LURING_FUZZ_LLHTTP_H
#define LURING_FUZZ_LLHTTP_H

#include <stdbool.h>
#include <llhttp.h>

#include "http/h1_parse.h"

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
