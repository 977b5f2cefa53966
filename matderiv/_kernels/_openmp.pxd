# The decision every kernel makes before its loop (a team, or the calling thread) and the
# counters of it, owned by _openmp and cimported by the other kernel modules (Cython
# shares cdef functions between extension modules through their .pxd).

cdef enum Kernel:
    # one counter per kernel; _openmp.KERNELS names them in this order
    OUTER
    ROW_DOTS
    GRAM_SQ
    OUTER_NORMS
    CLIP_ROWS
    KRON_DENSE
    KRON_CSR
    CONV_UNFOLD
    GROUP_SUMS
    TOEPLITZ
    N_KERNELS

cdef bint use_team(Kernel kernel, Py_ssize_t nbytes, int n_threads) noexcept
