/*
 * hiredis_uv.h — binds a hiredis 0.14 async context to a libuv loop, for the
 * store (cache/store.c).
 *
 * Used instead of <hiredis/adapters/libuv.h>: in 0.14.1 that adapter's poll
 * callback returns on a non-zero status, and libuv reports POLLERR (a
 * refused TCP connect, a reset connection) exactly so — the connection then
 * hangs forever and no reconnect ever happens.  This binding runs hiredis'
 * read/write handlers on an error status too (the fix hiredis 1.x made), so
 * hiredis meets the error itself and tears the connection down.
 *
 * Usage is that of hiredis' own adapters: attach right after
 * redisAsyncConnect*(); from then on hiredis owns the binding and frees it
 * (through its cleanup hook, with the uv_poll closed asynchronously) when it
 * frees the context.  Loop thread only.
 */
#ifndef VG_CACHE_HIREDIS_UV_H
#define VG_CACHE_HIREDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

/* Attaches ac (connecting, ac->c.fd valid) to loop.  Returns 0, VG_ENOMEM,
 * or VG_EIO (uv_poll_init failed); on error nothing is attached and ac is
 * the caller's to free. */
int vg_hiredis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
