/*
 * config.c — loading vaegand's INI configuration (config.h).
 *
 * One static table, `keys`, describes every key: its name, kind, where it
 * lives in vg_config_t and its allowed range.  Parsing, the duplicate and
 * unknown-key checks, the dump and the list of known keys (for the test that
 * config/vaegand.conf documents them all) all walk that table, so a key added
 * there is handled everywhere at once; its order is the order of the dump and
 * of config/vaegand.conf.
 *
 * inih does the INI syntax.  It reads through our line reader, which counts
 * lines (inih 55 does not pass line numbers to the handler), refuses lines
 * longer than inih's buffer (inih would silently split them) and keeps the
 * raw line, so an indented line — which inih takes as the continuation of the
 * previous value — is refused instead of silently changing that value.
 * The first error wins: after it the handler ignores everything; a syntax
 * error inih finds on an earlier line than ours is reported instead.
 *
 * No message quotes a value from the file, nor a line of it: any value may
 * be a password (one typed on the wrong line, too).  Messages name
 * FILE:LINE and the key (a syntax error its section).  Secrets may come
 * from files instead (redis.password_file, kafka.sasl_password_file; read
 * by config_secrets.c after the whole file, so a relative name resolves in
 * $CREDENTIALS_DIRECTORY); a secret written in the file itself is accepted
 * but noted in c->warnings for --check-config.  The readers of one value's
 * text are in config_parse.c; this file holds the table, the INI reading,
 * the checks across keys and the dump.
 */
#include "daemon/config.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <unistd.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "common/addr.h"
#include "common/errors.h"
#include "common/log.h"
#include "daemon/config_parse.h"
#include "daemon/config_secrets.h"
#include "daemon/log.h"
#include "stream/event.h"

/* ---- the key table ------------------------------------------------------ */

enum {
    K_STR,     /* string, may be empty */
    K_STR_NE,  /* string, must not be empty */
    K_INT,     /* int in [imin, imax] */
    K_DBL,     /* finite double in [dmin, dmax] (open ends per dflags) */
    K_U64,     /* uint64_t */
    K_VARIANT, /* vg_variant_t by name */
    K_LIK,     /* vg_likelihood_t by name */
    K_KERNEL,  /* vg_kernel_t by name */
    K_REC_WRITE, /* "auto" (0) or "zadd" (1) */
    K_YESNO,   /* "no" (0) or "yes" (1) */
    K_LEVEL,   /* VG_LOG_* by name */
    K_NOISE,   /* "auto" (stored as -1) or a double >= 0 */
    K_LISTEN,  /* "" or HOST:PORT */
    K_OPTION,  /* kafka.option.<name>: pass-through family */
    K_LIST,    /* vg_strlist_t: comma-separated names, may be empty */
};

enum { OPEN_MIN = VG_CFG_OPEN_MIN, OPEN_MAX = VG_CFG_OPEN_MAX };

typedef struct key_def {
    const char *key; /* "section.name" */
    int kind;
    size_t off; /* offset in vg_config_t */
    long long imin, imax;
    double dmin, dmax;
    int dflags;
} key_def_t;

#define OFF(field) offsetof(vg_config_t, field)
#define STR(k, f) {k, K_STR, OFF(f), 0, 0, 0, 0, 0}
#define STR_NE(k, f) {k, K_STR_NE, OFF(f), 0, 0, 0, 0, 0}
#define INT(k, f, lo, hi) {k, K_INT, OFF(f), lo, hi, 0, 0, 0}
#define DBL(k, f, lo, hi, fl) {k, K_DBL, OFF(f), 0, 0, lo, hi, fl}
#define OTHER(k, kind, f) {k, kind, OFF(f), 0, 0, 0, 0, 0}

static const key_def_t keys[] = {
    STR_NE("kafka.brokers", kafka.brokers),
    STR_NE("kafka.topic", kafka.topic),
    OTHER("kafka.topics", K_LIST, kafka.topics),
    STR_NE("kafka.group", kafka.group),
    STR("kafka.dlq_topic", kafka.dlq_topic),
    STR("kafka.control_topic", kafka.control_topic),
    INT("kafka.commit_interval_ms", kafka.commit_interval_ms, 1, INT_MAX),
    INT("kafka.max_pending", kafka.max_pending, 1, INT_MAX),
    STR("kafka.sasl_password_file", kafka.sasl_password_file),
    OTHER("kafka.option.*", K_OPTION, kafka.options),

    STR("redis.host", redis.host),
    INT("redis.port", redis.port, 1, 65535),
    STR("redis.socket", redis.socket),
    STR("redis.password", redis.password),
    STR("redis.password_file", redis.password_file),
    INT("redis.db", redis.db, 0, INT_MAX),
    STR("redis.prefix", redis.prefix),
    OTHER("redis.rec_write", K_REC_WRITE, redis.rec_zadd),
    OTHER("redis.cluster", K_YESNO, redis.cluster),

    INT("history.max_items", history.max_items, 1, 1000000),
    INT("history.max_users", history.max_users, 0, INT32_MAX),

    OTHER("events.types", K_LIST, events.types),
    OTHER("events.removal_types", K_LIST, events.removal_types),
    INT("events.forget_retention_s", events.forget_retention_s, 1, INT_MAX),

    INT("serve.top_n", serve.top_n, 1, VG_TOP_N_MAX),
    INT("serve.rec_ttl_s", serve.rec_ttl_s, 0, INT_MAX),
    INT("serve.refresh_s", serve.refresh_s, 1, INT_MAX),
    INT("serve.batch", serve.batch, 1, VG_RANK_MAX_BATCH),
    OTHER("serve.kernel", K_KERNEL, serve.kernel),
    INT("serve.threads", serve.threads, 0, VG_SCORER_THREADS_MAX),

    STR_NE("state.dir", state.dir),
    INT("state.checkpoint_interval_s", state.checkpoint_interval_s, 1, INT_MAX),

    INT("train.interval_ms", train.interval_ms, 1, INT_MAX),
    INT("train.min_new_events", train.min_new_events, 0, INT_MAX),
    INT("train.steps_per_round", train.steps_per_round, 0, 1000000),
    DBL("train.recent_fraction", train.recent_fraction, 0, 1, 0),
    INT("train.threads", train.threads, 1, 256),
    INT("train.backlog_lag", train.backlog_lag, 0, INT_MAX),
    INT("train.backlog_interval_ms", train.backlog_interval_ms, 1, INT_MAX),
    INT("train.publish_interval_s", train.publish_interval_s, 1, INT_MAX),

    OTHER("model.variant", K_VARIANT, model.cfg.variant),
    INT("model.hidden", model.cfg.hidden, 1, VG_MODEL_DIM_MAX),
    INT("model.latent", model.cfg.latent, 1, VG_MODEL_DIM_MAX),
    INT("model.disc_hidden", model.cfg.disc_hidden, 1, VG_MODEL_DIM_MAX),
    OTHER("model.likelihood", K_LIK, model.cfg.likelihood),
    DBL("model.alpha_cap", model.cfg.alpha_cap, 0, INFINITY, 0),
    DBL("model.anneal_steps", model.cfg.anneal_steps, 0, INFINITY, 0),
    DBL("model.beta", model.cfg.beta, 0, INFINITY, 0),
    DBL("model.lambda", model.cfg.lambda, 0, INFINITY, 0),
    DBL("model.dropout", model.cfg.dropout, 0, 1, OPEN_MAX),
    DBL("model.lr", model.cfg.lr, 0, INFINITY, OPEN_MIN),
    INT("model.batch", model.batch, 1, 1000000),
    INT("model.max_items", model.max_items, 0, 1 << 30),
    INT("model.min_item_users", model.min_item_users, 1, 16),
    INT("model.max_pending_items", model.max_pending_items, 1, 100000000),
    OTHER("model.noise_input", K_NOISE, model.cfg.noise_input),
    DBL("model.noise_hidden", model.cfg.noise_hidden, 0, INFINITY, 0),
    OTHER("model.seed", K_U64, model.cfg.seed),

    OTHER("log.level", K_LEVEL, log.level),
    STR("log.file", log.file),
    DBL("log.progress_interval_s", log.progress_interval_s, 0, 86400, OPEN_MIN),

    OTHER("metrics.listen", K_LISTEN, metrics.listen),
    INT("metrics.kafka_stats_interval_ms", metrics.kafka_stats_interval_ms, 0, 3600000),
    DBL("metrics.quality_sample", metrics.quality_sample, 0, 1, 0),
    INT("metrics.quality_window", metrics.quality_window, 1, 10000000),
};

#define N_KEYS (sizeof keys / sizeof keys[0])

static const char *const sections[] = {"kafka", "redis", "history", "events", "serve",
                                       "state", "train", "model",   "log",    "metrics"};
#define N_SECTIONS (sizeof sections / sizeof sections[0])

#define OPTION_PREFIX "kafka.option."

/* librdkafka properties that a first-class key or the daemon itself owns. */
static const struct {
    const char *name, *why;
} owned_options[] = {
    {"bootstrap.servers", "set kafka.brokers instead"},
    {"metadata.broker.list", "set kafka.brokers instead"},
    {"group.id", "set kafka.group instead"},
    {"auto.commit.interval.ms", "set kafka.commit_interval_ms instead"},
    {"enable.auto.commit", "vaegand manages offsets itself (at-least-once delivery)"},
    {"enable.auto.offset.store", "vaegand manages offsets itself (at-least-once delivery)"},
};

const char *vg_config_key(size_t i) { return i < N_KEYS ? keys[i].key : NULL; }

/* ---- defaults and freeing --------------------------------------------------- */

static void oom(void)
{
    fputs("vaegand: out of memory\n", stderr);
    abort();
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        oom();
    return d;
}

static void list_set(vg_strlist_t *l, const char *text)
{
    if (vg_cfg_list_parse_(l, text))
        oom();
}

void vg_config_default(vg_config_t *c)
{
    memset(c, 0, sizeof *c); /* 0 and NULL: the defaults not set below */
    c->kafka.brokers = xstrdup("127.0.0.1:9092");
    c->kafka.topic = xstrdup("clicks");
    list_set(&c->kafka.topics, "clicks");
    c->kafka.group = xstrdup("vaegand");
    c->kafka.dlq_topic = xstrdup("");
    c->kafka.control_topic = xstrdup("");
    c->kafka.commit_interval_ms = 1000;
    c->kafka.max_pending = 100000;
    c->kafka.sasl_password_file = xstrdup("");
    c->redis.host = xstrdup("127.0.0.1");
    c->redis.port = 6379;
    c->redis.socket = xstrdup("");
    c->redis.password = xstrdup("");
    c->redis.password_file = xstrdup("");
    c->redis.prefix = xstrdup("");
    c->history.max_items = 500;
    c->history.max_users = 2000000;
    c->model.max_items = 100000;
    c->model.min_item_users = 1;
    c->model.max_pending_items = 100000;
    list_set(&c->events.types, "click");
    c->events.forget_retention_s = 30 * 86400;
    c->serve.top_n = 100;
    c->serve.refresh_s = 600;
    c->serve.batch = 256;
    c->serve.kernel = VG_KERNEL_AUTO;
    c->state.dir = xstrdup("/var/lib/vaegand");
    c->state.checkpoint_interval_s = 300;
    c->train.interval_ms = 1000;
    c->train.min_new_events = 1000;
    c->train.steps_per_round = 10;
    c->train.recent_fraction = 0.5;
    c->train.threads = 1;
    c->train.backlog_lag = 20000;
    c->train.backlog_interval_ms = 5000;
    c->train.publish_interval_s = 10;
    vg_model_cfg_default(&c->model.cfg, VG_VARIANT_AVB_D_C);
    c->model.batch = 500;
    c->log.level = VG_LOG_INFO;
    c->log.file = xstrdup("");
    c->log.progress_interval_s = 5;
    c->metrics.listen = xstrdup("127.0.0.1:9464");
    c->metrics.kafka_stats_interval_ms = 5000;
    c->metrics.quality_sample = 0.02;
    c->metrics.quality_window = 10000;
    c->warnings = xstrdup("");
}

void vg_config_free(vg_config_t *c)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (keys[i].kind == K_STR || keys[i].kind == K_STR_NE || keys[i].kind == K_LISTEN) {
            char **s = (char **)((char *)c + keys[i].off);
            free(*s);
            *s = NULL;
        } else if (keys[i].kind == K_LIST) {
            vg_cfg_list_free_((vg_strlist_t *)((char *)c + keys[i].off));
        }
    for (size_t i = 0; i < 2 * c->kafka.n_options; i++)
        free(c->kafka.options[i]);
    free(c->kafka.options);
    c->kafka.options = NULL;
    c->kafka.n_options = 0;
    free(c->path);
    c->path = NULL;
    free(c->warnings);
    c->warnings = NULL;
}

/* ---- loading ------------------------------------------------------------ */

typedef struct load_ctx {
    vg_config_t *c;
    const char *path;
    char *err;
    size_t errlen;
    int rc;       /* first error, 0 = none yet */
    int err_line; /* its line (0 = none) */
    FILE *f;
    char *buf; /* the current raw line (getline's buffer) */
    size_t cap;
    int line;      /* number of the current line */
    int io_errno;  /* a read error */
    int seen[N_KEYS]; /* line where a key was set, 0 = not set */
    int *opt_line;    /* line of each kafka option */
    size_t opt_cap;   /* capacity of options (pairs) and opt_line */
    char last_key[256]; /* key of the previous handler call */
} load_ctx_t;

/* Records the first error: "FILE:LINE: <fmt>" (or "FILE: <fmt>" when line is 0). */
__attribute__((format(printf, 4, 5))) static void fail(load_ctx_t *x, int rc, int line, const char *fmt, ...)
{
    if (x->rc)
        return;
    x->rc = rc;
    x->err_line = line;
    if (!x->err || !x->errlen)
        return;
    int n = line > 0 ? snprintf(x->err, x->errlen, "%s:%d: ", x->path, line) : snprintf(x->err, x->errlen, "%s: ", x->path);
    if (n < 0 || (size_t)n >= x->errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vg_verrf(x->err + n, x->errlen - (size_t)n, rc, fmt, ap);
    va_end(ap);
}

/* Reads one line for inih: counts it, keeps it raw in x->buf and refuses
 * lines longer than inih's buffer (num - 1 characters). */
static char *read_line(char *str, int num, void *stream)
{
    load_ctx_t *x = stream;
    ssize_t n = getline(&x->buf, &x->cap, x->f);
    if (n < 0) {
        if (ferror(x->f))
            x->io_errno = errno ? errno : EIO;
        return NULL;
    }
    x->line++;
    size_t len = (size_t)n;
    if (len > 0 && x->buf[len - 1] == '\n')
        x->buf[--len] = '\0';
    if (len > 0 && x->buf[len - 1] == '\r')
        x->buf[--len] = '\0';
    if (len > (size_t)num - 1) {
        fail(x, VG_ECONFIG, x->line, "line is longer than %d characters", num - 1);
        len = (size_t)num - 1;
    }
    memcpy(str, x->buf, len);
    str[len] = '\0';
    return str;
}

/* The known key of `section` closest to name (distance <= 2), or NULL. */
static const char *suggest_key(const char *section, const char *name)
{
    size_t sl = strlen(section), best = 3;
    const char *hit = NULL;
    for (size_t i = 0; i < N_KEYS; i++) {
        if (keys[i].kind == K_OPTION || strncmp(keys[i].key, section, sl) != 0 || keys[i].key[sl] != '.')
            continue;
        size_t d = vg_cfg_edit_distance_(name, keys[i].key + sl + 1);
        if (d < best) {
            best = d;
            hit = keys[i].key;
        }
    }
    return hit;
}

static const char *suggest_section(const char *section)
{
    size_t best = 3;
    const char *hit = NULL;
    for (size_t i = 0; i < N_SECTIONS; i++) {
        size_t d = vg_cfg_edit_distance_(section, sections[i]);
        if (d < best) {
            best = d;
            hit = sections[i];
        }
    }
    return hit;
}

static int set_string(load_ctx_t *x, char **slot, const char *v)
{
    char *d = strdup(v);
    if (!d) {
        fail(x, VG_ENOMEM, x->line, "out of memory");
        return VG_ENOMEM;
    }
    free(*slot);
    *slot = d;
    return 0;
}

/* The kinds read by name: model.variant, model.likelihood, serve.kernel, redis.rec_write, yes/no, log.level. */
static const char *parse_name(int kind, const char *v, void *slot)
{
    switch (kind) {
    case K_VARIANT: {
        vg_variant_t var;
        if (vg_variant_parse(v, &var) < 0)
            return "must be one of mult-vae, avb, avb+d, avb+d+c";
        *(vg_variant_t *)slot = var;
        return NULL;
    }
    case K_LIK: {
        vg_likelihood_t lik;
        if (vg_likelihood_parse(v, &lik) < 0)
            return "must be multinomial or logistic";
        *(vg_likelihood_t *)slot = lik;
        return NULL;
    }
    case K_REC_WRITE:
        if (strcmp(v, "auto") && strcmp(v, "zadd"))
            return "must be auto or zadd";
        *(int *)slot = strcmp(v, "zadd") == 0;
        return NULL;
    case K_YESNO:
        if (strcmp(v, "yes") && strcmp(v, "no"))
            return "must be yes or no";
        *(int *)slot = strcmp(v, "yes") == 0;
        return NULL;
    case K_KERNEL: {
        vg_kernel_t ker;
        if (vg_kernel_parse(v, &ker) < 0)
            return "must be one of auto, fp32, bf16, int8";
        *(vg_kernel_t *)slot = ker;
        return NULL;
    }
    default: {
        int level;
        if (vg_log_level_parse(v, &level) < 0)
            return "must be one of debug, info, warn, error";
        *(int *)slot = level;
        return NULL;
    }
    }
}

/* Sets one table key from its text. */
static void apply(load_ctx_t *x, const key_def_t *k, const char *v)
{
    void *slot = (char *)x->c + k->off;
    const char *why = NULL;
    char range[VG_CFG_RANGE_LEN], host[256];
    int port;
    switch (k->kind) {
    case K_STR_NE:
        if (!*v) {
            why = "must not be empty";
            break;
        }
        /* fall through */
    case K_STR:
        set_string(x, slot, v);
        return;
    case K_LISTEN:
        if (*v && vg_hostport_parse(v, host, sizeof host, &port) < 0) {
            why = "must be empty (off) or HOST:PORT with a port between 1 and 65535 "
                  "(IPv6 in brackets: [::1]:9464)";
            break;
        }
        set_string(x, slot, v);
        return;
    case K_LIST: why = vg_cfg_list_parse_(slot, v); break;
    case K_INT: why = vg_cfg_parse_int_(v, k->imin, k->imax, slot, range); break;
    case K_DBL: why = vg_cfg_parse_double_(v, k->dmin, k->dmax, k->dflags, slot, range); break;
    case K_NOISE: why = vg_cfg_parse_noise_(v, slot); break;
    case K_U64: why = vg_cfg_parse_u64_(v, slot); break;
    case K_VARIANT:
    case K_LIK:
    case K_KERNEL:
    case K_REC_WRITE:
    case K_YESNO:
    case K_LEVEL: why = parse_name(k->kind, v, slot); break;
    default: vg_assert(!"unreachable");
    }
    if (why)
        fail(x, VG_ECONFIG, x->line, "%s: %s", k->key, why); /* never the value: it may be a secret */
}

/* Appends the option name = value (both malloc'ed; they belong to c->kafka
 * from here on, or are freed on failure); line 0 = not written in the file. */
static void push_option(load_ctx_t *x, char *name, char *value, int line)
{
    vg_config_t *c = x->c;
    if (c->kafka.n_options == x->opt_cap) {
        size_t cap = x->opt_cap ? 2 * x->opt_cap : 8;
        char **o = realloc(c->kafka.options, 2 * cap * sizeof *o);
        if (o)
            c->kafka.options = o;
        int *l = o ? realloc(x->opt_line, cap * sizeof *l) : NULL;
        if (!l) {
            free(name);
            free(value);
            fail(x, VG_ENOMEM, x->line, "out of memory");
            return;
        }
        x->opt_line = l;
        x->opt_cap = cap;
    }
    size_t k = c->kafka.n_options++;
    c->kafka.options[2 * k] = name;
    c->kafka.options[2 * k + 1] = value;
    x->opt_line[k] = line;
}

/* kafka.option.<name> = value */
static void apply_option(load_ctx_t *x, const char *key, const char *v)
{
    const char *name = key + strlen(OPTION_PREFIX);
    vg_config_t *c = x->c;
    if (!*name) {
        fail(x, VG_ECONFIG, x->line, "%s: the librdkafka property name must not be empty", key);
        return;
    }
    for (size_t i = 0; i < sizeof owned_options / sizeof owned_options[0]; i++)
        if (strcmp(name, owned_options[i].name) == 0) {
            fail(x, VG_ECONFIG, x->line, "%s: %s", key, owned_options[i].why);
            return;
        }
    for (size_t i = 0; i < c->kafka.n_options; i++)
        if (strcmp(c->kafka.options[2 * i], name) == 0) {
            fail(x, VG_ECONFIG, x->line, "%s: set twice (first on line %d)", key, x->opt_line[i]);
            return;
        }
    char *n = strdup(name), *val = strdup(v);
    if (!n || !val) {
        free(n);
        free(val);
        fail(x, VG_ENOMEM, x->line, "out of memory");
        return;
    }
    push_option(x, n, val, x->line);
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    load_ctx_t *x = user;
    if (x->rc)
        return 1; /* only the first problem is reported */

    /* "[ serve ]": inih keeps the blanks inside the brackets */
    while (*section == ' ' || *section == '\t')
        section++;
    size_t sl = strlen(section);
    while (sl > 0 && (section[sl - 1] == ' ' || section[sl - 1] == '\t'))
        sl--;

    char key[256];
    int kl = snprintf(key, sizeof key, "%.*s.%s", (int)sl, section, name);
    if (kl < 0 || (size_t)kl >= sizeof key) {
        fail(x, VG_ECONFIG, x->line, "%.60s...: unknown key", key);
        return 0;
    }
    /* inih reads an indented line as the continuation of the previous value
     * (under that key's name cut to its 49-byte buffer: key is then a prefix
     * of last_key) or, right after a [section] line, as a key: both are refused */
    if (x->buf[0] == ' ' || x->buf[0] == '\t') {
        if (x->last_key[0] && strncmp(key, x->last_key, (size_t)kl) == 0)
            fail(x, VG_ECONFIG, x->line,
                 "%s: an indented line continues the value of the line before it; multi-line values are not "
                 "supported: remove the indentation",
                 x->last_key);
        else
            fail(x, VG_ECONFIG, x->line, "%s: an indented key: remove the indentation", key);
        return 0;
    }
    snprintf(x->last_key, sizeof x->last_key, "%s", key);

    if (sl == 0) {
        fail(x, VG_ECONFIG, x->line, "%s: key outside of any [section]", name);
        return 0;
    }
    if (!*name) {
        fail(x, VG_ECONFIG, x->line, "[%.*s]: a line without a key name", (int)sl, section);
        return 0;
    }
    char sec[64];
    int known = 0;
    if (sl < sizeof sec) {
        memcpy(sec, section, sl);
        sec[sl] = '\0';
        for (size_t i = 0; i < N_SECTIONS; i++)
            known |= strcmp(sec, sections[i]) == 0;
    } else {
        snprintf(sec, sizeof sec, "%.*s", (int)(sizeof sec - 1), section);
    }
    if (!known) {
        const char *s = suggest_section(sec);
        if (s)
            fail(x, VG_ECONFIG, x->line, "%s: unknown section [%s] (did you mean [%s]?)", key, sec, s);
        else
            fail(x, VG_ECONFIG, x->line, "%s: unknown section [%s]", key, sec);
        return 0;
    }
    if (strncmp(key, OPTION_PREFIX, strlen(OPTION_PREFIX)) == 0) {
        apply_option(x, key, value);
        return x->rc ? 0 : 1;
    }
    size_t i;
    for (i = 0; i < N_KEYS && (keys[i].kind == K_OPTION || strcmp(keys[i].key, key) != 0); i++)
        ;
    if (i == N_KEYS) {
        const char *s = suggest_key(sec, name);
        if (s)
            fail(x, VG_ECONFIG, x->line, "%s: unknown key (did you mean %s?)", key, s);
        else
            fail(x, VG_ECONFIG, x->line, "%s: unknown key", key);
        return 0;
    }
    if (x->seen[i]) {
        fail(x, VG_ECONFIG, x->line, "%s: set twice (first on line %d)", key, x->seen[i]);
        return 0;
    }
    x->seen[i] = x->line;
    apply(x, &keys[i], value);
    return x->rc ? 0 : 1;
}

static size_t key_index(const char *key)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].key, key) == 0)
            return i;
    vg_assert(!"key not in the table");
    return 0;
}

static size_t kind_size(int kind)
{
    switch (kind) {
    case K_INT:
        return sizeof(int);
    case K_DBL:
    case K_NOISE:
        return sizeof(double);
    case K_U64:
        return sizeof(uint64_t);
    case K_VARIANT:
        return sizeof(vg_variant_t);
    case K_LIK:
        return sizeof(vg_likelihood_t);
    default:
        vg_assert(!"not a model key kind");
        return 0;
    }
}

/* The model's defaults depend on the variant: rebuild them for the variant
 * the file chose and put back what the file set itself. */
static void apply_variant_defaults(load_ctx_t *x)
{
    vg_config_t *c = x->c;
    if (!x->seen[key_index("model.variant")])
        return;
    const vg_model_cfg_t got = c->model.cfg;
    vg_model_cfg_default(&c->model.cfg, got.variant);
    const size_t lo = offsetof(vg_config_t, model.cfg), hi = lo + sizeof(vg_model_cfg_t);
    for (size_t i = 0; i < N_KEYS; i++)
        if (x->seen[i] && keys[i].off >= lo && keys[i].off < hi)
            memcpy((char *)c + keys[i].off, (const char *)&got + (keys[i].off - lo), kind_size(keys[i].kind));
}

/* kafka.topic is the one-topic spelling of kafka.topics: a file sets one of
 * them (or both, agreeing); afterwards topics is the list and topic its
 * first entry. */
static void check_topics(load_ctx_t *x)
{
    vg_config_t *c = x->c;
    int l_topic = x->seen[key_index("kafka.topic")], l_topics = x->seen[key_index("kafka.topics")];
    if (l_topics && c->kafka.topics.n == 0) {
        fail(x, VG_ECONFIG, l_topics, "kafka.topics: must name at least one topic");
        return;
    }
    if (l_topic && l_topics && (c->kafka.topics.n != 1 || strcmp(c->kafka.topics.v[0], c->kafka.topic) != 0)) {
        fail(x, VG_ECONFIG, l_topics, "kafka.topics: disagrees with kafka.topic (line %d): set one of them",
             l_topic);
        return;
    }
    if (l_topic) {
        /* one name, as kafka.topics would take it (list_set would abort on what list_parse refuses) */
        if (vg_cfg_list_parse_(&c->kafka.topics, c->kafka.topic) || c->kafka.topics.n != 1) {
            fail(x, VG_ECONFIG, l_topic,
                 "kafka.topic: must be one topic name, without blanks, control characters or commas "
                 "(kafka.topics takes a list)");
            return;
        }
    } else {
        free(c->kafka.topic);
        c->kafka.topic = xstrdup(c->kafka.topics.v[0]);
    }
    if (vg_strlist_has(&c->kafka.topics, c->kafka.dlq_topic, strlen(c->kafka.dlq_topic))) {
        fail(x, VG_ECONFIG, x->seen[key_index("kafka.dlq_topic")],
             "kafka.dlq_topic: must differ from kafka.topic%s", c->kafka.topics.n > 1 ? "s" : "");
    }
    const char *ct = c->kafka.control_topic;
    if (ct[0] && (vg_strlist_has(&c->kafka.topics, ct, strlen(ct)) || strcmp(ct, c->kafka.dlq_topic) == 0))
        fail(x, VG_ECONFIG, x->seen[key_index("kafka.control_topic")],
             "kafka.control_topic: must differ from kafka.topic%s and kafka.dlq_topic",
             c->kafka.topics.n > 1 ? "s" : "");
}

/* An event type means one thing. */
static void check_types(load_ctx_t *x)
{
    vg_config_t *c = x->c;
    if (c->events.types.n == 0) {
        fail(x, VG_ECONFIG, x->seen[key_index("events.types")], "events.types: must name at least one type");
        return;
    }
    const vg_strlist_t *lists[] = {&c->events.types, &c->events.removal_types};
    for (int l = 0; l < 2; l++)
        if (vg_strlist_has(lists[l], VG_FORGET_TYPE, strlen(VG_FORGET_TYPE))) {
            fail(x, VG_ECONFIG, x->seen[key_index(l ? "events.removal_types" : "events.types")],
                 "%s: \"" VG_FORGET_TYPE "\" is the erasure of a user, not an interaction or a removal",
                 l ? "events.removal_types" : "events.types");
            return;
        }
    for (size_t i = 0; i < c->events.removal_types.n; i++) {
        const char *t = c->events.removal_types.v[i];
        if (vg_strlist_has(&c->events.types, t, strlen(t))) {
            fail(x, VG_ECONFIG, x->seen[key_index("events.removal_types")],
                 "events.removal_types: entry %zu is in events.types too: a type is an interaction or a removal",
                 i + 1);
            return;
        }
    }
}

/* ---- secrets -------------------------------------------------------------- */

/* Appends "FILE:LINE: <fmt>\n" to c->warnings (dropped when out of memory:
 * a warning is advice). */
__attribute__((format(printf, 3, 4))) static void add_warning(load_ctx_t *x, int line, const char *fmt, ...)
{
    char msg[1024];
    int n = snprintf(msg, sizeof msg, "%s:%d: ", x->path, line);
    if (n < 0 || (size_t)n >= sizeof msg)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    size_t old = strlen(x->c->warnings), add = strlen(msg);
    char *w = realloc(x->c->warnings, old + add + 2);
    if (!w)
        return;
    memcpy(w + old, msg, add);
    memcpy(w + old + add, "\n", 2);
    x->c->warnings = w;
}

/* The secret in the file that file_key names (its value `name`), or NULL
 * when name is empty or on an error (recorded).  The inline spelling
 * inline_key must not be set too (inline_line > 0: it is). */
static char *secret_from_file(load_ctx_t *x, const char *file_key, const char *name, const char *inline_key,
                              int inline_line)
{
    if (!*name)
        return NULL;
    int line = x->seen[key_index(file_key)];
    if (inline_line) {
        fail(x, VG_ECONFIG, line, "%s: %s is set too (line %d): set one of them", file_key, inline_key,
             inline_line);
        return NULL;
    }
    char why[PATH_MAX + 256], *s = NULL;
    int rc = vg_cfg_secret_read_(name, &s, why, sizeof why);
    if (rc)
        fail(x, rc, line, "%s: %s", file_key, why);
    return s;
}

/* redis.password_file and kafka.sasl_password_file: their files' contents
 * become redis.password and the librdkafka property sasl.password. */
static void load_secrets(load_ctx_t *x)
{
    vg_config_t *c = x->c;
    char *s = secret_from_file(x, "redis.password_file", c->redis.password_file, "redis.password",
                               *c->redis.password ? x->seen[key_index("redis.password")] : 0);
    if (s) {
        free(c->redis.password);
        c->redis.password = s;
    }
    size_t k = 0;
    while (k < c->kafka.n_options && strcmp(c->kafka.options[2 * k], "sasl.password") != 0)
        k++;
    if (x->rc || !(s = secret_from_file(x, "kafka.sasl_password_file", c->kafka.sasl_password_file,
                                        OPTION_PREFIX "sasl.password",
                                        k < c->kafka.n_options ? x->opt_line[k] : 0)))
        return;
    char *name = strdup("sasl.password");
    if (!name) {
        free(s);
        fail(x, VG_ENOMEM, 0, "out of memory");
        return;
    }
    push_option(x, name, s, 0);
}

#define INLINE_SECRET                                                                                       \
    "a secret written in the configuration file: put it in a file of its own and set %s instead (under " \
    "systemd: LoadCredential=, see vaegand.service)"

/* A secret written in the file works, but only while nobody else can read
 * the file: each one gets a warning. */
static void warn_inline_secrets(load_ctx_t *x)
{
    const vg_config_t *c = x->c;
    int l = x->seen[key_index("redis.password")];
    if (l && *c->redis.password && !*c->redis.password_file)
        add_warning(x, l, "redis.password: " INLINE_SECRET, "redis.password_file");
    for (size_t k = 0; k < c->kafka.n_options; k++) {
        const char *name = c->kafka.options[2 * k];
        if (!x->opt_line[k] || !*c->kafka.options[2 * k + 1] || !vg_cfg_secret_name_(name))
            continue;
        if (strcmp(name, "sasl.password") == 0)
            add_warning(x, x->opt_line[k], OPTION_PREFIX "%s: " INLINE_SECRET, name, "kafka.sasl_password_file");
        else
            add_warning(x, x->opt_line[k],
                 OPTION_PREFIX "%s: a secret written in the configuration file: keep the file unreadable to "
                 "other users (mode 0640, as installed)",
                 name);
    }
}

/* Checks across keys, after the whole file was read. */
static void check_whole(load_ctx_t *x)
{
    vg_config_t *c = x->c;
    if (!*c->redis.host && !*c->redis.socket) {
        fail(x, VG_ECONFIG, x->seen[key_index("redis.host")], "redis.host: must not be empty when redis.socket is empty");
        return;
    }
    if (c->redis.cluster && (*c->redis.socket || c->redis.db)) {
        fail(x, VG_ECONFIG, x->seen[key_index("redis.cluster")],
             "redis.cluster: a cluster is reached by redis.host and redis.port; redis.socket and redis.db must be unset");
        return;
    }
    check_topics(x);
    if (!x->rc)
        check_types(x);
    if (!x->rc)
        load_secrets(x);
    if (!x->rc)
        warn_inline_secrets(x);
}

/* The [section] line `line` of the file is in, for a message: the line
 * itself is never shown (it may hold a secret).  "" before any section or
 * when the file cannot be read again. */
static void section_at(load_ctx_t *x, int line, char *out, size_t len)
{
    out[0] = '\0';
    rewind(x->f);
    for (int i = 1; i < line && getline(&x->buf, &x->cap, x->f) >= 0; i++) {
        const char *p = x->buf + strspn(x->buf, " \t");
        const char *e = *p == '[' ? strchr(p, ']') : NULL;
        if (e)
            snprintf(out, len, "%.*s", (int)(e - p - 1), p + 1);
    }
}

int vg_config_load(vg_config_t *c, const char *path, char *err, size_t errlen)
{
    vg_config_default(c);
    if (err && errlen)
        err[0] = '\0';
    c->path = strdup(path);
    if (!c->path) {
        if (err && errlen)
            snprintf(err, errlen, "%s: out of memory", path);
        return VG_ENOMEM;
    }
    load_ctx_t *x = calloc(1, sizeof *x);
    if (!x) {
        if (err && errlen)
            snprintf(err, errlen, "%s: out of memory", path);
        return VG_ENOMEM;
    }
    x->c = c;
    x->path = path;
    x->err = err;
    x->errlen = errlen;
    x->f = fopen(path, "r");
    if (!x->f) {
        fail(x, VG_EIO, 0, "cannot read: %s", strerror(errno));
        int rc = x->rc;
        free(x);
        return rc;
    }
    x->last_key[0] = '\0';
    int r = ini_parse_stream(read_line, x, handler, x);
    if (x->io_errno) {
        x->rc = 0; /* a read error beats anything seen in a partial file */
        fail(x, VG_EIO, 0, "cannot read: %s", strerror(x->io_errno));
    } else if (r == -2) {
        x->rc = 0;
        fail(x, VG_ENOMEM, 0, "out of memory");
    } else if (r > 0 && (!x->rc || r < x->err_line)) {
        /* a line inih itself could not read, before any problem of ours */
        x->rc = 0;
        char sec[64];
        section_at(x, r, sec, sizeof sec);
        fail(x, VG_ECONFIG, r,
             "syntax error%s%s%s: expected \"[section]\", \"key = value\" or a comment (the line is not shown: it "
             "may hold a secret)",
             *sec ? " in [" : "", sec, *sec ? "]" : "");
    }
    if (!x->rc) {
        apply_variant_defaults(x);
        check_whole(x);
    }
    int rc = x->rc;
    fclose(x->f);
    free(x->buf);
    free(x->opt_line);
    free(x);
    return rc;
}

/* ---- dump --------------------------------------------------------------- */

/* Shortest %g form that reads back as the same double. */
void vg_config_dump(const vg_config_t *c, FILE *f)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_def_t *k = &keys[i];
        const void *slot = (const char *)c + k->off;
        char num[64];
        const char *v = num;
        switch (k->kind) {
        case K_STR:
        case K_STR_NE:
        case K_LISTEN:
            v = *(char *const *)slot ? *(char *const *)slot : "";
            if (strcmp(k->key, "redis.password") == 0 && *v)
                v = *c->redis.password_file ? "" : "***"; /* from the file: the _file line says where */
            break;
        case K_INT:
            snprintf(num, sizeof num, "%d", *(const int *)slot);
            break;
        case K_DBL:
            vg_cfg_fmt_double_(*(const double *)slot, num, sizeof num);
            break;
        case K_NOISE:
            if (*(const double *)slot < 0)
                v = "auto";
            else
                vg_cfg_fmt_double_(*(const double *)slot, num, sizeof num);
            break;
        case K_U64:
            snprintf(num, sizeof num, "%llu", (unsigned long long)*(const uint64_t *)slot);
            break;
        case K_VARIANT:
            v = vg_variant_name(*(const vg_variant_t *)slot);
            break;
        case K_LIK:
            v = vg_likelihood_name(*(const vg_likelihood_t *)slot);
            break;
        case K_KERNEL:
            v = vg_kernel_name(*(const vg_kernel_t *)slot);
            break;
        case K_REC_WRITE:
            v = *(const int *)slot ? "zadd" : "auto";
            break;
        case K_YESNO:
            v = *(const int *)slot ? "yes" : "no";
            break;
        case K_LEVEL:
            v = vg_log_level_name(*(const int *)slot);
            break;
        case K_LIST: {
            const vg_strlist_t *l = slot;
            fprintf(f, "%s =", k->key);
            for (size_t j = 0; j < l->n; j++)
                fprintf(f, "%s%s", j ? ", " : " ", l->v[j]);
            fputc('\n', f);
            continue;
        }
        case K_OPTION:
            for (size_t j = 0; j < c->kafka.n_options; j++) {
                const char *name = c->kafka.options[2 * j];
                if (*c->kafka.sasl_password_file && strcmp(name, "sasl.password") == 0)
                    continue; /* from kafka.sasl_password_file, shown as that */
                fprintf(f, "%s%s = %s\n", OPTION_PREFIX, name, vg_cfg_secret_name_(name) ? "***" : c->kafka.options[2 * j + 1]);
            }
            continue;
        default:
            vg_assert(!"unreachable");
        }
        fprintf(f, "%s =%s%s\n", k->key, *v ? " " : "", v);
    }
}

int vg_config_scorer_threads(const vg_config_t *c)
{
    if (c->serve.threads > 0)
        return c->serve.threads;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 1 ? (int)(cpus < VG_SCORER_THREADS_AUTO_MAX ? cpus : VG_SCORER_THREADS_AUTO_MAX) : 1;
}
