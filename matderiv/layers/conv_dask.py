"""The batched functions on a Conv over a dask array x chunked along B (G = dL/dy a dask or
numpy array, taken with x's chunks along B): every task runs the in-memory Conv
implementation (matderiv.layers.conv_grads, through the public function) on one chunk of x
and the matching chunk of G, and the graphs are those of matderiv.dask (matderiv.dask._graph):
per-sample results keep x's chunks along B, sums are one pass with a tree of small partials,
grad_variance merges (count, mean, M2) partials by Chan's update, per_sample_grad_dots is a
(B, B2) array of blocks (mirrored when symmetric).  The arguments, checks and errors are the
in-memory ones; out= is refused and max_bytes bounds each task, as in matderiv.dask.
Reached through the top-level functions when a Conv's x (or G) is a dask array.
"""
from __future__ import annotations

import functools
from typing import Any

import dask.array as da
import numpy as np

from .. import _batch, _moments
from .. import _validation as v
from .. import gradients as mem
from .. import statistics as mem_stats
from .._memory import check_output_bytes
from ..dask._graph import Chunks, check_lazy_out, check_max_bytes, pairs, per_sample_map, same, sum_partials
from .conv import Conv, ConvBlocks

__all__ = [
    "batch_grad", "clip_and_sum", "grad_variance", "kfac_factors", "per_sample_grad_dots",
    "per_sample_grad_norms", "per_sample_grads", "sum_grad_squared",
]


class Lazy:
    """A Conv over a dask x with its G, checked as in memory, both chunked along B like x
    (x's chunks, or G's when x is in memory), one chunk along every other axis."""

    def __init__(self, X: Conv, G: Any) -> None:
        G = v.conv_output_grad(G, X.batch, X.geometry.out)
        self.X, self.O, self.dtype = X, int(G.shape[1]), v.conv_dtype(X.x, G)
        lazy = [A for A in (X.x, G) if isinstance(A, da.Array)]
        rows = lazy[0].chunks[0] if lazy else (X.batch,)
        self.x, self.G = (_chunked(A, rows) for A in (X.x, G))
        g = X.geometry
        self.conv = {"kernel_size": g.kernel, "stride": g.stride, "padding": g.padding, "dilation": g.dilation}

    def weight_shape(self) -> tuple[int, ...]:
        return self.X.weight_shape(self.O)

    def outputs(self, bias: bool) -> list[tuple[tuple[int, ...], np.dtype]]:
        """The weight-shaped output and, with bias, (O,)."""
        return [(self.weight_shape(), self.dtype)] + ([((self.O,), self.dtype)] if bias else [])

    def chunks(self, func: Any, **kwargs: Any) -> Chunks:
        return Chunks(func, self.x, self.G, conv=self.conv, **kwargs)


def _chunked(A: Any, rows: tuple[int, ...]) -> da.Array:
    chunks = (rows,) + (-1,) * (A.ndim - 1)
    return A.rechunk(chunks) if isinstance(A, da.Array) else da.from_array(np.asarray(A), chunks=chunks)


def conv_chunk(x: np.ndarray, G: np.ndarray, *, public: Any, conv: dict[str, Any], **kwargs: Any) -> Any:
    """One task: the public function on the chunk's Conv and G (routed to conv_grads)."""
    return public(Conv(x, **conv), G, **kwargs)


def _divided(count: int, parts: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """The sums divided by count (0 / 0 = NaN for an empty batch)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return tuple(np.divide(p, count).astype(p.dtype) for p in parts)


# --- gradients ---------------------------------------------------------------------------------
def per_sample_grads(X: Conv, G: Any, *, convention: str = "Wx", bias: bool = False, out: None = None,
                     max_bytes: int | None = None, n_threads: int | None = None) -> Any:
    """Lazy per_sample_grads of a Conv: (B, O, C, *kernel) with x's chunks along B (and db (B, O))."""
    v.conv_convention(convention)
    bias = v.check_flag(bias, "bias")
    v.n_threads_value(n_threads)
    lazy = Lazy(X, G)
    check_lazy_out(out)
    check_max_bytes(max_bytes)
    kwargs = {"public": mem.per_sample_grads, "conv": lazy.conv, "bias": bias, "max_bytes": max_bytes,
              "n_threads": n_threads}
    if not bias:
        return per_sample_map(conv_chunk, lazy.x, lazy.G, lazy.weight_shape(), lazy.dtype, **kwargs)
    chunks = Chunks(conv_chunk, lazy.x, lazy.G, **kwargs)
    return chunks.per_sample(0, lazy.weight_shape(), lazy.dtype), chunks.per_sample(1, (lazy.O,), lazy.dtype)


def batch_grad(X: Conv, G: Any, *, convention: str = "Wx", reduce: str = "sum", bias: bool = False,
               max_bytes: int | None = None) -> Any:
    """Lazy batch_grad of a Conv: the chunks' sums in a tree (divided by B for "mean")."""
    v.conv_convention(convention)
    v.check_choice(reduce, "reduce", _batch.REDUCTIONS)
    bias = v.check_flag(bias, "bias")
    lazy = Lazy(X, G)
    check_max_bytes(max_bytes)
    outputs = lazy.outputs(bias)
    chunks = lazy.chunks(conv_chunk, public=mem.batch_grad, bias=bias, max_bytes=max_bytes)
    finalize = functools.partial(_divided, X.batch) if reduce == "mean" else same
    result = chunks.reduction(range(len(outputs)), sum_partials, finalize, outputs)
    return result if bias else result[0]


def per_sample_grad_norms(X: Conv, G: Any, *, bias: bool = False, n_threads: int | None = None) -> da.Array:
    """Lazy per_sample_grad_norms of a Conv: (B,) with x's chunks along B."""
    bias = v.check_flag(bias, "bias")
    v.n_threads_value(n_threads)
    lazy = Lazy(X, G)
    return per_sample_map(conv_chunk, lazy.x, lazy.G, (), lazy.dtype, public=mem.per_sample_grad_norms,
                          conv=lazy.conv, bias=bias, n_threads=n_threads)


def clip_and_sum(X: Conv, G: Any, max_norm: float, *, convention: str = "Wx", bias: bool = False,
                 max_bytes: int | None = None, n_threads: int | None = None) -> tuple[da.Array, ...]:
    """Lazy clip_and_sum of a Conv: each task clips and sums its chunk (exact: the factors are
    per sample); the sums meet in a tree, the norms keep x's chunks."""
    v.conv_convention(convention)
    clip = v.positive_float(max_norm, "max_norm")
    bias = v.check_flag(bias, "bias")
    v.n_threads_value(n_threads)
    lazy = Lazy(X, G)
    check_max_bytes(max_bytes)
    outputs = lazy.outputs(bias)
    chunks = lazy.chunks(conv_chunk, public=mem.clip_and_sum, max_norm=clip, bias=bias, max_bytes=max_bytes,
                         n_threads=n_threads)
    sums = chunks.reduction(range(len(outputs)), sum_partials, same, outputs)
    return sums + (chunks.per_sample(len(outputs), (), lazy.dtype),)


# --- statistics --------------------------------------------------------------------------------
def sum_grad_squared(X: Conv, G: Any, *, convention: str = "Wx", bias: bool = False,
                     max_bytes: int | None = None) -> Any:
    """Lazy sum_grad_squared of a Conv: the chunks' sums in a tree."""
    v.conv_convention(convention)
    bias = v.check_flag(bias, "bias")
    lazy = Lazy(X, G)
    outputs = lazy.outputs(bias)
    check_output_bytes(outputs, what="sum_grad_squared", max_bytes=max_bytes, hint="")
    chunks = lazy.chunks(conv_chunk, public=mem_stats.sum_grad_squared, bias=bias)
    result = chunks.reduction(range(len(outputs)), sum_partials, same, outputs)
    return result if bias else result[0]


def chunk_moments(x: np.ndarray, G: np.ndarray, *, conv: dict[str, Any], bias: bool) -> _moments.Moments:
    """One chunk's Moments of g_b (and db_b), as the in-memory grad_variance forms them."""
    blocks = ConvBlocks(Conv(x, **conv), G, v.n_threads_value(None))
    blocks.load([], what="grad_variance", max_bytes=None)
    return blocks.moments(bias)


def merge_moments(parts: list[tuple[Any, ...]]) -> _moments.Moments:
    """Chan's update over partial Moments (a partial of no samples contributes nothing)."""
    return functools.reduce(_moments.Moments.merge, (_moments.Moments(*p) for p in parts))


def _variances(B: int, ddof: int, shape: tuple[int, ...], dtype: np.dtype, part: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
    """(vW[, vb]) from the merged partial: M2 / (B - ddof), in the weight's shape and dtype."""
    merged = _moments.Moments(*part)
    vW = _moments.per_dof(merged.m2, B, ddof).astype(dtype).reshape(shape)
    if merged.bias_m2 is None:
        return (vW,)
    return vW, _moments.per_dof(merged.bias_m2, B, ddof).astype(dtype)


def grad_variance(X: Conv, G: Any, *, convention: str = "Wx", bias: bool = False, ddof: int = 0,
                  max_bytes: int | None = None) -> Any:
    """Lazy grad_variance of a Conv in one pass: the chunks' (count, mean, M2) merged by Chan's update."""
    v.conv_convention(convention)
    bias = v.check_flag(bias, "bias")
    ddof = v.check_size(ddof, "ddof")
    lazy = Lazy(X, G)
    outputs = lazy.outputs(bias)
    check_output_bytes(outputs, what="grad_variance", max_bytes=max_bytes, hint="")
    chunks = Chunks(chunk_moments, lazy.x, lazy.G, conv=lazy.conv, bias=bias)
    finalize = functools.partial(_variances, X.batch, ddof, lazy.weight_shape(), lazy.dtype)
    result = chunks.reduction(range(len(_moments.Moments._fields)), merge_moments, finalize, outputs)
    return result if bias else result[0]


def dots_block(*chunks: np.ndarray, convs: tuple[dict[str, Any], ...], **kwargs: Any) -> np.ndarray:
    """One block of K: the in-memory dots of the chunks (x_i, G_i) of the rows and (x_j, G_j)
    of the columns, or of the rows alone (a diagonal block of a symmetric K); convs: the
    rows' geometry and the columns' (one for both when K is symmetric)."""
    X = Conv(chunks[0], **convs[0])
    if len(chunks) == 2:
        return mem_stats.per_sample_grad_dots(X, chunks[1], **kwargs)
    return mem_stats.per_sample_grad_dots(X, chunks[1], Conv(chunks[2], **convs[-1]), chunks[3], **kwargs)


def per_sample_grad_dots(X: Conv, G: Any, X2: Conv | None = None, G2: Any = None, *, bias: bool = False,
                         normalize: bool = False, max_bytes: int | None = None) -> da.Array:
    """Lazy per_sample_grad_dots of Convs: (B, B2), x's chunks along rows and x2's along
    columns; X2, G2 None: of the batch with itself, blocks above the diagonal mirrored."""
    bias = v.check_flag(bias, "bias")
    normalize = v.check_flag(normalize, "normalize")
    lazy = Lazy(X, G)
    G2 = v.second_conv(X2, G2, Conv, X, lazy.O)
    check_max_bytes(max_bytes)
    if G2 is None:
        return pairs(dots_block, [lazy.x, lazy.G], None, lazy.dtype, convs=(lazy.conv,), bias=bias,
                     normalize=normalize, max_bytes=max_bytes)
    other = Lazy(X2, G2)
    dtype = np.result_type(lazy.dtype, other.dtype)
    return pairs(dots_block, [lazy.x, lazy.G], [other.x, other.G], dtype, convs=(lazy.conv, other.conv),
                 bias=bias, normalize=normalize, max_bytes=max_bytes)


def kfac_sums(x: np.ndarray, G: np.ndarray, *, conv: dict[str, Any], bias: bool, mode: str,
              max_bytes: int | None) -> tuple[np.ndarray, np.ndarray]:
    """One chunk's factors times its k samples (every count is k times T, or k): zeros for k = 0."""
    A, S = mem_stats.kfac_factors(Conv(x, **conv), G, bias=bias, mode=mode, max_bytes=max_bytes)
    k = len(x)
    return (A * k, S * k) if k else (np.zeros_like(A), np.zeros_like(S))


def kfac_factors(X: Conv, G: Any, *, bias: bool = False, mode: str = "expand",
                 max_bytes: int | None = None) -> tuple[da.Array, da.Array]:
    """Lazy kfac_factors of a Conv: the chunks' factors times their sample counts, summed in a
    tree and divided by B."""
    bias = v.check_flag(bias, "bias")
    v.check_choice(mode, "mode", mem_stats.KFAC_MODES)
    lazy = Lazy(X, G)
    m = X.features
    outputs = [((m + bias, m + bias), lazy.dtype), ((lazy.O, lazy.O), lazy.dtype)]
    check_output_bytes(outputs, what="kfac_factors", max_bytes=max_bytes, hint="")
    chunks = Chunks(kfac_sums, lazy.x, lazy.G, conv=lazy.conv, bias=bias, mode=mode, max_bytes=max_bytes)
    return chunks.reduction([0, 1], sum_partials, functools.partial(_divided, X.batch), outputs)
