/*
 * fuzz_config.c — libFuzzer harness of the configuration loader
 * (daemon/config.h): the input is a vaegand.conf, written to the scratch
 * file (fuzz.h) and loaded with vg_config_load.
 *
 * What it asserts:
 *   - a refused file is VG_ECONFIG, VG_ENOMEM or VG_EIO with a message that
 *     starts with the path; the configuration is still valid (dumped, freed);
 *   - a loaded configuration keeps config.h's promises (non-empty strings
 *     and lists, topic == topics[0], dlq_topic not a topic, no type both an
 *     interaction and a removal, "forget" in neither, every range);
 *   - the dump is a fixed point: the dump turned back into an INI file
 *     ("[section]" then "key=value", lists without the blank after their
 *     commas, kafka.topic left out as topics holds it) loads, and dumps to
 *     the same text; a dump whose INI form has an over-long line (more than
 *     INI_MAX_LINE - 1 characters) is refused at that line instead.
 * vg_config_free runs twice (config.h: safe).  State: only the scratch file
 * survives an input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "daemon/config.h"
#include "fuzz/fuzz.h"

static void check_list(const vg_strlist_t *l, int may_be_empty)
{
    vg_assert(may_be_empty || l->n > 0);
    for (size_t i = 0; i < l->n; i++) {
        vg_assert(l->v[i][0] != '\0');
        for (size_t j = 0; j < i; j++)
            vg_assert(strcmp(l->v[i], l->v[j]) != 0);
    }
}

/* config.h's promises about a loaded configuration. */
static void check_loaded(const vg_config_t *c)
{
    vg_assert(c->kafka.brokers[0] && c->kafka.topic[0] && c->kafka.group[0] && c->state.dir[0]);
    check_list(&c->kafka.topics, 0);
    vg_assert(strcmp(c->kafka.topic, c->kafka.topics.v[0]) == 0);
    vg_assert(!vg_strlist_has(&c->kafka.topics, c->kafka.dlq_topic, strlen(c->kafka.dlq_topic)));
    check_list(&c->events.types, 0);
    check_list(&c->events.removal_types, 1);
    for (size_t i = 0; i < c->events.removal_types.n; i++) {
        const char *t = c->events.removal_types.v[i];
        vg_assert(!vg_strlist_has(&c->events.types, t, strlen(t)));
    }
    vg_assert(!vg_strlist_has(&c->events.types, VG_FORGET_TYPE, strlen(VG_FORGET_TYPE)));
    vg_assert(!vg_strlist_has(&c->events.removal_types, VG_FORGET_TYPE, strlen(VG_FORGET_TYPE)));
    vg_assert(c->redis.host[0] || c->redis.socket[0]);
    vg_assert(c->redis.port >= 1 && c->redis.port <= 65535 && c->redis.db >= 0);
    vg_assert(c->serve.top_n >= 1 && c->serve.top_n <= VG_TOP_N_MAX && c->serve.refresh_s >= 1);
    vg_assert(c->history.max_items >= 1 && c->state.checkpoint_interval_s >= 1);
    vg_assert(c->train.recent_fraction >= 0 && c->train.recent_fraction <= 1);
    vg_assert(c->model.cfg.hidden >= 1 && c->model.cfg.latent >= 1 && c->model.cfg.disc_hidden >= 1);
    vg_assert(c->model.cfg.dropout >= 0 && c->model.cfg.dropout < 1 && c->model.cfg.lr > 0);
    vg_assert(c->path != NULL);
}

/* vg_config_dump into a malloc'd, NUL-terminated string. */
static char *dump(const vg_config_t *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    vg_assert(f != NULL);
    vg_config_dump(c, f);
    vg_assert(fclose(f) == 0);
    return buf;
}

/* 1 when the dump line is one of a list key (kafka.topics, events.*types). */
static int is_list_key(const char *line)
{
    return strncmp(line, "kafka.topics =", 14) == 0 || strncmp(line, "events.types =", 14) == 0 ||
           strncmp(line, "events.removal_types =", 22) == 0;
}

/* The dump as an INI file: "section.key = value" lines become "[section]"
 * headers and "key=value" lines (no blank before the value, none after a
 * list's commas: ";x" stays a value, not a comment), kafka.topic is left
 * out. */
static char *as_ini(const char *d)
{
    char *buf = NULL, sec[32] = "";
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    vg_assert(f != NULL);
    for (const char *line = d; *line;) {
        const char *nl = strchr(line, '\n'), *dot = strchr(line, '.'), *eq = strstr(line, " =");
        vg_assert(nl && dot && eq && dot < eq && eq < nl && (size_t)(dot - line) < sizeof sec);
        if (strncmp(line, "kafka.topic =", 13) != 0) {
            if (strlen(sec) != (size_t)(dot - line) || strncmp(sec, line, (size_t)(dot - line)) != 0) {
                memcpy(sec, line, (size_t)(dot - line));
                sec[dot - line] = '\0';
                fprintf(f, "[%s]\n", sec);
            }
            const char *v = eq + 2 + (eq[2] == ' ');
            fprintf(f, "%.*s=", (int)(eq - dot - 1), dot + 1);
            for (const char *p = v; p < nl; p++) /* a list's ", " as "," (entries have no blanks) */
                if (!(is_list_key(line) && p[0] == ' ' && p > v && p[-1] == ','))
                    fputc(*p, f);
            fputc('\n', f);
        }
        line = nl + 1;
    }
    vg_assert(fclose(f) == 0);
    return buf;
}

/* The number of the first line of s longer than a file's line may be
 * (INI_MAX_LINE - 1 characters, config.h), or 0. */
static int first_long_line(const char *s)
{
    int n = 1;
    for (const char *line = s; *line; n++) {
        const char *nl = strchr(line, '\n');
        if ((size_t)(nl - line) > INI_MAX_LINE - 1)
            return n;
        line = nl + 1;
    }
    return 0;
}

/* Loading the dump again gives the same dump.  The INI form of a value that
 * filled its input line can be longer than a line may be (a longer key:
 * "topic" is dumped as "topics", a secret option's value as "***"): that
 * file is refused at that line, the one thing it may fail for. */
static void check_fixed_point(const vg_config_t *c)
{
    char *d1 = dump(c), *ini = as_ini(d1), err[512];
    vg_config_t c2;
    const char *path = vg_fuzz_file(ini, strlen(ini));
    int rc = vg_config_load(&c2, path, err, sizeof err), long_line = first_long_line(ini);
    if (long_line) {
        char want[128];
        snprintf(want, sizeof want, "%s:%d: line is longer than", path, long_line);
        vg_assert(rc == VG_ECONFIG && strncmp(err, want, strlen(want)) == 0);
    } else {
        if (rc != 0) {
            fprintf(stderr, "fuzz_config: the dump does not load again: %s\n--- dump as INI:\n%s", err, ini);
            vg_assert(rc == 0);
        }
        char *d2 = dump(&c2);
        if (strcmp(d1, d2) != 0) {
            fprintf(stderr, "fuzz_config: the dump changed on reloading\n--- first:\n%s--- second:\n%s", d1, d2);
            vg_assert(strcmp(d1, d2) == 0);
        }
        free(d2);
    }
    vg_config_free(&c2);
    free(d1);
    free(ini);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vg_config_t c;
    char err[512];
    const char *path = vg_fuzz_file(data, size);
    int rc = vg_config_load(&c, path, err, sizeof err);
    if (rc == 0) {
        vg_assert(err[0] == '\0');
        check_loaded(&c);
        check_fixed_point(&c);
    } else {
        vg_assert(rc == VG_ECONFIG || rc == VG_ENOMEM || rc == VG_EIO);
        vg_assert(strncmp(err, path, strlen(path)) == 0);
        free(dump(&c));
    }
    vg_config_free(&c);
    vg_config_free(&c);
    return 0;
}
