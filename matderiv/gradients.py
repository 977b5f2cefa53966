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

from typing import Any, Literal, overload

import numpy as np
from numpy.typing import ArrayLike

from . import _batch
from . import _validation as v
from ._batch import CONVENTIONS, REDUCTIONS, Batch, Inputs
from ._dispatch import dask_aware
from ._kernels import _rows
from ._docs import doc, gradients as D

__all__ = ["batch_grad", "clip_and_sum", "per_sample_grad_norms", "per_sample_grads"]

MATERIALIZE_HINT = (
    "batch_grad gives the sum, per_sample_grad_norms the norms and clip_and_sum the "
    "clipped sum without materializing per-sample gradients."
)


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
@doc(D.PER_SAMPLE_GRADS)
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
    v.check_choice(convention, "convention", CONVENTIONS)
    bias = v.check_flag(bias, "bias")
    threads = v.n_threads_value(n_threads)
    inp = Inputs(X, G)
    shape = (inp.B,) + inp.w_shape(convention)
    parts = [((inp.B, inp.n), inp.dtype)] if bias else []
    if out is not None:
        out = v.check_out(out, shape, inp.dtype, (inp.X, inp.G))
    else:
        parts.insert(0, (shape, inp.dtype))
    b = inp.load(parts, what="per_sample_grads", max_bytes=max_bytes, hint=MATERIALIZE_HINT)
    # "xW" gradients outer(X, G) are the "Wx" gradients of the batch with X and G swapped
    out = _batch.grads(b if convention == "Wx" else Batch(b.G, b.X), out, threads)
    if not bias:
        return out
    db = b.bias_grads()
    if np.may_share_memory(db, inp.G):  # 2-D: db is G itself, returned as a copy
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
@doc(D.BATCH_GRAD)
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
    v.check_choice(convention, "convention", CONVENTIONS)
    v.check_choice(reduce, "reduce", REDUCTIONS)
    bias = v.check_flag(bias, "bias")
    inp = Inputs(X, G)
    b = inp.load(inp.parts(inp.w_shape(convention), bias), what="batch_grad", max_bytes=max_bytes, aligned=False)
    dW = _batch.gemm(b.X, b.G, convention)  # misaligned inputs staged block by block
    db = _batch.rows(b.G).sum(axis=0) if bias else None
    if reduce == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            np.divide(dW, b.B, out=dW)
            if db is not None:
                np.divide(db, b.B, out=db)
    return dW if db is None else (dW, db)


# --- norms -----------------------------------------------------------------------------------
@doc(D.PER_SAMPLE_GRAD_NORMS)
@dask_aware
def per_sample_grad_norms(
    X: ArrayLike,
    G: ArrayLike,
    *,
    bias: bool = False,
    n_threads: int | None = None,
) -> np.ndarray:
    bias = v.check_flag(bias, "bias")
    threads = v.n_threads_value(n_threads)
    inp = Inputs(X, G)
    # 2-D: the row kernels read misaligned inputs in place
    b = inp.load([((inp.B,), inp.dtype)], what="per_sample_grad_norms", aligned=inp.ndim == 3)
    return _batch.norms(b, bias, threads).astype(b.dtype, copy=False)


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
@doc(D.CLIP_AND_SUM)
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
    v.check_choice(convention, "convention", CONVENTIONS)
    clip = v.positive_float(max_norm, "max_norm")
    bias = v.check_flag(bias, "bias")
    threads = v.n_threads_value(n_threads)
    inp = Inputs(X, G)
    B, n, m, dtype = inp.B, inp.n, inp.m, inp.dtype
    parts = inp.parts(inp.w_shape(convention), bias) + [((B,), dtype)]
    b = inp.load(parts, what="clip_and_sum", max_bytes=max_bytes, aligned=inp.ndim == 3)  # 2-D: read in place
    materialize = b.ndim == 3 and clip_route(b) == "materialize"
    # non-finite inputs follow the arithmetic documented above, without warnings
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if materialize:
            dW, norms64, factor = _clip_materialized(b, clip, bias)
            db = b.bias_grads().T @ factor.astype(dtype) if bias else None
            dW = _batch.oriented(dW, convention, dtype)
        else:
            dW, db, norms64, factor = _clip_staged(b, clip, bias, convention, threads)
        norms = norms64.astype(dtype)
    if not bias:
        return dW, norms
    return dW, db.astype(dtype, copy=False), norms


def _clip_staged(b: Batch, clip: float, bias: bool, convention: str, threads: int) -> tuple[Any, ...]:
    """2-D, and 3-D on the Gram norms' route: sum_b c_b g_b as a GEMM staged block by block,
    c_b g_b = (c_b G[b]) (x) X[b] = G[b] (x) (c_b X[b]) with the narrower operand a scaled
    into a cache-sized buffer in front of each block's GEMM.  2-D: the block's norms and
    factors come from the same kernel pass that scales it (one read of G and X in all);
    3-D: from the Gram norms first.  Returns dW, db (float64, or None), norms and factors."""
    B, T, n, m, dtype = b.B, b.T, b.n, b.m, b.dtype
    scale_G = n <= m  # scale the narrower of the two
    a, other = (b.G, b.X) if scale_G else (b.X, b.G)
    step = _batch.stage_rows(max(n, m) * dtype.itemsize, T, threads)
    buf = np.empty((min(step, B),) + a.shape[1:], dtype)
    other_rows = _batch.stager(_batch.rows(other), step * T)
    norms, factor = (np.empty(B), np.empty(B)) if b.ndim == 2 else _gram_factors(b, clip, bias, threads)
    db = np.zeros(n) if bias else None
    ones = np.ones(min(step, B) * T, dtype) if bias and scale_G else None

    def fill(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        cb = buf[: hi - lo]
        if b.ndim == 2:
            _clip_rows(b, scale_G, clip, bias, threads, lo, hi, cb, norms, factor)
        else:
            np.multiply(a[lo:hi], factor[lo:hi, None, None].astype(dtype), out=cb)
        cb_rows, o_rows = _batch.rows(cb), other_rows(lo * T, hi * T)
        if db is not None:  # sum_b c_b db_b, from the block's scaled or staged rows
            if scale_G:  # a GEMV with ones: a sum over rows at BLAS speed
                db[:] += ones[: len(cb_rows)] @ cb_rows
            else:  # db_b is G's (staged) row in 2-D, the sum of its steps in 3-D
                db[:] += factor[lo:hi].astype(dtype) @ (o_rows if b.ndim == 2 else b.G[lo:hi].sum(axis=1))
        return (o_rows, cb_rows) if scale_G == (convention == "xW") else (cb_rows, o_rows)

    dW = _batch.staged_product(B, step, _batch.w_shape(n, m, convention), dtype, fill)
    return dW, db, norms, factor


def _gram_factors(b: Batch, clip: float, bias: bool, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """3-D: the norms by their route, and the factors c_b."""
    norms = _batch.norms(b, bias, threads)
    return norms, _clip_factors(norms, clip)


def _clip_rows(b: Batch, scale_G: bool, clip: float, bias: bool, threads: int, lo: int, hi: int,
               cb: np.ndarray, norms: np.ndarray, factor: np.ndarray) -> None:
    """2-D rows lo:hi in one kernel pass: the scaled copy c_b a_b of the narrower operand a
    into cb, the norms and the factors c_b (float64) into norms[lo:hi] and factor[lo:hi].
    Samples whose factorized norm is not finite are recomputed from their materialized
    gradients (it may miss a 0 * inf of g_b)."""
    a, other = (b.G, b.X) if scale_G else (b.X, b.G)
    shift = 1.0 if bias else 0.0  # ||g_b||^2 + ||db_b||^2 = ||G[b]||^2 (||X[b]||^2 + 1)
    a_shift, b_shift = (0.0, shift) if scale_G else (shift, 0.0)
    nb, fb = norms[lo:hi], factor[lo:hi]
    _rows.clip_rows(a[lo:hi], other[lo:hi], a_shift, b_shift, clip, cb, nb, fb, threads)
    bad = np.flatnonzero(~np.isfinite(nb))
    if bad.size:
        nb[bad] = _batch.exact_norms(b, lo + bad, bias)
        fb[bad] = _clip_factors(nb[bad], clip)
        cb[bad] = a[lo + bad] * fb[bad, None].astype(a.dtype)


def clip_route(b: Batch) -> str:
    """3-D: the cheaper of clipping from the norms' route with a GEMM of the scaled copy
    ("gram" where the norms take the Gram sums) and from materialized per-sample
    gradients (norms, factors and the sum from each block), by _batch.route_cost."""
    costs = _batch.norm_costs(b)
    B, T, n, m, size = b.B, b.T, b.n, b.m, b.dtype.itemsize
    # gram: the staged GEMM, and each block read and its scaled copy written once more;
    # materialize: the GEMV of the factors, and the gradients read twice (norms, sum)
    costs["gram"] += _batch.route_cost(b.dtype, blas=B * T * n * m, temporaries=2 * B * T * min(n, m) * size)
    costs["materialize"] += _batch.route_cost(b.dtype, blas=B * n * m, temporaries=2 * B * n * m * size)
    return min(costs, key=costs.get)


def _clip_materialized(b: Batch, clip: float, bias: bool) -> tuple[np.ndarray, ...]:
    """3-D where per-sample gradients are cheaper to form than the Gram sums: each block of
    them gives its norms, factors and share of the clipped sum (one GEMV), so nothing is
    formed twice.  Returns the "Wx" (n, m) sum in float64, the norms and the factors."""
    acc, norms, factor = np.zeros(b.n * b.m), np.empty(b.B), np.empty(b.B)
    db = b.bias_grads() if bias else None
    for lo, gw in _batch.grad_blocks(b):
        flat = gw.reshape(len(gw), -1)
        rows = slice(lo, lo + len(flat))
        sq = _batch.row_dots(flat, flat, 1)  # serial between BLAS calls
        if db is not None:
            sq += _batch.row_dots(db[rows], db[rows], 1)
        norms[rows] = np.sqrt(sq)
        factor[rows] = _clip_factors(norms[rows], clip)
        acc += factor[rows].astype(b.dtype) @ flat  # NaN and 0 * inf as in c_b g_b
    return acc.reshape(b.n, b.m), norms, factor


def _clip_factors(norms: np.ndarray, clip: float) -> np.ndarray:
    """c_b = min(1, clip / ||g_b||): 1 for a zero norm, 0 for an infinite one, NaN for NaN."""
    with np.errstate(divide="ignore"):
        return np.minimum(1.0, clip / norms)
