/* l_cache.c - Lua bindings for caches and origins:
 *   luring.cache{ name, max_bytes, max_objects, ttl }   -> cache
 *   luring.origin{ name, url | root, timeouts, keepalive } -> origin
 *   cache:fetch(req, key, origin [, path | opts])  hit / join fill / fill,
 *                                           or pass (method, Cookie, ...)
 *   origin:fetch(path)                      -> status, headers, body
 *   luring.proxy(req, origin [, opts])      pass the request through
 *   cache:stats(), origin:stats()   (cache:purge, ban, purge_tag: l_inval.c)
 * Caches and origins belong to the worker and are found by name, so a
 * reloaded script binds to the same ones. */
#include <lauxlib.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lua/rt.h"
#include "base/log.h"
#include "core/deliver.h"
#include "core/fetch.h"
#include "core/origin.h"
#include "core/pass.h"
#include "core/req.h"
#include "core/vary.h"
#include "http/cc.h"
#include "http/fields.h"
#include "http/h1_server.h"
#include "store/cache.h"

#define CACHE_MT  "luring.cache"
#define ORIGIN_MT LRT_ORIGIN_MT

/* Limits of what a script may configure: every number from Lua is
 * checked against them before it becomes an integer (a float out of an
 * integer's range is undefined behaviour in C). */
#define MAX_SECONDS 31536000.0     /* a year */
#define MAX_BYTES   1125899906842624.0 /* 2^50 */
#define MAX_COUNT   1000000000.0

/* t[k], a number above 0 (or from 0, zero_ok) and no larger than max, or
 * def when absent; raises naming k otherwise. */
static lua_Number opt_range(lua_State *L, int t, const char *k,
                            lua_Number def, bool zero_ok, lua_Number max)
{
    lua_getfield(L, t, k);
    lua_Number v = def;
    if (!lua_isnil(L, -1)) {
        v = lua_tonumber(L, -1);
        if (!lua_isnumber(L, -1) || !(zero_ok ? v >= 0 : v > 0) || v > max)
            luaL_error(L, zero_ok ? "%s must be a number from 0 to %.0f"
                                  : "%s must be a positive number (at most %.0f)",
                       k, max);
    }
    lua_pop(L, 1);
    return v;
}

static lua_Number opt_num(lua_State *L, int t, const char *k, lua_Number def,
                          lua_Number max)
{
    return opt_range(L, t, k, def, false, max);
}

static const char *opt_str(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    const char *s = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1);
    return s; /* kept alive by the table */
}

/* Push o's forwarded origin headers as a table with lowercased names. */
static void push_hdrs(lua_State *L, const struct cache_obj *o)
{
    lua_newtable(L);
    size_t i = 0;
    struct field_line f;
    while (field_line_next(o->hdrs.data, o->hdrs.len, &i, &f)) {
        if (f.nlen == 0)
            continue;
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (const char *q = f.name; q < f.name + f.nlen; q++)
            luaL_addchar(&b, (char)((*q >= 'A' && *q <= 'Z') ? *q + 32 : *q));
        luaL_pushresult(&b);
        lua_pushlstring(L, f.value, f.vlen);
        lua_rawset(L, -3);
    }
}

/* ==== admission and TTL hooks ==== */

#define HOOKS_KEY "luring.cache_hooks" /* registry: name -> {admit, ttl} */

/* Call hook `name` of the current script (if it has one) as
 * fn(key, status, headers[, ttl_seconds]); leaves one result, or returns
 * false (no hook, or it failed: logged). */
static bool call_hook(lua_State *L, struct cache *c, struct cache_obj *o,
                      const char *name, int64_t ttl_ms)
{
    lua_getfield(L, LUA_REGISTRYINDEX, HOOKS_KEY);
    if (!lua_istable(L, -1))
        return false;
    lua_getfield(L, -1, c->name);
    if (!lua_istable(L, -1))
        return false;
    lua_getfield(L, -1, name);
    if (!lua_isfunction(L, -1))
        return false;
    lua_pushlstring(L, o->key, o->klen);
    lua_pushinteger(L, o->status);
    push_hdrs(L, o);
    lua_pushnumber(L, (lua_Number)ttl_ms / 1000);
    /* held to the script's budget like a handler (docs/API.md) */
    lua_State *prev = lbudget_enter(L);
    int rc = lua_pcall(L, 4, 1, 0);
    lbudget_leave(L, prev);
    if (rc != 0) {
        log_err("cache %s: %s hook failed for %s: %s (using the default)",
                c->name, name, o->key, lua_tostring(L, -1));
        return false;
    }
    return true;
}

/* cache_decide_pt: the script's admit(key, status, headers, ttl) -> bool
 * and ttl(key, status, headers, ttl) -> seconds, run on the script that is
 * current now (so a reload that fails can't change them). A response with
 * Set-Cookie is stored only when admit returns the string "set-cookie":
 * true is not enough, so a hook written for other responses never starts
 * replaying one client's cookie to every other by accident. */
static int64_t lua_decide(struct cache *c, struct cache_obj *o, int64_t ttl_ms,
                          bool set_cookie)
{
    struct lrt *w = lrt_current(); /* the filling worker's script */
    if (w == NULL || w->lua == NULL)
        return set_cookie ? 0 : ttl_ms;
    lua_State *L = w->lua->L;
    unsigned refused = w->lua->mem.refused;
    int top = lua_gettop(L);
    if (call_hook(L, c, o, "admit", ttl_ms)) {
        if (set_cookie) {
            size_t n;
            const char *v = lua_type(L, -1) == LUA_TSTRING
                                ? lua_tolstring(L, -1, &n) : NULL;
            if (v == NULL || n != 10 || memcmp(v, "set-cookie", 10) != 0)
                ttl_ms = 0;
        } else if (!lua_toboolean(L, -1)) {
            ttl_ms = 0;
        }
    } else if (set_cookie) {
        ttl_ms = 0; /* no admit hook (or it failed): not stored */
    }
    lua_settop(L, top);
    if (ttl_ms > 0 && call_hook(L, c, o, "ttl", ttl_ms)) {
        /* seconds; NaN, negative: 0; above 2^31 (math.huge): 2^31 */
        lua_Number s = lua_tonumber(L, -1);
        ttl_ms = !(s > 0) ? 0
                 : s >= (lua_Number)DELTA_SECONDS_MAX ? DELTA_SECONDS_MAX * 1000
                 : (int64_t)(s * 1000);
    }
    lua_settop(L, top);
    if (w->lua->mem.refused != refused || w->lua->mem.pressure) {
        if (w->lua->mem.refused != refused)
            log_err("cache %s: lua_max_memory reached by a hook", c->name);
        w->lua->mem.pressure = false; /* collect now: see after_pressure */
        lua_gc(L, LUA_GCCOLLECT, 0);
    }
    return ttl_ms;
}

/* Record luring.cache{}'s admit/ttl functions in this script's registry. */
static void set_hooks(lua_State *L, const char *name)
{
    lua_getfield(L, LUA_REGISTRYINDEX, HOOKS_KEY);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, HOOKS_KEY);
    }
    lua_createtable(L, 0, 2);
    lua_getfield(L, 1, "admit");
    if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
        luaL_error(L, "luring.cache: admit must be a function");
    lua_setfield(L, -2, "admit");
    lua_getfield(L, 1, "ttl");
    lua_setfield(L, -2, "ttl");
    lua_getfield(L, 1, "deliver");
    if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
        luaL_error(L, "luring.cache: deliver must be a function");
    lua_setfield(L, -2, "deliver");
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

/* The deliver hook of r's next response (docs/API.md "Deliver hooks"):
 * opts.deliver (opts at index `opts`, or 0), else the cache's (c, or
 * NULL), else none. The request table is at req_idx; `who` names the
 * caller in errors. */
static void set_deliver(lua_State *L, struct req *r, int req_idx,
                        struct cache *c, int opts, const char *who)
{
    r->deliver_hook = false;
    if (opts == 0 && (c == NULL || !c->deliver_hook))
        return; /* no hook to look for */
    int top = lua_gettop(L);
    if (opts) {
        lua_getfield(L, opts, "deliver");
        if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
            luaL_error(L, "%s: deliver must be a function", who);
    }
    if (c && c->deliver_hook && (!opts || lua_isnil(L, -1))) {
        lua_getfield(L, LUA_REGISTRYINDEX, HOOKS_KEY);
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, c->name);
            if (lua_istable(L, -1))
                lua_getfield(L, -1, "deliver");
        }
    }
    if (lua_gettop(L) > top && lua_isfunction(L, -1))
        ldeliver_set(L, r, lua_gettop(L), req_idx);
    lua_settop(L, top);
}

/* ==== caches ==== */

/* t[k] as "pass" (false) or "lookup" (true), def when absent: what
 * cache:fetch does with a request carrying Cookie or Authorization. */
static bool opt_mode(lua_State *L, int t, const char *k, bool def,
                     const char *who)
{
    lua_getfield(L, t, k);
    bool v = def;
    if (!lua_isnil(L, -1)) {
        const char *s = lua_isstring(L, -1) ? lua_tostring(L, -1) : "";
        if (strcmp(s, "pass") == 0)
            v = false;
        else if (strcmp(s, "lookup") == 0)
            v = true;
        else
            luaL_error(L, "%s: %s must be \"pass\" or \"lookup\"", who, k);
    }
    lua_pop(L, 1);
    return v;
}

/* t.host, a Host value for the origin (no CR, LF or NUL, not empty), or
 * NULL when absent; raises naming `who` otherwise. */
static const char *opt_host(lua_State *L, int t, size_t *n, const char *who)
{
    lua_getfield(L, t, "host");
    const char *h = NULL;
    if (!lua_isnil(L, -1)) {
        h = lua_isstring(L, -1) ? lua_tolstring(L, -1, n) : NULL;
        if (h == NULL || *n == 0 || memchr(h, '\r', *n) ||
            memchr(h, '\n', *n) || memchr(h, 0, *n))
            luaL_error(L, "%s: bad host", who);
    }
    lua_pop(L, 1);
    return h; /* kept alive by the table */
}

/* luring.cache{}'s stale serving and revalidation options (docs/API.md):
 * grace (default 10 s, Varnish's default_grace), keep (60 s), and
 * stale_if_error (0) in seconds, client_no_cache "ignore" (default, as
 * Varnish) or "revalidate" (as ATS when told to honour it: the request's
 * no-cache, max-age, min-fresh and max-stale, req_wants). */
struct stale_opts {
    int64_t grace_ms, keep_ms, sie_ms;
    bool client_revalidate;
};

static void opt_stale(lua_State *L, int t, struct stale_opts *so)
{
    so->grace_ms = (int64_t)(opt_range(L, t, "grace", 10, true, MAX_SECONDS) * 1000);
    so->keep_ms = (int64_t)(opt_range(L, t, "keep", 60, true, MAX_SECONDS) * 1000);
    so->sie_ms = (int64_t)(opt_range(L, t, "stale_if_error", 0, true,
                                     MAX_SECONDS) * 1000);
    lua_getfield(L, t, "client_no_cache");
    const char *v = lua_isnil(L, -1) ? "ignore"
                    : lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    if (strcmp(v, "ignore") != 0 && strcmp(v, "revalidate") != 0)
        luaL_error(L, "luring.cache: client_no_cache must be \"ignore\" or "
                      "\"revalidate\"");
    so->client_revalidate = v[0] == 'r';
    lua_pop(L, 1);
}

static void set_stale(struct cache *c, const struct stale_opts *so)
{
    if (c->grace_ms != so->grace_ms) /* see SET in l_cache_new */
        c->grace_ms = so->grace_ms;
    if (c->keep_ms != so->keep_ms)
        c->keep_ms = so->keep_ms;
    if (c->sie_ms != so->sie_ms)
        c->sie_ms = so->sie_ms;
    if (c->client_revalidate != so->client_revalidate)
        c->client_revalidate = so->client_revalidate;
}

static struct cache *check_cache(lua_State *L, int idx)
{
    struct cache **pc = luaL_checkudata(L, idx, CACHE_MT);
    if (*pc == NULL)
        luaL_error(L, "cache is not available while checking the script");
    return *pc;
}

/* ==== caches shared by the workers (issue 13) ====
 *
 * With --workers N > 1, luring.cache{name} names one cache for the whole
 * process: the first worker to run the declaration makes it (shared:
 * store/cache.h), the others bind it, each worker's reload reconfigures
 * it (the same settings, unless the script changed meanwhile), and the
 * last worker to end frees it. With one worker a cache is its own,
 * without locks. What stays per worker: the scratch cache of origin:fetch
 * and passes, the counters (summed by cache:stats() and /metrics) and the
 * script's admit/ttl/deliver hooks, run by the worker whose fill or
 * delivery it is. */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct reg_entry {
    struct cache *c;
    unsigned users;
} *reg;
static unsigned nreg;

static struct cache *shared_bind(const char *name, size_t max_bytes,
                                 size_t max_objects, int64_t ttl_ms,
                                 const char *policy, char *err, size_t errlen)
{
    if (store_nworkers() <= 1)
        return cache_new(name, max_bytes, max_objects, ttl_ms, policy, err,
                         errlen);
    struct cache *c = NULL;
    pthread_mutex_lock(&reg_mu);
    for (unsigned i = 0; i < nreg; i++)
        if (strcmp(reg[i].c->name, name) == 0) {
            c = reg[i].c;
            if (cache_configure(c, max_bytes, max_objects, ttl_ms, policy,
                                err, errlen) < 0) {
                c = NULL;
                goto out;
            }
            reg[i].users++;
            goto out;
        }
    struct reg_entry *r = realloc(reg, (nreg + 1) * sizeof *r);
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    reg = r;
    c = cache_new(name, max_bytes, max_objects, ttl_ms, policy, err, errlen);
    if (c && cache_share(c) < 0) {
        cache_free(c);
        c = NULL;
        snprintf(err, errlen, "out of memory");
    }
    if (c)
        reg[nreg++] = (struct reg_entry){ c, 1 };
out:
    pthread_mutex_unlock(&reg_mu);
    return c;
}

/* A worker ends: its binding of c goes (the last frees a shared cache). */
static void shared_release(struct cache *c)
{
    if (!c->shared) {
        cache_free(c);
        return;
    }
    pthread_mutex_lock(&reg_mu);
    for (unsigned i = 0; i < nreg; i++)
        if (reg[i].c == c) {
            if (--reg[i].users == 0) {
                cache_free(c);
                reg[i] = reg[--nreg];
            }
            break;
        }
    pthread_mutex_unlock(&reg_mu);
}

static int l_cache_new(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *name = opt_str(L, 1, "name");
    if (name == NULL)
        return luaL_error(L, "luring.cache: name is required");
    size_t max_bytes = (size_t)opt_num(L, 1, "max_bytes", 64 << 20, MAX_BYTES);
    size_t max_objects = (size_t)opt_num(L, 1, "max_objects", 1000000, MAX_COUNT);
    unsigned max_variants =
        (unsigned)opt_num(L, 1, "max_variants", CACHE_MAX_VARIANTS, 65535);
    lua_getfield(L, 1, "ttl");
    bool ttl_fn = lua_isfunction(L, -1);
    lua_pop(L, 1);
    int64_t ttl_ms = ttl_fn ? 60000 : (int64_t)(opt_num(L, 1, "ttl", 60, MAX_SECONDS) * 1000);
    int64_t hfm_ms =
        (int64_t)(opt_range(L, 1, "hit_for_miss", 120, true, MAX_SECONDS) * 1000);
    double h_frac = opt_range(L, 1, "heuristic_fraction", 0.1, true, 1.0);
    int64_t h_max_ms =
        (int64_t)(opt_range(L, 1, "heuristic_max", 86400, true, MAX_SECONDS) * 1000);
    bool lk_cookie = opt_mode(L, 1, "cookie", false, "luring.cache");
    bool lk_auth = opt_mode(L, 1, "authorization", false, "luring.cache");
    struct stale_opts so;
    opt_stale(L, 1, &so);
    size_t hl = 0;
    const char *host = opt_host(L, 1, &hl, "luring.cache");
    if (host && hl >= sizeof((struct cache *)NULL)->fill_host)
        return luaL_error(L, "luring.cache: host too long");
    set_hooks(L, name);
    lua_getfield(L, 1, "deliver");
    bool deliver = lua_isfunction(L, -1);
    lua_pop(L, 1);
    struct cache **pc = lua_newuserdata(L, sizeof *pc);
    *pc = NULL;
    luaL_getmetatable(L, CACHE_MT);
    lua_setmetatable(L, -2);
    const char *policy = opt_str(L, 1, "policy");
    if (policy == NULL)
        policy = "lru";
    char err[512];
    struct lrt *w = lrt_current();
    if (w == NULL) { /* start-up check: nothing to own, but check policy */
        struct policy *p = policy_open(policy, max_bytes, err, sizeof err);
        if (p == NULL)
            return luaL_error(L, "luring.cache %s: %s", name, err);
        policy_free(p);
        return 1;
    }
    struct cache *c = NULL;
    for (unsigned i = 0; i < w->ncaches && c == NULL; i++)
        if (strcmp(w->caches[i]->name, name) == 0) /* bound by name */
            c = w->caches[i];
    if (c == NULL) {
        struct cache **cs = realloc(w->caches, (w->ncaches + 1) * sizeof *cs);
        if (cs == NULL)
            return luaL_error(L, "out of memory");
        w->caches = cs;
        c = shared_bind(name, max_bytes, max_objects, ttl_ms, policy, err,
                        sizeof err);
        if (c == NULL)
            return luaL_error(L, "luring.cache %s: %s", name, err);
        w->caches[w->ncaches++] = c;
    } else if (cache_configure(c, max_bytes, max_objects, ttl_ms, policy,
                               err, sizeof err) < 0) {
        return luaL_error(L, "luring.cache %s: %s", name, err);
    }
    /* every worker's script says the same (a reload may not): written
     * only when it differs, under the lock, so that a worker binding a
     * shared cache does not race the ones already reading it */
    cache_lock(c);
#define SET(f, v) do { if (c->f != (v)) c->f = (v); } while (0)
    SET(decide, lua_decide);
    SET(hfm_ms, hfm_ms);
    SET(max_variants, max_variants);
    SET(heuristic_fraction, h_frac);
    SET(heuristic_max_ms, h_max_ms);
    SET(lookup_cookie, lk_cookie);
    SET(lookup_auth, lk_auth);
    SET(deliver_hook, deliver);
#undef SET
    set_stale(c, &so);
    if (strcmp(c->fill_host, host ? host : "") != 0)
        snprintf(c->fill_host, sizeof c->fill_host, "%s", host ? host : "");
    linval_configure(L, c, 1);
    cache_unlock(c);
    *pc = c;
    return 1;
}

static struct req *check_active_req(lua_State *L, int idx)
{
    struct req *r = lrt_check_req(L, idx);
    struct lrt *w = lrt_current();
    if (w == NULL || w->cur != r || r->co != L)
        luaL_error(L, "fetch: only from the request's own handler "
                      "(not the main chunk or a coroutine it made)");
    return r;
}

static struct origin *check_origin(lua_State *L, int idx)
{
    struct origin **po = luaL_checkudata(L, idx, ORIGIN_MT);
    if (*po == NULL)
        luaL_error(L, "origin is not available while checking the script");
    return *po;
}

/* check_origin for a C closure whose upvalue 1 is the origin metatable
 * (luring.proxy): a compare instead of looking the metatable up by name. */
static struct origin *check_origin_up(lua_State *L, int idx)
{
    struct origin **po = lua_touserdata(L, idx);
    if (po == NULL || !lua_getmetatable(L, idx))
        return check_origin(L, idx); /* raises */
    bool same = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (!same || *po == NULL)
        return check_origin(L, idx); /* raises */
    return *po;
}

/* ==== operations a handler parks on (core/req.h) ==== */

/* cache:fetch: subscribed to an object (or released, about to fetch on its
 * own); resumed with true once the response is queued, nil, "truncated"
 * when it broke after the head. */
static bool sub_cancel(struct req *r)
{
    serve_unsubscribe(r); /* a fill it started goes on for the others */
    return true;
}

static void fetch_resume(struct req *r)
{
    if (r->broken) {
        lua_pushnil(r->co);
        lua_pushliteral(r->co, "truncated");
        lrt_continue(r, 2);
    } else {
        lua_pushboolean(r->co, 1);
        lrt_continue(r, 1);
    }
}

static const struct req_op op_fetch = {
    "cache", sub_cancel, fetch_resume, serve_pump,
};

/* origin:fetch: waits for the whole object, then returns status, headers
 * and body. */
static bool collect_cancel(struct req *r)
{
    serve_unsubscribe(r);
    if (r->collected) {
        cache_obj_unref(r->collected);
        r->collected = NULL;
    }
    return true;
}

static void collect_resume(struct req *r)
{
    lrt_continue(r, lcache_push_collected(r->co, r));
}

static const struct req_op op_collect = {
    "origin", collect_cancel, collect_resume, NULL,
};

/* The end of a lookup made under c's lock (lookup, fetch_alone): unlock,
 * then, for a shared cache, queue the first bytes of what r joined or
 * found, so that a deliver hook's Lua never runs under a cache lock. */
static void unlock_pump(struct cache *c, struct req *r)
{
    cache_unlock(c);
    if (c->shared && r->obj)
        serve_pump(r);
}

/* Yield until the subscription ends, unless it already has. */
static int wait_sub(lua_State *L, struct req *r)
{
    if (r->m.c == NULL) { /* the client left while it started */
        serve_unsubscribe(r);
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    if (r->obj) {
        req_park(r, &op_fetch);
        return lua_yield(L, 0);
    }
    if (r->broken) {
        lua_pushnil(L);
        lua_pushliteral(L, "truncated");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static bool has_authorization(const struct req *r)
{
    size_t n;
    return h1_header(&r->m, "authorization", 13, &n) != NULL;
}

/* The request a fill of `path` for r sends (core/pass.h): Host `host`
 * (hl bytes) or, when NULL, the client's; Via and X-Forwarded-For/-Proto
 * added, as for passes. */
static void fill_opts(struct pass_opts *po, const char *path, size_t plen,
                      const char *host, size_t hl)
{
    *po = (struct pass_opts){ .target = path, .target_len = plen,
                              .host = host, .host_len = hl,
                              .via = true, .xff = true, .xfp = true };
}

/* r fetches key from origin o into an object of its own, not indexed until
 * its head shows it storable (after a hit-for-miss marker, released from
 * a fill that was not shareable or whose Vary does not match r, or a fill
 * in flight whose Vary does not match r): nobody waits for it, it waits
 * for nobody. Never indexed when `store` is false (r's Cache-Control:
 * no-store). */
static int fetch_alone(struct req *r, struct cache *c, struct origin *o,
                       const char *key, size_t klen, const char *path,
                       size_t plen, const char *host, size_t hl, bool store)
{
    struct cache_obj *obj = cache_obj_new(c, key, klen);
    if (obj == NULL)
        return -1;
    obj->index_late = store;
    obj->req_auth = has_authorization(r);
    serve_subscribe(r, obj, "MISS", true);
    struct pass_opts po;
    fill_opts(&po, path, plen, host, hl);
    pass_fill(r, o, obj, &po);
    cache_obj_unref(obj); /* the subscription (or the fill) holds it */
    return 0;
}

/* r joins a fill whose head is unknown: keep what it takes to fetch on
 * its own if released (lcache_refetch; a refetch's key is in fetch_kp
 * already). 0, or -1 when out of memory. */
static int keep_refetch(struct req *r, struct cache *c, struct origin *o,
                        const char *key, size_t klen, const char *path,
                        size_t plen, const char *host, size_t hl)
{
    if (key == r->fetch_kp.data)
        return 0; /* a refetch's lookup: its key is in fetch_kp already */
    r->fetch_kp.len = 0;
    if (buf_append(&r->fetch_kp, key, klen) < 0 ||
        buf_append(&r->fetch_kp, path, plen) < 0 ||
        (host && buf_append(&r->fetch_kp, host, hl) < 0))
        return -1;
    r->fetch_klen = (uint32_t)klen;
    r->fetch_plen = (uint32_t)plen;
    r->fetch_cache = c;
    r->fetch_origin = o;
    return 0;
}

/* The CC_REQ_* flags of r's Cache-Control (RFC 9111 §5.2.1), or of its
 * Pragma: no-cache when it has none (§5.4), with its max-age, max-stale
 * and min-fresh in *q. Only the first Cache-Control field counts. Read
 * off the fresh-hit path unless client_no_cache is "revalidate". */
static unsigned req_cc_q(const struct req *r, struct cc_req *q)
{
    size_t n;
    const char *v = h1_header(&r->m, "cache-control", 13, &n);
    if (v)
        return cc_request(v, n, q);
    q->max_age = q->max_stale = q->min_fresh = -1;
    v = h1_header(&r->m, "pragma", 6, &n);
    q->flags = v && n == 8 && strncasecmp(v, "no-cache", 8) == 0
                   ? CC_REQ_NO_CACHE : 0;
    return q->flags;
}

static unsigned req_cc(const struct req *r)
{
    struct cc_req q;
    return req_cc_q(r, &q);
}

/* What r's freshness directives (§5.2.1.1-4) make of stored response s,
 * when the cache honours them (client_no_cache = "revalidate"). */
enum req_want {
    WANT_DEFAULT,  /* nothing said: the cache's rules (hit, grace, ...) */
    WANT_USE,      /* s as it is: fresh enough, or stale within max-stale */
    WANT_VALIDATE, /* only after the origin validated it */
};

/* s is complete, fr says how fresh (cache_select), now in monotonic ms.
 * A fresh s goes unless no-cache, or older than max-age (its Age, in
 * whole seconds as sent, above N), or fresh for less than min-fresh from
 * now. A stale s goes with max-stale when stale by at most its N
 * seconds, s allows it (not no_stale: must-revalidate and its family,
 * §4.2.4, §5.2.2.2) and max-age and min-fresh do not refuse it (a stale
 * response is never min-fresh); any of the four directives otherwise
 * asks for validation: §5.2.1.1 "unless the max-stale request directive
 * is also present, the client does not wish to receive a stale
 * response", which grace would give it. */
static __attribute__((noinline)) enum req_want
req_wants(const struct req *r, const struct cache_obj *s, enum cache_fresh fr,
          int64_t now)
{
    struct cc_req q;
    unsigned cc = req_cc_q(r, &q);
    if (cc & CC_REQ_NO_CACHE)
        return WANT_VALIDATE;
    bool age_ok = q.max_age < 0 || (now - s->born) / 1000 <= q.max_age;
    if (fr == CACHE_FRESH)
        return age_ok && (q.min_fresh < 0 ||
                          s->expires - now >= q.min_fresh * 1000)
                   ? WANT_USE : WANT_VALIDATE;
    if (q.max_stale >= 0 && !s->no_stale && age_ok && q.min_fresh < 0 &&
        now - s->expires <= q.max_stale * 1000)
        return WANT_USE;
    return q.max_age >= 0 || q.max_stale >= 0 || q.min_fresh >= 0
               ? WANT_VALIDATE : WANT_DEFAULT;
}

/* A refresh of stale object s (RFC 9111 §4.3): a fill of s's key, indexed
 * once its head shows it storable (replacing s), linked to s so that one
 * runs at a time and its waiters may get s instead of an error when s is
 * within its stale-if-error window now (RFC 5861 §4; decided when it
 * starts). Not started yet: refresh_go. NULL when out of memory. */
static struct cache_obj *refresh_new(struct req *r, struct cache *c,
                                     struct cache_obj *s, int64_t now)
{
    struct cache_obj *n = cache_obj_new(c, s->key, s->klen);
    if (n == NULL)
        return NULL;
    n->index_late = true;
    n->req_auth = has_authorization(r);
    n->reval_of = s;
    cache_obj_ref(s);
    s->refresh = n;
    n->fallback = s->sie_ms > 0 && now - s->expires < s->sie_ms;
    CACHE_COUNT(c, refreshes);
    return n;
}

/* Start refresh n built from r's request (core/pass.h: the fill does not
 * refer to r afterwards, so a background refresh outlives it): a
 * conditional GET with s's validators when it has any (RFC 9111 §4.3.1;
 * not for a file origin, which is read again). */
static void refresh_go(struct req *r, struct origin *o, struct cache_obj *n,
                       const char *path, size_t plen, const char *host,
                       size_t hl)
{
    struct pass_opts po;
    fill_opts(&po, path, plen, host, hl);
    if (o->kind == ORIGIN_HTTP)
        n->cond_sent = fetch_validators(n->reval_of, &po.inm, &po.inm_len,
                                        &po.ims, &po.ims_len);
    if (!n->cond_sent)
        po.inm = po.ims = NULL;
    pass_fill(r, o, n, &po);
}

/* Serve stale object s to r at once (X-Cache: STALE, counted in stale)
 * and start its background refresh unless one runs (the refresh outlives
 * r). */
static void serve_stale(struct req *r, struct cache *c, struct origin *o,
                        struct cache_obj *s, const char *path, size_t plen,
                        const char *host, size_t hl, int64_t now)
{
    CACHE_COUNT(c, stale);
    cache_obj_ref(s); /* whatever the refresh does to the index */
    struct cache_obj *n = s->refresh ? NULL : refresh_new(r, c, s, now);
    if (n) { /* else one runs, or out of memory: a later one tries */
        refresh_go(r, o, n, path, plen, host, hl);
        cache_obj_unref(n); /* the fill holds it */
    }
    serve_subscribe(r, s, "STALE", false);
    cache_obj_unref(s);
}

/* r found complete object s of its variant, stale (fr), or fresh but the
 * client asked for validation (RFC 9111 §5.2.1, client_no_cache =
 * "revalidate": req_wants). Within the request's max-stale (§5.2.1.2,
 * when honoured), or within grace (§4.2.4, RFC 5861 §3: stale-while-
 * revalidate; Varnish's grace) when the request says nothing against
 * it: served at once (X-Cache: STALE), and a background refresh starts
 * unless one runs. Past grace, or to validate: r waits for a refresh
 * (joins the one running, else starts it: the conditional request of
 * §4.3.1), which may freshen s (304), replace it (200) or fail (then s
 * when stale-if-error allows). only-if-cached (§5.2.1.7) gets a 504
 * instead unless max-stale allows s: luring serves nothing stale unasked.
 * 0, or -1 when out of memory. */
/* noinline, cold: lookup() stays small enough to be inlined in
 * cache:fetch (the hit path: scripts/instr hit-1k) */
static __attribute__((noinline, cold)) int
fetch_stale(struct req *r, struct cache *c, struct origin *o,
            struct cache_obj *s, enum cache_fresh fr, const char *key,
            size_t klen, const char *path, size_t plen, const char *host,
            size_t hl, int64_t now)
{
    /* fresh here: only when the request asked for validation */
    enum req_want want = fr == CACHE_FRESH ? WANT_VALIDATE
                         : c->client_revalidate ? req_wants(r, s, fr, now)
                                                : WANT_DEFAULT;
    if (want == WANT_USE) { /* max-stale */
        serve_stale(r, c, o, s, path, plen, host, hl, now);
        return 0;
    }
    if (req_cc(r) & CC_REQ_ONLY_IF_CACHED) {
        serve_error(r, 504);
        return 0;
    }
    if (fr == CACHE_GRACE && want == WANT_DEFAULT) {
        serve_stale(r, c, o, s, path, plen, host, hl, now);
        return 0;
    }
    if (s->refresh) { /* one refresh at a time: wait for it */
        CACHE_COUNT(c, coalesced);
        if (!s->refresh->head_ready &&
            keep_refetch(r, c, o, key, klen, path, plen, host, hl) < 0)
            return -1;
        serve_subscribe(r, s->refresh, "COALESCED", false);
        return 0;
    }
    struct cache_obj *n = refresh_new(r, c, s, now);
    if (n == NULL)
        return -1;
    CACHE_COUNT(c, misses);
    serve_subscribe(r, n, "MISS", true);
    refresh_go(r, o, n, path, plen, host, hl);
    cache_obj_unref(n); /* the subscription (or the fill) holds it */
    return 0;
}

/* r looks key up and is subscribed to what it finds (store/cache.h
 * cache_select): a hit-for-miss marker (its own fetch), the newest stored
 * response of its variant (HIT, RFC 9111 §4.1), a fill in flight of its
 * variant or whose head is unknown (COALESCED; released when that head
 * says another variant or not shareable), else a fill of its own (MISS),
 * indexed at once so that requests of its variant join it, in front of
 * the key's other variants. 0, or -1 when out of memory. */
static inline __attribute__((always_inline)) int /* see fetch_stale */
lookup(struct req *r, struct cache *c, struct origin *o,
                  const char *key, size_t klen, const char *path,
                  size_t plen, const char *host, size_t hl, int64_t now)
{
    enum cache_fresh fr;
    struct cache_obj *obj =
        cache_select(c, key, klen, now, vary_match_req, &r->m, &fr);
    if (obj && obj->hfm) {
        CACHE_COUNT(c, hit_for_miss);
        return fetch_alone(r, c, o, key, klen, path, plen, host, hl,
                           !(req_cc(r) & CC_REQ_NO_STORE));
    } else if (obj && obj->state == OBJ_FILLING) {
        CACHE_COUNT(c, coalesced);
        /* the response may turn out not shareable, or not r's variant:
         * keep what it takes to fetch on our own (lcache_refetch) */
        if (!obj->head_ready &&
            keep_refetch(r, c, o, key, klen, path, plen, host, hl) < 0)
            return -1;
        serve_subscribe(r, obj, "COALESCED", false);
    } else if (obj && fr == CACHE_FRESH &&
               !(c->client_revalidate &&
                 req_wants(r, obj, fr, now) == WANT_VALIDATE)) {
        CACHE_COUNT(c, hits);
        serve_subscribe(r, obj, "HIT", false);
    } else if ((req_cc(r) & (CC_REQ_NO_STORE | CC_REQ_ONLY_IF_CACHED)) ==
               CC_REQ_NO_STORE) {
        /* RFC 9111 §5.2.1.5: no response to r is stored (nor a refresh
         * started for it); a fresh stored one may still be served */
        CACHE_COUNT(c, misses);
        return fetch_alone(r, c, o, key, klen, path, plen, host, hl, false);
    } else if (obj) { /* stale, or to revalidate */
        return fetch_stale(r, c, o, obj, fr, key, klen, path, plen, host, hl,
                           now);
    } else if (req_cc(r) & CC_REQ_ONLY_IF_CACHED) { /* RFC 9111 §5.2.1.7 */
        serve_error(r, 504);
    } else { /* nothing stored for r's variant: one more variant */
        CACHE_COUNT(c, misses);
        obj = cache_insert(c, key, klen);
        if (obj == NULL)
            return -1;
        obj->req_auth = has_authorization(r);
        serve_subscribe(r, obj, "MISS", true);
        struct pass_opts po;
        fill_opts(&po, path, plen, host, hl);
        pass_fill(r, o, obj, &po);
    }
    return 0;
}

#define scratch_cache lcache_scratch

/* Whether cache:fetch passes r instead of looking it up (RFC 9111 §3, and
 * Varnish's builtin vcl_recv): only GET and HEAD are looked up or stored;
 * a request with Cookie or Authorization passes unless the cache (or this
 * call) says "lookup". A passed request reaches the origin as luring.proxy
 * sends it, credentials and body included, and its response is never
 * stored nor shared. */
static bool must_pass(const struct req *r, bool lk_cookie, bool lk_auth)
{
    size_t n;
    if (r->m.method != H1_M_GET && r->m.method != H1_M_HEAD)
        return true;
    if (!lk_cookie && h1_header(&r->m, "cookie", 6, &n) != NULL)
        return true;
    return !lk_auth && has_authorization(r);
}

/* path goes into an origin request line as its target: origin-form
 * (RFC 9112 §3.2.1), visible ASCII only. A CR, LF or SP there would let a
 * path the script built from client input (a decoded %0d%0a) end the
 * request line early and add fields or a whole second request on the
 * origin connection (request splitting; its response then answers
 * whoever takes the pooled connection next). */
static void check_target(lua_State *L, const char *path, size_t plen,
                         const char *who)
{
    if (!target_is_visible(path, plen))
        luaL_error(L, "%s: the path must be visible ASCII", who);
    if (plen == 0 || path[0] != '/')
        luaL_error(L, "%s: the path must start with /", who);
}

static int l_cache_fetch(lua_State *L)
{
    struct cache *c = check_cache(L, 1);
    struct req *r = check_active_req(L, 2);
    size_t klen, plen;
    const char *key = luaL_checklstring(L, 3, &klen);
    struct origin *o = check_origin(L, 4);
    const char *path = key;
    plen = klen;
    bool lk_cookie = c->lookup_cookie, lk_auth = c->lookup_auth;
    const char *host = c->fill_host[0] ? c->fill_host : NULL;
    size_t hl = host ? strlen(host) : 0;
    int opts = 0;
    if (lua_istable(L, 5)) { /* { path =, cookie =, authorization =, host = } */
        opts = 5;
        lua_getfield(L, 5, "path");
        if (!lua_isnil(L, -1))
            path = luaL_checklstring(L, -1, &plen); /* the table holds it */
        lua_pop(L, 1);
        lk_cookie = opt_mode(L, 5, "cookie", lk_cookie, "fetch");
        lk_auth = opt_mode(L, 5, "authorization", lk_auth, "fetch");
        size_t n;
        const char *h = opt_host(L, 5, &n, "fetch");
        if (h) {
            host = h;
            hl = n;
        }
    } else {
        path = luaL_optlstring(L, 5, key, &plen);
    }
    if (r->m.head_sent)
        return luaL_error(L, "fetch: the response has already started");
    r->deliver_hook = false;
    if (opts || c->deliver_hook) /* nothing to look up on the common path */
        set_deliver(L, r, 2, c, opts, "fetch");
    if (r->m.c == NULL) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    struct lrt *w = lrt_current();
    if (o->kind == ORIGIN_HTTP) /* passes and fills alike */
        check_target(L, path, plen, "fetch");
    if (o->kind != ORIGIN_HTTP) { /* a file origin only reads: */
        lk_cookie = lk_auth = true; /* no credentials to forward */
        if (must_pass(r, true, true)) {
            serve_error(r, 405);
            lua_pushboolean(L, 1);
            return 1;
        }
    }
    if (must_pass(r, lk_cookie, lk_auth)) {
        if (r->m.method == H1_M_CONNECT) { /* a tunnel: not supported */
            serve_error(r, 501);
            lua_pushboolean(L, 1);
            return 1;
        }
        CACHE_COUNT(c, passes);
        struct pass_opts po;
        fill_opts(&po, path, plen, host, hl);
        int e = pass_start(r, o, scratch_cache(L, w), &po);
        if (e == -2)
            return luaL_error(L, "fetch: the request body was streamed "
                                 "already");
        if (e < 0)
            return luaL_error(L, "fetch: out of memory");
        r->xcache = "PASS";
        /* an unsafe method's success invalidates (RFC 9111 §4.4) */
        if (linval_unsafe(r) && linval_watch(r, c, key, klen, path, plen) < 0)
            log_err("cache %s: out of memory: %s not invalidated", c->name,
                    key);
        return wait_sub(L, r);
    }
    /* a shared cache: what r finds and what it does about it (join, or
     * insert the fill) under the lock; its first bytes are queued after
     * (a deliver hook's Lua runs with no lock held) */
    cache_lock(c);
    int rc = lookup(r, c, o, key, klen, path, plen, host, hl,
                    loop_now(w->loop));
    unlock_pump(c, r);
    if (rc < 0)
        return luaL_error(L, "fetch: out of memory");
    return wait_sub(L, r);
}

void lcache_refetch(struct req *r)
{
    r->released = false;
    if (r->m.c == NULL || !req_parked_on(r, &op_fetch))
        return; /* gone meanwhile (conn_close drops parked requests) */
    const char *kp = r->fetch_kp.data;
    size_t klen = r->fetch_klen, plen = r->fetch_plen;
    size_t hl = r->fetch_kp.len - klen - plen; /* 0: the client's Host */
    const char *host = hl ? kp + klen + plen : NULL;
    /* released from another variant's fill: looked up again, so that the
     * requests of one variant share one fill (and find a variant stored
     * meanwhile); from a response not shareable: a fetch of its own, as
     * the hit-for-miss marker it left says */
    struct cache *c = r->fetch_cache;
    cache_lock(c);
    int rc = r->relookup
                 ? lookup(r, c, r->fetch_origin, kp, klen, kp + klen, plen,
                          host, hl, loop_now(r->m.srv->loop))
                 : fetch_alone(r, c, r->fetch_origin, kp, klen, kp + klen,
                               plen, host, hl, !(req_cc(r) & CC_REQ_NO_STORE));
    unlock_pump(c, r);
    if (rc < 0) {
        serve_error(r, 503);
        req_wake(r);
    }
}

static int l_cache_stats(lua_State *L)
{
    struct cache *c = check_cache(L, 1);
    struct cache_stats st; /* every worker's, for a shared cache */
    cache_stats_sum(c, &st);
    size_t bytes, objects, held, max_bytes;
    cache_usage(c, &bytes, &objects, &held, &max_bytes);
    /* the settings a reload on another worker may be changing: read
     * under the cache's lock, as luring.cache{} writes them */
    cache_lock(c);
    int64_t grace_ms = c->grace_ms, keep_ms = c->keep_ms, sie_ms = c->sie_ms,
            hfm_ms = c->hfm_ms;
    size_t max_objects = c->max_objects;
    unsigned max_variants = c->max_variants;
    cache_unlock(c);
    lua_createtable(L, 0, 30);
#define F(k, v) (lua_pushnumber(L, (lua_Number)(v)), lua_setfield(L, -2, k))
    F("hits", st.hits);
    F("hit_for_miss", st.hit_for_miss);
    F("released", st.released);
    F("passes", st.passes);
    F("not_modified", st.not_modified);
    F("partial", st.partial);
    F("misses", st.misses);
    F("coalesced", st.coalesced);
    F("fills", st.fills);
    F("fill_errors", st.fill_errors);
    F("evictions", st.evictions);
    F("expired", st.expired);
    F("uncacheable", st.uncacheable);
    F("stale", st.stale);
    F("refreshes", st.refreshes);
    F("revalidated", st.revalidated);
    F("locks", st.locks);
    F("lock_waits", st.lock_waits);
    F("grace", (lua_Number)grace_ms / 1000);
    F("keep", (lua_Number)keep_ms / 1000);
    F("stale_if_error", (lua_Number)sie_ms / 1000);
    F("bytes", bytes);
    F("objects", objects);
    F("held_bytes", held);
    F("max_bytes", max_bytes);
    F("max_objects", max_objects);
    F("max_variants", max_variants);
    F("hit_for_miss_ttl", (lua_Number)hfm_ms / 1000);
#undef F
    lua_pushstring(L, c->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, c->policy);
    lua_setfield(L, -2, "policy");
    return 1;
}

/* ==== origins ==== */

static int l_origin_new(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *name = opt_str(L, 1, "name");
    const char *url = opt_str(L, 1, "url");
    const char *root = opt_str(L, 1, "root");
    if (name == NULL)
        return luaL_error(L, "luring.origin: name is required");
    if ((url == NULL) == (root == NULL))
        return luaL_error(L, "luring.origin: give url (http://host:port) "
                             "or root (a directory), not both");
    struct origin tmp;
    memset(&tmp, 0, sizeof tmp);
    snprintf(tmp.name, sizeof tmp.name, "%s", name);
    char err[256];
    if (url && origin_init_http(&tmp, url, err, sizeof err) < 0)
        return luaL_error(L, "luring.origin: %s", err);
    if (root) {
        tmp.kind = ORIGIN_FILE;
        if (strlen(root) >= sizeof tmp.root)
            return luaL_error(L, "luring.origin: root too long");
        snprintf(tmp.root, sizeof tmp.root, "%s", root);
        size_t n = strlen(tmp.root); /* "/srv/" + "/x" -> "/srv/x" */
        while (n > 1 && tmp.root[n - 1] == '/')
            tmp.root[--n] = 0;
    }
    tmp.connect_timeout_ms = (int64_t)(opt_num(L, 1, "connect_timeout", 5, MAX_SECONDS) * 1000);
    tmp.first_byte_timeout_ms = (int64_t)(opt_num(L, 1, "first_byte_timeout", 30, MAX_SECONDS) * 1000);
    tmp.idle_timeout_ms = (int64_t)(opt_num(L, 1, "idle_timeout", 30, MAX_SECONDS) * 1000);
    tmp.keepalive_ms = (int64_t)(opt_num(L, 1, "keepalive_timeout", 60, MAX_SECONDS) * 1000);
    tmp.keepalive_max = (unsigned)opt_num(L, 1, "keepalive", 32, 65535);

    struct origin **po = lua_newuserdata(L, sizeof *po);
    *po = NULL;
    luaL_getmetatable(L, ORIGIN_MT);
    lua_setmetatable(L, -2);
    struct lrt *w = lrt_current();
    if (w == NULL)
        return 1;
    struct origin *o = NULL;
    for (unsigned i = 0; i < w->norigins; i++)
        if (strcmp(w->origins[i]->name, name) == 0)
            o = w->origins[i]; /* bound by name: the pool survives */
    if (o == NULL) {
        struct origin **os = realloc(w->origins, (w->norigins + 1) * sizeof *os);
        if (os == NULL || (o = calloc(1, sizeof *o)) == NULL)
            return luaL_error(L, "out of memory");
        w->origins = os;
        w->origins[w->norigins++] = o;
        *o = tmp;
    } else {
        struct upconn *idle = o->idle;
        unsigned nidle = o->nidle;
        struct origin_stats st = o->st;
        *o = tmp;
        o->idle = idle;
        o->nidle = nidle;
        o->st = st;
    }
    o->us = w->up;
    *po = o;
    return 1;
}

static int l_origin_fetch(lua_State *L)
{
    struct origin *o = check_origin(L, 1);
    size_t plen;
    const char *path = luaL_checklstring(L, 2, &plen);
    if (o->kind == ORIGIN_HTTP)
        check_target(L, path, plen, "origin:fetch");
    struct lrt *w = lrt_current();
    struct req *r = w ? w->cur : NULL;
    if (r == NULL || r->co != L)
        return luaL_error(L, "origin:fetch: only inside a request handler");
    struct cache_obj *obj = cache_obj_new(scratch_cache(L, w), path, plen);
    if (obj == NULL)
        return luaL_error(L, "out of memory");
    obj->cacheable = false;
    r->collect = true;
    serve_subscribe(r, obj, NULL, true);
    cache_obj_unref(obj); /* the subscription holds it now */
    origin_fetch(o, path, plen, obj);
    if (r->obj) {
        req_park(r, &op_collect);
        return lua_yield(L, 0);
    }
    return lcache_push_collected(L, r);
}

/* The worker's cache of objects nobody looks up (origin:fetch results,
 * pass-through responses), made on first use. */
struct cache *lcache_scratch(lua_State *L, struct lrt *w)
{
    char err[256];
    if (w->scratch == NULL &&
        (w->scratch = cache_new("(origin:fetch)", SIZE_MAX, SIZE_MAX, 0,
                                "fifo", err, sizeof err)) == NULL)
        luaL_error(L, "%s", err);
    w->scratch->scratch = true;
    return w->scratch;
}

/* opts[k] as a boolean, def when absent. */
static bool opt_bool(lua_State *L, int t, const char *k, bool def)
{
    if (lua_isnoneornil(L, t))
        return def;
    lua_getfield(L, t, k);
    bool v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* luring.proxy(req, origin [, opts]): the request goes to the origin as it
 * came (core/pass.h) and the response comes back as it arrives, never
 * cached. Yields; true once the response is queued, nil, "truncated" when
 * it broke after its head (the connection then closes). opts: host (the
 * Host sent), via, x_forwarded_for, x_forwarded_proto (false: not added),
 * forwarded (true: an RFC 7239 element appended). */
static int l_proxy(lua_State *L)
{
    struct req *r = check_active_req(L, 1);
    struct origin *o = check_origin_up(L, 2);
    int opts = lua_isnoneornil(L, 3) ? 0 : 3;
    struct pass_opts po = {.via = true, .xff = true, .xfp = true};
    if (opts) {
        luaL_checktype(L, 3, LUA_TTABLE);
        po.via = opt_bool(L, 3, "via", true);
        po.xff = opt_bool(L, 3, "x_forwarded_for", true);
        po.xfp = opt_bool(L, 3, "x_forwarded_proto", true);
        po.fwd = opt_bool(L, 3, "forwarded", false);
        lua_getfield(L, 3, "host");
        if (!lua_isnil(L, -1)) {
            po.host = luaL_checklstring(L, -1, &po.host_len);
            if (po.host_len == 0 || memchr(po.host, '\r', po.host_len) ||
                memchr(po.host, '\n', po.host_len) ||
                memchr(po.host, 0, po.host_len))
                return luaL_error(L, "luring.proxy: bad host");
        }
        /* left on the stack: the table keeps it alive anyway */
    }
    if (o->kind != ORIGIN_HTTP)
        return luaL_error(L, "luring.proxy: origin %s is not an http:// "
                             "origin", o->name);
    set_deliver(L, r, 1, NULL, opts, "luring.proxy");
    if (r->m.head_sent)
        return luaL_error(L, "luring.proxy: the response has already "
                             "started");
    if (r->m.c == NULL) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    if (r->m.method == H1_M_CONNECT) { /* a tunnel: not supported */
        serve_error(r, 501);
        lua_pushboolean(L, 1);
        return 1;
    }
    struct cache *scratch = scratch_cache(L, lrt_current());
    int e = pass_start(r, o, scratch, &po);
    if (e == -2)
        return luaL_error(L, "luring.proxy: the request body was streamed "
                             "already");
    if (e < 0)
        return luaL_error(L, "luring.proxy: out of memory");
    return wait_sub(L, r);
}

/* luring.core._peer(req) -> address, port | nil: the client's (init.lua
 * makes them req.remote_addr, req.remote_port). */
static int l_peer(lua_State *L)
{
    struct req *r = lrt_check_req(L, 1);
    char addr[64];
    int port;
    if (h1_peer(&r->m, addr, sizeof addr, &port) < 0)
        return 0;
    lua_pushstring(L, addr);
    lua_pushinteger(L, port);
    return 2;
}

static int l_origin_stats(lua_State *L)
{
    struct origin *o = check_origin(L, 1);
    lua_createtable(L, 0, 6);
#define F(k, v) (lua_pushnumber(L, (lua_Number)(v)), lua_setfield(L, -2, k))
    F("requests", o->st.requests);
    F("errors", o->st.errors);
    F("timeouts", o->st.timeouts);
    F("connects", o->st.connects);
    F("reused", o->st.reused);
    F("idle", o->nidle);
#undef F
    return 1;
}

/* After an origin:fetch subscription ended: status, headers, body, or
 * nil, error. The object was kept by r->collected. */
int lcache_push_collected(lua_State *L, struct req *r)
{
    struct cache_obj *o = r->collected;
    r->collected = NULL;
    r->collect = false;
    if (o == NULL || o->state != OBJ_COMPLETE) {
        lua_pushnil(L);
        lua_pushfstring(L, "origin failed (%d)", o ? o->status : 502);
        if (o)
            cache_obj_unref(o);
        return 2;
    }
    lua_pushinteger(L, o->status);
    push_hdrs(L, o);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t off = 0; off < o->len;) {
        size_t n;
        const char *q = cache_obj_at(o, off, &n);
        luaL_addlstring(&b, q, n);
        off += n;
    }
    luaL_pushresult(&b);
    cache_obj_unref(o);
    return 3;
}

/* ==== registration ==== */

void lcache_open(lua_State *L)
{
    static const luaL_Reg cache_m[] = {
        {"fetch", l_cache_fetch},
        {"stats", l_cache_stats},
        {NULL, NULL},
    };
    static const luaL_Reg origin_m[] = {
        {"fetch", l_origin_fetch},
        {"stats", l_origin_stats},
        {NULL, NULL},
    };
    luaL_newmetatable(L, CACHE_MT);
    lua_newtable(L);
    luaL_register(L, NULL, cache_m);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newmetatable(L, ORIGIN_MT);
    lua_newtable(L);
    luaL_register(L, NULL, origin_m);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    /* luring.core.cache / .origin: the table is on the stack top */
    lua_pushcfunction(L, l_cache_new);
    lua_setfield(L, -2, "cache");
    lua_pushcfunction(L, l_origin_new);
    lua_setfield(L, -2, "origin");
    luaL_getmetatable(L, ORIGIN_MT); /* l_proxy's check_origin_up */
    lua_pushcclosure(L, l_proxy, 1);
    lua_setfield(L, -2, "proxy");
    lua_pushcfunction(L, l_peer);
    lua_setfield(L, -2, "_peer");
}

void lcache_cleanup(struct lrt *w)
{
    lorigin_cleanup(w); /* readers hold scratch objects */
    for (unsigned i = 0; i < w->ncaches; i++)
        shared_release(w->caches[i]);
    free(w->caches);
    cache_free(w->scratch);
    for (unsigned i = 0; i < w->norigins; i++)
        free(w->origins[i]);
    free(w->origins);
}
