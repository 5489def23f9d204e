/* internal.h — entry points shared between files of model/, not public. */
#ifndef VG_MODEL_INTERNAL_H
#define VG_MODEL_INTERNAL_H

#include "model/vaegan.h"

/* Checks m->cfg against n_items/max_batch, then allocates every tensor (zero
 * weights and moments) and the workspace for m->cfg and m->n_items.
 * Returns 0, VG_EINVAL or VG_ENOMEM. */
int vg_model_alloc_(vg_model_t *m, int max_batch);

#endif
