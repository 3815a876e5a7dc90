/* inval.h - what invalidation reads from HTTP (RFC 9111 §4.4): the tags a
 * stored response names (Surrogate-Key, Cache-Tag, or the cache's
 * tag_header), and the cache key of a Location or Content-Location URI
 * for an unsafe request that succeeded. The store removes (store/cache.h
 * cache_purge_key, cache_ban, cache_purge_tag); lua/l_inval.c decides when. */
#ifndef LURING_INVAL_H
#define LURING_INVAL_H

#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"
#include "store/tagidx.h"

struct cache_obj;
struct cache_tag;

/** Read the tags of o's response from its stored fields (o->hdrs): the
 * values of the cache's tag_header field, or of Surrogate-Key and
 * Cache-Tag when it is "", split at spaces, tabs and commas (so both
 * Fastly's space-separated and Cloudflare's comma-separated lists work);
 * duplicates once; tags above TAG_LEN_MAX bytes and those after the first
 * TAG_MAX skipped. Fills t (TAG_MAX entries, pointing into o->hdrs) and
 * returns how many. */
unsigned inval_read_tags(const struct cache_obj *o, struct cache_tag *t);

/** After a fetch's head: index o (indexed, to be stored) under its tags
 * (cache_obj_set_tags). Out of memory: o is stored untagged (logged). */
void inval_tag_obj(struct cache_obj *o);

/** The cache key of `uri` (a Location or Content-Location value, ulen
 * bytes) for a request to `host` (hl bytes) whose key's first baselen
 * bytes came before its target (key = base + target: examples/proxy.lua's
 * host .. path .. query): base + the URI's path and query, when the URI
 * is on the same host (RFC 9111 §4.4): an absolute path ("/a?b"), or an
 * absolute URI ("http://host/a", "https:", "//host/a") whose authority is
 * the request's Host exactly (case-insensitive; no userinfo; a port must
 * be written the same way). A fragment is dropped. A relative reference
 * ("a/b", "../x") and any other form give false (not resolved: nothing
 * invalidated). The key goes in out (reset first); false when out of
 * memory too. */
bool inval_uri_key(const char *key, size_t baselen, const char *host,
                   size_t hl, const char *uri, size_t ulen, struct buf *out);

#endif
