/*
 * vaegan-eval — reproduces the VAEGAN paper's experiments (docs/model.md,
 * "Evaluation protocols") on a ratings file.
 *
 * Reads the file strictly (the first bad line stops it with file:line:
 * reason), splits it by the weak or strong protocol with numpy's legacy
 * RNG (bit-identical to shared/reference/data.py for the same split seed),
 * trains the chosen variant, picks the epoch by validation NDCG, and prints
 * the test metrics as one JSON object on the last line of stdout.  Progress
 * goes to stderr, one line per epoch, with the time elapsed and an ETA (at
 * the mean epoch so far).
 *
 * main() is the list of those phases: parse_options, check_options,
 * read_ratings, make_split, make_model, train (one validation per epoch; the
 * best epoch's weights are kept), the test evaluation, print_result.  An
 * error (a bad option or input, no memory) ends the run with exit status 2
 * and a message naming it (die); --help exits 0; a BLAS self-check failure
 * exits 1.  --variant ease runs the linear baseline instead of a model
 * (run_ease: λ chosen on the validation data, then the test metrics).
 */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/fmt.h"
#include "model/blas.h"
#include "model/ease.h"
#include "model/rankeval.h"
#include "model/ranker.h"
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

/* Ranks the users of `in` (their items excluded) on kernel k, as the daemon
 * serves them (model/ranker.h), and scores `out`.  path (may be NULL)
 * receives the kernel path taken; same10 (may be NULL) the share of users
 * whose top-10 is the fp32 ranking's (1 when k runs in fp32). */
static void evaluate(const vg_model_t *m, vg_kernel_t k, const vg_csr_t *in, const vg_csr_t *out,
                     vg_rankeval_t *met, char *path, size_t pathlen, double *same10)
{
    const int chunk = 256;
    int maxcut = 0;
    for (int c = 0; c < met->n_cut; c++)
        maxcut = met->cut[c] > maxcut ? met->cut[c] : maxcut;
    vg_fastw_t *fw = NULL;
    vg_ranker_t *r = vg_ranker_new();
    int32_t *top = malloc((size_t)chunk * maxcut * sizeof *top), *ref = malloc((size_t)chunk * maxcut * sizeof *ref);
    int *rcnt = malloc((size_t)chunk * sizeof *rcnt);
    long same = 0;
    int *sel = malloc((size_t)chunk * sizeof *sel), *cnt = malloc((size_t)chunk * sizeof *cnt);
    int *n_ex = malloc((size_t)chunk * sizeof *n_ex);
    const int32_t **ex = malloc((size_t)chunk * sizeof *ex);
    vg_csr_t batch = {0};
    if (!r || !top || !ref || !rcnt || !sel || !cnt || !n_ex || !ex || vg_fastw_build(&fw, m, k, NULL, 0))
        die("out of memory");
    if (path)
        snprintf(path, pathlen, "%s", vg_fastw_path(fw));
    for (int s = 0; s < in->rows; s += chunk) {
        int n = in->rows - s < chunk ? in->rows - s : chunk;
        for (int j = 0; j < n; j++) {
            sel[j] = s + j;
            ex[j] = in->indices + in->indptr[s + j];
            n_ex[j] = vg_csr_row_len(in, s + j);
        }
        if (vg_csr_gather(&batch, in, sel, n) < 0 || vg_ranker_topn(r, m, fw, &batch, ex, n_ex, maxcut, top, NULL, cnt))
            die("out of memory");
        for (int j = 0; j < n; j++)
            vg_rankeval_add_user(met, top + (size_t)j * maxcut, cnt[j], out->indices + out->indptr[s + j],
                                 vg_csr_row_len(out, s + j));
        if (same10 && fw && vg_ranker_topn(r, m, NULL, &batch, ex, n_ex, maxcut, ref, NULL, rcnt))
            die("out of memory");
        for (int j = 0; same10 && j < n; j++) {
            int c = cnt[j] < 10 ? cnt[j] : 10;
            same += !fw || (cnt[j] == rcnt[j] && !memcmp(top + (size_t)j * maxcut, ref + (size_t)j * maxcut,
                                                          (size_t)c * sizeof *top));
        }
    }
    if (same10)
        *same10 = in->rows ? (double)same / in->rows : 1;
    vg_rankeval_finish(met);
    vg_csr_free(&batch);
    vg_fastw_free(fw);
    vg_ranker_free(r);
    free(top);
    free(ref);
    free(rcnt);
    free(sel);
    free(cnt);
    free(n_ex);
    free(ex);
}

/* ---- options -------------------------------------------------------------- */

typedef struct {
    const char *data, *format, *protocol, *variant, *likelihood, *kernel;
    int epochs, seed, split_seed, threads, batch, patience, heldout, hidden, latent;
    double anneal_steps, lr, beta, lambda, alpha, noise_input, noise_hidden, dropout, min_rating;
    double lr_decay, input_norm; /* --lr-decay (per epoch, 1 = none); --input-norm γ (NAN = the model's) */
    double ease_lambda; /* --ease-lambda; NAN = chosen on validation */
    /* resolved by check_options() */
    vg_format_t fmt;
    int weak; /* protocol: 1 weak, 0 strong */
    vg_variant_t var;
    vg_likelihood_t lik;
    vg_kernel_t ker;
    int ease; /* --variant ease */
} opts_t;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vaegan-eval --data FILE --format json|csv|ml100k|ml1m|mlcsv --protocol weak|strong\n"
            "                   --variant mult-vae|avb|avb+d|avb+d+c|ease [--epochs N] [--seed S] [--threads T]\n"
            "options (defaults in brackets):\n"
            "  --epochs N          training epochs [200; avb* weak: 400]\n"
            "  --seed S            model/training seed [1]\n"
            "  --split-seed S      data split seed (numpy RandomState order) [0]\n"
            "  --threads T         BLAS threads [online CPUs]\n"
            "  --batch B           users per mini-batch [500; mult-vae weak: 256]\n"
            "  --likelihood L      multinomial|logistic [the variant's: docs/model.md]\n"
            "  --anneal-steps T    updates until alpha reaches its cap [avb*: all updates of the run;\n"
            "                      mult-vae: 200000]\n"
            "  --alpha A --beta B --lambda L --lr R --dropout P --noise-input S1 --noise-hidden S2\n"
            "  --hidden H --latent K   model hyperparameters [docs/model.md]\n"
            "  --input-norm G      a user's input is x / n^G (0.5: L2, 1: L1, 0: none) [0.5]\n"
            "  --lr-decay D        the learning rate is multiplied by D after each epoch [1]\n"
            "  --patience P        stop after P epochs without validation gain [avb*: 50; mult-vae: 0 = never]\n"
            "  --min-rating R      strong protocol: ratings >= R are interactions [4]\n"
            "  --heldout U         strong protocol: validation (and test) users [100]\n"
            "  --kernel K          scoring kernel, as the daemon's serve.kernel: auto|fp32|bf16|int8 [auto]\n"
            "  --ease-lambda L     --variant ease: its regularisation [chosen on validation among\n"
            "                      10 30 100 300 1000 3000]\n");
}

/* Reads the command line into *o (defaults first); exits on --help (0) and
 * on an unknown option or a malformed number (2). */
static void parse_options(int argc, char **argv, opts_t *o)
{
    *o = (opts_t){.epochs = -1, .seed = 1, .split_seed = 0, .threads = -1, .batch = -1, .heldout = 100,
                  .patience = -1, .hidden = -1, .latent = -1, .anneal_steps = -1, .lr = NAN, .beta = NAN, .lambda = NAN,
                  .alpha = NAN, .noise_input = NAN, .noise_hidden = NAN, .dropout = NAN, .min_rating = 4,
                  .lr_decay = 1, .input_norm = NAN, .ease_lambda = NAN};
    o->kernel = "auto";
    static const struct option longopts[] = {
        {"data", 1, 0, 'd'},         {"format", 1, 0, 'f'},       {"protocol", 1, 0, 'p'},
        {"variant", 1, 0, 'v'},      {"epochs", 1, 0, 'e'},       {"seed", 1, 0, 's'},
        {"threads", 1, 0, 't'},      {"split-seed", 1, 0, 'S'},   {"batch", 1, 0, 'b'},
        {"likelihood", 1, 0, 'l'},   {"anneal-steps", 1, 0, 'A'}, {"alpha", 1, 0, 'a'},
        {"beta", 1, 0, 'B'},         {"lambda", 1, 0, 'L'},       {"lr", 1, 0, 'r'},
        {"dropout", 1, 0, 'D'},      {"noise-input", 1, 0, '1'},  {"noise-hidden", 1, 0, '2'},
        {"hidden", 1, 0, 'H'},       {"latent", 1, 0, 'K'},       {"patience", 1, 0, 'P'},
        {"min-rating", 1, 0, 'm'},   {"heldout", 1, 0, 'u'},      {"help", 0, 0, 'h'},
        {"kernel", 1, 0, 'k'},       {"ease-lambda", 1, 0, 'E'},  {"lr-decay", 1, 0, 'y'},
        {"input-norm", 1, 0, 'n'},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end = NULL;
        double num = optarg ? strtod(optarg, &end) : 0;
        int bad_num = optarg && (end == optarg || *end);
        switch (c) {
        case 'd': o->data = optarg; continue;
        case 'f': o->format = optarg; continue;
        case 'p': o->protocol = optarg; continue;
        case 'v': o->variant = optarg; continue;
        case 'l': o->likelihood = optarg; continue;
        case 'k': o->kernel = optarg; continue;
        case 'h': usage(stdout); exit(0);
        case '?': usage(stderr); exit(2);
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
        case 'e': o->epochs = (int)num; break;
        case 's': o->seed = (int)num; break;
        case 't': o->threads = (int)num; break;
        case 'S': o->split_seed = (int)num; break;
        case 'b': o->batch = (int)num; break;
        case 'A': o->anneal_steps = num; break;
        case 'a': o->alpha = num; break;
        case 'B': o->beta = num; break;
        case 'L': o->lambda = num; break;
        case 'r': o->lr = num; break;
        case 'D': o->dropout = num; break;
        case '1': o->noise_input = num; break;
        case '2': o->noise_hidden = num; break;
        case 'H': o->hidden = (int)num; break;
        case 'K': o->latent = (int)num; break;
        case 'P': o->patience = (int)num; break;
        case 'm': o->min_rating = num; break;
        case 'u': o->heldout = (int)num; break;
        case 'E': o->ease_lambda = num; break;
        case 'y': o->lr_decay = num; break;
        case 'n': o->input_norm = num; break;
        }
    }
    if (optind < argc)
        die("unexpected argument \"%s\" (see --help)", argv[optind]);
}

/* Checks the options, resolves the names (format, protocol, variant,
 * likelihood) and the defaults that depend on nothing else (epochs,
 * threads); exits 2 naming the first bad one. */
static void check_options(opts_t *o)
{
    if (!o->data || !o->format || !o->protocol || !o->variant)
        die("--data, --format, --protocol and --variant are required (see --help)");
    if (vg_format_from_name(o->format, &o->fmt) < 0)
        die("--format: unknown format \"%s\" (json, csv, ml100k, ml1m, mlcsv)", o->format);
    o->weak = strcmp(o->protocol, "weak") == 0;
    if (!o->weak && strcmp(o->protocol, "strong") != 0)
        die("--protocol: must be weak or strong, not \"%s\"", o->protocol);
    o->ease = strcmp(o->variant, "ease") == 0;
    if (!o->ease && vg_variant_parse(o->variant, &o->var) < 0)
        die("--variant: unknown variant \"%s\" (mult-vae, avb, avb+d, avb+d+c, ease)", o->variant);
    if (!(o->lr_decay > 0 && o->lr_decay <= 1))
        die("--lr-decay: must be in (0, 1]");
    if (!isnan(o->ease_lambda) && !(o->ease_lambda > 0))
        die("--ease-lambda: must be > 0");
    if (o->likelihood && vg_likelihood_parse(o->likelihood, &o->lik) < 0)
        die("--likelihood: must be multinomial or logistic, not \"%s\"", o->likelihood);
    if (vg_kernel_parse(o->kernel, &o->ker) < 0)
        die("--kernel: must be auto, fp32, bf16 or int8, not \"%s\"", o->kernel);
    int study = !o->ease && o->var != VG_VARIANT_MULT_VAE && o->weak; /* the study's weak settings */
    if (o->epochs < 0)
        o->epochs = study ? 400 : 200;
    if (o->patience < 0)
        o->patience = o->var == VG_VARIANT_MULT_VAE ? 0 : 50;
    if (o->epochs < 1 || o->seed < 0 || o->split_seed < 0 || o->heldout < 1)
        die("--epochs must be >= 1, --seed and --split-seed >= 0, --heldout >= 1");
    if (o->threads < 0)
        o->threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (o->threads < 1)
        o->threads = 1;
}

/* ---- phases ------------------------------------------------------------- */

/* Reads the file strictly and returns its ratings with ordering keys for
 * ids (*n of them; the caller frees the array).  Exits on a bad file. */
static vg_rating_t *read_ratings(const opts_t *o, size_t *n)
{
    ratings_t R = {0};
    vg_vocab_init(&R.users);
    vg_vocab_init(&R.items);
    vg_reader_opts_t ro = {.format = o->fmt, .min_rating = -INFINITY, .strict = 1, .on_event = on_event, .ud = &R};
    vg_reader_stats_t rs;
    char err[1024];
    int rc = vg_reader_read(o->data, &ro, &rs, err, sizeof err);
    if (rc < 0)
        die("%s", rc == VG_ENOMEM ? "out of memory" : err);
    int64_t *ukey = vocab_keys(&R.users), *ikey = vocab_keys(&R.items);
    vg_rating_t *rt = malloc(R.n * sizeof *rt);
    for (size_t k = 0; k < R.n; k++)
        rt[k] = (vg_rating_t){ukey[R.u[k]], ikey[R.i[k]], R.r[k]};
    fprintf(stderr, "vaegan-eval: %s: %zu events, %d users, %d items\n", o->data, R.n, R.users.n, R.items.n);
    *n = R.n;
    free(ukey);
    free(ikey);
    free(R.u);
    free(R.i);
    free(R.r);
    vg_vocab_free(&R.users);
    vg_vocab_free(&R.items);
    return rt;
}

/* The protocol's matrices and cutoffs (docs/model.md, "Evaluation protocols"):
 * train on `train`; choose the epoch by NDCG@val_cut of val_in -> val_out;
 * report the cutoffs of test_in -> test_out. */
typedef struct {
    vg_weak_split_t ws;   /* weak protocol: owns the matrices */
    vg_strong_split_t ss; /* strong protocol: owns the matrices */
    const vg_csr_t *train, *val_in, *val_out, *test_in, *test_out;
    int val_cut, cuts[3], n_cuts;
} eval_split_t;

/* Builds the split (exits when the data cannot be split) and reports its size. */
static void make_split(const opts_t *o, const vg_rating_t *rt, size_t n, eval_split_t *sp)
{
    memset(sp, 0, sizeof *sp);
    int rc;
    if (o->weak) {
        rc = vg_split_weak(rt, n, (uint32_t)o->split_seed, 0.2, 0.1, &sp->ws);
        if (rc < 0)
            die("%s: cannot build the weak split: %s", o->data, vg_strerror(rc));
        sp->train = &sp->ws.train_fit, sp->val_in = &sp->ws.train_fit, sp->val_out = &sp->ws.val;
        sp->test_in = &sp->ws.train_full, sp->test_out = &sp->ws.test;
        sp->val_cut = 20, sp->cuts[0] = 5, sp->cuts[1] = 20, sp->n_cuts = 2;
    } else {
        rc = vg_split_strong(rt, n, (uint32_t)o->split_seed, (float)o->min_rating, o->heldout, 0.2, &sp->ss);
        if (rc < 0)
            die("%s: cannot build the strong split (needs more than %d users with >= 5 ratings >= %g): %s",
                o->data, 2 * o->heldout, o->min_rating, vg_strerror(rc));
        sp->train = &sp->ss.train, sp->val_in = &sp->ss.val_in, sp->val_out = &sp->ss.val_out;
        sp->test_in = &sp->ss.test_in, sp->test_out = &sp->ss.test_out;
        sp->val_cut = 100, sp->cuts[0] = 20, sp->cuts[1] = 50, sp->cuts[2] = 100, sp->n_cuts = 3;
    }
    fprintf(stderr, "vaegan-eval: %s split (seed %d): %d training users, %d items, %lld training interactions\n",
            o->protocol, o->split_seed, sp->train->rows, sp->train->cols, (long long)vg_csr_nnz(sp->train));
}

static void split_free(const opts_t *o, eval_split_t *sp)
{
    if (o->weak)
        vg_split_weak_free(&sp->ws);
    else
        vg_split_strong_free(&sp->ss);
}

/* Users per mini-batch: --batch, else the default (500; mult-vae weak: 256),
 * at most all users. */
static int batch_size(const opts_t *o, int n_users)
{
    int batch = o->batch > 0 ? o->batch : (o->weak && o->var == VG_VARIANT_MULT_VAE ? 256 : 500);
    return batch > n_users ? n_users : batch;
}

/* The avb variants' settings that the study chose on the strong protocol's
 * validation: the model's defaults before the study (tools/study.py kept
 * them; its weak choice is vg_model_cfg_default's). */
static void strong_defaults(vg_model_cfg_t *c)
{
    c->likelihood = VG_LIK_MULTINOMIAL;
    c->latent = 200;
    c->alpha_cap = 0.2;
    c->beta = c->variant >= VG_VARIANT_AVB_D ? 0.2 : 0;
    c->lambda = c->variant == VG_VARIANT_AVB_D_C ? 3e-4 : 0;
    c->dropout = 0.5;
    c->noise_input = -1; /* 1/sqrt(N) */
}

/* The variant's defaults (the avb variants on the strong protocol: the
 * study's strong choice), then the options; the avb variants anneal alpha
 * over the whole run unless --anneal-steps says otherwise.  Exits on a
 * configuration the model refuses. */
static void make_model(const opts_t *o, int n_users, int n_items, int batch, vg_model_t *m)
{
    int n_batches = (n_users + batch - 1) / batch;
    vg_model_cfg_t cfg;
    vg_model_cfg_default(&cfg, o->var);
    if (!o->weak && o->var != VG_VARIANT_MULT_VAE)
        strong_defaults(&cfg);
    if (o->likelihood)
        cfg.likelihood = o->lik;
    if (o->hidden > 0)
        cfg.hidden = o->hidden;
    if (o->latent > 0)
        cfg.latent = o->latent;
    cfg.seed = (uint64_t)o->seed;
    cfg.anneal_steps = o->anneal_steps >= 0                   ? o->anneal_steps
                       : o->var == VG_VARIANT_MULT_VAE ? 200000
                                                         : (double)o->epochs * n_batches;
#define OVERRIDE(field, v)                                                                               \
    if (!isnan(v))                                                                                       \
    cfg.field = v
    OVERRIDE(alpha_cap, o->alpha);
    OVERRIDE(beta, o->beta);
    OVERRIDE(lambda, o->lambda);
    OVERRIDE(lr, o->lr);
    OVERRIDE(dropout, o->dropout);
    OVERRIDE(noise_input, o->noise_input);
    OVERRIDE(noise_hidden, o->noise_hidden);
    OVERRIDE(input_norm, o->input_norm);
#undef OVERRIDE
    int rc = vg_model_init(m, &cfg, n_items, batch);
    if (rc < 0)
        die("cannot set up the model: %s (check the hyperparameters)", vg_strerror(rc));
}

/* One pass over the training users in the order perm[], in mini-batches of
 * `batch` (xb: the reused batch matrix); returns the mean of each step
 * statistic (alpha: the last step's). */
static vg_step_stats_t train_epoch(vg_model_t *m, const vg_csr_t *train, const int *perm, int batch, vg_csr_t *xb)
{
    const int n_users = train->rows, n_batches = (n_users + batch - 1) / batch;
    vg_step_stats_t st, sum = {0};
    for (int b = 0; b < n_batches; b++) {
        int s = b * batch, n = n_users - s < batch ? n_users - s : batch;
        if (vg_csr_gather(xb, train, perm + s, n) < 0)
            die("out of memory");
        vg_model_train_step(m, xb, &st);
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
    return sum;
}

typedef struct {
    double best;    /* the best validation NDCG */
    int best_epoch; /* its epoch (1-based) */
    int epochs_run; /* fewer than --epochs when --patience stopped the run */
    double t_train; /* seconds spent in training passes (validation excluded) */
} train_result_t;

/* Trains for the epochs (users reshuffled each epoch), validating after each
 * and printing one progress line; stops early after --patience epochs
 * without gain; leaves the best epoch's weights in the model. */
static void train(const opts_t *o, const eval_split_t *sp, vg_model_t *m, int batch, train_result_t *r)
{
    const int n_users = sp->train->rows;
    /* best-epoch snapshot of the weights */
    vg_real *best_w[VG_P_COUNT] = {0};
    for (int p = 0; p < VG_P_COUNT; p++)
        best_w[p] = malloc((m->p[p].rows * m->p[p].cols + 1) * sizeof(vg_real));

    vg_rng_t order_rng;
    vg_rng_seed(&order_rng, (uint64_t)o->seed * 7919 + 17);
    int *perm = malloc((size_t)n_users * sizeof *perm);
    for (int u = 0; u < n_users; u++)
        perm[u] = u;
    vg_csr_t xb = {0};
    *r = (train_result_t){.best = -1, .best_epoch = -1};
    int bad = 0;
    const double t_first = vg_mono_s(), lr0 = m->cfg.lr;
    for (int e = 0; e < o->epochs; e++) {
        double t0 = vg_mono_s();
        m->cfg.lr = lr0 * pow(o->lr_decay, e);
        vg_rng_shuffle(&order_rng, perm, n_users);
        vg_step_stats_t sum = train_epoch(m, sp->train, perm, batch, &xb);
        r->t_train += vg_mono_s() - t0;
        r->epochs_run = e + 1;
        vg_rankeval_t vm;
        vg_rankeval_init(&vm, &sp->val_cut, 1);
        evaluate(m, o->ker, sp->val_in, sp->val_out, &vm, NULL, 0, NULL);
        double v = vm.ndcg[0], now = vg_mono_s(), elapsed = now - t_first;
        char el[VG_FMT_MAX], eta[VG_FMT_MAX]; /* ETA at the mean epoch so far (--patience may end sooner) */
        fprintf(stderr,
                "epoch %3d/%d  loss_G %.4f  nll %.3f  %s %.4f  T %.3f loss_T %.3f  loss_D %.3f D(real) %.3f "
                "D(fake) %.3f  contr %.2f  alpha %.4f  val G@%d %.4f%s  %.2fs  elapsed %s  ETA %s\n",
                e + 1, o->epochs, sum.loss_g, sum.nll, "kl", sum.kl, sum.t_q, sum.loss_t, sum.loss_d, sum.d_real,
                sum.d_fake, sum.contr, sum.alpha, sp->val_cut, v, v > r->best ? " *" : "", now - t0,
                vg_fmt_duration(el, sizeof el, elapsed),
                vg_fmt_duration(eta, sizeof eta, elapsed / (e + 1) * (o->epochs - e - 1)));
        if (v > r->best) {
            r->best = v;
            r->best_epoch = e + 1;
            bad = 0;
            for (int p = 0; p < VG_P_COUNT; p++)
                memcpy(best_w[p], m->p[p].w, m->p[p].rows * m->p[p].cols * sizeof(vg_real));
        } else if (o->patience > 0 && ++bad >= o->patience) {
            break;
        }
    }
    m->cfg.lr = lr0;
    for (int p = 0; p < VG_P_COUNT; p++)
        memcpy(m->p[p].w, best_w[p], m->p[p].rows * m->p[p].cols * sizeof(vg_real));
    for (int p = 0; p < VG_P_COUNT; p++)
        free(best_w[p]);
    free(perm);
    vg_csr_free(&xb);
}

/* ---- output -------------------------------------------------------------- */

/* The test metrics at the protocol's cutoffs and the best validation NDCG. */
static void add_metrics(json_t *j, const opts_t *o, const eval_split_t *sp, const vg_rankeval_t *tm, double val)
{
    char key[32];
    for (int k = 0; k < sp->n_cuts; k++) {
        snprintf(key, sizeof key, "R@%d", sp->cuts[k]);
        /* weak: plain recall (CFGAN); strong: hits / min(N, |test|) (Mult-VAE) */
        json_object_set_new(j, key, json_real(o->weak ? tm->recall_plain[k] : tm->recall[k]));
    }
    for (int k = 0; k < sp->n_cuts; k++) {
        snprintf(key, sizeof key, "G@%d", sp->cuts[k]);
        json_object_set_new(j, key, json_real(tm->ndcg[k]));
    }
    if (o->weak)
        for (int k = 0; k < sp->n_cuts; k++) {
            snprintf(key, sizeof key, "M@%d", sp->cuts[k]);
            json_object_set_new(j, key, json_real(tm->mrr[k]));
        }
    snprintf(key, sizeof key, "val_G@%d", sp->val_cut);
    json_object_set_new(j, key, json_real(val));
}

static void print_json(json_t *j)
{
    char *line = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
    printf("%s\n", line);
    fflush(stdout);
    free(line);
    json_decref(j);
}

/* ---- EASE ------------------------------------------------------------------ */

/* Ranks the users of `in` by X_in·B (their items excluded) and scores `out`. */
static void evaluate_ease(const vg_real *B, int N, const vg_csr_t *in, const vg_csr_t *out, vg_rankeval_t *met)
{
    const int chunk = 64;
    int maxcut = 0;
    for (int c = 0; c < met->n_cut; c++)
        maxcut = met->cut[c] > maxcut ? met->cut[c] : maxcut;
    vg_real *scores = malloc((size_t)chunk * N * sizeof *scores);
    int32_t *top = malloc((size_t)maxcut * sizeof *top);
    int *sel = malloc((size_t)chunk * sizeof *sel);
    vg_csr_t batch = {0};
    if (!scores || !top || !sel)
        die("out of memory");
    for (int s = 0; s < in->rows; s += chunk) {
        int n = in->rows - s < chunk ? in->rows - s : chunk;
        for (int k = 0; k < n; k++)
            sel[k] = s + k;
        if (vg_csr_gather(&batch, in, sel, n) < 0)
            die("out of memory");
        vg_ease_score(B, N, &batch, scores);
        for (int k = 0; k < n; k++) {
            int u = s + k, nt = vg_topn(scores + (size_t)k * N, N, in->indices + in->indptr[u],
                                        vg_csr_row_len(in, u), maxcut, top, NULL);
            vg_rankeval_add_user(met, top, nt, out->indices + out->indptr[u], vg_csr_row_len(out, u));
        }
    }
    vg_rankeval_finish(met);
    vg_csr_free(&batch);
    free(scores);
    free(top);
    free(sel);
}

/* EASE fitted on X at lambda into B, evaluated on (in, out) at the cutoffs. */
static void fit_and_evaluate(const vg_csr_t *X, double lambda, vg_real *B, const vg_csr_t *in, const vg_csr_t *out,
                             const int *cuts, int n_cuts, vg_rankeval_t *met)
{
    int rc = vg_ease_fit(X, lambda, B);
    if (rc)
        die("EASE at lambda %g: %s", lambda, vg_strerror(rc));
    vg_rankeval_init(met, cuts, n_cuts);
    evaluate_ease(B, X->cols, in, out, met);
}

/* --variant ease: λ by validation NDCG among the grid (or --ease-lambda),
 * then the test metrics.  Weak protocol: fitted on the training users'
 * fit part for validation, refitted on all their training data for the test
 * (as the VAE's test fold-in); strong: fitted once on the training users. */
static void run_ease(const opts_t *o, const eval_split_t *sp, double t_start)
{
    static const double grid[] = {10, 30, 100, 300, 1000, 3000};
    const int N = sp->train->cols, n_grid = isnan(o->ease_lambda) ? 6 : 1;
    vg_real *B = malloc((size_t)N * N * sizeof *B);
    if (!B)
        die("out of memory for EASE's %d x %d weights", N, N);
    double best = -1, best_l = 0;
    for (int g = 0; g < n_grid; g++) {
        double l = n_grid == 1 ? o->ease_lambda : grid[g];
        vg_rankeval_t vm;
        fit_and_evaluate(sp->train, l, B, sp->val_in, sp->val_out, &sp->val_cut, 1, &vm);
        fprintf(stderr, "ease: lambda %g  val G@%d %.4f%s\n", l, sp->val_cut, vm.ndcg[0], vm.ndcg[0] > best ? " *" : "");
        if (vm.ndcg[0] > best) {
            best = vm.ndcg[0];
            best_l = l;
        }
    }
    vg_rankeval_t tm;
    fit_and_evaluate(o->weak ? sp->test_in : sp->train, best_l, B, sp->test_in, sp->test_out, sp->cuts, sp->n_cuts, &tm);
    free(B);
    json_t *j = json_object();
    json_object_set_new(j, "variant", json_string("ease"));
    json_object_set_new(j, "protocol", json_string(o->protocol));
    json_object_set_new(j, "split_seed", json_integer(o->split_seed));
    json_object_set_new(j, "lambda", json_real(best_l));
    add_metrics(j, o, sp, &tm, best);
    json_object_set_new(j, "users", json_integer(sp->train->rows));
    json_object_set_new(j, "items", json_integer(N));
    json_object_set_new(j, "wall_s", json_real(round((vg_mono_s() - t_start) * 100) / 100));
    print_json(j);
}

/* The result as one JSON line on stdout: the run, the test metrics at the
 * protocol's cutoffs, the best validation NDCG, sizes and timings. */
static void print_result(const opts_t *o, const eval_split_t *sp, const vg_model_t *m, int batch,
                         const train_result_t *r, const vg_rankeval_t *tm, const char *kpath, double same10,
                         double t_start)
{
    json_t *j = json_object();
    json_object_set_new(j, "variant", json_string(o->variant));
    json_object_set_new(j, "kernel", json_string(kpath));
    json_object_set_new(j, "top10_as_fp32", json_real(same10)); /* test users whose top-10 is fp32's */
    json_object_set_new(j, "protocol", json_string(o->protocol));
    json_object_set_new(j, "seed", json_integer(o->seed));
    json_object_set_new(j, "split_seed", json_integer(o->split_seed));
    json_object_set_new(j, "epochs", json_integer(o->epochs));
    json_object_set_new(j, "epochs_run", json_integer(r->epochs_run));
    json_object_set_new(j, "best_epoch", json_integer(r->best_epoch));
    add_metrics(j, o, sp, tm, r->best);
    json_object_set_new(j, "likelihood", json_string(vg_likelihood_name(m->cfg.likelihood)));
    json_object_set_new(j, "users", json_integer(sp->train->rows));
    json_object_set_new(j, "items", json_integer(sp->train->cols));
    json_object_set_new(j, "batch", json_integer(batch));
    const vg_model_cfg_t *c = &m->cfg;
    json_object_set_new(j, "anneal_steps", json_real(c->anneal_steps));
    json_t *hp = json_object(); /* the hyperparameters as trained */
    json_object_set_new(hp, "hidden", json_integer(c->hidden));
    json_object_set_new(hp, "latent", json_integer(c->latent));
    const struct {
        const char *name;
        double v;
    } reals[] = {{"alpha", c->alpha_cap},        {"beta", c->beta},
                 {"lambda", c->lambda},          {"dropout", c->dropout},
                 {"lr", c->lr},                  {"lr_decay", o->lr_decay},
                 {"noise_input", c->noise_input}, {"noise_hidden", c->noise_hidden},
                 {"input_norm", c->input_norm}};
    for (size_t k = 0; k < sizeof reals / sizeof reals[0]; k++)
        json_object_set_new(hp, reals[k].name, json_real(reals[k].v));
    json_object_set_new(j, "hyper", hp);
    json_object_set_new(j, "threads", json_integer(o->threads));
    json_object_set_new(j, "blas_core", json_string(vg_blas_core()));
    json_object_set_new(j, "wall_s", json_real(round((vg_mono_s() - t_start) * 100) / 100));
    json_object_set_new(j, "s_per_epoch", json_real(round(r->t_train / r->epochs_run * 1e4) / 1e4));
    print_json(j);
}

int main(int argc, char **argv)
{
    char msg[512];
    int brc = vg_blas_setup(argc, argv, msg, sizeof msg);
    fprintf(stderr, "vaegan-eval: %s\n", msg);
    if (brc < 0)
        return 1;
    double t_start = vg_mono_s();

    opts_t o;
    parse_options(argc, argv, &o);
    check_options(&o);
    vg_blas_set_threads(o.threads);

    size_t n;
    vg_rating_t *rt = read_ratings(&o, &n);
    eval_split_t sp;
    make_split(&o, rt, n, &sp);
    if (o.ease) {
        run_ease(&o, &sp, t_start);
        split_free(&o, &sp);
        free(rt);
        return 0;
    }
    const int batch = batch_size(&o, sp.train->rows);
    vg_model_t m;
    make_model(&o, sp.train->rows, sp.train->cols, batch, &m);
    train_result_t tr;
    train(&o, &sp, &m, batch, &tr);
    vg_rankeval_t tm;
    vg_rankeval_init(&tm, sp.cuts, sp.n_cuts);
    char kpath[128];
    double same10;
    evaluate(&m, o.ker, sp.test_in, sp.test_out, &tm, kpath, sizeof kpath, &same10);
    print_result(&o, &sp, &m, batch, &tr, &tm, kpath, same10, t_start);

    vg_model_close(&m);
    split_free(&o, &sp);
    free(rt);
    return 0;
}
