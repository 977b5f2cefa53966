"""Statistics of the per-sample gradients of a linear layer, from their outer-product
structure, without the (B, n, m) stack wherever the algebra allows.

With g_b = sum_t outer(G[b, t], X[b, t]) sample b's weight gradient ("Wx", (n, m);
"xW" is its transpose) and db_b = sum_t G[b, t] its bias gradient (see gradients.py):

    sum_grad_squared      sum_b g_b * g_b                     (diagonal empirical Fisher)
    grad_variance         np.var over b of g_b, with ddof
    per_sample_grad_dots  K[a, b] = <g_a, g'_b>               (gradient Gram matrix: NTK, TracIn)
    kfac_factors          A, S with A (x) S ~ E[vec_F(g) vec_F(g)^T]   (K-FAC)

2-D inputs are one to three GEMMs; sequences either materialize per-sample gradients
block by block (a few MiB of temporaries) or use the T x T Gram identity, whichever
costs fewer multiply-adds.  float32 stays float32; sums that would cancel are shifted
first or formed in float64.  Where an input is not finite, each result is what the
materialized per-sample gradients give (NaN where a 0 * inf appears in g_b).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, overload

import numpy as np
from numpy.typing import ArrayLike

from . import _batch, _moments
from . import _validation as v
from ._batch import CONVENTIONS, ROUTES, Batch, Inputs
from ._dispatch import dask_aware
from ._memory import check_output_bytes
from ._docs import doc, statistics as D

__all__ = ["grad_variance", "kfac_factors", "per_sample_grad_dots", "sum_grad_squared"]

KFAC_MODES = ("expand", "reduce")


# --- sum of squares ---------------------------------------------------------------------------
@overload
def sum_grad_squared(
    X: ArrayLike, G: ArrayLike, *, convention: str = ..., bias: Literal[False] = ..., max_bytes: int | None = ...
) -> np.ndarray: ...
@overload
def sum_grad_squared(
    X: ArrayLike, G: ArrayLike, *, convention: str = ..., bias: Literal[True], max_bytes: int | None = ...
) -> tuple[np.ndarray, np.ndarray]: ...
@doc(D.SUM_GRAD_SQUARED)
@dask_aware
def sum_grad_squared(
    X: ArrayLike,
    G: ArrayLike,
    *,
    convention: str = "Wx",
    bias: bool = False,
    max_bytes: int | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    v.check_choice(convention, "convention", CONVENTIONS)
    bias = v.check_flag(bias, "bias")
    inp = Inputs(X, G)
    parts = inp.parts(inp.w_shape(convention), bias)
    b = inp.load(parts, what="sum_grad_squared", max_bytes=max_bytes, aligned=inp.ndim == 3)  # 2-D: staged
    with np.errstate(invalid="ignore", over="ignore"):  # 0 * inf is NaN, as in g_b
        if b.ndim == 2:
            return _squares_staged(b, convention, bias)
        acc = np.zeros((b.n, b.m))
        for _, gw in _batch.grad_blocks(b):
            acc += np.square(gw, out=gw).sum(axis=0)  # float32 blocks are short (grad_blocks)
        dW = _batch.oriented(acc, convention, b.dtype)
        if not bias:
            return dW
        return dW, np.square(b.bias_grads()).sum(axis=0, dtype=np.float64).astype(b.dtype)


def _squares_staged(b: Batch, convention: str, bias: bool) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """2-D: (G * G).T @ (X * X) as a GEMM staged block by block, each block's squares formed
    in cache-sized buffers in front of it (one read of G and X, no squared copy of either);
    with bias, db2 = sum_b G[b] * G[b] from the same squared blocks (summed in float64
    across blocks)."""
    step = _batch.stage_rows(max(b.n, b.m) * b.dtype.itemsize)
    bufs = [np.empty((min(step, b.B), a.shape[1]), b.dtype) for a in (b.G, b.X)]
    db2 = np.zeros(b.n) if bias else None
    ones = np.ones(min(step, b.B), b.dtype)

    def fill(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        g2, x2 = (np.square(a[lo:hi], out=buf[: hi - lo]) for a, buf in zip((b.G, b.X), bufs))
        if db2 is not None:  # a GEMV with ones: the block's sum over rows at BLAS speed
            db2[:] += ones[: hi - lo] @ g2
        return (g2, x2) if convention == "Wx" else (x2, g2)

    dW = _batch.staged_product(b.B, step, _batch.w_shape(b.n, b.m, convention), b.dtype, fill)
    return dW if db2 is None else (dW, db2.astype(b.dtype))


# --- variance ---------------------------------------------------------------------------------
@overload
def grad_variance(
    X: ArrayLike, G: ArrayLike, *, convention: str = ..., bias: Literal[False] = ..., ddof: int = ...,
    max_bytes: int | None = ...,
) -> np.ndarray: ...
@overload
def grad_variance(
    X: ArrayLike, G: ArrayLike, *, convention: str = ..., bias: Literal[True], ddof: int = ...,
    max_bytes: int | None = ...,
) -> tuple[np.ndarray, np.ndarray]: ...
@doc(D.GRAD_VARIANCE)
@dask_aware
def grad_variance(
    X: ArrayLike,
    G: ArrayLike,
    *,
    convention: str = "Wx",
    bias: bool = False,
    ddof: int = 0,
    max_bytes: int | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    v.check_choice(convention, "convention", CONVENTIONS)
    bias = v.check_flag(bias, "bias")
    ddof = v.check_size(ddof, "ddof")
    inp = Inputs(X, G)
    b = inp.load(inp.parts(inp.w_shape(convention), bias), what="grad_variance", max_bytes=max_bytes)
    return _moments.moments(b, bias).results(frozenset(["variance"]), ddof, convention, b.dtype)["variance"]


# --- gradient dot products --------------------------------------------------------------------
@doc(D.PER_SAMPLE_GRAD_DOTS)
@dask_aware
def per_sample_grad_dots(
    X: ArrayLike,
    G: ArrayLike,
    X2: ArrayLike | None = None,
    G2: ArrayLike | None = None,
    *,
    bias: bool = False,
    normalize: bool = False,
    max_bytes: int | None = None,
) -> np.ndarray:
    bias = v.check_flag(bias, "bias")
    normalize = v.check_flag(normalize, "normalize")
    v.both_or_neither(X2, G2)
    inp = Inputs(X, G)
    same = X2 is None
    inp2 = inp if same else Inputs(X2, G2, ("X2", "G2"))
    v.check_second_batch(inp.X, inp.G, inp2.X, inp2.G)
    dtype = np.result_type(inp.dtype, inp2.dtype)
    parts = [((inp.B, inp2.B), dtype)]
    copies = inp.copies(dtype) + ([] if same else inp2.copies(dtype))
    check_output_bytes(parts, what="per_sample_grad_dots", max_bytes=max_bytes, hint="", copies=copies)
    b = inp.coerce(dtype, max_bytes, _batch.nbytes(parts + copies))
    b2 = b if same else inp2.coerce(dtype, max_bytes, _batch.nbytes(parts + copies))
    K = grad_dots(b, b2, same, bias)
    if normalize:
        threads = v.n_threads_value(None)
        u = _batch.inverse_norms(b, bias, threads)
        w = u if same else _batch.inverse_norms(b2, bias, threads)
        # u[a] * w[b] is commutative: a symmetric K stays exactly symmetric
        _scale_blocks(K, *_grid(8, b, K.shape, same), same, lambda i, j: np.multiply.outer(u[i], w[j]))
    return K


def grad_dots(b: Batch, b2: Batch, same: bool, bias: bool, route: str | None = None) -> np.ndarray:
    """K of per_sample_grad_dots from loaded batches; `route` forces a 3-D route (tests and
    the bench), None picks the cheaper.  Non-finite entries are recomputed exactly."""
    chosen = None if b.ndim == 2 else dots_route(b, b2) if route is None else v.check_choice(route, "route", ROUTES)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite inputs are handled below
        K = _dots_2d(b, b2, same, bias) if chosen is None else _dots_3d(b, b2, same, bias, chosen)
        bad = ~np.isfinite(K)
        if bad.any():
            _recompute(K, b, b2, same, bias, bad)
    return K


def _dots_2d(b: Batch, b2: Batch, same: bool, bias: bool) -> np.ndarray:
    """(G G2^T) * (X X2^T), the second factor in blocks (+1 with bias: <db_a, db_b> =
    <G[a], G2[b]>, so K = GG (XX + 1))."""
    K = np.empty((b.B, b2.B), dtype=b.dtype)
    np.matmul(b.G, b2.G.T, out=K)  # numpy's syrk when same: exactly symmetric

    def xx(i: slice, j: slice) -> np.ndarray:
        out = b.X[i] @ b2.X[j].T
        if bias:
            out += 1
        return out

    _scale_blocks(K, *_grid(b.dtype.itemsize, b, K.shape, same), same, xx)
    return K


def _dots_3d(b: Batch, b2: Batch, same: bool, bias: bool, route: str) -> np.ndarray:
    K = np.empty((b.B, b2.B), dtype=b.dtype)
    T, T2, size = b.T, b2.T, b.dtype.itemsize
    db, db2 = (b.bias_grads(), b2.bias_grads()) if bias else (None, None)
    if route == "gram":
        grid = _grid(2 * size * max(1, T * T2), b, K.shape, same)
        Gf, Xf, G2f, X2f = _batch.rows(b.G), _batch.rows(b.X), _batch.rows(b2.G), _batch.rows(b2.X)

        def block(i: slice, j: slice) -> np.ndarray:
            rows, cols = slice(i.start * T, i.stop * T), slice(j.start * T2, j.stop * T2)
            prod = Gf[rows] @ G2f[cols].T
            prod *= Xf[rows] @ X2f[cols].T
            out = prod.reshape(i.stop - i.start, T, j.stop - j.start, T2).sum(axis=(1, 3))
            return out if db is None else np.add(out, db[i] @ db2[j].T, out=out)

    else:
        side = _batch.block_rows(2 * b.n * b.m * size, b, max(b.B, b2.B))  # a row and a column block
        if side >= max(b.B, b2.B):  # every gradient at once: one GEMM (syrk when same: K == K.T)
            P = _batch.grads(b).reshape(b.B, b.n * b.m)
            P2 = P if same else _batch.grads(b2).reshape(b2.B, b.n * b.m)
            np.matmul(P, P2.T, out=K)
            return K if db is None else np.add(K, db @ db2.T, out=K)
        grid = (side, side)
        row_grads: dict[int, np.ndarray] = {}  # the row block's gradients, made once per row block

        def flat(part: Batch) -> np.ndarray:
            return _batch.grads(part).reshape(part.B, -1)

        def block(i: slice, j: slice) -> np.ndarray:
            if i.start not in row_grads:
                row_grads.clear()
                row_grads[i.start] = flat(b.take(i))
            ga = row_grads[i.start]
            gb = ga if same and i == j else flat(b2.take(j))
            out = ga @ gb.T
            return out if db is None else np.add(out, db[i] @ db2[j].T, out=out)

    _fill_blocks(K, *grid, same, block)
    return K


def _recompute(K: np.ndarray, b: Batch, b2: Batch, same: bool, bias: bool, bad: np.ndarray) -> None:
    """Rows and columns of K holding a non-finite entry, from materialized gradients
    (a factorized product can turn a 0 * inf of g_a into inf; K stays exactly symmetric)."""
    rows = np.flatnonzero(bad.any(axis=1))
    fresh = _dots_3d(_as_sequences(b.take(rows)), _as_sequences(b2), False, bias, "materialize")
    if same:
        sub = fresh[:, rows]  # the block of K on both rows and columns: made exactly symmetric
        upper = np.triu_indices(len(rows), 1)
        sub.T[upper] = sub[upper]
        fresh[:, rows] = sub
        K[rows, :] = fresh
        K[:, rows] = fresh.T
        return
    K[rows, :] = fresh
    cols = np.flatnonzero(bad.any(axis=0))
    K[:, cols] = _dots_3d(_as_sequences(b), _as_sequences(b2.take(cols)), False, bias, "materialize")


def _as_sequences(b: Batch) -> Batch:
    """A 2-D batch as sequences of one step (the same per-sample gradients)."""
    return b if b.ndim == 3 else Batch(b.X[:, None, :], b.G[:, None, :])


def dots_route(b: Batch, b2: Batch) -> str:
    """The cheaper 3-D dots route by _batch.route_cost (see per_sample_grad_dots): the Gram
    route's two GEMMs over all steps and its (k T, k T2) blocks, against materialized
    gradients (the columns' again for every block of rows where they do not all fit) and
    the GEMM of the two; with sequences of no steps on one side, the other side's gradients
    are materialized (the Gram sum is empty there, while <g_a, 0> is NaN for a non-finite g_a)."""
    B, B2, T, T2, n, m, size = b.B, b2.B, b.T, b2.T, b.n, b.m, b.dtype.itemsize
    if min(T, T2) == 0:
        return "materialize"
    rows, cols = _grid(2 * size * T * T2, b, (B, B2), b is b2)
    gram = _batch.route_cost(b.dtype, blas=B * B2 * T * T2 * (n + m), temporaries=2 * rows * cols * T * T2 * size)
    k = _batch.block_rows(2 * n * m * size, b, max(B, B2))
    passes = math.ceil(B / k)
    materialize = _batch.route_cost(b.dtype, blas=(B * T + passes * B2 * T2 + B * B2) * n * m,
                                    temporaries=(min(k, B) + min(k, B2)) * n * m * size)
    return "gram" if gram < materialize else "materialize"


def _grid(bytes_per_pair: int, b: Batch, shape: tuple[int, int], symmetric: bool) -> tuple[int, int]:
    """(rows, cols) of the blocks of K whose temporaries (bytes_per_pair for each entry) fit
    b's budget: squares when symmetric (blocks on the diagonal mirror themselves), else
    full-width row stripes."""
    per = max(1, bytes_per_pair)
    area = max(1, _batch.budget_for(b, per * shape[0] * shape[1]) // per)
    if symmetric:
        side = max(1, math.isqrt(area))
        return side, side
    return max(1, area // max(1, shape[1])), max(1, shape[1])


def _blocks(shape: tuple[int, int], rows: int, cols: int, symmetric: bool):
    """Yield (i, j) slices of a grid of rows x cols blocks; symmetric (rows == cols):
    those on and above the diagonal only."""
    B, B2 = shape
    for lo in range(0, B, rows):
        for clo in range(lo if symmetric else 0, B2, cols):
            yield slice(lo, min(lo + rows, B)), slice(clo, min(clo + cols, B2))


def _fill_blocks(
    K: np.ndarray, rows: int, cols: int, symmetric: bool, block: Callable[[slice, slice], np.ndarray]
) -> None:
    """K[i, j] = block(i, j) over the grid.  symmetric: each block above the diagonal
    is mirrored, and a diagonal block's upper triangle is copied onto its lower one,
    so K == K.T exactly."""
    for i, j in _blocks(K.shape, rows, cols, symmetric):
        out = block(i, j)
        if symmetric and i == j:
            lower = np.tril_indices(out.shape[0], -1)
            out[lower] = out.T[lower]
        K[i, j] = out
        if symmetric and i != j:
            K[j, i] = out.T


def _scale_blocks(
    K: np.ndarray, rows: int, cols: int, symmetric: bool, block: Callable[[slice, slice], np.ndarray]
) -> None:
    """K[i, j] *= block(i, j) over the grid, in place.  symmetric (K == K.T exactly on
    entry, block(i, i) exactly symmetric): K[j, i] *= block(i, j).T, so K stays so."""
    for i, j in _blocks(K.shape, rows, cols, symmetric):
        f = block(i, j)
        K[i, j] *= f
        if symmetric and i != j:
            K[j, i] *= f.T


# --- K-FAC --------------------------------------------------------------------------------------
@doc(D.KFAC_FACTORS)
@dask_aware
def kfac_factors(
    X: ArrayLike, G: ArrayLike, *, bias: bool = False, mode: str = "expand", max_bytes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    bias = v.check_flag(bias, "bias")
    v.check_choice(mode, "mode", KFAC_MODES)
    inp = Inputs(X, G)
    B, m, n, dtype = inp.B, inp.m, inp.n, inp.dtype
    parts = [((m + bias, m + bias), dtype), ((n, n), dtype)]
    reduced = inp.ndim == 3 and mode == "reduce"
    if reduced:
        parts += [((B, m), dtype), ((B, n), dtype)]
    b = inp.load(parts, what="kfac_factors", max_bytes=max_bytes)
    if b.ndim == 2:
        xs, gs, count = b.X, b.G, B
    elif not reduced:
        xs, gs, count = _batch.rows(b.X), _batch.rows(b.G), B * b.T
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            xs = (b.X.sum(axis=1, dtype=np.float64) / b.T).astype(dtype)
        gs, count = b.bias_grads(), B
    A = np.empty((m + bias, m + bias), dtype=dtype)
    A[:m, :m] = xs.T @ xs
    if bias:
        col = xs.sum(axis=0, dtype=np.float64)
        A[m, :m] = col
        A[:m, m] = col
        A[m, m] = count
    S = gs.T @ gs
    with np.errstate(invalid="ignore", divide="ignore"):
        A /= count
        S /= B
    return A, S
