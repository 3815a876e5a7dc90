/* test_h1_parse.c - h1_parse.c: the end of a head (RFC 9112 §2.2), request
 * and status lines (§3, §4), field lines (§5), the body length (§6.3) and
 * the chunked coding (§7.1). Each message is also scanned and decoded in
 * pieces of every size: the result must not depend on how bytes arrive. */
#include "test.h"

#include <stdint.h>

#include "http/h1_parse.h"

/* Scan s whole and byte by byte: both give the same verdict and end. */
static enum h1_scan_res scan(const char *s, size_t *end)
{
    size_t n = strlen(s), e1 = 0, e2 = 0;
    struct h1_scan sc;
    h1_scan_init(&sc);
    enum h1_scan_res whole = h1_scan(&sc, s, n, &e1);
    h1_scan_init(&sc);
    enum h1_scan_res step = H1S_MORE;
    for (size_t k = 1; k <= n && step == H1S_MORE; k++)
        step = h1_scan(&sc, s, k, &e2);
    CHECK_EQ(whole, step);
    if (whole == H1S_DONE)
        CHECK_EQ(e1, e2);
    *end = e1;
    return whole;
}

/* Parse a request head; returns 0 or the error status. */
static int req(const char *s, struct h1_head *h)
{
    static struct hdr f[16];
    size_t end;
    enum h1_scan_res r = scan(s, &end);
    if (r == H1S_BAD)
        return 400;
    CHECK(r == H1S_DONE);
    if (r != H1S_DONE)
        return -1;
    CHECK_EQ(end, strlen(s));
    h->fields = f;
    h->max_fields = 16;
    const char *why;
    return h1_parse_head(H1_REQUEST, s, end, h, 64, false, &why);
}

static int resp(const char *s, struct h1_head *h)
{
    static struct hdr f[16];
    size_t end;
    if (scan(s, &end) != H1S_DONE)
        return 400;
    h->fields = f;
    h->max_fields = 16;
    const char *why;
    return h1_parse_head(H1_RESPONSE, s, end, h, 0, false, &why);
}

#define HOST "Host: x\r\n"

/* §2.2: CRLF only; §3: the request line */
static void test_request_line(void)
{
    struct h1_head h;
    CHECK_EQ(req("GET /a?b HTTP/1.1\r\n" HOST "\r\n", &h), 0);
    CHECK_EQ(h.method, H1_M_GET);
    CHECK_EQ(h.minor, 1);
    CHECK_EQ(h.target_len, 4);
    CHECK(h.keep_alive);
    CHECK_EQ(h.body, H1B_NONE);
    CHECK_EQ(req("\r\n\r\nGET / HTTP/1.0\r\n\r\n", &h), 0); /* §2.2 */
    CHECK_EQ(h.minor, 0);
    CHECK(!h.keep_alive);
    CHECK_EQ(req("BREW / HTTP/1.1\r\n" HOST "\r\n", &h), 0);
    CHECK_EQ(h.method, H1_M_OTHER);
    CHECK_EQ(h.method_len, 4);
    CHECK_EQ(req("OPTIONS * HTTP/1.1\r\n" HOST "\r\n", &h), 0);
    CHECK_EQ(req("GET http://x/a HTTP/1.1\r\n" HOST "\r\n", &h), 0);
    /* absolute-form naming no host (RFC 9110 §4.2.1; fuzz_diff_llhttp_req) */
    CHECK_EQ(req("GET http:// HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("GET http:///a HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("GET http://?a HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("POST Transfer-Encoding:// HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("GET http://x HTTP/1.1\r\n" HOST "\r\n", &h), 0);
    CHECK_EQ(req("CONNECT x:443 HTTP/1.1\r\n" HOST "\r\n", &h), 0);
    CHECK(h.upgrade && !h.keep_alive);
    CHECK_EQ(req("CONNECT [::1]:443 HTTP/1.1\r\n" HOST "\r\n", &h), 0);
    CHECK_EQ(req("CONNECT C` HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("CONNECT x HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("CONNECT x: HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("CONNECT :80 HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("CONNECT x:8a HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("GET 1http://x/ HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("GET ht~tp://x/ HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("GET http:/x HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("GET / HTTP/1.2\r\n" HOST "\r\n", &h), 0);
    CHECK_EQ(h.minor, 1);

    CHECK_EQ(req("GET / HTTP/2.0\r\n" HOST "\r\n", &h), 505);
    CHECK_EQ(req("GET / HTTP/1.10\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("GET / http/1.1\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("GET /\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("GET  / HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("GET / HTTP/1.1 \r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("get / HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("G(T / HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("GET * HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("GET a HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    /* control characters and bytes >= 0x80 in the target */
    CHECK_EQ(req("GET /a\tb HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("GET /a\fb HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("GET /a\x7f HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("GET /\x80 HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    CHECK_EQ(req("GET /\xc3\xa9 HTTP/1.1\r\n" HOST "\r\n", &h), 400);
    /* 64 bytes of target pass, 65 give 414 */
    CHECK_EQ(req("GET /" "123456789012345678901234567890123456789012345678901"
                 "234567890123 HTTP/1.1\r\n" HOST "\r\n", &h), 0);
    CHECK_EQ(req("GET /" "123456789012345678901234567890123456789012345678901"
                 "2345678901234 HTTP/1.1\r\n" HOST "\r\n", &h), 414);
}

/* §2.2: a bare CR or LF anywhere in a head */
static void test_line_ends(void)
{
    size_t end;
    CHECK_EQ(scan("GET / HTTP/1.1\r\nHost: x\r\n\rZGET /h HTTP/1.1\r\n\r\n",
                  &end), H1S_BAD);
    CHECK_EQ(scan("GET / HTTP/1.1\nHost: x\r\n\r\n", &end), H1S_BAD);
    CHECK_EQ(scan("GET / HTTP/1.1\r\nHost: x\n\n", &end), H1S_BAD);
    CHECK_EQ(scan("GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", &end), H1S_BAD);
    CHECK_EQ(scan("\nGET / HTTP/1.1\r\n\r\n", &end), H1S_BAD);
    CHECK_EQ(scan("GET / HTTP/1.1\r\nHost: x\r\n", &end), H1S_MORE);
    CHECK_EQ(scan("GET / HTTP/1.1\r\n\r\nGET /b", &end), H1S_DONE);
    CHECK_EQ(end, 18);
}

/* §5: field lines */
static void test_fields(void)
{
    struct h1_head h;
    const char *s = "GET / HTTP/1.1\r\nHost: x\r\nA:  b c \t\r\nB:\r\n\r\n";
    CHECK_EQ(req(s, &h), 0);
    REQUIRE(h.nfields == 3);
    CHECK_EQ(h.fields[1].vlen, 3);
    CHECK(memcmp(s + h.fields[1].val, "b c", 3) == 0);
    CHECK_EQ(h.fields[2].vlen, 0);
    size_t vl;
    CHECK(h1_field(s, h.fields, h.nfields, "a", 1, &vl) != NULL && vl == 3);

    CHECK_EQ(req("GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\n", &h),
             400);
    CHECK_EQ(req("GET / HTTP/1.1\r\nHost: x\r\nA\t: b\r\n\r\n", &h), 400);
    CHECK_EQ(req("GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n c\r\n\r\n", &h), 400);
    CHECK_EQ(req("GET / HTTP/1.1\r\n Host: x\r\n\r\n", &h), 400);
    CHECK_EQ(req("GET / HTTP/1.1\r\nHost: x\r\n: b\r\n\r\n", &h), 400);
    CHECK_EQ(req("GET / HTTP/1.1\r\nHost: x\r\nA b\r\n\r\n", &h), 400);
    CHECK_EQ(req("GET / HTTP/1.1\r\nHost: x\r\nA[: b\r\n\r\n", &h), 400);
    static const char ctl[] = {0, 1, 8, 11, 12, 31, 127};
    for (size_t i = 0; i < sizeof ctl; i++) {
        char m[64];
        int n = snprintf(m, sizeof m, "GET / HTTP/1.1\r\nHost: x\r\nA: b%cc\r\n\r\n", 'Z');
        m[n - 6] = ctl[i];
        struct h1_head hh;
        static struct hdr f[4];
        hh.fields = f;
        hh.max_fields = 4;
        const char *why;
        CHECK_EQ(h1_parse_head(H1_REQUEST, m, (size_t)n, &hh, 64, false, &why),
                 400);
    }
    /* Host: required in 1.1, once, well-formed */
    CHECK_EQ(req("GET / HTTP/1.1\r\n\r\n", &h), 400);
    CHECK_EQ(req("GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n", &h), 400);
    CHECK_EQ(req("GET / HTTP/1.1\r\nHost: x/y\r\n\r\n", &h), 400);
    CHECK_EQ(req("GET / HTTP/1.1\r\nHost: x y\r\n\r\n", &h), 400);
    CHECK_EQ(req("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", &h), 0);
    /* too many */
    CHECK_EQ(req("GET / HTTP/1.1\r\nHost: x\r\n" "a:1\r\nb:1\r\nc:1\r\nd:1\r\n"
                 "e:1\r\nf:1\r\ng:1\r\nh:1\r\ni:1\r\nj:1\r\nk:1\r\nl:1\r\n"
                 "m:1\r\nn:1\r\no:1\r\np:1\r\n\r\n", &h), 431);
    /* Connection */
    CHECK_EQ(req("GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, Close\r\n\r\n",
                 &h), 0);
    CHECK(!h.keep_alive);
    CHECK_EQ(req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &h), 0);
    CHECK(h.keep_alive);
    CHECK_EQ(req("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: ws\r\n"
                 "Connection: upgrade\r\n\r\n", &h), 0);
    CHECK(h.upgrade && !h.keep_alive);
}

/* RFC 9110 §7.6.1: the fields a Connection field names */
static void test_connection_names(void)
{
    struct h1_head h;
    const char *s = "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-A\r\n"
                    "X-A: 1\r\nX-B: 2\r\nconnection: close ,x-b\r\n\r\n";
    REQUIRE(req(s, &h) == 0);
    struct h1_conn_names cn;
    h1_conn_names(&cn, s, h.fields, h.nfields);
    CHECK_EQ(cn.n, 2);
    CHECK(h1_conn_named(&cn, s, h.fields, h.nfields, "x-a", 3));
    CHECK(h1_conn_named(&cn, s, h.fields, h.nfields, "X-B", 3));
    CHECK(!h1_conn_named(&cn, s, h.fields, h.nfields, "Host", 4));
    /* keep-alive and close are left out: they name no field */
    CHECK(!h1_conn_named(&cn, s, h.fields, h.nfields, "close", 5));
    /* more names than the set holds: found by looking at the lists */
    const char *m = "GET / HTTP/1.1\r\nHost: x\r\nConnection: a1,a2,a3,a4,a5,a6,a7,"
                    "a8,a9,a10,a11,a12,a13,a14,a15,a16,a17,a18\r\n\r\n";
    REQUIRE(req(m, &h) == 0);
    h1_conn_names(&cn, m, h.fields, h.nfields);
    CHECK(cn.many);
    CHECK(h1_conn_named(&cn, m, h.fields, h.nfields, "a18", 3));
    CHECK(!h1_conn_named(&cn, m, h.fields, h.nfields, "a19", 3));
}

/* §6.3: exactly one body length, or a rejection */
static void test_framing(void)
{
    struct h1_head h;
#define POST "POST / HTTP/1.1\r\nHost: x\r\n"
    CHECK_EQ(req(POST "Content-Length: 5\r\n\r\n", &h), 0);
    CHECK(h.body == H1B_LENGTH && h.content_length == 5);
    CHECK_EQ(req(POST "Content-Length: 007\r\n\r\n", &h), 0);
    CHECK_EQ(h.content_length, 7);
    CHECK_EQ(req(POST "Transfer-Encoding: Chunked \r\n\r\n", &h), 0);
    CHECK(h.body == H1B_CHUNKED && h.content_length == -1);
    CHECK_EQ(req(POST "Content-Length: +5\r\n\r\n", &h), 400);
    CHECK_EQ(req(POST "Content-Length: -5\r\n\r\n", &h), 400);
    CHECK_EQ(req(POST "Content-Length: 5 5\r\n\r\n", &h), 400);
    CHECK_EQ(req(POST "Content-Length: 5, 5\r\n\r\n", &h), 400);
    CHECK_EQ(req(POST "Content-Length: 0x5\r\n\r\n", &h), 400);
    CHECK_EQ(req(POST "Content-Length:\r\n\r\n", &h), 400);
    CHECK_EQ(req(POST "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", &h), 400);
    CHECK_EQ(req(POST "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", &h), 400);
    CHECK_EQ(req(POST "Content-Length: 99999999999999999999\r\n\r\n", &h), 400);
    CHECK_EQ(req(POST "Content-Length: 4611686018427387904\r\n\r\n", &h), 0);
    CHECK_EQ(req(POST "Content-Length: 4611686018427387905\r\n\r\n", &h), 400);
    CHECK_EQ(req(POST "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                 &h), 400);
    CHECK_EQ(req(POST "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                 &h), 400);
    CHECK_EQ(req(POST "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
                 "\r\n\r\n", &h), 400);
    CHECK_EQ(req(POST "Transfer-Encoding: gzip\r\n\r\n", &h), 400);
    CHECK_EQ(req(POST "Transfer-Encoding: chunked, gzip\r\n\r\n", &h), 400);
    CHECK_EQ(req(POST "Transfer-Encoding: chunked, chunked\r\n\r\n", &h), 400);
    CHECK_EQ(req(POST "Transfer-Encoding: chunked;q=1\r\n\r\n", &h), 400);
    CHECK_EQ(req(POST "Transfer-Encoding: ,chunked\r\n\r\n", &h), 400);
    CHECK_EQ(req(POST "Transfer-Encoding: xchunked\r\n\r\n", &h), 400);
    CHECK_EQ(req(POST "Transfer-Encoding: gzip, chunked\r\n\r\n", &h), 501);
    /* RFC 9110 §9.3.6: CONNECT has no content (found by the differential
     * fuzzer: llhttp ends the message at the head) */
    CHECK_EQ(req("CONNECT x:1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                 "\r\n\r\n", &h), 400);
    CHECK_EQ(req("CONNECT x:1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                 &h), 400);
    CHECK_EQ(req("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", &h),
             400);
#undef POST
}

/* §4, §6.3: responses */
static void test_responses(void)
{
    struct h1_head h;
    CHECK_EQ(resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", &h), 0);
    CHECK(h.status == 200 && h.body == H1B_LENGTH && h.keep_alive);
    CHECK_EQ(resp("HTTP/1.1 200\r\n\r\n", &h), 0);
    CHECK(h.body == H1B_CLOSE && !h.keep_alive);
    CHECK_EQ(resp("HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n", &h), 0);
    CHECK_EQ(h.body, H1B_NONE);
    CHECK_EQ(resp("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
                  &h), 0);
    CHECK_EQ(h.body, H1B_NONE);
    CHECK_EQ(resp("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", &h), 0);
    CHECK_EQ(h.status, 103);
    CHECK_EQ(resp("HTTP/1.1 200 OK\r\nSet-Cookie : a=b\r\n\r\n", &h), 0);
    CHECK(h.ws_before_colon && h.fields[0].nlen == 10);
    CHECK_EQ(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding :chunked\r\n\r\n", &h), 400);
    CHECK_EQ(resp("HTTP/1.1 200 OK\r\nContent-Length\t: 5\r\n\r\n", &h), 400);
    CHECK_EQ(resp("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &h),
             400);
    CHECK_EQ(resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n", &h), 400);
    CHECK_EQ(resp("HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", &h), 400);
    CHECK_EQ(resp("HTTP/1.1 99 OK\r\n\r\n", &h), 400);
    CHECK_EQ(resp("HTTP/1.1 600 OK\r\n\r\n", &h), 400);
    CHECK_EQ(resp("HTTP/1.1 2000 OK\r\n\r\n", &h), 400);
    CHECK_EQ(resp("HTTP/1.1 200 O\x01K\r\n\r\n", &h), 400);
    CHECK_EQ(resp("HTTP/2 200 OK\r\n\r\n", &h), 400);
    CHECK_EQ(resp("ICY 200 OK\r\n\r\n", &h), 400);
}

/* Decode s in pieces of `step` bytes: the body, or NULL when invalid or
 * incomplete; *rest: bytes after the chunked body. */
static const char *dechunk(const char *s, size_t n, size_t step, size_t *len,
                           size_t *rest)
{
    static char out[256];
    struct h1_chunked d;
    h1_chunked_init(&d, 64);
    size_t off = 0, o = 0;
    while (off < n) {
        size_t lim = n - off < step ? n - off : step, used;
        const char *data;
        size_t dn;
        enum h1_chunk_res r = h1_chunked_feed(&d, s + off, lim, &used, &data,
                                              &dn);
        off += used;
        if (r == H1C_BAD)
            return NULL;
        if (r == H1C_DATA) {
            memcpy(out + o, data, dn);
            o += dn;
        }
        if (r == H1C_DONE) {
            *len = o;
            *rest = n - off;
            return out;
        }
    }
    return NULL;
}

static bool chunk_ok(const char *s, const char *want, size_t want_rest)
{
    size_t n = strlen(s), len = 0, rest = 0;
    bool ok = true;
    for (size_t step = 1; step <= n; step++) {
        const char *b = dechunk(s, n, step, &len, &rest);
        bool good = want ? b && len == strlen(want) && memcmp(b, want, len) == 0 &&
                                rest == want_rest
                         : b == NULL;
        if (!good) {
            printf("  chunked %s: step %zu disagrees\n", want ? want : "(bad)",
                   step);
            ok = false;
        }
    }
    return ok;
}

/* §7.1 */
static void test_chunked(void)
{
    CHECK(chunk_ok("5\r\nhello\r\n0\r\n\r\n", "hello", 0));
    CHECK(chunk_ok("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET", "hello world", 3));
    CHECK(chunk_ok("A\r\n0123456789\r\n0\r\n\r\n", "0123456789", 0));
    CHECK(chunk_ok("0005;a=b;c=\"d;\\\"e\" ; f\r\nhello\r\n0\r\n\r\n", "hello", 0));
    CHECK(chunk_ok("5 ;a\r\nhello\r\n0\r\nT: v\r\nU:\r\n\r\n", "hello", 0));
    CHECK(chunk_ok("0\r\n\r\n", "", 0));

    CHECK(chunk_ok("5\r\nhelloXY0\r\n\r\n", NULL, 0));     /* no CRLF */
    CHECK(chunk_ok("5\r\nhello\n0\r\n\r\n", NULL, 0));     /* bare LF */
    CHECK(chunk_ok("5 0\r\nhello\r\n0\r\n\r\n", NULL, 0));
    CHECK(chunk_ok("5 \r\nhello\r\n0\r\n\r\n", NULL, 0));
    CHECK(chunk_ok("ffffffffffffffff1\r\nx\r\n0\r\n\r\n", NULL, 0));
    CHECK(chunk_ok("8000000000000000\r\nx\r\n0\r\n\r\n", NULL, 0));
    CHECK(chunk_ok("-5\r\nhello\r\n0\r\n\r\n", NULL, 0));
    CHECK(chunk_ok("0x5\r\nhello\r\n0\r\n\r\n", NULL, 0));
    CHECK(chunk_ok("\r\nhello\r\n0\r\n\r\n", NULL, 0));
    CHECK(chunk_ok("5;a\nb\r\nhello\r\n0\r\n\r\n", NULL, 0));  /* LF in ext */
    CHECK(chunk_ok("5;a\x01\r\nhello\r\n0\r\n\r\n", NULL, 0));
    CHECK(chunk_ok("5;a=\"b\r\nhello\r\n0\r\n\r\n", NULL, 0)); /* open quote */
    /* §7.1.1: chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ) */
    CHECK(chunk_ok("5; a = b ;c;d=\"\"\r\nhello\r\n0\r\n\r\n", "hello", 0));
    CHECK(chunk_ok("5;\r\nhello\r\n0\r\n\r\n", NULL, 0));       /* no name */
    CHECK(chunk_ok("0;\r\n\r\n", NULL, 0));
    CHECK(chunk_ok("5;a=\r\nhello\r\n0\r\n\r\n", NULL, 0));     /* no value */
    CHECK(chunk_ok("5;a b\r\nhello\r\n0\r\n\r\n", NULL, 0));
    CHECK(chunk_ok("5;a=b c\r\nhello\r\n0\r\n\r\n", NULL, 0));
    CHECK(chunk_ok("5;a=\"b\"c\r\nhello\r\n0\r\n\r\n", NULL, 0));
    CHECK(chunk_ok("5;=b\r\nhello\r\n0\r\n\r\n", NULL, 0));
    CHECK(chunk_ok("5;a=(\r\nhello\r\n0\r\n\r\n", NULL, 0));
    CHECK(chunk_ok("5\nhello\r\n0\r\n\r\n", NULL, 0));
    CHECK(chunk_ok("5\r\nhello\r\n0\n\r\n", NULL, 0));
    CHECK(chunk_ok("5\r\nhello\r\n0\r\n\n", NULL, 0));
    CHECK(chunk_ok("5\r\nhello\r\n0\r\n\r\r\n", NULL, 0));
    CHECK(chunk_ok("5\r\nhello\r\n0\r\n T: v\r\n\r\n", NULL, 0)); /* obs-fold */
    CHECK(chunk_ok("5\r\nhello\r\n0\r\nT v\r\n\r\n", NULL, 0));
    CHECK(chunk_ok("5\r\nhello\r\n0\r\nT : v\r\n\r\n", NULL, 0));
    /* a limit of 0 refuses trailer fields, not the final CRLF (fuzz_chunked) */
    {
        struct h1_chunked d;
        h1_chunked_init(&d, 0);
        size_t used, dn;
        const char *data;
        CHECK_EQ(h1_chunked_feed(&d, "0\r\n\r\n", 5, &used, &data, &dn), H1C_DONE);
        h1_chunked_init(&d, 0);
        CHECK_EQ(h1_chunked_feed(&d, "0\r\nT: 1\r\n\r\n", 11, &used, &data, &dn),
                 H1C_BAD);
    }
    /* the trailer section is limited (64 bytes here) */
    CHECK(chunk_ok("0\r\nT: 0123456789012345678901234567890123456789012345678"
                   "901234567890123456789\r\n\r\n", NULL, 0));
}

/* Every byte value at every offset of a value longer than two words: the
 * parser scans values eight bytes at a time, then byte by byte; the
 * verdict must be field-vchar / SP / HTAB (RFC 9110 §5.5) wherever the
 * byte falls. */
static void test_value_bytes(void)
{
    for (unsigned b = 0; b < 256; b++) {
        if (b == '\r' || b == '\n')
            continue; /* they end a line (h1_scan's business) */
        bool ok = (b >= 0x20 && b != 0x7f) || b == '\t';
        for (size_t k = 0; k < 20; k++) {
            char m[80];
            int n = snprintf(m, sizeof m, "GET / HTTP/1.1\r\nHost: x\r\nA: "
                             "aaaaaaaaaaaaaaaaaaaa\r\n\r\n");
            size_t v = (size_t)n - 24; /* the value's first byte */
            m[v + k] = (char)b;
            struct h1_head h;
            static struct hdr f[4];
            h.fields = f;
            h.max_fields = 4;
            const char *why;
            int e = h1_parse_head(H1_REQUEST, m, (size_t)n, &h, 64, false,
                                  &why);
            if (e != (ok ? 0 : 400)) {
                printf("   byte 0x%02x at %zu: %d\n", b, k, e);
                CHECK_EQ(e, ok ? 0 : 400);
                return;
            }
            if (ok && b != ' ' && b != '\t')
                CHECK_EQ(h.fields[1].vlen, 20);
        }
    }
}

/* The If-* and Range lines a cache answers (RFC 9110 §13.1, §14.2),
 * noted while parsing: any case, each kind's first line and whether there
 * are more; other names of the same lengths are none of them. */
static void test_preconditions(void)
{
    struct h1_head h;
    CHECK_EQ(req("GET / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", &h), 0);
    CHECK_EQ(h.pre_seen, 0);
    CHECK_EQ(req("GET / HTTP/1.1\r\nHost: x\r\nrange: bytes=0-1\r\n"
                 "IF-NONE-MATCH: \"a\"\r\nIf-None-Match: \"b\"\r\n"
                 "If-Modified-Since: x\r\nif-unmodified-since: y\r\n"
                 "If-Match: *\r\nIf-Range: \"a\"\r\n\r\n", &h), 0);
    CHECK_EQ(h.pre_seen, (1 << H1P_N) - 1);
    CHECK_EQ(h.pre_many, 1 << H1P_IF_NONE_MATCH);
    CHECK_EQ(h.pre_first[H1P_RANGE], 1);
    CHECK_EQ(h.pre_first[H1P_IF_NONE_MATCH], 2);
    CHECK_EQ(h.pre_first[H1P_IF_MODIFIED_SINCE], 4);
    CHECK_EQ(h.pre_first[H1P_IF_UNMODIFIED_SINCE], 5);
    CHECK_EQ(h.pre_first[H1P_IF_MATCH], 6);
    CHECK_EQ(h.pre_first[H1P_IF_RANGE], 7);
    /* same lengths, other names (one letter or symbol off) */
    CHECK_EQ(req("GET / HTTP/1.1\r\nHost: x\r\nRangE_: 1\r\nrangf: 1\r\n"
                 "If-Natch: 1\r\nIf_Range: 1\r\nCache-Control: 1\r\n"
                 "If-None-Matci: 1\r\nIf-Modified-Sincf: 1\r\n"
                 "Transfer-Encodinh: 1\r\nIf-Unmodified-Sinc~: 1\r\n"
                 "Jf-Match: 1\r\n\r\n", &h), 0);
    CHECK_EQ(h.pre_seen, 0);
    /* responses: not noted */
    CHECK_EQ(resp("HTTP/1.1 200 OK\r\nRange: x\r\nContent-Length: 0\r\n\r\n", &h), 0);
    CHECK_EQ(h.pre_seen, 0);
}

int main(void)
{
    test_watchdog(20);
    TEST(test_preconditions);
    TEST(test_request_line);
    TEST(test_line_ends);
    TEST(test_fields);
    TEST(test_value_bytes);
    TEST(test_connection_names);
    TEST(test_framing);
    TEST(test_responses);
    TEST(test_chunked);
    return test_report();
}
