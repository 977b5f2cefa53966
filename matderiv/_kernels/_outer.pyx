"""Outer-product kernels: out[s] = outer(a[s], b[s]) for every sample s."""
from cython.parallel cimport prange

from ._openmp cimport OUTER, use_team
from ._types cimport numeric


def outer(
    const numeric[:, ::1] a,   # IN  (S, P)
    const numeric[:, ::1] b,   # IN  (S, Q)
    numeric[:, :, ::1] out,    # OUT (S, P, Q): out[s, i, j] = a[s, i] * b[s, j]
    int n_threads,
):
    """Per-sample outer products, each output element written once."""
    cdef Py_ssize_t S = a.shape[0], P = a.shape[1], Q = b.shape[1], r, s, j
    cdef numeric ai
    cdef numeric *o
    cdef const numeric *bs
    if S == 0 or P == 0 or Q == 0:
        return
    cdef numeric *o0 = &out[0, 0, 0]
    cdef const numeric *a0 = &a[0, 0]
    cdef const numeric *b0 = &b[0, 0]
    cdef bint threaded = use_team(OUTER, S * P * Q * <Py_ssize_t>sizeof(numeric), n_threads)
    for r in prange(S * P, schedule="static", nogil=True, num_threads=n_threads, use_threads_if=threaded):
        s = r // P
        ai = a0[r]
        bs = b0 + s * Q
        o = o0 + r * Q
        for j in range(Q):
            o[j] = ai * bs[j]
