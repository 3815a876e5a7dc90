/* outq.c - ordered output per connection. At most one send is in flight; it
 * covers everything queued when it started (coalescing pipelined responses
 * into one send). Short sends are resumed from where the kernel stopped.
 *
 * The first send of a flight is immediate when the ring can do it
 * (loop_send_imm): tried once as the kernel takes the SQE, it posts a
 * completion only if it did not go whole. Such sends wait on the worker's
 * outq_imm list, in SQ order, until outq_imm_settle() finds the kernel has
 * taken them; the rest of a short one goes out as an ordinary send, which
 * waits for socket space. A small response thus costs no completion, and
 * at one connection the loop sleeps in the same io_uring_enter that
 * submits it. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/outq.h"
#include "base/log.h"
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

/* Returns whether the copies' buffer was freed (above `keep`). */
static bool segq_release(struct worker *w, struct segq *q, size_t keep)
{
    for (unsigned i = 0; i < q->n; i++)
        if (q->segs[i].release)
            q->segs[i].release(w, q->segs[i].arg, q->segs[i].aux);
    q->n = 0;
    bool shrinks = q->bytes.cap > keep;
    buf_reset(&q->bytes, keep);
    return shrinks;
}

/* Charge the budget with what the copies' buffers hold now. */
static void account(struct outq *o)
{
    if (o->budget)
        budget_set(o->budget, &o->held, o->q.bytes.cap + o->flight.bytes.cap);
}

void outq_init(struct outq *o, struct stream *s, struct outq_imm *imm,
               struct worker *rel_ctx, const struct outq_ops *ops,
               void *owner)
{
    o->s = s;
    o->imm = imm;
    o->rel_ctx = rel_ctx;
    o->ops = ops;
    o->owner = owner;
}

void outq_copy(struct outq *o, const void *p, size_t len)
{
    struct segq *q = &o->q;
    if (len == 0 || o->s->closed)
        return;
    size_t off = q->bytes.len, cap = q->bytes.cap;
    if (buf_append(&q->bytes, p, len) < 0) {
        log_err("out of memory queueing %zu bytes: closing connection", len);
        o->ops->broken(o);
        return;
    }
    if (q->bytes.cap != cap)
        account(o);
    struct seg *last = q->n ? &q->segs[q->n - 1] : NULL;
    if (last && last->p == NULL && last->off + last->len == off) {
        last->len += len; /* contiguous with the previous copy */
    } else {
        struct seg sg = {.off = off, .len = len};
        if (segq_push(q, &sg) < 0) {
            log_err("out of memory queueing output: closing connection");
            o->ops->broken(o);
            return;
        }
    }
    o->queued += len;
    o->ops->dirty(o);
}

void outq_ref(struct outq *o, const char *p, size_t len, seg_release_pt rel,
              void *arg, intptr_t aux)
{
    struct seg sg = {.p = p, .len = len, .release = rel, .arg = arg,
                     .aux = aux};
    if (o->s->closed || segq_push(&o->q, &sg) < 0) {
        if (rel)
            rel(o->rel_ctx, arg, aux);
        if (!o->s->closed) {
            log_err("out of memory queueing output: closing connection");
            o->ops->broken(o);
        }
        return;
    }
    o->queued += len;
    o->ops->dirty(o);
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

static void imm_link(struct outq *o, uint32_t pos, size_t len)
{
    struct outq_imm *l = o->imm;
    o->imm_pos = pos;
    o->imm_len = (int)len;
    o->imm_pending = true;
    o->imm_next = NULL;
    o->imm_prev = l->tail;
    if (l->tail)
        l->tail->imm_next = o;
    else
        l->head = o;
    l->tail = o;
}

static void imm_unlink(struct outq *o)
{
    struct outq_imm *l = o->imm;
    if (!o->imm_pending)
        return;
    o->imm_pending = false;
    if (o->imm_prev)
        o->imm_prev->imm_next = o->imm_next;
    else
        l->head = o->imm_next;
    if (o->imm_next)
        o->imm_next->imm_prev = o->imm_prev;
    else
        l->tail = o->imm_prev;
    o->imm_prev = o->imm_next = NULL;
}

void outq_imm_settle(struct outq_imm *l, loop_cqe_pt done, void *ctx)
{
    /* With completions in the overflow list, one of them may be the
     * failure of a send below: wait until the kernel has flushed them. */
    if (l->head == NULL || loop_cq_overflow(l->loop))
        return;
    /* The SQ head as this pass begins, the CQ drained: a send taken before
     * it has its failure (if any) already handled. One taken later (a full
     * SQ submitted while `done` queues more) may have a failure waiting in
     * the CQ: it waits for the next pass. Positions are taken in order, so
     * stop at the first one not taken. */
    uint32_t taken = loop_sq_taken(l->loop);
    struct outq *o;
    while ((o = l->head) != NULL && (int32_t)(taken - o->imm_pos) > 0) {
        imm_unlink(o);
        struct loop_cqe cq = {.ud = stream_ud(o->s, OP_SEND),
                              .res = o->imm_len};
        done(ctx, &cq);
    }
}

/* ==== sending ==== */

static void send_next(struct outq *o, bool imm)
{
    struct loop *l = o->imm->loop;
    uint64_t ud = stream_ud(o->s, OP_SEND);
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
            pos = loop_send_imm(l, o->s->fd, p, len, ud);
        else
            loop_send(l, o->s->fd, p, len, ud);
    } else {
        memset(&o->msg, 0, sizeof o->msg);
        o->msg.msg_iov = &o->iov[o->iov_i];
        o->msg.msg_iovlen = n;
        if (imm)
            pos = loop_sendmsg_imm(l, o->s->fd, &o->msg, ud);
        else
            loop_sendmsg(l, o->s->fd, &o->msg, ud);
    }
    if (imm)
        imm_link(o, pos, len);
    o->sending = true;
    stream_started(o->s);
}

void outq_flush(struct outq *o)
{
    if (o->sending || o->q.n == 0 || o->s->closed)
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
        if (segq_release(o->rel_ctx, &o->flight, KEEP_BYTES))
            account(o);
        o->flight_left = 0;
        return;
    }
    send_next(o, true);
}

void outq_send_gone(struct outq *o)
{
    imm_unlink(o);
    o->sending = false;
}

int outq_sent(struct outq *o, int res)
{
    bool imm = o->imm_pending;
    imm_unlink(o); /* an immediate send that did not go whole */
    o->sending = false;
    if (imm && res == -EAGAIN) { /* the socket was full: nothing went */
        send_next(o, false);
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
        send_next(o, false); /* waits for socket space */
        return 1;
    }
    if (segq_release(o->rel_ctx, &o->flight, KEEP_BYTES))
        account(o);
    if (o->q.n) {
        /* queued while this send was in flight: its flush request was
         * dropped (one send at a time), so send it now */
        outq_flush(o);
        return o->sending ? 1 : 0; /* 0: only empty pieces */
    }
    return 0;
}

size_t outq_pending(const struct outq *o)
{
    return o->queued + o->flight_left;
}

void outq_release_all(struct outq *o)
{
    /* only when no send is in flight: the kernel may still read flight */
    segq_release(o->rel_ctx, &o->flight, 0);
    segq_release(o->rel_ctx, &o->q, 0);
    account(o);
    o->queued = o->flight_left = 0;
    o->iov_n = o->iov_i = 0;
}

void outq_free(struct outq *o)
{
    outq_release_all(o);
    free(o->q.segs);
    free(o->flight.segs);
    buf_free(&o->q.bytes);
    buf_free(&o->flight.bytes);
    account(o);
    memset(o, 0, sizeof *o);
}
