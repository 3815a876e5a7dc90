/* req.h - a request: its parsed head, its coroutine's handle, its
 * response state and its cache subscription; and the worker's pool of
 * request slots, with the list of requests to continue after the current
 * batch of completions. */
#ifndef LURING_REQ_H
#define LURING_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/buf.h"
#include "io/loop.h"
#include "http/h1_server.h"
#include "store/cache.h"

struct conn;
struct h1_server;
struct lstate;
struct ltimer;
struct lsock;
struct lua_State;
struct origin;
struct cond_parts;
struct req;
struct worker;

#define REQ_NO_REF (-2) /* co_ref when the request has no thread (LUA_NOREF) */

/* The one operation a parked request waits for. Each kind of operation
 * (a sleep, a drain, a cache subscription...) is one static instance,
 * defined by the code that starts it; core/req.c calls it and no other
 * module asks what a request waits for (OpenResty's per-operation resume
 * handler and cleanup). */
struct req_op {
    const char *name;                  /* "sleep", "drain", "cache"...: logs */
    /** The client is gone while parked: undo the operation (cancel the
     * timer, drop the subscription). true: nothing refers to r any more,
     * free it now; false: a completion still will (req_wake frees it). */
    bool (*cancel)(struct req *r);
    /** The operation completed: continue the handler (push the results,
     * resume the coroutine). */
    void (*resume)(struct req *r);
    /** Optional: the connection's output queue went down (a send
     * completed): a producer held back by it may go on. */
    void (*writable)(struct req *r);
};

/* What the access log says of a request besides its exchange (struct
 * h1_msg: method, target, fields, status, bytes): filled as it goes. */
struct req_log {
    int64_t start_us;       /* monotonic µs when its head was parsed; 0:
                             * not timed (no access log) */
    int up_status;          /* the origin's status for the fetch it caused
                             * (a miss, a pass, a revalidation); 0: none */
    int64_t up_head_us;     /* from that fetch's start to its head, µs; -1 */
    int64_t up_time_us;     /* ... to its end (or to the request's), µs; -1 */
    char addr[46];          /* the client's address when it ran (the log
                             * of a request whose client is gone) */
};

/* A request: parse state, its coroutine, response state. Pooled; the Lua
 * thread is reused while its previous run ended normally. */
struct req {
    uint32_t idx, gen;
    uint64_t id;            /* unique in the process (req_pool.id_next):
                             * req.id, X-Request-Id, the access log */
    struct req_log log;
    struct h1_msg m;        /* the HTTP exchange: m.c is NULL once the
                             * client is gone (aborted) */
    struct worker *w;
    struct req_pool *pool;  /* the pool it came from */
    /* coroutine */
    struct lstate *ls;      /* the script state co belongs to */
    struct lua_State *co;
    int co_ref;             /* registry ref anchoring co (REQ_NO_REF: none) */
    const struct req_op *op; /* what it is parked on, or NULL (req.c only) */
    void *op_arg;           /* the parked operation's own record, set by
                             * the code that parks it (a cosocket) */
    struct loop_ts ts;      /* sleep timeout, read by the kernel at submit */
    bool running;           /* handler started and not finished */
    bool aborted;           /* client gone; free at the pending op's CQE */
    /* response */
    bool broken;            /* body could not be completed: close */
    /* cache subscription (core/deliver.c) */
    struct cache_obj *obj;  /* subscribed object (one ref), or NULL */
    size_t obj_off;         /* body bytes of obj queued so far */
    size_t obj_end;         /* SIZE_MAX: the whole body; else the body
                             * sent ends here (a range, core/cond.c) */
    bool cond;              /* obj is a stored response: answer r's
                             * conditionals and Range from it (cond.c) */
    struct cond_parts *parts; /* a multipart/byteranges body being sent,
                               * or NULL (owned, freed with the
                               * subscription) */
    const char *xcache;     /* X-Cache header value, or NULL */
    bool sub_owner;         /* its fetch made the object: it gets the
                             * response even when it is not shareable */
    bool sub_watch;         /* r->sub is in obj's waiters: the object was
                             * not complete yet (a complete one never
                             * changes: nothing to be told, no lock) */
    bool sub_fill;          /* subscribed while the object was filling:
                             * X-Cache says what the fill turned out to be
                             * when it was a refresh (core/deliver.c) */
    bool released;          /* a joined fill was not shareable: waits
                             * (still parked) to fetch on its own */
    bool relookup;          /* released: the fill was another variant
                             * (RFC 9111 §4.1): looks up again */
    struct cache *fetch_cache;   /* a joiner's cache:fetch arguments, */
    struct origin *fetch_origin; /* kept to fetch on its own if released */
    struct buf fetch_kp;    /* key, path, then the Host its fills send
                             * (none: the client's) */
    uint32_t fetch_klen;
    uint32_t fetch_plen;
    bool deferred;          /* on the pool's deferred list */
    struct req *def_prev, *def_next;
    bool deliver_hook;      /* the next head from a cache object goes
                             * through req_pool.deliver (a script hook),
                             * outside any store notification (req_defer) */
    bool collect;           /* origin:fetch: wait for the whole object */
    struct cache_obj *collected; /* origin:fetch result (one ref) */
    struct store_waiter sub; /* watching obj (core/deliver.c) */
    struct h1_body_sink bsink; /* req:body(): reads the body into m.body */
    int body_status;        /* bsink's end: 0, an HTTP status, -1 gone;
                             * 1 while the read goes on */
    struct req *next_free;
    struct ltimer *timer;   /* a timer's run (lua/l_timer.c): no client,
                             * m.c NULL all along; NULL for requests (set
                             * and cleared by l_timer.c only) */
    struct lsock *tcp;      /* an app:tcp connection's run (lua/rt.c): its
                             * socket; m.c NULL all along, m.listener its
                             * listener; NULL for requests */
};

/* A worker's request slots: stable pointers, indexed by req->idx. */
struct req_pool {
    struct worker *w;       /* every request's r->w */
    struct req **reqs;
    unsigned n;
    struct req *free;
    struct req *deferred, *deferred_tail; /* see req_defer */
    void (*on_deferred)(struct req *r);   /* what a deferred request does */
    void (*drop)(struct req *r);  /* the handler layer abandons r's coroutine */
    /** r->deliver_hook: between http_head_begin and http_head_end of a
     * response from a cache object, add its fields (the object's lines
     * `fields`, flen bytes, and X-Cache: xcache unless NULL) as the
     * handler layer's hook edits them. 0, or -1 when it failed (logged):
     * the response becomes a 500. */
    int (*deliver)(struct req *r, int status, const char *fields,
                   size_t flen, const char *xcache);
    /** Optional: r is over (its response done, cut short, or its client
     * gone), called by req_put before its exchange is reset: the access
     * log writes its line. NULL: nothing is logged (and nothing timed). */
    void (*done)(struct req *r);
    uint64_t id_next;       /* the next request id: the worker number in
                             * the top 8 bits, a random start below */
};

/* v as 8 lowercase hex digits in the bytes of the result, in memory
 * order (req_id_hex). */
static inline uint64_t req_hex8(uint32_t v)
{
    /* the 8 nibbles of v into 8 bytes, least significant first, then
     * each to its digit ('a' - '0' - 10 = 39 above 9); no branch, no
     * table (this goes into every fill and pass request) */
    uint64_t x = v;
    x = (x | x << 16) & 0x0000ffff0000ffffull;
    x = (x | x << 8) & 0x00ff00ff00ff00ffull;
    x = (x | x << 4) & 0x0f0f0f0f0f0f0f0full;
    uint64_t over9 = ((x + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;
    return __builtin_bswap64(x + 0x3030303030303030ull + over9 * 39);
}

/** r->id as 16 lowercase hex digits at p (no NUL): req.id, the
 * X-Request-Id sent to origins, the access log's $request_id. */
static inline void req_id_hex(const struct req *r, char *p)
{
    uint64_t hi = req_hex8((uint32_t)(r->id >> 32));
    uint64_t lo = req_hex8((uint32_t)r->id);
    memcpy(p, &hi, 8);
    memcpy(p + 8, &lo, 8);
}

/** A fresh request from the pool, or NULL when out of memory. */
struct req *req_get(struct req_pool *p);
/** Back to the pool: its generation changes (late completions that name
 * it are dropped) and it leaves the deferred list. */
void req_put(struct req *r);
/** The request with slot idx, or NULL. */
struct req *req_at(const struct req_pool *p, uint32_t idx);
/** Continue r once the current batch of completions is handled (outside
 * any origin or store callback): req_run_deferred calls
 * p->on_deferred(r). Dropped if r is freed meanwhile. */
void req_defer(struct req *r);
/** Run the deferred requests, in order (they may defer more). */
void req_run_deferred(struct req_pool *p);

/* The lifecycle of a running request. Only these change r->op. */
/** r's handler yields until `op` completes. */
void req_park(struct req *r, const struct req_op *op);
/** Is r parked (on any operation)? */
bool req_parked(const struct req *r);
/** Is r parked on this very operation (a completion checks it is still
 * the one r waits for)? */
bool req_parked_on(const struct req *r, const struct req_op *op);
/** r's operation completed: continue it (op->resume), or free it if its
 * client went away meanwhile. */
void req_wake(struct req *r);
/** The connection's output queue went down: tell the operation. */
void req_writable(struct req *r);
/** The client is gone (r->c already NULL): free r, or cancel what it is
 * parked on and free it when nothing refers to it any more. A request
 * whose handler is on the stack is left to finish there. */
void req_abort(struct req *r);
/** Free every slot (the worker is ending). `each` is called first for
 * every slot, to drop what it holds. */
void req_pool_free(struct req_pool *p, void (*each)(struct req *r));

#endif
