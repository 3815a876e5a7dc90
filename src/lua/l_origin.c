/* l_origin.c - origin:request{method=, path=, headers=, body=}: a request a
 * handler makes to an origin itself, answered with status, headers and a
 * body reader whose read() yields until the next piece arrives. The
 * response fills a stream object (store/cache.h) of the worker's scratch
 * cache, as a pass-through does: the origin is paused while the reader is
 * CACHE_STREAM_AHEAD behind, each chunk is freed once read, and closing the
 * reader before the end (reader:close(), garbage collection, or the end of
 * the request that made it) ends the fill and closes its connection. */
#include <lauxlib.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "lua/rt.h"
#include "core/origin.h"
#include "core/req.h"
#include "http/fields.h"
#include "store/cache.h"

#define READER_MT "luring.origin_reader"

enum { W_NONE, W_HEAD, W_BODY }; /* what the request waits for */

/* A response being read: a Lua userdata (the reader), linked in its
 * worker's list while open so that the end of its request closes it. */
struct lreader {
    struct store_waiter sub;  /* watching obj */
    struct cache_obj *obj;    /* the response (one ref); NULL once closed */
    size_t off;               /* body bytes returned so far */
    struct req *r;            /* the request whose handler made it */
    uint32_t gen;             /* r's generation then */
    struct lrt *rt;           /* linked in rt->readers while rt != NULL */
    lua_State *L;             /* its script's state (self_ref's registry) */
    int self_ref;             /* anchors the userdata while r waits on it */
    uint8_t wait;             /* W_HEAD or W_BODY while r is parked on it */
    bool eof;                 /* the body was read to its end */
    struct lreader *prev, *next; /* rt->readers */
    struct buf out;           /* the request's bytes, until sent */
};

static const struct req_op op_head, op_body;
static void reader_mt(lua_State *L);

/* ==== closing ==== */

/* Stop reading: the object is released (a stream fill nobody watches ends
 * at its next bytes, closing its connection, unless it is complete), the
 * reader leaves its worker's list. `unref`: drop the anchor too (not while
 * the state is being closed). */
static void reader_close(struct lreader *rd, bool unref)
{
    if (rd->self_ref != LUA_NOREF && unref)
        luaL_unref(rd->L, LUA_REGISTRYINDEX, rd->self_ref);
    rd->self_ref = LUA_NOREF;
    rd->wait = W_NONE;
    if (rd->obj) {
        struct cache_obj *o = rd->obj;
        rd->obj = NULL;
        cache_obj_unwatch(o, &rd->sub);
        cache_obj_unref(o);
    }
    if (rd->rt) {
        *(rd->prev ? &rd->prev->next : &rd->rt->readers) = rd->next;
        if (rd->next)
            rd->next->prev = rd->prev;
        rd->prev = rd->next = NULL;
        rd->rt = NULL;
    }
}

void lorigin_req_end(struct req *r)
{
    struct lrt *w = lrt_current();
    struct lreader *rd = w ? w->readers : NULL, *next;
    for (; rd; rd = next) {
        next = rd->next;
        if (rd->r == r)
            reader_close(rd, true);
    }
}

void lorigin_cleanup(struct lrt *w)
{
    while (w->readers)
        reader_close(w->readers, false); /* the states close after this */
}

static int l_reader_gc(lua_State *L)
{
    struct lreader *rd = luaL_checkudata(L, 1, READER_MT);
    reader_close(rd, false); /* unreachable: not anchored */
    buf_free(&rd->out);
    return 0;
}

static int l_reader_close(lua_State *L)
{
    struct lreader *rd = luaL_checkudata(L, 1, READER_MT);
    reader_close(rd, true); /* read() on it: nil, "closed" (nil at the end) */
    return 0;
}

/* ==== waiting ==== */

/* The reader request r waits on. */
static struct lreader *waiting(struct req *r)
{
    for (struct lreader *rd = lrt_current()->readers; rd; rd = rd->next)
        if (rd->r == r && rd->wait != W_NONE)
            return rd;
    return NULL;
}

/* Is what r waits for on rd there? */
static bool reader_ready(const struct lreader *rd)
{
    const struct cache_obj *o = rd->obj;
    if (rd->wait == W_HEAD)
        return o->head_ready || o->state != OBJ_FILLING;
    return rd->wait == W_BODY && (o->len > rd->off || o->state != OBJ_FILLING);
}

/* store_waiter: the response changed. If the request waits on this reader
 * and what it waits for is there, it is woken once the current completion
 * is handled (req_defer, then lorigin_wake): never from inside the fill,
 * which a script closing the reader would end under its feet. */
static void reader_notify(struct store_waiter *sw)
{
    struct lreader *rd = (struct lreader *)((char *)sw - offsetof(struct lreader, sub));
    if (reader_ready(rd))
        req_defer(rd->r);
}

void lorigin_wake(struct req *r)
{
    struct lreader *rd = waiting(r);
    if (rd && rd->obj && reader_ready(rd) &&
        req_parked_on(r, rd->wait == W_HEAD ? &op_head : &op_body))
        req_wake(r);
}

/* Park r on rd (the userdata at idx) and yield. */
static int wait_on(lua_State *L, struct lreader *rd, int idx, int what)
{
    rd->wait = (uint8_t)what;
    lua_pushvalue(L, idx);
    rd->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    req_park(rd->r, what == W_HEAD ? &op_head : &op_body);
    return lua_yield(L, 0);
}

/* r was resumed from waiting on rd: the userdata pushed, the anchor gone. */
static struct lreader *unpark(struct req *r)
{
    struct lreader *rd = waiting(r);
    lua_rawgeti(r->co, LUA_REGISTRYINDEX, rd->self_ref);
    luaL_unref(rd->L, LUA_REGISTRYINDEX, rd->self_ref);
    rd->self_ref = LUA_NOREF;
    rd->wait = W_NONE;
    return rd;
}

/* The client left while r waited: every reader of r is closed. */
static bool reader_cancel(struct req *r)
{
    lorigin_req_end(r);
    return true;
}

/* ==== the response head ==== */

/* Push origin:request's results: status, headers, reader (the userdata at
 * idx), or nil, "timeout" | "bad gateway" (the reader is closed). */
static int push_head(lua_State *L, struct lreader *rd, int idx)
{
    struct cache_obj *o = rd->obj;
    if (!o->head_ready) {
        int status = o->status;
        reader_close(rd, true);
        rd->eof = true;
        lua_pushnil(L);
        lua_pushstring(L, status == 504 ? "timeout" : "bad gateway");
        return 2;
    }
    lua_pushinteger(L, o->status);
    lfields_push(L, o->hdrs.data, o->hdrs.len, NULL, false);
    /* the body's length, when the origin announced one (luring keeps the
     * framing fields out of o->hdrs) */
    int64_t cl = o->head_only ? o->head_cl
                 : o->state == OBJ_COMPLETE ? (int64_t)o->len : o->total;
    if (cl >= 0 && o->status != 204 && o->status != 304 && o->status >= 200) {
        char n[24];
        lua_pushstring(L, "content-length");
        lua_pushlstring(L, n, (size_t)snprintf(n, sizeof n, "%lld", (long long)cl));
        lua_rawset(L, -3);
    }
    lua_pushvalue(L, idx);
    return 3;
}

static void head_resume(struct req *r)
{
    struct lreader *rd = unpark(r);
    int t = lua_gettop(r->co);
    int n = push_head(r->co, rd, t);
    lua_remove(r->co, t);
    lrt_continue(r, n);
}

static const struct req_op op_head = {
    "origin:request", reader_cancel, head_resume, NULL,
};

/* ==== the request ==== */

static void put(lua_State *L, struct buf *b, const void *p, size_t n)
{
    if (buf_append(b, p, n) < 0)
        luaL_error(L, "origin:request: out of memory");
}

/* A field value: no control character but HTAB (RFC 9110 §5.5). */
static bool value_ok(const char *v, size_t n)
{
    return field_value_ok(v, n);
}

/* One "name: value" line per value of the field at the stack top: a
 * string, a number or a list of them (repeated fields). */
static void put_field(lua_State *L, struct buf *b, const char *name, size_t nl)
{
    int t = lua_gettop(L);
    int n = lrt_values(L, t);
    for (int i = 1; i <= n; i++) {
        size_t vl;
        const char *v = lrt_value(L, t, i, &vl);
        if (v == NULL)
            luaL_error(L, "origin:request: header '%s': string, number or "
                          "list of them expected", name);
        if (!value_ok(v, vl))
            luaL_error(L, "origin:request: header '%s': the value holds a "
                          "control character", name);
        put(L, b, name, nl);
        put(L, b, ": ", 2);
        put(L, b, v, vl);
        put(L, b, "\r\n", 2);
        lua_pop(L, 1);
    }
}

#define NAME_IS(n, nl, lit) field_name_is(n, nl, lit, sizeof(lit) - 1)

/* The header fields of t.headers (at idx, or 0), minus those luring owns:
 * hop-by-hop ones (RFC 9110 §7.6.1), Content-Length (luring frames the
 * body) and Expect (the body goes out with the head). Returns whether a
 * Host was given. */
static bool put_fields(lua_State *L, struct buf *b, int idx)
{
    bool has_host = false;
    if (idx == 0)
        return false;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "origin:request: header names must be strings");
        size_t nl;
        const char *n = lua_tolstring(L, -2, &nl);
        if (!field_is_token(n, nl))
            luaL_error(L, "origin:request: invalid header name '%s' (not a "
                          "token, RFC 9110 §5.1)", n);
        if (field_is_hop_by_hop(n, nl) || NAME_IS(n, nl, "content-length") ||
            NAME_IS(n, nl, "expect")) {
            lua_pop(L, 1);
            continue;
        }
        if (NAME_IS(n, nl, "host"))
            has_host = true;
        put_field(L, b, n, nl);
        lua_pop(L, 1);
    }
    return has_host;
}

/* origin_build_pt: the bytes built beforehand. */
static int build_copy(void *arg, struct buf *out)
{
    struct lreader *rd = arg;
    return buf_append(out, rd->out.data, rd->out.len);
}

/* t[k] at the stack top; nil or a value of type `ty`, else raises. */
static int opt_field(lua_State *L, int t, const char *k, int ty)
{
    lua_getfield(L, t, k);
    if (!lua_isnil(L, -1) && lua_type(L, -1) != ty)
        luaL_error(L, "origin:request: %s must be a %s", k, lua_typename(L, ty));
    return lua_gettop(L);
}

static struct origin *check_origin(lua_State *L, int idx)
{
    struct origin **po = luaL_checkudata(L, idx, LRT_ORIGIN_MT);
    if (*po == NULL)
        luaL_error(L, "origin is not available while checking the script");
    return *po;
}

static int l_origin_request(lua_State *L)
{
    struct origin *o = check_origin(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    struct lrt *w = lrt_current();
    struct req *r = w ? w->cur : NULL;
    if (r == NULL || r->co != L)
        return luaL_error(L, "origin:request: only inside a request handler "
                             "(not the main chunk, a coroutine it made or a "
                             "deliver hook)");
    if (o->kind != ORIGIN_HTTP)
        return luaL_error(L, "origin:request: origin %s is not an http:// "
                             "origin", o->name);
    lua_pushnil(L);
    while (lua_next(L, 2)) { /* a misspelt field is an error, not ignored */
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        if (strcmp(k, "method") && strcmp(k, "path") && strcmp(k, "headers") &&
            strcmp(k, "body"))
            return luaL_error(L, "origin:request: unknown field '%s' (method, "
                                 "path, headers, body)", k);
        lua_pop(L, 1);
    }
    int mi = opt_field(L, 2, "method", LUA_TSTRING);
    int pi = opt_field(L, 2, "path", LUA_TSTRING);
    int hi = opt_field(L, 2, "headers", LUA_TTABLE);
    int bi = opt_field(L, 2, "body", LUA_TSTRING);
    size_t ml = 3, pl, bl = 0;
    const char *method = "GET";
    if (!lua_isnil(L, mi)) {
        method = lua_tolstring(L, mi, &ml);
        if (!field_is_token(method, ml))
            return luaL_error(L, "origin:request: invalid method (a token, "
                                 "RFC 9110 §9.1)");
    }
    if (lua_isnil(L, pi))
        return luaL_error(L, "origin:request: path is required");
    const char *path = lua_tolstring(L, pi, &pl);
    /* origin-form (RFC 9112 §3.2.1), or "*" for OPTIONS (§3.2.4) */
    bool star = pl == 1 && path[0] == '*' && ml == 7 && !memcmp(method, "OPTIONS", 7);
    if (pl == 0 || (path[0] != '/' && !star))
        return luaL_error(L, "origin:request: the path must start with /");
    if (!target_is_visible(path, pl))
        return luaL_error(L, "origin:request: the path must be visible "
                             "ASCII (no space, CR, LF, NUL, control or "
                             "non-ASCII byte: percent-encode them)");
    const char *body = lua_isnil(L, bi) ? NULL : lua_tolstring(L, bi, &bl);

    struct lreader *rd = lua_newuserdata(L, sizeof *rd);
    int ud = lua_gettop(L);
    memset(rd, 0, sizeof *rd);
    rd->self_ref = LUA_NOREF;
    reader_mt(L);
    lua_setmetatable(L, -2);
    /* built whole before anything starts: a bad header raises with nothing
     * sent, and the buffer goes with the userdata (its __gc) */
    struct buf *b = &rd->out;
    put(L, b, method, ml);
    put(L, b, " ", 1);
    put(L, b, path, pl);
    put(L, b, " HTTP/1.1\r\n", 11);
    if (!put_fields(L, b, lua_isnil(L, hi) ? 0 : hi)) {
        put(L, b, "Host: ", 6);
        put(L, b, o->host, strlen(o->host));
        put(L, b, "\r\n", 2);
    }
    /* RFC 9110 §8.6: Content-Length for a body, and for the methods that
     * define one even when it is empty */
    bool head = ml == 4 && !memcmp(method, "HEAD", 4);
    if (body || (ml == 4 && !memcmp(method, "POST", 4)) ||
        (ml == 3 && !memcmp(method, "PUT", 3)) ||
        (ml == 5 && !memcmp(method, "PATCH", 5))) {
        char line[48];
        put(L, b, line, (size_t)snprintf(line, sizeof line,
                                         "Content-Length: %zu\r\n", bl));
    }
    put(L, b, "\r\n", 2);
    if (bl)
        put(L, b, body, bl);

    struct cache_obj *obj = cache_obj_new(lcache_scratch(L, w), "(origin:request)", 16);
    if (obj == NULL)
        return luaL_error(L, "origin:request: out of memory");
    cache_obj_stream(obj, NULL, NULL); /* origin_request sets the wake */
    rd->obj = obj;                     /* cache_obj_new's ref */
    rd->r = r;
    rd->gen = r->gen;
    rd->L = r->ls->L;
    rd->rt = w;
    rd->next = w->readers;
    if (w->readers)
        w->readers->prev = rd;
    w->readers = rd;
    rd->sub.notify = reader_notify;
    cache_obj_watch(obj, &rd->sub);
    /* RFC 9110 §9.2.2: idempotent methods may be sent again on a fresh
     * connection when a pooled one failed before any response byte */
    unsigned flags = ORQ_PASS;
    if (head || (ml == 3 && (!memcmp(method, "GET", 3) || !memcmp(method, "PUT", 3))) ||
        (ml == 6 && !memcmp(method, "DELETE", 6)) ||
        (ml == 7 && !memcmp(method, "OPTIONS", 7)))
        flags |= ORQ_IDEMPOTENT;
    if (head)
        flags |= ORQ_HEAD;
    origin_request(o, obj, flags, build_copy, rd);
    buf_free(&rd->out);
    if (rd->obj->head_ready || rd->obj->state != OBJ_FILLING)
        return push_head(L, rd, ud); /* failed at once */
    return wait_on(L, rd, ud, W_HEAD);
}

/* ==== the body ==== */

/* Push the next piece of the body (at most up to the end of its chunk),
 * nil at the end, nil, "truncated" when the response broke; 0 when
 * nothing is there yet. */
static int read_piece(lua_State *L, struct lreader *rd)
{
    struct cache_obj *o = rd->obj;
    if (rd->off < o->len) {
        size_t n;
        const char *p = cache_obj_at(o, rd->off, &n);
        lua_pushlstring(L, p, n);
        /* the piece is copied: its chunk can go once all of it is read
         * (cache_obj_release frees stream chunks as their sends do) */
        cache_obj_ref(o);
        cache_obj_release(NULL, o, CACHE_SEG(rd->off / CACHE_CHUNK, n));
        rd->off += n;
        cache_obj_read(o, rd->off); /* may let a paused fill go on */
        return 1;
    }
    if (o->state == OBJ_COMPLETE) {
        reader_close(rd, true); /* read to the end: nothing is abandoned */
        rd->eof = true;
        lua_pushnil(L);
        return 1;
    }
    if (o->state == OBJ_FAILED) {
        reader_close(rd, true);
        lua_pushnil(L);
        lua_pushliteral(L, "truncated");
        return 2;
    }
    return 0;
}

static void body_resume(struct req *r)
{
    struct lreader *rd = unpark(r);
    int t = lua_gettop(r->co); /* the userdata stays reachable meanwhile */
    int n = read_piece(r->co, rd);
    lua_remove(r->co, t);
    lrt_continue(r, n);
}

static const struct req_op op_body = {
    "reader:read", reader_cancel, body_resume, NULL,
};

static int l_reader_read(lua_State *L)
{
    struct lreader *rd = luaL_checkudata(L, 1, READER_MT);
    if (rd->obj == NULL) {
        lua_pushnil(L);
        if (rd->eof)
            return 1;
        lua_pushliteral(L, "closed");
        return 2;
    }
    struct lrt *w = lrt_current();
    if (w == NULL || w->cur != rd->r || rd->r->co != L || rd->r->gen != rd->gen)
        return luaL_error(L, "reader:read: only in the handler of the request "
                             "that made the origin request");
    int n = read_piece(L, rd);
    return n ? n : wait_on(L, rd, 1, W_BODY);
}

/* ==== registration ==== */

/* Push the readers' metatable, made on first use: a script that never
 * calls origin:request adds nothing to its registry (a registry that grows
 * may move the runtime's integer refs from its array part to its hash
 * part, which costs every request a little: scripts/instr hit-1k). */
static void reader_mt(lua_State *L)
{
    static const luaL_Reg reader_m[] = {
        {"read", l_reader_read},
        {"close", l_reader_close},
        {NULL, NULL},
    };
    if (!luaL_newmetatable(L, READER_MT))
        return;
    lua_newtable(L);
    luaL_register(L, NULL, reader_m);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_reader_gc);
    lua_setfield(L, -2, "__gc");
}

void lorigin_open(lua_State *L)
{
    /* origin:request, beside l_cache.c's origin methods */
    luaL_getmetatable(L, LRT_ORIGIN_MT);
    lua_getfield(L, -1, "__index");
    lua_pushcfunction(L, l_origin_request);
    lua_setfield(L, -2, "request");
    lua_pop(L, 2);
}
