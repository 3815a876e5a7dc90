/* h1_client.h - the response side of an HTTP/1.1 origin connection: parses
 * an origin's response (status line, header fields, body framing:
 * Content-Length, chunked or close-delimited) and hands each part to its
 * owner through h1_client_ops. Parsed as strictly as requests
 * (h1_parse.h): a response whose framing is ambiguous is an error, never
 * guessed at. What to forward and what to cache is the owner's business
 * (core/origin.c, core/fetch.c). */
#ifndef LURING_H1_CLIENT_H
#define LURING_H1_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "http/h1_parse.h"

#define H1_RESP_MAX_FIELDS 128    /* field lines in a response head */
#define H1_RESP_MAX_HEAD (64 * 1024) /* bytes of a response head */

struct h1_client_ops {
    /** One header field: the name is a token (whitespace before the colon
     * removed, RFC 9112 §5.1), the value without surrounding whitespace.
     * Fields named by the response's Connection field are hop-by-hop
     * (RFC 9110 §7.6.1) and not reported. -1 aborts. */
    int (*field)(void *owner, const char *name, size_t nlen, const char *val,
                 size_t vlen);
    /** An interim (1xx) response ended: the fields reported since the
     * last head were its own, not the final response's (RFC 9110 §15.2). */
    void (*interim)(void *owner);
    /** The final head: status, body length (-1: until chunked end or
     * close; 0 for 204 and 304). -1 aborts. */
    int (*head)(void *owner, int status, int64_t total);
    /** Body bytes, decoded from the framing. -1 aborts. */
    int (*body)(void *owner, const char *p, size_t n);
};

struct h1_resp {
    uint8_t state;          /* head, body by length, chunked, close, done */
    bool head_request;      /* set after init: the request was HEAD */
    bool keep_alive;
    bool hides_cache_field; /* the final head's Connection named a field a
                             * cache decides by (h1_client.c): it may not
                             * be shared, whatever the rest says */
    struct h1_scan scan;
    struct buf head;        /* a head that came in pieces */
    struct hdr fields[H1_RESP_MAX_FIELDS];
    int64_t left;           /* body bytes still to come (by length) */
    struct h1_chunked chunk;
    const char *why;        /* after H1_ERROR */
    const struct h1_client_ops *ops;
    void *owner;
};

enum h1_res {
    H1_MORE,  /* the response goes on */
    H1_DONE,  /* the response is complete */
    H1_ERROR, /* not a valid response (h1_resp_error says why) */
};

/** Ready for the next response on the connection. */
void h1_resp_init(struct h1_resp *r, const struct h1_client_ops *ops,
                  void *owner);
/** Parse n bytes; *used: how many belong to the response (on H1_DONE the
 * rest is not part of it). */
enum h1_res h1_resp_feed(struct h1_resp *r, const char *p, size_t n,
                         size_t *used);
/** The origin closed the connection: H1_DONE when that ends a
 * close-delimited body, H1_ERROR otherwise (truncated). */
enum h1_res h1_resp_eof(struct h1_resp *r);
/** After H1_DONE: may the connection carry another request? */
bool h1_resp_keep_alive(const struct h1_resp *r);
/** After H1_ERROR: a sentence. */
const char *h1_resp_error(const struct h1_resp *r);
/** Give back field buffers above a typical response's needs. */
void h1_resp_trim(struct h1_resp *r);
void h1_resp_free(struct h1_resp *r);

#endif
