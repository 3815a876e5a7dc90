/* fuzz_h1_head.c - finding and parsing a message head (http/h1_parse.h):
 * h1_scan, h1_parse_head for requests and responses, h1_field,
 * h1_content_length, h1_list_has. Input: a split selector (fuzz.h), a
 * control byte, then the bytes of a message.
 *
 * h1_scan: the input scanned whole and scanned as it grows, in pieces,
 * give the same result and end; both agree with a plain reference (the
 * first empty line after a non-empty one ends the head; a CR not followed
 * by LF, or an LF not preceded by CR, is bad).
 * h1_parse_head on the head found (an exact-size copy: a read beyond it is
 * an ASan report), as a request and as a response:
 *   - 0 or one of the documented errors, with a reason;
 *   - the start line: offsets inside the head, the method a token that
 *     matches its number, the target visible ASCII within max_target, SP
 *     around it, HTTP/1.0 or 1.1; a status 100..599;
 *   - the fields: in order, inside the head, names tokens, values free of
 *     CR, LF, NUL and other controls and of leading or trailing SP/HTAB;
 *     h1_field finds the first of a name in any case;
 *   - framing (RFC 9112 §6.3): content_length >= 0 iff H1B_LENGTH, and
 *     then it is the Content-Length field's value; chunked only with a
 *     Transfer-Encoding field; never both fields, never two lengths;
 *     requests never H1B_CLOSE; no body for HEAD, 1xx, 204, 304;
 *   - requests: pre_seen, pre_many and pre_first name the If-* and Range
 *     lines (enum h1_pre) as strncasecmp finds them; responses: none;
 *   - the same head with a smaller max_target fails with 414, with fewer
 *     field slots with 431.
 * h1_content_length agrees with a reference (1*DIGIT up to 2^62).
 * Control byte: bit 0: the response answers a HEAD request; bits 1-3:
 * field slots (0: H1 default 100, else 1 << bits). */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "http/fields.h"
#include "http/h1_parse.h"

#define MAX_FIELDS 100
#define MAX_TARGET 8192
#define CL_MAX (1LL << 62)

static int64_t ref_content_length(const uint8_t *v, size_t n)
{
    if (n == 0)
        return -1;
    int64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        if (x > (CL_MAX - (v[i] - '0')) / 10)
            return -1; /* above 2^62 */
        x = x * 10 + (v[i] - '0');
    }
    return x;
}

/* The reference scanner: H1S_* and *end. */
static enum h1_scan_res ref_scan(const uint8_t *p, size_t n, size_t *end)
{
    bool started = false, cr = false;
    size_t line = 0;
    for (size_t i = 0; i < n; i++) {
        if (cr) {
            if (p[i] != '\n')
                return H1S_BAD;
            cr = false;
            if (line == 0 && started) {
                *end = i + 1;
                return H1S_DONE;
            }
            if (line)
                started = true;
            line = 0;
        } else if (p[i] == '\r') {
            cr = true;
        } else if (p[i] == '\n') {
            return H1S_BAD;
        } else {
            line++;
        }
    }
    return H1S_MORE;
}

static bool ows(char ch) { return ch == ' ' || ch == '\t'; }

static bool is_ctl_in_value(unsigned char ch)
{
    return (ch < 0x20 && ch != '\t') || ch == 0x7f;
}

static void lower(char *dst, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (src[i] >= 'A' && src[i] <= 'Z') ? (char)(src[i] | 32) : src[i];
}

static bool name_is(const char *head, const struct hdr *f, const char *lit)
{
    return f->nlen == strlen(lit) && strncasecmp(head + f->name, lit, f->nlen) == 0;
}

/* Invariants of a head parsed with success. */
static void check_head(enum h1_kind kind, const char *p, size_t n,
                       const struct h1_head *h, bool head_request)
{
    FUZZ_CHECK(h->start < n);
    FUZZ_CHECK(h->minor == 0 || h->minor == 1);
    FUZZ_CHECK(h->nfields <= h->max_fields);
    if (kind == H1_REQUEST) {
        FUZZ_CHECK(h->method < H1_M_N);
        FUZZ_CHECK(h->method_off == h->start);
        FUZZ_CHECK(h->method_off + h->method_len < n);
        FUZZ_CHECK(field_is_token(p + h->method_off, h->method_len));
        const char *name = h1_method_name((enum h1_method)h->method);
        if (h->method != H1_M_OTHER)
            FUZZ_CHECK(strlen(name) == h->method_len &&
                       memcmp(name, p + h->method_off, h->method_len) == 0);
        else
            for (int m = H1_M_OTHER + 1; m < H1_M_N; m++) {
                const char *k = h1_method_name((enum h1_method)m);
                FUZZ_CHECK(!(strlen(k) == h->method_len &&
                             memcmp(k, p + h->method_off, h->method_len) == 0));
            }
        FUZZ_CHECK(p[h->method_off + h->method_len] == ' ');
        FUZZ_CHECK(h->target == h->method_off + h->method_len + 1);
        FUZZ_CHECK(h->target_len > 0 && h->target_len <= MAX_TARGET);
        FUZZ_CHECK(h->target + h->target_len < n);
        FUZZ_CHECK(p[h->target + h->target_len] == ' ');
        for (uint32_t i = 0; i < h->target_len; i++) {
            unsigned char ch = (unsigned char)p[h->target + i];
            FUZZ_CHECK(ch > 0x20 && ch < 0x7f);
        }
        FUZZ_CHECK(h->body != H1B_CLOSE);
        FUZZ_CHECK(!h->ws_before_colon);
        if (h->method == H1_M_CONNECT)
            FUZZ_CHECK(h->upgrade);
    } else {
        FUZZ_CHECK(h->status >= 100 && h->status <= 599);
        if (head_request || h->status < 200 || h->status == 204 ||
            h->status == 304)
            FUZZ_CHECK(h->body == H1B_NONE);
    }

    /* fields */
    uint32_t prev_end = h->start;
    unsigned ncl = 0, nte = 0;
    const struct hdr *cl = NULL;
    for (unsigned i = 0; i < h->nfields; i++) {
        const struct hdr *f = &h->fields[i];
        FUZZ_CHECK(f->name >= prev_end);
        FUZZ_CHECK((uint64_t)f->name + f->nlen <= n);
        FUZZ_CHECK(f->val >= f->name + f->nlen);
        FUZZ_CHECK((uint64_t)f->val + f->vlen <= n);
        prev_end = f->val + f->vlen;
        FUZZ_CHECK(field_is_token(p + f->name, f->nlen));
        const char *v = p + f->val;
        for (uint32_t j = 0; j < f->vlen; j++)
            FUZZ_CHECK(!is_ctl_in_value((unsigned char)v[j]));
        if (f->vlen)
            FUZZ_CHECK(!ows(v[0]) && !ows(v[f->vlen - 1]));
        if (name_is(p, f, "content-length")) {
            ncl++;
            cl = f;
        }
        if (name_is(p, f, "transfer-encoding"))
            nte++;
        /* h1_field: the first field of this name, in any case */
        char lname[256];
        if (f->nlen <= sizeof lname) {
            lower(lname, p + f->name, f->nlen);
            size_t vlen = 0;
            const char *fv = h1_field(p, h->fields, h->nfields, lname, f->nlen,
                                      &vlen);
            FUZZ_CHECK(fv != NULL);
            unsigned first = 0;
            while (!(h->fields[first].nlen == f->nlen &&
                     strncasecmp(p + h->fields[first].name, lname, f->nlen) == 0))
                first++;
            FUZZ_CHECK(first <= i);
            FUZZ_CHECK(fv == p + h->fields[first].val &&
                       vlen == h->fields[first].vlen);
        }
        h1_list_has(v, f->vlen, "chunked", 7);
        h1_list_has(v, f->vlen, "close", 5);
    }
    FUZZ_CHECK(prev_end <= n);

    /* the If-* and Range lines (enum h1_pre), against strncasecmp:
     * requests only; each kind's first line, and whether there is another */
    static const char *const pre[H1P_N] = {
        [H1P_IF_MATCH] = "if-match",
        [H1P_IF_NONE_MATCH] = "if-none-match",
        [H1P_IF_MODIFIED_SINCE] = "if-modified-since",
        [H1P_IF_UNMODIFIED_SINCE] = "if-unmodified-since",
        [H1P_RANGE] = "range",
        [H1P_IF_RANGE] = "if-range",
    };
    for (unsigned k = 0; k < H1P_N; k++) {
        unsigned count = 0, first = 0;
        for (unsigned i = 0; i < h->nfields; i++)
            if (name_is(p, &h->fields[i], pre[k]) && count++ == 0)
                first = i;
        if (kind == H1_RESPONSE)
            count = 0;
        FUZZ_CHECK(!!(h->pre_seen >> k & 1) == (count > 0));
        FUZZ_CHECK(!!(h->pre_many >> k & 1) == (count > 1));
        if (count)
            FUZZ_CHECK(h->pre_first[k] == first);
    }

    /* framing */
    FUZZ_CHECK((h->content_length >= 0) == (h->body == H1B_LENGTH));
    FUZZ_CHECK(h->content_length <= CL_MAX);
    FUZZ_CHECK(!(ncl && nte)); /* Transfer-Encoding beside Content-Length */
    FUZZ_CHECK(ncl <= 1);
    if (h->body == H1B_LENGTH) {
        FUZZ_CHECK(ncl == 1);
        FUZZ_CHECK(h->content_length ==
                   ref_content_length((const uint8_t *)p + cl->val, cl->vlen));
    }
    if (h->body == H1B_CHUNKED)
        FUZZ_CHECK(nte >= 1 && h->minor == 1);
    if (ncl == 0 && nte == 0)
        FUZZ_CHECK(h->body == H1B_NONE || (kind == H1_RESPONSE &&
                                           h->body == H1B_CLOSE));
    if (kind == H1_RESPONSE && ncl == 0 && nte == 0 && !head_request &&
        h->status >= 200 && h->status != 204 && h->status != 304)
        FUZZ_CHECK(h->body == H1B_CLOSE && !h->keep_alive);
    if (kind == H1_REQUEST && h->body == H1B_NONE)
        FUZZ_CHECK(nte == 0 && (ncl == 0 || ref_content_length(
            (const uint8_t *)p + cl->val, cl->vlen) == 0));
}

static bool is_error(int ret)
{
    return ret == H1E_BAD || ret == H1E_URI || ret == H1E_FIELDS ||
           ret == H1E_TE || ret == H1E_VERSION;
}

static struct hdr fields[MAX_FIELDS];

static void parse(enum h1_kind kind, const char *p, size_t n, unsigned slots,
                  bool head_request)
{
    struct h1_head h;
    memset(&h, 0, sizeof h);
    h.fields = fields;
    h.max_fields = slots;
    const char *why = NULL;
    int ret = h1_parse_head(kind, p, n, &h, MAX_TARGET, head_request, &why);
    FUZZ_CHECK(ret == 0 || is_error(ret));
    if (ret != 0) {
        FUZZ_CHECK(why != NULL);
        if (kind == H1_RESPONSE)
            FUZZ_CHECK(ret != H1E_URI);
        return;
    }
    check_head(kind, p, n, &h, head_request);

    /* the same with less room: 414, 431 */
    struct h1_head h2;
    if (kind == H1_REQUEST) {
        memset(&h2, 0, sizeof h2);
        h2.fields = fields;
        h2.max_fields = slots;
        why = NULL;
        ret = h1_parse_head(kind, p, n, &h2, h.target_len - 1, head_request,
                            &why);
        FUZZ_CHECK(ret == H1E_URI && why != NULL);
    }
    if (h.nfields > 0) {
        memset(&h2, 0, sizeof h2);
        h2.fields = fields;
        h2.max_fields = h.nfields - 1;
        why = NULL;
        ret = h1_parse_head(kind, p, n, &h2, MAX_TARGET, head_request, &why);
        FUZZ_CHECK(ret == H1E_FIELDS && why != NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_split split;
    fuzz_split_take(&split, &data, &size);
    if (size == 0)
        return 0;
    uint8_t ctl = data[0];
    data++, size--;
    bool head_request = ctl & 1;
    unsigned slots = (ctl >> 1) & 7 ? 1u << ((ctl >> 1) & 7) : MAX_FIELDS;
    if (slots > MAX_FIELDS)
        slots = MAX_FIELDS;

    FUZZ_CHECK(h1_content_length((const char *)data, size) ==
               ref_content_length(data, size));

    /* the head's end: whole, in pieces as it grows, and the reference */
    struct h1_scan s;
    size_t end_whole = 0, end_pieces = 0, end_ref = 0;
    h1_scan_init(&s);
    enum h1_scan_res whole = h1_scan(&s, (const char *)data, size, &end_whole);
    FUZZ_CHECK(s.off <= size);
    h1_scan_init(&s);
    enum h1_scan_res pieces = H1S_MORE;
    size_t n = 0;
    while (n < size && pieces == H1S_MORE) {
        n += fuzz_split_next(&split, size - n);
        pieces = h1_scan(&s, (const char *)data, n, &end_pieces);
        FUZZ_CHECK(s.off <= n);
    }
    enum h1_scan_res ref = ref_scan(data, size, &end_ref);
    FUZZ_CHECK(whole == ref && pieces == ref);
    if (ref != H1S_DONE)
        return 0;
    FUZZ_CHECK(end_whole == end_ref && end_pieces == end_ref);
    FUZZ_CHECK(end_ref >= 4 && memcmp(data + end_ref - 4, "\r\n\r\n", 4) == 0);

    /* the head alone, in a buffer of its size */
    char *head = malloc(end_ref);
    FUZZ_CHECK(head != NULL);
    memcpy(head, data, end_ref);
    parse(H1_REQUEST, head, end_ref, slots, false);
    parse(H1_RESPONSE, head, end_ref, slots, head_request);
    free(head);
    return 0;
}
