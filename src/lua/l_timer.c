/* l_timer.c - luring.timer.at(delay, fn, ...) and luring.timer.every(
 * interval, fn, ...): fn(premature, ...) runs on its own coroutine, outside
 * any client request, as OpenResty's ngx.timer.at / every. A timer waits
 * on an io_uring timeout (OP_TIMER, its slot and arming in user_data);
 * each run is a request of the worker's pool without a client (r->timer,
 * m.c NULL), so luring.sleep, origin:fetch and origin:request park and
 * wake it through core/req.h like a handler. The Lua side (the handle,
 * argument checks) is lua/luring/timer.lua; docs/API.md "Timers". */
#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lua/rt.h"

#include "base/log.h"
#include "core/req.h"
#include "io/loop.h"
#include "io/ops.h"

#define DELAY_MAX 31536000.0 /* seconds: a year, as luring.config's times */

enum tstate {
    T_FREE,     /* on the free list */
    T_NEW,      /* made by a main chunk still loading: armed by
                 * ltimer_start once the load succeeded */
    T_PENDING,  /* its timeout is armed (OP_TIMER, arming `arm`) */
    T_RUNNING,  /* fn runs on `r` (parked or not) */
};

/* A timer: its function and arguments in its script state, when it runs
 * next, and its run. Slots are stable (pointers), reused by generation. */
struct ltimer {
    uint32_t idx;           /* slot */
    uint32_t gen;           /* changes when the slot is freed: a handle
                             * names (idx, gen) */
    uint32_t arm;           /* the arming its timeout's user_data carries
                             * (24 bits): a cancelled one's late completion
                             * does not match */
    enum tstate state;
    bool cancelled;         /* handle:cancel() while running: no next run */
    bool premature;         /* the next run is its last, premature = true
                             * (reload, drain) */
    struct lstate *ls;      /* its script state (held: lrt_state_hold) */
    int ref;                /* ls's registry: { run =, fn =, n =, ... } */
    int64_t interval_ms;    /* every: > 0; at: 0 */
    int64_t due;            /* loop_now ms of the run armed or running
                             * (T_NEW: the delay, ms) */
    uint64_t id;            /* 1, 2, ... per worker: logs, handle.id */
    struct loop_ts ts;      /* the armed timeout */
    struct req *r;          /* T_RUNNING: its run */
    struct ltimer *next_free;
};

/* A worker's timers (struct lrt.timers). */
struct ltimers {
    struct ltimer **t;      /* slots */
    uint32_t n, cap;
    struct ltimer *free;
    unsigned active;        /* not T_FREE: pending + running (+ new) */
    unsigned running;       /* T_RUNNING */
    uint32_t arm_next;
    uint64_t id_next;
    bool draining;          /* ltimer_drain came */
};

/* ==== slots ==== */

static struct ltimers *timers_of(struct lrt *rt)
{
    if (rt->timers == NULL)
        rt->timers = calloc(1, sizeof *rt->timers);
    return rt->timers;
}

static struct ltimer *slot_get(struct ltimers *ts)
{
    struct ltimer *t = ts->free;
    if (t) {
        ts->free = t->next_free;
        return t;
    }
    if (ts->n == ts->cap) {
        uint32_t cap = ts->cap ? ts->cap * 2 : 16;
        struct ltimer **p = realloc(ts->t, cap * sizeof *p);
        if (p == NULL)
            return NULL;
        ts->t = p;
        ts->cap = cap;
    }
    t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->idx = ts->n;
    ts->t[ts->n++] = t;
    return t;
}

static struct ltimer *slot_at(const struct ltimers *ts, uint32_t idx)
{
    return ts && idx < ts->n ? ts->t[idx] : NULL;
}

/* t is over: its slot goes back (a handle of it now says "done"). With
 * `unref`, its table is let go and its state released (the state stays
 * open); without, the state is closing anyway. */
static void timer_free(struct lrt *rt, struct ltimer *t, bool unref)
{
    struct ltimers *ts = rt->timers;
    if (unref) {
        luaL_unref(t->ls->L, LUA_REGISTRYINDEX, t->ref);
        lrt_state_release(rt, t->ls); /* may close a retired state */
    }
    t->ls = NULL;
    t->r = NULL;
    t->state = T_FREE;
    t->gen = (t->gen + 1) & 0x7fffffffu;
    t->next_free = ts->free;
    ts->free = t;
    ts->active--;
}

/* ==== arming and running ==== */

static void arm(struct lrt *rt, struct ltimer *t, int64_t ms)
{
    struct ltimers *ts = rt->timers;
    t->arm = ts->arm_next++ & GEN_MASK;
    t->state = T_PENDING;
    t->due = loop_now(rt->loop) + ms;
    t->ts.tv_sec = ms / 1000;
    t->ts.tv_nsec = (ms % 1000) * 1000000LL;
    loop_timeout(rt->loop, &t->ts, UD_MAKE(OP_TIMER, t->arm, t->idx));
}

/* Cancel t's armed timeout (its completion, -ECANCELED or a late -ETIME,
 * no longer matches t->arm once t is armed again or freed). */
static void disarm(struct lrt *rt, struct ltimer *t)
{
    loop_cancel(rt->loop, UD_MAKE(OP_TIMER, t->arm, t->idx),
                UD_MAKE(OP_CANCEL, 0, 0));
    t->arm = (t->arm + 1) & GEN_MASK; /* its CQE is stale from now on */
}

/* t's time came: run fn on a request without a client. */
static void fire(struct lrt *rt, struct ltimer *t)
{
    struct ltimers *ts = rt->timers;
    struct req *r = req_get(rt->rp);
    if (r == NULL) {
        log_err("timer %llu: out of memory, its run is skipped",
                (unsigned long long)t->id);
        if (t->interval_ms && !t->premature)
            arm(rt, t, t->interval_ms);
        else
            timer_free(rt, t, true);
        return;
    }
    r->m.srv = rt->h1;
    r->timer = t;
    t->r = r;
    t->state = T_RUNNING;
    ts->running++;
    if (t->interval_ms) { /* fixed rate: from when this run was due */
        int64_t now = loop_now(rt->loop);
        t->due += t->interval_ms;
        if (t->due < now)
            t->due = now; /* late: no burst to catch up */
    }
    /* t may be freed by the time this returns (a run that did not park) */
    lrt_run_timer(r, t->ls, t->ref, t->premature);
}

void ltimer_on_cqe(struct lrt *rt, const struct loop_cqe *cq)
{
    struct ltimer *t = slot_at(rt->timers, UD_IDX(cq->ud));
    if (t == NULL || t->state != T_PENDING || t->arm != UD_GEN(cq->ud))
        return; /* cancelled, or re-armed since */
    fire(rt, t);
}

void ltimer_run_end(struct req *r, const char *err)
{
    struct lrt *rt = lrt_current();
    struct ltimers *ts = rt->timers;
    struct ltimer *t = r->timer;
    if (err)
        log_err("timer %llu failed: %s", (unsigned long long)t->id, err);
    req_put(r); /* r->timer still set: no access log line, no metrics */
    r->timer = NULL;
    t->r = NULL;
    ts->running--;
    if (t->interval_ms == 0 || t->cancelled || t->premature ||
        ts->draining || t->ls != rt->lua) {
        timer_free(rt, t, true);
        return;
    }
    int64_t left = t->due - loop_update_time(rt->loop);
    arm(rt, t, left > 0 ? left : 0);
}

/* t's next run is now, with premature = true, and its last. */
static void run_premature(struct lrt *rt, struct ltimer *t)
{
    t->premature = true;
    if (t->state == T_PENDING) {
        disarm(rt, t);
        arm(rt, t, 0);
    }
}

void ltimer_start(struct lrt *rt, struct lstate *ls)
{
    struct ltimers *ts = rt->timers;
    for (uint32_t i = 0; ts && i < ts->n; i++) {
        struct ltimer *t = ts->t[i];
        if (t->state == T_NEW && t->ls == ls)
            arm(rt, t, t->due);
    }
}

void ltimer_discard(struct lrt *rt, struct lstate *ls)
{
    struct ltimers *ts = rt->timers;
    for (uint32_t i = 0; ts && i < ts->n; i++) {
        struct ltimer *t = ts->t[i];
        if (t->state != T_FREE && t->ls == ls)
            timer_free(rt, t, false); /* only T_NEW can be there */
    }
}

void ltimer_reload(struct lrt *rt, struct lstate *old)
{
    struct ltimers *ts = rt->timers;
    for (uint32_t i = 0; ts && i < ts->n; i++) {
        struct ltimer *t = ts->t[i];
        if (t->ls == old && (t->state == T_PENDING || t->state == T_RUNNING))
            run_premature(rt, t); /* a running one just ends */
    }
}

void ltimer_drain(struct lrt *rt)
{
    struct ltimers *ts = timers_of(rt); /* draining even with none yet */
    if (ts == NULL)
        return; /* out of memory: no timer exists either */
    ts->draining = true;
    for (uint32_t i = 0; i < ts->n; i++) {
        struct ltimer *t = ts->t[i];
        if (t->state == T_PENDING || t->state == T_RUNNING)
            run_premature(rt, t);
    }
}

unsigned ltimer_active(const struct lrt *rt)
{
    return rt->timers ? rt->timers->active : 0;
}

void ltimer_cleanup(struct lrt *rt)
{
    struct ltimers *ts = rt->timers;
    if (ts == NULL)
        return;
    /* runs in flight were freed with the request pool; the states close
     * next, with every reference */
    for (uint32_t i = 0; i < ts->n; i++)
        free(ts->t[i]);
    free(ts->t);
    free(ts);
    rt->timers = NULL;
}

/* ==== bindings (lua/luring/timer.lua wraps them) ==== */

/* The script state L belongs to (any of its threads): its allocator's
 * data is the state's struct lmem (lmem_wrap). NULL: none of rt's. */
static struct lstate *state_of(struct lrt *rt, lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    if (rt->lua && ud == &rt->lua->mem)
        return rt->lua;
    if (rt->loading && ud == &rt->loading->mem)
        return rt->loading;
    for (struct lstate *ls = rt->retired; ls; ls = ls->next)
        if (ud == &ls->mem)
            return ls;
    return NULL;
}

/* core._timer_new(delay, interval, t) -> idx, gen, id | nil, err: a timer
 * running t.run(t, premature) after delay seconds, then every interval
 * seconds (0: once). Arguments checked by timer.lua; ranges again here,
 * before any conversion. In the start-up check state (no worker) nothing
 * runs: -1, 0, 0. */
static int l_timer_new(lua_State *L)
{
    lua_Number delay = luaL_checknumber(L, 1);
    lua_Number interval = luaL_checknumber(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    if (!(delay >= 0 && delay <= DELAY_MAX))
        return luaL_argerror(L, 1, "seconds from 0 to 31536000 expected");
    if (!(interval == 0 || (interval >= 0.001 && interval <= DELAY_MAX)))
        return luaL_argerror(L, 2, "seconds from 0.001 to 31536000 expected");
    struct lrt *rt = lrt_current();
    if (rt == NULL) {
        lua_pushinteger(L, -1);
        lua_pushinteger(L, 0);
        lua_pushinteger(L, 0);
        return 3;
    }
    struct ltimers *ts = timers_of(rt);
    struct lstate *ls = state_of(rt, L);
    if (ts == NULL || ls == NULL) {
        lua_pushnil(L);
        lua_pushstring(L, ts ? "not available here" : "no memory");
        return 2;
    }
    /* as OpenResty's "process exiting": only a delay of 0 still runs */
    bool later = delay > 0 || interval > 0;
    if (later && (ts->draining || (ls != rt->lua && ls != rt->loading))) {
        lua_pushnil(L);
        lua_pushstring(L, ts->draining ? "draining" : "reloaded");
        return 2;
    }
    if (ts->active >= rt->cfg->max_timers) {
        lua_pushnil(L);
        lua_pushliteral(L, "too many timers");
        return 2;
    }
    struct ltimer *t = slot_get(ts);
    if (t == NULL) {
        lua_pushnil(L);
        lua_pushliteral(L, "no memory");
        return 2;
    }
    ts->active++;
    lua_pushvalue(L, 3);
    t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    t->ls = ls;
    lrt_state_hold(ls);
    t->cancelled = t->premature = false;
    t->r = NULL;
    t->id = ++ts->id_next;
    t->interval_ms = (int64_t)llround(interval * 1000);
    int64_t ms = (int64_t)llround(delay * 1000);
    if (ls == rt->loading) { /* armed once the load succeeded */
        t->state = T_NEW;
        t->due = ms;
    } else {
        arm(rt, t, ms);
    }
    lua_pushinteger(L, (lua_Integer)t->idx);
    lua_pushinteger(L, (lua_Integer)t->gen);
    lua_pushnumber(L, (lua_Number)t->id);
    return 3;
}

/* core._timer_cancel(idx, gen) -> true | nil, "running" | nil, "done":
 * a pending timer never runs; an `every` that runs now finishes this run
 * and stops; an `at` that runs now can't be cancelled ("running"); one
 * that ran, or was cancelled, is "done". */
static int l_timer_cancel(lua_State *L)
{
    lua_Integer idx = luaL_checkinteger(L, 1);
    lua_Integer gen = luaL_checkinteger(L, 2);
    struct lrt *rt = lrt_current();
    struct ltimer *t = rt && idx >= 0 && idx <= UINT32_MAX
                       ? slot_at(rt->timers, (uint32_t)idx) : NULL;
    if (t == NULL || t->state == T_FREE || (lua_Integer)t->gen != gen ||
        t->cancelled || t->premature) {
        lua_pushnil(L);
        lua_pushliteral(L, "done");
        return 2;
    }
    switch (t->state) {
    case T_PENDING:
        disarm(rt, t);
        /* fall through */
    case T_NEW:
        timer_free(rt, t, true);
        break;
    case T_RUNNING:
        if (t->interval_ms == 0) {
            lua_pushnil(L);
            lua_pushliteral(L, "running");
            return 2;
        }
        t->cancelled = true; /* freed when this run ends */
        break;
    case T_FREE:
        break;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* core._timer_counts() -> pending, running (this worker's). */
static int l_timer_counts(lua_State *L)
{
    struct lrt *rt = lrt_current();
    struct ltimers *ts = rt ? rt->timers : NULL;
    unsigned active = ts ? ts->active : 0, running = ts ? ts->running : 0;
    lua_pushinteger(L, (lua_Integer)(active - running));
    lua_pushinteger(L, (lua_Integer)running);
    return 2;
}

/* core._worker_id() -> 0 .. count - 1 (0 in the start-up check). */
static int l_worker_id(lua_State *L)
{
    struct lrt *rt = lrt_current();
    lua_pushinteger(L, rt ? (lua_Integer)rt->id : 0);
    return 1;
}

/* core._worker_count() -> the number of workers (1 in the start-up
 * check, which runs before the configuration is known). */
static int l_worker_count(lua_State *L)
{
    struct lrt *rt = lrt_current();
    lua_pushinteger(L, rt ? (lua_Integer)rt->cfg->workers : 1);
    return 1;
}

void ltimer_open(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"_timer_new", l_timer_new},
        {"_timer_cancel", l_timer_cancel},
        {"_timer_counts", l_timer_counts},
        {"_worker_id", l_worker_id},
        {"_worker_count", l_worker_count},
        {NULL, NULL},
    };
    luaL_register(L, NULL, funcs);
}
