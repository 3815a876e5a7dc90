/* l_deliver.c - deliver hooks: a script function that edits the header
 * fields of a response luring sends from a cache object (cache:fetch's
 * HIT, MISS, COALESCED and PASS, luring.proxy) just before its head goes
 * out, hits included, like Varnish's vcl_deliver or OpenResty's
 * header_filter_by_lua. And the header tables scripts are given
 * (lfields_push), shared with origin:request. */
#include <lauxlib.h>
#include <string.h>

#include "lua/rt.h"
#include "base/log.h"
#include "core/req.h"
#include "http/fields.h"
#include "http/h1_server.h"

#define FIELDS_MT "luring.fields"
/* registry: [2 * slot + 1] the hook, [2 * slot + 2] the request table, for
 * each request slot whose next head goes through a hook (a slot's entries
 * are replaced by its next request's, so nothing accumulates) */
#define DELIVER_KEY "luring.deliver"

#define NAME_IS(n, nl, lit) field_name_is(n, nl, lit, sizeof(lit) - 1)

/* ==== header tables ==== */

static char lower(char ch) { return (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch); }

/* Push name[0..n) lowercased. No Lua function is called: L may be a
 * suspended coroutine being given its results. */
static void push_lower(lua_State *L, const char *name, size_t n)
{
    char tmp[256];
    if (n > sizeof tmp) { /* a longer name (an origin may send one) */
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (size_t i = 0; i < n; i++)
            luaL_addchar(&b, lower(name[i]));
        luaL_pushresult(&b);
        return;
    }
    for (size_t i = 0; i < n; i++)
        tmp[i] = lower(name[i]);
    lua_pushlstring(L, tmp, n);
}

/* Add one field to the table at the stack top (the value at the top of
 * the stack above it). */
static void add_field(lua_State *L, const char *n, size_t nl, const char *v,
                      size_t vl)
{
    int t = lua_gettop(L);
    push_lower(L, n, nl);
    lua_pushvalue(L, -1);
    lua_rawget(L, t);
    if (NAME_IS(n, nl, "set-cookie")) { /* always a list */
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_createtable(L, 1, 0);
            lua_pushvalue(L, -2);
            lua_pushvalue(L, -2);
            lua_rawset(L, t);
        }
        lua_pushlstring(L, v, vl);
        lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
        lua_settop(L, t);
        return;
    }
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushlstring(L, v, vl);
    } else { /* repeated: one list, comma-separated (RFC 9110 §5.3) */
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, vl);
        lua_concat(L, 3);
    }
    lua_rawset(L, t);
}

static void fields_mt(lua_State *L);

void lfields_push(lua_State *L, const char *p, size_t n, const char *xcache,
                  bool hook)
{
    lua_createtable(L, 0, 8);
    size_t i = 0;
    struct field_line f; /* "Name: value\r\n", as origin.c stores them */
    while (field_line_next(p, n, &i, &f)) {
        /* a deliver hook neither sees nor sets Date (ldeliver_call) */
        if (f.nlen > 0 && (!hook || !NAME_IS(f.name, f.nlen, "date")))
            add_field(L, f.name, f.nlen, f.value, f.vlen);
    }
    if (xcache)
        add_field(L, "X-Cache", 7, xcache, strlen(xcache));
    fields_mt(L);
    lua_setmetatable(L, -2);
}

/* __index: t[Name] finds t[name]. */
static int l_fields_index(lua_State *L)
{
    if (lua_type(L, 2) != LUA_TSTRING)
        return 0;
    size_t n;
    const char *k = lua_tolstring(L, 2, &n);
    push_lower(L, k, n);
    lua_rawget(L, 1);
    return 1;
}

/* __newindex: t[Name] = v sets (or, with nil, removes) t[name]. */
static int l_fields_newindex(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TSTRING) {
        size_t n;
        const char *k = lua_tolstring(L, 2, &n);
        push_lower(L, k, n);
    } else {
        lua_pushvalue(L, 2);
    }
    lua_pushvalue(L, 3);
    lua_rawset(L, 1);
    return 0;
}

/* Push the header tables' metatable, made on first use (so a script that
 * never sees one adds nothing to its registry: see l_origin.c reader_mt). */
static void fields_mt(lua_State *L)
{
    if (!luaL_newmetatable(L, FIELDS_MT))
        return;
    lua_pushcfunction(L, l_fields_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_fields_newindex);
    lua_setfield(L, -2, "__newindex");
}

/* ==== the hook ==== */

void ldeliver_set(lua_State *L, struct req *r, int fn, int req_idx)
{
    lua_getfield(L, LUA_REGISTRYINDEX, DELIVER_KEY);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, DELIVER_KEY);
    }
    lua_pushvalue(L, fn);
    lua_rawseti(L, -2, 2 * (int)r->idx + 1);
    lua_pushvalue(L, req_idx);
    lua_rawseti(L, -2, 2 * (int)r->idx + 2);
    lua_pop(L, 1);
    r->deliver_hook = true;
}

struct dctx {
    struct req *r;
    int status;
    const char *fields;
    size_t flen;
    const char *xcache;
};

/* Add the field `name` with the value at vi (nil: removed; a string or
 * number; a list of them: one line each). Raises for a field luring owns
 * or one http_head_add refuses (never a line break in the head). */
static void emit(lua_State *L, struct req *r, const char *n, size_t nl, int vi)
{
    if (lua_isnil(L, vi))
        return;
    if (field_is_hop_by_hop(n, nl) || NAME_IS(n, nl, "content-length"))
        luaL_error(L, "deliver: %s can't be set: luring frames the response "
                      "(RFC 9112 §6, RFC 9110 §7.6.1)", n);
    if (NAME_IS(n, nl, "date") || NAME_IS(n, nl, "server"))
        luaL_error(L, "deliver: %s can't be set: luring sends its own", n);
    int count = lrt_values(L, vi);
    for (int i = 1; i <= count; i++) {
        size_t vl;
        const char *v = lrt_value(L, vi, i, &vl);
        if (v == NULL)
            luaL_error(L, "deliver: header '%s': string, number or list of "
                          "them expected", n);
        if (http_head_add(&r->m, n, nl, v, vl) < 0)
            luaL_error(L, "deliver: invalid header '%s' (the name must be a "
                          "token, the value without control characters but HTAB)", n);
        lua_pop(L, 1);
    }
}

/* Emit the original line's field (name n, nl bytes) from the table at hi
 * unless it was already; `seen` at si. */
static void emit_original(lua_State *L, struct req *r, const char *n,
                          size_t nl, int hi, int si)
{
    push_lower(L, n, nl);
    int k = lua_gettop(L);
    lua_pushvalue(L, k);
    lua_rawget(L, si);
    bool seen = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (!seen) {
        lua_pushvalue(L, k);
        lua_rawget(L, hi);
        if (!lua_isnil(L, -1)) { /* kept: the origin's spelling of the name */
            emit(L, r, n, nl, lua_gettop(L));
            lua_pushvalue(L, k);
            lua_pushboolean(L, 1);
            lua_rawset(L, si);
        }
    }
    lua_settop(L, k - 1);
}

/* lua_cpcall'd: call the hook as fn(req, res), then add the fields it
 * left: the original ones first, in their order and spelling, then those
 * it added. */
static int deliver_protected(lua_State *L)
{
    struct dctx *x = lua_touserdata(L, 1);
    struct req *r = x->r;
    lua_getfield(L, LUA_REGISTRYINDEX, DELIVER_KEY);      /* 2 */
    lua_rawgeti(L, 2, 2 * (int)r->idx + 1);               /* 3: fn */
    lua_rawgeti(L, 2, 2 * (int)r->idx + 2);               /* 4: req */
    lua_pushnil(L);
    lua_rawseti(L, 2, 2 * (int)r->idx + 1);
    lua_pushnil(L);
    lua_rawseti(L, 2, 2 * (int)r->idx + 2);
    if (!lua_isfunction(L, 3))
        return luaL_error(L, "deliver: the hook is gone");
    lua_createtable(L, 0, 2);                             /* 5: res */
    lua_pushinteger(L, x->status);
    lua_setfield(L, 5, "status");
    lfields_push(L, x->fields, x->flen, x->xcache, true);
    lua_setfield(L, 5, "headers");
    lua_pushvalue(L, 3);
    lua_pushvalue(L, 4);
    lua_pushvalue(L, 5);
    lua_call(L, 2, 0); /* a yield in it: "attempt to yield across..." */
    lua_getfield(L, 5, "status");
    if (lua_tonumber(L, -1) != x->status)
        return luaL_error(L, "deliver: res.status is read-only");
    lua_getfield(L, 5, "headers");                        /* 7 */
    if (!lua_istable(L, 7))
        return luaL_error(L, "deliver: res.headers must be a table");
    lua_newtable(L);                                      /* 8: seen */
    size_t i = 0;
    struct field_line f;
    while (field_line_next(x->fields, x->flen, &i, &f)) {
        if (f.nlen == 0)
            continue;
        if (NAME_IS(f.name, f.nlen, "date")) /* the origin's */
            http_head_raw(&r->m, f.line, f.llen);
        else
            emit_original(L, r, f.name, f.nlen, 7, 8);
    }
    if (x->xcache)
        emit_original(L, r, "X-Cache", 7, 7, 8);
    lua_pushnil(L);
    while (lua_next(L, 7)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            return luaL_error(L, "deliver: header names must be strings");
        size_t nl;
        const char *n = lua_tolstring(L, -2, &nl);
        push_lower(L, n, nl);
        lua_rawget(L, 8);
        bool seen = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (!seen)
            emit(L, r, n, nl, lua_gettop(L));
        lua_pop(L, 1);
    }
    return 0;
}

int ldeliver_call(struct req *r, int status, const char *fields, size_t flen,
                  const char *xcache)
{
    struct lrt *w = lrt_current();
    r->deliver_hook = false;
    if (w == NULL || r->ls == NULL)
        return -1;
    /* inside the request's own call (a hit served at once): on its
     * coroutine, nested; otherwise (the coroutine is suspended) on the
     * state's main thread. Either way a yield fails, as it must. */
    struct req *cur = w->cur;
    lua_State *L = cur == r ? r->co : r->ls->L;
    int top = lua_gettop(L);
    struct dctx x = {r, status, fields, flen, xcache};
    w->cur = NULL;       /* no cache:fetch, proxy, origin:request, sleep */
    w->delivering = r;   /* no req:start, req:write */
    lua_State *prev = lbudget_enter(L);
    int rc = lua_cpcall(L, deliver_protected, &x);
    lbudget_leave(L, prev);
    w->delivering = NULL;
    w->cur = cur;
    if (rc != 0) {
        const char *msg = lua_tostring(L, -1);
        log_err("deliver hook failed (500 sent instead): %s%s",
                msg ? msg : "(no message)",
                msg && strstr(msg, "yield") ? " (a deliver hook may not yield)"
                                            : "");
    }
    lua_settop(L, top);
    return rc != 0 ? -1 : 0;
}
