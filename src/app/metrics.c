/* metrics.c - process-wide Prometheus metrics (see metrics.h). */
#include <lua.h>
#include <pthread.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/metrics.h"
#include "base/buf.h"
#include "base/clock.h"
#include "core/origin.h"
#include "core/req.h"
#include "lua/rt.h"
#include "store/cache.h"
#include "store/shdict.h"

/* Histogram bucket bounds, µs (Prometheus `le` in seconds); +Inf after. */
static const int64_t bounds_us[] = {500,    1000,   2500,    5000,   10000,
                                    25000,  50000,  100000,  250000, 500000,
                                    1000000, 2500000, 5000000, 10000000};
#define NB (sizeof bounds_us / sizeof bounds_us[0])

struct hist {
    uint64_t b[NB + 1]; /* per bucket (not cumulative); [NB]: above all */
    uint64_t count;
    int64_t sum_us;
};

struct counts {
    uint64_t cls[6]; /* by status class: [1]..[5] = 1xx..5xx, [0] other */
    struct hist req, up;
    uint64_t accepted, reloads_ok, reloads_failed;
};

struct mcache {
    char name[64];
    struct cache_stats st;
    size_t bytes, objects, max_bytes, held;
    bool shared;          /* one store for every worker */
};

struct morigin {
    char name[64];
    struct origin_stats st;
    uint64_t idle;
};

struct wmetrics {
    unsigned worker;
    bool on;
    struct counts live;      /* its worker's only */
    pthread_mutex_t mu;      /* guards what follows */
    struct counts snap;
    uint64_t open, lua_errors;
    struct mcache *caches;
    unsigned ncaches, ccap;
    struct morigin *origins;
    unsigned norigins, ocap;
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct wmetrics *reg[256];
static unsigned nreg;

struct wmetrics *metrics_new(unsigned worker)
{
    struct wmetrics *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->worker = worker;
    pthread_mutex_init(&m->mu, NULL);
    pthread_mutex_lock(&reg_mu);
    if (nreg < sizeof reg / sizeof reg[0])
        reg[nreg++] = m;
    pthread_mutex_unlock(&reg_mu);
    return m;
}

void metrics_free(struct wmetrics *m)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&reg_mu);
    for (unsigned i = 0; i < nreg; i++)
        if (reg[i] == m) {
            reg[i] = reg[--nreg];
            break;
        }
    pthread_mutex_unlock(&reg_mu);
    pthread_mutex_destroy(&m->mu);
    free(m->caches);
    free(m->origins);
    free(m);
}

void metrics_configure(struct wmetrics *m, struct lua_State *L)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    lua_getfield(L, -1, "luring");
    lua_getfield(L, -1, "_metrics");
    m->on = lua_toboolean(L, -1);
    lua_pop(L, 4);
}

bool metrics_on(const struct wmetrics *m) { return m && m->on; }

static void observe(struct hist *h, int64_t us)
{
    if (us < 0)
        us = 0;
    unsigned i = 0;
    while (i < NB && us > bounds_us[i])
        i++;
    h->b[i]++;
    h->count++;
    h->sum_us += us;
}

void metrics_request(struct wmetrics *m, const struct req *r)
{
    if (!m->on)
        return;
    /* as the access log: 499 when the client left before a head */
    int status = r->m.c == NULL && !r->m.head_sent ? 499 : r->m.status;
    int cls = status / 100;
    m->live.cls[cls >= 1 && cls <= 5 ? cls : 0]++;
    if (r->log.start_us > 0)
        observe(&m->live.req, clock_us() - r->log.start_us);
    /* every fetch this request made, failed ones too (refused, timed out:
     * no status, but the time they cost), as the access log's
     * upstream_time_us */
    if (r->log.up_time_us >= 0)
        observe(&m->live.up, r->log.up_time_us);
}

void metrics_accepted(struct wmetrics *m)
{
    if (m && m->on)
        m->live.accepted++;
}

void metrics_reload(struct wmetrics *m, bool ok)
{
    if (m == NULL)
        return;
    if (ok)
        m->live.reloads_ok++;
    else
        m->live.reloads_failed++;
}

void metrics_publish(struct wmetrics *m, const struct lrt *rt, unsigned open)
{
    pthread_mutex_lock(&m->mu);
    m->snap = m->live;
    m->open = open;
    m->lua_errors = rt->lua_errors;
    if (rt->ncaches > m->ccap) {
        struct mcache *c = realloc(m->caches, rt->ncaches * sizeof *c);
        if (c) {
            m->caches = c;
            m->ccap = rt->ncaches;
        }
    }
    m->ncaches = 0;
    for (unsigned i = 0; i < rt->ncaches && i < m->ccap; i++) {
        const struct cache *c = rt->caches[i];
        struct mcache *mc = &m->caches[m->ncaches++];
        snprintf(mc->name, sizeof mc->name, "%s", c->name);
        /* a shared cache: this worker's counters, the others add theirs;
         * its usage once (every worker has the same) */
        mc->st = *CACHE_ST(c);
        mc->shared = c->shared;
        /* under the cache's lock: a reload on another worker may be
         * changing max_bytes (ThreadSanitizer found this read racing) */
        cache_usage((struct cache *)c, &mc->bytes, &mc->objects, &mc->held,
                    &mc->max_bytes);
    }
    /* the declared origins, then the pools luring.http made */
    const struct origin *made[LHTTP_POOLS_MAX];
    unsigned nmade = lorigin_http_origins(rt, made, LHTTP_POOLS_MAX);
    if (nmade > LHTTP_POOLS_MAX)
        nmade = LHTTP_POOLS_MAX;
    unsigned want = rt->norigins + nmade;
    if (want > m->ocap) {
        struct morigin *o = realloc(m->origins, want * sizeof *o);
        if (o) {
            m->origins = o;
            m->ocap = want;
        }
    }
    m->norigins = 0;
    for (unsigned i = 0; i < want && m->norigins < m->ocap; i++) {
        const struct origin *o = i < rt->norigins ? rt->origins[i]
                                                  : made[i - rt->norigins];
        struct morigin *mo = &m->origins[m->norigins++];
        snprintf(mo->name, sizeof mo->name, "%s", o->name);
        mo->st = o->st;
        mo->idle = o->nidle;
    }
    pthread_mutex_unlock(&m->mu);
}

/* ==== rendering ==== */

static int put(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int put(struct buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->data ? b->data + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0)
            return -1;
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return 0;
        }
        if (buf_reserve(b, (size_t)n + 1) < 0)
            return -1;
    }
}

/* A label value as the text format wants it: \ " and newline escaped. */
static void label(char *dst, size_t n, const char *src)
{
    size_t j = 0;
    for (; *src && j + 3 < n; src++) {
        if (*src == '\\' || *src == '"') {
            dst[j++] = '\\';
            dst[j++] = *src;
        } else if (*src == '\n') {
            dst[j++] = '\\';
            dst[j++] = 'n';
        } else {
            dst[j++] = *src;
        }
    }
    dst[j] = 0;
}

static void hist_add(struct hist *to, const struct hist *h)
{
    for (unsigned i = 0; i <= NB; i++)
        to->b[i] += h->b[i];
    to->count += h->count;
    to->sum_us += h->sum_us;
}

static int put_hist(struct buf *b, const char *name, const char *help,
                    const struct hist *h)
{
    int rc = put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (unsigned i = 0; i < NB; i++) {
        cum += h->b[i];
        /* as the official clients write bounds: 0.5, 1.0, 10.0 */
        char le[32];
        snprintf(le, sizeof le, "%g", (double)bounds_us[i] / 1e6);
        if (!strpbrk(le, ".e"))
            strcat(le, ".0");
        rc |= put(b, "%s_bucket{le=\"%s\"} %llu\n", name, le,
                  (unsigned long long)cum);
    }
    cum += h->b[NB];
    rc |= put(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n",
              name, (unsigned long long)cum, name, (double)h->sum_us / 1e6,
              name, (unsigned long long)h->count);
    return rc;
}

/* The caches (or origins) of every worker, merged by name. */
struct agg {
    struct mcache *c;
    unsigned nc, ccap;
    struct morigin *o;
    unsigned no, ocap;
};

static struct mcache *agg_cache(struct agg *a, const char *name)
{
    for (unsigned i = 0; i < a->nc; i++)
        if (!strcmp(a->c[i].name, name))
            return &a->c[i];
    if (a->nc == a->ccap) {
        unsigned n = a->ccap ? a->ccap * 2 : 8;
        struct mcache *c = realloc(a->c, n * sizeof *c);
        if (c == NULL)
            return NULL;
        a->c = c;
        a->ccap = n;
    }
    struct mcache *c = &a->c[a->nc++];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    return c;
}

static struct morigin *agg_origin(struct agg *a, const char *name)
{
    for (unsigned i = 0; i < a->no; i++)
        if (!strcmp(a->o[i].name, name))
            return &a->o[i];
    if (a->no == a->ocap) {
        unsigned n = a->ocap ? a->ocap * 2 : 8;
        struct morigin *o = realloc(a->o, n * sizeof *o);
        if (o == NULL)
            return NULL;
        a->o = o;
        a->ocap = n;
    }
    struct morigin *o = &a->o[a->no++];
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    return o;
}

/* Shared dictionaries (luring.shared_dict{}): one store per process,
 * read under each one's lock at the scrape. */
static const char *shd_gauges[][2] = {
    {"luring_shdict_bytes", "Bytes a shared dictionary accounts for "
                            "(keys, values, per-entry overhead)."},
    {"luring_shdict_entries", "Entries of a shared dictionary (expired "
                              "ones not yet removed included)."},
    {"luring_shdict_capacity_bytes", "A shared dictionary's size."},
};

struct shd_put {
    struct buf *b;
    unsigned g;
    int rc;
};

static void put_shdict(void *ud, const char *name,
                       const struct shdict_stats *st)
{
    struct shd_put *p = ud;
    char lv[200];
    label(lv, sizeof lv, name);
    size_t v = p->g == 0 ? st->used : p->g == 1 ? st->entries : st->capacity;
    p->rc |= put(p->b, "%s{dict=\"%s\"} %zu\n", shd_gauges[p->g][0], lv, v);
}

static int put_shdicts(struct buf *b)
{
    struct shd_put p = {.b = b};
    for (p.g = 0; p.g < 3; p.g++) {
        p.rc |= put(b, "# HELP %s %s\n# TYPE %s gauge\n", shd_gauges[p.g][0],
                    shd_gauges[p.g][1], shd_gauges[p.g][0]);
        shdict_each(put_shdict, &p);
    }
    return p.rc;
}

int metrics_render(struct buf *b)
{
    struct counts t = {0};
    uint64_t open = 0, lua_errors = 0;
    struct agg a = {0};
    int rc = 0;
    unsigned nworkers;
    pthread_mutex_lock(&reg_mu);
    nworkers = nreg;
    for (unsigned w = 0; w < nreg; w++) {
        struct wmetrics *m = reg[w];
        pthread_mutex_lock(&m->mu);
        for (unsigned i = 0; i < 6; i++)
            t.cls[i] += m->snap.cls[i];
        hist_add(&t.req, &m->snap.req);
        hist_add(&t.up, &m->snap.up);
        t.accepted += m->snap.accepted;
        if (m->worker == 0) { /* every worker reloads: count one's */
            t.reloads_ok = m->snap.reloads_ok;
            t.reloads_failed = m->snap.reloads_failed;
        }
        open += m->open;
        lua_errors += m->lua_errors;
        for (unsigned i = 0; i < m->ncaches; i++) {
            const struct mcache *s = &m->caches[i];
            struct mcache *c = agg_cache(&a, s->name);
            if (c == NULL) {
                rc = -1;
                continue;
            }
#define ADD(f) c->st.f += s->st.f
            ADD(hits); ADD(misses); ADD(coalesced); ADD(fills);
            ADD(fill_errors); ADD(evictions); ADD(expired);
            ADD(uncacheable); ADD(hit_for_miss); ADD(released);
            ADD(passes); ADD(not_modified); ADD(partial); ADD(stale);
            ADD(refreshes); ADD(revalidated); ADD(locks); ADD(lock_waits);
#undef ADD
            if (s->shared) { /* one store: every worker says the same */
                c->bytes = s->bytes;
                c->objects = s->objects;
                c->max_bytes = s->max_bytes;
                c->held = s->held;
            } else {
                c->bytes += s->bytes;
                c->objects += s->objects;
                c->max_bytes += s->max_bytes;
                c->held += s->held;
            }
        }
        for (unsigned i = 0; i < m->norigins; i++) {
            const struct morigin *s = &m->origins[i];
            struct morigin *o = agg_origin(&a, s->name);
            if (o == NULL) {
                rc = -1;
                continue;
            }
            o->st.requests += s->st.requests;
            o->st.errors += s->st.errors;
            o->st.timeouts += s->st.timeouts;
            o->st.connects += s->st.connects;
            o->st.reused += s->st.reused;
            o->idle += s->idle;
        }
        pthread_mutex_unlock(&m->mu);
    }
    pthread_mutex_unlock(&reg_mu);

    static const char *cls[] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
    rc |= put(b, "# HELP luring_requests_total Requests answered, by status "
                 "class (4xx includes 499: the client left first).\n"
                 "# TYPE luring_requests_total counter\n");
    for (unsigned i = 1; i <= 6; i++)
        rc |= put(b, "luring_requests_total{code=\"%s\"} %llu\n", cls[i % 6],
                  (unsigned long long)t.cls[i % 6]);
    rc |= put_hist(b, "luring_request_duration_seconds",
                   "From a request's head parsed to its response done.",
                   &t.req);
    rc |= put_hist(b, "luring_origin_duration_seconds",
                   "Origin fetches caused by requests: from the fetch's "
                   "start to its end.",
                   &t.up);
    rc |= put(b,
              "# HELP luring_connections_open Client connections open.\n"
              "# TYPE luring_connections_open gauge\n"
              "luring_connections_open %llu\n"
              "# HELP luring_connections_accepted_total Client connections "
              "accepted.\n"
              "# TYPE luring_connections_accepted_total counter\n"
              "luring_connections_accepted_total %llu\n"
              "# HELP luring_lua_errors_total Handlers that failed (an error "
              "in Lua, a bad response).\n"
              "# TYPE luring_lua_errors_total counter\n"
              "luring_lua_errors_total %llu\n"
              "# HELP luring_reloads_total Script reloads, by result.\n"
              "# TYPE luring_reloads_total counter\n"
              "luring_reloads_total{result=\"ok\"} %llu\n"
              "luring_reloads_total{result=\"failed\"} %llu\n"
              "# HELP luring_workers Worker threads.\n"
              "# TYPE luring_workers gauge\n"
              "luring_workers %u\n",
              (unsigned long long)open, (unsigned long long)t.accepted,
              (unsigned long long)lua_errors,
              (unsigned long long)t.reloads_ok,
              (unsigned long long)t.reloads_failed, nworkers);

    static const struct {
        const char *name, *help;
        size_t off;
    } cc[] = {
#define C(f, h) {"luring_cache_" #f "_total", h, offsetof(struct cache_stats, f)}
        C(hits, "Requests answered from a stored response."),
        C(misses, "Lookups that found nothing to serve."),
        C(coalesced, "Requests that joined a fill in flight."),
        C(stale, "Requests served a stale response (grace, stale-if-error)."),
        C(not_modified, "304s answered from stored responses."),
        C(partial, "206s answered from stored responses."),
        C(hit_for_miss, "Requests that found a hit-for-miss marker."),
        C(passes, "Requests passed to the origin without a lookup."),
        C(released, "Coalesced requests released to fetch on their own."),
        C(fills, "Origin fetches that fill the cache."),
        C(fill_errors, "Fills that failed."),
        C(refreshes, "Refreshes of stale responses started."),
        C(revalidated, "304s from the origin that freshened a response."),
        C(evictions, "Stored responses evicted by the policy."),
        C(expired, "Stored responses dropped once expired."),
        C(uncacheable, "Complete responses the policy did not take."),
        C(locks, "Times a worker took the lock of a cache shared by workers."),
        C(lock_waits, "Of those, times another worker held it (contention)."),
#undef C
    };
    char lv[200];
    for (size_t k = 0; k < sizeof cc / sizeof cc[0]; k++) {
        rc |= put(b, "# HELP %s %s\n# TYPE %s counter\n", cc[k].name,
                  cc[k].help, cc[k].name);
        for (unsigned i = 0; i < a.nc; i++) {
            label(lv, sizeof lv, a.c[i].name);
            uint64_t v;
            memcpy(&v, (const char *)&a.c[i].st + cc[k].off, sizeof v);
            rc |= put(b, "%s{cache=\"%s\"} %llu\n", cc[k].name, lv,
                      (unsigned long long)v);
        }
    }
    static const char *gauges[][2] = {
        {"luring_cache_bytes", "Bytes of stored responses and fills that may be stored (the budget's)."},
        {"luring_cache_objects", "Stored responses."},
        {"luring_cache_max_bytes", "The caches' byte budgets."},
        {"luring_cache_held_bytes", "Bytes of responses no index reaches (not stored, evicted) that readers still hold."},
    };
    for (unsigned g = 0; g < 4; g++) {
        rc |= put(b, "# HELP %s %s\n# TYPE %s gauge\n", gauges[g][0],
                  gauges[g][1], gauges[g][0]);
        for (unsigned i = 0; i < a.nc; i++) {
            label(lv, sizeof lv, a.c[i].name);
            uint64_t v = g == 0 ? a.c[i].bytes
                       : g == 1 ? a.c[i].objects
                       : g == 2 ? a.c[i].max_bytes
                                : a.c[i].held;
            rc |= put(b, "%s{cache=\"%s\"} %llu\n", gauges[g][0], lv,
                      (unsigned long long)v);
        }
    }
    static const struct {
        const char *name, *help;
        size_t off;
    } oc[] = {
#define O(f, n, h) {"luring_origin_" n "_total", h, offsetof(struct origin_stats, f)}
        O(requests, "requests", "Requests sent to the origin."),
        O(errors, "errors", "Origin requests that failed."),
        O(timeouts, "timeouts", "Origin requests that timed out."),
        O(connects, "connects", "Connections opened to the origin."),
        O(reused, "connections_reused",
          "Requests sent on a pooled (kept-alive) connection."),
#undef O
    };
    for (size_t k = 0; k < sizeof oc / sizeof oc[0]; k++) {
        rc |= put(b, "# HELP %s %s\n# TYPE %s counter\n", oc[k].name,
                  oc[k].help, oc[k].name);
        for (unsigned i = 0; i < a.no; i++) {
            label(lv, sizeof lv, a.o[i].name);
            uint64_t v;
            memcpy(&v, (const char *)&a.o[i].st + oc[k].off, sizeof v);
            rc |= put(b, "%s{origin=\"%s\"} %llu\n", oc[k].name, lv,
                      (unsigned long long)v);
        }
    }
    rc |= put(b, "# HELP luring_origin_idle_connections Pooled idle "
                 "connections.\n# TYPE luring_origin_idle_connections "
                 "gauge\n");
    for (unsigned i = 0; i < a.no; i++) {
        label(lv, sizeof lv, a.o[i].name);
        rc |= put(b, "luring_origin_idle_connections{origin=\"%s\"} %llu\n",
                  lv, (unsigned long long)a.o[i].idle);
    }
    rc |= put_shdicts(b);
    free(a.c);
    free(a.o);
    return rc ? -1 : 0;
}
