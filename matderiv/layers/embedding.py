"""Embedding lookups: y[b, t] = E[idx[b, t]] with E the table (V, d), i.e. x @ E with x
one-hot (the "xW" layout with a sparse x), as inputs of every batched function.

    E = md.Embedding(idx, V)           # idx (B,) or (B, T) integers in [0, V)
    md.per_sample_grad_norms(E, G)     # G (B, [T,] d) = dL/dy

Sample b's gradient is g_b = sum_t onehot(idx[b, t]) (x) G[b, t], (V, d): its row v is
the sum of the G[b, t] with idx[b, t] = v (a group sum), every other row is zero.  Every
result comes from the group sums (see _lookup): nothing of size V is allocated but the
results that have the table's shape (V, d) or (V,), so tables of 10^6 rows cost what the
batch costs.  Results always have the table's shape: convention takes only its default,
and bias=True is a ValueError (a lookup has no bias).

The lookup's Jacobian needs no class of its own: md.jacobian_awb(md.one_hot(idx, V), None,
W_shape=(V, d)) is d(one_hot(idx) @ E)/dE in every Jacobian form.
"""
from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from .. import _dispatch, _moments, gradients, statistics
from .. import _validation as v
from .._batch import REDUCTIONS
from .._memory import check_output_bytes
from ._lookup import Lookup, scatter
from .._docs import doc, embedding as D

__all__ = ["Embedding", "one_hot"]

#: The module with the implementations for dask indices or gradients (imported on first use).
DASK_MODULE = "matderiv.dask.embedding"


@doc(D.ONE_HOT)
def one_hot(idx: ArrayLike, num_classes: int) -> sp.csr_array:
    V = v.check_num_classes(num_classes, "num_classes")
    idx = v.check_indices(idx, V, "idx", (1,))
    N = idx.shape[0]
    itype = v.index_dtype(max(V, N))
    indptr = np.arange(N + 1, dtype=itype)
    return sp.csr_array((np.ones(N), idx.astype(itype), indptr), shape=(N, V))


@doc(D.EMBEDDING)
class Embedding:
    def __init__(self, idx: ArrayLike, num_embeddings: int) -> None:
        self.num_embeddings = v.check_num_classes(num_embeddings, "num_embeddings")
        self.idx = v.check_indices(idx, self.num_embeddings)

    @property
    @doc(D.SHAPE)
    def shape(self) -> tuple[int, ...]:
        return tuple(self.idx.shape)

    def __repr__(self) -> str:
        return f"Embedding(idx of shape {v.shape_str(self.shape)}, num_embeddings={self.num_embeddings})"

    @doc(D.LOOKUP)
    def lookup(self, G: Any, name: str = "G") -> Lookup:
        return Lookup(self.idx, self.num_embeddings, G, name)


def _lazy(E: Embedding, G: Any, *others: Any) -> bool:
    return any(v.is_lazy(a) for a in (E.idx, G, *others))


def _dask(name: str) -> Any:
    return getattr(importlib.import_module(DASK_MODULE), name)


def _table(lk: Lookup, what: str, max_bytes: int | None, extra: list | None = None) -> np.ndarray:
    """The zero table (V, d) of the result dtype, once it and `extra` parts fit the memory
    limit (temporaries of the size of the inputs are not counted)."""
    check_output_bytes([((lk.V, lk.d), lk.dtype)] + (extra or []), what=what, max_bytes=max_bytes, hint="")
    return np.zeros((lk.V, lk.d), dtype=lk.dtype)


def _factors(norms: np.ndarray, clip: float) -> np.ndarray:
    """c_b = min(1, clip / ||g_b||): 1 for a zero norm, 0 for an infinite one, NaN for NaN."""
    with np.errstate(divide="ignore"):
        return np.minimum(1.0, clip / norms)


# --- the batched gradients --------------------------------------------------------------------
def per_sample_grads(E: Embedding, G: Any, *, convention: str = "Wx", bias: bool = False, out: Any = None,
                     max_bytes: int | None = None, n_threads: int | None = None) -> sp.csr_array:
    """The per-sample gradients as a csr_array (B, V*d): row b holds g_b.ravel() at the
    rows of the table that sample b touches only (group sums, sorted column indices)."""
    v.embedding_options(convention, bias)
    threads = v.n_threads_value(n_threads)
    if out is not None:
        raise ValueError(f"out: expected None for an Embedding (the result is a new csr_array), got {type(out).__name__}")
    if _lazy(E, G):
        return _dask("per_sample_grads")(E, G, max_bytes=max_bytes, n_threads=n_threads)
    lk = E.lookup(G)
    nnz = lk.N * lk.d  # at most
    itype = v.index_dtype(max(lk.V * lk.d, nnz))  # column indices and indptr
    check_output_bytes([((nnz,), lk.dtype), ((nnz,), itype), ((lk.B + 1,), itype)],
                       what="per_sample_grads", max_bytes=max_bytes, hint=gradients.MATERIALIZE_HINT)
    lk.load()
    gptr, keys, sums, _ = lk.groups(threads, lk.dtype)
    cols = keys.astype(itype)[:, None] * itype.type(lk.d) + np.arange(lk.d, dtype=itype)
    indptr = (gptr * lk.d).astype(itype)
    return sp.csr_array((sums.ravel(), cols.ravel(), indptr), shape=(lk.B, lk.V * lk.d))


def batch_grad(E: Embedding, G: Any, *, convention: str = "Wx", reduce: str = "sum", bias: bool = False,
               max_bytes: int | None = None) -> np.ndarray:
    """sum_b g_b (V, d): G's rows scattered into the table (reduce="mean": divided by B)."""
    v.embedding_options(convention, bias)
    v.check_choice(reduce, "reduce", REDUCTIONS)
    if _lazy(E, G):
        return _dask("batch_grad")(E, G, reduce=reduce, max_bytes=max_bytes)
    lk = E.lookup(G)
    out = _table(lk, "batch_grad", max_bytes)
    lk.load()
    scatter(lk.idx.ravel(), lk.rows, out, v.n_threads_value(None))
    if reduce == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            np.divide(out, lk.B, out=out)
    return out


def per_sample_grad_norms(E: Embedding, G: Any, *, bias: bool = False, n_threads: int | None = None) -> np.ndarray:
    """||g_b|| (B,) from the index coincidences: the squared norms of each sample's group
    sums, accumulated in float64, O(B T d) after the sort; G's dtype."""
    v.embedding_options("Wx", bias)
    threads = v.n_threads_value(n_threads)
    if _lazy(E, G):
        return _dask("per_sample_grad_norms")(E, G, n_threads=n_threads)
    lk = E.lookup(G)
    lk.load()
    return np.sqrt(lk.squared_norms(threads)).astype(lk.dtype)


def clip_and_sum(E: Embedding, G: Any, max_norm: float, *, convention: str = "Wx", bias: bool = False,
                 max_bytes: int | None = None, n_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(sum_b c_b g_b, norms) with c_b = min(1, max_norm / ||g_b||) (1 for a zero norm):
    the norms from the group sums, then G's rows, each times its sample's c_b, scattered
    into the table.  A non-finite sample changes only the rows it touches."""
    v.embedding_options(convention, bias)
    clip = v.positive_float(max_norm, "max_norm")
    threads = v.n_threads_value(n_threads)
    if _lazy(E, G):
        return _dask("clip_and_sum")(E, G, clip, max_bytes=max_bytes, n_threads=n_threads)
    lk = E.lookup(G)
    out = _table(lk, "clip_and_sum", max_bytes, [((lk.B,), lk.dtype)])
    lk.load()
    norms = np.sqrt(lk.squared_norms(threads))
    scatter(lk.idx.ravel(), lk.rows, out, threads, np.repeat(_factors(norms, clip), lk.T))
    return out, norms.astype(lk.dtype)


# --- the statistics ------------------------------------------------------------------------------
def sum_grad_squared(E: Embedding, G: Any, *, convention: str = "Wx", bias: bool = False,
                     max_bytes: int | None = None) -> np.ndarray:
    """sum_b g_b * g_b (V, d): each sample's squared group sums scattered into the table."""
    v.embedding_options(convention, bias)
    if _lazy(E, G):
        return _dask("sum_grad_squared")(E, G, max_bytes=max_bytes)
    lk = E.lookup(G)
    out = _table(lk, "sum_grad_squared", max_bytes)
    lk.load()
    threads = v.n_threads_value(None)
    _, keys, sums, _ = lk.groups(threads)
    return scatter(keys, np.square(sums, out=sums), out, threads)


def grad_variance(E: Embedding, G: Any, *, convention: str = "Wx", bias: bool = False, ddof: int = 0,
                  max_bytes: int | None = None) -> np.ndarray:
    """np.var over b of g_b (V, d), ddof as np.var, centred exactly: with mu the mean
    gradient and n_v the number of samples touching row v, sum_b (g_b - mu)^2 is the sum
    over touched (b, v) of (S_bv - mu[v])^2 plus (B - n_v) mu[v]^2, in float64 over the
    touched rows only (never E[g^2] - E[g]^2)."""
    v.embedding_options(convention, bias)
    ddof = v.check_size(ddof, "ddof")
    if _lazy(E, G):
        return _dask("grad_variance")(E, G, ddof=ddof, max_bytes=max_bytes)
    lk = E.lookup(G)
    check_output_bytes([((lk.V, lk.d), lk.dtype)], what="grad_variance", max_bytes=max_bytes, hint="")
    lk.load()
    rows, mean, m2 = touched_moments(lk, v.n_threads_value(None))
    out = np.full((lk.V, lk.d), _moments.per_dof(np.zeros(()), lk.B, ddof), dtype=lk.dtype)
    out[rows] = _moments.per_dof(m2, lk.B, ddof)
    return out


def touched_moments(lk: Lookup, threads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, mean, M2): the table rows some sample touches (sorted), and over all B samples
    the mean and sum of squared deviations of g_b at those rows, float64 (U, d).  lk loaded."""
    _, keys, sums, _ = lk.groups(threads)
    rows, compact, touching = np.unique(keys, return_inverse=True, return_counts=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = scatter(compact, sums, np.zeros((len(rows), lk.d)), threads) / lk.B
    sums -= mean[compact]
    m2 = scatter(compact, np.square(sums, out=sums), np.zeros((len(rows), lk.d)), threads)
    m2 += (lk.B - touching)[:, None] * np.square(mean)
    return rows, mean, m2


def per_sample_grad_dots(E: Embedding, G: Any, X2: Any = None, G2: Any = None, *, bias: bool = False,
                         normalize: bool = False, max_bytes: int | None = None) -> np.ndarray:
    """K[a, b] = <g_a, g'_b> (B, B2) from the sparse per-sample gradients (P P2^T); X2 None:
    E, G with itself, K exactly symmetric.  normalize=True: cosines (0 for a zero gradient)."""
    v.embedding_options("Wx", bias)
    normalize = v.check_flag(normalize, "normalize")
    v.both_or_neither(X2, G2)
    if X2 is not None and not isinstance(X2, Embedding):
        raise TypeError(f"X2: expected an Embedding like X (or None), got {type(X2).__name__}")
    if X2 is not None and X2.num_embeddings != E.num_embeddings:
        raise ValueError(f"X2: expected num_embeddings={E.num_embeddings} like X, got {X2.num_embeddings}")
    if _lazy(E, G, *([] if X2 is None else [X2.idx, G2])):
        return _dask("per_sample_grad_dots")(E, G, X2, G2, normalize=normalize, max_bytes=max_bytes)
    same = X2 is None
    lk, lk2 = E.lookup(G), (None if same else X2.lookup(G2, "G2"))
    if lk2 is not None and lk2.d != lk.d:
        raise ValueError(f"G2: expected d={lk.d} columns (last axis) like G, got shape {v.shape_str(lk2.G.shape)}")
    dtype = lk.dtype if same else np.result_type(lk.dtype, lk2.dtype)
    check_output_bytes([((lk.B, lk.B if same else lk2.B), dtype)], what="per_sample_grad_dots",
                       max_bytes=max_bytes, hint="")
    P, norms = _flat_grads(lk)
    P2, norms2 = (P, norms) if same else _flat_grads(lk2)
    K = (P @ P2.T).toarray()
    if same:  # the upper triangle mirrored: exactly symmetric
        lower = np.tril_indices(lk.B, -1)
        K[lower] = K.T[lower]
    if normalize:
        with np.errstate(divide="ignore"):
            u, w = (np.where(n > 0, 1.0 / n, 0.0) for n in (norms, norms2))
        K *= np.multiply.outer(u, w)
    return K.astype(dtype, copy=False)


def _flat_grads(lk: Lookup) -> tuple[sp.csr_array, np.ndarray]:
    """The float64 per-sample gradients (B, V*d) of a loaded lookup and their norms."""
    lk.load()
    gptr, keys, sums, sq = lk.groups(v.n_threads_value(None))
    cols = (keys.astype(np.int64)[:, None] * lk.d + np.arange(lk.d)).ravel()
    P = sp.csr_array((sums.ravel(), cols, gptr * lk.d), shape=(lk.B, lk.V * lk.d))
    return P, np.sqrt(sq)


def kfac_factors(E: Embedding, G: Any, *, bias: bool = False, mode: str = "expand",
                 max_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(A, S): A the diagonal (V,) of sum_{b,t} x x^T / (B T) = counts_v / (B T) (x one-hot),
    S = sum_{b,t} G G^T / B (d, d) as for dense inputs.  mode="reduce" equals "expand" for
    T = 1 and is a ValueError for T > 1 (averaged one-hot rows give a non-diagonal A)."""
    v.embedding_options("Wx", bias)
    v.check_choice(mode, "mode", statistics.KFAC_MODES)
    if mode == "reduce" and E.idx.ndim == 2 and E.idx.shape[1] > 1:
        raise ValueError(
            f"mode: 'reduce' averages the one-hot rows of a sequence (T = {E.idx.shape[1]}), whose A "
            "is not diagonal; expected 'expand' for an Embedding of sequences"
        )
    if _lazy(E, G):
        return _dask("kfac_factors")(E, G, mode=mode, max_bytes=max_bytes)
    lk = E.lookup(G)
    check_output_bytes([((lk.V,), lk.dtype), ((lk.d, lk.d), lk.dtype)], what="kfac_factors",
                       max_bytes=max_bytes, hint="")
    lk.load()
    with np.errstate(invalid="ignore", divide="ignore"):
        A = (np.bincount(lk.keys, minlength=lk.V) / lk.N).astype(lk.dtype)
        S = lk.rows.T @ lk.rows
        S /= lk.B
    return A, S


for _public, _impl in (
    (gradients.per_sample_grads, per_sample_grads),
    (gradients.batch_grad, batch_grad),
    (gradients.per_sample_grad_norms, per_sample_grad_norms),
    (gradients.clip_and_sum, clip_and_sum),
    (statistics.sum_grad_squared, sum_grad_squared),
    (statistics.grad_variance, grad_variance),
    (statistics.per_sample_grad_dots, per_sample_grad_dots),
    (statistics.kfac_factors, kfac_factors),
):
    _dispatch.register_input(_public, Embedding, _impl)
