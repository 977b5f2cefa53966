"""What the OpenMP runtime says about threads (1 when built serially)."""
from ._types cimport MATDERIV_HAVE_OPENMP, omp_get_max_threads, omp_get_thread_limit


def have_openmp():
    """True when the kernels were compiled with OpenMP."""
    return bool(MATDERIV_HAVE_OPENMP)


def max_threads():
    """omp_get_max_threads(): OMP_NUM_THREADS if set, else the available cores."""
    return omp_get_max_threads()


def thread_limit():
    """omp_get_thread_limit(): OMP_THREAD_LIMIT if set, else the runtime's own bound."""
    return omp_get_thread_limit()
