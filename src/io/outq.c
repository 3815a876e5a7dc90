/* outq.c - ordered output per connection. At most one send is in flight; it
 * covers everything queued when it started (coalescing pipelined responses
 * into one send). Short sends are resumed from where the kernel stopped.
 *
 * The first send of a flight is immediate when the ring can do it
 * (loop_send_imm): tried once as the kernel takes the SQE, it posts a
 * completion only if it did not go whole. Such sends wait on the worker's
 * imm list, in SQ order, until outq_imm_settle() finds the kernel has
 * taken them; the rest of a short one goes out as an ordinary send, which
 * waits for socket space. A small response thus costs no completion, and
 * at one connection the loop sleeps in the same io_uring_enter that
 * submits it. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/outq.h"
#include "app/worker.h"
#include "base/log.h"
#include "http/h1_server.h"
#include "io/ops.h"

#define KEEP_BYTES (16 * 1024) /* queue memory kept across requests */

static int segq_push(struct segq *q, const struct seg *s)
{
    if (q->n == q->cap) {
        unsigned cap = q->cap ? q->cap * 2 : 8;
        struct seg *p = realloc(q->segs, cap * sizeof *p);
        if (p == NULL)
            return -1;
        q->segs = p;
        q->cap = cap;
    }
    q->segs[q->n++] = *s;
    return 0;
}

static void segq_release(struct worker *w, struct segq *q)
{
    for (unsigned i = 0; i < q->n; i++)
        if (q->segs[i].release)
            q->segs[i].release(w, q->segs[i].arg, q->segs[i].aux);
    q->n = 0;
    buf_reset(&q->bytes, KEEP_BYTES);
}

void outq_copy(struct conn *c, const void *p, size_t len)
{
    struct segq *q = &c->out.q;
    if (len == 0 || c->state >= CS_CLOSED)
        return;
    size_t off = q->bytes.len;
    if (buf_append(&q->bytes, p, len) < 0) {
        log_err("out of memory queueing %zu bytes: closing connection", len);
        conn_close(c);
        return;
    }
    struct seg *last = q->n ? &q->segs[q->n - 1] : NULL;
    if (last && last->p == NULL && last->off + last->len == off) {
        last->len += len; /* contiguous with the previous copy */
    } else {
        struct seg s = {.off = off, .len = len};
        if (segq_push(q, &s) < 0) {
            log_err("out of memory queueing output: closing connection");
            conn_close(c);
            return;
        }
    }
    c->out.queued += len;
    conn_mark_dirty(c);
}

void outq_ref(struct conn *c, const char *p, size_t len, seg_release_pt rel,
              void *arg, intptr_t aux)
{
    struct seg s = {.p = p, .len = len, .release = rel, .arg = arg,
                    .aux = aux};
    if (c->state >= CS_CLOSED || segq_push(&c->out.q, &s) < 0) {
        if (rel)
            rel(c->w, arg, aux);
        if (c->state < CS_CLOSED) {
            log_err("out of memory queueing output: closing connection");
            conn_close(c);
        }
        return;
    }
    c->out.queued += len;
    conn_mark_dirty(c);
}

/* Fill iov[] from flight segments starting at *next. */
static void build_iov(struct outq *o, unsigned *next)
{
    o->iov_n = o->iov_i = 0;
    while (*next < o->flight.n && o->iov_n < sizeof o->iov / sizeof o->iov[0]) {
        const struct seg *s = &o->flight.segs[(*next)++];
        if (s->len == 0)
            continue;
        o->iov[o->iov_n].iov_base =
            (void *)(s->p ? s->p : o->flight.bytes.data + s->off);
        o->iov[o->iov_n].iov_len = s->len;
        o->iov_n++;
    }
}

/* ==== immediate sends: the worker's list, in SQ order ==== */

static void imm_link(struct conn *c, uint32_t pos, size_t len)
{
    struct worker *w = c->w;
    c->out.imm_pos = pos;
    c->out.imm_len = (int)len;
    c->flags |= CF_SEND_IMM;
    c->imm_next = NULL;
    c->imm_prev = w->imm_tail;
    if (w->imm_tail)
        w->imm_tail->imm_next = c;
    else
        w->imm_head = c;
    w->imm_tail = c;
}

static void imm_unlink(struct conn *c)
{
    struct worker *w = c->w;
    if (!(c->flags & CF_SEND_IMM))
        return;
    c->flags &= (uint16_t)~CF_SEND_IMM;
    if (c->imm_prev)
        c->imm_prev->imm_next = c->imm_next;
    else
        w->imm_head = c->imm_next;
    if (c->imm_next)
        c->imm_next->imm_prev = c->imm_prev;
    else
        w->imm_tail = c->imm_prev;
    c->imm_prev = c->imm_next = NULL;
}

void outq_imm_settle(struct worker *w, loop_cqe_pt done, void *ctx)
{
    /* With completions in the overflow list, one of them may be the
     * failure of a send below: wait until the kernel has flushed them. */
    if (w->imm_head == NULL || loop_cq_overflow(w->loop))
        return;
    /* The SQ head as this pass begins, the CQ drained: a send taken before
     * it has its failure (if any) already handled. One taken later (a full
     * SQ submitted while `done` queues more) may have a failure waiting in
     * the CQ: it waits for the next pass. Positions are taken in order, so
     * stop at the first one not taken. */
    uint32_t taken = loop_sq_taken(w->loop);
    struct conn *c;
    while ((c = w->imm_head) != NULL &&
           (int32_t)(taken - c->out.imm_pos) > 0) {
        imm_unlink(c);
        struct loop_cqe cq = {.ud = stream_ud(&c->s, OP_SEND),
                              .res = c->out.imm_len};
        done(ctx, &cq);
    }
}

bool outq_imm_busy(const struct worker *w)
{
    for (const struct conn *c = w->imm_head; c; c = c->imm_next) {
        /* settling a keep-alive connection's last response only frees its
         * buffers and moves it from the send to the idle timer */
        if (c->state != CS_READING || c->out.q.n || c->in.len ||
            (c->flags & CF_RECV_PAUSED))
            return true;
    }
    return false;
}

/* ==== sending ==== */

static void send_next(struct conn *c, bool imm)
{
    struct outq *o = &c->out;
    struct loop *l = c->w->loop;
    uint64_t ud = stream_ud(&c->s, OP_SEND);
    unsigned n = o->iov_n - o->iov_i;
    size_t len = 0;
    for (unsigned i = o->iov_i; i < o->iov_n; i++)
        len += o->iov[i].iov_len;
    imm = imm && loop_has_imm(l) && len <= INT32_MAX;
    uint32_t pos = 0;
    /* buffers: owned by the kernel until this OP_SEND completes (or, for
     * an immediate send, is settled) */
    if (n == 1) {
        void *p = o->iov[o->iov_i].iov_base;
        if (imm)
            pos = loop_send_imm(l, c->s.fd, p, len, ud);
        else
            loop_send(l, c->s.fd, p, len, ud);
    } else {
        memset(&o->msg, 0, sizeof o->msg);
        o->msg.msg_iov = &o->iov[o->iov_i];
        o->msg.msg_iovlen = n;
        if (imm)
            pos = loop_sendmsg_imm(l, c->s.fd, &o->msg, ud);
        else
            loop_sendmsg(l, c->s.fd, &o->msg, ud);
    }
    if (imm)
        imm_link(c, pos, len);
    c->flags |= CF_SENDING;
    stream_started(&c->s);
}

void outq_flush(struct conn *c)
{
    struct outq *o = &c->out;
    if ((c->flags & CF_SENDING) || o->q.n == 0 || c->state >= CS_CLOSED)
        return;
    /* The queue becomes the flight; the (empty) old flight becomes the
     * queue, so its memory is reused. */
    struct segq t = o->flight;
    o->flight = o->q;
    o->q = t;
    o->flight_left = o->queued;
    o->queued = 0;
    o->seg_next = 0;
    build_iov(o, &o->seg_next);
    if (o->iov_n == 0) { /* only empty segments */
        segq_release(c->w, &o->flight);
        o->flight_left = 0;
        return;
    }
    send_next(c, true);
}

void outq_send_gone(struct conn *c)
{
    imm_unlink(c);
    c->flags &= (uint16_t)~CF_SENDING;
}

int outq_sent(struct conn *c, int res)
{
    struct outq *o = &c->out;
    bool imm = (c->flags & CF_SEND_IMM) != 0;
    imm_unlink(c); /* an immediate send that did not go whole */
    c->flags &= (uint16_t)~CF_SENDING;
    if (imm && res == -EAGAIN) { /* the socket was full: nothing went */
        send_next(c, false);
        return 1;
    }
    if (res <= 0)
        return -1;
    size_t left = (size_t)res;
    o->flight_left -= left;
    while (left > 0 && o->iov_i < o->iov_n) {
        struct iovec *v = &o->iov[o->iov_i];
        if (left >= v->iov_len) {
            left -= v->iov_len;
            o->iov_i++;
        } else { /* short send: resume inside this iovec */
            v->iov_base = (char *)v->iov_base + left;
            v->iov_len -= left;
            left = 0;
        }
    }
    if (o->iov_i == o->iov_n && o->seg_next < o->flight.n)
        build_iov(o, &o->seg_next);
    if (o->iov_i < o->iov_n) {
        send_next(c, false); /* waits for socket space */
        return 1;
    }
    segq_release(c->w, &o->flight);
    if (o->q.n) {
        /* queued while this send was in flight: its flush request was
         * dropped (one send at a time), so send it now */
        outq_flush(c);
        return (c->flags & CF_SENDING) ? 1 : 0; /* 0: only empty pieces */
    }
    return 0;
}

size_t outq_pending(const struct conn *c)
{
    return c->out.queued + c->out.flight_left;
}

void outq_release_all(struct conn *c)
{
    /* only when no send is in flight: the kernel may still read flight */
    segq_release(c->w, &c->out.flight);
    segq_release(c->w, &c->out.q);
    c->out.queued = c->out.flight_left = 0;
    c->out.iov_n = c->out.iov_i = 0;
}

void outq_free(struct conn *c)
{
    outq_release_all(c);
    free(c->out.q.segs);
    free(c->out.flight.segs);
    buf_free(&c->out.q.bytes);
    buf_free(&c->out.flight.bytes);
    memset(&c->out, 0, sizeof c->out);
}
