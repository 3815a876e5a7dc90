/* outq.c - ordered output per connection. At most one send is in flight; it
 * covers everything queued when it started (coalescing pipelined responses
 * into one send). Short sends are resumed from where the kernel stopped. */
#include <stdlib.h>
#include <string.h>

#include "server.h"

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

static void send_next(struct conn *c)
{
    struct outq *o = &c->out;
    uint64_t ud = UD_MAKE(OP_SEND, c->gen, c->idx);
    unsigned n = o->iov_n - o->iov_i;
    /* buffers: owned by the kernel until this OP_SEND completes */
    if (n == 1) {
        loop_send(c->w->loop, c->fd, o->iov[o->iov_i].iov_base,
                  o->iov[o->iov_i].iov_len, ud);
    } else {
        memset(&o->msg, 0, sizeof o->msg);
        o->msg.msg_iov = &o->iov[o->iov_i];
        o->msg.msg_iovlen = n;
        loop_sendmsg(c->w->loop, c->fd, &o->msg, ud);
    }
    c->flags |= CF_SENDING;
    c->inflight++;
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
    send_next(c);
}

int outq_sent(struct conn *c, int res)
{
    struct outq *o = &c->out;
    c->flags &= ~CF_SENDING;
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
        send_next(c);
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
