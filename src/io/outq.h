/* outq.h - a stream's ordered output: small data copied into the queue,
 * large data referenced and released once the kernel is done with it; one
 * send in flight per stream; short sends resumed; immediate sends
 * (io/loop.h) settled against the SQ head. Knows nothing of what the
 * stream carries: its owner hears of it through outq_ops. */
#ifndef LURING_OUTQ_H
#define LURING_OUTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "base/budget.h"
#include "base/buf.h"
#include "io/loop.h"
#include "io/stream.h"

#define OUT_HIGH (256 * 1024) /* queued output before producers stop */
#define OUT_LOW  (64 * 1024)  /* a blocked producer resumes below this */

struct outq;
struct worker; /* opaque: handed to release callbacks */
typedef void (*seg_release_pt)(struct worker *w, void *arg, intptr_t aux);

/* What the owner of a queue hears. */
struct outq_ops {
    /** Something was queued: call outq_flush before the next submit. */
    void (*dirty)(struct outq *o);
    /** Out of memory queueing: the output is broken, close the stream. */
    void (*broken)(struct outq *o);
};

/* A worker's immediate sends, in SQ order (see outq_imm_settle). */
struct outq_imm {
    struct loop *loop;
    struct outq *head, *tail;
};

/* One piece of queued output, in order. Small data is copied into the
 * queue's byte buffer (p == NULL, off into it); large data is referenced
 * (p != NULL) and its owner is told by `release` once the kernel is done
 * with it, i.e. after the send completion that covered its last byte. */
struct seg {
    const char *p;
    size_t off;
    size_t len;
    seg_release_pt release; /* NULL: nothing to release */
    void *arg;
    intptr_t aux;
};

struct segq {
    struct buf bytes;  /* copied data */
    struct seg *segs;
    unsigned n, cap;
};

struct outq {
    struct segq q;       /* queued, not yet handed to the kernel */
    struct segq flight;  /* owned by the kernel until OP_SEND completes */
    struct iovec iov[64];
    unsigned iov_n, iov_i; /* iov[iov_i..iov_n) still to send */
    unsigned seg_next;   /* next flight segment not yet in iov */
    struct msghdr msg;
    size_t flight_left;  /* bytes of `flight` not yet sent */
    size_t queued;       /* bytes in q */
    bool sending;        /* a send is in flight */
    bool imm_pending;    /* ...and it is immediate, not settled yet */
    uint32_t imm_pos;    /* imm_pending: SQ position of the send */
    int imm_len;         /* imm_pending: its length */
    struct outq *imm_prev, *imm_next; /* on imm's list */
    struct stream *s;    /* the socket it sends on */
    struct outq_imm *imm;
    struct worker *rel_ctx; /* what release callbacks get */
    const struct outq_ops *ops;
    void *owner;         /* for ops */
    struct budget_local *budget; /* charged with the copies' buffers, or NULL */
    size_t held;         /* what this queue has charged it */
};

/** Attach o (zeroed or freed) to its stream and the worker's immediate
 * send list. */
void outq_init(struct outq *o, struct stream *s, struct outq_imm *imm,
               struct worker *rel_ctx, const struct outq_ops *ops,
               void *owner);
/** Queue a copy of p[0..len) (nothing once the stream is closed). */
void outq_copy(struct outq *o, const void *p, size_t len);
/** Queue p[0..len) by reference; rel(rel_ctx, arg, aux) once the kernel
 * is done with it (at once when the stream is closed or on failure). */
void outq_ref(struct outq *o, const char *p, size_t len, seg_release_pt rel,
              void *arg, intptr_t aux);
/** Hand queued output to the kernel unless a send is in flight. */
void outq_flush(struct outq *o);
/** A send completed with `res` bytes (or -errno). Returns 0 when
 * everything queued is sent, 1 when more is being sent (the rest of a
 * short send, or what was queued meanwhile), -1 on error. */
int outq_sent(struct outq *o, int res);
/** The send completion arrived for a closed stream: forget the send (its
 * buffers are released with outq_release_all). */
void outq_send_gone(struct outq *o);
/** Immediate sends (loop_send_imm) post no completion when they went
 * whole. Call with every completion in the CQ handled: for each such send
 * the kernel has taken (and no completion overflow), passes `done` the
 * completion it would have posted, in SQ order. `done` is the OP_SEND
 * handler (or the dispatcher) and may queue more sends. */
void outq_imm_settle(struct outq_imm *imm, loop_cqe_pt done, void *ctx);
/** Bytes queued or in flight. */
size_t outq_pending(const struct outq *o);
/** Release everything queued and free the copies' buffers (the stream is
 * done; the queue may be used again). */
void outq_release_all(struct outq *o);
void outq_free(struct outq *o);

#endif
