/*
 * vecmath.c — the element-wise kernels of the likelihoods (logistic and
 * multinomial), in a file of their own so they can be compiled for glibc's
 * vector math library (libmvec): their exp and log1p run 16 (AVX-512), 8
 * (AVX2) or 4 (SSE) lanes at a time, the width chosen when the program
 * loads (target_clones).  libmvec is declared to the compiler by hand below
 * (glibc's <math.h> declares it only under -ffast-math), and the loops need
 * -ffinite-math-only -fno-trapping-math (model/CMakeLists.txt, this file
 * only) to be vectorised.
 *
 * Invariants: the same results for any thread count (one row is one
 * thread's sequential loop); libmvec's results are within 4 ulp of the
 * correctly rounded ones, and may differ from the scalar libm's and
 * between vector widths, so runs on machines of different widths agree to
 * rounding, not bit for bit (as OpenBLAS' kernels already do).  Logits are
 * assumed finite (-ffinite-math-only): a non-finite logit comes from a step
 * that has already diverged, and its row's results here are unspecified.
 */
#include "model/internal.h"

#if defined __GNUC__ && !defined __clang__ && defined __x86_64__
#ifdef VG_DOUBLE
double exp(double) __attribute__((simd("notinbranch")));
double log1p(double) __attribute__((simd("notinbranch")));
#else
float expf(float) __attribute__((simd("notinbranch")));
float log1pf(float) __attribute__((simd("notinbranch")));
#endif
#define VG_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VG_CLONES
#endif

VG_CLONES double vg_logistic_row_(const vg_real *l, vg_real *dl, int n, vg_real w)
{
    vg_real sp = 0;
#pragma omp simd reduction(+ : sp)
    for (int i = 0; i < n; i++) {
        /* e = exp(-|l|) serves both: softplus(l) = max(l, 0) + log1p(e),
         * sigmoid(l) = 1 / (1 + e) for l >= 0 and e / (1 + e) below */
        const vg_real x = l[i], e = R_EXP(-(x > 0 ? x : -x)), r = 1 / (1 + e);
        sp += (x > 0 ? x : 0) + R_LOG1P(e);
        dl[i] = (x >= 0 ? r : e * r) * w;
    }
    return sp;
}

VG_CLONES double vg_softmax_row_(const vg_real *l, vg_real *dl, int n, vg_real *max)
{
    vg_real mx = l[0], sum = 0;
#pragma omp simd reduction(max : mx)
    for (int i = 1; i < n; i++)
        mx = l[i] > mx ? l[i] : mx;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < n; i++) {
        dl[i] = R_EXP(l[i] - mx);
        sum += dl[i];
    }
    *max = mx;
    return sum;
}
