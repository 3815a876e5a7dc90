/* origin.c - HTTP/1.1 upstream client and file origin, both on io_uring
 * (see origin.h). The fetch is driven by completions, not by a coroutine:
 * it fills its cache object whether or not the request that started it is
 * still there. */
#define _GNU_SOURCE
#include "core/origin.h"
#include "core/cond.h"
#include "core/fetch.h"
#include "io/ops.h"
#include "base/clock.h"
#include "base/log.h"
#include "http/cc.h"
#include "http/date.h"
#include "http/fields.h"
#include "http/h1_server.h"
#include "store/cache.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


/* ==== slots ==== */

static struct upconn *up_alloc(struct upstreams *us)
{
    struct upconn *u = us->free;
    if (u) {
        us->free = u->next;
    } else {
        if (ptrs_reserve(&us->slots, us->n) < 0)
            return NULL;
        u = calloc(1, sizeof *u);
        if (u == NULL)
            return NULL;
        u->s.idx = us->n;
        us->slots[us->n++] = u;
    }
    u->next = NULL;
    stream_open(&u->s, -1);
    u->reused = u->got_bytes = u->paused = u->recv_cancel = false;
    u->flags = 0;
    u->why = NULL;
    u->obj = NULL;
    u->out.len = 0;
    u->out_sent = 0;
    u->sending = u->streaming = false;
    u->body_m = NULL;
    u->file_off = 0;
    return u;
}

static void up_maybe_free(struct upstreams *us, struct upconn *u)
{
    if (u->phase != UP_CLOSED || !stream_done(&u->s))
        return;
    stream_release(us->loop, &u->s);
    u->phase = UP_FREE;
    buf_reset(&u->out, 4096);
    h1_resp_trim(&u->resp);
    u->next = us->free;
    us->free = u;
}

static void pool_remove(struct origin *o, struct upconn *u)
{
    for (struct upconn **pp = &o->idle; *pp; pp = &(*pp)->next)
        if (*pp == u) {
            *pp = u->next;
            u->next = NULL;
            o->nidle--;
            return;
        }
}

static void up_expired(struct timer_queue *q, struct timer *t);

/* Time u out after timeout_ms (the phase's timeout) from now. */
static void up_arm(struct upstreams *us, struct upconn *u, int64_t timeout_ms)
{
    struct timer_queue *q = timers_queue(us->timers, timeout_ms, up_expired);
    if (q != NULL)
        timer_arm(q, &u->timer, loop_now(us->loop));
    else /* out of memory: the next arm tries again */
        timer_disarm(&u->timer);
}

static void up_close(struct upstreams *us, struct upconn *u)
{
    if (u->phase == UP_CLOSED || u->phase == UP_FREE)
        return;
    timer_disarm(&u->timer);
    if (u->phase == UP_IDLE)
        pool_remove(u->o, u);
    u->phase = UP_CLOSED;
    /* a socket's shutdown ends the multishot recv */
    stream_close(&u->s, u->o->kind == ORIGIN_HTTP);
    up_maybe_free(us, u);
}

/* An idle pooled connection keeps its multishot receive armed (no cancel
 * when it goes idle, no new receive when it is reused): bytes or an end of
 * file an origin sends unasked complete it, and origin_on_cqe closes the
 * connection (up_data, up_eof). Before reuse, bytes may still be on their
 * way to that handling: in the socket (the receive's task work has not run
 * yet), or in a completion not handled yet, which loop_cqe_pending sees;
 * either way the connection is not reused. When the ring has task work
 * queued (loop_work_pending: some armed receive's socket became readable,
 * maybe this one's), it is run first (loop_run_work, one io_uring_enter
 * for all the connections taken until more arrives), which turns such
 * bytes into a completion; with no task work queued, readable bytes would
 * have queued the armed receive's. Only when that cannot tell (work queued
 * again at once, or a ring without TASKRUN_FLAG) a MSG_PEEK (a system
 * call per connection) looks at the socket. One whose receive is still
 * being cancelled (a paused fill's) is not taken either: its last
 * completions may still hold such bytes. */
static struct upconn *pool_take(struct upstreams *us, struct origin *o)
{
    struct upconn **pp = &o->idle;
    while (*pp) {
        struct upconn *u = *pp;
        if (u->s.recv_armed && loop_work_pending(us->loop))
            loop_run_work(us->loop);
        if (u->recv_cancel ||
            (u->s.recv_armed &&
             loop_cqe_pending(us->loop, stream_ud(&u->s, OP_UP_RECV)))) {
            pp = &u->next;
            continue;
        }
        *pp = u->next;
        u->next = NULL;
        o->nidle--;
        if (u->s.recv_armed && !loop_work_pending(us->loop))
            return u; /* bytes would have queued the receive's work */
        char b;
        ssize_t r = recv(u->s.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return u; /* nothing pending: the connection is clean */
        if (r > 0)
            log_warn("origin %s: bytes on an idle connection before any "
                     "request: connection closed", o->name);
        u->phase = UP_WAIT; /* not in the pool any more */
        up_close(us, u);
    }
    return NULL;
}

/* A socket error as a failure reason (upconn.why): lowercase, as the
 * other reasons and cosockets' errors; strerror's for the rare ones. */
static const char *errno_why(int e)
{
    switch (e) {
    case ECONNREFUSED: return "connection refused";
    case ECONNRESET: return "connection reset by peer";
    case EPIPE: return "broken pipe";
    case ETIMEDOUT: return "timeout";
    case ENETUNREACH: return "network is unreachable";
    case EHOSTUNREACH: return "no route to host";
    case EADDRNOTAVAIL: return "cannot assign requested address";
    default: return strerror(e);
    }
}

/* The fetch is over: hand the outcome to the object, drop our ref. */
static void finish(struct upconn *u, bool ok, int status)
{
    struct cache_obj *obj = u->obj;
    if (u->body_m) { /* the rest of the client's body is not sent */
        struct h1_msg *m = u->body_m;
        u->body_m = NULL;
        h1_body_stop(m);
    }
    if (obj == NULL)
        return;
    u->obj = NULL;
    u->paused = false;
    obj->fill_wake = NULL; /* u may serve another fetch before obj goes */
    obj->fill_paused = false;
    if (!ok)
        u->o->st.errors++;
    if (u->o->us->timed)
        obj->up_end_us = clock_us();
    /* the reason, for the waiters told now (origin.h) */
    u->o->us->fail_why = ok ? NULL : u->why ? u->why
                         : status == 504 ? "timeout" : "bad gateway";
    cache_obj_done(obj, ok, status);
    u->o->us->fail_why = NULL;
    u->why = NULL;
    cache_obj_unref(obj);
}

/* ==== HTTP: set-up ==== */

int origin_init_http(struct origin *o, const char *url, char *err,
                     size_t errlen)
{
    const char *p = url;
    if (strncmp(p, "http://", 7) != 0) {
        snprintf(err, errlen, "origin url %s: only http:// is supported", url);
        return -1;
    }
    p += 7;
    size_t hl = strcspn(p, "/");
    if (hl == 0 || hl >= sizeof o->host) {
        snprintf(err, errlen, "origin url %s: bad host", url);
        return -1;
    }
    memcpy(o->host, p, hl);
    o->host[hl] = 0;
    char host[128], port[16] = "80";
    const char *h = o->host, *colon;
    if (h[0] == '[') {
        const char *end = strchr(h, ']');
        if (!end) {
            snprintf(err, errlen, "origin url %s: bad IPv6 address", url);
            return -1;
        }
        snprintf(host, sizeof host, "%.*s", (int)(end - h - 1), h + 1);
        if (end[1] == ':')
            snprintf(port, sizeof port, "%s", end + 2);
    } else if ((colon = strrchr(h, ':')) != NULL) {
        snprintf(host, sizeof host, "%.*s", (int)(colon - h), h);
        snprintf(port, sizeof port, "%s", colon + 1);
    } else {
        snprintf(host, sizeof host, "%s", h);
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    int ret = getaddrinfo(host, port, &hints, &res);
    if (ret != 0) {
        snprintf(err, errlen, "origin url %s: %s", url, gai_strerror(ret));
        return -1;
    }
    memcpy(&o->addr, res->ai_addr, res->ai_addrlen);
    o->alen = res->ai_addrlen;
    freeaddrinfo(res);
    o->kind = ORIGIN_HTTP;
    return 0;
}

/* ==== HTTP: the response, from h1_client ==== */

/* A response field goes to the object (core/fetch.c decides from the
 * stored lines whether and how long to keep it), stored and forwarded
 * alike, except (one rule for fills and passes, docs/API.md):
 * - the hop-by-hop fields of field_is_hop_by_hop, the same list as for
 *   requests (RFC 9110 §7.6.1; Proxy-Authenticate, §11.7.1, is meant for
 *   the next client on the chain: luring, not its client; Varnish drops
 *   it too) and those the Connection field names (h1_client.c);
 * - Content-Length: the server frames each response itself;
 * - Server: the server sends its own, as nginx's proxy does;
 * - Date: the origin's first valid one is kept (RFC 9110 §6.6.1: it says
 *   when the response was generated, and the cache computes ages from
 *   it; Varnish keeps it too); an invalid or repeated one is dropped and
 *   the server's own is sent when none is kept;
 * - Age, for a response that may be stored: kept aside (o->origin_age)
 *   and sent recomputed as the stored response ages (RFC 9111 §5.1).
 *   A pass forwards it as it came. */
static int up_field(void *owner, const char *n, size_t nl, const char *v,
                    size_t vl)
{
    struct upconn *u = owner;
#define IS(s) field_name_is(n, nl, s, sizeof(s) - 1)
    bool skip = field_is_hop_by_hop(n, nl) || IS("content-length") ||
                IS("server");
    if (!skip && u->obj && IS("date")) {
        skip = u->obj->has_date ||
               (!(u->flags & ORQ_PASS) && /* a pass forwards it as is */
                http_date_parse(v, vl, (int64_t)time(NULL)) == INT64_MIN);
        u->obj->has_date = !skip || u->obj->has_date;
    } else if (!skip && u->obj && !(u->flags & ORQ_PASS) && IS("age")) {
        int64_t a = cc_delta_seconds(v, vl);
        if (u->obj->origin_age < 0 && a >= 0)
            u->obj->origin_age = a; /* the first valid one (§5.1) */
        skip = true;
    }
#undef IS
    if (u->obj && (u->flags & ORQ_HEAD) && nl == 14 &&
        strncasecmp(n, "content-length", 14) == 0)
        u->obj->head_cl = h1_content_length(v, vl); /* -1: not a length */
    if (!skip && u->obj) {
        struct buf *h = &u->obj->hdrs;
        size_t ll = field_line_len(n, nl, v, vl);
        if (ll > 0) { /* as received */
            buf_append(h, n, ll);
            return 0;
        }
        buf_append(h, n, nl);
        buf_append(h, ": ", 2);
        buf_append(h, v, vl);
        buf_append(h, "\r\n", 2);
    }
    return 0;
}

/* An interim response: its fields are not the final response's. */
static void up_interim(void *owner)
{
    struct upconn *u = owner;
    if (u->obj) {
        u->obj->hdrs.len = 0;
        u->obj->head_cl = -1;
        u->obj->has_date = false;
        u->obj->origin_age = -1;
    }
}

static int up_head(void *owner, int status, int64_t total)
{
    struct upconn *u = owner;
    if (u->obj == NULL)
        return 0;
    u->obj->up_status = status;
    if (u->o->us->timed)
        u->obj->up_head_us = clock_us();
    /* never shared, never stored: a pass, or a response whose Connection
     * hid a field that decides sharing (h1_client.h) */
    if ((u->flags & ORQ_PASS) || u->resp.hides_cache_field) {
        u->obj->status = status; /* cond_note reads it */
        cond_note(u->obj);
        cache_obj_head(u->obj, status, total, false, 0,
                       loop_now(u->o->us->loop));
    }
    else
        fetch_head(u->obj, status, total, loop_now(u->o->us->loop));
    return 0;
}

static int up_body(void *owner, const char *p, size_t n)
{
    struct upconn *u = owner;
    if (u->obj && cache_obj_abandoned(u->obj))
        return -1; /* nobody reads a pass-through any more: stop */
    if (u->obj && cache_obj_data(u->obj, p, n) < 0)
        return -1;
    return 0;
}

static const struct h1_client_ops up_ops = {
    up_field, up_interim, up_head, up_body,
};

/* ==== HTTP: the fetch ==== */

/* ==== immediate sends: us->imm_head, in SQ order ====
 * A request send is immediate when the ring can do it (loop_send_imm, as
 * the client's responses, io/outq.c): tried once as the kernel takes the
 * SQE, it posts a completion only if it did not go whole. Until settled it
 * counts as in flight (u->sending, the stream's inflight). It is settled
 * as having gone whole once the kernel has taken its SQE and no completion
 * of it is waiting: in origin_imm_settle (before the ring is submitted, the
 * CQ drained), or at once when a response byte for u is handled first
 * (up_settle_one), so the response finds its request sent. */

static void imm_link(struct upstreams *us, struct upconn *u, uint32_t pos,
                     size_t len)
{
    u->imm_pos = pos;
    u->imm_len = (int)len;
    u->imm_pending = true;
    u->imm_next = NULL;
    u->imm_prev = us->imm_tail;
    if (us->imm_tail)
        us->imm_tail->imm_next = u;
    else
        us->imm_head = u;
    us->imm_tail = u;
}

static void imm_unlink(struct upstreams *us, struct upconn *u)
{
    if (!u->imm_pending)
        return;
    u->imm_pending = false;
    if (u->imm_prev)
        u->imm_prev->imm_next = u->imm_next;
    else
        us->imm_head = u->imm_next;
    if (u->imm_next)
        u->imm_next->imm_prev = u->imm_prev;
    else
        us->imm_tail = u->imm_prev;
    u->imm_prev = u->imm_next = NULL;
}

/* Send what out holds beyond out_sent, unless a send is in flight or the
 * connection is not up; `imm`: as an immediate send if the ring can (not
 * the rest of a short send: that one waits for socket space). A streamed
 * body's progress restarts the first byte timeout: it counts from the last
 * byte sent. */
static void up_send_go(struct upstreams *us, struct upconn *u, bool imm)
{
    if (u->sending || u->out_sent == u->out.len ||
        (u->phase != UP_SEND && u->phase != UP_WAIT && u->phase != UP_READ))
        return;
    size_t len = u->out.len - u->out_sent;
    const char *p = u->out.data + u->out_sent;
    uint64_t ud = stream_ud(&u->s, OP_UP_SEND);
    /* out: owned by the kernel until this OP_UP_SEND completes (or, for an
     * immediate send, is settled); a streamed body only appends within
     * its reserved capacity meanwhile */
    if (imm && loop_has_imm(us->loop) && len <= INT32_MAX)
        imm_link(us, u, loop_send_imm(us->loop, u->s.fd, p, len, ud), len);
    else
        loop_send(us->loop, u->s.fd, p, len, ud);
    stream_started(&u->s);
    u->sending = true;
    if (u->streaming && u->phase == UP_SEND)
        up_arm(us, u, u->o->first_byte_timeout_ms);
}

static void up_send(struct upstreams *us, struct upconn *u)
{
    up_send_go(us, u, true);
}

void origin_imm_settle(struct upstreams *us)
{
    if (us->imm_head == NULL || loop_cq_overflow(us->loop))
        return;
    /* as outq_imm_settle: a send taken before this SQ head has its
     * failure (if any) handled already; positions are taken in order */
    uint32_t taken = loop_sq_taken(us->loop);
    struct upconn *u;
    while ((u = us->imm_head) != NULL &&
           (int32_t)(taken - u->imm_pos) > 0) {
        struct loop_cqe cq = {.ud = stream_ud(&u->s, OP_UP_SEND),
                              .res = u->imm_len};
        origin_on_cqe(us, &cq); /* unlinks u */
    }
}

bool origin_imm_busy(const struct upstreams *us)
{
    for (const struct upconn *u = us->imm_head; u; u = u->imm_next)
        if (!u->s.closed &&
            (u->out_sent + (size_t)u->imm_len < u->out.len ||
             (u->streaming && !u->body_done)))
            return true;
    return false;
}

/* Settle u's immediate send now if it can be (a completion of u is being
 * handled, so u is open and its sends' completions carry its current
 * generation): taken by the kernel and no failure of it in the CQ. */
static void up_settle_one(struct upstreams *us, struct upconn *u)
{
    uint64_t ud = stream_ud(&u->s, OP_UP_SEND);
    if ((int32_t)(loop_sq_taken(us->loop) - u->imm_pos) <= 0 ||
        loop_cqe_pending(us->loop, ud)) /* also true on CQ overflow */
        return;
    struct loop_cqe cq = {.ud = ud, .res = u->imm_len};
    origin_on_cqe(us, &cq);
}

/* ==== HTTP: a request body streamed from the client ==== */

/* Send u's request bytes once this batch of completions is handled: the
 * body bytes of every receive in the batch go in one send (a 16 KiB body
 * comes in four 4 KiB receive buffers). */
static void up_send_later(struct upstreams *us, struct upconn *u)
{
    if (u->dirty)
        return;
    u->dirty = true;
    u->next_dirty = us->dirty;
    us->dirty = u;
}

void origin_flush(struct upstreams *us)
{
    struct upconn *u;
    while ((u = us->dirty) != NULL) {
        us->dirty = u->next_dirty;
        u->dirty = false;
        up_send(us, u); /* nothing when closed or sending */
    }
}

/* Bytes of a streamed body out holds at most: its capacity past the head,
 * fixed when the request starts, so an append never moves the buffer
 * under a send in flight. */
#define UP_WINDOW (128 * 1024)
#define UP_FRAMING 32  /* a chunk's size line and CRLF, the last chunk */

/* How many more body bytes out takes now. */
static size_t up_room(const struct upconn *u)
{
    size_t free = u->out.cap - u->out.len;
    return free > 4096 + UP_FRAMING ? free - UP_FRAMING : 0;
}

static struct upconn *up_of_sink(struct h1_body_sink *s)
{
    return (struct upconn *)((char *)s - offsetof(struct upconn, sink));
}

/* h1_body_sink data: decoded body bytes go after what out holds, chunked
 * again when the client's were (never the client's chunk bytes). */
static size_t up_body_data(struct h1_body_sink *s, const char *p, size_t n)
{
    struct upconn *u = up_of_sink(s);
    if (u->body_chunked) {
        char size[24];
        int k = snprintf(size, sizeof size, "%zx\r\n", n);
        buf_append(&u->out, size, (size_t)k);
        buf_append(&u->out, p, n);
        buf_append(&u->out, "\r\n", 2);
    } else {
        buf_append(&u->out, p, n);
    }
    up_send_later(u->o->us, u);
    return up_room(u);
}

/* h1_body_sink end: the body is complete, or the client's side failed. */
static void up_body_end(struct h1_body_sink *s, int status)
{
    struct upconn *u = up_of_sink(s);
    struct upstreams *us = u->o->us;
    u->body_m = NULL;
    if (status == 0) {
        u->body_done = true;
        if (u->body_chunked) /* the last chunk, no trailer (§7.1) */
            buf_append(&u->out, "0\r\n\r\n", 5);
        up_send_later(us, u);
        return;
    }
    /* never let the origin take a cut body for a whole one */
    log_info("origin %s: request aborted: the client's body %s", u->o->name,
             status < 0 ? "ended with the client" : "failed");
    finish(u, false, status > 0 ? status : 502);
    if (u->phase == UP_FREE) { /* a fresh connection not started yet */
        u->phase = UP_CLOSED;
        stream_close(&u->s, false);
        up_maybe_free(us, u);
    } else {
        up_close(us, u);
    }
}

static void up_start_request(struct upstreams *us, struct upconn *u)
{
    struct origin *o = u->o;
    h1_resp_init(&u->resp, &up_ops, u);
    u->resp.head_request = (u->flags & ORQ_HEAD) != 0;
    u->got_bytes = false;
    u->out_sent = 0;
    u->phase = UP_SEND;
    up_arm(us, u, o->first_byte_timeout_ms);
    if (!u->s.recv_armed)
        stream_recv(us->loop, &u->s, OP_UP_RECV);
    if (u->streaming) /* with the body of this batch's receives */
        up_send_later(us, u);
    else
        up_send(us, u);
}

static void up_connect(struct upstreams *us, struct upconn *u)
{
    struct origin *o = u->o;
    stream_open(&u->s, socket(o->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (u->s.fd < 0) {
        log_err("origin %s: socket: %s", o->name, strerror(errno));
        u->why = errno_why(errno);
        u->phase = UP_CLOSED;
        stream_close(&u->s, false);
        finish(u, false, 502);
        up_maybe_free(us, u);
        return;
    }
    /* a streamed body goes out in several sends: Nagle would hold each
     * one under a full segment until the last is acknowledged (a delayed
     * ACK, 40 ms); nginx sets it on upstream connections too */
    int one = 1;
    setsockopt(u->s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    u->phase = UP_CONNECT;
    up_arm(us, u, o->connect_timeout_ms);
    o->st.connects++;
    loop_connect(us->loop, u->s.fd, (struct sockaddr *)&o->addr, o->alen,
                 stream_ud(&u->s, OP_UP_CONNECT));
    stream_started(&u->s);
}

static void file_fetch(struct upstreams *us, struct origin *o, const char *path,
                       size_t plen, struct cache_obj *obj);

/* The cache fill's request: GET path, Host, User-Agent, Accept. */
struct get_req {
    const struct origin *o;
    const char *path;
    size_t plen;
};

static int build_get(void *arg, struct buf *out)
{
    const struct get_req *g = arg;
    char line[256];
    buf_append(out, "GET ", 4);
    buf_append(out, g->path, g->plen);
    int n = snprintf(line, sizeof line,
                     " HTTP/1.1\r\nHost: %s\r\nUser-Agent: luring\r\n"
                     "Accept: */*\r\n\r\n", g->o->host);
    return buf_append(out, line, (size_t)n);
}

void origin_fetch(struct origin *o, const char *path, size_t plen,
                  struct cache_obj *obj)
{
    if (o->kind == ORIGIN_FILE) {
        o->st.requests++;
        file_fetch(o->us, o, path, plen, obj);
        return;
    }
    struct get_req g = {o, path, plen};
    origin_request(o, obj, ORQ_IDEMPOTENT, build_get, &g);
}

/* A request that failed before anything was sent on u: a pooled
 * connection is closed (it was taken out of the pool: nothing tells
 * whether the origin is still in step), a fresh one never connected. */
static void up_drop_unstarted(struct upstreams *us, struct upconn *u)
{
    if (u->reused) {
        u->phase = UP_WAIT;
        up_close(us, u);
    } else {
        u->phase = UP_CLOSED;
        stream_close(&u->s, false);
        up_maybe_free(us, u);
    }
}

static void up_wake(void *arg);

void origin_request(struct origin *o, struct cache_obj *obj, unsigned flags,
                    origin_build_pt build, void *arg)
{
    origin_request_stream(o, obj, flags, build, arg, NULL);
}

void origin_request_stream(struct origin *o, struct cache_obj *obj,
                           unsigned flags, origin_build_pt build, void *arg,
                           struct h1_msg *m)
{
    struct upstreams *us = o->us;
    o->st.requests++;
    if (o->kind != ORIGIN_HTTP) {
        cache_obj_done(obj, false, 502);
        return;
    }
    struct upconn *u = pool_take(us, o);
    if (u) {
        u->reused = true;
        o->st.reused++;
    } else {
        u = up_alloc(us);
        if (u == NULL) {
            us->fail_why = "out of memory";
            cache_obj_done(obj, false, 502);
            us->fail_why = NULL;
            return;
        }
        u->o = o;
    }
    cache_obj_ref(obj);
    u->obj = obj;
    if (us->timed)
        obj->up_start_us = clock_us();
    u->flags = flags;
    u->paused = false;
    if (flags & ORQ_HEAD)
        obj->head_only = true;
    if (obj->stream) {
        obj->fill_wake = up_wake;
        obj->fill_arg = u;
    }
    u->out.len = 0;
    u->out_sent = 0;
    u->sending = u->body_done = u->trimmed = false;
    u->streaming = m != NULL;
    u->body_m = NULL;
    if (build(arg, &u->out) < 0 ||
        (m && buf_reserve(&u->out, UP_WINDOW) < 0)) {
        finish(u, false, 502);
        up_drop_unstarted(us, u);
        return;
    }
    if (m) {
        /* demanded before the request starts: what is buffered goes out
         * with the head, in its send */
        static const struct h1_body_sink sink = {up_body_data, up_body_end};
        u->sink = sink;
        u->body_chunked = m->body_chunked;
        u->body_m = m;
        /* not started: its phase (UP_IDLE taken from the pool, UP_FREE
         * fresh) sends nothing yet, and up_body_end closes it right */
        int e = h1_body_start(m, &u->sink, up_room(u));
        if (u->obj != obj)
            return; /* the body failed or the client left: u is closed */
        if (e < 0) { /* not there to read (pass.c checks first) */
            u->body_m = NULL;
            finish(u, false, 502);
            u->streaming = false;
        }
    }
    if (u->obj != obj) { /* failed before it started */
        up_drop_unstarted(us, u);
        return;
    }
    if (u->reused)
        up_start_request(us, u);
    else
        up_connect(us, u);
}

/* A pooled connection failed before any response byte: the origin may
 * have closed it while idle. Retry once on a fresh connection. */
static bool retry_fresh(struct upstreams *us, struct upconn *u)
{
    /* a streamed body is sent again only while all of it that went out
     * is still in out (nothing trimmed) */
    if (!u->reused || u->got_bytes || u->obj == NULL ||
        !(u->flags & ORQ_IDEMPOTENT) || u->trimmed)
        return false;
    struct upconn *n = up_alloc(us);
    if (n == NULL)
        return false;
    if (buf_reserve(&n->out, u->out.cap) < 0) { /* the same window */
        n->phase = UP_CLOSED;
        stream_close(&n->s, false);
        up_maybe_free(us, n);
        return false;
    }
    n->o = u->o;
    n->obj = u->obj;
    n->flags = u->flags;
    u->obj = NULL;
    if (n->obj->stream)
        n->obj->fill_arg = n;
    buf_append(&n->out, u->out.data, u->out.len);
    if (u->streaming) { /* the body goes on into n */
        n->streaming = true;
        n->body_chunked = u->body_chunked;
        n->body_done = u->body_done;
        n->sink = u->sink;
        n->body_m = u->body_m;
        u->body_m = NULL;
        if (n->body_m)
            h1_body_move(n->body_m, &n->sink);
    }
    up_close(us, u);
    up_connect(us, n);
    return true;
}

static void up_fail(struct upstreams *us, struct upconn *u, int status)
{
    if (!retry_fresh(us, u)) {
        finish(u, false, status);
        up_close(us, u);
    }
}

/* The response is complete: keep the connection if it allows. */
static void up_done(struct upstreams *us, struct upconn *u)
{
    struct origin *o = u->o;
    /* a request still going out (a body the origin answered before it
     * read it all) leaves the connection out of step: not reused */
    bool keep = h1_resp_keep_alive(&u->resp) && !(u->flags & ORQ_CLOSE) &&
                o->nidle < o->keepalive_max && !u->sending &&
                u->out_sent == u->out.len &&
                (!u->streaming || u->body_done);
    finish(u, true, 0);
    if (!keep) {
        up_close(us, u);
        return;
    }
    u->phase = UP_IDLE;
    u->reused = false;
    /* the receive stays armed: see pool_take */
    up_arm(us, u, o->keepalive_ms);
    u->next = o->idle;
    o->idle = u;
    o->nidle++;
}

static void up_data(struct upstreams *us, struct upconn *u, const char *p,
                    size_t n)
{
    if (u->phase == UP_IDLE) { /* unexpected bytes on an idle connection */
        log_warn("origin %s: bytes on an idle connection before any "
                 "request: connection closed", u->o->name);
        up_close(us, u);
        return;
    }
    if (u->obj == NULL)
        return;
    u->got_bytes = true;
    u->phase = UP_READ;
    if (!u->paused) /* a paused fill waits for its reader, not the origin */
        up_arm(us, u, u->o->idle_timeout_ms);
    size_t k;
    u->feeding = true;
    enum h1_res res = h1_resp_feed(&u->resp, p, n, &k);
    u->feeding = false;
    if (res == H1_MORE && cache_obj_abandoned(u->obj)) {
        /* its reader left while the bytes were handed on (up_wake) */
        finish(u, false, 502);
        up_close(us, u);
    } else if (res == H1_DONE && k < n) {
        /* more than the framing announced: the response itself is whole
         * (its clients get it), but an origin that says one length and
         * sends another is not trusted with the cache or the connection */
        log_warn("origin %s: %zu bytes beyond the response's framing: "
                 "not cached, connection closed", u->o->name, n - k);
        cache_lock(u->obj->cache);
        u->obj->cacheable = false;
        cache_unindex(u->obj);
        cache_unlock(u->obj->cache);
        finish(u, true, 0);
        up_close(us, u);
    } else if (res == H1_DONE) {
        up_done(us, u);
    } else if (res == H1_MORE && cache_obj_fill_pause(u->obj)) {
        /* a pass-through's reader is far behind: stop reading the origin
         * (it waits on a full socket) until the reader catches up */
        u->paused = true;
        timer_disarm(&u->timer);
        if (u->s.recv_armed) {
            loop_cancel(us->loop, stream_ud(&u->s, OP_UP_RECV),
                        UD_MAKE(OP_CANCEL, 0, 0));
            u->recv_cancel = true;
        }
    } else if (res == H1_ERROR) {
        log_warn("origin %s: invalid response: %s", u->o->name,
                 h1_resp_error(&u->resp));
        u->why = h1_resp_error(&u->resp);
        up_fail(us, u, 502);
    }
}

static void up_eof(struct upstreams *us, struct upconn *u)
{
    if (u->obj && u->got_bytes) {
        /* a close-delimited body ends here; anything else is truncated */
        if (h1_resp_eof(&u->resp) == H1_DONE) {
            finish(u, true, 0);
            up_close(us, u);
            return;
        }
        log_warn("origin %s: connection closed mid-response (truncated)",
                 u->o->name);
    }
    u->why = u->got_bytes ? h1_resp_error(&u->resp)
                          : "connection closed before any response byte";
    up_fail(us, u, 502);
}

/* Should u have a receive armed (a response in progress, not paused)? */
static bool up_reading(const struct upconn *u)
{
    return !u->paused && !u->s.recv_armed && u->phase != UP_CLOSED &&
           u->phase != UP_FREE && u->phase != UP_IDLE;
}

/* fill_wake of a stream object: its reader caught up, or left. A fetch
 * nobody reads ends at once, its connection closed: waiting for the
 * origin's head (up to first_byte_timeout) or next bytes would hold the
 * connection for nothing. */
static void up_wake(void *arg)
{
    struct upconn *u = arg;
    struct upstreams *us = u->o->us;
    if (u->feeding)
        return; /* inside up_data, which looks once the feed is over */
    if (u->obj && cache_obj_abandoned(u->obj)) {
        finish(u, false, 502);
        up_close(us, u);
        return;
    }
    if (!u->paused)
        return;
    u->paused = false;
    up_arm(us, u, u->o->idle_timeout_ms);
    if (up_reading(u))
        stream_recv(us->loop, &u->s, OP_UP_RECV);
}

void origin_on_cqe(struct upstreams *us, const struct loop_cqe *cq)
{
    uint32_t idx = UD_IDX(cq->ud);
    if (idx >= us->n) {
        if (cq->has_buf)
            loop_buf_recycle(us->loop, cq->bid);
        return;
    }
    struct upconn *u = us->slots[idx];
    unsigned op = UD_OP(cq->ud);
    if (op == OP_UP_RECV && u->imm_pending && !u->s.closed &&
        UD_GEN(cq->ud) == u->s.gen)
        up_settle_one(us, u); /* the request first, then its response */
    bool stale = !stream_completed(&u->s, cq, op == OP_UP_RECV);
    if (op == OP_UP_RECV && !cq->more)
        u->recv_cancel = false; /* the receive ended */
    if (op == OP_UP_RECV) {
        if (stale) {
            if (cq->has_buf)
                loop_buf_recycle(us->loop, cq->bid);
        } else if (cq->res > 0) {
            up_data(us, u, loop_buf(us->loop, cq->bid), (size_t)cq->res);
            loop_buf_recycle(us->loop, cq->bid);
            if (!cq->more && up_reading(u))
                stream_recv(us->loop, &u->s, OP_UP_RECV);
        } else if (cq->res == 0) {
            up_eof(us, u);
        } else if (u->phase == UP_IDLE && cq->res == -ECANCELED) {
            /* a paused fill's receive, cancelled after its response
             * ended (up_data): reused, the connection arms a new one */
        } else if (cq->res == -ECANCELED && u->obj) {
            /* a paused fill's receive ended; woken meanwhile: read on */
            if (up_reading(u))
                stream_recv(us->loop, &u->s, OP_UP_RECV);
        } else if (cq->res == -ENOBUFS) {
            if (up_reading(u))
                stream_recv(us->loop, &u->s, OP_UP_RECV);
        } else {
            u->why = errno_why(-cq->res);
            up_fail(us, u, 502);
        }
    } else if (op == OP_UP_CONNECT) {
        if (!stale) {
            if (cq->res < 0) {
                log_warn("origin %s: connect: %s", u->o->name,
                         strerror(-cq->res));
                u->why = cq->res == -ECANCELED ? "timeout"
                                               : errno_why(-cq->res);
                finish(u, false, cq->res == -ECANCELED ? 504 : 502);
                up_close(us, u);
            } else {
                up_start_request(us, u);
            }
        }
    } else if (op == OP_UP_SEND) {
        bool imm = u->imm_pending;
        int imm_len = u->imm_len;
        imm_unlink(us, u); /* settled, or an immediate send that failed */
        u->sending = false;
        if (!stale) {
            if (imm && cq->res == -EAGAIN) {
                up_send_go(us, u, false); /* socket full: nothing went */
            } else if (cq->res <= 0) {
                u->why = cq->res < 0 ? errno_why(-cq->res) : "send failed";
                up_fail(us, u, 502);
            } else {
                u->out_sent += (size_t)cq->res;
                if (u->out_sent < u->out.len) {
                    /* short send (waits for socket space), or body added
                     * since the send (immediate again) */
                    up_send_go(us, u, imm && cq->res == imm_len);
                } else if (!u->streaming || u->body_done) {
                    if (u->phase == UP_SEND)
                        u->phase = UP_WAIT;
                } else {
                    /* all sent, the client's body goes on: the buffer
                     * starts again once its window runs low (what was
                     * sent is gone: no retry after that) */
                    if (u->out.cap - u->out.len < UP_WINDOW / 2) {
                        u->out.len = u->out_sent = 0;
                        u->trimmed = true;
                    }
                    if (u->phase == UP_SEND) /* the client's body_timeout */
                        timer_disarm(&u->timer);
                    if (u->body_m)
                        h1_body_more(u->body_m, up_room(u));
                }
            }
        }
    }
    up_maybe_free(us, u);
}

/* ==== files ==== */

#define FILE_READ_MAX (256 * 1024)

static void file_read_next(struct upstreams *us, struct upconn *u)
{
    size_t room;
    char *p = cache_obj_reserve(u->obj, &room);
    if (p == NULL) {
        finish(u, u->obj->len == (size_t)u->obj->total, 502);
        up_close(us, u);
        return;
    }
    /* object memory: owned by the kernel until OP_FILE_READ completes; the
     * fetch holds a ref on the object */
    loop_read(us->loop, u->s.fd, p, room, u->file_off,
              stream_ud(&u->s, OP_FILE_READ));
    stream_started(&u->s);
}

static void file_simple(struct cache_obj *obj, int status, int64_t now)
{
    const char *reason = http_reason(status);
    size_t n = strlen(reason);
    buf_append(&obj->hdrs, "Content-Type: text/plain\r\n", 26);
    /* shared with the requests that joined, never stored: a missing file
     * may appear at any moment, and looking again costs a stat */
    obj->status = status; /* cond_note reads it */
    cond_note(obj);
    cache_obj_head(obj, status, (int64_t)n + 1, true, 0, now);
    cache_obj_data(obj, reason, n);
    cache_obj_data(obj, "\n", 1);
    cache_obj_done(obj, true, 0);
}

static void file_fetch(struct upstreams *us, struct origin *o, const char *path,
                       size_t plen, struct cache_obj *obj)
{
    char full[2048];
    cache_obj_ref(obj);
    /* no "..", no NUL: the path stays under root */
    if (plen == 0 || path[0] != '/' || memchr(path, 0, plen) ||
        strstr(path, "/../") || (plen >= 3 && !memcmp(path + plen - 3, "/..", 3)) ||
        (size_t)snprintf(full, sizeof full, "%s%.*s", o->root, (int)plen,
                         path) >= sizeof full) {
        file_simple(obj, 400, loop_now(us->loop));
        cache_obj_unref(obj);
        return;
    }
    int fd = open(full, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        int status = fd < 0 && errno == EACCES ? 403 : 404;
        if (fd >= 0)
            close(fd);
        file_simple(obj, status, loop_now(us->loop));
        cache_obj_unref(obj);
        return;
    }
    struct upconn *u = up_alloc(us);
    if (u == NULL) {
        close(fd);
        cache_obj_done(obj, false, 502);
        cache_obj_unref(obj);
        return;
    }
    u->o = o;
    stream_open(&u->s, fd);
    u->obj = obj;
    u->phase = UP_READ;
    timer_disarm(&u->timer); /* file reads have no timeout */
    fetch_head(obj, 200, (int64_t)st.st_size, loop_now(us->loop));
    if (st.st_size == 0) {
        finish(u, true, 0);
        up_close(us, u);
        return;
    }
    file_read_next(us, u);
}

void origin_on_file_cqe(struct upstreams *us, const struct loop_cqe *cq)
{
    uint32_t idx = UD_IDX(cq->ud);
    if (idx >= us->n)
        return;
    struct upconn *u = us->slots[idx];
    if (!stream_completed(&u->s, cq, false)) {
        up_maybe_free(us, u);
        return;
    }
    if (cq->res <= 0) {
        if (cq->res < 0)
            log_warn("origin %s: read: %s", u->o->name, strerror(-cq->res));
        finish(u, false, 502); /* 0: the file shrank: truncated */
        up_close(us, u);
        return;
    }
    u->file_off += (uint64_t)cq->res;
    cache_obj_commit(u->obj, (size_t)cq->res);
    if (u->obj->len == (size_t)u->obj->total) {
        finish(u, true, 0);
        up_close(us, u);
    } else {
        file_read_next(us, u);
    }
}

/* ==== timeouts ==== */

/* A phase's timeout expired (io/timer.h). */
static void up_expired(struct timer_queue *q, struct timer *t)
{
    (void)q;
    struct upconn *u = (struct upconn *)((char *)t - offsetof(struct upconn, timer));
    struct upstreams *us = u->o->us;
    switch (u->phase) {
    case UP_CONNECT:
    case UP_SEND:
    case UP_WAIT:
        log_warn("origin %s: %s timed out", u->o->name,
                 u->phase == UP_CONNECT ? "connect" : "first byte");
        u->o->st.timeouts++;
        finish(u, false, 504);
        up_close(us, u);
        break;
    case UP_READ:
        log_warn("origin %s: no data for %lld ms (truncated)", u->o->name,
                 (long long)u->o->idle_timeout_ms);
        u->o->st.timeouts++;
        finish(u, false, 504);
        up_close(us, u);
        break;
    case UP_IDLE:
        up_close(us, u);
        break;
    default:
        break;
    }
}

void origin_cleanup(struct upstreams *us)
{
    for (unsigned i = 0; i < us->n; i++) {
        struct upconn *u = us->slots[i];
        if (u->s.fd >= 0)
            close(u->s.fd);
        if (u->obj) {
            /* a reader still open (an origin:request or luring.http
             * response held by a request at a hard stop) leaves later,
             * in lorigin_cleanup: it must not wake u, freed here */
            u->obj->fill_wake = NULL;
            /* a fill of a shared cache may have waiters on workers that
             * go on: they get an error rather than wait for ever (their
             * fill is never found again: failed objects leave the index) */
            if (u->obj->cache->shared)
                cache_obj_done(u->obj, false, 502);
            cache_obj_unref(u->obj);
        }
        buf_free(&u->out);
        h1_resp_free(&u->resp);
        free(u);
    }
    free(us->slots);
}
