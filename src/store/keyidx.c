/* keyidx.c - the store's ordered key index (see keyidx.h), a red-black
 * tree from libbsd's <bsd/sys/tree.h>. */
#include "store/keyidx.h"

#include <stdbool.h>
#include <string.h>
/* RB_GENERATE_STATIC marks its functions __unused, which libbsd's cdefs
 * leaves undefined (a member name in Linux headers): this file's alone */
#ifndef __unused
#define __unused __attribute__((__unused__))
#endif
#include <bsd/sys/tree.h>

/* the header's node links must be what RB_ENTRY() makes */
struct rb_shape { RB_ENTRY(keyidx_node) rb; };
_Static_assert(sizeof(((struct keyidx_node *)0)->rb) == sizeof(struct rb_shape),
               "keyidx_node.rb is not an RB_ENTRY");
_Static_assert(offsetof(struct keyidx_node, rb.rbe_color) ==
                   offsetof(struct rb_shape, rb.rbe_color),
               "keyidx_node.rb is not an RB_ENTRY");

/* memcmp order, the shorter of two keys where one starts the other first,
 * then insertion order (a probe has seq 0: before every equal key) */
static int node_cmp(struct keyidx_node *a, struct keyidx_node *b)
{
    size_t n = a->klen < b->klen ? a->klen : b->klen;
    int d = n ? memcmp(a->key, b->key, n) : 0;
    if (d != 0)
        return d;
    if (a->klen != b->klen)
        return a->klen < b->klen ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

RB_GENERATE_STATIC(keyidx_tree, keyidx_node, rb, node_cmp)

void keyidx_init(struct keyidx *ki)
{
    RB_INIT(&ki->t);
    ki->seq = 0;
    ki->n = 0;
}

void keyidx_insert(struct keyidx *ki, struct keyidx_node *n)
{
    n->seq = ++ki->seq;
    RB_INSERT(keyidx_tree, &ki->t, n); /* never equal: seq is unique */
    ki->n++;
}

void keyidx_remove(struct keyidx *ki, struct keyidx_node *n)
{
    RB_REMOVE(keyidx_tree, &ki->t, n);
    ki->n--;
}

static bool has_prefix(const struct keyidx_node *n, const char *p, size_t pl)
{
    return n->klen >= pl && (pl == 0 || memcmp(n->key, p, pl) == 0);
}

struct keyidx_node *keyidx_prefix_first(struct keyidx *ki, const char *prefix,
                                        size_t plen)
{
    /* the least key >= prefix: every key starting with prefix is >= it,
     * and they follow each other from there */
    struct keyidx_node probe = { .key = prefix, .klen = plen, .seq = 0 };
    struct keyidx_node *n = RB_NFIND(keyidx_tree, &ki->t, &probe);
    return n && has_prefix(n, prefix, plen) ? n : NULL;
}

struct keyidx_node *keyidx_prefix_next(struct keyidx *ki,
                                       struct keyidx_node *n,
                                       const char *prefix, size_t plen)
{
    (void)ki;
    n = RB_NEXT(keyidx_tree, &ki->t, n);
    return n && has_prefix(n, prefix, plen) ? n : NULL;
}
