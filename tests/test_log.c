/* test_log.c — the daemon's log (daemon/log.c): line format to a file and to
 * the journal, level filter, reopen after logrotate's rename, whole lines
 * under concurrent threads, and the rate limiter. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/errors.h"
#include "daemon/log.h"
#include "tests/support/proc.h"
#include "tests/support/tmpdir.h"

static void setup(void)
{
    vg_tmpdir_make();
    unsetenv("JOURNAL_STREAM");
}

static void teardown(void)
{
    vg_log_close();
    vg_tmpdir_remove();
}

TestSuite(log, .init = setup, .fini = teardown);

static char *slurp(const char *p)
{
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f, "%s", p);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void tmp_path(char *out, size_t len, const char *name) { snprintf(out, len, "%s/%s", vg_tmpdir, name); }

/* Checks "YYYY-MM-DDTHH:MM:SS.mmmZ " at the start of a line. */
static int has_timestamp(const char *s)
{
    const char *pat = "dddd-dd-ddTdd:dd:dd.dddZ ";
    for (size_t i = 0; pat[i]; i++) {
        if (pat[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != pat[i])
            return 0;
    }
    return 1;
}

Test(log, file_format)
{
    char p[256];
    tmp_path(p, sizeof p, "a.log");
    cr_assert_eq(vg_log_open(p, VG_LOG_DEBUG), 0);
    vg_log(VG_LOG_WARN, "hello %d", 42);
    vg_log(VG_LOG_INFO, "info line");
    vg_log(VG_LOG_ERROR, "bad\nthing\there");
    vg_log(VG_LOG_DEBUG, "dbg");
    vg_log_cb(NULL, VG_LOG_INFO, "from a library");
    char *s = slurp(p);
    const char *want[] = {"warn  hello 42", "info  info line", "error bad thing here", "debug dbg",
                          "info  from a library"};
    char *line = s;
    for (int i = 0; i < 5; i++) {
        char *nl = strchr(line, '\n');
        cr_assert_not_null(nl, "line %d missing in:\n%s", i, s);
        *nl = '\0';
        cr_assert(has_timestamp(line), "no timestamp: %s", line);
        cr_assert_str_eq(line + 25, want[i]);
        line = nl + 1;
    }
    cr_assert_str_eq(line, "");
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    mode_t mask = umask(0);
    umask(mask);
    cr_assert_eq(st.st_mode & 0777, 0640 & ~mask, "mode %o", (unsigned)(st.st_mode & 0777));
}

Test(log, appends_to_an_existing_file)
{
    char p[256];
    tmp_path(p, sizeof p, "a.log");
    FILE *f = fopen(p, "w");
    fputs("old\n", f);
    fclose(f);
    cr_assert_eq(vg_log_open(p, VG_LOG_INFO), 0);
    vg_log(VG_LOG_INFO, "new");
    char *s = slurp(p);
    cr_assert(strncmp(s, "old\n", 4) == 0, "%s", s);
    cr_assert(strstr(s, " info  new\n"), "%s", s);
}

Test(log, level_filter)
{
    char p[256];
    tmp_path(p, sizeof p, "a.log");
    cr_assert_eq(vg_log_open(p, VG_LOG_WARN), 0);
    cr_assert(!vg_log_enabled(VG_LOG_INFO));
    cr_assert(vg_log_enabled(VG_LOG_WARN));
    vg_log(VG_LOG_DEBUG, "d");
    vg_log(VG_LOG_INFO, "i");
    vg_log(VG_LOG_WARN, "w");
    vg_log(VG_LOG_ERROR, "e");
    vg_log_set_level(VG_LOG_DEBUG);
    vg_log(VG_LOG_DEBUG, "d2");
    vg_log_set_level(VG_LOG_ERROR);
    vg_log(VG_LOG_WARN, "w2");
    char *s = slurp(p);
    cr_assert(!strstr(s, " d\n") && !strstr(s, " i\n") && !strstr(s, "w2"), "%s", s);
    cr_assert(strstr(s, "warn  w\n") && strstr(s, "error e\n") && strstr(s, "debug d2\n"), "%s", s);
}

Test(log, reopen_after_rename)
{
    char p[256], rotated[256];
    tmp_path(p, sizeof p, "vaegand.log");
    tmp_path(rotated, sizeof rotated, "vaegand.log.1");
    cr_assert_eq(vg_log_open(p, VG_LOG_INFO), 0);
    vg_log(VG_LOG_INFO, "one");
    cr_assert_eq(rename(p, rotated), 0);
    vg_log(VG_LOG_INFO, "two"); /* still the old file */
    cr_assert_eq(vg_log_reopen(), 0);
    vg_log(VG_LOG_INFO, "three");
    char *s = slurp(rotated);
    cr_assert(strstr(s, "one\n") && strstr(s, "two\n") && !strstr(s, "three"), "%s", s);
    s = slurp(p);
    cr_assert(strstr(s, "three\n") && !strstr(s, "one") && !strstr(s, "two"), "%s", s);
}

Test(log, reopen_is_a_noop_for_stderr)
{
    cr_assert_eq(vg_log_open(NULL, VG_LOG_INFO), 0);
    cr_assert_eq(vg_log_reopen(), 0);
    cr_assert_eq(vg_log_open("", VG_LOG_INFO), 0);
}

Test(log, open_failure)
{
    char p[256];
    tmp_path(p, sizeof p, "no/such/dir/x.log");
    cr_assert_eq(vg_log_open(p, VG_LOG_INFO), VG_EIO);
}

/* Journal mode: stderr is the stream $JOURNAL_STREAM names. */
Test(log, journal_prefix)
{
    char p[256];
    tmp_path(p, sizeof p, "journal");
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fflush(stderr);
    cr_assert_geq(dup2(fileno(f), STDERR_FILENO), 0);
    struct stat st;
    cr_assert_eq(fstat(STDERR_FILENO, &st), 0);
    char js[64];
    snprintf(js, sizeof js, "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", js, 1);
    cr_assert_eq(vg_log_open("", VG_LOG_DEBUG), 0);
    vg_log(VG_LOG_ERROR, "e");
    vg_log(VG_LOG_WARN, "w");
    vg_log(VG_LOG_INFO, "i");
    vg_log(VG_LOG_DEBUG, "d");
    cr_assert_str_eq(slurp(p), "<3>e\n<4>w\n<6>i\n<7>d\n");

    /* another stream: timestamps again */
    setenv("JOURNAL_STREAM", "1:2", 1);
    cr_assert_eq(vg_log_open("", VG_LOG_DEBUG), 0);
    vg_log(VG_LOG_INFO, "x");
    char *s = slurp(p);
    cr_assert(has_timestamp(s + strlen("<3>e\n<4>w\n<6>i\n<7>d\n")), "%s", s);
    fclose(f);
}

Test(log, long_message_is_cut_to_one_line)
{
    char p[256];
    tmp_path(p, sizeof p, "a.log");
    cr_assert_eq(vg_log_open(p, VG_LOG_INFO), 0);
    static char big[3 * VG_LOG_LINE_MAX];
    memset(big, 'x', sizeof big - 1);
    vg_log(VG_LOG_INFO, "%s", big);
    vg_log(VG_LOG_INFO, "after");
    char *s = slurp(p);
    char *nl = strchr(s, '\n');
    cr_assert_not_null(nl);
    cr_assert_eq((size_t)(nl - s) + 1, (size_t)VG_LOG_LINE_MAX);
    cr_assert(strncmp(nl - 3, "...", 3) == 0);
    cr_assert(strstr(nl + 1, "info  after\n"));
}

#define N_THREADS 4
#define N_LINES 2000

static void *writer(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < N_LINES; i++)
        vg_log(VG_LOG_INFO, "thread %d line %d %s", id, i, "padding-padding-padding-padding-padding");
    return NULL;
}

Test(log, threads_never_interleave)
{
    char p[256];
    tmp_path(p, sizeof p, "a.log");
    cr_assert_eq(vg_log_open(p, VG_LOG_INFO), 0);
    pthread_t t[N_THREADS];
    for (int i = 0; i < N_THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, writer, (void *)(intptr_t)i), 0);
    /* rotate while they write */
    char rotated[256];
    tmp_path(rotated, sizeof rotated, "a.log.1");
    vgt_sleep_ms(1);
    cr_assert_eq(rename(p, rotated), 0);
    cr_assert_eq(vg_log_reopen(), 0);
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(t[i], NULL);

    int count[N_THREADS] = {0};
    const char *files[2] = {rotated, p};
    for (int k = 0; k < 2; k++) {
        FILE *f = fopen(files[k], "r");
        cr_assert_not_null(f);
        char line[256];
        while (fgets(line, sizeof line, f)) {
            int id, n;
            char pad[64];
            cr_assert(has_timestamp(line), "%s", line);
            cr_assert_eq(sscanf(line + 25, "info  thread %d line %d %63s", &id, &n, pad), 3, "%s", line);
            cr_assert_str_eq(pad, "padding-padding-padding-padding-padding");
            cr_assert(id >= 0 && id < N_THREADS);
            cr_assert_eq(n, count[id], "thread %d: line %d after %d", id, n, count[id]);
            count[id]++;
        }
        fclose(f);
    }
    for (int i = 0; i < N_THREADS; i++)
        cr_assert_eq(count[i], N_LINES);
}

Test(log, level_names)
{
    int l = -1;
    cr_assert_eq(vg_log_level_parse("debug", &l), 0);
    cr_assert_eq(l, VG_LOG_DEBUG);
    cr_assert_eq(vg_log_level_parse("info", &l), 0);
    cr_assert_eq(l, VG_LOG_INFO);
    cr_assert_eq(vg_log_level_parse("warn", &l), 0);
    cr_assert_eq(l, VG_LOG_WARN);
    cr_assert_eq(vg_log_level_parse("error", &l), 0);
    cr_assert_eq(l, VG_LOG_ERROR);
    cr_assert_eq(vg_log_level_parse("warning", &l), VG_EINVAL);
    cr_assert_eq(vg_log_level_parse("", &l), VG_EINVAL);
    cr_assert_str_eq(vg_log_level_name(VG_LOG_WARN), "warn");
    cr_assert_str_eq(vg_log_level_name(9), "?");
}

Test(log, ratelimit_counts_suppressed)
{
    vg_ratelimit_t rl = VG_RATELIMIT_INIT(10.0, 3);
    uint64_t sup = 777;
    for (int i = 0; i < 3; i++) {
        cr_assert(vg_ratelimit_ok_at(&rl, 100.0 + i, &sup));
        cr_assert_eq(sup, 0);
    }
    for (int i = 0; i < 5; i++)
        cr_assert(!vg_ratelimit_ok_at(&rl, 103.0, &sup));
    cr_assert(!vg_ratelimit_ok_at(&rl, 109.9, &sup));
    cr_assert_eq(rl.suppressed, 6);
    /* a new window: allowed, and it tells how many were dropped */
    cr_assert(vg_ratelimit_ok_at(&rl, 110.0, &sup));
    cr_assert_eq(sup, 6);
    cr_assert(vg_ratelimit_ok_at(&rl, 111.0, &sup));
    cr_assert_eq(sup, 0);
    cr_assert(vg_ratelimit_ok_at(&rl, 112.0, NULL));
    cr_assert(!vg_ratelimit_ok_at(&rl, 113.0, NULL));
    cr_assert(vg_ratelimit_ok_at(&rl, 200.0, &sup));
    cr_assert_eq(sup, 1);
}

Test(log, ratelimit_real_clock)
{
    vg_ratelimit_t rl = VG_RATELIMIT_INIT(0.2, 2);
    uint64_t sup = 0;
    cr_assert(vg_ratelimit_ok(&rl, &sup));
    cr_assert(vg_ratelimit_ok(&rl, &sup));
    cr_assert(!vg_ratelimit_ok(&rl, &sup));
    cr_assert(!vg_ratelimit_ok(&rl, &sup));
    vgt_sleep_ms(250);
    cr_assert(vg_ratelimit_ok(&rl, &sup));
    cr_assert_eq(sup, 2);
}
