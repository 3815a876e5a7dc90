/* loop.h - one io_uring per worker thread. The only module that includes
 * liburing.h: HTTP, Lua and cache code ask it for operations by user_data and
 * get completions back through one dispatcher, so they can be tested without
 * a ring. */
#ifndef LURING_LOOP_H
#define LURING_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct loop;

/* user_data layout, the same for every operation:
 *   [63..56] op     what completed (enum in the module that armed it)
 *   [55..32] gen    generation of the slot when armed (24 bits); a completion
 *                   whose gen no longer matches its slot is stale and dropped
 *   [31..0]  index  slot index (connection, request, listener, ...) */
#define UD_MAKE(op, gen, idx)                                                  \
    (((uint64_t)(op) << 56) | (((uint64_t)(gen)&0xffffffu) << 32) |           \
     (uint64_t)(uint32_t)(idx))
#define UD_OP(ud)  ((unsigned)((ud) >> 56))
#define UD_GEN(ud) ((uint32_t)(((ud) >> 32) & 0xffffffu))
#define UD_IDX(ud) ((uint32_t)(ud))
#define GEN_MASK   0xffffffu

/* A completion as the loop hands it to the dispatcher. */
struct loop_cqe {
    uint64_t ud;
    int32_t res;       /* bytes / fd / 0, or -errno */
    bool more;         /* multishot op stays armed (IORING_CQE_F_MORE) */
    bool has_buf;      /* res bytes landed in provided buffer `bid` */
    uint16_t bid;
};

/* Called once per completion. */
typedef void (*loop_cqe_pt)(void *ctx, const struct loop_cqe *c);
/* Called once per iteration before the ring is submitted ("before sleep"):
 * flush sends, re-arm receives. Returns true when the loop may sleep until
 * the next completion, false when the caller has work to do as soon as
 * this submission is taken (immediate sends to settle that something
 * waits on). */
typedef bool (*loop_before_pt)(void *ctx);

struct loop_config {
    unsigned entries;   /* SQ size; the CQ gets 8x */
    unsigned nbufs;     /* provided receive buffers (power of two) */
    unsigned buf_size;  /* bytes each */
    bool no_imm;        /* never use immediate sends (loop_has_imm false) */
    unsigned batch_wait_us; /* batched idle waits under load: the most a
                               wait holds the first completion for more
                               (the kernel's min_wait), in µs; 0: the
                               default, 100 */
    bool no_batch_wait; /* wake at the first completion, always */
};

struct loop_ts {        /* same layout as struct __kernel_timespec */
    int64_t tv_sec;
    long long tv_nsec;
};

/** Create a ring and its provided-buffer ring. Returns NULL and fills err
 * (a sentence naming the cause, e.g. io_uring disabled) on failure. Must be
 * called on the thread that will run the loop (SINGLE_ISSUER). */
struct loop *loop_new(const struct loop_config *cfg, char *err, size_t errlen);
void loop_free(struct loop *l);

/** Run until loop_stop(): submit once per iteration, wait only when idle. */
void loop_run(struct loop *l, loop_cqe_pt on_cqe, loop_before_pt before,
              void *ctx);
void loop_stop(struct loop *l);
/** One iteration of loop_run that never sleeps: before(), submit, then
 * the completions already there (tests and fuzz targets drive a loop
 * step by step with it). */
void loop_poll(struct loop *l, loop_cqe_pt on_cqe, loop_before_pt before,
               void *ctx);

/* Operations. None can fail: when the SQ is full it is submitted first.
 * Memory passed in (msghdr, buffers, timespec) belongs to the kernel until
 * the operation's completion arrives; the caller keeps it alive. */
void loop_accept_multishot(struct loop *l, int fd, uint64_t ud);
void loop_recv_multishot(struct loop *l, int fd, uint64_t ud);
/** loop_recv_multishot that ends by itself (a completion without `more`,
 * its last bytes included) once `limit` bytes (> 0) came: the multishot
 * recv's total limit, sqe->optlen (Linux 6.17). An older kernel fails it
 * at once with -EINVAL. */
void loop_recv_multishot_lim(struct loop *l, int fd, uint32_t limit,
                             uint64_t ud);
void loop_send(struct loop *l, int fd, const void *buf, size_t len,
               uint64_t ud);
void loop_sendmsg(struct loop *l, int fd, const struct msghdr *msg,
                  uint64_t ud);
void loop_read(struct loop *l, int fd, void *buf, size_t len, uint64_t off,
               uint64_t ud);
/** Write len bytes of buf at offset off of fd; off (uint64_t)-1: at the
 * file's position (an O_APPEND file: its end, atomically). res = bytes
 * written (may be short) or -errno. */
void loop_write(struct loop *l, int fd, const void *buf, size_t len,
                uint64_t off, uint64_t ud);

/* Immediate sends (when loop_has_imm): tried once as the kernel takes the
 * SQE, without waiting for socket space. A completion is posted only when
 * not everything went: res = bytes sent (short), -EAGAIN (nothing sent,
 * socket full) or -errno. A send that went whole posts nothing; it is done
 * once loop_sq_taken() has passed the returned position, i.e.
 * (int32_t)(loop_sq_taken(l) - pos) > 0, with every completion in the CQ
 * handled and !loop_cq_overflow(). The buffers are then free, as after a
 * completion. Saves a completion and, at one connection, an io_uring_enter
 * per response. */
bool loop_has_imm(const struct loop *l);
uint32_t loop_send_imm(struct loop *l, int fd, const void *buf, size_t len,
                       uint64_t ud);
uint32_t loop_sendmsg_imm(struct loop *l, int fd, const struct msghdr *msg,
                          uint64_t ud);
/** SQ head: SQEs before this position have been taken by the kernel. */
uint32_t loop_sq_taken(const struct loop *l);
/** Completions wait in the kernel's overflow list (the CQ was full). */
bool loop_cq_overflow(const struct loop *l);
/** Has the kernel queued completion work since the last io_uring_enter
 * (e.g. a socket with an armed receive became readable)? false means no
 * armed operation has anything to report yet; true when unsure (rings
 * without DEFER_TASKRUN and TASKRUN_FLAG). */
bool loop_work_pending(const struct loop *l);
/** Run the completion work the kernel has queued (loop_work_pending) now:
 * one io_uring_enter that submits nothing; the completions it posts join
 * the CQ (the batch being handled picks them up). Nothing on rings where
 * loop_work_pending cannot tell. */
void loop_run_work(struct loop *l);
/** May a completion with user_data `ud` be in the CQ, not yet handed to
 * the dispatcher (later in this iteration's batch, or in the kernel's
 * overflow list)? Scans the few waiting CQEs; true when unsure. */
bool loop_cqe_pending(const struct loop *l, uint64_t ud);
void loop_connect(struct loop *l, int fd, const struct sockaddr *sa,
                  socklen_t salen, uint64_t ud);
void loop_timeout(struct loop *l, const struct loop_ts *ts, uint64_t ud);
/** Receive up to len bytes into buf (not a provided buffer): res = bytes,
 * 0 at the peer's end, or -errno. */
void loop_recv(struct loop *l, int fd, void *buf, size_t len, uint64_t ud);
/** Make room for n SQEs that must go in one submission (an operation and
 * its loop_link_timeout): the SQ is submitted first when it has fewer. */
void loop_reserve(struct loop *l, unsigned n);
/** Bound the operation queued just before (after loop_reserve(l, 2)) by
 * ts: when it has not completed in time it is cancelled (its res is
 * -ECANCELED). The timeout's own completion is reported with ud. ts is
 * read when the SQE is taken (the next submission). */
void loop_link_timeout(struct loop *l, const struct loop_ts *ts, uint64_t ud);
/** Cancel the operation(s) armed with user_data `target`; the cancel's own
 * completion is reported with `ud`. */
void loop_cancel(struct loop *l, uint64_t target, uint64_t ud);
void loop_close(struct loop *l, int fd, uint64_t ud);

/* ==== messages between rings (IORING_OP_MSG_RING, Linux 5.18) ====
 * One worker wakes another through the other's ring, without a syscall of
 * its own (the message goes with the sender's next submission) and
 * without an eventfd read to re-arm on the receiving side. */
/** Can this ring send messages to other rings (probed at loop_new)? When
 * false, wake another worker some other way (an eventfd it reads). */
bool loop_has_msg_ring(const struct loop *l);
/** The ring's file descriptor: what another ring's loop_msg_ring names. */
int loop_ring_fd(const struct loop *l);
/** Post a completion {ud, res} on the ring whose fd is target_fd (any
 * thread's ring; it is handed to that ring's dispatcher like its own
 * completions, with more = has_buf = false). Nothing completes on l when
 * the message is delivered; when it is not (the target ring is gone, its
 * CQ overflowed), l gets a completion with `fail_ud` and res -errno, and
 * the sender wakes the target some other way. Only with
 * loop_has_msg_ring. */
void loop_msg_ring(struct loop *l, int target_fd, int32_t res, uint64_t ud,
                   uint64_t fail_ud);

/** Provided receive buffer `bid` (valid until recycled). */
char *loop_buf(struct loop *l, uint16_t bid);
/** Give buffer `bid` back to the kernel. */
void loop_buf_recycle(struct loop *l, uint16_t bid);

/** Monotonic milliseconds, refreshed once per loop iteration. */
int64_t loop_now(const struct loop *l);
/** Refresh and return loop_now() (after slow work inside an iteration). */
int64_t loop_update_time(struct loop *l);

#endif
