"""The Kronecker family: Jacobians of f_s = A_s @ W @ B_s, and their left products.

With A (n, p), W (p, q) and B (q, k), df_ij/dW_ab = A_ia B_bj: the tensor (n, k, p, q),
and every form is a Kronecker product of two factors, per sample s:

    vec F (column-major vec of f and of W)   B^T (x) A
    vec C (row-major vec) and the tensor      A (x) B^T      (n*k, p*q)
    denominator layout (p, q, n, k)           A^T (x) B      (p*q, n*k)

d(W @ x)/dW is A = I, B = x as a column; d(x @ W)/dW is A = x as a row, B = I. The chain
rule through a later map M (f -> M @ f) multiplies A on the left (B on the right by M^T
when f is the row vector x @ W). A factor may be an identity (only its size is kept),
a dense array shared by every sample or given per sample, or a scipy sparse matrix.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from .. import _validation as v
from .._kernels import _kron, _outer
from ._base import Jacobian, assemble, assemble_coo


class Factor:
    """One side of A_s @ W @ B_s: an identity ("eye", nothing stored), a dense (S_f, r, c)
    array ("dense", S_f = 1 when shared by every sample) or a canonical csr_array."""

    def __init__(self, kind: str, shape: tuple[int, int], data: Any = None):
        self.kind = kind
        self.shape = shape
        self.data = data
        self.is_eye = kind == "eye"
        self.per_sample = kind == "dense" and data.shape[0] != 1
        self._cache: dict[Any, Any] = {}  # transposes, kernel inputs: a factor never changes

    @classmethod
    def eye(cls, size: int) -> Factor:
        return cls("eye", (size, size))

    @classmethod
    def dense(cls, arr: np.ndarray) -> Factor:
        return cls("dense", arr.shape[1:], arr)

    @classmethod
    def sparse(cls, mat: Any) -> Factor:
        return cls("sparse", mat.shape, mat)

    @property
    def nnz(self) -> int:
        """Stored entries of one sample's factor: the diagonal of an identity, all of a dense one."""
        r, c = self.shape
        if self.kind == "sparse":
            return self.data.nnz
        return r if self.kind == "eye" else r * c

    def describe(self) -> str:
        r, c = self.shape
        if self.kind == "eye":
            return f"identity ({r})"
        if self.kind == "sparse":
            return f"sparse ({r}, {c}), {self.data.nnz} stored"
        return f"per-sample ({self.data.shape[0]}, {r}, {c})" if self.per_sample else f"dense ({r}, {c})"

    def arrays(self) -> tuple[np.ndarray, ...]:
        if self.kind == "dense":
            return (self.data,)
        if self.kind == "sparse":
            return (self.data.data,)
        return ()

    def astype(self, dtype: np.dtype) -> Factor:
        if self.kind == "eye" or self.data.dtype == dtype:
            return self
        return Factor(self.kind, self.shape, self.data.astype(dtype))

    def T(self, conj: bool = False) -> Factor:
        """The factor transposed (conjugate-transposed with conj=True)."""
        if self.kind == "eye":
            return self
        if ("T", conj) not in self._cache:
            data = self.data.conj() if conj and self.data.dtype.kind == "c" else self.data
            if self.kind == "sparse":
                self._cache["T", conj] = Factor.sparse(sp.csr_array(data.T))
            else:
                self._cache["T", conj] = Factor.dense(data.transpose(0, 2, 1))
        return self._cache["T", conj]

    # --- what the kernels read ------------------------------------------------------
    def dense3(self, dtype: np.dtype) -> np.ndarray:
        """(S_f, r, c) C-contiguous values (a sparse factor densified; empty for an identity)."""
        if self.kind == "sparse":  # not kept: it may be large
            return self.data.toarray()[None].astype(dtype, copy=False)
        if ("dense3", dtype) not in self._cache:
            empty = self.kind == "eye"
            self._cache["dense3", dtype] = np.empty((1, 0, 0), dtype) if empty else v.contiguous(self.data, dtype)
        return self._cache["dense3", dtype]

    def csr_parts(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """int64 row pointers, int64 sorted columns and (S_f, nnz) values (empty for an identity)."""
        if ("csr", dtype) in self._cache:
            return self._cache["csr", dtype]
        r, c = self.shape
        if self.kind == "eye":
            empty = np.empty(0, dtype=np.int64)
            parts = empty, empty, np.empty((1, 0), dtype=dtype)
        elif self.kind == "sparse":
            m = self.data
            parts = m.indptr.astype(np.int64), m.indices.astype(np.int64), v.contiguous(m.data, dtype)[None, :]
        else:
            ptr = np.arange(r + 1, dtype=np.int64) * c
            idx = np.tile(np.arange(c, dtype=np.int64), r)
            parts = ptr, idx, v.contiguous(self.data, dtype).reshape(self.data.shape[0], r * c)
        self._cache["csr", dtype] = parts
        return parts

    # --- products (each a GEMM or a batched GEMM) -------------------------------------
    def lmul(self, X: np.ndarray) -> np.ndarray:
        """F_s @ X_s for X (K, S_x, c, t): (K, S', r, t)."""
        if self.kind == "eye":
            return X
        if self.per_sample:  # einsum: numpy's stacked matmul is slower for these small products
            X = np.ascontiguousarray(X)  # einsum is many times slower on a strided operand
            if X.shape[1] == 1:
                return np.einsum("src,kct->ksrt", self.data, X[:, 0])
            return np.einsum("src,ksct->ksrt", self.data, X)
        K, Sx, c, t = X.shape
        r = self.shape[0]
        M = self.data if self.kind == "sparse" else self.data[0]
        R = np.asarray(M @ X.transpose(2, 0, 1, 3).reshape(c, K * Sx * t))
        return R.reshape(r, K, Sx, t).transpose(1, 2, 0, 3)

    def rmul(self, X: np.ndarray, sum_samples: bool = False) -> np.ndarray:
        """X_s @ F_s for X (K, S_x, t, r): (K, S', t, c), or with sum_samples the sum over
        samples, (K, t, c)."""
        if self.kind == "eye":
            return X.sum(axis=1) if sum_samples else X
        K, Sx, t, r = X.shape
        c = self.shape[1]
        if self.per_sample:
            S = self.data.shape[0]
            if Sx == 1:  # one GEMM against every sample's factor, rows (s, c): sample-major
                R = _gemm(self._stacked_T(), X.reshape(K * t, r).T)
                return R.reshape(S, c, K, t).transpose(2, 0, 3, 1)
            if sum_samples:  # one GEMM over (s, r)
                X2 = X.transpose(1, 3, 0, 2).reshape(Sx * r, K * t)
                return (X2.T @ self.data.reshape(S * r, c)).reshape(K, t, c)
            return np.matmul(X, self.data)
        if sum_samples:
            X, Sx = X.sum(axis=1, keepdims=True), 1
        X2 = X.reshape(K * Sx * t, r)
        R = (self.data.T @ X2.T).T if self.kind == "sparse" else X2 @ self.data[0]
        R = np.asarray(R).reshape(K, Sx, t, c)
        return R[:, 0] if sum_samples else R

    def _stacked_T(self) -> np.ndarray:
        """The per-sample factors transposed and stacked, (S*c, r) (kept: products reuse it)."""
        if "stacked_T" not in self._cache:
            S, r, c = self.data.shape
            self._cache["stacked_T"] = np.ascontiguousarray(self.data.transpose(0, 2, 1).reshape(S * c, r))
        return self._cache["stacked_T"]


def _gemm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for 2-D arrays; with an inner dimension of 1 (an outer product) by broadcasting,
    which numpy's matmul computes in a loop many times slower than BLAS."""
    return a * b if a.shape[1] == 1 else a @ b


def compose(F: Factor, G: Factor) -> Factor:
    """The factor F @ G (sample by sample)."""
    if G.is_eye:
        return F
    if F.is_eye:
        return G
    if F.kind == "sparse" and G.kind == "sparse":
        prod = sp.csr_array(F.data @ G.data)
        prod.sum_duplicates()
        return Factor.sparse(prod)
    if G.kind == "dense":
        return Factor.dense(np.ascontiguousarray(F.lmul(G.data[None])[0]))
    return Factor.dense(np.ascontiguousarray(G.rmul(F.data[None])[0]))


class KroneckerJacobian(Jacobian):
    """Jacobian of f_s = A_s @ W @ B_s with respect to W: df_ij/dW_ab = A_ia B_bj.

    Stores A and B only (lazy). Build it with jacobian_awb, or as J.left(M) of any
    Kronecker Jacobian (jacobian_wx and jacobian_xw are the special cases).
    """

    def __init__(self, A: Factor, B: Factor, samples: int, batched: bool, squeeze: str | None, dtype: np.dtype):
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

    def _scratch(self, sparse: bool = False) -> list[tuple[tuple[int, ...], np.dtype]]:
        # a sparse factor is densified for the dense forms (and read as it is for the sparse ones)
        if sparse:
            return []
        return [(f.shape, self.dtype) for f in (self._A, self._B) if f.kind == "sparse"]

    # --- forms: one Kronecker product per sample -------------------------------------
    def _factors(self, form: str, transposed: bool = False) -> tuple[Factor, Factor]:
        """(P, Q) with the form's 2-D per-sample matrix P (x) Q (see the module docstring);
        transposed: (P^T, Q^T), whose product is that matrix transposed."""
        A, B = self._A, self._B
        if form == "F":
            P, Q = B.T(), A
        elif form == "denominator":
            P, Q = A.T(), B
        else:  # "C" and "numerator"
            P, Q = A, B.T()
        return (P.T(), Q.T()) if transposed else (P, Q)

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
        A, B = self._A.astype(dtype), self._B.astype(dtype)
        if self._squeeze == "n":  # f is the row vector x @ W B: M @ f = (f^T M^T)^T
            B = compose(B, M.T())
        else:
            A = compose(M, A)
        return KroneckerJacobian(A, B, self._samples, self._batched, self._squeeze, dtype)


class StructuredJacobian(KroneckerJacobian):
    """d(W @ x)/dW or d(x @ W)/dW, stored as x alone (lazy, O(B*m) memory).

    Build it with jacobian_wx or jacobian_xw. The Kronecker factors are A = I, B = x
    (Wx) and A = x, B = I (xW).
    """

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
    def x(self) -> np.ndarray:
        """The stored x (read-only): (m,), or (B, m) when batched."""
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


def check_left(M: Any, J: Jacobian) -> tuple[Factor, np.dtype]:
    """M of J.left(M) as a factor: (r, n) dense or sparse, or (B, r, n) per sample on a
    batched J, with n = f's length (its rows when f is a matrix); and the result dtype."""
    n = J.f_shape[0]
    if sp.issparse(M):
        if M.ndim != 2:
            raise ValueError(f"M: expected a 2-D sparse matrix (r, {n}), got {M.ndim}-D with shape {M.shape}")
        mdtype = v.target_dtype(M.dtype, "M", allow_complex=True)
        shape = M.shape
    else:
        arr = v.as_array(M, "M", (2, 3))
        mdtype = v.common_dtype({"M": arr})
        shape = arr.shape
        if arr.ndim == 3 and not J._batched:
            raise ValueError(
                f"M: a per-sample M of shape (B, r, n) needs a batched Jacobian, got shape {shape} "
                f"for a Jacobian of shape {J.shape}"
            )
        if arr.ndim == 3 and shape[0] != J._samples:
            raise ValueError(f"M: expected one matrix per sample, (B, r, n) with B = {J._samples}, got shape {shape}")
    if shape[-1] != n:
        want = f"(B, r, {n})" if len(shape) == 3 else f"(r, {n})"
        raise ValueError(f"M: expected shape {want} to multiply f of shape {J.f_shape}, got {shape}")
    dtype = np.result_type(J.dtype, mdtype)
    if sp.issparse(M):
        mat = sp.csr_array(M, dtype=dtype, copy=True)
        mat.sum_duplicates()
        return Factor.sparse(mat), dtype
    data = v.owned(arr, dtype)
    return Factor.dense(data if data.ndim == 3 else data[None]), dtype


def _factor_arg(X: Any, name: str) -> tuple[Any, np.dtype | None]:
    """A or B of jacobian_awb checked: None, a scipy sparse matrix or a 2-D array."""
    if X is None:
        return None, None
    if sp.issparse(X):
        if X.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D array or sparse matrix, got {X.ndim}-D with shape {X.shape}")
        return X, v.target_dtype(X.dtype, name, allow_complex=True)
    arr = v.as_array(X, name, 2)
    return arr, v.common_dtype({name: arr})


def _as_factor(X: Any, dtype: np.dtype) -> Factor:
    if sp.issparse(X):
        mat = sp.csr_array(X, dtype=dtype, copy=True)
        mat.sum_duplicates()
        return Factor.sparse(mat)
    return Factor.dense(v.owned(X, dtype)[None])


def check_W_shape(W_shape: Any) -> tuple[int, int] | None:
    if W_shape is None:
        return None
    if not isinstance(W_shape, (tuple, list)) or len(W_shape) != 2:
        raise TypeError(f"W_shape: expected a pair (p, q) of non-negative ints, got {W_shape!r}")
    return (v.check_size(W_shape[0], "W_shape[0]"), v.check_size(W_shape[1], "W_shape[1]"))


def jacobian_awb(A: Any, B: Any, *, W_shape: tuple[int, int] | None = None) -> KroneckerJacobian:
    """Jacobian of f(W) = A @ W @ B with respect to W (p, q): df_ij/dW_ab = A_ia B_bj.

    A (n, p) and B (q, k): 2-D arrays, scipy sparse matrices or arrays, or None for an
    identity (then W_shape = (p, q) gives its size). Tensor (n, k, p, q); tovec is
    B^T (x) A (order "F") or A (x) B^T (order "C"); tosparse stores nnz(A)*nnz(B) entries
    (an identity its diagonal, a dense array every entry). Lazy: A and B are copied,
    identities are never built. Complex factors are holomorphic: no conjugation.
    """
    shape = check_W_shape(W_shape)
    A_, a_dtype = _factor_arg(A, "A")
    B_, b_dtype = _factor_arg(B, "B")
    for name, X, axis, w_axis in (("A", A_, 1, 0), ("B", B_, 0, 1)):
        if X is None and shape is None:
            raise ValueError(f"W_shape: needed when {name} is None (the identity takes its size from W), got None")
        if X is not None and shape is not None and X.shape[axis] != shape[w_axis]:
            want = f"(n, {shape[0]})" if name == "A" else f"({shape[1]}, k)"
            raise ValueError(f"{name}: expected shape {want} to match W_shape {shape}, got {X.shape}")
    if A_ is not None and B_ is not None and shape is None:
        shape = (A_.shape[1], B_.shape[0])
    dtypes = [d for d in (a_dtype, b_dtype) if d is not None]
    dtype = np.result_type(*dtypes) if dtypes else np.dtype(np.float64)
    Af = Factor.eye(shape[0]) if A_ is None else _as_factor(A_, dtype)
    Bf = Factor.eye(shape[1]) if B_ is None else _as_factor(B_, dtype)
    return KroneckerJacobian(Af, Bf, 1, False, None, dtype)


def structured(x: Any, n: Any, convention: str) -> StructuredJacobian:
    arr = v.as_array(x, "x", (1, 2))
    n = v.check_size(n, "n")
    dtype = v.common_dtype({"x": arr})
    batched = arr.ndim == 2
    x2 = v.owned(arr, dtype) if batched else v.owned(arr, dtype)[None, :]
    return StructuredJacobian(x2, n, convention, batched)


def jacobian_xw(x: Any, n: int) -> StructuredJacobian:
    """Jacobian of f(W) = x @ W with respect to W (m, n): T[j, a, b] = x_a * delta_jb.

    x: (m,) or a batch (B, m); n: the number of columns of W. Tensor shape (n, m, n).
    x is copied; complex x is treated as holomorphic (no conjugation).
    """
    return structured(x, n, "xW")
