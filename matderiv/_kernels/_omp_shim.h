/* OpenMP shim: the kernels call omp_get_max_threads() and omp_get_thread_limit()
   whether or not the compiler had OpenMP; without it every prange runs serially. */
#ifndef MATDERIV_OMP_SHIM_H
#define MATDERIV_OMP_SHIM_H
#ifdef _OPENMP
#include <omp.h>
#define MATDERIV_HAVE_OPENMP 1
#else
#define MATDERIV_HAVE_OPENMP 0
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_thread_limit(void) { return 1; }
#endif
#endif
