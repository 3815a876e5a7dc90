/* epoll_echo.c - a minimal epoll echo server, the baseline of
 * scripts/bench's echo scenario (the seed's epoll server, without its
 * byte loss): one thread, level-triggered epoll, a buffer per connection;
 * a short write keeps the rest, waits for EPOLLOUT and stops reading that
 * connection until it is sent.
 *   epoll_echo HOST PORT */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536

struct conn {
    int fd;
    size_t off, len; /* unsent: buf[off..len) */
    bool out_wait;   /* waiting for EPOLLOUT (not reading) */
    char buf[BUF];
};

static void set(int ep, struct conn *c, unsigned events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void drop(struct conn *c)
{
    close(c->fd);
    free(c);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: epoll_echo HOST PORT\n");
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &sa.sin_addr);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(lfd, 4096) < 0) {
        perror("listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[256];
    for (;;) {
        int k = epoll_wait(ep, evs, 256, -1);
        for (int j = 0; j < k; j++) {
            struct conn *c = evs[j].data.ptr;
            if (c == NULL) { /* the listener */
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = malloc(sizeof *c);
                    c->fd = fd;
                    c->off = c->len = 0;
                    c->out_wait = false;
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
                }
                continue;
            }
            if (c->len == 0) { /* nothing pending: read */
                ssize_t r = recv(c->fd, c->buf, BUF, 0);
                if (r == 0 || (r < 0 && errno != EAGAIN)) {
                    drop(c);
                    continue;
                }
                if (r < 0)
                    continue;
                c->off = 0;
                c->len = (size_t)r;
            }
            ssize_t w = send(c->fd, c->buf + c->off, c->len - c->off,
                             MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN) {
                drop(c);
                continue;
            }
            if (w > 0)
                c->off += (size_t)w;
            if (c->off == c->len) {
                if (c->out_wait)
                    set(ep, c, EPOLLIN);
                c->out_wait = false;
                c->off = c->len = 0;
            } else if (!c->out_wait) {
                set(ep, c, EPOLLOUT); /* the rest first, no reading */
                c->out_wait = true;
            }
        }
    }
}
