/* test.h - tiny assertion helpers for the C unit tests (in the spirit of
 * redis' testhelp.h). One executable per topic; each test function is run
 * with TEST(fn). Exit status: 0 pass, 1 fail, 77 skip (ctest's
 * SKIP_RETURN_CODE, e.g. when io_uring is unavailable).
 *
 *   CHECK(cond)          record a failure (file:line) and go on
 *   CHECK_EQ(a, b)       integers, both values printed on failure
 *   REQUIRE(cond)        like CHECK, but return from the test function
 *   TEST(fn)             run `void fn(void)`, print its name and verdict
 *   test_report()        summary line; the exit status for main()
 *   test_skip(why)       print why and exit 77
 *   test_watchdog(sec)   abort (fail) the whole executable if it hangs */
#ifndef LURING_TEST_H
#define LURING_TEST_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int test_failures;      /* CHECKs failed, all tests */
static int test_failed_tests;  /* tests with at least one failed CHECK */
static int test_ran;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            printf("%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);    \
            fflush(stdout);                                                    \
            test_failures++;                                                   \
        }                                                                      \
    } while (0)

#define CHECK_EQ(a, b)                                                         \
    do {                                                                       \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);        \
        if (check_a_ != check_b_) {                                            \
            printf("%s:%d: CHECK failed: %s == %s (%lld != %lld)\n",           \
                   __FILE__, __LINE__, #a, #b, check_a_, check_b_);            \
            fflush(stdout);                                                    \
            test_failures++;                                                   \
        }                                                                      \
    } while (0)

#define REQUIRE(cond)                                                          \
    do {                                                                       \
        if (!(cond)) {                                                         \
            printf("%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond);  \
            fflush(stdout);                                                    \
            test_failures++;                                                   \
            return;                                                            \
        }                                                                      \
    } while (0)

#define TEST(fn)                                                               \
    do {                                                                       \
        int test_before_ = test_failures;                                      \
        printf("-- %s\n", #fn);                                                \
        fflush(stdout);                                                        \
        fn();                                                                  \
        test_ran++;                                                            \
        if (test_failures != test_before_) {                                   \
            test_failed_tests++;                                               \
            printf("FAIL %s\n", #fn);                                          \
        } else {                                                               \
            printf("ok   %s\n", #fn);                                          \
        }                                                                      \
        fflush(stdout);                                                        \
    } while (0)

static inline int test_report(void)
{
    printf("%d tests, %d failed (%d failed checks): %s\n", test_ran,
           test_failed_tests, test_failures, test_failures ? "FAIL" : "PASS");
    return test_failures ? 1 : 0;
}

static inline void test_skip(const char *why)
{
    printf("SKIP: %s\n", why);
    exit(77);
}

static inline void test_watchdog_fired(int sig)
{
    (void)sig;
    static const char msg[] = "FAIL: watchdog: the test hung\n";
    if (write(1, msg, sizeof msg - 1) < 0) {
    }
    _exit(1);
}

static inline void test_watchdog(unsigned seconds)
{
    signal(SIGALRM, test_watchdog_fired);
    alarm(seconds);
}

#endif
