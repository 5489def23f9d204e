/*
 * hiredis_uv.c — hiredis on libuv (see hiredis_uv.h for why not hiredis'
 * adapter).
 *
 * One uv_poll per context watches the events hiredis asked for (p->events).
 * Invariant: p->ac is the live context until hiredis calls cleanup, NULL
 * after; the poll callback checks it before each handler, because the read
 * handler may free the context (a disconnect) before the write handler
 * would run.  The binding's memory goes in the poll handle's close callback.
 */
#include "cache/hiredis_uv.h"

#include <stdlib.h>

#include "common/errors.h"

typedef struct vg_hiredis_uv {
    redisAsyncContext *ac; /* NULL once hiredis cleaned up */
    uv_poll_t handle;
    int events;
} vg_hiredis_uv_t;

static void huv_poll(uv_poll_t *h, int status, int events)
{
    vg_hiredis_uv_t *p = h->data;
    int ev = status ? p->events : events;
    if (p->ac && (ev & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac && (ev & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void huv_update(vg_hiredis_uv_t *p, int add, int del)
{
    p->events = (p->events | add) & ~del;
    if (p->events)
        uv_poll_start(&p->handle, p->events, huv_poll);
    else
        uv_poll_stop(&p->handle);
}

static void huv_add_read(void *d) { huv_update(d, UV_READABLE, 0); }
static void huv_del_read(void *d) { huv_update(d, 0, UV_READABLE); }
static void huv_add_write(void *d) { huv_update(d, UV_WRITABLE, 0); }
static void huv_del_write(void *d) { huv_update(d, 0, UV_WRITABLE); }
static void huv_closed(uv_handle_t *h) { free(h->data); }

static void huv_cleanup(void *d)
{
    vg_hiredis_uv_t *p = d;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->handle, huv_closed);
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
    p->ac = ac;
    p->handle.data = p;
    ac->ev.addRead = huv_add_read;
    ac->ev.delRead = huv_del_read;
    ac->ev.addWrite = huv_add_write;
    ac->ev.delWrite = huv_del_write;
    ac->ev.cleanup = huv_cleanup;
    ac->ev.data = p;
    return 0;
}
