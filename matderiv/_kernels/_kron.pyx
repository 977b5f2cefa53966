"""Kronecker builders: the dense and sparse forms of x^T (x) I and I (x) x^T.

Every derivative of f = W @ x or f = x @ W with respect to W is, in each of its
dense or vectorised layouts, one of three row patterns over a 2-D view of the
output with S*R rows (S samples of R rows each):

  row (s, i), k < K:   out[s*R + i, i*off_mult + k*stride] = x[s, i if value_per_row else k]

and zero elsewhere.  `contiguous` below means off_mult = K, stride = 1 (I (x) x^T);
otherwise off_mult = 1, stride = R (x^T (x) I).
"""
from cython.parallel cimport prange
from libc.string cimport memset

from ._types cimport MATDERIV_SERIAL_BELOW_BYTES, numeric, index_t


def scatter_dense(
    const numeric[:, ::1] x,   # IN  (S, p): one vector per sample
    numeric[:, ::1] out,       # OUT (S*R, C): written in full, each row once
    Py_ssize_t R,              # rows per sample
    Py_ssize_t K,              # entries per row
    Py_ssize_t off_mult,       # column of entry 0 in row i is i*off_mult
    Py_ssize_t stride,         # column step between entries
    bint value_per_row,        # value x[s, i] (True) or x[s, k] (False)
    bint zero_first,           # False when out is known to hold zeros already
    int n_threads,
):
    """Fill `out` with the row pattern in the module docstring."""
    cdef Py_ssize_t rows = out.shape[0], C = out.shape[1], p = x.shape[1]
    cdef Py_ssize_t r, s, i, k
    cdef numeric *o
    cdef const numeric *xs
    if rows == 0 or C == 0:
        return
    cdef numeric *o0 = &out[0, 0]
    cdef const numeric *x0 = &x[0, 0]
    cdef bint threaded = rows * C * <Py_ssize_t>sizeof(numeric) >= MATDERIV_SERIAL_BELOW_BYTES
    for r in prange(rows, schedule="static", nogil=True, num_threads=n_threads, use_threads_if=threaded):
        s = r // R
        i = r - s * R
        o = o0 + r * C
        xs = x0 + s * p
        if zero_first:
            memset(o, 0, C * sizeof(numeric))
        if value_per_row:
            for k in range(K):
                o[i * off_mult + k * stride] = xs[i]
        else:
            for k in range(K):
                o[i * off_mult + k * stride] = xs[k]


def sparse_rows(
    const numeric[:, ::1] x,   # IN  (S, K)
    numeric[::1] data,         # OUT (S*R*K,) values in row-major order
    index_t[::1] indices,      # OUT (S*R*K,) column of each value, ascending in each row
    index_t[::1] indptr,       # OUT (S*R + 1,) CSR row pointers, or empty to skip
    index_t[::1] row_of,       # OUT (S*R*K,) row of each value (COO), or empty to skip
    Py_ssize_t R,              # rows per sample
    bint contiguous,           # I (x) x^T (True) or x^T (x) I (False)
    int n_threads,
):
    """CSR/COO arrays of the S stacked R x (R*K) patterns: row s*R+i holds x[s, :].

    Every array, the pointers included, is written in the one parallel pass.
    """
    cdef Py_ssize_t S = x.shape[0], K = x.shape[1], rows = S * R, r, s, i, k, base
    cdef bint want_ptr = indptr.shape[0] > 0
    cdef bint want_rows = row_of.shape[0] > 0
    cdef Py_ssize_t off_mult = K if contiguous else 1
    cdef Py_ssize_t stride = 1 if contiguous else R
    cdef numeric *d0 = &data[0] if data.shape[0] > 0 else NULL
    cdef index_t *c0 = &indices[0] if indices.shape[0] > 0 else NULL
    cdef index_t *p0 = &indptr[0] if want_ptr else NULL
    cdef index_t *r0 = &row_of[0] if want_rows else NULL
    cdef const numeric *x0 = &x[0, 0] if x.shape[0] > 0 and K > 0 else NULL
    cdef bint threaded = rows * K * <Py_ssize_t>(sizeof(numeric) + sizeof(index_t)) >= MATDERIV_SERIAL_BELOW_BYTES
    if want_ptr:
        p0[rows] = <index_t>(rows * K)
    for r in prange(rows, schedule="static", nogil=True, num_threads=n_threads, use_threads_if=threaded):
        s = r // R
        i = r - s * R
        base = r * K
        if want_ptr:
            p0[r] = <index_t>base
        for k in range(K):
            d0[base + k] = x0[s * K + k]
            c0[base + k] = <index_t>(i * off_mult + k * stride)
        if want_rows:
            for k in range(K):
                r0[base + k] = <index_t>r


def sparse_cols(
    const numeric[:, ::1] x,   # IN  (S, K)
    numeric[::1] data,         # OUT (S*R*K,) values in column-major order
    index_t[::1] indices,      # OUT (S*R*K,) row of each value, ascending in each column
    index_t[::1] indptr,       # OUT (R*K + 1,) CSC column pointers
    Py_ssize_t R,              # rows per sample
    bint contiguous,           # I (x) x^T (True) or x^T (x) I (False)
    int n_threads,
):
    """CSC arrays of the same matrix as sparse_rows: column c holds one entry per sample.

    Column c = i*K + k (contiguous) or c = k*R + i (strided) holds x[s, k] at row s*R + i.
    """
    cdef Py_ssize_t S = x.shape[0], K = x.shape[1], o, q, s, c
    cdef Py_ssize_t outer = R if contiguous else K
    cdef Py_ssize_t inner = K if contiguous else R
    # (i, k) = (o, q) when contiguous, (q, o) when strided, without a branch in the loop
    cdef Py_ssize_t i_o = contiguous, i_q = 1 - contiguous
    cdef numeric *d0 = &data[0] if data.shape[0] > 0 else NULL
    cdef index_t *r0 = &indices[0] if indices.shape[0] > 0 else NULL
    cdef index_t *p0 = &indptr[0]
    cdef const numeric *x0 = &x[0, 0] if S > 0 and K > 0 else NULL
    cdef bint threaded = R * K * S * <Py_ssize_t>(sizeof(numeric) + sizeof(index_t)) >= MATDERIV_SERIAL_BELOW_BYTES
    p0[R * K] = <index_t>(R * K * S)
    for o in prange(outer, schedule="static", nogil=True, num_threads=n_threads, use_threads_if=threaded):
        for q in range(inner):
            p0[o * inner + q] = <index_t>((o * inner + q) * S)
        for s in range(S):
            c = o * inner * S + s
            for q in range(inner):
                d0[c + q * S] = x0[s * K + o * i_q + q * i_o]
                r0[c + q * S] = <index_t>(s * R + o * i_o + q * i_q)
