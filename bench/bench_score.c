/*
 * vaegan-bench-score — the scorer's kernels side by side: users/s of top-N
 * lists (history excluded) for fp32 (OpenBLAS) and the fast kernels
 * (oneDNN int8/bf16 + exact re-ranking, model/ranker.h) at several batch
 * sizes and thread counts, the product's own rate, and the fast lists'
 * agreement with fp32, on a model trained on the synthetic
 * MovieLens-20M-shaped data (bench/synth.h: 20,108 items).
 *
 *   vaegan-bench-score [--model FILE] [--train-steps S] [--users U] [--top N]
 *                      [--batches 1,16,64,256] [--threads 1,2] [--fast-only]
 *
 * --model FILE: load the model from FILE when it exists, else train S steps
 * (batch 500, default 500) and save it there, so later runs skip training.
 * Each (kernel, batch, threads) times U users (default 10,000; T threads
 * each rank U/T of them with their own ranker).  Prints one JSON line per
 * measurement and a summary line per kernel, with the agreement of its
 * top-N and top-10 with fp32's on the same U users.  --fast-only times fp32
 * once (batch 256, one thread: the reference lists) and the fast kernels in full.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/synth.h"
#include "common/clock.h"
#include "model/blas.h"
#include "model/ranker.h"
#include "model/vaegan.h"

typedef struct {
    const vg_model_t *m;
    const vg_fastw_t *fw;
    const vg_csr_t *U;
    int from, to, batch, top;
    int32_t *idx; /* U->rows * top */
    int *cnt;
    vg_ranker_stats_t stats;
} job_t;

static void *run_job(void *arg)
{
    job_t *j = arg;
    vg_omp_set_threads(1);
    vg_blas_set_threads(1);
    vg_ranker_t *r = vg_ranker_new();
    vg_csr_t b = {0};
    int *sel = malloc((size_t)j->batch * sizeof *sel);
    const int32_t **ex = malloc((size_t)j->batch * sizeof *ex);
    int *n_ex = malloc((size_t)j->batch * sizeof *n_ex);
    for (int s = j->from; s < j->to; s += j->batch) {
        int n = j->to - s < j->batch ? j->to - s : j->batch;
        for (int k = 0; k < n; k++) {
            sel[k] = s + k;
            ex[k] = j->U->indices + j->U->indptr[s + k];
            n_ex[k] = vg_csr_row_len(j->U, s + k);
        }
        if (vg_csr_gather(&b, j->U, sel, n) ||
            vg_ranker_topn(r, j->m, j->fw, &b, ex, n_ex, j->top, j->idx + (size_t)s * j->top, NULL, j->cnt + s)) {
            fprintf(stderr, "ranking failed\n");
            exit(1);
        }
    }
    vg_ranker_stats(r, &j->stats);
    vg_ranker_free(r);
    vg_csr_free(&b);
    free(sel);
    free(ex);
    free(n_ex);
    return NULL;
}

/* Ranks all users of U; returns users/s; fills idx/cnt and the summed stats. */
static double rank_all(const vg_model_t *m, const vg_fastw_t *fw, const vg_csr_t *U, int batch, int threads,
                       int top, int32_t *idx, int *cnt, vg_ranker_stats_t *st)
{
    job_t jobs[16];
    pthread_t th[16];
    double t0 = vg_mono_s();
    for (int t = 0; t < threads; t++) {
        jobs[t] = (job_t){.m = m, .fw = fw, .U = U, .batch = batch, .top = top, .idx = idx, .cnt = cnt,
                          .from = (int)((long)U->rows * t / threads), .to = (int)((long)U->rows * (t + 1) / threads)};
        pthread_create(&th[t], NULL, run_job, &jobs[t]);
    }
    *st = (vg_ranker_stats_t){0};
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        st->product_s += jobs[t].stats.product_s;
        st->select_s += jobs[t].stats.select_s;
        st->users += jobs[t].stats.users;
        st->calls += jobs[t].stats.calls;
    }
    return U->rows / (vg_mono_s() - t0);
}

static void train_model(vg_model_t *m, synth_t *S, int steps)
{
    vg_model_cfg_t cfg;
    vg_model_cfg_default(&cfg, VG_VARIANT_AVB_D_C);
    if (vg_model_init(m, &cfg, SYNTH_ITEMS, 500) < 0) {
        fprintf(stderr, "cannot allocate the model\n");
        exit(1);
    }
    int *sel = malloc(500 * sizeof *sel);
    vg_rng_t r;
    vg_rng_seed(&r, 11);
    double t0 = vg_mono_s();
    for (int s = 0; s < steps; s++) {
        for (int k = 0; k < 500; k++)
            sel[k] = (int)vg_rng_below(&r, SYNTH_USERS - 20000); /* the last 20,000 users are scored */
        vg_csr_t X = {0};
        synth_rows(S, sel, 500, &X);
        vg_model_train_step(m, &X, NULL);
        vg_csr_free(&X);
        if ((s + 1) % 50 == 0)
            fprintf(stderr, "trained %d/%d steps (%.0f s)\n", s + 1, steps, vg_mono_s() - t0);
    }
    free(sel);
}

/* "1,16,64" -> v[], returns the count. */
static int parse_list(const char *s, int *v, int max)
{
    int n = 0;
    for (char *end; *s && n < max; s = *end ? end + 1 : end) {
        v[n] = (int)strtol(s, &end, 10);
        if (end == s || v[n] < 1)
            return -1;
        n++;
    }
    return n;
}

int main(int argc, char **argv)
{
    char msg[512];
    if (vg_blas_setup(argc, argv, msg, sizeof msg) < 0) {
        fprintf(stderr, "%s\n", msg);
        return 1;
    }
    const char *model_path = NULL;
    int fast_only = 0;
    int steps = 500, users = 10000, top = 100, batches[8] = {1, 16, 64, 256}, nb = 4, threads[4] = {1, 2}, nt = 2;
    static const struct option lo[] = {{"model", 1, 0, 'm'},   {"train-steps", 1, 0, 's'}, {"users", 1, 0, 'u'},
                                       {"top", 1, 0, 'n'},     {"batches", 1, 0, 'b'},     {"threads", 1, 0, 't'},
                                       {"fast-only", 0, 0, 'f'}, {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 's': steps = atoi(optarg); break;
        case 'u': users = atoi(optarg); break;
        case 'n': top = atoi(optarg); break;
        case 'b': nb = parse_list(optarg, batches, 8); break;
        case 't': nt = parse_list(optarg, threads, 4); break;
        case 'f': fast_only = 1; break;
        default: fprintf(stderr, "usage: see the file header\n"); return 2;
        }
    }
    if (nb < 1 || nt < 1 || users < 1 || users > 20000 || top < 1) {
        fprintf(stderr, "bad arguments (users 1..20000)\n");
        return 2;
    }
    fprintf(stderr, "%s\n", msg);
    synth_t S;
    synth_init(&S, SYNTH_USERS, SYNTH_ITEMS, 20108);
    vg_model_t m;
    char err[512];
    if (model_path && access(model_path, R_OK) == 0) {
        if (vg_model_load(&m, model_path, NULL, 500, err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        fprintf(stderr, "loaded %s (step %lld)\n", model_path, (long long)m.step);
    } else {
        vg_blas_set_threads(2);
        train_model(&m, &S, steps);
        if (model_path && vg_model_save(&m, model_path, err, sizeof err))
            fprintf(stderr, "not saved: %s\n", err);
    }
    int *sel = malloc((size_t)users * sizeof *sel);
    for (int k = 0; k < users; k++)
        sel[k] = SYNTH_USERS - 20000 + k;
    vg_csr_t U = {0};
    synth_rows(&S, sel, users, &U);

    size_t n = (size_t)users * top;
    int32_t *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got);
    int *rc = malloc((size_t)users * sizeof *rc), *gc = malloc((size_t)users * sizeof *gc);
    vg_kernel_t kernels[3] = {VG_KERNEL_FP32, VG_KERNEL_INT8, VG_KERNEL_BF16};
    double fp32_best = 0;
    for (int k = 0; k < 3; k++) {
        vg_fastw_t *fw = NULL;
        char why[160];
        double tb = vg_mono_s();
        vg_fastw_build(&fw, &m, kernels[k], why, sizeof why);
        double build_s = vg_mono_s() - tb;
        if (kernels[k] != VG_KERNEL_FP32 && !fw) {
            printf("{\"kernel\":\"%s\",\"available\":false,\"why\":\"%s\"}\n", vg_kernel_name(kernels[k]), why);
            continue;
        }
        double best = 0;
        int skip = fast_only && !fw;
        for (int t = 0; t < (skip ? 1 : nt); t++)
            for (int b = 0; b < (skip ? 1 : nb); b++) {
                int batch = skip ? 256 : batches[b], thr = skip ? 1 : threads[t];
                vg_ranker_stats_t st;
                rank_all(&m, fw, &U, batch, thr, top, got, gc, &st); /* warm-up: compiles kernels */
                double ups = rank_all(&m, fw, &U, batch, thr, top, got, gc, &st);
                double flop = 2.0 * users * m.cfg.hidden * m.n_items;
                best = ups > best ? ups : best;
                printf("{\"kernel\":\"%s\",\"path\":\"%s\",\"batch\":%d,\"threads\":%d,\"users_per_s\":%.0f,"
                       "\"product_gflops_per_thread\":%.1f,\"product_s_per_user_us\":%.1f,"
                       "\"select_s_per_user_us\":%.1f}\n",
                       vg_kernel_name(kernels[k]), vg_fastw_path(fw), batch, thr, ups,
                       flop / st.product_s / 1e9, st.product_s / users * 1e6, st.select_s / users * 1e6);
                fflush(stdout);
            }
        if (!fw) { /* the reference lists */
            fp32_best = best;
            vg_ranker_stats_t st;
            rank_all(&m, NULL, &U, 256, 1, top, ref, rc, &st);
            printf("{\"kernel\":\"fp32\",\"best_users_per_s\":%.0f}\n", best);
        } else {
            vg_ranker_stats_t st;
            rank_all(&m, fw, &U, 256, 1, top, got, gc, &st);
            double overlap = 0;
            int same10 = 0, cut = top < 10 ? top : 10;
            for (int u = 0; u < users; u++) {
                int hit = 0;
                for (int j = 0; j < gc[u]; j++)
                    for (int i = 0; i < rc[u]; i++)
                        hit += got[(size_t)u * top + j] == ref[(size_t)u * top + i];
                overlap += rc[u] ? (double)hit / rc[u] : 1;
                same10 += !memcmp(got + (size_t)u * top, ref + (size_t)u * top, (size_t)cut * sizeof *got);
            }
            printf("{\"kernel\":\"%s\",\"path\":\"%s\",\"build_s\":%.3f,\"best_users_per_s\":%.0f,"
                   "\"speedup_vs_fp32\":%.2f,\"overlap_top%d\":%.4f,\"identical_top%d\":%.4f}\n",
                   vg_kernel_name(kernels[k]), vg_fastw_path(fw), build_s, best, best / fp32_best, top,
                   overlap / users, cut, (double)same10 / users);
        }
        vg_fastw_free(fw);
    }
    vg_csr_free(&U);
    free(sel);
    free(ref);
    free(got);
    free(rc);
    free(gc);
    vg_model_close(&m);
    synth_free(&S);
    return 0;
}
