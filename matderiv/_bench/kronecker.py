"""Kronecker rows of `python -m matderiv bench`: jacobian_awb's forms and the per-sample
left operator, against scipy/numpy and their floors."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

import matderiv as md

from .timing import Row, best_time, floor_time

#: What a ratio means in this section (printed at its header).
RATIO = "ratio = matderiv time / scipy's, numpy's or the GEMMs' it amounts to (below 1: matderiv faster)"


def _tiled_csr(A: sp.csr_array, q: int) -> sp.csr_array:
    """I_q kron A by numpy tiling of A's arrays, the usual hand-written way."""
    p = A.shape[1]
    data = np.tile(A.data, q)
    indices = (A.indices[None, :] + p * np.arange(q)[:, None]).ravel()
    indptr = np.concatenate([[0], (A.indptr[1:][None, :] + A.nnz * np.arange(q)[:, None]).ravel()])
    return sp.csr_array((data, indices, indptr), shape=(q * A.shape[0], q * p))


def _awb_rows(rng: np.random.Generator, n: int, q: int, d: int, rep: int) -> Iterator[Row]:
    """A sparse A next to an identity (tosparse) and two dense factors (tovec)."""
    A = sp.random_array((n, n), density=0.01, rng=rng, format="csr")
    J = md.jacobian_awb(A, None, W_shape=(n, q))
    S = J.tosparse("csr")
    eye = sp.eye_array(q, format="csr")
    sparse_refs = {
        "scipy.sparse.kron(I_q, A, format='csr')": best_time(lambda: sp.kron(eye, A, format="csr"), max(1, rep // 3)),
        "numpy tiling of A's arrays": best_time(lambda: _tiled_csr(A, q), rep),
    }
    yield Row(f"awb(A sparse 1%, I).tosparse csr n={n} q={q}", best_time(lambda: J.tosparse("csr"), rep),
              floor_time([S.data.nbytes, S.indices.nbytes, S.indptr.nbytes], rep), sparse_refs)
    Ad, Bd = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    Jd = md.jacobian_awb(Ad, Bd)
    yield Row(f"awb(A, B dense).tovec F n=p=q=k={d} f64", best_time(Jd.tovec, rep), floor_time(d**4 * 8, rep),
              {"np.kron(B.T, A)": best_time(lambda: np.kron(Bd.T, Ad), rep)})


def _left_rows(rng: np.random.Generator, B: int, small: int, r: int, n: int, rep: int) -> Iterator[Row]:
    """The per-sample left operator against the two batched GEMMs it amounts to (B samples)
    and against the dense stacked Jacobian (the first `small` samples, which must fit)."""
    X, M = rng.standard_normal((B, n)), rng.standard_normal((B, r, n))
    u, w = rng.standard_normal(n * n), rng.standard_normal(B * r)
    dW = u.reshape(n, n).T
    op = md.jacobian_wx(X, n).left(M).aslinearoperator("F")

    def gemms() -> None:  # M_b (dW x_b) for every b, and sum_b (M_b^T w_b) x_b^T
        np.einsum("brn,bn->br", M, X @ dW.T)
        np.einsum("brn,br->bn", M, w.reshape(B, r)).T @ X

    yield Row(f"left(M_b) operator matvec+rmatvec B={B} r={r} n=m={n}", best_time(lambda: (op.matvec(u), op.rmatvec(w)), rep),
              None, {"the two batched GEMMs (einsum)": best_time(gemms, rep)})
    Xs, Ms, ws = X[:small], M[:small], w[: small * r]
    op_small = md.jacobian_wx(Xs, n).left(Ms).aslinearoperator("F")

    def build() -> np.ndarray:  # (B*r, n*m): row (b, i), column a + n*c holds M_b[i, a] x_b[c]
        return np.einsum("bia,bc->bica", Ms, Xs).reshape(small * r, n * n)

    dense = build()
    stacked = {
        "dense stacked Jacobian: matvec+rmatvec": best_time(lambda: (dense @ u, dense.T @ ws), rep),
        "building it with np.einsum": best_time(build, max(1, rep // 3)),
    }
    yield Row(f"left(M_b) operator matvec+rmatvec B={small} r={r} n=m={n}",
              best_time(lambda: (op_small.matvec(u), op_small.rmatvec(ws)), rep), None, stacked)


def kronecker_rows(quick: bool) -> Iterator[Row]:
    """Every Kronecker row, one at a time as it is measured; quick=True: smaller sizes."""
    rng = np.random.default_rng(0)
    rep = 3 if quick else 10
    yield from _awb_rows(rng, *((500, 50, 20) if quick else (2000, 200, 40)), rep)
    yield from _left_rows(rng, *((512, 16, 8, 64) if quick else (4096, 64, 16, 128)), rep)
