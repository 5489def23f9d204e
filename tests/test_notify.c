/*
 * test_notify.c — daemon/notify.c against a datagram socket of our own:
 * the messages arrive byte for byte on a path socket and on an abstract one,
 * nothing happens without NOTIFY_SOCKET, errors are returned, and
 * WATCHDOG_USEC / WATCHDOG_PID are read as systemd documents them.  Built
 * twice: against libsystemd (test_notify) and the hand-written protocol
 * (test_notify_raw).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/errors.h"
#include "daemon/notify.h"
#include "tests/support/tmpdir.h"

/* Binds a datagram socket to `name` ('@' = abstract) with a 2 s receive timeout. */
static int listen_on(const char *name)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t n = strlen(name);
    cr_assert_lt(n, sizeof sa.sun_path);
    memcpy(sa.sun_path, name, n);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    if (name[0] == '@')
        sa.sun_path[0] = '\0';
    else
        len++;
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, len), 0, "bind %s: %s", name, strerror(errno));
    struct timeval tv = {2, 0};
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    return fd;
}

/* The next datagram as a string (asserts one arrives). */
static void receive(int fd, char *buf, size_t len)
{
    ssize_t n = recv(fd, buf, len - 1, 0);
    cr_assert_gt(n, 0, "no notification arrived: %s", strerror(errno));
    buf[n] = '\0';
}

static void expect(int fd, const char *want)
{
    char buf[4096];
    receive(fd, buf, sizeof buf);
    cr_assert_str_eq(buf, want);
}

static void exchange(int fd)
{
    cr_assert_eq(vg_notify("READY=1"), 0);
    expect(fd, "READY=1");
    cr_assert_eq(vg_notifyf("STATUS=consuming, %d partitions", 12), 0);
    expect(fd, "STATUS=consuming, 12 partitions");
    cr_assert_eq(vg_notify("WATCHDOG=1"), 0);
    expect(fd, "WATCHDOG=1");
    cr_assert_eq(vg_notify("STOPPING=1"), 0);
    expect(fd, "STOPPING=1");
}

Test(notify, path_socket, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove)
{
    char path[128];
    snprintf(path, sizeof path, "%s/notify.sock", vg_tmpdir);
    int fd = listen_on(path);
    cr_assert_eq(setenv("NOTIFY_SOCKET", path, 1), 0);
    exchange(fd);
    /* a long, formatted status (past any small stack buffer) and a multi-line state */
    char want[1200] = "STATUS=";
    for (int i = 0; i < 100; i++)
        strcat(want, "0123456789");
    cr_assert_eq(vg_notifyf("STATUS=%s", want + 7), 0);
    expect(fd, want);
    cr_assert_eq(vg_notify("READY=1\nSTATUS=ready"), 0);
    expect(fd, "READY=1\nSTATUS=ready");
    close(fd);
}

Test(notify, abstract_socket)
{
    char name[64];
    snprintf(name, sizeof name, "@vg-test-notify-%ld", (long)getpid());
    int fd = listen_on(name);
    cr_assert_eq(setenv("NOTIFY_SOCKET", name, 1), 0);
    exchange(fd);
    close(fd);
}

Test(notify, unset_is_a_noop)
{
    cr_assert_eq(unsetenv("NOTIFY_SOCKET"), 0);
    cr_assert_eq(vg_notify("READY=1"), 0);
    cr_assert_eq(vg_notifyf("STATUS=%s", "x"), 0);
    cr_assert_eq(vg_notify("STOPPING=1"), 0);
    cr_assert_eq(setenv("NOTIFY_SOCKET", "", 1), 0);
    cr_assert_eq(vg_notify("READY=1"), 0);
}

Test(notify, errors, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove)
{
    char path[128];
    snprintf(path, sizeof path, "%s/nobody-listens.sock", vg_tmpdir);
    cr_assert_eq(setenv("NOTIFY_SOCKET", path, 1), 0);
    cr_assert_eq(vg_notify("READY=1"), VG_EIO);
    cr_assert_eq(setenv("NOTIFY_SOCKET", "relative/path", 1), 0);
    cr_assert_lt(vg_notify("READY=1"), 0);
    snprintf(path, sizeof path, "%s/notify.sock", vg_tmpdir);
    int fd = listen_on(path);
    cr_assert_eq(setenv("NOTIFY_SOCKET", path, 1), 0);
    cr_assert_eq(vg_notify(""), VG_EINVAL);
    cr_assert_eq(vg_notify(NULL), VG_EINVAL);
    close(fd);
}

Test(notify, watchdog_usec)
{
    char pid[32];
    cr_assert_eq(unsetenv("WATCHDOG_USEC"), 0);
    cr_assert_eq(unsetenv("WATCHDOG_PID"), 0);
    cr_assert_eq(vg_notify_watchdog_usec(), 0);

    cr_assert_eq(setenv("WATCHDOG_USEC", "30000000", 1), 0);
    cr_assert_eq(vg_notify_watchdog_usec(), 30000000);

    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    cr_assert_eq(setenv("WATCHDOG_PID", pid, 1), 0);
    cr_assert_eq(vg_notify_watchdog_usec(), 30000000);

    snprintf(pid, sizeof pid, "%ld", (long)getpid() + 1);
    cr_assert_eq(setenv("WATCHDOG_PID", pid, 1), 0);
    cr_assert_eq(vg_notify_watchdog_usec(), 0, "the watchdog belongs to another process");

    cr_assert_eq(unsetenv("WATCHDOG_PID"), 0);
    cr_assert_eq(setenv("WATCHDOG_USEC", "abc", 1), 0);
    cr_assert_eq(vg_notify_watchdog_usec(), 0);
    cr_assert_eq(setenv("WATCHDOG_USEC", "0", 1), 0);
    cr_assert_eq(vg_notify_watchdog_usec(), 0);
    cr_assert_eq(setenv("WATCHDOG_USEC", "15000000x", 1), 0);
    cr_assert_eq(vg_notify_watchdog_usec(), 0);
}
