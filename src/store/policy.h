/* policy.h - cache eviction policies behind one node-based interface, shared
 * by the object cache and the trace simulator (`luring sim`). The cache owns
 * its objects and embeds a struct policy_node in each; the policy only links
 * nodes into its own queues and says which one to evict next.
 *
 * Built-ins: lru, fifo, clock, sieve, s3fifo, lfu, each reproducing
 * libCacheSim's rules exactly (shared/traces/REFERENCE.md §3), plus policies
 * written in Lua (policy_lua_new).
 *
 * Protocol for one request (libCacheSim's cache_get_base):
 *
 *     if (resident)  policy_hit(p, n);
 *     else {
 *         policy_miss(p, n);                  // n: key and size set, unlinked
 *         if (policy_can_insert(p, n->size)) {
 *             while (policy_full(p, n->size))
 *                 free_object(policy_evict(p));
 *             cached = policy_insert(p, n);  // false: declined after all
 *         }
 *     }
 *
 * and policy_remove(p, n) when an object leaves for another reason (TTL,
 * purge). Every call is O(1) except where the algorithm itself scans: the
 * CLOCK and SIEVE hands and S3-FIFO's reinsertions inside policy_evict. */
#ifndef LURING_POLICY_H
#define LURING_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Per-object policy state, embedded in the cache's object. The cache sets
 * `key` and `size` before policy_miss/policy_insert and must not change them
 * while the node is linked; every other field belongs to the policy. */
struct policy_node {
    struct policy_node *prev; /* queue neighbour toward the head (newer) */
    struct policy_node *next; /* queue neighbour toward the tail (older) */
    void *aux;                /* lfu: its frequency bucket */
    uint64_t key;             /* key id; names the object in ghost lists */
    uint64_t size;            /* in the cache's unit (bytes, or 1) */
    uint32_t freq;            /* clock/sieve: visited bit; s3fifo, lfu: count */
    uint8_t queue;            /* which of the policy's queues holds it */
    uint8_t ghost_hit;        /* s3fifo: set by policy_miss, read by insert */
};

struct policy;

/** A policy implementation. Optional members may be NULL. */
struct policy_ops {
    const char *name;
    /** A new empty policy for `capacity` units; NULL when out of memory. */
    struct policy *(*create)(uint64_t capacity);
    void (*destroy)(struct policy *p);
    /** Optional: the policy's own size limit (s3fifo: size <= 10 % of C). */
    bool (*can_insert)(struct policy *p, uint64_t size);
    /** Optional: a lookup missed n (not linked yet). */
    void (*miss)(struct policy *p, struct policy_node *n);
    /** Link n; false when the policy declines it after all (s3fifo Q1). */
    bool (*insert)(struct policy *p, struct policy_node *n);
    void (*hit)(struct policy *p, struct policy_node *n);
    void (*remove)(struct policy *p, struct policy_node *n);
    /** Unlink and return one victim; NULL only when empty or failed. */
    struct policy_node *(*evict)(struct policy *p);
};

/** The state every policy starts with (implementations embed it first).
 * `used` and `count` are kept by the policy_* wrappers below. */
struct policy {
    const struct policy_ops *ops;
    uint64_t capacity; /* in the cache's unit */
    uint64_t used;     /* sum of the sizes of the linked nodes */
    uint64_t count;    /* number of linked nodes */
    char err[256];     /* first error ("" while fine); see policy_error */
};

/** The built-in ops named `name` ("lru", "fifo", "clock", "sieve", "s3fifo",
 * "lfu"; case-insensitive), or NULL. */
const struct policy_ops *policy_by_name(const char *name);
/** Comma-separated names of the built-ins, for messages. */
const char *policy_names(void);

/** A new empty policy of `capacity` units; NULL when out of memory. */
struct policy *policy_new(const struct policy_ops *ops, uint64_t capacity);
/** A policy defined by the Lua file at `path`, which returns a table of
 * functions insert(key, size), hit(key, size), evict() -> key, remove(key)
 * and optionally miss(key, size), or a function(capacity) returning such a
 * table. Keys are 16-hex-digit strings of the node's key id. NULL with a
 * message in err when the file cannot be loaded or is not a policy. */
struct policy *policy_lua_new(const char *path, uint64_t capacity, char *err,
                              size_t errlen);
/** policy_lua_new when `spec` ends in ".lua", else the built-in of that
 * name. NULL with a message in err. */
struct policy *policy_open(const char *spec, uint64_t capacity, char *err,
                           size_t errlen);
/** Frees the policy, not the nodes (unlink or forget them first). */
void policy_free(struct policy *p);

/** A lookup missed: call on every miss, before policy_can_insert, with n's
 * key and size set (size may be 0 if not known yet). s3fifo consumes a
 * ghost entry here and records the verdict in n for policy_insert; as it
 * travels with n, other misses may come in between (an origin fetch). */
void policy_miss(struct policy *p, struct policy_node *n);
/** Whether an object of `size` may be cached at all (size <= capacity and
 * the policy's own limit). When false, evict nothing and do not insert. */
bool policy_can_insert(const struct policy *p, uint64_t size);
/** Whether inserting `size` more units needs an eviction first. */
bool policy_full(const struct policy *p, uint64_t size);
/** Link n (not linked; key and size set; policy_miss already called).
 * false: the policy declined n after all and n stays unlinked; only s3fifo
 * does this, for size == s (libCacheSim quirk Q1, after the evictions). */
bool policy_insert(struct policy *p, struct policy_node *n);
/** n, linked, was requested again. */
void policy_hit(struct policy *p, struct policy_node *n);
/** Unlink n (linked) without counting it as an eviction. */
void policy_remove(struct policy *p, struct policy_node *n);
/** Unlink and return the next victim; the caller frees its object. NULL
 * when nothing is linked or the policy failed (see policy_error). */
struct policy_node *policy_evict(struct policy *p);
/** The policy's first error (a Lua policy raised, or broke the protocol),
 * or NULL. Built-ins never fail: out of memory, an LFU hit goes uncounted
 * and an S3-FIFO ghost unrecorded. */
const char *policy_error(const struct policy *p);

struct lua_State;
/** What the embedder does around Lua policies (callbacks filled at start-up:
 * lua/lbudget.c, so that a policy function is held to the same CPU budget
 * as the script; NULL in `luring sim`). */
struct policy_lua_guard {
    /** Before each call into the policy's state; returns what leave needs. */
    struct lua_State *(*enter)(struct lua_State *L);
    void (*leave)(struct lua_State *L, struct lua_State *prev);
    /** A policy state was created (before its file runs): JIT setting. */
    void (*opened)(struct lua_State *L);
};
extern const struct policy_lua_guard *policy_lua_guard;

#endif
