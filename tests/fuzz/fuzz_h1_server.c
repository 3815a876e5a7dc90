/* fuzz_h1_server.c - the HTTP/1.1 server state machine (http/h1_server.h)
 * driven from the client side: a real io_uring loop, the connection on one
 * end of a socketpair, the input fed to it in pieces through http_on_data
 * (as h1_on_recv would), and a stub handler layer (h1_server_ops) whose
 * `run` answers as the input's response plan says: at once or later,
 * Content-Length or chunked, echoing the request body (read first with
 * h1_body_start, as req:body() does), 204, a body shorter or longer than
 * its Content-Length, or failing half-way. Every plan but the echo
 * answers without reading the body (discarded, or a close).
 * Everything the server sends is read from the other end and must parse
 * as a sequence of well-formed responses (h1_parse.h), each with the body
 * the handler gave, in the order of the requests.
 *
 * Input: a split selector (fuzz.h), a control byte, a plan length k (0..7)
 * and k plan bytes (one per request, cyclic), then the client's bytes.
 * Control: bit 0: the client half-closes after its bytes; bit 1: every
 * timeout expires at the end (408 or close); bit 2: small limits (head
 * 256, target 64, body 64 bytes: 413, 414, 431).
 *
 * Invariants, besides ASan/UBSan (a h1_msg is freed at its release, so a
 * use after release is a report):
 *   - `run` gets one request at a time, once its head is parsed, and no
 *     more requests than the input has heads; a body read whole has its
 *     content_length bytes, when it has one;
 *   - each h1_msg made by `request` is released exactly once; after the
 *     client closes, the connection's slot is freed (nconns back to 0);
 *   - the output: responses only (a status line first), each parses, 100
 *     Continue only as interim, then one final response per answered
 *     request in order with its handler's status and body (none for
 *     HEAD), at most one error response (4xx/5xx from the server), and
 *     nothing after a response that says Connection: close;
 *   - a response is cut short only when its handler failed half-way, the
 *     client half-closed or a timeout fired; a handler failing half-way
 *     leaves the responses before it whole. */
#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "fuzz.h"
#include "http/h1_parse.h"
#include "http/h1_server.h"
#include "io/loop.h"
#include "io/ops.h"
#include "io/timer.h"

/* ==== what the server logs: counted, not printed ==== */

static unsigned nlogs;

void log_msg(const char *level, const char *fmt, ...)
{
    (void)level;
    (void)fmt;
    nlogs++;
}

/* ==== the handler layer ==== */

enum plan {
    P_LENGTH,   /* 200, Content-Length: 5, "hello" */
    P_CHUNKED,  /* 200, chunked "hel" "lo" (HTTP/1.0: until the close) */
    P_EMPTY,    /* 204 */
    P_ECHO,     /* 201, Content-Length: the request body, echoed */
    P_LATER,    /* 200 "later", answered after the next piece of input */
    P_SHORT,    /* 200, Content-Length: 10, only "hello": closes */
    P_LONG,     /* 200, Content-Length: 5, "hello, world": cut, closes */
    P_FAIL,     /* 200 chunked, "hel", then the handler fails: closes */
};

struct msg {
    struct h1_msg m; /* first: h1_server hands back &m */
    bool ran;
    struct h1_body_sink sink; /* P_ECHO: reads the body into m.body */
};

/* A request's expected response, in order. */
struct expect {
    int status;
    bool head;        /* HEAD: no body */
    bool cut;         /* the handler failed half-way or sent too little */
    uint64_t hash;    /* the body */
    size_t len;
};

#define MAX_EXPECT 512

static struct {
    const uint8_t *plan;
    size_t nplan;
    unsigned made, released, runs, answered, aborted;
    struct msg *running;   /* the request in its handler */
    struct msg *later;     /* P_LATER: to answer after the next piece */
    bool cut;              /* a response may be cut short */
    bool other_cut;        /* ...by a timeout, a half-close, an abort */
    int fail_at;           /* the first P_FAIL's response, or -1 */
    struct expect exp[MAX_EXPECT];
    unsigned nexp;
} T;

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}
#define FNV0 0xcbf29ce484222325ULL

static struct h1_msg *op_request(struct worker *w)
{
    (void)w;
    struct msg *x = calloc(1, sizeof *x);
    FUZZ_CHECK(x != NULL);
    h1_msg_reset(&x->m);
    T.made++;
    return &x->m;
}

static void op_release(struct h1_msg *m)
{
    struct msg *x = (struct msg *)m;
    T.released++;
    FUZZ_CHECK(T.released <= T.made);
    if (T.running == x)
        T.running = NULL;
    if (T.later == x)
        T.later = NULL;
    h1_msg_free(m);
    free(x); /* a use after release is an ASan report */
}

static void expect(int status, bool head, const char *body, size_t len,
                   bool cut)
{
    if (T.nexp == MAX_EXPECT)
        return;
    struct expect *e = &T.exp[T.nexp++];
    e->status = status;
    e->head = head;
    e->cut = cut;
    e->len = head || status == 204 ? 0 : len;
    e->hash = fnv(FNV0, body, e->len);
    if (cut)
        T.cut = true;
}

static void done(struct h1_msg *m)
{
    T.answered++;
    http_response_done(m);
}

static void answer(struct msg *x, enum plan plan)
{
    struct h1_msg *m = &x->m;
    switch (plan) {
    case P_LENGTH:
    case P_LATER: {
        const char *b = plan == P_LATER ? "later" : "hello";
        expect(200, m->is_head, b, 5, false);
        http_head_begin(m, 200);
        http_head_add(m, "X-Plan", 6, "length", 6);
        http_head_end(m, 5);
        http_body(m, b, 5, NULL, NULL, 0);
        done(m);
        break;
    }
    case P_CHUNKED:
        expect(200, m->is_head, "hello", 5, false);
        http_head_begin(m, 200);
        http_head_end(m, -1);
        http_body(m, "hel", 3, NULL, NULL, 0);
        http_body(m, "lo", 2, NULL, NULL, 0);
        done(m);
        break;
    case P_EMPTY:
        expect(204, m->is_head, "", 0, false);
        http_head_begin(m, 204);
        http_head_end(m, 0);
        http_body(m, "ignored", 7, NULL, NULL, 0);
        done(m);
        break;
    case P_ECHO:
        expect(201, m->is_head, m->body.data, m->body.len, false);
        http_head_begin(m, 201);
        http_head_end(m, (int64_t)m->body.len);
        http_body(m, m->body.data, m->body.len, NULL, NULL, 0);
        done(m);
        break;
    case P_SHORT:
        expect(200, m->is_head, "hello", 5, !m->is_head);
        http_head_begin(m, 200);
        http_head_end(m, 10);
        http_body(m, "hello", 5, NULL, NULL, 0);
        done(m);
        break;
    case P_LONG:
        expect(200, m->is_head, "hello", 5, false);
        http_head_begin(m, 200);
        http_head_end(m, 5);
        http_body(m, "hello, world", 12, NULL, NULL, 0);
        done(m);
        break;
    case P_FAIL:
        if (T.fail_at < 0)
            T.fail_at = (int)T.nexp;
        expect(200, m->is_head, "hel", 3, true);
        http_head_begin(m, 200);
        http_head_end(m, -1);
        http_body(m, "hel", 3, NULL, NULL, 0);
        T.answered++;
        http_response_abort(m);
        break;
    }
}

/* P_ECHO's body ended: echo it; or it failed: the status, as the Lua
 * layer answers (the connection closes after it); -1: the client is
 * gone, the abort follows. Runs inside h1_server's input handling, like a
 * resumed handler: the input buffered meanwhile is parsed after it. */
static void echo_body_end(struct h1_body_sink *s, int status)
{
    struct msg *x = (struct msg *)((char *)s - offsetof(struct msg, sink));
    struct h1_msg *m = &x->m;
    struct conn *c = m->c;
    if (status < 0)
        return;
    uint32_t gen = c->s.gen;
    if (status == 0) {
        if (m->content_length >= 0)
            FUZZ_CHECK(m->body.len == (size_t)m->content_length);
        answer(x, P_ECHO);
    } else {
        FUZZ_CHECK(status == 400 || status == 408 || status == 413 ||
                   status == 503);
        FUZZ_CHECK(!m->keep_alive);
        http_head_begin(m, status);
        http_head_end(m, 0);
        T.answered++;
        http_response_done(m);
    }
    if (c->s.gen == gen && c->state == CS_READING)
        http_process(c);
}

static void op_run(struct h1_msg *m)
{
    struct msg *x = (struct msg *)m;
    FUZZ_CHECK(T.running == NULL && T.later == NULL); /* one at a time */
    FUZZ_CHECK(!x->ran && m->c != NULL);
    FUZZ_CHECK(m->c->state == CS_HANDLING);
    x->ran = true;
    T.runs++;
    FUZZ_CHECK(m->body.len == 0); /* nothing of a body read before run */
    size_t vlen = 0;
    const char *host = h1_header(m, "host", 4, &vlen);
    if (host)
        FUZZ_CHECK(!memchr(host, '\r', vlen) && !memchr(host, '\n', vlen));
    enum plan plan = T.nplan ? (enum plan)(T.plan[(T.runs - 1) % T.nplan] & 7)
                             : P_LENGTH;
    if (plan == P_LATER) {
        T.later = x;
        return;
    }
    if (plan == P_ECHO && m->body_st == H1_BODY_UNREAD) {
        static const struct h1_body_sink sink = {NULL, echo_body_end};
        x->sink = sink;
        FUZZ_CHECK(h1_body_start(m, &x->sink, SIZE_MAX) == 0);
        return; /* answered at the body's end (maybe already) */
    }
    T.running = x;
    answer(x, plan);
    T.running = NULL;
}

static void op_writable(struct h1_msg *m) { (void)m; }

static void op_abort(struct h1_msg *m)
{
    /* the client is gone (m->c is NULL): a handler finishes, its response
     * goes nowhere, and the exchange is released */
    struct msg *x = (struct msg *)m;
    T.aborted++;
    if (T.later == x)
        T.later = NULL;
    T.cut = T.other_cut = true;
    http_response_done(m);
}

static void op_conn_freed(struct worker *w, unsigned listener, unsigned nconns)
{
    (void)w;
    (void)nconns;
}

static const struct h1_server_ops ops = {
    .request = op_request,
    .run = op_run,
    .release = op_release,
    .writable = op_writable,
    .abort = op_abort,
    .conn_freed = op_conn_freed,
};

/* ==== the loop ==== */

static struct loop *loop;
static struct timers timers;
static struct config cfg;
static struct h1_server srv;

static void on_cqe(void *ctx, const struct loop_cqe *cq)
{
    (void)ctx;
    switch (UD_OP(cq->ud)) {
    case OP_RECV: h1_on_recv(&srv, cq); break;
    case OP_SEND: h1_on_send(&srv, cq); break;
    default: break; /* OP_CLOSE, OP_CANCEL */
    }
}

static bool before(void *ctx)
{
    (void)ctx;
    outq_imm_settle(&srv.imm, on_cqe, NULL);
    h1_before_sleep(&srv);
    return true;
}

static void set_limits(bool small)
{
    cfg.max_header_size = small ? 256 : 8192;
    cfg.max_uri_size = small ? 64 : 4096;
    cfg.max_body_size = small ? 64 : 1 << 20;
}

static void setup(void)
{
    cfg.workers = 1;
    cfg.max_connections = 16;
    cfg.header_timeout_ms = 10000;
    cfg.idle_timeout_ms = 60000;
    cfg.body_timeout_ms = 30000;
    cfg.send_timeout_ms = 20000;
    set_limits(false);
    struct loop_config lc = {.entries = 64, .nbufs = 16, .buf_size = 4096};
    char err[256];
    loop = loop_new(&lc, err, sizeof err);
    if (loop == NULL) {
        fprintf(stderr, "fuzz_h1_server: %s\n", err);
        exit(1);
    }
    srv.loop = loop;
    srv.cfg = &cfg;
    srv.ops = &ops;
    srv.w = NULL;
    FUZZ_CHECK(h1_server_init(&srv, &timers) == 0);
}

/* ==== the client's end ==== */

static uint8_t out[1 << 20];
static size_t nout;

/* Read what the server sent (one read takes all a stream socket holds,
 * unless it fills the room). */
static void drain(int fd)
{
    for (;;) {
        char scratch[4096];
        bool full = nout == sizeof out;
        size_t room = full ? sizeof scratch : sizeof out - nout;
        ssize_t n = read(fd, full ? scratch : (char *)out + nout, room);
        if (n <= 0)
            return;
        if (!full)
            nout += (size_t)n;
        if ((size_t)n < room)
            return;
    }
}

static void step(int fd)
{
    loop_poll(loop, on_cqe, before, NULL);
    drain(fd);
}

/* Until the server has nothing more to send (or 8 steps). */
static void settle(struct conn *c, int fd)
{
    for (int i = 0; i < 8; i++) {
        bool busy = srv.dirty || srv.imm.head || srv.rearm ||
                    (c->state < CS_CLOSED && outq_pending(&c->out));
        if (!busy && i > 0)
            break;
        step(fd);
    }
}

/* The handler answers a P_LATER request (resumed, as lrt_continue does:
 * then the input buffered meanwhile is parsed). */
static void answer_later(void)
{
    struct msg *x = T.later;
    if (x == NULL)
        return;
    T.later = NULL;
    struct conn *c = x->m.c;
    uint32_t gen = c ? c->s.gen : 0;
    answer(x, P_LATER);
    if (c && c->s.gen == gen && c->state == CS_READING)
        http_process(c);
}

/* ==== the output ==== */

static size_t count_heads(const uint8_t *p, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i + 4 <= n; i++)
        if (memcmp(p + i, "\r\n\r\n", 4) == 0)
            k++;
    return k;
}

static bool has_close(const char *p, const struct h1_head *h)
{
    size_t vlen;
    const char *v = h1_field(p, h->fields, h->nfields, "connection", 10, &vlen);
    return v && h1_list_has(v, vlen, "close", 5);
}

/* A handler that fails half-way must not cost the requests before it
 * their complete responses (h1_server.c used to close at once and drop
 * what was still queued: corpus/fuzz_h1_server/finding_fail_drops_pipelined). */
static bool strict_fail(void)
{
    return T.fail_at >= 0 && !T.other_cut;
}

/* Parse the output: see the invariants above. */
static void check_output(void)
{
    static struct hdr fields[64];
    size_t pos = 0;
    unsigned finals = 0, errors = 0;
    bool closed = false;
    while (pos < nout) {
        FUZZ_CHECK(!closed); /* nothing after Connection: close */
        const char *p = (const char *)out + pos;
        size_t left = nout - pos;
        struct h1_scan s;
        size_t end = 0;
        h1_scan_init(&s);
        enum h1_scan_res r = h1_scan(&s, p, left, &end);
        FUZZ_CHECK(r != H1S_BAD);
        if (r == H1S_MORE) {
            FUZZ_CHECK(T.cut); /* a head cut short */
            return;
        }
        FUZZ_CHECK(memcmp(p, "HTTP/1.1 ", 9) == 0); /* no empty lines */
        struct expect *e = finals < T.nexp ? &T.exp[finals] : NULL;
        struct h1_head h;
        memset(&h, 0, sizeof h);
        h.fields = fields;
        h.max_fields = 64;
        const char *why = NULL;
        /* a 4xx/5xx comes from the server itself, not for HEAD */
        int ret = h1_parse_head(H1_RESPONSE, p, end, &h, 0, false, &why);
        FUZZ_CHECK(ret == 0);
        if (h.status >= 200 && h.status < 400 && e && e->head)
            ret = h1_parse_head(H1_RESPONSE, p, end, &h, 0, true, &why);
        FUZZ_CHECK(ret == 0 && h.minor == 1);
        pos += end;
        left -= end;
        /* the body */
        uint64_t hash = FNV0;
        size_t len = 0;
        bool cut = false;
        if (h.body == H1B_LENGTH) {
            len = (size_t)h.content_length;
            if (len > left) {
                cut = true;
                len = left;
            }
            hash = fnv(hash, out + pos, len);
            pos += len;
        } else if (h.body == H1B_CHUNKED) {
            struct h1_chunked d;
            h1_chunked_init(&d, 1024);
            enum h1_chunk_res cr = H1C_MORE;
            while (left) {
                size_t used = 0, dlen = 0;
                const char *data = NULL;
                cr = h1_chunked_feed(&d, (const char *)out + pos, left, &used,
                                     &data, &dlen);
                FUZZ_CHECK(cr != H1C_BAD);
                if (cr == H1C_DATA) {
                    hash = fnv(hash, data, dlen);
                    len += dlen;
                }
                pos += used;
                left -= used;
                if (cr == H1C_DONE)
                    break;
            }
            cut = cr != H1C_DONE;
        } else if (h.body == H1B_CLOSE) {
            hash = fnv(hash, out + pos, left);
            len = left;
            pos += left;
            closed = true;
        }
        if (cut)
            FUZZ_CHECK(T.cut);
        if (cut && strict_fail())
            FUZZ_CHECK((int)finals >= T.fail_at);
        if (h.status == 100) { /* 100 Continue, before the final one */
            FUZZ_CHECK(h.body == H1B_NONE);
            continue;
        }
        FUZZ_CHECK(h.status >= 200);
        if (has_close(p, &h) || h.body == H1B_CLOSE)
            closed = true;
        if (h.status >= 400) { /* the server's error response */
            errors++;
            FUZZ_CHECK(errors == 1 && closed && !cut);
            continue;
        }
        /* the handler's response to the next request */
        FUZZ_CHECK(e != NULL);
        finals++;
        FUZZ_CHECK(h.status == e->status);
        if (!cut && !e->cut)
            FUZZ_CHECK(len == e->len && hash == e->hash);
        else
            FUZZ_CHECK(len <= e->len);
    }
    /* every answered request got its response unless something was cut */
    if (!T.cut)
        FUZZ_CHECK(finals == T.nexp);
    if (strict_fail())
        FUZZ_CHECK((int)finals >= T.fail_at);
    FUZZ_CHECK(finals <= T.nexp);
}

/* ==== one input ==== */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (loop == NULL)
        setup();
    struct fuzz_split split;
    fuzz_split_take(&split, &data, &size);
    if (size < 2)
        return 0;
    uint8_t ctl = data[0];
    size_t k = data[1] & 7;
    data += 2, size -= 2;
    if (k > size)
        k = size;
    memset(&T, 0, sizeof T);
    T.fail_at = -1;
    T.plan = data;
    T.nplan = k;
    data += k, size -= k;
    set_limits(ctl & 4);
    nout = 0;

    int sv[2];
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                          0, sv) == 0);
    struct conn *c = h1_accept(&srv, sv[0], 0);
    FUZZ_CHECK(c != NULL);

    size_t off = 0;
    while (off < size && c->state < CS_CLOSED) {
        for (int i = 0; i < 8 && (c->flags & CF_RECV_PAUSED); i++)
            step(sv[1]);
        if (c->flags & CF_RECV_PAUSED)
            break; /* the client would wait */
        size_t len = fuzz_split_next(&split, size - off);
        if (c->state != CS_LINGER) /* h1_on_recv discards while lingering */
            http_on_data(c, (const char *)data + off, len);
        off += len;
        answer_later();
        if (srv.dirty)
            step(sv[1]);
    }
    answer_later();
    settle(c, sv[1]);
    if (ctl & 2) { /* every timeout expires */
        T.cut = T.other_cut = true;
        timers_expire(&timers, loop_now(loop) + 1000000000);
        settle(c, sv[1]);
    }
    if (ctl & 1) { /* the client half-closes */
        T.cut = T.other_cut = true;
        shutdown(sv[1], SHUT_WR);
        step(sv[1]);
        settle(c, sv[1]);
    }
    /* the client goes away: the slot comes free (a connection whose
     * receive is paused hears of it at its timeout) */
    drain(sv[1]);
    close(sv[1]);
    for (int i = 0; i < 16 && srv.nconns; i++) {
        if (i == 8)
            timers_expire(&timers, loop_now(loop) + 1000000000);
        loop_poll(loop, on_cqe, before, NULL);
    }
    FUZZ_CHECK(srv.nconns == 0);
    FUZZ_CHECK(T.released == T.made);
    FUZZ_CHECK(T.runs <= count_heads(data, size));
    if (getenv("FUZZ_DUMP")) /* what the client got, to look at one input */
        fprintf(stderr, "runs %u answered %u; %zu bytes out:\n%.*s\n",
                T.runs, T.answered, nout, (int)nout, (const char *)out);
    check_output();
    return 0;
}
