"""Kronecker rows of `python -m matderiv bench`: jacobian_awb's forms and the per-sample
left operator, against scipy/numpy and their floors."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

import matderiv as md

from .timing import Row, best_time, floor_time


def _tiled_csr(A: sp.csr_array, q: int) -> sp.csr_array:
    """I_q kron A by numpy tiling of A's arrays, the usual hand-written way."""
    p = A.shape[1]
    data = np.tile(A.data, q)
    indices = (A.indices[None, :] + p * np.arange(q)[:, None]).ravel()
    indptr = np.concatenate([[0], (A.indptr[1:][None, :] + A.nnz * np.arange(q)[:, None]).ravel()])
    return sp.csr_array((data, indices, indptr), shape=(q * A.shape[0], q * p))


def kronecker_rows(quick: bool) -> list[Row]:
    rng = np.random.default_rng(0)
    rep = 3 if quick else 10
    rows: list[Row] = []

    n, q = (500, 50) if quick else (2000, 200)
    A = sp.random_array((n, n), density=0.01, rng=rng, format="csr")
    J = md.jacobian_awb(A, None, W_shape=(n, q))
    S = J.tosparse("csr")
    eye = sp.eye_array(q, format="csr")
    rows.append(
        Row(
            f"awb(A sparse 1%, I).tosparse csr n={n} q={q}",
            best_time(lambda: J.tosparse("csr"), rep),
            floor_time([S.data.nbytes, S.indices.nbytes, S.indptr.nbytes], rep),
            {
                "scipy.sparse.kron(I_q, A, format='csr')": best_time(lambda: sp.kron(eye, A, format="csr"), max(1, rep // 3)),
                "numpy tiling of A's arrays": best_time(lambda: _tiled_csr(A, q), rep),
            },
        )
    )

    d = 20 if quick else 40
    Ad, Bd = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    Jd = md.jacobian_awb(Ad, Bd)
    rows.append(
        Row(
            f"awb(A, B dense).tovec F n=p=q=k={d} f64",
            best_time(Jd.tovec, rep),
            floor_time(d**4 * 8, rep),
            {"np.kron(B.T, A)": best_time(lambda: np.kron(Bd.T, Ad), rep)},
        )
    )

    B, r, n, m = (512, 8, 64, 64) if quick else (4096, 16, 128, 128)
    X = rng.standard_normal((B, m))
    M = rng.standard_normal((B, r, n))
    op = md.jacobian_wx(X, n).left(M).aslinearoperator("F")
    u = rng.standard_normal(n * m)
    w = rng.standard_normal(B * r)
    dW = u.reshape(m, n).T

    def gemms() -> None:  # M_b (dW x_b) for every b, and sum_b (M_b^T w_b) x_b^T
        np.einsum("brn,bn->br", M, X @ dW.T)
        np.einsum("brn,br->bn", M, w.reshape(B, r)).T @ X

    rows.append(
        Row(
            f"left(M_b) operator matvec+rmatvec B={B} r={r} n=m={n}",
            best_time(lambda: (op.matvec(u), op.rmatvec(w)), rep),
            None,
            {"the two batched GEMMs (einsum)": best_time(gemms, rep)},
        )
    )

    B = 16 if quick else 64  # the stacked (B*r, n*m) matrix must fit in memory
    X, M = X[:B], M[:B]
    op = md.jacobian_wx(X, n).left(M).aslinearoperator("F")
    w = w[: B * r]

    def build() -> np.ndarray:  # (B*r, n*m): row (b, i), column a + n*c holds M_b[i, a] x_b[c]
        return np.einsum("bia,bc->bica", M, X).reshape(B * r, n * m)

    dense = build()
    rows.append(
        Row(
            f"left(M_b) operator matvec+rmatvec B={B} r={r} n=m={n}",
            best_time(lambda: (op.matvec(u), op.rmatvec(w)), rep),
            None,
            {
                "dense stacked Jacobian: matvec+rmatvec": best_time(lambda: (dense @ u, dense.T @ w), rep),
                "building it with np.einsum": best_time(build, max(1, rep // 3)),
            },
        )
    )
    return rows
