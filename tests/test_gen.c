/*
 * test_gen.c — runs the built vaegan-gen: deterministic for a seed, exact
 * event count, every JSON line as the contract reads it (string ids, integer
 * increasing ts), CSV the same events, usage errors naming the option, the
 * MovieLens-20M shape cheap (in CPU time), and a structure a recommender can
 * learn: item co-occurrence inside users predicts a user's later items much
 * better than popularity does (a generator without latent structure scores
 * ~1x).
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "common/clock.h"
#include "tests/support/tmpdir.h"

typedef struct {
    int status; /* exit status, or -1 when killed */
    char *out;
    size_t out_len;
    char *err;
} run_t;

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    size_t cap = 1 << 16, n = 0, r;
    char *buf = malloc(cap);
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 >= cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[n] = '\0';
    fclose(f);
    if (len)
        *len = n;
    return buf;
}

/* User + system CPU seconds of the reaped children so far (getrusage). */
static double children_cpu_s(void)
{
    struct rusage ru;
    cr_assert_eq(getrusage(RUSAGE_CHILDREN, &ru), 0);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* Runs vaegan-gen with `args` (shell words), capturing stdout and stderr. */
static run_t gen(const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s/out' 2>'%s/err'", VG_GEN_BIN, args, vg_tmpdir, vg_tmpdir);
    int st = system(cmd);
    cr_assert_neq(st, -1);
    run_t r = {WIFEXITED(st) ? WEXITSTATUS(st) : -1, NULL, 0, NULL};
    char path[128];
    snprintf(path, sizeof path, "%s/out", vg_tmpdir);
    r.out = slurp(path, &r.out_len);
    snprintf(path, sizeof path, "%s/err", vg_tmpdir);
    r.err = slurp(path, NULL);
    return r;
}

static void run_free(run_t *r)
{
    free(r->out);
    free(r->err);
}

/* "u123" -> 123 (asserts the shape and range). */
static long parse_id(const char *s, char prefix, long n)
{
    cr_assert_eq(s[0], prefix, "id %s", s);
    cr_assert(s[1] >= '0' && s[1] <= '9', "id %s", s);
    cr_assert(!(s[1] == '0' && s[2]), "no leading zeros: %s", s);
    char *end;
    long v = strtol(s + 1, &end, 10);
    cr_assert_eq(*end, '\0', "id %s", s);
    cr_assert(v >= 0 && v < n, "id %s out of range %ld", s, n);
    return v;
}

typedef struct {
    long *user, *item;
    long long *ts;
    size_t n;
} events_t;

static events_t parse_json_lines(char *text, long users, long items)
{
    events_t e = {0};
    size_t cap = 1024;
    e.user = malloc(cap * sizeof *e.user);
    e.item = malloc(cap * sizeof *e.item);
    e.ts = malloc(cap * sizeof *e.ts);
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        cr_assert_not_null(o, "line %zu is not JSON (%s): %s", e.n + 1, jerr.text, line);
        cr_assert(json_is_object(o) && json_object_size(o) == 3, "line %s", line);
        json_t *u = json_object_get(o, "user"), *i = json_object_get(o, "item"), *t = json_object_get(o, "ts");
        cr_assert(json_is_string(u) && json_is_string(i) && json_is_integer(t), "line %s", line);
        if (e.n == cap) {
            cap *= 2;
            e.user = realloc(e.user, cap * sizeof *e.user);
            e.item = realloc(e.item, cap * sizeof *e.item);
            e.ts = realloc(e.ts, cap * sizeof *e.ts);
        }
        e.user[e.n] = parse_id(json_string_value(u), 'u', users);
        e.item[e.n] = parse_id(json_string_value(i), 'i', items);
        e.ts[e.n] = json_integer_value(t);
        e.n++;
        json_decref(o);
    }
    return e;
}

static void events_free(events_t *e)
{
    free(e->user);
    free(e->item);
    free(e->ts);
}

Test(gen, deterministic_per_seed, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove)
{
    run_t a = gen("--users 500 --items 200 --events 20000 --seed 7");
    run_t b = gen("--users 500 --items 200 --events 20000 --seed 7");
    run_t c = gen("--users 500 --items 200 --events 20000 --seed 8");
    cr_assert_eq(a.status, 0, "%s", a.err);
    cr_assert_str_eq(a.err, "");
    cr_assert_eq(a.out_len, b.out_len);
    cr_assert_eq(memcmp(a.out, b.out, a.out_len), 0, "same seed, same bytes");
    cr_assert(a.out_len != c.out_len || memcmp(a.out, c.out, a.out_len) != 0, "another seed differs");
    /* "--opt=value" is the same as "--opt value"; the default format is json */
    run_t d = gen("--users=500 --items=200 --events=20000 --seed=7 --format json");
    cr_assert_eq(d.out_len, a.out_len);
    cr_assert_eq(memcmp(a.out, d.out, a.out_len), 0);
    run_free(&a), run_free(&b), run_free(&c), run_free(&d);
}

Test(gen, json_lines_follow_the_contract, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove)
{
    run_t r = gen("--users 300 --items 1000 --events 12345 --seed 3 --format json");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(r.out_len > 0 && r.out[r.out_len - 1] == '\n');
    events_t e = parse_json_lines(r.out, 300, 1000);
    cr_assert_eq(e.n, 12345, "exactly --events lines");
    char *seen = calloc(300, 1);
    for (size_t k = 0; k < e.n; k++) {
        seen[e.user[k]] = 1;
        if (k)
            cr_assert_gt(e.ts[k], e.ts[k - 1], "ts increases");
        cr_assert(e.ts[k] >= 1000000000LL && e.ts[k] < 4000000000LL, "plausible Unix seconds");
    }
    for (int u = 0; u < 300; u++)
        cr_assert(seen[u], "user u%d has no event although events >= users", u);
    free(seen);
    events_free(&e);
    run_free(&r);

    r = gen("--users 5 --items 5 --events 0 --seed 1");
    cr_assert_eq(r.status, 0);
    cr_assert_eq(r.out_len, 0);
    run_free(&r);
    r = gen("--users 1 --items 1 --events 3 --seed 1");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_str_eq(r.out, "{\"user\":\"u0\",\"item\":\"i0\",\"ts\":1700000000}\n"
                            "{\"user\":\"u0\",\"item\":\"i0\",\"ts\":1700000001}\n"
                            "{\"user\":\"u0\",\"item\":\"i0\",\"ts\":1700000002}\n");
    run_free(&r);
}

Test(gen, csv_has_the_same_events, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove)
{
    run_t j = gen("--users 100 --items 50 --events 5000 --seed 11");
    run_t c = gen("--users 100 --items 50 --events 5000 --seed 11 --format csv");
    cr_assert_eq(j.status, 0, "%s", j.err);
    cr_assert_eq(c.status, 0, "%s", c.err);
    events_t e = parse_json_lines(j.out, 100, 50);
    size_t k = 0;
    for (char *save = NULL, *line = strtok_r(c.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), k++) {
        char want[128];
        cr_assert_lt(k, e.n);
        snprintf(want, sizeof want, "u%ld,i%ld,%lld", e.user[k], e.item[k], e.ts[k]);
        cr_assert_str_eq(line, want, "csv line %zu", k + 1);
    }
    cr_assert_eq(k, e.n);
    events_free(&e);
    run_free(&j), run_free(&c);
}

Test(gen, usage_errors_name_the_option, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove)
{
    static const struct {
        const char *args, *names;
    } cases[] = {
        {"--users abc --items 10 --events 10", "--users"},
        {"--users 10 --items -3 --events 10", "--items"},
        {"--users 10 --items 10 --events 1.5", "--events"},
        {"--users 10 --items 10 --events 10 --seed x", "--seed"},
        {"--users 0 --items 10 --events 10", "--users"},
        {"--users 10 --items 10", "--events"},
        {"--items 10 --events 10", "--users"},
        {"--users 10 --items 10 --events 10 --format xml", "--format"},
        {"--users 10 --items 10 --events 10 --bogus", "--bogus"},
        {"--users 10 --items 10 --events", "--events"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_t r = gen(cases[i].args);
        cr_assert_eq(r.status, 2, "%s: exit %d", cases[i].args, r.status);
        cr_assert_not_null(strstr(r.err, cases[i].names), "%s: message must name %s: %s", cases[i].args,
                           cases[i].names, r.err);
        cr_assert_eq(r.out_len, 0);
        run_free(&r);
    }
    run_t h = gen("--help");
    cr_assert_eq(h.status, 0);
    cr_assert_not_null(strstr(h.out, "usage: vaegan-gen"));
    run_free(&h);
}

/* Held-out prediction: for each user, items of the first half of their events
 * predict the new items of the second half.  Ranking unseen items by
 * co-occurrence with the user's first-half items (item-item neighbours
 * learnt from everyone's first halves) must beat ranking them by popularity
 * by a wide margin; with no latent structure the two are about equal. */
Test(gen, structure_is_learnable, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove)
{
    enum { U = 1000, I = 300, E = 30000, K = 10 };
    run_t r = gen("--users 1000 --items 300 --events 30000 --seed 5");
    cr_assert_eq(r.status, 0, "%s", r.err);
    events_t e = parse_json_lines(r.out, U, I);
    cr_assert_eq(e.n, E);

    size_t *cnt = calloc(U, sizeof *cnt), *seen = calloc(U, sizeof *seen);
    for (size_t k = 0; k < e.n; k++)
        cnt[e.user[k]]++;
    unsigned char(*train)[I] = calloc(U, sizeof *train), (*test)[I] = calloc(U, sizeof *test);
    for (size_t k = 0; k < e.n; k++) {
        long u = e.user[k];
        if (seen[u]++ < cnt[u] / 2)
            train[u][e.item[k]] = 1;
        else
            test[u][e.item[k]] = 1;
    }
    double *co = calloc((size_t)I * I, sizeof *co), *pop = calloc(I, sizeof *pop);
    for (int u = 0; u < U; u++)
        for (int a = 0; a < I; a++) {
            if (!train[u][a])
                continue;
            pop[a]++;
            for (int b = 0; b < I; b++)
                if (train[u][b] && b != a)
                    co[(size_t)a * I + b]++;
        }

    double hits_co = 0, hits_pop = 0, users = 0;
    for (int u = 0; u < U; u++) {
        int n_new = 0, n_train = 0;
        for (int b = 0; b < I; b++) {
            n_new += test[u][b] && !train[u][b];
            n_train += train[u][b];
        }
        if (!n_new || !n_train)
            continue;
        double score[I];
        for (int b = 0; b < I; b++) {
            score[b] = 0;
            for (int a = 0; a < I; a++)
                if (train[u][a])
                    score[b] += co[(size_t)a * I + b];
        }
        /* top K of each ranking among items the user has not had */
        for (int pass = 0; pass < 2; pass++) {
            const double *s = pass ? pop : score;
            unsigned char taken[I];
            memset(taken, 0, sizeof taken);
            int hits = 0;
            for (int k = 0; k < K; k++) {
                int best = -1;
                for (int b = 0; b < I; b++)
                    if (!train[u][b] && !taken[b] && (best < 0 || s[b] > s[best]))
                        best = b;
                taken[best] = 1;
                hits += test[u][best];
            }
            double recall = (double)hits / (n_new < K ? n_new : K);
            if (pass)
                hits_pop += recall;
            else
                hits_co += recall;
        }
        users++;
    }
    double rc = hits_co / users, rp = hits_pop / users;
    cr_log_info("recall@%d: co-occurrence %.3f, popularity %.3f over %.0f users", K, rc, rp, users);
    cr_assert_gt(users, U / 2);
    cr_assert_gt(rc, 1.5 * rp, "co-occurrence recall %.3f vs popularity %.3f: no learnable structure", rc, rp);
    cr_assert_gt(rc, 0.25);

    free(cnt), free(seen), free(train), free(test), free(co), free(pop);
    events_free(&e);
    run_free(&r);
}

/* The MovieLens-20M shape, 10 M events: the generator is linear and cheap,
 * well under a minute of CPU even in a sanitizer build (a release build
 * takes a few seconds).  The CPU time of the children is what is asserted:
 * unlike the wall time it does not grow when the machine is busy with other
 * work; the wall time is only printed. */
Test(gen, movielens_shape_is_fast, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove, .timeout = 200)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "'%s' --users 138493 --items 27278 --events 10000000 --seed 1 | tail -n 1 >'%s/last'",
             VG_GEN_BIN, vg_tmpdir);
    double cpu0 = children_cpu_s(), t0 = vg_mono_s();
    int st = system(cmd);
    double s = vg_mono_s() - t0, cpu = children_cpu_s() - cpu0;
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char path[128];
    snprintf(path, sizeof path, "%s/last", vg_tmpdir);
    char *last = slurp(path, NULL);
    cr_assert_not_null(strstr(last, "\"ts\":1709999999}\n"), "the 10,000,000th event: %s", last);
    free(last);
    cr_log_info("10 M events in %.2f s wall, %.2f s CPU (generator, tail, shell)", s, cpu);
    cr_assert_lt(cpu, 120.0, "10 M events took %.1f s of CPU", cpu);
}
