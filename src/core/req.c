/* req.c - the request pool and the deferred list (see req.h). */
#include "core/req.h"

#include <stdlib.h>

#include "base/clock.h"

static struct req_pool *pool_of(struct req *r) { return r->pool; }

struct req *req_get(struct req_pool *p)
{
    struct req *r = p->free;
    if (r) {
        p->free = r->next_free;
    } else {
        if (ptrs_reserve(&p->reqs, p->n) < 0)
            return NULL;
        r = calloc(1, sizeof *r);
        if (r == NULL)
            return NULL;
        r->idx = p->n;
        r->w = p->w;
        r->pool = p;
        r->co_ref = REQ_NO_REF;
        p->reqs[p->n++] = r;
    }
    h1_msg_reset(&r->m);
    r->id = p->id_next;
    /* the low 56 bits count up and wrap within them (never into the
     * worker's top 8 bits): unique in the process for 2^56 requests */
    p->id_next = (p->id_next & ~(((uint64_t)1 << 56) - 1)) |
                 ((p->id_next + 1) & (((uint64_t)1 << 56) - 1));
    /* the log's record is reset either way: a reload may turn the log on
     * while this request runs */
    r->log.start_us = p->done ? clock_us() : 0;
    r->log.up_status = 0;
    r->log.up_head_us = r->log.up_time_us = -1;
    r->log.addr[0] = 0;
    r->op = NULL;
    r->running = r->aborted = false;
    r->broken = false;
    r->obj = NULL;
    r->obj_off = 0;
    r->xcache = NULL;
    r->sub_owner = r->released = false;
    r->collect = false;
    r->deliver_hook = false;
    r->collected = NULL;
    r->sub.next = NULL;
    return r;
}

struct req *req_at(const struct req_pool *p, uint32_t idx)
{
    return idx < p->n ? p->reqs[idx] : NULL;
}

/* The deferred list is intrusive (no allocation that could fail) and a
 * request leaves it when it is freed (req_put). */
static void undefer(struct req_pool *p, struct req *r)
{
    if (!r->deferred)
        return;
    *(r->def_prev ? &r->def_prev->def_next : &p->deferred) = r->def_next;
    *(r->def_next ? &r->def_next->def_prev : &p->deferred_tail) = r->def_prev;
    r->def_prev = r->def_next = NULL;
    r->deferred = false;
}

void req_put(struct req *r)
{
    struct req_pool *p = pool_of(r);
    if (p->done)
        p->done(r);
    undefer(p, r);
    r->gen = (r->gen + 1) & GEN_MASK;
    r->m.c = NULL;
    r->running = false;
    h1_msg_trim(&r->m);
    buf_reset(&r->fetch_kp, 4096);
    r->next_free = p->free;
    p->free = r;
}

void req_defer(struct req *r)
{
    struct req_pool *p = pool_of(r);
    if (r->deferred)
        return;
    r->deferred = true;
    r->def_next = NULL;
    r->def_prev = p->deferred_tail;
    *(p->deferred_tail ? &p->deferred_tail->def_next : &p->deferred) = r;
    p->deferred_tail = r;
}

void req_run_deferred(struct req_pool *p)
{
    struct req *r;
    while ((r = p->deferred) != NULL) {
        undefer(p, r);
        p->on_deferred(r);
    }
}

void req_park(struct req *r, const struct req_op *op) { r->op = op; }

bool req_parked(const struct req *r) { return r->op != NULL; }

bool req_parked_on(const struct req *r, const struct req_op *op)
{
    return r->op == op;
}

/* The handler is abandoned: its coroutine dropped, the slot freed. */
static void drop(struct req *r)
{
    r->op = NULL;
    r->pool->drop(r);
    r->running = false;
    req_put(r);
}

void req_wake(struct req *r)
{
    const struct req_op *op = r->op;
    if (op == NULL)
        return;
    if (r->aborted) {
        drop(r); /* the completion a cancelled operation still owed */
        return;
    }
    r->op = NULL;
    op->resume(r);
}

void req_writable(struct req *r)
{
    if (r->op && r->op->writable)
        r->op->writable(r);
}

void req_abort(struct req *r)
{
    if (!r->running) {
        req_put(r);
    } else if (r->op == NULL) {
        /* closed from inside the running handler: it finishes there and
         * sees r->m.c == NULL */
    } else if (r->op->cancel(r)) {
        drop(r);
    } else {
        r->aborted = true; /* freed when the cancelled op completes */
    }
}

void req_pool_free(struct req_pool *p, void (*each)(struct req *r))
{
    for (unsigned i = 0; i < p->n; i++) {
        struct req *r = p->reqs[i];
        each(r);
        h1_msg_free(&r->m);
        buf_free(&r->fetch_kp);
        free(r);
    }
    free(p->reqs);
    p->reqs = NULL;
    p->n = 0;
}
