/* test_vary.c - vary.c: the values a stored response's Vary names, taken
 * from the request behind its fill, and the match of a later request
 * (RFC 9111 §4.1): fields trimmed, repeated lines joined with ", ", an
 * absent field told from an empty one, names case-insensitive. */
#include "test.h"

#include "core/vary.h"
#include "http/h1_server.h"

/* A request whose fields are `lines` ("Name: value\r\n"...; the value as
 * h1_parse leaves it, OWS kept here to test the trimming). */
static void msg(struct h1_msg *m, const char *lines)
{
    memset(m, 0, sizeof *m);
    size_t n = strlen(lines);
    m->head.data = malloc(n + 1);
    memcpy(m->head.data, lines, n + 1);
    m->head.len = m->head.cap = n;
    const char *h = m->head.data, *p = h;
    while (*p) {
        const char *colon = strchr(p, ':'), *eol = strstr(p, "\r\n");
        struct hdr *f = &m->hdrs[m->nhdrs++];
        f->name = (uint32_t)(p - h);
        f->nlen = (uint32_t)(colon - p);
        f->val = (uint32_t)(colon + 1 - h);
        f->vlen = (uint32_t)(eol - colon - 1);
        p = eol + 2;
    }
}

/* An object filled for request `req` whose response has header lines
 * `resp`; returns what vary_record says. */
static bool filled(struct cache_obj *o, const char *req, const char *resp)
{
    struct h1_msg m;
    memset(o, 0, sizeof *o);
    msg(&m, req);
    CHECK_EQ(vary_capture(o, &m), 0);
    free(m.head.data); /* the capture is a copy */
    buf_append(&o->hdrs, resp, strlen(resp));
    bool ok = vary_record(o);
    CHECK(o->vary_req == NULL);
    return ok;
}

static bool matches(const struct cache_obj *o, const char *req)
{
    struct h1_msg m;
    msg(&m, req);
    bool ok = vary_match(o, &m);
    free(m.head.data);
    return ok;
}

/* o->vary (not NUL-terminated) is exactly s */
static bool recorded(const struct cache_obj *o, const char *s)
{
    return o->vary_len == strlen(s) && memcmp(o->vary, s, o->vary_len) == 0;
}

static void done(struct cache_obj *o)
{
    buf_free(&o->hdrs);
    free(o->vary);
    free(o->vary_req);
}

static void test_no_vary(void)
{
    struct cache_obj o;
    CHECK(filled(&o, "Accept-Encoding: gzip\r\n", "Content-Type: text/plain\r\n"));
    CHECK(o.vary == NULL);
    CHECK(matches(&o, "Accept-Encoding: br\r\n"));
    CHECK(matches(&o, ""));
    done(&o);
}

static void test_one_field(void)
{
    struct cache_obj o;
    CHECK(filled(&o, "Host: a\r\nAccept-Encoding: gzip\r\n",
                 "vary: accept-encoding\r\n"));
    CHECK(matches(&o, "Accept-Encoding: gzip\r\n"));
    CHECK(matches(&o, "ACCEPT-ENCODING:  gzip \t\r\nHost: b\r\n"));
    CHECK(!matches(&o, "Accept-Encoding: identity\r\n"));
    CHECK(!matches(&o, "Accept-Encoding: gzip\r\nAccept-Encoding: br\r\n"));
    CHECK(!matches(&o, ""));
    CHECK(!matches(&o, "Accept-Encoding: \r\n"));
    done(&o);
}

/* lines joined as one list, elements trimmed, joined with ", " on both
 * sides (RFC 9111 §4.1 normalization): "gzip,br" is "gzip, br" */
static void test_joined(void)
{
    struct cache_obj o;
    CHECK(filled(&o, "Accept-Encoding: gzip\r\nX-A: 1\r\nAccept-Encoding: br\r\n",
                 "Vary: Accept-Encoding\r\n"));
    CHECK(recorded(&o, "Paccept-encoding:gzip, br\n"));
    CHECK(matches(&o, "Accept-Encoding: gzip, br\r\n"));
    CHECK(matches(&o, "Accept-Encoding: gzip\r\nAccept-Encoding: br\r\n"));
    CHECK(matches(&o, "Accept-Encoding: gzip,br\r\n"));
    CHECK(matches(&o, "Accept-Encoding: gzip \t,  br\r\n"));
    CHECK(matches(&o, "Accept-Encoding: gzip,\r\nAccept-Encoding: br\r\n") == false);
    CHECK(!matches(&o, "Accept-Encoding: br, gzip\r\n")); /* order kept */
    CHECK(!matches(&o, "Accept-Encoding: GZIP, br\r\n")); /* case kept */
    CHECK(!matches(&o, "Accept-Encoding: gzip br\r\n"));
    CHECK(!matches(&o, "Accept-Encoding: gzip\r\n"));
    CHECK(!matches(&o, "Accept-Encoding: gzip, br, x\r\n"));
    done(&o);
}

/* commas inside a quoted-string are not separators; empty elements and
 * spaces inside an element are kept */
static void test_normalized(void)
{
    struct cache_obj o;
    CHECK(filled(&o, "X-Q: a ;q=\" x , y \" ,b\r\n", "Vary: X-Q\r\n"));
    CHECK(recorded(&o, "Px-q:a ;q=\" x , y \", b\n"));
    CHECK(matches(&o, "X-Q: a ;q=\" x , y \",  b \r\n"));
    CHECK(!matches(&o, "X-Q: a ;q=\" x, y \", b\r\n"));
    CHECK(!matches(&o, "X-Q: a;q=\" x , y \", b\r\n"));
    done(&o);
    CHECK(filled(&o, "X-Q: a,,b\r\n", "Vary: X-Q\r\n"));
    CHECK(matches(&o, "X-Q: a , ,b\r\n"));
    CHECK(matches(&o, "X-Q: a,\r\nX-Q: b\r\n"));
    CHECK(!matches(&o, "X-Q: a, b\r\n"));
    done(&o);
    CHECK(filled(&o, "X-Q: \"a\\\",b\"\r\n", "Vary: X-Q\r\n")); /* "a\",b" */
    CHECK(matches(&o, "X-Q: \"a\\\",b\"\r\n"));
    CHECK(!matches(&o, "X-Q: \"a\\\", b\"\r\n"));
    done(&o);
}

/* absent matches absent only (§4.1); an empty value is a value */
static void test_absent(void)
{
    struct cache_obj o;
    CHECK(filled(&o, "Host: a\r\n", "Vary: Accept-Language\r\n"));
    CHECK(o.vary != NULL);
    CHECK(matches(&o, "Host: b\r\n"));
    CHECK(!matches(&o, "Accept-Language: \r\n"));
    CHECK(!matches(&o, "Accept-Language: fr\r\n"));
    done(&o);
    CHECK(filled(&o, "Accept-Language: \r\n", "Vary: Accept-Language\r\n"));
    CHECK(matches(&o, "Accept-Language:\r\n"));
    CHECK(!matches(&o, ""));
    done(&o);
}

/* several names, in one line or several, all compared */
static void test_several(void)
{
    struct cache_obj o;
    CHECK(filled(&o, "Accept-Encoding: gzip\r\nX-Lang: fr\r\n",
                 "Vary: Accept-Encoding ,X-Lang\r\nVary: Cookie\r\n"));
    CHECK(matches(&o, "X-Lang: fr\r\nAccept-Encoding: gzip\r\n"));
    CHECK(!matches(&o, "X-Lang: de\r\nAccept-Encoding: gzip\r\n"));
    CHECK(!matches(&o, "X-Lang: fr\r\nAccept-Encoding: gzip\r\nCookie: a=1\r\n"));
    done(&o);
}

/* not a list of field names, or nothing captured: not shared */
static void test_refused(void)
{
    struct cache_obj o;
    CHECK(!filled(&o, "", "Vary: Accept Encoding/1\r\n"));
    done(&o);
    CHECK(!filled(&o, "", "Vary: a\"b\r\n"));
    done(&o);
    memset(&o, 0, sizeof o);
    buf_append(&o.hdrs, "Vary: Accept-Encoding\r\n", 23);
    CHECK(!vary_record(&o)); /* no capture */
    done(&o);
    memset(&o, 0, sizeof o);
    buf_append(&o.hdrs, "X-A: 1\r\n", 8);
    CHECK(vary_record(&o)); /* no capture, no Vary: nothing to know */
    done(&o);
    CHECK(filled(&o, "", "Vary: ,\r\n")); /* an empty list names nothing */
    CHECK(o.vary == NULL);
    done(&o);
}

int main(void)
{
    TEST(test_no_vary);
    TEST(test_one_field);
    TEST(test_joined);
    TEST(test_normalized);
    TEST(test_absent);
    TEST(test_several);
    TEST(test_refused);
    return test_report();
}
