/* checkpoint.c — see checkpoint.h.  Growth keeps the state file valid
 * whatever fails: the model grows first (all or nothing, vg_model_grow), and
 * only then does its vocabulary take the new ids, so a model never names more
 * items than it has rows (the loader would call such a file corrupt).
 * Temporary files of interrupted saves (model.ckpt.tmp-XXXXXX, unique per
 * save) are removed at start, under the state directory's lock. */
#include "daemon/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/errors.h"
#include "daemon/log.h"

static void make_dirs(const char *dir)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", dir);
    for (char *c = p + 1; *c; c++)
        if (*c == '/') {
            *c = 0;
            mkdir(p, 0755);
            *c = '/';
        }
    mkdir(p, 0755);
}

int vg_ckpt_lock(const char *dir, int *fd)
{
    make_dirs(dir);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/lock", dir);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (*fd < 0 || fcntl(*fd, F_SETLK, &l) != 0) {
        int busy = *fd >= 0 && (errno == EACCES || errno == EAGAIN);
        if (busy)
            vg_log(VG_LOG_ERROR, "refusing to start: state.dir = \"%s\" is in use by another vaegand (or --replay); "
                   "two processes on one state directory would overwrite each other's model", dir);
        else
            vg_log(VG_LOG_ERROR, "state.dir = \"%s\": cannot lock %s: %s", dir, path, strerror(errno));
        if (*fd >= 0)
            close(*fd);
        *fd = -1;
        return busy ? VG_EAGAIN : VG_EIO;
    }
    return 0;
}

/* The loaded model's vocabulary becomes the mirror's first items. */
static int enter_vocab(const vg_model_t *m, vg_hist_t *h)
{
    int rc = 0;
    vg_hist_wrlock(h);
    for (int i = 0; i < m->vocab.n && rc >= 0; i++) {
        const char *id = vg_vocab_id(&m->vocab, i);
        rc = vg_hist_item(h, id, strlen(id));
    }
    vg_hist_unlock(h);
    return rc < 0 || m->vocab.n != m->n_items ? VG_ECORRUPT : 0;
}

/* Removes dir's temporary files of saves that never finished (a kill -9 or
 * a crash during a save: "model.ckpt.tmp-XXXXXX", and the "model.ckpt.tmp"
 * of earlier versions).  Only under the lock: nobody else saves here. */
static void remove_stale_temps(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    const char *prefix = VG_STATE_FILE ".tmp";
    size_t plen = strlen(prefix);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, plen) != 0 || (e->d_name[plen] && e->d_name[plen] != '-'))
            continue;
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) == 0)
            vg_log(VG_LOG_INFO, "removed %s, left by a save that did not finish", p);
    }
    closedir(d);
}

int vg_ckpt_load(vg_model_t *m, vg_hist_t *h, const char *dir, int reset, const vg_model_cfg_t *cfg, int batch,
                 char *path, size_t pathlen)
{
    make_dirs(dir);
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
        vg_log(VG_LOG_ERROR, "state.dir = \"%s\": cannot create the directory: %s", dir, strerror(errno));
        return VG_EIO;
    }
    snprintf(path, pathlen, "%s/%s", dir, VG_STATE_FILE);
    remove_stale_temps(dir);
    if (access(path, F_OK) != 0) {
        vg_log(VG_LOG_INFO, "no model state in %s yet: serving by popularity until the first training round", dir);
        return 0;
    }
    if (reset) {
        vg_log(VG_LOG_WARN, "--reset-model: ignoring %s (it is overwritten at the next checkpoint)", path);
        return 0;
    }
    char err[512];
    int rc = vg_model_load(m, path, cfg, batch, err, sizeof err);
    if (rc) {
        vg_log(VG_LOG_ERROR, "refusing to start: %s (move it away or start with --reset-model to begin afresh)",
               err);
        return rc;
    }
    if ((rc = enter_vocab(m, h))) {
        vg_log(VG_LOG_ERROR, "refusing to start: %s: the item vocabulary does not match the model", path);
        vg_model_close(m);
        return rc;
    }
    vg_log(VG_LOG_INFO, "model state loaded from %s: step %lld, alpha %.4f, %d items", path, (long long)m->step,
           vg_model_alpha(m), m->n_items);
    return 1;
}

/* Caller holds the mirror's read lock. */
static int sync_vocab(vg_model_t *m, const vg_hist_t *h, int upto)
{
    for (int i = m->vocab.n; i < upto; i++) {
        const char *id = vg_vocab_id(&h->items, i);
        if (vg_vocab_add(&m->vocab, id, strlen(id), NULL) != i)
            return VG_ENOMEM;
    }
    return 0;
}

int vg_ckpt_grow(vg_model_t *m, vg_hist_t *h)
{
    vg_hist_rdlock(h);
    int n = h->items.n;
    vg_hist_unlock(h);
    int rc = vg_model_grow(m, n); /* first: the vocabulary never runs ahead of the rows */
    if (rc)
        return rc;
    vg_hist_rdlock(h);
    rc = sync_vocab(m, h, n);
    vg_hist_unlock(h);
    return rc;
}

int vg_ckpt_name_rows(vg_model_t *m, vg_hist_t *h)
{
    vg_hist_rdlock(h);
    int rc = sync_vocab(m, h, m->n_items);
    vg_hist_unlock(h);
    return rc;
}

int vg_ckpt_save(vg_model_t *m, vg_hist_t *h, const char *path, char *err, size_t errlen)
{
    int rc = vg_ckpt_name_rows(m, h);
    if (rc)
        return vg_errf(err, errlen, rc, "%s: %s", path, vg_strerror(rc));
    return vg_model_save(m, path, err, errlen);
}
