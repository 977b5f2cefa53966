"""The batched functions for an Embedding whose indices idx (or whose G) are dask arrays
chunked along B: each task runs the in-memory implementation (matderiv.layers.embedding)
on one chunk, Embedding(idx_k, V) with G_k, so the indices of each chunk are checked when
it is computed; reductions are merged by a tree of table-shaped partials.

* per_sample_grads: a dask array (B, V*d) of csr_array chunks (idx's chunks along B).
* batch_grad, clip_and_sum, sum_grad_squared: partial sums of the table; the clipping
  factor depends on one sample alone, so each chunk clips its own.
* grad_variance: each chunk's (count, mean, M2) of g_b over the table in float64, merged by
  Chan et al.'s update (no E[g^2] - E[g]^2).
* per_sample_grad_dots: a (B, B2) array of blocks, exactly symmetric for one batch.
* kfac_factors: the counts of each row and G^T G summed, divided at the end.
Errors of the arguments are raised now (the in-memory checks on shapes and dtypes).
"""
from __future__ import annotations

import functools
from typing import Any

import dask.array as da
import numpy as np
import scipy.sparse as sp

from .. import _moments
from .. import _validation as v
from ..layers import embedding as mem
from .._memory import check_output_bytes
from ._graph import Chunks, check_max_bytes, checked, pairs, per_sample_map, same, sum_partials

__all__ = ["batch_grad", "clip_and_sum", "grad_variance", "kfac_factors", "per_sample_grad_dots",
           "per_sample_grad_norms", "per_sample_grads", "sum_grad_squared"]


def inputs(E: mem.Embedding, G: Any, name: str = "G") -> tuple[da.Array, da.Array, np.dtype]:
    """idx and G checked (shapes and dtypes, nothing computed) and chunked alike along B
    (idx's chunks when idx is a dask array, else G's), one chunk along the other axes;
    idx as idx[..., None] (the tasks take idx_k[..., 0])."""
    Gs = v.check_embedding_G(checked(G, name), E.idx.shape, name)
    dtype = v.target_dtype(Gs.dtype, name, allow_complex=False)
    checked(E.idx, "idx")  # known chunk sizes
    lazy = [A for A in (E.idx, G) if isinstance(A, da.Array)]
    rows = lazy[0].chunks[0]

    def chunked(A: Any) -> da.Array:
        chunks = (rows,) + (-1,) * (np.ndim(A) - 1)
        return A.rechunk(chunks) if isinstance(A, da.Array) else da.from_array(np.asarray(A), chunks=chunks)

    # idx with a trailing axis of 1: the graph helpers key G's chunks with idx's ndim
    return chunked(E.idx)[..., None], chunked(G), dtype


def _chunk(idx: np.ndarray, G: np.ndarray, *, func: str, V: int, **kwargs: Any) -> Any:
    """The in-memory function `func` on one chunk."""
    return getattr(mem, func)(mem.Embedding(idx[..., 0], V), G, **kwargs)


def _task(func: str, V: int) -> functools.partial:
    """The task running the in-memory `func` on a chunk of a lookup into V rows (named for
    the graph's keys)."""
    task = functools.partial(_chunk, func=func, V=V)
    task.__name__ = f"embedding_{func}"  # type: ignore[attr-defined]
    return task


def _sums(func: str, E: mem.Embedding, G: Any, outputs: int, **kwargs: Any) -> tuple[Chunks, tuple[da.Array, ...]]:
    """The tasks of `func` per chunk and the tree sum of their first `outputs` fields (tables)."""
    idx, Gd, dtype = inputs(E, G)
    chunks = Chunks(_task(func, E.num_embeddings), idx, Gd, **kwargs)
    table = ((E.num_embeddings, Gd.shape[-1]), dtype)
    return chunks, chunks.reduction(range(outputs), sum_partials, same, [table] * outputs)


def per_sample_grads(E: mem.Embedding, G: Any, *, max_bytes: int | None, n_threads: int | None) -> da.Array:
    """(B, V*d) with csr_array chunks along B."""
    idx, Gd, dtype = inputs(E, G)
    check_max_bytes(max_bytes)
    lazy = per_sample_map(_task("per_sample_grads", E.num_embeddings), idx, Gd, (E.num_embeddings * Gd.shape[-1],), dtype, max_bytes=max_bytes,
                          n_threads=n_threads)
    return da.Array(lazy.dask, lazy.name, lazy.chunks, meta=sp.csr_array((0, 0), dtype=dtype))


def batch_grad(E: mem.Embedding, G: Any, *, reduce: str, max_bytes: int | None) -> da.Array:
    check_max_bytes(max_bytes)
    _, (total,) = _sums("batch_grad", E, G, 1, max_bytes=max_bytes)
    return total / E.idx.shape[0] if reduce == "mean" else total


def per_sample_grad_norms(E: mem.Embedding, G: Any, *, n_threads: int | None) -> da.Array:
    idx, Gd, dtype = inputs(E, G)
    return per_sample_map(_task("per_sample_grad_norms", E.num_embeddings), idx, Gd, (), dtype, n_threads=n_threads)


def clip_and_sum(E: mem.Embedding, G: Any, clip: float, *, max_bytes: int | None,
                 n_threads: int | None) -> tuple[da.Array, da.Array]:
    check_max_bytes(max_bytes)
    chunks, (total,) = _sums("clip_and_sum", E, G, 1, max_norm=clip, max_bytes=max_bytes, n_threads=n_threads)
    return total, chunks.per_sample(1, (), total.dtype)


def sum_grad_squared(E: mem.Embedding, G: Any, *, max_bytes: int | None) -> da.Array:
    check_max_bytes(max_bytes)
    return _sums("sum_grad_squared", E, G, 1, max_bytes=max_bytes)[1][0]


# --- variance -------------------------------------------------------------------------------------
def grad_variance(E: mem.Embedding, G: Any, *, ddof: int, max_bytes: int | None) -> da.Array:
    """Each chunk's (count, mean, M2) over the table, merged by Chan et al.'s update, then
    M2 / (B - ddof)."""
    idx, Gd, dtype = inputs(E, G)
    table = ((E.num_embeddings, Gd.shape[-1]), dtype)
    check_output_bytes([table], what="grad_variance", max_bytes=max_bytes, hint="")
    chunks = Chunks(_chunk_moments, idx, Gd, V=E.num_embeddings)
    finalize = functools.partial(_variance, idx.shape[0], ddof, dtype)
    return chunks.reduction(range(3), _merge, finalize, [table])[0]


def _chunk_moments(idx: np.ndarray, G: np.ndarray, *, V: int) -> tuple[int, np.ndarray, np.ndarray]:
    """(count, mean, M2) of one chunk's g_b over the whole table, float64 (V, d)."""
    lk = mem.Embedding(idx[..., 0], V).lookup(G)
    lk.load()
    rows, mean_rows, m2_rows = mem.touched_moments(lk, v.n_threads_value(None))
    mean, m2 = np.zeros((V, lk.d)), np.zeros((V, lk.d))
    mean[rows], m2[rows] = mean_rows, m2_rows
    return lk.B, mean, m2


def _merge(parts: list[tuple[Any, ...]]) -> tuple[int, np.ndarray, np.ndarray]:
    """Chan et al.'s pairwise update of (count, mean, M2); empty partials add nothing."""
    count, mean, m2 = parts[0]
    for nb, mb, m2b in parts[1:]:
        if nb == 0:
            continue
        if count == 0:
            count, mean, m2 = nb, mb, m2b
            continue
        total = count + nb
        delta = mb - mean
        mean = mean + delta * (nb / total)
        m2 = m2 + m2b + np.square(delta) * (count * nb / total)
        count = total
    return count, mean, m2


def _variance(B: int, ddof: int, dtype: np.dtype, part: tuple[Any, ...]) -> tuple[np.ndarray]:
    return (_moments.per_dof(part[2], B, ddof).astype(dtype),)


# --- dot products and K-FAC ------------------------------------------------------------------------
def per_sample_grad_dots(E: mem.Embedding, G: Any, X2: Any, G2: Any, *, normalize: bool,
                         max_bytes: int | None) -> da.Array:
    """(B, B2) blocks, idx's chunks along rows and idx2's along columns; X2 None: exactly
    symmetric.  normalize=True: each chunk's inverse norms once, blocks scaled by them."""
    idx, Gd, dtype = inputs(E, G)
    rows, cols = [idx, Gd], None
    if X2 is not None:
        idx2, G2d, dtype2 = inputs(X2, G2, "G2")
        if G2d.shape[-1] != Gd.shape[-1]:
            raise ValueError(f"G2: expected d={Gd.shape[-1]} columns (last axis) like G, got shape {v.shape_str(G2d.shape)}")
        cols, dtype = [idx2, G2d], np.result_type(dtype, dtype2)
    check_max_bytes(max_bytes)
    if normalize:
        for side in filter(None, (rows, cols)):
            side.append(per_sample_map(_inverse_norms, *side, (), np.dtype(np.float64), V=E.num_embeddings, n_threads=None))
    return pairs(_dots_block, rows, cols, dtype, V=E.num_embeddings, normalize=normalize, max_bytes=max_bytes)


def _inverse_norms(idx: np.ndarray, G: np.ndarray, *, V: int, n_threads: int | None) -> np.ndarray:
    """1 / ||g_b|| of one chunk's samples in float64, 0 for a zero gradient."""
    lk = mem.Embedding(idx[..., 0], V).lookup(G)
    lk.load()
    norms = np.sqrt(lk.squared_norms(v.n_threads_value(n_threads)))
    with np.errstate(divide="ignore"):
        return np.where(norms > 0, 1.0 / norms, 0.0)


def _dots_block(*chunks: np.ndarray, V: int, normalize: bool, max_bytes: int | None) -> np.ndarray:
    """One block of K from (idx_i, G_i[, u_i]) of the rows and then of the columns, or of
    the rows alone on the diagonal of a symmetric K (exactly symmetric)."""
    per = 2 + normalize
    mine, theirs = chunks[:per], chunks[per:]
    other = (mem.Embedding(theirs[0][..., 0], V), theirs[1]) if theirs else (None, None)
    K = mem.per_sample_grad_dots(mem.Embedding(mine[0][..., 0], V), mine[1], *other, max_bytes=max_bytes)
    if normalize:
        K *= np.multiply.outer(mine[2], (theirs or mine)[2])
    return K


def kfac_factors(E: mem.Embedding, G: Any, *, mode: str, max_bytes: int | None) -> tuple[da.Array, da.Array]:
    """A (V,) and S (d, d): each chunk's counts and G^T G summed by a tree, divided by the
    whole batch's counts at the end."""
    idx, Gd, dtype = inputs(E, G)
    V, d, B = E.num_embeddings, Gd.shape[-1], idx.shape[0]
    outputs = [((V,), dtype), ((d, d), dtype)]
    check_output_bytes(outputs, what="kfac_factors", max_bytes=max_bytes, hint="")
    chunks = Chunks(_kfac_sums, idx, Gd, V=V, mode=mode, max_bytes=max_bytes)
    steps = B * (idx.shape[1] if idx.ndim == 3 else 1)
    return chunks.reduction([0, 1], sum_partials, functools.partial(_kfac_means, steps, B), outputs)


def _kfac_sums(idx: np.ndarray, G: np.ndarray, *, V: int, mode: str, max_bytes: int | None) -> tuple[np.ndarray, np.ndarray]:
    """One chunk's row counts and G^T G (the in-memory factors times their counts)."""
    A, S = mem.kfac_factors(mem.Embedding(idx[..., 0], V), G, mode=mode, max_bytes=max_bytes)
    steps, k = idx.size, idx.shape[0]
    return (A * steps if steps else np.zeros_like(A)), (S * k if k else np.zeros_like(S))


def _kfac_means(steps: int, B: int, sums: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums[0] / steps, sums[1] / B
