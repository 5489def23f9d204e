/*
 * seed.h — the model of the state harness's seed, in one place: the
 * architecture make_state_seed.c writes and fuzz_state.c loads against
 * (its control bit 1).
 *
 * Invariant: fuzz/corpus/state/ holds files of this architecture (20 items,
 * H 8, K 4, H_d 4); change it here and write the seeds again.
 */
#ifndef VG_FUZZ_SEED_H
#define VG_FUZZ_SEED_H

#include "model/vaegan.h"

#define VG_FUZZ_SEED_ITEMS 20

/* The defaults of variant v with the seed's small sizes and a fixed seed. */
static inline void vg_fuzz_seed_cfg(vg_model_cfg_t *c, vg_variant_t v)
{
    vg_model_cfg_default(c, v);
    c->hidden = 8;
    c->latent = 4;
    c->disc_hidden = 4;
    c->seed = 7;
}

#endif
