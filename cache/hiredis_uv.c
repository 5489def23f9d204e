/*
 * hiredis_uv.c — hiredis on libuv (see hiredis_uv.h for why not hiredis'
 * adapter).
 *
 * One uv_poll per context watches the events hiredis asked for (p->events);
 * libuv changes the kernel's interest set (epoll_ctl) at the next poll
 * whenever they change.  Writes of a connected context therefore do not
 * wait for a writable event: hiredis' output buffer is written by a
 * uv_prepare right before the loop next blocks, i.e. once per loop
 * iteration for all the commands of that iteration, and UV_WRITABLE is
 * watched only while the socket refuses more (or while connecting).  This
 * saves two epoll_ctl calls per iteration that writes, 15 % of the loop's
 * time during ingest.
 *
 * A command submitted while a flush runs (any context's, on this thread: a
 * failed write's disconnect can make another context send) would miss this
 * iteration's prepare phase, so it waits for UV_WRITABLE instead.
 *
 * Invariant: p->ac is the live context until hiredis calls cleanup, NULL
 * after; the callbacks check it before each handler, because the read
 * handler may free the context (a disconnect) before the write handler
 * would run.  p->events is what the poll watches: libuv stops a poll itself
 * before reporting an error status, so then it is 0 again and the next add
 * starts the poll anew.  The binding's memory goes when both handles are
 * closed.
 */
#include "cache/hiredis_uv.h"

#include <stdlib.h>

#include "common/errors.h"

typedef struct vg_hiredis_uv {
    redisAsyncContext *ac; /* NULL once hiredis cleaned up */
    uv_poll_t handle;
    uv_prepare_t flush;    /* writes the output buffer before the loop blocks */
    int events;            /* what the poll watches */
    int flush_on;          /* flush is started */
    int open;              /* handles not yet closed */
} vg_hiredis_uv_t;

static _Thread_local int flushing; /* inside some binding's flush on this thread */

static void huv_poll(uv_poll_t *h, int status, int events)
{
    vg_hiredis_uv_t *p = h->data;
    int ev = events;
    if (status < 0) { /* libuv has stopped the poll: the handlers meet the error, or re-add */
        ev = p->events;
        p->events = 0;
    }
    if (p->ac && (ev & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac && (ev & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void huv_update(vg_hiredis_uv_t *p, int add, int del)
{
    int events = (p->events | add) & ~del;
    if (events == p->events)
        return;
    p->events = events;
    if (events)
        uv_poll_start(&p->handle, events, huv_poll);
    else
        uv_poll_stop(&p->handle);
}

static void huv_flush(uv_prepare_t *h)
{
    vg_hiredis_uv_t *p = h->data;
    uv_prepare_stop(h);
    p->flush_on = 0;
    if (!p->ac)
        return;
    flushing = 1; /* a write left unfinished asks for UV_WRITABLE (huv_add_write) */
    redisAsyncHandleWrite(p->ac);
    flushing = 0;
}

static void huv_add_write(void *d)
{
    vg_hiredis_uv_t *p = d;
    if (flushing || !(p->ac->c.flags & REDIS_CONNECTED)) { /* socket full, prepare phase, or connecting */
        huv_update(p, UV_WRITABLE, 0);
    } else if (!(p->events & UV_WRITABLE) && !p->flush_on) {
        p->flush_on = 1;
        uv_prepare_start(&p->flush, huv_flush);
    }
}

static void huv_add_read(void *d) { huv_update(d, UV_READABLE, 0); }
static void huv_del_read(void *d) { huv_update(d, 0, UV_READABLE); }
static void huv_del_write(void *d) { huv_update(d, 0, UV_WRITABLE); }

static void huv_closed(uv_handle_t *h)
{
    vg_hiredis_uv_t *p = h->data;
    if (--p->open == 0)
        free(p);
}

static void huv_cleanup(void *d)
{
    vg_hiredis_uv_t *p = d;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->handle, huv_closed);
    uv_close((uv_handle_t *)&p->flush, huv_closed);
}

int vg_hiredis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    vg_hiredis_uv_t *p = calloc(1, sizeof *p);
    if (!p)
        return VG_ENOMEM;
    if (uv_poll_init(loop, &p->handle, ac->c.fd) != 0) {
        free(p);
        return VG_EIO;
    }
    uv_prepare_init(loop, &p->flush); /* cannot fail */
    p->open = 2;
    p->ac = ac;
    p->handle.data = p;
    p->flush.data = p;
    ac->ev.addRead = huv_add_read;
    ac->ev.delRead = huv_del_read;
    ac->ev.addWrite = huv_add_write;
    ac->ev.delWrite = huv_del_write;
    ac->ev.cleanup = huv_cleanup;
    ac->ev.data = p;
    return 0;
}
