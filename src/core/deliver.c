/* deliver.c - sending cache objects to requests. A request subscribes to an
 * object (hit, in-flight fill, or a fill it started) and receives the body
 * from the object's own chunks (no copies) as far as it is filled, never
 * more than OUT_HIGH queued at once: a slow client holds object memory,
 * never a growing buffer of its own. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/clock.h"
#include "base/num.h"
#include "core/cond.h"
#include "core/deliver.h"
#include "core/req.h"
#include "core/vary.h"
#include "http/h1_server.h"
#include "io/outq.h"
#include "store/cache.h"


/* The access log's upstream figures for the request whose fetch made o
 * (a miss, a pass, a revalidation): taken when it leaves o. */
static void log_upstream(struct req *r, const struct cache_obj *o)
{
    if (!r->sub_owner || o->up_start_us == 0 || r->log.start_us == 0)
        return;
    r->log.up_status = o->up_status;
    if (o->up_head_us)
        r->log.up_head_us = o->up_head_us - o->up_start_us;
    int64_t end = o->up_end_us ? o->up_end_us : clock_us();
    r->log.up_time_us = end - o->up_start_us;
}

/* r leaves its object, whose reference it returns: o, for the caller to
 * drop (unlink_sub) or to hand on (sub_give). */
static struct cache_obj *unlink_sub_keep(struct req *r)
{
    struct cache_obj *o = r->obj;
    log_upstream(r, o);
    if (r->sub_watch)
        cache_obj_unwatch(o, &r->sub);
    r->obj = NULL;
    if (r->parts)
        cond_free(r);
    return o;
}

static void unlink_sub(struct req *r)
{
    cache_obj_unref(unlink_sub_keep(r));
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
    req_wake(r); /* unless cache:fetch is still on the stack: it returns */
}

/* sub_done for the last n bytes at p of r's complete object o: queued
 * with the subscription's reference, which their send's completion drops.
 * Everything r needs of o is read before: a send that cannot happen
 * (HEAD, a closed connection) drops the reference at once. */
static void sub_give(struct req *r, struct cache_obj *o, const char *p,
                     size_t n)
{
    unlink_sub_keep(r);
    r->obj_off += n;
    http_body(&r->m, p, n, cache_obj_release, o, 0);
    req_wake(r);
}

/* Age (RFC 9111 §5.1) for a response from a stored object: how long it
 * has been in this cache plus its corrected initial age (§4.2.3), whole
 * seconds. The owner of a fill gets one only when the origin said the
 * response was already old (Age on a response the origin generated for
 * this very request would claim otherwise); every other request gets it,
 * "Age: 0" included. Passes forward the origin's Age as it came. */
static void put_age(struct req *r, const struct cache_obj *o)
{
    if (o->stream || !cache_obj_head_known(o) ||
        (r->sub_owner && o->init_age <= 0))
        return;
    int64_t ms = loop_now(r->m.srv->loop) - o->born;
    char line[32] = "Age: ";
    size_t n = 5 + num_put_dec(line + 5, ms > 0 ? (uint64_t)ms / 1000 : 0);
    line[n++] = '\r';
    line[n++] = '\n';
    http_head_raw(&r->m, line, n);
}

/* Queue o's head for r: false when r's deliver hook failed (nothing
 * queued). */
static bool send_head(struct req *r, struct cache_obj *o)
{
    int64_t len = cache_obj_state(o) == OBJ_COMPLETE
                      ? (int64_t)cache_obj_filled(o) : o->total;
    if (o->head_only) /* a passed HEAD: what the origin said (RFC 9110 §9.3.2) */
        len = o->head_cl;
    if (r->sub_fill && r->xcache && (o->stale_sub || o->revalidated))
        r->xcache = o->stale_sub ? "STALE" : "REVALIDATED"; /* a refresh */
    int status = o->status;
    /* a stored response: 200, 206, 304, 412 or 416. A request without
     * If-* or Range (h1_parse_head noted none) gets the stored status
     * (cond_note read the head before it was published). */
    if (r->cond && r->m.pre_seen)
        status = cond_decide(r, o, &len);
    /* a status of cond.c's making (206, 304, 412, 416) has fields of its
     * own; otherwise the stored lines go as they are. The origin's Date
     * is among them (and among a 304's and a 206's), else luring's. */
    bool own = status != o->status;
    bool made = status == 412 || status == 416; /* luring's own answer */
    http_head_begin_at(&r->m, status, !o->has_date || made);
    if (!r->deliver_hook) {
        if (own)
            cond_fields(r, o, status, NULL);
        else
            http_head_raw(&r->m, o->hdrs.data, o->hdrs.len);
        if (!made)
            put_age(r, o);
        if (r->xcache)
            http_head_add(&r->m, "X-Cache", 7, r->xcache, strlen(r->xcache));
    } else if (!own) {
        if (r->pool->deliver(r, status, o->hdrs.data, o->hdrs.len,
                             r->xcache) < 0)
            return false;
        put_age(r, o);
    } else { /* the hook sees the fields this response has */
        struct buf f = { 0 };
        int e = cond_fields(r, o, status, &f);
        if (e == 0)
            e = r->pool->deliver(r, status, f.data, f.len, r->xcache);
        buf_free(&f);
        if (e < 0)
            return false;
        if (!made)
            put_age(r, o);
    }
    http_head_end(&r->m, len);
    if (made || r->parts) /* a body of its own, or a part's head first */
        cond_body_begin(r, status);
    return true;
}

/* Queue what r can take of its slices of o (a range, the parts of a
 * multipart body, or nothing: 304, 412, 416): only the bytes they need,
 * waiting for the fill only as far as they reach. */
static void pump_slices(struct req *r, struct cache_obj *o)
{
    struct conn *c = r->m.c;
    for (;;) {
        size_t filled = cache_obj_filled(o);
        size_t lim = r->obj_end < filled ? r->obj_end : filled;
        while (r->obj_off < lim && outq_pending(&c->out) < OUT_HIGH &&
               c->state < CS_CLOSED) {
            size_t n;
            const char *p = cache_obj_at(o, r->obj_off, &n);
            if (n > lim - r->obj_off)
                n = lim - r->obj_off;
            cache_obj_ref(o); /* released when the send covering it completes */
            http_body(&r->m, p, n, cache_obj_release, o, 0);
            r->obj_off += n;
        }
        if (r->obj_off < r->obj_end)
            break; /* waits for bytes, or for room */
        if (r->parts == NULL || !cond_next_part(r)) {
            sub_done(r, true); /* all queued; the fill may go on */
            return;
        }
    }
    if (cache_obj_state(o) == OBJ_FAILED)
        sub_done(r, false);
}

void serve_error(struct req *r, int status)
{
    const char *reason = http_reason(status);
    size_t n = strlen(reason);
    http_head_begin(&r->m, status);
    http_head_add(&r->m, "Content-Type", 12, "text/plain", 10);
    http_head_end(&r->m, (int64_t)n + 1);
    http_body(&r->m, reason, n, NULL, NULL, 0);
    http_body(&r->m, "\n", 1, NULL, NULL, 0);
}

/* Queue what the request can take now; finish the subscription when the
 * whole object is queued or the fill failed. */
void serve_pump(struct req *r)
{
    struct cache_obj *o = r->obj;
    struct conn *c = r->m.c;
    if (o == NULL || c == NULL)
        return;
    if (!r->m.head_sent) {
        if (!cache_obj_head_known(o)) {
            if (cache_obj_state(o) == OBJ_FAILED) {
                serve_error(r, o->status ? o->status : 502);
                sub_done(r, true); /* a complete (error) response */
            }
            return;
        }
        if (!send_head(r, o)) { /* the script's deliver hook failed */
            serve_error(r, 500);
            sub_done(r, true);
            return;
        }
    }
    if (r->obj_end != SIZE_MAX) {
        pump_slices(r, o);
        return;
    }
    /* the last bytes of a complete object take the subscription's own
     * reference with them (sub_give): one reference taken and dropped
     * per delivery of a small object, not two (each one a write to a
     * cache line every worker's hits share) */
    bool last_gives = cache_obj_state(o) == OBJ_COMPLETE && !o->stream &&
                      !r->collect;
    size_t filled = cache_obj_filled(o); /* final when complete */
    while (r->obj_off < cache_obj_filled(o) &&
           outq_pending(&c->out) < OUT_HIGH && c->state < CS_CLOSED) {
        size_t n;
        const char *p = cache_obj_at(o, r->obj_off, &n);
        if (last_gives && r->obj_off + n == filled) {
            sub_give(r, o, p, n);
            return;
        }
        cache_obj_ref(o); /* released when the send covering it completes */
        /* a stream object frees each chunk once its sends are done */
        http_body(&r->m, p, n, cache_obj_release, o,
                  o->stream ? CACHE_SEG(r->obj_off / CACHE_CHUNK, n) : 0);
        r->obj_off += n;
    }
    if (o->stream)
        cache_obj_read(o, r->obj_off); /* may let a paused fill go on */
    if (cache_obj_state(o) == OBJ_FAILED)
        sub_done(r, false); /* never served as complete: the caller closes */
    else if (cache_obj_state(o) == OBJ_COMPLETE && r->obj_off == cache_obj_filled(o))
        sub_done(r, true);
}

static void on_obj_change(struct store_waiter *sw);

void serve_subscribe(struct req *r, struct cache_obj *o, const char *xcache,
                     bool owner)
{
    cache_obj_ref(o);
    r->obj = o;
    r->obj_off = 0;
    r->obj_end = SIZE_MAX;
    /* cache:fetch's HIT, COALESCED and MISS name themselves: their object
     * is a stored response, which answers the request's conditionals and
     * Range (its fill did not send them). A pass (a stream object, its
     * X-Cache set later) or origin:fetch (NULL) relays the origin's. */
    r->cond = xcache != NULL && !o->stream;
    r->xcache = xcache;
    r->sub_owner = owner;
    r->sub_fill = cache_obj_state(o) == OBJ_FILLING;
    r->sub.notify = on_obj_change;
    /* a complete object never changes (a 304 or a refresh makes a new
     * one): watching it would only cost two trips through a shared
     * cache's lock per hit */
    r->sub_watch = cache_obj_state(o) != OBJ_COMPLETE;
    if (r->sub_watch)
        cache_obj_watch(o, &r->sub);
    if (!o->cache->shared) /* else the caller, out of the cache's lock */
        serve_pump(r);
}

void serve_unsubscribe(struct req *r)
{
    if (r->obj)
        unlink_sub(r);
}

/* store_waiter: r's object changed (head, bytes, done, failed). A response
 * that may not go to anyone but the request that caused the fetch (RFC
 * 9111 §3) reaches only that one: every other subscriber joined while the
 * head was unknown and has received nothing yet, and is released to fetch
 * on its own once this completion is handled (req_defer). So is one whose
 * request does not match the response's Vary (RFC 9111 §4.1). */
static void on_obj_change(struct store_waiter *sw)
{
    struct req *r = (struct req *)((char *)sw - offsetof(struct req, sub));
    struct cache_obj *o = r->obj;
    if (cache_obj_head_known(o) && !r->sub_owner &&
        (!o->shareable || !vary_match(o, &r->m))) {
        /* read before unlink_sub drops r's ref: for a shared cache's
         * object, nobody else may hold one (store/wake.h runs r here
         * with no ref of its own) */
        struct cache *c = o->cache;
        r->relookup = o->shareable; /* another variant: look up again */
        unlink_sub(r);
        CACHE_COUNT(c, released);
        r->released = true;
        req_defer(r);
    } else if (r->collect) {
        if (cache_obj_state(o) != OBJ_FILLING)
            sub_done(r, cache_obj_state(o) == OBJ_COMPLETE);
    } else if (r->deliver_hook) {
        /* the script's hook runs once this completion is handled, not
         * inside the fill (serve_pump from req_pool.on_deferred): a hook
         * that fails unsubscribes, which ends a pass-through's fill */
        req_defer(r);
    } else {
        serve_pump(r);
    }
}
