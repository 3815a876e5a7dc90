/* server.h - a worker's state: connections, requests and the output queue,
 * shared by worker.c (the dispatcher), http.c (HTTP/1.1) and lua_rt.c
 * (request coroutines). */
#ifndef LURING_SERVER_H
#define LURING_SERVER_H

#include <http_parser.h>
#include <lua.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "buf.h"
#include "loop.h"

/* ==== configuration ==== */

struct config {
    unsigned workers;
    unsigned max_connections;  /* per worker; accept pauses at the limit */
    int64_t header_timeout_ms; /* whole request head (408) */
    int64_t idle_timeout_ms;   /* keep-alive idle */
    int64_t body_timeout_ms;   /* between body reads (408) */
    int64_t send_timeout_ms;   /* no send progress: close */
    size_t max_header_size;    /* request head bytes excluding URI (431) */
    size_t max_uri_size;       /* (414) */
    size_t max_body_size;      /* (413) */
};

void config_defaults(struct config *cfg);

/* ==== operations (user_data op field) ==== */

enum op {
    OP_ACCEPT = 1, /* idx = listener */
    OP_RECV,       /* idx = connection */
    OP_SEND,       /* idx = connection */
    OP_CLOSE,      /* nothing to do on completion */
    OP_CANCEL,     /* nothing to do on completion */
    OP_TICK,       /* the worker's 100 ms timer */
    OP_SLEEP,      /* idx = request: luring.sleep() */
    OP_WAKE,       /* the worker's stop eventfd */
    OP_UP_CONNECT, /* idx = upstream connection */
    OP_UP_SEND,    /* idx = upstream connection */
    OP_UP_RECV,    /* idx = upstream connection */
    OP_FILE_READ,  /* idx = upstream slot reading a file */
    OP_INOTIFY,    /* --watch: the script's directory changed */
};

/* worker->ctl bits, set by another thread before it writes wake_fd */
enum { CTL_STOP = 1, CTL_RELOAD = 2 };

/* ==== output queue ==== */

struct worker;
typedef void (*seg_release_pt)(struct worker *w, void *arg, intptr_t aux);

/* One piece of queued output, in order. Small data is copied into the
 * queue's byte buffer (p == NULL, off into it); large data is referenced
 * (p != NULL) and its owner is told by `release` once the kernel is done
 * with it, i.e. after the send completion that covered its last byte. */
struct seg {
    const char *p;
    size_t off;
    size_t len;
    seg_release_pt release; /* NULL: nothing to release */
    void *arg;
    intptr_t aux;
};

struct segq {
    struct buf bytes;  /* copied data */
    struct seg *segs;
    unsigned n, cap;
};

struct outq {
    struct segq q;       /* queued, not yet handed to the kernel */
    struct segq flight;  /* owned by the kernel until OP_SEND completes */
    struct iovec iov[64];
    unsigned iov_n, iov_i; /* iov[iov_i..iov_n) still to send */
    unsigned seg_next;   /* next flight segment not yet in iov */
    struct msghdr msg;
    size_t flight_left;  /* bytes of `flight` not yet sent */
    size_t queued;       /* bytes in q */
    uint32_t imm_pos;    /* CF_SEND_IMM: SQ position of the send */
    int imm_len;         /* CF_SEND_IMM: its length */
};

/* ==== connections ==== */

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
    CF_RECV_ARMED = 1 << 0,  /* a multishot recv is in flight */
    CF_RECV_REARM = 1 << 1,  /* on the rearm list (ENOBUFS / ended) */
    CF_RECV_PAUSED = 1 << 2, /* input buffer full: recv cancelled */
    CF_SENDING = 1 << 3,     /* an OP_SEND is in flight */
    CF_DIRTY = 1 << 4,       /* on the flush list */
    CF_IN_HEAD = 1 << 5,     /* bytes of a request head have arrived */
    CF_MSG_DONE = 1 << 6,    /* parser paused at a complete message */
    CF_CLOSE_AFTER = 1 << 7, /* close once the response is sent */
    CF_SEND_IMM = 1 << 8,    /* the send in flight is immediate (outq.c) */
};

/* Timer lists: every member of one list has the same timeout, so appending
 * at the tail keeps each list sorted by deadline. */
enum tlist { TL_NONE, TL_HEAD, TL_IDLE, TL_BODY, TL_SEND, TL_LINGER, TL_N };

struct req;

struct conn {
    int fd;
    uint32_t idx;           /* slot index, in user_data */
    uint32_t gen;           /* bumped at close: drops stale completions */
    uint16_t flags;
    uint16_t inflight;      /* ops in flight; slot freed only at 0 */
    enum conn_state state;
    struct worker *w;
    unsigned listener;
    struct req *req;        /* request being parsed or handled */
    http_parser parser;
    struct buf in;          /* received, not yet parsed (pipelined input) */
    struct outq out;
    /* timers */
    enum tlist tl;
    int64_t deadline;
    struct conn *tprev, *tnext;
    /* work lists */
    struct conn *next_dirty;  /* flush list (CF_DIRTY) */
    struct conn *next_rearm;  /* rearm list (CF_RECV_REARM) */
    struct conn *next_free;
    struct conn *imm_prev, *imm_next; /* immediate sends (CF_SEND_IMM) */
};

/* ==== requests ==== */

#define REQ_MAX_HEADERS 100

struct hdr {
    uint32_t name, nlen, val, vlen; /* offsets into req->head */
};

/* What a request's coroutine is waiting for. */
enum req_wait {
    RW_NONE,
    RW_SLEEP, /* luring.sleep: OP_SLEEP timeout armed */
    RW_DRAIN, /* req:write: output queue above the high-water mark */
    RW_CACHE, /* cache:fetch / origin:fetch: subscribed to an object */
};

/* A request: parse state, its coroutine, response state. Pooled; the Lua
 * thread is reused while its previous run ended normally. */
struct req {
    uint32_t idx, gen;
    struct conn *c;         /* NULL once the client is gone (aborted) */
    struct worker *w;
    /* coroutine */
    struct lstate *ls;      /* the script state co belongs to */
    lua_State *co;
    int co_ref;             /* registry ref anchoring co (LUA_NOREF: none) */
    enum req_wait wait;
    struct loop_ts ts;      /* sleep timeout, read by the kernel at submit */
    bool running;           /* handler started and not finished */
    bool aborted;           /* client gone; free at the pending op's CQE */
    /* parsed request */
    struct buf head;        /* URL, then header names and values */
    uint32_t url_len;
    struct hdr hdrs[REQ_MAX_HEADERS];
    unsigned nhdrs;
    bool last_was_value;    /* http_parser header callback state */
    size_t head_bytes;      /* counted against max_header_size */
    struct buf body;
    uint8_t method;
    uint8_t http_minor;
    bool keep_alive;
    bool is_head;           /* HEAD: no body in the response */
    bool head_lost;         /* out of memory building the head: no body */
    int64_t content_length; /* -1: none */
    /* response */
    int status;
    bool head_sent;
    bool chunked;           /* response body uses chunked framing */
    int64_t resp_left;      /* streamed with Content-Length: bytes owed */
    bool broken;            /* body could not be completed: close */
    unsigned dispatch;      /* listener index: which app handles it */
    /* cache subscription (serve.c) */
    struct cache_obj *obj;  /* subscribed object (one ref), or NULL */
    size_t obj_off;         /* body bytes of obj queued so far */
    const char *xcache;     /* X-Cache header value, or NULL */
    bool sub_owner;         /* its fetch made the object: it gets the
                             * response even when it is not shareable */
    bool released;          /* a joined fill was not shareable: waits
                             * (still RW_CACHE) to fetch on its own */
    struct cache *fetch_cache;   /* a joiner's cache:fetch arguments, */
    struct origin *fetch_origin; /* kept to fetch on its own if released */
    struct buf fetch_kp;    /* key then path */
    uint32_t fetch_klen;
    bool deferred;          /* on the worker's deferred list */
    struct req *def_prev, *def_next;
    bool collect;           /* origin:fetch: wait for the whole object */
    struct cache_obj *collected; /* origin:fetch result (one ref) */
    struct req *next_sub;
    struct req *next_free;
};

/* ==== the worker ==== */

#define LISTEN_MAX 32

struct listener {
    int fd;
    char addr[64];
    bool accepting;
};

/* A loaded script: its Lua state and the references the runtime needs.
 * A reload makes a new one current; the old one is retired and closed
 * once nothing uses it (no coroutine, no queued Lua string). */
struct lstate {
    lua_State *L;
    int entry_ref;          /* luring._entry */
    int dispatch[LISTEN_MAX]; /* per listener: the app that serves it */
    unsigned ndispatch;
    unsigned live;          /* coroutine threads + referenced strings */
    struct lstate *next;    /* retired list */
};

struct worker {
    unsigned id;
    struct loop *loop;
    struct lstate *lua;     /* the current script */
    struct lstate *retired; /* older scripts still finishing requests */
    struct lstate *loading; /* being loaded (listener callback) */
    _Atomic unsigned ctl;   /* CTL_* requests from other threads */
    struct worker *all;     /* every worker (for --watch), nall of them */
    unsigned nall;
    bool watch;             /* reload when the script file changes */
    int inotify_fd;
    char inotify_buf[4096];
    const struct config *cfg;
    const char *script;
    const char *listen_override;
    struct listener *ls;
    unsigned nls;
    bool accept_paused;
    /* connections */
    struct conn **conns;    /* stable pointers, indexed by conn->idx */
    unsigned nslots, nconns;
    struct conn *free_conns;
    struct conn *dirty, *rearm;
    struct conn *imm_head, *imm_tail; /* immediate sends, in SQ order */
    struct conn *tl_head[TL_N], *tl_tail[TL_N];
    int64_t tl_timeout[TL_N];
    /* requests */
    struct req **reqs;
    unsigned nreqs;
    struct req *free_reqs;
    struct req *cur;        /* the request whose coroutine is running */
    struct req *deferred, *deferred_tail; /* to continue after this batch
                                           * of completions (worker_defer) */
    /* timers */
    struct loop_ts tick_ts;
    int wake_fd;
    uint64_t wake_buf;
    char date[40];          /* "Date: ...\r\n", refreshed each second */
    size_t date_len;
    struct buf rhead;       /* response head being built (http.c) */
    bool rhead_oom;
    int64_t date_sec;
    /* origins and caches */
    struct upconn **ups;    /* upstream connections / file reads */
    unsigned nups;
    struct upconn *free_ups;
    struct cache **caches;
    unsigned ncaches;
    struct origin **origins;
    unsigned norigins;
    struct cache *scratch;  /* uncached objects for origin:fetch */
    /* start-up report */
    char err[1024];
    bool stopping;
};

/* ==== worker.c ==== */
struct conn *worker_conn(struct worker *w, uint32_t idx);
void conn_touch(struct conn *c, enum tlist tl);
void conn_mark_dirty(struct conn *c);
void conn_close(struct conn *c);
void conn_pause_recv(struct conn *c);
void conn_resume_recv(struct conn *c);
struct req *req_get(struct worker *w);
void req_put(struct req *r);
/** Continue r once the current batch of completions is handled (outside
 * any origin or store callback): a released cache subscriber fetches on
 * its own (lcache_refetch). Dropped if r is freed meanwhile. */
void worker_defer(struct req *r);
/** Set up ring, Lua state and listeners on the calling thread. 0, or -1
 * with w->err filled. */
int worker_run(struct worker *w);
void worker_loop(struct worker *w);
void worker_cleanup(struct worker *w);
/** Make w reachable by worker_signal_all (before its thread starts). */
void worker_register(struct worker *w);
/** Ask every worker to stop or reload (any thread). */
void worker_signal_all(unsigned ctl);

/* ==== outq.c ==== */
void outq_copy(struct conn *c, const void *p, size_t len);
void outq_ref(struct conn *c, const char *p, size_t len, seg_release_pt rel,
              void *arg, intptr_t aux);
/** Hand queued output to the kernel unless a send is in flight. */
void outq_flush(struct conn *c);
/** A send completed with `res` bytes (or -errno). Returns 0 when
 * everything queued is sent, 1 when more is being sent (the rest of a
 * short send, or what was queued meanwhile), -1 on error. */
int outq_sent(struct conn *c, int res);
/** The send completion arrived for a closed connection: forget the send
 * (its buffers are released with outq_release_all). */
void outq_send_gone(struct conn *c);
/** Immediate sends (loop_send_imm) post no completion when they went
 * whole. Call with every completion in the CQ handled: for each such send
 * the kernel has taken (and no completion overflow), passes `done` the
 * completion it would have posted, in SQ order. `done` is the OP_SEND
 * handler (or the dispatcher) and may queue more sends. */
void outq_imm_settle(struct worker *w, loop_cqe_pt done, void *ctx);
/** An immediate send still waits to be settled and settling it would
 * do more than free its buffers (data queued behind it, input waiting,
 * a handler waiting for the queue to drain, a closing connection). */
bool outq_imm_busy(const struct worker *w);
size_t outq_pending(const struct conn *c);
void outq_release_all(struct conn *c);
void outq_free(struct conn *c);

/* ==== http.c ==== */
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
const char *req_header(const struct req *r, const char *name, size_t nlen,
                       size_t *vlen);

/* ==== lua_rt.c ==== */
/** Load the script into a fresh state. NULL and err on failure. */
lua_State *lrt_open(const char *script, char *err, size_t errlen);
/** Read luring.config{} and the listeners from a loaded state. */
int lrt_read_config(lua_State *L, struct config *cfg, char *err, size_t errlen);
/** Listen addresses: calls fn(addr, app_dispatch_ref) for each. */
int lrt_listeners(lua_State *L, int (*fn)(void *ud, const char *addr, int ref),
                  void *ud, char *err, size_t errlen);
void lrt_set_worker(struct worker *w);
/** Load the script into a new state; listeners are reported to
 * fn(ud, addr, index) in order (see lrt_listeners). NULL and err on
 * failure. */
struct lstate *lrt_load(struct worker *w,
                        int (*fn)(void *ud, const char *addr, int ref),
                        char *err, size_t errlen);
/** Reload the script: new requests run on the new state, in-flight ones
 * finish on the old. On failure the running script stays (logged). */
int lrt_reload(struct worker *w);
void lrt_close_all(struct worker *w);
/** Run the handler for a parsed request. */
void lrt_start(struct req *r);
/** Resume a coroutine whose wait is over. */
void lrt_resume(struct req *r);
/** The coroutine's thread can't be reused (aborted mid-yield). */
void lrt_drop_thread(struct req *r);
void lrt_unref(struct worker *w, void *arg, intptr_t ref);

/* ==== serve.c ==== */
struct cache_obj;
/** Subscribe r to o's response (HIT, COALESCED or MISS in X-Cache). owner:
 * r's own fetch fills o, so r gets the response even if it turns out not
 * shareable; other subscribers are then released (worker_defer). */
void serve_subscribe(struct req *r, struct cache_obj *o, const char *xcache,
                     bool owner);
/** Queue a whole plain-text error response with `status` for r. */
void serve_error(struct req *r, int status);
void serve_unsubscribe(struct req *r);
void serve_pump(struct req *r);
void serve_obj_event(struct cache_obj *o);

/* ==== origin.c / lua_cache.c ==== */
void origin_on_file_cqe(struct worker *w, const struct loop_cqe *cq);
void lcache_open(lua_State *L);
/** A released subscriber (r->released) fetches its response on its own,
 * with the arguments of the cache:fetch it joined with. */
void lcache_refetch(struct req *r);
/** Push an ended origin:fetch's results: status, headers, body | nil, err. */
int lcache_push_collected(lua_State *L, struct req *r);
void lcache_cleanup(struct worker *w);
struct worker *lrt_worker(void);
/** The request behind the table at idx; raises unless it is active. */
struct req *lrt_check_req(lua_State *L, int idx);

/* ==== log ==== */
void log_msg(const char *level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#define log_err(...)  log_msg("error", __VA_ARGS__)
#define log_warn(...) log_msg("warn", __VA_ARGS__)
#define log_info(...) log_msg("info", __VA_ARGS__)

#endif
