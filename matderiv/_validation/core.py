"""Checks of arrays, batches and options: dtype policy, shapes, out=, n, n_threads, bytes.

Kernels only ever see C-contiguous arrays of float32, float64, complex64 or
complex128 in native byte order; everything is checked and coerced here first.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable
from numbers import Real
from typing import Any

import numpy as np

from .. import _threads
from .._kernels import _openmp

#: Largest index stored as int32 in sparse outputs; tests lower it to reach the int64 path.
INT32_INDEX_MAX = int(np.iinfo(np.int32).max)

#: numpy's largest dimension, and its largest array size in bytes (np.intp).
MAX_DIM = int(np.iinfo(np.intp).max)

#: n_threads is capped at this many threads per core (see max_threads).
MAX_THREADS_PER_CORE = 16


def shape_str(shape: tuple[int, ...]) -> str:
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
        raise ValueError(f"{name}: expected a {want} array, got {arr.ndim}-D with shape {shape_str(arr.shape)}")
    target_dtype(arr.dtype, name, allow_complex=allow_complex)
    return arr


def common_dtype(arrays: dict[str, np.ndarray], *, allow_complex: bool = True) -> np.dtype:
    """Result dtype of several inputs: each mapped by the policy, then promoted."""
    return np.result_type(
        *(target_dtype(a.dtype, name, allow_complex=allow_complex) for name, a in arrays.items())
    )


def contiguous(arr: np.ndarray, dtype: np.dtype, *, aligned: bool = True) -> np.ndarray:
    """A C-contiguous, native-byte-order array of `dtype`, aligned unless `aligned` is False
    (no copy when arr already is one).

    np.ascontiguousarray keeps an array that starts at an address that is not a multiple
    of its itemsize (a buffer read at an offset, a chunk received from a cluster); numpy's
    matmul skips BLAS for those (10x slower) and C kernels must not read them through
    typed pointers, so they are copied into fresh, aligned memory -- except where the
    caller reads them safely itself (aligned=False: the row kernels, whose loads work at
    any address, and GEMMs that stage them block by block, _batch.product).
    """
    out = np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("="))
    return out if out.flags.aligned or not aligned else out.copy()


def owned(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A private C-contiguous copy, which later changes to the caller's array cannot reach."""
    return np.array(arr, dtype=np.dtype(dtype).newbyteorder("="), order="C", copy=True)


def check_size(value: Any, name: str) -> int:
    """A dimension such as n: a non-negative int (numpy integers accepted, bool refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected a non-negative int, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{name}: expected a non-negative int, got {value}")
    if value > MAX_DIM:
        raise ValueError(f"{name}: expected at most {MAX_DIM} (numpy's largest dimension), got {value}")
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


def check_names(value: Any, name: str, choices: tuple[str, ...]) -> frozenset[str]:
    """Several of a fixed set of strings, as a list or tuple (a lone string is refused: its
    letters would be taken for names); repeats count once."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name}: expected a list or tuple of names, got {type(value).__name__} {value!r}")
    for item in value:
        check_choice(item, name, choices)
    return frozenset(value)


def check_shape(arr: np.ndarray, name: str, shape: tuple[int, ...]) -> None:
    if arr.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {shape_str(tuple(shape))}, got {shape_str(arr.shape)}")


# --- batches of samples ---------------------------------------------------------------------
#: The two layouts of a linear layer: f = W @ x (W (n, m)) and f = x @ W (W (m, n)).
CONVENTIONS = ("Wx", "xW")


def batch_pair(X: Any, G: Any, names: tuple[str, str] = ("X", "G")) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    """X (B, m) with G (B, n), or X (B, T, m) with G (B, T, n), checked against each other
    (nothing copied); returns them as arrays and their common dtype (float32 or float64).
    Shapes and dtypes alone are read, so stand-ins for lazy arrays are checked as well."""
    nx, ng = names
    Xa = as_array(X, nx, (2, 3), allow_complex=False)
    Ga = as_array(G, ng, (2, 3), allow_complex=False)
    if Xa.ndim != Ga.ndim:
        raise ValueError(
            f"{nx} and {ng}: expected both 2-D ({nx} (B, m), {ng} (B, n)) or both 3-D ({nx} (B, T, m), "
            f"{ng} (B, T, n)), got {nx} {Xa.ndim}-D with shape {shape_str(Xa.shape)} and "
            f"{ng} {Ga.ndim}-D with shape {shape_str(Ga.shape)}"
        )
    for axis, what, letter in ((0, "batch sizes", "B"), (1, "sequence lengths", "T"))[: Xa.ndim - 1]:
        if Xa.shape[axis] != Ga.shape[axis]:
            raise ValueError(
                f"{nx} and {ng}: {what} differ: {nx} has {letter}={Xa.shape[axis]} (axis {axis}), "
                f"{ng} has {letter}={Ga.shape[axis]} (axis {axis})"
            )
    return Xa, Ga, common_dtype({nx: Xa, ng: Ga}, allow_complex=False)


def check_second_batch(X: Any, G: Any, X2: Any, G2: Any) -> None:
    """X2 and G2 (checked against each other by batch_pair) against X and G: the same
    ndim and widths (B and T may differ).  Shapes alone are read, so dask arrays are
    checked without computing them."""
    if X2.ndim != X.ndim:
        raise ValueError(
            f"X2: expected {X.ndim}-D like X (shape {shape_str(X.shape)}), "
            f"got {X2.ndim}-D with shape {shape_str(X2.shape)}"
        )
    for name, a, b in (("X2", X2, X), ("G2", G2, G)):
        if a.shape[-1] != b.shape[-1]:
            raise ValueError(
                f"{name}: expected {b.shape[-1]} columns (last axis) like {name[0]}, got shape {shape_str(a.shape)}"
            )


def both_or_neither(X2: Any, G2: Any) -> None:
    """per_sample_grad_dots' second batch: X2 and G2 together or not at all."""
    if (X2 is None) != (G2 is None):
        raise ValueError(f"X2 and G2: expected both or neither, got {'X2' if G2 is None else 'G2'} only")


def positive_float(value: Any, name: str) -> float:
    """A positive, finite real number such as max_norm or eps (numpy scalars accepted)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        raise TypeError(f"{name}: expected a positive finite float, got {type(value).__name__} {value!r}")
    result = float(value)
    if not (math.isfinite(result) and result > 0):
        raise ValueError(f"{name}: expected a positive finite float, got {result!r}")
    return result


def non_negative_float(value: Any, name: str) -> float:
    """A real number >= 0 such as a tolerance (inf allowed, NaN refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        raise TypeError(f"{name}: expected a non-negative float, got {type(value).__name__} {value!r}")
    if not value >= 0:
        raise ValueError(f"{name}: expected a non-negative float, got {value!r}")
    return float(value)


def check_callable(f: Any, name: str) -> None:
    if not callable(f):
        raise TypeError(f"{name}: expected a callable {name}(W) returning an array, got {type(f).__name__}")


def function_value(out: Any, name: str) -> np.ndarray:
    """What a user's function returned, as an array of numbers (bool, integer, float or complex)."""
    if isinstance(out, np.ma.MaskedArray):
        raise TypeError(f"{name}: returned a masked array; return out.filled(value) instead")
    arr = np.asarray(out)
    if arr.dtype.kind not in "biufc":
        raise TypeError(
            f"{name}: expected {name}(W) to return numbers (bool, integer, float or complex), "
            f"got {type(out).__name__} of dtype {arr.dtype}"
        )
    return arr


def byte_count(value: Any, name: str, *, or_none: bool = False, at_most: int | None = None) -> int:
    """Bytes such as max_bytes: a non-negative int (numpy ints accepted, bool refused) <= at_most."""
    want = "an int or None" if or_none else "a non-negative int (bytes)"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected {want}, got {type(value).__name__} {value!r}")
    if value < 0 or (at_most is not None and value > at_most):
        limit = "" if at_most is None else f" of at most {at_most}"
        raise ValueError(f"{name}: expected a non-negative int{limit} (bytes), got {value}")
    return int(value)


def byte_setting(text: str | None, name: str, default: int, *, at_most: int | None = None) -> int:
    """A byte count from an environment variable such as MATDERIV_MAX_BYTES: `default`
    when it is unset or blank."""
    if text is None or not text.strip():
        return default
    if re.fullmatch(r"\s*[0-9]+\s*", text) is None or (at_most is not None and int(text) > at_most):
        limit = "" if at_most is None else f" (at most {at_most})"
        raise ValueError(f"{name}: expected a non-negative integer number of bytes{limit}, got {text!r}")
    return int(text)


def needs_copy(arr: np.ndarray, dtype: np.dtype, *, aligned: bool = True) -> bool:
    """Whether contiguous(arr, dtype, aligned=aligned) copies (what a byte count must include
    before it does)."""
    flags = arr.flags
    return not (arr.dtype == np.dtype(dtype).newbyteorder("=") and flags.c_contiguous and (flags.aligned or not aligned))


def max_threads() -> int:
    """The largest n_threads accepted: OMP_THREAD_LIMIT, and MAX_THREADS_PER_CORE a core (at
    least 64); beyond, a runtime would create threads until it runs out of memory."""
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
        raise ValueError(f"out: expected shape {shape_str(tuple(shape))}, got {shape_str(out.shape)}")
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
