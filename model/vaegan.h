/*
 * vaegan.h — the VAEGAN collaborative-filtering model (docs/model.md) and
 * its Mult-VAE baseline: parameters, one training update, noise-free scoring,
 * annealing, and the model state file.
 *
 * Use:
 *     vg_model_cfg_t cfg;
 *     vg_model_cfg_default(&cfg, VG_VARIANT_AVB_D_C);
 *     vg_model_t m;
 *     if (vg_model_init(&m, &cfg, n_items, max_batch) < 0) ...
 *     for each mini-batch X (a vg_csr_t of users' 0/1 histories):
 *         vg_model_train_step(&m, &X, &stats);
 *     vg_model_score(&m, &Y, scores, work);   // any users, even unseen ones
 *     vg_model_save(&m, "model.ckpt", err, sizeof err);
 *     vg_model_close(&m);
 *
 * The three players (encoder+decoder "G", latent discriminator "T", user
 * conditioner + reconstruction discriminator "D") are updated simultaneously
 * from ONE forward pass per batch: each player's gradient is that of its own
 * loss with respect to its own parameters only (the model's definition allows
 * this instead of three sequential steps; it is the cheaper order:
 * docs/model.md, "One training step").  Every parameter has its own Adam
 * moments.
 *
 * Layout: matrices are row-major vg_real arrays.  Every matrix that has one
 * row per item (enc1 E1 N×H, dec2 W4 N×H and its bias, T's A, q_xi's C, D's P)
 * is item-major, so the first layers on sparse input gather rows (O(nnz·H))
 * and a growing catalogue appends rows.
 *
 * Threads: a model is used by one thread at a time, except that
 * vg_model_score() only reads the model, so several threads may score with
 * one model (each with its own `work`) while nobody trains it.
 * No global mutable state: any number of models may live in one process.
 */
#ifndef VG_VAEGAN_H
#define VG_VAEGAN_H

#include <stddef.h>
#include <stdint.h>

#include "model/common.h"
#include "model/csr.h"
#include "model/rng.h"
#include "model/vocab.h"

typedef enum {
    VG_VARIANT_MULT_VAE = 0, /* Gaussian encoder + KL (Liang et al.) */
    VG_VARIANT_AVB = 1,      /* implicit encoder + adversary T (beta = lambda = 0) */
    VG_VARIANT_AVB_D = 2,    /* + reconstruction discriminator D (lambda = 0) */
    VG_VARIANT_AVB_D_C = 3,  /* + contractive penalty */
} vg_variant_t;

typedef enum { VG_LIK_MULTINOMIAL = 0, VG_LIK_LOGISTIC = 1 } vg_likelihood_t;

/* The largest H, K and H_d a model may have: the configuration refuses more
 * and the state-file loader calls a larger one corrupt. */
#define VG_MODEL_DIM_MAX 65536

typedef struct vg_model_cfg {
    vg_variant_t variant;
    vg_likelihood_t likelihood;
    int hidden;          /* H, default 600 */
    int latent;          /* K (also the width of z_c) */
    int disc_hidden;     /* H_d, default 200 */
    double alpha_cap;    /* cap of alpha (mult-vae: cap of the KL weight) */
    double anneal_steps; /* t at which alpha reaches its cap; default 200000 */
    double beta;         /* weight of the D term */
    double lambda;       /* weight of the contractive term */
    double dropout;      /* input dropout p */
    double lr;           /* Adam learning rate, 1e-3 */
    double noise_input;  /* s1; a negative value means 1/sqrt(N) */
    double noise_hidden; /* s2 */
    double input_norm;   /* gamma: the input is x / n_b^gamma (0.5: x/||x||_2, 1: x/||x||_1), in [0, 1] */
    uint64_t seed;
} vg_model_cfg_t;

/* Fills the defaults for a variant (docs/model.md, "Defaults"): H 600,
 * H_d 200, lr 1e-3, input_norm 0.5, 200000 annealing steps, seed 1; then
 * mult-vae: Mult-VAE's multinomial likelihood, K 200, KL weight capped at
 * 0.2, dropout 0.5, no noise; the avb variants: the study's (tools/study.py)
 * logistic likelihood, K 64, alpha cap 1, beta 0.05 (avb+d*), lambda 3e-3
 * (avb+d+c), dropout 0.2, s1 = 0, s2 = 0.1. */
void vg_model_cfg_default(vg_model_cfg_t *c, vg_variant_t v);
/* "mult-vae", "avb", "avb+d", "avb+d+c"; returns 0 or VG_EINVAL. */
int vg_variant_parse(const char *name, vg_variant_t *out);
const char *vg_variant_name(vg_variant_t v);
/* "multinomial", "logistic"; returns 0 or VG_EINVAL. */
int vg_likelihood_parse(const char *name, vg_likelihood_t *out);
const char *vg_likelihood_name(vg_likelihood_t l);

/* One parameter tensor with its gradient and Adam moments (all rows×cols).
 * Item-major tensors (item_rows = 1) have one row per item and capacity for
 * cap_rows before they must be reallocated. */
typedef struct vg_param {
    const char *name;
    vg_real *w, *g, *m, *v;
    size_t rows, cols, cap_rows;
    int item_rows;
    int player; /* VG_PLAYER_* */
} vg_param_t;

enum { VG_PLAYER_G = 0, VG_PLAYER_T = 1, VG_PLAYER_D = 2 };

/* Parameter slots (fixed order; also the order in the state file). */
enum {
    VG_P_E1, VG_P_B1, VG_P_W2, VG_P_B2, VG_P_W3, VG_P_B3, VG_P_W4, VG_P_B4, /* G */
    VG_P_TA, VG_P_TC, VG_P_TB, VG_P_TW, VG_P_TD,                           /* T */
    VG_P_QC, VG_P_QE, VG_P_DP, VG_P_DR, VG_P_DQ, VG_P_DW, VG_P_DS,         /* D */
    VG_P_COUNT
};

/* Terms of the generator objective (for vg_model_cfg-independent tests). */
enum {
    VG_TERM_LIK = 1, /* -log p(x|z) */
    VG_TERM_KL = 2,  /* mult-vae's KL */
    VG_TERM_T = 4,   /* alpha * T(x, z_q) */
    VG_TERM_D = 8,   /* -beta * log sigma(D(fake | z_c)) */
    VG_TERM_C = 16,  /* lambda * ||dz/dx||_F^2 */
    VG_TERM_ALL = 31
};

typedef struct vg_step_stats {
    double loss_g;   /* the generator's objective */
    double nll;      /* -mean log p(x|z) */
    double kl;       /* mult-vae: mean KL */
    double t_q;      /* mean T(x, z_q) */
    double loss_t;   /* the T player's loss */
    double loss_d;   /* the D player's loss */
    double d_real;   /* mean sigma(D(x | z_c)) */
    double d_fake;   /* mean sigma(D(fake | z_c)) */
    double contr;    /* mean ||dz/dx||_F^2 */
    double alpha;    /* alpha (mult-vae: KL weight) used in this step */
} vg_step_stats_t;

typedef struct vg_model {
    vg_model_cfg_t cfg; /* as given, with noise_input resolved */
    int n_items;        /* N */
    int max_batch;      /* largest batch the workspace holds */
    int64_t step;       /* generator updates so far: t of the annealing */
    vg_rng_t rng;
    vg_vocab_t vocab;   /* item ids (may be empty when the caller indexes items itself) */
    vg_param_t p[VG_P_COUNT]; /* unused slots of a variant have rows = 0 */
    unsigned gen_terms; /* VG_TERM_* mask of the generator objective; default all */
    int frozen_noise;   /* tests only: 1 = draw no noise/dropout (use what is in the workspace) */
    int fail_alloc;     /* tests only: k > 0 = the k-th allocation of the next vg_model_grow()s fails
                         * (counted down by each allocation; 0 = off), to test growth's all-or-nothing */
    struct vg_work *work; /* training workspace (owned) */
    double *prof;       /* NULL, or VG_PROF_COUNT seconds that each training phase adds its time to (benchmarks) */
} vg_model_t;

/* The phases of a training step, for vg_model_t.prof: their times are
 * added to prof[VG_PROF_*] by every step while prof is set. */
enum {
    VG_PROF_ZERO,       /* gradients zeroed */
    VG_PROF_INPUT,      /* dropout, x̄ */
    VG_PROF_ENCODER,    /* first layer (with the input noise), W2 */
    VG_PROF_DECODER,    /* W3, the logits W4 */
    VG_PROF_LIKELIHOOD, /* softmax / sigmoid over B×N and its gradient */
    VG_PROF_T,          /* the latent discriminator, forward and backward */
    VG_PROF_D,          /* the reconstruction discriminator, forward and backward */
    VG_PROF_BACK_DEC,   /* decoder backward (dW4, dg, dW3) */
    VG_PROF_BACK_ENC,   /* encoder backward (W2) */
    VG_PROF_CONTR,      /* the contractive term, forward and backward */
    VG_PROF_FIRST,      /* first layer backward (dW1: sparse, and the input noise's dense product) */
    VG_PROF_ADAM,       /* Adam over every tensor */
    VG_PROF_COUNT
};
extern const char *const vg_prof_names[VG_PROF_COUNT];

/* Sets up a model for n_items items with fresh weights (Xavier-uniform,
 * biases N(0, 0.001^2), as Mult-VAE) drawn from cfg->seed, and a training
 * workspace for batches of up to max_batch users.  Returns 0, VG_EINVAL (a bad
 * configuration) or VG_ENOMEM.  The model owns everything it allocates. */
int vg_model_init(vg_model_t *m, const vg_model_cfg_t *cfg, int n_items, int max_batch);
void vg_model_close(vg_model_t *m);

/* alpha (mult-vae: KL weight) at the model's current step. */
double vg_model_alpha(const vg_model_t *m);

/* One simultaneous update of all players on the users of X (X->rows <=
 * max_batch, X->cols == n_items; an empty row is allowed: it contributes
 * nothing to the multinomial likelihood, while the logistic one counts all
 * its items as 0s, and it still counts in the batch size B and in T's and
 * D's losses).  Increments step.
 * stats may be NULL.  Returns 0 or VG_EINVAL. */
int vg_model_train_step(vg_model_t *m, const vg_csr_t *X, vg_step_stats_t *stats);

/* Loss and gradients of the three players on X without updating (the
 * gradient checks and train_step use it).  Gradients land in p[].g.  The
 * random draws (dropout, noise, prior samples) come from m->rng unless
 * m->frozen_noise is set, in which case the previous call's draws are reused. */
int vg_model_grad(vg_model_t *m, const vg_csr_t *X, vg_step_stats_t *stats);

/* Applies one Adam update of every parameter from p[].g and increments step. */
void vg_model_adam(vg_model_t *m);

/* Noise-free scores (decoder logits) of the users of X into
 * scores[X->rows * n_items].  `work` is caller-owned scratch of
 * vg_model_score_work_size(m, X->rows) reals.  Reads the model only.
 * Returns 0 or VG_EINVAL. */
int vg_model_score(const vg_model_t *m, const vg_csr_t *X, vg_real *scores, vg_real *work);
size_t vg_model_score_work_size(const vg_model_t *m, int rows);
/* The decoder's last hidden layer g of the users of X (X->rows × H,
 * row-major, inside `work`, sized as for vg_model_score()): the scores are
 * g·W4ᵀ + b4 (ranker.h computes that product on other kernels).  Returns g,
 * or NULL when X->cols != n_items. */
const vg_real *vg_model_hidden(const vg_model_t *m, const vg_csr_t *X, vg_real *work);

/* Copies what scoring needs (configuration, step, the generator's weights;
 * no gradients, moments or workspace) of src into dst (not initialised), for
 * readers on other threads while src keeps training.  vg_model_score() works
 * on dst; training it returns VG_EINVAL; vg_model_close() frees it.
 * Returns 0 or VG_ENOMEM. */
int vg_model_snapshot(vg_model_t *dst, const vg_model_t *src);
/* The same into dst, a snapshot made earlier that nobody reads any more: its
 * arrays are reused where they are large enough (no fresh pages to fault in
 * for a catalogue that did not grow).  On failure dst is closed. */
int vg_model_resnapshot(vg_model_t *dst, const vg_model_t *src);

/* A snapshot of src (as vg_model_snapshot) with n_items items in another
 * order: its item i is src's item from[i], or absent when from[i] < 0 (zero
 * weights, output bias NaN: its score is NaN, which the rankers skip) —
 * how a daemon serves a model whose items another daemon numbered.  The
 * vocabulary is left empty.  Returns 0, VG_EINVAL (n_items < 1) or
 * VG_ENOMEM (dst closed). */
int vg_model_snapshot_items(vg_model_t *dst, const vg_model_t *src, const int32_t *from, int n_items);

/* The same for a training model: dst (not initialised) becomes a training
 * model of n_items items with src's configuration, step and RNG, its item
 * i src's item from[i] (weights and Adam moments), or fresh (as
 * vg_model_grow makes new rows) when from[i] < 0; the other tensors are
 * copied.  How a new leader resumes from a checkpoint whose items another
 * daemon numbered.  The vocabulary is left empty.  Returns 0, VG_EINVAL
 * (src a snapshot, n_items < 1) or VG_ENOMEM. */
int vg_model_reorder_items(vg_model_t *dst, const vg_model_t *src, const int32_t *from, int n_items, int max_batch);

/* Grows the catalogue to n_items (>= current): item rows of every
 * item-major tensor are appended with fresh initialisation and zero moments;
 * capacity doubles so growth is amortised.  All or nothing: every allocation
 * (larger tensors, the workspace for the new N) is made before anything of
 * the model changes, so on VG_ENOMEM the model is as before (rows, weights,
 * RNG, workspace; at most some tensors have spare capacity) and saves and
 * trains as before.  Returns 0 or VG_ENOMEM. */
int vg_model_grow(vg_model_t *m, int n_items);

/* FLOPs of the dense matrix products of one training step on B users (for
 * benchmarks' GFLOP/s figures; sparse first layers are not counted). */
double vg_model_step_flops(const vg_model_t *m, int B);

/* ---- the model state file ----------------------------------------------
 * Header: magic "VAEGANST", format version, byte-order mark, scalar size,
 * architecture (variant, likelihood, N, H, K, H_d), hyperparameters, step,
 * RNG state; then the item vocabulary; then every tensor's weights and Adam
 * moments; then a CRC-32 (zlib) of everything before it (byte layout:
 * docs/model.md, "The state file").  Written to a temporary file of a
 * unique name beside it ("<path>.tmp-XXXXXX", mkstemp, mode 0644), fsynced,
 * renamed over path, directory fsynced; any failure of these steps fails the
 * save, removes the temporary file and leaves the old file at path as it was.
 *
 * Test hook (fault injection, not for production use): when the environment
 * variable VAEGAN_FAULT_FILE names a file and that file exists at the start
 * of a save, the save's writes fail with the errno named by the file's first
 * word: "ENOSPC", "EROFS", "EDQUOT" or "EIO" (anything else: EIO).  Removing
 * the file ends the fault.  Costs one getenv per save when unset. */

/* Returns 0 or VG_EIO, with the reason in err. */
int vg_model_save(const vg_model_t *m, const char *path, char *err, size_t errlen);

/* Loads a state file into a fresh model (m must not be initialised).  When
 * expect is not NULL, the file's architecture (variant, likelihood, H, K,
 * H_d) must equal expect's, else VG_EMISMATCH naming the first difference.
 * Other hyperparameters (lr, beta, ...) are taken from expect when given,
 * from the file otherwise.  A truncated or corrupt file is VG_ECORRUPT, a
 * foreign file VG_EFORMAT, an unknown version VG_EVERSION, a missing one
 * VG_EIO; err says which and where.  The file's size must be the one its
 * header (N, H, K, H_d, variant, vocabulary) implies, checked before the
 * model is allocated (and before the architecture is compared with expect):
 * a damaged size field is VG_ECORRUPT, never a huge allocation or a
 * VG_EMISMATCH.  max_batch sizes the workspace. */
int vg_model_load(vg_model_t *m, const char *path, const vg_model_cfg_t *expect, int max_batch,
                  char *err, size_t errlen);

/* The state file's bytes in memory, for a copy kept elsewhere (a leader's
 * checkpoint in Redis): *len bytes at *buf that vg_model_load_mem reads
 * back — and vg_model_load too, were they written to a file.  *buf (NULL,
 * or malloc'ed with *cap bytes; the caller's to free) is reused when large
 * enough, else grown (*buf, *cap updated), so that saves of a model of
 * unchanged size fault in no fresh pages.  Returns 0 or VG_ENOMEM (*buf
 * and *cap unchanged). */
int vg_model_save_mem(const vg_model_t *m, void **buf, size_t *cap, size_t *len, char *err, size_t errlen);

/* As vg_model_load, from the len bytes at data; name (e.g. "checkpoint
 * 3:1200 from Redis") stands for the path in messages. */
int vg_model_load_mem(vg_model_t *m, const void *data, size_t len, const char *name, const vg_model_cfg_t *expect,
                      int max_batch, char *err, size_t errlen);

/* What scoring needs of m (a training model, or a snapshot, whose
 * vocabulary is empty): the same
 * header, step, RNG and vocabulary, then the generator's weights only (no
 * moments, no adversaries), under its own magic "VAEGANSW" — about a third
 * of the state at most, for the snapshots a leader sends its followers.
 * vg_model_load_weights_mem reads it into a snapshot as vg_model_snapshot
 * makes one (scoring works, training returns VG_EINVAL), with the checks
 * and the errors of vg_model_load. */
int vg_model_save_weights_mem(const vg_model_t *m, void **buf, size_t *cap, size_t *len, char *err, size_t errlen);
int vg_model_load_weights_mem(vg_model_t *m, const void *data, size_t len, const char *name,
                              const vg_model_cfg_t *expect, char *err, size_t errlen);

#endif
