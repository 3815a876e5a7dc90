/* l_socket.c - cosockets: luring.socket.tcp(), a TCP client socket shaped
 * like OpenResty's ngx.socket.tcp, usable from handlers and timers. Each
 * operation (connect, send, receive) is one io_uring operation bounded by
 * a linked timeout; the calling request parks (core/req.h) until its
 * completion, so the worker never blocks. docs/API.md "Cosockets".
 *
 * Lifetimes: the socket's record (struct lsock) is malloc'd, the Lua
 * userdata holds a pointer to it. The completion of an operation names
 * the record itself (OP_COSOCK, io/ops.h), so the record is never freed
 * while one is in flight: a socket collected, or a request aborted, in the
 * meantime cancels the operation and the completion frees what is left. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lua/rt.h"

#include "base/buf.h"
#include "base/log.h"
#include "core/req.h"
#include "io/loop.h"
#include "io/ops.h"
#include "io/resolve.h"

#define SOCK_MT "luring.socket.tcp"
#define TIMEOUT_DEFAULT 60000     /* ms, each kind (OpenResty's default) */
#define TIMEOUT_MAX 31536000000.0 /* ms: a year */
#define RESOLVE_THREADS 2         /* per worker, started on first use */
#define RESOLVE_QUEUE 256         /* names a worker may wait on at once */
#define POOL_TOTAL 1024           /* idle connections a worker keeps */
#define POOL_SIZE_DEFAULT 30      /* per key (OpenResty's lua_socket_pool_size) */
#define KEEPALIVE_DEFAULT 60000   /* ms idle (lua_socket_keepalive_timeout) */
#define RECV_CHUNK 16384          /* bytes asked of each receive */
#define LSOCK_RECV_MAX (4 << 20)  /* bytes a socket buffers: a longer line,
                                   * "*a" or n is "too large" */
#define MR_HIGH (256 << 10)       /* accepted sockets: the multishot recv
                                   * stops by itself (its total limit) once
                                   * this much is buffered; re-armed when
                                   * the handler waits for more */

enum sop { S_NONE, S_RESOLVE, S_CONNECT, S_SEND, S_RECV };
enum spat { P_LINE, P_ALL, P_N, P_UNTIL, P_ANY };

/* A cosocket. */
struct lsock {
    int fd;                  /* -1: not connected (or closed) */
    struct lrt *rt;          /* its worker's runtime */
    enum sop op;             /* in flight, or S_NONE */
    enum sop last;           /* the last one started (the resume's) */
    bool orphan;             /* the userdata was collected while op was in
                              * flight: its completion frees the record */
    bool eof;                /* the peer ended its side */
    bool server;             /* accepted by an app:tcp listener (its
                              * connection is the run's, lsock_server_end) */
    bool run_owned;          /* server: its run has not ended; the record
                              * stays (for lsock_server_end) even if the
                              * userdata is collected first */
    bool close_after;        /* the run ended while op was in flight:
                              * closed at its completion */
    /* accepted sockets receive through a multishot recv into the loop's
     * provided buffers (copied into in[] as they come); a receive that
     * must wait parks on S_RECV with a plain timeout (tmo_seq) */
    bool mr_armed;           /* the multishot recv is in flight */
    int32_t mr_err;          /* its error (-errno), 0: none */
    bool mr_nobufs;          /* it ended on -ENOBUFS: the next receive is
                              * a plain recv into in[] */
    bool swait;              /* a receive waits on the multishot recv */
    uint8_t tmo_seq;         /* the armed timeout's (7 bits; older: stale) */
    uint16_t tmo_n;          /* timeouts in flight */
    bool tmo_live;           /* the one of tmo_seq is armed, not cancelled */
    int64_t tmo_at;          /* loop_now ms when the armed one fires */
    int64_t deadline;        /* loop_now ms when the wait times out */
    struct loop_ts tts;      /* the armed timeout's */
    int32_t res;             /* the completion's result, for the resume
                              * (S_RESOLVE: getaddrinfo's code) */
    char host[256];          /* the name being resolved */
    char key[300];           /* its pool's key: "host:port" or opts.pool */
    struct req *r;           /* the request parked on op */
    uint32_t rgen;           /* r's generation then */
    int64_t tmo[3];          /* connect, send, read timeouts, ms */
    struct loop_ts ts;       /* op's linked timeout */
    struct sockaddr_storage sa;
    socklen_t salen;
    struct buf out;          /* the bytes a send sends */
    size_t out_off;          /* ... sent so far */
    char *in;                /* received, not returned: in[in_off..in_len) */
    size_t in_off, in_len, in_cap;
    enum spat pat;           /* the receive waiting */
    size_t want;             /* P_N: bytes; P_UNTIL: the most to return */
    char *until;             /* P_UNTIL: the pattern (owned) */
    size_t until_len;
    unsigned reused;         /* getreusedtimes() */
    struct lsock *prev, *next; /* its runtime's list (lsock_cleanup) */
};

/* The kernel has no total limit on multishot receives (before Linux
 * 6.17): accepted sockets receive with plain recvs (process-wide). */
static bool mr_unsupported;

static const struct req_op op_sock;
static void pool_free_all(struct lrt *rt);

/* user_data of a socket's operations: OP_COSOCK, then
 *   [55..54] kind  K_OP: the operation in `op` (and its cancel),
 *                  K_MRECV: an accepted socket's multishot recv,
 *                  K_TMO: its receive's timeout, [53..47] its tmo_seq
 *   [46..0]  the struct lsock's address (user space: 47 bits) */
enum { K_OP, K_MRECV, K_TMO };
#define UD_PTR_MASK ((1ull << 47) - 1)
#define UD_SOCK_K(s, k, seq)                                                   \
    (((uint64_t)OP_COSOCK << 56) | ((uint64_t)(k) << 54) |                    \
     ((uint64_t)((seq)&0x7f) << 47) | (uint64_t)(uintptr_t)(s))
#define UD_SOCK(s) UD_SOCK_K(s, K_OP, 0)

/* ==== records ==== */

static void sock_unlink(struct lsock *s)
{
    if (s->rt == NULL)
        return;
    *(s->prev ? &s->prev->next : &s->rt->socks) = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    s->rt = NULL;
}

static void sock_shut(struct lsock *s)
{
    if (s->fd >= 0 && s->mr_armed)
        shutdown(s->fd, SHUT_RDWR); /* ends the multishot recv, whose
                                     * request holds the file open */
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->in_off = s->in_len = 0;
    s->eof = false;
}

static void sock_free(struct lsock *s)
{
    sock_shut(s);
    sock_unlink(s);
    buf_free(&s->out);
    free(s->in);
    free(s->until);
    free(s);
}

void lsock_cleanup(struct lrt *rt)
{
    resolver_free(rt->resolver); /* joins its threads: no answer after */
    rt->resolver = NULL;
    pool_free_all(rt);
    while (rt->socks) /* orphans whose completion never came */
        sock_free(rt->socks);
}

/* Free an orphan (its userdata collected) once nothing refers to it:
 * no run owning it, no operation, receive or timeout in flight. */
static void sock_maybe_free(struct lsock *s)
{
    if (s->orphan && !s->run_owned && s->op == S_NONE && !s->mr_armed &&
        s->tmo_n == 0)
        sock_free(s);
}

/* s's operation ended with res: wake the request waiting on it. */
static void sock_done(struct lsock *s, int32_t res)
{
    s->res = res;
    s->op = S_NONE;
    s->swait = false;
    if (s->close_after) {
        s->close_after = false;
        sock_shut(s);
    }
    if (s->orphan) {
        sock_maybe_free(s);
        return;
    }
    struct req *r = s->r;
    if (r && r->gen == s->rgen && req_parked_on(r, &op_sock) &&
        r->op_arg == s)
        req_wake(r); /* resumes, or drops an aborted request */
}

static void mr_on_cqe(struct lrt *rt, struct lsock *s,
                      const struct loop_cqe *cq);
static void tmo_on_cqe(struct lsock *s, const struct loop_cqe *cq);

void lsock_on_cqe(struct lrt *rt, const struct loop_cqe *cq)
{
    struct lsock *s = (struct lsock *)(uintptr_t)(cq->ud & UD_PTR_MASK);
    switch ((unsigned)(cq->ud >> 54) & 3u) {
    case K_MRECV: mr_on_cqe(rt, s, cq); break;
    case K_TMO: tmo_on_cqe(s, cq); break;
    default: sock_done(s, cq->res); break;
    }
}

/* ==== operations ==== */

static void arm(struct lsock *s, int64_t ms)
{
    s->ts.tv_sec = ms / 1000;
    s->ts.tv_nsec = (ms % 1000) * 1000000LL;
    loop_link_timeout(s->rt->loop, &s->ts, UD_MAKE(OP_CANCEL, 0, 0));
}

/* r waits on s's operation `op`. */
static void park(struct lsock *s, struct req *r, enum sop op)
{
    s->op = s->last = op;
    s->r = r;
    s->rgen = r->gen;
    r->op_arg = s;
    req_park(r, &op_sock);
}

/* Queue s's next operation and park r on it. */
static void start(struct lsock *s, struct req *r, enum sop op)
{
    struct loop *l = s->rt->loop;
    loop_reserve(l, 2);
    switch (op) {
    case S_CONNECT:
        loop_connect(l, s->fd, (struct sockaddr *)&s->sa, s->salen, UD_SOCK(s));
        arm(s, s->tmo[0]);
        break;
    case S_SEND:
        loop_send(l, s->fd, s->out.data + s->out_off, s->out.len - s->out_off,
                  UD_SOCK(s));
        arm(s, s->tmo[1]);
        break;
    case S_RECV:
        loop_recv(l, s->fd, s->in + s->in_len, s->in_cap - s->in_len,
                  UD_SOCK(s));
        arm(s, s->tmo[2]);
        break;
    case S_NONE:
    case S_RESOLVE:
        return;
    }
    park(s, r, op);
}

/* The request that runs L, or raises (a main chunk, a coroutine it made,
 * a deliver hook: nothing to park). */
static struct req *running_req(lua_State *L, const char *what)
{
    struct lrt *w = lrt_current();
    struct req *r = w ? w->cur : NULL;
    if (r == NULL || r->co != L || w->delivering)
        luaL_error(L, "%s: only inside a request handler or a timer (not "
                      "the main chunk, a coroutine it made or a deliver "
                      "hook)", what);
    return r;
}

static int push_err(lua_State *L, const char *err)
{
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

/* A sentence for -errno res: strerror's, lowercased as OpenResty's. A
 * cancelled operation timed out (its linked timeout, or a request going
 * away, which nobody sees). */
static const char *err_text(int32_t res, char *b, size_t n)
{
    if (res == -ECANCELED || res == -ETIMEDOUT || res == -ETIME)
        return "timeout";
    const char *e = strerror(-res);
    size_t l = strlen(e);
    if (l >= n)
        l = n - 1;
    memcpy(b, e, l);
    b[l] = 0;
    if (b[0] >= 'A' && b[0] <= 'Z')
        b[0] = (char)(b[0] - 'A' + 'a');
    return b;
}

static struct lsock *check_sock(lua_State *L)
{
    struct lsock **ps = luaL_checkudata(L, 1, SOCK_MT);
    return *ps;
}

/* ==== name resolution (io/resolve.h) ==== */

static void arm_resolved(struct lrt *rt)
{
    loop_read(rt->loop, resolver_fd(rt->resolver), &rt->resolved,
              sizeof rt->resolved, 0, UD_MAKE(OP_RESOLVED, 0, 0));
}

static void on_answer(void *ctx, const struct resolve_answer *a)
{
    if (a->tag & 1) { /* luring.http.request's (lsock_resolve) */
        lorigin_resolved(ctx, a);
        return;
    }
    struct lsock *s = (struct lsock *)(uintptr_t)a->tag;
    if (a->err == 0) {
        memcpy(&s->sa, &a->sa, a->salen);
        s->salen = a->salen;
    }
    sock_done(s, a->err);
}

void lsock_on_resolved(struct lrt *rt, const struct loop_cqe *cq)
{
    if (rt->resolver == NULL)
        return;
    if (cq->res >= 0 || cq->res == -EAGAIN || cq->res == -EINTR)
        arm_resolved(rt); /* first: an answer queued from now on is seen */
    else /* not armed again: later lookups are never answered */
        log_err("cosockets: reading the resolver's eventfd: %s",
                strerror(-cq->res));
    resolver_take(rt->resolver, on_answer, rt);
}

/* The worker's resolver, made (and its eventfd read armed) on first
 * use; NULL with err. */
static struct resolver *resolver_of(struct lrt *rt, const char **err)
{
    if (rt->resolver == NULL) {
        rt->resolver = resolver_new(RESOLVE_THREADS, RESOLVE_QUEUE);
        if (rt->resolver == NULL) {
            *err = "no resolver (out of memory or threads)";
            return NULL;
        }
        arm_resolved(rt);
    }
    return rt->resolver;
}

int lsock_resolve(struct lrt *rt, const char *host, uint16_t port,
                  uint64_t tag, const char **err)
{
    struct resolver *rs = resolver_of(rt, err);
    if (rs == NULL)
        return -1;
    if (resolver_ask(rs, host, port, tag) < 0) {
        *err = "too many name lookups waiting";
        return -1;
    }
    return 0;
}

/* Start resolving s->host for r (parked on it). 0, or -1 with err. */
static int resolve(struct lsock *s, struct req *r, const char **err)
{
    struct lrt *rt = s->rt;
    if (resolver_of(rt, err) == NULL)
        return -1;
    uint16_t port = s->sa.ss_family == AF_INET6
                    ? ntohs(((struct sockaddr_in6 *)&s->sa)->sin6_port)
                    : ntohs(((struct sockaddr_in *)&s->sa)->sin_port);
    if (resolver_ask(rt->resolver, s->host, port, (uint64_t)(uintptr_t)s) < 0) {
        *err = "too many name lookups waiting";
        return -1;
    }
    park(s, r, S_RESOLVE);
    return 0;
}

/* A connect's socket and its connect (r parks on it); 0, or -1 with the
 * results pushed. */
static int connect_start(lua_State *L, struct lsock *s, struct req *r)
{
    s->fd = socket(s->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        char b[96];
        push_err(L, err_text(-errno, b, sizeof b));
        return -1;
    }
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->reused = 0;
    start(s, r, S_CONNECT);
    return 0;
}


/* ==== the connection pool (setkeepalive) ==== */

/* An idle connection kept for a later connect to the same key. */
struct lpool {
    struct lpool *prev, *next; /* rt->pool, newest first */
    int fd;
    unsigned reused;         /* times it was taken from the pool so far */
    int64_t expire;          /* loop_now ms when it is closed; 0: never */
    char key[300];
};

static void pool_drop(struct lrt *rt, struct lpool *p)
{
    *(p->prev ? &p->prev->next : &rt->pool) = p->next;
    if (p->next)
        p->next->prev = p->prev;
    rt->npool--;
    close(p->fd);
    free(p);
}

/* Close the idle connections whose time is over. */
static void pool_expire(struct lrt *rt)
{
    int64_t now = loop_now(rt->loop);
    struct lpool *p, *next;
    for (p = rt->pool; p; p = next) {
        next = p->next;
        if (p->expire && p->expire <= now)
            pool_drop(rt, p);
    }
}

/* Is an idle connection still good: no byte, no end, no error waiting
 * (one non-blocking peek)? */
static bool pool_alive(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* Take the newest good idle connection for s->key into s: true. */
static bool pool_take(struct lsock *s)
{
    struct lrt *rt = s->rt;
    pool_expire(rt);
    struct lpool *p, *next;
    for (p = rt->pool; p; p = next) {
        next = p->next;
        if (strcmp(p->key, s->key) != 0)
            continue;
        if (!pool_alive(p->fd)) {
            pool_drop(rt, p);
            continue;
        }
        s->fd = p->fd;
        s->reused = p->reused + 1;
        p->fd = -1;
        *(p->prev ? &p->prev->next : &rt->pool) = p->next;
        if (p->next)
            p->next->prev = p->prev;
        rt->npool--;
        free(p);
        return true;
    }
    return false;
}

static void pool_free_all(struct lrt *rt)
{
    while (rt->pool)
        pool_drop(rt, rt->pool);
}

/* sock:setkeepalive([timeout_ms[, pool_size]]) -> 1 | nil, err: the
 * connection goes to the worker's pool for a later connect to the same
 * key, the socket is closed. */
static int l_setkeepalive(lua_State *L)
{
    struct lsock *s = check_sock(L);
    lua_Number tmo = luaL_optnumber(L, 2, KEEPALIVE_DEFAULT);
    lua_Integer size = luaL_optinteger(L, 3, POOL_SIZE_DEFAULT);
    if (!(tmo >= 0 && tmo <= TIMEOUT_MAX))
        return luaL_argerror(L, 2, "milliseconds from 0 to 31536000000 expected");
    if (size < 1 || size > POOL_TOTAL)
        return luaL_argerror(L, 3, "a pool size from 1 to 1024 expected");
    if (s->op != S_NONE)
        return push_err(L, "socket busy");
    if (s->fd < 0)
        return push_err(L, "closed");
    if (s->server)
        return push_err(L, "an accepted connection can't be pooled");
    if (s->in_len > s->in_off) {
        sock_shut(s);
        return push_err(L, "unread data in buffer");
    }
    struct lrt *rt = s->rt;
    struct lpool *p = calloc(1, sizeof *p);
    if (p == NULL || !pool_alive(s->fd)) {
        free(p);
        sock_shut(s);
        return push_err(L, p ? "closed" : "no memory");
    }
    pool_expire(rt);
    /* room: the oldest of this key past size, the oldest of all past the
     * worker's total */
    struct lpool *q, *oldest = NULL, *oldest_all = NULL;
    unsigned same = 0;
    for (q = rt->pool; q; q = q->next) {
        oldest_all = q;
        if (strcmp(q->key, s->key) == 0) {
            same++;
            oldest = q;
        }
    }
    if (same >= (unsigned)size && oldest)
        pool_drop(rt, oldest);
    else if (rt->npool >= POOL_TOTAL && oldest_all)
        pool_drop(rt, oldest_all);
    p->fd = s->fd;
    p->reused = s->reused;
    p->expire = tmo > 0 ? loop_now(rt->loop) + (int64_t)tmo : 0;
    memcpy(p->key, s->key, sizeof p->key);
    p->next = rt->pool;
    if (rt->pool)
        rt->pool->prev = p;
    rt->pool = p;
    rt->npool++;
    s->fd = -1; /* now the pool's */
    sock_shut(s);
    lua_pushinteger(L, 1);
    return 1;
}

/* ==== connect ==== */

static int parse_addr(struct lsock *s, const char *host, int port)
{
    memset(&s->sa, 0, sizeof s->sa);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&s->sa;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&s->sa;
    char h[64];
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']' && hl - 2 < sizeof h) {
        memcpy(h, host + 1, hl - 2); /* [::1] */
        h[hl - 2] = 0;
        host = h;
    }
    a4->sin_family = AF_INET; /* the port, for a name resolved */
    a4->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        s->salen = sizeof *a4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        s->salen = sizeof *a6;
        return 0;
    }
    return -1;
}

/* sock:connect(host, port) -> 1 | nil, err */
static int l_connect(lua_State *L)
{
    struct lsock *s = check_sock(L);
    const char *host = luaL_checkstring(L, 2);
    lua_Integer port = luaL_checkinteger(L, 3);
    if (port < 1 || port > 65535)
        return luaL_argerror(L, 3, "a port from 1 to 65535 expected");
    struct req *r = running_req(L, "sock:connect");
    if (s->op != S_NONE)
        return push_err(L, "socket busy");
    if (s->server)
        return push_err(L, "an accepted connection can't connect");
    sock_shut(s); /* connecting again closes the connection first */
    size_t kl;
    if (lua_istable(L, 4)) { /* { pool = name } */
        lua_getfield(L, 4, "pool");
        const char *k = lua_tolstring(L, -1, &kl);
        if (k == NULL || kl == 0 || kl >= sizeof s->key)
            return luaL_argerror(L, 4, "opts.pool: a name of 1 to 299 "
                                       "bytes expected");
        memcpy(s->key, k, kl + 1);
        lua_pop(L, 1);
    } else if (!lua_isnoneornil(L, 4)) {
        return luaL_argerror(L, 4, "an options table expected");
    } else {
        snprintf(s->key, sizeof s->key, "%s:%d", host, (int)port);
    }
    if (pool_take(s)) {
        lua_pushinteger(L, 1);
        return 1;
    }
    if (parse_addr(s, host, (int)port) < 0) { /* a name */
        size_t hl = strlen(host);
        const char *err;
        if (hl == 0 || hl >= sizeof s->host)
            return push_err(L, "bad host name");
        memcpy(s->host, host, hl + 1);
        if (resolve(s, r, &err) < 0)
            return push_err(L, err);
        return lua_yield(L, 0);
    }
    if (connect_start(L, s, r) < 0)
        return 2;
    return lua_yield(L, 0);
}

/* ==== send ==== */

/* Append the value at idx (a string, a number, or an array of them,
 * nested) to b; false: a value of another type. */
static bool gather(lua_State *L, int idx, struct buf *b, int depth)
{
    int t = lua_type(L, idx);
    if (t == LUA_TSTRING || t == LUA_TNUMBER) {
        size_t n;
        const char *p = lua_tolstring(L, idx, &n);
        if (buf_append(b, p, n) < 0)
            luaL_error(L, "sock:send: out of memory");
        return true;
    }
    if (t != LUA_TTABLE || depth > 32)
        return false;
    size_t n = lua_objlen(L, idx);
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (int)i);
        bool ok = gather(L, lua_gettop(L), b, depth + 1);
        lua_pop(L, 1);
        if (!ok)
            return false;
    }
    return true;
}

/* sock:send(data) -> bytes | nil, err */
static int l_send(lua_State *L)
{
    struct lsock *s = check_sock(L);
    struct req *r = running_req(L, "sock:send");
    if (s->op != S_NONE)
        return push_err(L, "socket busy");
    s->out.len = 0;
    s->out_off = 0;
    if (!gather(L, 2, &s->out, 0))
        return luaL_argerror(L, 2, "a string, a number or an array table "
                                   "of them expected");
    if (s->fd < 0)
        return push_err(L, "closed");
    if (s->out.len == 0) {
        lua_pushinteger(L, 0);
        return 1;
    }
    start(s, r, S_SEND);
    return lua_yield(L, 0);
}

/* ==== receive ==== */

/* Drop CRs from p[0..n) into a new string on L's stack. */
static void push_line(lua_State *L, const char *p, size_t n)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++)
        if (p[i] != '\r')
            luaL_addchar(&b, p[i]);
    luaL_pushresult(&b);
}

/* The receive's error: nil, err, partial (what was buffered, consumed).
 * "closed" (and not a timeout) closes the socket, as OpenResty does. */
static int recv_fail(lua_State *L, struct lsock *s, const char *err)
{
    lua_pushnil(L);
    lua_pushstring(L, err);
    const char *p = s->in + s->in_off;
    size_t n = s->in_len - s->in_off;
    if (s->pat == P_LINE)
        push_line(L, p, n);
    else
        lua_pushlstring(L, p ? p : "", n);
    s->in_off = s->in_len = 0;
    if (strcmp(err, "timeout") != 0)
        sock_shut(s);
    return 3;
}

/* Where `pat` (m bytes) starts in p[0..n), or -1. */
static ptrdiff_t find(const char *p, size_t n, const char *pat, size_t m)
{
    if (m == 0 || n < m)
        return -1;
    for (size_t i = 0; i + m <= n; i++)
        if (p[i] == pat[0] && memcmp(p + i, pat, m) == 0)
            return (ptrdiff_t)i;
    return -1;
}

/* Push the receive's results when what is buffered answers it; 0 when
 * more must be received. */
static int recv_try(lua_State *L, struct lsock *s)
{
    const char *p = s->in + s->in_off;
    size_t n = s->in_len - s->in_off;
    switch (s->pat) {
    case P_LINE: {
        const char *nl = n ? memchr(p, '\n', n) : NULL;
        if (nl) {
            push_line(L, p, (size_t)(nl - p));
            s->in_off += (size_t)(nl - p) + 1;
            return 1;
        }
        break;
    }
    case P_N:
        if (n >= s->want) {
            lua_pushlstring(L, p ? p : "", s->want);
            s->in_off += s->want;
            return 1;
        }
        break;
    case P_ANY:
        if (n > 0) {
            size_t k = n < s->want ? n : s->want;
            lua_pushlstring(L, p, k);
            s->in_off += k;
            return 1;
        }
        break;
    case P_ALL:
        if (s->eof) { /* the connection is over: closed */
            lua_pushlstring(L, p ? p : "", n);
            sock_shut(s);
            return 1;
        }
        break;
    case P_UNTIL: {
        ptrdiff_t at = find(p, n, s->until, s->until_len);
        if (at >= 0) {
            if ((size_t)at > s->want) { /* a piece before it */
                lua_pushlstring(L, p, s->want);
                s->in_off += s->want;
                return 1;
            }
            lua_pushlstring(L, p, (size_t)at);
            s->in_off += (size_t)at + s->until_len;
            lua_pushboolean(L, 1); /* found: the reader's next call starts over */
            return 2;
        }
        /* no match yet: the bytes that can't start one go out in pieces */
        size_t safe = n >= s->until_len ? n - s->until_len + 1 : 0;
        if (s->want != SIZE_MAX && safe >= s->want) {
            lua_pushlstring(L, p, s->want);
            s->in_off += s->want;
            return 1;
        }
        break;
    }
    }
    if (s->eof)
        return recv_fail(L, s, "closed");
    return 0;
}

/* Make room to receive (compacting, growing up to the limit); false when
 * the limit is reached. */
static bool recv_room(struct lsock *s)
{
    if (s->in_off == s->in_len)
        s->in_off = s->in_len = 0;
    if (s->in_cap - s->in_len >= RECV_CHUNK / 4)
        return true;
    if (s->in_off) {
        memmove(s->in, s->in + s->in_off, s->in_len - s->in_off);
        s->in_len -= s->in_off;
        s->in_off = 0;
        if (s->in_cap - s->in_len >= RECV_CHUNK / 4)
            return true;
    }
    size_t cap = s->in_cap ? s->in_cap * 2 : RECV_CHUNK;
    if ((int64_t)cap > LSOCK_RECV_MAX)
        cap = (size_t)LSOCK_RECV_MAX;
    if (cap <= s->in_len)
        return false;
    char *p = realloc(s->in, cap);
    if (p == NULL)
        return false;
    s->in = p;
    s->in_cap = cap;
    return true;
}

/* Answer the receive, or receive more (r parks again): the results
 * pushed, or 0 when parked. */
static void server_wait(struct lsock *s, struct req *r);

static int recv_step(lua_State *L, struct lsock *s, struct req *r)
{
    int n = recv_try(L, s);
    if (n)
        return n;
    if (s->server) { /* the multishot recv brings it */
        char b[96];
        if (s->mr_err)
            return recv_fail(L, s, err_text(s->mr_err, b, sizeof b));
        if (s->in_len - s->in_off >= (size_t)LSOCK_RECV_MAX)
            return recv_fail(L, s, "too large");
        if (s->mr_armed || (!s->mr_nobufs && !mr_unsupported)) {
            server_wait(s, r);
            return 0;
        }
        /* the provided buffers ran out under this socket (they come back
         * as completions are handled): this once a plain recv into in[],
         * which reads what is queued whatever the buffers */
        s->mr_nobufs = false;
    }
    if (!recv_room(s))
        return recv_fail(L, s, "too large");
    start(s, r, S_RECV);
    return 0;
}

/* sock:receive([pattern]) -> data | nil, err, partial */
static int l_receive(lua_State *L)
{
    struct lsock *s = check_sock(L);
    struct req *r = running_req(L, "sock:receive");
    enum spat pat = P_LINE;
    size_t want = 0;
    if (lua_type(L, 2) == LUA_TNUMBER) {
        lua_Number v = lua_tonumber(L, 2);
        if (!(v >= 0 && v <= (lua_Number)LSOCK_RECV_MAX))
            return luaL_argerror(L, 2, "a size from 0 to the receive "
                                       "limit expected");
        pat = P_N;
        want = (size_t)v;
    } else if (!lua_isnoneornil(L, 2)) {
        const char *p = luaL_checkstring(L, 2);
        if (strcmp(p, "*l") == 0 || strcmp(p, "l") == 0)
            pat = P_LINE;
        else if (strcmp(p, "*a") == 0 || strcmp(p, "a") == 0)
            pat = P_ALL;
        else
            return luaL_argerror(L, 2, "\"*l\", \"*a\" or a number expected");
    }
    if (s->op != S_NONE)
        return push_err(L, "socket busy");
    if (s->fd < 0)
        return push_err(L, "closed");
    s->pat = pat;
    s->want = want;
    int n = recv_step(L, s, r);
    return n ? n : lua_yield(L, 0);
}

/* sock:receiveany(max) -> data | nil, err, partial: what is buffered,
 * or else what the next receive brings, at most max bytes (OpenResty's
 * tcpsock:receiveany). */
static int l_receiveany(lua_State *L)
{
    struct lsock *s = check_sock(L);
    lua_Number v = luaL_checknumber(L, 2);
    if (!(v >= 1 && v <= (lua_Number)LSOCK_RECV_MAX))
        return luaL_argerror(L, 2, "a size from 1 to the receive limit "
                                   "expected");
    struct req *r = running_req(L, "sock:receiveany");
    if (s->op != S_NONE)
        return push_err(L, "socket busy");
    if (s->fd < 0)
        return push_err(L, "closed");
    s->pat = P_ANY;
    s->want = (size_t)v;
    int n = recv_step(L, s, r);
    return n ? n : lua_yield(L, 0);
}

/* core._sock_until(sock, pattern, size) -> data, found | nil, err,
 * partial: the next piece before pattern (at most size bytes, 0: no
 * limit); found is true when the pattern followed it (consumed). The
 * iterator of sock:receiveuntil is made of it in lua/luring/socket.lua. */
static int l_until(lua_State *L)
{
    struct lsock *s = check_sock(L);
    size_t pl;
    const char *pat = luaL_checklstring(L, 2, &pl);
    lua_Integer size = luaL_optinteger(L, 3, 0);
    struct req *r = running_req(L, "receiveuntil's reader");
    if (pl == 0 || pl > 4096)
        return luaL_argerror(L, 2, "a pattern of 1 to 4096 bytes expected");
    if (s->op != S_NONE)
        return push_err(L, "socket busy");
    if (s->fd < 0)
        return push_err(L, "closed");
    if (s->until_len != pl || memcmp(s->until, pat, pl) != 0) {
        char *p = realloc(s->until, pl);
        if (p == NULL)
            return luaL_error(L, "receiveuntil: out of memory");
        memcpy(p, pat, pl);
        s->until = p;
        s->until_len = pl;
    }
    s->pat = P_UNTIL;
    s->want = size > 0 ? (size_t)size : SIZE_MAX;
    int n = recv_step(L, s, r);
    return n ? n : lua_yield(L, 0);
}

/* ==== resuming ==== */

static bool sock_cancel(struct req *r)
{
    struct lsock *s = r->op_arg;
    if (s->swait) /* its timeout's completion wakes it (a wait always
                   * has one live: server_wait) */
        loop_cancel(s->rt->loop, UD_SOCK_K(s, K_TMO, s->tmo_seq),
                    UD_MAKE(OP_CANCEL, 0, 0));
    else
        loop_cancel(s->rt->loop, UD_SOCK(s), UD_MAKE(OP_CANCEL, 0, 0));
    return false; /* the completion comes: req_wake frees r then */
}

static void sock_resume(struct req *r)
{
    struct lsock *s = r->op_arg;
    lua_State *L = r->co;
    int32_t res = s->res;
    char b[96];
    int n;
    s->r = NULL;
    r->op_arg = NULL;
    if (s->last == S_RESOLVE) {
        if (res != 0) {
            lua_pushnil(L);
            lua_pushfstring(L, "%s could not be resolved (%s)", s->host,
                            gai_strerror(res));
            lrt_continue(r, 2);
        } else if (connect_start(L, s, r) < 0) {
            lrt_continue(r, 2);
        }
        return;
    }
    if (s->fd < 0) { /* closed meanwhile (the socket was shared) */
        lrt_continue(r, push_err(L, "closed"));
        return;
    }
    switch (s->last) {
    case S_CONNECT:
        if (res < 0) {
            sock_shut(s);
            n = push_err(L, err_text(res, b, sizeof b));
        } else {
            lua_pushinteger(L, 1);
            n = 1;
        }
        break;
    case S_SEND:
        if (res < 0) {
            if (res != -ECANCELED) /* an error but a timeout closes it */
                sock_shut(s);
            n = push_err(L, err_text(res, b, sizeof b));
            break;
        }
        s->out_off += (size_t)res;
        if (s->out_off < s->out.len) { /* a short write: the rest */
            start(s, r, S_SEND);
            return;
        }
        lua_pushinteger(L, (lua_Integer)s->out.len);
        n = 1;
        break;
    default:
        if (res < 0 && res != -EAGAIN) {
            n = recv_fail(L, s, err_text(res, b, sizeof b));
            break;
        }
        if (res == 0)
            s->eof = true;
        else if (res > 0)
            s->in_len += (size_t)res;
        n = recv_step(L, s, r);
        if (n == 0)
            return; /* parked again */
        break;
    }
    lrt_continue(r, n);
}

static const struct req_op op_sock = {
    "cosocket", sock_cancel, sock_resume, NULL,
};

/* ==== the rest of the object ==== */

/* sock:close() -> 1 | nil, "closed" */
static int l_close(lua_State *L)
{
    struct lsock *s = check_sock(L);
    if (s->op != S_NONE)
        return push_err(L, "socket busy");
    if (s->fd < 0)
        return push_err(L, "closed");
    sock_shut(s);
    lua_pushinteger(L, 1);
    return 1;
}

static int64_t check_ms(lua_State *L, int idx)
{
    lua_Number v = luaL_checknumber(L, idx);
    if (!(v >= 0 && v <= TIMEOUT_MAX))
        luaL_argerror(L, idx, "milliseconds from 0 to 31536000000 expected");
    return v < 1 ? 1 : (int64_t)v; /* 0: as short as can be */
}

/* sock:settimeout(ms): connect, send and read timeouts alike. */
static int l_settimeout(lua_State *L)
{
    struct lsock *s = check_sock(L);
    int64_t ms = check_ms(L, 2);
    s->tmo[0] = s->tmo[1] = s->tmo[2] = ms;
    return 0;
}

/* sock:settimeouts(connect_ms, send_ms, read_ms) */
static int l_settimeouts(lua_State *L)
{
    struct lsock *s = check_sock(L);
    int64_t c = check_ms(L, 2), w = check_ms(L, 3), rd = check_ms(L, 4);
    s->tmo[0] = c;
    s->tmo[1] = w;
    s->tmo[2] = rd;
    return 0;
}

/* sock:getreusedtimes() -> n (0: a fresh connection) */
static int l_reused(lua_State *L)
{
    struct lsock *s = check_sock(L);
    if (s->fd < 0)
        return push_err(L, "closed");
    lua_pushinteger(L, (lua_Integer)s->reused);
    return 1;
}

/* sock:getpeername() -> ip, port | nil, err: the peer's address */
static int l_getpeername(lua_State *L)
{
    struct lsock *s = check_sock(L);
    if (s->fd < 0)
        return push_err(L, "closed");
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    char ip[INET6_ADDRSTRLEN];
    if (getpeername(s->fd, (struct sockaddr *)&sa, &len) < 0) {
        char b[96];
        return push_err(L, err_text(-errno, b, sizeof b));
    }
    int port;
    if (sa.ss_family == AF_INET6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&sa;
        inet_ntop(AF_INET6, &a6->sin6_addr, ip, sizeof ip);
        port = ntohs(a6->sin6_port);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&sa;
        inet_ntop(AF_INET, &a4->sin_addr, ip, sizeof ip);
        port = ntohs(a4->sin_port);
    }
    lua_pushstring(L, ip);
    lua_pushinteger(L, port);
    return 2;
}

static int l_gc(lua_State *L)
{
    struct lsock **ps = luaL_checkudata(L, 1, SOCK_MT);
    struct lsock *s = *ps;
    *ps = NULL;
    if (s == NULL)
        return 0;
    if (s->op == S_NONE && !s->run_owned && !s->mr_armed && s->tmo_n == 0) {
        sock_free(s);
    } else { /* its completions, or its run's end, free it */
        s->orphan = true;
        if (s->rt && s->op != S_NONE && !s->server)
            loop_cancel(s->rt->loop, UD_SOCK(s), UD_MAKE(OP_CANCEL, 0, 0));
        if (s->server && !s->run_owned && s->op == S_NONE)
            sock_shut(s); /* ends a multishot recv */
    }
    return 0;
}

static int l_tostring(lua_State *L)
{
    struct lsock *s = check_sock(L);
    lua_pushfstring(L, "luring.socket.tcp (%s)", s && s->fd >= 0 ? "connected"
                                                                : "closed");
    return 1;
}

/* A new socket record of rt, its userdata pushed on L (NULL: out of
 * memory, nothing pushed beyond the userdata). */
static struct lsock *sock_new(lua_State *L, struct lrt *rt)
{
    struct lsock **ps = lua_newuserdata(L, sizeof *ps);
    *ps = NULL;
    luaL_getmetatable(L, SOCK_MT);
    lua_setmetatable(L, -2);
    struct lsock *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    if ((uintptr_t)s & ~(uintptr_t)UD_PTR_MASK) { /* not in user_data */
        free(s);
        return NULL;
    }
    s->fd = -1;
    s->tmo[0] = s->tmo[1] = s->tmo[2] = TIMEOUT_DEFAULT;
    s->rt = rt;
    s->next = rt->socks;
    if (rt->socks)
        rt->socks->prev = s;
    rt->socks = s;
    *ps = s;
    return s;
}

/* core._socket_tcp() -> a cosocket (not connected) */
static int l_tcp(lua_State *L)
{
    struct lrt *rt = lrt_current();
    if (rt == NULL)
        return luaL_error(L, "luring.socket.tcp: not while checking the "
                             "script");
    if (sock_new(L, rt) == NULL)
        return luaL_error(L, "luring.socket.tcp: out of memory");
    return 1;
}

/* ==== accepted connections (app:tcp) ==== */

struct lsock *lsock_push_server(struct lua_State *L, struct lrt *rt, int fd)
{
    struct lsock *s = sock_new(L, rt);
    if (s == NULL) {
        lua_pop(L, 1);
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->fd = fd;
    s->server = s->run_owned = true;
    snprintf(s->key, sizeof s->key, "accepted");
    return s;
}

/* Arm s's multishot recv, to end by itself once MR_HIGH bytes are
 * buffered (at least a chunk more: a receive waits). Cancelling it
 * instead (the first design) was seen to lose bytes on Linux 6.18, and a
 * cancel can miss a multishot recv that is running (liburing issue
 * 1375). */
static void mr_arm(struct lsock *s)
{
    size_t held = s->in_len - s->in_off;
    size_t lim = held + RECV_CHUNK < MR_HIGH ? MR_HIGH - held : RECV_CHUNK;
    loop_recv_multishot_lim(s->rt->loop, s->fd, (uint32_t)lim,
                            UD_SOCK_K(s, K_MRECV, 0));
    s->mr_armed = true;
}

/* Append n received bytes to s->in (growing it as needed: what the
 * kernel still had in flight when the recv was cancelled may pass
 * MR_HIGH). false: out of memory. */
static bool mr_store(struct lsock *s, const char *p, size_t n)
{
    if (s->in_off == s->in_len)
        s->in_off = s->in_len = 0;
    if (s->in_cap - s->in_len < n && s->in_off) {
        memmove(s->in, s->in + s->in_off, s->in_len - s->in_off);
        s->in_len -= s->in_off;
        s->in_off = 0;
    }
    if (s->in_cap - s->in_len < n) {
        size_t cap = s->in_cap ? s->in_cap : RECV_CHUNK;
        while (cap - s->in_len < n)
            cap *= 2;
        char *q = realloc(s->in, cap);
        if (q == NULL)
            return false;
        s->in = q;
        s->in_cap = cap;
    }
    memcpy(s->in + s->in_len, p, n);
    s->in_len += n;
    return true;
}

/* A receive of accepted socket s waits for the multishot recv (armed now
 * if it is not), at most the read timeout; r parks on it. */
/* Arm s's read timeout for ms (the one before, if any, is stale). */
static void tmo_arm(struct lsock *s, int64_t ms)
{
    struct loop *l = s->rt->loop;
    if (s->tmo_live)
        loop_cancel(l, UD_SOCK_K(s, K_TMO, s->tmo_seq), UD_MAKE(OP_CANCEL, 0, 0));
    s->tmo_live = true;
    s->tmo_seq = (uint8_t)((s->tmo_seq + 1) & 0x7f);
    s->tts.tv_sec = ms / 1000;
    s->tts.tv_nsec = (ms % 1000) * 1000000LL;
    s->tmo_at = loop_now(l) + ms;
    loop_timeout(l, &s->tts, UD_SOCK_K(s, K_TMO, s->tmo_seq));
    s->tmo_n++;
}

static void server_wait(struct lsock *s, struct req *r)
{
    struct loop *l = s->rt->loop;
    if (!s->mr_armed && !s->eof && s->fd >= 0)
        mr_arm(s);
    /* One timeout stays armed across waits (lazy: a wait answered does
     * not cancel it, it is checked against the wait's deadline when it
     * fires): an answered receive costs no timeout and no cancel. */
    s->deadline = loop_now(l) + s->tmo[2];
    if (!s->tmo_live || s->deadline < s->tmo_at)
        tmo_arm(s, s->tmo[2]); /* none, or a shorter timeout now */
    s->swait = true;
    park(s, r, S_RECV);
}

/* The receive waiting on s (if any) is answered. */
static void server_wake(struct lsock *s, int32_t res)
{
    if (s->swait)
        sock_done(s, res);
}

/* A completion of s's multishot recv: bytes (in a provided buffer, given
 * back at once), the peer's end, or an error; the receive waiting, if
 * any, is woken. */
static void mr_on_cqe(struct lrt *rt, struct lsock *s,
                      const struct loop_cqe *cq)
{
    if (!cq->more)
        s->mr_armed = false;
    bool live = s->fd >= 0 && !s->orphan;
    if (cq->res > 0 && cq->has_buf && live) {
        if (!mr_store(s, loop_buf(rt->loop, cq->bid), (size_t)cq->res))
            s->mr_err = -ENOMEM;
    }
    if (cq->has_buf)
        loop_buf_recycle(rt->loop, cq->bid);
    if (!live) {
        sock_maybe_free(s);
        return;
    }
    if (cq->res == 0) {
        s->eof = true;
    } else if (cq->res == -ENOBUFS) {
        s->mr_nobufs = true;
    } else if (cq->res == -EINVAL && !mr_unsupported) {
        mr_unsupported = true; /* no total limit: plain recvs from now on */
        log_info("app:tcp: this kernel has no multishot receive limit "
                 "(Linux 6.17): accepted sockets use plain receives");
    } else if (cq->res < 0 && cq->res != -ECANCELED) {
        s->mr_err = cq->res;
    }
    server_wake(s, -EAGAIN); /* recv_step looks at what came */
}

/* s's read timeout completed: -ETIME, it fired: a wait past its deadline
 * fails with "timeout", one with time left arms it again for that; no
 * wait, nothing more. -ECANCELED: a stale one (armed again since, or the
 * socket closed), or the waiting request went away (sock_cancel): its
 * wait ends. */
static void tmo_on_cqe(struct lsock *s, const struct loop_cqe *cq)
{
    s->tmo_n--;
    unsigned seq = (unsigned)(cq->ud >> 47) & 0x7fu;
    if (seq == s->tmo_seq)
        s->tmo_live = false;
    if (seq == s->tmo_seq && s->swait && s->fd >= 0) {
        int64_t left = s->deadline - loop_now(s->rt->loop);
        if (cq->res == -ETIME && left > 0) {
            tmo_arm(s, left);
            return;
        }
        s->tmo_seq = (uint8_t)((s->tmo_seq + 1) & 0x7f);
        sock_done(s, cq->res == -ETIME ? -ETIME : -ECANCELED);
        return;
    }
    sock_maybe_free(s);
}

void lsock_server_end(struct lsock *s)
{
    s->run_owned = false;
    if (s->tmo_live && !s->swait) { /* a read timeout left armed */
        loop_cancel(s->rt->loop, UD_SOCK_K(s, K_TMO, s->tmo_seq),
                    UD_MAKE(OP_CANCEL, 0, 0));
        s->tmo_live = false;
    }
    if (s->fd >= 0) {
        if (s->op == S_NONE) {
            sock_shut(s); /* a multishot recv ends with its last completion */
        } else {
            /* an operation of another run (a timer given the socket) is
             * in flight: it fails now, the fd closes at its completion */
            shutdown(s->fd, SHUT_RDWR);
            s->close_after = true;
        }
    }
    sock_maybe_free(s);
}

void lsock_open(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"connect", l_connect},
        {"send", l_send},
        {"receive", l_receive},
        {"receiveany", l_receiveany},
        {"getpeername", l_getpeername},
        {"_until", l_until},
        {"close", l_close},
        {"settimeout", l_settimeout},
        {"settimeouts", l_settimeouts},
        {"getreusedtimes", l_reused},
        {"setkeepalive", l_setkeepalive},
        {NULL, NULL},
    };
    luaL_newmetatable(L, SOCK_MT);
    lua_newtable(L);
    luaL_register(L, NULL, methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, -4, "_socket_methods"); /* socket.lua adds its own */
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_tcp);
    lua_setfield(L, -2, "_socket_tcp");
}
