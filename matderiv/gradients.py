"""Per-sample and batch gradients of a linear layer under a scalar loss.

For f = W @ x with W of shape (n, m) ("Wx") and an upstream gradient g = dL/df,
dL/dW = outer(g, x); for the row convention f = x @ W with W of shape (m, n)
("xW") it is outer(x, g).  A batch stacks samples: X (B, m) with G (B, n), or
sequences X (B, T, m) with G (B, T, n), where sample b's gradient sums its T steps:

    g_b = sum_t outer(G[b, t], X[b, t])        (n, m) for "Wx", its transpose for "xW"

and a bias (f = W @ x + c) has the gradient db_b = sum_t G[b, t].

Threads: 2-D per_sample_grads, the norms, the short-sequence Gram norms and the
clipping factors run matderiv's OpenMP kernels on n_threads threads (the reductions
inside the 3-D block loops, between BLAS calls, run serially); the matrix products are
BLAS, whose own thread pool applies (OPENBLAS_NUM_THREADS, threadpoolctl).  The
row-wise reductions accumulate in float64 whatever the input dtype, without a float64
copy of the inputs.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Any, Literal, overload

import numpy as np
from numpy.typing import ArrayLike

from . import _validation as v
from ._dispatch import dask_aware
from ._kernels import _outer, _rows as _rows_kernels
from ._memory import check_output_bytes

__all__ = ["batch_grad", "clip_and_sum", "per_sample_grad_norms", "per_sample_grads"]

CONVENTIONS = ("Wx", "xW")
REDUCTIONS = ("sum", "mean")
ROUTES = ("gram", "materialize")

#: Bytes of temporaries one block of samples may use in the 3-D norm routes.
BLOCK_BYTES = 4 * 2**20

#: Sequences up to this length take the Gram route in one OpenMP kernel pass (no tiny
#: BLAS call per sample); longer ones in BLAS blocks, faster per multiply-add.
GRAM_KERNEL_STEPS = 32

_MATERIALIZE_HINT = (
    "batch_grad gives the sum, per_sample_grad_norms the norms and clip_and_sum the "
    "clipped sum without materializing per-sample gradients."
)


# --- validation ------------------------------------------------------------------------
def _inputs(X: ArrayLike, G: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check X and G against each other; return them as given and as C-contiguous
    arrays of the common dtype (float32 or float64)."""
    Xa = v.as_array(X, "X", (2, 3), allow_complex=False)
    Ga = v.as_array(G, "G", (2, 3), allow_complex=False)
    if Xa.ndim != Ga.ndim:
        raise ValueError(
            "X and G: expected both 2-D (X (B, m), G (B, n)) or both 3-D (X (B, T, m), "
            f"G (B, T, n)), got X {Xa.ndim}-D with shape {v._shape_str(Xa.shape)} and "
            f"G {Ga.ndim}-D with shape {v._shape_str(Ga.shape)}"
        )
    if Xa.shape[0] != Ga.shape[0]:
        raise ValueError(
            f"X and G: batch sizes differ: X has B={Xa.shape[0]} (axis 0), "
            f"G has B={Ga.shape[0]} (axis 0)"
        )
    if Xa.ndim == 3 and Xa.shape[1] != Ga.shape[1]:
        raise ValueError(
            f"X and G: sequence lengths differ: X has T={Xa.shape[1]} (axis 1), "
            f"G has T={Ga.shape[1]} (axis 1)"
        )
    dtype = v.common_dtype({"X": Xa, "G": Ga}, allow_complex=False)
    return Xa, Ga, v.contiguous(Xa, dtype), v.contiguous(Ga, dtype)


def _check_max_norm(max_norm: Any) -> float:
    """max_norm: a positive, finite real number."""
    if isinstance(max_norm, (bool, np.bool_)) or not isinstance(max_norm, Real):
        raise TypeError(f"max_norm: expected a positive finite float, got {type(max_norm).__name__} {max_norm!r}")
    value = float(max_norm)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"max_norm: expected a positive finite float, got {value!r}")
    return value


def _W_shape(n: int, m: int, convention: str) -> tuple[int, int]:
    return (n, m) if convention == "Wx" else (m, n)


# --- per-sample gradients ------------------------------------------------------------------
@overload
def per_sample_grads(
    X: ArrayLike, G: ArrayLike, *, convention: str = ..., bias: Literal[False] = ...,
    out: np.ndarray | None = ..., max_bytes: int | None = ..., n_threads: int | None = ...,
) -> np.ndarray: ...
@overload
def per_sample_grads(
    X: ArrayLike, G: ArrayLike, *, convention: str = ..., bias: Literal[True],
    out: np.ndarray | None = ..., max_bytes: int | None = ..., n_threads: int | None = ...,
) -> tuple[np.ndarray, np.ndarray]: ...
@dask_aware
def per_sample_grads(
    X: ArrayLike,
    G: ArrayLike,
    *,
    convention: str = "Wx",
    bias: bool = False,
    out: np.ndarray | None = None,
    max_bytes: int | None = None,
    n_threads: int | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """One weight gradient per sample.

    "Wx": out[b] = outer(G[b], X[b]), shape (B, n, m) (3-D: sum_t outer(G[b, t], X[b, t])).
    "xW": out[b] = outer(X[b], G[b]), shape (B, m, n) (the transposes).
    X: (B, m) or (B, T, m); G: (B, n) or (B, T, n).  bias=True returns (dW, db) with
    db[b] = G[b] (2-D) or sum_t G[b, t] (3-D), shape (B, n).

    out= receives dW (validated; the same object is returned).  max_bytes bounds
    what is allocated (OutputTooLargeError before any allocation).  2-D inputs run an
    OpenMP kernel on n_threads threads that writes every output element once; 3-D
    inputs are one batched matrix product G[b].T @ X[b] through BLAS (BLAS's threads).
    Only materialize per-sample gradients when they are needed one by one:
    batch_grad, per_sample_grad_norms and clip_and_sum never do.
    """
    v.check_choice(convention, "convention", CONVENTIONS)
    bias = v.check_flag(bias, "bias")
    threads = v.n_threads_value(n_threads)
    Xa, Ga, Xc, Gc = _inputs(X, G)
    B, n, m = Xc.shape[0], Gc.shape[-1], Xc.shape[-1]
    shape = (B,) + _W_shape(n, m, convention)
    dtype = Xc.dtype
    parts: list[tuple[tuple[int, ...], np.dtype]] = [((B, n), dtype)] if bias else []
    if out is not None:
        out = v.check_out(out, shape, dtype, (Xa, Ga))
    else:
        parts.insert(0, (shape, dtype))
    check_output_bytes(parts, what="per_sample_grads", max_bytes=max_bytes, hint=_MATERIALIZE_HINT)
    if out is None:
        out = np.empty(shape, dtype=dtype)

    if Xc.ndim == 2:
        first, second = (Gc, Xc) if convention == "Wx" else (Xc, Gc)
        _outer.outer(first, second, out, threads)
    elif Xc.shape[1] == 0:  # no steps: every gradient is an empty sum
        out.fill(0)
    elif convention == "Wx":
        np.matmul(Gc.transpose(0, 2, 1), Xc, out=out)
    else:
        np.matmul(Xc.transpose(0, 2, 1), Gc, out=out)

    if not bias:
        return out
    db = _bias_grads(Gc)
    if np.may_share_memory(db, Ga):  # 2-D: db is G itself, returned as a copy
        db = db.copy()
    return out, db


# --- batch gradient ------------------------------------------------------------------------
@overload
def batch_grad(
    X: ArrayLike, G: ArrayLike, *, convention: str = ..., reduce: str = ..., bias: Literal[False] = ...,
    max_bytes: int | None = ...,
) -> np.ndarray: ...
@overload
def batch_grad(
    X: ArrayLike, G: ArrayLike, *, convention: str = ..., reduce: str = ..., bias: Literal[True],
    max_bytes: int | None = ...,
) -> tuple[np.ndarray, np.ndarray]: ...
@dask_aware
def batch_grad(
    X: ArrayLike,
    G: ArrayLike,
    *,
    convention: str = "Wx",
    reduce: str = "sum",
    bias: bool = False,
    max_bytes: int | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The gradient of the whole batch: G_flat.T @ X_flat ("Wx", (n, m)) or
    X_flat.T @ G_flat ("xW", (m, n)), one BLAS call over all B*T rows.

    reduce="sum" gives sum_b g_b; reduce="mean" divides by B, the number of samples
    (not by B*T: the steps of a sequence add up within its sample), so B = 0 gives
    NaN (0/0), as np.mean of an empty axis does.  bias=True returns (dW, db) with
    db = sum over samples and steps of G (divided by B for "mean").  max_bytes bounds
    the output (n*m can dwarf the inputs when B is small).
    """
    v.check_choice(convention, "convention", CONVENTIONS)
    v.check_choice(reduce, "reduce", REDUCTIONS)
    bias = v.check_flag(bias, "bias")
    _, _, Xc, Gc = _inputs(X, G)
    n, m = Gc.shape[-1], Xc.shape[-1]
    parts = [((n, m), Xc.dtype)] + ([((n,), Xc.dtype)] if bias else [])
    check_output_bytes(parts, what="batch_grad", max_bytes=max_bytes, hint="")
    dW = _weight_grad(Xc, Gc, convention)
    db = _rows(Gc).sum(axis=0) if bias else None
    if reduce == "mean":
        B = Xc.shape[0]
        with np.errstate(invalid="ignore", divide="ignore"):
            np.divide(dW, B, out=dW)
            if db is not None:
                np.divide(db, B, out=db)
    return dW if db is None else (dW, db)


def _rows(A: np.ndarray) -> np.ndarray:
    """(B, [T,] k) as (B*T, k) (explicit sizes: -1 is ambiguous when k is 0)."""
    return A.reshape(math.prod(A.shape[:-1]), A.shape[-1])


def _bias_grads(Gc: np.ndarray) -> np.ndarray:
    """Per-sample bias gradients db_b = sum_t G[b, t], (B, n): G itself when 2-D."""
    return Gc if Gc.ndim == 2 else Gc.sum(axis=1)


def _weight_grad(Xc: np.ndarray, Gc: np.ndarray, convention: str) -> np.ndarray:
    """sum_b g_b as one GEMM over all B*T rows: G_flat.T @ X_flat or its transpose."""
    Xf, Gf = _rows(Xc), _rows(Gc)
    return Gf.T @ Xf if convention == "Wx" else Xf.T @ Gf


# --- norms -----------------------------------------------------------------------------------
@dask_aware
def per_sample_grad_norms(
    X: ArrayLike,
    G: ArrayLike,
    *,
    bias: bool = False,
    n_threads: int | None = None,
) -> np.ndarray:
    """Frobenius norms ||g_b|| of the per-sample gradients, shape (B,), without
    materializing them (the same for both conventions: a transpose keeps the norm).

    bias=True includes the bias gradient: sqrt(||g_b||^2 + ||db_b||^2).

    2-D: ||outer(G[b], X[b])|| = ||G[b]|| * ||X[b]||, O(B*(n+m)) time and memory.
    3-D: one of two routes, both blocked over samples so temporaries stay near
    BLOCK_BYTES (4 MiB; at least one sample's worth):
      * Gram:        ||g_b||^2 = sum_{t,s} (G[b,t].G[b,s]) (X[b,t].X[b,s]),
                     cost ~ T^2 (n + m + 1) per sample, (block, T, T) float64 temporaries
                     (T <= GRAM_KERNEL_STEPS: one kernel pass on n_threads threads, no
                     temporaries, half the pairs by symmetry);
      * materialize: g_b = G[b].T @ X[b] per block of samples, then its sum of squares,
                     cost ~ (T + 1) n m per sample, (block, n, m) temporaries.
    The cheaper by these counts is taken: Gram when T^2 (n + m + 1) < (T + 1) n m,
    roughly when T < n m / (n + m).  The Gram sum can cancel: a gradient whose steps
    nearly cancel gets a norm accurate to about sqrt(eps) * ||G[b]|| ||X[b]||
    (negative round-off is clamped to 0).  NaN and inf propagate.  Every dot product
    accumulates in float64, also for float32 inputs; n_threads threads.
    """
    bias = v.check_flag(bias, "bias")
    threads = v.n_threads_value(n_threads)
    _, _, Xc, Gc = _inputs(X, G)
    return _grad_norms(Xc, Gc, bias, threads=threads)


def _row_dots(a: np.ndarray, b: np.ndarray, threads: int) -> np.ndarray:
    """Row-wise dot products of two C-contiguous (S, K) arrays of one dtype, accumulated
    in float64 (squares of float32 entries overflow or underflow long before the norm
    does), without a float64 copy: shape (S,), float64."""
    out = np.empty(a.shape[0])
    _rows_kernels.row_dots(a, b, out, threads)
    return out


def _route(T: int, n: int, m: int) -> str:
    """The cheaper 3-D norm route by multiply-add counts (see per_sample_grad_norms)."""
    return "gram" if T * T * (n + m + 1) < (T + 1) * n * m else "materialize"


def _block_size(per_sample_bytes: int, B: int) -> int:
    """Samples per block: temporaries within BLOCK_BYTES, at least 1, at most B (or 1)."""
    return max(1, min(B, BLOCK_BYTES // max(1, per_sample_bytes)))


def _grad_norms(
    Xc: np.ndarray, Gc: np.ndarray, bias: bool, route: str | None = None, threads: int | None = None
) -> np.ndarray:
    """Norms from validated inputs; `route` forces a 3-D route (tests), None picks the cheaper;
    threads None: the default count."""
    threads = v.n_threads_value(None) if threads is None else threads
    if Xc.ndim == 2:  # ||g_b||^2 + ||db_b||^2 = ||G[b]||^2 (||X[b]||^2 + 1), straight into the output
        norms = np.empty(Xc.shape[0], dtype=Xc.dtype)
        _rows_kernels.outer_norms(Gc, Xc, 0.0, 1.0 if bias else 0.0, norms, threads)
        return norms
    return np.sqrt(_grad_squared_norms(Xc, Gc, bias, route, threads)).astype(Xc.dtype)


def _grad_squared_norms(Xc: np.ndarray, Gc: np.ndarray, bias: bool, route: str | None, threads: int) -> np.ndarray:
    """||g_b||^2 (+ ||db_b||^2) in float64, shape (B,) (see per_sample_grad_norms)."""
    B, n, m = Xc.shape[0], Gc.shape[-1], Xc.shape[-1]
    if Xc.ndim == 2:
        g2 = _row_dots(Gc, Gc, threads)
        x2 = _row_dots(Xc, Xc, threads)
        if bias:
            x2 += 1.0  # ||db_b||^2 = ||G[b]||^2, so ||g_b||^2 + ||db_b||^2 = g2 * (x2 + 1)
        return g2 * x2

    T = Xc.shape[1]
    route = _route(T, n, m) if route is None else v.check_choice(route, "route", ROUTES)
    sq = np.empty(B)
    # serial reductions inside the block loops: an OpenMP region between BLAS calls would
    # fight BLAS's spinning threads for the cores, and one block is little work
    if route == "gram" and T <= GRAM_KERNEL_STEPS:
        _rows_kernels.gram_sq(Gc, Xc, sq, threads)  # float64 sums, symmetry in t, s used
        np.maximum(sq, 0.0, out=sq)  # round-off of a cancelling sum; NaN stays NaN
    elif route == "gram":  # in float64: the Gram entries are products of squares
        step = _block_size(8 * (2 * T * T + T * (n + m)), B)
        gg = np.empty((step, T, T))  # G[b,t] . G[b,s], reused by every block
        xx = np.empty((step, T, T))  # X[b,t] . X[b,s]
        for lo in range(0, B, step):
            Gb = Gc[lo : lo + step].astype(np.float64, copy=False)  # a float64 block, not a copy of G
            Xb = Xc[lo : lo + step].astype(np.float64, copy=False)
            k = Gb.shape[0]
            np.matmul(Gb, Gb.transpose(0, 2, 1), out=gg[:k])
            np.matmul(Xb, Xb.transpose(0, 2, 1), out=xx[:k])
            sq[lo : lo + k] = _row_dots(gg[:k].reshape(k, T * T), xx[:k].reshape(k, T * T), 1)
        np.maximum(sq, 0.0, out=sq)  # round-off of a cancelling sum; NaN stays NaN
    else:
        step = _block_size(n * m * Xc.dtype.itemsize, B)
        gw = np.empty((step, n, m), dtype=Xc.dtype)  # one block of per-sample gradients
        for lo in range(0, B, step):
            Gb, Xb = Gc[lo : lo + step], Xc[lo : lo + step]
            k = Gb.shape[0]
            np.matmul(Gb.transpose(0, 2, 1), Xb, out=gw[:k])
            flat = gw[:k].reshape(k, n * m)
            sq[lo : lo + k] = _row_dots(flat, flat, 1)
    if bias:
        db = _bias_grads(Gc)
        sq += _row_dots(db, db, threads)
    return sq


# --- clipping ---------------------------------------------------------------------------------
@overload
def clip_and_sum(
    X: ArrayLike, G: ArrayLike, max_norm: float, *, convention: str = ...,
    bias: Literal[False] = ..., max_bytes: int | None = ..., n_threads: int | None = ...,
) -> tuple[np.ndarray, np.ndarray]: ...
@overload
def clip_and_sum(
    X: ArrayLike, G: ArrayLike, max_norm: float, *, convention: str = ...,
    bias: Literal[True], max_bytes: int | None = ..., n_threads: int | None = ...,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
@dask_aware
def clip_and_sum(
    X: ArrayLike,
    G: ArrayLike,
    max_norm: float,
    *,
    convention: str = "Wx",
    bias: bool = False,
    max_bytes: int | None = None,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sum of per-sample gradients, each clipped to norm max_norm (as in DP-SGD):

        dW = sum_b c_b g_b,   c_b = min(1, max_norm / ||g_b||)

    where ||g_b|| is the norm of sample b's whole gradient (weight and, with bias=True,
    bias: sqrt(||g_b||^2 + ||db_b||^2)); db = sum_b c_b db_b.  A zero-norm sample has
    c_b = 1.  Returns (dW, norms) or (dW, db, norms); dW is (n, m) for "Wx" and (m, n)
    for "xW", norms the unclipped ||g_b||, shape (B,).

    One pass over G and X that forms the norms, the factors and the scaled copy of the
    narrower of G and X (2-D: one kernel; 3-D: the norms of per_sample_grad_norms, then
    the scaling), and one GEMM with that copy (db is one GEMV): peak memory
    O(B*T*(n + m) + n*m), no per-sample gradient is materialized.
    Non-finite samples follow the arithmetic of c_b * g_b (they are not dropped): a
    NaN norm gives c_b = NaN, which turns all of dW NaN; an infinite norm gives
    c_b = 0, and 0 * inf = NaN where g_b is infinite.  max_norm must be a positive
    finite number.  max_bytes bounds the outputs and the scaled copy of G or X.
    """
    v.check_choice(convention, "convention", CONVENTIONS)
    clip = _check_max_norm(max_norm)
    bias = v.check_flag(bias, "bias")
    threads = v.n_threads_value(n_threads)
    _, _, Xc, Gc = _inputs(X, G)
    B, n, m = Xc.shape[0], Gc.shape[-1], Xc.shape[-1]
    scaled = Gc.shape[:-1] + (min(n, m),)
    parts = [((n, m), Xc.dtype), ((B,), Xc.dtype), (scaled, Xc.dtype)] + ([((n,), Xc.dtype)] if bias else [])
    check_output_bytes(parts, what="clip_and_sum", max_bytes=max_bytes, hint="")
    # non-finite inputs follow the arithmetic documented above, without warnings
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # c_b g_b = (c_b G[b]) (x) X[b] = G[b] (x) (c_b X[b]): scale the narrower of the two
        scale_G = n <= m
        if Xc.ndim == 2:
            a, b = (Gc, Xc) if scale_G else (Xc, Gc)
            cb = np.empty_like(a)
            norms64, factor = np.empty(B), np.empty(B)
            shift = 1.0 if bias else 0.0  # ||g_b||^2 + ||db_b||^2 = ||G[b]||^2 (||X[b]||^2 + 1)
            a_shift, b_shift = (0.0, shift) if scale_G else (shift, 0.0)
            _rows_kernels.clip_rows(a, b, a_shift, b_shift, clip, cb, norms64, factor, threads)
        else:
            norms64 = np.sqrt(_grad_squared_norms(Xc, Gc, bias, None, threads))
            factor = np.minimum(1, clip / norms64)  # norm 0 -> inf -> 1; NaN stays NaN
            cb = (Gc if scale_G else Xc) * factor.astype(Xc.dtype)[:, None, None]
        dW = _weight_grad(Xc, cb, convention) if scale_G else _weight_grad(cb, Gc, convention)
        norms = norms64.astype(Xc.dtype)
        if not bias:
            return dW, norms
        db = _bias_grads(Gc).T @ factor.astype(Xc.dtype)  # sum_b c_b db_b
    return dW, db, norms
