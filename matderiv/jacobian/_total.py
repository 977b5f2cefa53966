"""The product-rule Jacobian of f(W) = W @ x(W) (the dependent case of jacobian_wx)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from .. import _validation as v
from ._base import Jacobian, assemble, assemble_coo
from ._factor import Factor, Temp
from ._kronecker import KroneckerJacobian, StructuredJacobian
from .._docs import doc, jacobian as D


@doc(D.TOTAL)
class TotalJacobian(Jacobian):
    n: int  # W's shape (n, m); f has base.f_shape: (n,), or (r,) after left
    m: int
    convention = "Wx"

    def __init__(self, base: KroneckerJacobian, W: np.ndarray, dx: np.ndarray | Jacobian):
        self._base = base  # d(W @ x)/dW with x held fixed, possibly left-multiplied
        self._W = W  # (r, m): W, or M @ W after left(M)
        self._dx = dx  # (m, n, m) array, or a Jacobian of x with respect to W
        self.n, self.m = base.W_shape
        self.dtype = W.dtype
        self._samples = 1
        self._batched = False

    @property
    def f_shape(self) -> tuple[int, ...]:
        return self._base.f_shape

    @property
    def W_shape(self) -> tuple[int, int]:
        return self._base.W_shape

    def __repr__(self) -> str:
        kind = type(self._dx).__name__
        return (
            f"<TotalJacobian d(W @ x(W))/dW: shape {self.shape}, {self.dtype.name}, "
            f"product rule with dx/dW given as {kind}>"
        )

    def _inputs(self) -> tuple[np.ndarray, ...]:
        dx = (self._dx,) if isinstance(self._dx, np.ndarray) else self._dx._inputs()
        return self._base._inputs() + (self._W,) + dx

    def _scratch(self, sparse: bool = False) -> list[Temp]:
        # dx/dW as an (m, n*m) matrix: an array may be transposed into F order, another
        # kind of Jacobian is materialized; a structured one is never built. The first
        # term is written by the dense kernel, for the sparse forms too.
        if isinstance(self._dx, StructuredJacobian):
            return self._base._scratch()
        return [((self._W.shape[1], math.prod(self.W_shape)), self.dtype)] + self._base._scratch()

    def _dx_vec(self, order: str) -> np.ndarray:
        if isinstance(self._dx, Jacobian):
            return self._dx.tovec(order).astype(self.dtype, copy=False)
        m = self._W.shape[1]
        dx = self._dx if order == "C" else self._dx.transpose(0, 2, 1)
        return dx.reshape(m, math.prod(self.W_shape)).astype(self.dtype, copy=False)

    def _fill_vec(self, out: np.ndarray, order: str, n_threads: int, zeroed: bool = False) -> None:
        if isinstance(self._dx, StructuredJacobian):
            self._dx._left_product(self._W, out, order, transposed=False)
        else:
            np.matmul(self._W, self._dx_vec(order), out=out)
        self._base._add_to_vec(out, order, n_threads)

    def _fill_vec_transposed(self, out_t: np.ndarray, order: str, n_threads: int) -> None:
        """out_t = tovec(order).T written directly: the denominator layout and the CSC data."""
        if isinstance(self._dx, StructuredJacobian):
            self._dx._left_product(self._W, out_t, order, transposed=True)
        else:
            np.matmul(self._dx_vec(order).T, self._W.T, out=out_t)
        self._base._add_to_vec(out_t, order, n_threads, transposed=True)

    def _fill_tensor(self, out: np.ndarray, layout: str, n_threads: int, zeroed: bool) -> None:
        rows, cols = self._vec_shape()
        if layout == "numerator":
            self._fill_vec(out.reshape(rows, cols), "C", n_threads)
        else:  # E[a, b, i] = D[i, a, b]: E as (n*m, n) is the transpose of the C-order vec form
            self._fill_vec_transposed(out.reshape(cols, rows), "C", n_threads)

    def _sparse(self, format: str, order: str, max_bytes: int | None, n_threads: int) -> Any:
        # W @ dx/dW is dense in general: every entry is stored, so the pattern does not
        # depend on the values.
        rows, cols = self._vec_shape()
        data, _, _ = self._sparse_arrays(format, rows * cols, max_bytes)
        idx = v.index_dtype(max(rows * cols, rows, cols))
        if format == "csc":
            self._fill_vec_transposed(data.reshape(cols, rows), order, n_threads)
            indices = np.tile(np.arange(rows, dtype=idx), cols)
            return assemble(sp.csc_array, (rows, cols), data, indices, np.arange(cols + 1, dtype=idx) * rows)
        self._fill_vec(data.reshape(rows, cols), order, n_threads)
        indices = np.tile(np.arange(cols, dtype=idx), rows)
        if format == "coo":
            return assemble_coo((rows, cols), data, np.repeat(np.arange(rows, dtype=idx), cols), indices)
        return assemble(sp.csr_array, (rows, cols), data, indices, np.arange(rows + 1, dtype=idx) * cols)

    def _dx_jvp(self, dW: np.ndarray) -> np.ndarray:
        if isinstance(self._dx, Jacobian):
            return self._dx.jvp(dW)
        return np.tensordot(self._dx, dW, axes=2)

    def _dx_vjp(self, u: np.ndarray) -> np.ndarray:
        if isinstance(self._dx, Jacobian):
            return self._dx.vjp(u)
        return np.tensordot(u, self._dx, axes=1)

    def _jvp(self, dW: np.ndarray, dtype: np.dtype) -> np.ndarray:
        return self._base._jvp(dW, dtype) + (self._W @ self._dx_jvp(dW))[None, :]

    def _vjp(self, vs: np.ndarray, out: np.ndarray, n_threads: int) -> None:
        self._base._vjp(vs, out, n_threads)
        out[0] += self._dx_vjp(self._W.T @ vs[0])

    def _dx_matmat(self, V: np.ndarray, order: str) -> np.ndarray:
        if isinstance(self._dx, Jacobian):
            return self._dx._matmat(V, order)
        return self._dx_vec(order) @ V

    def _dx_rmatmat(self, U: np.ndarray, order: str) -> np.ndarray:
        if isinstance(self._dx, Jacobian):
            return self._dx._rmatmat(U, order)
        return self._dx_vec(order).conj().T @ U

    def _matmat(self, V: np.ndarray, order: str) -> np.ndarray:
        return self._base._matmat(V, order) + self._W @ self._dx_matmat(V, order)

    def _rmatmat(self, U: np.ndarray, order: str) -> np.ndarray:
        return self._base._rmatmat(U, order) + self._dx_rmatmat(self._W.conj().T @ U, order)

    def _left(self, M: Factor, dtype: np.dtype) -> TotalJacobian:
        W = np.ascontiguousarray(M.lmul(self._W.astype(dtype)[None, None])[0, 0])
        return TotalJacobian(self._base._left(M, dtype), W, self._dx)
