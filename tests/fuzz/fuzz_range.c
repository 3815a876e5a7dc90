/* fuzz_range.c - http/range.c on arbitrary bytes. The first 8 bytes give
 * the representation's length, the rest is the Range field value. A crash
 * or undefined behaviour is a finding, and so is a broken invariant:
 *   - the result is RANGE_IGNORE, RANGE_UNSATISFIABLE, or 1..RANGE_MAX;
 *   - every range lies in 0..len-1 with first <= last;
 *   - no two ranges share a byte (overlaps are coalesced), so the bytes
 *     sent never exceed the length;
 *   - a value without "bytes=" (any case) is ignored, and so is anything
 *     on an empty representation;
 *   - evaluating again gives the same answer (no hidden state);
 *   - with a space before it (OWS, §5.6.3), which keeps range_eval off
 *     its fast path for the common "bytes=first-last", the answer is the
 *     same: the fast path and the general reading agree. */
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "http/range.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8)
        return 0;
    uint64_t raw;
    memcpy(&raw, data, 8);
    /* lengths small and huge alike */
    int64_t len = (raw & 1) ? (int64_t)(raw >> 1) % 1000
                            : (int64_t)((raw >> 1) & 0x3fffffffffffffffULL);
    const char *p = (const char *)data + 8;
    size_t n = size - 8;
    struct range out[RANGE_MAX], again[RANGE_MAX];
    int k = range_eval(p, n, len, out);
    FUZZ_CHECK(k == RANGE_IGNORE || (k >= 0 && k <= RANGE_MAX));
    int64_t total = 0;
    for (int i = 0; i < k; i++) {
        FUZZ_CHECK(out[i].first >= 0 && out[i].first <= out[i].last);
        FUZZ_CHECK(out[i].last < len);
        total += out[i].last - out[i].first + 1;
        for (int j = 0; j < i; j++)
            FUZZ_CHECK(out[i].last < out[j].first ||
                       out[j].last < out[i].first);
    }
    FUZZ_CHECK(total <= len);
    if (len == 0)
        FUZZ_CHECK(k == RANGE_IGNORE);
    if (memchr(p, '=', n) == NULL)
        FUZZ_CHECK(k == RANGE_IGNORE);
    if (k != RANGE_IGNORE) {
        size_t i = 0;
        while (i < n && (p[i] == ' ' || p[i] == '\t'))
            i++;
        FUZZ_CHECK(n - i >= 6 && strncasecmp(p + i, "bytes=", 6) == 0);
    }
    FUZZ_CHECK(range_eval(p, n, len, again) == k);
    if (k > 0)
        FUZZ_CHECK(memcmp(out, again, (size_t)k * sizeof out[0]) == 0);
    char sp[256];
    if (n < sizeof sp) {
        sp[0] = ' ';
        memcpy(sp + 1, p, n);
        FUZZ_CHECK(range_eval(sp, n + 1, len, again) == k);
        if (k > 0)
            FUZZ_CHECK(memcmp(out, again, (size_t)k * sizeof out[0]) == 0);
    }
    return 0;
}
