/* rt.h - the Lua runtime: script states (load, reload, retire), request
 * coroutines (start, resume, drop), and the bindings' entry points. */
#ifndef LURING_RT_H
#define LURING_RT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "lua/lbudget.h"

struct cache;
struct h1_server;
struct loop;
struct loop_cqe;
struct lreader;
struct lhttp;
struct ltimers;
struct lsock;
struct lpool;
struct resolver;
struct resolve_answer;
struct lua_State; /* lua.h stays out of the layers that include this */
struct origin;
struct req;
struct inval_watch;
struct req_pool;
struct upstreams;
struct worker;

#define LISTEN_MAX 32
#define LRT_ORIGIN_MT "luring.origin" /* metatable of luring.origin{} objects */

/* A loaded script: its Lua state and the references the runtime needs.
 * A reload makes a new one current; the old one is retired and closed
 * once nothing uses it (no coroutine, no queued Lua string). */
struct lstate {
    struct lua_State *L;
    int entry_ref;          /* luring._entry */
    int dispatch[LISTEN_MAX]; /* per listener: the app that serves it */
    unsigned ndispatch;
    uint32_t tcp_mask;      /* bit i: listener i is an app:tcp one, its
                             * dispatch[i] the handler function */
    int tcp_entry_ref;      /* luring._tcp_entry */
    unsigned live;          /* coroutine threads + referenced strings */
    struct lstate *next;    /* retired list */
    struct lmem mem;        /* its allocator: lua_max_memory */
};

/* A worker's Lua runtime: its scripts, the request whose coroutine runs,
 * and the caches and origins its scripts declared (bound by name, so a
 * reloaded script finds them again). One per worker thread. */
struct buf;

struct lrt {
    /* set by the worker before lrt_load */
    struct loop *loop;
    struct req_pool *rp;    /* the requests (a reload drops pooled threads) */
    struct h1_server *h1;   /* its connections (luring.conn_stats) */
    struct upstreams *up;   /* where origins declared here connect from */
    const char *script;
    const struct config *cfg; /* lua_budget, lua_max_memory, lua_jit */
    unsigned id;            /* worker number; worker 0 logs reloads */
    struct lbudget budget;  /* watched by the main thread (lbudget_watch) */
    /** luring.metrics()'s text: the process-wide exposition appended to
     * out (app/metrics.c). 0, or -1 when out of memory. NULL: none. */
    int (*metrics)(struct lrt *rt, struct buf *out);
    /** A raw TCP connection of listener i ended (its handler returned or
     * failed; its fd is closed). NULL: nothing to tell. */
    void (*tcp_end)(struct lrt *rt, unsigned listener);
    /* the runtime's own */
    struct lstate *lua;     /* the current script */
    struct lstate *retired; /* older scripts still finishing requests */
    struct lstate *loading; /* being loaded */
    struct req *cur;        /* the request whose coroutine is running */
    struct cache **caches;
    unsigned ncaches;
    struct origin **origins;
    unsigned norigins;
    struct cache *scratch;  /* uncached objects for origin:fetch */
    struct lreader *readers; /* open origin:request readers (l_origin.c) */
    struct lhttp *http;     /* luring.http's pools and lookups (l_origin.c),
                             * made on first use */
    struct req *delivering; /* the request whose deliver hook runs, or NULL */
    struct inval_watch *inval_watches; /* unsafe requests' responses awaited
                                        * for invalidation (l_inval.c) */
    uint64_t lua_errors;    /* handlers that failed (500, or a response
                             * cut short): luring_lua_errors_total */
    struct ltimers *timers; /* luring.timer's (l_timer.c), made on first use */
    struct lsock *socks;    /* every cosocket record (l_socket.c) */
    struct resolver *resolver; /* cosockets' name lookups, made on first
                                * use (io/resolve.h) */
    uint64_t resolved;      /* its eventfd's value, read by the ring */
    struct lpool *pool;     /* idle cosocket connections (setkeepalive) */
    unsigned npool;
};

/* A listener the script declares, the i-th (0-based), with its own
 * max_connections (0: none): accept it, or return -1 with a sentence in
 * err. */
typedef int (*lrt_listener_pt)(void *ud, unsigned i, const char *addr,
                               unsigned max_conns, char *err, size_t errlen);

/** Load the script into a fresh state, the JIT off while its main chunk
 * runs. With mem and cfg (a worker's state): its allocations are limited
 * to cfg->lua_max_memory and the JIT is then set as cfg->lua_jit says.
 * NULL and err on failure. */
struct lua_State *lrt_open(const char *script, struct lmem *mem,
                          const struct config *cfg, char *err, size_t errlen);
/** Read luring.config{} and the listeners from a loaded state. */
int lrt_read_config(struct lua_State *L, struct config *cfg, char *err, size_t errlen);
/** The script's listen addresses, in order: fn(ud, i, addr, err, errlen)
 * for each (NULL fn: just count). Returns how many, or -1 with err. */
int lrt_listeners(struct lua_State *L, lrt_listener_pt fn, void *ud, char *err,
                  size_t errlen);
/** Make rt this thread's runtime (what bindings called from Lua use; its
 * budget is what the watchdog sees of this thread). */
void lrt_set_current(struct lrt *rt);
/** Load rt->script into a new state; its listeners go to fn in order.
 * NULL and err on failure. */
struct lstate *lrt_load(struct lrt *rt, lrt_listener_pt fn, void *ud,
                        char *err, size_t errlen);
/** Reload the script: the new one must declare nlisteners listeners, each
 * accepted by fn (the same addresses). New requests run on the new state,
 * in-flight ones finish on the old. On failure the running script stays
 * (logged); -1. */
int lrt_reload(struct lrt *rt, lrt_listener_pt fn, void *ud,
               unsigned nlisteners);
void lrt_close_all(struct lrt *rt);
/** Run the handler for a parsed request. */
void lrt_start(struct req *r);
/** Resume r's coroutine with the nargs results its operation pushed (an
 * operation's resume, core/req.h), then parse pipelined input if the
 * response is complete. */
void lrt_continue(struct req *r, int nargs);
/** Run a timer's function on r, a request without a client (r->timer
 * set): the {run =, fn =, ...} table `ref` in ls's registry is called as
 * run(t, premature) on a coroutine of ls, and handled like a handler
 * (parks, wakes); its end, or its failure, goes to ltimer_run_end. */
void lrt_run_timer(struct req *r, struct lstate *ls, int ref, bool premature);
/** Is listener i served by an app:tcp handler in the current script? */
bool lrt_is_tcp(const struct lrt *rt, unsigned listener);
/** A connection fd accepted on app:tcp listener i: run its handler on a
 * request of the pool (docs/API.md "Raw TCP handlers"). The fd is the
 * run's from now on, closed when the handler ends (then rt->tcp_end).
 * 0, or -1 (out of memory; the fd is closed, tcp_end not called). */
int lrt_tcp_start(struct lrt *rt, int fd, unsigned listener);
/** Hold ls open (one more user); lrt_state_release lets it go, and closes
 * a retired state with its last user. */
void lrt_state_hold(struct lstate *ls);
void lrt_state_release(struct lrt *rt, struct lstate *ls);
/** An OP_SLEEP completion: wakes the request still sleeping on it. */
void lrt_sleep_done(struct lrt *rt, const struct loop_cqe *cq);
/** The coroutine's thread can't be reused (aborted mid-yield). */
void lrt_drop_thread(struct req *r);
/** seg_release_pt for a queued Lua string (its registry ref). */
void lrt_unref(struct worker *w, void *arg, intptr_t ref);
/** This thread's runtime, or NULL (checking a script at start-up). */
struct lrt *lrt_current(void);
/** The request behind the table at idx; raises unless it is active. */
struct req *lrt_check_req(struct lua_State *L, int idx);
/** A header value given from Lua at stack index vi (absolute): a string,
 * a number, or a list of them (one field line each). How many values. */
int lrt_values(struct lua_State *L, int vi);
/** Push value i (1-based) of vi and return it as a string of *vl bytes,
 * or NULL (*vl 0) when it is neither a string nor a number; the value
 * stays pushed either way (the caller pops it). */
const char *lrt_value(struct lua_State *L, int vi, int i, size_t *vl);

/* l_cache.c */
void lcache_open(struct lua_State *L);
/** Push an ended origin:fetch's results: status, headers, body | nil, err. */
int lcache_push_collected(struct lua_State *L, struct req *r);
/** A released subscriber (r->released) fetches its response on its own,
 * with the arguments of the cache:fetch it joined with; one released from
 * another variant's fill (r->relookup) looks the key up again first. */
void lcache_refetch(struct req *r);
void lcache_cleanup(struct lrt *rt);
/** The worker's cache of objects nobody looks up (origin:fetch and
 * origin:request responses, pass-throughs), made on first use; raises
 * when it can't be made. */
struct cache *lcache_scratch(struct lua_State *L, struct lrt *w);

/* l_inval.c: invalidation (RFC 9111 §4.4), on every worker */
/** Add purge, ban and purge_tag to the cache metatable (after lcache_open). */
void linval_open(struct lua_State *L);
/** Read luring.cache{}'s tag_header (table at index t) into c; raises
 * when it is not a field name. */
void linval_configure(struct lua_State *L, struct cache *c, int t);
/** Is r's method unsafe (not GET, HEAD, OPTIONS or TRACE: RFC 9110
 * §9.2.1), so that its success invalidates (RFC 9111 §4.4)? */
bool linval_unsafe(const struct req *r);
/** r was passed (its response in r->obj): when the response's head says
 * 2xx or 3xx, invalidate key (klen bytes) on every worker, and, if key ends
 * with target (the origin request's target), the keys made of key's start
 * plus the path of a same-host Location / Content-Location (core/inval.h).
 * 0; -1 when out of memory (nothing watched). */
int linval_watch(struct req *r, struct cache *c, const char *key,
                 size_t klen, const char *target, size_t tlen);
/** rt's worker stops: responses still awaited are let go (call after
 * origin_cleanup, before lcache_cleanup). */
void linval_unregister(struct lrt *rt);

/* l_origin.c */
/** Add origin:request to the origin metatable (made by lcache_open). */
void lorigin_open(struct lua_State *L);
/** r's handler is over (returned, failed or abandoned): the readers its
 * origin:request calls made are closed; a response not read to its end
 * stops and its origin connection is closed. */
void lorigin_req_end(struct req *r);
/** A deferred request (req_defer) that is not a released cache
 * subscriber: wake it if it waits on a reader whose head or next piece
 * has come. */
void lorigin_wake(struct req *r);
/** A deferred request parked in req:body() whose body ended at once (it
 * failed while the handler was still on the stack): resume it. false when
 * r is not parked there (nothing done). */
bool lrt_body_wake(struct req *r);
/** Close every reader (the worker ends; before the scratch cache goes),
 * free luring.http's pools (after origin_cleanup) and lookups. */
void lorigin_cleanup(struct lrt *rt);
#define LHTTP_POOLS_MAX 256 /* origins luring.http makes, per worker */
/** The origins luring.http.request made for addresses no declared origin
 * has (their counters, for metrics): the first max into out; how many
 * there are. */
unsigned lorigin_http_origins(const struct lrt *rt, const struct origin **out,
                              unsigned max);
/** A name luring.http.request looked up (lsock_resolve) was answered. */
void lorigin_resolved(struct lrt *rt, const struct resolve_answer *a);

/* l_socket.c: cosockets (docs/API.md "Cosockets") */
/** Add the socket metatable, and _socket_tcp to the luring.core table at
 * the top of L's stack. */
void lsock_open(struct lua_State *L);
/** An OP_COSOCK completion: its socket's operation ended. */
void lsock_on_cqe(struct lrt *rt, const struct loop_cqe *cq);
/** An OP_RESOLVED completion: the resolver's answers wake their sockets. */
void lsock_on_resolved(struct lrt *rt, const struct loop_cqe *cq);
/** Push a socket on L for the accepted connection fd (an app:tcp run's;
 * TCP_NODELAY set). NULL when out of memory (nothing pushed). */
struct lsock *lsock_push_server(struct lua_State *L, struct lrt *rt, int fd);
/** The run that owns s ended: its connection closes (at once, or when an
 * operation still in flight completes). */
void lsock_server_end(struct lsock *s);
/** Stop the resolver and free the records left (the worker ends, after
 * its states closed). */
void lsock_cleanup(struct lrt *rt);
/** Look host up on rt's resolver (made on first use) for luring.http:
 * tag's lowest bit set (a cosocket's tag is its aligned record); the
 * answer goes to lorigin_resolved. 0, or -1 with *err. */
int lsock_resolve(struct lrt *rt, const char *host, uint16_t port,
                  uint64_t tag, const char **err);

/* l_shdict.c */
/** Add luring.shared_dict{} and the luring.shared table to the
 * luring.core table at the top of L's stack (docs/API.md "Shared
 * dictionaries"). */
void lshdict_open(struct lua_State *L);
/* l_timer.c: luring.timer.at / every (docs/API.md "Timers") */
/** Add _timer_new, _timer_cancel, _timer_counts, _worker_id and
 * _worker_count to the core table on the top of the stack. */
void ltimer_open(struct lua_State *L);
/** An OP_TIMER completion: the timer whose slot and arming it names runs
 * (a stale or cancelled arming is dropped). */
void ltimer_on_cqe(struct lrt *rt, const struct loop_cqe *cq);
/** ls loaded (at start-up, or a reload that succeeded): arm the timers
 * its main chunk created. */
void ltimer_start(struct lrt *rt, struct lstate *ls);
/** ls failed to load and is being closed: forget its timers (their Lua
 * references go with the state). */
void ltimer_discard(struct lrt *rt, struct lstate *ls);
/** A reload replaced `old`: its pending timers run once more, now, with
 * premature = true; its running ones finish and never run again. */
void ltimer_reload(struct lrt *rt, struct lstate *old);
/** Graceful drain: every pending timer runs now with premature = true and
 * none runs again; new ones are refused unless their delay is 0. */
void ltimer_drain(struct lrt *rt);
/** Timers pending or running (a drain waits for none). */
unsigned ltimer_active(const struct lrt *rt);
/** r, a timer's run, ended: err is the failure (logged with the timer's
 * id), or NULL. Frees r (req_put) and re-arms an `every`. */
void ltimer_run_end(struct req *r, const char *err);
/** Free every timer (the worker ends, before its states close). */
void ltimer_cleanup(struct lrt *rt);

/* l_deliver.c */
/** Push a table of the header lines p[0..n) ("Name: value\r\n"...), plus
 * X-Cache: xcache when not NULL: lowercased names; a repeated field's
 * values joined with ", " (RFC 9110 §5.3), except Set-Cookie, always a
 * list of strings (RFC 6265 §3: its values can't be joined). Indexing it
 * with any case works (a metatable lowercases the names). `hook`: the
 * table is a deliver hook's view, which leaves Date out (luring sends the
 * origin's as it is). */
void lfields_push(struct lua_State *L, const char *p, size_t n,
                  const char *xcache, bool hook);
/** r's next head from a cache object goes through the deliver hook at
 * stack index fn, called as fn(req, res) with the request table at
 * req_idx (r->deliver_hook set). */
void ldeliver_set(struct lua_State *L, struct req *r, int fn, int req_idx);
/** req_pool.deliver: run r's deliver hook between http_head_begin and
 * http_head_end: it adds the fields (the object's lines `fields`, flen
 * bytes, and X-Cache: xcache) as the hook left them. 0, or -1 when the
 * hook failed (logged; the head is to be replaced by a 500). */
int ldeliver_call(struct req *r, int status, const char *fields, size_t flen,
                  const char *xcache);

#endif
