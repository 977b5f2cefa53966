"""The Jacobians of a convolution y = conv(W, x) of one sample (PyTorch's cross-correlation,
zero padding, stride, dilation) with respect to its weight W and to its input x.

x (C, *S), W (O, C, *kernel), y (O, *out), with 1 or 2 spatial axes. With U (T, C K) the
patches of x (T = prod(out) positions row-major, features in (c, k1, k2) order),
y.reshape(O, T) = W.reshape(O, C K) @ U^T, so

  dy/dW  is the Kronecker Jacobian of A @ W2 @ B with A = I_O and B = U^T (jacobian_awb):
         tovec("C") is I_O (x) U; for order "F" the rows and columns of U are permuted
         so that they follow ravel(order="F") of y and W (for 2-D convolutions not the F
         order of the (O, T) and (O, C K) matrices).
  dy/dx  is the sparse block-Toeplitz matrix sum_k W_k (x) S_k (S_k the 0/1 shift that
         takes offset k, positions in the padding dropped), written by the _toeplitz
         kernel; jvp is a convolution and vjp a transposed one, neither builds it.

Both are single-sample Jacobians with the forms of Jacobian, for y, W and x of any ndim
(Jacobian, whose W is a matrix, is not their base). Internally a 1-D convolution is a 2-D
one whose first spatial axis has length 1.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike
from scipy.sparse.linalg import LinearOperator

from .. import _memory
from .. import _validation as v
from .._kernels import _toeplitz
from ..layers.conv import conv_patches
from ._base import DENSE_HINT, FORMATS, LAYOUTS, ORDERS, SPARSE_HINT, assemble, assemble_coo
from ._constructors import jacobian_awb
from ._kronecker import KroneckerJacobian
from ._operator import JacobianOperator
from .._docs import conv_jacobian as D, conv_jacobian_forms as DF, doc


def planar(g: v.ConvGeometry) -> v.ConvGeometry:
    """The geometry as a 2-D one: a 1-D convolution gets a first spatial axis of length 1."""
    if len(g.spatial) == 2:
        return g
    return v.ConvGeometry(*((one,) + value for one, value in zip((1, 1, 1, 0, 1, 1), g)))


def _offsets(g: v.ConvGeometry) -> Iterator[tuple[int, int, slice, slice]]:
    """(k1, k2) and the slices of the padded input that offset reads, for every offset (2-D g)."""
    (Ho, Wo), (sh, sw), (dh, dw) = g.out, g.stride, g.dilation
    for k1 in range(g.kernel[0]):
        for k2 in range(g.kernel[1]):
            yield k1, k2, slice(k1 * dh, k1 * dh + (Ho - 1) * sh + 1, sh), slice(k2 * dw, k2 * dw + (Wo - 1) * sw + 1, sw)


def correlate(X: np.ndarray, W: np.ndarray, g: v.ConvGeometry) -> np.ndarray:
    """The convolution of X (N, C, H, W) by W (O, C, K1, K2): (N, O, Ho, Wo), one product
    per kernel offset on strided views of the zero-padded input (channels last)."""
    (ph, pw), dtype = g.padding, np.result_type(X, W)
    Xp = np.pad(X, ((0, 0), (0, 0), (ph, ph), (pw, pw))).transpose(0, 2, 3, 1)
    Y = np.zeros((X.shape[0],) + g.out + (W.shape[0],), dtype=dtype)
    for k1, k2, a, b in _offsets(g):
        Y += Xp[:, a, b, :] @ W[:, :, k1, k2].T
    return Y.transpose(0, 3, 1, 2)


def correlate_transpose(V: np.ndarray, W: np.ndarray, g: v.ConvGeometry) -> np.ndarray:
    """The adjoint of correlate: V (N, O, Ho, Wo) -> (N, C, H, W), scattered offset by offset
    into the padded input, the padding cut off at the end."""
    (H, Wd), (ph, pw) = g.spatial, g.padding
    Xp = np.zeros((V.shape[0], H + 2 * ph, Wd + 2 * pw, W.shape[1]), dtype=np.result_type(V, W))
    Vt = V.transpose(0, 2, 3, 1)
    for k1, k2, a, b in _offsets(g):
        Xp[:, a, b, :] += Vt @ W[:, :, k1, k2]
    return Xp[:, ph : ph + H, pw : pw + Wd, :].transpose(0, 3, 1, 2)


def axis_pairs(size: int, out: int, kernel: int, stride: int, pad: int, dil: int, transposed: bool) -> tuple[np.ndarray, ...]:
    """One spatial axis of the Toeplitz structure, as CSR: (ptr, idx, koff). For every output
    position i (transposed: input position), the input positions (transposed: output
    positions) it meets, sorted, and the kernel offset of each pair; padding has none."""
    i = np.repeat(np.arange(out, dtype=np.int64), kernel)
    k = np.tile(np.arange(kernel, dtype=np.int64), out)
    pos = i * stride - pad + k * dil
    keep = (pos >= 0) & (pos < size)
    i, k, pos = i[keep], k[keep], pos[keep]
    rows, cols, n_rows = (pos, i, size) if transposed else (i, pos, out)
    order = np.lexsort((cols, rows))
    ptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=ptr[1:])
    return ptr, np.ascontiguousarray(cols[order]), np.ascontiguousarray(k[order])


def _unvec(V: np.ndarray, shape: tuple[int, ...], order: str) -> np.ndarray:
    """(N, K) columns vec'ed in `order` -> (K,) + shape."""
    K = V.shape[1]
    if order == "C":
        return V.T.reshape((K,) + shape)
    return V.T.reshape((K,) + shape[::-1]).transpose((0,) + tuple(range(len(shape), 0, -1)))


def _vec(A: np.ndarray, order: str) -> np.ndarray:
    """(K,) + shape -> (N, K), each vec'ed in `order`."""
    if order == "F":
        A = A.transpose((0,) + tuple(range(A.ndim - 1, 0, -1)))
    return A.reshape(A.shape[0], -1).T


class ConvJacobian:
    """What the two convolution Jacobians share: dy/dZ for y (f_shape) and Z (wrt_shape),
    one sample; tensor f_shape + wrt_shape (numerator layout) or wrt_shape + f_shape."""

    dtype: np.dtype
    f_shape: tuple[int, ...]
    wrt_shape: tuple[int, ...]
    batch_size = None

    @property
    @doc(D.CONV_SHAPE)
    def shape(self) -> tuple[int, ...]:
        return self.f_shape + self.wrt_shape

    @property
    @doc(D.CONV_NDIM)
    def ndim(self) -> int:
        return len(self.shape)

    def _vec_shape(self) -> tuple[int, int]:
        return (math.prod(self.f_shape), math.prod(self.wrt_shape))

    def _tensor_shape(self, layout: str) -> tuple[int, ...]:
        v.check_choice(layout, "layout", LAYOUTS)
        return self.shape if layout == "numerator" else self.wrt_shape + self.f_shape

    def _operand(self, d: ArrayLike, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """d of the given shape, C-contiguous in its dtype promoted with the Jacobian's."""
        arr = v.as_array(d, name, len(shape))
        v.check_shape(arr, name, shape)
        return v.contiguous(arr, np.result_type(self.dtype, v.common_dtype({name: arr})))

    def _vjp_output(self, vs: np.ndarray, out: np.ndarray | None, max_bytes: int | None) -> np.ndarray:
        if out is not None:
            return v.check_out(out, self.wrt_shape, vs.dtype, (vs,))
        _memory.check_output_bytes([(self.wrt_shape, vs.dtype)], what="vjp", max_bytes=max_bytes, hint="")
        return np.empty(self.wrt_shape, dtype=vs.dtype)


@doc(D.WEIGHT_CLASS)
class ConvWeightJacobian(ConvJacobian):
    def __init__(self, kc: KroneckerJacobian, kf: KroneckerJacobian, f_shape: tuple[int, ...], W_shape: tuple[int, ...]):
        self._kc, self._kf = kc, kf  # order "C" (and the tensors), order "F"
        self.f_shape, self.wrt_shape = f_shape, W_shape
        self.dtype = kc.dtype

    @property
    @doc(D.W_SHAPE)
    def W_shape(self) -> tuple[int, ...]:
        return self.wrt_shape

    def __repr__(self) -> str:
        return f"<ConvWeightJacobian dy/dW: shape {self.shape}, {self.dtype.name}, lazy: stores the patches of x>"

    def _kron(self, order: str) -> KroneckerJacobian:
        return self._kc if v.check_choice(order, "order", ORDERS) == "C" else self._kf

    @doc(DF.WEIGHT_TOARRAY)
    def toarray(self, layout: str = "numerator", *, out: np.ndarray | None = None, max_bytes: int | None = None,
                n_threads: int | None = None) -> np.ndarray:
        shape = self._tensor_shape(layout)
        kc = self._kc
        inner = kc.shape if layout == "numerator" else kc.W_shape + kc.f_shape
        if out is None:
            return kc.toarray(layout, max_bytes=max_bytes, n_threads=n_threads).reshape(shape)
        kc.toarray(layout, out=v.check_out(out, shape, self.dtype).reshape(inner), n_threads=n_threads)
        return out

    @doc(DF.WEIGHT_TOVEC)
    def tovec(self, order: str = "F", *, out: np.ndarray | None = None, max_bytes: int | None = None,
              n_threads: int | None = None) -> np.ndarray:
        return self._kron(order).tovec(order, out=out, max_bytes=max_bytes, n_threads=n_threads)

    @doc(DF.WEIGHT_TOSPARSE)
    def tosparse(self, format: str = "csr", order: str = "F", *, max_bytes: int | None = None,
                 n_threads: int | None = None) -> Any:
        v.check_choice(format, "format", FORMATS)
        return self._kron(order).tosparse(format, order, max_bytes=max_bytes, n_threads=n_threads)

    @doc(DF.WEIGHT_JVP)
    def jvp(self, dW: ArrayLike) -> np.ndarray:
        d = self._operand(dW, "dW", self.wrt_shape)
        return self._kc.jvp(d.reshape(self._kc.W_shape)).reshape(self.f_shape)

    @doc(DF.WEIGHT_VJP)
    def vjp(self, v_: ArrayLike, *, out: np.ndarray | None = None, max_bytes: int | None = None,
            n_threads: int | None = None) -> np.ndarray:
        vs = self._operand(v_, "v", self.f_shape)
        out = self._vjp_output(vs, out, max_bytes)
        self._kc.vjp(vs.reshape(self._kc.f_shape), out=out.reshape(self._kc.W_shape), n_threads=n_threads)
        return out

    @doc(DF.WEIGHT_ASLINEAROPERATOR)
    def aslinearoperator(self, order: str = "F") -> LinearOperator:
        return self._kron(order).aslinearoperator(order)

    @doc(DF.WEIGHT_LEFT)
    def left(self, M: Any) -> ConvWeightJacobian:
        M_, _ = v.check_left(M, self.f_shape, None, self.shape)
        kc, kf = self._kc.left(M_), self._kf.left(M_)
        return ConvWeightJacobian(kc, kf, kc.f_shape[:1] + self.f_shape[1:], self.wrt_shape)


@doc(D.INPUT_CLASS)
class ConvInputJacobian(ConvJacobian):
    def __init__(self, W: np.ndarray, x_shape: tuple[int, ...], g: v.ConvGeometry):
        self._W = W  # (O, C, *kernel), owned, read-only
        self._W.flags.writeable = False
        self._geometry, self._g = g, planar(g)  # as given, and as 2-D
        self._W4 = W.reshape(W.shape[:2] + self._g.kernel)
        self.f_shape, self.wrt_shape = (W.shape[0],) + g.out, x_shape
        self.dtype = W.dtype
        (H, Wd), (Ho, Wo) = self._g.spatial, self._g.out
        self._axes = {
            t: [axis_pairs(*a, transposed=t) for a in zip(self._g.spatial, self._g.out, *self._g[1:5])]
            for t in (False, True)
        }
        self._columns = {False: (H, Wd), True: (Ho, Wo)}  # the column space's spatial shape

    @property
    @doc(D.X_SHAPE)
    def x_shape(self) -> tuple[int, ...]:
        return self.wrt_shape

    @property
    @doc(D.W_PROPERTY)
    def W(self) -> np.ndarray:
        return self._W

    @property
    @doc(D.NNZ)
    def nnz(self) -> int:
        (_, idx_h, _), (_, idx_w, _) = self._axes[False]
        return self._W.shape[0] * self._W.shape[1] * len(idx_h) * len(idx_w)

    def __repr__(self) -> str:
        return f"<ConvInputJacobian dy/dx: shape {self.shape}, {self.dtype.name}, {self.nnz} nonzeros, lazy: stores W only>"

    def _fill(self, transposed: bool, f_order: bool, n_threads: int, *, dense: np.ndarray | None = None,
              zeroed: bool = False, csr: tuple[np.ndarray, ...] | None = None) -> None:
        """The kernel's one pass: dense rows, or the CSR arrays (data, indices, indptr, row_of)."""
        Wr = np.ascontiguousarray(self._W4.transpose(1, 0, 2, 3)) if transposed else self._W4
        none = np.empty(0, dtype=np.int64)
        data, indices, indptr, row_of = csr or (np.empty(0, dtype=self.dtype), none, none, none)
        (ph, ih, kh), (pw, iw, kw) = self._axes[transposed]
        _toeplitz.toeplitz_fill(
            Wr, ph, ih, kh, pw, iw, kw, *self._columns[transposed], f_order, data, indices, indptr, row_of,
            np.empty((0, 0), dtype=self.dtype) if dense is None else dense, zeroed, n_threads,
        )

    def _dense(self, out: np.ndarray | None, shape: tuple[int, ...], what: str, max_bytes: int | None,
               transposed: bool) -> tuple[np.ndarray, bool]:
        """The array to fill (out=, or a fresh one after the memory guard) and whether it holds zeros."""
        if out is not None:
            return v.check_out(out, shape, self.dtype, (self._W,)), False
        scratch = [(self._W.shape, self.dtype)] if transposed else []
        _memory.check_output_bytes([(shape, self.dtype)] + scratch, what=what, max_bytes=max_bytes, hint=DENSE_HINT)
        if math.prod(shape) * self.dtype.itemsize >= _memory.FRESH_ZEROS_BYTES:
            return np.zeros(shape, dtype=self.dtype), True
        return np.empty(shape, dtype=self.dtype), False

    @doc(DF.INPUT_TOARRAY)
    def toarray(self, layout: str = "numerator", *, out: np.ndarray | None = None, max_bytes: int | None = None,
                n_threads: int | None = None) -> np.ndarray:
        shape = self._tensor_shape(layout)
        transposed = layout == "denominator"
        out, zeroed = self._dense(out, shape, "toarray", max_bytes, transposed)
        rows, cols = self._vec_shape()
        dense = out.reshape((cols, rows) if transposed else (rows, cols))
        self._fill(transposed, False, v.n_threads_value(n_threads), dense=dense, zeroed=zeroed)
        return out

    @doc(DF.INPUT_TOVEC)
    def tovec(self, order: str = "F", *, out: np.ndarray | None = None, max_bytes: int | None = None,
              n_threads: int | None = None) -> np.ndarray:
        v.check_choice(order, "order", ORDERS)
        out, zeroed = self._dense(out, self._vec_shape(), "tovec", max_bytes, False)
        self._fill(False, order == "F", v.n_threads_value(n_threads), dense=out, zeroed=zeroed)
        return out

    @doc(DF.INPUT_TOSPARSE)
    def tosparse(self, format: str = "csr", order: str = "F", *, max_bytes: int | None = None,
                 n_threads: int | None = None) -> Any:
        v.check_choice(format, "format", FORMATS)
        v.check_choice(order, "order", ORDERS)
        rows, cols = self._vec_shape()
        nnz, transposed, coo = self.nnz, format == "csc", format == "coo"
        idx = v.index_dtype(max(nnz, rows, cols))
        parts = [((nnz,), self.dtype), ((nnz,), idx), (((cols if transposed else rows) + 1,), idx)]
        parts += [((nnz,), idx)] if coo else []
        scratch = [(self._W.shape, self.dtype)] if transposed else []
        _memory.check_output_bytes(parts + scratch, what="tosparse", max_bytes=max_bytes, hint=SPARSE_HINT)
        data, indices, indptr = (np.empty(shape[0], dtype=dt) for shape, dt in parts[:3])
        row_of = np.empty(nnz if coo else 0, dtype=idx)
        self._fill(transposed, order == "F", v.n_threads_value(n_threads), csr=(data, indices, indptr, row_of))
        if coo:
            return assemble_coo((rows, cols), data, row_of, indices)
        return assemble(sp.csc_array if transposed else sp.csr_array, (rows, cols), data, indices, indptr)

    def _planar_x(self, K: int) -> tuple[int, ...]:
        return (K, self.wrt_shape[0]) + self._g.spatial

    @doc(DF.INPUT_JVP)
    def jvp(self, dx: ArrayLike) -> np.ndarray:
        d = self._operand(dx, "dx", self.wrt_shape)
        return correlate(d.reshape(self._planar_x(1)), self._W4.astype(d.dtype), self._g)[0].reshape(self.f_shape)

    @doc(DF.INPUT_VJP)
    def vjp(self, v_: ArrayLike, *, out: np.ndarray | None = None, max_bytes: int | None = None,
            n_threads: int | None = None) -> np.ndarray:
        vs = self._operand(v_, "v", self.f_shape)
        out = self._vjp_output(vs, out, max_bytes)
        v.n_threads_value(n_threads)  # checked; the products run in numpy's BLAS
        planar_v = vs.reshape((1, self.f_shape[0]) + self._g.out)
        out.reshape(self._planar_x(1))[...] = correlate_transpose(planar_v, self._W4.astype(vs.dtype), self._g)
        return out

    def _matmat(self, V: np.ndarray, order: str) -> np.ndarray:
        X = _unvec(V, self.wrt_shape, order).reshape(self._planar_x(V.shape[1]))
        Y = correlate(X, self._W4.astype(V.dtype), self._g)
        return _vec(Y.reshape((V.shape[1],) + self.f_shape), order)

    def _rmatmat(self, U: np.ndarray, order: str) -> np.ndarray:
        K = U.shape[1]
        Vy = _unvec(U, self.f_shape, order).reshape((K, self.f_shape[0]) + self._g.out)
        X = correlate_transpose(Vy, self._W4.astype(U.dtype), self._g)  # W is real: the adjoint is the transpose
        return _vec(X.reshape((K,) + self.wrt_shape), order)

    @doc(DF.INPUT_ASLINEAROPERATOR)
    def aslinearoperator(self, order: str = "F") -> LinearOperator:
        return JacobianOperator(self, v.check_choice(order, "order", ORDERS))

    @doc(DF.INPUT_LEFT)
    def left(self, M: Any) -> ConvInputJacobian:
        M_, m_dtype = v.check_left(M, self.f_shape, None, self.shape)
        v.target_dtype(m_dtype, "M", allow_complex=False)
        dtype = np.result_type(self.dtype, m_dtype)
        W2 = np.asarray(M_ @ self._W.reshape(self._W.shape[0], -1).astype(dtype))
        return ConvInputJacobian(v.owned(W2.reshape((M_.shape[0],) + self._W.shape[1:]), dtype), self.wrt_shape, self._geometry)


@doc(D.JACOBIAN_CONV_WEIGHT)
def jacobian_conv_weight(x: ArrayLike, out_channels: int, kernel_size: Any, *, stride: Any = 1, padding: Any = 0,
                         dilation: Any = 1) -> ConvWeightJacobian:
    arr = v.conv_input(x, batched=False)
    O = v.check_size(out_channels, "out_channels")
    g = v.conv_geometry(arr.shape[1:], kernel_size, stride, padding, dilation)
    U = conv_patches(arr[None], kernel_size, stride=stride, padding=padding, dilation=dilation)[0]  # (T, C K)
    W2 = (O, U.shape[1])
    pos_f = np.arange(g.positions).reshape(g.out).ravel(order="F")
    feat_f = np.arange(U.shape[1]).reshape((arr.shape[0],) + g.kernel).ravel(order="F")
    kc = jacobian_awb(None, U.T, W_shape=W2)
    kf = jacobian_awb(None, U[np.ix_(pos_f, feat_f)].T, W_shape=W2)
    return ConvWeightJacobian(kc, kf, (O,) + g.out, (O, arr.shape[0]) + g.kernel)


@doc(D.JACOBIAN_CONV_INPUT)
def jacobian_conv_input(W: ArrayLike, input_shape: Any, *, stride: Any = 1, padding: Any = 0,
                        dilation: Any = 1) -> ConvInputJacobian:
    arr = v.conv_weight(W)
    x_shape = v.conv_input_shape(input_shape, arr.shape)
    g = v.conv_geometry(x_shape[1:], arr.shape[2:], stride, padding, dilation, kernel_name="W's kernel")
    return ConvInputJacobian(v.owned(arr, v.common_dtype({"W": arr}, allow_complex=False)), x_shape, g)
