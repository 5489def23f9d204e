/*
 * vaegan-eval — reproduces the VAEGAN paper's experiments (MODEL.md,
 * "Evaluation protocols") on a ratings file.
 *
 * Reads the file strictly (the first bad line stops it with file:line:
 * reason), splits it by the weak or strong protocol with numpy's legacy
 * RNG (bit-identical to shared/reference/data.py for the same split seed),
 * trains the chosen variant, picks the epoch by validation NDCG, and prints
 * the test metrics as one JSON object on the last line of stdout.  Progress
 * goes to stderr, one line per epoch.
 */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "model/blas.h"
#include "model/metrics.h"
#include "model/split.h"
#include "model/topn.h"
#include "model/vaegan.h"
#include "stream/reader.h"

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("vaegan-eval: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- reading: ids -> ordering keys ---------------------------------------- */

typedef struct {
    vg_vocab_t users, items;
    int32_t *u, *i;
    float *r;
    size_t n, cap;
} ratings_t;

static int on_event(const vg_event_t *ev, void *ud)
{
    ratings_t *R = ud;
    if (R->n == R->cap) {
        R->cap = R->cap ? 2 * R->cap : 1 << 16;
        R->u = realloc(R->u, R->cap * sizeof *R->u);
        R->i = realloc(R->i, R->cap * sizeof *R->i);
        R->r = realloc(R->r, R->cap * sizeof *R->r);
        if (!R->u || !R->i || !R->r)
            return VG_ENOMEM;
    }
    int32_t u = vg_vocab_add(&R->users, ev->user, ev->user_len, NULL);
    int32_t i = vg_vocab_add(&R->items, ev->item, ev->item_len, NULL);
    if (u < 0 || i < 0)
        return u < 0 ? u : i;
    R->u[R->n] = u;
    R->i[R->n] = i;
    R->r[R->n] = (float)ev->rating;
    R->n++;
    return 0;
}

static const vg_vocab_t *sort_vocab;
static int cmp_id(const void *a, const void *b)
{
    return strcmp(sort_vocab->ids[*(const int32_t *)a], sort_vocab->ids[*(const int32_t *)b]);
}

/* Keys whose numeric order is np.unique's order of the ids: the integer value
 * when every id is a decimal integer (MovieLens), else the rank of the text. */
static int64_t *vocab_keys(const vg_vocab_t *v)
{
    int64_t *key = malloc((size_t)v->n * sizeof *key);
    int numeric = 1;
    for (int k = 0; k < v->n && numeric; k++) {
        char *end;
        key[k] = strtoll(v->ids[k], &end, 10);
        numeric = *end == 0 && strlen(v->ids[k]) < 19;
    }
    if (!numeric) {
        int32_t *ord = malloc((size_t)v->n * sizeof *ord);
        for (int k = 0; k < v->n; k++)
            ord[k] = k;
        sort_vocab = v;
        qsort(ord, (size_t)v->n, sizeof *ord, cmp_id);
        for (int k = 0; k < v->n; k++)
            key[ord[k]] = k;
        free(ord);
    }
    return key;
}

/* ---- evaluation ----------------------------------------------------------- */

/* Ranks the users of `in` (their items excluded) and scores `out`. */
static void evaluate(const vg_model_t *m, const vg_csr_t *in, const vg_csr_t *out, vg_metrics_t *met)
{
    const int chunk = 256, N = m->n_items;
    int maxcut = 0;
    for (int c = 0; c < met->n_cut; c++)
        maxcut = met->cut[c] > maxcut ? met->cut[c] : maxcut;
    vg_real *scores = malloc((size_t)chunk * N * sizeof *scores);
    vg_real *work = malloc(vg_model_score_work_size(m, chunk) * sizeof *work);
    int32_t *top = malloc((size_t)maxcut * sizeof *top);
    int *sel = malloc((size_t)chunk * sizeof *sel);
    vg_csr_t batch = {0};
    if (!scores || !work || !top || !sel)
        die("out of memory");
    for (int s = 0; s < in->rows; s += chunk) {
        int n = in->rows - s < chunk ? in->rows - s : chunk;
        for (int k = 0; k < n; k++)
            sel[k] = s + k;
        if (vg_csr_gather(&batch, in, sel, n) < 0)
            die("out of memory");
        vg_model_score(m, &batch, scores, work);
        for (int k = 0; k < n; k++) {
            int u = s + k;
            int nt = vg_topn(scores + (size_t)k * N, N, in->indices + in->indptr[u], vg_csr_row_len(in, u), maxcut,
                             top, NULL);
            vg_metrics_add_user(met, top, nt, out->indices + out->indptr[u], vg_csr_row_len(out, u));
        }
    }
    vg_metrics_finish(met);
    vg_csr_free(&batch);
    free(scores);
    free(work);
    free(top);
    free(sel);
}

typedef struct {
    const char *data, *format, *protocol, *variant, *likelihood;
    int epochs, seed, split_seed, threads, batch, patience, heldout, hidden, latent;
    double anneal_steps, lr, beta, lambda, alpha, noise_input, noise_hidden, dropout, min_rating;
} opts_t;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vaegan-eval --data FILE --format json|csv|ml100k|ml1m|mlcsv --protocol weak|strong\n"
            "                   --variant mult-vae|avb|avb+d|avb+d+c [--epochs N] [--seed S] [--threads T]\n"
            "options (defaults in brackets):\n"
            "  --epochs N          training epochs [weak 200, strong 200]\n"
            "  --seed S            model/training seed [1]\n"
            "  --split-seed S      data split seed (numpy RandomState order) [0]\n"
            "  --threads T         BLAS threads [online CPUs]\n"
            "  --batch B           users per mini-batch [weak 256, strong 500]\n"
            "  --likelihood L      multinomial|logistic [multinomial]\n"
            "  --anneal-steps T    updates until alpha reaches its cap [avb*: all updates of the run;\n"
            "                      mult-vae: 200000]\n"
            "  --alpha A --beta B --lambda L --lr R --dropout P --noise-input S1 --noise-hidden S2\n"
            "  --hidden H --latent K   model hyperparameters [MODEL.md]\n"
            "  --patience P        stop after P epochs without validation gain [0 = never]\n"
            "  --min-rating R      strong protocol: ratings >= R are interactions [4]\n"
            "  --heldout U         strong protocol: validation (and test) users [100]\n");
}

int main(int argc, char **argv)
{
    char msg[512];
    int brc = vg_blas_setup(argc, argv, msg, sizeof msg);
    fprintf(stderr, "vaegan-eval: %s\n", msg);
    if (brc < 0)
        return 1;
    double t_start = now();

    opts_t o = {.epochs = -1, .seed = 1, .split_seed = 0, .threads = -1, .batch = -1, .heldout = 100,
                .hidden = 600, .latent = 200, .anneal_steps = -1, .lr = NAN, .beta = NAN, .lambda = NAN,
                .alpha = NAN, .noise_input = NAN, .noise_hidden = NAN, .dropout = NAN, .min_rating = 4};
    o.likelihood = "multinomial";
    static const struct option longopts[] = {
        {"data", 1, 0, 'd'},         {"format", 1, 0, 'f'},       {"protocol", 1, 0, 'p'},
        {"variant", 1, 0, 'v'},      {"epochs", 1, 0, 'e'},       {"seed", 1, 0, 's'},
        {"threads", 1, 0, 't'},      {"split-seed", 1, 0, 'S'},   {"batch", 1, 0, 'b'},
        {"likelihood", 1, 0, 'l'},   {"anneal-steps", 1, 0, 'A'}, {"alpha", 1, 0, 'a'},
        {"beta", 1, 0, 'B'},         {"lambda", 1, 0, 'L'},       {"lr", 1, 0, 'r'},
        {"dropout", 1, 0, 'D'},      {"noise-input", 1, 0, '1'},  {"noise-hidden", 1, 0, '2'},
        {"hidden", 1, 0, 'H'},       {"latent", 1, 0, 'K'},       {"patience", 1, 0, 'P'},
        {"min-rating", 1, 0, 'm'},   {"heldout", 1, 0, 'u'},      {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end = NULL;
        double num = optarg ? strtod(optarg, &end) : 0;
        int bad_num = optarg && (end == optarg || *end);
        switch (c) {
        case 'd': o.data = optarg; continue;
        case 'f': o.format = optarg; continue;
        case 'p': o.protocol = optarg; continue;
        case 'v': o.variant = optarg; continue;
        case 'l': o.likelihood = optarg; continue;
        case 'h': usage(stdout); return 0;
        case '?': usage(stderr); return 2;
        default: break;
        }
        if (bad_num || !isfinite(num)) {
            const char *name = "?";
            for (const struct option *l = longopts; l->name; l++)
                if (l->val == c)
                    name = l->name;
            die("option --%s: not a number: \"%s\"", name, optarg);
        }
        switch (c) {
        case 'e': o.epochs = (int)num; break;
        case 's': o.seed = (int)num; break;
        case 't': o.threads = (int)num; break;
        case 'S': o.split_seed = (int)num; break;
        case 'b': o.batch = (int)num; break;
        case 'A': o.anneal_steps = num; break;
        case 'a': o.alpha = num; break;
        case 'B': o.beta = num; break;
        case 'L': o.lambda = num; break;
        case 'r': o.lr = num; break;
        case 'D': o.dropout = num; break;
        case '1': o.noise_input = num; break;
        case '2': o.noise_hidden = num; break;
        case 'H': o.hidden = (int)num; break;
        case 'K': o.latent = (int)num; break;
        case 'P': o.patience = (int)num; break;
        case 'm': o.min_rating = num; break;
        case 'u': o.heldout = (int)num; break;
        }
    }
    if (optind < argc)
        die("unexpected argument \"%s\" (see --help)", argv[optind]);
    if (!o.data || !o.format || !o.protocol || !o.variant)
        die("--data, --format, --protocol and --variant are required (see --help)");
    vg_format_t fmt;
    if (vg_format_from_name(o.format, &fmt) < 0)
        die("--format: unknown format \"%s\" (json, csv, ml100k, ml1m, mlcsv)", o.format);
    int weak = strcmp(o.protocol, "weak") == 0;
    if (!weak && strcmp(o.protocol, "strong") != 0)
        die("--protocol: must be weak or strong, not \"%s\"", o.protocol);
    vg_model_cfg_t cfg;
    vg_variant_t variant;
    vg_likelihood_t lik;
    if (vg_variant_parse(o.variant, &variant) < 0)
        die("--variant: unknown variant \"%s\" (mult-vae, avb, avb+d, avb+d+c)", o.variant);
    if (vg_likelihood_parse(o.likelihood, &lik) < 0)
        die("--likelihood: must be multinomial or logistic, not \"%s\"", o.likelihood);
    if (o.epochs < 0)
        o.epochs = 200;
    if (o.epochs < 1 || o.seed < 0 || o.split_seed < 0 || o.heldout < 1)
        die("--epochs must be >= 1, --seed and --split-seed >= 0, --heldout >= 1");
    if (o.threads < 0)
        o.threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (o.threads < 1)
        o.threads = 1;
    vg_blas_set_threads(o.threads);

    /* read */
    ratings_t R = {0};
    vg_vocab_init(&R.users);
    vg_vocab_init(&R.items);
    vg_reader_opts_t ro = {.format = fmt, .min_rating = -INFINITY, .strict = 1, .on_event = on_event, .ud = &R};
    vg_reader_stats_t rs;
    char err[1024];
    int rc = vg_reader_read(o.data, &ro, &rs, err, sizeof err);
    if (rc < 0)
        die("%s", rc == VG_ENOMEM ? "out of memory" : err);
    int64_t *ukey = vocab_keys(&R.users), *ikey = vocab_keys(&R.items);
    vg_rating_t *rt = malloc(R.n * sizeof *rt);
    for (size_t k = 0; k < R.n; k++)
        rt[k] = (vg_rating_t){ukey[R.u[k]], ikey[R.i[k]], R.r[k]};
    fprintf(stderr, "vaegan-eval: %s: %zu events, %d users, %d items\n", o.data, R.n, R.users.n, R.items.n);

    /* split */
    vg_weak_split_t ws = {0};
    vg_strong_split_t ss = {0};
    const vg_csr_t *train, *val_in, *val_out, *test_in, *test_out;
    int val_cut, cuts[3], n_cuts;
    if (weak) {
        rc = vg_split_weak(rt, R.n, (uint32_t)o.split_seed, 0.2, 0.1, &ws);
        if (rc < 0)
            die("%s: cannot build the weak split: %s", o.data, vg_strerror(rc));
        train = &ws.train_fit, val_in = &ws.train_fit, val_out = &ws.val;
        test_in = &ws.train_full, test_out = &ws.test;
        val_cut = 20, cuts[0] = 5, cuts[1] = 20, n_cuts = 2;
    } else {
        rc = vg_split_strong(rt, R.n, (uint32_t)o.split_seed, (float)o.min_rating, o.heldout, 0.2, &ss);
        if (rc < 0)
            die("%s: cannot build the strong split (needs more than %d users with >= 5 ratings >= %g): %s",
                o.data, 2 * o.heldout, o.min_rating, vg_strerror(rc));
        train = &ss.train, val_in = &ss.val_in, val_out = &ss.val_out;
        test_in = &ss.test_in, test_out = &ss.test_out;
        val_cut = 100, cuts[0] = 20, cuts[1] = 50, cuts[2] = 100, n_cuts = 3;
    }
    const int n_users = train->rows, n_items = train->cols;
    fprintf(stderr, "vaegan-eval: %s split (seed %d): %d training users, %d items, %lld training interactions\n",
            o.protocol, o.split_seed, n_users, n_items, (long long)vg_csr_nnz(train));

    /* model */
    int batch = o.batch > 0 ? o.batch : (weak ? 256 : 500);
    if (batch > n_users)
        batch = n_users;
    int n_batches = (n_users + batch - 1) / batch;
    vg_model_cfg_default(&cfg, variant);
    cfg.likelihood = lik;
    cfg.hidden = o.hidden;
    cfg.latent = o.latent;
    cfg.seed = (uint64_t)o.seed;
    cfg.anneal_steps = o.anneal_steps >= 0                   ? o.anneal_steps
                       : variant == VG_VARIANT_MULT_VAE ? 200000
                                                         : (double)o.epochs * n_batches;
#define OVERRIDE(field, v)                                                                               \
    if (!isnan(v))                                                                                       \
    cfg.field = v
    OVERRIDE(alpha_cap, o.alpha);
    OVERRIDE(beta, o.beta);
    OVERRIDE(lambda, o.lambda);
    OVERRIDE(lr, o.lr);
    OVERRIDE(dropout, o.dropout);
    OVERRIDE(noise_input, o.noise_input);
    OVERRIDE(noise_hidden, o.noise_hidden);
#undef OVERRIDE
    vg_model_t m;
    rc = vg_model_init(&m, &cfg, n_items, batch);
    if (rc < 0)
        die("cannot set up the model: %s (check the hyperparameters)", vg_strerror(rc));

    /* best-epoch snapshot of the weights */
    vg_real *best_w[VG_P_COUNT] = {0};
    for (int p = 0; p < VG_P_COUNT; p++)
        best_w[p] = malloc((m.p[p].rows * m.p[p].cols + 1) * sizeof(vg_real));

    vg_rng_t order_rng;
    vg_rng_seed(&order_rng, (uint64_t)o.seed * 7919 + 17);
    int *perm = malloc((size_t)n_users * sizeof *perm);
    for (int u = 0; u < n_users; u++)
        perm[u] = u;
    vg_csr_t xb = {0};
    double best = -1, t_train = 0;
    int best_epoch = -1, epochs_run = 0, bad = 0;
    for (int e = 0; e < o.epochs; e++) {
        double t0 = now();
        vg_rng_shuffle(&order_rng, perm, n_users);
        vg_step_stats_t st, sum = {0};
        for (int b = 0; b < n_batches; b++) {
            int s = b * batch, n = n_users - s < batch ? n_users - s : batch;
            if (vg_csr_gather(&xb, train, perm + s, n) < 0)
                die("out of memory");
            vg_model_train_step(&m, &xb, &st);
            sum.loss_g += st.loss_g / n_batches;
            sum.nll += st.nll / n_batches;
            sum.kl += st.kl / n_batches;
            sum.t_q += st.t_q / n_batches;
            sum.loss_t += st.loss_t / n_batches;
            sum.loss_d += st.loss_d / n_batches;
            sum.d_real += st.d_real / n_batches;
            sum.d_fake += st.d_fake / n_batches;
            sum.contr += st.contr / n_batches;
            sum.alpha = st.alpha;
        }
        t_train += now() - t0;
        epochs_run = e + 1;
        vg_metrics_t vm;
        vg_metrics_init(&vm, &val_cut, 1);
        evaluate(&m, val_in, val_out, &vm);
        double v = vm.ndcg[0];
        fprintf(stderr,
                "epoch %3d/%d  loss_G %.4f  nll %.3f  %s %.4f  T %.3f loss_T %.3f  loss_D %.3f D(real) %.3f "
                "D(fake) %.3f  contr %.2f  alpha %.4f  val G@%d %.4f%s  %.2fs\n",
                e + 1, o.epochs, sum.loss_g, sum.nll, "kl", sum.kl, sum.t_q, sum.loss_t, sum.loss_d, sum.d_real,
                sum.d_fake, sum.contr, sum.alpha, val_cut, v, v > best ? " *" : "", now() - t0);
        if (v > best) {
            best = v;
            best_epoch = e + 1;
            bad = 0;
            for (int p = 0; p < VG_P_COUNT; p++)
                memcpy(best_w[p], m.p[p].w, m.p[p].rows * m.p[p].cols * sizeof(vg_real));
        } else if (o.patience > 0 && ++bad >= o.patience) {
            break;
        }
    }
    for (int p = 0; p < VG_P_COUNT; p++)
        memcpy(m.p[p].w, best_w[p], m.p[p].rows * m.p[p].cols * sizeof(vg_real));

    vg_metrics_t tm;
    vg_metrics_init(&tm, cuts, n_cuts);
    evaluate(&m, test_in, test_out, &tm);

    json_t *j = json_object();
    json_object_set_new(j, "variant", json_string(o.variant));
    json_object_set_new(j, "protocol", json_string(o.protocol));
    json_object_set_new(j, "seed", json_integer(o.seed));
    json_object_set_new(j, "split_seed", json_integer(o.split_seed));
    json_object_set_new(j, "epochs", json_integer(o.epochs));
    json_object_set_new(j, "epochs_run", json_integer(epochs_run));
    json_object_set_new(j, "best_epoch", json_integer(best_epoch));
    char key[32];
    for (int k = 0; k < n_cuts; k++) {
        snprintf(key, sizeof key, "R@%d", cuts[k]);
        /* weak: plain recall (CFGAN); strong: hits / min(N, |test|) (Mult-VAE) */
        json_object_set_new(j, key, json_real(weak ? tm.recall_plain[k] : tm.recall[k]));
    }
    for (int k = 0; k < n_cuts; k++) {
        snprintf(key, sizeof key, "G@%d", cuts[k]);
        json_object_set_new(j, key, json_real(tm.ndcg[k]));
    }
    if (weak)
        for (int k = 0; k < n_cuts; k++) {
            snprintf(key, sizeof key, "M@%d", cuts[k]);
            json_object_set_new(j, key, json_real(tm.mrr[k]));
        }
    snprintf(key, sizeof key, "val_G@%d", val_cut);
    json_object_set_new(j, key, json_real(best));
    json_object_set_new(j, "likelihood", json_string(vg_likelihood_name(cfg.likelihood)));
    json_object_set_new(j, "users", json_integer(n_users));
    json_object_set_new(j, "items", json_integer(n_items));
    json_object_set_new(j, "batch", json_integer(batch));
    json_object_set_new(j, "anneal_steps", json_real(cfg.anneal_steps));
    json_object_set_new(j, "threads", json_integer(o.threads));
    json_object_set_new(j, "blas_core", json_string(vg_blas_core()));
    json_object_set_new(j, "wall_s", json_real(round((now() - t_start) * 100) / 100));
    json_object_set_new(j, "s_per_epoch", json_real(round(t_train / epochs_run * 1e4) / 1e4));
    char *line = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
    printf("%s\n", line);
    fflush(stdout);
    free(line);
    json_decref(j);

    for (int p = 0; p < VG_P_COUNT; p++)
        free(best_w[p]);
    free(perm);
    vg_csr_free(&xb);
    vg_model_close(&m);
    if (weak)
        vg_split_weak_free(&ws);
    else
        vg_split_strong_free(&ss);
    free(rt);
    free(ukey);
    free(ikey);
    free(R.u);
    free(R.i);
    free(R.r);
    vg_vocab_free(&R.users);
    vg_vocab_free(&R.items);
    return 0;
}
