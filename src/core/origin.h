/* origin.h - where cache fills come from: HTTP/1.1 upstreams over io_uring
 * (connect, keep-alive pool, Content-Length/chunked/close-delimited bodies,
 * timeouts) and local files read through io_uring. A fetch writes into a
 * cache object (cache_obj_head/data/done); the object tells subscribers. */
#ifndef LURING_ORIGIN_H
#define LURING_ORIGIN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/buf.h"
#include "http/h1_client.h"
#include "http/h1_server.h"
#include "io/loop.h"
#include "io/stream.h"
#include "io/timer.h"

struct cache_obj;
struct upconn;

/* A worker's upstream connections and file reads: slots indexed by
 * upconn->idx (in user_data), a free list, the ring they use. */
struct upstreams {
    struct loop *loop;
    struct timers *timers;  /* the worker's: connect, first byte, idle */
    struct upconn **slots;
    unsigned n;
    struct upconn *free;
    struct upconn *dirty;   /* streamed bodies to send (origin_flush) */
    /* immediate sends not settled yet, in SQ order (origin_imm_settle) */
    struct upconn *imm_head, *imm_tail;
    bool timed;             /* stamp fills' times on their objects (the
                             * access log is on: cache_obj up_*_us) */
    /* while a failed request's object is told (cache_obj_done, whose
     * waiters of a worker's own cache run at once): why it failed, a
     * short lowercase phrase ("connection refused", "connect timed out",
     * "invalid response: ..."); NULL otherwise. Waiters that want the
     * reason (luring.http.request) copy it then. */
    const char *fail_why;
};

enum origin_kind { ORIGIN_HTTP, ORIGIN_FILE };

struct origin_stats {
    uint64_t requests, errors, timeouts, connects, reused;
};

struct origin {
    char name[64];
    enum origin_kind kind;
    /* HTTP */
    struct sockaddr_storage addr;
    socklen_t alen;
    char host[128];              /* Host header */
    int64_t connect_timeout_ms;  /* 504 */
    int64_t first_byte_timeout_ms; /* 504 */
    int64_t idle_timeout_ms;     /* between reads: fails the fetch */
    int64_t keepalive_ms;        /* idle pooled connection lifetime */
    unsigned keepalive_max;      /* pooled idle connections */
    struct upconn *idle;         /* the pool, most recently used first */
    unsigned nidle;
    /* file */
    char root[1024];
    struct origin_stats st;
    struct upstreams *us;        /* the worker's upstream slots */
};

enum up_phase { UP_FREE, UP_CONNECT, UP_SEND, UP_WAIT, UP_READ, UP_IDLE,
                UP_CLOSED };

/* One upstream connection (or one file read). */
struct upconn {
    struct stream s;        /* fd, slot, generation, ops in flight */
    bool reused;            /* came from the pool: may retry once */
    bool got_bytes;         /* response bytes arrived */
    enum up_phase phase;
    const char *why;        /* why it fails (a static phrase), set before
                             * finish: us->fail_why then */
    struct timer timer;     /* the timeout of the current phase */
    struct origin *o;
    struct cache_obj *obj;  /* destination of the fetch (one ref) */
    bool feeding;           /* in h1_resp_feed: a reader that leaves from
                             * inside a notification is handled after it */
    bool paused;            /* a stream fill stopped reading: its reader is
                             * behind (cache_obj_fill_pause) */
    bool recv_cancel;       /* the paused fill's cancel of the recv is in
                             * flight (until the recv's last completion) */
    unsigned flags;         /* ORQ_* of the request */
    struct buf out;         /* request bytes (a streamed body: its head,
                             * then a window of the body, see UP_WINDOW) */
    size_t out_sent;
    bool sending;           /* an OP_UP_SEND is in flight on out */
    bool imm_pending;       /* it is immediate and not settled yet */
    uint32_t imm_pos;       /* its SQE's position (loop_send_imm) */
    int imm_len;            /* its length: what went if it posts nothing */
    struct upconn *imm_prev, *imm_next; /* us->imm_head list */
    /* a request body streamed from the client (origin_request_stream) */
    bool streaming;         /* out's body comes from body_m as it arrives */
    bool body_chunked;      /* re-chunked: the client's body was chunked */
    bool body_done;         /* every body byte is in out */
    bool trimmed;           /* sent bytes of out were dropped: no retry */
    struct h1_msg *body_m;  /* the client's request while its body streams
                             * here (unlinked by either side's end) */
    struct h1_body_sink sink; /* how h1_server hands it over */
    bool dirty;             /* on us->dirty (kept across reuse of the slot:
                             * the list skips what has nothing to send) */
    struct upconn *next_dirty;
    struct h1_resp resp;    /* the response being parsed */
    uint64_t file_off;      /* file origin: next read offset */
    struct upconn *next;    /* pool / free list */
};

/** Parse "http://host:port" (or a path root for files) into o. 0, or -1
 * with err. */
int origin_init_http(struct origin *o, const char *url, char *err,
                     size_t errlen);
/** Start fetching `path` into obj (takes a ref on obj): `GET path` with
 * Host, User-Agent and Accept; the response is judged for the cache by
 * core/fetch.c. */
void origin_fetch(struct origin *o, const char *path, size_t plen,
                  struct cache_obj *obj);

/* origin_request flags. */
enum {
    ORQ_HEAD = 1 << 0,       /* a HEAD request: the response has no body,
                                its Content-Length goes to obj->head_cl */
    ORQ_IDEMPOTENT = 1 << 1, /* may be sent again on a fresh connection when
                                a pooled one fails before any response byte
                                (RFC 9110 §9.2.2); others never are */
    ORQ_PASS = 1 << 2,       /* a pass-through: obj is a stream object
                                (cache_obj_stream) and the response is
                                never shared nor stored */
    ORQ_CLOSE = 1 << 3,      /* the connection is not pooled after the
                                response (the request said Connection:
                                close) */
};

/** Writes the request's bytes (head and body, framed) to out; -1 fails
 * the request (502). */
typedef int (*origin_build_pt)(void *arg, struct buf *out);

/** Send the request `build` writes (called once, at once) to an HTTP
 * origin and fill obj with the response (takes a ref on obj). A stream
 * object's fill stops reading while its reader is behind, and ends when
 * the reader leaves. */
void origin_request(struct origin *o, struct cache_obj *obj, unsigned flags,
                    origin_build_pt build, void *arg);
/** origin_request, with the body of the client's request m streamed after
 * the head `build` writes (its framing given there: the client's
 * Content-Length, or Transfer-Encoding: chunked for a chunked body, which
 * is re-chunked as it is decoded, RFC 9112 §7.1). The body is demanded
 * at once (h1_body_start: a 100 Continue goes to the client then) and
 * flows with backpressure both ways: at most UP_WINDOW bytes of it wait
 * in the request buffer, the client's receive pauses while the origin
 * reads slowly. A body that fails (max_body_size 413, body_timeout 408,
 * malformed 400, the client gone) aborts the origin request (closed, not
 * reused; the object fails with that status, 502 for a client gone). A
 * response that ends before the body was all sent leaves the rest to
 * h1_server (discarded or closed) and the connection is not reused.
 * Retried on a fresh connection (ORQ_IDEMPOTENT) only while every byte
 * sent is still in the buffer. m: NULL for no streamed body. */
void origin_request_stream(struct origin *o, struct cache_obj *obj,
                           unsigned flags, origin_build_pt build, void *arg,
                           struct h1_msg *m);
/** Before the ring is submitted: send what streamed bodies added during
 * this batch of completions, one send per connection. */
void origin_flush(struct upstreams *us);
/** Settle the immediate request sends the kernel has taken (before the
 * ring is submitted, the CQ drained, like outq_imm_settle). */
void origin_imm_settle(struct upstreams *us);
/** Whether a send not settled yet would, once settled, do more than mark
 * its request sent (more of a streamed body to send or to ask for): the
 * loop must not sleep then. */
bool origin_imm_busy(const struct upstreams *us);
/** Completion for OP_UP_* ops. */
void origin_on_cqe(struct upstreams *us, const struct loop_cqe *cq);
/** Completion for OP_FILE_READ. */
void origin_on_file_cqe(struct upstreams *us, const struct loop_cqe *cq);
void origin_cleanup(struct upstreams *us);

#endif
