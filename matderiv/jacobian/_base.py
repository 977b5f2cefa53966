"""The Jacobian interface: shapes, argument checks and output allocation for every form.

A Jacobian of f (shape f_shape, per sample) with respect to W (W_shape) has the tensor
shape f_shape + W_shape (numerator layout), W_shape + f_shape (denominator), a leading B
when batched, and the vectorised form df/dvec(W) of shape (B*prod(f_shape), prod(W_shape))
with samples stacked in rows. Subclasses supply the numerics through the hooks at the end.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike
from scipy.sparse.linalg import LinearOperator

from .. import _memory
from .. import _validation as v
from ._factor import Factor, Temp
from ._operator import JacobianOperator
from .._docs import doc, jacobian as DJ, jacobian_forms as D

LAYOUTS = ("numerator", "denominator")
ORDERS = ("F", "C")
FORMATS = ("csr", "csc", "coo")

DENSE_HINT = "Use the lazy Jacobian (jvp, vjp, aslinearoperator) or tosparse() instead of a dense form."
SPARSE_HINT = "Use the lazy Jacobian (jvp, vjp, aslinearoperator) instead."


@doc(DJ.JACOBIAN)
class Jacobian(ABC):
    dtype: np.dtype
    _samples: int  # S: B when batched, else 1
    _batched: bool

    # --- shapes ------------------------------------------------------------------
    @property
    @abstractmethod
    @doc(D.F_SHAPE)
    def f_shape(self) -> tuple[int, ...]:
        ...

    @property
    @abstractmethod
    @doc(D.W_SHAPE)
    def W_shape(self) -> tuple[int, int]:
        ...

    @property
    @doc(D.BATCH_SIZE)
    def batch_size(self) -> int | None:
        return self._samples if self._batched else None

    @property
    @doc(D.SHAPE)
    def shape(self) -> tuple[int, ...]:
        return self._lead + self.f_shape + self.W_shape

    @property
    @doc(D.NDIM)
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def _lead(self) -> tuple[int, ...]:
        return (self._samples,) if self._batched else ()

    @property
    def _f_size(self) -> int:
        return math.prod(self.f_shape)

    def _vec_shape(self) -> tuple[int, int]:
        return (self._samples * self._f_size, math.prod(self.W_shape))

    def _tensor_shape(self, layout: str) -> tuple[int, ...]:
        if layout == "numerator":
            return self._lead + self.f_shape + self.W_shape
        return self._lead + self.W_shape + self.f_shape

    # --- dense forms ---------------------------------------------------------------
    @doc(D.TOARRAY)
    def toarray(
        self,
        layout: str = "numerator",
        *,
        out: np.ndarray | None = None,
        max_bytes: int | None = None,
        n_threads: int | None = None,
    ) -> np.ndarray:
        v.check_choice(layout, "layout", LAYOUTS)
        shape = self._tensor_shape(layout)
        out, zeroed = self._output(out, shape, "toarray", max_bytes)
        self._fill_tensor(out, layout, v.n_threads_value(n_threads), zeroed)
        return out

    @doc(D.TOVEC)
    def tovec(
        self,
        order: str = "F",
        *,
        out: np.ndarray | None = None,
        max_bytes: int | None = None,
        n_threads: int | None = None,
    ) -> np.ndarray:
        v.check_choice(order, "order", ORDERS)
        out, zeroed = self._output(out, self._vec_shape(), "tovec", max_bytes)
        self._fill_vec(out, order, v.n_threads_value(n_threads), zeroed)
        return out

    @doc(D.TOSPARSE)
    def tosparse(
        self,
        format: str = "csr",
        order: str = "F",
        *,
        max_bytes: int | None = None,
        n_threads: int | None = None,
    ) -> sp.csr_array | sp.csc_array | sp.coo_array:
        v.check_choice(format, "format", FORMATS)
        v.check_choice(order, "order", ORDERS)
        return self._sparse(format, order, max_bytes, v.n_threads_value(n_threads))

    def _output(
        self, out: np.ndarray | None, shape: tuple[int, ...], what: str, max_bytes: int | None
    ) -> tuple[np.ndarray, bool]:
        """The array to fill, and whether it is known to hold zeros already."""
        if out is not None:
            return v.check_out(out, shape, self.dtype, self._inputs()), False
        _memory.check_output_bytes(
            [(shape, self.dtype)] + self._scratch(), what=what, max_bytes=max_bytes, hint=DENSE_HINT
        )
        if math.prod(shape) * self.dtype.itemsize >= _memory.FRESH_ZEROS_BYTES:
            return np.zeros(shape, dtype=self.dtype), True
        return np.empty(shape, dtype=self.dtype), False

    def _sparse_arrays(
        self, format: str, nnz: int, max_bytes: int | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Empty data, indices and pointers (CSR/CSC) or row indices (COO) of tosparse,
        after the memory guard; one index dtype for all (int32 when every index fits)."""
        rows, cols = self._vec_shape()
        idx = v.index_dtype(max(nnz, rows, cols))
        ptr_len = {"csr": rows + 1, "csc": cols + 1, "coo": nnz}[format]
        _memory.check_output_bytes(
            [((nnz,), self.dtype), ((nnz,), idx), ((ptr_len,), idx)] + self._scratch(sparse=True),
            what="tosparse",
            max_bytes=max_bytes,
            hint=SPARSE_HINT,
        )
        return np.empty(nnz, dtype=self.dtype), np.empty(nnz, dtype=idx), np.empty(ptr_len, dtype=idx)

    # --- products --------------------------------------------------------------------
    @doc(D.JVP)
    def jvp(self, dW: ArrayLike) -> np.ndarray:
        arr = v.as_array(dW, "dW", 2)
        v.check_shape(arr, "dW", self.W_shape)
        dtype = np.result_type(self.dtype, v.common_dtype({"dW": arr}))
        res = self._jvp(v.contiguous(arr, dtype), dtype)  # (S, f_size)
        return res.reshape(self._lead + self.f_shape)

    @doc(D.VJP)
    def vjp(
        self,
        v_: ArrayLike,
        *,
        out: np.ndarray | None = None,
        max_bytes: int | None = None,
        n_threads: int | None = None,
    ) -> np.ndarray:
        arr = v.as_array(v_, "v", len(self._lead + self.f_shape))
        v.check_shape(arr, "v", self._lead + self.f_shape)
        dtype = np.result_type(self.dtype, v.common_dtype({"v": arr}))
        shape = self._lead + self.W_shape
        if out is not None:
            out = v.check_out(out, shape, dtype, self._inputs() + (arr,))
        else:
            _memory.check_output_bytes([(shape, dtype)], what="vjp", max_bytes=max_bytes, hint="")
            out = np.empty(shape, dtype=dtype)
        vs = v.contiguous(arr, dtype).reshape(self._samples, self._f_size)
        self._vjp(vs, out.reshape((self._samples,) + self.W_shape), v.n_threads_value(n_threads))
        return out

    @doc(D.ASLINEAROPERATOR)
    def aslinearoperator(self, order: str = "F") -> LinearOperator:
        return JacobianOperator(self, v.check_choice(order, "order", ORDERS))

    @doc(D.LEFT)
    def left(self, M: Any) -> Jacobian:
        M_, m_dtype = v.check_left(M, self.f_shape, self.batch_size, self.shape)
        dtype = np.result_type(self.dtype, m_dtype)
        return self._left(Factor.matrix(M_, dtype), dtype)

    # --- subclass hooks ------------------------------------------------------------------
    @abstractmethod
    def _inputs(self) -> tuple[np.ndarray, ...]:
        """The stored arrays (an out= must not overlap them)."""

    @abstractmethod
    def _scratch(self, sparse: bool = False) -> list[Temp]:
        """Temporaries a dense (or, with sparse=True, a sparse) form needs besides its
        output (counted against max_bytes)."""

    @abstractmethod
    def _fill_tensor(self, out: np.ndarray, layout: str, n_threads: int, zeroed: bool) -> None:
        """Write toarray(layout) into out (zeroed: out holds zeros already)."""

    @abstractmethod
    def _fill_vec(self, out: np.ndarray, order: str, n_threads: int, zeroed: bool) -> None:
        """Write tovec(order) into out."""

    @abstractmethod
    def _sparse(self, format: str, order: str, max_bytes: int | None, n_threads: int) -> Any:
        """tosparse(format, order), allocated through _sparse_arrays."""

    @abstractmethod
    def _jvp(self, dW: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """(S, f_size)."""

    @abstractmethod
    def _vjp(self, vs: np.ndarray, out: np.ndarray, n_threads: int) -> None:
        """out (S,) + W_shape = the pull-back of vs (S, f_size)."""

    @abstractmethod
    def _matmat(self, V: np.ndarray, order: str) -> np.ndarray:
        """tovec(order) @ V for V (prod(W_shape), K)."""

    @abstractmethod
    def _rmatmat(self, U: np.ndarray, order: str) -> np.ndarray:
        """tovec(order)^H @ U for U (S*f_size, K)."""

    @abstractmethod
    def _left(self, M: Factor, dtype: np.dtype) -> Jacobian:
        """The Jacobian of M @ f, in dtype."""


def assemble(cls: type, shape: tuple[int, int], data: np.ndarray, indices: np.ndarray, indptr: np.ndarray) -> Any:
    """A csr_array/csc_array that uses the given canonical arrays without copying them.

    scipy narrows int64 index arrays whose values fit int32 (a copy); the index-dtype
    rule of matderiv decides instead, so the arrays built here are put back.
    """
    A = cls((data, indices, indptr), shape=shape, copy=False)
    if A.indices.dtype != indices.dtype:
        A.indices, A.indptr = indices, indptr
    A.has_canonical_format = True
    return A


def assemble_coo(shape: tuple[int, int], data: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> sp.coo_array:
    """A canonical coo_array (row-major sorted, no duplicates) from ready arrays."""
    A = sp.coo_array(shape, dtype=data.dtype)
    A.data, A.coords = data, (rows, cols)
    A.has_canonical_format = True
    return A
