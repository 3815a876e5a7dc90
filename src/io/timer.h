/* timer.h - one timer mechanism for everything with a timeout in a worker
 * (client connections, origin connections; later Lua sockets). Timers
 * wait in queues whose members all have the same timeout, so arming one
 * is an append and each queue stays sorted by deadline (nginx's and
 * Varnish's timeouts are as coarse). A worker's queues hang off one
 * `struct timers`; timers_expire, called from its periodic tick, fires
 * every due timer. Times are monotonic ms (io/loop.h's loop_now). */
#ifndef LURING_TIMER_H
#define LURING_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct timer_queue;

/* Embedded in whatever it times; container_of finds the owner. */
struct timer {
    struct timer *prev, *next;
    struct timer_queue *q; /* NULL: not armed */
    int64_t deadline;
};

/* Called with t already disarmed; it may arm t again, or any other. */
typedef void (*timer_expired_pt)(struct timer_queue *q, struct timer *t);

struct timer_queue {
    struct timer *head, *tail;
    int64_t timeout_ms;
    timer_expired_pt expired;
    struct timer_queue *next; /* in its struct timers */
};

struct timers {
    struct timer_queue *queues;
};

/** ts's queue with this timeout and callback, made on first use: users
 * with equal timeouts share one (a connection's idle and send timeouts
 * when both are 60 s). NULL when out of memory. Queues live until
 * timers_free. */
struct timer_queue *timers_queue(struct timers *ts, int64_t timeout_ms,
                                 timer_expired_pt expired);
/** (Re)start t on q: it expires at now + q->timeout_ms. Already on q with
 * that deadline: nothing to do (the common case, a few times a request). */
void timer_arm(struct timer_queue *q, struct timer *t, int64_t now);
/** Stop t if it is armed. */
void timer_disarm(struct timer *t);
static inline bool timer_armed(const struct timer *t) { return t->q != NULL; }
/** Fire every timer of ts due at `now`, oldest first in each queue. */
void timers_expire(struct timers *ts, int64_t now);
/** Free the queues (the worker is ending; nothing is armed any more). */
void timers_free(struct timers *ts);

#endif
