/* rt.h - the Lua runtime: script states (load, reload, retire), request
 * coroutines (start, resume, drop), and the bindings' entry points. */
#ifndef LURING_RT_H
#define LURING_RT_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"

struct loop_cqe;
struct lua_State; /* lua.h stays out of the layers that include this */
struct req;
struct worker;

#define LISTEN_MAX 32

/* A loaded script: its Lua state and the references the runtime needs.
 * A reload makes a new one current; the old one is retired and closed
 * once nothing uses it (no coroutine, no queued Lua string). */
struct lstate {
    struct lua_State *L;
    int entry_ref;          /* luring._entry */
    int dispatch[LISTEN_MAX]; /* per listener: the app that serves it */
    unsigned ndispatch;
    unsigned live;          /* coroutine threads + referenced strings */
    struct lstate *next;    /* retired list */
};

/** Load the script into a fresh state. NULL and err on failure. */
struct lua_State *lrt_open(const char *script, char *err, size_t errlen);
/** Read luring.config{} and the listeners from a loaded state. */
int lrt_read_config(struct lua_State *L, struct config *cfg, char *err, size_t errlen);
/** Listen addresses: calls fn(addr, app_dispatch_ref) for each. */
int lrt_listeners(struct lua_State *L, int (*fn)(void *ud, const char *addr, int ref),
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
/** Resume r's coroutine with the nargs results its operation pushed (an
 * operation's resume, core/req.h), then parse pipelined input if the
 * response is complete. */
void lrt_continue(struct req *r, int nargs);
/** An OP_SLEEP completion: wakes the request still sleeping on it. */
void lrt_sleep_done(struct worker *w, const struct loop_cqe *cq);
/** The coroutine's thread can't be reused (aborted mid-yield). */
void lrt_drop_thread(struct req *r);
void lrt_unref(struct worker *w, void *arg, intptr_t ref);
struct worker *lrt_worker(void);
/** The request behind the table at idx; raises unless it is active. */
struct req *lrt_check_req(struct lua_State *L, int idx);

/* l_cache.c */
void lcache_open(struct lua_State *L);
/** Push an ended origin:fetch's results: status, headers, body | nil, err. */
int lcache_push_collected(struct lua_State *L, struct req *r);
/** A released subscriber (r->released) fetches its response on its own,
 * with the arguments of the cache:fetch it joined with. */
void lcache_refetch(struct req *r);
void lcache_cleanup(struct worker *w);

#endif
