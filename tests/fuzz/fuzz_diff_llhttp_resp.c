/* fuzz_diff_llhttp_resp.c - our response parser against llhttp (Debian's
 * node-llhttp 8.1, strict mode): the first message of the input, as
 * h1_client frames it and as llhttp does. When both accept it they end it
 * at the same byte with the same status; one may not end it while the
 * other wants more; we may not accept what llhttp rejects, except where
 * the RFC and llhttp differ on purpose (named below). Close-delimited
 * bodies and 1xx, 204 and 304 responses (no content whatever their
 * fields say, RFC 9112 §6.3) are not compared, nor "chunked" followed by
 * OWS, which llhttp reads as close-delimited.
 * Found so far: whitespace before a framing field's colon (now a 502). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <llhttp.h>
#include "http/h1_parse.h"
#include "fuzz.h"
#include "fuzz_llhttp.h"

struct res { int kind; size_t end, head_end, err_pos; int status; int body; bool ws, te_ows; };

static int ours(const char *p, size_t n, struct res *r)
{
    struct h1_scan s; h1_scan_init(&s);
    size_t end;
    enum h1_scan_res sr = h1_scan(&s, p, n, &end);
    if (sr == H1S_BAD) return r->kind = R_REJECT;
    if (sr == H1S_MORE) return r->kind = R_MORE;
    r->head_end = end;
    struct hdr f[128]; struct h1_head h; h.fields = f; h.max_fields = 128;
    const char *why;
    if (h1_parse_head(H1_RESPONSE, p, end, &h, 0, false, &why)) return r->kind = R_REJECT;
    r->status = h.status; r->body = h.body; r->ws = h.ws_before_colon;
    /* a Transfer-Encoding value followed by OWS (trimmed: RFC 9110 5.5) */
    size_t vl;
    const char *te = h1_field(p, h.fields, h.nfields, "transfer-encoding", 17, &vl);
    r->te_ows = te && (te[vl] == ' ' || te[vl] == '\t');
    return r->kind = ours_message_end(p, n, &h, end, &r->end);
}

static int on_done(llhttp_t *p) { return HPE_PAUSED; }

static int theirs(const char *p, size_t n, struct res *r, llhttp_errno_t *err)
{
    llhttp_settings_t st; llhttp_settings_init(&st);
    st.on_message_complete = on_done;
    llhttp_t ps; llhttp_init(&ps, HTTP_RESPONSE, &st);
    llhttp_errno_t e = llhttp_execute(&ps, p, n);
    *err = e;
    if (e == HPE_PAUSED) {
        r->end = (size_t)(llhttp_get_error_pos(&ps) - p);
        r->status = ps.status_code;
        return r->kind = R_ACCEPT;
    }
    if (e == HPE_OK) return r->kind = R_MORE;
    r->err_pos = (size_t)(llhttp_get_error_pos(&ps) - p);
    return r->kind = R_REJECT;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    struct res a = {0}, b = {0};
    llhttp_errno_t e;
    ours(p, size, &a);
    theirs(p, size, &b, &e);
    if (a.kind == R_REJECT) return 0;
    /* 1xx: no content (RFC 9110 15.2); llhttp frames some 1xx by their fields */
    if (a.kind == R_ACCEPT && a.status < 200) return 0;
    /* 204, 304: no content whatever the fields say (RFC 9112 6.3 rule 1) */
    if (a.kind == R_ACCEPT && (a.status == 204 || a.status == 304)) return 0;
    if (a.kind == R_ACCEPT && b.kind == R_REJECT) {
        if (llhttp_known_difference(e, a.body, b.err_pos > a.head_end, a.ws))
            return 0;
        fprintf(stderr, "we accept, llhttp rejects: %s\n", llhttp_errno_name(e));
        abort();
    }
    if (a.kind == R_ACCEPT && b.kind == R_ACCEPT) {
        if (a.end != b.end) { fprintf(stderr, "end %zu vs %zu\n", a.end, b.end); abort(); }
        if (a.status != b.status) { fprintf(stderr, "status\n"); abort(); }
    }
    /* "chunked" followed by OWS: llhttp's response parser doesn't take it
     * for chunked and reads to the close */
    if (a.kind == R_ACCEPT && b.kind == R_MORE && a.body == H1B_CHUNKED && a.te_ows)
        return 0;
    if (a.kind == R_ACCEPT && b.kind == R_MORE) { fprintf(stderr, "we end at %zu, llhttp wants more\n", a.end); abort(); }
    if (a.kind == R_MORE && a.body != H1B_CLOSE && b.kind == R_ACCEPT) { fprintf(stderr, "llhttp ends at %zu, we want more\n", b.end); abort(); }
    return 0;
}
