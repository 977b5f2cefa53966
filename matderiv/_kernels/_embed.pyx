"""Sums of rows grouped by sorted keys, for embedding lookups (one-hot x): sample b's
gradient g_b = sum_t onehot(idx[b, t]) (x) G[b, t] has as its row v the sum of the rows
G[b, t] with idx[b, t] = v, so every result of matderiv.layers.embedding is made of such
group sums: their squared norms, the sums themselves, or their scatter into the table.

Segments [ptr[s], ptr[s + 1]) of the sorted positions are handled by one thread each
(samples, or runs of the table's rows split at key changes: no two threads write one
row).  Sums accumulate in float64 whatever the dtypes."""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t

from ._openmp cimport GROUP_SUMS, use_team
from ._types cimport index_t

cdef extern from "_rowsums.h" nogil:
    double md_sumsq_f32(const float *a, Py_ssize_t K)
    double md_sumsq_f64(const double *a, Py_ssize_t K)


cdef inline double _row_sumsq(const floating *row, Py_ssize_t d) noexcept nogil:
    """sum_j row[j]^2 in float64, vectorized (a group of one row: its squared norm)."""
    if floating is float:
        return md_sumsq_f32(row, d)
    else:
        return md_sumsq_f64(row, d)


ctypedef fused out_t:
    float
    double


cdef inline double _segment(
    const index_t *keys, const int64_t *order, Py_ssize_t lo, Py_ssize_t hi,
    const floating *rows, Py_ssize_t d, const double *scale,
    out_t *out, int64_t first, bint by_key, bint squares,
) noexcept nogil:
    """The groups of equal keys among sorted positions lo..hi: each group's sum of the
    rows order[p] (times scale[order[p]] where scale is not NULL), written to out (NULL:
    not written) at row first + k for the k-th group, or at row key when by_key; returns
    the sum of the groups' squared norms where `squares` (else 0)."""
    cdef Py_ssize_t p = lo, q, j, r, dest
    cdef double acc, f, total = 0
    cdef int64_t k = first
    while p < hi:
        q = p + 1
        while q < hi and keys[q] == keys[p]:
            q = q + 1
        dest = keys[p] if by_key else k
        if q == p + 1:  # a key seen once (the common case): its row itself, scaled
            f = 1.0 if scale == NULL else scale[order[p]]
            if squares:
                total = total + _row_sumsq(rows + order[p] * d, d) * f * f
            if out != NULL:
                for j in range(d):
                    out[dest * d + j] = <out_t>(<double>rows[order[p] * d + j] * f)
            k = k + 1
            p = q
            continue
        for j in range(d):
            acc = 0
            for r in range(p, q):
                if scale == NULL:
                    acc = acc + <double>rows[order[r] * d + j]
                else:
                    acc = acc + <double>rows[order[r] * d + j] * scale[order[r]]
            if out != NULL:
                out[dest * d + j] = <out_t>acc
            if squares:  # (a latency chain: only where the squares are wanted)
                total = total + acc * acc
        k = k + 1
        p = q
    return total


def group_sums(
    const index_t[::1] keys,      # IN  (N,) sorted within each segment
    const int64_t[::1] order,     # IN  (N,) the row of `rows` at each sorted position
    const int64_t[::1] ptr,       # IN  (S + 1,) segment s is positions ptr[s]..ptr[s + 1]
    const floating[:, ::1] rows,  # IN  (R, d)
    const double[::1] scale,      # IN  (R,) factors of the rows, or (0,) for none
    const int64_t[::1] gptr,      # IN  (S + 1,) segment s's k-th group goes to out[gptr[s] + k];
                                  #     (0,): to out[key] (keys distinct across segments)
    out_t[:, ::1] out,            # OUT (groups or table rows, d), or (0, d) for none
    double[::1] sq,               # OUT (S,) sum of squared group sums per segment, or (0,)
    int n_threads,
):
    """Group sums of rows over segments of sorted keys, on n_threads threads (one segment
    per thread at a time): written to out and/or their squared norms summed into sq."""
    cdef Py_ssize_t S = ptr.shape[0] - 1, d = rows.shape[1], s
    cdef double total
    if S <= 0:
        return
    cdef const index_t *k0 = &keys[0] if keys.shape[0] else NULL
    cdef const int64_t *o0 = &order[0] if order.shape[0] else NULL
    cdef const int64_t *p0 = &ptr[0]
    cdef const floating *r0 = &rows[0, 0] if rows.shape[0] and d else NULL
    cdef const double *c0 = &scale[0] if scale.shape[0] else NULL
    cdef const int64_t *g0 = &gptr[0] if gptr.shape[0] else NULL
    cdef out_t *w0 = &out[0, 0] if out.shape[0] and d else NULL
    cdef double *q0 = &sq[0] if sq.shape[0] else NULL
    cdef bint by_key = g0 == NULL
    cdef bint threaded = use_team(GROUP_SUMS, keys.shape[0] * d * <Py_ssize_t>sizeof(floating), n_threads)
    for s in prange(S, schedule="static", nogil=True, num_threads=n_threads, use_threads_if=threaded):
        total = _segment(k0, o0, p0[s], p0[s + 1], r0, d, c0, w0, 0 if by_key else g0[s], by_key, q0 != NULL)
        if q0 != NULL:
            q0[s] = total
