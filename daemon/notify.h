/*
 * notify.h — the sd_notify(3) protocol: tell systemd (Type=notify) that the
 * daemon is ready, what it is doing, that it is alive, that it is stopping.
 *
 * Built on libsystemd's sd_notify() when it was found at build time
 * (VG_HAVE_SYSTEMD), otherwise on a datagram of our own to $NOTIFY_SOCKET
 * (an AF_UNIX path, or the abstract namespace when it starts with '@').
 * The environment is left as it is (children do not inherit a cleared
 * NOTIFY_SOCKET: the daemon starts none).  All functions are thread-safe
 * and cheap enough to call from a timer; without NOTIFY_SOCKET (not under
 * systemd, tests, replay mode) they do nothing and return 0.
 *
 * Watchdog: when the unit has WatchdogSec=, vg_notify_watchdog_usec() gives
 * its length; send "WATCHDOG=1" at least every half of it (e.g. from a
 * libuv timer on the loop, so a stuck loop stops the pings).
 */
#ifndef VG_NOTIFY_H
#define VG_NOTIFY_H

#include <stdint.h>

/* Sends one state string, e.g. "READY=1", "STOPPING=1", "RELOADING=1",
 * "WATCHDOG=1", "STATUS=consuming, 12 partitions"; several assignments may
 * be joined by newlines.  Returns 0 when sent or when NOTIFY_SOCKET is
 * unset; VG_EINVAL for a NULL/empty state or a malformed NOTIFY_SOCKET;
 * VG_EIO when the datagram could not be sent. */
int vg_notify(const char *state);

/* vg_notify() of a printf-formatted state, e.g.
 * vg_notifyf("STATUS=consuming, %d partitions", n).  Same returns, plus
 * VG_ENOMEM. */
int vg_notifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The watchdog interval (WatchdogSec) in microseconds when WATCHDOG_USEC is
 * set to a positive integer and WATCHDOG_PID is absent or this process's
 * pid; otherwise 0 (no watchdog: do not ping). */
uint64_t vg_notify_watchdog_usec(void);

#endif
