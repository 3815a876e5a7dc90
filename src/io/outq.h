/* outq.h - a connection's ordered output: small data copied into the
 * queue, large data referenced and released once the kernel is done with
 * it; one send in flight per connection; short sends resumed; immediate
 * sends (io/loop.h) settled against the SQ head. */
#ifndef LURING_OUTQ_H
#define LURING_OUTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "base/buf.h"
#include "io/loop.h"

#define OUT_HIGH (256 * 1024) /* queued output before producers stop */
#define OUT_LOW  (64 * 1024)  /* a blocked producer resumes below this */

struct conn;
struct worker;
typedef void (*seg_release_pt)(struct worker *w, void *arg, intptr_t aux);

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
    uint32_t imm_pos;    /* CF_SEND_IMM: SQ position of the send */
    int imm_len;         /* CF_SEND_IMM: its length */
};

void outq_copy(struct conn *c, const void *p, size_t len);
void outq_ref(struct conn *c, const char *p, size_t len, seg_release_pt rel,
              void *arg, intptr_t aux);
/** Hand queued output to the kernel unless a send is in flight. */
void outq_flush(struct conn *c);
/** A send completed with `res` bytes (or -errno). Returns 0 when
 * everything queued is sent, 1 when more is being sent (the rest of a
 * short send, or what was queued meanwhile), -1 on error. */
int outq_sent(struct conn *c, int res);
/** The send completion arrived for a closed connection: forget the send
 * (its buffers are released with outq_release_all). */
void outq_send_gone(struct conn *c);
/** Immediate sends (loop_send_imm) post no completion when they went
 * whole. Call with every completion in the CQ handled: for each such send
 * the kernel has taken (and no completion overflow), passes `done` the
 * completion it would have posted, in SQ order. `done` is the OP_SEND
 * handler (or the dispatcher) and may queue more sends. */
void outq_imm_settle(struct worker *w, loop_cqe_pt done, void *ctx);
/** An immediate send still waits to be settled and settling it would
 * do more than free its buffers (data queued behind it, input waiting,
 * a handler waiting for the queue to drain, a closing connection). */
bool outq_imm_busy(const struct worker *w);
size_t outq_pending(const struct conn *c);
void outq_release_all(struct conn *c);
void outq_free(struct conn *c);

#endif
