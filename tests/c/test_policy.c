/* test_policy.c - eviction policies (policy.h) and the trace simulator
 * (sim.h): each policy on tiny hand-made sequences (victim order, SIEVE's
 * hand, CLOCK's reinsertion, S3-FIFO's promotion, ghost hits and quirk Q1,
 * LFU ties, remove), the Lua adapter, protocol invariants on random
 * requests, and the exact miss counts of shared/traces/REFERENCE.md
 * (libCacheSim) on the three reference traces of tests/data/traces, which
 * the build unpacks into TRACES_DIR (CMakeLists.txt). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/policy.h"
#include "app/sim.h"

static int failures;
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            printf("%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);    \
            failures++;                                                        \
        }                                                                      \
    } while (0)
#define CHECK_STR(got, want)                                                   \
    do {                                                                       \
        if (strcmp((got), (want)) != 0) {                                      \
            printf("%s:%d: got \"%s\", want \"%s\"\n", __FILE__, __LINE__,     \
                   (got), (want));                                             \
            failures++;                                                        \
        }                                                                      \
    } while (0)

/* ==== a toy cache: one object per letter ==== */

struct tobj {
    struct policy_node node;
    bool resident;
};

static struct tobj objs[128];

static struct policy *fresh(const char *name, uint64_t capacity)
{
    memset(objs, 0, sizeof objs);
    for (int i = 0; i < 128; i++)
        objs[i].node.key = (uint64_t)i;
    struct policy *p = policy_new(policy_by_name(name), capacity);
    CHECK(p != NULL);
    return p;
}

/* One request for letter k of `size`, as a cache does it (policy.h);
 * appends the victims to ev. Returns whether it hit. */
static bool request(struct policy *p, char k, uint64_t size, char *ev)
{
    struct tobj *o = &objs[(unsigned char)k];
    if (o->resident) {
        policy_hit(p, &o->node);
        return true;
    }
    o->node.size = size;
    policy_miss(p, &o->node);
    if (!policy_can_insert(p, size))
        return false;
    while (policy_full(p, size)) {
        struct policy_node *v = policy_evict(p);
        CHECK(v != NULL);
        if (v == NULL)
            return false;
        struct tobj *vo = (struct tobj *)v;
        CHECK(vo->resident);
        vo->resident = false;
        size_t n = strlen(ev);
        ev[n] = (char)(vo - objs);
        ev[n + 1] = '\0';
    }
    o->resident = policy_insert(p, &o->node);
    return false;
}

/* Replays seq ("-x" removes x) with unit sizes; returns the victims in
 * order (static buffer). */
static const char *victims(const char *name, uint64_t capacity,
                           const char *seq)
{
    static char ev[256];
    ev[0] = '\0';
    struct policy *p = fresh(name, capacity);
    for (const char *s = seq; *s; s++) {
        if (*s == '-') {
            struct tobj *o = &objs[(unsigned char)*++s];
            CHECK(o->resident);
            policy_remove(p, &o->node);
            o->resident = false;
        } else {
            request(p, *s, 1, ev);
        }
    }
    policy_free(p);
    return ev;
}

/* ==== each policy on hand-made sequences ==== */

static void test_names(void)
{
    static const char *const names[] = {"lru", "fifo", "clock", "sieve",
                                        "s3fifo", "lfu"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        CHECK(policy_by_name(names[i]) != NULL);
        CHECK_STR(policy_by_name(names[i])->name, names[i]);
    }
    CHECK(policy_by_name("S3FIFO") == policy_by_name("s3fifo"));
    CHECK(policy_by_name("arc") == NULL);
    char err[256];
    CHECK(policy_open("nope", 10, err, sizeof err) == NULL);
    CHECK(strstr(err, "nope") != NULL);
    CHECK(policy_open("/nonexistent/p.lua", 10, err, sizeof err) == NULL);
    CHECK(strstr(err, "/nonexistent/p.lua") != NULL);
}

/* "abcadef": a is hit once before d arrives. */
static void test_victim_order(void)
{
    CHECK_STR(victims("lru", 3, "abcadef"), "bca");
    CHECK_STR(victims("fifo", 3, "abcadef"), "abc");
    /* CLOCK moves the visited a to the head: then b, c, a */
    CHECK_STR(victims("clock", 3, "abcadef"), "bca");
    /* SIEVE leaves a in place at the tail behind the hand: b, c, then d */
    CHECK_STR(victims("sieve", 3, "abcadef"), "bcd");
    /* LFU: a has 2, the others 1 (oldest first) */
    CHECK_STR(victims("lfu", 3, "abcadef"), "bcd");
}

static void test_clock(void)
{
    /* every bit set: one full sweep clears them, then the oldest goes */
    CHECK_STR(victims("clock", 3, "abcabcd"), "a");
    /* reinsertion order: a and b go to the head in turn, c is evicted, and
     * the next sweep finds a then b unvisited (d is newest) */
    CHECK_STR(victims("clock", 3, "abcabdef"), "cab");
    CHECK_STR(victims("clock", 1, "aab"), "a");
}

static void test_sieve_hand(void)
{
    /* the hand stops on b (just newer than a), clears b and c, and evicts
     * d, the newest; LRU would take b */
    CHECK_STR(victims("sieve", 3, "abcbdce"), "ad");
    CHECK_STR(victims("lru", 3, "abcbdce"), "ab");
    /* victim was the head: the hand is unset and restarts at the tail */
    CHECK_STR(victims("sieve", 3, "abcbdcef"), "adb");
    /* wrap-around: all visited, the hand sweeps the whole queue once */
    CHECK_STR(victims("sieve", 3, "abcabcd"), "a");
    /* removing the node under the hand moves the hand to its newer
     * neighbour: after "abcad" the hand is on c; without c it is on d, so
     * d goes before the older a */
    CHECK_STR(victims("sieve", 3, "abcad-cef"), "bd");
}

static void test_lfu_ties(void)
{
    /* all at 2: the one that reached 2 first (c) goes */
    CHECK_STR(victims("lfu", 3, "abccbad"), "c");
    CHECK_STR(victims("lfu", 3, "abcabcaad"), "b");
    /* the newcomer (freq 1) is the next victim, not the older hot a as
     * for LRU */
    CHECK_STR(victims("lfu", 3, "abcaabbde"), "cd");
    CHECK_STR(victims("lru", 3, "abcaabbde"), "ca");
    CHECK_STR(victims("lfu", 3, "abcaabb-ade"), "c");
}

static void test_remove(void)
{
    static const char *const names[] = {"lru", "fifo", "clock", "sieve",
                                        "lfu"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        CHECK_STR(victims(names[i], 3, "abc-bde"), "a");
    struct policy *p = fresh("lru", 5);
    char ev[64] = "";
    request(p, 'a', 2, ev);
    request(p, 'b', 3, ev);
    CHECK(p->used == 5 && p->count == 2);
    policy_remove(p, &objs['a'].node);
    CHECK(p->used == 3 && p->count == 1);
    policy_free(p);
}

/* Byte sizes: evict until it fits; too large objects evict nothing. */
static void test_sizes(void)
{
    char ev[64] = "";
    struct policy *p = fresh("fifo", 10);
    request(p, 'a', 4, ev);
    request(p, 'b', 4, ev);
    request(p, 'c', 2, ev);
    CHECK(!request(p, 'x', 11, ev)); /* larger than the cache */
    CHECK_STR(ev, "");
    CHECK(!objs['x'].resident && p->used == 10);
    request(p, 'd', 7, ev); /* needs a and b gone */
    CHECK_STR(ev, "ab");
    CHECK(p->used == 9);
    policy_free(p);
}

/* C = 20 objects: s = 2, m = 18, g = 18. */
static void test_s3fifo(void)
{
    char ev[64] = "";
    struct policy *p = fresh("s3fifo", 20);
    CHECK(policy_can_insert(p, 2) && !policy_can_insert(p, 3));
    request(p, 'a', 1, ev);
    request(p, 'a', 1, ev);
    request(p, 'a', 1, ev); /* a: 2 hits while in small */
    for (char k = 'b'; k <= 't'; k++)
        request(p, k, 1, ev); /* 20 objects: all in small, main empty */
    CHECK(p->count == 20 && ev[0] == '\0');
    /* evicting from small promotes a to main and evicts b into the ghost */
    request(p, 'u', 1, ev);
    CHECK_STR(ev, "b");
    CHECK(objs['a'].resident);
    /* b comes back: a ghost hit, placed in main */
    ev[0] = '\0';
    request(p, 'b', 1, ev);
    CHECK(objs['b'].node.ghost_hit == 0); /* consumed by policy_insert */
    CHECK_STR(ev, "c");
    /* small's tail goes on being evicted (d..); main (a, b) stays */
    ev[0] = '\0';
    for (char k = 'A'; k <= 'P'; k++)
        request(p, k, 1, ev);
    CHECK_STR(ev, "defghijklmnopqrs");
    CHECK(objs['a'].resident && objs['b'].resident);
    /* one hit in small is not enough for main */
    ev[0] = '\0';
    request(p, 't', 1, ev); /* hit: t has 1 */
    request(p, 'Q', 1, ev);
    request(p, 'R', 1, ev);
    CHECK_STR(ev, "tu");
    policy_free(p);

    /* a ghost hit is reported to the node by policy_miss */
    p = fresh("s3fifo", 20);
    ev[0] = '\0';
    for (char k = 'a'; k <= 'u'; k++)
        request(p, k, 1, ev);
    CHECK_STR(ev, "a");
    policy_miss(p, &objs['a'].node);
    CHECK(objs['a'].node.ghost_hit == 1);
    policy_miss(p, &objs['a'].node); /* consumed: no second ghost hit */
    CHECK(objs['a'].node.ghost_hit == 0);
    policy_free(p);

    /* main: once small empties (everything promoted), main's overflow is
     * evicted FIFO-reinsertion style: a hit object goes round again */
    p = fresh("s3fifo", 20);
    ev[0] = '\0';
    for (int round = 0; round < 3; round++)
        for (char k = 'a'; k <= 't'; k++)
            request(p, k, 1, ev); /* each: inserted, then 2 hits */
    request(p, 'u', 1, ev);       /* all 20 move to main; a is its tail */
    CHECK_STR(ev, "a");
    request(p, 'b', 1, ev);       /* hit in main */
    request(p, 'v', 1, ev);       /* main 19 > m = 18: b goes round, c out */
    CHECK_STR(ev, "ac");
    request(p, 'w', 1, ev);       /* main 18 = m: small's tail u */
    CHECK_STR(ev, "acu");
    policy_free(p);

    /* C = 10: s = 1, so by quirk Q1 nothing ever enters small */
    p = fresh("s3fifo", 10);
    ev[0] = '\0';
    CHECK(policy_can_insert(p, 1));
    CHECK(!request(p, 'a', 1, ev) && !objs['a'].resident);
    CHECK(p->count == 0 && p->used == 0);
    policy_free(p);
}

/* Quirk Q1 in byte units: size == s is admitted by can_insert, evicts, and
 * then is not cached. C = 100: s = 10. */
static void test_s3fifo_q1(void)
{
    char ev[64] = "";
    struct policy *p = fresh("s3fifo", 100);
    for (char k = 'a'; k <= 'j'; k++)
        request(p, k, 9, ev); /* 90 units */
    CHECK(policy_can_insert(p, 10) && !policy_can_insert(p, 11));
    CHECK(!request(p, 'x', 10, ev) && !objs['x'].resident);
    CHECK_STR(ev, ""); /* 90 + 10 fits: no eviction needed */
    request(p, 'k', 9, ev);
    CHECK_STR(ev, "");
    CHECK(p->used == 99);
    CHECK(!request(p, 'y', 10, ev) && !objs['y'].resident);
    CHECK_STR(ev, "a"); /* evicted for y, which then was not cached */
    CHECK(p->used == 90);
    policy_free(p);
}

/* ==== invariants on random requests ==== */

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_random_invariants(void)
{
    static const char *const names[] = {"lru", "fifo", "clock", "sieve",
                                        "s3fifo", "lfu"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char ev[8192];
        struct policy *p = fresh(names[i], 300);
        for (int r = 0; r < 20000; r++) {
            ev[0] = '\0';
            char k = (char)('0' + rnd() % 75);
            if (rnd() % 50 == 0 && objs[(unsigned char)k].resident) {
                policy_remove(p, &objs[(unsigned char)k].node);
                objs[(unsigned char)k].resident = false;
                continue;
            }
            request(p, k, 1 + ((unsigned char)k * 7) % 40, ev);
            uint64_t used = 0, count = 0;
            for (int j = 0; j < 128; j++)
                if (objs[j].resident) {
                    used += objs[j].node.size;
                    count++;
                }
            if (used != p->used || count != p->count || used > 300) {
                printf("%s: request %d: used %llu/%llu count %llu/%llu\n",
                       names[i], r, (unsigned long long)used,
                       (unsigned long long)p->used,
                       (unsigned long long)count,
                       (unsigned long long)p->count);
                failures++;
                break;
            }
        }
        /* drain: every resident object comes out exactly once */
        struct policy_node *v;
        while ((v = policy_evict(p)) != NULL) {
            CHECK(((struct tobj *)v)->resident);
            ((struct tobj *)v)->resident = false;
        }
        CHECK(p->used == 0 && p->count == 0);
        for (int j = 0; j < 128; j++)
            CHECK(!objs[j].resident);
        policy_free(p);
    }
}

/* ==== the Lua adapter ==== */

static char *src_dir(void)
{
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s", __FILE__);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    return dir;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* A small trace with unit and varied sizes, as CSV. */
static char *gen_csv(size_t nreq, size_t *len)
{
    size_t cap = nreq * 32 + 64;
    char *s = malloc(cap);
    size_t n = (size_t)snprintf(s, cap, "timestamp,key,size\n");
    for (size_t i = 0; i < nreq; i++) {
        /* skewed: low keys are hot */
        uint64_t k = rnd() % 1000;
        k = k * k / 1000 + rnd() % 3;
        n += (size_t)snprintf(s + n, cap - n, "%zu,key%llu,%llu\n", i,
                              (unsigned long long)k,
                              (unsigned long long)(1 + k % 17));
    }
    *len = n;
    return s;
}

static void test_lua_policy(void)
{
    char err[512], path[4200], tmp[] = "/tmp/test_policy.XXXXXX";
    size_t len;
    char *csv = gen_csv(20000, &len);
    struct sim_trace *t = sim_trace_parse("gen", csv, len, err, sizeof err);
    free(csv);
    CHECK(t != NULL);
    if (t == NULL)
        return;

    /* examples/policies/lru.lua decides exactly as the built-in lru */
    snprintf(path, sizeof path, "%s/../../examples/policies/lru.lua",
             src_dir());
    for (int bytes = 0; bytes < 2; bytes++) {
        uint64_t cap = sim_capacity(t, bytes, 10);
        struct sim_result want, got;
        struct policy *p = policy_open("lru", cap, err, sizeof err);
        CHECK(sim_run(t, p, bytes, &want, err, sizeof err) == 0);
        policy_free(p);
        p = policy_open(path, cap, err, sizeof err);
        CHECK(p != NULL);
        if (p == NULL) {
            printf("%s\n", err);
            continue;
        }
        CHECK(sim_run(t, p, bytes, &got, err, sizeof err) == 0);
        CHECK(policy_error(p) == NULL);
        policy_free(p);
        CHECK(want.misses == got.misses && want.misses > 0);
        CHECK(want.missed_bytes == got.missed_bytes);
    }

    int fd = mkstemp(tmp);
    CHECK(fd >= 0);
    close(fd);
    snprintf(path, sizeof path, "%s.lua", tmp);

    /* a FIFO from a plain table; miss() precedes each insert() of a key */
    write_file(path,
               "local q, first, last, missed = {}, 1, 0\n"
               "return {\n"
               "  insert = function(k, size)\n"
               "    assert(k == missed, 'insert without miss')\n"
               "    last = last + 1; q[last] = k\n"
               "  end,\n"
               "  hit = function(k, size) end,\n"
               "  miss = function(k, size) missed = k end,\n"
               "  evict = function()\n"
               "    local k = q[first]; q[first] = nil; first = first + 1\n"
               "    return k\n"
               "  end,\n"
               "  remove = function(k) error('not used') end,\n"
               "}\n");
    struct sim_result want, got;
    struct policy *p = policy_open("fifo", 50, err, sizeof err);
    CHECK(sim_run(t, p, false, &want, err, sizeof err) == 0);
    policy_free(p);
    p = policy_open(path, 50, err, sizeof err);
    CHECK(p != NULL && sim_run(t, p, false, &got, err, sizeof err) == 0);
    CHECK(want.misses == got.misses);
    /* remove() raising: reported, and the policy is dead from then on */
    struct tobj *o = &objs['z'];
    memset(o, 0, sizeof *o);
    o->node.key = 0xabcdef;
    o->node.size = 1;
    policy_miss(p, &o->node);
    CHECK(policy_insert(p, &o->node));
    policy_remove(p, &o->node);
    CHECK(policy_error(p) != NULL &&
          strstr(policy_error(p), "remove(): ") != NULL &&
          strstr(policy_error(p), "not used") != NULL);
    CHECK(policy_evict(p) == NULL);
    policy_free(p);

    /* evict() naming a key that is not resident */
    write_file(path, "return function(capacity) return {\n"
                     "  insert = function() end, hit = function() end,\n"
                     "  remove = function() end,\n"
                     "  evict = function() return 'nope' end } end\n");
    p = policy_open(path, 5, err, sizeof err);
    CHECK(p != NULL && sim_run(t, p, false, &got, err, sizeof err) < 0);
    CHECK(strstr(err, "\"nope\"") != NULL);
    policy_free(p);

    /* not a policy */
    write_file(path, "return { insert = function() end }\n");
    CHECK(policy_open(path, 5, err, sizeof err) == NULL);
    CHECK(strstr(err, "hit") != NULL);
    write_file(path, "return function(c) error('ctor ' .. c) end\n");
    CHECK(policy_open(path, 5, err, sizeof err) == NULL);
    CHECK(strstr(err, "ctor 5") != NULL);
    write_file(path, "return {\n");
    CHECK(policy_open(path, 5, err, sizeof err) == NULL);
    CHECK(strstr(err, path) != NULL);

    unlink(path);
    unlink(tmp);
    sim_trace_free(t);
}

/* ==== trace parsing ==== */

static void test_parse(void)
{
    static const struct {
        const char *csv, *err; /* err: NULL, or a substring of the message */
    } cases[] = {
        {"timestamp,key,size\n1,a,1\n2,b,3\n3,a,1", NULL},
        {"timestamp,key,size\r\n1,a,1\r\n", NULL},
        {"timestamp,key,size\n", NULL},
        {"", "t.csv:1: expected the header"},
        {"time,key,size\n1,a,1\n", "t.csv:1: expected the header"},
        {"timestamp,key,size\n1,a,1\n2,b\n", "t.csv:3: expected 3 fields"},
        {"timestamp,key,size\n1,a,1,4\n", "t.csv:2: expected 3 fields"},
        {"timestamp,key,size\n1,a,0\n", "t.csv:2: bad size"},
        {"timestamp,key,size\n1,a,x\n", "t.csv:2: bad size"},
        {"timestamp,key,size\n1,a,\n", "t.csv:2: bad size"},
        {"timestamp,key,size\nx,a,1\n", "t.csv:2: bad timestamp"},
        {"timestamp,key,size\n1,,1\n", "t.csv:2: empty key"},
        {"timestamp,key,size\n1,a,1\n\n", "t.csv:3: expected 3 fields"},
        {"timestamp,key,size\n1,a,99999999999999999999\n", "bad size"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[256] = "";
        struct sim_trace *t = sim_trace_parse("t.csv", cases[i].csv,
                                              strlen(cases[i].csv), err,
                                              sizeof err);
        if (cases[i].err == NULL ? t == NULL
                                 : t != NULL || !strstr(err, cases[i].err)) {
            printf("parse case %zu: got %s \"%s\"\n", i,
                   t ? "a trace" : "error", err);
            failures++;
        }
        sim_trace_free(t);
    }
    /* sizes: first-seen per key for the working set, own size per request */
    char err[256];
    const char *csv =
        "timestamp,key,size\n0,a,5\n0,b,7\n0,a,9\n0,01,1\n0,1,1\n";
    struct sim_trace *t = sim_trace_parse("t", csv, strlen(csv), err,
                                          sizeof err);
    CHECK(t != NULL);
    CHECK(sim_trace_wss(t, false) == 4 && sim_trace_wss(t, true) == 14);
    CHECK(sim_capacity(t, true, 50) == 7);
    struct sim_result r;
    struct policy *p = policy_open("lru", 100, err, sizeof err);
    CHECK(sim_run(t, p, true, &r, err, sizeof err) == 0);
    CHECK(r.requests == 5 && r.misses == 4 && r.bytes == 23);
    CHECK(r.missed_bytes == 14);
    policy_free(p);
    sim_trace_free(t);
}

/* ==== exact agreement with libCacheSim (REFERENCE.md) ==== */

enum { LRU, FIFO, CLOCK, SIEVE, S3FIFO, LFU, NPOL };
static const char *const pol_names[NPOL] = {"lru",   "fifo",   "clock",
                                            "sieve", "s3fifo", "lfu"};
static const double pcts[4] = {1, 5, 10, 25};

struct ref_table {
    const char *file;
    bool bytes;
    uint64_t requests, total_bytes;
    uint64_t cap[4];
    uint64_t misses[NPOL][4];
    uint64_t missed_bytes[NPOL][4]; /* byte mode only */
};

static const struct ref_table refs[] = {
    {"cloudphysics_io.csv", false, 113872, 113872,
     {489, 2448, 4897, 12243},
     {[LRU] = {95420, 93897, 91657, 76538},
      [FIFO] = {96518, 94122, 91716, 77971},
      [CLOCK] = {95332, 93829, 91599, 77041},
      [SIEVE] = {94419, 93052, 90040, 75430},
      [S3FIFO] = {94559, 91396, 85691, 74318},
      [LFU] = {96765, 93052, 90040, 75430}},
     {{0}}},
    {"cloudphysics_io.csv", true, 113872, 4368040448ull,
     {20297697, 101488486, 202976972, 507442432},
     {[LRU] = {94956, 93700, 92200, 81987},
      [FIFO] = {95293, 93741, 91954, 84091},
      [CLOCK] = {94828, 93652, 92082, 81672},
      [SIEVE] = {93724, 92328, 89993, 76934},
      [S3FIFO] = {93706, 91452, 83764, 76771},
      [LFU] = {93724, 92328, 89993, 76934}},
     {[LRU] = {4280799744ull, 4232581120ull, 4157572608ull, 3677807104ull},
      [FIFO] = {4282329600ull, 4231242240ull, 4153497088ull, 3811942912ull},
      [CLOCK] = {4279953408ull, 4232501248ull, 4158443008ull, 3664963072ull},
      [SIEVE] = {4270392832ull, 4196807680ull, 4060649472ull, 3469850112ull},
      [S3FIFO] = {4265741824ull, 4140668416ull, 3764903936ull, 3288591872ull},
      [LFU] = {4270392832ull, 4196807680ull, 4060649472ull, 3469850112ull}}},
    {"arc_oltp.csv", false, 914145, 914145,
     {1868, 9344, 18688, 46720},
     {[LRU] = {533560, 364938, 306044, 244382},
      [FIFO] = {579696, 396697, 335108, 267892},
      [CLOCK] = {528605, 361957, 302970, 241374},
      [SIEVE] = {545815, 365744, 304774, 240221},
      [S3FIFO] = {489386, 346329, 294563, 240640},
      [LFU] = {752915, 607109, 506796, 326972}},
     {{0}}},
    {"sieve_zipf1.0.csv", false, 1000000, 1000000,
     {10, 50, 100, 250},
     {[LRU] = {789421, 540021, 424727, 263046},
      [FIFO] = {817746, 595360, 480197, 312112},
      [CLOCK] = {773770, 524804, 411086, 253729},
      [SIEVE] = {656714, 424960, 328766, 201532},
      [S3FIFO] = {1000000, 432728, 342718, 221459}, /* 1 %: quirk Q1 */
      [LFU] = {648934, 430742, 333935, 212073}},
     {{0}}},
};

/* The reference tables on the traces of TRACES_DIR (a missing trace
 * fails). */
static void test_reference(void)
{
    char dir[4200], path[4400], err[512];
    snprintf(dir, sizeof dir, "%s", TRACES_DIR);
    struct sim_trace *t = NULL;
    const char *loaded = NULL;
    for (size_t i = 0; i < sizeof refs / sizeof *refs; i++) {
        const struct ref_table *ref = &refs[i];
        if (loaded == NULL || strcmp(loaded, ref->file) != 0) {
            sim_trace_free(t);
            snprintf(path, sizeof path, "%s/%s", dir, ref->file);
            t = sim_trace_load(path, err, sizeof err);
            loaded = ref->file;
            if (t == NULL) {
                printf("%s\n", err);
                failures++;
                continue;
            }
        }
        for (int s = 0; s < 4; s++) {
            uint64_t cap = sim_capacity(t, ref->bytes, pcts[s]);
            CHECK(cap == ref->cap[s]);
            for (int k = 0; k < NPOL; k++) {
                struct sim_result r;
                struct policy *p = policy_open(pol_names[k], cap, err,
                                               sizeof err);
                CHECK(sim_run(t, p, ref->bytes, &r, err, sizeof err) == 0);
                policy_free(p);
                bool ok = r.requests == ref->requests &&
                          r.bytes == ref->total_bytes &&
                          r.misses == ref->misses[k][s] &&
                          r.missed_bytes == (ref->bytes
                                                 ? ref->missed_bytes[k][s]
                                                 : ref->misses[k][s]);
                if (!ok) {
                    printf("%s %s %s %g%% (C=%llu): misses %llu (want "
                           "%llu), missed bytes %llu\n",
                           ref->file, ref->bytes ? "bytes" : "objects",
                           pol_names[k], pcts[s], (unsigned long long)cap,
                           (unsigned long long)r.misses,
                           (unsigned long long)ref->misses[k][s],
                           (unsigned long long)r.missed_bytes);
                    failures++;
                }
            }
        }
    }
    sim_trace_free(t);
}

int main(int argc, char **argv)
{
    test_names();
    test_victim_order();
    test_clock();
    test_sieve_hand();
    test_lfu_ties();
    test_remove();
    test_sizes();
    test_s3fifo();
    test_s3fifo_q1();
    test_random_invariants();
    test_lua_policy();
    test_parse();
    test_reference();
    if (failures) {
        printf("%d failure(s)\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
