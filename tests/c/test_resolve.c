/* test_resolve.c - the resolver's threads (io/resolve.h): names answered
 * through the eventfd in any order, with the port set, IPv4 first; a name
 * that does not resolve gets its getaddrinfo error; the queue bound holds
 * until answers are taken; freeing with lookups waiting drops them. */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "io/resolve.h"
#include "test.h"

struct seen {
    unsigned n, ok, bad;
};

static void on_answer(void *ctx, const struct resolve_answer *a)
{
    struct seen *s = ctx;
    s->n++;
    if (a->tag == 99) {
        CHECK(a->err != 0);
        s->bad++;
        return;
    }
    CHECK_EQ(a->err, 0);
    CHECK_EQ(a->sa.ss_family, AF_INET);
    const struct sockaddr_in *in = (const struct sockaddr_in *)&a->sa;
    CHECK_EQ(ntohs(in->sin_port), 8000 + (int)a->tag);
    CHECK_EQ(ntohl(in->sin_addr.s_addr), 0x7f000001u);
    s->ok++;
}

/* Take answers until `want` came (waiting on the eventfd). */
static void take_all(struct resolver *rs, struct seen *s, unsigned want)
{
    while (s->n < want) {
        struct pollfd p = {.fd = resolver_fd(rs), .events = POLLIN};
        CHECK(poll(&p, 1, 10000) == 1);
        uint64_t v;
        CHECK(read(resolver_fd(rs), &v, sizeof v) == sizeof v);
        resolver_take(rs, on_answer, s);
    }
}

static void test_answers(void)
{
    struct resolver *rs = resolver_new(2, 8);
    CHECK(rs != NULL);
    struct seen s = {0};
    for (unsigned i = 0; i < 5; i++)
        CHECK_EQ(resolver_ask(rs, "localhost", (uint16_t)(8000 + i), i), 0);
    CHECK_EQ(resolver_ask(rs, "no-such-host.invalid", 1, 99), 0);
    take_all(rs, &s, 6);
    CHECK_EQ(s.ok, 5);
    CHECK_EQ(s.bad, 1);
    resolver_free(rs);
}

static void test_bound(void)
{
    struct resolver *rs = resolver_new(1, 3);
    struct seen s = {0};
    for (unsigned i = 0; i < 3; i++)
        CHECK_EQ(resolver_ask(rs, "localhost", (uint16_t)(8000 + i), i), 0);
    /* answered or not, they count until taken */
    CHECK_EQ(resolver_ask(rs, "localhost", 8003, 3), -1);
    take_all(rs, &s, 3);
    CHECK_EQ(resolver_ask(rs, "localhost", 8003, 3), 0);
    take_all(rs, &s, 4);
    CHECK_EQ(s.ok, 4);
    for (unsigned i = 0; i < 3; i++) /* left waiting: dropped by free */
        CHECK_EQ(resolver_ask(rs, "localhost", (uint16_t)(8000 + i), i), 0);
    resolver_free(rs);
}

int main(void)
{
    test_watchdog(30);
    TEST(test_answers);
    TEST(test_bound);
    return test_report();
}
