/* stream.h - one socket endpoint's lifecycle, the same for a client
 * connection and an origin connection (and later a Lua socket): its fd,
 * its slot and generation in user_data (io/loop.h), the operations the
 * kernel holds, the multishot receive, and a close after which the slot is
 * reused only once no operation of it is in flight. Completions of an
 * older life of the slot are recognised by their generation. */
#ifndef LURING_STREAM_H
#define LURING_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "io/loop.h"

struct stream {
    int fd;               /* -1: none */
    uint32_t idx;         /* slot index, in user_data */
    uint32_t gen;         /* bumped at close: drops stale completions */
    uint16_t inflight;    /* operations the kernel holds */
    bool recv_armed;      /* a multishot recv is in flight */
    bool closed;          /* shut down; freed once inflight is 0 */
};

/** user_data for op on s's current life. */
static inline uint64_t stream_ud(const struct stream *s, unsigned op)
{
    return UD_MAKE(op, s->gen, s->idx);
}

/** A new fd in the slot (same generation as the last close left it). */
void stream_open(struct stream *s, int fd);
/** Arm the multishot recv into the loop's provided buffers. */
void stream_recv(struct loop *l, struct stream *s, unsigned op);
/** An operation of s was submitted (a send, a connect, a read). */
static inline void stream_started(struct stream *s) { s->inflight++; }
/** A completion of s arrived: it is accounted for (a multishot recv that
 * stays armed still counts; `recv` says it is the recv's) and the result
 * says whether it belongs to s's current life (false: stale, only its
 * buffer is to be recycled). */
static inline bool stream_completed(struct stream *s,
                                    const struct loop_cqe *cq, bool recv)
{
    if (!recv || !cq->more) {
        if (recv)
            s->recv_armed = false;
        s->inflight--;
    }
    return UD_GEN(cq->ud) == s->gen && !s->closed;
}
/** Close: a new generation (later completions are stale) and, for a
 * socket (`shut`), shutdown(SHUT_RDWR), which ends the multishot recv and
 * fails pending sends. The fd is released by stream_release. */
void stream_close(struct stream *s, bool shut);
/** Closed and nothing in flight: the slot may be reused. */
static inline bool stream_done(const struct stream *s)
{
    return s->closed && s->inflight == 0;
}
/** Close the fd through the ring (after stream_done). */
void stream_release(struct loop *l, struct stream *s);

#endif
