/* pass.c - forwarding a client's request to an origin (see pass.h).
 * Request out (RFC 9110 §7.6, RFC 9112 §3.2): the method and target as
 * received (an absolute-form target becomes origin-form), HTTP/1.1, every
 * field but the hop-by-hop ones and those the client's Connection names,
 * Host as the client sent it unless the script sets another, Via and
 * X-Forwarded-For/-Proto added, and the body: streamed as it arrives
 * (origin_request_stream) with the client's Content-Length, or re-chunked
 * when the client's was chunked; or, when the script read it whole first
 * (req:body()), sent with Content-Length. Expect is not forwarded: luring
 * answers it (100 Continue when the body is first demanded). */
#include "core/pass.h"
#include "core/deliver.h"
#include "core/origin.h"
#include "core/req.h"
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

/* Append "Name: <values of every field called name>, <add>\r\n". */
static void put_joined(struct buf *out, const struct h1_msg *m,
                       const char *name, size_t nl, const char *add,
                       size_t alen)
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
    buf_append(out, add, alen);
    buf_append(out, "\r\n", 2);
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
     * and X-Forwarded-For values twice at most, in the joined lines),
     * what is added, the body; so no append can fail half-way */
    if (buf_reserve(out, 2 * m->head.len + m->body.len + 512 +
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
    /* the client's Connection options name more hop-by-hop fields */
    bool has_host = false, framed = m->content_length >= 0;
    for (unsigned i = 0; i < m->nhdrs; i++)
        if (NAME_IS(h + m->hdrs[i].name, m->hdrs[i].nlen, "transfer-encoding"))
            framed = true;
    struct h1_conn_names cn;
    h1_conn_names(&cn, h, m->hdrs, m->nhdrs);
    for (unsigned i = 0; i < m->nhdrs; i++) {
        const struct hdr *f = &m->hdrs[i];
        const char *n = h + f->name;
        size_t nl = f->nlen;
        if (field_is_hop_by_hop(n, nl) || NAME_IS(n, nl, "content-length") ||
            NAME_IS(n, nl, "expect") ||
            (po->via && NAME_IS(n, nl, "via")) ||
            (po->xff && NAME_IS(n, nl, "x-forwarded-for")) ||
            (po->xfp && NAME_IS(n, nl, "x-forwarded-proto")))
            continue;
        if (NAME_IS(n, nl, "host")) {
            has_host = true;
            if (po->host)
                continue;
        }
        if (h1_conn_named(&cn, h, m->hdrs, m->nhdrs, n, nl))
            continue;
        buf_append(out, n, nl);
        buf_append(out, ": ", 2);
        buf_append(out, h + f->val, f->vlen);
        buf_append(out, "\r\n", 2);
    }
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
    /* the body, re-framed (RFC 9112 §6.2): never the client's chunks */
    if (stream && m->body_chunked) {
        buf_append(out, "Transfer-Encoding: chunked\r\n", 28);
    } else if (stream) {
        k = snprintf(line, sizeof line, "Content-Length: %lld\r\n",
                     (long long)m->content_length);
        buf_append(out, line, (size_t)k);
    } else if (framed || m->body.len > 0) {
        k = snprintf(line, sizeof line, "Content-Length: %zu\r\n",
                     m->body.len);
        buf_append(out, line, (size_t)k);
    }
    if (stream)
        return buf_append(out, "\r\n", 2);
    buf_append(out, "\r\n", 2);
    return buf_append(out, m->body.data, m->body.len);
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
