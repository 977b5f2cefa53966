"""The block-Toeplitz matrix of a convolution's input Jacobian, sum_k W_k (x) S_k, row by row.

Rows are (a, i, j): a channel and a position of the row space (nh, nw); columns (b, h, w):
a channel and a position of the column space (mh, mw). Each spatial axis has a list of
(column position, kernel offset) pairs per row position, sorted by column position
(ptr/idx/koff, as CSR); the entry at row (a, i, j), column (b, idx_h[e1], idx_w[e2]) is
Wr[a, b, koff_h[e1], koff_w[e2]]. With Wr = W (O, C, K1, K2) and the pairs of the output
positions this is dy/dx; with Wr = W transposed to (C, O, K1, K2) and the pairs of the
input positions it is its transpose (the CSC form). Order "C" numbers rows and columns
row-major ((a nh + i) nw + j); order "F" column-major (a + R (i + nh j)), as numpy's
ravel(order="F") of the whole arrays. Padding positions have no pair: they are absent.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.string cimport memset

from ._openmp cimport TOEPLITZ, use_team
from ._types cimport index_t


cdef inline Py_ssize_t _channel(Py_ssize_t r, Py_ssize_t R, Py_ssize_t T, bint f_order) noexcept nogil:
    """The channel a of row r (T = nh nw positions per channel)."""
    return r % R if f_order else r // T


cdef inline Py_ssize_t _position(Py_ssize_t r, Py_ssize_t R, Py_ssize_t nh, Py_ssize_t nw, bint f_order) noexcept nogil:
    """The position of row r, row-major: i nw + j."""
    cdef Py_ssize_t q
    if f_order:
        q = r // R  # i + nh j
        return (q % nh) * nw + q // nh
    return r % (nh * nw)


cdef inline Py_ssize_t _put(
    Py_ssize_t col, floating val, floating *data, index_t *indices, floating *dense, Py_ssize_t k
) noexcept nogil:
    """Entry `col` of the row: into the dense row, or at position k of data/indices."""
    if dense != NULL:
        dense[col] = val
        return k
    data[k] = val
    indices[k] = <index_t>col
    return k + 1


cdef inline Py_ssize_t _row(
    const floating *w, Py_ssize_t Q, Py_ssize_t K1, Py_ssize_t K2,
    const int64_t *idx_h, const int64_t *koff_h, Py_ssize_t h0, Py_ssize_t h1,
    const int64_t *idx_w, const int64_t *koff_w, Py_ssize_t w0, Py_ssize_t w1,
    Py_ssize_t mh, Py_ssize_t mw, bint f_order,
    floating *data, index_t *indices, floating *dense, Py_ssize_t k,
) noexcept nogil:
    """One row's entries in increasing column order; w points at Wr[a]. Returns the next k."""
    cdef Py_ssize_t b, e1, e2
    if f_order:  # column b + Q (h + mh w): w outermost, the channel innermost
        for e2 in range(w0, w1):
            for e1 in range(h0, h1):
                for b in range(Q):
                    k = _put(b + Q * (idx_h[e1] + mh * idx_w[e2]),
                             w[(b * K1 + koff_h[e1]) * K2 + koff_w[e2]], data, indices, dense, k)
    else:  # column (b mh + h) mw + w
        for b in range(Q):
            for e1 in range(h0, h1):
                for e2 in range(w0, w1):
                    k = _put((b * mh + idx_h[e1]) * mw + idx_w[e2],
                             w[(b * K1 + koff_h[e1]) * K2 + koff_w[e2]], data, indices, dense, k)
    return k


def toeplitz_fill(
    const floating[:, :, :, ::1] Wr,  # IN  (R, Q, K1, K2)
    const int64_t[::1] ptr_h,         # IN  (nh + 1,) pairs of row position i: ptr_h[i] .. ptr_h[i + 1]
    const int64_t[::1] idx_h,         # IN  column positions of the pairs (sorted within i)
    const int64_t[::1] koff_h,        # IN  kernel offsets of the pairs
    const int64_t[::1] ptr_w,         # IN  the same for the second spatial axis
    const int64_t[::1] idx_w,
    const int64_t[::1] koff_w,
    Py_ssize_t mh, Py_ssize_t mw,     # the column space's spatial shape
    bint f_order,                     # number rows and columns column-major (order "F")
    floating[::1] data,               # OUT (nnz,) CSR values, or empty for the dense form
    index_t[::1] indices,             # OUT (nnz,) CSR column indices, or empty
    index_t[::1] indptr,              # OUT (rows + 1,) CSR row pointers, or empty
    index_t[::1] row_of,              # OUT (nnz,) each entry's row (COO), or empty
    floating[:, ::1] dense,           # OUT (rows, Q mh mw) the dense form, or (0, 0)
    bint zeroed,                      # dense holds zeros already
    int n_threads,
):
    """Write the matrix once: the CSR arrays (indptr counted first, on the calling thread,
    then the rows in parallel), or with `dense` given the dense rows (each zeroed, then
    its entries written)."""
    cdef Py_ssize_t R = Wr.shape[0], Q = Wr.shape[1], K1 = Wr.shape[2], K2 = Wr.shape[3]
    cdef Py_ssize_t nh = ptr_h.shape[0] - 1, nw = ptr_w.shape[0] - 1
    cdef Py_ssize_t rows = R * nh * nw, cols = Q * mh * mw
    cdef Py_ssize_t r, a, i, j, t, k, e
    cdef bint is_dense = dense.shape[0] > 0
    cdef bint with_rows = row_of.shape[0] > 0
    if rows == 0 or cols == 0:
        if indptr.shape[0] > 0:
            memset(&indptr[0], 0, indptr.shape[0] * sizeof(index_t))
        return
    cdef Py_ssize_t nbytes = rows * cols * <Py_ssize_t>sizeof(floating)
    if not is_dense:
        k = 0
        indptr[0] = 0
        for r in range(rows):
            t = _position(r, R, nh, nw, f_order)
            i = t // nw
            j = t % nw
            k = k + Q * (ptr_h[i + 1] - ptr_h[i]) * (ptr_w[j + 1] - ptr_w[j])
            indptr[r + 1] = <index_t>k
        nbytes = k * <Py_ssize_t>(sizeof(floating) + sizeof(index_t))
    cdef bint threaded = use_team(TOEPLITZ, nbytes, n_threads)
    cdef const floating *w0 = &Wr[0, 0, 0, 0]  # not empty: R, Q, K1, K2 >= 1 here
    cdef const int64_t *ih = &idx_h[0] if idx_h.shape[0] > 0 else NULL
    cdef const int64_t *kh = &koff_h[0] if koff_h.shape[0] > 0 else NULL
    cdef const int64_t *iw = &idx_w[0] if idx_w.shape[0] > 0 else NULL
    cdef const int64_t *kw = &koff_w[0] if koff_w.shape[0] > 0 else NULL
    cdef floating *d0 = &data[0] if data.shape[0] > 0 else NULL
    cdef index_t *i0 = &indices[0] if indices.shape[0] > 0 else NULL
    cdef floating *o0 = &dense[0, 0] if is_dense else NULL
    cdef floating *o
    for r in prange(rows, schedule="static", nogil=True, num_threads=n_threads, use_threads_if=threaded):
        a = _channel(r, R, nh * nw, f_order)
        t = _position(r, R, nh, nw, f_order)
        i = t // nw
        j = t % nw
        o = NULL
        k = 0
        if is_dense:
            o = o0 + r * cols
            if not zeroed:
                memset(o, 0, cols * sizeof(floating))
        else:
            k = indptr[r]
        k = _row(w0 + a * Q * K1 * K2, Q, K1, K2,
                 ih, kh, ptr_h[i], ptr_h[i + 1],
                 iw, kw, ptr_w[j], ptr_w[j + 1],
                 mh, mw, f_order, d0, i0, o, k)
        if with_rows:
            for e in range(indptr[r], k):
                row_of[e] = <index_t>r

