/*
 * log.c — vaegand's thread-safe line log (log.h).
 *
 * State is a handful of atomics: the level, the descriptor and whether it is
 * a file.  A line is formatted into a stack buffer and written with a single
 * write(2) — on an O_APPEND file (or a pipe, for lines up to PIPE_BUF) that
 * keeps lines of concurrent threads whole without any lock.  Reopening after
 * logrotate opens the path anew and dup2()s it over the log descriptor, so
 * the descriptor number never changes and a thread in the middle of vg_log
 * never writes to a closed or reused descriptor; that is also why reopen is
 * async-signal-safe (open, dup2, fcntl, close only).
 *
 * The journal is detected as systemd documents it: $JOURNAL_STREAM holds
 * "DEV:INODE" of the stream stderr is connected to; lines to the journal carry
 * a "<P>" syslog priority prefix instead of a timestamp.
 *
 * The terminal's status line (vg_log_status) is the one piece of state
 * shared with log lines: g_status says one is drawn and not ended, and the
 * line that finds it set (atomic exchange: exactly one does) starts with
 * "\r" and an erase, so log lines never run into a half-drawn status.
 */
#include "daemon/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/errors.h"

static atomic_int g_level = VG_LOG_INFO;
static atomic_int g_fd = STDERR_FILENO;
static atomic_int g_is_file = 0;
static atomic_int g_journal = -1; /* stderr is the journal: -1 not yet known, 0, 1 */
static char g_path[PATH_MAX];     /* the log file; written only by vg_log_open */
static atomic_int g_status = 0;   /* a terminal status line is drawn and not ended */

#define ERASE_LINE "\r\033[K" /* to column 0, erase to the end of the line */

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char level_prio[] = {'7', '6', '4', '3'};

/* ---- levels ------------------------------------------------------------- */

int vg_log_level_parse(const char *s, int *level)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0) {
            *level = i;
            return 0;
        }
    return VG_EINVAL;
}

const char *vg_log_level_name(int level)
{
    return level >= VG_LOG_DEBUG && level <= VG_LOG_ERROR ? level_names[level] : "?";
}

static int clamp_level(int level)
{
    return level < VG_LOG_DEBUG ? VG_LOG_DEBUG : level > VG_LOG_ERROR ? VG_LOG_ERROR : level;
}

void vg_log_set_level(int level) { atomic_store_explicit(&g_level, clamp_level(level), memory_order_relaxed); }

int vg_log_enabled(int level) { return level >= atomic_load_explicit(&g_level, memory_order_relaxed); }

/* ---- destination -------------------------------------------------------- */

/* Whether stderr is the stream $JOURNAL_STREAM names. */
static int detect_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    if (!js || !*js)
        return 0;
    unsigned long long dev, ino;
    char tail;
    if (sscanf(js, "%llu:%llu%c", &dev, &ino, &tail) != 2)
        return 0;
    struct stat st;
    if (fstat(STDERR_FILENO, &st) < 0)
        return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

static int journal_mode(void)
{
    int j = atomic_load_explicit(&g_journal, memory_order_relaxed);
    if (j < 0) { /* racing threads compute the same answer */
        j = detect_journal();
        atomic_store_explicit(&g_journal, j, memory_order_relaxed);
    }
    return j;
}

static int open_file(const char *path) { return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640); }

int vg_log_open(const char *file, int level)
{
    if (file && *file) {
        size_t len = strlen(file);
        if (len >= sizeof g_path)
            return VG_EIO;
        int fd = open_file(file);
        if (fd < 0)
            return VG_EIO;
        if (atomic_load(&g_is_file))
            close(atomic_load(&g_fd));
        memcpy(g_path, file, len + 1);
        atomic_store(&g_fd, fd);
        atomic_store(&g_is_file, 1);
    } else {
        vg_log_close();
        atomic_store(&g_journal, detect_journal());
    }
    vg_log_set_level(level);
    return 0;
}

int vg_log_reopen(void)
{
    if (!atomic_load(&g_is_file))
        return 0;
    int saved = errno, rc = 0;
    int fd = open_file(g_path);
    if (fd < 0) {
        rc = VG_EIO;
    } else {
        int target = atomic_load(&g_fd);
        if (dup2(fd, target) < 0)
            rc = VG_EIO;
        else
            fcntl(target, F_SETFD, FD_CLOEXEC); /* dup2 clears it */
        close(fd);
    }
    errno = saved;
    return rc;
}

void vg_log_close(void)
{
    if (atomic_load(&g_is_file)) {
        int fd = atomic_exchange(&g_fd, STDERR_FILENO);
        atomic_store(&g_is_file, 0);
        close(fd);
        g_path[0] = '\0';
    }
}

/* ---- writing ------------------------------------------------------------ */

static void write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere to report it */
        }
        p += w;
        len -= (size_t)w;
    }
}

static void log_line(int level, const char *fmt, va_list ap)
{
    char line[VG_LOG_LINE_MAX];
    level = clamp_level(level);
    int saved = errno;
    size_t n;
    int is_file = atomic_load_explicit(&g_is_file, memory_order_relaxed);
    if (!is_file && journal_mode()) {
        line[0] = '<';
        line[1] = level_prio[level];
        line[2] = '>';
        n = 3;
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
        n += (size_t)snprintf(line + n, sizeof line - n, ".%03dZ %-5s ", (int)(ts.tv_nsec / 1000000),
                              level_names[level]);
    }
    if (atomic_exchange_explicit(&g_status, 0, memory_order_relaxed)) { /* erase the status line first */
        memmove(line + sizeof ERASE_LINE - 1, line, n);
        memcpy(line, ERASE_LINE, sizeof ERASE_LINE - 1);
        n += sizeof ERASE_LINE - 1;
    }
    /* room for the message and its NUL, which becomes the newline */
    size_t room = sizeof line - n;
    int m = vsnprintf(line + n, room, fmt, ap);
    size_t len = n;
    if (m > 0) {
        if ((size_t)m < room) {
            len += (size_t)m;
        } else { /* cut, and say so */
            len += room - 1;
            memcpy(line + len - 3, "...", 3);
        }
    }
    for (size_t i = n; i < len; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = ' ';
    line[len++] = '\n';
    write_all(atomic_load_explicit(&g_fd, memory_order_relaxed), line, len);
    errno = saved;
}

void vg_log(int level, const char *fmt, ...)
{
    if (level < atomic_load_explicit(&g_level, memory_order_relaxed))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_line(level, fmt, ap);
    va_end(ap);
}

void vg_log_cb(void *ud, int level, const char *msg)
{
    (void)ud;
    vg_log(level, "%s", msg);
}

/* ---- the terminal's status line ------------------------------------------ */

int vg_log_is_tty(void)
{
    return !atomic_load(&g_is_file) && !journal_mode() && isatty(STDERR_FILENO);
}

void vg_log_status(const char *text, int end)
{
    if (!vg_log_is_tty())
        return;
    char line[VG_LOG_LINE_MAX];
    size_t width = sizeof line - 8, n = strlen(text);
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 && ws.ws_col - 1u < width)
        width = ws.ws_col - 1u; /* the last column would wrap on some terminals */
    if (n > width)
        n = width;
    memcpy(line, "\r", 1);
    memcpy(line + 1, text, n);
    for (size_t i = 1; i <= n; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = ' ';
    memcpy(line + 1 + n, "\033[K", 3);
    n += 4;
    if (end)
        line[n++] = '\n';
    int saved = errno;
    write_all(STDERR_FILENO, line, n);
    errno = saved;
    atomic_store(&g_status, !end); /* after the write: a log line in between must not lose the erase */
}
