/* test_live_quality.c — the live hit rate of a running vaegand (ctest label
 * integration): with metrics.quality_sample = 1.0 every event of a user
 * with a list is judged, before it is applied, against that list and
 * against popularity; on a learnable vaegan-gen stream the trained model's
 * hit rate@20 must beat popularity's by MARGIN.  Also checks the training
 * gauges (loss terms, rounds, snapshot age) and the rates.  Real
 * redis-server, broker and vaegand (tests/support/daemon.h). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "tests/support/daemon.h"
#include "tests/support/proc.h"
#include "tests/support/tmpdir.h"

#define USERS 600
#define ITEMS 400
#define EVENTS 60000
#define WARM 30000 /* events before the measured part */
#define CHUNK 500
#define MARGIN 0.10 /* model hit rate@20 - popularity's, at least */

static vgt_env_t E;

/* vaegan-gen's events: values (JSON lines) and keys (the user). */
typedef struct gen {
    char **val, **key;
    size_t n;
} gen_t;

static gen_t G; /* freed by teardown, whatever the test did */

static void setup(void)
{
    vg_tmpdir_make();
    vgt_env_opts_t o = {.vaegand = VG_VAEGAND_BIN, .mockbroker = VG_MOCKBROKER_BIN, .partitions = 4, .metrics = 1,
                        .settings = "[serve]\ntop_n = 20\nbatch = 64\nrefresh_s = 5\n"
                                    "[model]\nhidden = 64\nlatent = 32\nbatch = 128\n"
                                    "[train]\ninterval_ms = 100\nsteps_per_round = 5\n"};
    cr_assert_eq(vgt_env_start(&E, vg_tmpdir, &o), 0, "servers did not start");
    cr_assert_eq(vgt_env_write_conf(&E, "quality_sample = 1.0\nquality_window = 1000000\n"
                                        "kafka_stats_interval_ms = 500\n"), 0);
}

static void teardown(void)
{
    for (size_t k = 0; k < G.n; k++) {
        free(G.val[k]);
        free(G.key[k]);
    }
    free(G.val);
    free(G.key);
    if (!vgt_env_finish(&E))
        vg_tmpdir_remove();
}

/* Distinct users among events [from, to) of g. */
static int distinct_users(const gen_t *g, size_t from, size_t to)
{
    int n = 0;
    for (size_t k = from; k < to; k++) {
        size_t j = from;
        while (j < k && strcmp(g->key[j], g->key[k]))
            j++;
        n += j == k;
    }
    return n;
}

static void gen_read(gen_t *g)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "'%s' --users %d --items %d --events %d --seed 5", VG_GEN_BIN, USERS, ITEMS, EVENTS);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    g->val = calloc(EVENTS, sizeof *g->val);
    g->key = calloc(EVENTS, sizeof *g->key);
    g->n = 0;
    char line[512];
    while (g->n < EVENTS && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        const char *u = strstr(line, "\"user\":\"");
        cr_assert_not_null(u, "no user in %s", line);
        u += 8;
        g->key[g->n] = strndup(u, strcspn(u, "\""));
        g->val[g->n++] = strdup(line);
    }
    cr_assert_eq(pclose(f), 0);
    cr_assert_eq(g->n, EVENTS);
}

static double metric(const char *name)
{
    return vgt_metric(E.metrics_port, name);
}

static double wait_metric(const char *name, double at_least, double timeout_s)
{
    return vgt_wait_metric(E.metrics_port, name, at_least, timeout_s);
}

static void produce(const gen_t *g, size_t from, size_t to)
{
    cr_assert_eq(vgt_produce(E.addr, "clicks", (const char *const *)g->key + from, (const char *const *)g->val + from,
                             NULL, to - from), 0, "produce failed");
}

typedef struct hits {
    double samples, model20, pop20, model10, pop10;
} hits_t;

static hits_t read_hits(void)
{
    return (hits_t){metric("vaegan_quality_samples_total"),
                    metric("vaegan_quality_hits_total{ranking=\"model\",k=\"20\"}"),
                    metric("vaegan_quality_hits_total{ranking=\"popularity\",k=\"20\"}"),
                    metric("vaegan_quality_hits_total{ranking=\"model\",k=\"10\"}"),
                    metric("vaegan_quality_hits_total{ranking=\"popularity\",k=\"10\"}")};
}

Test(live_quality, the_model_beats_popularity, .init = setup, .fini = teardown, .timeout = 900)
{
    gen_t *g = &G;
    gen_read(g);
    E.daemon = vgt_env_spawn(&E, NULL);
    cr_assert_eq(vgt_wait_log(&E, "consumer group joined", NULL, 1, 120), 1, "never joined");

    /* warm-up: the model learns the stream's tastes */
    produce(g, 0, WARM);
    cr_assert_geq(wait_metric("vaegan_events_stored_total", WARM, 300), WARM);
    cr_assert_geq(wait_metric("vaegan_train_rounds_total", 40, 300), 40, "the trainer did not get going");
    /* the lists ranked by popularity before the first model are all re-ranked once it exists */
    double lists = metric("vaegan_lists_written_total");
    cr_assert_geq(wait_metric("vaegan_lists_written_total", lists + USERS, 300), lists + USERS);
    cr_assert_geq(wait_metric("vaegan_quality_users", USERS, 120), USERS, "every user's list is kept (sample 1.0)");

    /* measured: chunk by chunk, each judged on the lists of the chunks before
     * (the next chunk goes out once as many lists were written as the chunk
     * had users) */
    hits_t a = read_hits();
    for (size_t from = WARM; from < EVENTS; from += CHUNK) {
        lists = metric("vaegan_lists_written_total");
        produce(g, from, from + CHUNK);
        cr_assert_geq(wait_metric("vaegan_events_stored_total", (double)(from + CHUNK), 120), (double)(from + CHUNK));
        double want = lists + distinct_users(g, from, from + CHUNK);
        cr_assert_geq(wait_metric("vaegan_lists_written_total", want, 120), want, "the chunk's users got lists");
    }
    hits_t b = read_hits();
    double n = b.samples - a.samples;
    cr_assert_gt(n, 2000, "%.0f of %d events judged (the others: repeats)", n, EVENTS - WARM);
    double m20 = (b.model20 - a.model20) / n, p20 = (b.pop20 - a.pop20) / n;
    double m10 = (b.model10 - a.model10) / n, p10 = (b.pop10 - a.pop10) / n;
    fprintf(stderr, "live quality over %.0f judged events: HR@20 model %.3f, popularity %.3f; HR@10 model %.3f, "
            "popularity %.3f (%.0f training rounds)\n", n, m20, p20, m10, p10, metric("vaegan_train_rounds_total"));
    cr_assert_geq(m20, p20 + MARGIN, "model HR@20 %.3f, popularity %.3f: want a margin of %.2f", m20, p20, MARGIN);
    cr_assert_geq(b.model10 - a.model10, 0);

    /* the window's gauges and the training gauges are there and sane */
    double rate = metric("vaegan_quality_hit_rate{ranking=\"model\",k=\"20\"}");
    cr_assert(rate > 0 && rate <= 1, "hit rate gauge %g", rate);
    cr_assert(isfinite(metric("vaegan_train_loss{term=\"nll\"}")), "nll gauge");
    double age = metric("vaegan_snapshot_age_seconds");
    cr_assert(age >= 0 && age < 120, "snapshot age %g s", age);
    cr_assert_geq(metric("vaegan_newest_event_age_seconds"), 0);
    double end = vg_mono_s() + 60;
    while (metric("vaegan_kafka_lag_messages") != 0 && vg_mono_s() < end)
        vgt_sleep_ms(100);
    cr_assert_eq(metric("vaegan_kafka_lag_messages"), 0, "lag left after everything was stored");
}
