/* test_config.c — the configuration loader (daemon/config.c) and the shipped
 * config/vaegand.conf: defaults, a full file, every class of error with its
 * FILE:LINE and key (never the value), pass-through options, secrets read
 * from files (redis.password_file, kafka.sasl_password_file, relative names
 * in $CREDENTIALS_DIRECTORY) and the warnings about inline ones, and that
 * the shipped file loads cleanly, holds the defaults and documents exactly
 * the keys the loader knows. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/errors.h"
#include "daemon/config.h"
#include "tests/support/tmpdir.h"

TestSuite(config, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove);

#define VG_TEST_SECRET_MAX 65536 /* daemon/config_secrets.h: the longest secret file */

static vg_config_t cfg;
static char err[1024];
static char path[256];

static void write_file(const char *p, const char *text)
{
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

/* Writes text to <tmp>/t.conf and loads it into cfg (freeing the previous one). */
static int load(const char *text)
{
    vg_config_free(&cfg);
    snprintf(path, sizeof path, "%s/t.conf", vg_tmpdir);
    write_file(path, text);
    memset(err, 0, sizeof err);
    return vg_config_load(&cfg, path, err, sizeof err);
}

/* Asserts that text is refused with VG_ECONFIG and that err starts with
 * "<path>:<line>: " (line 0: "<path>: ") and contains each of want1, want2. */
static void expect_bad(const char *text, int line, const char *want1, const char *want2)
{
    int rc = load(text);
    cr_assert_eq(rc, VG_ECONFIG, "accepted (rc %d):\n%s", rc, text);
    char head[300];
    if (line > 0)
        snprintf(head, sizeof head, "%s:%d: ", path, line);
    else
        snprintf(head, sizeof head, "%s: ", path);
    cr_assert(strncmp(err, head, strlen(head)) == 0, "err \"%s\" does not start with \"%s\"", err, head);
    cr_assert(strstr(err, want1), "err \"%s\" lacks \"%s\"", err, want1);
    if (want2)
        cr_assert(strstr(err, want2), "err \"%s\" lacks \"%s\"", err, want2);
    vg_config_free(&cfg);
}

/* vg_config_dump into a malloc'ed string. */
static char *dump(const vg_config_t *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    vg_config_dump(c, f);
    cr_assert_eq(fclose(f), 0);
    return buf;
}

/* ---- defaults ------------------------------------------------------------ */

Test(config, defaults)
{
    vg_config_default(&cfg);
    cr_assert_str_eq(cfg.kafka.brokers, "127.0.0.1:9092");
    cr_assert_str_eq(cfg.kafka.topic, "clicks");
    cr_assert_str_eq(cfg.kafka.group, "vaegand");
    cr_assert_str_eq(cfg.kafka.dlq_topic, "");
    cr_assert_eq(cfg.kafka.n_options, 0);
    cr_assert_eq(cfg.kafka.commit_interval_ms, 1000);
    cr_assert_eq(cfg.kafka.max_pending, 100000);
    cr_assert_str_eq(cfg.redis.host, "127.0.0.1");
    cr_assert_eq(cfg.redis.port, 6379);
    cr_assert_str_eq(cfg.redis.socket, "");
    cr_assert_str_eq(cfg.redis.password, "");
    cr_assert_eq(cfg.redis.db, 0);
    cr_assert_str_eq(cfg.redis.prefix, "");
    cr_assert_eq(cfg.history.max_items, 500);
    cr_assert_eq(cfg.serve.top_n, 100);
    cr_assert_eq(cfg.serve.rec_ttl_s, 0);
    cr_assert_eq(cfg.serve.refresh_s, 600);
    cr_assert_eq(cfg.serve.batch, 256);
    cr_assert_str_eq(cfg.state.dir, "/var/lib/vaegand");
    cr_assert_eq(cfg.state.checkpoint_interval_s, 300);
    cr_assert_eq(cfg.train.interval_ms, 1000);
    cr_assert_eq(cfg.train.min_new_events, 1000);
    cr_assert_eq(cfg.train.steps_per_round, 10);
    cr_assert_eq(cfg.train.recent_fraction, 0.5);
    cr_assert_eq(cfg.train.threads, 1);
    vg_model_cfg_t m;
    vg_model_cfg_default(&m, VG_VARIANT_AVB_D_C);
    cr_assert_eq(memcmp(&cfg.model.cfg, &m, sizeof m), 0);
    cr_assert_eq(cfg.model.cfg.variant, VG_VARIANT_AVB_D_C);
    cr_assert_eq(cfg.model.cfg.noise_input, 0, "the avb variants default to no input noise");
    cr_assert_eq(cfg.model.batch, 500);
    cr_assert_eq(cfg.log.level, VG_LOG_INFO);
    cr_assert_str_eq(cfg.log.file, "");
    cr_assert_eq(cfg.log.progress_interval_s, 5);
    cr_assert_str_eq(cfg.metrics.listen, "127.0.0.1:9464");
    cr_assert_null(cfg.path);
    vg_config_free(&cfg);
    vg_config_free(&cfg); /* twice is harmless */
}

Test(config, empty_file_gives_defaults)
{
    cr_assert_eq(load(""), 0, "%s", err);
    cr_assert_str_eq(cfg.path, path);
    vg_config_t d;
    vg_config_default(&d);
    char *a = dump(&cfg), *b = dump(&d);
    cr_assert_str_eq(a, b);
    free(a);
    free(b);
    vg_config_free(&d);
    vg_config_free(&cfg);
}

/* ---- a full valid file ------------------------------------------------------- */

Test(config, full_file)
{
    int rc = load("; a comment\n"
                  "# another\n"
                  "[kafka]\n"
                  "brokers = embedded\n"
                  "topic = events\n"
                  "group = g1\n"
                  "dlq_topic = dead\n"
                  "commit_interval_ms = 250\n"
                  "max_pending = 5000\n"
                  "option.fetch.wait.max.ms = 10\n"
                  "option.session.timeout.ms = 6000\n"
                  "option.auto.offset.reset = earliest\n"
                  "option.client.id =\n"
                  "\n"
                  "[redis]\n"
                  "host = redis.local\n"
                  "port = 6380\n"
                  "socket = /run/redis.sock\n"
                  "password = s3cret\n"
                  "db = 3\n"
                  "prefix = app:\n"
                  "[history]\n"
                  "max_items = 1000000\n"
                  "[serve]\n"
                  "top_n = 20 ; twenty\n"
                  "rec_ttl_s = 86400\n"
                  "refresh_s = 30\n"
                  "batch = 128\n"
                  "[state]\n"
                  "dir = /tmp/state dir\n"
                  "checkpoint_interval_s = 2\n"
                  "[train]\n"
                  "interval_ms = 200\n"
                  "min_new_events = 0\n"
                  "steps_per_round = 0\n"
                  "recent_fraction = 1\n"
                  "threads = 2\n"
                  "[model]\n"
                  "variant = avb+d\n"
                  "hidden = 300\n"
                  "latent = 50\n"
                  "disc_hidden = 64\n"
                  "likelihood = logistic\n"
                  "alpha_cap = 0.5\n"
                  "anneal_steps = 2e3\n"
                  "beta = 0.3\n"
                  "lambda = 1e-5\n"
                  "dropout = 0\n"
                  "lr = 3e-4\n"
                  "batch = 64\n"
                  "noise_input = 0.02\n"
                  "noise_hidden = 0\n"
                  "seed = 18446744073709551615\n"
                  "[log]\n"
                  "level = debug\n"
                  "file = /var/log/vaegand.log\n"
                  "[metrics]\n"
                  "listen = [::1]:9100\n");
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_str_eq(cfg.kafka.brokers, "embedded");
    cr_assert_str_eq(cfg.kafka.topic, "events");
    cr_assert_str_eq(cfg.kafka.group, "g1");
    cr_assert_str_eq(cfg.kafka.dlq_topic, "dead");
    cr_assert_eq(cfg.kafka.commit_interval_ms, 250);
    cr_assert_eq(cfg.kafka.max_pending, 5000);
    cr_assert_eq(cfg.kafka.n_options, 4);
    cr_assert_str_eq(cfg.redis.host, "redis.local");
    cr_assert_eq(cfg.redis.port, 6380);
    cr_assert_str_eq(cfg.redis.socket, "/run/redis.sock");
    cr_assert_str_eq(cfg.redis.password, "s3cret");
    cr_assert_eq(cfg.redis.db, 3);
    cr_assert_str_eq(cfg.redis.prefix, "app:");
    cr_assert_eq(cfg.history.max_items, 1000000);
    cr_assert_eq(cfg.serve.top_n, 20);
    cr_assert_eq(cfg.serve.rec_ttl_s, 86400);
    cr_assert_eq(cfg.serve.refresh_s, 30);
    cr_assert_eq(cfg.serve.batch, 128);
    cr_assert_str_eq(cfg.state.dir, "/tmp/state dir");
    cr_assert_eq(cfg.state.checkpoint_interval_s, 2);
    cr_assert_eq(cfg.train.interval_ms, 200);
    cr_assert_eq(cfg.train.min_new_events, 0);
    cr_assert_eq(cfg.train.steps_per_round, 0);
    cr_assert_eq(cfg.train.recent_fraction, 1.0);
    cr_assert_eq(cfg.train.threads, 2);
    const vg_model_cfg_t *m = &cfg.model.cfg;
    cr_assert_eq(m->variant, VG_VARIANT_AVB_D);
    cr_assert_eq(m->hidden, 300);
    cr_assert_eq(m->latent, 50);
    cr_assert_eq(m->disc_hidden, 64);
    cr_assert_eq(m->likelihood, VG_LIK_LOGISTIC);
    cr_assert_eq(m->alpha_cap, 0.5);
    cr_assert_eq(m->anneal_steps, 2000.0);
    cr_assert_eq(m->beta, 0.3);
    cr_assert_eq(m->lambda, 1e-5);
    cr_assert_eq(m->dropout, 0.0);
    cr_assert_eq(m->lr, 3e-4);
    cr_assert_eq(cfg.model.batch, 64);
    cr_assert_eq(m->noise_input, 0.02);
    cr_assert_eq(m->noise_hidden, 0.0);
    cr_assert_eq(m->seed, UINT64_MAX);
    cr_assert_eq(cfg.log.level, VG_LOG_DEBUG);
    cr_assert_str_eq(cfg.log.file, "/var/log/vaegand.log");
    cr_assert_str_eq(cfg.metrics.listen, "[::1]:9100");

    char *d = dump(&cfg);
    cr_assert(strstr(d, "redis.password = ***\n"), "%s", d);
    cr_assert(!strstr(d, "s3cret"), "password leaked:\n%s", d);
    cr_assert(strstr(d, "serve.top_n = 20\n"), "%s", d);
    cr_assert(strstr(d, "model.lr = 0.0003\n"), "%s", d);
    cr_assert(strstr(d, "model.variant = avb+d\n"), "%s", d);
    cr_assert(strstr(d, "model.seed = 18446744073709551615\n"), "%s", d);
    cr_assert(strstr(d, "log.level = debug\n"), "%s", d);
    cr_assert(strstr(d, "state.dir = /tmp/state dir\n"), "%s", d);
    cr_assert(strstr(d, "kafka.option.fetch.wait.max.ms = 10\nkafka.option.session.timeout.ms = 6000\n"), "%s", d);
    free(d);
    vg_config_free(&cfg);
}

Test(config, options_pass_through_in_file_order)
{
    cr_assert_eq(load("[kafka]\n"
                      "option.z.last = 1\n"
                      "topic = t\n"
                      "option.a.first = two words\n"
                      "[redis]\n"
                      "port = 1\n"
                      "[kafka]\n"
                      "option.m.middle = x=y;z\n"
                      "option.sasl.password = hunter2\n"),
                 0, "%s", err);
    cr_assert_eq(cfg.kafka.n_options, 4);
    const char *want[] = {"z.last", "1", "a.first", "two words", "m.middle", "x=y;z", "sasl.password", "hunter2"};
    for (int i = 0; i < 8; i++)
        cr_assert_str_eq(cfg.kafka.options[i], want[i]);
    char *d = dump(&cfg);
    cr_assert(strstr(d, "kafka.option.sasl.password = ***\n"), "%s", d);
    cr_assert(!strstr(d, "hunter2"), "%s", d);
    free(d);
    vg_config_free(&cfg);

    expect_bad("[kafka]\noption.a = 1\noption.b = 2\noption.a = 3\n", 4, "kafka.option.a: set twice",
               "first on line 2");
    expect_bad("[kafka]\noption. = 1\n", 2, "kafka.option.", "must not be empty");
    expect_bad("[kafka]\noption.group.id = x\n", 2, "kafka.option.group.id", "kafka.group");
    expect_bad("[kafka]\noption.bootstrap.servers = x\n", 2, "kafka.option.bootstrap.servers", "kafka.brokers");
    expect_bad("[kafka]\noption.enable.auto.offset.store = true\n", 2, "kafka.option.enable.auto.offset.store",
               "at-least-once");
}

Test(config, inline_comments_and_literal_values)
{
    cr_assert_eq(load("[serve]\n"
                      "top_n = 50 ; short lists\n"
                      "[redis]\n"
                      "prefix = a;b\n"
                      "password = p # not a comment\n"
                      "socket = \"/quoted\"\n"
                      "  \n"
                      "[ state ]\n"
                      "dir=/x\n"),
                 0, "%s", err);
    cr_assert_eq(cfg.serve.top_n, 50);
    cr_assert_str_eq(cfg.redis.prefix, "a;b");
    cr_assert_str_eq(cfg.redis.password, "p # not a comment");
    cr_assert_str_eq(cfg.redis.socket, "\"/quoted\"");
    cr_assert_str_eq(cfg.state.dir, "/x");
    vg_config_free(&cfg);
}

Test(config, variant_sets_model_defaults_unless_the_file_does)
{
    cr_assert_eq(load("[model]\nvariant = avb\n"), 0, "%s", err);
    cr_assert_eq(cfg.model.cfg.beta, 0.0);
    cr_assert_eq(cfg.model.cfg.lambda, 0.0);
    cr_assert_eq(cfg.model.cfg.noise_hidden, 0.1);

    cr_assert_eq(load("[model]\nbeta = 0.5\nhidden = 10\nvariant = avb\n"), 0, "%s", err);
    cr_assert_eq(cfg.model.cfg.beta, 0.5, "a value set before the variant is kept");
    cr_assert_eq(cfg.model.cfg.hidden, 10);
    cr_assert_eq(cfg.model.cfg.lambda, 0.0);

    cr_assert_eq(load("[model]\nvariant = mult-vae\n"), 0, "%s", err);
    vg_model_cfg_t m;
    vg_model_cfg_default(&m, VG_VARIANT_MULT_VAE);
    cr_assert_eq(memcmp(&cfg.model.cfg, &m, sizeof m), 0);

    cr_assert_eq(load("[model]\nnoise_input = auto\nnoise_hidden = 0.25\n"), 0, "%s", err);
    cr_assert(cfg.model.cfg.noise_input < 0);
    cr_assert_eq(cfg.model.cfg.noise_hidden, 0.25);
    char *d = dump(&cfg);
    cr_assert(strstr(d, "model.noise_input = auto\n"), "%s", d);
    free(d);
    vg_config_free(&cfg);
}

/* ---- errors: each names FILE:LINE and the key ------------------------------- */

Test(config, unknown_key_and_section)
{
    expect_bad("[serve]\ntopn = 5\n", 2, "serve.topn: unknown key", "did you mean serve.top_n?");
    expect_bad("[serve]\n\nwhatever = 5\n", 3, "serve.whatever: unknown key", NULL);
    expect_bad("[sevre]\ntop_n = 5\n", 2, "sevre.top_n: unknown section [sevre]", "did you mean [serve]?");
    expect_bad("[nothing]\nx = 5\n", 2, "nothing.x: unknown section [nothing]", NULL);
    expect_bad("top_n = 5\n", 1, "top_n: key outside of any [section]", NULL);
    expect_bad("[kafka]\noption = 5\n", 2, "kafka.option: unknown key", NULL);
}

Test(config, not_a_number)
{
    expect_bad("[serve]\ntop_n = abc\n", 2, "serve.top_n: not an integer", NULL);
    expect_bad("[serve]\ntop_n = 1.5\n", 2, "serve.top_n: not an integer", NULL);
    expect_bad("[model]\nlr = fast\n", 2, "model.lr: not a number", NULL);
    expect_bad("[model]\nlr = nan\n", 2, "model.lr: not a finite number", NULL);
    expect_bad("[model]\nbeta = inf\n", 2, "model.beta", "finite");
    expect_bad("[model]\nseed = x\n", 2, "model.seed: not an integer", NULL);
    expect_bad("[model]\nnoise_input = loud\n", 2, "model.noise_input", NULL);
}

Test(config, trailing_garbage)
{
    expect_bad("[serve]\ntop_n = 12abc\n", 2, "serve.top_n: not an integer", "trailing");
    expect_bad("[redis]\nport = 0x10\n", 2, "redis.port", "trailing");
    expect_bad("[model]\nlr = 1e-3x\n", 2, "model.lr", "trailing");
    expect_bad("[model]\nseed = 7 7\n", 2, "model.seed", "trailing");
    expect_bad("[serve]\ntop_n = 5;x\n", 2, "serve.top_n", "trailing");
}

Test(config, empty_number)
{
    expect_bad("[serve]\ntop_n =\n", 2, "serve.top_n: empty value", NULL);
    expect_bad("[model]\nlr = \n", 2, "model.lr: empty value", NULL);
    expect_bad("[model]\nseed =\n", 2, "model.seed: empty value", NULL);
}

Test(config, out_of_range)
{
    expect_bad("[redis]\nport = 70000\n", 2, "redis.port: must be between 1 and 65535", NULL);
    expect_bad("[redis]\nport = 0\n", 2, "redis.port: must be between 1 and 65535", NULL);
    expect_bad("[redis]\ndb = -1\n", 2, "redis.db: must be at least 0", NULL);
    expect_bad("[serve]\ntop_n = 0\n", 2, "serve.top_n: must be between 1 and 10000", NULL);
    expect_bad("[serve]\ntop_n = 10001\n", 2, "serve.top_n", "between 1 and 10000");
    expect_bad("[serve]\ntop_n = 99999999999999999999\n", 2, "serve.top_n", "between 1 and 10000");
    expect_bad("[serve]\nrefresh_s = 0\n", 2, "serve.refresh_s: must be at least 1", NULL);
    expect_bad("[serve]\nrec_ttl_s = -5\n", 2, "serve.rec_ttl_s", "at least 0");
    expect_bad("[history]\nmax_items = 1000001\n", 2, "history.max_items", "between 1 and 1000000");
    expect_bad("[train]\nsteps_per_round = -1\n", 2, "train.steps_per_round", "between 0 and");
    expect_bad("[train]\nrecent_fraction = 1.5\n", 2, "train.recent_fraction: must be between 0 and 1",
               NULL);
    expect_bad("[train]\ninterval_ms = 0\n", 2, "train.interval_ms", "at least 1");
    expect_bad("[model]\ndropout = 1\n", 2, "model.dropout: must be at least 0 and less than 1", NULL);
    expect_bad("[model]\ndropout = -0.1\n", 2, "model.dropout", "less than 1");
    expect_bad("[model]\nlr = 0\n", 2, "model.lr: must be greater than 0", NULL);
    expect_bad("[model]\nlambda = -1e-4\n", 2, "model.lambda", "at least 0");
    expect_bad("[model]\nhidden = 0\n", 2, "model.hidden", "between 1 and");
    expect_bad("[model]\nbatch = 0\n", 2, "model.batch", "between 1 and");
    expect_bad("[model]\nnoise_input = -1\n", 2, "model.noise_input", "auto");
    expect_bad("[model]\nseed = -1\n", 2, "model.seed", "at least 0");
    expect_bad("[model]\nseed = 18446744073709551616\n", 2, "model.seed", "between 0 and");
    expect_bad("[kafka]\nmax_pending = 0\n", 2, "kafka.max_pending", "at least 1");
    expect_bad("[train]\nthreads = 0\n", 2, "train.threads", "between 1 and 256");
    expect_bad("[log]\nprogress_interval_s = 0\n", 2, "log.progress_interval_s", "greater than 0");
    expect_bad("[log]\nprogress_interval_s = 86401\n", 2, "log.progress_interval_s", "86400");
    cr_assert_eq(load("[log]\nprogress_interval_s = 0.02\n"), 0, "%s", err);
    cr_assert_eq(cfg.log.progress_interval_s, 0.02);
    vg_config_free(&cfg);
}

Test(config, duplicate_key)
{
    expect_bad("[serve]\ntop_n = 5\ntop_n = 6\n", 3, "serve.top_n: set twice", "first on line 2");
    expect_bad("[serve]\ntop_n = 5\n[redis]\nport = 1\n[serve]\ntop_n = 5\n", 6, "serve.top_n: set twice",
               "first on line 2");
}

Test(config, bad_names)
{
    expect_bad("[model]\nvariant = vae\n", 2, "model.variant", "mult-vae, avb, avb+d, avb+d+c");
    expect_bad("[model]\nlikelihood = poisson\n", 2, "model.likelihood", "multinomial or logistic");
    expect_bad("[log]\nlevel = verbose\n", 2, "log.level", "debug, info, warn, error");
    expect_bad("[log]\nlevel = INFO\n", 2, "log.level", NULL);
}

Test(config, metrics_listen)
{
    const char *bad[] = {"9464", "localhost:", "localhost:0", ":9464", "::1:9464", "host:99999",
                         "[::1]:abc", "[::1]", "a b:1", "[]:80", "host:-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "[metrics]\nlisten = %s\n", bad[i]);
        expect_bad(text, 2, "metrics.listen: ", "HOST:PORT");
    }
    const char *good[] = {"", "0.0.0.0:9464", "[::1]:9464", "localhost:1", "metrics.example:65535"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "[metrics]\nlisten = %s\n", good[i]);
        cr_assert_eq(load(text), 0, "%s: %s", good[i], err);
        cr_assert_str_eq(cfg.metrics.listen, good[i]);
    }
    vg_config_free(&cfg);
}

Test(config, empty_strings)
{
    expect_bad("[kafka]\ntopic =\n", 2, "kafka.topic: must not be empty", NULL);
    expect_bad("[kafka]\nbrokers =\n", 2, "kafka.brokers: must not be empty", NULL);
    expect_bad("[state]\ndir =\n", 2, "state.dir: must not be empty", NULL);
    /* checks across keys: with the line of the key when the file set it */
    expect_bad("[redis]\nhost =\n", 2, "redis.host: must not be empty when redis.socket is empty", NULL);
    cr_assert_eq(load("[redis]\nhost =\nsocket = /run/r.sock\n"), 0, "%s", err);
    expect_bad("[kafka]\ndlq_topic = clicks\n", 2, "kafka.dlq_topic: must differ from kafka.topic",
               NULL);
    expect_bad("[kafka]\ndlq_topic = x\ntopic = x\n", 2, "kafka.dlq_topic", "must differ");
}

Test(config, syntax)
{
    expect_bad("[serve]\ntop_n = 5\nthis is not a setting\n", 3, "syntax error in [serve]", "not shown");
    expect_bad("this is not a setting\n[serve]\n", 1, "syntax error: expected", NULL);
    expect_bad("[serve\ntop_n = 5\n", 1, "syntax error", NULL);
    expect_bad("[serve]\n= 5\n", 2, "[serve]: a line without a key name", NULL);
    /* inih would glue an indented line to the value above */
    expect_bad("[redis]\nprefix = a\n  port = 7\n", 3, "redis.prefix", "indented");
    /* inih would split a long line in two */
    char text[400];
    snprintf(text, sizeof text, "[redis]\nprefix = %0250d\n", 7);
    expect_bad(text, 2, "longer than 199 characters", NULL);
    snprintf(text, sizeof text, "[redis]\nprefix = %0190d\n", 7);
    cr_assert_eq(load(text), 0, "%s", err);
    vg_config_free(&cfg);
}

Test(config, first_problem_wins)
{
    expect_bad("[serve]\ntop_n = x\n[redis]\nport = 0\n", 2, "serve.top_n", NULL);
    expect_bad("[serve]\nnot a setting\ntop_n = x\n", 2, "syntax error", NULL);
    expect_bad("[serve]\ntop_n = x\nnot a setting\n", 2, "serve.top_n", NULL);
}

Test(config, missing_file)
{
    snprintf(path, sizeof path, "%s/absent.conf", vg_tmpdir);
    int rc = vg_config_load(&cfg, path, err, sizeof err);
    cr_assert_eq(rc, VG_EIO);
    cr_assert(strstr(err, path), "%s", err);
    cr_assert(strstr(err, "No such file"), "%s", err);
    vg_config_free(&cfg);

    rc = vg_config_load(&cfg, vg_tmpdir, err, sizeof err); /* a directory */
    cr_assert_eq(rc, VG_EIO, "%s", err);
    cr_assert(strstr(err, vg_tmpdir), "%s", err);
    vg_config_free(&cfg);
}

Test(config, small_error_buffer)
{
    char small[16];
    snprintf(path, sizeof path, "%s/t.conf", vg_tmpdir);
    write_file(path, "[serve]\ntop_n = abc\n");
    cr_assert_eq(vg_config_load(&cfg, path, small, sizeof small), VG_ECONFIG);
    cr_assert_eq(strlen(small), sizeof small - 1);
    vg_config_free(&cfg);
    cr_assert_eq(vg_config_load(&cfg, path, NULL, 0), VG_ECONFIG);
    vg_config_free(&cfg);
}

/* ---- the shipped config/vaegand.conf --------------------------------------- */

static char *shipped_path(void)
{
    const char *src = getenv("VG_SOURCE_DIR");
    cr_assert_not_null(src, "VG_SOURCE_DIR is not set (run through ctest)");
    static char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/config/vaegand.conf", src);
    return p;
}

Test(config, shipped_file_loads_with_the_defaults)
{
    const char *p = shipped_path();
    cr_assert_eq(vg_config_load(&cfg, p, err, sizeof err), 0, "%s", err);
    vg_config_t d;
    vg_config_default(&d);
    char *a = dump(&cfg), *b = dump(&d);
    cr_assert_str_eq(a, b, "the shipped file changes a default");
    free(a);
    free(b);
    vg_config_free(&d);
    vg_config_free(&cfg);
}

/* Drops the kafka.option.* lines of a dump (the examples have no default). */
static void drop_options(char *d)
{
    char *line;
    while ((line = strstr(d, "kafka.option.")) != NULL) {
        char *end = strchr(line, '\n');
        memmove(line, end + 1, strlen(end + 1) + 1);
    }
}

/*
 * Every key line of the shipped file ("key = value", or ";key = value" for an
 * example) is a key the loader accepts, with its default as the value, and a
 * one-line "# ..." comment right above it; every key the loader knows is
 * there.  Uncommenting the examples must still load cleanly.
 */
Test(config, shipped_file_documents_every_key)
{
    FILE *f = fopen(shipped_path(), "r");
    cr_assert_not_null(f);
    char out_path[300];
    snprintf(out_path, sizeof out_path, "%s/uncommented.conf", vg_tmpdir);
    FILE *out = fopen(out_path, "w");
    cr_assert_not_null(out);

    char documented[128][96];
    int n_doc = 0;
    char line[512], section[64] = "", prev[512] = "";
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *s = line;
        if (s[0] == '[') {
            char *close = strchr(s, ']');
            cr_assert_not_null(close, "line %d", lineno);
            snprintf(section, sizeof section, "%.*s", (int)(close - s - 1), s + 1);
        }
        int example = s[0] == ';';
        char *k = s + example;
        size_t kl = strspn(k, "abcdefghijklmnopqrstuvwxyz0123456789_.");
        char *after = k + kl + strspn(k + kl, " \t");
        if (kl > 0 && *after == '=' && (example || (s[0] >= 'a' && s[0] <= 'z'))) {
            cr_assert(section[0], "line %d: key before any section", lineno);
            cr_assert(prev[0] == '#', "line %d: %.*s has no one-line comment above it", lineno, (int)kl, k);
            cr_assert_lt(n_doc, 128);
            snprintf(documented[n_doc++], 96, "%s.%.*s", section, (int)kl, k);
            fputs(k, out); /* the example, uncommented */
        } else {
            fputs(s, out);
        }
        snprintf(prev, sizeof prev, "%s", s);
    }
    fclose(f);
    cr_assert_eq(fclose(out), 0);
    cr_assert_gt(n_doc, 40);

    /* all documented keys (examples uncommented) are accepted, set once, with the default values */
    cr_assert_eq(vg_config_load(&cfg, out_path, err, sizeof err), 0, "%s", err);
    cr_assert_gt(cfg.kafka.n_options, 0, "no kafka.option.* example");
    vg_config_t d;
    vg_config_default(&d);
    char *a = dump(&cfg), *b = dump(&d);
    drop_options(a);
    cr_assert_str_eq(a, b, "a documented value differs from the default");
    free(a);
    free(b);
    vg_config_free(&d);
    vg_config_free(&cfg);

    /* every key the loader knows is documented */
    size_t n_known = 0;
    for (const char *key; (key = vg_config_key(n_known)) != NULL; n_known++) {
        int found = 0;
        for (int i = 0; i < n_doc && !found; i++) {
            if (strcmp(key, "kafka.option.*") == 0)
                found = strncmp(documented[i], "kafka.option.", 13) == 0;
            else
                found = strcmp(documented[i], key) == 0;
        }
        cr_assert(found, "%s is not documented in config/vaegand.conf", key);
    }
    cr_assert_gt(n_known, 40);
    /* and nothing is documented that the loader does not know (besides the accepted load above) */
    for (int i = 0; i < n_doc; i++) {
        int known = strncmp(documented[i], "kafka.option.", 13) == 0;
        for (size_t j = 0; j < n_known && !known; j++)
            known = strcmp(documented[i], vg_config_key(j)) == 0;
        cr_assert(known, "%s is documented but not a key", documented[i]);
    }
}

/* ---- topics and event types --------------------------------------------------- */

Test(config, topics_and_topic)
{
    cr_assert_eq(load(""), 0, "%s", err);
    cr_assert_eq(cfg.kafka.topics.n, 1);
    cr_assert_str_eq(cfg.kafka.topics.v[0], "clicks");
    cr_assert_eq(load("[kafka]\ntopic = views\n"), 0, "%s", err);
    cr_assert_eq(cfg.kafka.topics.n, 1, "kafka.topic alone is the one-topic list");
    cr_assert_str_eq(cfg.kafka.topics.v[0], "views");
    cr_assert_eq(load("[kafka]\ntopics = views ,buys,  ^cart-.*\n"), 0, "%s", err);
    cr_assert_eq(cfg.kafka.topics.n, 3);
    cr_assert_str_eq(cfg.kafka.topics.v[0], "views");
    cr_assert_str_eq(cfg.kafka.topics.v[1], "buys");
    cr_assert_str_eq(cfg.kafka.topics.v[2], "^cart-.*");
    cr_assert_str_eq(cfg.kafka.topic, "views", "topic is the first of topics");
    cr_assert_eq(load("[kafka]\ntopic = views\ntopics = views\n"), 0, "agreeing spellings: %s", err);
    expect_bad("[kafka]\ntopic = views\ntopics = views, buys\n", 3, "kafka.topics", "set one of them");
    expect_bad("[kafka]\ntopics =\n", 2, "kafka.topics", "at least one");
    expect_bad("[kafka]\ntopics = a,,b\n", 2, "kafka.topics", "empty");
    expect_bad("[kafka]\ntopics = a, a\n", 2, "kafka.topics", "twice");
    expect_bad("[kafka]\ntopics = a b\n", 2, "kafka.topics", "blank");
    expect_bad("[kafka]\ntopics = views, buys\ndlq_topic = buys\n", 3, "kafka.dlq_topic", "topics");
    vg_config_free(&cfg);
}

Test(config, event_types)
{
    cr_assert_eq(load(""), 0, "%s", err);
    cr_assert_eq(cfg.events.types.n, 1);
    cr_assert_str_eq(cfg.events.types.v[0], "click");
    cr_assert_eq(cfg.events.removal_types.n, 0, "no removal types by default");
    cr_assert_eq(load("[events]\ntypes = click, purchase\nremoval_types = remove,dislike\n"), 0, "%s", err);
    cr_assert(vg_strlist_has(&cfg.events.types, "purchase", 8));
    cr_assert(!vg_strlist_has(&cfg.events.types, "purchas", 7));
    cr_assert(vg_strlist_has(&cfg.events.removal_types, "dislike", 7));
    expect_bad("[events]\ntypes =\n", 2, "events.types", "at least one");
    expect_bad("[events]\ntypes = click, like\nremoval_types = dislike, like\n", 3, "events.removal_types",
               "entry 2 is in events.types");
    expect_bad("[events]\ntipes = click\n", 2, "events.tipes", "events.types");
    expect_bad("[events]\ntypes = click, forget\n", 2, "events.types", "erasure");
    expect_bad("[events]\nremoval_types = forget\n", 2, "events.removal_types", "erasure");
    cr_assert_eq(cfg.events.forget_retention_s, 30 * 86400);
    vg_config_free(&cfg);
}

/* ---- secrets ------------------------------------------------------------------ */

/* No message shows a value or a line of the file (a value may be a password):
 * each bad line below carries the marker, and the error names FILE:LINE and
 * the key (a syntax error its section) without it. */
Test(config, values_are_never_shown)
{
    static const struct {
        const char *text, *want;
        int line;
    } bad[] = {
        {"[serve]\ntop_n = Pa55w0rd\n", "serve.top_n: not an integer", 2},
        {"[redis]\nport = Pa55w0rd\n", "redis.port: not an integer", 2},
        {"[redis]\ndb = 99999999999999999999Pa55w0rd\n", "redis.db: not an integer", 2},
        {"[model]\nlr = Pa55w0rd\n", "model.lr: not a number", 2},
        {"[model]\nseed = Pa55w0rd\n", "model.seed: not an integer", 2},
        {"[model]\nnoise_input = Pa55w0rd\n", "model.noise_input: ", 2},
        {"[model]\nvariant = Pa55w0rd\n", "model.variant: must be one of", 2},
        {"[log]\nlevel = Pa55w0rd\n", "log.level: must be one of", 2},
        {"[metrics]\nlisten = Pa55w0rd\n", "metrics.listen: must be empty", 2},
        {"[kafka]\ntopics = a, Pa55w0rd, Pa55w0rd\n", "kafka.topics: an entry is given twice", 2},
        {"[kafka]\ntopic = Pa55 w0rd\n", "kafka.topic: must be one topic name", 2},
        {"[kafka]\ndlq_topic = Pa55w0rd\ntopic = Pa55w0rd\n", "kafka.dlq_topic: must differ", 2},
        {"[events]\ntypes = Pa55w0rd\nremoval_types = Pa55w0rd\n", "events.removal_types: entry 1", 3},
        {"[redis]\nPa55w0rd\n", "syntax error in [redis]", 2},
        {"[redis]\npassword Pa55w0rd\n", "syntax error in [redis]", 2},
        {"[redis]\nhost = h\n\n[serve\nPa55w0rd\n", "syntax error in [redis]", 4},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_bad(bad[i].text, bad[i].line, bad[i].want, NULL);
        load(bad[i].text);
        cr_assert(!strstr(err, "Pa55") && !strstr(err, "w0rd"), "the value is shown: %s", err);
        vg_config_free(&cfg);
    }
}

/* Writes text to <tmp>/<name> (mode 0600) and returns its path. */
static const char *secret_file(const char *name, const char *text, size_t len)
{
    static char p[300];
    snprintf(p, sizeof p, "%s/%s", vg_tmpdir, name);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(text, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
    return p;
}

Test(config, redis_password_file)
{
    const char *pw = secret_file("redis.pw", "s3cret\n", 7);
    char text[600];
    snprintf(text, sizeof text, "[redis]\npassword =\npassword_file = %s\n", pw);
    cr_assert_eq(load(text), 0, "%s", err);
    cr_assert_str_eq(cfg.redis.password, "s3cret", "the content, one trailing newline dropped");
    cr_assert_str_eq(cfg.redis.password_file, pw);
    cr_assert_str_eq(cfg.warnings, "", "a secret from a file is no warning");
    char *d = dump(&cfg);
    cr_assert(!strstr(d, "s3cret"), "password leaked:\n%s", d);
    cr_assert(strstr(d, "\nredis.password =\nredis.password_file = "), "%s", d);
    free(d);

    secret_file("redis.pw", "s3cret\n\n", 8);
    cr_assert_eq(load(text), 0, "%s", err);
    cr_assert_str_eq(cfg.redis.password, "s3cret\n", "only one newline is dropped");
    secret_file("redis.pw", "  s3 cret ", 10);
    cr_assert_eq(load(text), 0, "%s", err);
    cr_assert_str_eq(cfg.redis.password, "  s3 cret ", "taken as it is");
    vg_config_free(&cfg);
}

Test(config, relative_secret_names_are_credentials)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/creds", vg_tmpdir);
    cr_assert_eq(mkdir(dir, 0700), 0);
    secret_file("creds/redis-password", "from-systemd\n", 13);
    secret_file("creds/kafka-sasl", "k4fka", 5);
    const char *text = "[kafka]\nsasl_password_file = kafka-sasl\noption.sasl.username = u\n"
                       "[redis]\npassword_file = redis-password\n";
    cr_assert_eq(setenv("CREDENTIALS_DIRECTORY", dir, 1), 0);
    cr_assert_eq(load(text), 0, "%s", err);
    cr_assert_str_eq(cfg.redis.password, "from-systemd");
    cr_assert_eq(cfg.kafka.n_options, 2);
    cr_assert_str_eq(cfg.kafka.options[2], "sasl.password", "appended after the file's options");
    cr_assert_str_eq(cfg.kafka.options[3], "k4fka");
    char *d = dump(&cfg);
    cr_assert(!strstr(d, "k4fka") && !strstr(d, "sasl.password"), "%s", d);
    cr_assert(strstr(d, "kafka.sasl_password_file = kafka-sasl\n"), "%s", d);
    free(d);

    /* without $CREDENTIALS_DIRECTORY a relative name cannot be resolved */
    cr_assert_eq(unsetenv("CREDENTIALS_DIRECTORY"), 0);
    expect_bad(text, 5, "redis.password_file: \"redis-password\" is a relative name", "$CREDENTIALS_DIRECTORY");
    expect_bad("[kafka]\nsasl_password_file = kafka-sasl\n", 2,
               "kafka.sasl_password_file: \"kafka-sasl\" is a relative name", "LoadCredential=");
    /* a missing credential names the option and the full path */
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    char want[400];
    snprintf(want, sizeof want, "redis.password_file: cannot read %s/absent: No such file or directory", dir);
    expect_bad("[redis]\n\npassword_file = absent\n", 3, want, NULL);
    unsetenv("CREDENTIALS_DIRECTORY");
}

Test(config, bad_secret_files)
{
    char text[600], want[400];
    const char *p = secret_file("empty.pw", "", 0);
    snprintf(text, sizeof text, "[redis]\npassword_file = %s\n", p);
    snprintf(want, sizeof want, "redis.password_file: %s is empty", p);
    expect_bad(text, 2, want, NULL);
    p = secret_file("newline.pw", "\n", 1);
    snprintf(text, sizeof text, "[kafka]\nsasl_password_file = %s\n", p);
    snprintf(want, sizeof want, "kafka.sasl_password_file: %s is empty", p);
    expect_bad(text, 2, want, NULL);
    p = secret_file("nul.pw", "ab\0cd", 5);
    snprintf(text, sizeof text, "[redis]\npassword_file = %s\n", p);
    expect_bad(text, 2, "redis.password_file: ", "NUL byte");
    snprintf(text, sizeof text, "[redis]\npassword_file = %s\n", vg_tmpdir); /* a directory */
    snprintf(want, sizeof want, "redis.password_file: %s is not a regular file", vg_tmpdir);
    expect_bad(text, 2, want, NULL);
    char fifo[300];
    snprintf(fifo, sizeof fifo, "%s/fifo", vg_tmpdir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    snprintf(text, sizeof text, "[redis]\npassword_file = %s\n", fifo);
    expect_bad(text, 2, "redis.password_file: ", "not a regular file"); /* and it did not block */
    char *big = malloc(VG_TEST_SECRET_MAX + 2);
    memset(big, 'x', VG_TEST_SECRET_MAX + 1);
    p = secret_file("big.pw", big, VG_TEST_SECRET_MAX + 1);
    free(big);
    snprintf(text, sizeof text, "[redis]\npassword_file = %s\n", p);
    expect_bad(text, 2, "redis.password_file: ", "longer than 65536 bytes");

    /* the inline spelling and the file together */
    p = secret_file("ok.pw", "pw\n", 3);
    snprintf(text, sizeof text, "[redis]\npassword = inline\npassword_file = %s\n", p);
    expect_bad(text, 3, "redis.password_file: redis.password is set too (line 2): set one of them", NULL);
    snprintf(text, sizeof text, "[kafka]\noption.sasl.password = inline\nsasl_password_file = %s\n", p);
    expect_bad(text, 3, "kafka.sasl_password_file: kafka.option.sasl.password is set too (line 2)", NULL);
    cr_assert(!strstr(err, "inline"), "%s", err);
}

/* A secret written in the file is accepted, with a warning for --check-config. */
Test(config, inline_secrets_warn)
{
    cr_assert_eq(load("[kafka]\noption.sasl.username = me\noption.sasl.password = hunter2\n"
                      "option.ssl.key.password = k3y\n[redis]\npassword = s3cret\n"),
                 0, "%s", err);
    char want[700];
    snprintf(want, sizeof want, "%s:6: redis.password: a secret written in the configuration file: put it in a "
             "file of its own and set redis.password_file instead (under systemd: LoadCredential=", path);
    cr_assert(strstr(cfg.warnings, want), "%s", cfg.warnings);
    snprintf(want, sizeof want, "%s:3: kafka.option.sasl.password: a secret", path);
    cr_assert(strstr(cfg.warnings, want) && strstr(cfg.warnings, "set kafka.sasl_password_file instead"), "%s",
              cfg.warnings);
    snprintf(want, sizeof want, "%s:4: kafka.option.ssl.key.password: a secret", path);
    cr_assert(strstr(cfg.warnings, want), "%s", cfg.warnings);
    cr_assert(!strstr(cfg.warnings, "username"), "%s", cfg.warnings);
    cr_assert(!strstr(cfg.warnings, "hunter2") && !strstr(cfg.warnings, "s3cret") && !strstr(cfg.warnings, "k3y"));
    size_t lines = 0;
    for (const char *w = cfg.warnings; (w = strchr(w, '\n')); w++)
        lines++;
    cr_assert_eq(lines, 3, "%s", cfg.warnings);

    cr_assert_eq(load("[redis]\npassword =\n[kafka]\noption.sasl.password =\n"), 0, "%s", err);
    cr_assert_str_eq(cfg.warnings, "", "an empty password is no secret");
    vg_config_free(&cfg);
}
