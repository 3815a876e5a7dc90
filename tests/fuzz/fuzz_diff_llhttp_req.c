/* fuzz_diff_llhttp_req.c - our request parser against llhttp (Debian's
 * node-llhttp 8.1, strict mode): the first message of the input, as
 * h1_server frames it (h1_scan, h1_parse_head, Content-Length or
 * h1_chunked) and as llhttp does. Smuggling lives where two parsers
 * disagree on where a message ends:
 *   - when both accept it, they end it at the same byte, with the same
 *     method and target;
 *   - one may not end it while the other wants more bytes;
 *   - we may not accept what llhttp rejects, except where the RFC and
 *     llhttp differ on purpose, each named below (llhttp knows a fixed
 *     list of methods; HTTP/1.2-1.9 read as 1.1, RFC 9110 §2.5; OWS after
 *     "chunked" or around a Content-Length; BWS in chunk extensions, RFC 9112 §7.1.1; framing fields
 *     in a trailer, which we drop, RFC 9110 §6.5.1; a body after an
 *     Upgrade request, which llhttp leaves to the new protocol, RFC 9110
 *     §7.8).
 * Where we are stricter nothing is checked: a rejection is always safe.
 * Found so far: chunk extensions without a name, CONNECT with content,
 * CONNECT targets that are no host:port, absolute-form without a scheme. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <llhttp.h>
#include "http/h1_parse.h"
#include "fuzz.h"
#include "fuzz_llhttp.h"

struct res { bool other; size_t head_end; size_t err_pos; int kind; size_t end; char method[32]; size_t mlen; const char *url; size_t ulen; int minor; int body; bool upgrade; };

static int ours(const char *p, size_t n, struct res *r)
{
    struct h1_scan s; h1_scan_init(&s);
    size_t end;
    enum h1_scan_res sr = h1_scan(&s, p, n, &end);
    if (sr == H1S_BAD) return r->kind = R_REJECT;
    if (sr == H1S_MORE) return r->kind = R_MORE;
    r->head_end = end;
    struct hdr f[100]; struct h1_head h; h.fields = f; h.max_fields = 100;
    const char *why;
    if (h1_parse_head(H1_REQUEST, p, end, &h, 1 << 20, false, &why)) return r->kind = R_REJECT;
    r->other = h.method == H1_M_OTHER;
    r->mlen = h.method_len < 31 ? h.method_len : 31;
    memcpy(r->method, p + h.method_off, r->mlen);
    r->url = p + h.target; r->ulen = h.target_len; r->minor = h.minor;
    r->body = h.body;
    return r->kind = ours_message_end(p, n, &h, end, &r->end);
}

static const char *lurl; static size_t lulen;
static int on_url(llhttp_t *p, const char *at, size_t len) { if (!lurl) lurl = at; lulen += len; return 0; }
static int on_done(llhttp_t *p) { return HPE_PAUSED; }

static int theirs(const char *p, size_t n, struct res *r, llhttp_errno_t *err)
{
    llhttp_settings_t st; llhttp_settings_init(&st);
    st.on_url = on_url; st.on_message_complete = on_done;
    llhttp_t ps; llhttp_init(&ps, HTTP_REQUEST, &st);
    lurl = NULL; lulen = 0;
    llhttp_errno_t e = llhttp_execute(&ps, p, n);
    *err = e;
    if (e == HPE_PAUSED) {
        r->end = (size_t)(llhttp_get_error_pos(&ps) - p);
        const char *m = llhttp_method_name(ps.method);
        r->mlen = strlen(m); memcpy(r->method, m, r->mlen);
        r->url = lurl; r->ulen = lulen; r->minor = ps.http_minor;
        r->upgrade = ps.upgrade;
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
    if (a.kind == R_REJECT) return 0;              /* stricter: fine */
    if (a.kind == R_ACCEPT && b.kind == R_REJECT) {
        if (llhttp_known_difference(e, a.body, b.err_pos > a.head_end, false))
            return 0;
        /* a method unknown to us may be one of llhttp's RTSP or ICE
         * methods (SETUP, SOURCE...), after which it wants "RTSP/" */
        if (e == HPE_INVALID_CONSTANT && a.other)
            return 0;
        fprintf(stderr, "we accept, llhttp rejects: %s\n", llhttp_errno_name(e));
        abort();
    }
    /* an Upgrade request: llhttp ends the message at the head and hands
     * the rest to the new protocol. luring does not tunnel Upgrade (RFC
     * 9110 §7.8 lets a server ignore it): it reads the body as announced,
     * answers, and closes the connection (h->upgrade clears keep_alive),
     * so nothing after is read as a request; what it forwards is framed
     * anew. Method and target must still match (proxy_spec). */
    if (b.kind == R_ACCEPT && b.upgrade && a.kind != R_REJECT) {
        if (a.kind == R_MORE) return 0;
        b.end = a.end;
    }
    if (a.kind == R_ACCEPT && b.kind == R_ACCEPT) {
        if (a.end != b.end) { fprintf(stderr, "end %zu vs %zu\n", a.end, b.end); abort(); }
        if (a.mlen != b.mlen || memcmp(a.method, b.method, a.mlen)) { fprintf(stderr, "method\n"); abort(); }
        if (a.ulen != b.ulen || memcmp(a.url, b.url, a.ulen)) { fprintf(stderr, "url\n"); abort(); }
    }
    if (a.kind == R_ACCEPT && b.kind == R_MORE) { fprintf(stderr, "we end at %zu, llhttp wants more\n", a.end); abort(); }
    if (a.kind == R_MORE && b.kind == R_ACCEPT) { fprintf(stderr, "llhttp ends at %zu, we want more\n", b.end); abort(); }
    return 0;
}
