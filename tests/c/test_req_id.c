/* test_req_id.c - core/req.h req_id_hex: the 16 lowercase hex digits of
 * req.id, X-Request-Id and the access log's $request_id (branch-free
 * nibble spreading), against snprintf("%016llx"); and the pool's ids:
 * the worker byte kept, the low 56 bits counting and wrapping within. */
#include "test.h"

#include <inttypes.h>
#include <stdint.h>

#include "core/req.h"

static void check_hex(uint64_t v)
{
    struct req r;
    char got[17] = {0}, want[17];
    r.id = v;
    req_id_hex(&r, got);
    snprintf(want, sizeof want, "%016" PRIx64, v);
    if (strcmp(got, want) != 0) {
        printf("req_id_hex(%s) = %s\n", want, got);
        CHECK(0);
    }
}

static void test_hex(void)
{
    check_hex(0);
    check_hex(1);
    check_hex(UINT64_MAX);
    check_hex(0x0123456789abcdefull);
    check_hex(0xfedcba9876543210ull);
    check_hex(0x9a9a09a0a0a9f0f0ull); /* 9/a boundaries in every place */
    uint64_t x = 88172645463325252ull; /* xorshift64 */
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        check_hex(x);
    }
}

static void nothing(struct req *r) { (void)r; }

static void test_pool_ids(void)
{
    struct req_pool p = {0};
    p.id_next = ((uint64_t)7 << 56) | (((uint64_t)1 << 56) - 2);
    struct req *a = req_get(&p), *b = req_get(&p), *c = req_get(&p);
    REQUIRE(a && b && c);
    CHECK(a->id == (((uint64_t)7 << 56) | (((uint64_t)1 << 56) - 2)));
    CHECK(b->id == (((uint64_t)7 << 56) | (((uint64_t)1 << 56) - 1)));
    CHECK(c->id == ((uint64_t)7 << 56)); /* wraps below the worker byte */
    CHECK(a->log.start_us == 0); /* no access log: not timed */
    req_pool_free(&p, nothing);
}

int main(void)
{
    test_watchdog(20);
    TEST(test_hex);
    TEST(test_pool_ids);
    return test_report();
}
