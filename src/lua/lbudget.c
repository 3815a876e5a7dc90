/* lbudget.c - the Lua CPU budget and memory limit (budget.h).
 *
 * Why a watchdog and a signal instead of a count hook set on every run: a
 * count hook makes LuaJIT's interpreter dispatch every bytecode through
 * lj_vm_inshook, a cost on every request. Here nothing is hooked until a
 * run is over budget; then the worker's own signal handler calls
 * lua_sethook, the one Lua API documented as callable asynchronously
 * ("This function can be called asynchronously (e.g. during a signal)",
 * lj_api.c; luajit.c's Ctrl-C handler and lj_profile.c do the same).
 *
 * Limit: hooks run only in the interpreter. A loop the JIT compiled into a
 * trace never looks at them (`while true do end` becomes a trace without an
 * exit), and nothing can stop a running trace from outside safely. So the
 * script's own functions are marked not to be compiled (jit.off(f, true) on
 * its chunk and on every chunk it loads later: LuaJIT then starts no trace
 * in them, and a trace started elsewhere that enters one of their loops
 * aborts instead of looping, lj_record.c rec_loop_interp), while luring's
 * own Lua (router, entry) keeps the JIT; luring.config{ lua_jit = true }
 * compiles the script too (docs/API.md says what that gives up). */
#define _GNU_SOURCE
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <signal.h>
#include <stdlib.h>

#include "lua/lbudget.h"
#include "store/policy.h"

#define SIG_BUDGET SIGURG /* ignored by default; we never ask for OOB data */

__thread struct lbudget *lbudget_cur;

/* The count hook, set by on_signal: raises while the run the watchdog
 * tripped is on. It fires at every bytecode (count 1), so a pcall that
 * catches the error gets it again at the next instruction after it
 * returns: a script cannot catch its way past the budget. */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct lbudget *b = lbudget_cur;
    if (b && atomic_load_explicit(&b->L, memory_order_relaxed) &&
        atomic_load(&b->seq) == atomic_load(&b->trip)) {
        /* no luaL_error: a C hook adds no frame to name a place with */
        lua_pushfstring(L, "lua budget exceeded: ran %d ms without yielding "
                        "(luring.config lua_budget)",
                        (int)atomic_load(&b->over_ms));
        lua_error(L);
    }
    lua_sethook(L, NULL, 0, 0); /* stale: that run is over */
}

static void on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    struct lbudget *b = lbudget_cur;
    if (b) {
        lua_State *L = atomic_load_explicit(&b->L, memory_order_relaxed);
        if (L && atomic_load(&b->seq) == atomic_load(&b->trip)) {
            atomic_store_explicit(&b->hooked, L, memory_order_relaxed);
            lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
        }
    }
    errno = saved;
}

void lbudget_unhook(struct lbudget *b, lua_State *L)
{
    if (atomic_load_explicit(&b->hooked, memory_order_relaxed) != L)
        return;
    atomic_store_explicit(&b->hooked, NULL, memory_order_relaxed);
    lua_sethook(L, NULL, 0, 0);
    /* a signal between the two lines hooks b->L (the outer run, which
     * goes on over budget) and records it in hooked: it is undone when
     * that run ends */
}

/* ==== policies (store/policy.h): the same budget ==== */

static lua_State *guard_enter(lua_State *L) { return lbudget_enter(L); }
static void guard_leave(lua_State *L, lua_State *prev) { lbudget_leave(L, prev); }
static bool jit_on;
static void guard_opened(lua_State *L) { lbudget_jit(L, jit_on); }

static const struct policy_lua_guard guard = {
    guard_enter, guard_leave, guard_opened,
};

void lbudget_install(void)
{
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIG_BUDGET, &sa, NULL);
    policy_lua_guard = &guard;
}

void lbudget_watch(struct lbudget *b, pthread_t tid, int64_t now_ms, bool stop)
{
    uint64_t s = atomic_load(&b->seq);
    if (!(s & 1)) {           /* not in Lua */
        b->seen_seq = s;
        return;
    }
    if (s != b->seen_seq) {   /* a run we have not seen yet */
        b->seen_seq = s;
        b->seen_ms = now_ms;
        if (!stop)
            return;
    }
    int64_t ran = now_ms - b->seen_ms;
    if (!stop && (b->budget_ms == 0 || ran < b->budget_ms))
        return;
    /* over budget (ran is a lower bound: the run began before we first
     * saw it). Signalled again at each look while it goes on, which also
     * repairs a hook lost to a race with the worker's own lua_sethook. */
    atomic_store(&b->over_ms, ran);
    atomic_store(&b->trip, s);
    pthread_kill(tid, SIG_BUDGET);
}

int64_t lbudget_period_ms(int64_t budget_ms)
{
    int64_t p = budget_ms / 8;
    return p < 1 ? 1 : p > 100 ? 100 : p;
}

/* ==== memory ==== */

/* Past m->mark: refuse (over max inside a run), or note the pressure. */
static __attribute__((noinline)) void *
lmem_alloc_slow(struct lmem *m, void *p, size_t osize, size_t nsize,
                int64_t used)
{
    if (nsize > osize && used > m->max && lbudget_cur &&
        atomic_load_explicit(&lbudget_cur->L, memory_order_relaxed)) {
        m->refused++; /* LuaJIT raises "not enough memory" */
        return NULL;
    }
    void *q = m->inner(m->inner_ud, p, osize, nsize);
    if (q == NULL) {
        if (nsize > osize)
            m->refused++;
        return NULL;
    }
    m->used = used;
    if (used > m->soft)
        m->pressure = true;
    return q;
}

/* An allocation or reallocation: one addition and one comparison besides
 * LuaJIT's own allocator while used stays under the mark. */
static __attribute__((noinline)) void *
lmem_grow(struct lmem *m, void *p, size_t osize, size_t nsize)
{
    int64_t used = m->used + (int64_t)(nsize - osize);
    if (__builtin_expect(used > m->mark, 0))
        return lmem_alloc_slow(m, p, osize, nsize, used);
    void *q = m->inner(m->inner_ud, p, osize, nsize);
    if (__builtin_expect(q == NULL, 0)) {
        if (nsize > osize)
            m->refused++; /* the system's memory, not our limit */
        return NULL;
    }
    m->used = used;
    return q;
}

/* The state's allocator. A free (which cannot fail) hands over to LuaJIT's
 * allocator at once, without a frame of ours. */
static void *lmem_alloc(void *ud, void *p, size_t osize, size_t nsize)
{
    struct lmem *m = ud;
    if (nsize != 0)
        return lmem_grow(m, p, osize, nsize);
    m->used -= (int64_t)osize;
    return m->inner(m->inner_ud, p, osize, 0);
}

void lmem_wrap(lua_State *L, struct lmem *m, int64_t max)
{
    m->inner = lua_getallocf(L, &m->inner_ud);
    m->max = max ? max : INT64_MAX;
    m->soft = max ? max / 4 * 3 : INT64_MAX;
    m->mark = m->soft < m->max ? m->soft : m->max;
    m->refused = 0;
    m->pressure = false;
    m->used = (int64_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 +
              lua_gc(L, LUA_GCCOUNTB, 0);
    lua_setallocf(L, lmem_alloc, m);
}

void lbudget_jit(lua_State *L, bool on)
{
    if (L == NULL) { /* the setting for policy states opened from now on */
        jit_on = on;
        return;
    }
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | (on ? LUAJIT_MODE_ON : LUAJIT_MODE_OFF));
    if (!on)
        luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_FLUSH);
}

void lbudget_jit_func(lua_State *L, int idx, bool on)
{
    luaJIT_setmode(L, idx, LUAJIT_MODE_ALLFUNC |
                               (on ? LUAJIT_MODE_ON : LUAJIT_MODE_OFF));
}
