/* sim.h - trace-replay simulator behind `luring sim`: replays a
 * `timestamp,key,size` CSV through a policy (policy.h) with libCacheSim's
 * request rules (shared/traces/REFERENCE.md §2) and counts the misses. */
#ifndef LURING_SIM_H
#define LURING_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "store/policy.h"

struct sim_trace;

/* Every request counts; misses include objects too large to cache. Byte
 * sums use each request's size (1 in object mode). */
struct sim_result {
    uint64_t requests, misses;
    uint64_t bytes, missed_bytes;
};

/** Loads and checks a whole CSV trace (header `timestamp,key,size`).
 * NULL with "path:line: reason" (or the open error) in err. Free with
 * sim_trace_free. */
struct sim_trace *sim_trace_load(const char *path, char *err, size_t errlen);
/** The same from `len` bytes at `csv` (copied); `name` prefixes messages. */
struct sim_trace *sim_trace_parse(const char *name, const char *csv,
                                  size_t len, char *err, size_t errlen);
void sim_trace_free(struct sim_trace *t);

/** Working set: distinct keys (bytes false) or the sum of each key's
 * first-seen size (bytes true). */
uint64_t sim_trace_wss(const struct sim_trace *t, bool bytes);
/** libCacheSim's fractional size: (uint64)(WSS x percent / 100) in double. */
uint64_t sim_capacity(const struct sim_trace *t, bool bytes, double percent);

/** Replays the whole trace through p, a fresh policy whose capacity is in
 * objects (bytes false: every size counts as 1) or bytes. p is left holding
 * nodes owned by t: free p before the next run on t. 0, or -1 with the
 * policy's error in err (Lua policies). */
int sim_run(struct sim_trace *t, struct policy *p, bool bytes,
            struct sim_result *res, char *err, size_t errlen);

/** `luring sim ...` with argv[0] = "sim"; the process exit code. */
int sim_main(int argc, char **argv);

#endif
