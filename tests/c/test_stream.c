/* test_stream.c - io/stream.c: the accounting of operations in flight,
 * stale completions after a close, the shutdown a socket's close does,
 * and when the slot may be reused. Completions are made up here; the ring
 * itself is test_loop's. */
#include "test.h"

#include <sys/socket.h>

#include "io/ops.h"
#include "io/stream.h"

static struct loop_cqe cqe(const struct stream *s, unsigned op, int res,
                           bool more)
{
    return (struct loop_cqe){.ud = stream_ud(s, op), .res = res, .more = more};
}

static void test_accounting(void)
{
    struct stream s = {.idx = 7, .gen = 3};
    stream_open(&s, -1);
    CHECK(!s.closed && s.inflight == 0 && !stream_done(&s));
    CHECK_EQ(UD_IDX(stream_ud(&s, OP_SEND)), 7);
    CHECK_EQ(UD_GEN(stream_ud(&s, OP_SEND)), 3);
    /* a multishot recv and a send in flight */
    s.recv_armed = true;
    stream_started(&s);
    stream_started(&s);
    struct loop_cqe c = cqe(&s, OP_RECV, 100, true);
    CHECK(stream_completed(&s, &c, true)); /* still armed: still in flight */
    CHECK_EQ(s.inflight, 2);
    CHECK(s.recv_armed);
    c = cqe(&s, OP_SEND, 50, false);
    CHECK(stream_completed(&s, &c, false));
    CHECK_EQ(s.inflight, 1);
    /* close: a new generation; what arrives for the old one is stale */
    struct loop_cqe late = cqe(&s, OP_RECV, 0, false);
    stream_close(&s, false);
    CHECK(s.closed);
    CHECK_EQ(s.gen, 4);
    CHECK(!stream_done(&s)); /* the recv is still in flight */
    CHECK(!stream_completed(&s, &late, true));
    CHECK(!s.recv_armed);
    CHECK_EQ(s.inflight, 0);
    CHECK(stream_done(&s));
    stream_close(&s, false); /* twice: nothing more */
    CHECK_EQ(s.gen, 4);
    /* the generation wraps at 24 bits */
    struct stream w = {.gen = GEN_MASK};
    stream_open(&w, -1);
    stream_close(&w, false);
    CHECK_EQ(w.gen, 0);
}

static void test_close_shuts_a_socket(void)
{
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct stream s = {0};
    stream_open(&s, sv[0]);
    stream_close(&s, true);
    char b;
    CHECK_EQ(recv(sv[1], &b, 1, MSG_DONTWAIT), 0); /* the peer sees EOF */
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    test_watchdog(10);
    TEST(test_accounting);
    TEST(test_close_shuts_a_socket);
    return test_report();
}
