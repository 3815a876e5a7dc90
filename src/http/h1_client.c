/* h1_client.c - parsing an origin's HTTP/1.1 response (see h1_client.h). */
#include "http/h1_client.h"
#include "http/fields.h"

#include <limits.h>

/* The field in hname/hval is complete: report it. */
static int field_done(struct h1_resp *r)
{
    const char *n = r->hname.data;
    size_t nl = r->hname.len;
    if (nl == 0 && r->hval.len == 0)
        return 0; /* nothing pending */
    while (nl > 0 && (n[nl - 1] == ' ' || n[nl - 1] == '\t'))
        nl--; /* RFC 9112 §5.1: a proxy removes it */
    if (!field_is_token(n, nl)) {
        r->bad_name = true;
        return -1;
    }
    int ret = r->ops->field(r->owner, n, nl, r->hval.data, r->hval.len);
    r->hname.len = r->hval.len = 0;
    return ret;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct h1_resp *r = p->data;
    if (r->in_value) {
        r->in_value = false;
        if (field_done(r) < 0)
            return -1;
    }
    return buf_append(&r->hname, at, n);
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct h1_resp *r = p->data;
    r->in_value = true;
    return buf_append(&r->hval, at, n);
}

static int on_headers_complete(http_parser *p)
{
    struct h1_resp *r = p->data;
    r->in_value = false;
    if (field_done(r) < 0)
        return -1;
    if (p->status_code < 200) {
        r->ops->interim(r->owner);
        return 0;
    }
    int64_t total = -1;
    if (!(p->flags & F_CHUNKED) && p->content_length != ULLONG_MAX)
        total = (int64_t)p->content_length;
    if (p->status_code == 204 || p->status_code == 304)
        total = 0;
    return r->ops->head(r->owner, p->status_code, total);
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct h1_resp *r = p->data;
    return r->ops->body(r->owner, at, n);
}

static int on_message_complete(http_parser *p)
{
    if (p->status_code < 200)
        return 0; /* an interim response: the final one follows */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void h1_resp_init(struct h1_resp *r, const struct h1_client_ops *ops,
                  void *owner)
{
    http_parser_init(&r->p, HTTP_RESPONSE);
    r->p.data = r;
    r->hname.len = r->hval.len = 0;
    r->in_value = r->bad_name = false;
    r->ops = ops;
    r->owner = owner;
}

enum h1_res h1_resp_feed(struct h1_resp *r, const char *p, size_t n,
                         size_t *used)
{
    *used = http_parser_execute(&r->p, &settings, p, n);
    enum http_errno e = HTTP_PARSER_ERRNO(&r->p);
    if (e == HPE_PAUSED) {
        http_parser_pause(&r->p, 0);
        return H1_DONE;
    }
    return e == HPE_OK ? H1_MORE : H1_ERROR;
}

enum h1_res h1_resp_eof(struct h1_resp *r)
{
    http_parser_execute(&r->p, &settings, NULL, 0);
    if (HTTP_PARSER_ERRNO(&r->p) == HPE_PAUSED) {
        http_parser_pause(&r->p, 0);
        return H1_DONE;
    }
    return H1_ERROR;
}

bool h1_resp_keep_alive(const struct h1_resp *r)
{
    return http_should_keep_alive(&r->p);
}

const char *h1_resp_error(const struct h1_resp *r)
{
    if (r->bad_name)
        return "a header field name that is not a token";
    return http_errno_description(HTTP_PARSER_ERRNO(&r->p));
}

void h1_resp_trim(struct h1_resp *r)
{
    buf_reset(&r->hname, 1024);
    buf_reset(&r->hval, 4096);
}

void h1_resp_free(struct h1_resp *r)
{
    buf_free(&r->hname);
    buf_free(&r->hval);
}
