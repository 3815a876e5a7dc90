/* rt.c - LuaJIT embedding: loads the script, runs each request's
 * handler as a coroutine (pooled threads), and implements the yielding C
 * bindings (luring.sleep, req:write). Bindings are leaves: they return at
 * once or `return lua_yield(L, 0)`; the worker resumes the coroutine when
 * the io_uring completion arrives. */
#define _GNU_SOURCE
#include <ctype.h>
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "lua/rt.h"

#include "base/log.h"
#include "core/deliver.h"
#include "core/req.h"
#include "http/fields.h"
#include "http/h1_server.h"
#include "io/ops.h"
#include "io/outq.h"
#include "lua/lua_embed.h"

#define COPY_MAX (16 * 1024)   /* smaller bodies are copied, larger ones
                                  referenced (Lua strings don't move) */

/* The worker running on this thread (NULL in the start-up check state). */
static __thread struct lrt *cur_rt; /* this thread's runtime */

/* ==== request objects ==== */

/* Request tables hold [1] = struct req* and [2] = its generation, so a table
 * kept past its request is refused instead of reaching a reused slot. */
struct req *lrt_check_req(lua_State *L, int idx)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_rawgeti(L, idx, 1);
    lua_rawgeti(L, idx, 2);
    struct req *r = lua_touserdata(L, -2);
    lua_Integer gen = lua_tointeger(L, -1);
    lua_pop(L, 2);
    if (r == NULL)
        luaL_argerror(L, idx, "request expected");
    if ((lua_Integer)r->gen != gen || !r->running)
        luaL_error(L, "request is no longer active");
    return r;
}

static int l_req_header(lua_State *L)
{
    struct req *r = lrt_check_req(L, 1);
    size_t nlen, vlen;
    const char *name = luaL_checklstring(L, 2, &nlen);
    const char *v = h1_header(&r->m, name, nlen, &vlen);
    if (v == NULL)
        lua_pushnil(L);
    else
        lua_pushlstring(L, v, vlen);
    return 1;
}

static int l_req_headers(lua_State *L)
{
    struct req *r = lrt_check_req(L, 1);
    char name[256];
    lua_createtable(L, 0, (int)r->m.nhdrs);
    for (unsigned i = 0; i < r->m.nhdrs; i++) {
        const struct hdr *h = &r->m.hdrs[i];
        if (h->vlen == UINT32_MAX || h->nlen >= sizeof name)
            continue;
        for (uint32_t k = 0; k < h->nlen; k++)
            name[k] = (char)tolower((unsigned char)r->m.head.data[h->name + k]);
        lua_pushlstring(L, name, h->nlen);
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);
        if (lua_isnil(L, -1)) { /* first: name = value */
            lua_pop(L, 1);
            lua_pushlstring(L, r->m.head.data + h->val, h->vlen);
        } else {                /* repeated: values joined with ", " */
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, r->m.head.data + h->val, h->vlen);
            lua_concat(L, 3);
        }
        lua_rawset(L, -3);
    }
    return 1;
}

/* req:body(): the whole body, read as it arrives (h1_body_start with a
 * sink that appends to m.body; max_body_size and body_timeout apply).
 * A body that fails (400, 408, 413) ends the handler there: the client
 * gets that status, or the connection closes if the response started (as
 * OpenResty's ngx.req.read_body finalizes the request). */
static void body_end(struct h1_body_sink *s, int status)
{
    struct req *r = (struct req *)((char *)s - offsetof(struct req, bsink));
    r->body_status = status;
    /* gone (-1): the abort that follows cancels the wait */
    if (status >= 0 && req_parked(r))
        req_wake(r);
}

static bool body_cancel(struct req *r)
{
    (void)r;
    return true; /* the sink was detached before the abort */
}

static void respond_status(struct req *r, int status);

static void body_resume(struct req *r)
{
    if (r->body_status == 0) {
        lua_pushlstring(r->co, r->m.body.data ? r->m.body.data : "",
                        r->m.body.len);
        lrt_continue(r, 1);
        return;
    }
    /* the handler ends at its req:body() */
    lrt_drop_thread(r);
    r->running = false;
    if (r->m.c == NULL)
        req_put(r);
    else if (r->m.head_sent)
        http_response_abort(&r->m);
    else
        respond_status(r, r->body_status);
}

static const struct req_op op_body = {
    "body", body_cancel, body_resume, NULL,
};

static int l_req_body(lua_State *L)
{
    struct req *r = lrt_check_req(L, 1);
    switch (r->m.body_st) {
    case H1_BODY_NONE:
    case H1_BODY_READ:
        lua_pushlstring(L, r->m.body.data ? r->m.body.data : "",
                        r->m.body.len);
        return 1;
    case H1_BODY_UNREAD:
        break;
    default:
        lua_pushnil(L);
        lua_pushstring(L, r->m.c == NULL ? "closed" : "consumed");
        return 2;
    }
    if (cur_rt->cur != r || L != r->co)
        return luaL_error(L, "req:body: only in the handler's own coroutine "
                             "(it may wait for the body)");
    static const struct h1_body_sink ops = {NULL, body_end};
    r->bsink = ops;
    r->body_status = 1;
    h1_body_start(&r->m, &r->bsink, SIZE_MAX);
    if (r->body_status == 0) { /* all of it was buffered already */
        lua_pushlstring(L, r->m.body.data ? r->m.body.data : "",
                        r->m.body.len);
        return 1;
    }
    if (r->body_status < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    req_park(r, &op_body);
    if (r->body_status > 1)
        req_defer(r); /* failed at once: ended from outside the handler */
    return lua_yield(L, 0);
}

bool lrt_body_wake(struct req *r)
{
    if (!req_parked_on(r, &op_body))
        return false;
    req_wake(r);
    return true;
}

/* ==== script states ==== */

static void lstate_close(struct lstate *ls)
{
    lua_close(ls->L);
    free(ls);
}

/* One user of ls is done; a retired state closes with its last user. */
static void lstate_release(struct lrt *w, struct lstate *ls)
{
    if (--ls->live > 0 || ls == w->lua)
        return;
    for (struct lstate **pp = &w->retired; *pp; pp = &(*pp)->next)
        if (*pp == ls) {
            *pp = ls->next;
            lstate_close(ls);
            log_info("closed a replaced script state (no request left on it)");
            return;
        }
}

void lrt_state_hold(struct lstate *ls) { ls->live++; }

void lrt_state_release(struct lrt *rt, struct lstate *ls)
{
    lstate_release(rt, ls);
}

void lrt_unref(struct worker *w, void *arg, intptr_t ref)
{
    (void)w; /* the worker is this thread's: cur_rt */
    struct lstate *ls = arg;
    luaL_unref(ls->L, LUA_REGISTRYINDEX, (int)ref);
    lstate_release(cur_rt, ls);
}

/* Queue the string at stack index idx as body bytes. */
static void queue_body(lua_State *L, struct req *r, int idx)
{
    size_t len;
    const char *p = lua_tolstring(L, idx, &len);
    if (p == NULL || len == 0)
        return;
    if (len <= COPY_MAX) {
        http_body(&r->m, p, len, NULL, NULL, 0);
    } else {
        /* the send reads the Lua string itself: keep it referenced until
         * the send completes (lrt_unref runs then) */
        lua_pushvalue(L, idx);
        int ref = luaL_ref(L, LUA_REGISTRYINDEX);
        r->ls->live++;
        http_body(&r->m, p, len, lrt_unref, r->ls, ref);
    }
}

/* Header `name` (nlen bytes) is the literal `lit`, ignoring case. */
#define name_is(name, nlen, lit) field_name_is(name, nlen, lit, sizeof(lit) - 1)

int lrt_values(lua_State *L, int vi)
{
    return lua_istable(L, vi) ? (int)lua_objlen(L, vi) : 1;
}

const char *lrt_value(lua_State *L, int vi, int i, size_t *vl)
{
    if (lua_istable(L, vi))
        lua_rawgeti(L, vi, i);
    else
        lua_pushvalue(L, vi);
    int ty = lua_type(L, -1);
    *vl = 0;
    return ty == LUA_TSTRING || ty == LUA_TNUMBER ? lua_tolstring(L, -1, vl)
                                                  : NULL;
}

/* The list at the stack top as field lines `name`: 0, or -1 with an
 * error message pushed. */
static int add_list(lua_State *L, struct req *r, const char *name, size_t nlen)
{
    int t = lua_gettop(L);
    int n = lrt_values(L, t);
    for (int i = 1; i <= n; i++) {
        size_t vlen;
        const char *v = lrt_value(L, t, i, &vlen);
        if (v == NULL) {
            lua_pushfstring(L, "header '%s': string, number or list of them "
                               "expected", name);
            return -1;
        }
        if (http_head_add(&r->m, name, nlen, v, vlen) < 0) {
            lua_pushfstring(L, "invalid header '%s'", name);
            return -1;
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* Write the head: status, the handler's headers (table at idx or none),
 * framing. `body_len` < 0: streamed (chunked unless a Content-Length is
 * given). Returns 0, or -1 with an error message pushed. */
static int write_head(lua_State *L, struct req *r, int status, int idx,
                      int64_t body_len, bool default_ctype)
{
    bool has_ctype = false;
    int64_t user_len = -1;
    http_head_begin(&r->m, status);
    if (idx && lua_istable(L, idx)) {
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            size_t nlen, vlen;
            if (lua_type(L, -2) != LUA_TSTRING) {
                lua_pop(L, 1);
                continue;
            }
            const char *name = lua_tolstring(L, -2, &nlen);
            if (lua_istable(L, -1) && !name_is(name, nlen, "content-length") &&
                !name_is(name, nlen, "connection") &&
                !name_is(name, nlen, "transfer-encoding")) {
                /* a list: one field line per value (Set-Cookie) */
                if (add_list(L, r, name, nlen) < 0)
                    return -1;
                if (name_is(name, nlen, "content-type"))
                    has_ctype = true;
                lua_pop(L, 1);
                continue;
            }
            const char *v = lua_tolstring(L, -1, &vlen); /* numbers too */
            if (v == NULL) {
                lua_pushfstring(L, "header '%s': string or number expected",
                                name);
                return -1;
            }
            if (name_is(name, nlen, "content-length")) {
                /* 1*DIGIT (RFC 9110 §8.6), at most 18 of them */
                user_len = 0;
                for (size_t i = 0; i < vlen; i++)
                    if (v[i] < '0' || v[i] > '9' || i == 18) {
                        user_len = -1;
                        break;
                    } else {
                        user_len = user_len * 10 + (v[i] - '0');
                    }
                if (vlen == 0 || user_len < 0) {
                    lua_pushfstring(L, "invalid Content-Length '%s'", v);
                    return -1;
                }
            } else if (name_is(name, nlen, "connection")) {
                if (strncasecmp(v, "close", 5) == 0)
                    r->m.keep_alive = false;
            } else if (name_is(name, nlen, "transfer-encoding")) {
                /* framing is the server's business */
            } else {
                if (name_is(name, nlen, "content-type"))
                    has_ctype = true;
                if (http_head_add(&r->m, name, nlen, v, vlen) < 0) {
                    lua_pushfstring(L, "invalid header '%s'", name);
                    return -1;
                }
            }
            lua_pop(L, 1);
        }
    }
    if (default_ctype && !has_ctype)
        http_head_add(&r->m, "Content-Type", 12, "text/plain", 10);
    http_head_end(&r->m, body_len >= 0 ? body_len : user_len);
    return 0;
}

static int check_status(lua_State *L, int idx)
{
    lua_Number n = luaL_checknumber(L, idx);
    if (n != floor(n) || n < 100 || n > 599)
        luaL_argerror(L, idx, "status must be an integer from 100 to 599");
    return (int)n;
}

/* Raise if r's deliver hook is running: its head is being built. */
static void check_not_delivering(lua_State *L, struct req *r, const char *who)
{
    if (cur_rt && cur_rt->delivering == r)
        luaL_error(L, "%s: not inside a deliver hook (it edits a response "
                      "that is already being sent)", who);
}

static int l_req_start(lua_State *L)
{
    struct req *r = lrt_check_req(L, 1);
    check_not_delivering(L, r, "req:start");
    int status = lua_isnoneornil(L, 2) ? 200 : check_status(L, 2);
    if (r->m.head_sent)
        return luaL_error(L, "response already started");
    if (r->m.c == NULL) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    if (write_head(L, r, status, lua_istable(L, 3) ? 3 : 0, -1, false) < 0)
        return lua_error(L);
    lua_pushboolean(L, 1);
    return 1;
}

/* ==== operations a handler parks on (core/req.h) ==== */

/* req:write above the queue's high-water mark: resumed with true once
 * it drains below the low one. */
static bool drain_cancel(struct req *r) { return true; }

static void drain_resume(struct req *r)
{
    lua_pushboolean(r->co, 1); /* req:write() returns true */
    lrt_continue(r, 1);
}

static void drain_writable(struct req *r)
{
    if (outq_pending(&r->m.c->out) <= OUT_LOW)
        req_wake(r);
}

static const struct req_op op_drain = {
    "drain", drain_cancel, drain_resume, drain_writable,
};

/* luring.sleep: an OP_SLEEP timeout in the ring. Cancelled when the
 * client goes; the slot is freed at the cancelled timeout's completion. */
static bool sleep_cancel(struct req *r)
{
    loop_cancel(cur_rt->loop, UD_MAKE(OP_SLEEP, r->gen, r->idx),
                UD_MAKE(OP_CANCEL, 0, 0));
    return false;
}

static void sleep_resume(struct req *r) { lrt_continue(r, 0); }

static const struct req_op op_sleep = {
    "sleep", sleep_cancel, sleep_resume, NULL,
};

void lrt_sleep_done(struct lrt *rt, const struct loop_cqe *cq)
{
    struct req *r = req_at(rt->rp, UD_IDX(cq->ud));
    if (r && r->gen == UD_GEN(cq->ud) && req_parked_on(r, &op_sleep))
        req_wake(r);
}

static int l_req_write(lua_State *L)
{
    struct req *r = lrt_check_req(L, 1);
    check_not_delivering(L, r, "req:write");
    luaL_checkstring(L, 2);
    if (r->m.c == NULL) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    if (!r->m.head_sent && write_head(L, r, 200, 0, -1, false) < 0)
        return lua_error(L);
    queue_body(L, r, 2);
    if (outq_pending(&r->m.c->out) > OUT_HIGH && cur_rt->cur == r &&
        L == r->co) {
        req_park(r, &op_drain);
        return lua_yield(L, 0);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* ==== luring.core ==== */

static int l_sleep(lua_State *L)
{
    struct lrt *w = cur_rt;
    lua_Number ms = luaL_checknumber(L, 1);
    if (!(ms >= 0 && ms <= 31536000000.0)) /* NaN, negative, over a year */
        return luaL_argerror(L, 1, "milliseconds from 0 to 31536000000 expected");
    if (w == NULL || w->cur == NULL || w->cur->co != L)
        return luaL_error(L, "luring.sleep: only inside a request handler "
                             "(not the main chunk or a coroutine it made)");
    struct req *r = w->cur;
    r->ts.tv_sec = (int64_t)(ms / 1000);
    r->ts.tv_nsec = (long long)((ms - (lua_Number)r->ts.tv_sec * 1000) * 1e6);
    loop_timeout(w->loop, &r->ts, UD_MAKE(OP_SLEEP, r->gen, r->idx));
    req_park(r, &op_sleep);
    return lua_yield(L, 0);
}

static int l_now(lua_State *L)
{
    if (cur_rt) {
        lua_pushnumber(L, (lua_Number)loop_now(cur_rt->loop));
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        lua_pushnumber(L, (lua_Number)ts.tv_sec * 1e3 +
                              (lua_Number)ts.tv_nsec / 1e6);
    }
    return 1;
}

static int l_log(lua_State *L)
{
    /* the names the log writes and --log-level takes, and "err" */
    static const char *levels[] = {"err",  "warn",  "info", "debug",
                                   "error", "crit", NULL};
    static const enum log_level lv[] = {LOG_ERROR, LOG_WARN, LOG_INFO,
                                        LOG_DEBUG, LOG_ERROR, LOG_CRIT};
    int lvl = luaL_checkoption(L, 1, NULL, levels);
    if (!log_enabled(lv[lvl]))
        return 0;
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 2; i <= n; i++) {
        lua_getglobal(L, "tostring");
        lua_pushvalue(L, i);
        lua_call(L, 1, 1);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    log_at(lv[lvl], "%s", lua_tostring(L, -1));
    return 0;
}

/* luring.conn_stats(): the connection buffers of every worker, in bytes,
 * and their budget. */
static int l_conn_stats(lua_State *L)
{
    struct h1_server *srv = cur_rt ? cur_rt->h1 : NULL;
    if (srv == NULL)
        return luaL_error(L, "luring.conn_stats: only while serving "
                             "(not in the main chunk)");
    budget_flush(&srv->budget); /* this worker's part: exact */
    lua_createtable(L, 0, 2);
    lua_pushnumber(L, (lua_Number)budget_used(&srv->budget));
    lua_setfield(L, -2, "buffer_bytes");
    lua_pushnumber(L, (lua_Number)srv->cfg->conn_buffer_budget);
    lua_setfield(L, -2, "budget");
    return 1;
}

/* luring.core._untraced(...): returns its arguments. No LuaJIT trace can
 * record a call of a C function: a trace that reaches one either stitches
 * (ends, and a new trace starts after the call) or, when the results go on
 * as a variable number of arguments, as in init.lua's fn(untraced(req)),
 * just ends there and hands over to the interpreter (lj_ffrecord.c,
 * recff_nyi). init.lua calls it between routing and the script's handler,
 * which is marked not to be compiled: a trace that ran into the handler
 * would abort instead, and after a few aborts LuaJIT blacklists the code
 * where it started, luring's own (routing, the request table). */
static int l_untraced(lua_State *L) { return lua_gettop(L); }

/* luring.core._metrics() -> the Prometheus text of luring.metrics() (the
 * handler init.lua returns): every worker's figures (app/metrics.c). */
static int l_metrics(lua_State *L)
{
    if (cur_rt == NULL || cur_rt->metrics == NULL)
        return luaL_error(L, "luring.metrics: only while serving");
    struct buf b = {0};
    if (cur_rt->metrics(cur_rt, &b) < 0) {
        buf_free(&b);
        return luaL_error(L, "luring.metrics: out of memory");
    }
    lua_pushlstring(L, b.data ? b.data : "", b.len);
    buf_free(&b);
    return 1;
}

/* luring.core._req_id(req) -> 16 hex digits: req.id (init.lua keeps it
 * in the request table once read). */
static int l_req_id(lua_State *L)
{
    struct req *r = lrt_check_req(L, 1);
    char hex[16];
    req_id_hex(r, hex);
    lua_pushlstring(L, hex, sizeof hex);
    return 1;
}

static const luaL_Reg core_funcs[] = {
    {"_untraced", l_untraced},
    {"sleep", l_sleep},
    {"now", l_now},
    {"log", l_log},
    {"conn_stats", l_conn_stats},
    {"_req_id", l_req_id},
    {"_metrics", l_metrics},
    {NULL, NULL},
};

static const luaL_Reg req_methods[] = {
    {"header", l_req_header},
    {"headers", l_req_headers},
    {"body", l_req_body},
    {"start", l_req_start},
    {"write", l_req_write},
    {NULL, NULL},
};

static int luaopen_luring_core(lua_State *L)
{
    lua_newtable(L);
    luaL_register(L, NULL, core_funcs);
    /* request metatable (luring.core._req_mt; init.lua sets it on each
     * request table) */
    lua_newtable(L);
    lua_newtable(L);
    luaL_register(L, NULL, req_methods);
    lua_setfield(L, -2, "__index");
    lua_setfield(L, -2, "_req_mt");
    /* method names by h1_parse's enum: _entry turns the number the C
     * side passes into an interned string with one table index (other
     * methods come as strings) */
    lua_newtable(L);
    for (int m = H1_M_OTHER + 1; m < H1_M_N; m++) {
        lua_pushstring(L, h1_method_name((enum h1_method)m));
        lua_rawseti(L, -2, m);
    }
    lua_setfield(L, -2, "_methods");
    lcache_open(L); /* luring.cache{}, luring.origin{} */
    lorigin_open(L); /* origin:request */
    linval_open(L);  /* cache:purge, ban, purge_tag */
    lshdict_open(L); /* luring.shared_dict{}, luring.shared */
    ltimer_open(L);  /* luring.timer, luring.worker */
    lsock_open(L);   /* luring.socket.tcp */
    return 1;
}

/* ==== loading ==== */

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    lua_getglobal(L, "debug");
    lua_getfield(L, -1, "traceback");
    lua_pushstring(L, msg ? msg : "(error object is not a string)");
    lua_pushinteger(L, 2);
    lua_call(L, 2, 1);
    return 1;
}

lua_State *lrt_open(const char *script, struct lmem *mem,
                    const struct config *cfg, char *err, size_t errlen)
{
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        snprintf(err, errlen, "cannot create a Lua state (out of memory)");
        return NULL;
    }
    /* the main chunk runs interpreted, so that the budget can stop it
     * (a reload that loops fails instead of hanging the worker) */
    if (mem && cfg)
        lmem_wrap(L, mem, (int64_t)cfg->lua_max_memory);
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_luring_core);
    lua_setfield(L, -2, "luring.core");
    for (const struct lua_embed *e = lua_embedded; e->name; e++) {
        char chunk[128];
        snprintf(chunk, sizeof chunk, "=[luring %s]", e->name);
        if (luaL_loadbuffer(L, e->src, e->len, chunk) != 0) {
            snprintf(err, errlen, "embedded module %s: %s", e->name,
                     lua_tostring(L, -1));
            lua_close(L);
            return NULL;
        }
        lua_setfield(L, -2, e->name);
    }
    lua_pop(L, 2);

    lua_pushcfunction(L, traceback);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "luring");
    if (lua_pcall(L, 1, 1, -3) != 0)
        goto fail;
    bool jit = cfg && cfg->lua_jit;
    if (!jit) { /* chunks the script loads later run interpreted too */
        lua_getfield(L, -1, "_interpret_loaded");
        if (lua_pcall(L, 0, 0, -3) != 0)
            goto fail;
    }
    lua_setglobal(L, "luring");
    if (luaL_loadfile(L, script) != 0)
        goto fail;
    /* The script's code runs interpreted (luring's own modules keep the
     * JIT): hooks, hence lua_budget, don't reach JIT-compiled loops, and
     * no trace can loop in a function marked so (budget.c). The main
     * chunk always does, so that a reload that loops can be stopped. */
    lbudget_jit_func(L, -1, false);
    lua_pushvalue(L, -1);
    lua_State *prev = lbudget_enter(L);
    int rc = lua_pcall(L, 0, 0, -3);
    lbudget_leave(L, prev);
    if (rc != 0)
        goto fail;
    if (jit)
        lbudget_jit_func(L, -1, true);
    lua_pop(L, 2);
    return L;

fail:
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_close(L);
    return NULL;
}

static int get_luring_field(lua_State *L, const char *name)
{
    lua_getglobal(L, "luring");
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
    return lua_type(L, -1);
}

int lrt_read_config(lua_State *L, struct config *cfg, char *err,
                    size_t errlen)
{
    static const struct {
        const char *name;
        int kind; /* 0 count, 1 seconds -> ms, 2 bytes, 3 seconds -> µs */
    } keys[] = {
        {"workers", 0},         {"max_connections", 0},
        {"header_timeout", 1},  {"idle_timeout", 1},
        {"body_timeout", 1},    {"send_timeout", 1},
        {"max_header_size", 2}, {"max_uri_size", 2},
        {"max_body_size", 2},   {"lua_budget", 1},
        {"shutdown_timeout", 1}, {"lua_max_memory", 2},
        {"conn_buffer_budget", 2}, {"drain_timeout", 1},
        {"max_timers", 0},      {"batch_wait", 3},
    };
    get_luring_field(L, "_config");
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        lua_getfield(L, -1, keys[i].name);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        lua_Number v = lua_tonumber(L, -1);
        lua_pop(L, 1);
        /* checked before any conversion: a float out of an integer's
         * range is undefined behaviour */
        static const lua_Number max[] = {1e9, 31536000, 1099511627776.0,
                                         0.01};
        lua_Number hi = !strcmp(keys[i].name, "workers") ? 256 : max[keys[i].kind];
        lua_Number lo = keys[i].kind == 1 ? 0.001
                        : keys[i].kind == 3 ? 0
                        : !strcmp(keys[i].name, "lua_max_memory") ? 1048576 : 1;
        if (!strcmp(keys[i].name, "conn_buffer_budget"))
            lo = 1048576; /* below 1 MiB, a few connections fill it */
        if (!(v >= lo && v <= hi)) {
            snprintf(err, errlen, "luring.config: %s must be a number from "
                     "%.15g to %.15g", keys[i].name, lo, hi);
            lua_pop(L, 1);
            return -1;
        }
        const char *k = keys[i].name;
        if (!strcmp(k, "workers")) cfg->workers = (unsigned)v;
        else if (!strcmp(k, "max_connections")) cfg->max_connections = (unsigned)v;
        else if (!strcmp(k, "header_timeout")) cfg->header_timeout_ms = (int64_t)(v * 1000);
        else if (!strcmp(k, "idle_timeout")) cfg->idle_timeout_ms = (int64_t)(v * 1000);
        else if (!strcmp(k, "body_timeout")) cfg->body_timeout_ms = (int64_t)(v * 1000);
        else if (!strcmp(k, "send_timeout")) cfg->send_timeout_ms = (int64_t)(v * 1000);
        else if (!strcmp(k, "max_header_size")) cfg->max_header_size = (size_t)v;
        else if (!strcmp(k, "max_uri_size")) cfg->max_uri_size = (size_t)v;
        else if (!strcmp(k, "max_body_size")) cfg->max_body_size = (size_t)v;
        else if (!strcmp(k, "lua_budget")) cfg->lua_budget_ms = (int64_t)(v * 1000);
        else if (!strcmp(k, "shutdown_timeout")) cfg->shutdown_timeout_ms = (int64_t)(v * 1000);
        else if (!strcmp(k, "drain_timeout")) cfg->drain_timeout_ms = (int64_t)(v * 1000);
        else if (!strcmp(k, "lua_max_memory")) cfg->lua_max_memory = (size_t)v;
        else if (!strcmp(k, "conn_buffer_budget")) cfg->conn_buffer_budget = (size_t)v;
        else if (!strcmp(k, "max_timers")) cfg->max_timers = (unsigned)v;
        else if (!strcmp(k, "batch_wait")) cfg->batch_wait_us = (unsigned)(v * 1e6 + 0.5);
    }
    lua_getfield(L, -1, "lua_jit");
    if (!lua_isnil(L, -1))
        cfg->lua_jit = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, -1, "request_id_header");
    if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
        cfg->request_id_header[0] = 0;
    } else if (lua_type(L, -1) == LUA_TSTRING) {
        size_t n;
        const char *v = lua_tolstring(L, -1, &n);
        if (n == 0 || n >= sizeof cfg->request_id_header ||
            !field_is_token(v, n)) {
            snprintf(err, errlen, "luring.config: request_id_header must be "
                     "a field name (a token of 1 to %zu characters) or false",
                     sizeof cfg->request_id_header - 1);
            lua_pop(L, 2);
            return -1;
        }
        memcpy(cfg->request_id_header, v, n + 1);
    }
    lua_pop(L, 1);
    lua_pop(L, 1);
    return 0;
}

int lrt_listeners(lua_State *L, lrt_listener_pt fn, void *ud, char *err,
                  size_t errlen)
{
    struct lstate *ls = cur_rt ? cur_rt->loading : NULL;
    int count = 0;
    get_luring_field(L, "_apps");
    int napps = (int)lua_objlen(L, -1);
    for (int i = 1; i <= napps; i++) {
        lua_rawgeti(L, -1, i);
        lua_getfield(L, -1, "listeners");
        int nl = (int)lua_objlen(L, -1);
        for (int j = 1; j <= nl; j++) {
            lua_rawgeti(L, -1, j);
            const char *addr = lua_tostring(L, -1);
            lua_pop(L, 1);
            /* its own max_connections (app:listen checked it; again here,
             * before converting) */
            lua_getfield(L, -2, "listen_max");
            lua_Number mc = 0;
            if (lua_istable(L, -1)) {
                lua_rawgeti(L, -1, j);
                mc = lua_tonumber(L, -1);
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
            if (!(mc == 0 || (mc >= 1 && mc <= 1e9))) {
                snprintf(err, errlen, "listen %s: max_connections must be "
                         "a number from 1 to 1000000000", addr);
                lua_pop(L, 3);
                return -1;
            }
            if (fn && fn(ud, (unsigned)count, addr, (unsigned)mc, err,
                         errlen) < 0) {
                lua_pop(L, 3);
                return -1;
            }
            if (ls) { /* the app that serves this listener */
                if (ls->ndispatch == LISTEN_MAX) {
                    snprintf(err, errlen, "more than %d listeners", LISTEN_MAX);
                    lua_pop(L, 3);
                    return -1;
                }
                /* app:tcp's: its handler function instead */
                lua_getfield(L, -2, "tcp_handlers");
                if (lua_istable(L, -1))
                    lua_rawgeti(L, -1, j);
                else
                    lua_pushnil(L);
                if (lua_isfunction(L, -1)) {
                    ls->tcp_mask |= 1u << ls->ndispatch;
                    lua_remove(L, -2);
                } else {
                    lua_pop(L, 2);
                    lua_pushvalue(L, -2); /* the app */
                }
                ls->dispatch[ls->ndispatch++] = luaL_ref(L, LUA_REGISTRYINDEX);
            }
            count++;
        }
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    if (count == 0) {
        snprintf(err, errlen, "the script declares no listener: use "
                              "luring.app():listen(\"127.0.0.1:8080\")");
        return -1;
    }
    return count;
}

void lrt_set_current(struct lrt *rt)
{
    cur_rt = rt;
    lbudget_cur = rt ? &rt->budget : NULL;
}

struct lrt *lrt_current(void) { return cur_rt; }

struct lstate *lrt_load(struct lrt *w, lrt_listener_pt fn, void *ud,
                        char *err, size_t errlen)
{
    struct lstate *ls = calloc(1, sizeof *ls);
    if (ls == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    cur_rt = w; /* caches and origins the script declares are ours */
    lbudget_cur = &w->budget;
    w->budget.budget_ms = w->cfg->lua_budget_ms;
    w->loading = ls; /* timers its main chunk creates are its own */
    ls->L = lrt_open(w->script, &ls->mem, w->cfg, err, errlen);
    if (ls->L == NULL) {
        w->loading = NULL;
        ltimer_discard(w, ls);
        free(ls);
        return NULL;
    }
    lua_State *L = ls->L;
    get_luring_field(L, "_entry");
    ls->entry_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    get_luring_field(L, "_tcp_entry");
    ls->tcp_entry_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    int n = lrt_listeners(L, fn, ud, err, errlen);
    w->loading = NULL;
    if (n < 0) {
        ltimer_discard(w, ls);
        lstate_close(ls);
        return NULL;
    }
    return ls;
}

int lrt_reload(struct lrt *w, lrt_listener_pt fn, void *ud,
               unsigned nlisteners)
{
    char err[1024];
    struct lstate *ls = lrt_load(w, fn, ud, err, sizeof err);
    if (ls && ls->ndispatch != nlisteners) {
        snprintf(err, sizeof err, "the script has %u listeners, the running "
                 "one %u; restart to change listeners", ls->ndispatch,
                 nlisteners);
        ltimer_discard(w, ls);
        lstate_close(ls);
        ls = NULL;
    }
    if (ls == NULL) {
        log_err("reload of %s failed, still running the previous script: %s",
                w->script, err);
        return -1;
    }
    struct lstate *old = w->lua;
    w->lua = ls;
    old->next = w->retired;
    w->retired = old;
    /* pooled (idle) coroutines of the old state are dropped now; running
     * and parked ones finish there. Our own hold keeps `old` open during
     * the loop; its release closes it if nothing else uses it. */
    old->live++;
    for (struct req *r = w->rp->free; r; r = r->next_free)
        if (r->co && r->ls == old)
            lrt_drop_thread(r);
    ltimer_reload(w, old); /* its pending timers run, premature */
    lstate_release(w, old);
    ltimer_start(w, ls);
    if (w->id == 0)
        log_info("reloaded %s", w->script);
    return 0;
}

void lrt_close_all(struct lrt *w)
{
    while (w->retired) {
        struct lstate *ls = w->retired;
        w->retired = ls->next;
        lstate_close(ls);
    }
    if (w->lua)
        lstate_close(w->lua);
    w->lua = NULL;
}

/* ==== running handlers ==== */

/* Arguments of luring._entry after the app: the request's slot and
 * generation, method number (enum h1_method; the name for others), path,
 * query (or nil), HTTP minor version.
 * The request table itself is built in Lua by one table constructor
 * (a copy of a template with its keys in place), which costs a fraction
 * of setting each field through the C API. Returns the argument count. */
static int push_req(lua_State *co, struct req *r)
{
    lua_pushlightuserdata(co, r);
    lua_pushinteger(co, (lua_Integer)r->gen);
    if (r->m.method != H1_M_OTHER)
        lua_pushinteger(co, r->m.method);
    else
        lua_pushlstring(co, r->m.head.data + r->m.method_off,
                        r->m.method_len);
    const char *url = r->m.head.data + r->m.url_off;
    const char *q = memchr(url, '?', r->m.url_len);
    size_t plen = q ? (size_t)(q - url) : r->m.url_len;
    if (plen == 0)
        lua_pushliteral(co, "/"); /* absolute-form without a path */
    else
        lua_pushlstring(co, url, plen);
    if (q)
        lua_pushlstring(co, q + 1, r->m.url_len - plen - 1);
    else
        lua_pushnil(co);
    lua_pushinteger(co, r->m.http_minor);
    return 6;
}

void lrt_drop_thread(struct req *r)
{
    if (cur_rt && cur_rt->readers)
        lorigin_req_end(r); /* its origin:request responses stop */
    if (r->co == NULL)
        return;
    luaL_unref(r->ls->L, LUA_REGISTRYINDEX, r->co_ref);
    r->co = NULL;
    r->co_ref = LUA_NOREF;
    lstate_release(cur_rt, r->ls);
    r->ls = NULL;
}

static void respond_500(struct req *r)
{
    static const char body[] = "Internal Server Error\n";
    http_head_begin(&r->m, 500);
    http_head_add(&r->m, "Content-Type", 12, "text/plain", 10);
    http_head_end(&r->m, sizeof body - 1);
    http_body(&r->m, body, sizeof body - 1, NULL, NULL, 0);
    http_response_done(&r->m);
}

/* A plain-text response with `status` (a failed body: 400, 408, 413, 503;
 * the connection closes after it, see h1_server.c body_finish). */
static void respond_status(struct req *r, int status)
{
    serve_error(r, status);
    http_response_done(&r->m);
}

static void tcp_end(struct req *r, const char *err);

static void fail(struct req *r, const char *msg)
{
    if (cur_rt)
        cur_rt->lua_errors++;
    if (r->timer) { /* a timer's run: logged with the timer's id */
        ltimer_run_end(r, msg);
        return;
    }
    if (r->tcp) {
        tcp_end(r, msg);
        return;
    }
    log_err("handler failed: %s", msg);
    if (r->m.c == NULL)
        req_put(r);
    else if (r->m.head_sent)
        http_response_abort(&r->m);
    else
        respond_500(r);
}

/* The handler returned: co holds ok, results... (from luring._entry). */
static void finish(struct req *r, lua_State *co)
{
    if (!lua_toboolean(co, 1)) {
        fail(r, lua_tostring(co, 2) ? lua_tostring(co, 2) : "(no message)");
        return;
    }
    if (r->m.c == NULL) { /* its client left, or a timer's or a raw TCP
                           * connection's run (none) */
        if (r->timer)
            ltimer_run_end(r, NULL);
        else if (r->tcp)
            tcp_end(r, NULL);
        else
            req_put(r);
        return;
    }
    if (r->m.head_sent) {
        if (r->broken) /* a body that can't be completed: close */
            http_response_abort(&r->m);
        else
            http_response_done(&r->m);
        return;
    }
    int top = lua_gettop(co);
    int status = 200, hidx = 0, bidx = 0;
    bool plain = false;
    if (top >= 2) {
        switch (lua_type(co, 2)) {
        case LUA_TNUMBER: {
            lua_Number n = lua_tonumber(co, 2);
            if (n != floor(n) || n < 100 || n > 599) {
                fail(r, lua_pushfstring(co, "invalid status %s returned",
                                        lua_tostring(co, 2)));
                return;
            }
            status = (int)n;
            if (top >= 3 && lua_istable(co, 3))
                hidx = 3;
            else if (top >= 3 && !lua_isnil(co, 3)) {
                fail(r, "headers (2nd return value) must be a table or nil");
                return;
            }
            if (top >= 4 && !lua_isnil(co, 4)) {
                if (!lua_isstring(co, 4)) {
                    fail(r, "body (3rd return value) must be a string");
                    return;
                }
                bidx = 4;
            }
            break;
        }
        case LUA_TSTRING:
            bidx = 2;
            plain = true;
            break;
        case LUA_TNIL:
            break;
        default:
            fail(r, lua_pushfstring(co, "handler returned a %s; expected "
                                        "status, headers, body",
                                    luaL_typename(co, 2)));
            return;
        }
    }
    size_t blen = 0;
    if (bidx)
        lua_tolstring(co, bidx, &blen);
    if (write_head(co, r, status, hidx, (int64_t)blen, plain) < 0) {
        /* nothing of the head was queued (it is built aside): answer 500 */
        fail(r, lua_tostring(co, -1));
        return;
    }
    if (bidx)
        queue_body(co, r, bidx);
    http_response_done(&r->m);
}

/* The run that just ended had an allocation refused (lua_max_memory), or
 * left the state close to it: collect now, so that what the request
 * allocated is freed before the next one needs the memory (LuaJIT's GC
 * paces itself by the heap's growth, not by our limit). A refused
 * allocation that reached luring._entry (an error out of the handler)
 * fails the request and drops its coroutine first; one the script caught
 * and got over is its business. Returns the status to go on with, -1
 * when the request was answered here. */
static int after_pressure(struct req *r, struct lstate *ls, int st,
                          bool refused)
{
    ls->mem.pressure = false;
    bool failed = refused && st != LUA_YIELD &&
                  !(st == 0 && lua_toboolean(r->co, 1));
    if (refused)
        log_err("lua_max_memory (%lld bytes) reached by a handler%s",
                (long long)ls->mem.max, failed ? "" : " (it caught the error)");
    if (!failed) {
        lua_gc(ls->L, LUA_GCCOLLECT, 0);
        return st;
    }
    /* the xpcall of luring._entry caught it (st 0), or it escaped */
    const char *msg = lua_tostring(r->co, st == 0 ? 2 : -1);
    char copy[512];
    snprintf(copy, sizeof copy, "%s", msg ? msg : "not enough memory");
    ls->live++; /* keeps the state open across the drop */
    lrt_drop_thread(r);
    r->running = false;
    fail(r, copy);
    lua_gc(ls->L, LUA_GCCOLLECT, 0);
    lstate_release(cur_rt, ls);
    return -1;
}

static void run_co(struct req *r, int nargs);

/* Resume r's coroutine with nargs values on its stack; handle every
 * outcome. What is logged meanwhile names r (its req.id). */
static void run(struct req *r, int nargs)
{
    log_set_request(r->id);
    run_co(r, nargs);
    log_set_request(0);
}

static void run_co(struct req *r, int nargs)
{
    struct lrt *w = cur_rt;
    lua_State *co = r->co;
    struct lstate *ls = r->ls;
    unsigned refused = ls->mem.refused;
    w->cur = r;
    lua_State *prev = lbudget_enter_b(&w->budget, ls->L);
    int st = lua_resume(co, nargs);
    lbudget_leave_b(&w->budget, ls->L, prev);
    w->cur = NULL;
    if (ls->mem.refused != refused || ls->mem.pressure)
        st = after_pressure(r, ls, st, ls->mem.refused != refused);
    if (st == -1)
        return; /* out of memory: answered, collected */
    if (st == LUA_YIELD) {
        if (req_parked(r))
            return; /* until its operation completes (req_wake) */
        lrt_drop_thread(r);
        r->running = false;
        fail(r, "handler yielded outside a luring call (coroutine.yield "
                "across the handler is not allowed)");
    } else if (st == 0) {
        r->running = false;
        if (w->readers)
            lorigin_req_end(r); /* responses it did not read to the end */
        finish(r, co);
        lua_settop(co, 0); /* the thread is reused by the next request */
        if (r->co && r->ls != w->lua)
            lrt_drop_thread(r); /* ...unless its script was replaced */
    } else {
        const char *msg = lua_tostring(co, -1);
        char copy[512];
        snprintf(copy, sizeof copy, "%s", msg ? msg : "(no message)");
        lrt_drop_thread(r);
        r->running = false;
        fail(r, copy);
    }
}

void lrt_start(struct req *r)
{
    struct lrt *w = cur_rt;
    if (r->co && r->ls != w->lua)
        lrt_drop_thread(r); /* pooled from a script replaced since */
    if (r->co == NULL) {
        lua_State *L = w->lua->L;
        r->co = lua_newthread(L);
        r->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        r->ls = w->lua;
        r->ls->live++;
    }
    lua_State *co = r->co;
    lua_rawgeti(co, LUA_REGISTRYINDEX, r->ls->entry_ref);
    lua_rawgeti(co, LUA_REGISTRYINDEX, r->ls->dispatch[r->m.listener]);
    int nargs = 1 + push_req(co, r);
    r->running = true;
    run(r, nargs);
}

void lrt_run_timer(struct req *r, struct lstate *ls, int ref, bool premature)
{
    if (r->co && r->ls != ls)
        lrt_drop_thread(r); /* pooled from another script state */
    if (r->co == NULL) {
        r->co = lua_newthread(ls->L);
        r->co_ref = luaL_ref(ls->L, LUA_REGISTRYINDEX);
        r->ls = ls;
        ls->live++;
    }
    lua_State *co = r->co;
    lua_rawgeti(co, LUA_REGISTRYINDEX, ref); /* t */
    lua_getfield(co, -1, "run");
    lua_insert(co, -2);                      /* run, t */
    lua_pushboolean(co, premature);
    r->running = true;
    run(r, 2);
}

/* ==== raw TCP connections (app:tcp) ==== */

bool lrt_is_tcp(const struct lrt *rt, unsigned listener)
{
    return rt->lua && listener < LISTEN_MAX &&
           (rt->lua->tcp_mask >> listener & 1u);
}

/* r's handler returned (err NULL) or failed: its connection closes, the
 * worker is told. */
static void tcp_end(struct req *r, const char *err)
{
    struct lrt *w = cur_rt;
    unsigned listener = r->m.listener;
    if (err)
        log_err("tcp handler failed: %s", err);
    lsock_server_end(r->tcp);
    req_put(r); /* r->tcp still set: no access log line, no metrics */
    r->tcp = NULL;
    if (w && w->tcp_end)
        w->tcp_end(w, listener);
}

int lrt_tcp_start(struct lrt *w, int fd, unsigned listener)
{
    struct req *r = req_get(w->rp);
    if (r == NULL) {
        close(fd);
        return -1;
    }
    struct lstate *ls = w->lua;
    if (r->co && r->ls != ls)
        lrt_drop_thread(r); /* pooled from a script replaced since */
    if (r->co == NULL) {
        r->co = lua_newthread(ls->L);
        r->co_ref = luaL_ref(ls->L, LUA_REGISTRYINDEX);
        r->ls = ls;
        ls->live++;
    }
    lua_State *co = r->co;
    lua_rawgeti(co, LUA_REGISTRYINDEX, ls->tcp_entry_ref);
    lua_rawgeti(co, LUA_REGISTRYINDEX, ls->dispatch[listener]);
    struct lsock *s = lsock_push_server(co, w, fd);
    if (s == NULL) {
        lua_settop(co, 0);
        close(fd);
        req_put(r);
        return -1;
    }
    r->tcp = s; /* the record outlives its userdata until tcp_end */
    r->m.srv = w->h1;
    r->m.listener = listener;
    r->running = true;
    run(r, 2);
    return 0;
}

void lrt_continue(struct req *r, int nargs)
{
    struct conn *c = r->m.c;
    uint32_t cgen = c ? c->s.gen : 0;
    run(r, nargs);
    /* the response may be complete now: parse pipelined input */
    if (c && c->s.gen == cgen && c->state == CS_READING)
        http_process(c);
}
