/* test_budget.c - the shared count of connection buffers (base/budget.h):
 * each thread's part reaches the shared count in steps, charges and gives
 * back balance to zero across threads, and an output queue charges the
 * buffers of its copies and gives them all back when released. */
#include <pthread.h>

#include "base/budget.h"
#include "io/outq.h"
#include "test.h"

static void test_steps(void)
{
    struct budget all = {0};
    struct budget_local a = {.all = &all}, b = {.all = &all};
    size_t ha = 0, hb = 0;
    budget_set(&a, &ha, 1000); /* below a step: this thread's part */
    CHECK_EQ(ha, 1000);
    CHECK_EQ(atomic_load(&all.used), 0);
    CHECK_EQ(budget_used(&a), 1000);
    CHECK_EQ(budget_used(&b), 0); /* not seen by the other thread yet */
    budget_set(&b, &hb, BUDGET_STEP + 1); /* a step: shared at once */
    CHECK_EQ(atomic_load(&all.used), BUDGET_STEP + 1);
    CHECK_EQ(budget_used(&a), BUDGET_STEP + 1001);
    budget_flush(&a);
    CHECK_EQ(atomic_load(&all.used), BUDGET_STEP + 1001);
    budget_set(&a, &ha, 0);
    budget_set(&b, &hb, 0);
    budget_flush(&a);
    budget_flush(&b);
    CHECK_EQ(atomic_load(&all.used), 0);
    CHECK_EQ(ha + hb, 0);
    struct budget_local none = {0}; /* not counted */
    budget_set(&none, &ha, 5000);
    CHECK_EQ(budget_used(&none), 0);
}

static struct budget shared;

static void *churn(void *arg)
{
    struct budget_local l = {.all = &shared};
    size_t held[16] = {0};
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (int i = 0; i < 200000; i++) {
        seed = seed * 1103515245 + 12345;
        budget_set(&l, &held[seed % 16], (seed >> 8) % 100000);
    }
    for (int i = 0; i < 16; i++)
        budget_set(&l, &held[i], 0);
    budget_flush(&l);
    return NULL;
}

static void test_threads(void)
{
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++)
        REQUIRE(pthread_create(&t[i], NULL, churn, (void *)(i + 1)) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ(atomic_load(&shared.used), 0);
}

static void noop(struct outq *o) { (void)o; }
static const struct outq_ops ops = {noop, noop};

static void test_outq_charges(void)
{
    struct budget all = {0};
    struct budget_local l = {.all = &all};
    struct stream s = {.fd = -1};
    struct outq_imm imm = {0};
    struct outq o = {0};
    outq_init(&o, &s, &imm, NULL, &ops, NULL);
    o.budget = &l;
    static char data[100000];
    outq_copy(&o, data, 300);
    CHECK_EQ(budget_used(&l), o.q.bytes.cap);
    for (int i = 0; i < 10; i++)
        outq_copy(&o, data, sizeof data);
    CHECK(o.q.bytes.cap >= 10 * sizeof data);
    CHECK_EQ(budget_used(&l), o.q.bytes.cap);
    CHECK_EQ(atomic_load(&all.used), o.q.bytes.cap - l.pending);
    outq_release_all(&o); /* the stream is done: every byte comes back */
    CHECK_EQ(budget_used(&l), 0);
    CHECK_EQ(o.q.bytes.cap, 0);
    outq_copy(&o, data, 10);
    outq_free(&o);
    CHECK_EQ(budget_used(&l), 0);
}

int main(void)
{
    test_watchdog(30);
    TEST(test_steps);
    TEST(test_threads);
    TEST(test_outq_charges);
    return test_report();
}
