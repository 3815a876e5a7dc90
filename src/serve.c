/* serve.c - sending cache objects to requests. A request subscribes to an
 * object (hit, in-flight fill, or a fill it started) and receives the body
 * from the object's own chunks (no copies) as far as it is filled, never
 * more than OUT_HIGH queued at once: a slow client holds object memory,
 * never a growing buffer of its own. */
#include <string.h>

#include "cache.h"
#include "server.h"

#define OUT_HIGH (256 * 1024)

static void unlink_sub(struct req *r)
{
    struct cache_obj *o = r->obj;
    for (struct req **pp = &o->subs; *pp; pp = &(*pp)->next_sub)
        if (*pp == r) {
            *pp = r->next_sub;
            break;
        }
    r->next_sub = NULL;
    r->obj = NULL;
    cache_obj_unref(o);
}

/* The subscription is over: the response is queued (ok) or broken. */
static void sub_done(struct req *r, bool ok)
{
    if (r->collect) {
        r->collected = r->obj;
        cache_obj_ref(r->obj);
    }
    unlink_sub(r);
    if (!ok)
        r->broken = true;
    if (r->wait == RW_CACHE)
        lrt_resume(r);
    /* else: cache:fetch is still on the stack and returns by itself */
}

static void send_head(struct req *r, struct cache_obj *o)
{
    int64_t len = o->state == OBJ_COMPLETE ? (int64_t)o->len : o->total;
    http_head_begin(r, o->status);
    http_head_raw(r, o->hdrs.data, o->hdrs.len);
    if (r->xcache)
        http_head_add(r, "X-Cache", 7, r->xcache, strlen(r->xcache));
    http_head_end(r, len);
}

void serve_error(struct req *r, int status)
{
    const char *reason = http_reason(status);
    size_t n = strlen(reason);
    http_head_begin(r, status);
    http_head_add(r, "Content-Type", 12, "text/plain", 10);
    http_head_end(r, (int64_t)n + 1);
    http_body(r, reason, n, NULL, NULL, 0);
    http_body(r, "\n", 1, NULL, NULL, 0);
}

/* Queue what the request can take now; finish the subscription when the
 * whole object is queued or the fill failed. */
void serve_pump(struct req *r)
{
    struct cache_obj *o = r->obj;
    struct conn *c = r->c;
    if (o == NULL || c == NULL)
        return;
    if (!r->head_sent) {
        if (!o->head_ready) {
            if (o->state == OBJ_FAILED) {
                serve_error(r, o->status ? o->status : 502);
                sub_done(r, true); /* a complete (error) response */
            }
            return;
        }
        send_head(r, o);
    }
    while (r->obj_off < o->len && outq_pending(c) < OUT_HIGH &&
           c->state < CS_CLOSED) {
        size_t n;
        const char *p = cache_obj_at(o, r->obj_off, &n);
        cache_obj_ref(o); /* released when the send covering it completes */
        http_body(r, p, n, cache_obj_release, o, 0);
        r->obj_off += n;
    }
    if (o->state == OBJ_FAILED)
        sub_done(r, false); /* never served as complete: the caller closes */
    else if (o->state == OBJ_COMPLETE && r->obj_off == o->len)
        sub_done(r, true);
}

void serve_subscribe(struct req *r, struct cache_obj *o, const char *xcache,
                     bool owner)
{
    cache_obj_ref(o);
    r->obj = o;
    r->obj_off = 0;
    r->xcache = xcache;
    r->sub_owner = owner;
    r->next_sub = o->subs;
    o->subs = r;
    serve_pump(r);
}

void serve_unsubscribe(struct req *r)
{
    if (r->obj)
        unlink_sub(r);
}

/* The fill's response may not go to anyone but the request that caused it
 * (RFC 9111 §3): every other subscriber joined while the head was unknown
 * and has received nothing yet. Each is released to fetch on its own, once
 * this completion is handled (worker_defer). */
static void release_joiners(struct cache_obj *o)
{
    struct req *r = o->subs, *next;
    for (; r; r = next) {
        next = r->next_sub;
        if (r->sub_owner)
            continue;
        unlink_sub(r);
        o->cache->st.released++;
        r->released = true;
        worker_defer(r);
    }
}

void serve_obj_event(struct cache_obj *o)
{
    cache_obj_ref(o); /* the last subscriber may drop the last ref */
    if (o->head_ready && !o->shareable)
        release_joiners(o);
    struct req *r = o->subs, *next;
    for (; r; r = next) {
        next = r->next_sub;
        if (r->collect) {
            if (o->state != OBJ_FILLING)
                sub_done(r, o->state == OBJ_COMPLETE);
        } else {
            serve_pump(r);
        }
    }
    cache_obj_unref(o);
}
