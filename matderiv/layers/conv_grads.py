"""The batched functions on a Conv: registered for X = md.Conv(x, ...) with G = dL/dy of shape
(B, O, *out) (matderiv._dispatch.register_input), so `md.batch_grad(md.Conv(x, 3), G)` is
the weight gradient of a convolution, of shape (O, C, *kernel).

Each call unfolds the samples a block at a time into one reused pair of buffers, U (k, T, C K)
and Gt (k, T, O) (G's block as T steps), blocks sized to the temporaries' budget
(_batch.block_rows), and runs the in-memory function on each block, a sequence batch with
T = positions (so that function's routes apply per block), combining the blocks' results:
sums in float64 (batch_grad, clip_and_sum: clipping is per sample, so block sums are exact;
sum_grad_squared; kfac_factors as count-weighted means), per-sample results written in
place (norms, per-sample gradients), (count, mean, M2) merged by Chan's update
(grad_variance) and a grid of blocks (per_sample_grad_dots, mirrored when symmetric).
One block holding the whole batch gives exactly the in-memory function's result on the
materialized patches.  The weight's shape is the one orientation: convention is "Wx" only.
A Conv over a dask array (chunked along B), or a dask G, goes to matderiv.layers.conv_dask.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _batch, _moments
from .. import _validation as v
from .. import gradients as mem
from .. import statistics as mem_stats
from .._dispatch import register_input
from .conv import Conv, ConvBlocks

__all__ = [
    "batch_grad", "clip_and_sum", "grad_variance", "kfac_factors", "per_sample_grad_dots",
    "per_sample_grad_norms", "per_sample_grads", "sum_grad_squared",
]

_F64 = np.dtype(np.float64)


def _add(acc: list[np.ndarray] | None, parts: tuple[np.ndarray, ...], weight: float = 1.0) -> list[np.ndarray]:
    """acc + weight * parts, field by field, in float64 (a new float64 copy for acc None)."""
    if acc is None:
        return [np.multiply(p, weight, dtype=_F64) for p in parts]
    for a, p in zip(acc, parts):
        a += np.multiply(p, weight, dtype=_F64)
    return acc


def _sums(blocks: ConvBlocks, call: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, ...]],
          weight: Callable[[int], float] = lambda k: 1.0) -> list[np.ndarray]:
    """sum over blocks of weight(k) * call(U, Gt) in float64, as the blocks' dtype (exactly
    the one call's results where one block holds the batch and the weight is 1)."""
    acc = None
    with np.errstate(invalid="ignore", over="ignore"):
        for _, U, Gt in blocks:
            acc = _add(acc, call(U, Gt), weight(len(U)))
    return [a.astype(blocks.dtype) for a in acc]


def _shaped(blocks: ConvBlocks, dW: np.ndarray, lead: tuple[int, ...] = ()) -> np.ndarray:
    """An (..., O, C K) result in the weight's shape (..., O, C, *kernel)."""
    return dW.reshape(lead + blocks.X.weight_shape(blocks.O))


# --- gradients ---------------------------------------------------------------------------------
def per_sample_grads(X: Conv, G: Any, *, convention: str = "Wx", bias: bool = False, out: np.ndarray | None = None,
                     max_bytes: int | None = None, n_threads: int | None = None) -> Any:
    """(B, O, C, *kernel): every sample's weight gradient (with bias=True also db (B, O)),
    each block's written into the result (out=, if given)."""
    v.conv_convention(convention)
    bias = v.check_flag(bias, "bias")
    blocks = ConvBlocks(X, G, v.n_threads_value(n_threads))
    B, O, dtype = blocks.B, blocks.O, blocks.dtype
    shape = (B,) + X.weight_shape(O)
    parts = [((B, O), dtype)] if bias else []
    if out is not None:
        out = v.check_out(out, shape, dtype, (X.x, blocks.G))
    else:
        parts.insert(0, (shape, dtype))
    blocks.load(parts, what="per_sample_grads", max_bytes=max_bytes, hint=mem.MATERIALIZE_HINT,
                per_extra=O * bias)
    out = np.empty(shape, dtype) if out is None else out
    flat, db = out.reshape(B, O, blocks.m), np.empty((B, O), dtype) if bias else None
    for lo, U, Gt in blocks:
        k = len(U)
        found = mem.per_sample_grads(U, Gt, bias=bias, out=flat[lo : lo + k], max_bytes=blocks.inner_max,
                                     n_threads=blocks.threads)
        if bias:
            db[lo : lo + k] = found[1]
    return (out, db) if bias else out


def batch_grad(X: Conv, G: Any, *, convention: str = "Wx", reduce: str = "sum", bias: bool = False,
               max_bytes: int | None = None) -> Any:
    """sum_b g_b (reduce="mean": divided by B), (O, C, *kernel) (with bias=True also db (O,))."""
    v.conv_convention(convention)
    v.check_choice(reduce, "reduce", _batch.REDUCTIONS)
    bias = v.check_flag(bias, "bias")
    blocks = ConvBlocks(X, G, v.n_threads_value(None))
    parts = [((blocks.O, blocks.m), blocks.dtype)] + ([((blocks.O,), blocks.dtype)] if bias else [])
    blocks.load(parts, what="batch_grad", max_bytes=max_bytes, partial=parts)
    call = functools.partial(_tuple(mem.batch_grad), bias=bias, max_bytes=blocks.inner_max)
    found = _sums(blocks, call)
    if reduce == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            found = [np.divide(a, blocks.B, out=a) for a in found]
    found[0] = _shaped(blocks, found[0])
    return tuple(found) if bias else found[0]


def per_sample_grad_norms(X: Conv, G: Any, *, bias: bool = False, n_threads: int | None = None) -> np.ndarray:
    """||g_b|| (with bias=True sqrt(||g_b||^2 + ||db_b||^2)), (B,)."""
    bias = v.check_flag(bias, "bias")
    blocks = ConvBlocks(X, G, v.n_threads_value(n_threads))
    blocks.load([((blocks.B,), blocks.dtype)], what="per_sample_grad_norms", max_bytes=None, per_extra=1)
    norms = np.empty(blocks.B, blocks.dtype)
    for lo, U, Gt in blocks:
        norms[lo : lo + len(U)] = mem.per_sample_grad_norms(U, Gt, bias=bias, n_threads=blocks.threads)
    return norms


def clip_and_sum(X: Conv, G: Any, max_norm: float, *, convention: str = "Wx", bias: bool = False,
                 max_bytes: int | None = None, n_threads: int | None = None) -> tuple[np.ndarray, ...]:
    """(dW, norms) or (dW, db, norms): sum_b min(1, max_norm / ||g_b||) g_b, (O, C, *kernel);
    each block clips and sums its own samples (the factor depends on sample b alone)."""
    v.conv_convention(convention)
    clip = v.positive_float(max_norm, "max_norm")
    bias = v.check_flag(bias, "bias")
    blocks = ConvBlocks(X, G, v.n_threads_value(n_threads))
    B, O, m, dtype = blocks.B, blocks.O, blocks.m, blocks.dtype
    sums = [((O, m), dtype)] + ([((O,), dtype)] if bias else [])
    scaled = blocks.T * min(O, m)  # the in-memory function's scaled copy, per sample
    blocks.load(sums + [((B,), dtype)], what="clip_and_sum", max_bytes=max_bytes, partial=sums,
                per_extra=1 + scaled)
    norms = np.empty(B, dtype)
    acc = None
    with np.errstate(invalid="ignore", over="ignore"):
        for lo, U, Gt in blocks:
            *found, norms[lo : lo + len(U)] = mem.clip_and_sum(U, Gt, clip, bias=bias, max_bytes=blocks.inner_max,
                                                               n_threads=blocks.threads)
            acc = _add(acc, tuple(found))
    acc[0] = _shaped(blocks, acc[0])
    return tuple(a.astype(dtype) for a in acc) + (norms,)


def _tuple(func: Callable[..., Any]) -> Callable[..., tuple[np.ndarray, ...]]:
    """func with its result as a tuple (one field for a single array)."""

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        found = func(*args, **kwargs)
        return found if isinstance(found, tuple) else (found,)

    return call


# --- statistics --------------------------------------------------------------------------------
def sum_grad_squared(X: Conv, G: Any, *, convention: str = "Wx", bias: bool = False,
                     max_bytes: int | None = None) -> Any:
    """sum_b g_b * g_b, (O, C, *kernel) (with bias=True also sum_b db_b^2, (O,))."""
    v.conv_convention(convention)
    bias = v.check_flag(bias, "bias")
    blocks = ConvBlocks(X, G, v.n_threads_value(None))
    parts = [((blocks.O, blocks.m), blocks.dtype)] + ([((blocks.O,), blocks.dtype)] if bias else [])
    blocks.load(parts, what="sum_grad_squared", max_bytes=max_bytes, partial=parts)
    found = _sums(blocks, functools.partial(_tuple(mem_stats.sum_grad_squared), bias=bias, max_bytes=blocks.inner_max))
    found[0] = _shaped(blocks, found[0])
    return tuple(found) if bias else found[0]


def grad_variance(X: Conv, G: Any, *, convention: str = "Wx", bias: bool = False, ddof: int = 0,
                  max_bytes: int | None = None) -> Any:
    """np.var over b of g_b with ddof, (O, C, *kernel) (with bias=True also that of db_b, (O,))."""
    v.conv_convention(convention)
    bias = v.check_flag(bias, "bias")
    ddof = v.check_size(ddof, "ddof")
    blocks = ConvBlocks(X, G, v.n_threads_value(None))
    O, m, dtype = blocks.O, blocks.m, blocks.dtype
    parts = [((O, m), dtype)] + ([((O,), dtype)] if bias else [])
    moments = [((4, O, m), _F64)] + ([((4, O), _F64)] if bias else [])  # a block's and the merged (mean, M2)
    blocks.load(parts, what="grad_variance", max_bytes=max_bytes, partial=moments)
    found = blocks.moments(bias)
    vW = _shaped(blocks, _moments.per_dof(found.m2, blocks.B, ddof).astype(dtype))
    return (vW, _moments.per_dof(found.bias_m2, blocks.B, ddof).astype(dtype)) if bias else vW


def per_sample_grad_dots(X: Conv, G: Any, X2: Conv | None = None, G2: Any = None, *, bias: bool = False,
                         normalize: bool = False, max_bytes: int | None = None) -> np.ndarray:
    """K[a, b] = <g_a, g'_b> (B, B2) (normalize=True: cosines), by a grid of blocks of samples,
    each pair of blocks unfolded and passed to the in-memory function; X2, G2 None: K of the
    batch with itself, blocks on and above the diagonal mirrored (exactly symmetric)."""
    bias = v.check_flag(bias, "bias")
    normalize = v.check_flag(normalize, "normalize")
    threads = v.n_threads_value(None)
    rows = ConvBlocks(X, G, threads)
    G2 = v.second_conv(X2, G2, Conv, X, rows.O)
    same = G2 is None
    cols = rows if same else ConvBlocks(X2, G2, threads)
    rows.dtype = cols.dtype = np.result_type(rows.dtype, cols.dtype)
    K = [((rows.B, cols.B), rows.dtype)] + ([] if same else cols.copies())
    # per row sample: its buffers and a column block's (sides=2), and its row of a block of K
    rows.load(K, what="per_sample_grad_dots", max_bytes=max_bytes, sides=2, per_extra=cols.B)
    if not same:
        cols.follow(rows)
    return _dot_blocks(rows, cols, same, functools.partial(
        mem_stats.per_sample_grad_dots, bias=bias, normalize=normalize, max_bytes=rows.inner_max))


def _dot_blocks(rows: ConvBlocks, cols: ConvBlocks, same: bool, call: Callable[..., np.ndarray]) -> np.ndarray:
    """K filled block by block: call(U_i, Gt_i, U_j, Gt_j) for every pair of blocks (i, j);
    same: call(U_i, Gt_i) on the diagonal (no second unfold) and j > i mirrored."""
    K = np.empty((rows.B, cols.B), rows.dtype)
    row_buffers, col_buffers = rows.buffers(), cols.buffers()
    for lo in rows.offsets():
        U, Gt = rows.block(lo, row_buffers)
        for clo in cols.offsets(lo if same else 0):
            if same and clo == lo:
                found = call(U, Gt)
            else:
                found = call(U, Gt, *cols.block(clo, col_buffers))
            K[lo : lo + found.shape[0], clo : clo + found.shape[1]] = found
            if same and clo != lo:
                K[clo : clo + found.shape[1], lo : lo + found.shape[0]] = found.T
    return K


def kfac_factors(X: Conv, G: Any, *, bias: bool = False, mode: str = "expand",
                 max_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The K-FAC factors of the convolution as a sequence layer (T = positions): A (C K (+1),
    C K (+1)) over the patches, S (O, O); the blocks' factors as means weighted by their counts."""
    bias = v.check_flag(bias, "bias")
    v.check_choice(mode, "mode", mem_stats.KFAC_MODES)
    blocks = ConvBlocks(X, G, v.n_threads_value(None))
    B, m, O, dtype = blocks.B, blocks.m, blocks.O, blocks.dtype
    parts = [((m + bias, m + bias), dtype), ((O, O), dtype)]
    per_extra = m + O if mode == "reduce" else 0  # the per-sample means and sums
    blocks.load(parts, what="kfac_factors", max_bytes=max_bytes, partial=parts, per_extra=per_extra)
    call = functools.partial(mem_stats.kfac_factors, bias=bias, mode=mode, max_bytes=blocks.inner_max)
    # A and S of a block are means over its k samples: weight k / B (for both: the steps
    # count T per sample in every block alike); B = 0 is one empty block, weight 1 (NaN)
    A, S = _sums(blocks, call, lambda k: k / B if B else 1.0)
    return A, S


# --- registration --------------------------------------------------------------------------------
def _lazy_route(name: str, impl: Callable[..., Any]) -> Callable[..., Any]:
    """impl for in-memory arrays; matderiv.layers.conv_dask's `name` when X's input, G, or a
    second batch's, is a dask array (imported on the first such call)."""

    @functools.wraps(impl)
    def route(X: Conv, G: Any, *args: Any, **kwargs: Any) -> Any:
        second = [a.x if isinstance(a, Conv) else a for a in (*args, kwargs.get("X2"), kwargs.get("G2"))]
        if any(v.is_lazy(a) for a in (X.x, G, *second)):
            from . import conv_dask

            return getattr(conv_dask, name)(X, G, *args, **kwargs)
        return impl(X, G, *args, **kwargs)

    return route


for _public, _impl in (
    (mem.per_sample_grads, per_sample_grads),
    (mem.batch_grad, batch_grad),
    (mem.per_sample_grad_norms, per_sample_grad_norms),
    (mem.clip_and_sum, clip_and_sum),
    (mem_stats.sum_grad_squared, sum_grad_squared),
    (mem_stats.grad_variance, grad_variance),
    (mem_stats.per_sample_grad_dots, per_sample_grad_dots),
    (mem_stats.kfac_factors, kfac_factors),
):
    register_input(_public, Conv, _lazy_route(_impl.__name__, _impl))
