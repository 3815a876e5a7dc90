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
enum { CTL_STOP = 1, CTL_RELOAD = 2 };

struct listener {
    int fd;
    char addr[64];
    bool accepting;
};

struct worker {
    unsigned id;
    struct loop *loop;
    struct lrt lrt;         /* its Lua runtime: scripts, caches, origins */
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
    struct outq_imm imm;    /* immediate sends, in SQ order */
    struct timers timers;   /* every timeout: connections, origins */
    struct timer_queue *tq[TL_N]; /* the connections' timeouts */
    /* requests */
    struct req_pool rp;
    const struct h1_server_ops *h1; /* how HTTP hands requests up */
    /* timers */
    struct loop_ts tick_ts;
    int wake_fd;
    uint64_t wake_buf;
    char date[40];          /* "Date: ...\r\n", refreshed each second */
    size_t date_len;
    struct buf rhead;       /* response head being built (h1_server.c) */
    bool rhead_oom;
    int64_t date_sec;
    /* origins and caches */
    struct upstreams up;    /* upstream connections / file reads */
    /* start-up report */
    char err[1024];
    bool stopping;
};

struct conn *worker_conn(struct worker *w, uint32_t idx);
void conn_touch(struct conn *c, enum tlist tl);
void conn_mark_dirty(struct conn *c);
void conn_close(struct conn *c);
void conn_pause_recv(struct conn *c);
void conn_resume_recv(struct conn *c);
/** Set up ring, Lua state and listeners on the calling thread. 0, or -1
 * with w->err filled. */
int worker_run(struct worker *w);
void worker_loop(struct worker *w);
void worker_cleanup(struct worker *w);
/** Make w reachable by worker_signal_all (before its thread starts). */
void worker_register(struct worker *w);
/** Ask every worker to stop or reload (any thread). */
void worker_signal_all(unsigned ctl);

#endif
