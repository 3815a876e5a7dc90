/* worker.c - a worker thread: its ring, Lua state and listeners; the
 * completion dispatcher; connection and request slots; timer lists. */
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "app/worker.h"
#include "base/log.h"
#include "core/deliver.h"
#include "core/origin.h"
#include "io/outq.h"
#include "lua/rt.h"
#include "store/cache.h"

#define TICK_MS    100
#define LINGER_MS  2000
#define KEEP_IN    (16 * 1024)

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
}

/* ==== timers ==== */

static void tl_remove(struct conn *c)
{
    timer_disarm(&c->timer);
    c->tl = TL_NONE;
}

void conn_touch(struct conn *c, enum tlist tl)
{
    struct worker *w = c->w;
    c->tl = tl;
    if (tl == TL_NONE)
        timer_disarm(&c->timer);
    else
        timer_arm(w->tq[tl], &c->timer, loop_now(w->loop));
}

/* A connection's timeout expired (io/timer.h). */
static void conn_expired(struct timer_queue *q, struct timer *t)
{
    (void)q;
    struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, timer));
    enum tlist tl = c->tl;
    c->tl = TL_NONE;
    http_on_timeout(c, tl);
}

static void refresh_date(struct worker *w)
{
    time_t now = time(NULL);
    if (now == w->date_sec)
        return;
    struct tm tm;
    gmtime_r(&now, &tm);
    w->date_len = strftime(w->date, sizeof w->date,
                           "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    w->date_sec = now;
}

static void arm_tick(struct worker *w)
{
    w->tick_ts.tv_sec = 0;
    w->tick_ts.tv_nsec = TICK_MS * 1000000LL;
    loop_timeout(w->loop, &w->tick_ts, UD_MAKE(OP_TICK, 0, 0));
}

static void on_tick(struct worker *w)
{
    int64_t now = loop_now(w->loop);
    refresh_date(w);
    timers_expire(&w->timers, now);
    if (!w->stopping)
        arm_tick(w);
}

/* ==== connection slots ==== */

struct conn *worker_conn(struct worker *w, uint32_t idx)
{
    return idx < w->nslots ? w->conns[idx] : NULL;
}

/* A connection's output queue tells it when to flush and when to give up. */
static void conn_out_dirty(struct outq *o) { conn_mark_dirty(o->owner); }
static void conn_out_broken(struct outq *o) { conn_close(o->owner); }
static const struct outq_ops conn_out_ops = {conn_out_dirty, conn_out_broken};

static struct conn *conn_alloc(struct worker *w)
{
    struct conn *c = w->free_conns;
    if (c) {
        w->free_conns = c->next_free;
        return c;
    }
    if (ptrs_reserve(&w->conns, w->nslots) < 0)
        return NULL;
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->s.idx = w->nslots;
    c->w = w;
    c->s.fd = -1;
    outq_init(&c->out, &c->s, &w->imm, w, &conn_out_ops, c);
    w->conns[w->nslots++] = c;
    return c;
}

static void arm_recv(struct conn *c)
{
    stream_recv(c->w->loop, &c->s, OP_RECV);
}

static void schedule_rearm(struct conn *c)
{
    if (c->flags & CF_RECV_REARM)
        return;
    c->flags |= CF_RECV_REARM;
    c->next_rearm = c->w->rearm;
    c->w->rearm = c;
}

void conn_mark_dirty(struct conn *c)
{
    if (c->flags & CF_DIRTY)
        return;
    c->flags |= CF_DIRTY;
    c->next_dirty = c->w->dirty;
    c->w->dirty = c;
}

void conn_pause_recv(struct conn *c)
{
    if (c->flags & CF_RECV_PAUSED)
        return;
    c->flags |= CF_RECV_PAUSED;
    if (c->s.recv_armed)
        loop_cancel(c->w->loop, stream_ud(&c->s, OP_RECV),
                    UD_MAKE(OP_CANCEL, 0, 0));
}

void conn_resume_recv(struct conn *c)
{
    c->flags &= (uint16_t)~CF_RECV_PAUSED;
    if (!c->s.recv_armed)
        schedule_rearm(c);
}

static void set_accepting(struct worker *w, bool on);

/* Free the slot once the connection is closed and the kernel holds
 * nothing of it (no recv or send in flight). */
static void conn_maybe_free(struct conn *c)
{
    struct worker *w = c->w;
    if (c->state != CS_CLOSED || !stream_done(&c->s))
        return;
    c->state = CS_FREE;
    stream_release(w->loop, &c->s);
    outq_release_all(&c->out);
    buf_reset(&c->in, KEEP_IN);
    /* keep list-membership flags: the slot may still be linked on the
     * dirty/rearm lists, which skip closed or re-used entries safely */
    c->flags &= CF_DIRTY | CF_RECV_REARM;
    c->next_free = w->free_conns;
    w->free_conns = c;
    w->nconns--;
    if (w->accept_paused && w->nconns < w->cfg->max_connections)
        set_accepting(w, true);
}

void conn_close(struct conn *c)
{
    if (c->state >= CS_CLOSED)
        return;
    c->state = CS_CLOSED;
    stream_close(&c->s, false); /* shut down below, after the request */
    tl_remove(c);
    struct req *r = c->req;
    if (r) {
        c->req = NULL;
        r->c = NULL;
        req_abort(r); /* whatever it is parked on is cancelled */
    }
    /* wakes the multishot recv (ends with 0) and fails pending sends */
    shutdown(c->s.fd, SHUT_RDWR);
    conn_maybe_free(c);
}

/* ==== listeners ==== */

static void set_accepting(struct worker *w, bool on)
{
    w->accept_paused = !on;
    if (on)
        return; /* before_sleep re-arms */
    for (unsigned i = 0; i < w->nls; i++)
        if (w->ls[i].accepting)
            loop_cancel(w->loop, UD_MAKE(OP_ACCEPT, 0, i),
                        UD_MAKE(OP_CANCEL, 0, 0));
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

static int add_listener(void *ud, unsigned i, const char *addr, char *err,
                        size_t errlen)
{
    struct worker *w = ud;
    (void)i;
    if (w->listen_override)
        addr = w->listen_override;
    struct sockaddr_storage ss;
    socklen_t len;
    if (parse_addr(addr, &ss, &len, err, errlen) < 0)
        return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        /* several workers share the port; one worker gets a clear
         * "address in use" if another server holds it */
        (w->cfg->workers > 1 &&
         setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
        bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 4096) < 0) {
        snprintf(err, errlen, "listen %s: %s", addr,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
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
    snprintf(l->addr, sizeof l->addr, "%s", addr);
    return 0;
}

/* Reload: the new script must serve the same listeners, in order. */
static int same_listener(void *ud, unsigned i, const char *addr, char *err,
                         size_t errlen)
{
    struct worker *w = ud;
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
        if (cq->res != -ECANCELED)
            log_warn("accept on %s: %s", w->ls[i].addr, strerror(-cq->res));
        return;
    }
    int fd = cq->res;
    struct conn *c = w->stopping ? NULL : conn_alloc(w);
    if (c == NULL) {
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    stream_open(&c->s, fd);
    c->state = CS_READING;
    c->flags &= CF_DIRTY | CF_RECV_REARM;
    c->listener = i;
    c->req = NULL;
    c->in.len = 0;
    http_conn_init(c);
    w->nconns++;
    arm_recv(c);
    conn_touch(c, TL_HEAD);
    if (w->nconns >= w->cfg->max_connections && !w->accept_paused)
        set_accepting(w, false);
}

/* ==== completions ==== */

static void on_recv(struct worker *w, const struct loop_cqe *cq)
{
    struct conn *c = worker_conn(w, UD_IDX(cq->ud));
    if (c == NULL)
        return;
    if (!stream_completed(&c->s, cq, true)) {
        if (cq->has_buf)
            loop_buf_recycle(w->loop, cq->bid);
        conn_maybe_free(c);
        return;
    }
    if (cq->res > 0) {
        if (c->state == CS_LINGER) {
            /* discard: we only wait for the client's EOF */
        } else {
            http_on_data(c, loop_buf(w->loop, cq->bid), (size_t)cq->res);
        }
        loop_buf_recycle(w->loop, cq->bid);
        if (!cq->more && c->state < CS_CLOSED &&
            !(c->flags & CF_RECV_PAUSED))
            schedule_rearm(c);
    } else if (cq->res == 0) {
        conn_close(c); /* client closed */
    } else if (cq->res == -ENOBUFS) {
        /* no provided buffer left this instant: buffers are recycled as
         * soon as each completion is handled, so re-arm next iteration */
        schedule_rearm(c);
    } else if (cq->res == -ECANCELED) {
        if (!(c->flags & CF_RECV_PAUSED))
            schedule_rearm(c);
    } else {
        conn_close(c);
    }
    if (c->state >= CS_CLOSED)
        conn_maybe_free(c);
}

static void on_send(struct worker *w, const struct loop_cqe *cq)
{
    struct conn *c = worker_conn(w, UD_IDX(cq->ud));
    if (c == NULL)
        return;
    if (!stream_completed(&c->s, cq, false)) {
        outq_send_gone(&c->out);
        conn_maybe_free(c);
        return;
    }
    int ret = outq_sent(&c->out, cq->res);
    if (ret < 0) {
        conn_close(c); /* EPIPE, ECONNRESET: the client is gone */
        return;
    }
    http_on_sent(c, ret == 0);
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

static void on_wake(struct worker *w)
{
    unsigned ctl = atomic_exchange(&w->ctl, 0);
    if (ctl & CTL_STOP) {
        w->stopping = true;
        loop_stop(w->loop);
        return;
    }
    arm_wake(w);
    if (ctl & CTL_RELOAD)
        lrt_reload(&w->lrt, same_listener, w, w->nls);
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
    case OP_RECV: on_recv(w, cq); break;
    case OP_SEND: on_send(w, cq); break;
    case OP_SLEEP: lrt_sleep_done(&w->lrt, cq); break;
    case OP_TICK: on_tick(w); break;
    case OP_UP_CONNECT:
    case OP_UP_SEND:
    case OP_UP_RECV: origin_on_cqe(&w->up, cq); break;
    case OP_FILE_READ: origin_on_file_cqe(&w->up, cq); break;
    case OP_WAKE: on_wake(w); break;
    case OP_INOTIFY: on_inotify(w, cq); break;
    case OP_CLOSE:
    case OP_CANCEL:
    default: break;
    }
}

/* An immediate send still waits to be settled and settling it would do
 * more than free its buffers (data queued behind it, input waiting, a
 * handler waiting for the queue to drain, a closing connection). */
static bool imm_busy(const struct worker *w)
{
    for (const struct outq *o = w->imm.head; o; o = o->imm_next) {
        const struct conn *c = o->owner;
        /* settling a keep-alive connection's last response only frees its
         * buffers and moves it from the send to the idle timer */
        if (c->state != CS_READING || o->q.n || c->in.len ||
            (c->flags & CF_RECV_PAUSED))
            return true;
    }
    return false;
}

/* Before the ring is submitted: settle the immediate sends the kernel has
 * taken, hand queued output to the kernel (one send per connection per
 * iteration), re-arm receives and accepts. Returns whether the loop may
 * sleep (loop_before_pt). */
static bool before_sleep(void *ctx)
{
    struct worker *w = ctx;
    struct conn *c;
    outq_imm_settle(&w->imm, on_cqe, w);
    if (w->rp.deferred)
        req_run_deferred(&w->rp);
    while ((c = w->rearm) != NULL) {
        w->rearm = c->next_rearm;
        c->flags &= (uint16_t)~CF_RECV_REARM;
        if (c->state < CS_CLOSED && !c->s.recv_armed &&
            !(c->flags & CF_RECV_PAUSED))
            arm_recv(c);
    }
    while ((c = w->dirty) != NULL) {
        w->dirty = c->next_dirty;
        c->flags &= (uint16_t)~CF_DIRTY;
        if (c->state < CS_CLOSED)
            outq_flush(&c->out);
    }
    if (!w->accept_paused && !w->stopping)
        for (unsigned i = 0; i < w->nls; i++)
            if (!w->ls[i].accepting) {
                loop_accept_multishot(w->loop, w->ls[i].fd,
                                      UD_MAKE(OP_ACCEPT, 0, i));
                w->ls[i].accepting = true;
            }
    /* Sleeping with immediate sends not yet settled is fine when settling
     * them only frees buffers: the next completion (at worst the tick)
     * settles them. Otherwise come straight back after this submit. */
    return w->imm.head == NULL || (!w->stopping && !imm_busy(w));
}

/* ==== the thread ==== */

/* HTTP hands parsed requests to the Lua runtime. */
static const struct h1_server_ops h1_ops = {
    .run = lrt_start,
};

/* A deferred request: a released cache subscriber fetches on its own. */
static void on_deferred(struct req *r)
{
    if (r->released)
        lcache_refetch(r);
}

int worker_run(struct worker *w)
{
    w->inotify_fd = -1;
    w->rp.w = w;
    w->rp.on_deferred = on_deferred;
    w->rp.drop = lrt_drop_thread;
    w->h1 = &h1_ops;
    /* 256 receive buffers (1 MiB): the kernel takes them in FIFO order,
     * so a larger ring makes every recv land in cache-cold memory (4096
     * buffers cost about 6 % more CPU per request at one connection than
     * nginx; 256 are at par). A burst that finds the ring empty gets
     * -ENOBUFS and is re-armed, losing nothing. */
    struct loop_config lc = {.entries = 1024, .nbufs = 256,
                             .buf_size = 4096};
    w->loop = loop_new(&lc, w->err, sizeof w->err);
    if (w->loop == NULL)
        return -1;
    w->up.loop = w->loop;
    w->imm.loop = w->loop;
    w->up.timers = &w->timers;
    const int64_t timeout[TL_N] = {
        [TL_HEAD] = w->cfg->header_timeout_ms,
        [TL_IDLE] = w->cfg->idle_timeout_ms,
        [TL_BODY] = w->cfg->body_timeout_ms,
        [TL_SEND] = w->cfg->send_timeout_ms,
        [TL_LINGER] = LINGER_MS,
    };
    for (int tl = TL_HEAD; tl < TL_N; tl++)
        if ((w->tq[tl] = timers_queue(&w->timers, timeout[tl],
                                      conn_expired)) == NULL) {
            snprintf(w->err, sizeof w->err, "out of memory");
            return -1;
        }
    w->err[0] = 0;
    w->lrt.loop = w->loop;
    w->lrt.rp = &w->rp;
    w->lrt.up = &w->up;
    w->lrt.script = w->script;
    w->lrt.id = w->id;
    w->lrt.lua = lrt_load(&w->lrt, add_listener, w, w->err, sizeof w->err);
    if (w->lrt.lua == NULL)
        return -1;
    if (w->watch && watch_script(w) < 0)
        return -1;

    refresh_date(w);
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
    for (unsigned i = 0; i < w->nslots; i++) {
        struct conn *c = w->conns[i];
        if (c->s.fd >= 0)
            close(c->s.fd);
        outq_free(&c->out);
        buf_free(&c->in);
        free(c);
    }
    free(w->conns);
    req_pool_free(&w->rp, drop_req);
    origin_cleanup(&w->up);
    lcache_cleanup(&w->lrt);
    for (unsigned i = 0; i < w->nls; i++)
        close(w->ls[i].fd);
    free(w->ls);
    if (w->inotify_fd >= 0)
        close(w->inotify_fd);
    lrt_close_all(&w->lrt);
    timers_free(&w->timers); /* last: queued sends above released Lua strings */
    loop_free(w->loop);
    buf_free(&w->rhead);
}
