# Fused types shared by every kernel family.
from libc.stdint cimport int32_t, int64_t

ctypedef fused numeric:
    float
    double
    float complex
    double complex

ctypedef fused index_t:
    int32_t
    int64_t

cdef extern from "_omp_shim.h":
    int MATDERIV_HAVE_OPENMP
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_limit() noexcept nogil
