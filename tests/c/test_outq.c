/* test_outq.c - the per-connection output queue on a real ring and a
 * socketpair with a small send buffer (so sends come back short): bytes
 * arrive in order across copies, references, more than 64 segments (the
 * iovec batch), short sends and data queued while a send is in flight;
 * release callbacks run exactly once, only after the send completions
 * covered their bytes. The test drives the loop itself the way worker.c
 * does: a before-callback that walks the dirty list (clearing CF_DIRTY,
 * then outq_flush) and outq_sent() on every OP_SEND completion.
 * Exits 77 when io_uring is unavailable. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "app/worker.h"
#include "io/outq.h"
#include "test.h"

#define T_GUARD 200 /* an op number no enum op uses */

static unsigned char pattern(size_t i)
{
    return (unsigned char)(i * 167 + (i >> 10) + 11);
}

/* ==== a slow peer ==== */

struct reader {
    int fd;
    char *got;
    size_t cap, len;
    bool overflow;
    unsigned reads;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    char buf[8192];
    for (;;) {
        ssize_t n = read(r->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (r->len + (size_t)n <= r->cap)
            memcpy(r->got + r->len, buf, (size_t)n);
        else
            r->overflow = true;
        r->len += (size_t)n;
        if (++r->reads % 32 == 0)
            usleep(500);
    }
    return NULL;
}

/* ==== the plan: what is queued, in order ==== */

enum { ITEM_COPY, ITEM_REF };

struct item {
    int kind;
    size_t len;
    size_t end;        /* stream offset just past this item */
    char *mem;         /* ITEM_REF: its own block, poisoned on release */
    unsigned released;
    bool released_early;
};

struct t {
    struct worker w;
    struct conn c;
    struct loop_ts guard_ts;
    bool guard_fired;
    /* plan */
    struct item *items;
    unsigned nitems, next;   /* next item to queue */
    unsigned *batch_end;     /* items [batch_end[k-1], batch_end[k]) */
    unsigned nbatches, batch; /* batches queued so far */
    char *stream;            /* the expected bytes */
    size_t stream_len;
    /* driver */
    bool expect_fail;        /* a failed send is the point of the test */
    size_t sent;             /* sum of OP_SEND results */
    unsigned completions, short_sends, in_flight_batches, errors;
    unsigned max_inflight;
    unsigned settled;        /* immediate sends that went whole */
    unsigned imm_eagain;     /* immediate sends that sent nothing */
    int last_ret;
};

static struct t *cur; /* for the release callback */
static bool no_imm;   /* run without immediate sends (plain sends only) */

static void on_release(struct worker *w, void *arg, intptr_t aux)
{
    struct t *t = cur;
    if (w != &t->w || arg != t || aux < 0 || (unsigned)aux >= t->nitems) {
        t->errors++;
        return;
    }
    struct item *it = &t->items[aux];
    it->released++;
    if (t->sent < it->end)
        it->released_early = true; /* the kernel may still read it */
    memset(it->mem, 0xEE, it->len);  /* any later read sends garbage */
}

static void queue_item(struct t *t, unsigned i)
{
    struct item *it = &t->items[i];
    const char *src = t->stream + (it->end - it->len);
    if (it->kind == ITEM_COPY) {
        outq_copy(&t->c.out, src, it->len);
    } else {
        memcpy(it->mem, src, it->len);
        outq_ref(&t->c.out, it->mem, it->len, on_release, t, (intptr_t)i);
    }
}

static void queue_batch(struct t *t)
{
    if (t->batch == t->nbatches)
        return;
    size_t before = outq_pending(&t->c.out), n = 0;
    for (; t->next < t->batch_end[t->batch]; t->next++) {
        n += t->items[t->next].len;
        queue_item(t, t->next);
    }
    if (outq_pending(&t->c.out) != before + n)
        t->errors++;
    if (t->c.out.sending)
        t->in_flight_batches++; /* queued behind a send in flight */
    t->batch++;
}

/* Build `nitems` items in `nbatches` batches. Copies of 1..300 bytes (some
 * back to back, which coalesce), references of 0..40000 bytes. */
static void plan(struct t *t, unsigned nitems, unsigned nbatches)
{
    t->items = calloc(nitems, sizeof *t->items);
    t->batch_end = calloc(nbatches, sizeof *t->batch_end);
    t->nitems = nitems;
    t->nbatches = nbatches;
    size_t off = 0;
    for (unsigned i = 0; i < nitems; i++) {
        struct item *it = &t->items[i];
        unsigned h = i * 2654435761u;
        if (i % 3 == 2 || i % 7 == 0) {
            it->kind = ITEM_REF;
            it->len = i % 11 == 0 ? 0 : 1 + (h >> 8) % 40000;
            it->mem = malloc(it->len ? it->len : 1);
        } else {
            it->kind = ITEM_COPY;
            it->len = 1 + (h >> 12) % 300;
        }
        off += it->len;
        it->end = off;
    }
    t->stream_len = off;
    t->stream = malloc(off);
    for (size_t i = 0; i < off; i++)
        t->stream[i] = (char)pattern(i);
    for (unsigned k = 0; k < nbatches; k++)
        t->batch_end[k] = (unsigned)((uint64_t)nitems * (k + 1) / nbatches);
}

static void plan_free(struct t *t)
{
    for (unsigned i = 0; i < t->nitems; i++)
        free(t->items[i].mem);
    free(t->items);
    free(t->batch_end);
    free(t->stream);
}

/* ==== the driver (worker.c's before_sleep and on_send) ==== */

static void on_cqe(void *ctx, const struct loop_cqe *cq);

static void on_settled(void *ctx, const struct loop_cqe *cq)
{
    struct t *t = ctx;
    t->settled++;
    on_cqe(t, cq);
}

static bool before(void *ctx)
{
    struct t *t = ctx;
    struct conn *c;
    outq_imm_settle(&t->w.h1.imm, on_settled, t);
    while ((c = t->w.h1.dirty) != NULL) {
        t->w.h1.dirty = c->next_dirty;
        c->flags &= (uint16_t)~CF_DIRTY;
        if (c->state < CS_CLOSED)
            outq_flush(&c->out);
    }
    if (t->c.s.inflight > t->max_inflight)
        t->max_inflight = t->c.s.inflight;
    /* the "handler" queues more when a send completes and the test ends
     * when all is sent: no tick here to settle sends later */
    return t->w.h1.imm.head == NULL;
}

static bool all_done(struct t *t)
{
    return t->batch == t->nbatches && outq_pending(&t->c.out) == 0 &&
           !t->c.out.sending;
}

static void on_cqe(void *ctx, const struct loop_cqe *cq)
{
    struct t *t = ctx;
    struct conn *c = &t->c;
    if (UD_OP(cq->ud) == T_GUARD) {
        if (cq->res == -ETIME) {
            t->guard_fired = true;
            loop_stop(t->w.loop);
        }
        return;
    }
    if (UD_OP(cq->ud) != OP_SEND || UD_IDX(cq->ud) != c->s.idx ||
        UD_GEN(cq->ud) != c->s.gen || c->s.inflight != 1) {
        t->errors++;
        loop_stop(t->w.loop);
        return;
    }
    c->s.inflight--;
    t->completions++;
    if (cq->res == -EAGAIN)
        t->imm_eagain++; /* an immediate send found the socket full */
    if (cq->res > 0)
        t->sent += (size_t)cq->res;
    size_t flight_left = c->out.flight_left;
    int ret = outq_sent(&c->out, cq->res);
    t->last_ret = ret;
    if (ret < 0) {
        if (!t->expect_fail)
            printf("   send failed: %d\n", cq->res);
        t->errors++;
        loop_stop(t->w.loop);
        return;
    }
    if (cq->res > 0 && (size_t)cq->res < flight_left)
        t->short_sends++;
    if (ret == 1 && !c->out.sending)
        t->errors++; /* "more is being sent" */
    if (ret == 0 && (c->out.q.n || outq_pending(&c->out)))
        t->errors++; /* "0 when everything queued is sent" */
    /* more output from the "handler": every few completions, often while
     * the rest of a flight is still being sent */
    if (t->completions % 3 == 1 || ret == 0)
        queue_batch(t);
    if (all_done(t))
        loop_stop(t->w.loop);
}

/* The queue's owner, as worker.c's connections: queued output goes on the
 * dirty list (flushed by before()); running out of memory is an error. */
static void out_dirty(struct outq *o) { conn_mark_dirty(o->owner); }
static void out_broken(struct outq *o) { (void)o; cur->errors++; }
static const struct outq_ops test_out_ops = {out_dirty, out_broken};

static bool setup(struct t *t, int sv[2], int sndbuf)
{
    memset(t, 0, sizeof *t);
    cur = t;
    struct loop_config cfg = {.entries = 64, .nbufs = 4, .buf_size = 256,
                              .no_imm = no_imm};
    char err[512] = "";
    t->w.loop = loop_new(&cfg, err, sizeof err);
    if (t->w.loop == NULL) {
        printf("loop_new: %s\n", err);
        return false;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return false;
    if (sndbuf)
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    t->c.s.fd = sv[0];
    t->c.s.idx = 5;
    t->c.s.gen = 77;
    t->c.srv = &t->w.h1;
    t->w.h1.imm.loop = t->w.loop;
    outq_init(&t->c.out, &t->c.s, &t->w.h1.imm, &t->w, &test_out_ops, &t->c);
    t->c.state = CS_READING;
    return true;
}

static void run(struct t *t, int guard_sec)
{
    t->guard_ts.tv_sec = guard_sec;
    loop_timeout(t->w.loop, &t->guard_ts, UD_MAKE(T_GUARD, 0, 0));
    loop_run(t->w.loop, on_cqe, before, t);
}

static void teardown(struct t *t, int sv[2])
{
    outq_free(&t->c.out);
    loop_free(t->w.loop);
    close(sv[0]);
    close(sv[1]);
}

/* Everything queued, in any pattern, arrives in order; each reference is
 * released once, after its bytes were sent. */
static void ordered_case(unsigned nitems, unsigned nbatches, int guard_sec,
                         int sndbuf)
{
    static struct t t;
    int sv[2];
    REQUIRE(setup(&t, sv, sndbuf));
    plan(&t, nitems, nbatches);
    struct reader r = {.fd = sv[1], .cap = t.stream_len};
    r.got = malloc(r.cap);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, reader_main, &r) == 0);

    queue_batch(&t); /* the first batch before the loop runs */
    CHECK(t.c.flags & CF_DIRTY);
    CHECK(t.w.h1.dirty == &t.c);
    run(&t, guard_sec);
    shutdown(sv[0], SHUT_WR);
    pthread_join(th, NULL);

    CHECK(!t.guard_fired);
    if (t.guard_fired) {
        printf("   stalled: %zu of %zu bytes sent, %zu queued behind no "
               "send (sending %d, dirty %d), %u/%u batches queued\n",
               t.sent, t.stream_len, t.c.out.queued,
               t.c.out.sending != 0, (t.c.flags & CF_DIRTY) != 0,
               t.batch, t.nbatches);
        goto out;
    }
    CHECK_EQ(t.errors, 0);
    CHECK_EQ(t.batch, t.nbatches);
    CHECK_EQ(t.sent, t.stream_len);
    CHECK_EQ(r.len, t.stream_len);
    CHECK(!r.overflow);
    CHECK(r.len == t.stream_len && memcmp(r.got, t.stream, r.len) == 0);
    CHECK_EQ(outq_pending(&t.c.out), 0);
    CHECK_EQ(t.max_inflight, 1); /* never two sends at once */
    if (sndbuf)
        CHECK(t.short_sends > 0); /* the small buffer forced resumes */
    if (nbatches > 1 && sndbuf)
        CHECK(t.in_flight_batches > 0);
    unsigned refs = 0, once = 0, early = 0;
    for (unsigned i = 0; i < t.nitems; i++) {
        if (t.items[i].kind != ITEM_REF)
            continue;
        refs++;
        once += t.items[i].released == 1;
        early += t.items[i].released_early;
    }
    CHECK_EQ(once, refs);
    CHECK_EQ(early, 0);
    if (loop_has_imm(t.w.loop)) {
        /* the first send of each flight is immediate: with room in the
         * socket it goes whole and is settled without a completion */
        if (!sndbuf)
            CHECK(t.settled > 0);
    } else {
        CHECK_EQ(t.settled, 0);
        CHECK_EQ(t.imm_eagain, 0);
    }
    printf("   %u items (%u refs), %zu bytes: %u sends (%u short, %u "
           "settled without a completion, %u found the socket full), %u "
           "batches queued during a send\n",
           t.nitems, refs, t.stream_len, t.completions, t.short_sends,
           t.settled, t.imm_eagain, t.in_flight_batches);
out:
    teardown(&t, sv);
    /* outq_free released nothing a second time */
    unsigned twice = 0;
    for (unsigned i = 0; i < t.nitems; i++)
        twice += t.items[i].released > 1;
    CHECK_EQ(twice, 0);
    plan_free(&t);
    free(r.got);
}

/* Everything in one batch: > 64 segments, so several iovec batches. */
static void test_one_big_flight(void) { ordered_case(300, 1, 20, 4096); }

/* Many batches, most queued while a send is in flight. Output queued
 * during a flight must go out when that flight ends even if nothing else
 * is queued afterwards: before_sleep clears CF_DIRTY before outq_flush,
 * which does nothing while a send is in flight, so only outq_sent can start
 * it (a regression test: before 33335c3 such output waited for the next
 * write or the send timeout, truncating responses). A stall ends the test
 * at the guard timeout. */
static void test_order_and_release(void) { ordered_case(400, 60, 5, 4096); }

/* Many flights into a socket with room (the default buffer, a reader that
 * keeps up): most immediate sends go whole and are settled without a
 * completion; the bytes still arrive in order and references are released
 * only after the kernel took them. */
static void test_settled_sends(void) { ordered_case(400, 200, 5, 0); }

/* The same two with plain sends only (a kernel without
 * IORING_FEAT_CQE_SKIP). */
static void test_plain_sends(void)
{
    no_imm = true;
    ordered_case(300, 1, 20, 4096);
    ordered_case(400, 60, 5, 4096);
    ordered_case(400, 200, 5, 0);
    no_imm = false;
}

/* Only an empty reference queued behind a flight: when the flight ends
 * nothing is left to send, so outq_sent must not claim that more is being
 * sent (worker.c would then wait for a completion that never comes before
 * it finishes a draining connection). */
static void test_empty_behind_flight(void)
{
    static struct t t;
    int sv[2];
    REQUIRE(setup(&t, sv, 4096));
    plan(&t, 2, 1);
    /* item 1: 200 KB, far more than the socket takes at once */
    struct item *big = &t.items[1];
    free(big->mem);
    big->kind = ITEM_REF;
    big->len = 200000;
    big->end = 200000;
    big->mem = malloc(big->len);
    memset(big->mem, 'x', big->len);
    outq_ref(&t.c.out, big->mem, big->len, on_release, &t, 1);
    t.batch = t.nbatches; /* nothing more from queue_batch */
    before(&t);           /* flush: the flight starts */
    REQUIRE(t.c.out.sending);
    /* an empty reference queued behind it */
    struct item *empty = &t.items[0];
    CHECK(empty->kind == ITEM_REF && empty->len == 0);
    empty->end = 200000; /* released only after the flight */
    outq_ref(&t.c.out, empty->mem, 0, on_release, &t, 0);
    CHECK_EQ(empty->released, 0);
    struct reader r = {.fd = sv[1], .cap = 200000};
    r.got = malloc(r.cap);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, reader_main, &r) == 0);
    run(&t, 5);
    shutdown(sv[0], SHUT_WR);
    pthread_join(th, NULL);
    CHECK(!t.guard_fired);
    CHECK_EQ(t.errors, 0);
    CHECK_EQ(t.last_ret, 0);
    CHECK(!t.c.out.sending);
    CHECK_EQ(r.len, 200000);
    CHECK_EQ(big->released, 1);
    CHECK_EQ(empty->released, 1);
    CHECK(!big->released_early && !empty->released_early);
    teardown(&t, sv);
    plan_free(&t);
    free(r.got);
}

/* A closed stream takes no output; references are released at once. */
static void test_closed(void)
{
    static struct t t;
    int sv[2];
    REQUIRE(setup(&t, sv, 0));
    plan(&t, 2, 1);
    t.c.state = CS_CLOSED;
    stream_close(&t.c.s, false);
    outq_copy(&t.c.out, "abc", 3);
    CHECK_EQ(outq_pending(&t.c.out), 0);
    CHECK(!(t.c.flags & CF_DIRTY));
    char *mem = malloc(10);
    t.items[1].kind = ITEM_REF;
    t.items[1].len = 10;
    t.items[1].end = 0;
    t.items[1].mem = mem;
    outq_ref(&t.c.out, mem, 10, on_release, &t, 1);
    CHECK_EQ(t.items[1].released, 1);
    CHECK_EQ(outq_pending(&t.c.out), 0);
    outq_flush(&t.c.out);
    CHECK(!t.c.out.sending);
    CHECK_EQ(t.c.s.inflight, 0);
    teardown(&t, sv);
    CHECK_EQ(t.items[1].released, 1);
    plan_free(&t);
}

/* Copies coalesce; empty references send nothing but are released. */
static void test_segments(void)
{
    static struct t t;
    int sv[2];
    REQUIRE(setup(&t, sv, 0));
    plan(&t, 3, 1);
    outq_copy(&t.c.out, "ab", 2);
    outq_copy(&t.c.out, "cd", 2);
    outq_copy(&t.c.out, "", 0);
    CHECK_EQ(t.c.out.q.n, 1); /* contiguous copies: one segment */
    CHECK_EQ(outq_pending(&t.c.out), 4);
    CHECK(t.items[0].kind == ITEM_REF && t.items[0].mem);
    outq_ref(&t.c.out, t.items[0].mem, 0, on_release, &t, 0);
    outq_copy(&t.c.out, "ef", 2);
    CHECK_EQ(t.c.out.q.n, 3);
    CHECK_EQ(outq_pending(&t.c.out), 6);
    CHECK_EQ(t.items[0].released, 0);
    outq_release_all(&t.c.out); /* e.g. a connection closed before sending */
    CHECK_EQ(t.items[0].released, 1);
    CHECK_EQ(outq_pending(&t.c.out), 0);

    /* only empty segments: released by the flush, nothing sent */
    t.items[1].kind = ITEM_REF;
    t.items[1].len = 0;
    t.items[1].end = 0;
    t.items[1].mem = malloc(1);
    outq_ref(&t.c.out, t.items[1].mem, 0, on_release, &t, 1);
    outq_flush(&t.c.out);
    CHECK_EQ(t.items[1].released, 1);
    CHECK(!t.c.out.sending);
    CHECK_EQ(t.c.s.inflight, 0);
    CHECK_EQ(outq_pending(&t.c.out), 0);
    teardown(&t, sv);
    CHECK_EQ(t.items[0].released, 1);
    CHECK_EQ(t.items[1].released, 1);
    plan_free(&t);
}

/* The peer is gone: the send fails, outq_sent says so, and the flight's
 * references are released exactly once by outq_release_all. */
static void test_send_error(void)
{
    static struct t t;
    int sv[2];
    REQUIRE(setup(&t, sv, 0));
    plan(&t, 3, 1);
    t.expect_fail = true;
    close(sv[1]);
    sv[1] = open("/dev/null", O_RDONLY); /* keep teardown's close valid */
    queue_batch(&t);
    run(&t, 5);
    CHECK(!t.guard_fired);
    CHECK_EQ(t.completions, 1);
    CHECK_EQ(t.last_ret, -1);
    CHECK(!t.c.out.sending);
    unsigned released = 0;
    for (unsigned i = 0; i < t.nitems; i++)
        released += t.items[i].released;
    CHECK_EQ(released, 0); /* the kernel was done, but nothing says so */
    outq_release_all(&t.c.out);
    unsigned refs = 0, once = 0;
    for (unsigned i = 0; i < t.nitems; i++) {
        if (t.items[i].kind != ITEM_REF)
            continue;
        refs++;
        once += t.items[i].released == 1;
    }
    CHECK(refs > 0);
    CHECK_EQ(once, refs);
    CHECK_EQ(outq_pending(&t.c.out), 0);
    t.errors = 0; /* the failed send was counted as one */
    teardown(&t, sv);
    plan_free(&t);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    test_watchdog(50);
    struct loop_config cfg = {.entries = 8, .nbufs = 4, .buf_size = 64};
    char err[512] = "";
    struct loop *probe = loop_new(&cfg, err, sizeof err);
    if (probe == NULL) {
        if (strstr(err, "unavailable") || strstr(err, "5.19"))
            test_skip(err);
        printf("loop_new: %s\n", err);
        return 1;
    }
    loop_free(probe);
    TEST(test_segments);
    TEST(test_closed);
    TEST(test_send_error);
    TEST(test_one_big_flight);
    TEST(test_order_and_release);
    TEST(test_settled_sends);
    TEST(test_plain_sends);
    TEST(test_empty_behind_flight);
    return test_report();
}
