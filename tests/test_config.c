/* test_config.c — the configuration loader (daemon/config.c) and the shipped
 * config/vaegand.conf: defaults, a full file, every class of error with its
 * FILE:LINE and key, pass-through options, and that the shipped file loads
 * cleanly, holds the defaults and documents exactly the keys the loader knows. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "daemon/config.h"
#include "tests/support/tmpdir.h"

TestSuite(config, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove);

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
    cr_assert(cfg.model.cfg.noise_input < 0, "noise_input defaults to auto");
    cr_assert_eq(cfg.model.batch, 500);
    cr_assert_eq(cfg.log.level, VG_LOG_INFO);
    cr_assert_str_eq(cfg.log.file, "");
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
    expect_bad("[serve]\ntop_n = abc\n", 2, "serve.top_n = \"abc\": not an integer", NULL);
    expect_bad("[serve]\ntop_n = 1.5\n", 2, "serve.top_n = \"1.5\": not an integer", NULL);
    expect_bad("[model]\nlr = fast\n", 2, "model.lr = \"fast\": not a number", NULL);
    expect_bad("[model]\nlr = nan\n", 2, "model.lr = \"nan\": not a finite number", NULL);
    expect_bad("[model]\nbeta = inf\n", 2, "model.beta = \"inf\"", "finite");
    expect_bad("[model]\nseed = x\n", 2, "model.seed = \"x\": not an integer", NULL);
    expect_bad("[model]\nnoise_input = loud\n", 2, "model.noise_input = \"loud\"", NULL);
}

Test(config, trailing_garbage)
{
    expect_bad("[serve]\ntop_n = 12abc\n", 2, "serve.top_n = \"12abc\": not an integer", "trailing");
    expect_bad("[redis]\nport = 0x10\n", 2, "redis.port = \"0x10\"", "trailing");
    expect_bad("[model]\nlr = 1e-3x\n", 2, "model.lr = \"1e-3x\"", "trailing");
    expect_bad("[model]\nseed = 7 7\n", 2, "model.seed = \"7 7\"", "trailing");
    expect_bad("[serve]\ntop_n = 5;x\n", 2, "serve.top_n = \"5;x\"", "trailing");
}

Test(config, empty_number)
{
    expect_bad("[serve]\ntop_n =\n", 2, "serve.top_n = \"\": empty value", NULL);
    expect_bad("[model]\nlr = \n", 2, "model.lr = \"\": empty value", NULL);
    expect_bad("[model]\nseed =\n", 2, "model.seed = \"\": empty value", NULL);
}

Test(config, out_of_range)
{
    expect_bad("[redis]\nport = 70000\n", 2, "redis.port = \"70000\": must be between 1 and 65535", NULL);
    expect_bad("[redis]\nport = 0\n", 2, "redis.port = \"0\": must be between 1 and 65535", NULL);
    expect_bad("[redis]\ndb = -1\n", 2, "redis.db = \"-1\": must be at least 0", NULL);
    expect_bad("[serve]\ntop_n = 0\n", 2, "serve.top_n = \"0\": must be between 1 and 10000", NULL);
    expect_bad("[serve]\ntop_n = 10001\n", 2, "serve.top_n", "between 1 and 10000");
    expect_bad("[serve]\ntop_n = 99999999999999999999\n", 2, "serve.top_n", "between 1 and 10000");
    expect_bad("[serve]\nrefresh_s = 0\n", 2, "serve.refresh_s = \"0\": must be at least 1", NULL);
    expect_bad("[serve]\nrec_ttl_s = -5\n", 2, "serve.rec_ttl_s", "at least 0");
    expect_bad("[history]\nmax_items = 1000001\n", 2, "history.max_items", "between 1 and 1000000");
    expect_bad("[train]\nsteps_per_round = -1\n", 2, "train.steps_per_round", "between 0 and");
    expect_bad("[train]\nrecent_fraction = 1.5\n", 2, "train.recent_fraction = \"1.5\": must be between 0 and 1",
               NULL);
    expect_bad("[train]\ninterval_ms = 0\n", 2, "train.interval_ms", "at least 1");
    expect_bad("[model]\ndropout = 1\n", 2, "model.dropout = \"1\": must be at least 0 and less than 1", NULL);
    expect_bad("[model]\ndropout = -0.1\n", 2, "model.dropout", "less than 1");
    expect_bad("[model]\nlr = 0\n", 2, "model.lr = \"0\": must be greater than 0", NULL);
    expect_bad("[model]\nlambda = -1e-4\n", 2, "model.lambda", "at least 0");
    expect_bad("[model]\nhidden = 0\n", 2, "model.hidden", "between 1 and");
    expect_bad("[model]\nbatch = 0\n", 2, "model.batch", "between 1 and");
    expect_bad("[model]\nnoise_input = -1\n", 2, "model.noise_input = \"-1\"", "auto");
    expect_bad("[model]\nseed = -1\n", 2, "model.seed = \"-1\"", "at least 0");
    expect_bad("[model]\nseed = 18446744073709551616\n", 2, "model.seed", "between 0 and");
    expect_bad("[kafka]\nmax_pending = 0\n", 2, "kafka.max_pending", "at least 1");
    expect_bad("[train]\nthreads = 0\n", 2, "train.threads", "between 1 and 256");
}

Test(config, duplicate_key)
{
    expect_bad("[serve]\ntop_n = 5\ntop_n = 6\n", 3, "serve.top_n: set twice", "first on line 2");
    expect_bad("[serve]\ntop_n = 5\n[redis]\nport = 1\n[serve]\ntop_n = 5\n", 6, "serve.top_n: set twice",
               "first on line 2");
}

Test(config, bad_names)
{
    expect_bad("[model]\nvariant = vae\n", 2, "model.variant = \"vae\"", "mult-vae, avb, avb+d, avb+d+c");
    expect_bad("[model]\nlikelihood = poisson\n", 2, "model.likelihood = \"poisson\"", "multinomial or logistic");
    expect_bad("[log]\nlevel = verbose\n", 2, "log.level = \"verbose\"", "debug, info, warn, error");
    expect_bad("[log]\nlevel = INFO\n", 2, "log.level = \"INFO\"", NULL);
}

Test(config, metrics_listen)
{
    const char *bad[] = {"9464", "localhost:", "localhost:0", ":9464", "::1:9464", "host:99999",
                         "[::1]:abc", "[::1]", "a b:1", "[]:80", "host:-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128], want[64];
        snprintf(text, sizeof text, "[metrics]\nlisten = %s\n", bad[i]);
        snprintf(want, sizeof want, "metrics.listen = \"%s\"", bad[i]);
        expect_bad(text, 2, want, "HOST:PORT");
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
    expect_bad("[kafka]\ntopic =\n", 2, "kafka.topic = \"\": must not be empty", NULL);
    expect_bad("[kafka]\nbrokers =\n", 2, "kafka.brokers = \"\": must not be empty", NULL);
    expect_bad("[state]\ndir =\n", 2, "state.dir = \"\": must not be empty", NULL);
    /* checks across keys: with the line of the key when the file set it */
    expect_bad("[redis]\nhost =\n", 2, "redis.host: must not be empty when redis.socket is empty", NULL);
    cr_assert_eq(load("[redis]\nhost =\nsocket = /run/r.sock\n"), 0, "%s", err);
    expect_bad("[kafka]\ndlq_topic = clicks\n", 2, "kafka.dlq_topic = \"clicks\": must differ from kafka.topic",
               NULL);
    expect_bad("[kafka]\ndlq_topic = x\ntopic = x\n", 2, "kafka.dlq_topic", "must differ");
}

Test(config, syntax)
{
    expect_bad("[serve]\ntop_n = 5\nthis is not a setting\n", 3, "syntax error in \"this is not a setting\"", NULL);
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
    expect_bad("[kafka]\ntopics = a,,b\n", 2, "kafka.topics = \"a,,b\"", "empty");
    expect_bad("[kafka]\ntopics = a, a\n", 2, "kafka.topics", "twice");
    expect_bad("[kafka]\ntopics = a b\n", 2, "kafka.topics", "blank");
    expect_bad("[kafka]\ntopics = views, buys\ndlq_topic = buys\n", 3, "kafka.dlq_topic = \"buys\"", "topics");
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
    expect_bad("[events]\ntypes = click, like\nremoval_types = like\n", 3, "events.removal_types", "\"like\"");
    expect_bad("[events]\ntipes = click\n", 2, "events.tipes", "events.types");
    expect_bad("[events]\ntypes = click, forget\n", 2, "events.types", "erasure");
    expect_bad("[events]\nremoval_types = forget\n", 2, "events.removal_types", "erasure");
    cr_assert_eq(cfg.events.forget_retention_s, 30 * 86400);
    vg_config_free(&cfg);
}
