/* tagidx.h - the store's tags: a name (from a response's Surrogate-Key or
 * Cache-Tag field, read by core/inval.c) leads to the list of everything
 * tagged with it, so purging a tag costs what it removes, not a walk of
 * the cache. A hash of tags, each the head of an intrusive doubly linked
 * list of links; the tagged thing owns its links (one per tag) and
 * unlinks them when it leaves the index. A tag goes when its list empties. */
#ifndef LURING_TAGIDX_H
#define LURING_TAGIDX_H

#include <stddef.h>
#include <stdint.h>

/* Bounds against hostile origins: tags past the first TAG_MAX of a
 * response are ignored, and so is a tag longer than TAG_LEN_MAX bytes. */
#define TAG_MAX     64
#define TAG_LEN_MAX 256

struct tag;

struct tag_link {
    struct tag *tag;               /* NULL: not linked */
    struct tag_link *prev, *next;  /* the tag's list */
    void *owner;                   /* what is tagged (a cache_obj) */
};

struct tagidx {
    struct tag **buckets;
    unsigned nbuckets;             /* a power of 2, or 0 before first use */
    size_t ntags;                  /* tags with at least one link */
};

void tagidx_init(struct tagidx *ti);
/** Free the tags and buckets: every link must be unlinked before. */
void tagidx_free(struct tagidx *ti);
/** Link l (owner set by the caller) into the list of tag `name` (n bytes,
 * 1..TAG_LEN_MAX), making the tag if new. 0; -1 when out of memory or the
 * name's length is out of bounds (l stays unlinked). O(1) expected. */
int tagidx_link(struct tagidx *ti, struct tag_link *l, const char *name,
                size_t n);
/** Unlink l (nothing if not linked); frees its tag when it was the last
 * link. O(1). */
void tagidx_unlink(struct tagidx *ti, struct tag_link *l);
/** The first link of tag `name`, or NULL when nothing has that tag.
 * Purging: unlink (or have the owner unlink) the first link until NULL. */
struct tag_link *tagidx_first(const struct tagidx *ti, const char *name,
                              size_t n);
/** The length of the name of l's tag (l linked). */
size_t tagidx_link_len(const struct tag_link *l);
/** How many links tag `name` has (0: none). */
size_t tagidx_count(const struct tagidx *ti, const char *name, size_t n);

#endif
