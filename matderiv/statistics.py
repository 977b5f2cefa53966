"""Statistics of the per-sample gradients of a linear layer, from their outer-product
structure, without the (B, n, m) stack wherever the algebra allows.

With g_b = sum_t outer(G[b, t], X[b, t]) sample b's weight gradient ("Wx", (n, m);
"xW" is its transpose) and db_b = sum_t G[b, t] its bias gradient (see gradients.py):

    sum_grad_squared      sum_b g_b * g_b                     (diagonal empirical Fisher)
    grad_variance         np.var over b of g_b, with ddof
    per_sample_grad_dots  K[a, b] = <g_a, g'_b>               (gradient Gram matrix: NTK, TracIn)
    kfac_factors          A, S with A (x) S ~ E[vec_F(g) vec_F(g)^T]   (K-FAC)

2-D inputs are one or two GEMMs; sequences either materialize per-sample gradients
block by block (temporaries within gradients.BLOCK_BYTES, 4 MiB, or twice that where two
blocks meet) or use the T x T Gram identity, whichever costs fewer multiply-adds.
float32 stays float32; sums that would cancel are centred first or formed in float64.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Literal, overload

import numpy as np
from numpy.typing import ArrayLike

from . import _validation as v
from . import gradients as _g
from ._dispatch import dask_aware
from ._memory import check_output_bytes
from .gradients import CONVENTIONS, ROUTES, _bias_grads, _inputs, _rows, _W_shape, _weight_grad

__all__ = ["grad_variance", "kfac_factors", "per_sample_grad_dots", "sum_grad_squared"]

KFAC_MODES = ("expand", "reduce")


def _output_check(what: str, shape: tuple[int, ...], n: int, bias: bool, dtype: np.dtype, max_bytes) -> None:
    parts = [(shape, dtype)] + ([((n,), dtype)] if bias else [])
    check_output_bytes(parts, what=what, max_bytes=max_bytes, hint="")


def _grad_blocks(Xc: np.ndarray, Gc: np.ndarray):
    """Yield (k, gw): the per-sample gradients G[b].T @ X[b] ("Wx", (k, n, m)) of
    successive blocks of samples, in one buffer within BLOCK_BYTES (reused: consume
    each block before asking for the next)."""
    B, n, m = Xc.shape[0], Gc.shape[-1], Xc.shape[-1]
    step = _g._block_size(n * m * Xc.dtype.itemsize, B)
    buf = np.empty((step, n, m), dtype=Xc.dtype)
    for lo in range(0, B, step):
        Gb, Xb = Gc[lo : lo + step], Xc[lo : lo + step]
        k = Gb.shape[0]
        np.matmul(Gb.transpose(0, 2, 1), Xb, out=buf[:k])
        yield k, buf[:k]


def _oriented(W: np.ndarray, convention: str, dtype: np.dtype) -> np.ndarray:
    """An (n, m) "Wx" array in the convention's orientation, C-contiguous, of dtype."""
    return np.ascontiguousarray(W if convention == "Wx" else W.T, dtype=dtype)


# --- sum of squares ---------------------------------------------------------------------------
@overload
def sum_grad_squared(
    X: ArrayLike, G: ArrayLike, *, convention: str = ..., bias: Literal[False] = ..., max_bytes: int | None = ...
) -> np.ndarray: ...
@overload
def sum_grad_squared(
    X: ArrayLike, G: ArrayLike, *, convention: str = ..., bias: Literal[True], max_bytes: int | None = ...
) -> tuple[np.ndarray, np.ndarray]: ...
@dask_aware
def sum_grad_squared(
    X: ArrayLike,
    G: ArrayLike,
    *,
    convention: str = "Wx",
    bias: bool = False,
    max_bytes: int | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """sum_b g_b * g_b (elementwise), W's shape: the diagonal of the empirical Fisher.

    2-D: (G * G).T @ (X * X) ("Wx", (n, m); "xW": (X * X).T @ (G * G), (m, n)), one GEMM.
    3-D: per-sample gradients G[b].T @ X[b] in blocks within BLOCK_BYTES, squared and
    summed (float64 across blocks); never the whole (B, n, m).
    bias=True returns (dW2, db2) with db2 = sum_b db_b * db_b, shape (n,).
    max_bytes bounds the outputs.  B = 0 gives zeros.
    """
    v.check_choice(convention, "convention", CONVENTIONS)
    bias = v.check_flag(bias, "bias")
    _, _, Xc, Gc = _inputs(X, G)
    n, m, dtype = Gc.shape[-1], Xc.shape[-1], Xc.dtype
    _output_check("sum_grad_squared", _W_shape(n, m, convention), n, bias, dtype, max_bytes)
    if Xc.ndim == 2:
        dW = _weight_grad(np.square(Xc), np.square(Gc), convention)
    else:
        acc = np.zeros((n, m))
        for _, gw in _grad_blocks(Xc, Gc):
            acc += np.square(gw, out=gw).sum(axis=0)
        dW = _oriented(acc, convention, dtype)
    if not bias:
        return dW
    db = _bias_grads(Gc)
    return dW, np.square(db).sum(axis=0, dtype=np.float64).astype(dtype)


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
    """np.var(per_sample_grads(X, G), axis=0, ddof=ddof), W's shape, without the stack in 2-D.

    var = sum_b (g_b - mean)^2 / (B - ddof).
    2-D: from S2 = (G*G).T @ (X*X) and S1 = G.T @ X as (S2 - S1 * S1 / B) / (B - ddof),
    two GEMMs in float64 (float32 inputs converted block by block): the subtraction loses
    about log10(mean^2 / var) of float64's 16 digits, where float32's 7 would all go.
    3-D: per-sample gradients in blocks within BLOCK_BYTES, each block centred on its own
    mean and merged with Chan's pairwise update in float64 (no cancellation at all).
    bias=True returns (vW, vb) with vb the variance of db_b, shape (n,), two-pass in float64.
    ddof: a non-negative int; B <= ddof divides by 0 as np.var does (B = 0 gives NaN).
    """
    v.check_choice(convention, "convention", CONVENTIONS)
    bias = v.check_flag(bias, "bias")
    ddof = v.check_size(ddof, "ddof")
    _, _, Xc, Gc = _inputs(X, G)
    B, n, m, dtype = Xc.shape[0], Gc.shape[-1], Xc.shape[-1], Xc.dtype
    _output_check("grad_variance", _W_shape(n, m, convention), n, bias, dtype, max_bytes)
    if Xc.ndim == 2:
        spread = _spread_2d(Xc, Gc)
        np.maximum(spread, 0.0, out=spread)  # round-off of a subtraction; NaN stays NaN
        if B == 1:  # one sample has no spread (not round-off): 0, or NaN where not finite
            np.multiply(spread, 0.0, out=spread)
    else:
        spread = _centred_squares(Xc, Gc)
    vW = _oriented(_per_dof(spread, B, ddof), convention, dtype)
    if not bias:
        return vW
    db = _bias_grads(Gc).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        db -= db.sum(axis=0) / B
    return vW, _per_dof(np.square(db).sum(axis=0), B, ddof).astype(dtype)


def _spread_2d(Xc: np.ndarray, Gc: np.ndarray) -> np.ndarray:
    """sum_b (g_b - mean)^2 = S2 - S1^2 / B, (n, m) float64 (see grad_variance).

    S1 = G.T @ X and S2 = (G*G).T @ (X*X) are float64 GEMMs: float32 inputs are converted
    a block of samples at a time (within BLOCK_BYTES), never copied whole.
    """
    B, n, m = Xc.shape[0], Gc.shape[1], Xc.shape[1]
    step = max(1, B) if Xc.dtype == np.float64 else _g._block_size(16 * (n + m), B)
    s1, spread = np.zeros((n, m)), np.zeros((n, m))
    for lo in range(0, B, step):
        Xb = Xc[lo : lo + step].astype(np.float64, copy=False)
        Gb = Gc[lo : lo + step].astype(np.float64, copy=False)
        s1 += Gb.T @ Xb
        spread += np.square(Gb).T @ np.square(Xb)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread -= s1 * (s1 / B)
    return spread


def _centred_squares(Xc: np.ndarray, Gc: np.ndarray) -> np.ndarray:
    """sum_b (g_b - mean)^2, (n, m) float64, over blocks merged with Chan's update."""
    n, m = Gc.shape[-1], Xc.shape[-1]
    mean, spread, count = np.zeros((n, m)), np.zeros((n, m)), 0
    for k, gw in _grad_blocks(Xc, Gc):
        block_mean = gw.mean(axis=0, dtype=np.float64)
        np.subtract(gw, block_mean, out=gw, casting="same_kind")
        delta = block_mean - mean
        total = count + k
        spread += np.square(gw, out=gw).sum(axis=0, dtype=np.float64)
        spread += np.square(delta) * (count * k / total)
        mean += delta * (k / total)
        count = total
    return spread


def _per_dof(spread: np.ndarray, B: int, ddof: int) -> np.ndarray:
    """spread / max(B - ddof, 0): NaN or inf where there are no degrees of freedom."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return spread / max(B - ddof, 0)


# --- gradient dot products --------------------------------------------------------------------
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
    """K[a, b] = <g_a, g'_b> (+ <db_a, db'_b> with bias=True), shape (B, B2): the
    gradient Gram matrix (the layer's empirical NTK; TracIn scores of a test batch
    X2, G2 against training data X, G).  The same for both conventions.

    X2, G2: another batch with the same n and m and the same ndim (its B and T may
    differ); both None (the default) means X, G themselves, and K is then exactly
    symmetric (each off-diagonal block is computed once and mirrored).
    2-D: (G @ G2.T) * (X @ X2.T) (+ G @ G2.T with bias), blocked so that temporaries
    stay within BLOCK_BYTES; never O(B n m) memory.
    3-D: the cheaper by multiply-add counts of
      * Gram:        K[a, b] = sum_{t,s} <G[a,t], G2[b,s]> <X[a,t], X2[b,s]>,
                     ~ B B2 T T2 (n + m) for the GEMMs of the (k T, k T2) blocks;
      * materialize: per-sample gradients of blocks of a and b, then a GEMM of the two,
                     ~ (B T + (B / k) B2 T2 + B B2) n m with k samples per block.
    normalize=True divides by ||g_a|| ||g'_b|| (cosines), with 0 where either gradient
    is zero.  max_bytes bounds the (B, B2) output.
    """
    bias = v.check_flag(bias, "bias")
    normalize = v.check_flag(normalize, "normalize")
    Xc, Gc, X2c, G2c, same = _dots_inputs(X, G, X2, G2)
    B, B2 = Xc.shape[0], X2c.shape[0]
    check_output_bytes([((B, B2), Xc.dtype)], what="per_sample_grad_dots", max_bytes=max_bytes, hint="")
    K = _grad_dots(Xc, Gc, X2c, G2c, same, bias)
    if normalize:
        threads = v.n_threads_value(None)
        u = _inverse_norms(Xc, Gc, bias, threads)
        w = u if same else _inverse_norms(X2c, G2c, bias, threads)
        # u[a] * w[b] is commutative: a symmetric K stays exactly symmetric
        _scale_blocks(K, *_grid(8, K.shape, same), same, lambda i, j: np.multiply.outer(u[i], w[j]))
    return K


def _dots_inputs(X, G, X2, G2) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """Validated C-contiguous X, G, X2, G2 of one dtype; `same`: X2, G2 were not given."""
    if (X2 is None) != (G2 is None):
        given = "X2" if G2 is None else "G2"
        raise ValueError(f"X2 and G2: expected both or neither, got {given} only")
    _, _, Xc, Gc = _inputs(X, G)
    if X2 is None:
        return Xc, Gc, Xc, Gc, True
    X2a, G2a = v.as_array(X2, "X2", (2, 3), allow_complex=False), v.as_array(G2, "G2", (2, 3), allow_complex=False)
    check_second_batch(Xc, Gc, X2a, G2a)
    _, _, X2c, G2c = _inputs(X2a, G2a)
    dtype = np.result_type(Xc.dtype, X2c.dtype)
    return tuple(v.contiguous(a, dtype) for a in (Xc, Gc, X2c, G2c)) + (False,)  # type: ignore[return-value]


def check_second_batch(X: Any, G: Any, X2: Any, G2: Any) -> None:
    """X2 and G2 against each other (as X and G are) and against X and G: the same ndim
    and widths. Shapes alone are read, so dask arrays are checked without computing."""
    if X2.ndim != G2.ndim or X2.shape[:-1] != G2.shape[:-1]:
        try:
            _inputs(X2, G2)
        except ValueError as exc:  # the same checks, named for the second batch
            raise ValueError(re.sub(r"\b([XG])\b", r"\g<1>2", str(exc))) from None
    if X2.ndim != X.ndim:
        raise ValueError(
            f"X2: expected {X.ndim}-D like X (shape {v._shape_str(X.shape)}), "
            f"got {X2.ndim}-D with shape {v._shape_str(X2.shape)}"
        )
    for name, a, b in (("X2", X2, X), ("G2", G2, G)):
        if a.shape[-1] != b.shape[-1]:
            raise ValueError(
                f"{name}: expected {b.shape[-1]} columns (last axis) like {name[0]}, got shape "
                f"{v._shape_str(a.shape)}"
            )


def _grad_dots(Xc, Gc, X2c, G2c, same: bool, bias: bool, route: str | None = None) -> np.ndarray:
    """K from validated inputs; `route` forces a 3-D route (tests), None picks the cheaper."""
    B, B2, n, m = Xc.shape[0], X2c.shape[0], Gc.shape[-1], Xc.shape[-1]
    K = np.empty((B, B2), dtype=Xc.dtype)
    if Xc.ndim == 2:
        np.matmul(Gc, G2c.T, out=K)  # numpy's syrk when same: exactly symmetric

        def xx(i: slice, j: slice) -> np.ndarray:
            out = Xc[i] @ X2c[j].T
            if bias:
                out += 1  # <db_a, db_b> = <G[a], G2[b]>: K = GG (XX + 1)
            return out

        _scale_blocks(K, *_grid(Xc.dtype.itemsize, K.shape, same), same, xx)
        return K

    T, T2 = Xc.shape[1], X2c.shape[1]
    size = Xc.dtype.itemsize
    route = _dots_route(B, B2, T, T2, n, m, size) if route is None else v.check_choice(route, "route", ROUTES)
    db, db2 = (_bias_grads(Gc), _bias_grads(G2c)) if bias else (None, None)
    if route == "gram":
        grid = _grid(size * max(1, T * T2), K.shape, same)
        Gf, Xf, G2f, X2f = _rows(Gc), _rows(Xc), _rows(G2c), _rows(X2c)

        def block(i: slice, j: slice) -> np.ndarray:
            ka, kb = i.stop - i.start, j.stop - j.start
            rows, cols = slice(i.start * T, i.stop * T), slice(j.start * T2, j.stop * T2)
            prod = Gf[rows] @ G2f[cols].T
            prod *= Xf[rows] @ X2f[cols].T
            out = prod.reshape(ka, T, kb, T2).sum(axis=(1, 3))
            return out if db is None else np.add(out, db[i] @ db2[j].T, out=out)

    else:
        side = _g._block_size(n * m * size, max(B, B2))
        grid = (side, side)
        rows: dict[int, np.ndarray] = {}  # the row block's gradients, made once per row block

        def grads(Xs: np.ndarray, Gs: np.ndarray, k: slice) -> np.ndarray:
            return np.matmul(Gs[k].transpose(0, 2, 1), Xs[k]).reshape(k.stop - k.start, n * m)

        def block(i: slice, j: slice) -> np.ndarray:
            if i.start not in rows:
                rows.clear()
                rows[i.start] = grads(Xc, Gc, i)
            ga = rows[i.start]
            gb = ga if same and i == j else grads(X2c, G2c, j)
            out = ga @ gb.T
            return out if db is None else np.add(out, db[i] @ db2[j].T, out=out)

    _fill_blocks(K, *grid, same, block)
    return K


def _grid(bytes_per_pair: int, shape: tuple[int, int], symmetric: bool) -> tuple[int, int]:
    """(rows, cols) of the blocks of K whose temporaries fit BLOCK_BYTES: squares when
    symmetric (blocks on the diagonal mirror themselves), else full-width row stripes."""
    area = max(1, _g.BLOCK_BYTES // max(1, bytes_per_pair))
    if symmetric:
        side = max(1, math.isqrt(area))
        return side, side
    return max(1, area // max(1, shape[1])), max(1, shape[1])


def _dots_route(B: int, B2: int, T: int, T2: int, n: int, m: int, itemsize: int) -> str:
    """The cheaper 3-D dots route by multiply-add counts (see per_sample_grad_dots)."""
    k = _g._block_size(n * m * itemsize, max(B, B2))
    gram = B * B2 * T * T2 * (n + m + 1)
    materialize = (B * T + math.ceil(B / max(k, 1)) * B2 * T2 + B * B2) * n * m
    return "gram" if gram < materialize else "materialize"


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


def _inverse_norms(Xc: np.ndarray, Gc: np.ndarray, bias: bool, threads: int) -> np.ndarray:
    """1 / ||g_b|| (with the bias), 0 where the norm is 0; NaN stays NaN."""
    norms = np.sqrt(_g._grad_squared_norms(Xc, Gc, bias, None, threads))
    with np.errstate(divide="ignore"):
        inv = 1.0 / norms
    inv[norms == 0] = 0.0
    return inv


# --- K-FAC --------------------------------------------------------------------------------------
@dask_aware
def kfac_factors(
    X: ArrayLike, G: ArrayLike, *, bias: bool = False, mode: str = "expand"
) -> tuple[np.ndarray, np.ndarray]:
    """The K-FAC Kronecker factors (A, S), A (m, m) and S (n, n), exactly symmetric,
    with A (x) S ~ the uncentred covariance of vec_F(g_b) ("Wx" layout):

    2-D:       A = X.T @ X / B, S = G.T @ G / B (for one sample A (x) S = vec_F(g) vec_F(g)^T).
    "expand":  A = sum_{b,t} X[b,t] X[b,t]^T / (B T),  S = sum_{b,t} G[b,t] G[b,t]^T / B.
    "reduce":  A = sum_b xbar_b xbar_b^T / B with xbar_b = mean_t X[b, t],
               S = sum_b gbar_b gbar_b^T / B with gbar_b = sum_t G[b, t].
    bias=True appends a 1 to every x: A is (m + 1, m + 1) with the column sums of x in
    its last row and column and the count in its corner (no augmented copy of X).
    Each factor is one symmetric rank-k product (numpy's syrk for X.T @ X).  B = 0 gives
    NaN (0 / 0), as a mean over no samples.
    """
    bias = v.check_flag(bias, "bias")
    v.check_choice(mode, "mode", KFAC_MODES)
    _, _, Xc, Gc = _inputs(X, G)
    B = Xc.shape[0]
    if Xc.ndim == 2:
        xs, gs, count = Xc, Gc, B
    elif mode == "expand":
        xs, gs, count = _rows(Xc), _rows(Gc), B * Xc.shape[1]
    else:
        T = Xc.shape[1]
        with np.errstate(invalid="ignore", divide="ignore"):
            xs = (Xc.sum(axis=1, dtype=np.float64) / T).astype(Xc.dtype)
        gs, count = _bias_grads(Gc), B
    m = xs.shape[1]
    A = np.empty((m + bias, m + bias), dtype=Xc.dtype)
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
