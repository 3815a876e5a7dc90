/* test_etag.c - etag.c: the entity-tag grammar (RFC 9110 §8.8.3), strong
 * and weak comparison (§8.8.3.2), If-Match / If-None-Match lists with `*`
 * (§13.1.1, §13.1.2). */
#include "test.h"

#include "http/etag.h"

static struct etag tag(const char *s)
{
    struct etag t = { 0 };
    int e = etag_parse(s, strlen(s), &t);
    CHECK_EQ(e, 0);
    return t;
}

static int ok(const char *s)
{
    struct etag t;
    return etag_parse(s, strlen(s), &t);
}

static void test_grammar(void)
{
    struct etag t = tag("\"xyzzy\"");
    CHECK(!t.weak && t.len == 7 && memcmp(t.tag, "\"xyzzy\"", 7) == 0);
    t = tag(" W/\"xyzzy\"\t");
    CHECK(t.weak && t.len == 7);
    t = tag("\"\""); /* empty opaque-tag is valid */
    CHECK(!t.weak && t.len == 2);
    t = tag("\"a\x80\xff!#~\""); /* obs-text, %x21, %x23-7E */
    CHECK_EQ(t.len, 8);
    CHECK_EQ(ok("xyzzy"), -1);       /* unquoted */
    CHECK_EQ(ok("w/\"x\""), -1);     /* W/ is case-sensitive */
    CHECK_EQ(ok("W/ \"x\""), -1);
    CHECK_EQ(ok("\"x"), -1);
    CHECK_EQ(ok("\"a\"b\""), -1);    /* DQUOTE inside */
    CHECK_EQ(ok("\"a b\""), -1);     /* SP is not etagc */
    CHECK_EQ(ok("\"a\x7f\""), -1);
    CHECK_EQ(ok("\"a\", \"b\""), -1); /* one tag, not a list */
    CHECK_EQ(ok(""), -1);
    CHECK_EQ(ok("W/"), -1);
}

/* §8.8.3.2's table */
static void test_compare(void)
{
    struct etag w1 = tag("W/\"1\""), w1b = tag("W/\"1\""), w2 = tag("W/\"2\"");
    struct etag s1 = tag("\"1\""), s1b = tag("\"1\"");
    CHECK(!etag_strong_eq(&w1, &w1b) && etag_weak_eq(&w1, &w1b));
    CHECK(!etag_strong_eq(&w1, &w2) && !etag_weak_eq(&w1, &w2));
    CHECK(!etag_strong_eq(&w1, &s1) && etag_weak_eq(&w1, &s1));
    CHECK(etag_strong_eq(&s1, &s1b) && etag_weak_eq(&s1, &s1b));
}

static int lm(const char *list, const char *cur, bool strong)
{
    struct etag c;
    if (cur)
        c = tag(cur);
    return etag_list_match(list, strlen(list), cur ? &c : NULL, strong);
}

static void test_lists(void)
{
    CHECK_EQ(lm("*", "\"a\"", false), ETAG_MATCH);
    CHECK_EQ(lm(" * ", NULL, true), ETAG_MATCH);
    CHECK_EQ(lm("*, \"a\"", "\"a\"", false), ETAG_INVALID);
    CHECK_EQ(lm("**", "\"a\"", false), ETAG_INVALID);
    CHECK_EQ(lm("\"a\"", "\"a\"", false), ETAG_MATCH);
    CHECK_EQ(lm("\"b\", \"a\"", "\"a\"", false), ETAG_MATCH);
    CHECK_EQ(lm("\"b\",\"c\"", "\"a\"", false), ETAG_NONE);
    CHECK_EQ(lm(", ,\"b\" ,, W/\"a\",", "\"a\"", false), ETAG_MATCH);
    CHECK_EQ(lm("W/\"a\"", "\"a\"", false), ETAG_MATCH);  /* weak: INM */
    CHECK_EQ(lm("\"a\"", "W/\"a\"", false), ETAG_MATCH);
    CHECK_EQ(lm("W/\"a\"", "\"a\"", true), ETAG_NONE);    /* strong: IM */
    CHECK_EQ(lm("\"a\"", "W/\"a\"", true), ETAG_NONE);
    CHECK_EQ(lm("\"a\"", "\"a\"", true), ETAG_MATCH);
    CHECK_EQ(lm("\"a\"", NULL, false), ETAG_NONE);
    /* malformed lists are invalid even after a match */
    CHECK_EQ(lm("\"a\" \"b\"", "\"a\"", false), ETAG_INVALID);
    CHECK_EQ(lm("\"a\", b", "\"a\"", false), ETAG_INVALID);
    CHECK_EQ(lm("a", "\"a\"", false), ETAG_INVALID);
    CHECK_EQ(lm("", "\"a\"", false), ETAG_INVALID);
    CHECK_EQ(lm(" , ", "\"a\"", false), ETAG_INVALID);
    CHECK_EQ(lm("\"a", "\"a\"", false), ETAG_INVALID);
}

int main(void)
{
    test_watchdog(10);
    TEST(test_grammar);
    TEST(test_compare);
    TEST(test_lists);
    return test_report();
}
