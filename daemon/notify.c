/*
 * notify.c — sd_notify(3) for vaegand.
 *
 * With libsystemd (VG_HAVE_SYSTEMD) this forwards to sd_notify() and
 * sd_watchdog_enabled(); without it, it speaks the protocol itself: one
 * sendto() of the state text on a fresh AF_UNIX SOCK_DGRAM socket to
 * $NOTIFY_SOCKET ('/' = a file system path, '@' = the abstract namespace),
 * and the WATCHDOG_USEC / WATCHDOG_PID variables read as systemd documents
 * them.  Both builds treat an unset or empty NOTIFY_SOCKET as "not under
 * systemd" and never modify the environment, so the functions may be called
 * from any thread.  A socket per call keeps the code stateless; the
 * messages are rare (readiness, status, a watchdog ping every few seconds).
 */
#include "daemon/notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#ifdef VG_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "common/errors.h"

#ifdef VG_HAVE_SYSTEMD

static int send_state(const char *state)
{
    int r = sd_notify(0, state);
    if (r >= 0)
        return 0;
    return r == -EINVAL ? VG_EINVAL : VG_EIO;
}

#else

static int send_state(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    size_t n = strlen(path);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if ((path[0] != '/' && path[0] != '@') || n < 2 || n >= sizeof sa.sun_path)
        return VG_EINVAL;
    memcpy(sa.sun_path, path, n);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract: the name is exactly n bytes, no NUL */
    else
        len++; /* a path counts its NUL */

    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return VG_EIO;
    size_t sz = strlen(state);
    ssize_t w = sendto(fd, state, sz, MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
    close(fd);
    return w == (ssize_t)sz ? 0 : VG_EIO;
}

#endif

int vg_notify(const char *state)
{
    const char *sock = getenv("NOTIFY_SOCKET");
    if (!sock || !*sock)
        return 0;
    if (!state || !*state)
        return VG_EINVAL;
    return send_state(state);
}

int vg_notifyf(const char *fmt, ...)
{
    const char *sock = getenv("NOTIFY_SOCKET");
    if (!sock || !*sock)
        return 0;
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return VG_EINVAL;
    if ((size_t)n < sizeof small)
        return vg_notify(small);
    char *big = malloc((size_t)n + 1);
    if (!big)
        return VG_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int r = vg_notify(big);
    free(big);
    return r;
}

#ifdef VG_HAVE_SYSTEMD

uint64_t vg_notify_watchdog_usec(void)
{
    uint64_t usec = 0;
    return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}

#else

/* A whole positive decimal number, or 0. */
static unsigned long long parse_positive(const char *s)
{
    if (!s || *s < '0' || *s > '9')
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return 0;
    return v;
}

uint64_t vg_notify_watchdog_usec(void)
{
    const char *pid = getenv("WATCHDOG_PID");
    if (pid && (unsigned long long)getpid() != parse_positive(pid))
        return 0;
    return parse_positive(getenv("WATCHDOG_USEC"));
}

#endif
