"""sum_grad_squared, grad_variance, per_sample_grad_dots and kfac_factors on dask arrays.

The formulas, arguments and errors are those of matderiv.statistics, whose functions run
on every chunk pair (X_k, G_k) (per pair of chunks for the dot products).  Decisions:

* The three reductions are one pass: a tree of small partials, one-chunk results.
  sum_grad_squared and kfac_factors sum unnormalized per-chunk sums (divided by the
  counts at the end); grad_variance merges (count, mean, M2) partials with Chan et al.'s
  update, so it reads the data once and cancels nothing (means in float64).
* max_bytes= of sum_grad_squared and grad_variance is checked now against the output,
  which has the in-memory size; that of per_sample_grad_dots bounds each (B_i, B2_j)
  block when computed (the (B, B2) result is lazy, like per_sample_grads').
* per_sample_grad_dots of a batch with itself computes the blocks on and above the
  diagonal and mirrors them: K == K.T exactly, normalized or not.  normalize=True
  computes each chunk's norms once and scales the blocks by their outer products.
"""
from __future__ import annotations

import functools
from typing import Any

import dask.array as da
import numpy as np

from .. import _batch, _moments
from .. import _validation as v
from .. import statistics as mem
from .._batch import CONVENTIONS, Inputs
from .._memory import check_output_bytes
from ._graph import Chunks, check_max_bytes, checked, inputs, pairs, per_sample_map, same, sum_partials
from .._docs import dask as D, doc

__all__ = ["grad_variance", "kfac_factors", "per_sample_grad_dots", "sum_grad_squared"]


def _output_check(what: str, Xd: da.Array, Gd: da.Array, convention: str, bias: bool, dtype: np.dtype,
                  max_bytes: int | None) -> list[tuple[tuple[int, ...], np.dtype]]:
    """The outputs (W's shape[, (n,)]) as (shape, dtype), checked against max_bytes now."""
    n, m = Gd.shape[-1], Xd.shape[-1]
    outputs = [(_batch.w_shape(n, m, convention), dtype)] + ([((n,), dtype)] if bias else [])
    check_output_bytes(outputs, what=what, max_bytes=max_bytes, hint="")
    return outputs


# --- sum of squares ---------------------------------------------------------------------------
@doc(D.SUM_GRAD_SQUARED)
def sum_grad_squared(
    X: Any, G: Any, *, convention: str = "Wx", bias: bool = False, max_bytes: int | None = None,
) -> da.Array | tuple[da.Array, da.Array]:
    v.check_choice(convention, "convention", CONVENTIONS)
    bias = v.check_flag(bias, "bias")
    Xd, Gd, dtype = inputs(X, G)
    outputs = _output_check("sum_grad_squared", Xd, Gd, convention, bias, dtype, max_bytes)
    chunks = Chunks(mem.sum_grad_squared, Xd, Gd, convention=convention, bias=bias)
    result = chunks.reduction(range(len(outputs)), sum_partials, same, outputs)
    return result if bias else result[0]


# --- variance ---------------------------------------------------------------------------------
@doc(D.GRAD_VARIANCE)
def grad_variance(
    X: Any, G: Any, *, convention: str = "Wx", bias: bool = False, ddof: int = 0,
    max_bytes: int | None = None,
) -> da.Array | tuple[da.Array, da.Array]:
    v.check_choice(convention, "convention", CONVENTIONS)
    bias = v.check_flag(bias, "bias")
    ddof = v.check_size(ddof, "ddof")
    Xd, Gd, dtype = inputs(X, G)
    outputs = _output_check("grad_variance", Xd, Gd, convention, bias, dtype, max_bytes)
    chunks = Chunks(chunk_moments, Xd, Gd, bias=bias)
    finalize = functools.partial(_variances, ddof, convention, dtype)
    result = chunks.reduction(range(len(_moments.Moments._fields)), merge_moments, finalize, outputs)
    return result if bias else result[0]


def chunk_moments(X: np.ndarray, G: np.ndarray, *, bias: bool) -> _moments.Moments:
    """One chunk's Moments of g_b (and of db_b with bias), as the in-memory
    grad_variance forms them: mean relative to the chunk's shift, M2 in float64."""
    return _moments.moments(Inputs(X, G).load([], what="grad_variance"), bias)


def merge_moments(parts: list[tuple[Any, ...]]) -> _moments.Moments:
    """Chan et al.'s update over partial Moments (shifted means: no cancellation when the
    mean dominates); a partial of no samples contributes nothing."""
    return functools.reduce(_moments.Moments.merge, (_moments.Moments(*p) for p in parts))


def _variances(ddof: int, convention: str, dtype: np.dtype, part: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
    """(vW[, vb]) from the merged partial: M2 / (B - ddof), in the convention and dtype."""
    found = _moments.Moments(*part).results(frozenset(["variance"]), ddof, convention, dtype)["variance"]
    return found if isinstance(found, tuple) else (found,)


# --- gradient dot products --------------------------------------------------------------------
@doc(D.PER_SAMPLE_GRAD_DOTS)
def per_sample_grad_dots(
    X: Any, G: Any, X2: Any = None, G2: Any = None, *, bias: bool = False, normalize: bool = False,
    max_bytes: int | None = None,
) -> da.Array:
    bias = v.check_flag(bias, "bias")
    normalize = v.check_flag(normalize, "normalize")
    v.both_or_neither(X2, G2)
    Xd, Gd, dtype = inputs(X, G)
    second = None if X2 is None else _second_batch(Xd, Gd, X2, G2)
    if second is not None:
        dtype = np.result_type(dtype, second[2])
    check_max_bytes(max_bytes)
    rows = [Xd.astype(dtype), Gd.astype(dtype)]
    cols = None if second is None else [second[0].astype(dtype), second[1].astype(dtype)]
    if normalize:  # each chunk's inverse norms, once, next to its X and G
        for side in filter(None, (rows, cols)):
            side.append(per_sample_map(_inverse_norms, *side, (), dtype, bias=bias, n_threads=None))
    return pairs(_dots_block, rows, cols, dtype, bias=bias, normalize=normalize, max_bytes=max_bytes)


def _second_batch(Xd: da.Array, Gd: da.Array, X2: Any, G2: Any) -> tuple[da.Array, da.Array, np.dtype]:
    """X2 and G2 checked as the in-memory function does (the same messages, nothing
    computed), as inputs() returns them."""
    X2s, G2s, _ = v.batch_pair(checked(X2, "X2"), checked(G2, "G2"), ("X2", "G2"))
    v.check_second_batch(Xd, Gd, X2s, G2s)
    return inputs(X2, G2)


def _inverse_norms(X: np.ndarray, G: np.ndarray, *, bias: bool, n_threads: int | None) -> np.ndarray:
    """1 / ||g_b|| for one chunk's samples (0 for a zero gradient), as the in-memory normalize."""
    b = Inputs(X, G).load([], what="per_sample_grad_dots")
    return _batch.inverse_norms(b, bias, v.n_threads_value(n_threads))


def _dots_block(*chunks: np.ndarray, bias: bool, normalize: bool, max_bytes: int | None) -> np.ndarray:
    """One block of K from the chunks (X_i, G_i[, u_i]) of the rows and then those of
    the columns, or of the rows alone for a diagonal block of a symmetric K (then
    exactly symmetric: the in-memory function mirrors, and u_a u_b = u_b u_a)."""
    per = 2 + normalize
    mine, theirs = chunks[:per], chunks[per:]
    K = mem.per_sample_grad_dots(*mine[:2], *theirs[:2], bias=bias, max_bytes=max_bytes)
    if normalize:
        K *= np.multiply.outer(mine[2], (theirs or mine)[2])
    return K


# --- K-FAC --------------------------------------------------------------------------------------
@doc(D.KFAC_FACTORS)
def kfac_factors(X: Any, G: Any, *, bias: bool = False, mode: str = "expand",
                 max_bytes: int | None = None) -> tuple[da.Array, da.Array]:
    bias = v.check_flag(bias, "bias")
    v.check_choice(mode, "mode", mem.KFAC_MODES)
    Xd, Gd, dtype = inputs(X, G)
    B, m, n = Xd.shape[0], Xd.shape[-1], Gd.shape[-1]
    outputs = [((m + bias, m + bias), dtype), ((n, n), dtype)]
    check_output_bytes(outputs, what="kfac_factors", max_bytes=max_bytes, hint="")
    count = B * Xd.shape[1] if Xd.ndim == 3 and mode == "expand" else B
    chunks = Chunks(_kfac_sums, Xd, Gd, bias=bias, mode=mode, max_bytes=max_bytes)
    return chunks.reduction([0, 1], sum_partials, functools.partial(_kfac_means, count, B), outputs)


def _kfac_sums(X: np.ndarray, G: np.ndarray, *, bias: bool, mode: str,
               max_bytes: int | None) -> tuple[np.ndarray, np.ndarray]:
    """One chunk's sums behind A and S: the in-memory factors times the counts they were
    divided by (zeros where a count is 0)."""
    A, S = mem.kfac_factors(X, G, bias=bias, mode=mode, max_bytes=max_bytes)
    k = X.shape[0]
    count = k * X.shape[1] if X.ndim == 3 and mode == "expand" else k
    return (A * count if count else np.zeros_like(A)), (S * k if k else np.zeros_like(S))


def _kfac_means(count: int, B: int, sums: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A = sum / count, S = sum / B (0 / 0 = NaN for no samples, as in memory)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums[0] / count, sums[1] / B
