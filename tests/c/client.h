/* client.h - what the test clients (echo_check.c, echo_load.c) share: a
 * monotonic clock in seconds and the address and connected sockets of
 * their server. Header-only: each client is one file plus this. */
#ifndef LURING_TEST_CLIENT_H
#define LURING_TEST_CLIENT_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/** Seconds on CLOCK_MONOTONIC. */
static inline double client_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/** HOST (an IPv4 literal) and PORT into *sa: 0, or -1 when HOST is not
 * one. */
static inline int client_addr(const char *host, const char *port,
                              struct sockaddr_in *sa)
{
    *sa = (struct sockaddr_in){.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)atoi(port))};
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

/** A TCP connection to sa, TCP_NODELAY, then non-blocking: its fd, or -1
 * with errno set. */
static inline int client_connect(const struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) < 0) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

#endif
