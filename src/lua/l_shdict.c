/* l_shdict.c - the Lua face of shared dictionaries (store/shdict.h), in
 * the shape of OpenResty's ngx.shared.DICT:
 *   luring.shared_dict{ name = "counters", size = "1m" } -> dict
 *   luring.shared.counters                               -> the same dict
 *   dict:get(key) -> value, flags?      dict:set(key, value, exptime?, flags?)
 *   ... (docs/API.md "Shared dictionaries").
 * A dict is a userdata holding the process-wide struct shdict; its methods
 * never yield, so they work in handlers, hooks and the main chunk alike. */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <string.h>

#include "base/buf.h"
#include "base/clock.h"
#include "lua/rt.h"
#include "store/shdict.h"

#define SHDICT_MT "luring.shdict"
#define SIZE_MIN 1024.0                 /* 1k */
#define SIZE_MAX_BYTES 1099511627776.0  /* 1t, as luring.config's sizes */
#define EXPTIME_MAX 31536000.0          /* a year, as luring.cache's times */
#define KEYS_DEFAULT 1024               /* get_keys() without max */

/* ==== arguments ==== */

static struct shdict *check_dict(lua_State *L)
{
    struct shdict **pd = luaL_checkudata(L, 1, SHDICT_MT);
    return *pd;
}

/* The copy buffer of this Lua state (upvalue 1 of every method): values
 * are copied into it under the dictionary's lock, then pushed once the
 * lock is released (a push may raise: it must not hold the lock). */
static struct buf *scratch(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

/* The key at index 2, a string (a number is converted), or NULL with
 * nil, err pushed when it is nil, empty or too long. Raises for other
 * types. */
static const char *get_key(lua_State *L, size_t *kl)
{
    int t = lua_type(L, 2);
    const char *err = NULL;
    if (t == LUA_TNIL) {
        err = "nil key";
    } else if (t != LUA_TSTRING && t != LUA_TNUMBER) {
        luaL_typerror(L, 2, "string");
    } else {
        const char *k = lua_tolstring(L, 2, kl);
        if (*kl == 0)
            err = "empty key";
        else if (*kl > SHDICT_KEY_MAX)
            err = "key too long";
        else
            return k;
    }
    lua_pushnil(L);
    lua_pushstring(L, err);
    return NULL;
}

/* An optional time in seconds at i (exptime, init_ttl) in µs: 0 when nil
 * or 0 (never expires), at least 1 µs otherwise. Raises when it is not a
 * number from 0 to a year. */
static int64_t opt_ttl(lua_State *L, int i, const char *what)
{
    if (lua_isnoneornil(L, i))
        return 0;
    lua_Number s = lua_tonumber(L, i);
    if (!lua_isnumber(L, i) || !(s >= 0 && s <= EXPTIME_MAX))
        luaL_argerror(L, i, lua_pushfstring(L, "%s must be a number of "
                                               "seconds from 0 to %d",
                                            what, (int)EXPTIME_MAX));
    int64_t us = (int64_t)(s * 1e6);
    return s > 0 && us < 1 ? 1 : us;
}

/* The value at i into *v; false (nothing pushed) for a type a dictionary
 * can't hold. */
static bool get_value(lua_State *L, int i, struct shdict_val *v)
{
    memset(v, 0, sizeof *v);
    switch (lua_type(L, i)) {
    case LUA_TNONE:
    case LUA_TNIL: v->type = SHDICT_NIL; return true;
    case LUA_TBOOLEAN:
        v->type = SHDICT_BOOL;
        v->num = lua_toboolean(L, i);
        return true;
    case LUA_TNUMBER:
        v->type = SHDICT_NUM;
        v->num = lua_tonumber(L, i);
        return true;
    case LUA_TSTRING:
        v->type = SHDICT_STR;
        v->str = lua_tolstring(L, i, &v->len);
        return true;
    default: return false;
    }
}

static void push_value(lua_State *L, const struct shdict_val *v)
{
    switch (v->type) {
    case SHDICT_STR: lua_pushlstring(L, v->str, v->len); break;
    case SHDICT_NUM: lua_pushnumber(L, v->num); break;
    case SHDICT_BOOL: lua_pushboolean(L, v->num != 0); break;
    default: lua_pushnil(L); break;
    }
}

static const char *errstr(int rc)
{
    switch (rc) {
    case -EEXIST: return "exists";
    case -ENOENT: return "not found";
    case -EINVAL: return "not a number";
    default: return "no memory";
    }
}

/* A keyed method's self (raises when it is not a dictionary) and key:
 * false with nil, err pushed (return 2) for a nil, empty or too long key. */
static bool dict_key(lua_State *L, struct shdict **d, const char **k,
                     size_t *kl)
{
    *d = check_dict(L);
    *k = get_key(L, kl);
    return *k != NULL;
}

/* ==== methods ==== */

/* dict:get(key) -> value, flags (when not 0) | nil */
static int l_get(lua_State *L)
{
    struct shdict *d;
    const char *k;
    size_t kl;
    if (!dict_key(L, &d, &k, &kl))
        return 2;
    struct shdict_val v;
    int rc = shdict_get(d, k, kl, clock_us(), false, &v, scratch(L), NULL);
    if (rc == -ENOENT) {
        lua_pushnil(L);
        return 1;
    }
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushstring(L, errstr(rc));
        return 2;
    }
    push_value(L, &v);
    if (v.flags == 0)
        return 1;
    lua_pushnumber(L, v.flags);
    return 2;
}

/* dict:get_stale(key) -> value, flags | nil, stale (true when expired) */
static int l_get_stale(lua_State *L)
{
    struct shdict *d;
    const char *k;
    size_t kl;
    if (!dict_key(L, &d, &k, &kl))
        return 2;
    struct shdict_val v;
    bool old = false;
    int rc = shdict_get(d, k, kl, clock_us(), true, &v, scratch(L), &old);
    if (rc == -ENOENT) {
        lua_pushnil(L);
        return 1;
    }
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushstring(L, errstr(rc));
        return 2;
    }
    push_value(L, &v);
    if (v.flags)
        lua_pushnumber(L, v.flags);
    else
        lua_pushnil(L);
    lua_pushboolean(L, old);
    return 3;
}

/* set, safe_set, add, safe_add, replace: (key, value, exptime?, flags?)
 * -> true, nil, forcible | false, err, forcible | nil, err (key, value) */
static int store(lua_State *L, unsigned mode)
{
    struct shdict *d;
    const char *k;
    size_t kl;
    if (!dict_key(L, &d, &k, &kl))
        return 2;
    struct shdict_val v;
    if (!get_value(L, 3, &v)) {
        lua_pushnil(L);
        lua_pushliteral(L, "bad value type");
        return 2;
    }
    int64_t ttl = opt_ttl(L, 4, "exptime");
    if (!lua_isnoneornil(L, 5)) {
        lua_Number f = lua_tonumber(L, 5);
        if (!lua_isnumber(L, 5) || !(f >= 0 && f <= 4294967295.0) ||
            f != floor(f))
            luaL_argerror(L, 5, "flags must be an integer from 0 to 2^32-1");
        v.flags = (uint32_t)f;
    }
    bool forcible = false;
    int rc = shdict_store(d, k, kl, &v, ttl, mode, clock_us(), &forcible);
    lua_pushboolean(L, rc == 0);
    if (rc == 0)
        lua_pushnil(L);
    else
        lua_pushstring(L, errstr(rc));
    lua_pushboolean(L, forcible);
    return 3;
}

static int l_set(lua_State *L) { return store(L, 0); }
static int l_safe_set(lua_State *L) { return store(L, SHDICT_SAFE); }
static int l_add(lua_State *L) { return store(L, SHDICT_ADD); }
static int l_safe_add(lua_State *L) { return store(L, SHDICT_ADD | SHDICT_SAFE); }
static int l_replace(lua_State *L) { return store(L, SHDICT_REPLACE); }

/* dict:incr(key, n, init?, init_ttl?) -> new value, nil, forcible
 * | nil, "not found" | nil, "not a number" | nil, "no memory" */
static int l_incr(lua_State *L)
{
    struct shdict *d;
    const char *k;
    size_t kl;
    if (!dict_key(L, &d, &k, &kl))
        return 2;
    double n = luaL_checknumber(L, 3);
    double init = 0;
    bool has_init = !lua_isnoneornil(L, 4);
    if (has_init)
        init = luaL_checknumber(L, 4);
    int64_t ttl = has_init ? opt_ttl(L, 5, "init_ttl") : 0;
    double out = 0;
    bool forcible = false;
    int rc = shdict_incr(d, k, kl, n, has_init ? &init : NULL, ttl,
                         clock_us(), &out, &forcible);
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushstring(L, errstr(rc));
        return 2;
    }
    lua_pushnumber(L, out);
    lua_pushnil(L);
    lua_pushboolean(L, forcible);
    return 3;
}

/* dict:delete(key) -> true */
static int l_delete(lua_State *L)
{
    struct shdict *d;
    const char *k;
    size_t kl;
    if (!dict_key(L, &d, &k, &kl))
        return 2;
    shdict_delete(d, k, kl);
    lua_pushboolean(L, 1);
    return 1;
}

/* dict:ttl(key) -> seconds left (0: never expires) | nil, "not found" */
static int l_ttl(lua_State *L)
{
    struct shdict *d;
    const char *k;
    size_t kl;
    if (!dict_key(L, &d, &k, &kl))
        return 2;
    int64_t us = 0;
    if (shdict_ttl(d, k, kl, clock_us(), &us) < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "not found");
        return 2;
    }
    lua_pushnumber(L, (lua_Number)us / 1e6);
    return 1;
}

/* dict:expire(key, exptime) -> true | nil, "not found" (exptime 0: never) */
static int l_expire(lua_State *L)
{
    struct shdict *d;
    const char *k;
    size_t kl;
    if (!dict_key(L, &d, &k, &kl))
        return 2;
    luaL_checknumber(L, 3);
    int64_t ttl = opt_ttl(L, 3, "exptime");
    if (shdict_expire(d, k, kl, ttl, clock_us()) < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "not found");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_flush_all(lua_State *L)
{
    shdict_flush_all(check_dict(L));
    return 0;
}

/* dict:flush_expired(max?) -> how many expired entries were removed */
static int l_flush_expired(lua_State *L)
{
    struct shdict *d = check_dict(L);
    lua_Number max = luaL_optnumber(L, 2, 0);
    luaL_argcheck(L, max >= 0 && max <= 1e9, 2, "max must be 0 to 1e9");
    size_t n = shdict_flush_expired(d, clock_us(), (size_t)max);
    lua_pushnumber(L, (lua_Number)n);
    return 1;
}

/* dict:get_keys(max?) -> { key, ... } of live entries, at most max (default
 * 1024; 0: all), most recently used first */
static int l_get_keys(lua_State *L)
{
    struct shdict *d = check_dict(L);
    lua_Number max = luaL_optnumber(L, 2, KEYS_DEFAULT);
    luaL_argcheck(L, max >= 0 && max <= 1e9, 2, "max must be 0 to 1e9");
    struct buf *b = scratch(L);
    buf_reset(b, 64 * 1024);
    long n = shdict_keys(d, clock_us(), (size_t)max, b);
    if (n < 0)
        return luaL_error(L, "get_keys: out of memory");
    lua_createtable(L, (int)n, 0);
    size_t off = 0;
    for (long i = 1; i <= n; i++) {
        uint16_t kl;
        memcpy(&kl, b->data + off, sizeof kl);
        lua_pushlstring(L, b->data + off + sizeof kl, kl);
        lua_rawseti(L, -2, (int)i);
        off += sizeof kl + kl;
    }
    return 1;
}

/* dict:capacity() -> bytes; dict:free_space() -> bytes not accounted */
static int l_capacity(lua_State *L)
{
    struct shdict_stats st;
    shdict_stats(check_dict(L), &st);
    lua_pushnumber(L, (lua_Number)st.capacity);
    return 1;
}

static int l_free_space(lua_State *L)
{
    struct shdict_stats st;
    shdict_stats(check_dict(L), &st);
    lua_pushnumber(L, (lua_Number)(st.capacity - st.used));
    return 1;
}

static int l_tostring(lua_State *L)
{
    lua_pushfstring(L, "luring.shdict: %s", shdict_name(check_dict(L)));
    return 1;
}

static int l_scratch_gc(lua_State *L)
{
    buf_free(lua_touserdata(L, 1));
    return 0;
}

/* ==== declaration ==== */

/* size: bytes (a number) or a string of digits with k, m or g after. */
static size_t check_size(lua_State *L, int t)
{
    lua_getfield(L, t, "size");
    lua_Number v = -1;
    if (lua_type(L, -1) == LUA_TNUMBER) {
        v = lua_tonumber(L, -1);
    } else if (lua_type(L, -1) == LUA_TSTRING) {
        const char *s = lua_tostring(L, -1);
        v = 0;
        for (; *s >= '0' && *s <= '9' && v <= SIZE_MAX_BYTES; s++)
            v = v * 10 + (*s - '0');
        switch (*s) {
        case 'k': case 'K': v *= 1024; s++; break;
        case 'm': case 'M': v *= 1048576; s++; break;
        case 'g': case 'G': v *= 1073741824; s++; break;
        default: break;
        }
        if (*s || s == lua_tostring(L, -1))
            v = -1;
    }
    lua_pop(L, 1);
    if (!(v >= SIZE_MIN && v <= SIZE_MAX_BYTES))
        luaL_error(L, "luring.shared_dict: size must be bytes from 1024 to "
                      "2^40: a number, or a string such as \"512k\", "
                      "\"10m\" or \"1g\"");
    return (size_t)v;
}

/* luring.shared_dict{ name = , size = } -> dict, also luring.shared[name]
 * (upvalue 1: the luring.shared table). The process has one dictionary per
 * name: a reload's declaration finds it again, with its contents. */
static int l_shared_dict(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
        if (strcmp(k, "name") != 0 && strcmp(k, "size") != 0)
            return luaL_error(L, "luring.shared_dict: unknown option '%s'", k);
    }
    lua_getfield(L, 1, "name");
    size_t nl = 0;
    const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &nl) : NULL;
    if (name == NULL || nl == 0 || nl >= SHDICT_NAME_MAX || strlen(name) != nl)
        return luaL_error(L, "luring.shared_dict: name must be a string of 1 "
                             "to %d bytes", SHDICT_NAME_MAX - 1);
    size_t size = check_size(L, 1);
    char err[128];
    struct shdict *d = shdict_bind(name, size, err, sizeof err);
    if (d == NULL)
        return luaL_error(L, "luring.shared_dict %s: %s", name, err);
    struct shdict **pd = lua_newuserdata(L, sizeof *pd);
    *pd = d;
    luaL_getmetatable(L, SHDICT_MT);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, lua_upvalueindex(1), name);
    return 1;
}

void lshdict_open(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"get", l_get},
        {"get_stale", l_get_stale},
        {"set", l_set},
        {"safe_set", l_safe_set},
        {"add", l_add},
        {"safe_add", l_safe_add},
        {"replace", l_replace},
        {"incr", l_incr},
        {"delete", l_delete},
        {"ttl", l_ttl},
        {"expire", l_expire},
        {"flush_all", l_flush_all},
        {"flush_expired", l_flush_expired},
        {"get_keys", l_get_keys},
        {"capacity", l_capacity},
        {"free_space", l_free_space},
        {NULL, NULL},
    };
    luaL_newmetatable(L, SHDICT_MT);
    lua_newtable(L);
    /* the copy buffer, freed with the state */
    struct buf *b = lua_newuserdata(L, sizeof *b);
    memset(b, 0, sizeof *b);
    lua_newtable(L);
    lua_pushcfunction(L, l_scratch_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    luaL_openlib(L, NULL, methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    /* on the luring.core table at -1: shared, shared_dict */
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "shared");
    lua_pushcclosure(L, l_shared_dict, 1);
    lua_setfield(L, -2, "shared_dict");
}
