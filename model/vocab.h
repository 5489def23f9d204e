/*
 * vocab.h — the item vocabulary: item id text <-> dense index 0..n-1.
 *
 * Indices are handed out in order of first sight and never change, so the
 * rows of the model's item-sized matrices stay aligned with them as the
 * catalogue grows.  Lookups are O(1) (open addressing).  The vocabulary owns
 * copies of the id texts.  Ids are 1..VG_VOCAB_ID_MAX bytes (no NUL); an
 * erased index keeps its place with the empty text.  With `reuse` set (a
 * vocabulary of users, whose indices no matrix row follows), an erased
 * index is handed out again to the next new id, so the index space stays
 * as large as the most ids ever held at once.
 */
#ifndef VG_VOCAB_H
#define VG_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#define VG_VOCAB_ID_MAX 128

typedef struct vg_vocab {
    int n, cap;          /* indices handed out (erased ones included), capacity of `ids` */
    char **ids;          /* ids[i] = NUL-terminated text of item i (owned) */
    struct vg_vocab_slot {
        int32_t idx;     /* index of the id, -1 = empty */
        uint32_t hash;   /* the low 32 bits of its hash (compared before the id) */
    } *slots;            /* the hash table: one cache line holds both */
    size_t n_slots;      /* power of two */
    int reuse;           /* 1: erased indices are handed out again (set after init) */
    int32_t *free_idx;   /* with reuse: the erased indices, a stack */
    int n_free, free_cap;
} vg_vocab_t;

void vg_vocab_init(vg_vocab_t *v);
void vg_vocab_free(vg_vocab_t *v);
/* Index of `id` (len bytes), or -1 when absent. */
int32_t vg_vocab_find(const vg_vocab_t *v, const char *id, size_t len);
/* Index of `id`, adding it when absent (*added set to 1 then).
 * Returns the index (>= 0) or VG_ENOMEM / VG_EINVAL (empty or too long id). */
int32_t vg_vocab_add(vg_vocab_t *v, const char *id, size_t len, int *added);
static inline const char *vg_vocab_id(const vg_vocab_t *v, int32_t i) { return v->ids[i]; }
/* Forgets the id of index i (0 <= i < n, not erased): its text is freed and
 * becomes "" (vg_vocab_id says "" from then on), vg_vocab_find no longer
 * finds it, and adding the same id again gives another index (with reuse,
 * possibly an erased one — i itself included).  Indices never move.
 * Returns 0 or VG_ENOMEM. */
int vg_vocab_erase(vg_vocab_t *v, int32_t i);

#endif
