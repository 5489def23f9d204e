/*
 * test_progress.c — daemon/progress.c and the numbers of common/fmt.c: the
 * text, the throttling (an injected clock: no test waits), the log lines,
 * the sd_notify datagrams (STATUS=, EXTEND_TIMEOUT_USEC) on a socket bound
 * here, and the terminal line on a pseudo-terminal put in place of stderr.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pty.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/fmt.h"
#include "daemon/log.h"
#include "daemon/progress.h"
#include "tests/support/tmpdir.h"

static double now_s = 1000;
static double fake_clock(void) { return now_s; }

/* A progress of `what` on the fake clock, at 1000 s, drawing nothing on a terminal. */
static void make(vg_progress_t *p, const char *what, double interval, int extend)
{
    now_s = 1000;
    vg_progress_init(p, what, interval, extend);
    p->clock = fake_clock;
    p->tty = 0;
}

static const char *text(const vg_progress_t *p, int final)
{
    static char buf[VG_PROGRESS_TEXT_MAX];
    size_t n = vg_progress_format(p, now_s, final, buf, sizeof buf);
    cr_assert_eq(n, strlen(buf));
    return buf;
}

/* ---- numbers ------------------------------------------------------------------ */

Test(fmt, counts_bytes_durations)
{
    char b[VG_FMT_MAX];
    cr_assert_str_eq(vg_fmt_count(b, sizeof b, 0), "0");
    cr_assert_str_eq(vg_fmt_count(b, sizeof b, 999), "999");
    cr_assert_str_eq(vg_fmt_count(b, sizeof b, 1000), "1,000");
    cr_assert_str_eq(vg_fmt_count(b, sizeof b, 1234567), "1,234,567");
    cr_assert_str_eq(vg_fmt_count(b, sizeof b, UINT64_MAX), "18,446,744,073,709,551,615");
    cr_assert_str_eq(vg_fmt_count(b, 4, 1234567), "1,2", "cut to fit");

    cr_assert_str_eq(vg_fmt_bytes(b, sizeof b, 0), "0 B");
    cr_assert_str_eq(vg_fmt_bytes(b, sizeof b, 999), "999 B");
    cr_assert_str_eq(vg_fmt_bytes(b, sizeof b, 1000), "1.0 kB");
    cr_assert_str_eq(vg_fmt_bytes(b, sizeof b, 2100000), "2.1 MB");
    cr_assert_str_eq(vg_fmt_bytes(b, sizeof b, 9960000), "10 MB", "rounded once, at the unit shown");
    cr_assert_str_eq(vg_fmt_bytes(b, sizeof b, 210000000), "210 MB");
    cr_assert_str_eq(vg_fmt_bytes(b, sizeof b, 999600000), "1.0 GB");
    cr_assert_str_eq(vg_fmt_bytes(b, sizeof b, 249369207), "249 MB");

    cr_assert_str_eq(vg_fmt_duration(b, sizeof b, 0), "0.0 s");
    cr_assert_str_eq(vg_fmt_duration(b, sizeof b, 0.42), "0.4 s");
    cr_assert_str_eq(vg_fmt_duration(b, sizeof b, 9.96), "10 s");
    cr_assert_str_eq(vg_fmt_duration(b, sizeof b, 12.3), "12 s");
    cr_assert_str_eq(vg_fmt_duration(b, sizeof b, 59.6), "1 min 00 s");
    cr_assert_str_eq(vg_fmt_duration(b, sizeof b, 250), "4 min 10 s");
    cr_assert_str_eq(vg_fmt_duration(b, sizeof b, 7500), "2 h 05 min");
    cr_assert_str_eq(vg_fmt_duration(b, sizeof b, 273600), "3 d 04 h");
    cr_assert_str_eq(vg_fmt_duration(b, sizeof b, -1), "?");
    cr_assert_str_eq(vg_fmt_duration(b, sizeof b, NAN), "?");
    cr_assert_str_eq(vg_fmt_duration(b, sizeof b, INFINITY), "?");
}

/* ---- the text ------------------------------------------------------------------- */

Test(progress, text_of_a_file_read)
{
    vg_progress_t p;
    make(&p, "replay", 5, 0);
    vg_progress_start(&p, "reading", "events", 0, 210000000);
    cr_assert_str_eq(text(&p, 0), "replay: reading 0 events, 0% of 210 MB", "no rate at the start, no ETA at 0");
    now_s += 3;
    p.done = 1234567;
    p.bytes = 78000000;
    cr_assert_str_eq(text(&p, 0), "replay: reading 1,234,567 events (411,522/s), 37% of 210 MB, ETA 5.1 s");
    p.bytes = 210000000;
    cr_assert_str_eq(text(&p, 1), "replay: reading 1,234,567 events (411,522/s), 100% of 210 MB, done in 3.0 s");
}

Test(progress, text_of_a_load)
{
    vg_progress_t p;
    make(&p, "start-up", 5, 1);
    vg_progress_start(&p, "loading histories", "users", 0, 0);
    now_s += 0.15;
    p.done = 12000;
    cr_assert_str_eq(text(&p, 0), "start-up: loading histories 12,000 users (80,000/s)", "no total yet: no % or ETA");
    vg_progress_total(&p, 100000);
    cr_assert_str_eq(text(&p, 0), "start-up: loading histories 12,000 of 100,000 users (80,000/s), 12%, ETA 1.1 s");
    now_s += 4.85;
    p.done = 30;
    p.total = 40;
    cr_assert_str_eq(text(&p, 0), "start-up: loading histories 30 of 40 users (6.0/s), 75%, ETA 1.7 s", "slow: a decimal");
    p.what = NULL;
    p.done = p.total = 40;
    cr_assert_str_eq(text(&p, 1), "loading histories 40 of 40 users (8.0/s), 100%, done in 5.0 s");
}

Test(progress, text_is_cut_like_snprintf)
{
    vg_progress_t p;
    make(&p, "replay", 5, 0);
    vg_progress_start(&p, "reading", "events", 0, 0);
    char small[12];
    size_t n = vg_progress_format(&p, now_s, 0, small, sizeof small);
    cr_assert_eq(n, strlen("replay: reading 0 events"));
    cr_assert_str_eq(small, "replay: rea");
    cr_assert_eq(vg_progress_format(&p, now_s, 0, NULL, 0), n);
}

Test(progress, extension_covers_three_intervals_at_least_thirty_seconds)
{
    vg_progress_t p;
    make(&p, "x", 5, 1);
    cr_assert_eq(vg_progress_extend_usec(&p), 30000000);
    make(&p, "x", 0.02, 1);
    cr_assert_eq(vg_progress_extend_usec(&p), 30000000);
    make(&p, "x", 20, 1);
    cr_assert_eq(vg_progress_extend_usec(&p), 60000000);
    make(&p, "x", 0, 1);
    cr_assert_eq(p.interval_s, VG_PROGRESS_INTERVAL_S, "0 = the default");
    make(&p, "x", NAN, 1);
    cr_assert_eq(p.interval_s, VG_PROGRESS_INTERVAL_S);
}

/* ---- throttling and the log ------------------------------------------------------- */

static char log_path[128];

static void log_to_file(void)
{
    vg_tmpdir_make();
    snprintf(log_path, sizeof log_path, "%s/log", vg_tmpdir);
    cr_assert_eq(vg_log_open(log_path, VG_LOG_INFO), 0);
}

static void log_done(void)
{
    vg_log_close();
    vg_tmpdir_remove();
}

/* The lines of the log file holding s. */
static int log_count(const char *s)
{
    FILE *f = fopen(log_path, "r");
    cr_assert_not_null(f);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, s) != NULL;
    fclose(f);
    return n;
}

Test(progress, log_lines_are_an_interval_apart, .init = log_to_file, .fini = log_done)
{
    vg_progress_t p;
    make(&p, "replay", 5, 0);
    vg_progress_start(&p, "writing histories", "events", 100, 0);
    now_s = 1001;
    cr_assert_eq(vg_progress_update(&p, 10, 0), 0, "nothing before the first interval");
    now_s = 1004.99;
    cr_assert_eq(vg_progress_update(&p, 20, 0), 0);
    now_s = 1005;
    cr_assert_eq(vg_progress_update(&p, 25, 0), 1);
    now_s = 1009;
    cr_assert_eq(vg_progress_update(&p, 30, 0), 0, "4 s after the last line");
    now_s = 1010;
    cr_assert_eq(vg_progress_update(&p, 50, 0), 1);
    cr_assert_eq(vg_progress_update(&p, 51, 0), 0);
    cr_assert_eq(p.lines, 2);
    cr_assert_eq(p.statuses, 2, "a STATUS= with every line");
    cr_assert_eq(p.draws, 0, "not a terminal");
    vg_progress_end(&p);
    cr_assert_eq(p.lines, 2, "the end logs nothing: the caller logs its summary");
    cr_assert_eq(p.statuses, 3, "a final STATUS=");
    cr_assert_eq(vg_progress_update(&p, 60, 0), 0, "nothing after the end");
    cr_assert_eq(log_count("replay: writing histories 25 of 100 events (5.0/s), 25%, ETA 15 s"), 1);
    cr_assert_eq(log_count("replay: writing histories 50 of 100 events (5.0/s), 50%, ETA 10 s"), 1);
    cr_assert_eq(log_count("replay: "), 2);

    /* a new phase starts its own interval */
    vg_progress_start(&p, "training", "batches", 8, 0);
    now_s = 1014.9;
    cr_assert_eq(vg_progress_update(&p, 1, 0), 0);
    now_s = 1015;
    cr_assert_eq(vg_progress_update(&p, 2, 0), 1);
    cr_assert_eq(log_count("replay: training 2 of 8 batches (0.4/s), 25%, ETA 15 s"), 1);
    /* starting a phase ends the one that runs */
    vg_progress_start(&p, "writing lists", "users", 8, 0);
    cr_assert_eq(p.lines + p.statuses, 0, "counts are per phase");
}

Test(progress, terminal_redraws_are_throttled_apart_from_status, .init = log_to_file, .fini = log_done)
{
    vg_progress_t p;
    make(&p, "replay", 5, 0);
    p.tty = 1; /* the log is a file here, so vg_log_status writes nothing: only the counts */
    vg_progress_start(&p, "reading", "events", 0, 0);
    now_s = 1000.1;
    cr_assert_eq(vg_progress_update(&p, 1, 0), 0);
    now_s = 1000.25;
    cr_assert_eq(vg_progress_update(&p, 2, 0), 1);
    now_s = 1000.3;
    cr_assert_eq(vg_progress_update(&p, 3, 0), 0, "0.05 s after the last redraw");
    now_s = 1000.5;
    cr_assert_eq(vg_progress_update(&p, 4, 0), 1);
    cr_assert_eq(p.draws, 2);
    cr_assert_eq(p.statuses, 0, "STATUS= keeps the slower interval");
    now_s = 1005;
    cr_assert_eq(vg_progress_update(&p, 5, 0), 1);
    cr_assert_eq(p.draws, 3);
    cr_assert_eq(p.statuses, 1);
    cr_assert_eq(p.lines, 0, "no log lines while drawing");
    cr_assert_eq(log_count("replay:"), 0);
}

/* ---- sd_notify --------------------------------------------------------------------- */

/* A datagram socket at <tmpdir>/notify.sock, NOTIFY_SOCKET naming it. */
static int listen_notify(void)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/notify.sock", vg_tmpdir);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0, "bind: %s", strerror(errno));
    cr_assert_eq(setenv("NOTIFY_SOCKET", sa.sun_path, 1), 0);
    return fd;
}

/* The datagram waiting on fd ("" when none: the sends are synchronous, so
 * a message sent before the call is there). */
static const char *datagram(int fd)
{
    static char buf[1024];
    ssize_t n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
    if (n < 0) {
        cr_assert(errno == EAGAIN || errno == EWOULDBLOCK, "recv: %s", strerror(errno));
        n = 0;
    }
    buf[n] = '\0';
    return buf;
}

Test(progress, status_and_extension_datagrams, .init = log_to_file, .fini = log_done)
{
    int fd = listen_notify();
    vg_progress_t p;
    make(&p, "start-up", 5, 1);
    vg_progress_start(&p, "loading histories", "users", 0, 0);
    now_s = 1001;
    vg_progress_update(&p, 100, 0);
    cr_assert_str_eq(datagram(fd), "", "nothing before the first interval");
    vg_progress_total(&p, 1000);
    now_s = 1005;
    vg_progress_update(&p, 250, 0);
    cr_assert_str_eq(datagram(fd),
                     "STATUS=start-up: loading histories 250 of 1,000 users (50.0/s), 25%, ETA 15 s\n"
                     "EXTEND_TIMEOUT_USEC=30000000");
    cr_assert_str_eq(datagram(fd), "", "one datagram per update");
    now_s = 1010;
    vg_progress_update(&p, 250, 0);
    cr_assert_str_eq(datagram(fd), "STATUS=start-up: loading histories 250 of 1,000 users (25.0/s), 25%, ETA 30 s",
                     "no progress since the last message: no extension");
    now_s = 1015;
    vg_progress_update(&p, 251, 0);
    cr_assert(strstr(datagram(fd), "\nEXTEND_TIMEOUT_USEC=30000000"), "progress again: extended again");
    now_s = 1016;
    vg_progress_update(&p, 1000, 0);
    cr_assert_str_eq(datagram(fd), "", "throttled");
    vg_progress_end(&p);
    cr_assert_str_eq(datagram(fd), "STATUS=start-up: loading histories 1,000 of 1,000 users (62.5/s), 100%, done in 16 s",
                     "the final state, no extension");
    /* without extend, STATUS= alone */
    make(&p, "replay", 5, 0);
    vg_progress_start(&p, "reading", "events", 0, 0);
    now_s = 1005;
    vg_progress_update(&p, 10, 0);
    cr_assert_str_eq(datagram(fd), "STATUS=replay: reading 10 events (2.0/s)");
    /* a short phase: only its final STATUS= */
    vg_progress_start(&p, "training", "batches", 2, 0);
    cr_assert_str_eq(datagram(fd), "STATUS=replay: reading 10 events (2.0/s), done in 5.0 s",
                     "starting a phase ends the one that runs");
    now_s = 1006;
    vg_progress_update(&p, 2, 0);
    vg_progress_end(&p);
    cr_assert_str_eq(datagram(fd), "STATUS=replay: training 2 of 2 batches (2.0/s), 100%, done in 1.0 s");
    cr_assert_str_eq(datagram(fd), "");
    unsetenv("NOTIFY_SOCKET");
    close(fd);
}

/* ---- the terminal ------------------------------------------------------------------ */

/* What the pty's master reads until it ends with `end` (the pty hands the
 * bytes over asynchronously; 10 s guard). */
static const char *drain(int master, const char *end)
{
    static char buf[8192];
    size_t o = 0, el = strlen(end);
    buf[0] = '\0';
    for (int waited = 0; waited < 100 && !(o >= el && memcmp(buf + o - el, end, el) == 0);) {
        struct pollfd pf = {.fd = master, .events = POLLIN};
        if (poll(&pf, 1, 100) <= 0) {
            waited++;
            continue;
        }
        ssize_t n = read(master, buf + o, sizeof buf - 1 - o);
        if (n <= 0)
            break;
        o += (size_t)n;
        buf[o] = '\0';
    }
    return buf;
}

Test(progress, one_line_redrawn_on_a_terminal)
{
    int master, slave;
    cr_assert_eq(openpty(&master, &slave, NULL, NULL, NULL), 0, "openpty: %s", strerror(errno));
    cr_assert_eq(fcntl(master, F_SETFL, O_NONBLOCK), 0);
    int saved = dup(STDERR_FILENO);
    cr_assert_eq(dup2(slave, STDERR_FILENO), STDERR_FILENO);
    unsetenv("JOURNAL_STREAM");
    cr_assert_eq(vg_log_open("", VG_LOG_INFO), 0);
    int is_tty = vg_log_is_tty();

    vg_progress_t p;
    now_s = 1000;
    vg_progress_init(&p, "replay", 5, 0);
    p.clock = fake_clock;
    int auto_tty = p.tty;
    vg_progress_start(&p, "reading", "events", 0, 0);
    now_s = 1000.25;
    vg_progress_update(&p, 5, 0);
    char first[256];
    snprintf(first, sizeof first, "%s", drain(master, "\033[K"));
    vg_log(VG_LOG_INFO, "a log line");
    char logged[256];
    snprintf(logged, sizeof logged, "%s", drain(master, "a log line\r\n"));
    now_s = 1000.5;
    vg_progress_update(&p, 10, 0);
    vg_progress_end(&p);
    char last[512];
    snprintf(last, sizeof last, "%s", drain(master, "\033[K\r\n"));
    vg_log(VG_LOG_INFO, "after");
    char after[256];
    snprintf(after, sizeof after, "%s", drain(master, "after\r\n"));

    /* a narrow terminal: the line is cut to its width - 1 */
    struct winsize ws = {.ws_row = 24, .ws_col = 20};
    cr_assert_eq(ioctl(slave, TIOCSWINSZ, &ws), 0);
    vg_log_status("0123456789012345678901234567890", 1);
    char narrow[256];
    snprintf(narrow, sizeof narrow, "%s", drain(master, "\033[K\r\n"));

    dup2(saved, STDERR_FILENO);
    close(saved);
    close(slave);
    close(master);

    cr_assert(is_tty, "the log on a pty is a terminal");
    cr_assert(auto_tty, "vg_progress_init found the terminal");
    cr_assert_str_eq(first, "\rreplay: reading 5 events (20.0/s)\033[K");
    cr_assert(strncmp(logged, "\r\033[K", 4) == 0, "a log line erases the status line first: %s", logged);
    cr_assert(strstr(logged, "info  a log line\r\n"), "%s", logged); /* the pty turns \n into \r\n */
    cr_assert_str_eq(last, "\rreplay: reading 10 events (20.0/s)\033[K"
                           "\rreplay: reading 10 events (20.0/s), done in 0.5 s\033[K\r\n",
                     "redrawn, then ended with a newline");
    cr_assert(strncmp(after, "\r\033[K", 4) != 0, "an ended line is not erased: %s", after);
    cr_assert_str_eq(narrow, "\r0123456789012345678\033[K\r\n");
}

Test(progress, no_terminal_line_in_a_file, .init = log_to_file, .fini = log_done)
{
    cr_assert_eq(vg_log_is_tty(), 0);
    vg_log_status("invisible", 0);
    vg_log(VG_LOG_INFO, "visible");
    cr_assert_eq(log_count("invisible"), 0);
    cr_assert_eq(log_count("visible"), 1);
    FILE *f = fopen(log_path, "r");
    int c = fgetc(f);
    fclose(f);
    cr_assert_neq(c, '\r', "no erase in a file");
}
