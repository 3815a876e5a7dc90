/* fuzz_etag.c - http/etag.c on arbitrary bytes. A crash or undefined
 * behaviour is a finding, and so is a broken invariant:
 *   - a parsed entity-tag lies inside the input, starts and ends with a
 *     DQUOTE, and holds none in between (RFC 9110 §8.8.3);
 *   - every tag matches itself weakly, and strongly exactly when strong;
 *   - a list's verdict doesn't depend on the tag's W/ under weak
 *     comparison, and a strong match implies a weak one;
 *   - `*` matches with or without a current tag;
 *   - a list made of the parsed tag alone matches it. */
#include <string.h>

#include "fuzz.h"
#include "http/etag.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    struct etag t;
    if (etag_parse(p, size, &t) == 0) {
        FUZZ_CHECK(t.tag >= p && t.tag + t.len <= p + size && t.len >= 2);
        FUZZ_CHECK(t.tag[0] == '"' && t.tag[t.len - 1] == '"');
        FUZZ_CHECK(memchr(t.tag + 1, '"', t.len - 2) == NULL);
        FUZZ_CHECK(etag_weak_eq(&t, &t));
        FUZZ_CHECK(etag_strong_eq(&t, &t) == !t.weak);
        FUZZ_CHECK(etag_list_match(t.tag, t.len, &t, false) == ETAG_MATCH);
        FUZZ_CHECK(etag_list_match(p, size, &t, false) == ETAG_MATCH);
    }
    /* the input as a list, against a tag taken from its first bytes */
    struct etag cur = { "\"x\"", 3, false };
    enum etag_match w = etag_list_match(p, size, &cur, false);
    enum etag_match s = etag_list_match(p, size, &cur, true);
    struct etag curw = cur;
    curw.weak = true;
    FUZZ_CHECK(etag_list_match(p, size, &curw, false) == w);
    FUZZ_CHECK(w == ETAG_INVALID ? s == ETAG_INVALID : s != ETAG_INVALID);
    if (s == ETAG_MATCH)
        FUZZ_CHECK(w == ETAG_MATCH);
    FUZZ_CHECK(etag_list_match(p, size, NULL, false) != ETAG_MATCH ||
               w == ETAG_MATCH);
    if (size == 1 && p[0] == '*')
        FUZZ_CHECK(etag_list_match(p, size, NULL, true) == ETAG_MATCH);
    return 0;
}
