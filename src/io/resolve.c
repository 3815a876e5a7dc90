/* resolve.c - getaddrinfo on a few threads, answers back through an
 * eventfd (resolve.h). Two lists under one mutex: names waiting (a
 * condition variable wakes a thread) and answers (the eventfd wakes the
 * worker). */
#include "io/resolve.h"

#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct job {
    struct job *next;
    struct resolve_answer a;
    uint16_t port;
    char host[]; /* NUL-terminated */
};

struct resolver {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *todo, *todo_tail;  /* asked, not taken by a thread */
    struct job *done, *done_tail;  /* answered, not taken by the worker */
    unsigned pending;              /* asked and not answered yet */
    unsigned queue_max;
    bool stop;
    int efd;
    unsigned nthreads;
    pthread_t th[];
};

static void push(struct job **head, struct job **tail, struct job *j)
{
    j->next = NULL;
    if (*tail)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
}

static void lookup(struct job *j)
{
    struct addrinfo hints = {0}, *res = NULL, *ai, *pick = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    j->a.err = getaddrinfo(j->host, NULL, &hints, &res);
    if (j->a.err)
        return;
    for (ai = res; ai; ai = ai->ai_next) /* IPv4 first, then IPv6 */
        if (ai->ai_family == AF_INET && pick == NULL)
            pick = ai;
    for (ai = res; ai && pick == NULL; ai = ai->ai_next)
        if (ai->ai_family == AF_INET6)
            pick = ai;
    if (pick == NULL || pick->ai_addrlen > sizeof j->a.sa) {
        j->a.err = EAI_FAMILY;
    } else {
        memcpy(&j->a.sa, pick->ai_addr, pick->ai_addrlen);
        j->a.salen = pick->ai_addrlen;
        if (pick->ai_family == AF_INET)
            ((struct sockaddr_in *)&j->a.sa)->sin_port = htons(j->port);
        else
            ((struct sockaddr_in6 *)&j->a.sa)->sin6_port = htons(j->port);
    }
    freeaddrinfo(res);
}

static void *run(void *arg)
{
    struct resolver *rs = arg;
    pthread_mutex_lock(&rs->mu);
    for (;;) {
        while (rs->todo == NULL && !rs->stop)
            pthread_cond_wait(&rs->cv, &rs->mu);
        if (rs->stop)
            break;
        struct job *j = rs->todo;
        rs->todo = j->next;
        if (rs->todo == NULL)
            rs->todo_tail = NULL;
        pthread_mutex_unlock(&rs->mu);
        lookup(j); /* the slow part, unlocked */
        pthread_mutex_lock(&rs->mu);
        push(&rs->done, &rs->done_tail, j);
        uint64_t one = 1;
        ssize_t n = write(rs->efd, &one, sizeof one);
        (void)n; /* a full counter is readable anyway */
    }
    pthread_mutex_unlock(&rs->mu);
    return NULL;
}

struct resolver *resolver_new(unsigned threads, unsigned queue_max)
{
    struct resolver *rs = calloc(1, sizeof *rs + threads * sizeof(pthread_t));
    if (rs == NULL)
        return NULL;
    rs->queue_max = queue_max;
    rs->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (rs->efd < 0) {
        free(rs);
        return NULL;
    }
    pthread_mutex_init(&rs->mu, NULL);
    pthread_cond_init(&rs->cv, NULL);
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&rs->th[i], NULL, run, rs) != 0)
            break;
        rs->nthreads++;
    }
    if (rs->nthreads == 0) {
        resolver_free(rs);
        return NULL;
    }
    return rs;
}

static void free_list(struct job *j)
{
    while (j) {
        struct job *next = j->next;
        free(j);
        j = next;
    }
}

void resolver_free(struct resolver *rs)
{
    if (rs == NULL)
        return;
    pthread_mutex_lock(&rs->mu);
    rs->stop = true;
    pthread_cond_broadcast(&rs->cv);
    pthread_mutex_unlock(&rs->mu);
    for (unsigned i = 0; i < rs->nthreads; i++)
        pthread_join(rs->th[i], NULL);
    free_list(rs->todo);
    free_list(rs->done);
    close(rs->efd);
    pthread_cond_destroy(&rs->cv);
    pthread_mutex_destroy(&rs->mu);
    free(rs);
}

int resolver_fd(const struct resolver *rs) { return rs->efd; }

int resolver_ask(struct resolver *rs, const char *host, uint16_t port,
                 uint64_t tag)
{
    size_t n = strlen(host);
    struct job *j = malloc(sizeof *j + n + 1);
    if (j == NULL)
        return -1;
    memset(&j->a, 0, sizeof j->a);
    j->a.tag = tag;
    j->port = port;
    memcpy(j->host, host, n + 1);
    pthread_mutex_lock(&rs->mu);
    if (rs->pending >= rs->queue_max) {
        pthread_mutex_unlock(&rs->mu);
        free(j);
        return -1;
    }
    rs->pending++;
    push(&rs->todo, &rs->todo_tail, j);
    pthread_cond_signal(&rs->cv);
    pthread_mutex_unlock(&rs->mu);
    return 0;
}

unsigned resolver_take(struct resolver *rs,
                       void (*fn)(void *ctx, const struct resolve_answer *a),
                       void *ctx)
{
    pthread_mutex_lock(&rs->mu);
    struct job *j = rs->done;
    rs->done = rs->done_tail = NULL;
    unsigned n = 0;
    for (struct job *k = j; k; k = k->next)
        n++;
    rs->pending -= n;
    pthread_mutex_unlock(&rs->mu);
    while (j) { /* outside the lock: fn may ask again */
        struct job *next = j->next;
        fn(ctx, &j->a);
        free(j);
        j = next;
    }
    return n;
}
