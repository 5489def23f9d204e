/*
 * test_state.c — the state file under failure (ctest label unit): a growth
 * that runs out of memory leaves a model that saves and loads as before
 * (the model alone and with the daemon's mirror, daemon/checkpoint.c); a
 * flipped bit in any size field of a real file is called corrupt before
 * anything is allocated for it; saves use unique temporary files and leave
 * none behind; the VAEGAN_FAULT_FILE hook fails a save with the errno it
 * names and keeps the old file; a start removes temporary files of saves
 * that did not finish.
 *
 * Growth failures are forced with the model's own test hook
 * (vg_model_t.fail_alloc: the k-th allocation of a growth fails), not with
 * a growth too large for calloc: only the hook reaches every allocation of a
 * growth in turn (the later ones, the workspace's, are where a half-grown
 * model used to be left), and it behaves the same under ASan, which aborts on
 * a huge request instead of returning NULL.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/errors.h"
#include "daemon/checkpoint.h"
#include "daemon/hist.h"
#include "daemon/log.h"
#include "model/vaegan.h"
#include "tests/support/tmpdir.h"

#define N_ITEMS 50

static void small_model(vg_model_t *m)
{
    vg_model_cfg_t c;
    vg_model_cfg_default(&c, VG_VARIANT_AVB_D_C);
    c.hidden = 32;
    c.latent = 8;
    c.disc_hidden = 16;
    c.seed = 5;
    cr_assert_eq(vg_model_init(m, &c, N_ITEMS, 16), 0);
    char id[16];
    for (int i = 0; i < N_ITEMS; i++) {
        snprintf(id, sizeof id, "item-%d", i);
        cr_assert_eq(vg_vocab_add(&m->vocab, id, strlen(id), NULL), i);
    }
    int32_t rows[6] = {0, 0, 1, 1, 2, 2}, cols[6] = {1, 7, 3, 40, 9, 49};
    vg_csr_t X;
    cr_assert_eq(vg_csr_from_pairs(&X, 3, N_ITEMS, 6, rows, cols), 0);
    for (int s = 0; s < 3; s++) /* moments and step not zero */
        cr_assert_eq(vg_model_train_step(m, &X, NULL), 0);
    vg_csr_free(&X);
}

/* The whole file at path, malloc'd, its size in *n. */
static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    cr_assert_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static int same_file(const char *path, const char *bytes, size_t n)
{
    size_t m;
    char *b = slurp(path, &m);
    int same = m == n && memcmp(b, bytes, n) == 0;
    free(b);
    return same;
}

/* Entries of dir whose name starts with prefix. */
static int count_prefixed(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

/* The daemon's history mirror, for the tests of daemon/checkpoint.c. */
static vg_hist_t H;

static void mirror_make(void)
{
    vg_tmpdir_make();
    vg_log_open(NULL, VG_LOG_WARN);
    cr_assert_eq(vg_hist_init(&H, 100), 0);
}

static void mirror_remove(void)
{
    vg_hist_free(&H);
    vg_tmpdir_remove();
}

static void save_ok(const vg_model_t *m, const char *path)
{
    char err[512];
    cr_assert_eq(vg_model_save(m, path, err, sizeof err), 0, "%s", err);
}

/* small_model(m), saved to path = vg_tmpdir/name (path holds 128 bytes). */
static void saved_model(vg_model_t *m, char *path, const char *name)
{
    small_model(m);
    snprintf(path, 128, "%s/%s", vg_tmpdir, name);
    save_ok(m, path);
}

/* ---- growth: all or nothing ------------------------------------------------------ */

Test(state, a_failed_growth_leaves_the_model_as_it_was, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove)
{
    vg_model_t m, b;
    char before[128], after[128], err[512];
    saved_model(&m, before, "before.ckpt");
    vg_model_cfg_t cfg = m.cfg;
    snprintf(after, sizeof after, "%s/after.ckpt", vg_tmpdir);
    vg_model_close(&m);
    size_t n;
    char *bytes = slurp(before, &n);
    int failures = 0, rc = VG_ENOMEM;
    for (int k = 1; k < 1000 && rc; k++) { /* each allocation of the growth fails in turn, from the same start */
        cr_assert_eq(vg_model_load(&m, before, &cfg, 16, err, sizeof err), 0, "%s", err);
        m.fail_alloc = k;
        if ((rc = vg_model_grow(&m, 4 * N_ITEMS))) {
            failures++;
            cr_assert_eq(rc, VG_ENOMEM);
            cr_assert_eq(m.n_items, N_ITEMS, "allocation %d failed: N changed", k);
            save_ok(&m, after);
            cr_assert(same_file(after, bytes, n), "allocation %d failed: the saved state differs from before", k);
            cr_assert_eq(vg_model_load(&b, after, &cfg, 16, err, sizeof err), 0, "allocation %d: %s", k, err);
            cr_assert_eq(b.n_items, N_ITEMS);
            vg_model_close(&b);
            vg_model_close(&m);
        }
    }
    cr_assert_eq(rc, 0, "the growth succeeds once no allocation fails");
    cr_assert_geq(failures, 30, "tensors and workspace: %d allocations", failures);
    cr_assert_eq(m.n_items, 4 * N_ITEMS);
    int32_t rows[2] = {0, 0}, cols[2] = {2, 4 * N_ITEMS - 1};
    vg_csr_t X;
    cr_assert_eq(vg_csr_from_pairs(&X, 1, 4 * N_ITEMS, 2, rows, cols), 0);
    cr_assert_eq(vg_model_train_step(&m, &X, NULL), 0, "the grown model trains");
    vg_csr_free(&X);
    free(bytes);
    vg_model_close(&m);
}

/* The daemon's growth (model rows + vocabulary from the mirror): a failure
 * leaves a file that loads, and the next growth completes it. */
Test(state, a_failed_catalogue_growth_keeps_the_file_loadable, .init = mirror_make, .fini = mirror_remove)
{
    vg_hist_t *h = &H;
    vg_model_t m, b;
    small_model(&m);
    char id[16], path[128], err[512];
    vg_hist_wrlock(h);
    for (int i = 0; i < N_ITEMS + 30; i++) {
        snprintf(id, sizeof id, "item-%d", i);
        cr_assert_eq(vg_hist_item(h, id, strlen(id)), i);
    }
    vg_hist_unlock(h);
    snprintf(path, sizeof path, "%s/model.ckpt", vg_tmpdir);
    m.fail_alloc = 1;
    cr_assert_eq(vg_ckpt_grow(&m, h), VG_ENOMEM);
    cr_assert_eq(vg_ckpt_save(&m, h, path, err, sizeof err), 0, "%s", err);
    cr_assert_eq(vg_model_load(&b, path, &m.cfg, 16, err, sizeof err), 0, "after a failed growth: %s", err);
    cr_assert_eq(b.n_items, N_ITEMS);
    cr_assert_eq(b.vocab.n, N_ITEMS, "the vocabulary names the rows, no more");
    vg_model_close(&b);
    m.fail_alloc = 0;
    cr_assert_eq(vg_ckpt_grow(&m, h), 0);
    cr_assert_eq(vg_ckpt_save(&m, h, path, err, sizeof err), 0, "%s", err);
    cr_assert_eq(vg_model_load(&b, path, &m.cfg, 16, err, sizeof err), 0, "%s", err);
    cr_assert_eq(b.n_items, N_ITEMS + 30);
    cr_assert_str_eq(vg_vocab_id(&b.vocab, N_ITEMS + 29), "item-79");
    vg_model_close(&b);
    vg_model_close(&m);
}

/* ---- the loader sizes the file before allocating ------------------------------------- */

/* Outside ASan, caps the address space at what the process uses plus 2 GiB,
 * so that a loader that believed a damaged N and asked for tens of GiB would
 * get ENOMEM rather than lazily mapped pages; under ASan (which reserves
 * terabytes of shadow) ASan itself aborts on such a request. */
static void cap_address_space(void)
{
#ifndef __SANITIZE_ADDRESS__
    FILE *f = fopen("/proc/self/status", "r");
    cr_assert_not_null(f);
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %llu kB", &kb) == 1)
            break;
    fclose(f);
    cr_assert_gt(kb, 0);
    struct rlimit r = {.rlim_cur = (kb << 10) + (2ull << 30), .rlim_max = RLIM_INFINITY};
    cr_assert_eq(setrlimit(RLIMIT_AS, &r), 0);
#endif
}

/* Writes n bytes to path (replacing it). */
static void write_bytes(const char *path, const char *bytes, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
}

Test(state, a_flipped_size_field_is_corrupt_before_any_allocation, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove)
{
    vg_model_t m, b;
    char path[128], err[512];
    saved_model(&m, path, "model.ckpt");
    /* docs/model.md, "The state file": header 20 bytes, then variant,
     * likelihood, N, H, K, H_d (u32), 8 doubles, seed, step (u64), the RNG
     * (4 u64), the id count (u32), the ids (u32 length + bytes), then each
     * tensor's rows and cols (u64) */
    long vocab_bytes = 0;
    for (int i = 0; i < N_ITEMS; i++)
        vocab_bytes += 4 + (long)strlen(vg_vocab_id(&m.vocab, i));
    const long n_ids = 20 + 24 + 64 + 8 + 8 + 32, tensor0 = n_ids + 4 + vocab_bytes;
    const struct {
        const char *name;
        long off;
        int bits;
    } fields[] = {{"N", 28, 32},        {"H", 32, 32},        {"K", 36, 32},           {"H_d", 40, 32},
                  {"id count", n_ids, 32}, {"enc1 rows", tensor0, 64}, {"enc1 cols", tensor0 + 8, 64}};
    size_t n;
    char *good = slurp(path, &n), *bad = malloc(n + 1);
    cap_address_space();
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++)
        for (int bit = 0; bit < fields[f].bits; bit++) {
            memcpy(bad, good, n);
            bad[fields[f].off + bit / 8] ^= (char)(1 << (bit % 8));
            write_bytes(path, bad, n);
            err[0] = '\0';
            int rc = vg_model_load(&b, path, &m.cfg, 16, err, sizeof err);
            cr_assert_eq(rc, VG_ECORRUPT, "%s, bit %d: %s (%s)", fields[f].name, bit, vg_strerror(rc), err);
            cr_assert(strstr(err, path), "%s, bit %d: the message names the file: %s", fields[f].name, bit, err);
        }
    /* one byte more: the size says so before the checksum is read */
    memcpy(bad, good, n);
    bad[n] = 0;
    write_bytes(path, bad, n + 1);
    cr_assert_eq(vg_model_load(&b, path, &m.cfg, 16, err, sizeof err), VG_ECORRUPT);
    cr_assert(strstr(err, "implies") && strstr(err, path), "%s", err);
    write_bytes(path, good, n);
    cr_assert_eq(vg_model_load(&b, path, &m.cfg, 16, err, sizeof err), 0, "the undamaged file loads: %s", err);
    vg_model_close(&b);
    free(good);
    free(bad);
    vg_model_close(&m);
}

/* ---- saving: unique temporary files, the fault hook ----------------------------------- */

typedef struct saver {
    const vg_model_t *m;
    const char *path;
    int failed;
    char err[512];
} saver_t;

static void *save_many(void *arg)
{
    saver_t *s = arg;
    for (int k = 0; k < 20 && !s->failed; k++)
        s->failed = vg_model_save(s->m, s->path, s->err, sizeof s->err) != 0;
    return NULL;
}

/* Two writers at once (say, a leftover process and its successor) never
 * share a temporary file: every save succeeds and the file stays whole. */
Test(state, concurrent_saves_use_their_own_temporary_files, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove)
{
    vg_model_t m, b;
    small_model(&m);
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/model.ckpt", vg_tmpdir);
    saver_t s[2] = {{&m, path, 0, ""}, {&m, path, 0, ""}};
    pthread_t th[2];
    for (int k = 0; k < 2; k++)
        cr_assert_eq(pthread_create(&th[k], NULL, save_many, &s[k]), 0);
    for (int k = 0; k < 2; k++) {
        pthread_join(th[k], NULL);
        cr_assert_not(s[k].failed, "writer %d: %s", k, s[k].err);
    }
    cr_assert_eq(count_prefixed(vg_tmpdir, "model.ckpt.tmp"), 0, "no temporary file is left");
    cr_assert_eq(vg_model_load(&b, path, &m.cfg, 16, err, sizeof err), 0, "%s", err);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0644, "the state file is world-readable, as before");
    vg_model_close(&b);
    vg_model_close(&m);
}

static void write_text(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

Test(state, the_fault_hook_fails_saves_and_keeps_the_old_file, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove)
{
    vg_model_t m;
    char path[128], fault[128], err[512];
    saved_model(&m, path, "model.ckpt");
    snprintf(fault, sizeof fault, "%s/fault", vg_tmpdir);
    size_t n;
    char *old = slurp(path, &n);
    cr_assert_eq(setenv("VAEGAN_FAULT_FILE", fault, 1), 0);
    save_ok(&m, path); /* named but absent: no fault */
    const char *names[] = {"ENOSPC\n", "EROFS", "EIO"}, *texts[] = {"No space left", "Read-only", "Input/output"};
    for (int k = 0; k < 3; k++) {
        write_text(fault, names[k]);
        m.step += 1000; /* what a successful save would write differs */
        cr_assert_eq(vg_model_save(&m, path, err, sizeof err), VG_EIO, "%s armed: the save fails", names[k]);
        cr_assert(strstr(err, texts[k]) && strstr(err, path), "%s", err);
        cr_assert(same_file(path, old, n), "%s: the old file is untouched", names[k]);
        cr_assert_eq(count_prefixed(vg_tmpdir, "model.ckpt.tmp"), 0, "%s: no temporary file left", names[k]);
    }
    unlink(fault);
    save_ok(&m, path);
    cr_assert_not(same_file(path, old, n), "disarmed: the save writes again");
    unsetenv("VAEGAN_FAULT_FILE");
    free(old);
    vg_model_close(&m);
}

/* A start (vg_ckpt_load, under the directory's lock) removes what saves cut
 * short by a crash left behind, and nothing else. */
Test(state, a_start_removes_temporary_files_of_unfinished_saves, .init = mirror_make, .fini = mirror_remove)
{
    char dir[128], p[256];
    snprintf(dir, sizeof dir, "%s/state", vg_tmpdir);
    mkdir(dir, 0755);
    const char *names[] = {"model.ckpt.tmp-Ab12Cd", "model.ckpt.tmp", "model.ckpt.tmpfoo", "other"};
    for (int k = 0; k < 4; k++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[k]);
        write_text(p, "partial");
    }
    vg_model_t m;
    vg_model_cfg_t c;
    vg_model_cfg_default(&c, VG_VARIANT_AVB_D_C);
    char path[256];
    cr_assert_eq(vg_ckpt_load(&m, &H, dir, 0, &c, 16, path, sizeof path), 0, "no state yet");
    cr_assert_eq(count_prefixed(dir, "model.ckpt.tmp-"), 0);
    snprintf(p, sizeof p, "%s/model.ckpt.tmp", dir);
    cr_assert_neq(access(p, F_OK), 0, "the fixed name of earlier versions too");
    snprintf(p, sizeof p, "%s/model.ckpt.tmpfoo", dir);
    cr_assert_eq(access(p, F_OK), 0, "another name is kept");
    cr_assert_eq(count_prefixed(dir, "other"), 1);
}

/* ---- the state in memory (a checkpoint kept in Redis) --------------------------- */

Test(state, the_memory_copy_is_the_file_and_loads_back, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove)
{
    vg_model_t m, b;
    char path[128], err[512];
    saved_model(&m, path, "mem.state");
    void *buf = NULL;
    size_t cap = 0, n;
    cr_assert_eq(vg_model_save_mem(&m, &buf, &cap, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cap, n);
    void *first = buf;
    cr_assert_eq(vg_model_save_mem(&m, &buf, &cap, &n, err, sizeof err), 0, "%s", err);
    cr_assert(buf == first && cap == n, "a save of the same size must reuse the buffer");
    cr_assert(same_file(path, buf, n), "the memory copy differs from the state file");

    cr_assert_eq(vg_model_load_mem(&b, buf, n, "checkpoint 1:3", &m.cfg, 16, err, sizeof err), 0, "%s", err);
    cr_assert_eq(b.step, m.step);
    cr_assert_eq(b.vocab.n, m.vocab.n);
    void *again = NULL;
    size_t cap2 = 0, n2;
    cr_assert_eq(vg_model_save_mem(&b, &again, &cap2, &n2, err, sizeof err), 0, "%s", err);
    cr_assert(n2 == n && memcmp(again, buf, n) == 0, "a loaded copy saves to other bytes");
    free(again);
    vg_model_close(&b);

    /* damage is refused by name: a flipped byte, a copy cut short, nothing */
    unsigned char *d = buf;
    d[n / 2] ^= 0x10;
    cr_assert_eq(vg_model_load_mem(&b, buf, n, "checkpoint 1:3", &m.cfg, 16, err, sizeof err), VG_ECORRUPT);
    cr_assert(strstr(err, "checkpoint 1:3"), "message does not name the copy: %s", err);
    d[n / 2] ^= 0x10;
    cr_assert_eq(vg_model_load_mem(&b, buf, n - 1, "checkpoint 1:3", &m.cfg, 16, err, sizeof err), VG_ECORRUPT,
                 "%s", err);
    cr_assert_eq(vg_model_load_mem(&b, buf, 0, "checkpoint 1:3", &m.cfg, 16, err, sizeof err), VG_ECORRUPT);
    free(buf);
    vg_model_close(&m);
}

Test(state, the_weights_copy_scores_as_the_model, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove)
{
    vg_model_t m, snap, b;
    char err[512];
    small_model(&m);
    cr_assert_eq(vg_model_snapshot(&snap, &m), 0);
    void *full = NULL, *w = NULL, *w2 = NULL;
    size_t cfull = 0, cw = 0, cw2 = 0, nfull, nw, nw2;
    cr_assert_eq(vg_model_save_mem(&m, &full, &cfull, &nfull, err, sizeof err), 0, "%s", err);
    cr_assert_eq(vg_model_save_weights_mem(&m, &w, &cw, &nw, err, sizeof err), 0, "%s", err);
    cr_assert_eq(vg_model_save_weights_mem(&snap, &w2, &cw2, &nw2, err, sizeof err), 0, "%s", err);
    cr_assert_lt(nw2, nw, "a snapshot has no vocabulary to copy");
    cr_assert_lt(nw * 2, nfull, "weights copy %zu bytes, full state %zu", nw, nfull);

    cr_assert_eq(vg_model_load_weights_mem(&b, w, nw, "snapshot 1:3", &m.cfg, err, sizeof err), 0, "%s", err);
    cr_assert_eq(b.step, m.step);
    cr_assert_eq(b.vocab.n, m.vocab.n);
    cr_assert_str_eq(b.vocab.ids[7], m.vocab.ids[7]);
    /* it scores exactly as the model, and cannot be trained */
    int32_t rows[3] = {0, 0, 1}, cols[3] = {2, 30, 11};
    vg_csr_t X;
    cr_assert_eq(vg_csr_from_pairs(&X, 2, N_ITEMS, 3, rows, cols), 0);
    size_t wn = vg_model_score_work_size(&m, 2);
    vg_real *work = malloc(wn * sizeof(vg_real)), *s1 = malloc(2 * N_ITEMS * sizeof(vg_real)),
            *s2 = malloc(2 * N_ITEMS * sizeof(vg_real));
    cr_assert_eq(vg_model_score(&m, &X, s1, work), 0);
    cr_assert_eq(vg_model_score(&b, &X, s2, work), 0);
    cr_assert(memcmp(s1, s2, 2 * N_ITEMS * sizeof(vg_real)) == 0, "the loaded weights score differently");
    cr_assert_eq(vg_model_train_step(&b, &X, NULL), VG_EINVAL);
    vg_model_t c;
    cr_assert_eq(vg_model_load_weights_mem(&c, w2, nw2, "snapshot", &m.cfg, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.vocab.n, 0);
    cr_assert_eq(vg_model_score(&c, &X, s2, work), 0);
    cr_assert(memcmp(s1, s2, 2 * N_ITEMS * sizeof(vg_real)) == 0, "a snapshot's weights score differently");
    vg_model_close(&c);

    /* the two forms are not taken for each other; damage is refused by name */
    cr_assert_eq(vg_model_load_mem(&c, w, nw, "snapshot 1:3", &m.cfg, 16, err, sizeof err), VG_EFORMAT);
    cr_assert_eq(vg_model_load_weights_mem(&c, full, nfull, "checkpoint", &m.cfg, err, sizeof err), VG_EFORMAT);
    ((unsigned char *)w)[nw - 9] ^= 1;
    cr_assert_eq(vg_model_load_weights_mem(&c, w, nw, "snapshot 1:3", &m.cfg, err, sizeof err), VG_ECORRUPT);
    cr_assert(strstr(err, "snapshot 1:3"), "%s", err);

    vg_csr_free(&X);
    free(work), free(s1), free(s2), free(full), free(w), free(w2);
    vg_model_close(&b);
    vg_model_close(&snap);
    vg_model_close(&m);
}
