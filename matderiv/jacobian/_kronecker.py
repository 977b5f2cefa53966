"""The Kronecker family: Jacobians of f_s = A_s @ W @ B_s, and their left products.

With A (n, p), W (p, q) and B (q, k), df_ij/dW_ab = A_ia B_bj: the tensor (n, k, p, q),
and every form is a Kronecker product of two factors, per sample s:

    vec F (column-major vec of f and of W)   B^T (x) A
    vec C (row-major vec) and the tensor      A (x) B^T      (n*k, p*q)
    denominator layout (p, q, n, k)           A^T (x) B      (p*q, n*k)

d(W @ x)/dW is A = I, B = x as a column; d(x @ W)/dW is A = x as a row, B = I. The chain
rule through a later map M (f -> M @ f) multiplies A on the left (B on the right by M^T
when f is the row vector x @ W). A factor may be an identity (only its size is kept),
a dense array shared by every sample or given per sample, a scipy sparse matrix, or a
lazy product of such factors (see _factor).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from .. import _memory
from .. import _validation as v
from .._kernels import _kron, _outer
from ._base import SPARSE_HINT, Jacobian, assemble, assemble_coo
from ._factor import Factor, FactorChain, Temp, compose
from .._docs import doc, jacobian as D


@doc(D.KRONECKER)
class KroneckerJacobian(Jacobian):
    def __init__(
        self, A: Factor | FactorChain, B: Factor | FactorChain, samples: int, batched: bool, squeeze: str | None,
        dtype: np.dtype,
    ):
        self._A = A
        self._B = B
        self._samples = samples
        self._batched = batched
        self._squeeze = squeeze  # None: f is (n, k); "k": f is (n,) (k = 1); "n": f is (k,) (n = 1)
        self.dtype = np.dtype(dtype)

    @property
    def f_shape(self) -> tuple[int, ...]:
        n, k = self._A.shape[0], self._B.shape[1]
        if self._squeeze is None:
            return (n, k)
        return (n,) if self._squeeze == "k" else (k,)

    @property
    def W_shape(self) -> tuple[int, int]:
        return (self._A.shape[1], self._B.shape[0])

    def __repr__(self) -> str:
        batch = f", batch of {self._samples}" if self._batched else ""
        return (
            f"<KroneckerJacobian d(A @ W @ B)/dW: shape {self.shape}, {self.dtype.name}{batch}, "
            f"A {self._A.describe()}, B {self._B.describe()}, lazy: stores A and B only>"
        )

    def _inputs(self) -> tuple[np.ndarray, ...]:
        return self._A.arrays() + self._B.arrays()

    def _scratch(self, sparse: bool = False) -> list[Temp]:
        # a sparse factor densified for the dense forms, a lazy product multiplied out
        return self._A.scratch(self.dtype, sparse) + self._B.scratch(self.dtype, sparse)

    # --- forms: one Kronecker product per sample -------------------------------------
    def _factors(self, form: str, transposed: bool = False) -> tuple[Factor, Factor]:
        """(P, Q) with the form's 2-D per-sample matrix P (x) Q (see the module docstring);
        transposed: (P^T, Q^T), whose product is that matrix transposed. Lazy products are
        multiplied out: the caller has counted _scratch against its memory limit."""
        A, B = self._A, self._B
        if form == "F":
            P, Q = B.T(), A
        elif form == "denominator":
            P, Q = A.T(), B
        else:  # "C" and "numerator"
            P, Q = A, B.T()
        if transposed:
            P, Q = P.T(), Q.T()
        return P.multiplied(), Q.multiplied()

    def _write(self, out2d: np.ndarray, form: str, mode: int, n_threads: int, transposed: bool = False) -> None:
        """Kernel mode 0: write out2d in full; 1: out2d holds zeros; 2: add onto out2d."""
        P, Q = self._factors(form, transposed)
        (r1, c1), (r2, c2) = P.shape, Q.shape
        _kron.kron_dense(
            P.dense3(self.dtype), Q.dense3(self.dtype), out2d, r1, c1, r2, c2,
            P.is_eye, Q.is_eye, mode, n_threads,
        )

    def _fill_vec(self, out: np.ndarray, order: str, n_threads: int, zeroed: bool) -> None:
        self._write(out, order, 1 if zeroed else 0, n_threads)

    def _fill_tensor(self, out: np.ndarray, layout: str, n_threads: int, zeroed: bool) -> None:
        f_size, W_size = self._f_size, math.prod(self.W_shape)
        rows, cols = (f_size, W_size) if layout == "numerator" else (W_size, f_size)
        self._write(out.reshape(self._samples * rows, cols), layout, 1 if zeroed else 0, n_threads)

    def _add_to_vec(self, out2d: np.ndarray, order: str, n_threads: int, transposed: bool = False) -> None:
        """out2d += tovec(order) (or its transpose, for a single sample), in place."""
        self._write(out2d, order, 2, n_threads, transposed)

    def _sparse(self, format: str, order: str, max_bytes: int | None, n_threads: int) -> Any:
        rows, cols = self._vec_shape()
        # the temporaries of multiplying out lazy products, before the output (whose size
        # is known once they are) and they together in _sparse_arrays
        _memory.check_output_bytes(self._scratch(sparse=True), what="tosparse", max_bytes=max_bytes, hint=SPARSE_HINT)
        P, Q = self._factors(order, transposed=format == "csc")
        nnz = self._samples * P.nnz * Q.nnz
        data, indices, ptr = self._sparse_arrays(format, nnz, max_bytes)
        (r1, c1), (r2, c2) = P.shape, Q.shape
        row_of = ptr if format == "coo" else ptr[:0]
        _kron.kron_csr(
            *P.csr_parts(self.dtype), *Q.csr_parts(self.dtype), r1, c1, r2, c2, P.is_eye, Q.is_eye,
            self._samples, format == "csc", data, indices, ptr[:0] if format == "coo" else ptr, row_of,
            n_threads,
        )
        if format == "coo":
            return assemble_coo((rows, cols), data, ptr, indices)
        return assemble(sp.csc_array if format == "csc" else sp.csr_array, (rows, cols), data, indices, ptr)

    # --- products ------------------------------------------------------------------------
    def _forward(self, X: np.ndarray) -> np.ndarray:
        """A_s @ X_c @ B_s for X (K, p, q): (K, S, n, k) (a batched Jacobian has a factor
        per sample, so the products have the samples' axis already)."""
        return self._A.lmul(self._B.rmul(X[:, None]))

    def _jvp(self, dW: np.ndarray, dtype: np.dtype) -> np.ndarray:
        return self._forward(dW[None])[0].reshape(self._samples, self._f_size)

    def _vjp(self, vs: np.ndarray, out: np.ndarray, n_threads: int) -> None:
        n, k = self._A.shape[0], self._B.shape[1]
        G = self._B.T().rmul(self._A.T().lmul(vs.reshape(1, self._samples, n, k)))
        out[...] = G[0]

    def _matmat(self, V: np.ndarray, order: str) -> np.ndarray:
        K = V.shape[1]
        p, q = self.W_shape
        X = V.T.reshape(K, q, p).transpose(0, 2, 1) if order == "F" else V.T.reshape(K, p, q)
        F = self._forward(X)
        if order == "F":
            F = F.transpose(0, 1, 3, 2)
        return F.reshape(K, -1).T

    def _rmatmat(self, U: np.ndarray, order: str) -> np.ndarray:
        K = U.shape[1]
        n, k = self._A.shape[0], self._B.shape[1]
        S = self._samples
        X = U.T.reshape(K, S, k, n).transpose(0, 1, 3, 2) if order == "F" else U.T.reshape(K, S, n, k)
        G = self._B.T(conj=True).rmul(self._A.T(conj=True).lmul(X), sum_samples=True)  # (K, p, q)
        if order == "F":
            G = G.transpose(0, 2, 1)
        return G.reshape(K, -1).T

    def _left(self, M: Factor, dtype: np.dtype) -> KroneckerJacobian:
        """M @ f composes M into A (into B as M^T when f is a row), lazily where M @ A is larger."""
        A, B = self._A.astype(dtype), self._B.astype(dtype)
        if self._squeeze == "n":  # f is the row vector x @ W B: M @ f = (f^T M^T)^T
            B = compose(B, M.T())
        else:
            A = compose(M, A)
        return KroneckerJacobian(A, B, self._samples, self._batched, self._squeeze, dtype)


@doc(D.STRUCTURED)
class StructuredJacobian(KroneckerJacobian):
    n: int
    m: int
    convention: str  # "Wx" or "xW"

    def __init__(self, x: np.ndarray, n: int, convention: str, batched: bool):
        self._x = x  # (S, m), C-contiguous, one of the four kernel dtypes
        self._x.flags.writeable = False
        S, self.m = x.shape
        self.n = n
        self.convention = convention
        if convention == "Wx":
            A, B, squeeze = Factor.eye(n), Factor.dense(x.reshape(S, self.m, 1)), "k"
        else:
            A, B, squeeze = Factor.dense(x.reshape(S, 1, self.m)), Factor.eye(n), "n"
        super().__init__(A, B, S, batched, squeeze, x.dtype)

    @property
    @doc(D.X_PROPERTY)
    def x(self) -> np.ndarray:
        return self._x if self._batched else self._x[0]

    def __repr__(self) -> str:
        f = "W @ x" if self.convention == "Wx" else "x @ W"
        batch = f", batch of {self._samples}" if self._batched else ""
        return (
            f"<StructuredJacobian d({f})/dW: shape {self.shape}, {self.dtype.name}{batch}, "
            f"W {self.W_shape}, lazy: stores x only>"
        )

    # products: one GEMV/GEMM on x, or the outer-product kernel, rather than the general
    # Kronecker route (which would add a few broadcasts and copies on these hot paths)
    def _jvp(self, dW: np.ndarray, dtype: np.dtype) -> np.ndarray:
        x = v.contiguous(self._x, dtype)
        return x @ (dW.T if self.convention == "Wx" else dW)

    def _vjp(self, vs: np.ndarray, out: np.ndarray, n_threads: int) -> None:
        x = v.contiguous(self._x, vs.dtype)
        if self.convention == "Wx":
            _outer.outer(vs, x, out, n_threads)
        else:
            _outer.outer(x, vs, out, n_threads)

    def _left_product(self, A: np.ndarray, out: np.ndarray, order: str, transposed: bool) -> None:
        """out = A @ tovec(order), or its transpose, for a single x, by broadcasting:
        no tovec is built. A: (a, n); out: (a, n*m), or (n*m, a) when transposed.

        With y = x: I (x) y^T gives (A @ M)[i, j*m + k] = A[i, j] y_k, and
        y^T (x) I gives (A @ M)[i, j + n*k] = A[i, j] y_k.
        """
        y = self._x[0]
        a, n, m = A.shape[0], self.n, self.m
        if (order == "C") == (self.convention == "Wx"):  # I (x) y^T
            if transposed:
                np.multiply(A.T[:, None, :], y[None, :, None], out=out.reshape(n, m, a))
            else:
                np.multiply(A[:, :, None], y[None, None, :], out=out.reshape(a, n, m))
        elif transposed:
            np.multiply(y[:, None, None], A.T[None, :, :], out=out.reshape(m, n, a))
        else:
            np.multiply(y[None, :, None], A[:, None, :], out=out.reshape(a, m, n))
