/* h1_server.c - HTTP/1.1 on h1_parse: strict request parsing with limits, pipelining
 * (one request handled at a time, responses in order), keep-alive, error
 * responses, and response framing (Content-Length or chunked). */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/num.h"
#include "http/h1_server.h"
#include "base/log.h"
#include "http/fields.h"
#include "io/ops.h"

#define IN_LIMIT  (64 * 1024)  /* buffered pipelined input before pausing */
#define LINGER_MS 2000         /* lingering close: wait this long for EOF */
#define KEEP_HEAD (4 * 1024)   /* a pooled request's head buffer kept */
#define KEEP_BODY (16 * 1024)  /* a pooled request's body buffer kept */
#define BUDGET_LOG_MS 1000     /* at most one "over budget" line this often */

/* ==== status lines ==== */

const char *http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* ==== timers ==== */

/* Put c on the timer list its state calls for. `progress`: something
 * happened that restarts a running timeout (body bytes, send progress). */
static void update_timer(struct conn *c, bool progress)
{
    enum tlist tl;
    switch (c->state) {
    case CS_READING:
        if (c->flags & CF_IN_HEAD)
            tl = TL_HEAD;
        else if (c->msg || (c->flags & CF_DISCARD))
            tl = TL_BODY;
        else if (outq_pending(&c->out))
            tl = TL_SEND;
        else
            tl = TL_IDLE;
        break;
    case CS_HANDLING:
        /* a body its consumer has room for: the client owes it */
        if (c->msg && c->msg->body_st == H1_BODY_READING && c->body_room &&
            !(c->flags & CF_RD_EOF))
            tl = TL_BODY;
        /* after the client's FIN its handler has send_timeout to answer
         * (a client that closed for good would otherwise keep the slot
         * for as long as a handler waits) */
        else
            tl = outq_pending(&c->out) || (c->flags & CF_RD_EOF) ? TL_SEND
                                                                  : TL_NONE;
        break;
    case CS_DRAINING: tl = TL_SEND; break;
    case CS_LINGER: tl = TL_LINGER; break;
    default: tl = TL_NONE; break;
    }
    /* the head timeout covers the whole head: never restarted by bytes */
    if (tl != c->tl || (progress && tl != TL_HEAD && tl != TL_LINGER))
        conn_touch(c, tl);
}

/* ==== the budget of connection buffers ==== */

/* The buffers of every worker's connections (their input, request heads and
 * bodies, copied output) hold more than conn_buffer_budget. A relaxed load:
 * no cost worth counting where it is asked, once per request head. */
static bool over_budget(const struct h1_server *srv)
{
    return budget_used(&srv->budget) > (int64_t)srv->cfg->conn_buffer_budget;
}

/* What the budget is being exceeded for, at most once a second. */
static void budget_log(struct h1_server *srv, const char *what)
{
    int64_t now = loop_now(srv->loop);
    if (srv->budget_logged && now - srv->budget_logged < BUDGET_LOG_MS)
        return;
    srv->budget_logged = now;
    log_warn("connection buffers over budget (%lld of %zu bytes): %s",
             (long long)budget_used(&srv->budget),
             srv->cfg->conn_buffer_budget, what);
}

static void in_account(struct conn *c)
{
    budget_set(&c->srv->budget, &c->in_held, c->in.cap);
}

static void msg_account(struct h1_msg *m)
{
    budget_set(&m->srv->budget, &m->held, m->head.cap + m->body.cap);
}

/* c reads no more until the buffers are below the budget again
 * (h1_before_sleep); its timeouts run meanwhile. */
static void budget_wait(struct conn *c)
{
    struct h1_server *srv = c->srv;
    if (!(c->flags & CF_BUDGET_WAIT)) {
        c->flags |= CF_BUDGET_WAIT;
        c->next_wait = srv->budget_wait;
        srv->budget_wait = c;
    }
    conn_pause_recv(c);
    budget_log(srv, "pausing reads");
}

/* ==== errors ==== */

/* Answer with `status` and close once it is sent. */
static void http_error(struct conn *c, int status)
{
    const char *reason = http_reason(status);
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 %d %s\r\nServer: luring\r\n%s"
                     "Content-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s\n",
                     status, reason, c->srv->date, strlen(reason) + 1, reason);
    if (c->msg) { /* what the access log says of it */
        c->msg->status = status;
        c->msg->out_head = (uint64_t)n - strlen(reason) - 1;
        c->msg->out_body = strlen(reason) + 1;
        c->srv->ops->release(c->msg);
        c->msg = NULL;
    }
    outq_copy(&c->out, hdr, (size_t)n);
    c->flags &= (uint16_t)~CF_IN_HEAD;
    c->state = CS_DRAINING;
    update_timer(c, true);
}

/* ==== parsing requests (h1_parse.h) ==== */

/* Where a connection is in the request it parses. */
enum {
    RS_HEAD,    /* a head, or between requests */
    RS_LENGTH,  /* a body of body_left more bytes */
    RS_CHUNKED, /* a chunked body (c->chunk) */
    RS_BROKEN,  /* a body that failed: nothing more is read */
};

void http_conn_init(struct conn *c)
{
    c->rstate = RS_HEAD;
    h1_scan_init(&c->scan);
    c->body_left = 0;
    c->body_read = 0;
    c->body_room = 0;
}

/* The longest head accepted: the request line (method, target, version)
 * and the field lines. */
static size_t head_limit(const struct config *cfg)
{
    return cfg->max_uri_size + cfg->max_header_size + 64;
}

/* Input is paused above this much buffered: at least a whole head. */
static size_t in_limit(const struct config *cfg)
{
    size_t h = head_limit(cfg) + 1024;
    return h > IN_LIMIT ? h : IN_LIMIT;
}

/* The head is parsed: the handler runs, whether a body follows or not (it
 * is read as it is demanded, h1_body_start). */
static void run_request(struct conn *c)
{
    struct h1_msg *m = c->msg;
    c->state = CS_HANDLING;
    update_timer(c, false);
    c->srv->ops->run(m); /* may finish at once (http_response_done) */
}

/* The head p[0..n) is complete: parse it into a new exchange. 0, or an
 * HTTP status to answer with. */
static int take_head(struct conn *c, const char *p, size_t n)
{
    const struct config *cfg = c->srv->cfg;
    struct h1_msg *m = c->srv->ops->request(c->srv->w);
    if (m == NULL) {
        log_err("out of memory for a request");
        return 503;
    }
    m->c = c;
    m->srv = c->srv;
    m->listener = c->listener;
    c->msg = m;
    if (buf_append(&m->head, p, n) < 0) {
        log_err("out of memory for a request head");
        return 503;
    }
    msg_account(m);
    struct h1_head h;
    h.fields = m->hdrs;
    h.max_fields = H1_MAX_HEADERS;
    const char *why;
    int e = h1_parse_head(H1_REQUEST, m->head.data, n, &h, cfg->max_uri_size,
                          false, &why);
    m->nhdrs = h.nfields;
    if (e) {
        log_info("request rejected with %d: %s", e, why);
        return e;
    }
    /* the field lines, without the request line, against their limit */
    size_t fields = n - (h.target + h.target_len + 11);
    if (fields > cfg->max_header_size) {
        log_info("request rejected with 431: %zu bytes of field lines",
                 fields);
        return 431;
    }
    m->method = h.method;
    m->method_off = h.method_off;
    m->method_len = h.method_len;
    m->url_off = h.target;
    m->url_len = h.target_len;
    if (h.method != H1_M_CONNECT && m->head.data[h.target] != '/' &&
        h.target_len > 1) {
        /* absolute-form (RFC 9112 §3.2.2): routed by its path and query
         * (the authority is after "://"; an empty path is "/") */
        const char *t = m->head.data + h.target, *te = t + h.target_len;
        const char *a = (const char *)memchr(t, ':', h.target_len) + 3;
        const char *q = a;
        while (q < te && *q != '/' && *q != '?')
            q++;
        m->url_off = (uint32_t)(q - m->head.data);
        m->url_len = (uint32_t)(te - q);
        /* its authority is the request's Host (§3.2.2: a recipient
         * ignores the Host field; a proxy generates Host from the
         * target): the Host field, or one added for HTTP/1.0, now reads
         * it, for routing keys, fills and passes alike. No userinfo
         * (RFC 9110 §4.2.4), no empty host (§4.2.1). */
        size_t al = (size_t)(q - a);
        if (al == 0 || !h1_host_ok(a, al) || a[0] == ':') {
            log_info("request rejected with 400: absolute-form target "
                     "without a valid authority");
            return 400;
        }
        struct hdr *host = NULL;
        for (unsigned i = 0; i < m->nhdrs && host == NULL; i++)
            if (field_name_is(m->head.data + m->hdrs[i].name,
                              m->hdrs[i].nlen, "host", 4))
                host = &m->hdrs[i];
        if (host == NULL && m->nhdrs < H1_MAX_HEADERS) {
            /* its name after the head (m->head.len grows by 4) */
            uint32_t a_off = (uint32_t)(a - m->head.data);
            if (buf_append(&m->head, "Host", 4) < 0)
                return 503;
            host = &m->hdrs[m->nhdrs++];
            host->name = (uint32_t)n;
            host->nlen = 4;
            a = m->head.data + a_off; /* the buffer may have moved */
        }
        if (host != NULL) {
            host->val = (uint32_t)(a - m->head.data);
            host->vlen = (uint32_t)al;
        }
    }
    m->pre_seen = h.pre_seen;
    m->pre_many = h.pre_many;
    memcpy(m->pre_first, h.pre_first, sizeof m->pre_first);
    m->http_minor = h.minor;
    m->is_head = h.method == H1_M_HEAD;
    m->keep_alive = h.keep_alive;
    m->content_length = -1;
    c->flags &= (uint16_t)~CF_IN_HEAD;
    c->body_read = 0;
    c->body_room = 0;
    switch (h.body) {
    case H1B_LENGTH:
        if ((uint64_t)h.content_length > cfg->max_body_size)
            return 413; /* before any 100 Continue (RFC 9110 §10.1.1) */
        m->content_length = h.content_length;
        c->body_left = h.content_length;
        c->rstate = h.content_length ? RS_LENGTH : RS_HEAD;
        break;
    case H1B_CHUNKED:
        h1_chunked_init(&c->chunk, (uint32_t)cfg->max_header_size);
        c->rstate = RS_CHUNKED;
        m->body_chunked = true;
        break;
    default:
        c->rstate = RS_HEAD;
        break;
    }
    if (c->rstate != RS_HEAD) {
        m->body_st = H1_BODY_UNREAD;
        /* 100 Continue waits for the body's first demand (h1_body_start);
         * HTTP/1.0 clients don't know it (RFC 9110 §10.1.1) */
        m->expect = h.expect_continue && h.minor == 1;
    }
    update_timer(c, true);
    return 0;
}

/* Decode body bytes of the current request from p[0..len), as many as
 * c->body_room allows, for sink s (NULL: discard them; s->data NULL:
 * append them to m->body). Returns the bytes used; *ev is 0 (the body
 * goes on: more input or more room needed), 1 (it ended: c->rstate is
 * RS_HEAD again) or the HTTP status it fails with (400, 413, 503). */
static size_t body_decode(struct conn *c, struct h1_body_sink *s,
                          const char *p, size_t len, int *ev)
{
    const struct config *cfg = c->srv->cfg;
    size_t off = 0;
    *ev = 0;
    while (off < len && c->body_room > 0) {
        size_t in = len - off, used, dn;
        const char *d;
        bool end = false;
        /* decoded data is never more than the input it comes from: giving
         * the decoder at most body_room bytes keeps the sink's bound */
        if (in > c->body_room)
            in = c->body_room;
        if (c->rstate == RS_LENGTH) {
            if ((int64_t)in > c->body_left)
                in = (size_t)c->body_left;
            d = p + off;
            dn = used = in;
            c->body_left -= (int64_t)in;
            end = c->body_left == 0;
        } else {
            switch (h1_chunked_feed(&c->chunk, p + off, in, &used, &d, &dn)) {
            case H1C_DATA: break;
            case H1C_DONE: end = true; dn = 0; break;
            case H1C_BAD:
                log_info("request body rejected with 400: invalid chunked "
                         "framing");
                *ev = 400;
                return off + used;
            default: dn = 0; break;
            }
        }
        off += used;
        if (dn) {
            c->body_read += (int64_t)dn;
            if ((uint64_t)c->body_read > cfg->max_body_size) {
                log_info("request body rejected with 413: over max_body_size "
                         "(%zu bytes)", cfg->max_body_size);
                *ev = 413;
                return off;
            }
            if (s == NULL) {
                /* discarded */
            } else if (s->data) {
                c->body_room = s->data(s, d, dn);
            } else {
                struct h1_msg *m = c->msg;
                if (buf_append(&m->body, d, dn) < 0) {
                    log_err("out of memory for a request body");
                    *ev = 503;
                    return off;
                }
                msg_account(m);
                if (over_budget(c->srv))
                    budget_wait(c); /* what has arrived is kept */
            }
        }
        if (end) {
            c->rstate = RS_HEAD;
            *ev = 1;
            return off;
        }
        if (used == 0 && dn == 0)
            break;
    }
    return off;
}

/* Parse one step of the request from p[0..len): *used bytes taken. 1: the
 * request is complete; 0: more input needed (all of it used, or a partial
 * head left unused); an HTTP status: the request is rejected. */
static int parse_step(struct conn *c, const char *p, size_t len, size_t *used)
{
    const struct config *cfg = c->srv->cfg;
    *used = 0;
    switch (c->rstate) {
    case RS_HEAD: {
        if (!(c->flags & CF_IN_HEAD)) {
            c->flags |= CF_IN_HEAD;
            h1_scan_init(&c->scan);
            update_timer(c, false);
        }
        size_t end;
        enum h1_scan_res r = h1_scan(&c->scan, p, len, &end);
        if (r == H1S_BAD) {
            log_info("request rejected with 400: a bare CR or LF in its head");
            return 400;
        }
        if (r == H1S_MORE) {
            if (len > head_limit(cfg))
                return c->scan.started ? 431 : 414;
            return 0; /* the caller keeps the partial head */
        }
        int e = take_head(c, p, end);
        if (e)
            return e;
        *used = end;
        return 1; /* a body, if any, is read as its handler demands it */
    }
    case RS_LENGTH:
    case RS_CHUNKED: {
        /* the unread body of a request already answered (CF_DISCARD):
         * read and dropped, under max_body_size and body_timeout */
        int ev;
        *used = body_decode(c, NULL, p, len, &ev);
        if (ev > 1) {
            /* where the next request starts can't be told: what is
             * queued goes out, then the connection closes */
            c->flags &= (uint16_t)~CF_DISCARD;
            c->rstate = RS_HEAD;
            c->state = CS_DRAINING;
            c->in.len = 0;
            *used = len;
            if (outq_pending(&c->out) == 0)
                conn_close(c);
            else
                update_timer(c, true);
            return 0;
        }
        if (ev == 1)
            c->flags &= (uint16_t)~CF_DISCARD;
        update_timer(c, true);
        return 0;
    }
    }
    return 400;
}

/* Parse and run requests from p[0..len) while the connection can take them.
 * Returns bytes consumed; the caller keeps the rest. */
static size_t run_input(struct conn *c, const char *p, size_t len)
{
    size_t off = 0;
    uint16_t parsing = c->flags & CF_PARSING;
    c->flags |= CF_PARSING;
    while (off < len && c->state == CS_READING &&
           outq_pending(&c->out) < OUT_HIGH) {
        if (c->rstate == RS_HEAD && !(c->flags & CF_IN_HEAD) &&
            over_budget(c->srv)) {
            /* A new request while the buffers are over budget. Input
             * already buffered, or a response still going out: wait with
             * it. A head straight from the socket on an idle connection
             * would have to be buffered: 503 and close instead. */
            if (c->in.len || outq_pending(&c->out)) {
                budget_wait(c);
                break;
            }
            budget_log(c->srv, "503 to a new request");
            c->flags = (uint16_t)((c->flags & ~CF_PARSING) | parsing);
            http_error(c, 503);
            return len;
        }
        size_t n;
        int r = parse_step(c, p + off, len - off, &n);
        off += n;
        if (r > 1) {
            c->flags = (uint16_t)((c->flags & ~CF_PARSING) | parsing);
            http_error(c, r);
            return len;
        }
        if (r == 1) {
            /* a body its handler demands at once is taken from here */
            c->pend = p + off;
            c->pend_len = len - off;
            c->pend_used = 0;
            run_request(c);
            off += c->pend_used;
            c->pend = NULL;
        } else if (n == 0)
            break; /* a partial head: kept by the caller */
    }
    c->flags = (uint16_t)((c->flags & ~CF_PARSING) | parsing);
    if (c->state == CS_DRAINING || c->state == CS_LINGER ||
        c->state >= CS_CLOSED)
        return len; /* closing: the rest is discarded */
    return off;
}

/* ==== input ==== */

static void keep_input(struct conn *c, const char *p, size_t len)
{
    if (len == 0)
        return;
    if (buf_append(&c->in, p, len) < 0) {
        log_err("out of memory buffering input: closing connection");
        conn_close(c);
        return;
    }
    in_account(c);
    if (c->in.len >= in_limit(c->srv->cfg))
        conn_pause_recv(c);
    else if (over_budget(c->srv))
        budget_wait(c);
}

/* ==== request bodies (see h1_server.h) ==== */

/* Does c's running request have a consumer with room for body bytes? */
static bool body_wanted(const struct conn *c)
{
    return c->state == CS_HANDLING && c->msg &&
           c->msg->body_st == H1_BODY_READING && c->body_room > 0;
}

/* The body of c's request ended (ev 1) or failed (ev: an HTTP status; -1
 * the client is gone): its sink is detached, then told. The sink's end
 * may finish the response, release the exchange or close c: nothing of
 * them is touched after it. */
static void body_finish(struct conn *c, int ev)
{
    struct h1_msg *m = c->msg;
    struct h1_body_sink *s = m->sink;
    m->sink = NULL;
    if (ev == 1) {
        m->body_st = s && s->data ? H1_BODY_PASSED : H1_BODY_READ;
        ev = 0;
    } else {
        /* where the body ends can't be known any more: what follows it
         * is never read as a request, the connection closes after the
         * response */
        m->body_st = H1_BODY_FAILED;
        m->body_err = ev;
        m->keep_alive = false;
        m->expect = false;
        c->rstate = RS_BROKEN;
        c->flags |= CF_CLOSE_AFTER;
        c->in.len = 0;
    }
    update_timer(c, true);
    if (s)
        s->end(s, ev);
}

/* Hand c's buffered input to the body's sink, as far as it has room;
 * read again below the input limit; close once a FIN leaves the body
 * short. */
static void body_pump(struct conn *c)
{
    struct h1_msg *m = c->msg;
    if (c->flags & CF_PARSING) {
        /* demanded by a handler run_input is running: from the input it
         * walks, straight to the sink (the head's own send can carry it);
         * the rest (input buffer, FIN) once run_input is done */
        if (c->pend && c->pend_used < c->pend_len && body_wanted(c)) {
            int ev;
            size_t n = body_decode(c, m->sink, c->pend + c->pend_used,
                                   c->pend_len - c->pend_used, &ev);
            c->pend_used += n;
            if (ev)
                body_finish(c, ev);
            else
                update_timer(c, true);
        }
        return;
    }
    if (c->in.len && body_wanted(c)) {
        int ev;
        size_t n = body_decode(c, m->sink, c->in.data, c->in.len, &ev);
        buf_consume(&c->in, n);
        if (ev) {
            if ((c->flags & (CF_RECV_PAUSED | CF_BUDGET_WAIT)) ==
                    CF_RECV_PAUSED && ev == 1 &&
                c->in.len < in_limit(c->srv->cfg))
                conn_resume_recv(c);
            body_finish(c, ev);
            return;
        }
        if (n)
            update_timer(c, true);
    }
    if (c->state != CS_HANDLING || m == NULL ||
        m->body_st != H1_BODY_READING)
        return;
    if (c->in.len < in_limit(c->srv->cfg) &&
        (c->flags & (CF_RECV_PAUSED | CF_BUDGET_WAIT)) == CF_RECV_PAUSED)
        conn_resume_recv(c);
    if ((c->flags & CF_RD_EOF) && c->in.len == 0) {
        /* the client's FIN cut the body short: it can never end (the
         * client may still read: it gets a 400 if nothing was sent) */
        log_info("request body rejected with 400: cut short by the "
                 "client's FIN");
        body_finish(c, 400);
    }
}

int h1_body_start(struct h1_msg *m, struct h1_body_sink *s, size_t room)
{
    struct conn *c = m->c;
    if (c == NULL || m->body_st != H1_BODY_UNREAD)
        return -1;
    m->sink = s;
    m->body_st = H1_BODY_READING;
    c->body_room = room;
    if (m->expect) {
        /* the body is wanted now: tell the client to send it, unless a
         * final response already went out (RFC 9110 §10.1.1) */
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        m->expect = false;
        if (!m->head_sent)
            outq_copy(&c->out, cont, sizeof cont - 1);
    }
    update_timer(c, true);
    body_pump(c);
    return 0;
}

void h1_body_more(struct h1_msg *m, size_t room)
{
    struct conn *c = m->c;
    if (c == NULL || m->body_st != H1_BODY_READING)
        return;
    bool was = c->body_room > 0;
    c->body_room = room;
    if (!was)
        update_timer(c, true);
    body_pump(c);
}

void h1_body_stop(struct h1_msg *m)
{
    if (m->body_st != H1_BODY_READING)
        return;
    m->sink = NULL;
    m->body_st = H1_BODY_STOPPED;
    if (m->c) {
        m->c->body_room = 0;
        update_timer(m->c, false);
    }
}

void h1_body_move(struct h1_msg *m, struct h1_body_sink *s)
{
    if (m->body_st == H1_BODY_READING)
        m->sink = s;
}

/* A sink still attached when its exchange ends early (the response is
 * done or aborted, the client is gone): it hears -1. */
static void body_detach(struct h1_msg *m)
{
    struct h1_body_sink *s = m->sink;
    if (s == NULL)
        return;
    m->sink = NULL;
    m->body_st = H1_BODY_FAILED;
    m->body_err = -1;
    s->end(s, -1);
}

void http_on_data(struct conn *c, const char *p, size_t len)
{
    if (c->in.len == 0 && body_wanted(c)) {
        /* straight from the receive buffer to the sink: one copy */
        int ev;
        size_t n = body_decode(c, c->msg->sink, p, len, &ev);
        p += n;
        len -= n;
        if (ev)
            body_finish(c, ev); /* may end the response: state changes */
        else
            update_timer(c, true);
    }
    switch (c->state) {
    case CS_READING:
        if (c->in.len == 0) {
            size_t n = run_input(c, p, len); /* parse in place: no copy */
            keep_input(c, p + n, len - n);
        } else {
            keep_input(c, p, len);
            http_process(c);
        }
        if (c->in.len && body_wanted(c))
            body_pump(c); /* demanded while the head was being parsed */
        break;
    case CS_HANDLING:
        if (c->rstate == RS_BROKEN)
            break; /* after a failed body nothing more is read */
        keep_input(c, p, len);
        if (c->state == CS_HANDLING && body_wanted(c))
            body_pump(c);
        break;
    default: /* draining, lingering or closed: input is discarded */
        break;
    }
}

void http_process(struct conn *c)
{
    /* nested in run_input (a handler answered inside it): the loop there
     * goes on with the input */
    if (c->state != CS_READING || c->in.len == 0 || (c->flags & CF_PARSING))
        return;
    size_t n = run_input(c, c->in.data, c->in.len);
    if (c->state >= CS_CLOSED)
        return;
    buf_consume(&c->in, n);
    if (c->in.len < in_limit(c->srv->cfg) &&
        (c->flags & (CF_RECV_PAUSED | CF_BUDGET_WAIT)) == CF_RECV_PAUSED)
        conn_resume_recv(c);
    if (body_wanted(c))
        body_pump(c); /* demanded while the head was being parsed */
}

/* The client half-closed (or closed) its side: nothing more will come.
 * Requests it sent in full are still answered, in order (a client may
 * send its requests and shut its write side, RFC 9112 §9.6); once the
 * last response is out the connection closes. A request cut by the EOF
 * can never complete and is dropped then. */
static bool eof_finish(struct conn *c)
{
    if (!(c->flags & CF_RD_EOF) || c->state != CS_READING ||
        outq_pending(&c->out) > 0)
        return false;
    conn_close(c);
    return true;
}

static void http_on_eof(struct conn *c)
{
    if (c->state == CS_LINGER || c->state >= CS_CLOSED) {
        conn_close(c);
        return;
    }
    c->flags |= CF_RD_EOF;
    c->flags &= (uint16_t)~CF_RECV_PAUSED; /* nothing to pause any more */
    update_timer(c, false);
    if (c->state == CS_READING)
        http_process(c);
    else if (c->state == CS_HANDLING && c->msg &&
             c->msg->body_st == H1_BODY_READING)
        body_pump(c); /* the body is cut short unless all of it is in */
    if (c->state < CS_CLOSED)
        eof_finish(c);
}

void http_on_timeout(struct conn *c, enum tlist tl)
{
    if (tl == TL_BODY && c->state == CS_HANDLING && c->msg &&
        c->msg->body_st == H1_BODY_READING)
        body_finish(c, 408); /* its consumer answers 408 or closes */
    else if (tl == TL_BODY && (c->flags & CF_DISCARD))
        conn_close(c); /* the response went out already */
    else if (tl == TL_BODY && c->state == CS_HANDLING)
        update_timer(c, false); /* the body's consumer has no room: the
                                   client is not waited for */
    else if ((tl == TL_HEAD && (c->flags & CF_IN_HEAD)) || tl == TL_BODY)
        http_error(c, 408);
    else
        conn_close(c); /* idle, no send progress, or linger over */
}

void http_on_sent(struct conn *c, bool all)
{
    struct h1_msg *m = c->msg;
    if (c->state == CS_HANDLING && m) {
        /* a producer held back by the queue goes on (delivery from a
         * cache object pumps, a req:write resumes): the handler may finish,
         * and what it queued is not sent yet */
        c->srv->ops->writable(m);
        if (c->state >= CS_CLOSED)
            return;
        if (outq_pending(&c->out) > 0)
            all = false;
    }
    if (!all) { /* progress: restart the send timeout */
        update_timer(c, true);
        return;
    }
    switch (c->state) {
    case CS_DRAINING:
        if (c->flags & CF_RD_EOF) { /* nothing left to linger for */
            conn_close(c);
            break;
        }
        /* Lingering close: shut our side, read until the client closes, so
         * unread input doesn't turn into a reset that destroys the
         * response in flight (nginx's lingering_close). */
        shutdown(c->s.fd, SHUT_WR);
        c->state = CS_LINGER;
        c->in.len = 0;
        if (c->flags & CF_RECV_PAUSED)
            conn_resume_recv(c);
        update_timer(c, true);
        break;
    case CS_HANDLING:
        update_timer(c, true);
        break;
    case CS_READING:
        update_timer(c, false);
        http_process(c);
        if (c->state < CS_CLOSED)
            eof_finish(c);
        break;
    default:
        break;
    }
}

/* ==== requests ==== */

const char *h1_header(const struct h1_msg *m, const char *name, size_t nlen,
                       size_t *vlen)
{
    return h1_field(m->head.data, m->hdrs, m->nhdrs, name, nlen, vlen);
}

/* ==== responses ==== */

/* The head is built in the worker's scratch buffer and queued with one
 * outq_copy at http_head_end: a head that fails half-way (a bad header
 * from Lua) is never sent. Out of memory while building: the head is
 * dropped and the connection closed at http_head_end. */

static void head_put(struct h1_server *srv, const char *p, size_t n)
{
    if (!srv->rhead_oom && buf_append(&srv->rhead, p, n) < 0)
        srv->rhead_oom = true;
}

void http_head_begin(struct h1_msg *m, int status)
{
    http_head_begin_at(m, status, true);
}

void http_head_begin_at(struct h1_msg *m, int status, bool date)
{
    struct h1_server *srv = m->srv;
    const char *reason = http_reason(status);
    size_t rlen = strlen(reason);
    char line[64];
    memcpy(line, "HTTP/1.1 ", 9);
    line[9] = (char)('0' + status / 100 % 10);
    line[10] = (char)('0' + status / 10 % 10);
    line[11] = (char)('0' + status % 10);
    line[12] = ' ';
    m->status = status;
    srv->rhead.len = 0;
    srv->rhead_oom = false;
    head_put(srv, line, 13);
    head_put(srv, reason, rlen);
    head_put(srv, "\r\nServer: luring\r\n", 18);
    if (date)
        head_put(srv, srv->date, srv->date_len);
}

int http_head_add(struct h1_msg *m, const char *name, size_t nlen,
                  const char *val, size_t vlen)
{
    if (!field_is_token(name, nlen) || !field_value_ok(val, vlen))
        return -1;
    struct h1_server *srv = m->srv;
    if (srv->rhead_oom || buf_reserve(&srv->rhead, nlen + vlen + 4) < 0) {
        srv->rhead_oom = true;
        return 0;
    }
    char *p = srv->rhead.data + srv->rhead.len;
    memcpy(p, name, nlen);
    p += nlen;
    *p++ = ':';
    *p++ = ' ';
    memcpy(p, val, vlen);
    p += vlen;
    *p++ = '\r';
    *p++ = '\n';
    srv->rhead.len += nlen + vlen + 4;
    return 0;
}

void http_head_end(struct h1_msg *m, int64_t content_length)
{
    struct conn *c = m->c;
    struct h1_server *srv = m->srv;
    char line[128];
    size_t n = 0;
    bool no_body = m->status < 200 || m->status == 204 || m->status == 304;
    m->chunked = false;
    m->fixed_len = false;
    m->resp_left = 0;
#define PUT(lit) (memcpy(line + n, lit, sizeof lit - 1), n += sizeof lit - 1)
    if (no_body) {
        /* no framing */
    } else if (content_length >= 0) {
        PUT("Content-Length: ");
        n += num_put_dec(line + n, (uint64_t)content_length);
        PUT("\r\n");
        m->resp_left = m->is_head ? 0 : content_length;
        m->fixed_len = true;
    } else if (m->http_minor == 0) {
        m->keep_alive = false; /* HTTP/1.0: the body ends at close */
    } else {
        PUT("Transfer-Encoding: chunked\r\n");
        m->chunked = !m->is_head;
    }
    /* answered before the body it asked to send was wanted: the client
     * may send it or not, so where the next request starts is unknown
     * (RFC 9110 §10.1.1: say that the connection closes) */
    if ((c->flags & CF_CLOSE_AFTER) || srv->stopping || srv->draining ||
        m->expect)
        m->keep_alive = false;
    if (!m->keep_alive)
        PUT("Connection: close\r\n");
    else if (m->http_minor == 0)
        PUT("Connection: keep-alive\r\n");
    PUT("\r\n");
#undef PUT
    head_put(srv, line, n);
    m->head_sent = true;
    if (srv->rhead_oom) {
        /* nothing of this response is sent; the connection closes once
         * the responses before it are out */
        log_err("out of memory building a response head: closing connection");
        m->keep_alive = false;
        m->head_lost = true;
        m->chunked = false;
        m->resp_left = 0;
        return;
    }
    m->out_head = srv->rhead.len;
    outq_copy(&c->out, srv->rhead.data, srv->rhead.len);
}

void http_head_raw(struct h1_msg *m, const char *p, size_t n)
{
    head_put(m->srv, p, n);
}

void http_body(struct h1_msg *m, const char *p, size_t len, seg_release_pt rel,
               void *arg, intptr_t aux)
{
    struct conn *c = m->c;
    if (len == 0 || m->is_head || m->head_lost || m->status == 204 ||
        m->status == 304) {
        if (rel)
            rel(m->srv->w, arg, aux);
        return;
    }
    if (m->chunked) {
        static const char hex[] = "0123456789abcdef";
        char size[24];
        size_t n = sizeof size - 2;
        size[n] = '\r';
        size[n + 1] = '\n';
        size_t v = len;
        do {
            size[--n] = hex[v & 15];
            v >>= 4;
        } while (v);
        outq_copy(&c->out, size + n, sizeof size - n);
        m->out_body += sizeof size - n + 2;
    } else if (m->fixed_len) {
        if ((int64_t)len > m->resp_left) {
            log_warn("response body longer than its Content-Length "
                     "(%zu bytes dropped): closing connection",
                     len - (size_t)m->resp_left);
            len = (size_t)m->resp_left;
            m->keep_alive = false;
            if (len == 0) {
                if (rel)
                    rel(m->srv->w, arg, aux);
                return;
            }
        }
        m->resp_left -= (int64_t)len;
    }
    m->out_body += len;
    if (rel)
        outq_ref(&c->out, p, len, rel, arg, aux);
    else
        outq_copy(&c->out, p, len);
    if (m->chunked)
        outq_copy(&c->out, "\r\n", 2);
}

void http_response_done(struct h1_msg *m)
{
    struct conn *c = m->c;
    if (c == NULL) { /* client went away meanwhile */
        m->srv->ops->release(m);
        return;
    }
    if (m->chunked) {
        outq_copy(&c->out, "0\r\n\r\n", 5);
        m->out_body += 5;
    }
    if (m->resp_left != 0 && !m->is_head) {
        log_warn("response body length differs from its Content-Length: "
                 "closing connection");
        m->keep_alive = false;
    }
    bool keep = m->keep_alive;
    body_detach(m); /* a consumer still attached: the body isn't wanted */
    if (c->state >= CS_CLOSED)
        return;
    c->msg = NULL;
    m->srv->ops->release(m);
    if (c->state >= CS_CLOSED)
        return;
    if (!keep) {
        c->state = CS_DRAINING;
        c->in.len = 0;
        /* everything was sent already (a body delimited by the close
         * whose last bytes went out before its end was known): no send
         * completion is coming to close, so close now */
        if (outq_pending(&c->out) == 0) {
            http_on_sent(c, true);
            return;
        }
    } else {
        c->state = CS_READING;
        if (c->rstate == RS_LENGTH || c->rstate == RS_CHUNKED) {
            /* a body nobody read (all of it, or the rest after its
             * consumer stopped): read and dropped before the next
             * request (nginx's discarded body) */
            c->flags |= CF_DISCARD;
            c->body_room = SIZE_MAX;
        }
    }
    /* Pipelined input left in c->in is parsed by the caller: run_input's
     * loop when the handler finished at once, the resumed handler
     * otherwise. */
    update_timer(c, true);
}

void http_response_abort(struct h1_msg *m)
{
    struct conn *c = m->c;
    body_detach(m);
    if (c->state >= CS_CLOSED)
        return;
    c->msg = NULL;
    m->srv->ops->release(m);
    if (c->state >= CS_CLOSED)
        return;
    /* What is queued still goes out: whole responses to requests
     * pipelined before this one, then the start of this one, which the
     * close after it marks as cut short (it never ends as its framing
     * says). Pipelined input after it is not read. */
    c->state = CS_DRAINING;
    c->in.len = 0;
    if (outq_pending(&c->out) == 0) {
        conn_close(c);
        return;
    }
    update_timer(c, true);
}

/* ==== exchanges ==== */

void h1_msg_reset(struct h1_msg *m)
{
    m->c = NULL;
    m->head.len = 0;
    m->url_off = m->url_len = 0;
    m->method_off = m->method_len = 0;
    m->method = H1_M_OTHER;
    m->nhdrs = 0;
    m->pre_seen = m->pre_many = 0;
    m->body.len = 0;
    m->sink = NULL;
    m->body_st = H1_BODY_NONE;
    m->body_chunked = m->expect = false;
    m->body_err = 0;
    m->content_length = -1;
    m->keep_alive = false;
    m->is_head = false;
    m->status = 0;
    m->head_sent = m->chunked = m->head_lost = m->fixed_len = false;
    m->resp_left = 0;
    m->out_head = m->out_body = 0;
}

void h1_msg_trim(struct h1_msg *m)
{
    buf_reset(&m->head, KEEP_HEAD);
    buf_reset(&m->body, KEEP_BODY);
    if (m->held) /* what stays is the pool's, not a connection's */
        budget_set(&m->srv->budget, &m->held, 0);
}

void h1_msg_free(struct h1_msg *m)
{
    buf_free(&m->head);
    buf_free(&m->body);
    if (m->held)
        budget_set(&m->srv->budget, &m->held, 0);
}

/* ==== connections: slots, timeouts, receive, send ==== */

/* ==== timers ==== */

void conn_touch(struct conn *c, enum tlist tl)
{
    struct h1_server *srv = c->srv;
    c->tl = tl;
    if (tl == TL_NONE)
        timer_disarm(&c->timer);
    else
        timer_arm(srv->tq[tl], &c->timer, loop_now(srv->loop));
}

/* A connection's timeout expired (io/timer.h). */
static void conn_expired(struct timer_queue *q, struct timer *t)
{
    (void)q;
    struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, timer));
    enum tlist tl = c->tl;
    c->tl = TL_NONE;
    http_on_timeout(c, tl);
}

void h1_refresh_date(struct h1_server *srv)
{
    time_t now = time(NULL);
    if (now == srv->date_sec)
        return;
    struct tm tm;
    gmtime_r(&now, &tm);
    srv->date_len = strftime(srv->date, sizeof srv->date,
                           "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    srv->date_sec = now;
}

/* ==== connection slots ==== */

static struct conn *conn_at(struct h1_server *srv, uint32_t idx)
{
    return idx < srv->nslots ? srv->conns[idx] : NULL;
}

/* A connection's output queue tells it when to flush and when to give up. */
static void conn_out_dirty(struct outq *o) { conn_mark_dirty(o->owner); }
static void conn_out_broken(struct outq *o) { conn_close(o->owner); }
static const struct outq_ops conn_out_ops = {conn_out_dirty, conn_out_broken};

static struct conn *conn_alloc(struct h1_server *srv)
{
    struct conn *c = srv->free_conns;
    if (c) {
        srv->free_conns = c->next_free;
        return c;
    }
    if (ptrs_reserve(&srv->conns, srv->nslots) < 0)
        return NULL;
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->s.idx = srv->nslots;
    c->srv = srv;
    c->s.fd = -1;
    outq_init(&c->out, &c->s, &srv->imm, srv->w, &conn_out_ops, c);
    c->out.budget = &srv->budget;
    srv->conns[srv->nslots++] = c;
    return c;
}

static void arm_recv(struct conn *c)
{
    stream_recv(c->srv->loop, &c->s, OP_RECV);
}

static void schedule_rearm(struct conn *c)
{
    if (c->flags & (CF_RECV_REARM | CF_RD_EOF))
        return;
    c->flags |= CF_RECV_REARM;
    c->next_rearm = c->srv->rearm;
    c->srv->rearm = c;
}

void conn_mark_dirty(struct conn *c)
{
    if (c->flags & CF_DIRTY)
        return;
    c->flags |= CF_DIRTY;
    c->next_dirty = c->srv->dirty;
    c->srv->dirty = c;
}

void conn_pause_recv(struct conn *c)
{
    if (c->flags & CF_RECV_PAUSED)
        return;
    c->flags |= CF_RECV_PAUSED;
    if (c->s.recv_armed)
        loop_cancel(c->srv->loop, stream_ud(&c->s, OP_RECV),
                    UD_MAKE(OP_CANCEL, 0, 0));
}

void conn_resume_recv(struct conn *c)
{
    c->flags &= (uint16_t)~CF_RECV_PAUSED;
    if (!c->s.recv_armed)
        schedule_rearm(c);
}

/* Free the slot once the connection is closed and the kernel holds
 * nothing of it (no recv or send in flight). */
static void conn_maybe_free(struct conn *c)
{
    struct h1_server *srv = c->srv;
    if (c->state != CS_CLOSED || !stream_done(&c->s))
        return;
    c->state = CS_FREE;
    stream_release(srv->loop, &c->s);
    outq_release_all(&c->out); /* its buffers too: the budget comes back */
    buf_reset(&c->in, 0);
    in_account(c);
    /* keep list-membership flags: the slot may still be linked on the
     * dirty/rearm/budget lists, which skip closed or re-used entries */
    c->flags &= CF_DIRTY | CF_RECV_REARM | CF_BUDGET_WAIT;
    c->next_free = srv->free_conns;
    srv->free_conns = c;
    srv->nconns--;
    srv->ops->conn_freed(srv->w, c->listener, srv->nconns);
}

void conn_close(struct conn *c)
{
    if (c->state >= CS_CLOSED)
        return;
    c->state = CS_CLOSED;
    stream_close(&c->s, false); /* shut down below, after the request */
    conn_touch(c, TL_NONE);
    struct h1_msg *m = c->msg;
    if (m) {
        c->msg = NULL;
        m->c = NULL;
        body_detach(m); /* a consumer of its body hears -1 */
        c->srv->ops->abort(m); /* whatever it is parked on is cancelled */
    }
    /* wakes the multishot recv (ends with 0) and fails pending sends */
    shutdown(c->s.fd, SHUT_RDWR);
    conn_maybe_free(c);
}

/* ==== completions ==== */

void h1_on_recv(struct h1_server *srv, const struct loop_cqe *cq)
{
    struct conn *c = conn_at(srv, UD_IDX(cq->ud));
    if (c == NULL)
        return;
    if (!stream_completed(&c->s, cq, true)) {
        if (cq->has_buf)
            loop_buf_recycle(srv->loop, cq->bid);
        conn_maybe_free(c);
        return;
    }
    if (cq->res > 0) {
        if (c->state == CS_LINGER) {
            /* discard: we only wait for the client's EOF */
        } else {
            http_on_data(c, loop_buf(srv->loop, cq->bid), (size_t)cq->res);
        }
        loop_buf_recycle(srv->loop, cq->bid);
        if (!cq->more && c->state < CS_CLOSED &&
            !(c->flags & CF_RECV_PAUSED))
            schedule_rearm(c);
    } else if (cq->res == 0) {
        http_on_eof(c); /* the client closed, or shut its write side */
    } else if (cq->res == -ENOBUFS) {
        /* no provided buffer left this instant: buffers are recycled as
         * soon as each completion is handled, so re-arm next iteration */
        schedule_rearm(c);
    } else if (cq->res == -ECANCELED) {
        if (!(c->flags & CF_RECV_PAUSED))
            schedule_rearm(c);
    } else {
        conn_close(c);
    }
    if (c->state >= CS_CLOSED)
        conn_maybe_free(c);
}

void h1_on_send(struct h1_server *srv, const struct loop_cqe *cq)
{
    struct conn *c = conn_at(srv, UD_IDX(cq->ud));
    if (c == NULL)
        return;
    if (!stream_completed(&c->s, cq, false)) {
        outq_send_gone(&c->out);
        conn_maybe_free(c);
        return;
    }
    int ret = outq_sent(&c->out, cq->res);
    if (ret < 0) {
        conn_close(c); /* EPIPE, ECONNRESET: the client is gone */
        return;
    }
    http_on_sent(c, ret == 0);
}

/* An immediate send still waits to be settled and settling it would do
 * more than free its buffers (data queued behind it, input waiting, a
 * handler waiting for the queue to drain, a closing connection). */
bool h1_imm_busy(const struct h1_server *srv)
{
    for (const struct outq *o = srv->imm.head; o; o = o->imm_next) {
        const struct conn *c = o->owner;
        /* settling a keep-alive connection's last response only frees its
         * buffers and moves it from the send to the idle timer */
        if (c->state != CS_READING || o->q.n || c->in.len ||
            (c->flags & (CF_RECV_PAUSED | CF_RD_EOF)))
            return true;
    }
    return false;
}

unsigned h1_server_drain(struct h1_server *srv)
{
    srv->draining = true;
    for (unsigned i = 0; i < srv->nslots; i++) {
        struct conn *c = srv->conns[i];
        if (c->state == CS_READING && c->msg == NULL && c->in.len == 0 &&
            !(c->flags & (CF_IN_HEAD | CF_DISCARD)) &&
            outq_pending(&c->out) == 0)
            conn_close(c);
    }
    return srv->nconns;
}

/* ==== the server: accept, before sleep, set-up ==== */

struct conn *h1_accept(struct h1_server *srv, int fd, unsigned listener)
{
    struct conn *c = srv->stopping ? NULL : conn_alloc(srv);
    if (c == NULL) {
        close(fd);
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    stream_open(&c->s, fd);
    c->state = CS_READING;
    c->flags &= CF_DIRTY | CF_RECV_REARM | CF_BUDGET_WAIT;
    c->listener = listener;
    c->msg = NULL;
    c->in.len = 0;
    c->peer[0] = 0;
    http_conn_init(c);
    srv->nconns++;
    arm_recv(c);
    conn_touch(c, TL_HEAD);
    return c;
}

/* The buffers are below the budget again: connections that waited read
 * and parse again, until the budget is over once more. */
static void budget_resume(struct h1_server *srv)
{
    struct conn *c;
    while ((c = srv->budget_wait) != NULL && !over_budget(srv)) {
        srv->budget_wait = c->next_wait;
        c->flags &= (uint16_t)~CF_BUDGET_WAIT;
        if (c->state >= CS_DRAINING)
            continue; /* closing, or a slot used again */
        http_process(c);
        if (body_wanted(c))
            body_pump(c); /* a body that waited in the input buffer */
        if (c->state < CS_CLOSED && (c->flags & CF_RECV_PAUSED) &&
            !(c->flags & CF_BUDGET_WAIT) &&
            c->in.len < in_limit(srv->cfg))
            conn_resume_recv(c);
    }
}

void h1_before_sleep(struct h1_server *srv)
{
    struct conn *c;
    if (srv->budget_wait)
        budget_resume(srv);
    while ((c = srv->rearm) != NULL) {
        srv->rearm = c->next_rearm;
        c->flags &= (uint16_t)~CF_RECV_REARM;
        if (c->state < CS_CLOSED && !c->s.recv_armed &&
            !(c->flags & (CF_RECV_PAUSED | CF_RD_EOF)))
            arm_recv(c);
    }
    while ((c = srv->dirty) != NULL) {
        srv->dirty = c->next_dirty;
        c->flags &= (uint16_t)~CF_DIRTY;
        if (c->state < CS_CLOSED)
            outq_flush(&c->out);
    }
}

int h1_server_init(struct h1_server *srv, struct timers *timers)
{
    const int64_t timeout[TL_N] = {
        [TL_HEAD] = srv->cfg->header_timeout_ms,
        [TL_IDLE] = srv->cfg->idle_timeout_ms,
        [TL_BODY] = srv->cfg->body_timeout_ms,
        [TL_SEND] = srv->cfg->send_timeout_ms,
        [TL_LINGER] = LINGER_MS,
    };
    srv->imm.loop = srv->loop;
    for (int tl = TL_HEAD; tl < TL_N; tl++)
        if ((srv->tq[tl] = timers_queue(timers, timeout[tl],
                                        conn_expired)) == NULL)
            return -1;
    h1_refresh_date(srv);
    return 0;
}

void h1_server_free(struct h1_server *srv)
{
    for (unsigned i = 0; i < srv->nslots; i++) {
        struct conn *c = srv->conns[i];
        if (c->s.fd >= 0)
            close(c->s.fd);
        outq_free(&c->out);
        buf_free(&c->in);
        in_account(c);
        free(c);
    }
    free(srv->conns);
    srv->conns = NULL;
    srv->nslots = 0;
    buf_free(&srv->rhead);
    budget_flush(&srv->budget);
}

/* The peer of c, into c->peer (once per connection). 0, or -1. */
static int peer_lookup(struct conn *c)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getpeername(c->s.fd, (struct sockaddr *)&ss, &sl) < 0)
        return -1;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        c->peer_port = ntohs(a->sin_port);
        return inet_ntop(AF_INET, &a->sin_addr, c->peer, sizeof c->peer)
                   ? 0 : -1;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        c->peer_port = ntohs(a->sin6_port);
        return inet_ntop(AF_INET6, &a->sin6_addr, c->peer, sizeof c->peer)
                   ? 0 : -1;
    }
    return -1;
}

int h1_peer(const struct h1_msg *m, char *addr, size_t n, int *port)
{
    struct conn *c = m->c;
    if (c == NULL || c->s.fd < 0)
        return -1;
    if (c->peer[0] == 0 && peer_lookup(c) < 0) {
        c->peer[0] = 0;
        return -1;
    }
    size_t len = strlen(c->peer);
    if (len >= n)
        return -1;
    memcpy(addr, c->peer, len + 1);
    *port = c->peer_port;
    return 0;
}
