/*
 * state.c — the model state file (see vaegan.h for the layout).
 *
 * Everything is written in the machine's byte order behind an order marker;
 * a file from a machine of the other order is refused as foreign rather than
 * misread.  The CRC-32 (zlib) covers every byte before it, so a flipped bit
 * anywhere, or a file cut short, is refused.  Saving never leaves a partial
 * file under the real name, nor a temporary file behind: it writes a
 * temporary file of a unique name in the same directory ("<path>.tmp-XXXXXX",
 * mkstemp, so two writers never share one), fsyncs it, renames it over the
 * old file and fsyncs the directory; a failure of any step (the directory's
 * fsync included) is the save's error, and the old file stays as it was.
 * vg_model_save_mem / vg_model_load_mem write and read the same bytes in
 * memory (a buffer the caller keeps across saves; fmemopen) for a copy kept
 * elsewhere, with the same checks (the memory's length stands for the
 * file's size).
 * The writer holds the test hook VAEGAN_FAULT_FILE (vaegan.h): a file named
 * by that variable, while it exists, makes every write of a save fail with
 * the errno it names, so tests can fill or freeze the disk without root's
 * permissions getting in the way.
 *
 * The loader reads the sections in file order, one function each (header,
 * architecture and hyperparameters, step + RNG + vocabulary, then — once the
 * model is allocated for that architecture — the tensors and the checksum).
 * Before anything is allocated for the architecture, the file's size must be
 * what its header implies (checked once the vocabulary count is known, and
 * exactly once the vocabulary is read), so a damaged size field (N, H, K,
 * H_d, the count of ids) is called corrupt instead of costing a huge
 * allocation or passing for a configuration change.  Each step returns 0 or a
 * VG_E* code with the reason, naming the file and the section, in the
 * caller's err buffer (vg_errf); the first failure stops the load and the
 * partly built model is closed.  The byte layout is in docs/model.md, "The
 * state file".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "model/internal.h"
#include "model/vaegan.h"

#define STATE_MAGIC "VAEGANST"
#define WEIGHTS_MAGIC "VAEGANSW" /* the weights-only form (vg_model_save_weights_mem) */
#define STATE_VERSION 1u
#define ORDER_MARK 0x01020304u

/* Where a save goes: a file (f), memory (mem, without f), or nowhere (both
 * NULL: the bytes are only counted, in at). */
typedef struct {
    FILE *f;
    uLong crc;
    int failed; /* an errno once a step failed (the first one is kept), else 0 */
    int fault;  /* the test hook's errno for every write, or 0 */
    int weights; /* the weights-only form: the generator's weights, no moments */
    char *mem;   /* memory of at least the counted size */
    size_t at;   /* bytes put so far */
} wstream_t;

/* Records the first failure of a save: errno e (EIO when e is 0). */
static void fail(wstream_t *s, int e)
{
    if (!s->failed)
        s->failed = e ? e : EIO;
}

static void put(wstream_t *s, const void *p, size_t n)
{
    if (s->failed || n == 0)
        return;
    if (s->fault) {
        fail(s, s->fault);
        return;
    }
    s->at += n;
    if (!s->f && !s->mem)
        return; /* counting */
    if (!s->f)
        memcpy(s->mem + s->at - n, p, n);
    else if (fwrite(p, 1, n, s->f) != n) {
        fail(s, errno);
        return;
    }
    /* zlib's crc32 takes uInt lengths: feed large arrays in pieces */
    const unsigned char *b = p;
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        s->crc = crc32(s->crc, b, k);
        b += k;
        n -= k;
    }
}

static void put_u32(wstream_t *s, uint32_t v) { put(s, &v, sizeof v); }
static void put_u64(wstream_t *s, uint64_t v) { put(s, &v, sizeof v); }
static void put_f64(wstream_t *s, double v) { put(s, &v, sizeof v); }

static void put_cfg(wstream_t *s, const vg_model_t *m)
{
    const vg_model_cfg_t *c = &m->cfg;
    put_u32(s, (uint32_t)c->variant);
    put_u32(s, (uint32_t)c->likelihood);
    put_u32(s, (uint32_t)m->n_items);
    put_u32(s, (uint32_t)c->hidden);
    put_u32(s, (uint32_t)c->latent);
    put_u32(s, (uint32_t)c->disc_hidden);
    put_f64(s, c->alpha_cap);
    put_f64(s, c->anneal_steps);
    put_f64(s, c->beta);
    put_f64(s, c->lambda);
    put_f64(s, c->dropout);
    put_f64(s, c->lr);
    put_f64(s, c->noise_input);
    put_f64(s, c->noise_hidden);
    put_u64(s, c->seed);
}

/* Everything the checksum covers, in file order: header, architecture and
 * hyperparameters, step, RNG state, vocabulary, tensors. */
static void put_state(wstream_t *s, const vg_model_t *m)
{
    put(s, s->weights ? WEIGHTS_MAGIC : STATE_MAGIC, 8);
    put_u32(s, STATE_VERSION);
    put_u32(s, ORDER_MARK);
    put_u32(s, (uint32_t)sizeof(vg_real));
    put_cfg(s, m);
    put_u64(s, (uint64_t)m->step);
    put(s, m->rng.s, sizeof m->rng.s);
    put_u32(s, (uint32_t)m->vocab.n);
    for (int i = 0; i < m->vocab.n; i++) {
        uint32_t len = (uint32_t)strlen(m->vocab.ids[i]);
        put_u32(s, len);
        put(s, m->vocab.ids[i], len);
    }
    for (int i = 0; i < VG_P_COUNT; i++) {
        const vg_param_t *p = &m->p[i];
        size_t n = p->rows * p->cols;
        if (s->weights && i > VG_P_B4)
            continue; /* not the generator's (a snapshot's other slots are empty) */
        put_u64(s, p->rows);
        put_u64(s, p->cols);
        put(s, p->w, n * sizeof(vg_real));
        if (s->weights)
            continue;
        put(s, p->m, n * sizeof(vg_real));
        put(s, p->v, n * sizeof(vg_real));
    }
}

/* The test hook (vaegan.h): the errno named in the file $VAEGAN_FAULT_FILE
 * when that file exists, else 0. */
static int injected_write_error(void)
{
    static const struct {
        const char *name;
        int e;
    } names[] = {{"ENOSPC", ENOSPC}, {"EROFS", EROFS}, {"EDQUOT", EDQUOT}, {"EIO", EIO}};
    const char *hook = getenv("VAEGAN_FAULT_FILE");
    FILE *f = hook && *hook ? fopen(hook, "r") : NULL;
    if (!f)
        return 0;
    char word[16] = "";
    int got = fscanf(f, "%15s", word);
    fclose(f);
    for (size_t k = 0; got == 1 && k < sizeof names / sizeof names[0]; k++)
        if (strcmp(word, names[k].name) == 0)
            return names[k].e;
    return EIO;
}

/* Makes the rename inside path's directory durable (fsync of the
 * directory).  Returns 0 or VG_EIO with the reason in err. */
static int sync_parent_dir(const char *path, char *err, size_t errlen)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = 0;
    else if (slash)
        *slash = 0;
    else
        strcpy(dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return vg_errf(err, errlen, VG_EIO, "%s is renamed into place but its directory %s cannot be synced: %s",
                       path, dir, strerror(e));
    }
    close(fd);
    return 0;
}

/* Writes the whole file (state, checksum) to the open temporary file fd,
 * fsyncs and closes it.  Returns 0 or the errno of the first failure. */
static int write_temp(const vg_model_t *m, int fd)
{
    int fault = injected_write_error();
    wstream_t s = {.f = fdopen(fd, "wb"), .crc = crc32(0L, Z_NULL, 0), .fault = fault};
    if (!s.f) {
        int e = errno;
        close(fd);
        return e ? e : EIO;
    }
    if (fchmod(fd, 0644) != 0) /* mkstemp's 0600: the state file has always been world-readable */
        fail(&s, errno);
    put_state(&s, m);
    put_u32(&s, (uint32_t)s.crc); /* the CRC of everything before it */
    if (!s.failed && (fflush(s.f) != 0 || fsync(fd) != 0))
        fail(&s, errno);
    if (fclose(s.f) != 0)
        fail(&s, errno);
    return s.failed;
}

int vg_model_save(const vg_model_t *m, const char *path, char *err, size_t errlen)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path) >= (int)sizeof tmp)
        return vg_errf(err, errlen, VG_EINVAL, "state file path too long: %s", path);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return vg_errf(err, errlen, VG_EIO, "cannot create a temporary file %s: %s", tmp, strerror(errno));
    int e = write_temp(m, fd);
    if (e) {
        unlink(tmp);
        return vg_errf(err, errlen, VG_EIO, "cannot write %s: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        return vg_errf(err, errlen, VG_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    return sync_parent_dir(path, err, errlen);
}

/* The state file's bytes (weights 0) or the weights-only form (1), into
 * *buf: the size is counted first, and *buf grows only when it is smaller
 * (fresh pages cost more than the copy: 2.1-2.5 s for a 546 MB state here,
 * mostly page faults). */
static int save_mem(const vg_model_t *m, int weights, void **buf, size_t *cap, size_t *len, char *err,
                    size_t errlen)
{
    wstream_t count = {.weights = weights};
    put_state(&count, m);
    size_t n = count.at + sizeof(uint32_t);
    if (!*buf || *cap < n) {
        void *q = realloc(*buf, n);
        if (!q)
            return vg_errf(err, errlen, VG_ENOMEM, "no memory for a %zu-byte copy of the state", n);
        *buf = q;
        *cap = n;
    }
    wstream_t s = {.crc = crc32(0L, Z_NULL, 0), .weights = weights, .mem = *buf};
    put_state(&s, m);
    put_u32(&s, (uint32_t)s.crc);
    vg_assert(s.at == n);
    *len = n;
    return 0;
}

int vg_model_save_mem(const vg_model_t *m, void **buf, size_t *cap, size_t *len, char *err, size_t errlen)
{
    return save_mem(m, 0, buf, cap, len, err, errlen);
}

int vg_model_save_weights_mem(const vg_model_t *m, void **buf, size_t *cap, size_t *len, char *err, size_t errlen)
{
    return save_mem(m, 1, buf, cap, len, err, errlen);
}

typedef struct {
    FILE *f;
    uLong crc;
    const char *path;
    char *err;
    size_t errlen;
    uint64_t pos, size; /* bytes read so far; the file's size */
    int weights;        /* the weights-only form is expected */
} rstream_t;

/* Reads n bytes; returns 0 or VG_ECORRUPT naming what was cut short. */
static int get(rstream_t *s, void *p, size_t n, const char *what)
{
    if (n == 0)
        return 0;
    if (fread(p, 1, n, s->f) != n) {
        if (ferror(s->f))
            return vg_errf(s->err, s->errlen, VG_EIO, "%s: read error in %s: %s", s->path, what, strerror(errno));
        return vg_errf(s->err, s->errlen, VG_ECORRUPT, "%s: truncated (file ends inside %s)", s->path, what);
    }
    s->pos += n;
    unsigned char *b = p;
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        s->crc = crc32(s->crc, b, k);
        b += k;
        n -= k;
    }
    return 0;
}

/* Reads the object `var` (sizeof(var) bytes) from the stream `s` in scope;
 * on failure returns the error from the calling function. */
#define GET(var, what)                                                                             \
    do {                                                                                           \
        int rc_ = get(s, &(var), sizeof(var), what);                                              \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
    } while (0)

/* The header: magic, format version, byte order, size of a real. */
static int read_header(rstream_t *s)
{
    char magic[8];
    uint32_t version, order, rsize;
    GET(magic, "the header");
    if (memcmp(magic, s->weights ? WEIGHTS_MAGIC : STATE_MAGIC, 8) != 0)
        return vg_errf(s->err, s->errlen, VG_EFORMAT, "%s: not a vaegan model %s (bad magic)", s->path,
                       s->weights ? "weights copy" : "state file");
    GET(version, "the header");
    GET(order, "the header");
    if (order != ORDER_MARK)
        return vg_errf(s->err, s->errlen, VG_EFORMAT, "%s: written on a machine of another byte order", s->path);
    if (version != STATE_VERSION)
        return vg_errf(s->err, s->errlen, VG_EVERSION, "%s: format version %u is not supported (this build reads %u)",
                       s->path, version, STATE_VERSION);
    GET(rsize, "the header");
    if (rsize != sizeof(vg_real))
        return vg_errf(s->err, s->errlen, VG_EMISMATCH, "%s: stores %u-byte reals, this build uses %zu", s->path,
                       rsize, sizeof(vg_real));
    return 0;
}

/* The architecture (range-checked) and the hyperparameters, into *c and
 * *n_items. */
static int read_architecture(rstream_t *s, vg_model_cfg_t *c, uint32_t *n_items)
{
    uint32_t variant, lik, hidden, latent, dh;
    memset(c, 0, sizeof *c);
    GET(variant, "the architecture");
    GET(lik, "the architecture");
    GET(*n_items, "the architecture");
    GET(hidden, "the architecture");
    GET(latent, "the architecture");
    GET(dh, "the architecture");
    GET(c->alpha_cap, "the hyperparameters");
    GET(c->anneal_steps, "the hyperparameters");
    GET(c->beta, "the hyperparameters");
    GET(c->lambda, "the hyperparameters");
    GET(c->dropout, "the hyperparameters");
    GET(c->lr, "the hyperparameters");
    GET(c->noise_input, "the hyperparameters");
    GET(c->noise_hidden, "the hyperparameters");
    GET(c->seed, "the hyperparameters");
    c->input_norm = 0.5; /* not in the file: the configuration's (adopt_hyperparameters) or the default */
    if (variant > VG_VARIANT_AVB_D_C || lik > VG_LIK_LOGISTIC || *n_items < 1 || *n_items > (1u << 30) ||
        hidden < 1 || hidden > VG_MODEL_DIM_MAX || latent < 1 || latent > VG_MODEL_DIM_MAX || dh < 1 ||
        dh > VG_MODEL_DIM_MAX)
        return vg_errf(s->err, s->errlen, VG_ECORRUPT, "%s: corrupt architecture fields", s->path);
    c->variant = (vg_variant_t)variant;
    c->likelihood = (vg_likelihood_t)lik;
    c->hidden = (int)hidden;
    c->latent = (int)latent;
    c->disc_hidden = (int)dh;
    return 0;
}

/* VG_EMISMATCH naming the first architecture field of the file (c) that
 * differs from the configuration (expect), else 0. */
static int check_architecture(const rstream_t *s, const vg_model_cfg_t *c, const vg_model_cfg_t *expect)
{
    if (expect->variant != c->variant)
        return vg_errf(s->err, s->errlen, VG_EMISMATCH, "%s: model variant is %s in the file, %s configured",
                       s->path, vg_variant_name(c->variant), vg_variant_name(expect->variant));
    if (expect->likelihood != c->likelihood)
        return vg_errf(s->err, s->errlen, VG_EMISMATCH, "%s: likelihood is %s in the file, %s configured", s->path,
                       vg_likelihood_name(c->likelihood), vg_likelihood_name(expect->likelihood));
    const char *what = NULL;
    long have = 0, want = 0;
    if (expect->hidden != c->hidden)
        what = "hidden", have = c->hidden, want = expect->hidden;
    else if (expect->latent != c->latent)
        what = "latent", have = c->latent, want = expect->latent;
    else if (expect->disc_hidden != c->disc_hidden)
        what = "disc_hidden", have = c->disc_hidden, want = expect->disc_hidden;
    if (what)
        return vg_errf(s->err, s->errlen, VG_EMISMATCH, "%s: %s is %ld in the file, %ld configured", s->path, what,
                       have, want);
    return 0;
}

/* Training hyperparameters follow the configuration; a negative (automatic)
 * noise_input keeps the file's, which was resolved for the file's N. */
static void adopt_hyperparameters(vg_model_cfg_t *c, const vg_model_cfg_t *expect)
{
    double noise = c->noise_input;
    c->alpha_cap = expect->alpha_cap;
    c->anneal_steps = expect->anneal_steps;
    c->beta = expect->beta;
    c->lambda = expect->lambda;
    c->dropout = expect->dropout;
    c->lr = expect->lr;
    c->input_norm = expect->input_norm;
    c->noise_hidden = expect->noise_hidden;
    c->noise_input = expect->noise_input < 0 ? noise : expect->noise_input;
    c->seed = expect->seed;
}

/* Bytes of the tensor section that m's architecture (m->cfg, m->n_items)
 * implies: per tensor its two u64 dimensions, weights and two moments (the
 * weights-only form: the generator's tensors, weights only). */
static uint64_t tensor_bytes(const vg_model_t *m, int weights)
{
    size_t shape[VG_P_COUNT][4];
    vg_param_shapes_(m, shape);
    uint64_t n = 0;
    for (int i = 0; i < VG_P_COUNT; i++) /* N <= 2^30, a width <= 2^17: no overflow */
        if (!weights || shape[i][3] == VG_PLAYER_G)
            n += 2 * sizeof(uint64_t) + (weights ? 1 : 3) * (uint64_t)shape[i][0] * shape[i][1] * sizeof(vg_real);
    return n;
}

/* 0 when the file's size is `implied` (or, with at_least, not below it),
 * else VG_ECORRUPT naming the header's sizes. */
static int check_size(const rstream_t *s, const vg_model_t *m, uint64_t implied, int at_least, uint32_t nv)
{
    if (s->size == implied || (at_least && s->size > implied))
        return 0;
    const vg_model_cfg_t *c = &m->cfg;
    return vg_errf(s->err, s->errlen, VG_ECORRUPT,
                   "%s: corrupt or truncated: its header (%d items, H %d, K %d, H_d %d, %u item ids) implies %s%llu "
                   "bytes, the file has %llu",
                   s->path, m->n_items, c->hidden, c->latent, c->disc_hidden, nv, at_least ? "at least " : "",
                   (unsigned long long)implied, (unsigned long long)s->size);
}

/* The step counter, the RNG state and the item vocabulary (at most n_items
 * distinct ids, each 1..VG_VOCAB_ID_MAX bytes); then the file's size must be
 * the one the header implies (tensors: tensor_bytes, then the checksum). */
static int read_progress_and_vocabulary(rstream_t *s, vg_model_t *m, uint32_t n_items, uint64_t tensors)
{
    uint64_t step;
    GET(step, "the step counter");
    m->step = (int64_t)step;
    GET(m->rng.s, "the RNG state");
    uint32_t nv;
    GET(nv, "the item vocabulary");
    if (nv > n_items)
        return vg_errf(s->err, s->errlen, VG_ECORRUPT, "%s: vocabulary of %u ids for %u items", s->path, nv, n_items);
    int rc = check_size(s, m, s->pos + (uint64_t)nv * (sizeof(uint32_t) + 1) + tensors + sizeof(uint32_t), 1, nv);
    if (rc)
        return rc;
    for (uint32_t i = 0; i < nv; i++) {
        uint32_t len;
        char id[VG_VOCAB_ID_MAX];
        GET(len, "the item vocabulary");
        if (len < 1 || len > VG_VOCAB_ID_MAX)
            return vg_errf(s->err, s->errlen, VG_ECORRUPT, "%s: item id %u has a bad length %u", s->path, i, len);
        if ((rc = get(s, id, len, "the item vocabulary")))
            return rc;
        int added = 0;
        if (vg_vocab_add(&m->vocab, id, len, &added) != (int32_t)i || !added)
            return vg_errf(s->err, s->errlen, VG_ECORRUPT, "%s: item id %u is invalid or repeated", s->path, i);
    }
    return check_size(s, m, s->pos + tensors + sizeof(uint32_t), 0, nv);
}

/* Every tensor of the allocated model: its shape (must match), weights and
 * Adam moments. */
static int read_tensors(rstream_t *s, vg_model_t *m)
{
    for (int i = 0; i < VG_P_COUNT; i++) {
        vg_param_t *p = &m->p[i];
        uint64_t rows, cols;
        if (s->weights && !p->w)
            continue; /* not the generator's */
        GET(rows, p->name);
        GET(cols, p->name);
        if (rows != p->rows || cols != p->cols)
            return vg_errf(s->err, s->errlen, VG_ECORRUPT, "%s: tensor %s is %llux%llu, expected %zux%zu", s->path,
                           p->name, (unsigned long long)rows, (unsigned long long)cols, p->rows, p->cols);
        size_t n = p->rows * p->cols * sizeof(vg_real);
        int rc;
        if ((rc = get(s, p->w, n, p->name)) ||
            (!s->weights && ((rc = get(s, p->m, n, p->name)) || (rc = get(s, p->v, n, p->name)))))
            return rc;
    }
    return 0;
}

/* The CRC-32 of everything read so far, then the end of the file. */
static int read_checksum(rstream_t *s)
{
    uLong crc_calc = s->crc;
    uint32_t crc_file;
    if (fread(&crc_file, sizeof crc_file, 1, s->f) != 1)
        return vg_errf(s->err, s->errlen, VG_ECORRUPT, "%s: truncated (checksum missing)", s->path);
    if ((uint32_t)crc_calc != crc_file)
        return vg_errf(s->err, s->errlen, VG_ECORRUPT, "%s: checksum mismatch (file corrupt)", s->path);
    if (fgetc(s->f) != EOF)
        return vg_errf(s->err, s->errlen, VG_ECORRUPT, "%s: trailing bytes after the checksum", s->path);
    return 0;
}

#undef GET

/* The file in its order: header, architecture, step, RNG, vocabulary (and
 * the file's size against the header), then the comparison with expect, and
 * (once the model is allocated for that architecture) the tensors and the
 * checksum.  On failure m may hold part of the model (the caller closes it). */
static int read_state(rstream_t *s, vg_model_t *m, const vg_model_cfg_t *expect, int max_batch)
{
    vg_model_cfg_t c;
    uint32_t n_items;
    int rc;
    if ((rc = read_header(s)) || (rc = read_architecture(s, &c, &n_items)))
        return rc;
    m->cfg = c;
    m->n_items = (int)n_items;
    m->gen_terms = VG_TERM_ALL;
    if ((rc = read_progress_and_vocabulary(s, m, n_items, tensor_bytes(m, s->weights))))
        return rc;
    if (expect) {
        if ((rc = check_architecture(s, &c, expect)))
            return rc;
        adopt_hyperparameters(&c, expect);
        m->cfg = c;
    }
    if ((rc = s->weights ? vg_model_alloc_weights_(m) : vg_model_alloc_(m, max_batch)) == VG_EINVAL &&
        max_batch >= 1)
        return vg_errf(s->err, s->errlen, VG_ECORRUPT, "%s: corrupt hyperparameters", s->path);
    if (rc)
        return vg_errf(s->err, s->errlen, rc, "%s: cannot allocate the model: %s", s->path, vg_strerror(rc));
    if ((rc = read_tensors(s, m)))
        return rc;
    return read_checksum(s);
}

int vg_model_load(vg_model_t *m, const char *path, const vg_model_cfg_t *expect, int max_batch, char *err,
                  size_t errlen)
{
    memset(m, 0, sizeof *m);
    vg_vocab_init(&m->vocab);
    rstream_t s = {fopen(path, "rb"), crc32(0L, Z_NULL, 0), path, err, errlen, 0, 0, 0};
    if (!s.f)
        return vg_errf(err, errlen, VG_EIO, "cannot open state file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(s.f), &st) != 0) {
        int e = errno;
        fclose(s.f);
        return vg_errf(err, errlen, VG_EIO, "cannot stat state file %s: %s", path, strerror(e));
    }
    s.size = (uint64_t)st.st_size;
    int rc = read_state(&s, m, expect, max_batch);
    fclose(s.f);
    if (rc)
        vg_model_close(m);
    return rc;
}

static int load_mem(vg_model_t *m, int weights, const void *data, size_t len, const char *name,
                    const vg_model_cfg_t *expect, int max_batch, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    vg_vocab_init(&m->vocab);
    if (!len)
        return vg_errf(err, errlen, VG_ECORRUPT, "%s: empty", name);
    rstream_t s = {fmemopen((void *)data, len, "rb"), crc32(0L, Z_NULL, 0), name, err, errlen, 0, (uint64_t)len,
                   weights};
    if (!s.f)
        return vg_errf(err, errlen, VG_ENOMEM, "%s: cannot open a memory stream: %s", name, strerror(errno));
    int rc = read_state(&s, m, expect, max_batch);
    fclose(s.f);
    if (rc)
        vg_model_close(m);
    return rc;
}

int vg_model_load_mem(vg_model_t *m, const void *data, size_t len, const char *name, const vg_model_cfg_t *expect,
                      int max_batch, char *err, size_t errlen)
{
    return load_mem(m, 0, data, len, name, expect, max_batch, err, errlen);
}

int vg_model_load_weights_mem(vg_model_t *m, const void *data, size_t len, const char *name,
                              const vg_model_cfg_t *expect, char *err, size_t errlen)
{
    return load_mem(m, 1, data, len, name, expect, 1, err, errlen);
}
