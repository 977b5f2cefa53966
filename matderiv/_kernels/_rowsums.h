/* Sums over one row of float or double entries, accumulated in double, for rows that may
   start at any byte address (numpy arrays read from a buffer at an offset are not aligned to
   their itemsize): every load goes through memcpy, which compilers turn into one unaligned
   load, defined for any address.  The loops are vectorized (omp simd reductions, which
   allow the reassociation; ignored without OpenMP), and with GCC on x86-64 Linux they are
   also compiled for AVX2 and AVX-512, the best picked once at load time (target_clones), so
   that float32 rows convert to double 8 or 16 entries at a time. */
#ifndef MATDERIV_ROWSUMS_H
#define MATDERIV_ROWSUMS_H
#include <stddef.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MATDERIV_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MATDERIV_CLONES
#endif

#define MATDERIV_ROWSUMS(T, SUFFIX)                                                        \
    static inline double md_load_##SUFFIX(const T *row, ptrdiff_t k) {                   \
        T x;                                                                              \
        memcpy(&x, (const char *)row + k * (ptrdiff_t)sizeof(T), sizeof(T));              \
        return (double)x;                                                                 \
    }                                                                                     \
    MATDERIV_CLONES static double md_sumsq_##SUFFIX(const T *a, ptrdiff_t K) {            \
        double s = 0;                                                                     \
        _Pragma("omp simd reduction(+:s)")                                                \
        for (ptrdiff_t k = 0; k < K; ++k) {                                               \
            double x = md_load_##SUFFIX(a, k);                                            \
            s += x * x;                                                                   \
        }                                                                                 \
        return s;                                                                         \
    }                                                                                     \
    MATDERIV_CLONES static double md_dot_##SUFFIX(const T *a, const T *b, ptrdiff_t K) {  \
        double s = 0;                                                                     \
        _Pragma("omp simd reduction(+:s)")                                                \
        for (ptrdiff_t k = 0; k < K; ++k)                                                 \
            s += md_load_##SUFFIX(a, k) * md_load_##SUFFIX(b, k);                         \
        return s;                                                                         \
    }

/* One sample's squared gradient norm by the Gram identity, sum_{t,u} <a_t, a_u> <b_t, b_u>
   over its T rows a_t (P entries) and b_t (Q entries): the diagonal plus twice the upper
   triangle, in double.  One call (one dispatch to the best clone) per sample, and the
   upper triangle four pairs (t, u..u+3) at a time: each entry of row t is loaded once for
   four products, and the four sums reduce together. */
#define MATDERIV_GRAM(T, SUFFIX)                                                           \
    static inline void md_dots4_##SUFFIX(const T *x, const T *y, ptrdiff_t stride,         \
                                         ptrdiff_t K, double *s) {                         \
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;                                             \
        const T *y1 = y + stride, *y2 = y + 2 * stride, *y3 = y + 3 * stride;              \
        _Pragma("omp simd reduction(+:s0, s1, s2, s3)")                                    \
        for (ptrdiff_t k = 0; k < K; ++k) {                                                \
            double v = md_load_##SUFFIX(x, k);                                             \
            s0 += v * md_load_##SUFFIX(y, k);                                              \
            s1 += v * md_load_##SUFFIX(y1, k);                                             \
            s2 += v * md_load_##SUFFIX(y2, k);                                             \
            s3 += v * md_load_##SUFFIX(y3, k);                                             \
        }                                                                                 \
        s[0] = s0; s[1] = s1; s[2] = s2; s[3] = s3;                                        \
    }                                                                                     \
    static inline double md_dot1_##SUFFIX(const T *x, const T *y, ptrdiff_t K) {          \
        double s = 0;                                                                     \
        _Pragma("omp simd reduction(+:s)")                                                \
        for (ptrdiff_t k = 0; k < K; ++k)                                                 \
            s += md_load_##SUFFIX(x, k) * md_load_##SUFFIX(y, k);                         \
        return s;                                                                         \
    }                                                                                     \
    MATDERIV_CLONES static double md_gram_sq_##SUFFIX(const T *a, const T *b, ptrdiff_t nT, \
                                                     ptrdiff_t P, ptrdiff_t Q) {          \
        double diag = 0, upper = 0, ga[4], gb[4];                                          \
        for (ptrdiff_t t = 0; t < nT; ++t) {                                               \
            const T *at = a + t * P, *bt = b + t * Q;                                      \
            diag += md_dot1_##SUFFIX(at, at, P) * md_dot1_##SUFFIX(bt, bt, Q);             \
            ptrdiff_t u = t + 1;                                                           \
            for (; u + 4 <= nT; u += 4) {                                                  \
                md_dots4_##SUFFIX(at, a + u * P, P, P, ga);                                \
                md_dots4_##SUFFIX(bt, b + u * Q, Q, Q, gb);                                \
                upper += (ga[0] * gb[0] + ga[1] * gb[1]) + (ga[2] * gb[2] + ga[3] * gb[3]); \
            }                                                                             \
            for (; u < nT; ++u)                                                            \
                upper += md_dot1_##SUFFIX(at, a + u * P, P) * md_dot1_##SUFFIX(bt, b + u * Q, Q); \
        }                                                                                 \
        return diag + 2 * upper;                                                           \
    }

MATDERIV_ROWSUMS(float, f32)
MATDERIV_ROWSUMS(double, f64)
MATDERIV_GRAM(float, f32)
MATDERIV_GRAM(double, f64)
#endif
