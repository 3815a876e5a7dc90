/* fuzz_date.c - http/date.c on arbitrary bytes. A crash or undefined
 * behaviour is a finding, and so is a broken invariant:
 *   - a parsed date lies in HTTP_DATE_MIN..HTTP_DATE_MAX;
 *   - formatting it and parsing the IMF-fixdate gives it back (the three
 *     formats of RFC 9110 §5.6.7 name one instant each);
 *   - an accepted input is one of the three formats: its first three
 *     bytes (after spaces) are a day name;
 *   - formatting any 8 input bytes as a time gives 29 bytes that parse. */
#include <string.h>

#include "fuzz.h"
#include "http/date.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t now = 1798761600LL;
    int64_t t = http_date_parse((const char *)data, size, now);
    char out[HTTP_DATE_LEN + 1];
    if (t != INT64_MIN) {
        FUZZ_CHECK(t >= HTTP_DATE_MIN && t <= HTTP_DATE_MAX);
        FUZZ_CHECK(http_date_format(t, out) == HTTP_DATE_LEN);
        FUZZ_CHECK(http_date_parse(out, HTTP_DATE_LEN, now) == t);
        size_t i = 0;
        while (i < size && (data[i] == ' ' || data[i] == '\t'))
            i++;
        FUZZ_CHECK(size - i >= 3 &&
                   strstr("SunMonTueWedThuFriSat", (char[4]){ (char)data[i],
                          (char)data[i + 1], (char)data[i + 2], 0 }) != NULL);
    }
    if (size >= 8) {
        int64_t x;
        memcpy(&x, data, 8);
        http_date_format(x, out);
        int64_t back = http_date_parse(out, HTTP_DATE_LEN, now);
        FUZZ_CHECK(back >= HTTP_DATE_MIN && back <= HTTP_DATE_MAX);
    }
    return 0;
}
