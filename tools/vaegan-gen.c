/*
 * vaegan-gen — a synthetic, learnable click stream for tests, demos and
 * benchmarks: `vaegan-gen --users U --items I --events E [--seed S]
 * [--format json|csv]` writes E events on stdout, one per line, as the
 * daemon's contract reads them:
 *
 *     {"user":"u17","item":"i203","ts":1700000123}      (--format json, default)
 *     u17,i203,1700000123                               (--format csv)
 *
 * Ids are u0..u<U-1> and i0..i<I-1>; ts starts at 1700000000 and grows by
 * one second per event (so it is strictly increasing and unique).  The
 * output is a pure function of the arguments: the same seed gives the same
 * bytes on every run (xoshiro256** from model/rng.h, no time or address
 * dependence).
 *
 * The generative model (latent clusters, so a recommender has something to
 * learn):
 *   - C = min(10, I) taste clusters.  Items are dealt to clusters in a
 *     random order (round-robin over a shuffle: sizes differ by at most 1).
 *     Inside its cluster each item has a random popularity rank r and
 *     weight 1 / (r + 1)^0.8 (Zipf-like).
 *   - Each user has a main cluster and a different secondary cluster, both
 *     uniform, and an activity weight exp(N(0, 1)) (log-normal: a few
 *     heavy users, many light ones).
 *   - Each event picks its user by activity, except that the first event of
 *     every user is placed at a uniformly random position of the stream
 *     (selection sampling), so with E >= U every user appears at least once;
 *     then the item: with probability 0.75 from the user's main cluster,
 *     0.15 from the secondary cluster (by the Zipf weights inside the
 *     cluster), 0.10 from the whole catalogue by the same weights (the
 *     "globally popular" noise a popularity baseline captures).
 *   Repeated (user, item) pairs happen, as in real click logs.
 *
 * Draws are O(1) through alias tables (Vose), one 64-bit random word per
 * choice; lines are formatted by hand into a 1 MiB buffer: 10 M events at
 * the MovieLens-20M shape (138k users, 27k items) take a few seconds.
 * Exit status: 0, 1 on a write or memory error, 2 on bad usage (the message
 * names the option).
 *
 * main() is the list of its phases, which are also the order of the random
 * draws (so they must stay in this order): parse_args, make_items (the
 * shuffle and the cluster tables), make_users (clusters, activity, order of
 * first appearance), write_events.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/rng.h"

#define N_CLUSTERS 10
#define ZIPF_S 0.8
#define P_MAIN 0.75
#define P_SECOND 0.15 /* the rest (0.10) is the global draw */
#define TS0 1700000000ULL
#define MAX_IDS 100000000ULL /* users and items: memory grows ~20 bytes per id */
#define OUTBUF (1 << 20)

static void usage(FILE *f)
{
    fputs("usage: vaegan-gen --users U --items I --events E [--seed S] [--format json|csv]\n"
          "\n"
          "Writes E synthetic click events on stdout, one per line: JSON\n"
          "{\"user\":\"u<k>\",\"item\":\"i<k>\",\"ts\":<unix s>} (default) or CSV user,item,ts.\n"
          "Users have latent taste clusters, items Zipf-like popularity, so a model can\n"
          "learn the stream.  The output is identical for identical arguments.\n"
          "\n"
          "  --users U      number of users (1..100000000)\n"
          "  --items I      number of items (1..100000000)\n"
          "  --events E     number of events (0 or more)\n"
          "  --seed S       random seed (0..2^64-1, default 1)\n"
          "  --format F     json (default) or csv\n"
          "  --help         this text\n",
          f);
}

static void die_usage(const char *fmt, const char *arg)
{
    fputs("vaegan-gen: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs(" (see --help)\n", stderr);
    exit(2);
}

/* A whole decimal number in [lo, hi], or exit 2 naming the option. */
static uint64_t parse_number(const char *opt, const char *s, uint64_t lo, uint64_t hi)
{
    char msg[200];
    if (!s || !*s || *s < '0' || *s > '9') {
        snprintf(msg, sizeof msg, "%s needs a whole number, got '%%s'", opt);
        die_usage(msg, s ? s : "");
    }
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi) {
        snprintf(msg, sizeof msg, "%s must be a whole number from %llu to %llu, got '%%s'", opt,
                 (unsigned long long)lo, (unsigned long long)hi);
        die_usage(msg, s);
    }
    return v;
}

/* ---- alias tables --------------------------------------------------------- */

/* Vose's alias method over n weights: draw k uniform, keep it when the low
 * 32 bits of the same random word are below thr[k], else take alias[k]. */
typedef struct {
    uint32_t *thr;
    uint32_t *alias;
} alias_t;

/* Builds the n-entry table for w[0..n-1] at t->thr + off, t->alias + off
 * (several tables can share one pair of arrays).  0 or -1 (no memory). */
static int alias_build(alias_t *t, uint32_t off, const double *w, uint32_t n)
{
    uint32_t *thr = t->thr + off, *alias = t->alias + off;
    double sum = 0;
    for (uint32_t i = 0; i < n; i++)
        sum += w[i];
    double *p = malloc(n * sizeof *p);
    uint32_t *small = malloc(n * sizeof *small), *large = malloc(n * sizeof *large);
    if (!p || !small || !large) {
        free(p), free(small), free(large);
        return -1;
    }
    uint32_t ns = 0, nl = 0;
    for (uint32_t i = 0; i < n; i++) {
        p[i] = w[i] * n / sum;
        alias[i] = i;
        if (p[i] < 1.0)
            small[ns++] = i;
        else
            large[nl++] = i;
    }
    while (ns && nl) {
        uint32_t s = small[--ns], l = large[nl - 1];
        thr[s] = (uint32_t)(p[s] * 4294967296.0);
        alias[s] = l;
        p[l] = (p[l] + p[s]) - 1.0;
        if (p[l] < 1.0) {
            nl--;
            small[ns++] = l;
        }
    }
    while (nl)
        thr[large[--nl]] = UINT32_MAX;
    while (ns) /* rounding leftovers: probability 1 */
        thr[small[--ns]] = UINT32_MAX;
    free(p), free(small), free(large);
    return 0;
}

/* One entry of an n-entry table starting at t + off, from one 64-bit word:
 * the high half picks the column (multiply-shift), the low half the coin. */
static inline uint32_t alias_draw(const alias_t *t, uint32_t off, uint32_t n, uint64_t x)
{
    uint32_t k = (uint32_t)(((x >> 32) * (uint64_t)n) >> 32);
    return (uint32_t)x < t->thr[off + k] ? k : t->alias[off + k];
}

/* ---- output ------------------------------------------------------------- */

static char outbuf[OUTBUF];
static size_t outlen;

static void flush_out(void)
{
    if (outlen && fwrite(outbuf, 1, outlen, stdout) != outlen) {
        perror("vaegan-gen: write");
        exit(1);
    }
    outlen = 0;
}

static inline char *put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static inline char *put_str(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static void shuffle_u32(vg_rng_t *r, uint32_t *a, uint32_t n)
{
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = (uint32_t)vg_rng_below(r, i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

static void out_of_memory(void)
{
    fputs("vaegan-gen: out of memory\n", stderr);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        out_of_memory();
    return p;
}

/* ---- options -------------------------------------------------------------- */

typedef struct {
    uint64_t users, items, events, seed;
    int csv; /* --format csv */
} gen_opts_t;

/* Reads the command line into *o; exits 0 on --help, 2 on a bad or missing
 * option (naming it). */
static void parse_args(int argc, char **argv, gen_opts_t *o)
{
    *o = (gen_opts_t){.seed = 1};
    int have_users = 0, have_items = 0, have_events = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        static const char *const opts[] = {"--users", "--items", "--events", "--seed", "--format"};
        int which = -1;
        const char *val = NULL;
        for (int k = 0; k < 5; k++) {
            size_t n = strlen(opts[k]);
            if (strncmp(a, opts[k], n) == 0 && (a[n] == '\0' || a[n] == '=')) {
                which = k;
                if (a[n] == '=')
                    val = a + n + 1;
                else if (i + 1 < argc)
                    val = argv[++i];
                else
                    die_usage("%s needs a value", opts[k]);
                break;
            }
        }
        switch (which) {
        case 0:
            o->users = parse_number("--users", val, 1, MAX_IDS), have_users = 1;
            break;
        case 1:
            o->items = parse_number("--items", val, 1, MAX_IDS), have_items = 1;
            break;
        case 2:
            o->events = parse_number("--events", val, 0, UINT64_MAX - TS0), have_events = 1;
            break;
        case 3:
            o->seed = parse_number("--seed", val, 0, UINT64_MAX);
            break;
        case 4:
            if (strcmp(val, "json") == 0)
                o->csv = 0;
            else if (strcmp(val, "csv") == 0)
                o->csv = 1;
            else
                die_usage("--format must be json or csv, got '%s'", val);
            break;
        default:
            die_usage("unknown argument '%s'", a);
        }
    }
    if (!have_users)
        die_usage("%s is required", "--users");
    if (!have_items)
        die_usage("%s is required", "--items");
    if (!have_events)
        die_usage("%s is required", "--events");
}

/* ---- the generative model -------------------------------------------------- */

/* The items of the C clusters: cluster c holds citems[coff[c] .. coff[c+1]),
 * drawn by the alias table cl at offset coff[c]; `all` draws a position of
 * citems over the whole catalogue by the same weights. */
typedef struct {
    uint32_t C;
    uint32_t *citems, *coff;
    alias_t cl, all;
} items_t;

/* Each user's main and secondary cluster; `act` draws a user by activity;
 * intro[] is the order of first appearances. */
typedef struct {
    uint8_t *umain, *usecond;
    alias_t act;
    uint32_t *intro;
} users_t;

/* items: cluster by a round-robin deal of a shuffle, Zipf rank inside */
static void make_items(vg_rng_t *rng, uint32_t I, items_t *it)
{
    const uint32_t C = I < N_CLUSTERS ? I : N_CLUSTERS;
    it->C = C;
    uint32_t *order = xmalloc((size_t)I * sizeof *order);
    for (uint32_t i = 0; i < I; i++)
        order[i] = i;
    shuffle_u32(rng, order, I);
    /* cluster c holds order[c], order[c + C], ... : lay them out contiguously,
     * in deal order (the deal order is random, so the rank inside is too) */
    it->citems = xmalloc((size_t)I * sizeof *it->citems);
    it->coff = xmalloc((C + 1) * sizeof *it->coff);
    double *w = xmalloc((size_t)I * sizeof *w);
    uint32_t at = 0;
    for (uint32_t c = 0; c < C; c++) {
        it->coff[c] = at;
        for (uint32_t k = c, r = 0; k < I; k += C, r++) {
            it->citems[at] = order[k];
            w[at] = 1.0 / pow((double)r + 1.0, ZIPF_S);
            at++;
        }
    }
    it->coff[C] = at;
    it->cl = (alias_t){xmalloc((size_t)I * sizeof(uint32_t)), xmalloc((size_t)I * sizeof(uint32_t))};
    for (uint32_t c = 0; c < C; c++)
        if (alias_build(&it->cl, it->coff[c], w + it->coff[c], it->coff[c + 1] - it->coff[c]) != 0)
            out_of_memory();
    /* the catalogue draw: the same weights, over every item */
    it->all = (alias_t){xmalloc((size_t)I * sizeof(uint32_t)), xmalloc((size_t)I * sizeof(uint32_t))};
    if (alias_build(&it->all, 0, w, I) != 0)
        out_of_memory();
    free(w);
    free(order);
}

/* users: main and secondary cluster, log-normal activity; then the order in
 * which they first appear */
static void make_users(vg_rng_t *rng, uint32_t U, uint32_t C, users_t *us)
{
    us->umain = xmalloc(U);
    us->usecond = xmalloc(U);
    double *w = xmalloc((size_t)U * sizeof *w);
    for (uint32_t u = 0; u < U; u++) {
        us->umain[u] = (uint8_t)vg_rng_below(rng, C);
        us->usecond[u] = C > 1 ? (uint8_t)((us->umain[u] + 1 + vg_rng_below(rng, C - 1)) % C) : us->umain[u];
        double u1 = (double)((vg_rng_next(rng) >> 11) + 1) * 0x1.0p-53; /* (0, 1] */
        double u2 = vg_rng_uniform(rng);
        w[u] = exp(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
    us->act = (alias_t){xmalloc((size_t)U * sizeof(uint32_t)), xmalloc((size_t)U * sizeof(uint32_t))};
    if (alias_build(&us->act, 0, w, U) != 0)
        out_of_memory();
    free(w);
    /* first appearances: users in random order at random positions */
    us->intro = xmalloc((size_t)U * sizeof *us->intro);
    for (uint32_t u = 0; u < U; u++)
        us->intro[u] = u;
    shuffle_u32(rng, us->intro, U);
}

/* ---- the stream ------------------------------------------------------------ */

/* Appends one event line to the output buffer (flushing it when nearly full). */
static void put_event(uint32_t u, uint32_t item, uint64_t ts, int csv)
{
    if (outlen > OUTBUF - 128)
        flush_out();
    char *p = outbuf + outlen;
    if (csv) {
        *p++ = 'u';
        p = put_u64(p, u);
        p = put_str(p, ",i", 2);
        p = put_u64(p, item);
        *p++ = ',';
    } else {
        p = put_str(p, "{\"user\":\"u", 10);
        p = put_u64(p, u);
        p = put_str(p, "\",\"item\":\"i", 11);
        p = put_u64(p, item);
        p = put_str(p, "\",\"ts\":", 7);
    }
    p = put_u64(p, ts);
    if (!csv)
        *p++ = '}';
    *p++ = '\n';
    outlen = (size_t)(p - outbuf);
}

/* The E events: each picks its user (a pending first appearance at this
 * position, else by activity), then its item (main cluster, secondary
 * cluster or the whole catalogue). */
static void write_events(vg_rng_t *rng, const gen_opts_t *o, const items_t *it, const users_t *us)
{
    const uint32_t U = (uint32_t)o->users, I = (uint32_t)o->items;
    const uint64_t events = o->events;
    uint64_t intro_left = events < U ? events : U, intro_next = 0;
    const uint64_t main_thr = (uint64_t)(P_MAIN * 4294967296.0);
    const uint64_t second_thr = (uint64_t)((P_MAIN + P_SECOND) * 4294967296.0);
    for (uint64_t j = 0; j < events; j++) {
        uint32_t u;
        if (intro_left && vg_rng_below(rng, events - j) < intro_left) {
            u = us->intro[intro_next++];
            intro_left--;
        } else {
            u = alias_draw(&us->act, 0, U, vg_rng_next(rng));
        }
        uint64_t coin = vg_rng_next(rng) >> 32;
        uint32_t item;
        if (coin < second_thr) {
            uint32_t c = coin < main_thr ? us->umain[u] : us->usecond[u];
            uint32_t off = it->coff[c], n = it->coff[c + 1] - off;
            item = it->citems[off + alias_draw(&it->cl, off, n, vg_rng_next(rng))];
        } else {
            item = it->citems[alias_draw(&it->all, 0, I, vg_rng_next(rng))];
        }
        put_event(u, item, TS0 + j, o->csv);
    }
    flush_out();
}

int main(int argc, char **argv)
{
    gen_opts_t o;
    parse_args(argc, argv, &o);
    vg_rng_t rng;
    vg_rng_seed(&rng, o.seed);
    items_t it;
    make_items(&rng, (uint32_t)o.items, &it);
    users_t us;
    make_users(&rng, (uint32_t)o.users, it.C, &us);
    write_events(&rng, &o, &it, &us);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        perror("vaegan-gen: write");
        return 1;
    }
    free(us.intro), free(us.umain), free(us.usecond), free(us.act.thr), free(us.act.alias);
    free(it.citems), free(it.coff), free(it.cl.thr), free(it.cl.alias), free(it.all.thr), free(it.all.alias);
    return 0;
}
