"""Row-wise reductions of float32 or float64 arrays, accumulated in float64 (no
float64 copy of the inputs), and the per-sample scaling that clipping needs."""
from cython cimport floating
from cython.parallel cimport prange
from libc.float cimport DBL_MAX
from libc.math cimport fabs, hypot, sqrt

from ._openmp cimport CLIP_ROWS, GRAM_SQ, OUTER_NORMS, ROW_DOTS, use_team


cdef extern from "_rowsums.h" nogil:
    double md_load_f32(const float *row, Py_ssize_t k)
    double md_load_f64(const double *row, Py_ssize_t k)
    double md_sumsq_f32(const float *a, Py_ssize_t K)
    double md_sumsq_f64(const double *a, Py_ssize_t K)
    double md_dot_f32(const float *a, const float *b, Py_ssize_t K)
    double md_dot_f64(const double *a, const double *b, Py_ssize_t K)
    double md_gram_sq_f32(const float *a, const float *b, Py_ssize_t T, Py_ssize_t P, Py_ssize_t Q)
    double md_gram_sq_f64(const double *a, const double *b, Py_ssize_t T, Py_ssize_t P, Py_ssize_t Q)


cdef inline double _load(const floating *row, Py_ssize_t k) noexcept nogil:
    """row[k] as a double, for a row at any byte address (see _rowsums.h)."""
    if floating is float:
        return md_load_f32(row, k)
    else:
        return md_load_f64(row, k)


cdef inline double _dot(const floating *a, const floating *b, Py_ssize_t K) noexcept nogil:
    """sum_k a[k] * b[k] in double, vectorized (see _rowsums.h)."""
    if floating is float:
        return md_dot_f32(a, b, K)
    else:
        return md_dot_f64(a, b, K)


cdef inline double _sumsq(const floating *a, Py_ssize_t K) noexcept nogil:
    """sum_k a[k]^2 in double, vectorized (see _rowsums.h)."""
    if floating is float:
        return md_sumsq_f32(a, K)
    else:
        return md_sumsq_f64(a, K)


cdef double _SAFE_MIN = 2.0 ** -960  # a sum of squares at least this large lost nothing to underflow


cdef inline double _norm(const floating *a, Py_ssize_t K, double shift) noexcept nogil:
    """sqrt(||a||^2 + shift) accumulated in float64.  Squares of float32 entries never
    leave double's range; float64 entries whose sum of squares underflows (below
    _SAFE_MIN) or overflows are scaled by their largest magnitude first, so the norm is
    accurate wherever it is representable.  NaN and inf entries give NaN and inf."""
    cdef double s = _sumsq(a, K), amax = 0, x
    cdef Py_ssize_t k
    if sizeof(floating) == sizeof(float) or s != s or (s >= _SAFE_MIN and s <= DBL_MAX):
        return sqrt(s + shift)
    for k in range(K):
        x = fabs(_load(a, k))
        if x > amax:
            amax = x
    if amax == 0 or amax > DBL_MAX:  # all zeros, or an infinite entry
        return sqrt(s + shift)
    s = 0
    for k in range(K):
        x = _load(a, k) / amax
        s = s + x * x
    return hypot(amax * sqrt(s), sqrt(shift))


cdef inline double _outer_norm(
    const floating *a, const floating *b, Py_ssize_t P, Py_ssize_t Q, double a_shift, double b_shift
) noexcept nogil:
    """||outer(a, b)|| with shifted squared norms, sqrt(||a||^2 + a_shift) sqrt(||b||^2 + b_shift)
    (a product of norms: it overflows or underflows only where the norm itself does).
    Where an entry is not finite the factorized value can differ from the norm of the
    outer product (0 * inf is NaN there): callers recompute non-finite results."""
    return _norm(a, P, a_shift) * _norm(b, Q, b_shift)


def row_dots(
    const floating[:, ::1] a,   # IN  (S, K)
    const floating[:, ::1] b,   # IN  (S, K)
    double[::1] out,            # OUT (S,): out[s] = sum_k a[s, k] * b[s, k]
    int n_threads,
):
    """Row-wise dot products in float64."""
    cdef Py_ssize_t S = a.shape[0], K = a.shape[1], s
    if S == 0:
        return
    if K == 0:
        out[:] = 0
        return
    cdef const floating *a0 = &a[0, 0]
    cdef const floating *b0 = &b[0, 0]
    cdef double *o = &out[0]
    cdef bint threaded = use_team(ROW_DOTS, 2 * S * K * <Py_ssize_t>sizeof(floating), n_threads)
    if a0 == b0:  # squared norms
        for s in prange(S, schedule="static", nogil=True, num_threads=n_threads, use_threads_if=threaded):
            o[s] = _sumsq(a0 + s * K, K)
    else:
        for s in prange(S, schedule="static", nogil=True, num_threads=n_threads, use_threads_if=threaded):
            o[s] = _dot(a0 + s * K, b0 + s * K, K)


def gram_sq(
    const floating[:, :, ::1] a,   # IN  (S, T, P)
    const floating[:, :, ::1] b,   # IN  (S, T, Q)
    double[::1] out,               # OUT (S,): sum_{t,u} <a[s,t], a[s,u]> <b[s,t], b[s,u]>
    int n_threads,
):
    """||sum_t outer(a[s, t], b[s, t])||^2 by the Gram identity, in float64: the
    symmetric T x T double sum as its diagonal plus twice its upper triangle,
    T (T + 1) / 2 (P + Q) multiply-adds per sample, no temporaries (md_gram_sq in
    _rowsums.h: one call per sample, four pairs of rows at a time)."""
    cdef Py_ssize_t S = a.shape[0], T = a.shape[1], P = a.shape[2], Q = b.shape[2], s
    if S == 0:
        return
    if T == 0:
        out[:] = 0
        return
    cdef const floating *a0 = &a[0, 0, 0] if P else NULL
    cdef const floating *b0 = &b[0, 0, 0] if Q else NULL
    cdef double *o = &out[0]
    if a0 == NULL or b0 == NULL:
        out[:] = 0
        return
    cdef bint threaded = use_team(GRAM_SQ, S * T * (P + Q) * <Py_ssize_t>sizeof(floating), n_threads)
    for s in prange(S, schedule="static", nogil=True, num_threads=n_threads, use_threads_if=threaded):
        if floating is float:
            o[s] = md_gram_sq_f32(a0 + s * T * P, b0 + s * T * Q, T, P, Q)
        else:
            o[s] = md_gram_sq_f64(a0 + s * T * P, b0 + s * T * Q, T, P, Q)


def outer_norms(
    const floating[:, ::1] a,   # IN  (S, P)
    const floating[:, ::1] b,   # IN  (S, Q)
    double a_shift,             # IN  added to ||a[s]||^2
    double b_shift,             # IN  added to ||b[s]||^2 (1 for a bias: ||db||^2 = ||G[s]||^2)
    double[::1] out,            # OUT (S,): sqrt(||a[s]||^2 + a_shift) sqrt(||b[s]||^2 + b_shift)
    int n_threads,
):
    """Norms of the row outer products, in float64 (see _norm)."""
    cdef Py_ssize_t S = a.shape[0], P = a.shape[1], Q = b.shape[1], s
    if S == 0:
        return
    cdef const floating *a0 = &a[0, 0] if P else NULL
    cdef const floating *b0 = &b[0, 0] if Q else NULL
    cdef double *o = &out[0]
    cdef bint threaded = use_team(OUTER_NORMS, S * (P + Q) * <Py_ssize_t>sizeof(floating), n_threads)
    for s in prange(S, schedule="static", nogil=True, num_threads=n_threads, use_threads_if=threaded):
        o[s] = _outer_norm(a0 + s * P, b0 + s * Q, P, Q, a_shift, b_shift)


def clip_rows(
    const floating[:, ::1] a,   # IN  (S, P): the operand that is scaled
    const floating[:, ::1] b,   # IN  (S, Q): the other operand
    double a_shift,             # IN  added to ||a[s]||^2 (1 for a bias: ||db||^2 = ||G[s]||^2)
    double b_shift,             # IN  added to ||b[s]||^2
    double max_norm,            # IN  positive, finite
    floating[:, ::1] scaled,    # OUT (S, P): c[s] * a[s]
    double[::1] norms,          # OUT (S,): sqrt((||a[s]||^2 + a_shift) (||b[s]||^2 + b_shift))
    double[::1] factor,         # OUT (S,): c[s] = min(1, max_norm / norms[s]); 1 for a zero norm
    int n_threads,
):
    """One pass over the rows of a and b: the norm of the outer product a[s] (x) b[s]
    (with the shifts), its clipping factor, and the scaled row.  NaN norms give NaN
    factors (NaN rows), infinite norms factor 0."""
    cdef Py_ssize_t S = a.shape[0], P = a.shape[1], Q = b.shape[1], s, k
    cdef double nrm, c
    cdef const floating *ar
    cdef floating *sr
    cdef floating cf
    if S == 0:
        return
    cdef const floating *a0 = &a[0, 0] if P else NULL
    cdef const floating *b0 = &b[0, 0] if Q else NULL
    cdef floating *s0 = &scaled[0, 0] if P else NULL
    cdef double *no = &norms[0]
    cdef double *fo = &factor[0]
    cdef bint threaded = use_team(CLIP_ROWS, S * (2 * P + Q) * <Py_ssize_t>sizeof(floating), n_threads)
    for s in prange(S, schedule="static", nogil=True, num_threads=n_threads, use_threads_if=threaded):
        ar = a0 + s * P
        nrm = _outer_norm(ar, b0 + s * Q, P, Q, a_shift, b_shift)
        no[s] = nrm
        if nrm == 0:
            c = 1.0
        elif nrm != nrm:
            c = nrm
        elif max_norm < nrm:
            c = max_norm / nrm
        else:
            c = 1.0
        fo[s] = c
        cf = <floating>c
        sr = s0 + s * P
        for k in range(P):
            sr[k] = <floating>(cf * _load(ar, k))
