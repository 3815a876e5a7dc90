/* test_num.c - base/num.h: num_put_dec against snprintf, at every length
 * (0 to 20 digits) and around each power of ten. */
#include "test.h"

#include <stdint.h>

#include "base/num.h"

static void check_dec(uint64_t v)
{
    char got[24], want[24];
    size_t n = num_put_dec(got, v);
    int k = snprintf(want, sizeof want, "%llu", (unsigned long long)v);
    CHECK_EQ(n, k);
    if (n != (size_t)k || memcmp(got, want, n) != 0) {
        printf("   %s: got %.*s\n", want, (int)n, got);
        CHECK(0);
    }
}

static void test_dec(void)
{
    for (uint64_t v = 0; v < 100000; v++)
        check_dec(v);
    for (uint64_t p = 10; p <= UINT64_C(10000000000000000000); p *= 10) {
        check_dec(p - 1);
        check_dec(p);
        check_dec(p + 1);
        if (p > UINT64_MAX / 10)
            break;
    }
    check_dec(UINT64_MAX);
    check_dec(UINT64_MAX - 1);
    uint64_t x = 88172645463325252u;
    for (int i = 0; i < 100000; i++) { /* xorshift, every magnitude */
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        check_dec(x >> (x % 64));
    }
}

int main(void)
{
    test_watchdog(20);
    TEST(test_dec);
    return test_report();
}
