/*
 * blas.c — start-up choice of OpenBLAS kernels, and the sgemm self-check.
 *
 * The library decides its core when it is loaded, from OPENBLAS_CORETYPE or
 * its own CPU detection; the only way to change the decision is to start the
 * process again with the variable set.  vg_blas_setup() therefore classifies
 * the state it finds (operator's variable / our re-exec marker / library
 * default), re-executes at most twice (stage 1: our choice; stage 2: our
 * choice dropped after a failed self-check), and never re-executes when the
 * operator set the variable or a valid marker says it already happened.  The
 * rules and their reasons are in blas.h.
 *
 * The self-check computes a few small sgemm problems with odd leading
 * dimensions and compares every element with a double-precision triple loop,
 * using an error bound scaled by sum_k |a_ik b_kj| so that cancellation does
 * not produce false alarms.
 */
#include "model/blas.h"

#include <omp.h>

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "model/common.h"

#define CORE_NAME_MAX 32

/* Cores of OpenBLAS 0.3.21's x86_64 DYNAMIC_ARCH set with AVX2/AVX-512
 * sgemm kernels; every other name counts as generic (see blas.h). */
static const char *const avx2_cores[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"};

static int core_is_generic(const char *name)
{
    for (size_t i = 0; i < sizeof avx2_cores / sizeof avx2_cores[0]; i++)
        if (strcasecmp(name, avx2_cores[i]) == 0)
            return 0;
    return 1;
}

/* The core we would pick for this CPU, or NULL if none beats a generic one.
 * *why names the deciding CPU features. */
static const char *best_core(const char **why)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
        *why = "AVX-512";
        return "SkylakeX";
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        *why = "AVX2+FMA";
        return "Haswell";
    }
    *why = "no AVX2+FMA";
    return NULL;
}

const char *vg_blas_core(void)
{
    const char *s = openblas_get_corename();
    return s ? s : "unknown";
}

void vg_blas_set_threads(int n)
{
    vg_assert(n >= 1);
    openblas_set_num_threads(n);
    omp_set_num_threads(n); /* the model's own element-wise loops */
}

int vg_blas_threads(void) { return openblas_get_num_threads(); }

void vg_omp_set_threads(int n)
{
    vg_assert(n >= 1);
    omp_set_num_threads(n);
}

/* ---- the marker: "<stage>:<library core>:<our core>" ---------------------- */

typedef struct marker {
    int stage; /* 1 or 2 */
    char lib[CORE_NAME_MAX];
    char ours[CORE_NAME_MAX];
} marker_t;

static int parse_name(const char **p, char *out, char stop)
{
    size_t n = 0;
    while (**p && **p != stop) {
        char c = **p;
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        if (!ok || n + 1 >= CORE_NAME_MAX)
            return -1;
        out[n++] = c;
        (*p)++;
    }
    out[n] = '\0';
    return n > 0 ? 0 : -1;
}

/* 1 if s is a well-formed marker (filled into *m), else 0. */
static int parse_marker(const char *s, marker_t *m)
{
    if (!s || (s[0] != '1' && s[0] != '2') || s[1] != ':')
        return 0;
    m->stage = s[0] - '0';
    const char *p = s + 2;
    if (parse_name(&p, m->lib, ':') < 0 || *p != ':')
        return 0;
    p++;
    if (parse_name(&p, m->ours, '\0') < 0)
        return 0;
    return 1;
}

/* Re-executes this program with OPENBLAS_CORETYPE=core (unset if NULL) and
 * the given marker.  Returns only on failure: errno, with the environment as
 * it was before the call. */
static int reexec(char **argv, const char *core, const char *marker)
{
    const char *old_core = getenv(VG_BLAS_ENV_CORETYPE);
    const char *old_marker = getenv(VG_BLAS_ENV_MARKER);
    char saved_core[CORE_NAME_MAX * 2] = "", saved_marker[CORE_NAME_MAX * 3] = "";
    int had_core = old_core != NULL, had_marker = old_marker != NULL;
    if (had_core)
        snprintf(saved_core, sizeof saved_core, "%s", old_core);
    if (had_marker)
        snprintf(saved_marker, sizeof saved_marker, "%s", old_marker);

    int err = 0;
    if (setenv(VG_BLAS_ENV_MARKER, marker, 1) != 0 ||
        (core ? setenv(VG_BLAS_ENV_CORETYPE, core, 1) : unsetenv(VG_BLAS_ENV_CORETYPE)) != 0) {
        err = errno;
    } else {
        fflush(NULL); /* buffered output would be lost with the old image */
        execv("/proc/self/exe", argv);
        err = errno;
    }
    if (had_core)
        setenv(VG_BLAS_ENV_CORETYPE, saved_core, 1);
    else
        unsetenv(VG_BLAS_ENV_CORETYPE);
    if (had_marker)
        setenv(VG_BLAS_ENV_MARKER, saved_marker, 1);
    else
        unsetenv(VG_BLAS_ENV_MARKER);
    return err ? err : EINVAL;
}

/* "OpenBLAS 0.3.21" from the config string "OpenBLAS 0.3.21 DYNAMIC_ARCH ..." */
static void library_version(char *out, size_t n)
{
    const char *cfg = openblas_get_config();
    if (!cfg)
        cfg = "OpenBLAS";
    const char *sp = strchr(cfg, ' ');
    if (sp)
        sp = strchr(sp + 1, ' ');
    size_t len = sp ? (size_t)(sp - cfg) : strlen(cfg);
    snprintf(out, n, "%.*s", (int)len, cfg);
}

int vg_blas_setup(int argc, char **argv, char *msg, size_t msglen)
{
    enum { FROM_LIBRARY, FROM_OPERATOR, FROM_US, FROM_FALLBACK } source;
    const char *core = vg_blas_core();
    const char *env_core = getenv(VG_BLAS_ENV_CORETYPE);
    const char *env_marker = getenv(VG_BLAS_ENV_MARKER);
    const char *hook = getenv(VG_BLAS_ENV_ASSUME_GENERIC);
    int assume_generic = hook && strcmp(hook, "1") == 0;
    int can_exec = argc >= 1 && argv && argv[0];
    marker_t m;
    int have_marker = parse_marker(env_marker, &m);
    const char *why = NULL;
    const char *best = best_core(&why);
    char note[160] = "";

    if (env_core && !*env_core)
        env_core = NULL; /* empty = unset, as for the library */
    if (have_marker && m.stage == 1 && env_core && strcasecmp(env_core, m.ours) == 0)
        source = FROM_US;
    else if (env_core)
        source = FROM_OPERATOR;
    else if (have_marker && m.stage == 2)
        source = FROM_FALLBACK;
    else
        source = FROM_LIBRARY;

    if (source == FROM_LIBRARY) {
        int generic = assume_generic || core_is_generic(core);
        if (have_marker) {
            /* a stage-1 marker without our variable: someone removed it; do
             * not start again (loop guard) */
            snprintf(note, sizeof note, "; ignoring stale %s", VG_BLAS_ENV_MARKER);
        } else if (generic && !best) {
            snprintf(note, sizeof note, "; generic, but the CPU has %s", why);
        } else if (generic && !can_exec) {
            snprintf(note, sizeof note, "; generic, cannot re-exec without argv");
        } else if (generic) {
            char mk[3 * CORE_NAME_MAX + 4];
            snprintf(mk, sizeof mk, "1:%.*s:%s", CORE_NAME_MAX - 1, core, best);
            int err = reexec(argv, best, mk); /* returns only on failure */
            snprintf(note, sizeof note, "; generic, re-exec for %s failed: %s", best, strerror(err));
        }
    }

    int check = vg_blas_self_check();

    if (check == VG_EBLAS && source == FROM_US && can_exec) {
        char mk[3 * CORE_NAME_MAX + 4];
        snprintf(mk, sizeof mk, "2:%s:%s", m.lib, m.ours);
        int err = reexec(argv, NULL, mk);
        snprintf(note, sizeof note, "; fallback re-exec without it failed: %s", strerror(err));
    }

    if (msg && msglen > 0) {
        char ver[64], prov[320];
        library_version(ver, sizeof ver);
        switch (source) {
        case FROM_OPERATOR:
            snprintf(prov, sizeof prov, "operator's %s=%s%s", VG_BLAS_ENV_CORETYPE, env_core,
                     strcasecmp(env_core, core) ? ", not honoured by the library" : "");
            break;
        case FROM_US:
            snprintf(prov, sizeof prov, "chosen for %s by vaegan%s%s; library default was %s%s%s",
                     best && strcasecmp(best, m.ours) == 0 ? why : "this CPU",
                     strcasecmp(m.ours, core) ? ", asked for " : "", strcasecmp(m.ours, core) ? m.ours : "",
                     m.lib, assume_generic ? ", treated as generic because " VG_BLAS_ENV_ASSUME_GENERIC "=1" : "",
                     note);
            break;
        case FROM_FALLBACK:
            snprintf(prov, sizeof prov,
                     "library default; vaegan's choice %s failed the sgemm self-check and was dropped", m.ours);
            break;
        default:
            snprintf(prov, sizeof prov, "library default%s", note);
            break;
        }
        snprintf(msg, msglen, "%s: core %s (%s), %d threads, sgemm self-check %s", ver, core, prov,
                 vg_blas_threads(), check == 0 ? "ok" : check == VG_EBLAS ? "FAILED" : vg_strerror(check));
    }
    return check == VG_ENOMEM ? VG_ENOMEM : check ? VG_EBLAS : 0;
}

/* ---- the self-check -------------------------------------------------------- */

static float next_rand(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) * (2.0f / 16777216.0f) - 1.0f; /* [-1, 1) */
}

/* Leading dimension > cols, and odd. */
static int odd_ld(int cols) { return (cols + 2) | 1; }

/* One row-major C = alpha op(A) op(B) + beta C of size m x n x k. */
static int check_one(int ta, int tb, int m, int n, int k, uint32_t seed)
{
    const float alpha = 0.75f, beta = -0.5f;
    int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    int lda = odd_ld(ac), ldb = odd_ld(bc), ldc = odd_ld(n);
    size_t na = (size_t)ar * lda, nb = (size_t)br * ldb, nc = (size_t)m * ldc;
    float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b);
    float *c = malloc(nc * sizeof *c), *c0 = malloc(nc * sizeof *c0);
    int rc = 0;
    if (!a || !b || !c || !c0) {
        rc = VG_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < na; i++)
        a[i] = next_rand(&seed);
    for (size_t i = 0; i < nb; i++)
        b[i] = next_rand(&seed);
    for (size_t i = 0; i < nc; i++)
        c0[i] = c[i] = next_rand(&seed);

    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a,
                lda, b, ldb, beta, c, ldc);

    for (int i = 0; i < m && rc == 0; i++) {
        for (int j = 0; j < n; j++) {
            double s = 0.0, sa = 0.0;
            for (int p = 0; p < k; p++) {
                double x = ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                double y = tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                s += x * y;
                sa += fabs(x * y);
            }
            double c0ij = c0[(size_t)i * ldc + j];
            double ref = alpha * s + beta * c0ij;
            double bound = 1e-4 * (fabs(alpha) * sa + fabs(beta * c0ij)) + 1e-30;
            if (!(fabs((double)c[(size_t)i * ldc + j] - ref) <= bound)) { /* also catches NaN */
                rc = VG_EBLAS;
                break;
            }
        }
        if (memcmp(c + (size_t)i * ldc + n, c0 + (size_t)i * ldc + n, (size_t)(ldc - n) * sizeof *c) != 0)
            rc = VG_EBLAS; /* wrote outside the matrix */
    }
out:
    free(a);
    free(b);
    free(c);
    free(c0);
    return rc;
}

int vg_blas_self_check(void)
{
    static const struct { int ta, tb, m, n, k; } cases[] = {
        {0, 0, 61, 67, 53}, {0, 1, 61, 67, 53}, {1, 0, 61, 67, 53}, {1, 1, 61, 67, 53},
        {0, 1, 131, 257, 192}, {1, 0, 131, 257, 192},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = check_one(cases[i].ta, cases[i].tb, cases[i].m, cases[i].n, cases[i].k, 12345u + 977u * (uint32_t)i);
        if (rc)
            return rc;
    }
    return 0;
}
