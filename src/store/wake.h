/* wake.h - telling waiters on any worker that an object changed (issue 13).
 *
 * An object of a cache shared by the workers (struct cache shared) may be
 * filled on one worker and waited for on others. The fill never calls a
 * waiter's notify itself: under its cache's lock it posts the waiter to
 * the inbox of the worker that owns it (store_wake_post), once however
 * many changes come before that worker looks; the owner runs its inbox on
 * its own thread (store_wake_run), with no lock held, so a notify may do
 * what a waiter on an unshared object does (unwatch, unref, send, wake its
 * request). The fill holds no reference across it: a notify that drops
 * its waiter's reference must not touch the object after. A worker whose
 * inbox turns non-empty is poked once (the
 * callback given to store_wake_init: a message through its ring). Objects
 * of unshared caches notify their waiters directly, as before.
 *
 * Lock order: a cache's lock, then an inbox's lock; running an inbox
 * holds its lock only to take the next waiter. */
#ifndef LURING_STORE_WAKE_H
#define LURING_STORE_WAKE_H

#include <stdbool.h>

/* Someone who wants to know when an object changes (head known, bytes
 * added, complete, failed): embedded in the watcher, which finds itself
 * from the pointer. notify may unwatch the waiter it is given. */
struct store_waiter {
    struct store_waiter *next; /* the object's list (under its cache lock) */
    void (*notify)(struct store_waiter *sw);
    int worker;                /* owner (store_self when watching) */
    bool queued;               /* in the owner's inbox (its lock) */
    struct store_waiter *qprev, *qnext;
};

/* This thread's worker number (0..nworkers-1), -1 on other threads: set
 * by each worker thread when it starts. */
extern __thread int store_self;

/** Inboxes for `nworkers` workers; `poke(worker)` (any thread) makes that
 * worker call store_wake_run soon. 0, or -1 when out of memory. Called
 * once before the workers start; store_wake_free after they end. */
int store_wake_init(unsigned nworkers, void (*poke)(unsigned worker));
void store_wake_free(void);
/** Workers there are (1 before store_wake_init). */
unsigned store_nworkers(void);

/** Queue sw's notify on its owner (under the lock of the cache whose
 * object sw watches). Nothing if already queued. */
void store_wake_post(struct store_waiter *sw);
/** sw stops watching (under that cache lock): out of its inbox. */
void store_wake_cancel(struct store_waiter *sw);
/** Whether this worker's inbox has waiters (a hint, read without the
 * lock: before_sleep runs it then). */
bool store_wake_pending(unsigned worker);
/** Call notify for each waiter queued for `worker` (its own thread), in
 * order, including ones queued meanwhile. */
void store_wake_run(unsigned worker);

#endif
