/* test_progress_daemon.c — the progress of long work end to end (ctest label
 * integration): a real redis-server and vaegan-mockbroker, the built vaegand
 * as a child process (tests/support/daemon.h).
 *
 *   - a slow start: Redis holds 100,000 histories; vaegand, started with
 *     NOTIFY_SOCKET naming a socket bound here, sends STATUS= lines of the
 *     load's progress and EXTEND_TIMEOUT_USEC= before READY=1, and logs the
 *     same progress (its stderr is a file, not a terminal);
 *   - `vaegand --replay` of a generated file logs its phases' progress.
 *
 * log.progress_interval_s is made small so that every phase reports; the
 * waits are on the datagrams and the process, with deadlines only as
 * guards. */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "tests/support/daemon.h"
#include "tests/support/proc.h"
#include "tests/support/tmpdir.h"

#define N_ITEMS 300
#define GUARD_S 240.0 /* deadline of a wait: a guard, not a budget */

static vgt_env_t E;

static const char SETTINGS[] = "[serve]\ntop_n = 10\nbatch = 64\n"
                               "[model]\nhidden = 32\nlatent = 16\nbatch = 64\n"
                               "[train]\ninterval_ms = 200\nsteps_per_round = 2\n"
                               "[log]\nlevel = info\nprogress_interval_s = 0.02\n";

static void setup(void)
{
    vg_tmpdir_make();
    vgt_env_opts_t o = {.vaegand = VG_VAEGAND_BIN, .mockbroker = VG_MOCKBROKER_BIN, .partitions = 4,
                        .settings = SETTINGS};
    cr_assert_eq(vgt_env_start(&E, vg_tmpdir, &o), 0, "redis-server or the broker did not start");
}

static void teardown(void)
{
    if (!vgt_env_finish(&E))
        vg_tmpdir_remove();
}

/* What arrived on the notify socket up to READY=1. */
typedef struct seen {
    int ready;
    int load_status;    /* STATUS= of the load's progress (any) */
    int mid_load;       /* ... with the total known and not reached: sent during the load */
    int extended;       /* EXTEND_TIMEOUT_USEC=30000000 (3 x 0.02 s, raised to the 30 s floor) */
    int extended_bare;  /* an extension without a load STATUS= in its datagram */
    int final;          /* the load's final STATUS= (done in) */
    int after_ready;    /* a load STATUS= after READY=1 (must not be) */
    char example[4096]; /* one mid-load datagram, for the record */
} seen_t;

static void classify(seen_t *s, const char *d)
{
    const char *st = strstr(d, "STATUS=start-up: loading histories ");
    int ext = strstr(d, "EXTEND_TIMEOUT_USEC=") != NULL;
    if (ext) {
        s->extended += strstr(d, "EXTEND_TIMEOUT_USEC=30000000") != NULL;
        s->extended_bare += st == NULL;
    }
    if (!st)
        return;
    s->load_status++;
    s->after_ready += s->ready;
    if (strstr(st, " of 100,000 users") && strstr(st, ", ETA ") && !strstr(st, "100,000 of 100,000")) {
        if (!s->mid_load++)
            snprintf(s->example, sizeof s->example, "%s", d);
    }
    s->final += strstr(st, "100,000 of 100,000 users") && strstr(st, ", 100%, done in ") && !ext;
}

/* Reads datagrams (the socket has a 200 ms receive timeout) until READY=1
 * or the guard. */
static void watch_until_ready(int fd, seen_t *s)
{
    double end = vg_mono_s() + GUARD_S;
    char buf[4096];
    while (!s->ready && vg_mono_s() < end) {
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        classify(s, buf);
        if (strstr(buf, "READY=1"))
            s->ready = 1;
    }
}

Test(progress, a_slow_start_reports_its_load_to_systemd, .init = setup, .fini = teardown, .timeout = 400)
{
    enum { USERS = 100000 };
    cr_assert_eq(vgt_preload_histories(&E, "P", USERS, N_ITEMS), 0, "preloading Redis");
    int fd = vgt_env_spawn_notify(&E);
    cr_assert_geq(fd, 0, "a notify socket and the daemon");
    seen_t s = {0};
    watch_until_ready(fd, &s);
    if (!s.ready || !s.mid_load || !s.extended || !s.final)
        vgt_show_log(&E, "the start-up's notifications");
    cr_assert(s.ready, "READY=1 arrives");
    cr_assert_gt(s.mid_load, 0, "STATUS= with the load's progress before READY=1 (%d load statuses)", s.load_status);
    cr_assert_gt(s.extended, 0, "EXTEND_TIMEOUT_USEC=30000000 before READY=1");
    cr_assert_eq(s.extended_bare, 0, "an extension comes with its STATUS=");
    cr_assert_eq(s.final, 1, "one final STATUS= of the load, without an extension");
    cr_assert_eq(s.after_ready, 0);
    fprintf(stderr, "a mid-load notification: %s\n", s.example);
    /* the same text in the log, which is a file: log lines, not a terminal line */
    cr_assert_gt(vgt_log_lines(&E, "info  start-up: loading histories ", " of 100,000 users ("), 0);
    cr_assert_eq(vgt_log_lines(&E, "\r", NULL), 0, "no carriage return in a log file");
    cr_assert_eq(vgt_log_lines(&E, "loaded 100000 users", NULL), 1, "and the load's summary");
    kill(E.daemon, SIGTERM);
    cr_assert_eq(vgt_wait_exit(E.daemon, 60), 0);
    E.daemon = 0;
    close(fd);
}

Test(progress, replay_logs_the_progress_of_its_phases, .init = setup, .fini = teardown, .timeout = 400)
{
    vgt_stream_t s;
    vgt_stream_make(&s, "r", 2000, N_ITEMS, 100000, 9);
    char data[300];
    snprintf(data, sizeof data, "%s/events.json", vg_tmpdir);
    FILE *f = fopen(data, "w");
    cr_assert_not_null(f);
    for (size_t k = 0; k < s.n; k++)
        fprintf(f, "%s\n", s.val[k]);
    cr_assert_eq(fclose(f), 0);
    int rc = vgt_wait_exit(vgt_env_spawn(&E, "--replay", data, "--epochs", "3", NULL), GUARD_S);
    if (rc != 0 || vgt_log_lines(&E, "replay: reading ", NULL) == 0)
        vgt_show_log(&E, "the replay");
    cr_assert_eq(rc, 0, "--replay exits 0");
    /* the file's read: events, rate, % of its size, ETA */
    cr_assert_gt(vgt_log_lines(&E, "info  replay: reading ", " events ("), 0);
    cr_assert_gt(vgt_log_lines(&E, "replay: reading ", "% of 4."), 0, "the percentage of the file's 4.x MB");
    cr_assert_gt(vgt_log_lines(&E, "replay: reading ", ", ETA "), 0);
    /* the other phases: their units out of a known total */
    cr_assert_gt(vgt_log_lines(&E, "info  replay: writing histories ", " of 100,000 events ("), 0);
    cr_assert_gt(vgt_log_lines(&E, "info  replay: training ", " of 96 batches ("), 0, "3 epochs of 32 batches");
    cr_assert_eq(vgt_log_lines(&E, "\r", NULL), 0, "no carriage return in a log file");
    cr_assert_eq(vgt_log_lines(&E, "replay: done: 2000 users", NULL), 1);
    vgt_stream_free(&s);
}
