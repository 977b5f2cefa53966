"""The one place for input checks: dtype policy, shapes, out=, n, n_threads, options.

Kernels only ever see C-contiguous arrays of float32, float64, complex64 or
complex128 in native byte order; everything is checked and coerced here first.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from . import _threads
from ._kernels import _openmp

#: Largest index stored as int32 in sparse outputs; tests lower it to reach the int64 path.
INT32_INDEX_MAX = int(np.iinfo(np.int32).max)

#: numpy's largest dimension.
_MAX_DIM = int(np.iinfo(np.intp).max)

#: n_threads is capped at this many threads per core (see max_threads).
MAX_THREADS_PER_CORE = 16

_REAL = (np.dtype(np.float32), np.dtype(np.float64))
_COMPLEX = (np.dtype(np.complex64), np.dtype(np.complex128))


def _shape_str(shape: tuple[int, ...]) -> str:
    return "(" + ",".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


shape_str = _shape_str


def target_dtype(dtype: np.dtype, name: str, *, allow_complex: bool) -> np.dtype:
    """The dtype policy for one input.

    float32/float64 (and complex64/complex128 where allowed) are kept, float16
    becomes float32, bool and integers become float64; anything else is a TypeError.
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype.kind == "f" and dtype.itemsize <= 8:
        return np.dtype(np.float32) if dtype.itemsize <= 4 else np.dtype(np.float64)
    if dtype.kind == "c" and dtype.itemsize <= 16:
        if not allow_complex:
            raise TypeError(
                f"{name}: real inputs are required, got dtype {dtype.name} (the conjugation "
                "convention for complex gradients is not defined here)"
            )
        return dtype.newbyteorder("=")
    expected = "float32, float64, complex64, complex128" if allow_complex else "float32, float64"
    raise TypeError(
        f"{name}: unsupported dtype {dtype.name}; expected {expected}, an integer or a bool array"
    )


def as_array(obj: Any, name: str, ndim: int | Iterable[int], *, allow_complex: bool = True) -> np.ndarray:
    """np.asarray(obj) with its ndim and dtype kind checked (no copy, no conversion yet)."""
    if isinstance(obj, np.ma.MaskedArray):
        raise TypeError(
            f"{name}: masked arrays are not supported (the mask would be ignored); pass "
            f"{name}.filled(value) to replace masked entries, or the rows you want to keep"
        )
    try:
        arr = np.asarray(obj)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name}: could not be converted to an array ({exc})") from None
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if arr.ndim not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"{name}: expected a {want} array, got {arr.ndim}-D with shape {_shape_str(arr.shape)}")
    target_dtype(arr.dtype, name, allow_complex=allow_complex)
    return arr


def common_dtype(arrays: dict[str, np.ndarray], *, allow_complex: bool = True) -> np.dtype:
    """Result dtype of several inputs: each mapped by the policy, then promoted."""
    return np.result_type(
        *(target_dtype(a.dtype, name, allow_complex=allow_complex) for name, a in arrays.items())
    )


def contiguous(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A C-contiguous, aligned, native-byte-order array of `dtype` (no copy when arr
    already is one).

    np.ascontiguousarray keeps an array that starts at an address that is not a multiple
    of its itemsize (a buffer read at an offset, a chunk received from a cluster); numpy's
    matmul skips BLAS for those (10x slower) and C kernels must not read them, so they
    are copied into fresh, aligned memory.
    """
    out = np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("="))
    return out if out.flags.aligned else out.copy()


def owned(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A private C-contiguous copy: what a lazy object keeps, so that later changes to the
    caller's array cannot change it (O(input) memory)."""
    return np.array(arr, dtype=np.dtype(dtype).newbyteorder("="), order="C", copy=True)


def check_size(value: Any, name: str) -> int:
    """A dimension such as n: a non-negative int (numpy integers accepted, bool refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected a non-negative int, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{name}: expected a non-negative int, got {value}")
    if value > _MAX_DIM:
        raise ValueError(f"{name}: expected at most {_MAX_DIM} (numpy's largest dimension), got {value}")
    return int(value)


def check_flag(value: Any, name: str) -> bool:
    """A boolean option such as bias: True or False (numpy bools accepted), nothing else."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """One of a fixed set of strings, e.g. layout, order, format, convention."""
    if not isinstance(value, str) or value not in choices:
        opts = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name}: expected one of {opts}, got {value!r}")
    return value


def check_shape(arr: np.ndarray, name: str, shape: tuple[int, ...]) -> None:
    if arr.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {_shape_str(tuple(shape))}, got {_shape_str(arr.shape)}")


def max_threads() -> int:
    """The largest n_threads accepted: the OpenMP runtime's thread limit (OMP_THREAD_LIMIT),
    and at most MAX_THREADS_PER_CORE threads per core (never under 64). Beyond that a
    runtime would try to create threads until it runs out of memory and exits."""
    cores = os.cpu_count() or 1
    return max(1, min(_openmp.thread_limit(), max(64, MAX_THREADS_PER_CORE * cores)))


def n_threads_value(n_threads: Any) -> int:
    """None: OpenMP's default (honours OMP_NUM_THREADS); -1: every usable core; k >= 1: k,
    up to max_threads(). 1 in a child forked after a parallel region (see _threads)."""
    if n_threads is None:
        return _threads.usable(_openmp.max_threads())
    if isinstance(n_threads, (bool, np.bool_)) or not isinstance(n_threads, (int, np.integer)):
        raise TypeError(f"n_threads: expected None or an int, got {type(n_threads).__name__}")
    if n_threads == -1:
        try:
            return _threads.usable(len(os.sched_getaffinity(0)))
        except AttributeError:  # not Linux
            return _threads.usable(os.cpu_count() or 1)
    limit = max_threads()
    if not 1 <= n_threads <= limit:
        raise ValueError(
            f"n_threads: expected None, -1 or an int from 1 to {limit} (the thread limit), got {n_threads}"
        )
    return _threads.usable(int(n_threads))


def check_out(out: Any, shape: tuple[int, ...], dtype: np.dtype, inputs: Iterable[np.ndarray] = ()) -> np.ndarray:
    """Validate a caller's out= array: exact shape and dtype, C-contiguous, writeable,
    not sharing memory with any input."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out: expected a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"out: expected shape {_shape_str(tuple(shape))}, got {_shape_str(out.shape)}")
    if out.dtype.newbyteorder("=") != dtype:  # byte order is checked below, with its own message
        raise ValueError(f"out: expected dtype {np.dtype(dtype).name}, got {out.dtype.name}")
    if not out.flags.c_contiguous:
        raise ValueError("out: expected a C-contiguous array, got a non-contiguous one")
    if not out.flags.writeable:
        raise ValueError("out: expected a writeable array, got a read-only one")
    if not out.flags.aligned:
        raise ValueError("out: expected an aligned array (its address a multiple of the itemsize), got a misaligned one")
    if not out.dtype.isnative:
        raise ValueError("out: expected native byte order, got a byte-swapped array")
    for arr in inputs:
        if np.may_share_memory(out, arr):
            try:
                overlap = np.shares_memory(out, arr, max_work=100_000)
            except np.exceptions.TooHardError:
                overlap = True
            if overlap:
                raise ValueError("out: must not overlap an input array")
    return out


def index_dtype(maxval: int) -> np.dtype:
    """int32 for sparse indices when every index and count fits, int64 otherwise."""
    return np.dtype(np.int32) if int(maxval) <= INT32_INDEX_MAX else np.dtype(np.int64)


# --- Jacobian arguments ---
# The checks of matderiv.jacobian: jacobian_awb's factors, J.left(M), the operands of its
# LinearOperators and the blocks of hstack_operators. (Imports here keep the section whole.)
from collections.abc import Sequence  # noqa: E402

import scipy.sparse as sp  # noqa: E402
from scipy.sparse.linalg import LinearOperator, aslinearoperator  # noqa: E402

from ._memory import check_output_bytes  # noqa: E402

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
    """A (n, p) and B (q, k) of jacobian_awb, arrays or sparse matrices, or None (an identity,
    sized by W_shape); returns them checked, W's shape (p, q) and the result dtype (float64
    for two identities)."""
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
    promoted with x's. A scipy sparse x is densified after its shape is checked and its
    dense bytes are counted against the default memory limit; a masked one is refused."""
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
        check_output_bytes(
            [(arr.shape, arr.dtype)], what=method, max_bytes=None,
            hint="Multiply by a dense operand, or by the sparse one's columns a few at a time.",
        )
        arr = arr.toarray()
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
    """W (n, m) and dx_dW (m, n, m) of jacobian_wx's dependent case, for a checked x that must
    be a single (m,): dx_dW an array, or with dx_jacobian a matderiv Jacobian of that shape.
    Returns W and dx_dW checked (not copied) and the result dtype of x, W and dx_dW."""
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
