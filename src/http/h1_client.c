/* h1_client.c - parsing an origin's HTTP/1.1 response (see h1_client.h). */
#include "http/h1_client.h"
#include "http/fields.h"


enum { RP_HEAD, RP_LENGTH, RP_CHUNKED, RP_CLOSE, RP_DONE, RP_ERROR };

void h1_resp_init(struct h1_resp *r, const struct h1_client_ops *ops,
                  void *owner)
{
    r->state = RP_HEAD;
    r->head_request = false;
    r->keep_alive = false;
    r->hides_cache_field = false;
    h1_scan_init(&r->scan);
    r->head.len = 0;
    r->left = 0;
    r->why = NULL;
    r->ops = ops;
    r->owner = owner;
}

static enum h1_res fail(struct h1_resp *r, const char *why)
{
    r->state = RP_ERROR;
    r->why = why;
    return H1_ERROR;
}

/* Fields by which a cache decides whether to share a response (RFC 9111
 * §3, §5, Age §5.1; RFC 9110 §12.5.5; Set-Cookie, RFC 6265). Named by Connection
 * they are meant for us, the next hop, and are not forwarded: the safe
 * reading is "not shareable" (an origin's "Connection: Cache-Control"
 * must not turn its Cache-Control: private into a cached response). */
static bool decides_sharing(const char *n, size_t nl)
{
#define IS(s) field_name_is(n, nl, s, sizeof(s) - 1)
    return IS("cache-control") || IS("expires") || IS("pragma") ||
           IS("set-cookie") || IS("vary") || IS("age");
#undef IS
}

/* The head p[0..n) is complete: report it. */
static enum h1_res take_head(struct h1_resp *r, const char *p, size_t n)
{
    struct h1_head h;
    h.fields = r->fields;
    h.max_fields = H1_RESP_MAX_FIELDS;
    const char *why;
    if (h1_parse_head(H1_RESPONSE, p, n, &h, 0, r->head_request, &why))
        return fail(r, why);
    /* fields the Connection field names are hop-by-hop (RFC 9110 §7.6.1) */
    struct h1_conn_names cn;
    h1_conn_names(&cn, p, h.fields, h.nfields);
    r->hides_cache_field = false;
    for (unsigned i = 0; i < h.nfields; i++) {
        const struct hdr *f = &h.fields[i];
        if ((cn.n || cn.many) &&
            h1_conn_named(&cn, p, h.fields, h.nfields, p + f->name,
                          f->nlen)) {
            if (decides_sharing(p + f->name, f->nlen))
                r->hides_cache_field = true;
        } else if (r->ops->field(r->owner, p + f->name, f->nlen, p + f->val,
                                 f->vlen) < 0) {
            return fail(r, "response field refused");
        }
    }
    h1_scan_init(&r->scan);
    r->head.len = 0;
    if (h.status < 200) {
        if (h.status == 101)
            return fail(r, "101 Switching Protocols was not asked for");
        r->ops->interim(r->owner); /* the final response follows */
        return H1_MORE;
    }
    int64_t total = h.body == H1B_LENGTH ? h.content_length
                    : h.body == H1B_NONE ? 0 : -1;
    if (r->ops->head(r->owner, h.status, total) < 0)
        return fail(r, "response head refused");
    r->keep_alive = h.keep_alive;
    switch (h.body) {
    case H1B_LENGTH:
        r->left = h.content_length;
        r->state = h.content_length ? RP_LENGTH : RP_DONE;
        break;
    case H1B_CHUNKED:
        h1_chunked_init(&r->chunk, 16 * 1024);
        r->state = RP_CHUNKED;
        break;
    case H1B_CLOSE: r->state = RP_CLOSE; break;
    default: r->state = RP_DONE; break;
    }
    return H1_MORE;
}

/* Bytes of a head from p[0..n): *used taken. */
static enum h1_res head_step(struct h1_resp *r, const char *p, size_t n,
                             size_t *used)
{
    size_t end;
    if (r->head.len == 0) { /* the usual case: the head in one piece */
        enum h1_scan_res s = h1_scan(&r->scan, p, n, &end);
        if (s == H1S_DONE) {
            *used = end;
            return take_head(r, p, end);
        }
        if (s == H1S_BAD)
            return fail(r, "a bare CR or LF in the response head");
        if (n > H1_RESP_MAX_HEAD)
            return fail(r, "response head too large");
        if (buf_append(&r->head, p, n) < 0)
            return fail(r, "out of memory for a response head");
        *used = n;
        return H1_MORE;
    }
    size_t had = r->head.len;
    size_t take = n;
    if (had + take > H1_RESP_MAX_HEAD + 1)
        take = H1_RESP_MAX_HEAD + 1 - had;
    if (buf_append(&r->head, p, take) < 0)
        return fail(r, "out of memory for a response head");
    enum h1_scan_res s = h1_scan(&r->scan, r->head.data, r->head.len, &end);
    if (s == H1S_BAD)
        return fail(r, "a bare CR or LF in the response head");
    if (s == H1S_MORE) {
        if (r->head.len > H1_RESP_MAX_HEAD)
            return fail(r, "response head too large");
        *used = take;
        return H1_MORE;
    }
    *used = end - had;
    r->head.len = end;
    return take_head(r, r->head.data, end);
}

enum h1_res h1_resp_feed(struct h1_resp *r, const char *p, size_t n,
                         size_t *used)
{
    size_t off = 0;
    enum h1_res res = H1_MORE;
    while (res == H1_MORE && r->state != RP_DONE) {
        size_t k = 0;
        if (r->state == RP_HEAD) {
            if (off == n)
                break;
            res = head_step(r, p + off, n - off, &k);
        } else if (r->state == RP_LENGTH) {
            if (off == n)
                break;
            k = n - off;
            if ((int64_t)k > r->left)
                k = (size_t)r->left;
            if (r->ops->body(r->owner, p + off, k) < 0)
                res = fail(r, "response body refused");
            r->left -= (int64_t)k;
            if (r->left == 0 && r->state == RP_LENGTH)
                r->state = RP_DONE;
        } else if (r->state == RP_CHUNKED) {
            if (off == n)
                break;
            const char *d;
            size_t dn;
            switch (h1_chunked_feed(&r->chunk, p + off, n - off, &k, &d, &dn)) {
            case H1C_DATA:
                if (r->ops->body(r->owner, d, dn) < 0)
                    res = fail(r, "response body refused");
                break;
            case H1C_DONE: r->state = RP_DONE; break;
            case H1C_BAD: res = fail(r, "invalid chunked body"); break;
            default: break;
            }
        } else if (r->state == RP_CLOSE) {
            k = n - off;
            if (k && r->ops->body(r->owner, p + off, k) < 0)
                res = fail(r, "response body refused");
            off += k;
            break;
        } else {
            res = H1_ERROR;
        }
        off += k;
    }
    *used = off;
    if (res == H1_MORE && r->state == RP_DONE)
        return H1_DONE;
    return res;
}

enum h1_res h1_resp_eof(struct h1_resp *r)
{
    if (r->state == RP_CLOSE || r->state == RP_DONE) {
        r->state = RP_DONE;
        return H1_DONE;
    }
    if (r->state != RP_ERROR)
        r->why = "connection closed before the response ended";
    r->state = RP_ERROR;
    return H1_ERROR;
}

bool h1_resp_keep_alive(const struct h1_resp *r)
{
    return r->keep_alive && r->state == RP_DONE;
}

const char *h1_resp_error(const struct h1_resp *r)
{
    return r->why ? r->why : "no error";
}

void h1_resp_trim(struct h1_resp *r)
{
    buf_reset(&r->head, 4096);
}

void h1_resp_free(struct h1_resp *r)
{
    buf_free(&r->head);
}
