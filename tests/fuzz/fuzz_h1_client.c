/* fuzz_h1_client.c - an origin's response through http/h1_client.h
 * (h1_resp_init/feed/eof): status line, fields, interim responses, body
 * framing (Content-Length, chunked, until close). Input: a split selector
 * (fuzz.h), a control byte, then the bytes the origin sends.
 *
 * The response is parsed twice, fed whole and fed in pieces; both must
 * report the same: the result, the bytes that belong to the response, the
 * field lines, interim responses, status, body length and body bytes
 * (split independence; after H1_ERROR only the result and the head, since
 * what came before an error is dropped by the owner). And:
 *   - a field name is a token, its value holds no CR, LF or NUL;
 *   - a final status is 200..599 (an interim one ends with `interim`);
 *   - body bytes delivered never exceed the bytes fed;
 *   - a response with a length (Content-Length, 204, 304) is H1_DONE with
 *     exactly that many body bytes; one ended by the close has no length;
 *   - H1_MORE consumed everything it was given.
 * Control byte: bit 0: the origin closes after the bytes (h1_resp_eof);
 * bits 1-2: a callback aborts (1: the 2nd field, 2: head, 3: the body once
 * (control>>3 & 15) bytes arrived): the result must then be H1_ERROR;
 * bit 7: the request was HEAD (h1_resp.head_request): no body bytes. */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "http/fields.h"
#include "http/h1_client.h"

struct trace {
    unsigned nfields, ninterim, nhead;
    uint64_t fields_hash;
    int status;
    int64_t total;
    uint64_t body_len, body_hash;
    int abort_mode;
    uint64_t abort_at;
    bool aborted;
};

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static int on_field(void *owner, const char *name, size_t nlen,
                    const char *val, size_t vlen)
{
    struct trace *t = owner;
    FUZZ_CHECK(t->nhead == 0);
    FUZZ_CHECK(field_is_token(name, nlen));
    FUZZ_CHECK(!memchr(val, '\r', vlen) && !memchr(val, '\n', vlen) &&
               !memchr(val, '\0', vlen));
    t->nfields++;
    t->fields_hash = fnv(t->fields_hash, name, nlen);
    t->fields_hash = fnv(t->fields_hash, ":", 1);
    t->fields_hash = fnv(t->fields_hash, val, vlen);
    t->fields_hash = fnv(t->fields_hash, "\n", 1);
    if (t->abort_mode == 1 && t->nfields == 2) {
        t->aborted = true;
        return -1;
    }
    return 0;
}

static void on_interim(void *owner)
{
    struct trace *t = owner;
    FUZZ_CHECK(t->nhead == 0);
    t->ninterim++;
    t->fields_hash = fnv(t->fields_hash, "--\n", 3);
}

static int on_head(void *owner, int status, int64_t total)
{
    struct trace *t = owner;
    FUZZ_CHECK(t->nhead == 0);
    FUZZ_CHECK(status >= 200 && status <= 599);
    FUZZ_CHECK(total >= -1);
    if (status == 204 || status == 304)
        FUZZ_CHECK(total == 0);
    t->nhead++;
    t->status = status;
    t->total = total;
    if (t->abort_mode == 2) {
        t->aborted = true;
        return -1;
    }
    return 0;
}

static int on_body(void *owner, const char *p, size_t n)
{
    struct trace *t = owner;
    FUZZ_CHECK(t->nhead == 1);
    FUZZ_CHECK(n > 0);
    t->body_len += n;
    t->body_hash = fnv(t->body_hash, p, n);
    if (t->total >= 0)
        FUZZ_CHECK(t->body_len <= (uint64_t)t->total);
    if (t->abort_mode == 3 && t->body_len >= t->abort_at) {
        t->aborted = true;
        return -1;
    }
    return 0;
}

static const struct h1_client_ops ops = {on_field, on_interim, on_head,
                                         on_body};

struct run {
    struct trace t;
    enum h1_res res;
    bool by_eof;     /* ended by h1_resp_eof */
    size_t used;     /* bytes of the response (H1_DONE) */
    bool keep_alive; /* H1_DONE */
};

static void parse(struct run *r, const uint8_t *p, size_t n, bool eof,
                  bool head_request, int abort_mode, uint64_t abort_at,
                  struct fuzz_split *split)
{
    memset(r, 0, sizeof *r);
    r->t.status = -1;
    r->t.total = -2;
    r->t.abort_mode = abort_mode;
    r->t.abort_at = abort_at;
    struct h1_resp resp;
    memset(&resp, 0, sizeof resp);
    h1_resp_init(&resp, &ops, &r->t);
    resp.head_request = head_request;
    size_t off = 0;
    r->res = H1_MORE;
    while (off < n) {
        size_t len = split ? fuzz_split_next(split, n - off) : n - off;
        size_t used = 0;
        r->res = h1_resp_feed(&resp, (const char *)p + off, len, &used);
        FUZZ_CHECK(used <= len);
        if (r->res == H1_MORE)
            FUZZ_CHECK(used == len);
        off += used;
        if (r->res != H1_MORE)
            break;
    }
    if (r->res == H1_MORE && eof) {
        r->res = h1_resp_eof(&resp);
        r->by_eof = true;
    }
    r->used = off;
    FUZZ_CHECK(r->t.body_len <= off);
    if (r->res == H1_DONE) {
        r->keep_alive = h1_resp_keep_alive(&resp);
        FUZZ_CHECK(r->t.nhead == 1);
        if (r->t.total >= 0)
            FUZZ_CHECK(r->t.body_len == (uint64_t)r->t.total);
        if (r->by_eof)
            FUZZ_CHECK(r->t.total == -1 && !r->keep_alive);
        if (head_request)
            FUZZ_CHECK(r->t.body_len == 0 && !r->by_eof);
    } else if (r->res == H1_ERROR) {
        FUZZ_CHECK(h1_resp_error(&resp) != NULL);
    }
    if (r->t.aborted)
        FUZZ_CHECK(r->res == H1_ERROR);
    h1_resp_free(&resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_split split;
    fuzz_split_take(&split, &data, &size);
    if (size == 0)
        return 0;
    uint8_t ctl = data[0];
    data++, size--;
    bool eof = ctl & 1;
    int abort_mode = (ctl >> 1) & 3;
    uint64_t abort_at = (ctl >> 3) & 15;
    bool head_request = ctl & 0x80;

    struct run whole, pieces;
    parse(&whole, data, size, eof, head_request, abort_mode, abort_at, NULL);
    parse(&pieces, data, size, eof, head_request, abort_mode, abort_at,
          &split);

    FUZZ_CHECK(whole.res == pieces.res);
    if (abort_mode == 3)
        return 0; /* where the body aborts depends on the pieces */
    FUZZ_CHECK(whole.by_eof == pieces.by_eof);
    FUZZ_CHECK(whole.t.nhead == pieces.t.nhead);
    FUZZ_CHECK(whole.t.status == pieces.t.status);
    FUZZ_CHECK(whole.t.total == pieces.t.total);
    if (whole.res == H1_ERROR)
        return 0; /* what was reported before the error is dropped */
    FUZZ_CHECK(whole.t.nfields == pieces.t.nfields);
    FUZZ_CHECK(whole.t.fields_hash == pieces.t.fields_hash);
    FUZZ_CHECK(whole.t.ninterim == pieces.t.ninterim);
    FUZZ_CHECK(whole.t.body_len == pieces.t.body_len);
    FUZZ_CHECK(whole.t.body_hash == pieces.t.body_hash);
    if (whole.res == H1_DONE) {
        FUZZ_CHECK(whole.used == pieces.used);
        FUZZ_CHECK(whole.keep_alive == pieces.keep_alive);
    }
    return 0;
}
