/*
 * make_state_seed.c — writes the small, real model state file the state
 * harness (fuzz_state.c) starts from: the architecture of seed.h (20 items
 * named i0..i19, H 8, K 4, H_d 4), three training steps (so the Adam
 * moments and the step counter are not zero), saved with vg_model_save.
 * About 9 KB (avb+d+c), 6 KB (mult-vae).
 *
 *   make_state_seed OUT [VARIANT]     VARIANT: avb+d+c (default), mult-vae, ...
 *
 * fuzz/corpus/state/ holds OUT behind the harness's control byte, e.g.
 *   build/fuzz/make_state_seed /tmp/s && { printf '\000'; cat /tmp/s; } > fuzz/corpus/state/avb-d-c
 * Deterministic (fixed seed): the same build on the same machine writes the
 * same bytes.
 */
#include <stdio.h>
#include <string.h>

#include "fuzz/seed.h"
#include "model/csr.h"
#include "model/vaegan.h"

#define SEED_ITEMS VG_FUZZ_SEED_ITEMS
#define SEED_USERS 6

static int fail(const char *what, int rc)
{
    fprintf(stderr, "make_state_seed: %s: %s\n", what, vg_strerror(rc));
    return 1;
}

int main(int argc, char **argv)
{
    vg_variant_t v = VG_VARIANT_AVB_D_C;
    if (argc < 2 || argc > 3 || (argc == 3 && vg_variant_parse(argv[2], &v) < 0)) {
        fprintf(stderr, "usage: make_state_seed OUT [mult-vae|avb|avb+d|avb+d+c]\n");
        return 2;
    }
    vg_model_cfg_t c;
    vg_fuzz_seed_cfg(&c, v);
    vg_model_t m;
    int rc = vg_model_init(&m, &c, SEED_ITEMS, SEED_USERS);
    if (rc)
        return fail("vg_model_init", rc);
    char id[16];
    for (int i = 0; i < SEED_ITEMS; i++) {
        snprintf(id, sizeof id, "i%d", i);
        if ((rc = vg_vocab_add(&m.vocab, id, strlen(id), NULL)) < 0)
            return fail("vg_vocab_add", rc);
    }
    /* user u clicked items u, u+3, u+6, ... */
    int32_t rows[SEED_USERS * 7], cols[SEED_USERS * 7];
    size_t n = 0;
    for (int u = 0; u < SEED_USERS; u++)
        for (int i = u; i < SEED_ITEMS; i += 3) {
            rows[n] = u;
            cols[n++] = i;
        }
    vg_csr_t X;
    if ((rc = vg_csr_from_pairs(&X, SEED_USERS, SEED_ITEMS, n, rows, cols)))
        return fail("vg_csr_from_pairs", rc);
    for (int s = 0; s < 3 && !rc; s++)
        rc = vg_model_train_step(&m, &X, NULL);
    vg_csr_free(&X);
    if (rc)
        return fail("vg_model_train_step", rc);
    char err[256];
    rc = vg_model_save(&m, argv[1], err, sizeof err);
    vg_model_close(&m);
    if (rc) {
        fprintf(stderr, "make_state_seed: %s\n", err);
        return 1;
    }
    return 0;
}
