/* accesslog.c - the access log (see accesslog.h): formats compiled once
 * into a list of literals and variables, a line per request built with
 * hand-written number and escape writers, the worker's buffer written
 * through io_uring. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app/accesslog.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/num.h"
#include "core/req.h"
#include "http/h1_parse.h"
#include "http/h1_server.h"
#include "io/loop.h"
#include "io/ops.h"
#include "lua/lbudget.h"

#define ALOG_FLUSH   (64 * 1024)        /* buffered bytes that start a write */
#define ALOG_MAX     (16 * 1024 * 1024) /* buffered beyond this: lines dropped */
#define ALOG_PIPE    4096               /* PIPE_BUF: atomic on a pipe */

/* ==== formats ==== */

/* What an item of a compiled format writes. */
enum av {
    AV_LIT,             /* literal text */
    AV_REMOTE_ADDR,
    AV_REMOTE_USER,     /* always "-" (no authentication in luring) */
    AV_TIME_LOCAL,      /* 10/Oct/2000:13:55:36 +0000 */
    AV_TIME_ISO8601,    /* 2000-10-10T13:55:36+00:00 */
    AV_MSEC,            /* seconds.milliseconds since the epoch */
    AV_REQUEST,         /* the request line: method target version */
    AV_METHOD,
    AV_URI,             /* the target as received */
    AV_PROTOCOL,        /* HTTP/1.1 */
    AV_STATUS,          /* sent; 499: client gone before the head */
    AV_BYTES_SENT,      /* head + body (with chunk framing) queued */
    AV_BODY_BYTES_SENT,
    AV_HTTP,            /* $http_NAME: a request field, "-" when absent */
    AV_CACHE_STATUS,    /* HIT, MISS, COALESCED, PASS, STALE, REVALIDATED */
    AV_UP_STATUS,
    AV_UP_RESPONSE_TIME, /* seconds, ms precision (nginx) */
    AV_UP_HEADER_TIME,
    AV_UP_TIME_US,
    AV_UP_HEADER_TIME_US,
    AV_REQUEST_TIME,    /* seconds, ms precision (nginx) */
    AV_REQUEST_TIME_US,
    AV_REQUEST_ID,
    AV_PID,
    AV_WORKER,
};

static const struct {
    const char *name;
    enum av v;
} vars[] = {
    {"remote_addr", AV_REMOTE_ADDR},
    {"remote_user", AV_REMOTE_USER},
    {"time_local", AV_TIME_LOCAL},
    {"time_iso8601", AV_TIME_ISO8601},
    {"msec", AV_MSEC},
    {"request", AV_REQUEST},
    {"request_method", AV_METHOD},
    {"request_uri", AV_URI},
    {"server_protocol", AV_PROTOCOL},
    {"status", AV_STATUS},
    {"bytes_sent", AV_BYTES_SENT},
    {"body_bytes_sent", AV_BODY_BYTES_SENT},
    {"cache_status", AV_CACHE_STATUS},
    {"upstream_status", AV_UP_STATUS},
    {"upstream_response_time", AV_UP_RESPONSE_TIME},
    {"upstream_header_time", AV_UP_HEADER_TIME},
    {"upstream_time_us", AV_UP_TIME_US},
    {"upstream_header_time_us", AV_UP_HEADER_TIME_US},
    {"request_time", AV_REQUEST_TIME},
    {"request_time_us", AV_REQUEST_TIME_US},
    {"request_id", AV_REQUEST_ID},
    {"pid", AV_PID},
    {"worker", AV_WORKER},
};

/* nginx's combined format; "luring" adds what a cache's log needs */
#define FMT_COMBINED                                                           \
    "$remote_addr - $remote_user [$time_local] \"$request\" $status "          \
    "$body_bytes_sent \"$http_referer\" \"$http_user_agent\""
#define FMT_LURING                                                             \
    FMT_COMBINED " $cache_status $upstream_status $upstream_time_us "         \
                 "$request_time_us $bytes_sent $request_id"

struct aitem {
    uint8_t v;          /* enum av */
    uint32_t off, len;  /* AV_LIT: the text, AV_HTTP: the field name, in
                         * the format's text buffer */
};

struct afmt {
    struct aitem *it;
    unsigned n;
    struct buf text;
    size_t fixed;           /* line_bound: all but the request strings */
    unsigned nreq;          /* items that write strings from the request */
};

static void fmt_free(struct afmt *f)
{
    free(f->it);
    buf_free(&f->text);
    memset(f, 0, sizeof *f);
}

static int fmt_add(struct afmt *f, enum av v, const char *p, size_t n)
{
    if (v == AV_LIT && f->n > 0 && f->it[f->n - 1].v == AV_LIT &&
        f->it[f->n - 1].off + f->it[f->n - 1].len == f->text.len) {
        f->it[f->n - 1].len += (uint32_t)n; /* one literal run */
        return buf_append(&f->text, p, n);
    }
    struct aitem *it = realloc(f->it, (f->n + 1) * sizeof *it);
    if (it == NULL)
        return -1;
    f->it = it;
    it[f->n++] = (struct aitem){(uint8_t)v, (uint32_t)f->text.len,
                                (uint32_t)n};
    return buf_append(&f->text, p, n);
}

static void bound_init(struct afmt *f);

/* Compile s: literal text and $name or ${name} variables. 0, or -1 with
 * err (an unknown variable, out of memory). */
static int fmt_compile(struct afmt *f, const char *s, char *err,
                       size_t errlen)
{
    memset(f, 0, sizeof *f);
    if (!strcmp(s, "combined"))
        s = FMT_COMBINED;
    else if (!strcmp(s, "luring"))
        s = FMT_LURING;
    for (const char *p = s; *p;) {
        const char *d = strchr(p, '$');
        if (d == NULL)
            d = p + strlen(p);
        if (d > p && fmt_add(f, AV_LIT, p, (size_t)(d - p)) < 0)
            goto oom;
        if (*d == 0)
            break;
        bool brace = d[1] == '{';
        const char *n = d + 1 + brace, *e = n;
        while ((*e >= 'a' && *e <= 'z') || (*e >= '0' && *e <= '9') ||
               *e == '_' || (*e >= 'A' && *e <= 'Z'))
            e++;
        if (e == n || (brace && *e != '}')) {
            snprintf(err, errlen, "luring.access_log: bad variable at "
                     "\"%.20s\"", d);
            fmt_free(f);
            return -1;
        }
        size_t nl = (size_t)(e - n);
        p = e + brace;
        if (nl > 5 && !strncmp(n, "http_", 5)) {
            char name[128];
            if (nl - 5 >= sizeof name)
                goto unknown;
            for (size_t i = 5; i < nl; i++)
                name[i - 5] = n[i] == '_' ? '-' : n[i];
            if (fmt_add(f, AV_HTTP, name, nl - 5) < 0)
                goto oom;
            continue;
        }
        size_t i = 0;
        while (i < sizeof vars / sizeof vars[0] &&
               (strlen(vars[i].name) != nl || strncmp(vars[i].name, n, nl)))
            i++;
        if (i == sizeof vars / sizeof vars[0])
            goto unknown;
        if (fmt_add(f, vars[i].v, "", 0) < 0)
            goto oom;
        continue;
    unknown:
        snprintf(err, errlen, "luring.access_log: unknown variable $%.*s",
                 (int)(nl > 60 ? 60 : nl), n);
        fmt_free(f);
        return -1;
    }
    bound_init(f);
    return 0;
oom:
    snprintf(err, errlen, "luring.access_log: out of memory");
    fmt_free(f);
    return -1;
}

/* ==== the worker's log ==== */

struct alog {
    struct loop *loop;
    unsigned worker;
    bool on;
    char path[1024];        /* "stderr", or the file opened */
    int fd;                 /* -1: none */
    bool is_stderr;
    int old_fd;             /* reopened: closed once its write is done */
    bool reopen;            /* SIGUSR1 waits for the buffer to be written */
    bool ending;            /* the worker ends: nothing more submitted */
    struct afmt fmt;
    /* a Lua function format: it runs on its own thread of L */
    struct lua_State *L, *co;
    int fn_ref, co_ref;     /* registry refs in L (LUA_NOREF: none) */
    bool fn_failed;         /* its error was logged: the default format */
    struct afmt fallback;   /* "luring", when the function fails */
    /* buffering */
    struct buf cur;         /* lines appended */
    struct buf out;         /* lines being written: the kernel's while
                             * writing */
    size_t out_off;         /* bytes of out written */
    size_t out_len;         /* the write in flight: bytes from out_off */
    bool writing;
    uint64_t dropped;       /* lines lost (buffer full, write errors) */
    int64_t err_logged;     /* loop_now of the last error line */
    /* the clock, formatted once a second */
    time_t sec;
    char tlocal[40], tiso[40];
    size_t tlocal_len, tiso_len;
    struct buf line;        /* the line being built (the Lua format) */
    struct buf pend;        /* records waiting for the format function
                             * (struct prec...), run by alog_run */
    struct req *tmp;        /* the stand-in request a record becomes */
};

struct alog *alog_new(struct loop *loop, unsigned worker)
{
    struct alog *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->loop = loop;
    a->worker = worker;
    a->fd = a->old_fd = -1;
    a->fn_ref = a->co_ref = LUA_NOREF;
    a->sec = (time_t)-1;
    return a;
}

bool alog_on(const struct alog *a) { return a && a->on; }

static void drop_fn(struct alog *a)
{
    /* the refs belong to a's state, which may be retired already (a
     * reload): they go with it */
    a->L = a->co = NULL;
    a->fn_ref = a->co_ref = LUA_NOREF;
    a->fn_failed = false;
}

static int open_log(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        snprintf(err, errlen, "luring.access_log: cannot open %.900s: %s",
                 path, strerror(errno));
    return fd;
}

static void close_fd(struct alog *a, int fd)
{
    if (fd >= 0 && fd != 2)
        loop_close(a->loop, fd, UD_MAKE(OP_CLOSE, 0, 0));
}

static void flush(struct alog *a);

int alog_check(struct lua_State *L, char *err, size_t errlen)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    lua_getfield(L, -1, "luring");
    lua_getfield(L, -1, "_access_log");
    int e = 0;
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "format");
        const char *fs = lua_isfunction(L, -1) ? "luring" : lua_tostring(L, -1);
        struct afmt f;
        if (fs == NULL) {
            snprintf(err, errlen, "luring.access_log: format expected");
            e = -1;
        } else if ((e = fmt_compile(&f, fs, err, errlen)) == 0) {
            fmt_free(&f);
        }
        lua_pop(L, 1);
        /* the file as a worker will open it (created if missing, as
         * nginx -t does), so --check fails where the start would; without
         * waiting on a FIFO that has no reader yet (ENXIO: fine here) */
        lua_getfield(L, -1, "path");
        const char *path = lua_tostring(L, -1);
        if (e == 0 && path != NULL && strcmp(path, "stderr") != 0) {
            int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
                                    O_NONBLOCK, 0644);
            if (fd >= 0) {
                close(fd);
            } else if (errno != ENXIO) {
                snprintf(err, errlen,
                         "luring.access_log: cannot open %.900s: %s", path,
                         strerror(errno));
                e = -1;
            }
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 4);
    return e;
}

int alog_configure(struct alog *a, struct lua_State *L, char *err,
                   size_t errlen)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    lua_getfield(L, -1, "luring");
    lua_getfield(L, -1, "_access_log");
    if (!lua_istable(L, -1)) { /* off */
        lua_pop(L, 4);
        if (a->on)
            flush(a); /* what is buffered still goes to the file */
        a->on = false;
        fmt_free(&a->fmt);
        drop_fn(a);
        return 0;
    }
    lua_getfield(L, -1, "path");
    const char *path = lua_tostring(L, -1);
    lua_getfield(L, -2, "format");
    int top = lua_gettop(L);
    struct afmt f = {0}, fb = {0};
    bool is_fn = lua_isfunction(L, top);
    const char *fs = is_fn ? "luring" : lua_tostring(L, top);
    if (path == NULL || fs == NULL) {
        snprintf(err, errlen, "luring.access_log: path and format expected");
        goto fail;
    }
    if (fmt_compile(&f, fs, err, errlen) < 0)
        goto fail;
    if (fmt_compile(&fb, "luring", err, errlen) < 0)
        goto fail;
    bool same = a->fd >= 0 && !strcmp(a->path, path);
    if (!same) {
        int fd = 2;
        if (strcmp(path, "stderr") &&
            (fd = open_log(path, err, errlen)) < 0)
            goto fail;
        if (a->on)
            flush(a); /* the old file gets what was logged for it... */
        if (a->writing) { /* ...closed once its write is done */
            if (a->old_fd >= 0)
                close_fd(a, a->old_fd);
            a->old_fd = a->fd;
        } else {
            close_fd(a, a->fd);
        }
        a->fd = fd;
        a->is_stderr = fd == 2;
        snprintf(a->path, sizeof a->path, "%s", path);
    }
    fmt_free(&a->fmt);
    fmt_free(&a->fallback);
    a->fmt = f;
    a->fallback = fb;
    drop_fn(a);
    if (is_fn) {
        a->L = L;
        a->co = lua_newthread(L);
        a->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        lua_pushvalue(L, top);
        a->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    a->on = true;
    lua_settop(L, top - 6);
    return 0;
fail:
    fmt_free(&f);
    fmt_free(&fb);
    drop_fn(a); /* its state may be a retired one (a failed reload) */
    lua_settop(L, top - 6);
    return -1;
}

/* ==== writing ==== */

static void write_error(struct alog *a, const char *what, int e)
{
    int64_t now = loop_now(a->loop);
    if (a->err_logged && now - a->err_logged < 10000)
        return;
    a->err_logged = now;
    log_err("access log %s: %s: %s (%llu lines lost so far)", a->path, what,
            strerror(e), (unsigned long long)a->dropped);
}

/* Submit the next piece of out: all of it to a file (O_APPEND: one
 * write lands whole), whole lines up to PIPE_BUF to stderr. */
static void submit(struct alog *a)
{
    size_t n = a->out.len - a->out_off;
    if (a->is_stderr && n > ALOG_PIPE) {
        const char *p = a->out.data + a->out_off;
        size_t k = ALOG_PIPE;
        while (k > 0 && p[k - 1] != '\n')
            k--;
        if (k == 0) { /* a line longer than PIPE_BUF goes alone */
            const char *nl = memchr(p, '\n', n);
            k = nl ? (size_t)(nl - p) + 1 : n;
        }
        n = k;
    }
    a->out_len = n;
    a->writing = true;
    loop_write(a->loop, a->fd, a->out.data + a->out_off, n, (uint64_t)-1,
               UD_MAKE(OP_ALOG_WRITE, 0, a->worker));
}

static void do_reopen(struct alog *a);

/* Write what is buffered, unless a write is in flight (its completion
 * goes on). */
static void flush(struct alog *a)
{
    if (a->writing || a->cur.len == 0 || a->fd < 0 || a->ending)
        return;
    struct buf t = a->out;
    a->out = a->cur;
    a->cur = t;
    a->cur.len = 0;
    a->out_off = 0;
    submit(a);
}

void alog_on_write(struct alog *a, const struct loop_cqe *cq)
{
    if (a == NULL || !a->writing)
        return;
    a->writing = false;
    if (cq->res < 0) {
        for (size_t i = a->out_off; i < a->out.len; i++)
            a->dropped += a->out.data[i] == '\n';
        write_error(a, "write", -cq->res);
        a->out_off = a->out.len;
    } else {
        a->out_off += (size_t)cq->res;
        if (cq->res == 0 && a->out_len > 0) { /* no progress: give up */
            a->out_off = a->out.len;
            write_error(a, "write", ENOSPC);
        }
    }
    if (a->out_off < a->out.len) {
        if (!a->ending) /* else alog_free writes it */
            submit(a); /* the rest (a short write, or stderr's next piece) */
        return;
    }
    a->out.len = a->out_off = 0;
    if (a->out.cap > 4 * ALOG_FLUSH) /* a burst's memory goes back */
        buf_reset(&a->out, ALOG_FLUSH);
    if (a->old_fd >= 0) {
        close_fd(a, a->old_fd);
        a->old_fd = -1;
    }
    if (a->reopen) {
        do_reopen(a);
        return;
    }
    if (a->cur.len >= ALOG_FLUSH)
        flush(a);
}

void alog_tick(struct alog *a)
{
    if (a)
        flush(a);
}

/* Reopen once everything logged before is written to the old file. */
static void do_reopen(struct alog *a)
{
    if (a->writing || a->cur.len > 0) {
        a->reopen = true;
        flush(a);
        return;
    }
    a->reopen = false;
    if (a->is_stderr || a->fd < 0)
        return;
    char err[1100];
    int fd = open_log(a->path, err, sizeof err);
    if (fd < 0) { /* the old file goes on */
        log_err("SIGUSR1: %s", err);
        return;
    }
    close_fd(a, a->fd);
    a->fd = fd;
    log_info("access log reopened: %s", a->path);
}

void alog_reopen(struct alog *a)
{
    if (a && a->on)
        do_reopen(a);
}

bool alog_stop(struct alog *a)
{
    if (a == NULL)
        return false;
    a->ending = true;
    return a->writing;
}

void alog_free(struct alog *a)
{
    if (a == NULL)
        return;
    /* the ring is gone: a write it held is done or cancelled; write
     * what it did not, then the rest, blocking (the worker is ending) */
    if (a->out_off < a->out.len) {
        struct buf t = a->out; /* out's rest goes before cur */
        buf_consume(&t, a->out_off);
        if (buf_append(&t, a->cur.data, a->cur.len) == 0) {
            buf_free(&a->cur);
            a->cur = t;
        }
        a->out = (struct buf){0};
    }
    const char *p = a->cur.data;
    size_t n = a->cur.len;
    while (n > 0 && a->fd >= 0) {
        ssize_t k = write(a->fd, p, n);
        if (k <= 0) {
            if (k < 0 && errno == EINTR)
                continue;
            break;
        }
        p += k;
        n -= (size_t)k;
    }
    if (a->fd > 2)
        close(a->fd);
    if (a->old_fd > 2)
        close(a->old_fd);
    buf_free(&a->cur);
    buf_free(&a->out);
    buf_free(&a->line);
    buf_free(&a->pend);
    free(a->tmp);
    fmt_free(&a->fmt);
    fmt_free(&a->fallback);
    free(a);
}

/* ==== a line ==== */

/* A line is written straight into the buffer after one reservation of
 * its longest possible size (line_bound): no check per piece. */

/* Bytes nginx escapes in strings from the request: ", \ and those
 * outside 0x20..0x7e (as \xHH). */
static const uint8_t esc_tab[256] = {
    [0 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1, [0x7f ... 0xff] = 1,
};

static char *put_esc(char *q, const char *p, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (!esc_tab[ch]) {
            *q++ = (char)ch;
            continue;
        }
        *q++ = '\\';
        *q++ = 'x';
        *q++ = hex[ch >> 4];
        *q++ = hex[ch & 15];
    }
    return q;
}

static inline char *put_s(char *q, const char *s, size_t n)
{
    if (n > 8) {
        memcpy(q, s, n);
        return q + n;
    }
    for (size_t i = 0; i < n; i++) /* most pieces: a few bytes, no call */
        q[i] = s[i];
    return q + n;
}

static inline char *put_dash(char *q)
{
    *q++ = '-';
    return q;
}

static inline char *put_u(char *q, uint64_t v)
{
    return q + num_put_dec(q, v);
}

/* µs as seconds with 3 decimals ("0.012"), nginx's $request_time. */
static char *put_sec(char *q, int64_t us)
{
    if (us < 0)
        return put_dash(q);
    uint64_t ms = (uint64_t)us / 1000;
    q = put_u(q, ms / 1000);
    *q++ = '.';
    *q++ = (char)('0' + ms / 100 % 10);
    *q++ = (char)('0' + ms / 10 % 10);
    *q++ = (char)('0' + ms % 10);
    return q;
}

static inline char *put_us(char *q, int64_t us)
{
    return us < 0 ? put_dash(q) : put_u(q, (uint64_t)us);
}

static void refresh_time(struct alog *a, time_t sec)
{
    static const char *mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    localtime_r(&sec, &tm);
    long off = tm.tm_gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    a->tlocal_len = (size_t)snprintf(
        a->tlocal, sizeof a->tlocal, "%02d/%s/%d:%02d:%02d:%02d %c%02ld%02ld",
        tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
        tm.tm_sec, sign, off / 60, off % 60);
    a->tiso_len = (size_t)snprintf(
        a->tiso, sizeof a->tiso, "%d-%02d-%02dT%02d:%02d:%02d%c%02ld:%02ld",
        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
        tm.tm_sec, sign, off / 60, off % 60);
    a->sec = sec;
}

/* The status the log gives r: as sent, or 499 when the client went away
 * before a head was sent (nginx's "client closed request"). */
static int log_status(const struct req *r)
{
    const struct h1_msg *m = &r->m;
    if (m->c == NULL && !m->head_sent)
        return 499;
    return m->status;
}

/* The client's address: from the connection, or the one noted when the
 * request ran (its client is gone). At most 63 bytes. */
static char *put_addr(char *q, const struct req *r)
{
    char addr[64];
    int port;
    if (r->m.c && h1_peer(&r->m, addr, sizeof addr, &port) == 0)
        return put_s(q, addr, strlen(addr));
    if (r->log.addr[0])
        return put_s(q, r->log.addr, strlen(r->log.addr));
    return put_dash(q);
}

static char *put_request(char *q, const struct h1_msg *m)
{
    if (m->method_len == 0) /* a head that never parsed that far */
        return put_dash(q);
    q = put_esc(q, m->head.data + m->method_off, m->method_len);
    *q++ = ' ';
    q = put_esc(q, m->head.data + m->url_off, m->url_len);
    return put_s(q, m->http_minor ? " HTTP/1.1" : " HTTP/1.0", 9);
}

/* The longest line f can make for m: every string from the request is
 * in its head (escaped: 4 bytes a byte at most, and $request or a field
 * at most twice... so 4 x head per such item), each other variable at
 * most 64 bytes, the literals, the newline. */
static void bound_init(struct afmt *f)
{
    f->fixed = f->text.len + 2;
    f->nreq = 0;
    for (unsigned i = 0; i < f->n; i++) {
        switch ((enum av)f->it[i].v) {
        case AV_REQUEST: case AV_METHOD: case AV_URI: case AV_HTTP:
            f->nreq++;
            break;
        default:
            f->fixed += 64;
            break;
        }
    }
}

static size_t line_bound(const struct afmt *f, const struct h1_msg *m)
{
    return f->fixed + f->nreq * (4 * m->head.len + 16);
}

/* r's time so far, µs; -1 when it was not timed (it began before a
 * reload turned the log on). */
static int64_t req_us(const struct req *r, int64_t now_us)
{
    return r->log.start_us ? now_us - r->log.start_us : -1;
}

static void put_line(struct alog *a, struct buf *b, const struct afmt *f,
                     struct req *r, int64_t now_us)
{
    const struct h1_msg *m = &r->m;
    if (buf_reserve(b, line_bound(f, m)) < 0) {
        a->dropped++;
        return;
    }
    struct timespec wall; /* a vDSO call; the text once a second */
    clock_gettime(CLOCK_REALTIME, &wall);
    if (wall.tv_sec != a->sec)
        refresh_time(a, wall.tv_sec);
    char *q = b->data + b->len;
    for (unsigned i = 0; i < f->n; i++) {
        const struct aitem *it = &f->it[i];
        switch ((enum av)it->v) {
        case AV_LIT: q = put_s(q, f->text.data + it->off, it->len); break;
        case AV_REMOTE_ADDR: q = put_addr(q, r); break;
        case AV_REMOTE_USER: q = put_dash(q); break;
        case AV_TIME_LOCAL: q = put_s(q, a->tlocal, a->tlocal_len); break;
        case AV_TIME_ISO8601: q = put_s(q, a->tiso, a->tiso_len); break;
        case AV_MSEC:
            q = put_sec(q, (int64_t)wall.tv_sec * 1000000 + wall.tv_nsec / 1000);
            break;
        case AV_REQUEST: q = put_request(q, m); break;
        case AV_METHOD:
            q = m->method_len ? put_esc(q, m->head.data + m->method_off,
                                        m->method_len)
                              : put_dash(q);
            break;
        case AV_URI:
            q = m->url_len ? put_esc(q, m->head.data + m->url_off, m->url_len)
                           : put_dash(q);
            break;
        case AV_PROTOCOL:
            q = put_s(q, m->http_minor ? "HTTP/1.1" : "HTTP/1.0", 8);
            break;
        case AV_STATUS: {
            int st = log_status(r);
            q = st > 0 ? put_u(q, (uint64_t)st) : put_dash(q);
            break;
        }
        case AV_BYTES_SENT: q = put_u(q, m->out_head + m->out_body); break;
        case AV_BODY_BYTES_SENT: q = put_u(q, m->out_body); break;
        case AV_HTTP: {
            size_t vl = 0;
            const char *v = m->nhdrs ? h1_header(m, f->text.data + it->off,
                                                 it->len, &vl)
                                     : NULL;
            q = v && vl ? put_esc(q, v, vl) : put_dash(q);
            break;
        }
        case AV_CACHE_STATUS:
            q = r->xcache ? put_s(q, r->xcache, strlen(r->xcache))
                          : put_dash(q);
            break;
        case AV_UP_STATUS:
            q = r->log.up_status > 0 ? put_u(q, (uint64_t)r->log.up_status)
                                     : put_dash(q);
            break;
        case AV_UP_RESPONSE_TIME: q = put_sec(q, r->log.up_time_us); break;
        case AV_UP_HEADER_TIME: q = put_sec(q, r->log.up_head_us); break;
        case AV_UP_TIME_US: q = put_us(q, r->log.up_time_us); break;
        case AV_UP_HEADER_TIME_US: q = put_us(q, r->log.up_head_us); break;
        case AV_REQUEST_TIME: q = put_sec(q, req_us(r, now_us)); break;
        case AV_REQUEST_TIME_US: q = put_us(q, req_us(r, now_us)); break;
        case AV_REQUEST_ID:
            req_id_hex(r, q);
            q += 16;
            break;
        case AV_PID: q = put_u(q, (uint64_t)getpid()); break;
        case AV_WORKER: q = put_u(q, a->worker); break;
        }
    }
    *q++ = '\n';
    b->len = (size_t)(q - b->data);
}

/* ==== a Lua function format ==== */

static void set_str(lua_State *L, const char *k, const char *p, size_t n)
{
    lua_pushlstring(L, p, n);
    lua_setfield(L, -2, k);
}

static void set_num(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

/* The record a format function gets: a table of the request's fields. */
static void push_rec(struct alog *a, lua_State *L, struct req *r,
                     int64_t now_us)
{
    const struct h1_msg *m = &r->m;
    char addr[64];
    lua_createtable(L, 0, 20);
    set_str(L, "remote_addr", addr, (size_t)(put_addr(addr, r) - addr));
    if (m->method_len)
        set_str(L, "method", m->head.data + m->method_off, m->method_len);
    if (m->url_len)
        set_str(L, "uri", m->head.data + m->url_off, m->url_len);
    set_str(L, "protocol", m->http_minor ? "HTTP/1.1" : "HTTP/1.0", 8);
    set_num(L, "status", log_status(r));
    set_num(L, "bytes_sent", (double)(m->out_head + m->out_body));
    set_num(L, "body_bytes_sent", (double)m->out_body);
    if (r->xcache)
        lua_pushstring(L, r->xcache), lua_setfield(L, -2, "cache_status");
    if (r->log.up_status > 0)
        set_num(L, "upstream_status", r->log.up_status);
    if (r->log.up_time_us >= 0)
        set_num(L, "upstream_time_us", (double)r->log.up_time_us);
    if (r->log.up_head_us >= 0)
        set_num(L, "upstream_header_time_us", (double)r->log.up_head_us);
    if (r->log.start_us)
        set_num(L, "request_time_us", (double)(now_us - r->log.start_us));
    char hex[16];
    req_id_hex(r, hex);
    set_str(L, "request_id", hex, 16);
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    set_num(L, "time", (double)wall.tv_sec + (double)wall.tv_nsec / 1e9);
    set_num(L, "worker", a->worker);
    /* the request's fields: headers["user-agent"] (lower-case names; the
     * first value of a repeated field) */
    lua_createtable(L, 0, (int)m->nhdrs);
    for (unsigned i = m->nhdrs; i-- > 0;) { /* the first one wins */
        const struct hdr *h = &m->hdrs[i];
        char name[64];
        if (h->nlen >= sizeof name)
            continue;
        for (size_t k = 0; k < h->nlen; k++) {
            char ch = m->head.data[h->name + k];
            name[k] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
        }
        lua_pushlstring(L, name, h->nlen);
        lua_pushlstring(L, m->head.data + h->val, h->vlen);
        lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "headers");
}

/* The line from the script's function into b; false when it failed (its
 * error logged once: the "luring" format is used from then on). */
static bool put_lua(struct alog *a, struct buf *b, struct req *r,
                    int64_t now_us)
{
    lua_State *co = a->co;
    lua_settop(co, 0);
    lua_rawgeti(co, LUA_REGISTRYINDEX, a->fn_ref);
    push_rec(a, co, r, now_us);
    /* a run like a handler's: lua_budget interrupts a loop, and
     * lua_max_memory holds */
    lua_State *prev = lbudget_enter(co);
    int rc = lua_pcall(co, 1, 1, 0);
    lbudget_leave(co, prev);
    if (rc != 0 || !lua_isstring(co, -1)) {
        const char *e = rc != 0 && lua_isstring(co, -1)
                            ? lua_tostring(co, -1)
                            : "it did not return a string";
        if (!a->fn_failed)
            log_err("access_log format function: %s (using the \"luring\" "
                    "format; logged once)", e);
        a->fn_failed = true;
        lua_settop(co, 0);
        return false;
    }
    size_t n;
    const char *p = lua_tolstring(co, -1, &n);
    buf_append(b, p, n);
    if (n == 0 || p[n - 1] != '\n')
        buf_append(b, "\n", 1);
    lua_settop(co, 0);
    return true;
}

/* A request's record waiting for the script's format function (a->pend):
 * what a stand-in struct req needs for push_rec and put_line; then the
 * head's bytes and its field offsets. */
struct prec {
    uint32_t size;          /* of the whole record in a->pend (8-aligned) */
    uint32_t head_len, nhdrs;
    uint32_t method_off, method_len, url_off, url_len;
    uint8_t http_minor;
    int status;             /* as logged (499 included) */
    uint64_t out_head, out_body, id;
    const char *xcache;     /* a string literal, or NULL */
    struct req_log log;     /* addr: the client's, whatever became of it */
    int64_t age_us;         /* the request's time at its end; -1: untimed */
};

#define ALIGN8(n) (((n) + 7) & ~(size_t)7)

/* Keep r's record for alog_run: a format function runs there, outside
 * any completion handler, store notification or Lua call of the worker
 * (as deferred deliver hooks do). */
static void keep_record(struct alog *a, struct req *r, int64_t now_us)
{
    const struct h1_msg *m = &r->m;
    size_t hoff = ALIGN8(sizeof(struct prec));
    size_t foff = ALIGN8(hoff + m->head.len);
    size_t size = ALIGN8(foff + m->nhdrs * sizeof(struct hdr));
    if (buf_reserve(&a->pend, size) < 0) {
        a->dropped++;
        return;
    }
    char *p = a->pend.data + a->pend.len;
    struct prec *pr = (struct prec *)(void *)p;
    memset(pr, 0, sizeof *pr);
    pr->size = (uint32_t)size;
    pr->head_len = (uint32_t)m->head.len;
    pr->nhdrs = m->nhdrs;
    pr->method_off = m->method_off;
    pr->method_len = m->method_len;
    pr->url_off = m->url_off;
    pr->url_len = m->url_len;
    pr->http_minor = m->http_minor;
    pr->status = log_status(r);
    pr->out_head = m->out_head;
    pr->out_body = m->out_body;
    pr->id = r->id;
    pr->xcache = r->xcache;
    pr->log = r->log;
    char *q = put_addr(pr->log.addr, r); /* at most 45 bytes: an address */
    *q = 0;
    pr->age_us = r->log.start_us ? now_us - r->log.start_us : -1;
    if (m->head.len)
        memcpy(p + hoff, m->head.data, m->head.len);
    if (m->nhdrs)
        memcpy(p + foff, m->hdrs, m->nhdrs * sizeof(struct hdr));
    a->pend.len += size;
}

void alog_run(struct alog *a)
{
    if (a == NULL || a->pend.len == 0)
        return;
    if (a->tmp == NULL && (a->tmp = calloc(1, sizeof *a->tmp)) == NULL)
        return; /* out of memory: kept for the next time */
    int64_t now_us = clock_us();
    struct req *t = a->tmp;
    for (size_t off = 0; off < a->pend.len;) {
        char *p = a->pend.data + off;
        const struct prec *pr = (const struct prec *)(void *)p;
        size_t hoff = ALIGN8(sizeof(struct prec));
        size_t foff = ALIGN8(hoff + pr->head_len);
        /* the stand-in: what put_line and push_rec read of a request */
        t->m.c = NULL;
        t->m.head = (struct buf){p + hoff, pr->head_len, pr->head_len};
        t->m.nhdrs = pr->nhdrs;
        memcpy(t->m.hdrs, p + foff, pr->nhdrs * sizeof(struct hdr));
        t->m.method_off = pr->method_off;
        t->m.method_len = pr->method_len;
        t->m.url_off = pr->url_off;
        t->m.url_len = pr->url_len;
        t->m.http_minor = pr->http_minor;
        t->m.head_sent = true; /* log_status: the status as logged */
        t->m.status = pr->status;
        t->m.out_head = pr->out_head;
        t->m.out_body = pr->out_body;
        t->id = pr->id;
        t->xcache = pr->xcache;
        t->log = pr->log;
        t->log.start_us = pr->age_us >= 0 ? now_us - pr->age_us : 0;
        bool done = false;
        if (a->co && !a->fn_failed) {
            a->line.len = 0;
            if (put_lua(a, &a->line, t, now_us)) {
                buf_append(&a->cur, a->line.data, a->line.len);
                done = true;
            }
        }
        if (!done)
            put_line(a, &a->cur, &a->fallback, t, now_us);
        off += pr->size;
    }
    a->pend.len = 0;
    if (a->pend.cap > 4 * ALOG_FLUSH)
        buf_reset(&a->pend, ALOG_FLUSH);
    if (a->cur.len >= ALOG_FLUSH)
        flush(a);
}

void alog_request(struct alog *a, struct req *r)
{
    if (!a->on)
        return;
    if (a->cur.len + a->pend.len >= ALOG_MAX) { /* the file does not keep up */
        a->dropped++;
        return;
    }
    int64_t now_us = clock_us();
    if (a->co && !a->fn_failed)
        keep_record(a, r, now_us);
    else
        put_line(a, &a->cur, a->co ? &a->fallback : &a->fmt, r, now_us);
    if (a->cur.len >= ALOG_FLUSH)
        flush(a);
}
