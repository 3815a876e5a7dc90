/* test_timer.c - io/timer.c: queues of equal timeouts shared by their
 * users, arming, re-arming, disarming, expiry in deadline order, and
 * callbacks that re-arm. No ring needed. */
#include "test.h"

#include "io/timer.h"

static int fired[16], nfired;
static struct timer t[8];
static struct timer_queue *requeue; /* expire_rearm arms t[0] again here */

static void expire(struct timer_queue *q, struct timer *tm)
{
    (void)q;
    CHECK(!timer_armed(tm)); /* disarmed before the callback */
    fired[nfired++] = (int)(tm - t);
}

static void expire_rearm(struct timer_queue *q, struct timer *tm)
{
    expire(q, tm);
    if (tm == &t[0])
        timer_arm(requeue, tm, 1000);
}

static void test_shared_queues(void)
{
    struct timers ts = {0};
    struct timer_queue *a = timers_queue(&ts, 100, expire);
    struct timer_queue *b = timers_queue(&ts, 100, expire);
    struct timer_queue *c = timers_queue(&ts, 200, expire);
    struct timer_queue *d = timers_queue(&ts, 100, expire_rearm);
    REQUIRE(a && c && d);
    CHECK(a == b); /* same timeout and callback: one queue */
    CHECK(a != c && a != d);
    timers_free(&ts);
    CHECK(ts.queues == NULL);
}

static void test_order_and_rearm(void)
{
    struct timers ts = {0};
    struct timer_queue *q100 = timers_queue(&ts, 100, expire);
    struct timer_queue *q50 = timers_queue(&ts, 50, expire);
    nfired = 0;
    timer_arm(q100, &t[0], 0);  /* due 100 */
    timer_arm(q100, &t[1], 10); /* due 110 */
    timer_arm(q50, &t[2], 20);  /* due 70 */
    timer_arm(q100, &t[3], 30); /* due 130 */
    CHECK(timer_armed(&t[0]) && t[0].deadline == 100);
    timer_arm(q100, &t[0], 20); /* re-armed: due 120, now after t[1] */
    timers_expire(&ts, 69);
    CHECK_EQ(nfired, 0);
    timers_expire(&ts, 115);
    CHECK_EQ(nfired, 2); /* t[2] (70) and t[1] (110) */
    CHECK_EQ(fired[0] + fired[1], 3);
    timer_disarm(&t[3]);
    timer_disarm(&t[3]); /* twice: harmless */
    timers_expire(&ts, 1000);
    CHECK_EQ(nfired, 3);
    CHECK_EQ(fired[2], 0);
    CHECK(q100->head == NULL && q50->head == NULL);
    /* arming on the same queue with the same deadline keeps the place */
    timer_arm(q100, &t[4], 500);
    timer_arm(q100, &t[5], 500);
    timer_arm(q100, &t[4], 500);
    CHECK(q100->head == &t[4] && q100->tail == &t[5]);
    /* moving to another queue */
    timer_arm(q50, &t[4], 500);
    CHECK(q100->head == &t[5] && q50->head == &t[4]);
    timer_disarm(&t[4]);
    timer_disarm(&t[5]);
    timers_free(&ts);
}

static void test_callback_rearms(void)
{
    struct timers ts = {0};
    struct timer_queue *q = timers_queue(&ts, 10, expire_rearm);
    requeue = timers_queue(&ts, 10, expire);
    nfired = 0;
    timer_arm(q, &t[0], 0);
    timers_expire(&ts, 10); /* fires, re-arms on requeue for 1010 */
    CHECK_EQ(nfired, 1);
    CHECK(timer_armed(&t[0]) && t[0].deadline == 1010);
    timers_expire(&ts, 1010);
    CHECK_EQ(nfired, 2);
    CHECK(!timer_armed(&t[0]));
    timers_free(&ts);
}

int main(void)
{
    test_watchdog(10);
    TEST(test_shared_queues);
    TEST(test_order_and_rearm);
    TEST(test_callback_rearms);
    return test_report();
}
