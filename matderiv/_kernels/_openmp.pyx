"""What the OpenMP runtime says about threads (1 when built serially)."""
from ._types cimport MATDERIV_HAVE_OPENMP, omp_get_max_threads


def have_openmp():
    """True when the kernels were compiled with OpenMP."""
    return bool(MATDERIV_HAVE_OPENMP)


def max_threads():
    """omp_get_max_threads(): OMP_NUM_THREADS if set, else the available cores."""
    return omp_get_max_threads()
