"""The derivative of f = W @ x (or f = x @ W) with respect to the matrix W.

For W of shape (n, m) and x of shape (m,), f = W @ x has the Jacobian

    D[i, a, b] = df_i / dW_ab = delta_ia * x_b            (numerator layout, (n, n, m))

whose vectorised forms are x^T (x) I_n for column-major vec(W) (order="F") and
I_n (x) x^T for row-major vec(W) (order="C").  For the row convention f = x @ W
with W of shape (m, n), df_j / dW_ab = x_a * delta_jb: tensor (n, m, n), vec_F
form I_n (x) x^T and vec_C form x^T (x) I_n.

Jacobians are lazy: construction stores x (O(B*m)); nothing of size n*n*m exists
until toarray/tovec/tosparse is called.  Complex inputs are treated as
holomorphic: no conjugation anywhere except in the LinearOperator's adjoint.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike
from scipy.sparse.linalg import LinearOperator

from . import _validation as v
from ._kernels import _kron, _outer
from ._memory import check_output_bytes

__all__ = ["Jacobian", "StructuredJacobian", "TotalJacobian", "jacobian_wx", "jacobian_xw"]

LAYOUTS = ("numerator", "denominator")
ORDERS = ("F", "C")
FORMATS = ("csr", "csc", "coo")

_DENSE_HINT = (
    "Use the lazy Jacobian (jvp, vjp, aslinearoperator) or tosparse() instead of a dense form."
)
_SPARSE_HINT = "Use the lazy Jacobian (jvp, vjp, aslinearoperator) instead."

# The three row patterns of the Kronecker builders (matderiv/_kernels/_kron.pyx); every
# dense form is one of them over a 2-D view of its output (StructuredJacobian._scatter):
_CONTIGUOUS = "contiguous"  # I (x) x^T: row i holds x at columns i*m .. i*m + m-1
_STRIDED = "strided"  # x^T (x) I: row i holds x at columns i, i + n, i + 2n, ...
_IDENTITY = "identity"  # x_a * I_n blocks (denominator layout of the row convention)

#: Fresh dense outputs at least this large come from np.zeros: calloc hands out pages the
#: OS has zeroed (glibc maps every block of 32 MiB or more), so the kernel only scatters
#: x instead of writing the zeros a second time. Smaller outputs are zeroed by the kernel,
#: in parallel.
_FRESH_ZEROS_BYTES = 32 * 2**20


class Jacobian:
    """Common interface of matderiv Jacobians of f with respect to W.

    Subclasses provide the numerics; this class validates every argument and
    allocates every output.
    """

    n: int
    m: int
    convention: str
    dtype: np.dtype
    _samples: int
    _batched: bool

    # --- shapes ------------------------------------------------------------------
    @property
    def W_shape(self) -> tuple[int, int]:
        """Shape of W: (n, m) for f = W @ x, (m, n) for f = x @ W."""
        return (self.n, self.m) if self.convention == "Wx" else (self.m, self.n)

    @property
    def batch_size(self) -> int | None:
        """B for a batched Jacobian, None for a single x."""
        return self._samples if self._batched else None

    @property
    def shape(self) -> tuple[int, ...]:
        """f.shape + W.shape, with a leading B when batched."""
        return self._lead + (self.n,) + self.W_shape

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def _lead(self) -> tuple[int, ...]:
        return (self._samples,) if self._batched else ()

    def _vec_shape(self) -> tuple[int, int]:
        return (self._samples * self.n, self.n * self.m)

    def _tensor_shape(self, layout: str) -> tuple[int, ...]:
        if layout == "numerator":
            return self._lead + (self.n,) + self.W_shape
        return self._lead + self.W_shape + (self.n,)

    # --- dense forms ---------------------------------------------------------------
    def toarray(
        self,
        layout: str = "numerator",
        *,
        out: np.ndarray | None = None,
        max_bytes: int | None = None,
        n_threads: int | None = None,
    ) -> np.ndarray:
        """The dense tensor.

        layout="numerator": f.shape + W.shape, D[i, a, b] = df_i/dW_ab ((n, n, m) for Wx).
        layout="denominator": W.shape + f.shape, E[a, b, i] = D[i, a, b] ((n, m, n) for Wx).
        A batched Jacobian has a leading B axis.
        """
        v.check_choice(layout, "layout", LAYOUTS)
        shape = self._tensor_shape(layout)
        out, zeroed = self._output(out, shape, "toarray", max_bytes)
        self._fill_tensor(out, layout, v.n_threads_value(n_threads), zeroed)
        return out

    def tovec(
        self,
        order: str = "F",
        *,
        out: np.ndarray | None = None,
        max_bytes: int | None = None,
        n_threads: int | None = None,
    ) -> np.ndarray:
        """The dense matrix df/dvec(W), shape (n, n*m); batched: stacked, (B*n, n*m), row b*n + i.

        order="F": column-major vec(W) (column a + n*b for Wx), x^T (x) I_n for Wx.
        order="C": row-major vec(W) = W.ravel() (column a*m + b for Wx), I_n (x) x^T for Wx.
        """
        v.check_choice(order, "order", ORDERS)
        out, zeroed = self._output(out, self._vec_shape(), "tovec", max_bytes)
        self._fill_vec(out, order, v.n_threads_value(n_threads), zeroed)
        return out

    def tosparse(
        self,
        format: str = "csr",
        order: str = "F",
        *,
        max_bytes: int | None = None,
        n_threads: int | None = None,
    ) -> sp.csr_array | sp.csc_array | sp.coo_array:
        """tovec(order) as a canonical scipy sparse array (csr_array, csc_array or coo_array).

        Index arrays are int32 when every index fits, int64 otherwise.
        """
        v.check_choice(format, "format", FORMATS)
        v.check_choice(order, "order", ORDERS)
        return self._sparse(format, order, max_bytes, v.n_threads_value(n_threads))

    def _output(
        self, out: np.ndarray | None, shape: tuple[int, ...], what: str, max_bytes: int | None
    ) -> tuple[np.ndarray, bool]:
        """The array to fill, and whether it is known to hold zeros already."""
        if out is not None:
            return v.check_out(out, shape, self.dtype, self._inputs()), False
        check_output_bytes(
            [(shape, self.dtype)] + self._scratch(), what=what, max_bytes=max_bytes, hint=_DENSE_HINT
        )
        if math.prod(shape) * self.dtype.itemsize >= _FRESH_ZEROS_BYTES:
            return np.zeros(shape, dtype=self.dtype), True
        return np.empty(shape, dtype=self.dtype), False

    # --- products --------------------------------------------------------------------
    def jvp(self, dW: ArrayLike) -> np.ndarray:
        """Directional derivative along dW (W's shape): dW @ x for Wx, x @ dW for xW.

        Returns (n,), or (B, n) when batched. O(B*n*m) time, no n*n*m work.
        """
        arr = v.as_array(dW, "dW", 2)
        v.check_shape(arr, "dW", self.W_shape)
        dtype = np.result_type(self.dtype, v.common_dtype({"dW": arr}))
        res = self._jvp(v.contiguous(arr, dtype), dtype)
        return res if self._batched else res[0]

    def vjp(
        self,
        v_: ArrayLike,
        *,
        out: np.ndarray | None = None,
        max_bytes: int | None = None,
        n_threads: int | None = None,
    ) -> np.ndarray:
        """Pull-back of v = dL/df: outer(v, x) (Wx) or outer(x, v) (xW), W's shape.

        v has shape (n,), or (B, n) when batched (then one gradient per sample, (B,) + W.shape).
        """
        arr = v.as_array(v_, "v", 2 if self._batched else 1)
        v.check_shape(arr, "v", self._lead + (self.n,))
        dtype = np.result_type(self.dtype, v.common_dtype({"v": arr}))
        shape = self._lead + self.W_shape
        if out is not None:
            out = v.check_out(out, shape, dtype, self._inputs() + (arr,))
        else:
            check_output_bytes([(shape, dtype)], what="vjp", max_bytes=max_bytes, hint="")
            out = np.empty(shape, dtype=dtype)
        vs = v.contiguous(arr, dtype).reshape(self._samples, self.n)
        self._vjp(vs, out.reshape((self._samples,) + self.W_shape), v.n_threads_value(n_threads))
        return out

    def aslinearoperator(self, order: str = "F") -> LinearOperator:
        """A scipy LinearOperator equal to tovec(order): (B*n, n*m), matvec = jvp on vec(dW)."""
        return _JacobianOperator(self, v.check_choice(order, "order", ORDERS))

    # --- subclass hooks ------------------------------------------------------------------
    def _inputs(self) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def _scratch(self) -> list[tuple[tuple[int, ...], np.dtype]]:
        """Temporaries a dense form needs besides its output (counted against max_bytes)."""
        return []

    def _fill_tensor(self, out: np.ndarray, layout: str, n_threads: int, zeroed: bool) -> None:
        raise NotImplementedError

    def _fill_vec(self, out: np.ndarray, order: str, n_threads: int, zeroed: bool) -> None:
        raise NotImplementedError

    def _sparse(self, format: str, order: str, max_bytes: int | None, n_threads: int) -> Any:
        raise NotImplementedError

    def _jvp(self, dW: np.ndarray, dtype: np.dtype) -> np.ndarray:
        raise NotImplementedError

    def _vjp(self, vs: np.ndarray, out: np.ndarray, n_threads: int) -> None:
        raise NotImplementedError

    def _matmat(self, V: np.ndarray, order: str) -> np.ndarray:
        raise NotImplementedError

    def _rmatmat(self, U: np.ndarray, order: str) -> np.ndarray:
        raise NotImplementedError


class StructuredJacobian(Jacobian):
    """d(W @ x)/dW or d(x @ W)/dW, stored as x alone (lazy, O(B*m) memory).

    Build it with jacobian_wx or jacobian_xw.
    """

    def __init__(self, x: np.ndarray, n: int, convention: str, batched: bool):
        self._x = x  # (S, m), C-contiguous, one of the four kernel dtypes
        self._x.flags.writeable = False
        self._samples, self.m = x.shape
        self.n = n
        self.convention = convention
        self.dtype = x.dtype
        self._batched = batched

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

    def _inputs(self) -> tuple[np.ndarray, ...]:
        return (self._x,)

    def _vec_pattern(self, order: str) -> str:
        contiguous = (order == "C") == (self.convention == "Wx")
        return _CONTIGUOUS if contiguous else _STRIDED

    def _scatter(self, out2d: np.ndarray, pattern: str, n_threads: int, zeroed: bool) -> None:
        n, m = self.n, self.m
        if pattern == _IDENTITY:
            _kron.scatter_dense(self._x, out2d, m, n, 0, n + 1, True, not zeroed, n_threads)
        elif pattern == _CONTIGUOUS:
            _kron.scatter_dense(self._x, out2d, n, m, m, 1, False, not zeroed, n_threads)
        else:
            _kron.scatter_dense(self._x, out2d, n, m, 1, n, False, not zeroed, n_threads)

    def _fill_tensor(self, out: np.ndarray, layout: str, n_threads: int, zeroed: bool) -> None:
        S, n, m = self._samples, self.n, self.m
        if layout == "numerator":
            # D[i] flattened over W's indices: I (x) x^T for Wx; x^T (x) I for xW,
            # where T[j, a, b] = x_a delta_jb sits at column a*n + j.
            pattern = _CONTIGUOUS if self.convention == "Wx" else _STRIDED
            self._scatter(out.reshape(S * n, n * m), pattern, n_threads, zeroed)
        elif self.convention == "Wx":  # E[a, b, i] = delta_ia x_b: x at columns b*n + a
            self._scatter(out.reshape(S * n, n * m), _STRIDED, n_threads, zeroed)
        else:  # E[a] = x_a * I_n
            self._scatter(out.reshape(S * m, n * n), _IDENTITY, n_threads, zeroed)

    def _fill_vec(self, out: np.ndarray, order: str, n_threads: int, zeroed: bool) -> None:
        self._scatter(out, self._vec_pattern(order), n_threads, zeroed)

    def _sparse(self, format: str, order: str, max_bytes: int | None, n_threads: int) -> Any:
        S, n, m = self._samples, self.n, self.m
        rows, cols = self._vec_shape()
        nnz = S * n * m
        idx = v.index_dtype(max(nnz, rows, cols))
        ptr_len = {"csr": rows + 1, "csc": cols + 1, "coo": nnz}[format]
        check_output_bytes(
            [((nnz,), self.dtype), ((nnz,), idx), ((ptr_len,), idx)],
            what="tosparse",
            max_bytes=max_bytes,
            hint=_SPARSE_HINT,
        )
        contiguous = self._vec_pattern(order) == _CONTIGUOUS
        data = np.empty(nnz, dtype=self.dtype)
        indices = np.empty(nnz, dtype=idx)
        ptr = np.empty(ptr_len, dtype=idx)
        if format == "csc":
            _kron.sparse_cols(self._x, data, indices, ptr, n, contiguous, n_threads)
            return _assemble(sp.csc_array, (rows, cols), data, indices, ptr)
        if format == "coo":
            _kron.sparse_rows(self._x, data, indices, ptr[:0], ptr, n, contiguous, n_threads)
            return _assemble_coo((rows, cols), data, ptr, indices)
        _kron.sparse_rows(self._x, data, indices, ptr, ptr[:0], n, contiguous, n_threads)
        return _assemble(sp.csr_array, (rows, cols), data, indices, ptr)

    def _jvp(self, dW: np.ndarray, dtype: np.dtype) -> np.ndarray:
        x = v.contiguous(self._x, dtype)
        return x @ (dW.T if self.convention == "Wx" else dW)

    def _vjp(self, vs: np.ndarray, out: np.ndarray, n_threads: int) -> None:
        x = v.contiguous(self._x, vs.dtype)
        if self.convention == "Wx":
            _outer.outer(vs, x, out, n_threads)
        else:
            _outer.outer(x, vs, out, n_threads)

    def _matmat(self, V: np.ndarray, order: str) -> np.ndarray:
        S, n, m, k = self._samples, self.n, self.m, V.shape[1]
        if self._vec_pattern(order) == _CONTIGUOUS:  # column i*m + c
            res = np.matmul(self._x, V.reshape(n, m, k))  # (n, S, k)
            return res.transpose(1, 0, 2).reshape(S * n, k)
        return (self._x @ V.reshape(m, n * k)).reshape(S * n, k)  # column i + n*c

    def _rmatmat(self, U: np.ndarray, order: str) -> np.ndarray:
        S, n, m, k = self._samples, self.n, self.m, U.shape[1]
        xh = self._x.conj().T  # (m, S)
        if self._vec_pattern(order) == _CONTIGUOUS:
            res = np.matmul(xh, U.reshape(S, n, k).transpose(1, 0, 2))  # (n, m, k)
            return res.reshape(n * m, k)
        return (xh @ U.reshape(S, n * k)).reshape(n * m, k)

    def _left_product(self, A: np.ndarray, out: np.ndarray, order: str, transposed: bool) -> None:
        """out = A @ tovec(order), or its transpose, for a single x, by broadcasting:
        no tovec is built. A: (a, n); out: (a, n*m), or (n*m, a) when transposed.

        With y = x: I (x) y^T gives (A @ M)[i, j*m + k] = A[i, j] y_k, and
        y^T (x) I gives (A @ M)[i, j + n*k] = A[i, j] y_k.
        """
        y = self._x[0]
        a, n, m = A.shape[0], self.n, self.m
        if self._vec_pattern(order) == _CONTIGUOUS:
            if transposed:
                np.multiply(A.T[:, None, :], y[None, :, None], out=out.reshape(n, m, a))
            else:
                np.multiply(A[:, :, None], y[None, None, :], out=out.reshape(a, n, m))
        elif transposed:
            np.multiply(y[:, None, None], A.T[None, :, :], out=out.reshape(m, n, a))
        else:
            np.multiply(y[None, :, None], A[:, None, :], out=out.reshape(a, m, n))

    def _add_to_vec(self, out: np.ndarray, order: str) -> None:
        """out += tovec(order) for a single x, touching only the n*m structural entries."""
        n, m = self.n, self.m
        i = np.arange(n)[:, None]
        k = np.arange(m)[None, :]
        cols = i * m + k if self._vec_pattern(order) == _CONTIGUOUS else i + k * n
        out[i, cols] += self._x[0]


class TotalJacobian(Jacobian):
    """Total derivative of f(W) = W @ x(W) by the product rule:

        D[i, a, b] = delta_ia * x_b + sum_j W[i, j] * dx_j/dW_ab        (n, n, m)

    Stores x, W and dx/dW; products use jvp/vjp of both terms, dense forms are one
    GEMM written straight into the output plus the n*m structural entries.
    """

    def __init__(self, base: StructuredJacobian, W: np.ndarray, dx: np.ndarray | Jacobian):
        self._base = base
        self._W = W
        self._dx = dx  # (m, n, m) array, or a Jacobian of x with respect to W
        self.n, self.m = base.n, base.m
        self.convention = "Wx"
        self.dtype = W.dtype
        self._samples = 1
        self._batched = False

    def __repr__(self) -> str:
        kind = type(self._dx).__name__
        return (
            f"<TotalJacobian d(W @ x(W))/dW: shape {self.shape}, {self.dtype.name}, "
            f"product rule with dx/dW given as {kind}>"
        )

    def _inputs(self) -> tuple[np.ndarray, ...]:
        dx = (self._dx,) if isinstance(self._dx, np.ndarray) else self._dx._inputs()
        return self._base._inputs() + (self._W,) + dx

    def _scratch(self) -> list[tuple[tuple[int, ...], np.dtype]]:
        # dx/dW as an (m, n*m) matrix: an array may be transposed into F order, another
        # kind of Jacobian is materialized; a structured one is never built
        if isinstance(self._dx, StructuredJacobian):
            return []
        return [((self.m, self.n * self.m), self.dtype)]

    def _dx_vec(self, order: str) -> np.ndarray:
        if isinstance(self._dx, Jacobian):
            return self._dx.tovec(order).astype(self.dtype, copy=False)
        dx = self._dx if order == "C" else self._dx.transpose(0, 2, 1)
        return dx.reshape(self.m, self.n * self.m).astype(self.dtype, copy=False)

    def _fill_vec(self, out: np.ndarray, order: str, n_threads: int, zeroed: bool = False) -> None:
        if isinstance(self._dx, StructuredJacobian):
            self._dx._left_product(self._W, out, order, transposed=False)
        else:
            np.matmul(self._W, self._dx_vec(order), out=out)
        self._base._add_to_vec(out, order)

    def _fill_vec_transposed(self, out_t: np.ndarray, order: str) -> None:
        """out_t = tovec(order).T written directly: the denominator layout and the CSC data."""
        if isinstance(self._dx, StructuredJacobian):
            self._dx._left_product(self._W, out_t, order, transposed=True)
        else:
            np.matmul(self._dx_vec(order).T, self._W.T, out=out_t)
        self._base._add_to_vec(out_t.T, order)

    def _fill_tensor(self, out: np.ndarray, layout: str, n_threads: int, zeroed: bool) -> None:
        n, m = self.n, self.m
        if layout == "numerator":
            self._fill_vec(out.reshape(n, n * m), "C", n_threads)
        else:  # E[a, b, i] = D[i, a, b]: E as (n*m, n) is the transpose of the C-order vec form
            self._fill_vec_transposed(out.reshape(n * m, n), "C")

    def _sparse(self, format: str, order: str, max_bytes: int | None, n_threads: int) -> Any:
        # W @ dx/dW is dense in general: every entry is stored, so the pattern does not
        # depend on the values.
        rows, cols = self._vec_shape()
        nnz = rows * cols
        idx = v.index_dtype(max(nnz, rows, cols))
        ptr_len = {"csr": rows + 1, "csc": cols + 1, "coo": nnz}[format]
        check_output_bytes(
            [((nnz,), self.dtype), ((nnz,), idx), ((ptr_len,), idx)] + self._scratch(),
            what="tosparse",
            max_bytes=max_bytes,
            hint=_SPARSE_HINT,
        )
        data = np.empty(nnz, dtype=self.dtype)
        if format == "csc":
            self._fill_vec_transposed(data.reshape(cols, rows), order)
            indices = np.tile(np.arange(rows, dtype=idx), cols)
            return _assemble(sp.csc_array, (rows, cols), data, indices, np.arange(cols + 1, dtype=idx) * rows)
        self._fill_vec(data.reshape(rows, cols), order, n_threads)
        indices = np.tile(np.arange(cols, dtype=idx), rows)
        if format == "coo":
            return _assemble_coo((rows, cols), data, np.repeat(np.arange(rows, dtype=idx), cols), indices)
        return _assemble(sp.csr_array, (rows, cols), data, indices, np.arange(rows + 1, dtype=idx) * cols)

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


def _assemble(cls: type, shape: tuple[int, int], data: np.ndarray, indices: np.ndarray, indptr: np.ndarray) -> Any:
    """A csr_array/csc_array that uses the given canonical arrays without copying them.

    scipy narrows int64 index arrays whose values fit int32 (a copy); the index-dtype
    rule of matderiv decides instead, so the arrays built here are put back.
    """
    A = cls((data, indices, indptr), shape=shape, copy=False)
    if A.indices.dtype != indices.dtype:
        A.indices, A.indptr = indices, indptr
    A.has_canonical_format = True
    return A


def _assemble_coo(shape: tuple[int, int], data: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> sp.coo_array:
    """A canonical coo_array (row-major sorted, no duplicates) from ready arrays."""
    A = sp.coo_array(shape, dtype=data.dtype)
    A.data, A.coords = data, (rows, cols)
    A.has_canonical_format = True
    return A


class _JacobianOperator(LinearOperator):
    """tovec(order) as a LinearOperator, never materialized; with transposed=True its
    adjoint (the conjugate transpose), so that both check their operands the same way."""

    def __init__(self, jac: Jacobian, order: str, transposed: bool = False):
        self._jac = jac
        self._order = order
        self._transposed = transposed
        rows, cols = jac._vec_shape()
        super().__init__(dtype=jac.dtype, shape=(cols, rows) if transposed else (rows, cols))

    def _check(self, x: Any, length: int, name: str) -> np.ndarray:
        arr = np.asarray(x)
        if arr.ndim == 0 or arr.shape[0] != length or arr.ndim > 2:
            raise ValueError(
                f"{name}: expected a vector of length {length} or a matrix with {length} rows "
                f"for an operator of shape {self.shape}, got shape {arr.shape}"
            )
        return arr

    def matvec(self, x: ArrayLike) -> np.ndarray:
        return super().matvec(self._check(x, self.shape[1], "matvec"))

    def rmatvec(self, x: ArrayLike) -> np.ndarray:
        return super().rmatvec(self._check(x, self.shape[0], "rmatvec"))

    def matmat(self, X: ArrayLike) -> np.ndarray:
        return super().matmat(self._check(X, self.shape[1], "matmat"))

    def rmatmat(self, X: ArrayLike) -> np.ndarray:
        return super().rmatmat(self._check(X, self.shape[0], "rmatmat"))

    def _apply(self, X: np.ndarray, adjoint: bool) -> np.ndarray:
        dtype = np.result_type(self.dtype, v.common_dtype({"x": X}))
        X = v.contiguous(X, dtype)
        if adjoint != self._transposed:
            return self._jac._rmatmat(X, self._order)
        return self._jac._matmat(X, self._order)

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        return self._apply(X, adjoint=False)

    def _rmatmat(self, X: np.ndarray) -> np.ndarray:
        return self._apply(X, adjoint=True)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self._matmat(x.reshape(-1, 1)).ravel()

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._rmatmat(x.reshape(-1, 1)).ravel()

    def _adjoint(self) -> LinearOperator:
        return _JacobianOperator(self._jac, self._order, not self._transposed)


def _structured(x: ArrayLike, n: Any, convention: str) -> StructuredJacobian:
    arr = v.as_array(x, "x", (1, 2))
    n = v.check_size(n, "n")
    dtype = v.common_dtype({"x": arr})
    batched = arr.ndim == 2
    x2 = v.owned(arr, dtype) if batched else v.owned(arr, dtype)[None, :]
    return StructuredJacobian(x2, n, convention, batched)


def jacobian_wx(
    x: ArrayLike,
    n: int,
    *,
    W: ArrayLike | None = None,
    dx_dW: ArrayLike | Jacobian | None = None,
) -> Jacobian:
    """Jacobian of f(W) = W @ x with respect to W (n, m): D[i, a, b] = delta_ia * x_b.

    x: (m,) or a batch (B, m); n: the number of rows of W.  Lazy: O(B*m) memory.
    With W (n, m) and dx_dW (the (m, n, m) Jacobian of x = x(W), as an array or a
    matderiv Jacobian), returns the total derivative delta_ia x_b + (W @ dx/dW)[i, a, b].
    Inputs are copied (the Jacobian is taken at this point). Complex inputs are treated
    as holomorphic: no conjugation.
    """
    base = _structured(x, n, "Wx")
    if W is None and dx_dW is None:
        return base
    if W is None or dx_dW is None:
        missing = "W" if W is None else "dx_dW"
        raise ValueError(f"{missing}: the dependent case needs both W and dx_dW, got only one")
    if base._batched:
        raise ValueError(f"x: the dependent case takes a single x of shape (m,), got shape {base.shape[:1] + (base.m,)}")
    n, m = base.n, base.m
    W_arr = v.as_array(W, "W", 2)
    v.check_shape(W_arr, "W", (n, m))
    if isinstance(dx_dW, Jacobian):
        if dx_dW.shape != (m, n, m):
            raise ValueError(f"dx_dW: expected a Jacobian of shape {(m, n, m)}, got shape {dx_dW.shape}")
        dtype = np.result_type(base.dtype, v.common_dtype({"W": W_arr}), dx_dW.dtype)
        dx: np.ndarray | Jacobian = dx_dW
    else:
        dx_arr = v.as_array(dx_dW, "dx_dW", 3)
        v.check_shape(dx_arr, "dx_dW", (m, n, m))
        dtype = np.result_type(base.dtype, v.common_dtype({"W": W_arr, "dx_dW": dx_arr}))
        dx = v.owned(dx_arr, dtype)
    base = StructuredJacobian(v.contiguous(base._x, dtype), n, "Wx", False)
    return TotalJacobian(base, v.owned(W_arr, dtype), dx)


def jacobian_xw(x: ArrayLike, n: int) -> StructuredJacobian:
    """Jacobian of f(W) = x @ W with respect to W (m, n): T[j, a, b] = x_a * delta_jb.

    x: (m,) or a batch (B, m); n: the number of columns of W. Tensor shape (n, m, n).
    x is copied; complex x is treated as holomorphic (no conjugation).
    """
    return _structured(x, n, "xW")
