/* cond.c - conditional and range requests answered from stored responses
 * (RFC 9110 §13, §14, §15.4.5, §15.5.17; RFC 9111 §4.3.2). A cache fill
 * strips the client's If-* and Range (core/pass.c), so the cache answers
 * them itself, from the head it stores, for every request it delivers an
 * object to: hits, coalesced requests and the miss that filled it. Bodies
 * are slices of the object's chunks (core/deliver.c pumps them); only the
 * heads of multipart parts are built here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/num.h"
#include "core/cond.h"
#include "core/req.h"
#include "http/date.h"
#include "http/etag.h"
#include "http/fields.h"
#include "http/h1_server.h"
#include "http/range.h"
#include "io/outq.h"
#include "store/cache.h"

#define NAME_IS(n, nl, lit) field_name_is(n, nl, lit, sizeof(lit) - 1)

/* A multipart/byteranges body (§14.6): its parts and their heads, built
 * when the response is decided (the head announces the whole length). */
struct cond_parts {
    unsigned n;       /* parts (2..RANGE_MAX) */
    unsigned next;    /* the part to start next; n + 1: closed */
    struct range r[RANGE_MAX];
    uint32_t hoff[RANGE_MAX + 2]; /* part i's head is heads[hoff[i] ..
                                   * hoff[i + 1]); the closing delimiter
                                   * follows the last, up to hoff[n + 1] */
    char ctype[96];   /* the Content-Type field line of the multipart */
    size_t ctype_len;
    char heads[];
};

/* ==== the stored head ==== */

/* §15.4.5: what a 304 carries of the stored fields */
static bool for_304(const char *n, size_t nl, bool has_etag)
{
    return NAME_IS(n, nl, "etag") || NAME_IS(n, nl, "cache-control") ||
           NAME_IS(n, nl, "expires") || NAME_IS(n, nl, "vary") ||
           NAME_IS(n, nl, "date") || /* the origin's (core/origin.c) */
           NAME_IS(n, nl, "content-location") ||
           (!has_etag && NAME_IS(n, nl, "last-modified"));
}

/* The origin's Accept-Ranges lines out of o->hdrs (they describe the
 * origin, RFC 9110 §14.3), luring's own in: a stored 200 and its 206s say
 * "bytes", since luring serves ranges of it. In place, so a plain hit
 * sends hdrs as they are. */
static void own_accept_ranges(struct cache_obj *o)
{
    char *p = o->hdrs.data;
    size_t n = o->hdrs.len, i = 0, out = 0;
    struct field_line f;
    while (field_line_next(p, n, &i, &f)) {
        if (NAME_IS(f.name, f.nlen, "accept-ranges"))
            continue;
        if (p + out != f.line)
            memmove(p + out, f.line, f.llen);
        out += f.llen;
    }
    o->hdrs.len = out;
    if (o->status == 200) /* out of memory: none is said */
        buf_append(&o->hdrs, "Accept-Ranges: bytes\r\n", 22);
}

void cond_note(struct cache_obj *o)
{
    if (o->stream || o->cache->scratch)
        return; /* relayed as the origin sent it, never evaluated */
    own_accept_ranges(o);
    const char *p = o->hdrs.data;
    size_t n = o->hdrs.len, i = 0;
    struct field_line f;
    o->cond_noted = true;
    o->etag_off = o->etag_len = o->ctype_off = o->ctype_len = 0;
    o->etag_weak = o->has_etag = false;
    o->last_mod = o->date = INT64_MIN;
    int64_t now = 0;
    bool has_etag = false;
    while (field_line_next(p, n, &i, &f)) {
        const char *name = f.name, *val = f.value;
        size_t nl = f.nlen, vl = f.vlen;
        if (NAME_IS(name, nl, "etag") && !has_etag) {
            struct etag t;
            has_etag = o->has_etag = true; /* the first is the ETag */
            if (etag_parse(val, vl, &t) == 0) {
                o->etag_off = (uint32_t)(t.tag - p);
                o->etag_len = (uint32_t)t.len;
                o->etag_weak = t.weak;
            }
        } else if (NAME_IS(name, nl, "content-type") && o->ctype_len == 0) {
            o->ctype_off = (uint32_t)(val - p);
            o->ctype_len = (uint32_t)vl;
        } else if (NAME_IS(name, nl, "last-modified") &&
                   o->last_mod == INT64_MIN) {
            now = now ? now : (int64_t)time(NULL);
            o->last_mod = http_date_parse(val, vl, now);
        } else if (NAME_IS(name, nl, "date") && o->date == INT64_MIN) {
            now = now ? now : (int64_t)time(NULL);
            o->date = http_date_parse(val, vl, now);
        }
    }
    /* the lines a 304 keeps, as spans (neighbours joined): a 304 then
     * costs what a hit does */
    i = 0;
    o->nm_n = 0;
    while (field_line_next(p, n, &i, &f)) {
        if (!for_304(f.name, f.nlen, has_etag))
            continue;
        uint32_t off = (uint32_t)(f.line - p);
        if (o->nm_n && o->nm_n != 0xff &&
            o->nm_span[o->nm_n - 1][0] + o->nm_span[o->nm_n - 1][1] == off) {
            o->nm_span[o->nm_n - 1][1] += (uint32_t)f.llen;
        } else if (o->nm_n < 6) {
            o->nm_span[o->nm_n][0] = off;
            o->nm_span[o->nm_n][1] = (uint32_t)f.llen;
            o->nm_n++;
        } else {
            o->nm_n = 0xff; /* filtered line by line */
        }
    }
}

/* ==== the request's preconditions ==== */

/* h1_parse_head noted which of the six fields the request has (enum
 * h1_pre): how many lines of each (0, 1, more) and where the first is. */
enum {
    F_IM = H1P_IF_MATCH,
    F_INM = H1P_IF_NONE_MATCH,
    F_IMS = H1P_IF_MODIFIED_SINCE,
    F_IUS = H1P_IF_UNMODIFIED_SINCE,
    F_RANGE = H1P_RANGE,
    F_IFR = H1P_IF_RANGE,
};

/* Which of the six fields a request field line is, or -1 (for a field
 * given on several lines). Most lines are none of them: their first
 * letter says so. */
static int field_kind(const char *n, size_t nl)
{
    if (nl < 5 || ((n[0] | 0x20) != 'i' && (n[0] | 0x20) != 'r'))
        return -1;
    switch (nl) {
    case 5:
        return field_token_is(n, nl, "range", 5) ? F_RANGE : -1;
    case 8:
        return field_token_is(n, nl, "if-match", 8)   ? F_IM
               : field_token_is(n, nl, "if-range", 8) ? F_IFR
                                                      : -1;
    case 13:
        return field_token_is(n, nl, "if-none-match", 13) ? F_INM : -1;
    case 17:
        return field_token_is(n, nl, "if-modified-since", 17) ? F_IMS : -1;
    case 19:
        return field_token_is(n, nl, "if-unmodified-since", 19) ? F_IUS
                                                                : -1;
    default:
        return -1;
    }
}

struct cond_in {
    const struct h1_msg *m;
};

/* Lines of kind k: 0, 1, or 2 for more than one. */
static unsigned count(const struct cond_in *in, int k)
{
    return !(in->m->pre_seen >> k & 1) ? 0 : (in->m->pre_many >> k & 1) + 1;
}

/* The value of kind k's first line (count(k) > 0). */
static const char *fval(const struct cond_in *in, int k, size_t *n)
{
    const struct hdr *h = &in->m->hdrs[in->m->pre_first[k]];
    *n = h->vlen;
    return in->m->head.data + h->val;
}

/* An If-Match or If-None-Match, over all its field lines (one list,
 * §5.3): ETAG_INVALID when any line is. */
static enum etag_match list_match(const struct cond_in *in, int kind,
                                  const struct etag *cur, bool strong)
{
    size_t n;
    const char *v = fval(in, kind, &n);
    enum etag_match res = etag_list_match(v, n, cur, strong);
    if (count(in, kind) == 1 || res == ETAG_INVALID)
        return res;
    for (unsigned i = in->m->pre_first[kind] + 1u; i < in->m->nhdrs; i++) {
        const struct hdr *h = &in->m->hdrs[i];
        if (field_kind(in->m->head.data + h->name, h->nlen) != kind)
            continue;
        enum etag_match e = etag_list_match(in->m->head.data + h->val,
                                            h->vlen, cur, strong);
        if (e == ETAG_INVALID)
            return e;
        if (e == ETAG_MATCH)
            res = e;
    }
    return res;
}

/* The common If-None-Match: one line holding exactly the stored
 * opaque-tag, W/ or not (a weak comparison, §8.8.3.2, ignores it): a
 * match without parsing the list. Anything else: list_match decides. */
static bool inm_is_tag(const struct cond_in *in, const struct etag *cur)
{
    if (cur == NULL || count(in, F_INM) != 1)
        return false;
    size_t n;
    const char *v = fval(in, F_INM, &n);
    if (n == cur->len + 2 && v[0] == 'W' && v[1] == '/') {
        v += 2;
        n -= 2;
    }
    return n == cur->len && memcmp(v, cur->tag, n) == 0;
}

/* A singleton date field (IMS, IUS, If-Range's date): INT64_MIN when it
 * is not one valid HTTP-date (given twice, it is not: §13.1.3). */
static int64_t date_field(const struct cond_in *in, int kind)
{
    if (count(in, kind) != 1)
        return INT64_MIN;
    size_t n;
    const char *v = fval(in, kind, &n);
    return http_date_parse(v, n, (int64_t)time(NULL));
}

/* If-Range (§13.1.5): does the stored representation still match, so the
 * Range applies? An entity-tag compares strongly with the ETag; a date
 * must equal Last-Modified exactly, which must be strong (§8.8.2.2: a
 * second or more before the stored Date; with no stored Date we take it
 * as strong, as nginx does). Anything else (a weak tag, garbage, the
 * field twice) fails: the whole representation is sent. */
static bool if_range_ok(const struct cond_in *in, const struct cache_obj *o,
                        const struct etag *cur)
{
    if (count(in, F_IFR) != 1)
        return false;
    size_t n;
    const char *v = fval(in, F_IFR, &n);
    size_t i = 0;
    while (i < n && (v[i] == ' ' || v[i] == '\t'))
        i++;
    if (i < n && (v[i] == '"' || (v[i] == 'W' && i + 1 < n && v[i + 1] == '/'))) {
        struct etag t;
        return cur && etag_parse(v, n, &t) == 0 && etag_strong_eq(&t, cur);
    }
    int64_t t = date_field(in, F_IFR);
    return t != INT64_MIN && o->last_mod == t &&
           (o->date == INT64_MIN || o->date - o->last_mod >= 1);
}

/* ==== multipart/byteranges ==== */

static _Thread_local uint64_t boundary_seq; /* per worker thread */

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Parts for the ranges rs[0..n) of o (total bytes): heads built now, so
 * the whole length is known (*len). NULL when out of memory. */
static struct cond_parts *parts_new(struct req *r, const struct cache_obj *o,
                                    const struct range *rs, int n,
                                    int64_t total, int64_t *len)
{
    size_t ctl = o->ctype_len;
    size_t per = 160 + ctl; /* one part head at most (122 + ctl) */
    struct cond_parts *p = malloc(sizeof *p + (size_t)(n + 1) * per);
    if (p == NULL)
        return NULL;
    p->n = (unsigned)n;
    p->next = 0;
    memcpy(p->r, rs, (size_t)n * sizeof *rs);
    /* a boundary per response: 64 bits nobody can predict from the body
     * (RFC 2046 §5.1.1; the body must not contain it) */
    char b[17];
    uint64_t x = mix(++boundary_seq ^ (uint64_t)(uintptr_t)r ^
                     ((uint64_t)time(NULL) << 20) ^ (uint64_t)(uintptr_t)p);
    snprintf(b, sizeof b, "%016llx", (unsigned long long)x);
    p->ctype_len = (size_t)snprintf(p->ctype, sizeof p->ctype,
                                    "multipart/byteranges; boundary=%s", b);
    const char *ct = o->hdrs.data + o->ctype_off;
    size_t off = 0;
    int64_t sum = 0;
    for (int i = 0; i < n; i++) {
        p->hoff[i] = (uint32_t)off;
        char *h = p->heads + off;
        int k = snprintf(h, per, "\r\n--%s\r\n", b);
        if (ctl) {
            memcpy(h + k, "Content-Type: ", 14);
            memcpy(h + k + 14, ct, ctl);
            memcpy(h + k + 14 + ctl, "\r\n", 2);
            k += (int)(16 + ctl);
        }
        k += snprintf(h + k, per - (size_t)k,
                      "Content-Range: bytes %lld-%lld/%lld\r\n\r\n",
                      (long long)rs[i].first, (long long)rs[i].last,
                      (long long)total);
        off += (size_t)k;
        sum += (int64_t)k + rs[i].last - rs[i].first + 1;
    }
    p->hoff[n] = (uint32_t)off;
    off += (size_t)snprintf(p->heads + off, per, "\r\n--%s--\r\n", b);
    p->hoff[n + 1] = (uint32_t)off;
    *len = sum + (int64_t)(p->hoff[n + 1] - p->hoff[n]);
    return p;
}

void cond_free(struct req *r)
{
    free(r->parts);
    r->parts = NULL;
}

bool cond_next_part(struct req *r)
{
    struct cond_parts *p = r->parts;
    if (p == NULL || p->next > p->n)
        return false;
    unsigned i = p->next++;
    http_body(&r->m, p->heads + p->hoff[i], p->hoff[i + 1] - p->hoff[i],
              NULL, NULL, 0);
    if (i == p->n)
        return false; /* the closing delimiter */
    r->obj_off = (size_t)p->r[i].first;
    r->obj_end = (size_t)p->r[i].last + 1;
    return true;
}

/* ==== the decision ==== */

int cond_decide(struct req *r, struct cache_obj *o, int64_t *len)
{
    if (!o->cond_noted) /* not a stored response's: relayed as it is */
        return o->status;
    struct cond_in in = { &r->m };
    /* §13.2.1: preconditions only when the response would be a 2xx */
    if (!r->m.pre_seen || o->status < 200 || o->status > 299)
        return o->status;
    struct etag cur = { o->hdrs.data + o->etag_off, o->etag_len,
                        o->etag_weak };
    const struct etag *tag = o->etag_len ? &cur : NULL;
    int status = 0;
    /* §13.2.2 steps 1 and 2. A malformed If-Match fails: it never lets
     * through what the client meant to guard. An If-Unmodified-Since that
     * is no date, or a response without Last-Modified, is ignored
     * (§13.1.4). */
    if (count(&in, F_IM)) {
        if (list_match(&in, F_IM, tag, true) != ETAG_MATCH)
            status = 412;
    } else if (count(&in, F_IUS) && o->last_mod != INT64_MIN) {
        int64_t t = date_field(&in, F_IUS);
        if (t != INT64_MIN && o->last_mod > t)
            status = 412;
    }
    /* steps 3 and 4 (GET and HEAD only reach the cache). A malformed
     * If-None-Match matches nothing; If-Modified-Since is compared with
     * Last-Modified, else the stored Date (RFC 9111 §4.3.2), and ignored
     * when it is no date or there is neither. */
    if (status == 0) {
        if (count(&in, F_INM)) {
            if (inm_is_tag(&in, tag) ||
                list_match(&in, F_INM, tag, false) == ETAG_MATCH)
                status = 304;
        } else if (count(&in, F_IMS)) {
            int64_t ref = o->last_mod != INT64_MIN ? o->last_mod : o->date;
            int64_t t = date_field(&in, F_IMS);
            if (ref != INT64_MIN && t != INT64_MIN && ref <= t)
                status = 304;
        }
    }
    if (status == 412) {
        *len = (int64_t)strlen(http_reason(412)) + 1;
        r->obj_end = 0;
        return 412;
    }
    if (status == 304) {
        CACHE_COUNT(o->cache, not_modified);
        r->obj_end = 0;
        return 304;
    }
    /* step 5: Range, for GET on a stored 200 whose length is known (a
     * fill of unknown length, chunked, gets the whole body: §14.2 lets a
     * server ignore Range). Given twice, Range is ignored. */
    if (count(&in, F_RANGE) != 1 || r->m.method != H1_M_GET ||
        o->status != 200 || *len < 0)
        return o->status;
    if (count(&in, F_IFR) && !if_range_ok(&in, o, tag))
        return o->status;
    struct range rs[RANGE_MAX];
    size_t n;
    const char *v = fval(&in, F_RANGE, &n);
    int k = range_eval(v, n, *len, rs);
    if (k == RANGE_IGNORE)
        return o->status;
    if (k == RANGE_UNSATISFIABLE) {
        *len = (int64_t)strlen(http_reason(416)) + 1;
        r->obj_end = 0;
        return 416;
    }
    if (k == 1) {
        r->obj_off = (size_t)rs[0].first;
        r->obj_end = (size_t)rs[0].last + 1;
        *len = rs[0].last - rs[0].first + 1;
    } else {
        int64_t total = *len;
        r->parts = parts_new(r, o, rs, k, total, len);
        if (r->parts == NULL) {
            *len = total;
            return o->status; /* out of memory: the whole body */
        }
        r->obj_off = r->obj_end = 0; /* the first part starts it */
    }
    CACHE_COUNT(o->cache, partial);
    return 206;
}

/* ==== the head's fields ==== */

struct fout {
    struct h1_msg *m;
    struct buf *b; /* NULL: straight into m's head */
    int err;
};

static void put(struct fout *w, const char *p, size_t n)
{
    if (w->b == NULL)
        http_head_raw(w->m, p, n);
    else if (buf_append(w->b, p, n) < 0)
        w->err = -1;
}

#define PUT_LIT(w, lit) put(w, lit, sizeof(lit) - 1)

int cond_fields(struct req *r, const struct cache_obj *o, int status,
                struct buf *into)
{
    struct fout w = { &r->m, into, 0 };
    const char *p = o->hdrs.data;
    size_t n = o->hdrs.len;
    char tmp[96];
    int64_t total = cache_obj_state(o) == OBJ_COMPLETE ? (int64_t)o->len
                                                  : o->total;
    if (status == 412 || status == 416) {
        PUT_LIT(&w, "Content-Type: text/plain\r\n");
        if (status == 416) {
            int k = snprintf(tmp, sizeof tmp,
                             "Content-Range: bytes */%lld\r\n",
                             (long long)total);
            put(&w, tmp, (size_t)k);
        }
        return w.err;
    }
    bool multi = status == 206 && r->parts;
    if (status == 304 && o->nm_n != 0xff) {
        for (unsigned k = 0; k < o->nm_n; k++)
            put(&w, p + o->nm_span[k][0], o->nm_span[k][1]);
        return w.err;
    }
    if (!multi && status != 304) {
        put(&w, p, n); /* Accept-Ranges: luring's (own_accept_ranges) */
    } else {
        size_t i = 0;
        struct field_line f;
        while (field_line_next(p, n, &i, &f)) {
            if (status == 304 ? !for_304(f.name, f.nlen, o->has_etag)
                              : NAME_IS(f.name, f.nlen, "content-type"))
                continue;
            put(&w, f.line, f.llen);
        }
    }
    if (multi) {
        PUT_LIT(&w, "Content-Type: ");
        put(&w, r->parts->ctype, r->parts->ctype_len);
        PUT_LIT(&w, "\r\n");
    } else if (status == 206) {
        char *q = tmp;
        memcpy(q, "Content-Range: bytes ", 21);
        q += 21;
        q += num_put_dec(q, r->obj_off);
        *q++ = '-';
        q += num_put_dec(q, r->obj_end - 1);
        *q++ = '/';
        q += num_put_dec(q, (uint64_t)total);
        *q++ = '\r';
        *q++ = '\n';
        put(&w, tmp, (size_t)(q - tmp));
    }
    return w.err;
}

void cond_body_begin(struct req *r, int status)
{
    if (status == 412 || status == 416) {
        const char *reason = http_reason(status);
        http_body(&r->m, reason, strlen(reason), NULL, NULL, 0);
        http_body(&r->m, "\n", 1, NULL, NULL, 0);
    } else if (status == 206 && r->parts) {
        cond_next_part(r);
    }
}
