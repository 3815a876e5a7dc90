/* metrics.h - process-wide metrics in the Prometheus text format
 * (luring.metrics(), docs/API.md "Metrics"). Each worker counts its own
 * requests (by status class, with latency histograms), connections, Lua
 * errors and reloads, and publishes them, with its caches' and origins'
 * counters, into a snapshot under its own mutex on every tick (100 ms) and
 * before it renders a scrape; a scrape sums the snapshots of every worker
 * (so a figure from another worker is at most a tick old). The counting
 * happens on the worker alone, with no atomic operation; nothing is
 * counted while no script mounted the endpoint. */
#ifndef LURING_METRICS_H
#define LURING_METRICS_H

#include <stdbool.h>
#include <stdint.h>

struct buf;
struct req;
struct lrt;

struct wmetrics;

/** A worker's metrics, registered for scrapes (every worker's are summed).
 * NULL when out of memory. */
struct wmetrics *metrics_new(unsigned worker);
/** Unregister and free (after the worker stopped). */
void metrics_free(struct wmetrics *m);
struct lua_State;
/** Counting on when the script state L called luring.metrics() (it set
 * luring._metrics), off otherwise (a load, a reload). */
void metrics_configure(struct wmetrics *m, struct lua_State *L);
bool metrics_on(const struct wmetrics *m);
/** r is over (req_pool.done): its status class, its time since its head
 * was parsed (r->log.start_us) and, when it caused an origin fetch, that
 * fetch's time (r->log.up_time_us). */
void metrics_request(struct wmetrics *m, const struct req *r);
/** A connection was accepted / a reload ended (ok or not). */
void metrics_accepted(struct wmetrics *m);
void metrics_reload(struct wmetrics *m, bool ok);
/** Copy the worker's counters, `open` connections and rt's (its caches,
 * origins, failed handlers: rt->lua_errors) into its snapshot (the
 * worker's thread only). */
void metrics_publish(struct wmetrics *m, const struct lrt *rt, unsigned open);
/** Append the process-wide text exposition (version 0.0.4) to out: every
 * registered worker's snapshot, summed; caches and origins by name. 0, or
 * -1 when out of memory. Any worker's thread. */
int metrics_render(struct buf *out);

#endif
