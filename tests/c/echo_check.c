/* echo_check.c - streams a pseudo-random pattern through an echo server
 * on several connections at once and checks that every byte comes back,
 * in order (tests/lua/tcp_spec.lua).
 *   echo_check HOST PORT CONNS BYTES_PER_CONN [SEED]
 * Prints "ok BYTES SECONDS" and exits 0, or names the first connection
 * and offset that differ (or the error) and exits 1. One thread, poll();
 * each connection writes whenever it can and reads whenever it can, so
 * the server's own pace decides (no window). Byte i of connection c is
 * byte i%8 of splitmix64(seed, c, i/8): the reader computes the expected
 * bytes at any offset without keeping what was sent. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "client.h"

#define CHUNK 65536

struct conn {
    int fd;
    uint64_t sent, got;
};

static uint64_t word(uint64_t seed, uint64_t c, uint64_t i)
{
    uint64_t z = seed + c * 0x9e3779b97f4a7c15ull + (i + 1) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* bytes [off, off+n) of connection c's stream into p */
static void pattern(uint64_t seed, uint64_t c, uint64_t off, unsigned char *p,
                    size_t n)
{
    size_t k = 0;
    while (k < n) {
        uint64_t pos = off + k, w = word(seed, c, pos / 8);
        for (unsigned b = (unsigned)(pos % 8); b < 8 && k < n; b++)
            p[k++] = (unsigned char)(w >> (8 * b));
    }
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: echo_check HOST PORT CONNS BYTES_PER_CONN [SEED]\n");
        return 2;
    }
    unsigned n = (unsigned)atoi(argv[3]);
    uint64_t total = strtoull(argv[4], NULL, 10);
    uint64_t seed = argc > 5 ? strtoull(argv[5], NULL, 10) : 1;
    struct sockaddr_in sa;
    if (client_addr(argv[1], argv[2], &sa) < 0) {
        fprintf(stderr, "bad address %s\n", argv[1]);
        return 2;
    }
    struct conn *cs = calloc(n, sizeof *cs);
    struct pollfd *pf = calloc(n, sizeof *pf);
    unsigned char *out = malloc(CHUNK), *in = malloc(CHUNK), *want = malloc(CHUNK);
    for (unsigned i = 0; i < n; i++) {
        cs[i].fd = client_connect(&sa);
        if (cs[i].fd < 0) {
            printf("connect %u: %s\n", i, strerror(errno));
            return 1;
        }
    }
    double t0 = client_now();
    unsigned left = n;
    while (left) {
        for (unsigned i = 0; i < n; i++) {
            pf[i].fd = cs[i].got < total ? cs[i].fd : -1;
            pf[i].events = POLLIN | (cs[i].sent < total ? POLLOUT : 0);
        }
        int pr = poll(pf, n, 30000);
        if (pr <= 0) {
            for (unsigned i = 0; i < n; i++)
                if (cs[i].got < total)
                    printf("FAIL conn %u: nothing for 30 s (sent %llu, got %llu)\n",
                           i, (unsigned long long)cs[i].sent,
                           (unsigned long long)cs[i].got);
            return 1;
        }
        for (unsigned i = 0; i < n; i++) {
            struct conn *c = &cs[i];
            if (pf[i].revents & POLLOUT) {
                size_t k = total - c->sent < CHUNK ? total - c->sent : CHUNK;
                pattern(seed, i, c->sent, out, k);
                ssize_t w = send(c->fd, out, k, MSG_NOSIGNAL);
                if (w < 0 && errno != EAGAIN) {
                    printf("FAIL conn %u: send at %llu: %s\n", i,
                           (unsigned long long)c->sent, strerror(errno));
                    return 1;
                }
                if (w > 0)
                    c->sent += (uint64_t)w;
            }
            if (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t r = recv(c->fd, in, CHUNK, 0);
                if (r == 0 || (r < 0 && errno != EAGAIN)) {
                    printf("FAIL conn %u: %s after %llu of %llu bytes\n", i,
                           r == 0 ? "closed" : strerror(errno),
                           (unsigned long long)c->got,
                           (unsigned long long)total);
                    return 1;
                }
                if (r > 0) {
                    if (c->got + (uint64_t)r > c->sent) {
                        printf("FAIL conn %u: %llu bytes back, only %llu sent\n",
                               i, (unsigned long long)(c->got + r),
                               (unsigned long long)c->sent);
                        return 1;
                    }
                    pattern(seed, i, c->got, want, (size_t)r);
                    if (memcmp(in, want, (size_t)r) != 0) {
                        size_t d = 0;
                        while (in[d] == want[d])
                            d++;
                        printf("FAIL conn %u: byte %llu is %u, expected %u\n",
                               i, (unsigned long long)(c->got + d), in[d],
                               want[d]);
                        return 1;
                    }
                    c->got += (uint64_t)r;
                    if (c->got == total)
                        left--;
                }
            }
        }
    }
    double t = client_now() - t0;
    printf("ok %llu %.3f\n", (unsigned long long)(total * n), t);
    for (unsigned i = 0; i < n; i++)
        close(cs[i].fd);
    free(cs);
    free(pf);
    free(out);
    free(in);
    free(want);
    return 0;
}
