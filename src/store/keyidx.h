/* keyidx.h - the store's keys in order (beside the hash index of cache.c),
 * so that every key starting with a prefix is found in O(log n + what is
 * found) rather than by a walk through the whole cache: cache_ban. A
 * red-black tree of libbsd's <bsd/sys/tree.h> (Debian's libbsd-dev, the
 * BSDs' intrusive tree macros), its nodes embedded in what they index:
 * inserting and removing allocate nothing. Keys are byte strings (NUL is
 * a byte like any other), compared as memcmp, then the shorter first; equal
 * keys (variants of one key, later) are kept in the order they came. */
#ifndef LURING_KEYIDX_H
#define LURING_KEYIDX_H

#include <stddef.h>
#include <stdint.h>

/* The tree's links, in the layout RB_ENTRY() gives (keyidx.c asserts it):
 * <bsd/sys/tree.h> stays out of this header, because its cdefs define
 * __unused, a member name in Linux headers. */
struct keyidx_node {
    struct {
        struct keyidx_node *rbe_left, *rbe_right, *rbe_parent;
        int rbe_color;
    } rb;
    const char *key;  /* not owned: the indexed object's key, klen bytes */
    size_t klen;
    uint64_t seq;     /* insertion order: tells equal keys apart (> 0) */
};

struct keyidx_tree { struct keyidx_node *rbh_root; }; /* RB_HEAD()'s shape */

struct keyidx {
    struct keyidx_tree t;
    uint64_t seq;     /* last seq given */
    size_t n;         /* nodes in the tree */
};

/** An empty index (or zero it). */
void keyidx_init(struct keyidx *ki);
/** Link n, whose key/klen the caller set; n's key must stay valid and
 * unchanged until keyidx_remove. O(log n). */
void keyidx_insert(struct keyidx *ki, struct keyidx_node *n);
/** Unlink n (linked by keyidx_insert). O(log n). */
void keyidx_remove(struct keyidx *ki, struct keyidx_node *n);
/** The first node whose key starts with the plen bytes at prefix (plen 0:
 * the first node), or NULL. O(log n) key comparisons. */
struct keyidx_node *keyidx_prefix_first(struct keyidx *ki, const char *prefix,
                                        size_t plen);
/** The node after n in key order if its key still starts with prefix
 * (plen bytes), else NULL. Take it before removing n. */
struct keyidx_node *keyidx_prefix_next(struct keyidx *ki,
                                       struct keyidx_node *n,
                                       const char *prefix, size_t plen);

#endif
