/*
 * config_secrets.c — the configuration's secrets (config_secrets.h): the
 * files of redis.password_file and kafka.sasl_password_file, and which
 * kafka.option.* properties are secrets.
 *
 * A secret file is read whole with read(2) into one buffer (at most
 * VG_CFG_SECRET_MAX bytes); exactly one trailing "\n" is stripped, so a
 * file written by `echo` works and a password that really ends in a
 * newline can be written with two.  Invariants: the content never appears
 * in a message; a buffer that is not handed out is wiped before it is
 * freed; a missing, unreadable, empty or not regular file (a directory, a
 * FIFO, a terminal: refused without blocking) is an error, never "no
 * password" (a silent AUTH-less start would only fail later, far from the
 * cause).  Called by daemon/config.c; calls nothing of it.
 */
#include "daemon/config_secrets.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/errors.h"

/* Wipes and frees a buffer that held (part of) a secret. */
static void drop(char *buf, size_t len)
{
    if (!buf)
        return;
    volatile char *p = buf;
    for (size_t i = 0; i < len; i++)
        p[i] = 0;
    free(buf);
}

/* The full path of secret `name` into path; returns 0 or VG_ECONFIG (why). */
static int resolve(const char *name, char *path, size_t len, char *why, size_t whylen)
{
    int n;
    if (name[0] == '/') {
        n = snprintf(path, len, "%s", name);
    } else {
        const char *dir = getenv("CREDENTIALS_DIRECTORY");
        if (!dir || !*dir) {
            snprintf(why, whylen,
                     "\"%s\" is a relative name, looked up in $CREDENTIALS_DIRECTORY (set by systemd's "
                     "LoadCredential=), which is not set: run it under the unit, set the variable, or give "
                     "an absolute path",
                     name);
            return VG_ECONFIG;
        }
        n = snprintf(path, len, "%s/%s", dir, name);
    }
    if (n < 0 || (size_t)n >= len) {
        snprintf(why, whylen, "the path of \"%s\" is too long", name);
        return VG_ECONFIG;
    }
    return 0;
}

int vg_cfg_secret_read_(const char *name, char **out, char *why, size_t whylen)
{
    *out = NULL;
    char path[PATH_MAX];
    int rc = resolve(name, path, sizeof path, why, whylen);
    if (rc)
        return rc;
    /* O_NONBLOCK: a FIFO or a terminal must not hang the start; they are refused below */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return VG_ECONFIG;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        snprintf(why, whylen, "%s is not a regular file", path);
        return VG_ECONFIG;
    }
    const size_t cap = VG_CFG_SECRET_MAX + 2;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        snprintf(why, whylen, "out of memory");
        return VG_ENOMEM;
    }
    size_t len = 0;
    ssize_t r = 0;
    while (len < cap - 1 && ((r = read(fd, buf + len, cap - 1 - len)) > 0 || (r < 0 && errno == EINTR)))
        len += r > 0 ? (size_t)r : 0;
    int read_errno = r < 0 ? errno : 0;
    close(fd);
    if (!read_errno && len <= VG_CFG_SECRET_MAX && len && buf[len - 1] == '\n')
        len--; /* one trailing newline */
    if (read_errno)
        snprintf(why, whylen, "cannot read %s: %s", path, strerror(read_errno));
    else if (len > VG_CFG_SECRET_MAX)
        snprintf(why, whylen, "%s is longer than %d bytes: not a password file", path, VG_CFG_SECRET_MAX);
    else if (len == 0)
        snprintf(why, whylen, "%s is empty", path);
    else if (memchr(buf, '\0', len))
        snprintf(why, whylen, "%s holds a NUL byte", path);
    else {
        buf[len] = '\0';
        *out = buf;
        return 0;
    }
    drop(buf, cap);
    return VG_ECONFIG;
}

int vg_cfg_secret_name_(const char *name)
{
    return strstr(name, "password") || strstr(name, "secret") || strstr(name, ".pem");
}
