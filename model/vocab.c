/*
 * vocab.c — open-addressing hash table (FNV-1a, linear probing, load <= 1/2)
 * over an append-only array of id strings.  Each slot keeps its id's hash
 * beside its index, so a probe compares ids only where the hashes agree.
 */
#include "model/vocab.h"

#include <stdlib.h>
#include <string.h>

#include "model/common.h"

static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

void vg_vocab_init(vg_vocab_t *v) { memset(v, 0, sizeof *v); }

void vg_vocab_free(vg_vocab_t *v)
{
    for (int i = 0; i < v->n; i++)
        free(v->ids[i]);
    free(v->ids);
    free(v->slots);
    free(v->free_idx);
    memset(v, 0, sizeof *v);
}

/* The slot of id (hash h), or the empty slot where it would go. */
static size_t probe(const vg_vocab_t *v, const char *id, size_t len, uint32_t h)
{
    size_t mask = v->n_slots - 1, s = h & mask;
    for (;;) {
        int32_t k = v->slots[s].idx;
        if (k < 0 || (v->slots[s].hash == h && strlen(v->ids[k]) == len && memcmp(v->ids[k], id, len) == 0))
            return s;
        s = (s + 1) & mask;
    }
}

int32_t vg_vocab_find(const vg_vocab_t *v, const char *id, size_t len)
{
    if (!v->n_slots)
        return -1;
    return v->slots[probe(v, id, len, (uint32_t)fnv1a(id, len))].idx;
}

static int rehash(vg_vocab_t *v, size_t n_slots)
{
    struct vg_vocab_slot *slots = malloc(n_slots * sizeof *slots);
    if (!slots)
        return VG_ENOMEM;
    for (size_t s = 0; s < n_slots; s++)
        slots[s].idx = -1;
    free(v->slots);
    v->slots = slots;
    v->n_slots = n_slots;
    for (int i = 0; i < v->n; i++)
        if (v->ids[i][0]) { /* erased ids have no slot */
            size_t len = strlen(v->ids[i]);
            uint32_t h = (uint32_t)fnv1a(v->ids[i], len);
            size_t s = probe(v, v->ids[i], len, h);
            v->slots[s] = (struct vg_vocab_slot){i, h};
        }
    return 0;
}

int vg_vocab_erase(vg_vocab_t *v, int32_t i)
{
    if (v->reuse && v->n_free == v->free_cap) {
        int cap = v->free_cap ? 2 * v->free_cap : 64;
        int32_t *f = realloc(v->free_idx, (size_t)cap * sizeof *f);
        if (!f)
            return VG_ENOMEM;
        v->free_idx = f;
        v->free_cap = cap;
    }
    char *empty = calloc(1, 1);
    if (!empty)
        return VG_ENOMEM;
    size_t len = strlen(v->ids[i]);
    size_t mask = v->n_slots - 1, s = probe(v, v->ids[i], len, (uint32_t)fnv1a(v->ids[i], len));
    vg_assert(v->slots[s].idx == i);
    free(v->ids[i]);
    v->ids[i] = empty;
    /* backward-shift deletion: move up every later entry of the probe run
     * whose home slot does not lie cyclically in (s, j] */
    v->slots[s].idx = -1;
    for (size_t j = (s + 1) & mask; v->slots[j].idx >= 0; j = (j + 1) & mask) {
        size_t home = v->slots[j].hash & mask;
        int stays = s < j ? (home > s && home <= j) : (home > s || home <= j);
        if (!stays) {
            v->slots[s] = v->slots[j];
            v->slots[j].idx = -1;
            s = j;
        }
    }
    if (v->reuse)
        v->free_idx[v->n_free++] = i;
    return 0;
}

int32_t vg_vocab_add(vg_vocab_t *v, const char *id, size_t len, int *added)
{
    if (added)
        *added = 0;
    if (len == 0 || len > VG_VOCAB_ID_MAX || memchr(id, 0, len))
        return VG_EINVAL;
    if ((size_t)(v->n + 1) * 2 > v->n_slots) {
        int rc = rehash(v, v->n_slots ? 2 * v->n_slots : 64);
        if (rc)
            return rc;
    }
    uint32_t h = (uint32_t)fnv1a(id, len);
    size_t s = probe(v, id, len, h);
    if (v->slots[s].idx >= 0)
        return v->slots[s].idx;
    if (!v->n_free && v->n == v->cap) {
        int cap = v->cap ? 2 * v->cap : 64;
        char **ids = realloc(v->ids, (size_t)cap * sizeof *ids);
        if (!ids)
            return VG_ENOMEM;
        v->ids = ids;
        v->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return VG_ENOMEM;
    memcpy(copy, id, len);
    copy[len] = 0;
    int32_t i;
    if (v->n_free) { /* an erased index again */
        i = v->free_idx[--v->n_free];
        free(v->ids[i]); /* the "" of its erasure */
    } else {
        i = v->n++;
    }
    v->ids[i] = copy;
    v->slots[s] = (struct vg_vocab_slot){i, h};
    if (added)
        *added = 1;
    return i;
}
