/* timer.c - timer queues of equal timeouts (see timer.h). */
#include "io/timer.h"

#include <stdlib.h>

struct timer_queue *timers_queue(struct timers *ts, int64_t timeout_ms,
                                 timer_expired_pt expired)
{
    for (struct timer_queue *q = ts->queues; q; q = q->next)
        if (q->timeout_ms == timeout_ms && q->expired == expired)
            return q;
    struct timer_queue *q = calloc(1, sizeof *q);
    if (q == NULL)
        return NULL;
    q->timeout_ms = timeout_ms;
    q->expired = expired;
    q->next = ts->queues;
    ts->queues = q;
    return q;
}

void timer_disarm(struct timer *t)
{
    struct timer_queue *q = t->q;
    if (q == NULL)
        return;
    if (t->prev)
        t->prev->next = t->next;
    else
        q->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        q->tail = t->prev;
    t->prev = t->next = NULL;
    t->q = NULL;
}

void timer_arm(struct timer_queue *q, struct timer *t, int64_t now)
{
    int64_t deadline = now + q->timeout_ms;
    /* Same queue, same deadline: everything behind t has that deadline too
     * (same millisecond), so the order holds without moving it. */
    if (t->q == q && t->deadline == deadline)
        return;
    timer_disarm(t);
    t->q = q;
    t->deadline = deadline;
    t->prev = q->tail;
    t->next = NULL;
    if (q->tail)
        q->tail->next = t;
    else
        q->head = t;
    q->tail = t;
}

void timers_expire(struct timers *ts, int64_t now)
{
    for (struct timer_queue *q = ts->queues; q; q = q->next) {
        struct timer *t;
        while ((t = q->head) != NULL && t->deadline <= now) {
            timer_disarm(t);
            q->expired(q, t);
        }
    }
}

void timers_free(struct timers *ts)
{
    struct timer_queue *q;
    while ((q = ts->queues) != NULL) {
        ts->queues = q->next;
        free(q);
    }
}
