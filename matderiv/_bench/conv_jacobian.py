"""Convolution Jacobian rows of `python -m matderiv bench`: the input Jacobian's CSR (the
block-Toeplitz kernel) against its write-once floor and the textbook sum of Kronecker
products built with scipy."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

import matderiv as md

from .timing import Row, best_time, floor_time

#: What a ratio means in this section (printed at its header).
RATIO = "ratio = matderiv time / scipy's sum of Kronecker products (below 1: matderiv is faster)"


def _shift(H: int, W: int, k1: int, k2: int, pad: int) -> sp.csr_array:
    """S_k (T, H W) of a stride-1 convolution with padding `pad`: 1 where output position t
    reads input position p at offset (k1, k2), padding positions dropped."""
    i, j = np.divmod(np.arange(H * W), W)  # output positions (same size: "same" padding)
    h, w = i - pad + k1, j - pad + k2
    keep = (h >= 0) & (h < H) & (w >= 0) & (w < W)
    rows = np.flatnonzero(keep)
    return sp.csr_array((np.ones(rows.size), (rows, h[keep] * W + w[keep])), shape=(H * W, H * W))


def _scipy_toeplitz(W: np.ndarray, H: int, Wd: int, pad: int) -> sp.csr_array:
    """sum_k W_k (x) S_k with scipy.sparse.kron, the textbook way."""
    total = None
    for k1 in range(W.shape[2]):
        for k2 in range(W.shape[3]):
            term = sp.kron(sp.csr_array(W[:, :, k1, k2]), _shift(H, Wd, k1, k2, pad), format="csr")
            total = term if total is None else total + term
    return total


def conv_jacobian_rows(quick: bool) -> Iterator[Row]:
    """The conv input Jacobian's CSR row; quick=True: a smaller image."""
    rep = 3 if quick else 10
    C = O = 16
    H = Wd = 16 if quick else 32
    W = np.random.default_rng(0).standard_normal((O, C, 3, 3))
    J = md.jacobian_conv_input(W, (C, H, Wd), padding=1)
    A = J.tosparse("csr", "C")
    refs = {"sum_k kron(W_k, S_k) (scipy.sparse)": best_time(lambda: _scipy_toeplitz(W, H, Wd, 1), max(1, rep // 3))}
    yield Row(f"conv input tosparse csr C=O={C} {H}x{Wd} k=3 pad=1", best_time(lambda: J.tosparse("csr", "C"), rep),
              floor_time([A.data.nbytes, A.indices.nbytes, A.indptr.nbytes], rep), refs)
