/* worker.h - a worker thread: its ring, Lua state, listeners, connection
 * and request slots, timer lists, origins and caches; the completion
 * dispatcher. */
#ifndef LURING_WORKER_H
#define LURING_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "base/config.h"
#include "base/buf.h"
#include "core/origin.h"
#include "core/req.h"
#include "http/h1_server.h"
#include "io/loop.h"
#include "io/ops.h"
#include "lua/rt.h"


/* worker->ctl bits, set by another thread before it writes wake_fd */
enum { CTL_STOP = 1, CTL_RELOAD = 2,
       CTL_DRAIN = 8, /* graceful drain: stop accepting, finish what runs */
       CTL_REOPEN = 16, /* SIGUSR1: reopen the access log */
       CTL_STORE = 32 /* shared caches' waiters queued (store/wake.h) */ };

struct listener {
    int fd;
    char addr[64];
    bool accepting;
    bool full;          /* at its own max_connections: not accepting */
    bool backoff;       /* accept failed (no fd left, EMFILE...): not
                           accepting until the next tick */
    unsigned max_conns; /* its own limit in this worker (0: none) */
    unsigned nconns;    /* its connections open in this worker */
};

struct worker {
    unsigned id;
    struct loop *loop;
    struct lrt lrt;         /* its Lua runtime: scripts, caches, origins */
    _Atomic unsigned ctl;   /* CTL_* requests from other threads */
    bool draining;          /* CTL_DRAIN came: listeners closed */
    _Atomic bool drained;   /* draining and no connection left (read by
                             * the main thread) */
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
    unsigned ntcp;          /* app:tcp connections running (lua/rt.c) */
    struct h1_server h1;    /* client connections */
    struct timers timers;   /* every timeout: connections, origins */
    /* requests */
    struct req_pool rp;
    /* timers */
    struct loop_ts tick_ts;
    int wake_fd;
    uint64_t wake_buf;
    int ring_fd;            /* its ring's fd, for messages from other
                             * workers (loop_msg_ring); -1 before */
    /* origins and caches */
    struct upstreams up;    /* upstream connections / file reads */
    struct alog *alog;      /* its access log (app/accesslog.h) */
    struct wmetrics *met;   /* its metrics (app/metrics.h) */
    /* start-up report */
    char err[1024];
    bool stopping;
};

/** Set up ring, Lua state and listeners on the calling thread. 0, or -1
 * with w->err filled. */
int worker_run(struct worker *w);
void worker_loop(struct worker *w);
void worker_cleanup(struct worker *w);
/** Make w reachable by worker_signal_all (before its thread starts). */
void worker_register(struct worker *w);
/** The address listener i of w is bound to, "host:port" or "[v6]:port"
 * (the port the kernel chose for a script's port 0), in buf (n bytes). */
void worker_listener_name(const struct worker *w, unsigned i, char *buf,
                          size_t n);
/** Ask every worker to stop or reload (any thread). */
void worker_signal_all(unsigned ctl);
/** store/wake.h's poke: worker i runs its inbox of store waiters soon
 * (any thread). */
void worker_store_poke(unsigned i);

#endif
