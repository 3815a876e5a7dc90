/* h1_server.h - HTTP/1.1 client connections: request parsing with limits,
 * pipelining (one request handled at a time, responses in order),
 * keep-alive, lingering close, error responses, response framing
 * (Content-Length or chunked). */
#ifndef LURING_H1_SERVER_H
#define LURING_H1_SERVER_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "io/outq.h"
#include "io/stream.h"
#include "io/timer.h"

struct req;
struct worker;

enum conn_state {
    CS_READING,   /* parsing a request (head or body) */
    CS_HANDLING,  /* a request is in its handler; input is buffered */
    CS_DRAINING,  /* last response queued; close once it is sent */
    CS_LINGER,    /* write side shut; discarding input until EOF */
    CS_CLOSED,    /* fd shut down; waiting for in-flight ops to finish */
    CS_FREE,      /* slot on the free list */
};

/* Connection flags. */
enum {
    CF_RECV_REARM = 1 << 1,  /* on the rearm list (ENOBUFS / ended) */
    CF_RECV_PAUSED = 1 << 2, /* input buffer full: recv cancelled */
    CF_DIRTY = 1 << 4,       /* on the flush list */
    CF_IN_HEAD = 1 << 5,     /* bytes of a request head have arrived */
    CF_MSG_DONE = 1 << 6,    /* parser paused at a complete message */
    CF_CLOSE_AFTER = 1 << 7, /* close once the response is sent */
};

/* Which timeout a connection waits under (io/timer.h queues, one per
 * configured timeout). */
enum tlist { TL_NONE, TL_HEAD, TL_IDLE, TL_BODY, TL_SEND, TL_LINGER, TL_N };

struct conn {
    struct stream s;        /* fd, slot, generation, ops in flight */
    uint16_t flags;
    enum conn_state state;
    struct worker *w;
    unsigned listener;
    struct req *req;        /* request being parsed or handled */
    http_parser parser;
    struct buf in;          /* received, not yet parsed (pipelined input) */
    struct outq out;
    /* timeout */
    enum tlist tl;
    struct timer timer;
    /* work lists */
    struct conn *next_dirty;  /* flush list (CF_DIRTY) */
    struct conn *next_rearm;  /* rearm list (CF_RECV_REARM) */
    struct conn *next_free;
};

/* What the HTTP layer needs from the layers above it (filled by the worker
 * at start-up): it never calls the handler layer directly. */
struct h1_server_ops {
    /** r's head (and body) is parsed: run its handler. The response may be
     * complete when it returns (http_response_done) or come later. */
    void (*run)(struct req *r);
};

void http_conn_init(struct conn *c);
/** New bytes for c. `p` is borrowed: anything kept is copied. */
void http_on_data(struct conn *c, const char *p, size_t len);
/** Parse buffered pipelined input, if the connection can take it. */
void http_process(struct conn *c);
/** Timer list `tl` expired for c. */
void http_on_timeout(struct conn *c, enum tlist tl);
/** A send completed; `all`: the out queue is now empty. */
void http_on_sent(struct conn *c, bool all);
void http_head_begin(struct req *r, int status);
/** Add a header line; -1 (nothing added) when the name is not a token or
 * the value holds CR, LF or NUL. */
int http_head_add(struct req *r, const char *name, size_t nlen,
                  const char *val, size_t vlen);
/** content_length < 0: chunked. */
void http_head_end(struct req *r, int64_t content_length);
/** Header lines as they are ("Name: value\r\n"...), between begin and end. */
void http_head_raw(struct req *r, const char *p, size_t n);
void http_body(struct req *r, const char *p, size_t len, seg_release_pt rel,
               void *arg, intptr_t aux);
/** Response complete (chunked terminator added when needed). */
void http_response_done(struct req *r);
/** Handler failed after the head was sent: close the connection. */
void http_response_abort(struct req *r);
const char *http_reason(int status);
/** A request header's value (name case-insensitive), or NULL. */
const char *req_header(const struct req *r, const char *name, size_t nlen,
                       size_t *vlen);

#endif
