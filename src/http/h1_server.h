/* h1_server.h - HTTP/1.1 client connections: strict request parsing
 * (h1_parse.h) with limits,
 * pipelining (one request handled at a time, responses in order),
 * keep-alive, lingering close, error responses, response framing
 * (Content-Length or chunked). */
#ifndef LURING_H1_SERVER_H
#define LURING_H1_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/budget.h"
#include "base/buf.h"
#include "base/config.h"
#include "http/h1_parse.h"
#include "io/outq.h"
#include "io/stream.h"
#include "io/timer.h"

struct h1_msg;
struct h1_server;
struct worker;

#define H1_MAX_HEADERS 100

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
    CF_RD_EOF = 1 << 6,      /* the client sent its FIN: answer what it
                                asked in full, then close */
    CF_CLOSE_AFTER = 1 << 7, /* close once the response is sent */
    CF_BUDGET_WAIT = 1 << 8, /* on the budget list: input paused until the
                                connection buffers are below the budget */
    CF_DISCARD = 1 << 9,     /* reading the unread body of a request already
                                answered, to drop it (keep-alive) */
    CF_PARSING = 1 << 10,    /* run_input walks its input: body bytes are
                                taken from `in` only once it is done */
};

/* Which timeout a connection waits under (io/timer.h queues, one per
 * configured timeout). */
enum tlist { TL_NONE, TL_HEAD, TL_IDLE, TL_BODY, TL_SEND, TL_LINGER, TL_N };

struct conn {
    struct stream s;        /* fd, slot, generation, ops in flight */
    uint16_t flags;
    enum conn_state state;
    struct h1_server *srv;
    unsigned listener;
    struct h1_msg *msg;     /* the exchange being parsed or handled */
    /* the request being parsed */
    uint8_t rstate;         /* RS_HEAD, RS_LENGTH, RS_CHUNKED, RS_BROKEN */
    struct h1_scan scan;    /* RS_HEAD: how far its end was looked for */
    int64_t body_left;      /* RS_LENGTH: body bytes still to come */
    int64_t body_read;      /* decoded body bytes so far (max_body_size) */
    size_t body_room;       /* body bytes its consumer takes now */
    struct h1_chunked chunk; /* RS_CHUNKED: the decoder */
    struct buf in;          /* received, not yet parsed (pipelined input) */
    const char *pend;       /* CF_PARSING: the input after the head of the
                             * request being run, which its body may be
                             * taken from at once (pend_used bytes) */
    size_t pend_len, pend_used;
    size_t in_held;         /* what `in` has charged the budget */
    struct outq out;
    /* timeout */
    enum tlist tl;
    struct timer timer;
    /* work lists */
    struct conn *next_dirty;  /* flush list (CF_DIRTY) */
    struct conn *next_rearm;  /* rearm list (CF_RECV_REARM) */
    struct conn *next_wait;   /* budget list (CF_BUDGET_WAIT) */
    struct conn *next_free;
    /* the client's address and port as text, read on first use (h1_peer:
     * one getpeername per connection, not per request); "" until then */
    char peer[46];
    uint16_t peer_port;
};

/* What the HTTP layer needs from the layers above it (filled by the worker
 * at start-up): it never calls them directly. */
/* One request and its response on a connection, as HTTP sees them: the
 * parsed request head and body, and the response's framing. The layer
 * above embeds it in its own request (core/req.h) and makes it through
 * h1_server_ops.request. */
/* The consumer of a request body that is read as it arrives (struct
 * h1_msg's sink): an origin request streaming it, or a whole-body read. */
struct h1_body_sink {
    /** n decoded body bytes at p (valid during the call only). Returns how
     * many more bytes it takes now; 0: it has no room, h1_body_more tells
     * when it has. NULL: the bytes are appended to m->body (a whole-body
     * read; max_body_size bounds it). */
    size_t (*data)(struct h1_body_sink *s, const char *p, size_t n);
    /** The body ended and the sink is detached: 0 complete; an HTTP status
     * when it failed: 400 malformed chunked framing, 408 body_timeout,
     * 413 max_body_size (RFC 9110 §15.5.14), 503 out of memory (the
     * exchange will not keep its connection); -1 the client is gone (the
     * exchange is being aborted: don't answer). May run inside any
     * h1_server call that reads input. */
    void (*end)(struct h1_body_sink *s, int status);
};

/* Where a request's body is (struct h1_msg's body_st). */
enum h1_body_st {
    H1_BODY_NONE,     /* no body (none announced, or Content-Length: 0) */
    H1_BODY_UNREAD,   /* announced, not demanded yet: arriving bytes wait in
                         the connection's input buffer (bounded, then the
                         receive pauses) */
    H1_BODY_READING,  /* a sink takes it as it arrives */
    H1_BODY_READ,     /* complete, in m->body (a whole-body read) */
    H1_BODY_PASSED,   /* complete, handed to a sink that took it along */
    H1_BODY_STOPPED,  /* its sink stopped part-way (h1_body_stop): the rest
                         is discarded or the connection closes */
    H1_BODY_FAILED,   /* failed (body_err) or the client is gone */
};

struct h1_msg {
    struct conn *c;         /* NULL once the client is gone */
    struct h1_server *srv;  /* the server that parsed it */
    unsigned listener;      /* which listener it came in on */
    /* the request */
    struct buf head;        /* the head as received (h1_parse.h) */
    uint32_t url_off, url_len; /* the request target in head */
    uint32_t method_off, method_len; /* the method in head */
    struct hdr hdrs[H1_MAX_HEADERS]; /* field lines, offsets into head */
    unsigned nhdrs;
    struct buf body;        /* after a whole-body read (h1_body_read) */
    size_t held;            /* what head and body have charged srv->budget */
    struct h1_body_sink *sink; /* H1_BODY_READING: its consumer */
    uint8_t body_st;        /* enum h1_body_st */
    bool body_chunked;      /* the client framed it chunked (else by
                             * content_length) */
    bool expect;            /* Expect: 100-continue, 100 not sent yet */
    int body_err;           /* H1_BODY_FAILED: the status, -1 gone */
    uint8_t method;         /* enum h1_method */
    uint8_t http_minor;
    bool keep_alive;
    bool is_head;           /* HEAD: no body in the response */
    int64_t content_length; /* -1: none */
    /* the If-* and Range lines among hdrs, as h1_parse_head noted them
     * (struct h1_head: bit k of enum h1_pre, index of the first) */
    uint8_t pre_seen, pre_many;
    uint8_t pre_first[H1P_N];
    /* the response */
    int status;             /* also a parse error's (413, 414, 431...) */
    bool head_sent;
    bool head_lost;         /* out of memory building the head: no body */
    bool chunked;           /* the body uses chunked framing */
    bool fixed_len;         /* the head announced a Content-Length */
    int64_t resp_left;      /* fixed_len: body bytes still owed */
    uint64_t out_head;      /* response bytes queued: the head, */
    uint64_t out_body;      /* and the body with its chunk framing */
};

/** Ready for a new request (its buffers are kept). */
void h1_msg_reset(struct h1_msg *m);
/** Give back memory above what a typical request needs, and the budget
 * its buffers were charged with (an exchange in the pool is not counted). */
void h1_msg_trim(struct h1_msg *m);
void h1_msg_free(struct h1_msg *m);

struct h1_server_ops {
    /** A request begins on a connection: a fresh exchange (reset), or NULL
     * when out of memory (the connection gets a 503... or closes). */
    struct h1_msg *(*request)(struct worker *w);
    /** m's head is parsed: run its handler (the body, if any, is read as
     * the handler demands it: h1_body_start). The response may be
     * complete when it returns (http_response_done) or come later. */
    void (*run)(struct h1_msg *m);
    /** m is over (its response is done, or it never got to run). */
    void (*release)(struct h1_msg *m);
    /** m's connection queue went down (a send completed). */
    void (*writable)(struct h1_msg *m);
    /** m's client is gone while it runs (m->c is NULL already). */
    void (*abort)(struct h1_msg *m);
    /** A connection from `listener` is gone; nconns are left open (the
     * worker accepts again below its limits). */
    void (*conn_freed)(struct worker *w, unsigned listener, unsigned nconns);
};

/* A worker's HTTP/1.1 server: its client connections (slots, the lists of
 * those to flush and to re-arm, their timeouts), the Date header and the
 * buffer response heads are built in. Only h1_server.c changes a
 * connection's state. */
struct h1_server {
    /* set by the worker before h1_server_init */
    struct loop *loop;
    const struct config *cfg;
    const struct h1_server_ops *ops;
    struct worker *w;       /* opaque: what ops and release callbacks get */
    struct budget_local budget; /* every worker's connection buffers (.all
                               NULL: not counted): input, request heads and
                               bodies, copied output, bounded by
                               cfg->conn_buffer_budget */
    bool stopping;          /* the worker is ending: no keep-alive, no accept */
    bool draining;          /* graceful drain (h1_server_drain): responses
                             * end their connection, idle ones are closed */
    /* its own */
    struct outq_imm imm;    /* immediate sends, in SQ order */
    struct timer_queue *tq[TL_N]; /* the connections' timeouts */
    struct conn **conns;    /* stable pointers, indexed by conn->s.idx */
    unsigned nslots, nconns;
    struct conn *free_conns;
    struct conn *dirty, *rearm;
    struct conn *budget_wait; /* paused until the budget has room */
    int64_t budget_logged;  /* loop_now of the last "over budget" line */
    char date[40];          /* "Date: ...\r\n", refreshed each second */
    size_t date_len;
    int64_t date_sec;
    struct buf rhead;       /* the response head being built */
    bool rhead_oom;
};

/** Timer queues for the connections' timeouts in `timers`; the Date
 * header. 0, or -1 when out of memory. */
int h1_server_init(struct h1_server *srv, struct timers *timers);
/** Close every connection's fd and free the slots (the worker ends). */
void h1_server_free(struct h1_server *srv);
/** A new client connection on fd (from listener `listener`); NULL when
 * out of memory or stopping (fd closed). */
struct conn *h1_accept(struct h1_server *srv, int fd, unsigned listener);
/** Completions of OP_RECV and OP_SEND. */
void h1_on_recv(struct h1_server *srv, const struct loop_cqe *cq);
void h1_on_send(struct h1_server *srv, const struct loop_cqe *cq);
/** Before the ring is submitted: re-arm receives, hand queued output to
 * the kernel (one send per connection per iteration). */
void h1_before_sleep(struct h1_server *srv);
/** An immediate send waits to be settled and settling it would do more
 * than free its buffers: the loop must not sleep. */
bool h1_imm_busy(const struct h1_server *srv);
/** Graceful drain: from now on every response closes its connection
 * ("Connection: close"), and connections idle between requests (nothing
 * received of a next request, nothing left to send) are closed; call
 * again (each tick) to close those that became idle since. Connections
 * receiving a request head, running a handler or sending a response go
 * on. Returns how many connections are still open. */
unsigned h1_server_drain(struct h1_server *srv);
/** Refresh the Date header (once a second is enough). */
void h1_refresh_date(struct h1_server *srv);

/* Connection state, changed only here. */
void conn_touch(struct conn *c, enum tlist tl);
void conn_mark_dirty(struct conn *c);
void conn_close(struct conn *c);
void conn_pause_recv(struct conn *c);
void conn_resume_recv(struct conn *c);

void http_conn_init(struct conn *c);
/** New bytes for c. `p` is borrowed: anything kept is copied. */
void http_on_data(struct conn *c, const char *p, size_t len);
/** Parse buffered pipelined input, if the connection can take it. */
void http_process(struct conn *c);
/** Timer list `tl` expired for c. */
void http_on_timeout(struct conn *c, enum tlist tl);
/** A send completed; `all`: the out queue is now empty. */
void http_on_sent(struct conn *c, bool all);
/** Start m's response head: the status line, Server and the server's
 * Date. */
void http_head_begin(struct h1_msg *m, int status);
/** Like http_head_begin; `date` false leaves Date out (the fields added
 * next carry the origin's, RFC 9110 §6.6.1). */
void http_head_begin_at(struct h1_msg *m, int status, bool date);
/** Add a header line; -1 (nothing added) when the name is not a token or
 * the value holds a control character other than HTAB (CR, LF, NUL, VT,
 * DEL...: RFC 9110 §5.5, field_value_ok). */
int http_head_add(struct h1_msg *m, const char *name, size_t nlen,
                  const char *val, size_t vlen);
/** content_length < 0: chunked. */
void http_head_end(struct h1_msg *m, int64_t content_length);
/** Header lines as they are ("Name: value\r\n"...), between begin and end. */
void http_head_raw(struct h1_msg *m, const char *p, size_t n);
/** Queue body bytes. With a Content-Length, nothing beyond it is ever
 * sent (a handler can't append a forged response for the next request):
 * the excess is dropped, logged, and the connection closes after this
 * response. rel(arg, aux), when given, once the kernel is done with p. */
void http_body(struct h1_msg *m, const char *p, size_t len, seg_release_pt rel,
               void *arg, intptr_t aux);
/** Response complete (chunked terminator added when needed). */
void http_response_done(struct h1_msg *m);
/** Handler failed after the head was sent: what is queued (earlier
 * pipelined responses, the start of this one) is sent, then the
 * connection closes, cutting this response short. */
void http_response_abort(struct h1_msg *m);
const char *http_reason(int status);

/* ==== request bodies, read as they arrive ====
 * The handler runs once the head is parsed. Body bytes that arrive before
 * anyone demands them wait in the connection's input buffer, at most
 * IN_LIMIT (64 KiB or one head), then the receive pauses. A demand sends
 * 100 Continue first when the client asked for it (RFC 9110 §10.1.1). The
 * body is decoded from its framing (RFC 9112 §6.3, §7.1) and bounded by
 * max_body_size (413) and body_timeout (408). A body nobody read is
 * discarded at the response's end when the connection stays open (read
 * and dropped under the same bounds), or the connection closes; the next
 * pipelined request is parsed only after the body's end. */

/** Stream m's body to s, which takes `room` bytes now. Sends 100 Continue
 * if the client expects it. s->end may run before this returns (the body
 * was all buffered, or failed). 0, or -1 when the body is not there to
 * read: none, already read, streamed or failed (s is not attached). */
int h1_body_start(struct h1_msg *m, struct h1_body_sink *s, size_t room);
/** The sink has room for `room` more bytes: buffered bytes go to it now,
 * and the receive goes on. Its data/end may run before this returns. */
void h1_body_more(struct h1_msg *m, size_t room);
/** The sink wants no more (its origin failed or answered): detached
 * without its end; the rest of the body is discarded or the connection
 * closes at the response's end. */
void h1_body_stop(struct h1_msg *m);
/** s takes the place of the attached sink (a retry on a new origin
 * connection). */
void h1_body_move(struct h1_msg *m, struct h1_body_sink *s);
/** The client's address (text, into addr[n]) and port: 0, or -1 when the
 * client is gone or the socket has no peer (getpeername each call). */
int h1_peer(const struct h1_msg *m, char *addr, size_t n, int *port);
/** A request header's value (name case-insensitive), or NULL. */
const char *h1_header(const struct h1_msg *m, const char *name, size_t nlen,
                       size_t *vlen);

#endif
