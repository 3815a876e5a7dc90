/* budget.h - a count of bytes shared by threads (C11 atomics). Holders
 * (buffers) charge what they have grown to and give it back when they
 * shrink or go away; comparing the count with a limit is the caller's
 * business. Each thread charges through its own `struct budget_local`,
 * which adds to the shared count once its change reaches BUDGET_STEP: no
 * atomic operation per request, no shared cache line written on every
 * buffer change, and the shared count is exact to BUDGET_STEP per thread
 * (budget_flush makes it exact for the calling thread). */
#ifndef LURING_BUDGET_H
#define LURING_BUDGET_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define BUDGET_STEP (16 * 1024)

/* The count every thread shares. */
struct budget {
    _Atomic int64_t used; /* bytes charged, as every thread last flushed */
};

/* One thread's way to the shared count. */
struct budget_local {
    struct budget *all;   /* NULL: nothing is counted */
    int64_t pending;      /* charged here, not yet added to all->used */
};

/** Add what this thread has charged to the shared count. */
static inline void budget_flush(struct budget_local *b)
{
    if (b->all && b->pending) {
        atomic_fetch_add_explicit(&b->all->used, b->pending,
                                  memory_order_relaxed);
        b->pending = 0;
    }
}

/** Move a holder's charge from *held to `now` bytes (*held becomes now). */
static inline void budget_set(struct budget_local *b, size_t *held,
                              size_t now)
{
    if (now == *held)
        return;
    b->pending += (int64_t)now - (int64_t)*held;
    *held = now;
    if (b->pending >= BUDGET_STEP || b->pending <= -BUDGET_STEP)
        budget_flush(b);
}

/** Bytes charged by every thread: the shared count plus this thread's
 * part not yet added to it. */
static inline int64_t budget_used(const struct budget_local *b)
{
    if (b->all == NULL)
        return 0;
    return atomic_load_explicit(&b->all->used, memory_order_relaxed) +
           b->pending;
}

#endif
