/* lbudget.h - how long script code may run without yielding
 * (luring.config{ lua_budget }) and how much memory a script's state may
 * hold (lua_max_memory). A worker marks each run of Lua code (a handler's
 * resume, a cache hook, a policy function, a reloaded main chunk) with
 * lbudget_enter/leave; the watchdog (main thread) sees a run that lasts
 * longer than the budget and signals the worker, whose handler sets a
 * count hook that raises "lua budget exceeded" at the next bytecode the
 * interpreter runs. Nothing is hooked while runs stay within the budget. */
#ifndef LURING_LBUDGET_H
#define LURING_LBUDGET_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lua_State;

/* One per worker thread. The worker writes seq and L; the watchdog reads
 * seq and writes trip and over_ms; the signal handler (on the worker's
 * thread) reads them all and writes hooked. Relaxed atomics: plain loads
 * and stores on the worker's side, nothing locked on the hot path. */
struct lbudget {
    _Atomic uint64_t seq;           /* odd while a run is on: bumped at the
                                       outermost enter and leave */
    _Atomic uint64_t trip;          /* the run (seq) found over budget */
    _Atomic int64_t over_ms;        /* how long it had run then */
    struct lua_State *_Atomic L;    /* the state running now (innermost),
                                       NULL outside runs */
    struct lua_State *_Atomic hooked; /* state the handler hooked, or NULL */
    int64_t budget_ms;              /* from luring.config (0: no budget) */
    /* the watchdog's own */
    uint64_t seen_seq;              /* seq at its last look */
    int64_t seen_ms;                /* when it first saw that run */
};

/* A state's allocator wrapper: the script's memory limit. Only an
 * allocation that takes `used` past `mark` leaves the fast path. */
struct lmem {
    int64_t used;                   /* bytes held (counted from the wrap) */
    int64_t mark;                   /* min(soft, max): past it, the slow path */
    int64_t max;                    /* refused above this, inside a run */
    int64_t soft;                   /* above this: pressure */
    unsigned refused;               /* allocations refused so far */
    bool pressure;                  /* used went above soft: collect soon */
    void *(*inner)(void *ud, void *p, size_t osize, size_t nsize);
    void *inner_ud;
};

/** This thread's budget (the worker's), or NULL: runs are not watched. */
extern __thread struct lbudget *lbudget_cur;

/** Mark the start of a run of L's code on b's thread; pass the result to
 * lbudget_leave_b. A nested run keeps the outer one's start: the worker
 * has not yielded to its loop since then. */
static inline struct lua_State *lbudget_enter_b(struct lbudget *b,
                                                struct lua_State *L)
{
    struct lua_State *prev = atomic_load_explicit(&b->L, memory_order_relaxed);
    atomic_store_explicit(&b->L, L, memory_order_relaxed);
    if (prev == NULL) /* outermost */
        atomic_store_explicit(&b->seq,
                              atomic_load_explicit(&b->seq, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    return prev;
}

void lbudget_unhook(struct lbudget *b, struct lua_State *L);

/** The run of L started by lbudget_enter_b (which returned prev) is over. */
static inline void lbudget_leave_b(struct lbudget *b, struct lua_State *L,
                                   struct lua_State *prev)
{
    atomic_store_explicit(&b->L, prev, memory_order_relaxed);
    if (prev == NULL)
        atomic_store_explicit(&b->seq,
                              atomic_load_explicit(&b->seq, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    if (atomic_load_explicit(&b->hooked, memory_order_relaxed) != NULL)
        lbudget_unhook(b, L); /* only after an overrun */
}

/** lbudget_enter_b on this thread's budget (none: nothing is marked). */
static inline struct lua_State *lbudget_enter(struct lua_State *L)
{
    struct lbudget *b = lbudget_cur;
    return b ? lbudget_enter_b(b, L) : NULL;
}

/** lbudget_leave_b on this thread's budget. */
static inline void lbudget_leave(struct lua_State *L, struct lua_State *prev)
{
    struct lbudget *b = lbudget_cur;
    if (b)
        lbudget_leave_b(b, L, prev);
}

/** Install the signal handler (main thread, before workers start). */
void lbudget_install(void);
/** Watchdog: look at b (the worker thread tid) at now_ms; interrupt its
 * run when over budget, or at once when `stop` (shutting down). */
void lbudget_watch(struct lbudget *b, pthread_t tid, int64_t now_ms, bool stop);
/** A period to call lbudget_watch with for this budget, in ms. */
int64_t lbudget_period_ms(int64_t budget_ms);

/** Wrap L's allocator with m (max bytes; 0: no limit): allocations that
 * would pass m->max fail with a memory error while a run is on (outside
 * runs, where nothing could catch the error, they are let through). */
void lmem_wrap(struct lua_State *L, struct lmem *m, int64_t max);
/** Turn L's JIT compiler on or off (off: flush the traces already made);
 * L NULL: the setting for Lua policy states opened from now on. */
void lbudget_jit(struct lua_State *L, bool on);
/** Allow or forbid JIT compilation of the function at idx and every
 * function defined inside it (LUAJIT_MODE_ALLFUNC). */
void lbudget_jit_func(struct lua_State *L, int idx, bool on);

#endif
