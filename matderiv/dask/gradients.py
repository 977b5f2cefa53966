"""per_sample_grads, batch_grad, per_sample_grad_norms and clip_and_sum on dask arrays.

The formulas, arguments and errors are those of matderiv.gradients, whose functions
run on every chunk pair (X_k, G_k).  Decisions for lazy results:

* out= is refused (TypeError): a lazy result has no array to write into.
* max_bytes= is checked now and bounds each task's allocation when computed.
* n_threads= is checked now and passed to every task; None means one thread per task
  in dask's worker threads (they already fill the cores) and the in-memory default
  under the synchronous scheduler.  BLAS runs on one thread in worker threads too.
"""
from __future__ import annotations

import functools
from typing import Any

import dask.array as da
import numpy as np

from .. import _validation as v
from .. import gradients as mem
from .._batch import CONVENTIONS, REDUCTIONS, w_shape
from ._graph import Chunks, check_lazy_out, check_max_bytes, inputs, per_sample_map, same, sum_partials
from .._docs import dask as D, doc

__all__ = ["batch_grad", "clip_and_sum", "per_sample_grad_norms", "per_sample_grads"]


def _mean(count: int, parts: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """The sums divided by the number of samples (0/0 = NaN for an empty batch)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return tuple(np.divide(p, count) for p in parts)


@doc(D.PER_SAMPLE_GRADS)
def per_sample_grads(
    X: Any, G: Any, *, convention: str = "Wx", bias: bool = False, out: None = None,
    max_bytes: int | None = None, n_threads: int | None = None,
) -> da.Array | tuple[da.Array, da.Array]:
    v.check_choice(convention, "convention", CONVENTIONS)
    bias = v.check_flag(bias, "bias")
    v.n_threads_value(n_threads)
    Xd, Gd, dtype = inputs(X, G)
    check_lazy_out(out)
    check_max_bytes(max_bytes)
    kwargs = {"convention": convention, "bias": bias, "max_bytes": max_bytes, "n_threads": n_threads}
    n, m = Gd.shape[-1], Xd.shape[-1]
    shape = w_shape(n, m, convention)
    if not bias:
        return per_sample_map(mem.per_sample_grads, Xd, Gd, shape, dtype, **kwargs)
    chunks = Chunks(mem.per_sample_grads, Xd, Gd, **kwargs)
    return chunks.per_sample(0, shape, dtype), chunks.per_sample(1, (n,), dtype)


@doc(D.BATCH_GRAD)
def batch_grad(
    X: Any, G: Any, *, convention: str = "Wx", reduce: str = "sum", bias: bool = False,
    max_bytes: int | None = None,
) -> da.Array | tuple[da.Array, da.Array]:
    v.check_choice(convention, "convention", CONVENTIONS)
    v.check_choice(reduce, "reduce", REDUCTIONS)
    bias = v.check_flag(bias, "bias")
    Xd, Gd, dtype = inputs(X, G)
    check_max_bytes(max_bytes)
    chunks = Chunks(mem.batch_grad, Xd, Gd, convention=convention, bias=bias, max_bytes=max_bytes)
    n, m = Gd.shape[-1], Xd.shape[-1]
    outputs = [(w_shape(n, m, convention), dtype)] + ([((n,), dtype)] if bias else [])
    finalize = functools.partial(_mean, Xd.shape[0]) if reduce == "mean" else same
    result = chunks.reduction(range(len(outputs)), sum_partials, finalize, outputs)
    return result if bias else result[0]


@doc(D.PER_SAMPLE_GRAD_NORMS)
def per_sample_grad_norms(X: Any, G: Any, *, bias: bool = False, n_threads: int | None = None) -> da.Array:
    bias = v.check_flag(bias, "bias")
    v.n_threads_value(n_threads)
    Xd, Gd, dtype = inputs(X, G)
    return per_sample_map(mem.per_sample_grad_norms, Xd, Gd, (), dtype, bias=bias, n_threads=n_threads)


@doc(D.CLIP_AND_SUM)
def clip_and_sum(
    X: Any, G: Any, max_norm: float, *, convention: str = "Wx", bias: bool = False,
    max_bytes: int | None = None, n_threads: int | None = None,
) -> tuple[da.Array, da.Array] | tuple[da.Array, da.Array, da.Array]:
    v.check_choice(convention, "convention", CONVENTIONS)
    clip = v.positive_float(max_norm, "max_norm")
    bias = v.check_flag(bias, "bias")
    v.n_threads_value(n_threads)
    Xd, Gd, dtype = inputs(X, G)
    check_max_bytes(max_bytes)
    chunks = Chunks(mem.clip_and_sum, Xd, Gd, max_norm=clip, convention=convention, bias=bias,
                    max_bytes=max_bytes, n_threads=n_threads)
    n, m = Gd.shape[-1], Xd.shape[-1]
    outputs = [(w_shape(n, m, convention), dtype)] + ([((n,), dtype)] if bias else [])
    sums = chunks.reduction(range(len(outputs)), sum_partials, same, outputs)
    return sums + (chunks.per_sample(len(outputs), (), dtype),)
