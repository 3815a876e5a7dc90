/* vary.c - the request values a stored response's Vary selects on (see
 * vary.h). o->vary holds one entry per field name Vary lists, in its
 * order:
 *     'P' name ':' value '\n'   the fill's request had the field
 *     'A' name ':' '\n'         it had none
 * name lowercased, value the field's lines normalized (struct norm; RFC
 * 9111 §4.1: a field absent from one request matches only its absence in
 * the other). Field values hold no CR, LF or NUL (h1_parse), so '\n' ends
 * an entry. Two objects with the same bytes in o->vary are the same
 * variant (store/variants.c). */
#include "core/vary.h"
#include "http/fields.h"
#include "http/h1_server.h"

#include <stdlib.h>
#include <string.h>

/* The fields of the request behind a fill, copied (o->vary_req). */
struct vary_req {
    const char *head; /* the bytes f's offsets point into (after f) */
    unsigned nf;
    struct hdr f[];
};

static bool is_ows(char ch) { return ch == ' ' || ch == '\t'; }

/* The most bytes the values a Vary names may take (o->vary). Each name of
 * a Vary list costs a copy of the request's value of it, and a list may
 * repeat a name: `Vary: a,a,a,...` in a 64 KiB head times an 8 KiB request
 * field made 240 MB per object, outside max_bytes, compared on every hit.
 * Above this the response is not shared (nginx caches no response whose
 * Vary is over 128 bytes; Varnish fails one whose values overflow its
 * workspace). */
#define VARY_MAX_RECORD (16 * 1024)

/* The value of the next field called name[0..nl) in f[*i..nf), trimmed
 * (*vl bytes), *i moved past it; NULL when there is none. */
static const char *next_value(const char *h, const struct hdr *f, unsigned nf,
                              unsigned *i, const char *name, size_t nl,
                              size_t *vl)
{
    for (; *i < nf; (*i)++) {
        const struct hdr *x = &f[*i];
        if (!field_name_is(h + x->name, x->nlen, name, nl))
            continue;
        const char *v = h + x->val, *e = v + x->vlen;
        while (v < e && is_ows(*v))
            v++;
        while (e > v && is_ows(e[-1]))
            e--;
        (*i)++;
        *vl = (size_t)(e - v);
        return v;
    }
    return NULL;
}

/* ==== normalization (RFC 9111 §4.1) ====
 * A field's value as recorded and compared: its lines in order, as one
 * list (RFC 9110 §5.3: several lines of a field are one comma-separated
 * list), each element trimmed of OWS and the elements joined with ", ";
 * a comma inside a quoted-string (RFC 9110 §5.6.4) is not a separator,
 * and nothing else changes (case included): `gzip,br`, `gzip ,  br` and
 * the lines `gzip` + `br` are all "gzip, br". Empty elements are kept
 * ("a, , b"): dropping them is safe only for fields known to be lists.
 * The same walk records a value (out) or compares one with a record
 * (cmp), so a match allocates nothing. */
struct norm {
    struct buf *out;  /* recording: appended here; else */
    const char *cmp;  /* matching: compared with cmp[0..cmplen) */
    size_t cmplen, pos;
    bool bad;         /* recording: out of memory; matching: differs */
    bool any;         /* a line was taken: the next starts with ", " */
};

static void emit(struct norm *n, const char *p, size_t len)
{
    if (n->bad || len == 0)
        return;
    if (n->out) {
        n->bad = buf_append(n->out, p, len) < 0;
    } else if (n->cmplen - n->pos < len || memcmp(n->cmp + n->pos, p, len)) {
        n->bad = true;
    } else {
        n->pos += len;
    }
}

/* Take one line's value v[0..vl). */
static void norm_line(struct norm *n, const char *v, size_t vl)
{
    const char *p = v, *e = v + vl;
    bool quoted = false;
    if (n->any)
        emit(n, ", ", 2);
    n->any = true;
    for (;;) {
        while (p < e && is_ows(*p))
            p++;
        const char *s = p;
        for (; p < e; p++) {
            if (quoted && *p == '\\' && p + 1 < e)
                p++;
            else if (*p == '"')
                quoted = !quoted;
            else if (*p == ',' && !quoted)
                break;
        }
        const char *t = p;
        while (t > s && is_ows(t[-1]))
            t--;
        emit(n, s, (size_t)(t - s));
        if (p == e)
            return;
        emit(n, ", ", 2);
        p++;
    }
}

int vary_capture(struct cache_obj *o, const struct h1_msg *m)
{
    size_t fsz = m->nhdrs * sizeof(struct hdr);
    struct vary_req *q = malloc(sizeof *q + fsz + m->head.len);
    if (q == NULL)
        return -1;
    q->nf = m->nhdrs;
    memcpy(q->f, m->hdrs, fsz);
    char *h = (char *)q->f + fsz;
    if (m->head.len > 0)
        memcpy(h, m->head.data, m->head.len);
    q->head = h;
    free(o->vary_req);
    o->vary_req = q;
    return 0;
}

/* Append the entry of field name[0..nl) as the fill sent it to the
 * origin: the captured request's value, or absent when that request's
 * Connection named the field (hop-by-hop, RFC 9110 §7.6.1: put_fields in
 * pass.c does not forward it, so the response is the one for its absence;
 * recording the client's value would let anyone store that response for
 * every client that sends the value, e.g. `Origin: x` + `Connection:
 * Origin` against `Vary: Origin`). Host is always sent. */
static int put_entry(struct buf *b, const struct vary_req *q,
                     const struct h1_conn_names *cn, const char *name,
                     size_t nl)
{
    size_t start = b->len, vl;
    unsigned i = 0;
    const char *v = NULL;
    if (field_name_is(name, nl, "host", 4) ||
        !h1_conn_named(cn, q->head, q->f, q->nf, name, nl))
        v = next_value(q->head, q->f, q->nf, &i, name, nl, &vl);
    if (buf_append(b, v ? "P" : "A", 1) < 0 || buf_reserve(b, nl + 2) < 0)
        goto oom;
    for (size_t k = 0; k < nl; k++) {
        char ch = name[k];
        ch = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        buf_append(b, &ch, 1);
    }
    buf_append(b, ":", 1);
    struct norm n = {.out = b};
    for (; v; v = next_value(q->head, q->f, q->nf, &i, name, nl, &vl))
        norm_line(&n, v, vl);
    if (n.bad || buf_append(b, "\n", 1) < 0)
        goto oom;
    return 0;
oom:
    b->len = start;
    return -1;
}

/* Fields a fill sends with a value of luring's making (put_fields in
 * pass.c appends the client's address to X-Forwarded-For, its own hop to
 * Via, which depends on the client's HTTP version): the client's values do
 * not say what the origin saw, so a response that varies on them is not
 * shared (Varnish appends to X-Forwarded-For before the lookup, so its
 * variants are per client). */
static bool set_by_fill(const char *n, size_t nl)
{
    return field_name_is(n, nl, "x-forwarded-for", 15) ||
           field_name_is(n, nl, "via", 3);
}

bool vary_record(struct cache_obj *o)
{
    struct vary_req *q = o->vary_req;
    o->vary_req = NULL;
    struct buf b = {0};
    bool ok = true;
    struct h1_conn_names cn = {0};
    if (q != NULL)
        h1_conn_names(&cn, q->head, q->f, q->nf);
    bool encoded = false, names_ae = false;
    size_t i = 0;
    struct field_line f;
    while (ok && field_line_next(o->hdrs.data, o->hdrs.len, &i, &f)) {
        if (field_name_is(f.name, f.nlen, "content-encoding", 16))
            encoded |= !field_name_is(f.value, f.vlen, "identity", 8) &&
                       f.vlen > 0;
        if (field_name_is(f.name, f.nlen, "vary", 4)) {
            const char *v = f.value, *le = f.value + f.vlen;
            while (ok && v < le) { /* #field-name (RFC 9110 §12.5.5) */
                while (v < le && (*v == ',' || is_ows(*v)))
                    v++;
                const char *e = v;
                while (e < le && *e != ',' && !is_ows(*e))
                    e++;
                if (e == v)
                    break;
                names_ae |= field_name_is(v, (size_t)(e - v),
                                          "accept-encoding", 15);
                ok = field_is_token(v, (size_t)(e - v)) && q != NULL &&
                     !set_by_fill(v, (size_t)(e - v)) &&
                     put_entry(&b, q, &cn, v, (size_t)(e - v)) == 0 &&
                     b.len <= VARY_MAX_RECORD;
                v = e;
            }
        }
    }
    /* A coded body (Content-Encoding) answers the Accept-Encoding the fill
     * forwarded, whether the origin says so or not (nginx's gzip_vary is
     * off by default): without Vary: Accept-Encoding it would reach
     * clients that can't decode it (a gzip or br body for curl), so it
     * varies on it anyway. Varnish asks its backends for gzip only and
     * gunzips for clients without it. */
    if (ok && encoded && !names_ae)
        ok = q != NULL && put_entry(&b, q, &cn, "accept-encoding", 15) == 0;
    free(q);
    if (!ok || b.len == 0) {
        buf_free(&b);
        return ok;
    }
    free(o->vary);
    o->vary = b.data;
    o->vary_len = b.len;
    return true;
}

bool vary_match_fields(const struct cache_obj *o, const struct h1_msg *m)
{
    const char *p = o->vary, *end = p + o->vary_len;
    const char *h = m->head.data;
    while (p < end) {
        bool present = *p++ == 'P';
        const char *colon = memchr(p, ':', (size_t)(end - p));
        const char *val = colon + 1;
        const char *eol = memchr(val, '\n', (size_t)(end - val));
        size_t nl = (size_t)(colon - p);
        /* normalize m's lines of the field along the stored value */
        struct norm n = {.cmp = val, .cmplen = (size_t)(eol - val)};
        unsigned i = 0;
        size_t vl;
        const char *v;
        while (!n.bad && (v = next_value(h, m->hdrs, m->nhdrs, &i, p, nl, &vl)))
            norm_line(&n, v, vl);
        if (n.bad || n.any != present || n.pos != n.cmplen)
            return false;
        p = eol + 1;
    }
    return true;
}

bool vary_match_req(const struct cache_obj *o, const void *m)
{
    return vary_match_fields(o, m);
}
