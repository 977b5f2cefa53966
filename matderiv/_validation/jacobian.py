"""The checks of matderiv.jacobian: jacobian_awb's factors, J.left(M), the operands of its
LinearOperators and the blocks of hstack_operators."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, aslinearoperator

from .core import as_array, check_shape, check_size, common_dtype, contiguous, shape_str, target_dtype

#: Every ndim numpy allows (at most 64): for as_array where the caller checks the shape itself.
ANY_NDIM = range(65)


def matrix_arg(X: Any, name: str, ndim: int | Iterable[int]) -> tuple[Any, np.dtype]:
    """X as a dense array of ndim dimensions (one or several) or a 2-D scipy sparse matrix,
    and its dtype by the policy."""
    if sp.issparse(X):
        if X.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D sparse matrix, got {X.ndim}-D with shape {shape_str(X.shape)}")
        return X, target_dtype(X.dtype, name, allow_complex=True)
    arr = as_array(X, name, ndim)
    return arr, common_dtype({name: arr})


def check_W_shape(W_shape: Any) -> tuple[int, int] | None:
    """W_shape of jacobian_awb: None or a pair (p, q) of sizes."""
    if W_shape is None:
        return None
    if not isinstance(W_shape, (tuple, list)) or len(W_shape) != 2:
        raise TypeError(f"W_shape: expected a pair (p, q) of non-negative ints, got {W_shape!r}")
    return (check_size(W_shape[0], "W_shape[0]"), check_size(W_shape[1], "W_shape[1]"))


def check_awb(A: Any, B: Any, W_shape: Any) -> tuple[Any, Any, tuple[int, int], np.dtype]:
    """A (n, p) and B (q, k) of jacobian_awb (arrays, sparse matrices, or None: an identity
    sized by W_shape), checked; W's shape (p, q) and the dtype (float64 for two identities)."""
    shape = check_W_shape(W_shape)
    checked = {}
    for name, X, axis in (("A", A, 1), ("B", B, 0)):
        if X is None and shape is None:
            raise ValueError(f"W_shape: needed when {name} is None (the identity takes its size from W), got None")
        checked[name] = (None, None) if X is None else matrix_arg(X, name, 2)
        got = checked[name][0]
        if got is not None and shape is not None and got.shape[axis] != shape[1 - axis]:
            want = f"(n, {shape[0]})" if name == "A" else f"({shape[1]}, k)"
            raise ValueError(f"{name}: expected shape {want} to match W_shape {shape}, got {got.shape}")
    (A_, a_dtype), (B_, b_dtype) = checked["A"], checked["B"]
    dtypes = [d for d in (a_dtype, b_dtype) if d is not None]
    dtype = np.result_type(*dtypes) if dtypes else np.dtype(np.float64)
    return A_, B_, shape or (A_.shape[1], B_.shape[0]), dtype


def check_left(
    M: Any, f_shape: tuple[int, ...], batch_size: int | None, jac_shape: tuple[int, ...]
) -> tuple[Any, np.dtype]:
    """M of J.left(M), checked, and its dtype: (r, n) dense or sparse, or (B, r, n) per sample
    on a Jacobian batched over B; n = f_shape[0] (f's length, or its rows when f is a matrix)."""
    arr, dtype = matrix_arg(M, "M", (2, 3))
    shape = arr.shape
    if arr.ndim == 3 and batch_size is None:
        raise ValueError(
            f"M: a per-sample M of shape (B, r, n) needs a batched Jacobian, got shape {shape} "
            f"for a Jacobian of shape {jac_shape}"
        )
    if arr.ndim == 3 and shape[0] != batch_size:
        raise ValueError(f"M: expected one matrix per sample, (B, r, n) with B = {batch_size}, got shape {shape}")
    if shape[-1] != f_shape[0]:
        want = f"(B, r, {f_shape[0]})" if arr.ndim == 3 else f"(r, {f_shape[0]})"
        raise ValueError(f"M: expected shape {want} to multiply f of shape {f_shape}, got {shape}")
    return arr, dtype


def not_masked(x: Any, name: str) -> Any:
    """x itself; a masked array raises as_array's TypeError (its mask would be ignored)."""
    if isinstance(x, np.ma.MaskedArray):
        as_array(x, name, ANY_NDIM)
    return x


def operator_operand(
    x: Any, method: str, length: int, op_shape: tuple[int, int], dtype: np.dtype
) -> np.ndarray:
    """x of a LinearOperator's method (matvec, rmatvec, matmat, rmatmat) of shape op_shape: a
    vector of `length` or a matrix with `length` rows, as a C-contiguous array of dtype
    promoted with x's; a scipy sparse x is returned as it is once its shape and dtype are
    checked (the caller counts its dense bytes); a masked one is refused."""
    if type(x) is np.ndarray and x.dtype == dtype and 0 < x.ndim < 3 and x.shape[0] == length:
        if x.flags.c_contiguous and x.flags.aligned:
            return x  # the common case, in a few attribute reads
    arr = x if sp.issparse(x) else as_array(x, "x", ANY_NDIM)
    if arr.ndim not in (1, 2) or arr.shape[0] != length:
        raise ValueError(
            f"{method}: expected a vector of length {length} or a matrix with {length} rows "
            f"for an operator of shape {op_shape}, got shape {arr.shape}"
        )
    if sp.issparse(arr):
        target_dtype(arr.dtype, "x", allow_complex=True)
        return arr
    return contiguous(arr, np.result_type(dtype, common_dtype({"x": arr})))


def check_blocks(blocks: Any) -> Sequence:
    """blocks of hstack_operators: a non-empty list or tuple (any sequence but a string)."""
    if not isinstance(blocks, Sequence) or isinstance(blocks, str):
        raise TypeError(f"blocks: expected a list or tuple of operators, got {type(blocks).__name__}")
    if len(blocks) == 0:
        raise ValueError("blocks: expected at least one operator, got none")
    return blocks


def operator_block(block: Any, name: str, rows: int | None) -> LinearOperator:
    """One block of hstack_operators as a LinearOperator (an array or a sparse matrix wrapped)
    of a numeric dtype, with `rows` rows (None: the first block, any)."""
    try:
        op = aslinearoperator(block)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name}: expected a matderiv Jacobian, a LinearOperator, an array or a sparse "
            f"matrix, got {type(block).__name__} ({exc})"
        ) from None
    target_dtype(op.dtype, name, allow_complex=True)
    if rows is not None and op.shape[0] != rows:
        raise ValueError(f"{name}: expected {rows} rows like blocks[0], got an operator of shape {op.shape}")
    return op


def check_dependent(
    x: np.ndarray, n: int, W: Any, dx_dW: Any, dx_jacobian: bool
) -> tuple[np.ndarray, Any, np.dtype]:
    """W (n, m) and dx_dW (m, n, m) (an array, or a Jacobian with dx_jacobian) of jacobian_wx's
    dependent case, for a single x (m,): both checked, not copied, and the result dtype."""
    if W is None or dx_dW is None:
        missing = "W" if W is None else "dx_dW"
        raise ValueError(f"{missing}: the dependent case needs both W and dx_dW, got only one")
    if x.ndim != 1:
        raise ValueError(f"x: the dependent case takes a single x of shape (m,), got shape {x.shape}")
    m = x.shape[0]
    W_arr = as_array(W, "W", 2)
    check_shape(W_arr, "W", (n, m))
    if dx_jacobian:
        if dx_dW.shape != (m, n, m):
            raise ValueError(f"dx_dW: expected a Jacobian of shape {(m, n, m)}, got shape {dx_dW.shape}")
        dx, dx_dtype = dx_dW, dx_dW.dtype
    else:
        dx = as_array(dx_dW, "dx_dW", 3)
        check_shape(dx, "dx_dW", (m, n, m))
        dx_dtype = common_dtype({"dx_dW": dx})
    return W_arr, dx, np.result_type(common_dtype({"x": x, "W": W_arr}), dx_dtype)
