"""Kronecker builders: every dense and sparse form of the Jacobian of f_s = A_s @ W @ B_s.

Each form is, sample by sample, the Kronecker product of two factors P_s (r1, c1) and
Q_s (r2, c2) (matderiv/jacobian/_kronecker.py says which factors give which form):

  out[(s*r1 + i1)*r2 + i2, j1*c2 + j2] = P_s[i1, j1] * Q_s[i2, j2]

the samples stacked in rows. A factor is an identity (flag p_eye / q_eye: never stored,
its entries are not multiplied in, so values are copied exactly), or data shared by
every sample (leading axis 1) or given per sample (leading axis S).
"""
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.string cimport memset

from ._openmp cimport KRON_CSR, KRON_DENSE, use_team
from ._types cimport index_t, numeric


cdef inline Py_ssize_t _chunks(Py_ssize_t rows, int n_threads) noexcept nogil:
    """Contiguous chunks of rows for the threads: a few per thread, for balance."""
    cdef Py_ssize_t n = 8 * n_threads
    return rows if rows < n else n


def kron_dense(
    const numeric[:, :, ::1] P,  # IN  (SP, r1, c1), SP = 1 or S; ignored when p_eye
    const numeric[:, :, ::1] Q,  # IN  (SQ, r2, c2), SQ = 1 or S; ignored when q_eye
    numeric[:, ::1] out,         # OUT (S*r1*r2, c1*c2): each row written once
    Py_ssize_t r1, Py_ssize_t c1, Py_ssize_t r2, Py_ssize_t c2,
    bint p_eye,                  # P is the identity (r1 == c1)
    bint q_eye,                  # Q is the identity (r2 == c2)
    int mode,                    # 0: write (zeros included), 1: out holds zeros already, 2: add onto out
    int n_threads,
):
    """Fill (or add onto) `out` with the stacked products P_s (x) Q_s.

    Rows go to threads in contiguous chunks; (s, i1, i2) is divided out once per chunk
    and then counted, and a chunk's rows (contiguous in memory) are zeroed at once.
    """
    cdef Py_ssize_t rows = out.shape[0], C = out.shape[1]
    cdef Py_ssize_t ch, r, r0, r1_, s, i1, i2, j1, j2
    cdef Py_ssize_t sp = 0 if p_eye or P.shape[0] == 1 else r1 * c1
    cdef Py_ssize_t sq = 0 if q_eye or Q.shape[0] == 1 else r2 * c2
    cdef bint add = mode == 2
    cdef bint zero_first = mode == 0 and (p_eye or q_eye)
    cdef numeric one = 1
    cdef numeric a
    cdef numeric *o
    cdef const numeric *p
    cdef const numeric *q
    if rows == 0 or C == 0:
        return
    cdef Py_ssize_t n_chunks = _chunks(rows, n_threads)
    cdef bint threaded = use_team(KRON_DENSE, rows * C * <Py_ssize_t>sizeof(numeric), n_threads)
    cdef numeric *o0 = &out[0, 0]
    cdef const numeric *p0 = &P[0, 0, 0] if not p_eye else NULL
    cdef const numeric *q0 = &Q[0, 0, 0] if not q_eye else NULL
    for ch in prange(n_chunks, schedule="static", nogil=True, num_threads=n_threads, use_threads_if=threaded):
        r0 = rows * ch // n_chunks
        r1_ = rows * (ch + 1) // n_chunks
        if zero_first:
            memset(o0 + r0 * C, 0, (r1_ - r0) * C * sizeof(numeric))
        s = r0 // (r1 * r2)
        i1 = (r0 - s * r1 * r2) // r2
        i2 = r0 - (s * r1 + i1) * r2
        for r in range(r0, r1_):
            o = o0 + r * C
            if p_eye and q_eye:
                if add:
                    o[i1 * c2 + i2] = o[i1 * c2 + i2] + one
                else:
                    o[i1 * c2 + i2] = one
            elif p_eye:  # one block: Q_s's row i2 at columns i1*c2 ..
                q = q0 + s * sq + i2 * c2
                o = o + i1 * c2
                if add:
                    for j2 in range(c2):
                        o[j2] = o[j2] + q[j2]
                else:
                    for j2 in range(c2):
                        o[j2] = q[j2]
            elif q_eye:  # P_s's row i1 at columns i2, i2 + c2, ..
                p = p0 + s * sp + i1 * c1
                if add:
                    for j1 in range(c1):
                        o[j1 * c2 + i2] = o[j1 * c2 + i2] + p[j1]
                else:
                    for j1 in range(c1):
                        o[j1 * c2 + i2] = p[j1]
            else:
                p = p0 + s * sp + i1 * c1
                q = q0 + s * sq + i2 * c2
                for j1 in range(c1):
                    a = p[j1]
                    if add:
                        for j2 in range(c2):
                            o[j1 * c2 + j2] = o[j1 * c2 + j2] + a * q[j2]
                    else:
                        for j2 in range(c2):
                            o[j1 * c2 + j2] = a * q[j2]
            i2 = i2 + 1
            if i2 == r2:
                i2 = 0
                i1 = i1 + 1
                if i1 == r1:
                    i1 = 0
                    s = s + 1


cdef inline Py_ssize_t _block(
    const int64_t *Pptr, const int64_t *Pidx, const numeric *Pd, bint p_eye,
    const int64_t *Qptr, const int64_t *Qidx, const numeric *Qd, bint q_eye,
    Py_ssize_t i1, Py_ssize_t i2, Py_ssize_t c2, Py_ssize_t col0,
    numeric *data, index_t *indices, Py_ssize_t k,
) noexcept nogil:
    """Write the entries of row (i1, i2) of P (x) Q from position k, columns offset by
    col0; Pd and Qd point at this sample's values. Returns the next position."""
    cdef Py_ssize_t e1, e2, j1
    cdef numeric a
    if p_eye and q_eye:
        data[k] = 1
        indices[k] = <index_t>(col0 + i1 * c2 + i2)
        return k + 1
    if p_eye:
        for e2 in range(Qptr[i2], Qptr[i2 + 1]):
            data[k] = Qd[e2]
            indices[k] = <index_t>(col0 + i1 * c2 + Qidx[e2])
            k = k + 1
        return k
    if q_eye:
        for e1 in range(Pptr[i1], Pptr[i1 + 1]):
            data[k] = Pd[e1]
            indices[k] = <index_t>(col0 + Pidx[e1] * c2 + i2)
            k = k + 1
        return k
    for e1 in range(Pptr[i1], Pptr[i1 + 1]):
        a = Pd[e1]
        j1 = col0 + Pidx[e1] * c2
        for e2 in range(Qptr[i2], Qptr[i2 + 1]):
            data[k] = a * Qd[e2]
            indices[k] = <index_t>(j1 + Qidx[e2])
            k = k + 1
    return k


def kron_csr(
    const int64_t[::1] Pptr,      # IN  (r1 + 1,) CSR pointers of P; empty when p_eye
    const int64_t[::1] Pidx,      # IN  (nnzP,) sorted columns of P
    const numeric[:, ::1] Pdata,  # IN  (SP, nnzP) values, SP = 1 or S
    const int64_t[::1] Qptr,      # IN  (r2 + 1,) CSR pointers of Q; empty when q_eye
    const int64_t[::1] Qidx,      # IN  (nnzQ,)
    const numeric[:, ::1] Qdata,  # IN  (SQ, nnzQ)
    Py_ssize_t r1, Py_ssize_t c1, Py_ssize_t r2, Py_ssize_t c2,
    bint p_eye, bint q_eye,
    Py_ssize_t S,
    bint samples_in_columns,      # False: samples stacked in rows; True: side by side in columns
    numeric[::1] data,            # OUT (S*nnzP*nnzQ,) values, row by row
    index_t[::1] indices,         # OUT (S*nnzP*nnzQ,) columns, ascending in each row
    index_t[::1] indptr,          # OUT (rows + 1,) row pointers, or empty to skip
    index_t[::1] row_of,          # OUT (S*nnzP*nnzQ,) row of each value (COO), or empty to skip
    int n_threads,
):
    """Canonical CSR (or COO) arrays of the stacked products, in one parallel pass.

    Every row's start is known in closed form (each row (i1, i2) of a sample holds
    nnz(P[i1]) * nnz(Q[i2]) entries), so rows are written independently. With
    samples_in_columns the matrix is [P_1 (x) Q_1, ..., P_S (x) Q_S]: the CSR arrays of
    that are the CSC arrays of the row-stacked matrix built from the transposed factors.
    """
    cdef Py_ssize_t R = r1 * r2, C = c1 * c2
    cdef Py_ssize_t nP = r1 if p_eye else Pptr[r1]
    cdef Py_ssize_t nQ = r2 if q_eye else Qptr[r2]
    cdef Py_ssize_t per = nP * nQ
    cdef Py_ssize_t rows = R if samples_in_columns else S * R
    cdef Py_ssize_t sp = 0 if p_eye or Pdata.shape[0] == 1 else nP
    cdef Py_ssize_t sq = 0 if q_eye or Qdata.shape[0] == 1 else nQ
    cdef bint want_ptr = indptr.shape[0] > 0
    cdef bint want_rows = row_of.shape[0] > 0
    cdef const int64_t *Pp = &Pptr[0] if not p_eye else NULL
    cdef const int64_t *Pi = &Pidx[0] if not p_eye and Pidx.shape[0] > 0 else NULL
    cdef const numeric *Pd = &Pdata[0, 0] if not p_eye and Pdata.shape[0] > 0 and Pdata.shape[1] > 0 else NULL
    cdef const int64_t *Qp = &Qptr[0] if not q_eye else NULL
    cdef const int64_t *Qi = &Qidx[0] if not q_eye and Qidx.shape[0] > 0 else NULL
    cdef const numeric *Qd = &Qdata[0, 0] if not q_eye and Qdata.shape[0] > 0 and Qdata.shape[1] > 0 else NULL
    cdef numeric *d0 = &data[0] if data.shape[0] > 0 else NULL
    cdef index_t *c0 = &indices[0] if indices.shape[0] > 0 else NULL
    cdef index_t *p0 = &indptr[0] if want_ptr else NULL  # NULL: not wanted
    cdef index_t *w0 = &row_of[0] if want_rows else NULL
    if want_ptr:
        p0[rows] = <index_t>(S * per)
    if rows == 0:
        return
    cdef Py_ssize_t ch, n_chunks = _chunks(rows, n_threads)
    cdef Py_ssize_t q_row = _uniform_row(Qp, r2) if not q_eye else 0
    cdef bint threaded = use_team(KRON_CSR, S * per * <Py_ssize_t>(sizeof(numeric) + sizeof(index_t)), n_threads)
    for ch in prange(n_chunks, schedule="static", nogil=True, num_threads=n_threads, use_threads_if=threaded):
        _csr_rows(Pp, Pi, Pd, sp, nP, p_eye, Qp, Qi, Qd, sq, nQ, q_eye, q_row, r1, r2, c2, C, S,
                  samples_in_columns, d0, c0, p0, w0,
                  rows * ch // n_chunks, rows * (ch + 1) // n_chunks)


cdef void _csr_rows(
    const int64_t *Pp, const int64_t *Pi, const numeric *Pd, Py_ssize_t sp, Py_ssize_t nP, bint p_eye,
    const int64_t *Qp, const int64_t *Qi, const numeric *Qd, Py_ssize_t sq, Py_ssize_t nQ, bint q_eye,
    Py_ssize_t q_row,
    Py_ssize_t r1, Py_ssize_t r2, Py_ssize_t c2, Py_ssize_t C, Py_ssize_t S, bint samples_in_columns,
    numeric *data, index_t *indices, index_t *indptr, index_t *row_of,
    Py_ssize_t r, Py_ssize_t r_end,
) noexcept nogil:
    """Rows r .. r_end-1 of kron_csr (NULL indptr / row_of: not wanted), taken as runs of
    rows (s, i1, i2 = a .. b-1) that share P's row, so that a row of one entry costs a few
    instructions. A plain function rather than the body of the prange, so that its
    counters stay in registers."""
    cdef Py_ssize_t R = r1 * r2, per = nP * nQ
    cdef Py_ssize_t T = S if samples_in_columns else 1
    cdef Py_ssize_t s = 0 if samples_in_columns else r // R
    cdef Py_ssize_t i1 = (r - s * R) // r2
    cdef Py_ssize_t i2 = r - s * R - i1 * r2
    cdef Py_ssize_t b, t, k, k0, e, sP, cP, sQ, cQ, smp, col0, row
    while r < r_end:
        b = r2 if r2 - i2 <= r_end - r else i2 + (r_end - r)
        sP = i1 if p_eye else Pp[i1]
        cP = 1 if p_eye else Pp[i1 + 1] - Pp[i1]
        row = r - i2
        if q_eye and not p_eye and T * cP <= 8:  # short rows: strided runs (long rows: row by row)
            _eye_run(Pi, Pd, sp, sP, cP, T * (s * per + sP * nQ), T, samples_in_columns, s, i2, b,
                     c2, C, row, data, indices, indptr, row_of)
            i2 = b
        elif p_eye and q_row > 0 and T * q_row <= 8:
            _uniform_run(Qi, Qd, sq, q_row, T * (s * per + i1 * nQ), T, samples_in_columns, s, i2, b,
                         i1 * c2, C, row, data, indices, indptr, row_of)
            i2 = b
        for i2 in range(i2, b):
            sQ = i2 if q_eye else Qp[i2]
            cQ = 1 if q_eye else Qp[i2 + 1] - Qp[i2]
            k0 = T * (s * per + sP * nQ + cP * sQ)
            k = k0
            for t in range(T):
                smp = t if samples_in_columns else s
                col0 = t * C if samples_in_columns else 0
                if p_eye and not q_eye and cQ == 1:  # one entry (no loop set-up for it)
                    data[k] = Qd[smp * sq + sQ]
                    indices[k] = <index_t>(col0 + i1 * c2 + Qi[sQ])
                    k = k + 1
                else:
                    k = _block(Pp, Pi, Pd + smp * sp, p_eye, Qp, Qi, Qd + smp * sq, q_eye,
                               i1, i2, c2, col0, data, indices, k)
            if indptr != NULL:
                indptr[row + i2] = <index_t>k0
            if row_of != NULL:
                for e in range(k0, k):
                    row_of[e] = <index_t>(row + i2)
        r = row + b
        i2 = 0
        i1 = i1 + 1
        if i1 == r1:
            i1 = 0
            s = s + 1


cdef void _eye_run(
    const int64_t *Pi, const numeric *Pd, Py_ssize_t sp, Py_ssize_t sP, Py_ssize_t cP,
    Py_ssize_t base, Py_ssize_t T, bint samples_in_columns, Py_ssize_t s, Py_ssize_t a, Py_ssize_t b,
    Py_ssize_t c2, Py_ssize_t C, Py_ssize_t row,
    numeric *data, index_t *indices, index_t *indptr, index_t *row_of,
) noexcept nogil:
    """Rows (i1, i2 = a .. b-1) when Q is the identity: row i2 holds, for each sample t,
    P's row i1 at columns Pi[e]*c2 + i2, from position base + T*cP*i2. Written entry of P
    by entry of P, each a strided run over i2 (rows of one entry cost a few stores)."""
    cdef Py_ssize_t t, e, i2, k, step = T * cP, cb
    cdef numeric val
    for t in range(T):
        for e in range(cP):
            val = Pd[(t if samples_in_columns else s) * sp + sP + e]
            cb = (t * C if samples_in_columns else 0) + Pi[sP + e] * c2
            k = base + t * cP + e
            for i2 in range(a, b):
                data[k + step * i2] = val
                indices[k + step * i2] = <index_t>(cb + i2)
    _run_pointers(base, step, a, b, row, indptr, row_of)


cdef Py_ssize_t _uniform_row(const int64_t *Qp, Py_ssize_t r2) noexcept nogil:
    """The number of entries in every row of Q when they are all equal and nonzero, else 0."""
    cdef Py_ssize_t i, c = Qp[1] - Qp[0] if r2 > 0 else 0
    for i in range(1, r2):
        if Qp[i + 1] - Qp[i] != c:
            return 0
    return c


cdef void _uniform_run(
    const int64_t *Qi, const numeric *Qd, Py_ssize_t sq, Py_ssize_t cQ,
    Py_ssize_t base, Py_ssize_t T, bint samples_in_columns, Py_ssize_t s, Py_ssize_t a, Py_ssize_t b,
    Py_ssize_t col1, Py_ssize_t C, Py_ssize_t row,
    numeric *data, index_t *indices, index_t *indptr, index_t *row_of,
) noexcept nogil:
    """Rows (i1, i2 = a .. b-1) when P is the identity and every row of Q holds cQ
    entries: row i2 holds, for each sample t, Q's row i2 at columns col1 + Qi[..], from
    position base + T*cQ*i2. Written as strided runs over i2, like _eye_run."""
    cdef Py_ssize_t t, e, i2, k, step = T * cQ, cb
    cdef const numeric *q
    for t in range(T):
        q = Qd + (t if samples_in_columns else s) * sq
        cb = (t * C if samples_in_columns else 0) + col1
        for e in range(cQ):
            k = base + t * cQ + e
            for i2 in range(a, b):
                data[k + step * i2] = q[cQ * i2 + e]
                indices[k + step * i2] = <index_t>(cb + Qi[cQ * i2 + e])
    _run_pointers(base, step, a, b, row, indptr, row_of)


cdef inline void _run_pointers(
    Py_ssize_t base, Py_ssize_t step, Py_ssize_t a, Py_ssize_t b, Py_ssize_t row,
    index_t *indptr, index_t *row_of,
) noexcept nogil:
    """Row pointers (and COO rows) of rows row + a .. row + b-1, each holding `step`
    entries from position base + step*i2."""
    cdef Py_ssize_t i2, e
    if indptr != NULL:
        for i2 in range(a, b):
            indptr[row + i2] = <index_t>(base + step * i2)
    if row_of != NULL:
        for i2 in range(a, b):
            for e in range(step):
                row_of[base + step * i2 + e] = <index_t>(row + i2)
