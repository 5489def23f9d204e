/*
 * fuzz_state.c — libFuzzer harness of the model state-file loader
 * (model/vaegan.h, vg_model_load; the daemon's state.dir/model.ckpt): the
 * input minus its first byte is written to the scratch file (fuzz.h) and
 * loaded.
 *
 * The first byte chooses how:
 *   bit 0  repair the CRC-32: the file's last 4 bytes are replaced by the
 *          checksum of the bytes before them, so that mutations inside a
 *          file reach the end of the loader instead of the checksum test
 *   bit 1  load against the seeds' architecture (seed.h, avb+d+c) instead
 *          of none (the file's own)
 * An empty input is skipped.
 *
 * What it asserts: a refusal is one of the codes vaegan.h names; a loaded
 * model has an architecture in range (matching the expected one when
 * given), at most N vocabulary ids, and scores a one-item user without
 * trouble (NaNs and infinities in weights are allowed, reading out of
 * bounds is not).  Nothing survives an input but the scratch file.
 */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fuzz/fuzz.h"
#include "fuzz/seed.h"
#include "model/csr.h"
#include "model/vaegan.h"

#define FUZZ_BATCH 2 /* max_batch of the loaded model */

/* Scores one user who clicked item 0 with the loaded model. */
static void score_one_user(const vg_model_t *m)
{
    int32_t row = 0, col = 0;
    vg_csr_t X;
    vg_assert(vg_csr_from_pairs(&X, 1, m->n_items, 1, &row, &col) == 0);
    vg_real *scores = malloc((size_t)m->n_items * sizeof *scores);
    size_t wn = vg_model_score_work_size(m, 1);
    vg_real *work = malloc((wn ? wn : 1) * sizeof *work);
    vg_assert(scores && work);
    vg_assert(vg_model_score(m, &X, scores, work) == 0);
    free(scores);
    free(work);
    vg_csr_free(&X);
}

static void check_loaded(const vg_model_t *m, const vg_model_cfg_t *expect)
{
    const vg_model_cfg_t *c = &m->cfg;
    vg_assert(m->n_items >= 1 && m->vocab.n >= 0 && m->vocab.n <= m->n_items);
    vg_assert(c->hidden >= 1 && c->hidden <= VG_MODEL_DIM_MAX && c->latent >= 1 && c->latent <= VG_MODEL_DIM_MAX);
    vg_assert(c->disc_hidden >= 1 && c->disc_hidden <= VG_MODEL_DIM_MAX);
    if (expect)
        vg_assert(c->variant == expect->variant && c->likelihood == expect->likelihood &&
                  c->hidden == expect->hidden && c->latent == expect->latent &&
                  c->disc_hidden == expect->disc_hidden);
    score_one_user(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t ctl = data[0];
    size_t n = size - 1;
    unsigned char *file = malloc(n ? n : 1);
    vg_assert(file != NULL);
    memcpy(file, data + 1, n);
    if ((ctl & 1) && n >= 4) {
        uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), file, (uInt)(n - 4));
        memcpy(file + n - 4, &crc, sizeof crc);
    }
    vg_model_cfg_t want;
    vg_fuzz_seed_cfg(&want, VG_VARIANT_AVB_D_C);
    const vg_model_cfg_t *expect = (ctl & 2) ? &want : NULL;

    const char *path = vg_fuzz_file(file, n);
    free(file);
    vg_model_t m;
    char err[512];
    int rc = vg_model_load(&m, path, expect, FUZZ_BATCH, err, sizeof err);
    if (rc == 0) {
        check_loaded(&m, expect);
        vg_model_close(&m);
    } else {
        vg_assert(rc == VG_ECORRUPT || rc == VG_EFORMAT || rc == VG_EVERSION || rc == VG_EMISMATCH ||
                  rc == VG_ENOMEM || rc == VG_EINVAL || rc == VG_EIO);
        vg_assert(err[0] != '\0');
    }
    return 0;
}
