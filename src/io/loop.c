/* loop.c - the io_uring event loop: ring set-up with the best flags the
 * kernel has, a provided-buffer ring for multishot receives, SQE acquisition
 * that never fails, and one submit per iteration (wait only when idle). */
#define _GNU_SOURCE
#include "io/loop.h"
#include "base/log.h"

#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Newer than liburing 2.3's headers; the running kernel (6.x) has them. */
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif
#ifndef IORING_FEAT_NO_IOWAIT /* Linux 6.15 */
#define IORING_FEAT_NO_IOWAIT (1U << 17)
#endif
#ifndef IORING_ENTER_NO_IOWAIT
#define IORING_ENTER_NO_IOWAIT (1U << 7)
#endif

#ifndef IORING_FEAT_MIN_TIMEOUT /* Linux 6.12 */
#define IORING_FEAT_MIN_TIMEOUT (1U << 15)
#endif
/* io_uring_getevents_arg as of Linux 6.12 (liburing 2.3 calls min_wait_usec
 * "pad") */
struct luring_getevents_arg {
    uint64_t sigmask;
    uint32_t sigmask_sz;
    uint32_t min_wait_usec;
    uint64_t ts;
};

#define BGID 1 /* our one buffer group */
/* Batched idle waits (submit_and_wait_idle): wait for up to this many
 * completions, and at most batch_wait_us (default WAIT_MIN_US) once one
 * is ready; only when the usual batch (struct loop's batch16) is at least
 * WAIT_BATCH_MIN. */
#define WAIT_BATCH_MAX 16
#define WAIT_MIN_US 100
#define WAIT_BATCH_MIN 4

struct loop {
    struct io_uring ring;
    struct io_uring_sqe *last_sqe; /* the last get_sqe: loop_link_timeout */
    struct io_uring_buf_ring *br;  /* provided buffers, shared with kernel */
    char *bufs;                    /* nbufs * buf_size bytes */
    unsigned nbufs, buf_size, buf_mask;
    unsigned recycled;             /* buffers added since last advance */
    bool imm;                      /* immediate sends (IORING_FEAT_CQE_SKIP) */
    bool no_iowait;                /* waits are not iowait (FEAT_NO_IOWAIT) */
    bool reg_ring;                 /* ring fd registered: enter by index */
    bool msg_ring;                 /* IORING_OP_MSG_RING supported */
    bool min_wait;                 /* IORING_FEAT_MIN_TIMEOUT (6.12), and
                                      batched waits not turned off */
    unsigned wait_us;              /* their cap (loop_config's
                                      batch_wait_us) */
    unsigned batch16;              /* the usual batch: completions per
                                      iteration that had any, a moving
                                      average in 1/16ths (batch_note) */
    bool taskrun_flag;             /* DEFER_TASKRUN + TASKRUN_FLAG: the SQ
                                      flags say when task work is queued */
    bool stop;
    unsigned cq_next;              /* CQ position of the first completion
                                      not handed to on_cqe yet */
    int64_t now_ms;
};

/* ==== set-up ==== */

static int ring_init(struct loop *l, unsigned entries, bool want_imm)
{
    static const unsigned flag_sets[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
            IORING_SETUP_TASKRUN_FLAG,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int ret = -EINVAL;
    for (size_t i = 0; i < sizeof flag_sets / sizeof flag_sets[0]; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = flag_sets[i] | IORING_SETUP_CQSIZE;
        p.cq_entries = entries * 8;
        ret = io_uring_queue_init_params(entries, &l->ring, &p);
        if (ret != -EINVAL) { /* success, or a reason no flag set will fix */
            l->imm = want_imm && (p.features & IORING_FEAT_CQE_SKIP);
            l->no_iowait = (p.features & IORING_FEAT_NO_IOWAIT) != 0;
            /* the lazy wake-up that min_wait relies on is DEFER_TASKRUN's */
            l->min_wait = (p.features & IORING_FEAT_MIN_TIMEOUT) && i == 0;
            l->taskrun_flag = i == 0;
            return ret;
        }
    }
    return ret;
}

struct loop *loop_new(const struct loop_config *cfg, char *err, size_t errlen)
{
    struct loop *l = calloc(1, sizeof *l);
    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int ret = ring_init(l, cfg->entries, !cfg->no_imm);
    if (ret < 0) {
        if (ret == -ENOSYS || ret == -EPERM)
            snprintf(err, errlen,
                     "io_uring is unavailable (%s): it may be disabled by "
                     "/proc/sys/kernel/io_uring_disabled or a seccomp policy "
                     "(containers often block it)",
                     strerror(-ret));
        else
            snprintf(err, errlen, "io_uring_queue_init: %s", strerror(-ret));
        free(l);
        return NULL;
    }

    if (cfg->no_batch_wait)
        l->min_wait = false;
    l->wait_us = cfg->batch_wait_us ? cfg->batch_wait_us : WAIT_MIN_US;
    l->nbufs = cfg->nbufs;
    l->buf_size = cfg->buf_size;
    l->buf_mask = (unsigned)io_uring_buf_ring_mask(cfg->nbufs);
    size_t ring_bytes = cfg->nbufs * sizeof(struct io_uring_buf);
    void *mem = NULL;
    if (posix_memalign(&mem, (size_t)sysconf(_SC_PAGESIZE), ring_bytes) ||
        (l->bufs = malloc((size_t)cfg->nbufs * cfg->buf_size)) == NULL) {
        snprintf(err, errlen, "out of memory for receive buffers");
        goto fail;
    }
    l->br = mem;
    io_uring_buf_ring_init(l->br);
    struct io_uring_buf_reg reg = {
        .ring_addr = (unsigned long)l->br,
        .ring_entries = cfg->nbufs,
        .bgid = BGID,
    };
    ret = io_uring_register_buf_ring(&l->ring, &reg, 0);
    if (ret < 0) {
        snprintf(err, errlen,
                 "io_uring_register_buf_ring: %s (provided buffer rings "
                 "need Linux 5.19 or later)",
                 strerror(-ret));
        goto fail;
    }
    for (unsigned i = 0; i < cfg->nbufs; i++)
        io_uring_buf_ring_add(l->br, l->bufs + (size_t)i * cfg->buf_size,
                              cfg->buf_size, (unsigned short)i, l->buf_mask,
                              (int)i);
    io_uring_buf_ring_advance(l->br, (int)cfg->nbufs);
    /* the ring's own fd, registered: io_uring_enter skips the fd table
     * lookup on every call (best effort) */
    l->reg_ring = io_uring_register_ring_fd(&l->ring) == 1;
    struct io_uring_probe *probe = io_uring_get_probe_ring(&l->ring);
    if (probe) {
        l->msg_ring = io_uring_opcode_supported(probe, IORING_OP_MSG_RING);
        io_uring_free_probe(probe);
    }
    loop_update_time(l);
    return l;

fail:
    io_uring_queue_exit(&l->ring);
    free(l->br);
    free(l->bufs);
    free(l);
    return NULL;
}

void loop_free(struct loop *l)
{
    if (l == NULL)
        return;
    io_uring_queue_exit(&l->ring);
    free(l->br);
    free(l->bufs);
    free(l);
}

/* ==== SQE acquisition ==== */

/* Never returns NULL: a full SQ is submitted to make room (the seed
 * worklog's server panicked here). */
static void submit_for_room(struct loop *l)
{
    int ret = io_uring_submit(&l->ring);
    if (ret < 0 && ret != -EAGAIN && ret != -EBUSY && ret != -EINTR) {
        log_crit("io_uring_submit: %s", strerror(-ret));
        abort();
    }
}

static struct io_uring_sqe *get_sqe(struct loop *l)
{
    struct io_uring_sqe *sqe;
    while ((sqe = io_uring_get_sqe(&l->ring)) == NULL)
        submit_for_room(l);
    l->last_sqe = sqe;
    return sqe;
}

void loop_reserve(struct loop *l, unsigned n)
{
    while (io_uring_sq_space_left(&l->ring) < n)
        submit_for_room(l);
}

void loop_link_timeout(struct loop *l, const struct loop_ts *ts, uint64_t ud)
{
    l->last_sqe->flags |= IOSQE_IO_LINK;
    struct io_uring_sqe *sqe = get_sqe(l);
    io_uring_prep_link_timeout(sqe, (struct __kernel_timespec *)ts, 0);
    io_uring_sqe_set_data64(sqe, ud);
}

void loop_recv(struct loop *l, int fd, void *buf, size_t len, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(l);
    io_uring_prep_recv(sqe, fd, buf, len, 0);
    io_uring_sqe_set_data64(sqe, ud);
}

void loop_accept_multishot(struct loop *l, int fd, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(l);
    io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud);
}

void loop_recv_multishot(struct loop *l, int fd, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(l);
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, ud);
}

void loop_recv_multishot_lim(struct loop *l, int fd, uint32_t limit,
                             uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(l);
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    /* sqe->optlen of newer headers: the same 32 bits as file_index */
    sqe->file_index = limit;
    io_uring_sqe_set_data64(sqe, ud);
}

void loop_send(struct loop *l, int fd, const void *buf, size_t len,
               uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(l);
    io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud);
}

void loop_sendmsg(struct loop *l, int fd, const struct msghdr *msg,
                  uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(l);
    io_uring_prep_sendmsg(sqe, fd, msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud);
}

/* ==== messages between rings ==== */

bool loop_has_msg_ring(const struct loop *l) { return l->msg_ring; }

int loop_ring_fd(const struct loop *l) { return l->ring.ring_fd; }

void loop_msg_ring(struct loop *l, int target_fd, int32_t res, uint64_t ud,
                   uint64_t fail_ud)
{
    struct io_uring_sqe *sqe = get_sqe(l);
    /* len -> the target CQE's res, off -> its user_data */
    io_uring_prep_msg_ring(sqe, target_fd, (unsigned)res, ud, 0);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, fail_ud);
}

/* ==== immediate sends ====
 * MSG_DONTWAIT makes the kernel try the send once, while it takes the SQE,
 * and never park it waiting for socket space (REQ_F_NOWAIT); MSG_WAITALL
 * makes anything short of the whole length a failure; failures always post
 * a completion, even with IOSQE_CQE_SKIP_SUCCESS. So once the SQ head has
 * passed the SQE, either its completion is in the CQ or everything went. */

bool loop_has_imm(const struct loop *l) { return l->imm; }

static uint32_t imm_mark(struct loop *l, struct io_uring_sqe *sqe,
                         uint64_t ud)
{
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, ud);
    return l->ring.sq.sqe_tail - 1; /* this SQE's position */
}

uint32_t loop_send_imm(struct loop *l, int fd, const void *buf, size_t len,
                       uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(l);
    io_uring_prep_send(sqe, fd, buf, len,
                       MSG_NOSIGNAL | MSG_DONTWAIT | MSG_WAITALL);
    return imm_mark(l, sqe, ud);
}

uint32_t loop_sendmsg_imm(struct loop *l, int fd, const struct msghdr *msg,
                          uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(l);
    io_uring_prep_sendmsg(sqe, fd, msg,
                          MSG_NOSIGNAL | MSG_DONTWAIT | MSG_WAITALL);
    return imm_mark(l, sqe, ud);
}

uint32_t loop_sq_taken(const struct loop *l)
{
    return io_uring_smp_load_acquire(l->ring.sq.khead);
}

bool loop_cq_overflow(const struct loop *l)
{
    return (IO_URING_READ_ONCE(*l->ring.sq.kflags) & IORING_SQ_CQ_OVERFLOW)
           != 0;
}

bool loop_work_pending(const struct loop *l)
{
    /* with DEFER_TASKRUN, task work runs only inside our io_uring_enter;
     * TASKRUN_FLAG makes the kernel set IORING_SQ_TASKRUN as soon as some
     * is queued (an armed receive's socket became readable) and clear it
     * when it has run */
    return !l->taskrun_flag ||
           (IO_URING_READ_ONCE(*l->ring.sq.kflags) & IORING_SQ_TASKRUN) != 0;
}

void loop_run_work(struct loop *l)
{
    /* GETEVENTS with nothing to submit and no minimum: the kernel runs
     * the ring's deferred task work and returns */
    if (l->taskrun_flag)
        io_uring_get_events(&l->ring);
}

bool loop_cqe_pending(const struct loop *l, uint64_t ud)
{
    if (loop_cq_overflow(l))
        return true; /* some wait in the kernel's list: can't tell */
    const struct io_uring_cq *cq = &l->ring.cq;
    unsigned tail = io_uring_smp_load_acquire(cq->ktail);
    for (unsigned h = l->cq_next; h != tail; h++)
        if (cq->cqes[h & cq->ring_mask].user_data == ud)
            return true;
    return false;
}

void loop_read(struct loop *l, int fd, void *buf, size_t len, uint64_t off,
               uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(l);
    io_uring_prep_read(sqe, fd, buf, (unsigned)len, off);
    io_uring_sqe_set_data64(sqe, ud);
}

void loop_write(struct loop *l, int fd, const void *buf, size_t len,
                uint64_t off, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(l);
    io_uring_prep_write(sqe, fd, buf, (unsigned)len, off);
    io_uring_sqe_set_data64(sqe, ud);
}

void loop_connect(struct loop *l, int fd, const struct sockaddr *sa,
                  socklen_t salen, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(l);
    io_uring_prep_connect(sqe, fd, sa, salen);
    io_uring_sqe_set_data64(sqe, ud);
}

void loop_timeout(struct loop *l, const struct loop_ts *ts, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(l);
    io_uring_prep_timeout(sqe, (struct __kernel_timespec *)ts, 0, 0);
    io_uring_sqe_set_data64(sqe, ud);
}

void loop_cancel(struct loop *l, uint64_t target, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(l);
    io_uring_prep_cancel64(sqe, target, 0);
    io_uring_sqe_set_data64(sqe, ud);
}

void loop_close(struct loop *l, int fd, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(l);
    io_uring_prep_close(sqe, fd);
    io_uring_sqe_set_data64(sqe, ud);
}

/* ==== provided buffers ==== */

char *loop_buf(struct loop *l, uint16_t bid)
{
    return l->bufs + (size_t)bid * l->buf_size;
}

void loop_buf_recycle(struct loop *l, uint16_t bid)
{
    /* Published to the kernel in one advance per iteration (loop_run). */
    io_uring_buf_ring_add(l->br, loop_buf(l, bid), l->buf_size, bid,
                          l->buf_mask, (int)l->recycled);
    l->recycled++;
}

static void publish_recycled(struct loop *l)
{
    if (l->recycled) {
        io_uring_buf_ring_advance(l->br, (int)l->recycled);
        l->recycled = 0;
    }
}

/* ==== time ==== */

int64_t loop_now(const struct loop *l) { return l->now_ms; }

int64_t loop_update_time(struct loop *l)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    l->now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    return l->now_ms;
}

/* Submit and sleep until a completion, like io_uring_submit_and_wait(1),
 * but with IORING_ENTER_NO_IOWAIT: a server waiting for requests is idle,
 * not waiting for I/O. Without the flag the kernel counts the wait as
 * iowait whenever a request is armed (always: the multishot accept and
 * receives), so an idle luring showed its CPU as 100 % iowait. liburing
 * 2.3 has no call for the flag, hence the raw io_uring_enter. */
static int submit_and_wait_idle(struct loop *l)
{
    if (!l->no_iowait)
        return io_uring_submit_and_wait(&l->ring, 1);
    struct io_uring_sq *sq = &l->ring.sq;
    unsigned tail = sq->sqe_tail;
    if (sq->sqe_head != tail) { /* publish prepared SQEs (liburing's flush) */
        sq->sqe_head = tail;
        io_uring_smp_store_release(sq->ktail, tail);
    }
    unsigned submit = tail - IO_URING_READ_ONCE(*sq->khead);
    unsigned flags = IORING_ENTER_GETEVENTS | IORING_ENTER_NO_IOWAIT;
    int fd = l->ring.ring_fd;
    if (l->reg_ring) {
        flags |= IORING_ENTER_REGISTERED_RING;
        fd = l->ring.enter_ring_fd;
    }
    long ret;
    unsigned nr = (l->batch16 + 8) / 16;
    if (nr > WAIT_BATCH_MAX)
        nr = WAIT_BATCH_MAX;
    if (l->min_wait && nr >= WAIT_BATCH_MIN) {
        /* Under load (wake-ups usually bring several completions): sleep
         * until as many are ready, or at most wait_us once there is one
         * (the kernel's min_wait; with none it waits on for the first).
         * Fewer wake-ups and io_uring_enter calls per request; a lone
         * client (batches of one) still wakes the loop at once. The
         * 1 s timeout only bounds the wait: on -ETIME the load is gone, and
         * the next wait is a plain one again. */
        struct __kernel_timespec ts = {.tv_sec = 1};
        struct luring_getevents_arg a = {
            .sigmask_sz = _NSIG / 8,
            .min_wait_usec = l->wait_us,
            .ts = (uint64_t)(uintptr_t)&ts,
        };
        ret = syscall(__NR_io_uring_enter, fd, submit, nr,
                      flags | IORING_ENTER_EXT_ARG, &a, sizeof a);
        if (ret < 0 && errno == ETIME)
            l->batch16 = 0;
    } else {
        ret = syscall(__NR_io_uring_enter, fd, submit, 1, flags, NULL,
                      (size_t)(_NSIG / 8));
    }
    return ret < 0 ? -errno : (int)ret;
}

/* ==== the loop ==== */

/* An iteration handled n > 0 completions: update the usual batch. It
 * rises fast (halfway to n) and decays slowly (an eighth of the way):
 * under load the batches come in all sizes, and following the last one
 * alone (as before) meant one small batch switched the next wait to
 * waking at the first completion, which kept the batches small (at 64
 * pass-through connections mostly 1-3 completions per wake-up, 0.1-0.5
 * context switches and 0.6-0.8 system calls per request). A lone client
 * (batches of one) keeps plain waits; once the load is gone the average
 * is back under WAIT_BATCH_MIN within a dozen iterations, each waiting at
 * most wait_us longer. */
static void batch_note(struct loop *l, unsigned n)
{
    unsigned n16 = (n < 256 ? n : 256) * 16;
    if (n16 >= l->batch16)
        l->batch16 += (n16 - l->batch16 + 1) / 2;
    else
        l->batch16 -= (l->batch16 - n16 + 7) / 8;
}

void loop_stop(struct loop *l) { l->stop = true; }

/* One iteration: before(), one io_uring_enter (sleeping only when
 * `may_sleep` and nothing is pending), then every completion. */
static void iterate(struct loop *l, loop_cqe_pt on_cqe, loop_before_pt before,
                    void *ctx, bool may_sleep)
{
    bool idle = before(ctx) && may_sleep;
    publish_recycled(l);
    /* One io_uring_enter per iteration. Completions already waiting,
     * or work the caller must do right after this submit (before()
     * returned false): submit and collect without sleeping. Nothing to
     * do: submit and sleep until at least one completion (the seed
     * worklog's lesson: submit_and_wait only when idle). */
    int ret;
    if (!idle || l->stop || io_uring_cq_ready(&l->ring))
        ret = io_uring_submit_and_get_events(&l->ring);
    else
        ret = submit_and_wait_idle(l);
    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY &&
        ret != -ETIME) {
        log_crit("io_uring_enter: %s",
                strerror(-ret));
        abort();
    }
    loop_update_time(l);

    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&l->ring, head, cqe)
    {
        l->cq_next = head + 1; /* for loop_cqe_pending */
        struct loop_cqe c = {
            .ud = cqe->user_data,
            .res = cqe->res,
            .more = (cqe->flags & IORING_CQE_F_MORE) != 0,
            .has_buf = (cqe->flags & IORING_CQE_F_BUFFER) != 0,
            .bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT),
        };
        on_cqe(ctx, &c);
        n++;
    }
    if (n > 0)
        batch_note(l, n);
    io_uring_cq_advance(&l->ring, n);
    l->cq_next = *l->ring.cq.khead;
}

void loop_run(struct loop *l, loop_cqe_pt on_cqe, loop_before_pt before,
              void *ctx)
{
    while (!l->stop)
        iterate(l, on_cqe, before, ctx, true);
}

void loop_poll(struct loop *l, loop_cqe_pt on_cqe, loop_before_pt before,
               void *ctx)
{
    iterate(l, on_cqe, before, ctx, false);
}
