/* shdict.h - shared dictionaries: key -> value stores shared by every
 * worker thread of the process (luring.shared_dict{}, the shape of
 * OpenResty's lua_shared_dict). A hash table plus an LRU list under one
 * mutex per dictionary: each operation is atomic. Memory is accounted as
 * key + value + SHDICT_ENTRY_OVERHEAD bytes per entry against the
 * dictionary's capacity; a store that does not fit evicts the least
 * recently used entries (or, for the "safe" variants, only expired ones).
 * The store reads no clock: times are monotonic µs given by the caller.
 * Dictionaries are made once per name (shdict_bind) and live until
 * shdict_free_all at exit. */
#ifndef LURING_SHDICT_H
#define LURING_SHDICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

#define SHDICT_NAME_MAX 64       /* a name's bytes, NUL included */
#define SHDICT_KEY_MAX 65535     /* a key's bytes */
/* Bytes counted for an entry besides its key and value: the entry's
 * header, its hash bucket slot and the allocator's own header. */
#define SHDICT_ENTRY_OVERHEAD 80

struct shdict;

enum shdict_type {
    SHDICT_NIL,  /* no value: a store of it deletes */
    SHDICT_STR,  /* bytes: str, len */
    SHDICT_NUM,  /* a double: num */
    SHDICT_BOOL, /* num 0 or 1 */
};

/* A value as stored or read. On a read, str points into the caller's
 * buffer (valid until that buffer changes). */
struct shdict_val {
    enum shdict_type type;
    const char *str;
    size_t len;
    double num;
    uint32_t flags; /* the user's flags, kept with the value */
};

/* shdict_store's mode: flags. */
enum {
    SHDICT_ADD = 1,     /* fail (-EEXIST) when the key holds a live value */
    SHDICT_REPLACE = 2, /* fail (-ENOENT) unless the key holds a live value */
    SHDICT_SAFE = 4,    /* never evict a live entry to make room (-ENOMEM) */
};

struct shdict_stats {
    size_t capacity; /* bytes */
    size_t used;     /* bytes accounted (expired entries not yet gone too) */
    size_t entries;
};

/* ==== one dictionary ==== */

/** A dictionary not in the registry (tests; shdict_bind uses it), of
 * capacity bytes (> 0). NULL when out of memory. */
struct shdict *shdict_new(const char *name, size_t capacity);
/** Free d and every entry (nobody may use it any more). */
void shdict_free(struct shdict *d);
/** Bytes an entry of klen + vlen bytes counts for. */
size_t shdict_entry_cost(size_t klen, size_t vlen);

/** Store v under key (1..SHDICT_KEY_MAX bytes) for ttl_us µs from now_us
 * (0: no expiry), as mode says. A SHDICT_NIL value deletes the key (after
 * mode's checks). *forcible (may be NULL) is set when live entries were
 * evicted to make room. 0; -EEXIST (SHDICT_ADD), -ENOENT (SHDICT_REPLACE),
 * -ENOMEM: the entry is larger than the capacity, SHDICT_SAFE found no
 * room, or malloc failed (the old value, if any, stays). */
int shdict_store(struct shdict *d, const char *key, size_t klen,
                 const struct shdict_val *v, int64_t ttl_us, unsigned mode,
                 int64_t now_us, bool *forcible);
/** Read key's value into *out: a string is copied into copy (reset first).
 * A live entry becomes the most recently used. With stale, an expired
 * entry not yet removed is read too, and *expired (may be NULL) says
 * which. 0; -ENOENT (absent, or expired without stale); -ENOMEM (copy). */
int shdict_get(struct shdict *d, const char *key, size_t klen,
               int64_t now_us, bool stale, struct shdict_val *out,
               struct buf *copy, bool *expired);
/** Add n to key's number: *out is the new value. When key holds no live
 * value and init is not NULL, it becomes *init + n with an expiry of
 * init_ttl_us (0: none), *forcible as shdict_store says. 0; -ENOENT (no
 * live value, no init); -EINVAL (the value is not a number); -ENOMEM. An
 * existing entry keeps its expiry. */
int shdict_incr(struct shdict *d, const char *key, size_t klen, double n,
                const double *init, int64_t init_ttl_us, int64_t now_us,
                double *out, bool *forcible);
/** Remove key (live or not). 0, or -ENOENT when it was absent. */
int shdict_delete(struct shdict *d, const char *key, size_t klen);
/** Key's remaining life in µs (*ttl_us >= 1), 0 when it never expires.
 * 0, or -ENOENT (absent or expired). */
int shdict_ttl(struct shdict *d, const char *key, size_t klen,
               int64_t now_us, int64_t *ttl_us);
/** Key expires ttl_us µs after now_us (0: never). 0, or -ENOENT. */
int shdict_expire(struct shdict *d, const char *key, size_t klen,
                  int64_t ttl_us, int64_t now_us);
/** Remove every entry. */
void shdict_flush_all(struct shdict *d);
/** Remove up to max expired entries (0: all); how many went. */
size_t shdict_flush_expired(struct shdict *d, int64_t now_us, size_t max);
/** Append up to max live keys (0: all), most recently used first, to out
 * as (uint16_t length, bytes) records. How many, or -1 (out of memory:
 * out holds a prefix). */
long shdict_keys(struct shdict *d, int64_t now_us, size_t max,
                 struct buf *out);
/** Change the capacity; a smaller one evicts the least recently used
 * entries until the rest fit. */
void shdict_resize(struct shdict *d, size_t capacity);
void shdict_stats(struct shdict *d, struct shdict_stats *st);
const char *shdict_name(const struct shdict *d);

/* ==== the process's dictionaries, by name ==== */

/** The dictionary called name (1..SHDICT_NAME_MAX-1 bytes), made with
 * capacity bytes on first use; a later call with another capacity
 * resizes it (logged). Any thread. NULL with a sentence in err when out
 * of memory or the name is not allowed. */
struct shdict *shdict_bind(const char *name, size_t capacity, char *err,
                           size_t errlen);
/** fn(ud, name, stats) for every dictionary, in creation order (the
 * registry is locked meanwhile: fn must not bind). */
void shdict_each(void (*fn)(void *ud, const char *name,
                            const struct shdict_stats *st),
                 void *ud);
/** Free every dictionary (at exit, once no thread uses them). */
void shdict_free_all(void);

#endif
