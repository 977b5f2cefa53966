"""Kronecker factors: one side, A_s or B_s, of f_s = A_s @ W @ B_s, and lazy products of them.

A Factor is an identity (its size only), a dense (S_f, r, c) array (S_f = 1 when every
sample shares it) or a canonical csr_array; lmul (F_s @ X_s) and rmul (X_s @ F_s) are GEMMs
or batched GEMMs. compose(F, G) multiplies F @ G out where the product holds no more entries
than F and G together and keeps a FactorChain, applied factor by factor, where it would hold
more: (N, 1) @ (1, N) stays 2N entries, not N^2.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np
import scipy.sparse as sp

from .. import _validation as v

#: (shape, dtype) of one temporary array, as check_output_bytes counts them.
Temp = tuple[tuple[int, ...], Any]


class Factor:
    """One side of A_s @ W @ B_s: an identity ("eye", nothing stored), a dense (S_f, r, c)
    array ("dense", S_f = 1 when shared by every sample) or a canonical csr_array."""

    def __init__(self, kind: str, shape: tuple[int, int], data: Any = None):
        self.kind = kind
        self.shape = shape
        self.data = data
        self.is_eye = kind == "eye"
        self.samples = data.shape[0] if kind == "dense" else 1
        self.per_sample = self.samples != 1
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

    @classmethod
    def matrix(cls, X: Any, dtype: np.dtype) -> Factor:
        """A private copy in dtype of a checked (r, c) or per-sample (S, r, c) array, or of a
        scipy sparse matrix (as a canonical csr_array)."""
        if sp.issparse(X):
            mat = sp.csr_array(X, dtype=dtype, copy=True)
            mat.sum_duplicates()
            return cls.sparse(mat)
        data = v.owned(X, dtype)
        return cls.dense(data if data.ndim == 3 else data[None])

    @property
    def parts(self) -> tuple[Factor]:
        """The factor as a FactorChain of one."""
        return (self,)

    @property
    def nnz(self) -> int:
        """Stored entries of one sample's factor: the diagonal of an identity, all of a dense one."""
        r, c = self.shape
        if self.kind == "sparse":
            return self.data.nnz
        return r if self.kind == "eye" else r * c

    @property
    def entries(self) -> int:
        """Stored entries over all samples."""
        return self.samples * self.nnz

    def describe(self) -> str:
        r, c = self.shape
        if self.kind == "eye":
            return f"identity ({r})"
        if self.kind == "sparse":
            return f"sparse ({r}, {c}), {self.data.nnz} stored"
        return f"per-sample ({self.samples}, {r}, {c})" if self.per_sample else f"dense ({r}, {c})"

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

    def multiplied(self) -> Factor:
        """The factor as the kernels read it (a FactorChain multiplies itself out)."""
        return self

    def scratch(self, dtype: np.dtype, sparse: bool) -> list[Temp]:
        """Temporaries the kernels' reading needs: a sparse factor densified for the dense forms."""
        return [(self.shape, dtype)] if self.kind == "sparse" and not sparse else []

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
            parts = ptr, idx, v.contiguous(self.data, dtype).reshape(self.samples, r * c)
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
            S = self.samples
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


class FactorChain:
    """The lazy product P_1 @ P_2 @ ... of Factors (no identity among them), applied factor
    by factor; multiplied out (multiplied) only for the forms that read its entries, which
    count scratch() against their memory limit first. A transposed chain multiplies from
    the right, so that its partial products are the transposes of the chain's own and
    the chain's scratch() counts them."""

    def __init__(self, parts: tuple[Factor, ...], from_right: bool = False):
        self.parts = parts
        self.shape = (parts[0].shape[0], parts[-1].shape[1])
        self._from_right = from_right
        self._cache: dict[Any, FactorChain] = {}

    def describe(self) -> str:
        return "lazy product " + " @ ".join(p.describe() for p in self.parts)

    def arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(a for p in self.parts for a in p.arrays())

    def astype(self, dtype: np.dtype) -> FactorChain:
        return FactorChain(tuple(p.astype(dtype) for p in self.parts), self._from_right)

    def T(self, conj: bool = False) -> FactorChain:
        if ("T", conj) not in self._cache:
            parts = tuple(p.T(conj) for p in reversed(self.parts))
            self._cache["T", conj] = FactorChain(parts, not self._from_right)
        return self._cache["T", conj]

    def lmul(self, X: np.ndarray) -> np.ndarray:
        for P in reversed(self.parts):
            X = P.lmul(X)
        return X

    def rmul(self, X: np.ndarray, sum_samples: bool = False) -> np.ndarray:
        for P in self.parts[:-1]:
            X = P.rmul(X)
        return self.parts[-1].rmul(X, sum_samples)

    def multiplied(self) -> Factor:
        if self._from_right:
            return functools.reduce(lambda acc, P: _multiply(P, acc), self.parts[-2::-1], self.parts[-1])
        return functools.reduce(_multiply, self.parts)

    def scratch(self, dtype: np.dtype, sparse: bool) -> list[Temp]:
        """What multiplied() and the kernels' reading of the product allocate: every partial
        product (a dense one twice: the GEMM's result and, where that is not sample-major, its
        copy; a sparse one at its bound of entries, with int64 indices), then a sparse product
        densified for the dense forms, or the int64 indices the sparse forms' kernel reads."""
        first = self.parts[0]
        rows = first.shape[0]
        counts = _column_counts(first) if first.kind == "sparse" else None
        samples, temps = first.samples, []
        for P in self.parts[1:]:
            ptr = (max(rows, P.shape[1]) + 1,)
            if counts is not None and P.kind == "sparse":
                counts = _column_bounds(counts, rows, P)
                nnz = int(counts.sum())
                temps += [((nnz,), dtype), ((nnz,), np.int64), (ptr, np.int64)]
            else:
                counts, samples = None, max(samples, P.samples)
                temps += [((samples, rows, P.shape[1]), dtype)] * 2
        if counts is None:
            return temps + ([((rows * self.shape[1],), np.int64)] if sparse else [])
        return temps + ([((nnz,), np.int64), (ptr, np.int64)] if sparse else [(self.shape, dtype)])


def _column_counts(F: Factor) -> np.ndarray:
    """Stored entries in each column of a sparse factor."""
    return np.bincount(F.data.indices, minlength=F.shape[1])


def _column_bounds(counts: np.ndarray, rows: int, G: Factor) -> np.ndarray:
    """Bounds on the entries in each column of X @ G for a sparse G and an X of `rows` rows
    with at most counts[k] entries in column k: column j holds at most min(rows, the sum of
    counts[k] over G's entries (k, j))."""
    per_entry = np.repeat(counts, np.diff(G.data.indptr))
    return np.minimum(rows, np.bincount(G.data.indices, weights=per_entry, minlength=G.shape[1]))


def _product_entries(F: Factor, G: Factor) -> int:
    """Entries F @ G holds when multiplied out: every entry when either is dense (per sample
    where either is per sample), at most _column_bounds' sum when both are sparse."""
    if F.kind == "sparse" and G.kind == "sparse":
        return int(_column_bounds(_column_counts(F), F.shape[0], G).sum())
    return max(F.samples, G.samples) * F.shape[0] * G.shape[1]


def _multiply(F: Factor, G: Factor) -> Factor:
    """F @ G multiplied out, sample by sample (neither an identity): sparse when both are."""
    if F.kind == "sparse" and G.kind == "sparse":
        prod = sp.csr_array(F.data @ G.data)
        prod.sum_duplicates()
        return Factor.sparse(prod)
    if G.kind == "dense":
        return Factor.dense(np.ascontiguousarray(F.lmul(G.data[None])[0]))
    return Factor.dense(np.ascontiguousarray(G.rmul(F.data[None])[0]))


def compose(F: Factor | FactorChain, G: Factor | FactorChain) -> Factor | FactorChain:
    """F @ G, sample by sample (not both identities): each pair of neighbouring factors
    multiplied out where the product holds no more entries than the pair, a FactorChain
    of the rest."""
    parts: list[Factor] = []
    for P in F.parts + G.parts:
        if P.is_eye:
            continue
        while parts and _product_entries(parts[-1], P) <= parts[-1].entries + P.entries:
            P = _multiply(parts.pop(), P)
        parts.append(P)
    return parts[0] if len(parts) == 1 else FactorChain(tuple(parts))
