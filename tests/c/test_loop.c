/* test_loop.c - the io_uring loop on a real ring: user_data packing,
 * multishot receives into provided buffers (recycling, exhaustion and
 * re-arming), a full SQ, sends (short sends resumed), cancellation,
 * timeouts and the loop's clock, reads, closes, accept and connect, and
 * what is pending (queued task work, completions not handled yet).
 * Exits 77 when io_uring is unavailable (seccomp, io_uring_disabled).
 *
 * Every loop_run is guarded by a timeout (GUARD_SEC) that stops the loop and
 * fails the test, and the whole executable by a watchdog. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>

#include "io/loop.h"
#include "test.h"

#define GUARD_SEC 10

enum {
    T_RECV = 1,
    T_SEND,
    T_TIMEOUT,
    T_CANCEL,
    T_GUARD,
    T_READ,
    T_CLOSE,
    T_ACCEPT,
    T_CONNECT,
    T_MSG,
    T_MSG_FAIL,
};

/* What every test's context starts with. */
struct base {
    struct loop *l;
    struct loop_ts guard_ts; /* read by the kernel at submit */
    bool guard_fired;
    unsigned ncqe;
};

static struct loop *new_loop(unsigned entries, unsigned nbufs,
                             unsigned buf_size)
{
    struct loop_config cfg = {.entries = entries, .nbufs = nbufs,
                              .buf_size = buf_size};
    char err[512] = "";
    struct loop *l = loop_new(&cfg, err, sizeof err);
    if (l == NULL)
        printf("loop_new(%u, %u, %u): %s\n", entries, nbufs, buf_size, err);
    return l;
}

static void arm_guard(struct base *b)
{
    b->guard_ts.tv_sec = GUARD_SEC;
    b->guard_ts.tv_nsec = 0;
    loop_timeout(b->l, &b->guard_ts, UD_MAKE(T_GUARD, 0, 0));
}

/* Common part of every cqe callback: true when the guard fired (the loop is
 * stopped and the callback should return). */
static bool base_cqe(struct base *b, const struct loop_cqe *c)
{
    b->ncqe++;
    /* only receives take provided buffers */
    CHECK(UD_OP(c->ud) == T_RECV || !c->has_buf);
    if (UD_OP(c->ud) == T_GUARD) {
        if (c->res == -ETIME) {
            printf("   guard timeout: the loop made no progress in %d s\n",
                   GUARD_SEC);
            b->guard_fired = true;
            loop_stop(b->l);
        }
        return true;
    }
    return false;
}

static bool no_before(void *ctx)
{
    (void)ctx;
    return true;
}

static void make_pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        perror("socketpair");
        exit(1);
    }
}

static void set_nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static unsigned char pattern(size_t i)
{
    return (unsigned char)(i * 131 + (i >> 9) + (i >> 17));
}

/* ==== user_data ==== */

static void test_user_data(void)
{
    uint64_t ud = UD_MAKE(3, 1234, 56789);
    CHECK_EQ(UD_OP(ud), 3);
    CHECK_EQ(UD_GEN(ud), 1234);
    CHECK_EQ(UD_IDX(ud), 56789);

    /* all fields at their maximum */
    ud = UD_MAKE(255, 0xffffffu, 0xffffffffu);
    CHECK(ud == UINT64_MAX);
    CHECK_EQ(UD_OP(ud), 255);
    CHECK_EQ(UD_GEN(ud), 0xffffff);
    CHECK_EQ(UD_IDX(ud), 0xffffffffu);

    /* all zero */
    ud = UD_MAKE(0, 0, 0);
    CHECK(ud == 0);
    CHECK(UD_OP(ud) == 0 && UD_GEN(ud) == 0 && UD_IDX(ud) == 0);

    /* each field is independent of the others */
    ud = UD_MAKE(255, 0, 0);
    CHECK(UD_OP(ud) == 255 && UD_GEN(ud) == 0 && UD_IDX(ud) == 0);
    ud = UD_MAKE(0, 0xffffff, 0);
    CHECK(UD_OP(ud) == 0 && UD_GEN(ud) == 0xffffff && UD_IDX(ud) == 0);
    ud = UD_MAKE(0, 0, 0xffffffffu);
    CHECK(UD_OP(ud) == 0 && UD_GEN(ud) == 0 && UD_IDX(ud) == 0xffffffffu);

    /* gen is masked to 24 bits: higher bits never reach op */
    ud = UD_MAKE(1, 0x1000000u, 7);
    CHECK_EQ(UD_OP(ud), 1);
    CHECK_EQ(UD_GEN(ud), 0);
    CHECK_EQ(UD_IDX(ud), 7);
    ud = UD_MAKE(2, 0xff123456u, 9);
    CHECK_EQ(UD_OP(ud), 2);
    CHECK_EQ(UD_GEN(ud), 0x123456);
    ud = UD_MAKE(0, UINT32_MAX, 0);
    CHECK_EQ(UD_OP(ud), 0);
    CHECK_EQ(UD_GEN(ud), GEN_MASK);

    /* idx is 32 bits: a negative int wraps, never leaks into gen/op */
    ud = UD_MAKE(4, 5, -1);
    CHECK_EQ(UD_OP(ud), 4);
    CHECK_EQ(UD_GEN(ud), 5);
    CHECK_EQ(UD_IDX(ud), 0xffffffffu);

    /* generation wrap, as conn_close bumps it */
    uint32_t gen = GEN_MASK;
    gen = (gen + 1) & GEN_MASK;
    CHECK_EQ(gen, 0);
    CHECK(UD_GEN(UD_MAKE(1, GEN_MASK + 1, 0)) == gen);

    /* a sweep of values round-trips */
    int bad = 0;
    for (uint64_t i = 0; i < 100000; i++) {
        unsigned op = (unsigned)(i * 7 % 256);
        uint32_t g = (uint32_t)(i * 2654435761u) & GEN_MASK;
        uint32_t idx = (uint32_t)(i * 40503u * 65537u);
        uint64_t u = UD_MAKE(op, g, idx);
        if (UD_OP(u) != op || UD_GEN(u) != g || UD_IDX(u) != idx)
            bad++;
    }
    CHECK_EQ(bad, 0);
}

/* ==== loop_new ==== */

static void test_new_errors(void)
{
    struct loop_config cfg = {.entries = 8, .nbufs = 3, .buf_size = 64};
    char err[512] = "";
    /* buffer rings must be a power of two: a clean error, no leak */
    struct loop *l = loop_new(&cfg, err, sizeof err);
    CHECK(l == NULL);
    CHECK(err[0] != 0);
    if (l)
        loop_free(l);
    err[0] = 0;
    cfg.entries = 0; /* no SQ at all */
    cfg.nbufs = 4;
    l = loop_new(&cfg, err, sizeof err);
    CHECK(l == NULL);
    CHECK(err[0] != 0);
    if (l)
        loop_free(l);
    loop_free(NULL); /* harmless */
}

/* ==== multishot recv into provided buffers ==== */

#define MS_NMSG 200

struct ms {
    struct base b;
    int peer;            /* we write here */
    unsigned nbufs;
    char *want;          /* everything the peer writes, in order */
    size_t want_len;
    size_t msg_off[MS_NMSG + 1];
    unsigned sent;       /* messages written so far */
    char *got;
    size_t got_len;
    unsigned data_cqes, no_buf, bad_bid, ended, errors;
};

static bool ms_before(void *ctx)
{
    struct ms *m = ctx;
    /* one message per iteration, so receives spread over many iterations
     * and buffers must be recycled to keep up. A message never needs more
     * than 2 of the 4 buffers: recycled buffers reach the kernel once per
     * iteration, so more data per iteration than the ring holds would
     * (legitimately) end the recv with -ENOBUFS. */
    if (m->sent < MS_NMSG) {
        size_t off = m->msg_off[m->sent], n = m->msg_off[m->sent + 1] - off;
        ssize_t w = write(m->peer, m->want + off, n);
        if (w != (ssize_t)n) {
            printf("   peer write failed: %zd\n", w);
            m->errors++;
        }
        m->sent++;
    }
    return true;
}

static void ms_cqe(void *ctx, const struct loop_cqe *c)
{
    struct ms *m = ctx;
    if (base_cqe(&m->b, c))
        return;
    if (UD_OP(c->ud) != T_RECV || UD_IDX(c->ud) != 42 || UD_GEN(c->ud) != 7) {
        m->errors++;
        return;
    }
    if (c->res <= 0) {
        printf("   recv ended: res %d more %d\n", c->res, c->more);
        m->errors++;
        loop_stop(m->b.l);
        return;
    }
    m->data_cqes++;
    if (!c->has_buf) {
        m->no_buf++;
        return;
    }
    if (c->bid >= m->nbufs) {
        m->bad_bid++;
        return;
    }
    if (!c->more)
        m->ended++;
    if (m->got_len + (size_t)c->res <= m->want_len)
        memcpy(m->got + m->got_len, loop_buf(m->b.l, c->bid), (size_t)c->res);
    m->got_len += (size_t)c->res;
    /* scribble over the buffer before giving it back: the next use must
     * overwrite it with fresh data */
    memset(loop_buf(m->b.l, c->bid), '#', (size_t)c->res);
    loop_buf_recycle(m->b.l, c->bid);
    if (m->got_len >= m->want_len)
        loop_stop(m->b.l);
}

static void test_recv_multishot(void)
{
    struct ms m = {0};
    m.nbufs = 4;
    const unsigned buf_size = 256;
    m.b.l = new_loop(64, m.nbufs, buf_size);
    REQUIRE(m.b.l);
    int sv[2];
    make_pair(sv);
    m.peer = sv[1];
    /* messages of 1..500 bytes (up to 2 buffers each), ~50 KB in all:
     * many times the 1 KB of provided buffers */
    size_t total = 0;
    for (unsigned i = 0; i < MS_NMSG; i++) {
        m.msg_off[i] = total;
        total += 1 + (i * 97) % 500;
    }
    m.msg_off[MS_NMSG] = total;
    m.want_len = total;
    m.want = malloc(total);
    m.got = malloc(total);
    REQUIRE(m.want && m.got);
    for (size_t i = 0; i < total; i++)
        m.want[i] = (char)pattern(i);

    loop_recv_multishot(m.b.l, sv[0], UD_MAKE(T_RECV, 7, 42));
    arm_guard(&m.b);
    loop_run(m.b.l, ms_cqe, ms_before, &m);

    CHECK(!m.b.guard_fired);
    CHECK_EQ(m.errors, 0);
    CHECK_EQ(m.sent, MS_NMSG);
    CHECK_EQ(m.got_len, total);
    CHECK(m.got_len == total && memcmp(m.got, m.want, total) == 0);
    CHECK_EQ(m.no_buf, 0);   /* every data completion names its buffer */
    CHECK_EQ(m.bad_bid, 0);
    CHECK_EQ(m.ended, 0);    /* the multishot recv stayed armed */
    /* far more completions than buffers: they were recycled and reused */
    CHECK(m.data_cqes > m.nbufs * 4);
    printf("   %zu bytes in %u completions, %u buffers of %u\n", total,
           m.data_cqes, m.nbufs, buf_size);
    loop_free(m.b.l);
    close(sv[0]);
    close(sv[1]);
    free(m.want);
    free(m.got);
}

/* ==== buffer exhaustion ==== */

struct ex {
    struct base b;
    int fd;
    unsigned nbufs, buf_size;
    const char *want;
    size_t want_len;
    char *got;
    size_t got_len;
    uint16_t held[64];
    unsigned nheld, max_held;
    unsigned enobufs, enobufs_more, enobufs_buf, ended_data, errors;
    unsigned arms, bad_size;
};

static void ex_rearm(struct ex *e)
{
    /* give every buffer back, then re-arm: both reach the kernel in the
     * same submit (recycled buffers are published before it) */
    for (unsigned i = 0; i < e->nheld; i++)
        loop_buf_recycle(e->b.l, e->held[i]);
    e->nheld = 0;
    loop_recv_multishot(e->b.l, e->fd, UD_MAKE(T_RECV, 0, 1));
    e->arms++;
}

static void ex_cqe(void *ctx, const struct loop_cqe *c)
{
    struct ex *e = ctx;
    if (base_cqe(&e->b, c))
        return;
    if (UD_OP(c->ud) != T_RECV) {
        e->errors++;
        return;
    }
    if (c->res > 0) {
        if (!c->has_buf || c->bid >= e->nbufs || e->nheld == 64) {
            e->errors++;
            loop_stop(e->b.l);
            return;
        }
        if ((unsigned)c->res > e->buf_size)
            e->bad_size++;
        if (e->got_len + (size_t)c->res <= e->want_len)
            memcpy(e->got + e->got_len, loop_buf(e->b.l, c->bid),
                   (size_t)c->res);
        e->got_len += (size_t)c->res;
        /* keep it: not recycled until the ring runs dry */
        e->held[e->nheld++] = c->bid;
        if (e->nheld > e->max_held)
            e->max_held = e->nheld;
        if (e->got_len >= e->want_len) {
            loop_stop(e->b.l);
            return;
        }
        if (!c->more) { /* ended without ENOBUFS: re-arm all the same */
            e->ended_data++;
            ex_rearm(e);
        }
    } else if (c->res == -ENOBUFS) {
        e->enobufs++;
        if (c->more)
            e->enobufs_more++; /* must be final */
        if (c->has_buf)
            e->enobufs_buf++;
        if (c->more)
            return; /* still armed: don't arm a second one */
        ex_rearm(e);
    } else {
        printf("   unexpected recv result %d\n", c->res);
        e->errors++;
        loop_stop(e->b.l);
    }
}

static void test_recv_exhaustion(void)
{
    struct ex e = {0};
    e.nbufs = 2;
    e.buf_size = 64;
    e.b.l = new_loop(16, e.nbufs, e.buf_size);
    REQUIRE(e.b.l);
    int sv[2];
    make_pair(sv);
    e.fd = sv[0];
    enum { TOTAL = 6000 }; /* ~47 times what the buffer ring holds */
    char *want = malloc(TOTAL);
    e.got = malloc(TOTAL);
    REQUIRE(want && e.got);
    for (size_t i = 0; i < TOTAL; i++)
        want[i] = (char)pattern(i + 5);
    e.want = want;
    e.want_len = TOTAL;
    /* everything is waiting in the socket before the recv is armed */
    CHECK(write(sv[1], want, TOTAL) == TOTAL);

    loop_recv_multishot(e.b.l, e.fd, UD_MAKE(T_RECV, 0, 1));
    e.arms = 1;
    arm_guard(&e.b);
    loop_run(e.b.l, ex_cqe, no_before, &e);

    CHECK(!e.b.guard_fired);
    CHECK_EQ(e.errors, 0);
    CHECK(e.enobufs >= 1);      /* the ring ran dry ... */
    CHECK_EQ(e.enobufs_more, 0); /* ... which ends the multishot recv */
    CHECK_EQ(e.enobufs_buf, 0);  /* ... and consumes no buffer */
    CHECK(e.max_held <= e.nbufs);
    CHECK_EQ(e.bad_size, 0);
    CHECK_EQ(e.got_len, TOTAL);  /* nothing lost, nothing duplicated */
    CHECK(e.got_len == TOTAL && memcmp(e.got, want, TOTAL) == 0);
    CHECK(e.arms >= TOTAL / (e.nbufs * e.buf_size));
    printf("   %u ENOBUFS, %u re-arms, %u ended with data\n", e.enobufs,
           e.arms - 1, e.ended_data);
    loop_free(e.b.l);
    close(sv[0]);
    close(sv[1]);
    free(want);
    free(e.got);
}

/* ==== a full SQ never fails ==== */

struct sq {
    struct base b;
    unsigned want, done, bad_res, bad_idx;
    unsigned char *seen;
};

static void sq_cqe(void *ctx, const struct loop_cqe *c)
{
    struct sq *s = ctx;
    if (base_cqe(&s->b, c))
        return;
    if (UD_OP(c->ud) != T_TIMEOUT || UD_IDX(c->ud) >= s->want) {
        s->bad_idx++;
        return;
    }
    if (c->res != -ETIME)
        s->bad_res++;
    s->seen[UD_IDX(c->ud)]++;
    if (++s->done == s->want)
        loop_stop(s->b.l);
}

static void sq_full(unsigned entries, unsigned n)
{
    struct sq s = {0};
    s.want = n;
    s.seen = calloc(n, 1);
    REQUIRE(s.seen);
    s.b.l = new_loop(entries, 4, 64);
    REQUIRE(s.b.l);
    static const struct loop_ts zero = {0, 0};
    /* n > entries SQEs in one go, without running the loop in between:
     * get_sqe must submit to make room, never fail or drop one */
    for (unsigned i = 0; i < n; i++)
        loop_timeout(s.b.l, &zero, UD_MAKE(T_TIMEOUT, 0, i));
    arm_guard(&s.b);
    loop_run(s.b.l, sq_cqe, no_before, &s);
    CHECK(!s.b.guard_fired);
    CHECK_EQ(s.done, n);
    CHECK_EQ(s.bad_res, 0);
    CHECK_EQ(s.bad_idx, 0);
    unsigned once = 0;
    for (unsigned i = 0; i < n; i++)
        once += s.seen[i] == 1;
    CHECK_EQ(once, n);
    loop_free(s.b.l);
    free(s.seen);
}

static void test_sq_full(void)
{
    sq_full(8, 100);
}

/* More completions than the CQ (8 x entries) holds before the first reap:
 * the kernel's overflow list must hand them all over. */
static void test_cq_overflow(void)
{
    sq_full(8, 1000);
}

/* ==== send and sendmsg ==== */

struct sd {
    struct base b;
    int fd;
    struct msghdr msg;
    struct iovec iov[3];
    int res_send, res_sendmsg;
    unsigned n, errors;
};

static void sd_cqe(void *ctx, const struct loop_cqe *c)
{
    struct sd *s = ctx;
    if (base_cqe(&s->b, c))
        return;
    if (UD_OP(c->ud) != T_SEND) {
        s->errors++;
        return;
    }
    if (UD_IDX(c->ud) == 0) {
        s->res_send = c->res;
        /* in order: the sendmsg starts once the send is done */
        loop_sendmsg(s->b.l, s->fd, &s->msg, UD_MAKE(T_SEND, 0, 1));
    } else {
        s->res_sendmsg = c->res;
        loop_stop(s->b.l);
    }
}

static void test_send_small(void)
{
    struct sd s = {0};
    s.b.l = new_loop(8, 4, 64);
    REQUIRE(s.b.l);
    int sv[2];
    make_pair(sv);
    s.fd = sv[0];
    static const char a[] = "hello ", b2[] = "";
    s.iov[0] = (struct iovec){(void *)"scatter", 7};
    s.iov[1] = (struct iovec){(void *)b2, 0};
    s.iov[2] = (struct iovec){(void *)"-gather", 7};
    s.msg.msg_iov = s.iov;
    s.msg.msg_iovlen = 3;
    loop_send(s.b.l, s.fd, a, 6, UD_MAKE(T_SEND, 0, 0));
    arm_guard(&s.b);
    loop_run(s.b.l, sd_cqe, no_before, &s);
    CHECK(!s.b.guard_fired);
    CHECK_EQ(s.errors, 0);
    CHECK_EQ(s.res_send, 6);
    CHECK_EQ(s.res_sendmsg, 14);
    char got[64] = "";
    set_nonblock(sv[1]);
    ssize_t n = read(sv[1], got, sizeof got - 1);
    CHECK_EQ(n, 20);
    CHECK(n == 20 && memcmp(got, "hello scatter-gather", 20) == 0);

    /* to a closed peer: -EPIPE, no SIGPIPE (MSG_NOSIGNAL) */
    close(sv[1]);
    s.res_send = s.res_sendmsg = 1;
    loop_free(s.b.l);
    s.b.l = new_loop(8, 4, 64);
    REQUIRE(s.b.l);
    loop_send(s.b.l, s.fd, a, 6, UD_MAKE(T_SEND, 0, 0));
    arm_guard(&s.b);
    loop_run(s.b.l, sd_cqe, no_before, &s);
    CHECK(!s.b.guard_fired);
    CHECK_EQ(s.res_send, -EPIPE);
    CHECK_EQ(s.res_sendmsg, -EPIPE);
    loop_free(s.b.l);
    close(sv[0]);
}

/* ==== immediate sends ==== */

/* Phases, one per loop iteration (before() never lets the loop sleep):
 *   0  an immediate send of 6 bytes: it goes whole, so no completion; it
 *      is done once loop_sq_taken() has passed its position
 *   1  an immediate sendmsg of far more than the socket holds (the peer
 *      never reads): a completion with the bytes that went (short)
 *   2  the same again, the socket now full: a completion with -EAGAIN
 *   3  the peer closed: a completion with -EPIPE */
struct im {
    struct base b;
    int fd, peer;
    int phase;
    uint32_t pos;
    bool waiting;          /* sent in this phase, result not seen yet */
    int res[4];
    unsigned cqes[4];
    struct iovec iov[2];
    struct msghdr msg;
    char *big;
    unsigned errors;
};

#define IM_BIG (4u << 20)

static bool im_before(void *ctx)
{
    struct im *m = ctx;
    struct loop *l = m->b.l;
    if (m->waiting) {
        bool taken = (int32_t)(loop_sq_taken(l) - m->pos) > 0;
        if (!taken)
            return false;
        if (m->phase == 0 && m->cqes[0] == 0)
            m->res[0] = 6; /* settled: went whole, no completion */
        m->waiting = false;
        if (m->phase == 2)
            close(m->peer);
        if (++m->phase == 4) {
            loop_stop(l);
            return false;
        }
    }
    uint64_t ud = UD_MAKE(T_SEND, 0, m->phase);
    if (m->phase == 0) {
        m->pos = loop_send_imm(l, m->fd, "imm-ok", 6, ud);
    } else {
        memset(&m->msg, 0, sizeof m->msg);
        m->iov[0] = (struct iovec){m->big, IM_BIG / 2};
        m->iov[1] = (struct iovec){m->big + IM_BIG / 2, IM_BIG / 2};
        m->msg.msg_iov = m->iov;
        m->msg.msg_iovlen = 2;
        m->pos = loop_sendmsg_imm(l, m->fd, &m->msg, ud);
    }
    m->waiting = true;
    return false;
}

static void im_cqe(void *ctx, const struct loop_cqe *c)
{
    struct im *m = ctx;
    if (base_cqe(&m->b, c))
        return;
    unsigned ph = UD_IDX(c->ud);
    if (UD_OP(c->ud) != T_SEND || ph > 3) {
        m->errors++;
        return;
    }
    m->cqes[ph]++;
    m->res[ph] = c->res;
}

static void test_send_imm(void)
{
    struct im m = {0};
    m.b.l = new_loop(8, 4, 64);
    REQUIRE(m.b.l);
    if (!loop_has_imm(m.b.l)) {
        printf("   kernel without IORING_FEAT_CQE_SKIP: nothing to test\n");
        loop_free(m.b.l);
        return;
    }
    int sv[2];
    make_pair(sv);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    m.fd = sv[0];
    m.peer = sv[1];
    m.big = malloc(IM_BIG);
    REQUIRE(m.big);
    memset(m.big, 'x', IM_BIG);
    arm_guard(&m.b);
    loop_run(m.b.l, im_cqe, im_before, &m);
    CHECK(!m.b.guard_fired);
    CHECK_EQ(m.errors, 0);
    CHECK_EQ(m.phase, 4);
    CHECK_EQ(m.cqes[0], 0); /* went whole: no completion */
    CHECK_EQ(m.res[0], 6);
    CHECK_EQ(m.cqes[1], 1);
    CHECK(m.res[1] > 0 && m.res[1] < (int)IM_BIG); /* short, not parked */
    CHECK_EQ(m.cqes[2], 1);
    CHECK_EQ(m.res[2], -EAGAIN);
    CHECK_EQ(m.cqes[3], 1);
    CHECK(m.res[3] == -EPIPE || m.res[3] == -ECONNRESET);
    CHECK(!loop_cq_overflow(m.b.l));
    printf("   whole: no completion; short: %d of %u bytes; full socket: "
           "%d; closed peer: %d\n",
           m.res[1], IM_BIG, m.res[2], m.res[3]);
    free(m.big);
    loop_free(m.b.l);
    close(sv[0]);

    /* no_imm: the loop reports no immediate sends */
    struct loop_config cfg = {.entries = 8, .nbufs = 4, .buf_size = 64,
                              .no_imm = true};
    char err[256] = "";
    struct loop *l = loop_new(&cfg, err, sizeof err);
    REQUIRE(l);
    CHECK(!loop_has_imm(l));
    loop_free(l);
}

/* A big send to a slow reader: completions may be short; resuming from
 * where each stopped delivers every byte in order. */
#define BIG (8u << 20)

struct reader {
    int fd;
    size_t want;   /* bytes of pattern(i % BIG) expected before EOF */
    size_t got;
    size_t bad;    /* bytes that differ from the pattern */
    size_t first_bad;
    unsigned reads;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    char buf[4096];
    r->first_bad = SIZE_MAX;
    for (;;) {
        ssize_t n = read(r->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            if ((unsigned char)buf[i] != pattern((r->got + (size_t)i) % BIG)) {
                if (r->first_bad == SIZE_MAX)
                    r->first_bad = r->got + (size_t)i;
                r->bad++;
            }
        r->got += (size_t)n;
        if (++r->reads % 64 == 0)
            usleep(1000); /* a slow client */
    }
    return NULL;
}

struct bs {
    struct base b;
    int fd;
    const unsigned char *data;
    size_t off;          /* bytes sent of the current phase */
    int phase;           /* 0: loop_send, 1: loop_sendmsg, 2: done */
    unsigned completions, short_sends, errors;
    struct iovec iov[3], cur[3];
    struct msghdr msg;
};

static void bs_issue(struct bs *s)
{
    if (s->phase == 0) {
        loop_send(s->b.l, s->fd, s->data + s->off, BIG - s->off,
                  UD_MAKE(T_SEND, 0, 0));
        return;
    }
    /* sendmsg: the iovecs still to send, the first one trimmed */
    size_t skip = s->off;
    unsigned n = 0;
    for (unsigned i = 0; i < 3; i++) {
        if (skip >= s->iov[i].iov_len) {
            skip -= s->iov[i].iov_len;
            continue;
        }
        s->cur[n].iov_base = (char *)s->iov[i].iov_base + skip;
        s->cur[n].iov_len = s->iov[i].iov_len - skip;
        skip = 0;
        n++;
    }
    memset(&s->msg, 0, sizeof s->msg);
    s->msg.msg_iov = s->cur;
    s->msg.msg_iovlen = n;
    loop_sendmsg(s->b.l, s->fd, &s->msg, UD_MAKE(T_SEND, 0, 1));
}

static void bs_cqe(void *ctx, const struct loop_cqe *c)
{
    struct bs *s = ctx;
    if (base_cqe(&s->b, c))
        return;
    if (UD_OP(c->ud) != T_SEND || (int)UD_IDX(c->ud) != s->phase) {
        s->errors++;
        return;
    }
    s->completions++;
    if (c->res <= 0) {
        printf("   send failed: %d\n", c->res);
        s->errors++;
        loop_stop(s->b.l);
        return;
    }
    if ((size_t)c->res > BIG - s->off) {
        s->errors++; /* more than was asked */
        loop_stop(s->b.l);
        return;
    }
    if ((size_t)c->res < BIG - s->off)
        s->short_sends++;
    s->off += (size_t)c->res;
    if (s->off == BIG) {
        s->phase++;
        s->off = 0;
        if (s->phase == 2) {
            loop_stop(s->b.l);
            return;
        }
    }
    bs_issue(s);
}

static void test_send_big(void)
{
    struct bs s = {0};
    s.b.l = new_loop(8, 4, 64);
    REQUIRE(s.b.l);
    unsigned char *data = malloc(BIG);
    REQUIRE(data);
    for (size_t i = 0; i < BIG; i++)
        data[i] = pattern(i);
    s.data = data;
    /* the same 8 MB again through sendmsg, as three uneven iovecs */
    s.iov[0] = (struct iovec){data, 1000};
    s.iov[1] = (struct iovec){data + 1000, BIG / 2};
    s.iov[2] = (struct iovec){data + 1000 + BIG / 2, BIG / 2 - 1000};

    int sv[2];
    make_pair(sv);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    s.fd = sv[0];
    struct reader r = {.fd = sv[1], .want = 2 * (size_t)BIG};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, reader_main, &r) == 0);

    bs_issue(&s);
    arm_guard(&s.b);
    loop_run(s.b.l, bs_cqe, no_before, &s);
    shutdown(sv[0], SHUT_WR); /* EOF for the reader */
    pthread_join(th, NULL);

    CHECK(!s.b.guard_fired);
    CHECK_EQ(s.errors, 0);
    CHECK_EQ(s.phase, 2);
    CHECK_EQ(r.got, 2 * (size_t)BIG);
    CHECK_EQ(r.bad, 0);
    if (r.bad)
        printf("   first wrong byte at %zu\n", r.first_bad);
    printf("   2 x %u bytes in %u completions (%u short), reader: %u reads\n",
           BIG, s.completions, s.short_sends, r.reads);
    loop_free(s.b.l);
    close(sv[0]);
    close(sv[1]);
    free(data);
}

/* ==== cancel ==== */

struct cn {
    struct base b;
    int fd;
    struct loop_ts ts;
    int recv_res, cancel_res;
    bool recv_more, recv_done, cancel_done;
    unsigned recv_cqes, errors;
};

static void cn_cqe(void *ctx, const struct loop_cqe *c)
{
    struct cn *s = ctx;
    if (base_cqe(&s->b, c))
        return;
    switch (UD_OP(c->ud)) {
    case T_TIMEOUT: /* the recv is surely armed by now: cancel it */
        loop_cancel(s->b.l, UD_MAKE(T_RECV, 3, 9), UD_MAKE(T_CANCEL, 0, 0));
        break;
    case T_RECV:
        s->recv_cqes++;
        s->recv_res = c->res;
        s->recv_more = c->more;
        if (c->has_buf)
            loop_buf_recycle(s->b.l, c->bid);
        if (!c->more)
            s->recv_done = true;
        break;
    case T_CANCEL:
        s->cancel_res = c->res;
        s->cancel_done = true;
        break;
    default: s->errors++; break;
    }
    if (s->recv_done && s->cancel_done)
        loop_stop(s->b.l);
}

static void cancel_case(bool same_batch)
{
    struct cn s = {0};
    s.b.l = new_loop(8, 4, 64);
    REQUIRE(s.b.l);
    int sv[2];
    make_pair(sv);
    s.fd = sv[0];
    s.recv_res = 1;
    s.cancel_res = 1;
    loop_recv_multishot(s.b.l, s.fd, UD_MAKE(T_RECV, 3, 9));
    if (same_batch) {
        loop_cancel(s.b.l, UD_MAKE(T_RECV, 3, 9), UD_MAKE(T_CANCEL, 0, 0));
    } else {
        s.ts.tv_nsec = 20 * 1000000LL;
        loop_timeout(s.b.l, &s.ts, UD_MAKE(T_TIMEOUT, 0, 0));
    }
    arm_guard(&s.b);
    loop_run(s.b.l, cn_cqe, no_before, &s);
    CHECK(!s.b.guard_fired);
    CHECK_EQ(s.errors, 0);
    CHECK_EQ(s.recv_cqes, 1);
    CHECK_EQ(s.recv_res, -ECANCELED);
    CHECK(!s.recv_more);
    CHECK_EQ(s.cancel_res, 0); /* found and cancelled */
    loop_free(s.b.l);
    close(sv[0]);
    close(sv[1]);
}

static void test_cancel_armed_recv(void) { cancel_case(false); }
static void test_cancel_same_batch(void) { cancel_case(true); }

struct cm {
    struct base b;
    int res;
    bool done;
};

static void cm_cqe(void *ctx, const struct loop_cqe *c)
{
    struct cm *s = ctx;
    if (base_cqe(&s->b, c))
        return;
    if (UD_OP(c->ud) == T_CANCEL) {
        s->res = c->res;
        s->done = true;
        loop_stop(s->b.l);
    }
}

/* Cancelling what is not (or no longer) armed: -ENOENT. */
static void test_cancel_missing(void)
{
    struct cm s = {0};
    s.b.l = new_loop(8, 4, 64);
    REQUIRE(s.b.l);
    loop_cancel(s.b.l, UD_MAKE(T_RECV, 1, 1), UD_MAKE(T_CANCEL, 0, 0));
    arm_guard(&s.b);
    loop_run(s.b.l, cm_cqe, no_before, &s);
    CHECK(!s.b.guard_fired);
    CHECK(s.done);
    CHECK_EQ(s.res, -ENOENT);
    loop_free(s.b.l);
}

/* ==== time ==== */

struct tm_ctx {
    struct base b;
    struct loop_ts ts;
    int64_t last, at_fire;
    int res;
    unsigned backwards, iterations;
};

static bool tm_before(void *ctx)
{
    struct tm_ctx *t = ctx;
    int64_t now = loop_now(t->b.l);
    if (now < t->last)
        t->backwards++;
    t->last = now;
    t->iterations++;
    return true;
}

static void tm_cqe(void *ctx, const struct loop_cqe *c)
{
    struct tm_ctx *t = ctx;
    if (base_cqe(&t->b, c))
        return;
    int64_t now = loop_now(t->b.l);
    if (now < t->last)
        t->backwards++;
    t->last = now;
    if (UD_OP(c->ud) == T_TIMEOUT) {
        t->res = c->res;
        t->at_fire = now;
        loop_stop(t->b.l);
    }
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_now(void)
{
    struct tm_ctx t = {0};
    int64_t before = mono_ms();
    t.b.l = new_loop(8, 4, 64);
    REQUIRE(t.b.l);
    int64_t t0 = loop_now(t.b.l);
    CHECK(t0 >= before);          /* set by loop_new, same clock */
    CHECK(t0 <= mono_ms());
    CHECK(loop_now(t.b.l) == t0); /* cached: no refresh by itself */
    int64_t t1 = loop_update_time(t.b.l);
    CHECK(t1 >= t0);
    CHECK(loop_now(t.b.l) == t1);
    t0 = t1;
    t.last = t0;
    t.ts.tv_sec = 0;
    t.ts.tv_nsec = 50 * 1000000LL;
    loop_timeout(t.b.l, &t.ts, UD_MAKE(T_TIMEOUT, 0, 0));
    arm_guard(&t.b);
    loop_run(t.b.l, tm_cqe, tm_before, &t);
    CHECK(!t.b.guard_fired);
    CHECK_EQ(t.res, -ETIME);
    CHECK_EQ(t.backwards, 0);
    /* refreshed by the iteration that collected the completion */
    CHECK(t.at_fire - t0 >= 50);
    CHECK(t.at_fire - t0 < 5000);
    CHECK(t.at_fire <= mono_ms());
    printf("   50 ms timeout: loop_now advanced %lld ms in %u iterations\n",
           (long long)(t.at_fire - t0), t.iterations);
    loop_free(t.b.l);
}

/* ==== read and close ==== */

struct rc {
    struct base b;
    int read_res, close_res;
    bool read_done, close_done;
};

static void rc_cqe(void *ctx, const struct loop_cqe *c)
{
    struct rc *s = ctx;
    if (base_cqe(&s->b, c))
        return;
    if (UD_OP(c->ud) == T_READ) {
        s->read_res = c->res;
        s->read_done = true;
    } else if (UD_OP(c->ud) == T_CLOSE) {
        s->close_res = c->res;
        s->close_done = true;
    }
    if (s->read_done && s->close_done)
        loop_stop(s->b.l);
}

static void test_read_close(void)
{
    struct rc s = {0};
    s.b.l = new_loop(8, 4, 64);
    REQUIRE(s.b.l);
    char path[] = "/tmp/luring-test-loop-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    unlink(path);
    static const char text[] = "0123456789abcdefghij";
    CHECK(write(fd, text, 20) == 20);
    int fd2 = dup(fd);
    REQUIRE(fd2 >= 0);
    char got[16] = "";
    /* a read at an offset (pread semantics) and a close, one batch */
    loop_read(s.b.l, fd, got, 8, 10, UD_MAKE(T_READ, 0, 0));
    loop_close(s.b.l, fd2, UD_MAKE(T_CLOSE, 0, 0));
    arm_guard(&s.b);
    loop_run(s.b.l, rc_cqe, no_before, &s);
    CHECK(!s.b.guard_fired);
    CHECK_EQ(s.read_res, 8);
    CHECK(memcmp(got, "abcdefgh", 8) == 0);
    CHECK_EQ(s.close_res, 0);
    errno = 0;
    CHECK(fcntl(fd2, F_GETFD) == -1 && errno == EBADF); /* really closed */
    CHECK(fcntl(fd, F_GETFD) != -1);                     /* not the other */
    close(fd);
    loop_free(s.b.l);
}

/* ==== accept and connect ==== */

#define AC_N 3

struct ac {
    struct base b;
    int accepted[AC_N];
    unsigned naccepted, nconnected, accept_ended, errors;
    int connect_res[AC_N];
};

static void ac_cqe(void *ctx, const struct loop_cqe *c)
{
    struct ac *s = ctx;
    if (base_cqe(&s->b, c))
        return;
    if (UD_OP(c->ud) == T_ACCEPT) {
        if (c->res < 0 || s->naccepted == AC_N) {
            s->errors++;
            if (c->res >= 0)
                close(c->res);
        } else {
            s->accepted[s->naccepted++] = c->res;
        }
        if (!c->more)
            s->accept_ended++;
    } else if (UD_OP(c->ud) == T_CONNECT && UD_IDX(c->ud) < AC_N) {
        s->connect_res[UD_IDX(c->ud)] = c->res;
        s->nconnected++;
    } else {
        s->errors++;
    }
    if (s->naccepted == AC_N && s->nconnected == AC_N)
        loop_stop(s->b.l);
}

static void test_accept_connect(void)
{
    struct ac s = {0};
    s.b.l = new_loop(8, 4, 64);
    REQUIRE(s.b.l);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t salen = sizeof sa;
    REQUIRE(bind(lfd, (struct sockaddr *)&sa, sizeof sa) == 0);
    REQUIRE(listen(lfd, 16) == 0);
    REQUIRE(getsockname(lfd, (struct sockaddr *)&sa, &salen) == 0);
    int cfd[AC_N];
    loop_accept_multishot(s.b.l, lfd, UD_MAKE(T_ACCEPT, 0, 0));
    for (int i = 0; i < AC_N; i++) {
        cfd[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        s.connect_res[i] = 1;
        loop_connect(s.b.l, cfd[i], (struct sockaddr *)&sa, sizeof sa,
                     UD_MAKE(T_CONNECT, 0, i));
    }
    arm_guard(&s.b);
    loop_run(s.b.l, ac_cqe, no_before, &s);
    CHECK(!s.b.guard_fired);
    CHECK_EQ(s.errors, 0);
    CHECK_EQ(s.naccepted, AC_N);
    CHECK_EQ(s.accept_ended, 0); /* multishot: still armed */
    for (int i = 0; i < AC_N; i++)
        CHECK_EQ(s.connect_res[i], 0);
    /* the accepted sockets are connected to ours */
    for (unsigned i = 0; i < s.naccepted; i++) {
        CHECK(fcntl(s.accepted[i], F_GETFD) & FD_CLOEXEC);
        struct sockaddr_in peer;
        socklen_t pl = sizeof peer;
        CHECK(getpeername(s.accepted[i], (struct sockaddr *)&peer, &pl) == 0);
        bool mine = false;
        for (int k = 0; k < AC_N; k++) {
            struct sockaddr_in me;
            socklen_t ml = sizeof me;
            getsockname(cfd[k], (struct sockaddr *)&me, &ml);
            if (me.sin_port == peer.sin_port)
                mine = true;
        }
        CHECK(mine);
        close(s.accepted[i]);
    }
    for (int i = 0; i < AC_N; i++)
        close(cfd[i]);
    loop_free(s.b.l);
    close(lfd);
}

/* ==== what is pending (origin.c's pool_take relies on both) ==== */

struct pd {
    struct base b;
    unsigned seen;
    bool other_pending, self_pending;
};

static void pd_cqe(void *ctx, const struct loop_cqe *c)
{
    struct pd *s = ctx;
    if (base_cqe(&s->b, c))
        return;
    if (c->has_buf)
        loop_buf_recycle(s->b.l, c->bid);
    if (UD_OP(c->ud) != T_RECV || c->res <= 0)
        return;
    if (s->seen++ == 0) { /* the other receive's completion is behind us */
        uint32_t other = UD_IDX(c->ud) == 1 ? 2 : 1;
        s->other_pending = loop_cqe_pending(s->b.l, UD_MAKE(T_RECV, 0, other));
        s->self_pending = loop_cqe_pending(s->b.l, c->ud);
    }
}

static void test_pending(void)
{
    struct pd s = {0};
    s.b.l = new_loop(8, 8, 64);
    CHECK(s.b.l != NULL);
    if (s.b.l == NULL)
        return;
    int a[2], b[2];
    make_pair(a);
    make_pair(b);
    loop_recv_multishot(s.b.l, a[0], UD_MAKE(T_RECV, 0, 1));
    loop_recv_multishot(s.b.l, b[0], UD_MAKE(T_RECV, 0, 2));
    loop_poll(s.b.l, pd_cqe, no_before, &s);
    CHECK_EQ(s.seen, 0u);
    /* bytes for an armed receive: work is queued before any enter */
    CHECK(write(a[1], "x", 1) == 1);
    CHECK(write(b[1], "y", 1) == 1);
    CHECK(loop_work_pending(s.b.l));
    loop_poll(s.b.l, pd_cqe, no_before, &s);
    CHECK_EQ(s.seen, 2u);
    /* both writes came before the enter: one batch, so the first
     * completion handled saw the other one waiting */
    CHECK(s.other_pending);
    CHECK(!s.self_pending);
    /* everything handled: nothing pending */
    CHECK(!loop_cqe_pending(s.b.l, UD_MAKE(T_RECV, 0, 1)));
    CHECK(!loop_cqe_pending(s.b.l, UD_MAKE(T_RECV, 0, 2)));
    close(a[0]); close(a[1]); close(b[0]); close(b[1]);
    loop_free(s.b.l);
}

/* ==== messages between rings ==== */

/* The receiving worker: its own ring on its own thread (SINGLE_ISSUER),
 * run until MSG_N messages came. */
#define MSG_N 3
struct mr {
    struct base b;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int fd;             /* the ring's fd, published once created */
    bool ready;
    unsigned got;
    int32_t res[MSG_N];
    uint32_t idx[MSG_N];
    bool bad_flags;
};

static void mr_cqe(void *ctx, const struct loop_cqe *c)
{
    struct mr *m = ctx;
    if (base_cqe(&m->b, c))
        return;
    if (UD_OP(c->ud) != T_MSG || m->got == MSG_N) {
        m->bad_flags = true;
        return;
    }
    if (c->more || c->has_buf)
        m->bad_flags = true;
    m->res[m->got] = c->res;
    m->idx[m->got] = UD_IDX(c->ud);
    if (++m->got == MSG_N)
        loop_stop(m->b.l);
}

static void *mr_thread(void *arg)
{
    struct mr *m = arg;
    m->b.l = new_loop(8, 4, 64);
    pthread_mutex_lock(&m->mu);
    m->fd = m->b.l ? loop_ring_fd(m->b.l) : -1;
    m->ready = true;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    if (m->b.l == NULL)
        return NULL;
    arm_guard(&m->b);
    loop_run(m->b.l, mr_cqe, no_before, m);
    loop_free(m->b.l);
    return NULL;
}

struct msnd {
    struct base b;
    unsigned fails;
    int32_t fail_res;
};

static void msnd_cqe(void *ctx, const struct loop_cqe *c)
{
    struct msnd *s = ctx;
    if (base_cqe(&s->b, c))
        return;
    if (UD_OP(c->ud) == T_MSG_FAIL) {
        s->fails++;
        s->fail_res = c->res;
    }
}

/* A message posted on another thread's ring reaches its dispatcher with
 * the user_data and res given, in order, and costs the sender no
 * completion; a message to something that is not a ring comes back to
 * the sender with its fail_ud. */
static void test_msg_ring(void)
{
    struct msnd s = {0};
    s.b.l = new_loop(8, 4, 64);
    CHECK(s.b.l != NULL);
    if (s.b.l == NULL)
        return;
    if (!loop_has_msg_ring(s.b.l)) {
        printf("   IORING_OP_MSG_RING unsupported: skipped\n");
        loop_free(s.b.l);
        return;
    }
    struct mr m = {.fd = -1};
    pthread_mutex_init(&m.mu, NULL);
    pthread_cond_init(&m.cv, NULL);
    pthread_t tid;
    CHECK(pthread_create(&tid, NULL, mr_thread, &m) == 0);
    pthread_mutex_lock(&m.mu);
    while (!m.ready)
        pthread_cond_wait(&m.cv, &m.mu);
    pthread_mutex_unlock(&m.mu);
    CHECK(m.fd >= 0);
    for (int i = 0; i < MSG_N; i++)
        loop_msg_ring(s.b.l, m.fd, 40 + i, UD_MAKE(T_MSG, 7, 100 + i),
                      UD_MAKE(T_MSG_FAIL, 0, 0));
    loop_poll(s.b.l, msnd_cqe, no_before, &s);
    pthread_join(tid, NULL);
    CHECK(!m.b.guard_fired);
    CHECK_EQ(m.got, (unsigned)MSG_N);
    CHECK(!m.bad_flags);
    for (int i = 0; i < MSG_N; i++) {
        CHECK_EQ(m.res[i], 40 + i);
        CHECK_EQ(m.idx[i], (uint32_t)(100 + i));
    }
    loop_poll(s.b.l, msnd_cqe, no_before, &s);
    CHECK_EQ(s.fails, 0u);
    CHECK_EQ(s.b.ncqe, 0u); /* delivered messages complete nothing here */
    /* not a ring: the message fails back to the sender */
    int p[2];
    CHECK(pipe(p) == 0);
    loop_msg_ring(s.b.l, p[0], 1, UD_MAKE(T_MSG, 0, 0),
                  UD_MAKE(T_MSG_FAIL, 0, 0));
    for (int i = 0; i < 100 && s.fails == 0; i++)
        loop_poll(s.b.l, msnd_cqe, no_before, &s);
    CHECK_EQ(s.fails, 1u);
    CHECK(s.fail_res < 0);
    close(p[0]);
    close(p[1]);
    loop_free(s.b.l);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN); /* a failure must be reported, not kill us */
    test_watchdog(50);
    TEST(test_user_data);
    /* everything below needs a ring */
    struct loop_config cfg = {.entries = 8, .nbufs = 4, .buf_size = 64};
    char err[512] = "";
    struct loop *probe = loop_new(&cfg, err, sizeof err);
    if (probe == NULL) {
        if (strstr(err, "unavailable") || strstr(err, "5.19")) {
            printf("%d tests run; the rest need io_uring\n", test_ran);
            test_skip(err);
        }
        printf("loop_new: %s\n", err);
        return 1;
    }
    loop_free(probe);
    TEST(test_new_errors);
    TEST(test_recv_multishot);
    TEST(test_recv_exhaustion);
    TEST(test_sq_full);
    TEST(test_cq_overflow);
    TEST(test_send_small);
    TEST(test_send_imm);
    TEST(test_send_big);
    TEST(test_cancel_armed_recv);
    TEST(test_cancel_same_batch);
    TEST(test_cancel_missing);
    TEST(test_now);
    TEST(test_read_close);
    TEST(test_accept_connect);
    TEST(test_pending);
    TEST(test_msg_ring);
    return test_report();
}
