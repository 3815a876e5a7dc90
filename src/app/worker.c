/* worker.c - a worker thread: its ring, HTTP server, Lua runtime and
 * listeners; the completion dispatcher; the tick; stop and reload. */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "app/accesslog.h"
#include "app/worker.h"
#include "app/metrics.h"
#include "base/log.h"
#include "core/deliver.h"
#include "core/origin.h"
#include "io/outq.h"
#include "lua/rt.h"
#include "store/cache.h"

#define TICK_MS    100

void config_defaults(struct config *cfg)
{
    cfg->workers = 1;
    cfg->max_connections = 10000;
    cfg->header_timeout_ms = 10000;
    cfg->idle_timeout_ms = 60000;
    cfg->body_timeout_ms = 60000;
    cfg->send_timeout_ms = 60000;
    cfg->max_header_size = 8192;
    cfg->max_uri_size = 4096;
    cfg->max_body_size = 1 << 20;
    cfg->lua_budget_ms = 1000;
    cfg->lua_max_memory = (size_t)1 << 30;
    cfg->lua_jit = false;
    cfg->shutdown_timeout_ms = 10000;
    cfg->drain_timeout_ms = 30000;
    cfg->conn_buffer_budget = (size_t)256 << 20;
    cfg->max_timers = 1024;
    cfg->batch_wait_us = 100;
    snprintf(cfg->request_id_header, sizeof cfg->request_id_header,
             "X-Request-Id");
}

/* The connection buffers of every worker (h1_server.h). */
static struct budget conn_budget;

static void arm_tick(struct worker *w)
{
    w->tick_ts.tv_sec = 0;
    w->tick_ts.tv_nsec = TICK_MS * 1000000LL;
    loop_timeout(w->loop, &w->tick_ts, UD_MAKE(OP_TICK, 0, 0));
}

static void on_tick(struct worker *w)
{
    int64_t now = loop_now(w->loop);
    if (w->draining && h1_server_drain(&w->h1) == 0 &&
        ltimer_active(&w->lrt) == 0 && w->ntcp == 0)
        atomic_store(&w->drained, true);
    h1_refresh_date(&w->h1);
    budget_flush(&w->h1.budget); /* the shared count exact when idle */
    alog_tick(w->alog);
    if (metrics_on(w->met))
        metrics_publish(w->met, &w->lrt, w->h1.nconns);
    timers_expire(&w->timers, now);
    for (unsigned i = 0; i < w->nls; i++)
        w->ls[i].backoff = false; /* before_sleep re-arms */
    if (!w->stopping)
        arm_tick(w);
}

/* ==== listeners ==== */

static void cancel_accept(struct worker *w, unsigned i)
{
    if (w->ls[i].accepting)
        loop_cancel(w->loop, UD_MAKE(OP_ACCEPT, 0, i),
                    UD_MAKE(OP_CANCEL, 0, 0));
}

/* Every listener, at the worker's max_connections. */
static void set_accepting(struct worker *w, bool on)
{
    w->accept_paused = !on;
    if (on)
        return; /* before_sleep re-arms */
    for (unsigned i = 0; i < w->nls; i++)
        cancel_accept(w, i);
}

/* One listener, at its own max_connections: the others go on. */
static void set_listener_full(struct worker *w, unsigned i, bool full)
{
    w->ls[i].full = full;
    if (full)
        cancel_accept(w, i); /* else before_sleep re-arms */
}

static int parse_addr(const char *addr, struct sockaddr_storage *ss,
                      socklen_t *len, char *err, size_t errlen)
{
    char host[128];
    const char *port;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (!end || end[1] != ':' || (size_t)(end - addr) >= sizeof host)
            goto bad;
        memcpy(host, addr + 1, (size_t)(end - addr - 1));
        host[end - addr - 1] = 0;
        port = end + 2;
    } else {
        const char *colon = strrchr(addr, ':');
        if (!colon || (size_t)(colon - addr) >= sizeof host)
            goto bad;
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = 0;
        port = colon + 1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    int ret = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (ret != 0) {
        snprintf(err, errlen, "listen %s: %s", addr, gai_strerror(ret));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
bad:
    snprintf(err, errlen, "listen %s: expected host:port or [v6]:port", addr);
    return -1;
}

/* "host:port" (or "[v6]:port") of a bound socket. */
static void sock_name(int fd, char *buf, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    if (getsockname(fd, (struct sockaddr *)&ss, &l) < 0) {
        snprintf(buf, n, "?");
        return;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        snprintf(buf, n, "[%s]:%u", host, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        snprintf(buf, n, "%s:%u", host, ntohs(a->sin_port));
    }
}

void worker_listener_name(const struct worker *w, unsigned i, char *buf,
                          size_t n)
{
    sock_name(w->ls[i].fd, buf, n);
}

/* The addresses this process listens on, bound first by worker 0 (workers
 * start one after another, main.c) and joined by the others through
 * SO_REUSEPORT. Another process must not join the group (it would take
 * part of the traffic silently): worker 0 first binds the address without
 * SO_REUSEPORT, which fails with EADDRINUSE whatever holds it, and holds a
 * lock for it (an abstract unix socket named after the address) against a
 * second luring starting at the same moment. Port 0 becomes the port
 * worker 0 was given, for every worker. */
static struct {
    struct sockaddr_storage ss;
    socklen_t len;
    int lock_fd;
} bound[LISTEN_MAX];
static unsigned nbound;

/* One listening socket for ss, sharing the port with the other workers
 * when reuseport. -1 with errno. */
static int listen_on(const struct sockaddr_storage *ss, socklen_t len,
                     bool reuseport)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        (reuseport &&
         setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
        bind(fd, (const struct sockaddr *)ss, len) < 0 ||
        listen(fd, 4096) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Worker 0, several workers: make sure nothing else listens on ss (ss's
 * port 0 is replaced by the one the kernel picks) and lock it for this
 * process. The lock fd, or -1 with errno (EADDRINUSE: taken). */
static int claim_addr(struct sockaddr_storage *ss, socklen_t *len)
{
    /* bound, never listening: a probe that listened took the connections
     * that arrived in its instant and reset them at its close (a client
     * polling for the port, as the specs do, got "connection reset" on
     * its first request to a --workers N server) */
    int probe = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (probe < 0)
        return -1;
    if (setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(probe, (const struct sockaddr *)ss, *len) < 0) {
        int e = errno;
        close(probe);
        errno = e;
        return -1;
    }
    socklen_t l = *len;
    getsockname(probe, (struct sockaddr *)ss, &l); /* port 0: the real one */
    char name[INET6_ADDRSTRLEN + 16];
    sock_name(probe, name, sizeof name);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    int n = snprintf(un.sun_path + 1, sizeof un.sun_path - 1,
                     "luring-listen %s", name);
    int lock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lock < 0 ||
        bind(lock, (struct sockaddr *)&un,
             (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                         (size_t)n)) < 0) {
        int e = errno;
        if (lock >= 0)
            close(lock);
        close(probe);
        errno = e;
        return -1;
    }
    /* the port stays ours between the probe's close and the first
     * SO_REUSEPORT bind: another luring fails on the lock, anything else
     * would have to bind in that instant */
    close(probe);
    return lock;
}

static int add_listener(void *ud, unsigned i, const char *addr,
                        unsigned max_conns, char *err, size_t errlen)
{
    struct worker *w = ud;
    if (w->listen_override)
        addr = w->listen_override;
    if (i >= LISTEN_MAX) {
        snprintf(err, errlen, "more than %d listeners", LISTEN_MAX);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t len;
    bool shared = w->cfg->workers > 1;
    if (shared && i < nbound) { /* another worker bound it first */
        ss = bound[i].ss;
        len = bound[i].len;
    } else {
        if (parse_addr(addr, &ss, &len, err, errlen) < 0)
            return -1;
        int lock = -1;
        if (shared && (lock = claim_addr(&ss, &len)) < 0) {
            snprintf(err, errlen, "listen %s: %s", addr, strerror(errno));
            return -1;
        }
        if (shared) {
            bound[i].ss = ss;
            bound[i].len = len;
            bound[i].lock_fd = lock;
            nbound = i + 1;
        }
    }
    int fd = listen_on(&ss, len, shared);
    if (fd < 0) {
        snprintf(err, errlen, "listen %s: %s", addr, strerror(errno));
        return -1;
    }
    if (w->nls == LISTEN_MAX) {
        close(fd);
        snprintf(err, errlen, "more than %d listeners", LISTEN_MAX);
        return -1;
    }
    struct listener *ls = realloc(w->ls, (w->nls + 1) * sizeof *ls);
    if (ls == NULL) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    w->ls = ls;
    struct listener *l = &w->ls[w->nls++];
    memset(l, 0, sizeof *l);
    l->fd = fd;
    l->max_conns = max_conns;
    snprintf(l->addr, sizeof l->addr, "%s", addr);
    return 0;
}

/* Reload: the new script must serve the same listeners, in order. */
static int same_listener(void *ud, unsigned i, const char *addr,
                         unsigned max_conns, char *err, size_t errlen)
{
    struct worker *w = ud;
    (void)max_conns; /* read at start-up only, like luring.config */
    if (i >= w->nls || (!w->listen_override && strcmp(addr, w->ls[i].addr))) {
        snprintf(err, errlen, "listener %u (%s) differs from the running "
                 "script's; restart to change listeners", i + 1, addr);
        return -1;
    }
    return 0;
}

static void on_accept(struct worker *w, const struct loop_cqe *cq)
{
    uint32_t i = UD_IDX(cq->ud);
    if (i >= w->nls)
        return;
    if (!cq->more)
        w->ls[i].accepting = false; /* before_sleep re-arms */
    if (cq->res < 0) {
        /* out of descriptors (EMFILE, ENFILE) or memory: the connection
         * stays in the backlog and a re-armed accept fails again at once,
         * so without a pause the worker spun at 100 % CPU and logged this
         * 200,000 times a second. Wait for the tick (nginx: 500 ms). */
        if (cq->res != -ECANCELED && !w->ls[i].backoff) {
            log_warn("accept on %s: %s (pausing accept for %d ms)",
                     w->ls[i].addr, strerror(-cq->res), TICK_MS);
            w->ls[i].backoff = true;
            if (cq->more)
                cancel_accept(w, i);
        }
        return;
    }
    if (lrt_is_tcp(&w->lrt, i)) { /* app:tcp: a handler runs it */
        w->ntcp++;
        w->ls[i].nconns++;
        if (lrt_tcp_start(&w->lrt, cq->res, i) < 0) {
            w->ntcp--;
            w->ls[i].nconns--;
            log_err("accept on %s: out of memory, connection closed",
                    w->ls[i].addr);
            return;
        }
    } else {
        if (h1_accept(&w->h1, cq->res, i) == NULL)
            return;
        w->ls[i].nconns++;
    }
    metrics_accepted(w->met);
    struct listener *l = &w->ls[i];
    if (l->nconns >= l->max_conns && l->max_conns && !l->full)
        set_listener_full(w, i, true);
    if (w->h1.nconns + w->ntcp >= w->cfg->max_connections &&
        !w->accept_paused)
        set_accepting(w, false);
}

/* ==== control: stop, reload, --watch ==== */

static struct worker *workers[256];
static unsigned nworkers;

void worker_register(struct worker *w)
{
    if (nworkers < sizeof workers / sizeof workers[0])
        workers[nworkers++] = w;
}

void worker_signal_all(unsigned ctl)
{
    for (unsigned i = 0; i < nworkers; i++) {
        uint64_t one = 1;
        atomic_fetch_or(&workers[i]->ctl, ctl);
        if (write(workers[i]->wake_fd, &one, sizeof one) < 0)
            log_err("cannot wake worker %u: %s", i, strerror(errno));
    }
}

static void arm_wake(struct worker *w)
{
    loop_read(w->loop, w->wake_fd, &w->wake_buf, sizeof w->wake_buf, 0,
              UD_MAKE(OP_WAKE, 0, 0));
}

/* A request is over: its access log line, its metrics. */
static void req_done(struct req *r)
{
    struct worker *w = r->w;
    if (r->timer || r->tcp)
        return; /* a timer's or app:tcp run: no exchange to log or count */
    if (alog_on(w->alog))
        alog_request(w->alog, r);
    metrics_request(w->met, r);
}

/* luring.metrics()'s text: this worker's figures published first (exact),
 * the others' as of their last tick. */
static int metrics_text(struct lrt *rt, struct buf *out)
{
    struct worker *w = (struct worker *)((char *)rt - offsetof(struct worker, lrt));
    metrics_publish(w->met, rt, w->h1.nconns);
    return metrics_render(out);
}


/* The script's luring.access_log{} (after a load or a reload): a line per
 * request from now on, or none. A reload whose setting is wrong keeps the
 * old one (logged). 0, or -1 with w->err. */
static int log_configure(struct worker *w, bool reload)
{
    if (alog_configure(w->alog, w->lrt.lua->L, w->err, sizeof w->err) < 0) {
        if (!reload)
            return -1;
        log_err("reload: %s (the access log stays as it was)", w->err);
        w->err[0] = 0;
    }
    metrics_configure(w->met, w->lrt.lua->L);
    w->rp.done = alog_on(w->alog) || metrics_on(w->met) ? req_done : NULL;
    w->up.timed = w->rp.done != NULL;
    return 0;
}

/* Graceful drain (SIGTERM, SIGQUIT): the listeners close (connections
 * not accepted yet are refused by the kernel, the other workers' too),
 * idle connections close, the rest finish their exchange and close
 * (h1_server_drain); each tick closes those that became idle, and the
 * main thread exits once every worker has none left. */
static void start_drain(struct worker *w)
{
    if (w->draining)
        return;
    w->draining = true;
    for (unsigned i = 0; i < w->nls; i++) {
        cancel_accept(w, i);
        if (w->ls[i].fd >= 0) {
            close(w->ls[i].fd); /* an accept in flight holds its own ref */
            w->ls[i].fd = -1;
        }
    }
    ltimer_drain(&w->lrt); /* pending timers run now, premature */
    if (h1_server_drain(&w->h1) == 0 && ltimer_active(&w->lrt) == 0 &&
        w->ntcp == 0)
        atomic_store(&w->drained, true);
}

/* What other threads asked for in w->ctl. */
static void take_ctl(struct worker *w)
{
    unsigned ctl = atomic_exchange(&w->ctl, 0);
    if (ctl & CTL_STOP) {
        w->stopping = w->h1.stopping = true;
        loop_stop(w->loop);
        return;
    }
    if (ctl & CTL_DRAIN)
        start_drain(w);
    if (ctl & CTL_RELOAD) {
        alog_run(w->alog); /* its format function's state may be retired */
        bool ok = lrt_reload(&w->lrt, same_listener, w, w->nls) == 0;
        if (ok)
            log_configure(w, true);
        metrics_reload(w->met, ok);
    }
    if (ctl & CTL_REOPEN)
        alog_reopen(w->alog);
    if (ctl & CTL_STORE)
        store_wake_run(w->id);
}

static void on_wake(struct worker *w)
{
    if (!(atomic_load(&w->ctl) & CTL_STOP))
        arm_wake(w);
    take_ctl(w);
}

/* The worker whose thread this is (NULL on other threads). */
static __thread struct worker *self;

static void wake_by_fd(struct worker *w)
{
    uint64_t one = 1;
    if (write(w->wake_fd, &one, sizeof one) < 0)
        log_err("cannot wake worker %u: %s", w->id, strerror(errno));
}

/* w has work another thread queued (`ctl`): any thread. From a worker's
 * thread the wake is a message through its own ring (sent with its next
 * submission, no syscall here); else, or when messages between rings are
 * unsupported, w's eventfd. */
static void wake_with(struct worker *w, unsigned ctl)
{
    atomic_fetch_or(&w->ctl, ctl);
    if (self && self != w && self->loop && loop_has_msg_ring(self->loop) &&
        w->ring_fd >= 0)
        loop_msg_ring(self->loop, w->ring_fd, 0, UD_MAKE(OP_MSG, 0, 0),
                      UD_MAKE(OP_MSG_FAIL, 0, w->id));
    else
        wake_by_fd(w);
}

/* store_wake_init's poke: a shared cache's object changed for a waiter
 * of worker i (store/wake.h). */
void worker_store_poke(unsigned i)
{
    if (i < 256 && workers[i])
        wake_with(workers[i], CTL_STORE);
}

static void arm_inotify(struct worker *w)
{
    loop_read(w->loop, w->inotify_fd, w->inotify_buf, sizeof w->inotify_buf,
              0, UD_MAKE(OP_INOTIFY, 0, 0));
}

/* The script's directory changed: reload every worker when the event
 * names the script (editors write in place or rename a new file over). */
static void on_inotify(struct worker *w, const struct loop_cqe *cq)
{
    if (cq->res <= 0) {
        log_err("--watch: reading inotify: %s", strerror(-cq->res));
        return;
    }
    const char *base = strrchr(w->script, '/');
    base = base ? base + 1 : w->script;
    bool hit = false;
    for (int off = 0; off + (int)sizeof(struct inotify_event) <= cq->res;) {
        const struct inotify_event *ev =
            (const struct inotify_event *)(w->inotify_buf + off);
        if (ev->len && strcmp(ev->name, base) == 0)
            hit = true;
        off += (int)sizeof *ev + (int)ev->len;
    }
    if (hit) {
        log_info("--watch: %s changed", w->script);
        worker_signal_all(CTL_RELOAD);
    }
    if (!w->stopping)
        arm_inotify(w);
}

static int watch_script(struct worker *w)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", w->script);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = 0;
    else
        *slash = 0;
    w->inotify_fd = inotify_init1(IN_CLOEXEC);
    if (w->inotify_fd < 0 ||
        inotify_add_watch(w->inotify_fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
        snprintf(w->err, sizeof w->err, "--watch %.900s: %s", dir, strerror(errno));
        return -1;
    }
    arm_inotify(w);
    return 0;
}

static void on_cqe(void *ctx, const struct loop_cqe *cq)
{
    struct worker *w = ctx;
    switch (UD_OP(cq->ud)) {
    case OP_ACCEPT: on_accept(w, cq); break;
    case OP_RECV: h1_on_recv(&w->h1, cq); break;
    case OP_SEND: h1_on_send(&w->h1, cq); break;
    case OP_SLEEP: lrt_sleep_done(&w->lrt, cq); break;
    case OP_TIMER: ltimer_on_cqe(&w->lrt, cq); break;
    case OP_COSOCK: lsock_on_cqe(&w->lrt, cq); break;
    case OP_RESOLVED: lsock_on_resolved(&w->lrt, cq); break;
    case OP_TICK: on_tick(w); break;
    case OP_UP_CONNECT:
    case OP_UP_SEND:
    case OP_UP_RECV: origin_on_cqe(&w->up, cq); break;
    case OP_FILE_READ: origin_on_file_cqe(&w->up, cq); break;
    case OP_WAKE: on_wake(w); break;
    case OP_MSG: take_ctl(w); break;
    case OP_MSG_FAIL: /* the target still gets its wake */
        if (UD_IDX(cq->ud) < nworkers)
            wake_by_fd(workers[UD_IDX(cq->ud)]);
        break;
    case OP_INOTIFY: on_inotify(w, cq); break;
    case OP_ALOG_WRITE: alog_on_write(w->alog, cq); break;
    case OP_CLOSE:
    case OP_CANCEL:
    default: break;
    }
}

/* Before the ring is submitted: settle the immediate sends the kernel has
 * taken, hand queued output to the kernel (one send per connection per
 * iteration, origin connections' streamed bodies too), re-arm receives
 * and accepts. Returns whether the loop may
 * sleep (loop_before_pt). */
static bool before_sleep(void *ctx)
{
    struct worker *w = ctx;
    outq_imm_settle(&w->h1.imm, on_cqe, w);
    if (w->up.imm_head)
        origin_imm_settle(&w->up);
    if (store_wake_pending(w->id)) /* shared caches' changes */
        store_wake_run(w->id);
    if (w->rp.deferred)
        req_run_deferred(&w->rp);
    if (w->rp.done)
        alog_run(w->alog); /* a format function's lines */
    if (w->up.dirty)
        origin_flush(&w->up);
    h1_before_sleep(&w->h1);
    if (!w->accept_paused && !w->stopping && !w->draining)
        for (unsigned i = 0; i < w->nls; i++)
            if (!w->ls[i].accepting && !w->ls[i].full &&
                !w->ls[i].backoff) {
                loop_accept_multishot(w->loop, w->ls[i].fd,
                                      UD_MAKE(OP_ACCEPT, 0, i));
                w->ls[i].accepting = true;
            }
    /* Sleeping with immediate sends not yet settled is fine when settling
     * them only frees buffers: the next completion (at worst the tick)
     * settles them. Otherwise come straight back after this submit. */
    if (w->h1.imm.head != NULL && (w->stopping || h1_imm_busy(&w->h1)))
        return false;
    /* an origin request's settling only marks it sent (its response
     * settles it first, origin.c) unless more of a body is to follow */
    return w->up.imm_head == NULL || !origin_imm_busy(&w->up);
}

/* ==== the thread ==== */

/* Below its connection limits again: accept. */
static void conn_freed(struct worker *w, unsigned listener, unsigned nconns)
{
    struct listener *l = &w->ls[listener];
    if (--l->nconns < l->max_conns && l->full)
        set_listener_full(w, listener, false);
    if (w->accept_paused && nconns + w->ntcp < w->cfg->max_connections)
        set_accepting(w, true);
}

/* An app:tcp connection ended (rt->tcp_end): it no longer counts. */
static void tcp_ended(struct lrt *rt, unsigned listener)
{
    struct worker *w = (struct worker *)((char *)rt - offsetof(struct worker, lrt));
    w->ntcp--;
    if (listener < w->nls)
        conn_freed(w, listener, w->h1.nconns);
    if (w->draining && w->ntcp == 0 && h1_server_drain(&w->h1) == 0 &&
        ltimer_active(&w->lrt) == 0)
        atomic_store(&w->drained, true);
}

/* HTTP's exchanges are the h1_msg inside requests from the pool; parsed
 * ones run on the Lua runtime. */
static struct req *req_of(struct h1_msg *m)
{
    return (struct req *)((char *)m - offsetof(struct req, m));
}

static struct h1_msg *h1_request(struct worker *w)
{
    struct req *r = req_get(&w->rp);
    return r ? &r->m : NULL;
}

static void h1_run(struct h1_msg *m)
{
    struct req *r = req_of(m);
    int port;
    /* the log of a request whose client leaves still names it */
    if (r->pool->done && h1_peer(m, r->log.addr, sizeof r->log.addr, &port) < 0)
        r->log.addr[0] = 0;
    lrt_start(r);
}
static void h1_release(struct h1_msg *m) { req_put(req_of(m)); }
static void h1_writable(struct h1_msg *m) { req_writable(req_of(m)); }
static void h1_abort(struct h1_msg *m) { req_abort(req_of(m)); }

static const struct h1_server_ops h1_ops = {
    .request = h1_request,
    .run = h1_run,
    .release = h1_release,
    .writable = h1_writable,
    .abort = h1_abort,
    .conn_freed = conn_freed,
};

/* A deferred request: a released cache subscriber fetches on its own; a
 * subscriber with a deliver hook sends its head; a handler waiting on an
 * origin:request reader goes on; so does one whose req:body ended at once. */
static void on_deferred(struct req *r)
{
    if (r->released)
        lcache_refetch(r);
    else if (r->obj)
        serve_pump(r);
    else if (!lrt_body_wake(r))
        lorigin_wake(r);
}

int worker_run(struct worker *w)
{
    log_set_worker((int)w->id);
    store_self = (int)w->id;
    w->inotify_fd = -1;
    w->rp.w = w;
    w->rp.on_deferred = on_deferred;
    w->rp.drop = lrt_drop_thread;
    w->rp.deliver = ldeliver_call;
    /* 256 receive buffers (1 MiB): the kernel takes them in FIFO order,
     * so a larger ring makes every recv land in cache-cold memory (4096
     * buffers cost about 6 % more CPU per request at one connection than
     * nginx; 256 are at par). A burst that finds the ring empty gets
     * -ENOBUFS and is re-armed, losing nothing. */
    struct loop_config lc = {.entries = 1024, .nbufs = 256,
                             .buf_size = 4096,
                             .batch_wait_us = w->cfg->batch_wait_us,
                             .no_batch_wait = w->cfg->batch_wait_us == 0};
    w->ring_fd = -1;
    w->loop = loop_new(&lc, w->err, sizeof w->err);
    if (w->loop == NULL)
        return -1;
    /* read by other workers' pokes (store/wake.h), which come after they
     * took a cache lock this worker took since */
    w->ring_fd = loop_ring_fd(w->loop);
    w->alog = alog_new(w->loop, w->id);
    w->met = metrics_new(w->id);
    w->lrt.metrics = metrics_text;
    w->lrt.tcp_end = tcp_ended;
    if (w->alog == NULL || w->met == NULL) {
        snprintf(w->err, sizeof w->err, "out of memory");
        return -1;
    }
    /* request ids: the worker in the top 8 bits, a random start below
     * (ids differ from one run to the next) */
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
        rnd = (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid() << 20;
    w->rp.id_next = ((uint64_t)w->id << 56) | (rnd & ((UINT64_C(1) << 56) - 1));
    self = w;
    w->up.loop = w->loop;
    w->up.timers = &w->timers;
    w->h1.loop = w->loop;
    w->h1.cfg = w->cfg;
    w->h1.ops = &h1_ops;
    w->h1.w = w;
    w->h1.budget.all = &conn_budget;
    if (h1_server_init(&w->h1, &w->timers) < 0) {
        snprintf(w->err, sizeof w->err, "out of memory");
        return -1;
    }
    w->err[0] = 0;
    w->lrt.loop = w->loop;
    w->lrt.rp = &w->rp;
    w->lrt.h1 = &w->h1;
    w->lrt.up = &w->up;
    w->lrt.script = w->script;
    w->lrt.cfg = w->cfg;
    w->lrt.id = w->id;
    w->lrt.lua = lrt_load(&w->lrt, add_listener, w, w->err, sizeof w->err);
    if (w->lrt.lua == NULL)
        return -1;
    if (log_configure(w, false) < 0)
        return -1;
    ltimer_start(&w->lrt, w->lrt.lua); /* the timers its main chunk made */
    if (w->watch && watch_script(w) < 0)
        return -1;

    arm_tick(w);
    arm_wake(w);
    return 0;
}

void worker_loop(struct worker *w)
{
    loop_run(w->loop, on_cqe, before_sleep, w);
}

/* What a request still holds when the worker ends. */
static void drop_req(struct req *r)
{
    if (r->obj)
        serve_unsubscribe(r);
    if (r->collected)
        cache_obj_unref(r->collected);
}

void worker_cleanup(struct worker *w)
{
    /* the access log's write in flight completes first (nothing more is
     * submitted: the lines of requests ended below are written by
     * alog_free, once the ring is gone) */
    for (int i = 0; w->loop && alog_stop(w->alog) && i < 1000; i++) {
        loop_poll(w->loop, on_cqe, before_sleep, w);
        if (alog_stop(w->alog))
            nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    h1_server_free(&w->h1);
    req_pool_free(&w->rp, drop_req);
    origin_cleanup(&w->up);
    linval_unregister(&w->lrt); /* before its caches go */
    lcache_cleanup(&w->lrt);
    for (unsigned i = 0; i < w->nls; i++)
        if (w->ls[i].fd >= 0)
            close(w->ls[i].fd);
    free(w->ls);
    if (w->inotify_fd >= 0)
        close(w->inotify_fd);
    alog_run(w->alog); /* before the state of its format function goes */
    ltimer_cleanup(&w->lrt); /* its runs went with the request pool */
    lrt_close_all(&w->lrt); /* last: queued sends above released Lua strings */
    timers_free(&w->timers);
    loop_free(w->loop);
    /* after the ring: a cosocket's operation in flight wrote into its
     * record until then */
    lsock_cleanup(&w->lrt);
    alog_free(w->alog); /* after the ring: no write of it in flight */
    metrics_free(w->met);
    w->alog = NULL;
}
