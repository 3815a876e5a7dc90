/* pass.c - forwarding a client's request to an origin (see pass.h).
 * Request out (RFC 9110 §7.6, RFC 9112 §3.2): the method and target as
 * received (an absolute-form target becomes origin-form), HTTP/1.1, every
 * field but the hop-by-hop ones and those the client's Connection names,
 * Host as the client sent it unless the script sets another, Via and
 * X-Forwarded-For/-Proto added (Forwarded when asked), and the body:
 * streamed as it arrives (origin_request_stream) with the client's
 * Content-Length, or re-chunked when the client's was chunked; or, when
 * the script read it whole first (req:body()), sent with Content-Length.
 * Expect is not forwarded: luring answers it (100 Continue when the body
 * is first demanded). A cache fill (pass_fill) sends the same fields but
 * the credentials, conditionals and ranges, as a GET without body. */
#include "core/pass.h"
#include "core/deliver.h"
#include "core/origin.h"
#include "core/req.h"
#include "core/vary.h"
#include "http/fields.h"
#include "http/h1_server.h"
#include "store/cache.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>


struct pass_ctx {
    const struct req *r;
    const struct origin *o;
    const struct pass_opts *po;
};

#define NAME_IS(n, nl, lit) field_name_is(n, nl, lit, sizeof(lit) - 1)

/* Append the request target in origin-form (RFC 9112 §3.2.1). h1_server
 * already left only the path and query of an absolute-form target, which
 * may be empty or a query alone ("http://a.example?q"): the path is then
 * "/". Origin-form and "*" go as they are. */
static void put_target(struct buf *out, const char *t, size_t n)
{
    if (n == 0 || t[0] == '?')
        buf_append(out, "/", 1);
    buf_append(out, t, n);
}

/* Append "Name: <values of every field called name>, " (what is to be
 * added then goes last in the list). */
static void put_list_start(struct buf *out, const struct h1_msg *m,
                           const char *name, size_t nl)
{
    const char *h = m->head.data;
    buf_append(out, name, nl);
    buf_append(out, ": ", 2);
    for (unsigned i = 0; i < m->nhdrs; i++) {
        const struct hdr *f = &m->hdrs[i];
        if (field_name_is(h + f->name, f->nlen, name, nl) && f->vlen > 0) {
            buf_append(out, h + f->val, f->vlen);
            buf_append(out, ", ", 2);
        }
    }
}

/* Append "Name: <values of every field called name>, <add>\r\n". */
static void put_joined(struct buf *out, const struct h1_msg *m,
                       const char *name, size_t nl, const char *add,
                       size_t alen)
{
    put_list_start(out, m, name, nl);
    buf_append(out, add, alen);
    buf_append(out, "\r\n", 2);
}

/* Append an RFC 7239 §4 value: as a token when it is one, else as a
 * quoted-string (`"` and `\` escaped: a Host that h1_parse let through
 * holds neither, but the value stays well-formed whatever it holds). */
static void put_fwd_value(struct buf *out, const char *v, size_t n)
{
    if (field_is_token(v, n)) {
        buf_append(out, v, n);
        return;
    }
    buf_append(out, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '"' || v[i] == '\\')
            buf_append(out, "\\", 1);
        buf_append(out, v + i, 1);
    }
    buf_append(out, "\"", 1);
}

/* Append this hop's Forwarded element (RFC 7239 §4, §5, §6):
 * for=<client>;host=<the Host received>;proto=http, the client as
 * `unknown` when its address is gone, an IPv6 address bracketed and
 * quoted (`for="[::1]"`), host left out when the client sent none. */
static void put_forwarded(struct buf *out, const struct h1_msg *m)
{
    char addr[64], node[72];
    int port;
    size_t n;
    if (h1_peer(m, addr, sizeof addr, &port) < 0)
        n = (size_t)snprintf(node, sizeof node, "unknown");
    else if (strchr(addr, ':')) /* IPv6 (§6.1) */
        n = (size_t)snprintf(node, sizeof node, "[%s]", addr);
    else
        n = (size_t)snprintf(node, sizeof node, "%s", addr);
    buf_append(out, "for=", 4);
    put_fwd_value(out, node, n);
    size_t hl;
    const char *host = h1_header(m, "host", 4, &hl);
    if (host != NULL && hl > 0) {
        buf_append(out, ";host=", 6);
        put_fwd_value(out, host, hl);
    }
    buf_append(out, ";proto=http", 11);
}

/* A fill leaves out, besides what a pass does, the credentials (a cache
 * looks a request up as if it had neither, docs/API.md) and the fields
 * that would get less than the full 200 the cache stores: conditionals
 * and ranges (RFC 9110 §13.1, §14.2; Varnish's miss strips them too). */
static bool fill_drops(const char *n, size_t nl)
{
    return NAME_IS(n, nl, "cookie") || NAME_IS(n, nl, "authorization") ||
           NAME_IS(n, nl, "range") || NAME_IS(n, nl, "if-range") ||
           NAME_IS(n, nl, "if-match") || NAME_IS(n, nl, "if-none-match") ||
           NAME_IS(n, nl, "if-modified-since") ||
           NAME_IS(n, nl, "if-unmodified-since");
}

/* Append the fields of r's request that go to the origin (RFC 9110 §7.6):
 * every one but the hop-by-hop ones, those the client's Connection names,
 * Content-Length, Expect (and fill_drops for a fill), Host as po says, then
 * Via, X-Forwarded-For/-Proto and Forwarded as po asks. The caller
 * reserved room for 3 x the head plus 512 bytes and po's host. true when
 * the request has a Transfer-Encoding (it has a body to re-frame). */
static bool put_fields(struct buf *out, const struct pass_ctx *x, bool fill)
{
    const struct h1_msg *m = &x->r->m;
    const struct pass_opts *po = x->po;
    const char *h = m->head.data;
    /* req.id replaces whatever the client sent under its name */
    const char *rid = m->srv->cfg->request_id_header;
    size_t rl = strlen(rid);
    bool has_host = false, te = false;
    /* the client's Connection options name more hop-by-hop fields */
    struct h1_conn_names cn;
    h1_conn_names(&cn, h, m->hdrs, m->nhdrs);
    bool conn_opts = cn.n > 0 || cn.many;
    /* the fields forwarded, each line as received when it is already
     * "Name: value\r\n": runs of such lines go with one copy */
    size_t run = 0, run_end = 0; /* offsets in the head; run_end 0: none */
    for (unsigned i = 0; i < m->nhdrs; i++) {
        const struct hdr *f = &m->hdrs[i];
        const char *n = h + f->name;
        size_t nl = f->nlen;
        if (field_is_hop_by_hop(n, nl) || NAME_IS(n, nl, "content-length") ||
            NAME_IS(n, nl, "expect") || (fill && fill_drops(n, nl)) ||
            (po->via && NAME_IS(n, nl, "via")) ||
            (po->xff && NAME_IS(n, nl, "x-forwarded-for")) ||
            (po->xfp && NAME_IS(n, nl, "x-forwarded-proto")) ||
            (po->fwd && NAME_IS(n, nl, "forwarded")) ||
            (rl && field_name_is(n, nl, rid, rl))) {
            if (NAME_IS(n, nl, "transfer-encoding"))
                te = true;
            continue;
        }
        if (NAME_IS(n, nl, "host")) { /* never dropped for `Connection: */
            has_host = true;          /* Host`: HTTP/1.1 needs it (§3.2) */
            if (po->host)
                continue;
        } else if (conn_opts &&
                   h1_conn_named(&cn, h, m->hdrs, m->nhdrs, n, nl)) {
            continue;
        }
        size_t ll = field_line_len(n, nl, h + f->val, f->vlen);
        if (ll > 0 && f->name == run_end) { /* the run goes on */
            run_end += ll;
            continue;
        }
        if (run_end > 0)
            buf_append(out, h + run, run_end - run);
        run_end = 0;
        if (ll > 0) {
            run = f->name;
            run_end = f->name + ll;
            continue;
        }
        buf_append(out, n, nl);
        buf_append(out, ": ", 2);
        buf_append(out, h + f->val, f->vlen);
        buf_append(out, "\r\n", 2);
    }
    if (run_end > 0)
        buf_append(out, h + run, run_end - run);
    char line[160];
    int k;
    if (po->host) {
        buf_append(out, "Host: ", 6);
        buf_append(out, po->host, po->host_len);
        buf_append(out, "\r\n", 2);
    } else if (!has_host) { /* HTTP/1.0 without Host: the origin's */
        k = snprintf(line, sizeof line, "Host: %s\r\n", x->o->host);
        buf_append(out, line, (size_t)k);
    }
    if (po->via) {
        const char *v = m->http_minor ? "1.1 luring" : "1.0 luring";
        put_joined(out, m, "Via", 3, v, 10);
    }
    if (po->xff) {
        char addr[64];
        int port;
        if (h1_peer(m, addr, sizeof addr, &port) < 0)
            snprintf(addr, sizeof addr, "unknown");
        put_joined(out, m, "X-Forwarded-For", 15, addr, strlen(addr));
    }
    if (po->xfp)
        buf_append(out, "X-Forwarded-Proto: http\r\n", 25);
    if (rl) { /* "Name: 16 hex digits" (rl < 64: the line fits) */
        memcpy(line, rid, rl);
        line[rl] = ':';
        line[rl + 1] = ' ';
        req_id_hex(x->r, line + rl + 2);
        line[rl + 18] = '\r';
        line[rl + 19] = '\n';
        buf_append(out, line, rl + 20);
    }
    if (po->fwd) { /* the client's elements, then ours (RFC 7239 §4) */
        put_list_start(out, m, "Forwarded", 9);
        put_forwarded(out, m);
        buf_append(out, "\r\n", 2);
    }
    return te;
}

/* "Content-Length: v\r\n" (what snprintf's "%llu" gives, for a tenth of
 * its instructions: about 860 per request). */
static void put_content_length(struct buf *out, uint64_t v)
{
    char line[48] = "Content-Length: ";
    char t[20];
    size_t n = 0, k = 16;
    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        line[k++] = t[--n];
    line[k++] = '\r';
    line[k++] = '\n';
    buf_append(out, line, k);
}

static int build_pass(void *arg, struct buf *out)
{
    const struct pass_ctx *x = arg;
    const struct h1_msg *m = &x->r->m;
    const struct pass_opts *po = x->po;
    const char *h = m->head.data;
    /* a body still to come is streamed after the head */
    bool stream = m->body_st == H1_BODY_UNREAD;
    /* everything below fits: the head's own lines (each field once, Via
     * and X-Forwarded-For and Forwarded values twice at most, in the
     * joined lines, the Host once more, escaped, in Forwarded),
     * what is added, the body; so no append can fail half-way */
    if (buf_reserve(out, 3 * m->head.len + m->body.len + 512 + 96 +
                             (po->host ? po->host_len : 0) +
                             (po->target ? po->target_len : 0)) < 0)
        return -1;
    /* the request line: method and target as received, our version */
    buf_append(out, h + m->method_off, m->method_len);
    buf_append(out, " ", 1);
    if (po->target)
        buf_append(out, po->target, po->target_len);
    else
        put_target(out, h + m->url_off, m->url_len);
    buf_append(out, " HTTP/1.1\r\n", 11);
    bool framed = put_fields(out, x, false) || m->content_length >= 0;
    /* the body, re-framed (RFC 9112 §6.2): never the client's chunks */
    char line[64];
    int k;
    if (stream && m->body_chunked) {
        buf_append(out, "Transfer-Encoding: chunked\r\n", 28);
    } else if (stream && m->content_length >= 0) {
        put_content_length(out, (uint64_t)m->content_length);
    } else if (stream) { /* not seen: unread without chunks has a length */
        k = snprintf(line, sizeof line, "Content-Length: %lld\r\n",
                     (long long)m->content_length);
        buf_append(out, line, (size_t)k);
    } else if (framed || m->body.len > 0) {
        put_content_length(out, m->body.len);
    }
    if (stream)
        return buf_append(out, "\r\n", 2);
    buf_append(out, "\r\n", 2);
    return buf_append(out, m->body.data, m->body.len);
}

/* A cache fill's request: GET target (a HEAD miss too: the cache stores
 * the GET's response), the client's fields as put_fields(fill) leaves
 * them, no body. */
static int build_fill(void *arg, struct buf *out)
{
    const struct pass_ctx *x = arg;
    const struct pass_opts *po = x->po;
    if (buf_reserve(out, 3 * x->r->m.head.len + 512 + 96 + po->target_len +
                             (po->host ? po->host_len : 0) + po->inm_len +
                             po->ims_len + 48) < 0)
        return -1;
    buf_append(out, "GET ", 4);
    buf_append(out, po->target, po->target_len);
    buf_append(out, " HTTP/1.1\r\n", 11);
    put_fields(out, x, true);
    /* a revalidation (RFC 9111 §4.3.1): the stored validators, both when
     * there are both (the origin then decides by If-None-Match, RFC 9110
     * §13.1.3); the client's own conditionals were left out above */
    if (po->inm) {
        buf_append(out, "If-None-Match: ", 15);
        buf_append(out, po->inm, po->inm_len);
        buf_append(out, "\r\n", 2);
    }
    if (po->ims) {
        buf_append(out, "If-Modified-Since: ", 19);
        buf_append(out, po->ims, po->ims_len);
        buf_append(out, "\r\n", 2);
    }
    return buf_append(out, "\r\n", 2);
}

void pass_fill(const struct req *r, struct origin *o, struct cache_obj *obj,
               const struct pass_opts *po)
{
    if (o->kind != ORIGIN_HTTP) {
        origin_fetch(o, po->target, po->target_len, obj);
        return;
    }
    vary_capture(obj, &r->m); /* out of memory: a Vary response is not shared */
    struct pass_ctx x = {r, o, po};
    origin_request(o, obj, ORQ_IDEMPOTENT, build_fill, &x);
}

int pass_start(struct req *r, struct origin *o, struct cache *scratch,
               const struct pass_opts *po)
{
    uint8_t bst = r->m.body_st;
    if (bst != H1_BODY_NONE && bst != H1_BODY_UNREAD && bst != H1_BODY_READ)
        return -2; /* streamed (or failed) already: not there to send */
    struct cache_obj *obj = cache_obj_new(scratch, "(pass)", 6);
    if (obj == NULL)
        return -1;
    cache_obj_stream(obj, NULL, NULL); /* origin_request sets the wake */
    serve_subscribe(r, obj, NULL, true);
    cache_obj_unref(obj); /* the subscription holds it */
    /* RFC 9110 §9.2.2: idempotent methods may be retried */
    unsigned flags = ORQ_PASS;
    switch (r->m.method) {
    case H1_M_GET: case H1_M_HEAD: case H1_M_OPTIONS: case H1_M_PUT:
    case H1_M_DELETE:
        flags |= ORQ_IDEMPOTENT;
        break;
    default:
        break;
    }
    if (r->m.is_head)
        flags |= ORQ_HEAD;
    struct pass_ctx x = {r, o, po};
    origin_request_stream(o, obj, flags, build_pass, &x,
                          bst == H1_BODY_UNREAD ? &r->m : NULL);
    return 0;
}
