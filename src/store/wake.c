/* wake.c - per-worker inboxes of store waiters (wake.h). */
#include "store/wake.h"

#include <pthread.h>
#include <stdlib.h>

__thread int store_self = -1;

struct inbox {
    pthread_mutex_t mu;
    struct store_waiter *head, *tail;
    int pending;       /* head != NULL, readable without mu (atomic) */
    char pad[64];      /* one cache line each */
};

static struct inbox *boxes;
static unsigned nboxes = 1;
static void (*poke_fn)(unsigned worker);

int store_wake_init(unsigned nworkers, void (*poke)(unsigned worker))
{
    boxes = calloc(nworkers, sizeof *boxes);
    if (boxes == NULL)
        return -1;
    for (unsigned i = 0; i < nworkers; i++)
        pthread_mutex_init(&boxes[i].mu, NULL);
    nboxes = nworkers;
    poke_fn = poke;
    return 0;
}

void store_wake_free(void)
{
    if (boxes == NULL)
        return;
    for (unsigned i = 0; i < nboxes; i++)
        pthread_mutex_destroy(&boxes[i].mu);
    free(boxes);
    boxes = NULL;
    nboxes = 1;
}

unsigned store_nworkers(void) { return nboxes; }

void store_wake_post(struct store_waiter *sw)
{
    if (boxes == NULL || sw->worker < 0 || (unsigned)sw->worker >= nboxes) {
        sw->notify(sw); /* no inboxes (tests of the store alone) */
        return;
    }
    struct inbox *b = &boxes[sw->worker];
    pthread_mutex_lock(&b->mu);
    if (sw->queued) {
        pthread_mutex_unlock(&b->mu);
        return;
    }
    sw->queued = true;
    sw->qnext = NULL;
    sw->qprev = b->tail;
    *(b->tail ? &b->tail->qnext : &b->head) = sw;
    b->tail = sw;
    bool was_empty = !__atomic_exchange_n(&b->pending, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&b->mu);
    /* the owner runs its inbox before it next sleeps: a poke only when
     * it may be asleep, i.e. another worker's */
    if (was_empty && sw->worker != store_self && poke_fn)
        poke_fn((unsigned)sw->worker);
}

static void unlink_q(struct inbox *b, struct store_waiter *sw)
{
    *(sw->qprev ? &sw->qprev->qnext : &b->head) = sw->qnext;
    *(sw->qnext ? &sw->qnext->qprev : &b->tail) = sw->qprev;
    sw->qprev = sw->qnext = NULL;
    sw->queued = false;
    if (b->head == NULL)
        __atomic_store_n(&b->pending, 0, __ATOMIC_RELAXED);
}

void store_wake_cancel(struct store_waiter *sw)
{
    if (boxes == NULL || sw->worker < 0 || (unsigned)sw->worker >= nboxes)
        return;
    struct inbox *b = &boxes[sw->worker];
    pthread_mutex_lock(&b->mu);
    if (sw->queued)
        unlink_q(b, sw);
    pthread_mutex_unlock(&b->mu);
}

bool store_wake_pending(unsigned worker)
{
    return boxes && worker < nboxes &&
           __atomic_load_n(&boxes[worker].pending, __ATOMIC_RELAXED);
}

void store_wake_run(unsigned worker)
{
    if (boxes == NULL || worker >= nboxes)
        return;
    struct inbox *b = &boxes[worker];
    for (;;) {
        /* one at a time: a notify may unwatch (and free) others queued
         * here, which store_wake_cancel takes out first */
        pthread_mutex_lock(&b->mu);
        struct store_waiter *sw = b->head;
        if (sw)
            unlink_q(b, sw);
        pthread_mutex_unlock(&b->mu);
        if (sw == NULL)
            return;
        sw->notify(sw);
    }
}
