"""The one place for input checks: dtype policy, shapes, out=, n, n_threads, options.

Kernels only ever see C-contiguous arrays of float32, float64, complex64 or
complex128 in native byte order; everything is checked and coerced here first.
"""
from __future__ import annotations

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
    cores = _threads.usable_cores()
    return max(1, min(_openmp.thread_limit(), max(64, MAX_THREADS_PER_CORE * cores)))


def n_threads_value(n_threads: Any) -> int:
    """None: OpenMP's default (honours OMP_NUM_THREADS); -1: every usable core; k >= 1: k,
    up to max_threads(). 1 in a child forked after a parallel region (see _threads)."""
    if n_threads is None:
        return _threads.usable(_openmp.max_threads())
    if isinstance(n_threads, (bool, np.bool_)) or not isinstance(n_threads, (int, np.integer)):
        raise TypeError(f"n_threads: expected None or an int, got {type(n_threads).__name__}")
    if n_threads == -1:
        return _threads.usable(_threads.usable_cores())
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


# --- runtime settings ---
def check_byte_count(value: Any, name: str) -> int:
    """A size in bytes such as a threshold: a non-negative int that fits a C Py_ssize_t
    (numpy integers accepted, bool refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected a non-negative int (bytes), got {type(value).__name__} {value!r}")
    if not 0 <= value <= _MAX_DIM:
        raise ValueError(f"{name}: expected a non-negative int of at most {_MAX_DIM} (bytes), got {value}")
    return int(value)
