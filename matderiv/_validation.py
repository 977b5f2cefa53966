"""The one place for input checks: dtype policy, shapes, out=, n, n_threads, options.

Kernels only ever see C-contiguous arrays of float32, float64, complex64 or
complex128 in native byte order; everything is checked and coerced here first.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from ._kernels import _openmp

#: Largest index stored as int32 in sparse outputs; tests lower it to reach the int64 path.
INT32_INDEX_MAX = int(np.iinfo(np.int32).max)

_C_INT_MAX = 2**31 - 1  # the kernels take n_threads as a C int

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
    """A C-contiguous, native-byte-order array of `dtype` (no copy when arr already is one)."""
    return np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("="))


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


def n_threads_value(n_threads: Any) -> int:
    """None: OpenMP's default (honours OMP_NUM_THREADS); -1: every usable core; k >= 1: k."""
    if n_threads is None:
        return max(1, _openmp.max_threads())
    if isinstance(n_threads, (bool, np.bool_)) or not isinstance(n_threads, (int, np.integer)):
        raise TypeError(f"n_threads: expected None or an int, got {type(n_threads).__name__}")
    if n_threads == -1:
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            return os.cpu_count() or 1
    if not 1 <= n_threads <= _C_INT_MAX:
        raise ValueError(f"n_threads: expected None, -1 or an int from 1 to {_C_INT_MAX}, got {n_threads}")
    return int(n_threads)


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
