/* l_origin.c - origin:request{method=, path=, headers=, body=}: a request a
 * handler makes to an origin itself, answered with status, headers and a
 * body reader whose read() yields until the next piece arrives. The
 * response fills a stream object (store/cache.h) of the worker's scratch
 * cache, as a pass-through does: the origin is paused while the reader is
 * CACHE_STREAM_AHEAD behind, each chunk is freed once read, and closing the
 * reader before the end (reader:close(), garbage collection, or the end of
 * the request that made it) ends the fill and closes its connection.
 *
 * luring.http.request{url=, ...} (lua/luring/http.lua wraps it) is the same
 * request to any http:// URL: the host is looked up off the worker
 * (lsock_resolve), then the request goes out on the pool of the declared
 * origin with that address, or else on an origin made for the address
 * (struct hpool, at most LHTTP_POOLS_MAX per worker); each wait is bounded
 * by the call's timeout, and failures say why (origin.h fail_why). */
#include <arpa/inet.h>
#include <ctype.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lua/rt.h"
#include "core/origin.h"
#include "core/req.h"
#include "http/fields.h"
#include "io/resolve.h"
#include "io/timer.h"
#include "store/cache.h"

#define READER_MT "luring.origin_reader"

enum { W_NONE, W_HEAD, W_BODY, W_RESOLVE }; /* what the request waits for */

#define HTTP_POLL_MS 100        /* how often a waiting call's deadline is
                                 * looked at (the worker's tick) */
#define HTTP_KEEPALIVE_MS 60000 /* an idle pooled connection's life */
#define HTTP_KEEPALIVE_MAX 32   /* idle connections per address */
#define HTTP_FOREVER_MS 31536000000LL /* the made origins' own timeouts:
                                       * the call's deadline bounds it */

struct hlookup;

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
    /* luring.http.request's */
    bool http;                /* made by it: errors say why */
    bool timed_out;           /* the current wait passed its deadline */
    unsigned flags;           /* ORQ_* of the request */
    int64_t timeout_ms;       /* each wait's bound; 0: none */
    int64_t deadline;         /* of the current wait (loop_now ms) */
    struct timer tm;          /* polls the deadline while waiting */
    struct hlookup *lk;       /* its name lookup in flight, or NULL */
    int gai;                  /* the lookup's getaddrinfo code */
    struct sockaddr_storage sa; /* the address to connect to */
    socklen_t salen;
    char host[256];           /* the URL's host (lookups, messages) */
    char auth[264];           /* the URL's authority: host[:port] */
    char why[96];             /* why the response failed (fail_why) */
};

static const struct req_op op_head, op_body, op_resolve;
static void reader_mt(lua_State *L);
static void http_lookup_orphan(struct hlookup *lk);

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
    timer_disarm(&rd->tm);
    if (rd->lk) { /* its answer finds nobody */
        http_lookup_orphan(rd->lk);
        rd->lk = NULL;
    }
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

static void http_free(struct lrt *w);

void lorigin_cleanup(struct lrt *w)
{
    while (w->readers)
        reader_close(w->readers, false); /* the states close after this */
    http_free(w);
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
    const char *why = rd->rt ? rd->rt->up->fail_why : NULL;
    if (rd->http && why && !rd->why[0] && rd->obj->state == OBJ_FAILED) {
        /* told from inside the failure (origin.h): keep the reason */
        snprintf(rd->why, sizeof rd->why, "%s", why);
    }
    if (reader_ready(rd))
        req_defer(rd->r);
}

static const struct req_op *op_of(int what)
{
    return what == W_HEAD ? &op_head : what == W_BODY ? &op_body : &op_resolve;
}

void lorigin_wake(struct req *r)
{
    struct lreader *rd = waiting(r);
    if (rd && (rd->timed_out || (rd->obj && reader_ready(rd))) &&
        req_parked_on(r, op_of(rd->wait)))
        req_wake(r);
}

/* The wait's timer (HTTP_POLL_MS): past the deadline, the request is
 * woken (after this completion, req_defer) to fail with "timeout". */
static void deadline_poll(struct timer_queue *q, struct timer *t)
{
    struct lreader *rd = (struct lreader *)((char *)t - offsetof(struct lreader, tm));
    if (rd->rt == NULL || rd->wait == W_NONE)
        return;
    if (loop_now(rd->rt->loop) >= rd->deadline) {
        rd->timed_out = true;
        req_defer(rd->r);
    } else {
        timer_arm(q, t, loop_now(rd->rt->loop));
    }
}

/* Park r on rd (the userdata at idx), anchored meanwhile; a luring.http
 * reader's wait is bounded by rd->deadline. */
static void park_on(lua_State *L, struct lreader *rd, int idx, int what)
{
    rd->wait = (uint8_t)what;
    rd->timed_out = false;
    if (what == W_BODY && rd->rt) /* each read: timeout_ms for its piece */
        rd->deadline = loop_now(rd->rt->loop) + rd->timeout_ms;
    lua_pushvalue(L, idx);
    rd->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (rd->timeout_ms > 0 && rd->rt) {
        struct timer_queue *q = timers_queue(rd->rt->up->timers, HTTP_POLL_MS,
                                             deadline_poll);
        if (q) /* out of memory: unbounded, as the origin's own timeouts */
            timer_arm(q, &rd->tm, loop_now(rd->rt->loop));
    }
    req_park(rd->r, op_of(what));
}

/* park_on, and yield. */
static int wait_on(lua_State *L, struct lreader *rd, int idx, int what)
{
    park_on(L, rd, idx, what);
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
    timer_disarm(&rd->tm);
    return rd;
}

/* Push nil and the failure of a luring.http response: the timeout, the
 * reason its fill gave, or what its status says. */
static int push_http_err(lua_State *L, struct lreader *rd, int status)
{
    lua_pushnil(L);
    if (rd->timed_out)
        lua_pushliteral(L, "timeout");
    else if (rd->why[0])
        lua_pushstring(L, rd->why);
    else
        lua_pushstring(L, status == 504 ? "timeout" : "bad gateway");
    return 2;
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
        if (rd->http)
            return push_http_err(L, rd, status);
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
        luaL_error(L, "out of memory");
}

/* A field value: no control character but HTAB (RFC 9110 §5.5). */
static bool value_ok(const char *v, size_t n)
{
    return field_value_ok(v, n);
}

/* One "name: value" line per value of the field at the stack top: a
 * string, a number or a list of them (repeated fields). */
static void put_field(lua_State *L, struct buf *b, const char *name, size_t nl,
                      const char *who)
{
    int t = lua_gettop(L);
    int n = lrt_values(L, t);
    for (int i = 1; i <= n; i++) {
        size_t vl;
        const char *v = lrt_value(L, t, i, &vl);
        if (v == NULL)
            luaL_error(L, "%s: header '%s': string, number or "
                          "list of them expected", who, name);
        if (!value_ok(v, vl))
            luaL_error(L, "%s: header '%s': the value holds a "
                          "control character", who, name);
        put(L, b, name, nl);
        put(L, b, ": ", 2);
        put(L, b, v, vl);
        put(L, b, "\r\n", 2);
        lua_pop(L, 1);
    }
}

#define NAME_IS(n, nl, lit) field_name_is(n, nl, lit, sizeof(lit) - 1)

enum { F_HOST = 1, F_UA = 2 }; /* put_fields: what the script gave */

/* The header fields of t.headers (at idx, or 0), minus those luring owns:
 * hop-by-hop ones (RFC 9110 §7.6.1), Content-Length (luring frames the
 * body) and Expect (the body goes out with the head). Returns F_HOST
 * when a Host was given, F_UA for a User-Agent. `who` names the call in
 * errors. */
static unsigned put_fields(lua_State *L, struct buf *b, int idx, const char *who)
{
    unsigned given = 0;
    if (idx == 0)
        return 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "%s: header names must be strings", who);
        size_t nl;
        const char *n = lua_tolstring(L, -2, &nl);
        if (!field_is_token(n, nl))
            luaL_error(L, "%s: invalid header name '%s' (not a "
                          "token, RFC 9110 §5.1)", who, n);
        if (field_is_hop_by_hop(n, nl) || NAME_IS(n, nl, "content-length") ||
            NAME_IS(n, nl, "expect")) {
            lua_pop(L, 1);
            continue;
        }
        if (NAME_IS(n, nl, "host"))
            given |= F_HOST;
        if (NAME_IS(n, nl, "user-agent"))
            given |= F_UA;
        put_field(L, b, n, nl, who);
        lua_pop(L, 1);
    }
    return given;
}

/* Content-Length for a body, and for the methods that define one even
 * when it is empty (RFC 9110 §8.6); the blank line; the body. */
static void put_body(lua_State *L, struct buf *b, const char *method,
                     size_t ml, const char *body, size_t bl)
{
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
}

/* ORQ_* flags for a request with this method: RFC 9110 §9.2.2, idempotent
 * methods may be sent again on a fresh connection when a pooled one
 * failed before any response byte. */
static unsigned method_flags(const char *method, size_t ml)
{
    bool head = ml == 4 && !memcmp(method, "HEAD", 4);
    unsigned flags = ORQ_PASS;
    if (head || (ml == 3 && (!memcmp(method, "GET", 3) || !memcmp(method, "PUT", 3))) ||
        (ml == 6 && !memcmp(method, "DELETE", 6)) ||
        (ml == 7 && !memcmp(method, "OPTIONS", 7)))
        flags |= ORQ_IDEMPOTENT;
    if (head)
        flags |= ORQ_HEAD;
    return flags;
}

/* origin_build_pt: the bytes built beforehand. */
static int build_copy(void *arg, struct buf *out)
{
    struct lreader *rd = arg;
    return buf_append(out, rd->out.data, rd->out.len);
}

/* rd's request goes to its worker's list (closed with the request r that
 * made it). */
static void reader_link(struct lreader *rd, struct req *r, struct lrt *w)
{
    rd->r = r;
    rd->gen = r->gen;
    rd->L = r->ls->L;
    rd->rt = w;
    rd->next = w->readers;
    if (w->readers)
        w->readers->prev = rd;
    w->readers = rd;
}

/* Send rd->out (its request, built) to o and watch the response, which
 * fills a stream object of the worker's scratch cache (made already).
 * -1 when out of memory. */
static int reader_start(struct lreader *rd, struct lrt *w, struct origin *o)
{
    struct cache_obj *obj = cache_obj_new(w->scratch, "(origin:request)", 16);
    if (obj == NULL)
        return -1;
    cache_obj_stream(obj, NULL, NULL); /* origin_request sets the wake */
    rd->obj = obj;                     /* cache_obj_new's ref */
    rd->sub.notify = reader_notify;
    cache_obj_watch(obj, &rd->sub);
    origin_request(o, obj, rd->flags, build_copy, rd);
    buf_free(&rd->out);
    return 0;
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
    if (!(put_fields(L, b, lua_isnil(L, hi) ? 0 : hi, "origin:request") & F_HOST)) {
        put(L, b, "Host: ", 6);
        put(L, b, o->host, strlen(o->host));
        put(L, b, "\r\n", 2);
    }
    put_body(L, b, method, ml, body, bl);
    rd->flags = method_flags(method, ml);
    lcache_scratch(L, w); /* raises when it can't be made */
    reader_link(rd, r, w);
    if (reader_start(rd, w, o) < 0)
        return luaL_error(L, "origin:request: out of memory");
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
        if (rd->http && rd->why[0]) /* "timeout", "invalid chunked body" */
            return push_http_err(L, rd, 502);
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
    if (n == 0) { /* nothing came within the call's timeout */
        reader_close(rd, true);
        n = push_http_err(r->co, rd, 504);
    }
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

/* ==== luring.http.request: pools by address ==== */

/* An origin luring.http made for an address no declared origin has. */
struct hpool {
    struct origin o;
    struct hpool *next;       /* most recently used first */
};

/* A name lookup in flight; its reader is NULL once the reader closed
 * (the answer then only frees it). */
struct hlookup {
    struct lreader *rd;
    struct hlookup *prev, *next;
};

/* A worker's luring.http state (rt->http). */
struct lhttp {
    struct hpool *pools;
    unsigned npools;
    struct hlookup *lookups;
};

static struct lhttp *http_of(lua_State *L, struct lrt *w)
{
    if (w->http == NULL && (w->http = calloc(1, sizeof *w->http)) == NULL)
        luaL_error(L, "out of memory");
    return w->http;
}

static void http_free(struct lrt *w)
{
    struct lhttp *h = w->http;
    if (h == NULL)
        return;
    /* after origin_cleanup: no connection refers to these origins */
    for (struct hpool *p = h->pools, *n; p; p = n) {
        n = p->next;
        free(p);
    }
    /* the resolver stops later (lsock_cleanup): its answers are never
     * taken once the ring is gone */
    for (struct hlookup *lk = h->lookups, *n; lk; lk = n) {
        n = lk->next;
        free(lk);
    }
    free(h);
    w->http = NULL;
}

unsigned lorigin_http_origins(const struct lrt *w, const struct origin **out,
                              unsigned max)
{
    unsigned n = 0;
    for (const struct hpool *p = w->http ? w->http->pools : NULL; p; p = p->next) {
        if (n < max)
            out[n] = &p->o;
        n++;
    }
    return n;
}

static bool same_addr(const struct sockaddr_storage *a,
                      const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port &&
               x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               x->sin6_scope_id == y->sin6_scope_id &&
               !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr);
    }
    return false;
}

/* Does any connection (pooled, or serving a request) use o? */
static bool origin_in_use(const struct origin *o)
{
    if (o->nidle)
        return true;
    const struct upstreams *us = o->us;
    for (unsigned i = 0; i < us->n; i++)
        if (us->slots[i]->o == o && us->slots[i]->phase != UP_FREE)
            return true;
    return false;
}

/* The origin whose pool serves rd->sa: a declared http:// origin with
 * that address (its pool, and its own timeouts besides the call's), else
 * the one luring.http made for it, made now if need be (the least
 * recently used unused one goes past LHTTP_POOLS_MAX). NULL with *err. */
static struct origin *http_origin(struct lrt *w, struct lhttp *h,
                                  struct lreader *rd, const char **err)
{
    for (unsigned i = 0; i < w->norigins; i++) {
        struct origin *o = w->origins[i];
        if (o->kind == ORIGIN_HTTP && same_addr(&o->addr, &rd->sa))
            return o;
    }
    struct hpool **pp = &h->pools, **victim = NULL;
    for (; *pp; pp = &(*pp)->next) {
        struct hpool *p = *pp;
        if (same_addr(&p->o.addr, &rd->sa)) {
            *pp = p->next; /* to the front */
            p->next = h->pools;
            h->pools = p;
            return &p->o;
        }
        if (!origin_in_use(&p->o))
            victim = pp; /* the last unused one */
    }
    if (h->npools >= LHTTP_POOLS_MAX) {
        if (victim == NULL) {
            *err = "too many hosts (each has its connection pool)";
            return NULL;
        }
        struct hpool *p = *victim;
        *victim = p->next;
        free(p);
        h->npools--;
    }
    struct hpool *p = calloc(1, sizeof *p);
    if (p == NULL) {
        *err = "no memory";
        return NULL;
    }
    struct origin *o = &p->o;
    snprintf(o->name, sizeof o->name, "http://%.56s", rd->auth);
    o->kind = ORIGIN_HTTP;
    memcpy(&o->addr, &rd->sa, rd->salen);
    o->alen = rd->salen;
    snprintf(o->host, sizeof o->host, "%.127s", rd->auth);
    o->connect_timeout_ms = o->first_byte_timeout_ms = o->idle_timeout_ms =
        HTTP_FOREVER_MS;
    o->keepalive_ms = HTTP_KEEPALIVE_MS;
    o->keepalive_max = HTTP_KEEPALIVE_MAX;
    o->us = w->up;
    p->next = h->pools;
    h->pools = p;
    h->npools++;
    return o;
}

/* ==== luring.http.request: the call ==== */

/* The URL's parts: rd->host, rd->auth, the port; the request-target
 * (origin-form: path and query, "/" when empty; the fragment dropped) in
 * *target. NULL, or what is wrong. */
static const char *parse_url(struct lreader *rd, const char *url, size_t ul,
                             uint16_t *port, const char **target, size_t *tl)
{
    const char *end = url + ul, *p = memchr(url, ':', ul);
    if (p == NULL || end - p < 3 || memcmp(p, "://", 3))
        return "bad url (http://host[:port][/path] expected)";
    size_t sl = (size_t)(p - url);
    if (sl == 5 && !strncasecmp(url, "https", 5))
        return "https is not supported";
    if (sl != 4 || strncasecmp(url, "http", 4))
        return "bad url (only http:// is supported)";
    const char *a = p + 3, *ae = a;
    while (ae < end && *ae != '/' && *ae != '?' && *ae != '#')
        ae++;
    size_t al = (size_t)(ae - a);
    if (memchr(a, '@', al))
        return "bad url (user information is not supported)";
    if (al == 0 || al >= sizeof rd->auth)
        return "bad url (no host, or too long)";
    memcpy(rd->auth, a, al);
    rd->auth[al] = 0;
    const char *h = a, *he, *ps = NULL;
    if (*h == '[') { /* an IPv6 literal */
        he = memchr(h, ']', al);
        if (he == NULL)
            return "bad url (no ] after an IPv6 address)";
        h++;
        if (he + 1 < ae) {
            if (he[1] != ':')
                return "bad url (bad port)";
            ps = he + 2;
        }
    } else {
        he = memchr(h, ':', al);
        if (he)
            ps = he + 1;
        else
            he = ae;
        for (const char *q = h; q < he; q++)
            if (!isalnum((unsigned char)*q) && *q != '.' && *q != '-' && *q != '_')
                return "bad url (bad host name)";
    }
    size_t hl = (size_t)(he - h);
    if (hl == 0 || hl >= sizeof rd->host)
        return "bad url (no host)";
    memcpy(rd->host, h, hl);
    rd->host[hl] = 0;
    unsigned long pn = 80;
    if (ps && ps < ae) { /* "host:" is port 80 (RFC 3986 §3.2.3) */
        pn = 0;
        for (const char *q = ps; q < ae; q++) {
            if (!isdigit((unsigned char)*q) || pn > 65535)
                return "bad url (bad port)";
            pn = pn * 10 + (unsigned long)(*q - '0');
        }
        if (pn == 0 || pn > 65535)
            return "bad url (bad port)";
    }
    *port = (uint16_t)pn;
    const char *t = ae, *te = memchr(t, '#', (size_t)(end - t));
    if (te == NULL)
        te = end;
    *target = t;
    *tl = (size_t)(te - t);
    if (!target_is_visible(t, *tl))
        return "bad url (the path must be visible ASCII: percent-encode "
               "spaces, controls and non-ASCII bytes)";
    return NULL;
}

/* rd->host as an address literal into rd->sa (with port); false for a
 * name. */
static bool addr_literal(struct lreader *rd, uint16_t port)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)&rd->sa;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&rd->sa;
    memset(&rd->sa, 0, sizeof rd->sa);
    if (inet_pton(AF_INET, rd->host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        rd->salen = sizeof *a4;
        return true;
    }
    if (inet_pton(AF_INET6, rd->host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        rd->salen = sizeof *a6;
        return true;
    }
    return false;
}

static int push_fail(lua_State *L, struct lreader *rd, const char *err)
{
    reader_close(rd, true);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

/* The address is known: send the request on its pool. The results
 * pushed (the head, or nil, err), or 0 when r now waits for the head
 * (parked; the userdata at idx anchored). Never raises but when out of
 * memory in lfields_push. */
static int http_go(lua_State *L, struct lreader *rd, int idx)
{
    struct lrt *w = rd->rt;
    const char *err = NULL;
    struct origin *o = http_origin(w, w->http, rd, &err);
    if (o == NULL)
        return push_fail(L, rd, err);
    if (reader_start(rd, w, o) < 0)
        return push_fail(L, rd, "no memory");
    if (rd->obj->head_ready || rd->obj->state != OBJ_FILLING)
        return push_head(L, rd, idx); /* failed at once */
    park_on(L, rd, idx, W_HEAD);
    return 0;
}

static void resolve_resume(struct req *r)
{
    struct lreader *rd = unpark(r);
    lua_State *L = r->co;
    int t = lua_gettop(L), n;
    if (rd->timed_out) {
        n = push_fail(L, rd, "timeout");
    } else if (rd->gai) {
        reader_close(rd, true);
        lua_pushnil(L);
        lua_pushfstring(L, "%s could not be resolved (%s)", rd->host,
                        gai_strerror(rd->gai));
        n = 2;
    } else if ((n = http_go(L, rd, t)) == 0) {
        lua_settop(L, t - 1); /* waits on, for the head */
        return;
    }
    lua_remove(L, t);
    lrt_continue(r, n);
}

static const struct req_op op_resolve = {
    "luring.http.request", reader_cancel, resolve_resume, NULL,
};

static void http_lookup_orphan(struct hlookup *lk)
{
    lk->rd = NULL;
}

void lorigin_resolved(struct lrt *w, const struct resolve_answer *a)
{
    struct hlookup *lk = (struct hlookup *)(uintptr_t)(a->tag & ~(uint64_t)1);
    struct lhttp *h = w->http;
    struct lreader *rd = lk->rd;
    *(lk->prev ? &lk->prev->next : &h->lookups) = lk->next;
    if (lk->next)
        lk->next->prev = lk->prev;
    free(lk);
    if (rd == NULL)
        return; /* its reader closed meanwhile */
    rd->lk = NULL;
    rd->gai = a->err;
    if (a->err == 0) {
        memcpy(&rd->sa, &a->sa, a->salen);
        rd->salen = a->salen;
    }
    if (rd->wait == W_RESOLVE && req_parked_on(rd->r, &op_resolve))
        req_wake(rd->r);
}

/* core._http_request(url, method, headers, body, timeout_ms, keepalive)
 * -> status, headers, reader | nil, err. The arguments are checked by
 * lua/luring/http.lua but for the URL (a runtime error: nil, err) and
 * the fields (raise, as origin:request's). */
static int l_http_request(lua_State *L)
{
    static const char who[] = "luring.http.request";
    size_t ul, ml, bl = 0;
    const char *url = luaL_checklstring(L, 1, &ul);
    const char *method = luaL_checklstring(L, 2, &ml);
    int hi = lua_istable(L, 3) ? 3 : 0;
    const char *body = lua_isstring(L, 4) ? lua_tolstring(L, 4, &bl) : NULL;
    lua_Number tmo = luaL_checknumber(L, 5);
    bool keepalive = lua_toboolean(L, 6);
    struct lrt *w = lrt_current();
    struct req *r = w ? w->cur : NULL;
    if (r == NULL || r->co != L)
        return luaL_error(L, "%s: only inside a request handler or a timer "
                             "(not the main chunk, a coroutine it made or "
                             "a deliver hook)", who);
    if (!field_is_token(method, ml))
        return luaL_error(L, "%s: invalid method (a token, RFC 9110 §9.1)", who);
    lcache_scratch(L, w); /* raises when it can't be made */
    struct lhttp *h = http_of(L, w);
    lua_settop(L, 6);

    struct lreader *rd = lua_newuserdata(L, sizeof *rd);
    int ud = lua_gettop(L);
    memset(rd, 0, sizeof *rd);
    rd->self_ref = LUA_NOREF;
    rd->http = true;
    reader_mt(L);
    lua_setmetatable(L, -2);
    uint16_t port;
    const char *target, *err;
    size_t tl;
    if ((err = parse_url(rd, url, ul, &port, &target, &tl)) != NULL) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    /* built whole before anything starts: a bad header raises with nothing
     * sent (RFC 9112 §3: origin-form, "/" for an empty path) */
    struct buf *b = &rd->out;
    put(L, b, method, ml);
    put(L, b, " ", 1);
    if (tl == 0 || target[0] == '?')
        put(L, b, "/", 1);
    put(L, b, target, tl);
    put(L, b, " HTTP/1.1\r\n", 11);
    unsigned given = put_fields(L, b, hi, who);
    if (!(given & F_HOST)) { /* RFC 9110 §7.2: the URL's authority */
        put(L, b, "Host: ", 6);
        put(L, b, rd->auth, strlen(rd->auth));
        put(L, b, "\r\n", 2);
    }
    if (!(given & F_UA))
        put(L, b, "User-Agent: luring\r\n", 20);
    if (!keepalive)
        put(L, b, "Connection: close\r\n", 19);
    put_body(L, b, method, ml, body, bl);
    rd->flags = method_flags(method, ml) | (keepalive ? 0 : ORQ_CLOSE);
    rd->timeout_ms = tmo > 0 ? (int64_t)tmo : 0;
    rd->deadline = loop_now(w->loop) + rd->timeout_ms; /* the head's */
    reader_link(rd, r, w);
    if (addr_literal(rd, port)) {
        int n = http_go(L, rd, ud);
        return n ? n : lua_yield(L, 0);
    }
    struct hlookup *lk = calloc(1, sizeof *lk);
    if (lk == NULL)
        return push_fail(L, rd, "no memory");
    if (lsock_resolve(w, rd->host, port, (uint64_t)(uintptr_t)lk | 1, &err) < 0) {
        free(lk);
        return push_fail(L, rd, err);
    }
    lk->rd = rd;
    rd->lk = lk;
    lk->next = h->lookups;
    if (h->lookups)
        h->lookups->prev = lk;
    h->lookups = lk;
    return wait_on(L, rd, ud, W_RESOLVE);
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
    /* luring.http.request's (lua/luring/http.lua): the core table is on
     * the top */
    lua_pushcfunction(L, l_http_request);
    lua_setfield(L, -2, "_http_request");
}
