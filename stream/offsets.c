/*
 * offsets.c — per-partition low-water mark of done offsets (see offsets.h).
 *
 * Invariants: ring[head..head+len) (mod cap) holds increasing offsets, every
 * one greater than any offset popped before; n_out = entries not done; the
 * entry at the front is never done after a call returns (done entries at the
 * front are popped at once, next_store = the last popped + 1).  Done finds
 * its entry by binary search, so a done costs O(log len) and a pop O(1).
 */
#include "stream/offsets.h"

#include <stdlib.h>
#include <string.h>

#include "common/errors.h"

static vg_offsets_slot_t *slot(vg_offsets_t *o, size_t i)
{
    return &o->ring[(o->head + i) % o->cap];
}

void vg_offsets_init(vg_offsets_t *o)
{
    memset(o, 0, sizeof *o);
    o->last_delivered = o->next_store = -1;
}

void vg_offsets_reset(vg_offsets_t *o)
{
    o->n_out = 0;
    o->head = o->len = 0;
    o->last_delivered = o->next_store = -1;
}

int vg_offsets_push(vg_offsets_t *o, int64_t off)
{
    if (o->len == o->cap) {
        size_t ncap = o->cap ? o->cap * 2 : 64;
        vg_offsets_slot_t *nr = malloc(ncap * sizeof *nr);
        if (!nr)
            return VG_ENOMEM;
        for (size_t i = 0; i < o->len; i++)
            nr[i] = *slot(o, i);
        free(o->ring);
        o->ring = nr;
        o->cap = ncap;
        o->head = 0;
    }
    vg_offsets_slot_t *s = &o->ring[(o->head + o->len) % o->cap];
    s->off = off;
    s->done = 0;
    o->len++;
    o->n_out++;
    o->last_delivered = off;
    return 0;
}

void vg_offsets_unpush(vg_offsets_t *o, int64_t prev_last)
{
    vg_assert(o->len > 0 && !slot(o, o->len - 1)->done);
    o->len--;
    o->n_out--;
    o->last_delivered = prev_last;
}

int vg_offsets_done(vg_offsets_t *o, int64_t off)
{
    if (o->len == 0)
        return 0;
    size_t lo = 0, hi = o->len; /* binary search in the increasing ring */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (slot(o, mid)->off < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == o->len || slot(o, lo)->off != off || slot(o, lo)->done)
        return 0;
    slot(o, lo)->done = 1;
    o->n_out--;
    if (lo == 0) {
        while (o->len && slot(o, 0)->done) {
            o->next_store = slot(o, 0)->off + 1;
            o->head = (o->head + 1) % o->cap;
            o->len--;
        }
    }
    return 1;
}

void vg_offsets_free(vg_offsets_t *o)
{
    free(o->ring);
    vg_offsets_init(o);
}
