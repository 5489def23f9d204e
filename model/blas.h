/*
 * blas.h — choosing, reporting and verifying OpenBLAS's kernels at start-up.
 *
 * Why: Debian's OpenBLAS 0.3.21 is a DYNAMIC_ARCH build that picks its
 * kernels ("core") once, when the library is loaded.  On the Sapphire Rapids
 * Xeons we deploy on (AVX-512) it does not know the CPU and falls back to the
 * generic "Prescott" kernels, 4-7x slower (15-50 GFLOP/s instead of ~148 on
 * one thread).  The environment variable OPENBLAS_CORETYPE overrides the
 * choice, but only if it is set before the process starts: setenv() in main()
 * is too late.  So every binary of ours that computes calls vg_blas_setup()
 * first thing in main(); it may re-execute the process with the variable set.
 * (Measured with Debian's build: SkylakeX kernels forced that way give the
 * same results as a double-precision reference.  On some machines the
 * library picks a good core by itself — SkylakeX on some Xeons, Cooperlake
 * on AMD EPYC — and then no re-exec happens.)
 *
 * Usage:
 *
 *     int main(int argc, char **argv)
 *     {
 *         char msg[256];
 *         int rc = vg_blas_setup(argc, argv, msg, sizeof msg);
 *         log("%s", msg);                      // always worth logging
 *         if (rc < 0) return 1;                // VG_EBLAS: do not compute
 *         ...
 *
 * Precedence, highest first:
 *   1. The operator: OPENBLAS_CORETYPE set (non-empty) in the environment we
 *      were started with.  We never override it and never re-exec; if its
 *      kernels fail the self-check, vg_blas_setup() returns VG_EBLAS.
 *   2. vaegan: if the library loaded a generic core (rule below) and this CPU
 *      has a better one, we re-exec once with OPENBLAS_CORETYPE set to it:
 *        AVX-512 F+BW+DQ+VL              -> "SkylakeX"
 *        else AVX2+FMA                   -> "Haswell"
 *        else                            -> keep the library's choice.
 *      If our choice fails the self-check, we re-exec once more without it
 *      (the library's own choice) and say so in the report.
 *   3. The library's own choice, used when it is not generic, when the CPU
 *      offers nothing better, or after our choice failed.
 *
 * "Generic" rule: the library's core counts as generic iff its name
 * (openblas_get_corename(), compared case-insensitively) is NOT one of the
 * cores that have AVX2/AVX-512 sgemm kernels in 0.3.21: Haswell, Zen,
 * SkylakeX, Cooperlake, SapphireRapids.  So Prescott, Katmai, Core2, Penryn,
 * Dunnington, Nehalem, Atom, Nano, Opteron*, Barcelona, Bobcat, Sandybridge,
 * Bulldozer, Piledriver, Steamroller, Excavator and any unknown name are
 * generic.  A generic core is only replaced when the CPU supports at least
 * AVX2+FMA (as reported by __builtin_cpu_supports, which also checks that the
 * OS enabled the AVX/AVX-512 register state).  A non-generic choice (e.g. the
 * library picking Haswell on an AVX-512 CPU) is left alone.
 *
 * The re-exec: execv("/proc/self/exe", argv) with the same argv and the same
 * environment plus OPENBLAS_CORETYPE=<ours> and the marker
 *     VAEGAN_BLAS_REEXEC=<stage>:<library's core>:<our core>
 * stage 1 = running on our choice, stage 2 = our choice failed the
 * self-check and was removed again.  The marker tells the new process what
 * happened (for the report) and prevents loops: with a valid marker present we
 * never re-exec again, except once from stage 1 to stage 2.  A stage-1 marker
 * is only believed while OPENBLAS_CORETYPE still equals <our core>; otherwise
 * the variable is treated as the operator's.  Both variables stay in the
 * environment, so child processes of ours inherit the decision instead of
 * re-executing themselves.  Every other variable (OPENBLAS_NUM_THREADS,
 * OPENBLAS_L2_SIZE, ...) passes through untouched.  stdio buffers are flushed
 * before execv.  If execv fails the process carries on with the library's
 * choice (the environment is restored and the report says so).
 *
 * Test hook: VAEGAN_BLAS_ASSUME_GENERIC=1 makes vg_blas_setup() treat the
 * library's choice as generic (only when the operator did not set
 * OPENBLAS_CORETYPE), so the re-exec path can be exercised on machines where
 * the library picks a good core.  The report mentions it when it is active.
 *
 * Threads: vg_blas_setup() must run before the program starts threads of its
 * own (it may call setenv()/execv()).  OpenBLAS's own pool is fine.
 */
#ifndef VG_BLAS_H
#define VG_BLAS_H

#include <stddef.h>

/* The environment variables vg_blas_setup() reads or writes. */
#define VG_BLAS_ENV_CORETYPE "OPENBLAS_CORETYPE"
#define VG_BLAS_ENV_MARKER "VAEGAN_BLAS_REEXEC"
#define VG_BLAS_ENV_ASSUME_GENERIC "VAEGAN_BLAS_ASSUME_GENERIC"

/* Call first thing in main(), before any other BLAS use and before creating
 * threads.  argv must be main()'s (NULL-terminated); with argc < 1 or argv ==
 * NULL no re-exec is attempted.  May not return to the caller's code in this
 * process image (execv); the re-executed process calls it again and
 * continues.  Writes a one-line report into msg (if msg && msglen > 0,
 * always NUL-terminated, truncated to msglen), e.g.
 *   "OpenBLAS 0.3.21: core SkylakeX (chosen for AVX-512 by vaegan; library
 *    default was Prescott), 2 threads, sgemm self-check ok"
 * Prints nothing.  Returns 0, VG_EBLAS if the kernels in use (the
 * operator's or the library's, or ours when re-executing without them
 * failed) fail the sgemm self-check, or VG_ENOMEM. */
int vg_blas_setup(int argc, char **argv, char *msg, size_t msglen);

/* openblas_set_num_threads(n); n >= 1 (asserted). */
void vg_blas_set_threads(int n);

/* Number of threads OpenBLAS will use. */
int vg_blas_threads(void);
/* Threads of the model's own element-wise loops (OpenMP) for the calling
 * thread only: each thread that trains or scores sets its own. */
void vg_omp_set_threads(int n);

/* Name of the core the library is running on (openblas_get_corename()),
 * e.g. "SkylakeX".  Static storage owned by the library; never NULL. */
const char *vg_blas_core(void);

/* Runs row-major cblas_sgemm with odd leading dimensions on a 61x67x53
 * problem in all four transposition cases (small enough that the library
 * runs it on one thread) and on a 131x257x192 one in the (N,T) and (T,N)
 * cases (large enough for its threaded path), and compares the results,
 * element by element, with a plain-loop double-precision reference:
 * |c - ref| <= 1e-4 * (|alpha| sum_k |a_ik b_kj| + |beta c0_ij|) + 1e-30.
 * Also checks that the padding columns of C are untouched.  ~10 ms.
 * Returns 0, VG_EBLAS on a mismatch (or NaN), VG_ENOMEM. */
int vg_blas_self_check(void);

#endif
