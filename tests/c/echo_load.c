/* echo_load.c - the load client of scripts/bench's echo scenario: CONNS
 * connections, each sends a SIZE-byte message, waits for SIZE bytes back,
 * and again, for SECONDS.
 *   echo_load HOST PORT CONNS SECONDS [SIZE=1024]
 * Prints "round_trips N seconds S rate R" (R = round trips per second).
 * One thread, epoll. Bytes that come back are counted, not checked
 * (tests/c/echo_check.c checks them). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>

#include "client.h"

struct conn {
    int fd;
    size_t out;  /* bytes of the message still to send */
    size_t in;   /* bytes of the answer still to come */
};

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: echo_load HOST PORT CONNS SECONDS [SIZE]\n");
        return 2;
    }
    unsigned n = (unsigned)atoi(argv[3]);
    double secs = atof(argv[4]);
    size_t size = argc > 5 ? (size_t)atoi(argv[5]) : 1024;
    struct sockaddr_in sa;
    if (client_addr(argv[1], argv[2], &sa) < 0) {
        fprintf(stderr, "bad address %s\n", argv[1]);
        return 2;
    }
    char *msg = malloc(size), *buf = malloc(65536);
    memset(msg, 'x', size);
    struct conn *cs = calloc(n, sizeof *cs);
    int ep = epoll_create1(0);
    for (unsigned i = 0; i < n; i++) {
        int fd = client_connect(&sa);
        if (fd < 0) {
            fprintf(stderr, "connect %u: %s\n", i, strerror(errno));
            return 1;
        }
        cs[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    uint64_t trips = 0;
    double t0 = client_now(), end = t0 + secs;
    for (unsigned i = 0; i < n; i++) { /* every connection's first message */
        ssize_t w = send(cs[i].fd, msg, size, MSG_NOSIGNAL);
        cs[i].out = size - (w > 0 ? (size_t)w : 0);
        cs[i].in = size;
    }
    struct epoll_event evs[256];
    while (client_now() < end) {
        int k = epoll_wait(ep, evs, 256, 1000);
        for (int j = 0; j < k; j++) {
            struct conn *c = &cs[evs[j].data.u32];
            ssize_t r = recv(c->fd, buf, 65536, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN)) {
                fprintf(stderr, "connection closed: %s\n",
                        r == 0 ? "by the server" : strerror(errno));
                return 1;
            }
            if (r < 0)
                continue;
            c->in -= (size_t)r < c->in ? (size_t)r : c->in;
            if (c->out) { /* a short send: the rest (rare at 1 KiB) */
                ssize_t w = send(c->fd, msg + size - c->out, c->out, MSG_NOSIGNAL);
                if (w > 0)
                    c->out -= (size_t)w;
            }
            if (c->in == 0 && c->out == 0) {
                trips++;
                ssize_t w = send(c->fd, msg, size, MSG_NOSIGNAL);
                c->out = size - (w > 0 ? (size_t)w : 0);
                c->in = size;
            }
        }
    }
    double t = client_now() - t0;
    printf("round_trips %llu seconds %.3f rate %.0f\n",
           (unsigned long long)trips, t, trips / t);
    return 0;
}
