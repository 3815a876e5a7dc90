/* tagidx.c - tag -> tagged objects (see tagidx.h). */
#include "store/tagidx.h"

#include <stdlib.h>
#include <string.h>

struct tag {
    struct tag *hnext;       /* hash chain */
    struct tag_link *head;   /* its links, newest first */
    size_t nlinks;
    uint64_t h;
    size_t len;
    char name[];
};

static uint64_t hash_tag(const char *p, size_t n)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a 64 */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

void tagidx_init(struct tagidx *ti)
{
    ti->buckets = NULL;
    ti->nbuckets = 0;
    ti->ntags = 0;
}

void tagidx_free(struct tagidx *ti)
{
    for (unsigned i = 0; i < ti->nbuckets; i++)
        for (struct tag *t = ti->buckets[i], *next; t; t = next) {
            next = t->hnext;
            free(t);
        }
    free(ti->buckets);
    tagidx_init(ti);
}

static int grow(struct tagidx *ti)
{
    unsigned n = ti->nbuckets ? ti->nbuckets * 2 : 64;
    struct tag **b = calloc(n, sizeof *b);
    if (b == NULL)
        return -1;
    for (unsigned i = 0; i < ti->nbuckets; i++)
        for (struct tag *t = ti->buckets[i], *next; t; t = next) {
            next = t->hnext;
            t->hnext = b[t->h & (n - 1)];
            b[t->h & (n - 1)] = t;
        }
    free(ti->buckets);
    ti->buckets = b;
    ti->nbuckets = n;
    return 0;
}

static struct tag *find(const struct tagidx *ti, const char *name, size_t n,
                        uint64_t h)
{
    if (ti->nbuckets == 0)
        return NULL;
    struct tag *t = ti->buckets[h & (ti->nbuckets - 1)];
    for (; t; t = t->hnext)
        if (t->h == h && t->len == n && memcmp(t->name, name, n) == 0)
            return t;
    return NULL;
}

int tagidx_link(struct tagidx *ti, struct tag_link *l, const char *name,
                size_t n)
{
    l->tag = NULL;
    if (n == 0 || n > TAG_LEN_MAX)
        return -1;
    uint64_t h = hash_tag(name, n);
    struct tag *t = find(ti, name, n, h);
    if (t == NULL) {
        if (ti->ntags >= ti->nbuckets && grow(ti) < 0 && ti->nbuckets == 0)
            return -1; /* a failed growth keeps the smaller table */
        t = malloc(sizeof *t + n);
        if (t == NULL)
            return -1;
        memcpy(t->name, name, n);
        t->len = n;
        t->h = h;
        t->head = NULL;
        t->nlinks = 0;
        unsigned b = (unsigned)(h & (ti->nbuckets - 1));
        t->hnext = ti->buckets[b];
        ti->buckets[b] = t;
        ti->ntags++;
    }
    l->tag = t;
    l->prev = NULL;
    l->next = t->head;
    if (t->head)
        t->head->prev = l;
    t->head = l;
    t->nlinks++;
    return 0;
}

void tagidx_unlink(struct tagidx *ti, struct tag_link *l)
{
    struct tag *t = l->tag;
    if (t == NULL)
        return;
    if (l->prev)
        l->prev->next = l->next;
    else
        t->head = l->next;
    if (l->next)
        l->next->prev = l->prev;
    l->tag = NULL;
    l->prev = l->next = NULL;
    if (--t->nlinks > 0)
        return;
    struct tag **pp = &ti->buckets[t->h & (ti->nbuckets - 1)];
    while (*pp != t)
        pp = &(*pp)->hnext;
    *pp = t->hnext;
    ti->ntags--;
    free(t);
}

struct tag_link *tagidx_first(const struct tagidx *ti, const char *name,
                              size_t n)
{
    struct tag *t = find(ti, name, n, hash_tag(name, n));
    return t ? t->head : NULL;
}

size_t tagidx_count(const struct tagidx *ti, const char *name, size_t n)
{
    struct tag *t = find(ti, name, n, hash_tag(name, n));
    return t ? t->nlinks : 0;
}

size_t tagidx_link_len(const struct tag_link *l)
{
    return l->tag->len;
}
