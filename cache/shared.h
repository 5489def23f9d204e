/*
 * shared.h — what several vaegand share through the store's Redis (docs:
 * README "Running several vaegand"): the leader's fencing epoch, and fenced,
 * versioned blobs (the leader's model snapshots and checkpoints) kept in
 * chunks behind a manifest.
 *
 * Keys (<p> = the store's prefix; the same form on one server and on a
 * Redis Cluster):
 *   <p>vaegan:{leader}:epoch               a counter: INCR by each new leader
 *   <p>vaegan:{leader}:manifest:<name>     hash: the current and the previous
 *                                          version of blob <name>
 *   <p>vaegan:blob:{<stem>:<i>}         chunk i of a version, whose stem
 *                                          is <name>:<epoch>:<version>:<nonce>
 * The counter and the manifests share the slot of the tag {leader}, so one
 * script reads the one and writes the other on a cluster too; the chunks
 * spread over every slot.
 *
 * The manifest's fields: epoch, version, bytes, chunks, chunk_size, crc
 * (zlib's CRC-32 of the whole blob), stem, and the same with "prev." for
 * the previous version.  The nonce (hex, unique per publication) keeps a
 * refused publication of a version the manifest names (the same one twice)
 * from writing over that version's chunks.
 *
 * Publishing (vg_shared_publish): the chunks are SET with a TTL, at most
 * SH_WINDOW chunks in flight; then one script accepts the manifest update
 * only if the caller's epoch is the counter's value (else VG_EFENCED: a
 * newer leader took over) and its (epoch, version) is newer than the
 * manifest's current one (else VG_ESTALE).  It makes the current version
 * the previous one and evicts the one before.  Then the chunks of the new
 * and the previous version are PERSISTed and the evicted version's are
 * deleted.  A refused publication deletes its chunks; one cut short (the
 * leader died) leaves chunks that expire with their TTL.  A leader that
 * dies between the script and PERSIST leaves a current version whose chunks
 * expire unless the next leader publishes within the TTL; readers then fall
 * back to the previous version, which was PERSISTed before.  Writing the
 * chunks must take less than half their TTL: a slower publication (Redis
 * paused or overloaded) is refused before the script (its first chunks
 * could expire before PERSIST) and deletes its chunks.
 *
 * Reading (vg_shared_fetch): the manifest, then the chunks of its current
 * version; the length of each chunk and the CRC of the whole are checked,
 * and a missing chunk or a bad CRC makes the previous version the answer.
 *
 * The manifest script is idempotent (a re-sent one answers as the first),
 * so a reconnect cannot turn an accepted publication into a refused one.
 *
 * Invariants: a manifest's (epoch, version) only grows, and only the holder
 * of the counter's current value moves it; a version's chunks are all
 * written before a manifest names it; every chunk a manifest names is
 * PERSISTed or about to be.  Epochs and versions stay below 2^53 (Lua reads
 * them as doubles).
 *
 * Every call returns 0 (its callback fires exactly once, also with
 * VG_EAGAIN when vg_store_close_cancel() ends the store first) or an error
 * (no callback).  The owner of a store with calls of this file pending
 * closes it with vg_store_close_cancel(), which lets them free their state.
 */
#ifndef VG_CACHE_SHARED_H
#define VG_CACHE_SHARED_H

#include <stddef.h>
#include <stdint.h>

#include "cache/store.h"

#define VG_SHARED_NAME_MAX 64 /* a blob's name: 1..64 of [A-Za-z0-9_.-] */

/* Just under 1 MiB: a string of 1 MiB exactly, with its header, takes
 * jemalloc's 1.25 MiB size class in Redis (vaegan-bench-shared: a 131.7 MB
 * snapshot held 164.6 MB in 1 MiB chunks, 131.8 MB in these). */
#define VG_SHARED_CHUNK_DEFAULT (((size_t)1 << 20) - 64)

/* INCR <p>vaegan:{leader}:epoch: cb(ud, status, epoch) with status 0 and the
 * new epoch (>= 1), or VG_EREDIS / VG_EAGAIN (epoch 0).  Returns 0 or
 * VG_ENOMEM. */
typedef void (*vg_shared_epoch_cb)(void *ud, int status, uint64_t epoch);
int vg_shared_take_epoch(vg_store_t *s, vg_shared_epoch_cb cb, void *ud);

/* A version of a blob as its manifest describes it. */
typedef struct vg_shared_blob {
    uint64_t epoch, version;
    uint64_t bytes;
    uint32_t crc;
} vg_shared_blob_t;

typedef struct vg_shared_put {
    const char *name;   /* the blob's name */
    uint64_t epoch;     /* the caller's, from vg_shared_take_epoch */
    uint64_t version;   /* newer than what this epoch published before (e.g. the training step) */
    const void *data;   /* len bytes, kept alive and unchanged by the caller until cb */
    size_t len;
    size_t chunk_bytes; /* 0 = VG_SHARED_CHUNK_DEFAULT */
    int ttl_s;          /* the lifetime of chunks not yet named by the manifest; 0 = 600 */
} vg_shared_put_t;

/* Publishes one version of a blob (above).  cb(ud, status): 0 (the manifest
 * names it; a failure of the PERSIST/DEL step after that is only logged),
 * VG_EFENCED, VG_ESTALE, VG_EREDIS (an error reply, or the chunks took
 * over half their TTL: logged) or VG_EAGAIN.  Returns 0, VG_EINVAL (a bad
 * name, no data, a zero epoch, an epoch or version >= 2^53, too many
 * chunks, the store closing) or VG_ENOMEM. */
int vg_shared_publish(vg_store_t *s, const vg_shared_put_t *put, vg_store_cb cb, void *ud);

/* Reads the current version of blob name, unless it is have (NULL: the
 * caller holds none), into *buf: the caller's buffer (NULL, or malloc'ed
 * with *cap bytes; the caller frees it), grown when a version needs more
 * (*buf, *cap updated) and otherwise reused, so that a follower fetching
 * snapshots of one size faults in no fresh pages.  buf and cap stay the
 * operation's until cb(ud, status, blob, data):
 *   0, data == *buf: the blob's blob->bytes bytes — the current version, or
 *     the previous one when the current one could not be read whole;
 *   0, data NULL: the readable version is have (*blob): nothing new;
 *   VG_ENOTFOUND: no manifest, or no version of it is readable (chunks
 *     gone); VG_ECORRUPT: a malformed manifest, or no version passes its
 *     CRC; VG_EREDIS, VG_ENOMEM (the blob does not fit in memory), VG_EAGAIN.
 * blob is NULL unless status is 0; *buf holds nothing valid unless data is
 * set.  Returns 0, VG_EINVAL or VG_ENOMEM. */
typedef void (*vg_shared_get_cb)(void *ud, int status, const vg_shared_blob_t *blob, void *data);
int vg_shared_fetch(vg_store_t *s, const char *name, const vg_shared_blob_t *have, void **buf, size_t *cap,
                    vg_shared_get_cb cb, void *ud);

#endif
