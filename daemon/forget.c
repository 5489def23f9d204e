/* forget.c — see forget.h. */
#include "daemon/forget.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/errors.h"
#include "daemon/log.h"

#define KEY_FILE "forget.key"

/* 0, 1 when there is no key file yet, or a VG_E* code with *why set. */
static int read_key(vg_forget_t *f, const char *path, const char **why)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *why = strerror(errno);
        return errno == ENOENT ? 1 : VG_EIO;
    }
    unsigned char buf[sizeof f->key + 1]; /* one more: a longer file is no key either */
    ssize_t n = read(fd, buf, sizeof buf);
    *why = n < 0 ? strerror(errno) : "not a key (it must hold exactly 32 bytes)";
    close(fd);
    if (n == (ssize_t)sizeof f->key)
        memcpy(f->key, buf, sizeof f->key);
    sodium_memzero(buf, sizeof buf);
    return n == (ssize_t)sizeof f->key ? 0 : n < 0 ? VG_EIO : VG_ECORRUPT;
}

static int write_key(vg_forget_t *f, const char *path, const char **why)
{
    randombytes_buf(f->key, sizeof f->key);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int ok = fd >= 0 && write(fd, f->key, sizeof f->key) == (ssize_t)sizeof f->key && fsync(fd) == 0;
    *why = strerror(errno);
    if (fd >= 0 && close(fd) != 0)
        ok = 0;
    return ok ? 0 : VG_EIO;
}

int vg_forget_open(vg_forget_t *f, const char *dir)
{
    memset(f, 0, sizeof *f);
    vg_vocab_init(&f->marks);
    if (sodium_init() < 0) {
        vg_log(VG_LOG_ERROR, "libsodium cannot start");
        return VG_EIO;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, KEY_FILE);
    const char *why = "";
    int rc = read_key(f, path, &why);
    if (rc == 1 && (rc = write_key(f, path, &why)) == 0)
        vg_log(VG_LOG_INFO, "erasure key created in %s", path);
    if (rc)
        vg_log(VG_LOG_ERROR, "refusing to start: %s: %s (the key that hashes forgotten users' ids)", path, why);
    return rc;
}

void vg_forget_close(vg_forget_t *f)
{
    sodium_memzero(f->key, sizeof f->key);
    vg_vocab_free(&f->marks);
    free(f->ts);
    f->ts = NULL;
}

void vg_forget_mark(const vg_forget_t *f, const char *user, size_t user_len, char out[VG_FORGET_MARK_LEN + 1])
{
    unsigned char h[VG_FORGET_MARK_LEN / 2];
    crypto_generichash(h, sizeof h, (const unsigned char *)user, user_len, f->key, sizeof f->key);
    sodium_bin2hex(out, VG_FORGET_MARK_LEN + 1, h, sizeof h);
}

int vg_forget_add(vg_forget_t *f, const char *mark, size_t len, double ts)
{
    int added;
    int32_t i = vg_vocab_add(&f->marks, mark, len, &added);
    if (i < 0)
        return i;
    if ((size_t)i >= f->ts_cap) {
        size_t cap = f->ts_cap ? 2 * f->ts_cap : 64;
        double *t = realloc(f->ts, cap * sizeof *t);
        if (!t)
            return VG_ENOMEM;
        f->ts = t;
        f->ts_cap = cap;
    }
    if (added || ts > f->ts[i])
        f->ts[i] = ts;
    return 0;
}

int vg_forget_refuses(const vg_forget_t *f, const char *user, size_t user_len, double ts)
{
    if (f->marks.n == 0)
        return 0;
    char mark[VG_FORGET_MARK_LEN + 1];
    vg_forget_mark(f, user, user_len, mark);
    int32_t i = vg_vocab_find(&f->marks, mark, VG_FORGET_MARK_LEN);
    return i >= 0 && ts <= f->ts[i];
}
