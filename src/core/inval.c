/* inval.c - tags and Location keys for invalidation (see inval.h). */
#include "core/inval.h"
#include "base/log.h"
#include "http/fields.h"
#include "store/cache.h"

#include <string.h>
#include <strings.h>

#define NAME_IS(n, nl, lit) field_name_is(n, nl, lit, sizeof(lit) - 1)

static bool is_tag_sep(char ch)
{
    return ch == ' ' || ch == '\t' || ch == ',';
}

/* Add the tags of one field value v (n bytes) to t[0..*k). */
static void split_tags(const char *v, size_t n, struct cache_tag *t,
                       unsigned *k)
{
    size_t i = 0;
    while (i < n && *k < TAG_MAX) {
        while (i < n && is_tag_sep(v[i]))
            i++;
        size_t s = i;
        while (i < n && !is_tag_sep(v[i]))
            i++;
        size_t len = i - s;
        if (len == 0 || len > TAG_LEN_MAX)
            continue;
        bool dup = false; /* TAG_MAX^2 compares at worst: 4096 */
        for (unsigned j = 0; j < *k && !dup; j++)
            dup = t[j].n == len && memcmp(t[j].p, v + s, len) == 0;
        if (!dup)
            t[(*k)++] = (struct cache_tag){ v + s, len };
    }
}

unsigned inval_read_tags(const struct cache_obj *o, struct cache_tag *t)
{
    const char *th = o->cache->tag_header;
    size_t thl = strlen(th);
    size_t i = 0;
    struct field_line f;
    unsigned k = 0;
    while (k < TAG_MAX && field_line_next(o->hdrs.data, o->hdrs.len, &i, &f)) {
        bool want = thl ? field_name_is(f.name, f.nlen, th, thl)
                        : NAME_IS(f.name, f.nlen, "surrogate-key") ||
                              NAME_IS(f.name, f.nlen, "cache-tag");
        if (want)
            split_tags(f.value, f.vlen, t, &k);
    }
    return k;
}

void inval_tag_obj(struct cache_obj *o)
{
    struct cache_tag t[TAG_MAX];
    unsigned n = inval_read_tags(o, t);
    if (n > 0 && cache_obj_set_tags(o, t, n) < 0)
        log_warn("cache %s: out of memory for the tags of %s: stored "
                 "untagged", o->cache->name, o->key);
}

static bool authority_is(const char *a, size_t al, const char *host,
                         size_t hl)
{
    return al == hl && al > 0 && memchr(a, '@', al) == NULL &&
           strncasecmp(a, host, al) == 0;
}

bool inval_uri_key(const char *key, size_t baselen, const char *host,
                   size_t hl, const char *uri, size_t ulen, struct buf *out)
{
    out->len = 0;
    const char *hash = memchr(uri, '#', ulen);
    if (hash)
        ulen = (size_t)(hash - uri);
    while (ulen > 0 && (uri[ulen - 1] == ' ' || uri[ulen - 1] == '\t'))
        ulen--;
    const char *p = uri, *end = uri + ulen;
    if (ulen >= 7 && strncasecmp(p, "http://", 7) == 0)
        p += 5; /* to the "//" */
    else if (ulen >= 8 && strncasecmp(p, "https://", 8) == 0)
        p += 6;
    if (end - p >= 2 && p[0] == '/' && p[1] == '/') { /* an authority */
        const char *a = p + 2, *e = a;
        while (e < end && *e != '/' && *e != '?')
            e++;
        if (!authority_is(a, (size_t)(e - a), host, hl))
            return false; /* another host's: not ours to invalidate */
        p = e;
    } else if (p != uri || ulen == 0 || uri[0] != '/') {
        return false; /* a relative reference, or another scheme */
    }
    bool slash = p == end || *p == '?'; /* "http://h" or "http://h?q" */
    if (buf_reserve(out, baselen + 1 + (size_t)(end - p)) < 0)
        return false;
    buf_append(out, key, baselen);
    if (slash)
        buf_append(out, "/", 1);
    buf_append(out, p, (size_t)(end - p));
    return true;
}
