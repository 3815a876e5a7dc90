/* l_inval.c - invalidation (RFC 9111 §4.4) from Lua and after unsafe
 * requests, on every worker:
 *   cache:purge(key)       -> true if a response was stored under key
 *   cache:ban(prefix)      -> how many responses whose key starts with it
 *   cache:purge_tag(tag)   -> how many responses tagged so
 *   luring.cache{ tag_header = "Name" } (lcache: linval_configure)
 *   cache:fetch passing a POST, PUT, DELETE, PATCH (any method but GET,
 *   HEAD, OPTIONS, TRACE): a 2xx/3xx response invalidates the key and the
 *   same-host Location / Content-Location keys (linval_watch).
 * With --workers N a cache is one store for every worker (lua/l_cache.c):
 * an invalidation is one store operation under its lock, seen by all at
 * once, and the counts returned are the process's. */
#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/rt.h"
#include "base/log.h"
#include "core/inval.h"
#include "core/req.h"
#include "http/fields.h"
#include "http/h1_server.h"
#include "store/cache.h"

#define CACHE_MT "luring.cache" /* l_cache.c's */

enum inval_kind { INV_KEY, INV_PREFIX, INV_TAG };

/* Watches a passed unsafe request's response until its head: a 2xx or
 * 3xx invalidates key and the keys of the same-host Location and
 * Content-Location URIs. Holds the response's object until then (the
 * client may leave: the origin acted on the request all the same). */
struct inval_watch {
    struct store_waiter sw;
    struct inval_watch *prev, *next; /* rt->inval_watches */
    struct cache_obj *obj;
    struct cache *c;
    struct lrt *rt;
    size_t klen, baselen; /* baselen: key bytes before the target, or
                           * SIZE_MAX when the key does not end with it */
    size_t hl;            /* the request's Host, after the key in data */
    char data[];
};

/* ==== applying, here and on the other workers ==== */

static size_t apply(struct cache *c, enum inval_kind k, const char *a,
                    size_t n)
{
    switch (k) {
    case INV_KEY: return cache_purge_key(c, a, n);
    case INV_PREFIX: return cache_ban(c, a, n);
    case INV_TAG: return cache_purge_tag(c, a, n);
    }
    return 0;
}

static void watch_end(struct inval_watch *iw);

void linval_unregister(struct lrt *rt)
{
    /* responses still awaited (the worker stops): nothing invalidated; an
     * origin's cleanup drops its objects without a word to their waiters */
    while (rt->inval_watches) {
        /* after origin_cleanup (worker.c): the fill is gone already */
        rt->inval_watches->obj->fill_wake = NULL;
        watch_end(rt->inval_watches);
    }
}

/* ==== Lua ==== */

static struct cache *check_cache(lua_State *L, int idx)
{
    struct cache **pc = luaL_checkudata(L, idx, CACHE_MT);
    if (*pc == NULL)
        luaL_error(L, "cache is not available while checking the script");
    return *pc;
}

/* cache:purge(key) -> true if a response was stored under key (every
 * variant goes; a hit-for-miss marker too, uncounted) */
static int l_purge(lua_State *L)
{
    struct cache *c = check_cache(L, 1);
    size_t n;
    const char *key = luaL_checklstring(L, 2, &n);
    lua_pushboolean(L, apply(c, INV_KEY, key, n) > 0);
    return 1;
}

/* cache:ban(prefix) -> how many responses whose key starts with prefix
 * ("": all of them) went */
static int l_ban(lua_State *L)
{
    struct cache *c = check_cache(L, 1);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    lua_pushnumber(L, (lua_Number)apply(c, INV_PREFIX, p, n));
    return 1;
}

/* cache:purge_tag(tag) -> how many responses tagged `tag` went */
static int l_purge_tag(lua_State *L)
{
    struct cache *c = check_cache(L, 1);
    size_t n;
    const char *t = luaL_checklstring(L, 2, &n);
    if (n == 0 || n > TAG_LEN_MAX) { /* no response has such a tag */
        lua_pushnumber(L, 0);
        return 1;
    }
    lua_pushnumber(L, (lua_Number)apply(c, INV_TAG, t, n));
    return 1;
}

void linval_open(lua_State *L)
{
    luaL_getmetatable(L, CACHE_MT);
    lua_getfield(L, -1, "__index");
    lua_pushcfunction(L, l_purge);
    lua_setfield(L, -2, "purge");
    lua_pushcfunction(L, l_ban);
    lua_setfield(L, -2, "ban");
    lua_pushcfunction(L, l_purge_tag);
    lua_setfield(L, -2, "purge_tag");
    lua_pop(L, 2);
}

void linval_configure(lua_State *L, struct cache *c, int t)
{
    lua_getfield(L, t, "tag_header");
    size_t n = 0;
    const char *h = lua_isnil(L, -1) ? "" : lua_tolstring(L, -1, &n);
    if (h == NULL || n >= sizeof c->tag_header ||
        (n > 0 && !field_is_token(h, n)))
        luaL_error(L, "luring.cache: tag_header must be a field name "
                      "(a token of at most %d bytes)",
                   (int)sizeof c->tag_header - 1);
    if (strlen(c->tag_header) != n || memcmp(c->tag_header, h, n) != 0) {
        memcpy(c->tag_header, h, n); /* a shared cache: only a change */
        c->tag_header[n] = 0;
    }
    lua_pop(L, 1);
}

/* ==== after an unsafe request (RFC 9111 §4.4) ==== */


/* The keys of o's Location and Content-Location fields, invalidated. */
static void invalidate_locations(struct inval_watch *iw)
{
    const struct cache_obj *o = iw->obj;
    struct buf k = { 0 };
    size_t i = 0;
    struct field_line f;
    while (field_line_next(o->hdrs.data, o->hdrs.len, &i, &f)) {
        if ((field_name_is(f.name, f.nlen, "location", 8) ||
             field_name_is(f.name, f.nlen, "content-location", 16)) &&
            inval_uri_key(iw->data, iw->baselen, iw->data + iw->klen, iw->hl,
                          f.value, f.vlen, &k) &&
            !(k.len == iw->klen && memcmp(k.data, iw->data, k.len) == 0))
            apply(iw->c, INV_KEY, k.data, k.len);
    }
    buf_free(&k);
}

static void watch_end(struct inval_watch *iw)
{
    struct cache_obj *o = iw->obj;
    if (iw->prev)
        iw->prev->next = iw->next;
    else
        iw->rt->inval_watches = iw->next;
    if (iw->next)
        iw->next->prev = iw->prev;
    cache_obj_unwatch(o, &iw->sw); /* a reader gone before: the fill ends */
    cache_obj_unref(o);            /* the notifier holds its own ref */
    free(iw);
}

static void on_head(struct store_waiter *sw)
{
    struct inval_watch *iw = (struct inval_watch *)sw;
    struct cache_obj *o = iw->obj;
    if (o->head_ready) {
        /* a non-error status (RFC 9111 §4.4): 2xx, 3xx; 1xx never
         * reaches here (interim responses are not heads) */
        if (o->status >= 200 && o->status < 400) {
            apply(iw->c, INV_KEY, iw->data, iw->klen);
            if (iw->baselen != SIZE_MAX)
                invalidate_locations(iw);
        }
        watch_end(iw);
    } else if (o->state != OBJ_FILLING) { /* failed: no response */
        watch_end(iw);
    }
}

bool linval_unsafe(const struct req *r)
{
    switch (r->m.method) {
    case H1_M_GET: case H1_M_HEAD: case H1_M_OPTIONS: case H1_M_TRACE:
        return false; /* safe (RFC 9110 §9.2.1) */
    default:
        return true;  /* unknown methods included (RFC 9111 §4.4) */
    }
}

int linval_watch(struct req *r, struct cache *c, const char *key,
                 size_t klen, const char *target, size_t tlen)
{
    struct cache_obj *o = r->obj;
    if (o == NULL) /* already answered (the client left) */
        return 0;
    size_t hl = 0;
    const char *host = h1_header(&r->m, "host", 4, &hl);
    if (host == NULL)
        hl = 0;
    struct inval_watch *iw = malloc(sizeof *iw + klen + hl);
    if (iw == NULL)
        return -1;
    iw->sw.notify = on_head;
    iw->obj = o;
    iw->c = c;
    iw->rt = lrt_current(); /* a handler's: never NULL */
    iw->klen = klen;
    iw->hl = hl;
    iw->baselen = tlen <= klen && tlen > 0 &&
                          memcmp(key + klen - tlen, target, tlen) == 0
                      ? klen - tlen : SIZE_MAX;
    memcpy(iw->data, key, klen);
    if (hl)
        memcpy(iw->data + klen, host, hl);
    iw->prev = NULL;
    iw->next = iw->rt->inval_watches;
    if (iw->next)
        iw->next->prev = iw;
    iw->rt->inval_watches = iw;
    cache_obj_ref(o);
    cache_obj_watch(o, &iw->sw);
    if (o->head_ready || o->state != OBJ_FILLING)
        on_head(&iw->sw); /* it came already (the call frees iw) */
    return 0;
}
