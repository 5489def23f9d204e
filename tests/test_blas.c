/*
 * test_blas.c — vg_blas_setup(): precedence, re-exec and the sgemm self-check.
 *
 * The re-exec can only be observed from outside the process, so this binary
 * is also its own probe: run as `test_blas --blas-probe ARGS...` it prints a
 * "start" line, calls vg_blas_setup() and prints rc, core, the marker, its
 * argv and OPENBLAS_L2_SIZE.  Each re-exec runs main() again, so the number of
 * "start" lines is 1 + the number of re-execs (vg_blas_setup() must flush
 * stdio for them to survive execv).  The tests fork+exec the probe with a
 * controlled environment (the parent's, minus OPENBLAS_CORETYPE, our
 * variables and Criterion's BXFI_* ones, plus what the case sets).
 *
 * Fault injection: this file defines cblas_sgemm, which the linker prefers
 * over the library's for vgmodel's calls; it forwards to the real one
 * (dlsym RTLD_NEXT) and, when asked, adds 1 to C[0], so the self-check's
 * failure paths run for real:
 *   VG_TEST_CORRUPT_SGEMM=stage1  corrupt while running on vaegan's choice
 *                                 (marker stage 1) — must fall back;
 *   VG_TEST_CORRUPT_SGEMM=always  corrupt always — must return VG_EBLAS.
 *
 * The session environment sets OPENBLAS_CORETYPE=Haswell and
 * OPENBLAS_L2_SIZE=512; this process keeps them.  The library here picks
 * Cooperlake by itself (not generic), so the re-exec path is forced with
 * VAEGAN_BLAS_ASSUME_GENERIC=1.  Re-exec cases need a CPU with AVX2+FMA.
 */
#define _GNU_SOURCE /* RTLD_NEXT */
#include <cblas.h>
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model/blas.h"
#include "model/common.h"

extern char **environ;

/* ---- fault injection --------------------------------------------------------- */

static int corrupt_next; /* in-process switch for the self-check test */

typedef void (*sgemm_fn)(OPENBLAS_CONST enum CBLAS_ORDER, OPENBLAS_CONST enum CBLAS_TRANSPOSE,
                         OPENBLAS_CONST enum CBLAS_TRANSPOSE, OPENBLAS_CONST blasint, OPENBLAS_CONST blasint,
                         OPENBLAS_CONST blasint, OPENBLAS_CONST float, OPENBLAS_CONST float *, OPENBLAS_CONST blasint,
                         OPENBLAS_CONST float *, OPENBLAS_CONST blasint, OPENBLAS_CONST float, float *,
                         OPENBLAS_CONST blasint);

static int should_corrupt(void)
{
    const char *mode = getenv("VG_TEST_CORRUPT_SGEMM");
    const char *mk = getenv(VG_BLAS_ENV_MARKER);
    if (corrupt_next)
        return 1;
    if (!mode)
        return 0;
    if (strcmp(mode, "always") == 0)
        return 1;
    return strcmp(mode, "stage1") == 0 && mk && strncmp(mk, "1:", 2) == 0;
}

void cblas_sgemm(OPENBLAS_CONST enum CBLAS_ORDER Order, OPENBLAS_CONST enum CBLAS_TRANSPOSE TransA,
                 OPENBLAS_CONST enum CBLAS_TRANSPOSE TransB, OPENBLAS_CONST blasint M, OPENBLAS_CONST blasint N,
                 OPENBLAS_CONST blasint K, OPENBLAS_CONST float alpha, OPENBLAS_CONST float *A,
                 OPENBLAS_CONST blasint lda, OPENBLAS_CONST float *B, OPENBLAS_CONST blasint ldb,
                 OPENBLAS_CONST float beta, float *C, OPENBLAS_CONST blasint ldc)
{
    static sgemm_fn real;
    if (!real) {
        void *sym = dlsym(RTLD_NEXT, "cblas_sgemm");
        vg_assert(sym);
        memcpy(&real, &sym, sizeof real);
    }
    real(Order, TransA, TransB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    if (M > 0 && N > 0 && should_corrupt())
        C[0] += 1.0f;
}

/* ---- probe mode ---------------------------------------------------------------- */

static int probe_main(int argc, char **argv)
{
    printf("start\n");
    char msg[512];
    int rc = vg_blas_setup(argc, argv, msg, sizeof msg);
    const char *mk = getenv(VG_BLAS_ENV_MARKER);
    const char *l2 = getenv("OPENBLAS_L2_SIZE");
    printf("rc=%d\ncore=%s\nmarker=%s\nl2=%s\nargv=", rc, vg_blas_core(), mk ? mk : "-", l2 ? l2 : "-");
    for (int i = 1; i < argc; i++)
        printf("%s%s", i > 1 ? " " : "", argv[i]);
    printf("\nmsg=%s\n", msg);
    return 0;
}

int main(int argc, char *argv[])
{
    if (argc >= 2 && strcmp(argv[1], "--blas-probe") == 0)
        return probe_main(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "--blas-must-not-run") == 0) {
        fprintf(stderr, "test_blas: vg_blas_setup re-executed when it must not\n");
        return 99;
    }
    struct criterion_test_set *tests = criterion_initialize();
    int result = 0;
    if (criterion_handle_args(argc, argv, true))
        result = !criterion_run_all_tests(tests);
    criterion_finalize(tests);
    return result;
}

/* ---- running the probe ----------------------------------------------------------- */

typedef struct probe {
    int status; /* raw waitpid status */
    int starts; /* number of "start" lines */
    int rc;
    char core[64], marker[128], l2[64], args[256], msg[512];
} probe_t;

static void field(const char *out, const char *key, char *dst, size_t n)
{
    size_t kl = strlen(key);
    dst[0] = '\0';
    for (const char *p = out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, key, kl) == 0) {
            const char *e = strchr(p + kl, '\n');
            size_t len = e ? (size_t)(e - (p + kl)) : strlen(p + kl);
            snprintf(dst, n, "%.*s", (int)len, p + kl);
            return;
        }
    }
}

static int dropped_from_env(const char *e)
{
    static const char *const drop[] = {VG_BLAS_ENV_CORETYPE "=", VG_BLAS_ENV_MARKER "=",
                                       VG_BLAS_ENV_ASSUME_GENERIC "=", "VG_TEST_CORRUPT_SGEMM=", "BXFI_"};
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
        if (strncmp(e, drop[i], strlen(drop[i])) == 0)
            return 1;
    return 0;
}

/* Runs `<this binary> --blas-probe alpha beta` with the parent's environment
 * filtered as described at the top, plus the NULL-terminated `set` list. */
static void run_probe(probe_t *pr, const char *const *set)
{
    char *envp[512];
    size_t ne = 0;
    for (char **e = environ; *e; e++)
        if (!dropped_from_env(*e) && ne < 480)
            envp[ne++] = *e;
    for (; set && *set; set++)
        envp[ne++] = (char *)*set;
    envp[ne] = NULL;

    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    cr_assert(sl > 0, "readlink: %s", strerror(errno));
    self[sl] = '\0';
    char *args[] = {self, "--blas-probe", "alpha", "beta", NULL};

    int fd[2];
    cr_assert_eq(pipe(fd), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execve(self, args, envp);
        _exit(127);
    }
    close(fd[1]);
    static char out[16384];
    size_t len = 0;
    ssize_t r;
    while ((r = read(fd[0], out + len, sizeof out - 1 - len)) > 0 || (r < 0 && errno == EINTR))
        if (r > 0)
            len += (size_t)r;
    out[len] = '\0';
    close(fd[0]);
    cr_assert_eq(waitpid(pid, &pr->status, 0), pid);
    cr_assert(WIFEXITED(pr->status) && WEXITSTATUS(pr->status) == 0, "probe died (status %d), output:\n%s",
              pr->status, out);

    pr->starts = 0;
    for (const char *p = out; (p = strstr(p, "start\n")) != NULL; p += 6)
        pr->starts++;
    char rc[32];
    field(out, "rc=", rc, sizeof rc);
    cr_assert(rc[0], "no rc line in probe output:\n%s", out);
    pr->rc = atoi(rc);
    field(out, "core=", pr->core, sizeof pr->core);
    field(out, "marker=", pr->marker, sizeof pr->marker);
    field(out, "l2=", pr->l2, sizeof pr->l2);
    field(out, "argv=", pr->args, sizeof pr->args);
    field(out, "msg=", pr->msg, sizeof pr->msg);
}

/* The core vg_blas_setup picks for this CPU (same rule as model/blas.c), or
 * NULL without AVX2+FMA. */
static const char *expected_best(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "Haswell";
    return NULL;
}

static int is_avx2_core(const char *c)
{
    return !strcasecmp(c, "Haswell") || !strcasecmp(c, "Zen") || !strcasecmp(c, "SkylakeX") ||
           !strcasecmp(c, "Cooperlake") || !strcasecmp(c, "SapphireRapids");
}

static const char *need_best(void)
{
    const char *best = expected_best();
    if (!best)
        cr_skip_test("CPU without AVX2+FMA: nothing to re-exec for");
    return best;
}

/* The library's own choice: the probe with nothing set and no hook. */
static void library_default(probe_t *pr)
{
    run_probe(pr, NULL);
    cr_assert_eq(pr->rc, 0, "%s", pr->msg);
}

/* ---- in-process tests ---------------------------------------------------------- */

Test(blas, self_check_passes)
{
    cr_assert_eq(vg_blas_self_check(), 0);
}

Test(blas, self_check_detects_a_wrong_element)
{
    corrupt_next = 1;
    int rc = vg_blas_self_check();
    corrupt_next = 0;
    cr_assert_eq(rc, VG_EBLAS);
    cr_assert_eq(vg_blas_self_check(), 0);
}

Test(blas, threads_can_be_set)
{
    vg_blas_set_threads(1);
    cr_assert_eq(vg_blas_threads(), 1);
    vg_blas_set_threads(2);
    cr_assert_eq(vg_blas_threads(), 2);
}

/* The variable is already set in this environment (the library loaded its
 * core); setting it explicitly keeps the test independent of that.  Even
 * with the hook on, the operator's variable wins: no re-exec (a re-exec would
 * run `--blas-must-not-run` in place of this Criterion worker and fail the
 * test), report names the operator. */
Test(blas, operator_setting_wins_in_process)
{
    const char *cur = getenv(VG_BLAS_ENV_CORETYPE);
    char want[64];
    snprintf(want, sizeof want, "%s", cur && *cur ? cur : "Haswell");
    cr_assert_eq(setenv(VG_BLAS_ENV_CORETYPE, want, 1), 0);
    unsetenv(VG_BLAS_ENV_MARKER);
    cr_assert_eq(setenv(VG_BLAS_ENV_ASSUME_GENERIC, "1", 1), 0);

    char self[] = "/proc/self/exe", flag[] = "--blas-must-not-run";
    char *argv[] = {self, flag, NULL};
    char msg[512];
    int rc = vg_blas_setup(2, argv, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s", msg);
    char expect[128];
    snprintf(expect, sizeof expect, "operator's OPENBLAS_CORETYPE=%s", want);
    cr_assert(strstr(msg, expect), "%s", msg);
    cr_assert(strstr(msg, vg_blas_core()), "%s", msg);
    cr_assert(strstr(msg, "OpenBLAS 0.3"), "%s", msg);
    cr_assert(strstr(msg, "sgemm self-check ok"), "%s", msg);
    cr_assert_null(getenv(VG_BLAS_ENV_MARKER));
    cr_assert_str_eq(getenv(VG_BLAS_ENV_CORETYPE), want);
}

Test(blas, message_is_truncated_and_terminated)
{
    char msg[16];
    memset(msg, 'x', sizeof msg);
    cr_assert_eq(setenv(VG_BLAS_ENV_CORETYPE, "Haswell", 1), 0); /* no re-exec */
    cr_assert_eq(vg_blas_setup(0, NULL, msg, sizeof msg), 0);
    cr_assert_eq(strlen(msg), sizeof msg - 1);
    cr_assert_eq(vg_blas_setup(0, NULL, NULL, 0), 0);
}

/* ---- probe tests ------------------------------------------------------------------ */

/* Nothing set: on an AVX2 CPU we end up on an AVX2-class core either way —
 * the library's choice if it is good (no re-exec), ours otherwise. */
Test(blas_probe, unset_ends_on_a_good_core)
{
    const char *best = need_best();
    probe_t pr;
    run_probe(&pr, NULL);
    cr_assert_eq(pr.rc, 0, "%s", pr.msg);
    cr_assert(is_avx2_core(pr.core), "core %s: %s", pr.core, pr.msg);
    if (pr.starts == 1) {
        cr_assert_str_eq(pr.marker, "-");
        cr_assert(strstr(pr.msg, "(library default)"), "%s", pr.msg);
    } else {
        cr_assert_eq(pr.starts, 2, "%s", pr.msg);
        cr_assert_str_eq(pr.core, best);
        cr_assert(strstr(pr.msg, "by vaegan"), "%s", pr.msg);
    }
}

/* The re-exec path: library choice treated as generic -> exactly one re-exec
 * onto our core, marker set, argv and the rest of the environment kept. */
Test(blas_probe, generic_core_reexecs_onto_best_core)
{
    const char *best = need_best();
    probe_t def, pr;
    library_default(&def);
    /* the session's OPENBLAS_L2_SIZE passes through; provide one if absent */
    const char *l2 = getenv("OPENBLAS_L2_SIZE");
    const char *set[] = {VG_BLAS_ENV_ASSUME_GENERIC "=1", l2 ? NULL : "OPENBLAS_L2_SIZE=512", NULL};
    run_probe(&pr, set);
    cr_assert_eq(pr.rc, 0, "%s", pr.msg);
    cr_assert_eq(pr.starts, 2, "expected exactly one re-exec: %s", pr.msg);
    cr_assert_str_eq(pr.core, best, "%s", pr.msg);
    char mk[128];
    snprintf(mk, sizeof mk, "1:%s:%s", def.core, best);
    cr_assert_str_eq(pr.marker, mk);
    cr_assert_str_eq(pr.args, "--blas-probe alpha beta");
    cr_assert_str_eq(pr.l2, l2 ? l2 : "512");
    char expect[160];
    snprintf(expect, sizeof expect, "core %s (chosen for %s by vaegan; library default was %s", best,
             strcmp(best, "SkylakeX") == 0 ? "AVX-512" : "AVX2+FMA", def.core);
    cr_assert(strstr(pr.msg, expect), "%s", pr.msg);
    cr_assert(strstr(pr.msg, VG_BLAS_ENV_ASSUME_GENERIC), "%s", pr.msg);
    cr_assert(strstr(pr.msg, "self-check ok"), "%s", pr.msg);
}

/* Operator's variable: never re-exec, even if its core is generic. */
Test(blas_probe, operator_prescott_is_kept)
{
    need_best();
    probe_t pr;
    const char *set[] = {VG_BLAS_ENV_CORETYPE "=Prescott", NULL};
    run_probe(&pr, set);
    cr_assert_eq(pr.rc, 0, "%s", pr.msg);
    cr_assert_eq(pr.starts, 1, "%s", pr.msg);
    cr_assert_str_eq(pr.core, "Prescott");
    cr_assert_str_eq(pr.marker, "-");
    cr_assert(strstr(pr.msg, "core Prescott (operator's OPENBLAS_CORETYPE=Prescott)"), "%s", pr.msg);

    const char *set2[] = {VG_BLAS_ENV_CORETYPE "=Prescott", VG_BLAS_ENV_ASSUME_GENERIC "=1", NULL};
    run_probe(&pr, set2);
    cr_assert_eq(pr.starts, 1, "%s", pr.msg);
    cr_assert_str_eq(pr.core, "Prescott");
}

/* A marker naming another core than the variable is not ours: the variable
 * is the operator's. */
Test(blas_probe, foreign_marker_does_not_claim_operator_setting)
{
    need_best();
    probe_t pr;
    const char *set[] = {VG_BLAS_ENV_CORETYPE "=Prescott", VG_BLAS_ENV_MARKER "=1:Prescott:SkylakeX", NULL};
    run_probe(&pr, set);
    cr_assert_eq(pr.starts, 1, "%s", pr.msg);
    cr_assert_str_eq(pr.core, "Prescott");
    cr_assert(strstr(pr.msg, "operator's"), "%s", pr.msg);
}

/* Loop guard: a stage-2 marker (our choice already failed) means no re-exec,
 * even with the library's choice treated as generic. */
Test(blas_probe, stage2_marker_prevents_reexec)
{
    need_best();
    probe_t pr;
    const char *set[] = {VG_BLAS_ENV_ASSUME_GENERIC "=1", VG_BLAS_ENV_MARKER "=2:Prescott:SkylakeX", NULL};
    run_probe(&pr, set);
    cr_assert_eq(pr.rc, 0, "%s", pr.msg);
    cr_assert_eq(pr.starts, 1, "%s", pr.msg);
    cr_assert(strstr(pr.msg, "vaegan's choice SkylakeX failed the sgemm self-check"), "%s", pr.msg);
}

/* Our choice computes wrong results: one more re-exec, without it. */
Test(blas_probe, failed_check_on_our_core_falls_back)
{
    const char *best = need_best();
    probe_t def, pr;
    library_default(&def);
    const char *set[] = {VG_BLAS_ENV_ASSUME_GENERIC "=1", "VG_TEST_CORRUPT_SGEMM=stage1", NULL};
    run_probe(&pr, set);
    cr_assert_eq(pr.rc, 0, "%s", pr.msg);
    cr_assert_eq(pr.starts, 3, "expected two re-execs: %s", pr.msg);
    cr_assert_str_eq(pr.core, def.core, "%s", pr.msg);
    char mk[128];
    snprintf(mk, sizeof mk, "2:%s:%s", def.core, best);
    cr_assert_str_eq(pr.marker, mk);
    cr_assert_str_eq(pr.args, "--blas-probe alpha beta");
    char expect[160];
    snprintf(expect, sizeof expect, "core %s (library default; vaegan's choice %s failed the sgemm self-check",
             def.core, best);
    cr_assert(strstr(pr.msg, expect), "%s", pr.msg);
}

/* Wrong results everywhere: our core, then the library's -> VG_EBLAS. */
Test(blas_probe, failed_check_everywhere_is_an_error)
{
    need_best();
    probe_t pr;
    const char *set[] = {VG_BLAS_ENV_ASSUME_GENERIC "=1", "VG_TEST_CORRUPT_SGEMM=always", NULL};
    run_probe(&pr, set);
    cr_assert_eq(pr.rc, VG_EBLAS, "%s", pr.msg);
    cr_assert_eq(pr.starts, 3, "%s", pr.msg);
    cr_assert(strstr(pr.msg, "sgemm self-check FAILED"), "%s", pr.msg);
}

/* Wrong results on the operator's core: no re-exec, VG_EBLAS. */
Test(blas_probe, failed_check_on_operator_core_is_an_error)
{
    probe_t pr;
    const char *set[] = {VG_BLAS_ENV_CORETYPE "=Haswell", "VG_TEST_CORRUPT_SGEMM=always", NULL};
    run_probe(&pr, set);
    cr_assert_eq(pr.rc, VG_EBLAS, "%s", pr.msg);
    cr_assert_eq(pr.starts, 1, "%s", pr.msg);
    cr_assert(strstr(pr.msg, "operator's OPENBLAS_CORETYPE=Haswell"), "%s", pr.msg);
}
