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

from ._types cimport numeric, index_t


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
    """Fill (or add onto) `out` with the stacked products P_s (x) Q_s."""
    cdef Py_ssize_t rows = out.shape[0], C = out.shape[1], R = r1 * r2
    cdef Py_ssize_t r, s, t, i1, i2, j1, j2
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
    cdef numeric *o0 = &out[0, 0]
    cdef const numeric *p0 = &P[0, 0, 0] if not p_eye else NULL
    cdef const numeric *q0 = &Q[0, 0, 0] if not q_eye else NULL
    for r in prange(rows, schedule="static", nogil=True, num_threads=n_threads):
        s = r // R
        t = r - s * R
        i1 = t // r2
        i2 = t - i1 * r2
        o = o0 + r * C
        if zero_first:
            memset(o, 0, C * sizeof(numeric))
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
    cdef Py_ssize_t r, s, t, i1, i2, k, k0, cP, cQ, sP, sQ, e
    cdef const int64_t *Pp = &Pptr[0] if not p_eye else NULL
    cdef const int64_t *Pi = &Pidx[0] if not p_eye and Pidx.shape[0] > 0 else NULL
    cdef const numeric *Pd = &Pdata[0, 0] if not p_eye and Pdata.shape[0] > 0 and Pdata.shape[1] > 0 else NULL
    cdef const int64_t *Qp = &Qptr[0] if not q_eye else NULL
    cdef const int64_t *Qi = &Qidx[0] if not q_eye and Qidx.shape[0] > 0 else NULL
    cdef const numeric *Qd = &Qdata[0, 0] if not q_eye and Qdata.shape[0] > 0 and Qdata.shape[1] > 0 else NULL
    cdef numeric *d0 = &data[0] if data.shape[0] > 0 else NULL
    cdef index_t *c0 = &indices[0] if indices.shape[0] > 0 else NULL
    cdef index_t *p0 = &indptr[0] if want_ptr else NULL
    cdef index_t *w0 = &row_of[0] if want_rows else NULL
    if want_ptr:
        p0[rows] = <index_t>(S * per)
    for r in prange(rows, schedule="static", nogil=True, num_threads=n_threads):
        s = 0 if samples_in_columns else r // R
        t = r - s * R
        i1 = t // r2
        i2 = t - i1 * r2
        sP = i1 if p_eye else Pp[i1]
        cP = 1 if p_eye else Pp[i1 + 1] - Pp[i1]
        sQ = i2 if q_eye else Qp[i2]
        cQ = 1 if q_eye else Qp[i2 + 1] - Qp[i2]
        if samples_in_columns:
            k0 = S * (sP * nQ + cP * sQ)
            k = k0
            for s in range(S):
                k = _block(Pp, Pi, Pd + s * sp, p_eye, Qp, Qi, Qd + s * sq, q_eye,
                           i1, i2, c2, s * C, d0, c0, k)
        else:
            k0 = s * per + sP * nQ + cP * sQ
            k = _block(Pp, Pi, Pd + s * sp, p_eye, Qp, Qi, Qd + s * sq, q_eye,
                       i1, i2, c2, 0, d0, c0, k0)
        if want_ptr:
            p0[r] = <index_t>k0
        if want_rows:
            for e in range(k0, k):
                w0[e] = <index_t>r
