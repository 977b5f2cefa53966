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

MATDERIV_ROWSUMS(float, f32)
MATDERIV_ROWSUMS(double, f64)
#endif
