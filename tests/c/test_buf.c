/* test_buf.c - struct buf: append, consume, reserve, reset and free
 * semantics, growth, and requests too large to ever satisfy. */
#include <fcntl.h>
#include <stdint.h>
#include <sys/wait.h>

#include "base/buf.h"
#include "test.h"

#if defined(__SANITIZE_ADDRESS__)
/* a failed huge allocation must come back as NULL, not abort the test */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }
#endif

static void test_empty(void)
{
    struct buf b = {0};
    CHECK(buf_append(&b, "x", 0) == 0); /* nothing to add: no allocation */
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
    buf_consume(&b, 0);
    buf_consume(&b, 10); /* consuming from an empty buffer is harmless */
    CHECK(b.len == 0);
    CHECK(buf_reserve(&b, 0) == 0);
    CHECK(b.len == 0);
    buf_reset(&b, 0);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
    buf_free(&b);
    buf_free(&b); /* twice is harmless */
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
}

static void test_append(void)
{
    struct buf b = {0};
    CHECK(buf_append(&b, "hello", 5) == 0);
    CHECK_EQ(b.len, 5);
    CHECK(b.cap >= 5);
    CHECK(b.data && memcmp(b.data, "hello", 5) == 0);
    CHECK(buf_append(&b, ", world", 7) == 0);
    CHECK_EQ(b.len, 12);
    CHECK(memcmp(b.data, "hello, world", 12) == 0);
    buf_free(&b);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
}

static void test_growth(void)
{
    struct buf b = {0};
    enum { TOTAL = 1 << 20 };
    char *ref = malloc(TOTAL);
    REQUIRE(ref);
    for (size_t i = 0; i < TOTAL; i++)
        ref[i] = (char)(i * 31 + (i >> 8));
    size_t off = 0, reallocs = 0, step = 1;
    while (off < TOTAL) {
        size_t n = step < TOTAL - off ? step : TOTAL - off;
        size_t old_cap = b.cap;
        CHECK(buf_append(&b, ref + off, n) == 0);
        off += n;
        CHECK_EQ(b.len, off);
        CHECK(b.cap >= b.len);
        if (b.cap != old_cap) {
            reallocs++;
            /* capacity grows geometrically (doubling), not by n */
            CHECK(old_cap == 0 || b.cap >= 2 * old_cap);
        }
        step = step * 3 + 1; /* uneven pieces: 1, 4, 13, 40, ... */
        if (step > 100000)
            step = 7;
    }
    CHECK(memcmp(b.data, ref, TOTAL) == 0);
    CHECK(reallocs <= 14); /* 256 B .. 1 MiB by doubling: 13 steps */
    /* a single append bigger than twice the capacity */
    struct buf big = {0};
    CHECK(buf_append(&big, "ab", 2) == 0);
    CHECK(buf_append(&big, ref, TOTAL) == 0);
    CHECK_EQ(big.len, TOTAL + 2);
    CHECK(big.cap >= TOTAL + 2);
    CHECK(memcmp(big.data, "ab", 2) == 0 && memcmp(big.data + 2, ref, TOTAL) == 0);
    buf_free(&big);
    buf_free(&b);
    free(ref);
}

static void test_reserve(void)
{
    struct buf b = {0};
    CHECK(buf_reserve(&b, 1) == 0);
    CHECK(b.data != NULL && b.cap >= 1 && b.len == 0);
    CHECK(buf_append(&b, "abc", 3) == 0);
    CHECK(buf_reserve(&b, 1000) == 0);
    CHECK(b.cap - b.len >= 1000);
    CHECK_EQ(b.len, 3); /* reserve never changes the contents */
    CHECK(memcmp(b.data, "abc", 3) == 0);
    /* reserving what is already free does not reallocate */
    char *data = b.data;
    size_t cap = b.cap;
    CHECK(buf_reserve(&b, cap - b.len) == 0);
    CHECK(b.data == data && b.cap == cap);
    CHECK(buf_reserve(&b, 0) == 0);
    CHECK(b.data == data && b.cap == cap);
    /* filling the reserved room in place, as a reader would */
    memset(b.data + b.len, 'z', cap - b.len);
    b.len = cap;
    CHECK(buf_reserve(&b, 1) == 0); /* full: must grow */
    CHECK(b.cap > cap);
    CHECK(memcmp(b.data, "abc", 3) == 0 && b.data[cap - 1] == 'z');
    buf_free(&b);
}

static void test_consume(void)
{
    struct buf b = {0};
    CHECK(buf_append(&b, "0123456789", 10) == 0);
    size_t cap = b.cap;
    buf_consume(&b, 0);
    CHECK_EQ(b.len, 10);
    CHECK(memcmp(b.data, "0123456789", 10) == 0);
    buf_consume(&b, 3);
    CHECK_EQ(b.len, 7);
    CHECK(memcmp(b.data, "3456789", 7) == 0); /* the rest moves to the front */
    buf_consume(&b, 6);
    CHECK_EQ(b.len, 1);
    CHECK(b.data[0] == '9');
    buf_consume(&b, 1); /* exactly everything */
    CHECK_EQ(b.len, 0);
    CHECK(b.cap == cap && b.data != NULL); /* memory is kept */
    CHECK(buf_append(&b, "abcdef", 6) == 0);
    buf_consume(&b, 1000); /* more than there is: empties, no underflow */
    CHECK_EQ(b.len, 0);
    CHECK(b.cap == cap && b.data != NULL);
    buf_consume(&b, (size_t)-1);
    CHECK_EQ(b.len, 0);
    CHECK(buf_append(&b, "xy", 2) == 0); /* appends start at the front */
    CHECK(b.len == 2 && memcmp(b.data, "xy", 2) == 0);
    /* overlapping move: consume a little from a large buffer */
    struct buf big = {0};
    for (int i = 0; i < 5000; i++) {
        char ch = (char)('a' + i % 26);
        CHECK(buf_append(&big, &ch, 1) == 0);
    }
    buf_consume(&big, 1);
    int bad = 0;
    for (int i = 0; i < 4999; i++)
        if (big.data[i] != (char)('a' + (i + 1) % 26))
            bad++;
    CHECK_EQ(bad, 0);
    CHECK_EQ(big.len, 4999);
    buf_free(&big);
    buf_free(&b);
}

static void test_reset(void)
{
    struct buf b = {0};
    CHECK(buf_append(&b, "hello", 5) == 0);
    char *data = b.data;
    size_t cap = b.cap;
    /* capacity within `keep`: memory kept, contents dropped */
    buf_reset(&b, cap);
    CHECK_EQ(b.len, 0);
    CHECK(b.data == data && b.cap == cap);
    buf_reset(&b, cap * 4);
    CHECK(b.data == data && b.cap == cap);
    CHECK(buf_append(&b, "abc", 3) == 0);
    CHECK(b.data == data && memcmp(b.data, "abc", 3) == 0);
    /* capacity above `keep`: memory returned */
    buf_reset(&b, cap - 1);
    CHECK_EQ(b.len, 0);
    CHECK(b.data == NULL && b.cap == 0);
    /* and the buffer is usable again */
    CHECK(buf_append(&b, "again", 5) == 0);
    CHECK(b.len == 5 && memcmp(b.data, "again", 5) == 0);
    buf_reset(&b, 0);
    CHECK(b.data == NULL && b.cap == 0 && b.len == 0);
    /* a big buffer shrinks to nothing when keep is below its capacity */
    char chunk[4096];
    memset(chunk, 'q', sizeof chunk);
    for (int i = 0; i < 16; i++)
        CHECK(buf_append(&b, chunk, sizeof chunk) == 0);
    CHECK(b.cap >= 65536);
    buf_reset(&b, 16 * 1024);
    CHECK(b.data == NULL && b.cap == 0 && b.len == 0);
    buf_free(&b);
}

/* Allocation failure: -1 and the buffer unchanged (buf.h). */
static void test_out_of_memory(void)
{
    struct buf b = {0};
    CHECK(buf_append(&b, "keep", 4) == 0);
    char *data = b.data;
    size_t cap = b.cap;
    /* representable but far beyond any machine: realloc fails */
    CHECK(buf_reserve(&b, (size_t)1 << 62) == -1);
    CHECK(b.data == data && b.cap == cap && b.len == 4);
    CHECK(memcmp(b.data, "keep", 4) == 0);
    buf_free(&b);
}

/* Run `fn` in a child with a time limit: sizes near SIZE_MAX must fail
 * cleanly (-1, buffer unchanged), not loop forever on a doubling that wraps
 * to 0 or shrink the buffer to a 0-byte realloc. Returns the child's
 * verdict: 0 ok, 1 wrong result, 2 hung, 3 crashed. */
static int in_child(int (*fn)(void))
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return 3;
    if (pid == 0) {
        signal(SIGALRM, SIG_DFL); /* not the parent's watchdog */
        alarm(1);
        /* the verdict says what went wrong; spare the log a sanitizer's
         * report of the consequences (use after free, double free) */
        if (!getenv("TEST_VERBOSE"))
            dup2(open("/dev/null", O_WRONLY), 2);
        _exit(fn());
    }
    int st;
    if (waitpid(pid, &st, 0) < 0)
        return 3;
    if (WIFSIGNALED(st))
        return WTERMSIG(st) == SIGALRM ? 2 : 3;
    return WEXITSTATUS(st) ? (WEXITSTATUS(st) == 1 ? 1 : 3) : 0;
}

static int reserve_huge_empty(void)
{
    struct buf b = {0};
    int r = buf_reserve(&b, SIZE_MAX);
    int ok = r == -1 && b.len == 0;
    buf_free(&b);
    return ok ? 0 : 1;
}

static int reserve_huge_nonempty(void)
{
    struct buf b = {0};
    if (buf_append(&b, "x", 1) < 0)
        return 1;
    char *data = b.data;
    size_t cap = b.cap;
    int r = buf_reserve(&b, SIZE_MAX);
    int ok = r == -1 && b.data == data && b.cap == cap && b.len == 1 &&
             b.data[0] == 'x';
    buf_free(&b);
    return ok ? 0 : 1;
}

static int reserve_overflowing_len(void)
{
    /* len + extra overflows size_t: must not be treated as fitting */
    struct buf b = {0};
    if (buf_append(&b, "0123456789", 10) < 0)
        return 1;
    char *data = b.data;
    int r = buf_reserve(&b, SIZE_MAX - 5);
    int ok = r == -1 && b.data == data && b.len == 10;
    buf_free(&b);
    return ok ? 0 : 1;
}

static void test_reserve_overflow(void)
{
    static const char *verdict[] = {"ok", "wrong result", "hung", "crashed"};
    int v;
    v = in_child(reserve_huge_empty);
    if (v)
        printf("   buf_reserve(empty, SIZE_MAX): %s\n", verdict[v]);
    CHECK(v == 0);
    v = in_child(reserve_huge_nonempty);
    if (v)
        printf("   buf_reserve(len 1, SIZE_MAX): %s\n", verdict[v]);
    CHECK(v == 0);
    v = in_child(reserve_overflowing_len);
    if (v)
        printf("   buf_reserve(len 10, SIZE_MAX - 5): %s\n", verdict[v]);
    CHECK(v == 0);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_watchdog(30);
    TEST(test_empty);
    TEST(test_append);
    TEST(test_growth);
    TEST(test_reserve);
    TEST(test_consume);
    TEST(test_reset);
    TEST(test_out_of_memory);
    TEST(test_reserve_overflow);
    return test_report();
}
