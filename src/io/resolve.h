/* resolve.h - host name resolution off the worker's thread: getaddrinfo
 * runs on a few threads of a resolver; each answer is queued and the
 * resolver's eventfd is written, which the worker reads through its ring
 * (an io_uring read) and then takes the answers. One resolver per worker
 * (its thread alone asks and takes). */
#ifndef LURING_RESOLVE_H
#define LURING_RESOLVE_H

#include <stdint.h>
#include <sys/socket.h>

struct resolver;

/* One answer: the first address of the name (IPv4 preferred), or err. */
struct resolve_answer {
    uint64_t tag;                /* what resolve_ask was given */
    int err;                     /* 0, or getaddrinfo's EAI_* code */
    struct sockaddr_storage sa;  /* err 0: the address, port set */
    socklen_t salen;
};

/** A resolver of `threads` threads (started now), holding at most
 * `queue_max` names asked and not answered. NULL when out of memory or
 * threads. */
struct resolver *resolver_new(unsigned threads, unsigned queue_max);
/** Stop the threads (waits for a lookup in progress to end) and free it;
 * answers not taken are dropped. */
void resolver_free(struct resolver *rs);
/** The eventfd to read (8 bytes) for answers; readable once one is
 * queued. */
int resolver_fd(const struct resolver *rs);
/** Look `host` up (port in host order goes into the answer's address).
 * 0; -1 when queue_max names wait already or out of memory. */
int resolver_ask(struct resolver *rs, const char *host, uint16_t port,
                 uint64_t tag);
/** Hand the answers queued to fn, in order; how many. */
unsigned resolver_take(struct resolver *rs,
                       void (*fn)(void *ctx, const struct resolve_answer *a),
                       void *ctx);

#endif
