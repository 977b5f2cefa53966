"""The batch core under gradients.py, statistics.py and matderiv.dask.

A batch is X (B, m) with G (B, n), or sequences X (B, T, m) with G (B, T, n).  Sample b's
weight gradient is g_b = sum_t outer(G[b, t], X[b, t]) ("Wx" orientation, (n, m); "xW"
is its transpose) and its bias gradient db_b = sum_t G[b, t].  This module owns, for
every batched function: the inputs (Inputs: checked, nothing copied; Batch: coerced once
the byte count allows it), W's shape and orientation, bias gradients, the block size of
temporaries, the per-sample gradient blocks and the float64 blocks, the per-sample norms
(with the two routes for sequences) and the moments behind the variance.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from . import _validation as v
from ._kernels import _outer, _rows
from ._memory import check_output_bytes

CONVENTIONS = v.CONVENTIONS
REDUCTIONS = ("sum", "mean")
ROUTES = ("gram", "materialize")

#: Bytes of temporaries one block of samples may use (at least one sample's worth).
BLOCK_BYTES = 4 * 2**20

#: Sequences up to this length take the Gram route in one kernel pass (no tiny BLAS call
#: per sample); longer ones in BLAS blocks, faster per multiply-add.
GRAM_KERNEL_STEPS = 32

Part = tuple[tuple[int, ...], np.dtype]


def w_shape(n: int, m: int, convention: str) -> tuple[int, int]:
    """W's shape: (n, m) for "Wx", (m, n) for "xW"."""
    return (n, m) if convention == "Wx" else (m, n)


def oriented(W: np.ndarray, convention: str, dtype: np.dtype) -> np.ndarray:
    """An (n, m) "Wx" array in the convention's orientation, C-contiguous, of dtype."""
    return np.ascontiguousarray(W if convention == "Wx" else W.T, dtype=dtype)


def rows(A: np.ndarray) -> np.ndarray:
    """(B, [T,] k) as (B*T, k) (explicit sizes: -1 is ambiguous when k is 0)."""
    return A.reshape(math.prod(A.shape[:-1]), A.shape[-1])


def block_rows(per_sample_bytes: int, B: int) -> int:
    """Samples per block: temporaries within BLOCK_BYTES, at least 1, at most B (or 1)."""
    return max(1, min(B, BLOCK_BYTES // max(1, per_sample_bytes)))


def gemm(Xc: np.ndarray, Gc: np.ndarray, convention: str) -> np.ndarray:
    """sum_b g_b as one GEMM over all B*T rows: G_flat.T @ X_flat ("Wx") or X_flat.T @ G_flat."""
    Xf, Gf = rows(Xc), rows(Gc)
    return Gf.T @ Xf if convention == "Wx" else Xf.T @ Gf


# --- inputs ------------------------------------------------------------------------------
class Batch:
    """Validated X and G: C-contiguous, aligned, native byte order, one dtype (float32 or
    float64), X (B, [T,] m) and G (B, [T,] n)."""

    __slots__ = ("X", "G")

    def __init__(self, X: np.ndarray, G: np.ndarray) -> None:
        self.X, self.G = X, G

    dtype = property(lambda self: self.X.dtype)
    ndim = property(lambda self: self.X.ndim)
    B = property(lambda self: self.X.shape[0])
    T = property(lambda self: self.X.shape[1] if self.X.ndim == 3 else 1)
    n = property(lambda self: self.G.shape[-1])
    m = property(lambda self: self.X.shape[-1])

    def take(self, index: Any) -> Batch:
        """The samples `index` (a slice, or integer indices: then a copy)."""
        return Batch(self.X[index], self.G[index])

    def float64(self) -> Batch:
        return Batch(self.X.astype(np.float64, copy=False), self.G.astype(np.float64, copy=False))

    def bias_grads(self) -> np.ndarray:
        """db_b = sum_t G[b, t], (B, n): G itself when 2-D."""
        return self.G if self.G.ndim == 2 else self.G.sum(axis=1)


class Inputs:
    """X and G checked against each other, as given: nothing is copied until load()."""

    def __init__(self, X: Any, G: Any, names: tuple[str, str] = ("X", "G")) -> None:
        self.X, self.G, self.dtype = v.batch_pair(X, G, names)
        self.ndim, self.B, self.n, self.m = self.X.ndim, self.X.shape[0], self.G.shape[-1], self.X.shape[-1]

    def w_shape(self, convention: str) -> tuple[int, int]:
        return w_shape(self.n, self.m, convention)

    def parts(self, shape: tuple[int, ...], bias: bool = False) -> list[Part]:
        """An output of `shape` and, with bias, the bias output (n,), in the result dtype."""
        return [(shape, self.dtype)] + ([((self.n,), self.dtype)] if bias else [])

    def copies(self, dtype: np.dtype | None = None) -> list[Part]:
        """The copies of X and G that coercion to `dtype` (default: theirs) makes."""
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        return [(a.shape, dtype) for a in (self.X, self.G) if v.needs_copy(a, dtype)]

    def coerce(self, dtype: np.dtype | None = None) -> Batch:
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        return Batch(v.contiguous(self.X, dtype), v.contiguous(self.G, dtype))

    def load(self, parts: list[Part], *, what: str, max_bytes: int | None = None, hint: str = "") -> Batch:
        """The Batch, once the outputs `parts` and the copies coercion makes fit the
        memory limit (OutputTooLargeError before anything is copied)."""
        check_output_bytes(parts, what=what, max_bytes=max_bytes, hint=hint, copies=self.copies())
        return self.coerce()


# --- per-sample gradients in blocks --------------------------------------------------------
def grads(b: Batch, out: np.ndarray | None = None, threads: int = 1) -> np.ndarray:
    """The per-sample gradients g_b of every sample of b ("Wx", (B, n, m)), into `out`:
    2-D the outer-product kernel on `threads` threads (each element written once), 3-D one
    batched matrix product.  0 * inf gives NaN, as it should.  ("xW" gradients are those
    of Batch(G, X).)"""
    if out is None:
        out = np.empty((b.B, b.n, b.m), dtype=b.dtype)
    if b.ndim == 2:
        _outer.outer(b.G, b.X, out, threads)
    elif b.T == 0:  # no steps: every gradient is an empty sum
        out.fill(0)
    else:
        with np.errstate(invalid="ignore", over="ignore"):
            np.matmul(b.G.transpose(0, 2, 1), b.X, out=out)
    return out


def grad_blocks(b: Batch, step: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(lo, gw): the per-sample gradients of samples lo, lo + 1, ... ("Wx", (k, n, m)) in
    blocks within BLOCK_BYTES (or of `step` samples), all in one reused buffer: consume
    each block before asking for the next."""
    step = block_rows(b.n * b.m * b.dtype.itemsize, b.B) if step is None else step
    buf = np.empty((min(step, b.B), b.n, b.m), dtype=b.dtype)
    for lo in range(0, b.B, step):
        part = b.take(slice(lo, lo + step))
        yield lo, grads(part, buf[: part.B])


def float64_blocks(b: Batch, per_sample_bytes: int) -> Iterator[tuple[int, Batch]]:
    """(lo, block): samples lo, lo + 1, ... as float64 Batches, in blocks whose float64
    conversion and `per_sample_bytes` of the caller's temporaries per sample stay within
    BLOCK_BYTES (float64 inputs are views, never copied)."""
    convert = 0 if b.dtype == np.float64 else 8 * b.T * (b.n + b.m)
    step = block_rows(per_sample_bytes + convert, b.B)
    for lo in range(0, b.B, step):
        yield lo, b.take(slice(lo, lo + step)).float64()


# --- norms ---------------------------------------------------------------------------------
def norm_route(T: int, n: int, m: int) -> str:
    """The cheaper 3-D norm route by multiply-add counts: Gram when T^2 (n + m + 1) < (T + 1) n m."""
    return "gram" if T * T * (n + m + 1) < (T + 1) * n * m else "materialize"


def row_dots(a: np.ndarray, c: np.ndarray, threads: int) -> np.ndarray:
    """Row-wise dot products of two C-contiguous (S, K) arrays of one dtype, accumulated in
    float64 without a float64 copy: (S,) float64."""
    out = np.empty(a.shape[0])
    _rows.row_dots(a, c, out, threads)
    return out


def squared_norms(b: Batch, bias: bool, threads: int, route: str | None = None) -> np.ndarray:
    """||g_b||^2 (+ ||db_b||^2 with bias) in float64, (B,), from the structure: 2-D
    ||G[b]||^2 (||X[b]||^2 + bias); 3-D the Gram identity or per-sample gradients in blocks,
    whichever norm_route says is cheaper (`route` forces one).  Non-finite inputs can give
    values that differ from the materialized gradients' (see norms)."""
    if b.ndim == 2:
        x2 = row_dots(b.X, b.X, threads)
        if bias:
            x2 += 1.0
        return row_dots(b.G, b.G, threads) * x2
    chosen = norm_route(b.T, b.n, b.m) if route is None else v.check_choice(route, "route", ROUTES)
    sq = _gram_squares(b, threads) if chosen == "gram" else _materialized_squares(b)
    if bias:
        db = b.bias_grads()
        sq += row_dots(db, db, threads)
    return sq


def _gram_squares(b: Batch, threads: int) -> np.ndarray:
    """sum_{t,s} (G[b,t].G[b,s]) (X[b,t].X[b,s]), clamped at 0 (round-off of a cancelling
    sum; NaN stays NaN): one kernel pass for short sequences, else float64 BLAS blocks."""
    sq = np.empty(b.B)
    T = b.T
    if T <= GRAM_KERNEL_STEPS:
        _rows.gram_sq(b.G, b.X, sq, threads)  # float64 sums, symmetry in t, s used
    else:
        for lo, part in float64_blocks(b, 16 * T * T):
            k = part.B
            if lo == 0:  # the first block is the largest: its buffers serve every block
                gg, xx = np.empty((k, T, T)), np.empty((k, T, T))
            np.matmul(part.G, part.G.transpose(0, 2, 1), out=gg[:k])
            np.matmul(part.X, part.X.transpose(0, 2, 1), out=xx[:k])
            # serial: a parallel region between BLAS calls would fight BLAS's threads
            sq[lo : lo + k] = row_dots(gg[:k].reshape(k, T * T), xx[:k].reshape(k, T * T), 1)
    return np.maximum(sq, 0.0, out=sq)


def _materialized_squares(b: Batch) -> np.ndarray:
    sq = np.empty(b.B)
    for lo, gw in grad_blocks(b):
        flat = gw.reshape(gw.shape[0], -1)
        sq[lo : lo + len(flat)] = row_dots(flat, flat, 1)
    return sq


def norms(b: Batch, bias: bool, threads: int, route: str | None = None) -> np.ndarray:
    """||g_b|| (with the bias: sqrt(||g_b||^2 + ||db_b||^2)) in float64, (B,), never
    materializing the gradients but for samples whose factorized norm is not finite:
    those are recomputed from their materialized gradients (exact_norms), so a 0 * inf
    in g_b gives NaN as it does there."""
    if b.ndim == 2:  # one kernel pass, accurate over double's whole range
        out = np.empty(b.B)
        _rows.outer_norms(b.G, b.X, 0.0, 1.0 if bias else 0.0, out, threads)
    else:
        out = np.sqrt(squared_norms(b, bias, threads, route))
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        out[bad] = exact_norms(b, bad, bias)
    return out


def exact_norms(b: Batch, index: np.ndarray, bias: bool) -> np.ndarray:
    """Norms of the samples `index` from their materialized float64 gradients (and bias
    gradients), scaled by their largest magnitude: NaN where an entry is NaN, inf where
    one is infinite, accurate where the norm is representable."""
    part = b.take(index).float64()
    flat = grads(part).reshape(part.B, -1)
    if bias:
        flat = np.concatenate([flat, part.bias_grads()], axis=1)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        scale = np.max(np.abs(flat), axis=1, initial=0.0)  # NaN where any entry is NaN
        usable = np.isfinite(scale) & (scale > 0)
        unit = np.where(usable, scale, 1.0)
        scaled = unit * np.sqrt(np.square(flat / unit[:, None]).sum(axis=1))
    return np.where(usable, scaled, scale)


def inverse_norms(b: Batch, bias: bool, threads: int) -> np.ndarray:
    """1 / ||g_b|| in float64 (B,), 0 where the norm is 0; NaN stays NaN, inf gives 0."""
    nrm = norms(b, bias, threads)
    with np.errstate(divide="ignore"):
        inv = 1.0 / nrm
    inv[nrm == 0] = 0.0
    return inv


def per_dof(m2: np.ndarray, count: int, ddof: int) -> np.ndarray:
    """M2 / max(count - ddof, 0): NaN or inf where there are no degrees of freedom."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return m2 / max(count - ddof, 0)


# --- moments -------------------------------------------------------------------------------
class Moments(NamedTuple):
    """count, mean and M2 = sum_b (g_b - mean)^2 of per-sample gradients in float64
    ("Wx", (n, m)), the mean held relative to a shift: it is `mean + steps * outer(a, c)`,
    with a and c near the means of G's and X's rows, so that means that dominate the
    spread lose nothing where partials are merged.  With bias, those of db_b: its mean is
    `bias_mean + steps * a` (bias_mean and bias_m2 are None without bias)."""

    count: int
    steps: int
    a: np.ndarray
    c: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    bias_mean: np.ndarray | None = None
    bias_m2: np.ndarray | None = None

    def grad_mean(self) -> np.ndarray:
        return self.mean + self.steps * np.outer(self.a, self.c)

    def merge(self, other: Moments) -> Moments:
        """Chan et al.'s pairwise update, M2 = M2_a + M2_b + delta^2 n_a n_b / n, with
        delta taken between shifted means: a' (x) c' - a (x) c = a' (x) (c' - c) +
        (a' - a) (x) c needs no difference of large products.  The result keeps self's
        shift; a partial of no samples contributes nothing."""
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        k, total = other.count, self.count + other.count
        with np.errstate(invalid="ignore", over="ignore"):
            da, dc = other.a - self.a, other.c - self.c
            shift = self.steps * (np.outer(other.a, dc) + np.outer(da, self.c))
            merged = [_chan(self.mean, self.m2, other.mean + shift, other.m2.copy(), self.count, k)]
            if self.bias_mean is not None:
                merged.append(_chan(self.bias_mean, self.bias_m2, other.bias_mean + self.steps * da, other.bias_m2.copy(),
                                    self.count, k))
        return Moments(total, self.steps, self.a, self.c, *(x for pair in merged for x in pair))


def _chan(mean: np.ndarray, m2: np.ndarray, mean2: np.ndarray, m2b: np.ndarray, n1: int, n2: int) -> tuple:
    """The merged (mean, M2) of partials of n1 and n2 samples, written over mean2 and m2b
    (the caller's own arrays) with one temporary."""
    total = n1 + n2
    delta = np.subtract(mean2, mean, out=mean2)
    m2b += m2
    spread = np.square(delta)
    spread *= n1 * n2 / total
    m2b += spread
    delta *= n2 / total
    delta += mean
    return delta, m2b


def moments(b: Batch, bias: bool) -> Moments:
    """The Moments of the per-sample gradients (see Moments), without cancellation when
    the mean dominates: 2-D from shifted sums (three GEMMs), 3-D from blocks of shifted
    per-sample gradients merged with Chan's update.  B = 0: zeros."""
    a = rows(b.G).mean(axis=0, dtype=np.float64) if b.B * b.T else np.zeros(b.n)
    c = rows(b.X).mean(axis=0, dtype=np.float64) if b.B * b.T else np.zeros(b.m)
    if b.ndim == 3:  # the shift of X is applied in the inputs' dtype there: representable in it
        c = c.astype(b.dtype).astype(np.float64)
    if b.B == 0:
        zeros = [np.zeros((b.n, b.m)), np.zeros((b.n, b.m))] + ([np.zeros(b.n), np.zeros(b.n)] if bias else [])
        return Moments(0, b.T, a, c, *zeros)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # non-finite inputs propagate
        mean, m2 = _shifted_moments(b, a, c) if b.ndim == 2 else _chan_moments(b, a, c)
        if b.B == 1:  # one sample has no spread (not round-off): 0, or NaN where not finite
            np.multiply(m2, 0.0, out=m2)
        if not bias:
            return Moments(b.B, b.T, a, c, mean, m2)
        du = (b.G - a).sum(axis=1) if b.ndim == 3 else b.G - a  # db_b - T a, each G_bt - a first
        du_mean = du.mean(axis=0)
        return Moments(b.B, b.T, a, c, mean, m2, du_mean, np.square(du - du_mean).sum(axis=0))


def _shifted_moments(b: Batch, a: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-D: with w = X - c and u = G - a, the shifted gradients h_b = g_b - a (x) c =
    G_b (x) w_b + u_b (x) c have g's spread and a small mean, so M2 = sum h^2 - (sum h)^2 / B
    cancels only what the spread itself does.  sum h = G^T w + (sum u) (x) c and sum h^2 =
    (G*G)^T (w*w) + 2 c * ((G*u)^T w) + (sum u^2) (x) c^2: three GEMMs.  Returns (mean of
    h, M2)."""
    B, n, m = b.B, b.n, b.m
    lin, cross, sq = np.empty((n, m)), np.empty((n, m)), np.empty((n, m))  # G^T w, (G*u)^T w, (G*G)^T (w*w)
    su, suu = np.zeros(n), np.zeros(n)
    # float64 inputs in one block: the temporaries (w, u) are the inputs' size, and one GEMM
    # over all samples each is what makes it fast; float32 is converted a block at a time
    per_sample = 0 if b.dtype == np.float64 else 8 * (2 * n + 2 * m)
    for lo, part in float64_blocks(b, per_sample):
        w, u = part.X - c, part.G - a
        su += u.sum(axis=0)
        suu += np.einsum("bn,bn->n", u, u)
        _gemm_into(lin, part.G, w, lo)
        _gemm_into(cross, np.multiply(u, part.G, out=u), w, lo)
        _gemm_into(sq, np.square(part.G, out=u), np.square(w, out=w), lo)
    # in place, with one (n, m) temporary: h_sum = G^T w + su (x) c in lin;
    # h_sq = sq + 2 c * (G*u)^T w + suu (x) c^2 in sq; M2 = h_sq - h_sum^2 / B in sq
    tmp = np.empty((n, m))
    h_sum = lin
    h_sum += np.outer(su, c, out=tmp)
    cross *= 2 * c
    sq += cross
    sq += np.outer(suu, c * c, out=tmp)
    np.divide(h_sum, B, out=tmp)
    tmp *= h_sum
    m2 = np.subtract(sq, tmp, out=sq)
    np.maximum(m2, 0.0, out=m2)  # round-off of the subtraction; NaN stays NaN
    h_sum /= B
    return h_sum, m2


def _gemm_into(acc: np.ndarray, A: np.ndarray, C: np.ndarray, lo: int) -> None:
    """acc = A^T C for the first block (lo = 0), acc += A^T C for later ones."""
    if lo == 0:
        np.matmul(A.T, C, out=acc)
    else:
        acc += A.T @ C


def _chan_moments(b: Batch, a: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3-D: the shifted gradients h_b = g_b - T a (x) c = sum_t G_bt (x) (X_bt - c) + s_b (x) c,
    s_b = sum_t (G_bt - a), as one batched product over T + 1 steps (the last step holds s_b
    and c), in blocks in the inputs' dtype; each block centred on its own mean and merged
    with Chan's update in float64 (no cancellation at all).  c must be representable in
    the inputs' dtype.  Returns (mean of h, M2)."""
    B, T, n, m, dt = b.B, b.T, b.n, b.m, b.dtype
    step = block_rows(dt.itemsize * ((T + 1) * (n + m) + n * m), B)
    Gx, Wx = np.empty((step, T + 1, n), dt), np.empty((step, T + 1, m), dt)
    hw = np.empty((step, n, m), dt)
    mean = m2 = None
    for lo in range(0, B, step):
        k = min(step, B - lo)
        Gx[:k, :T] = b.G[lo : lo + k]
        Gx[:k, T] = (b.G[lo : lo + k] - a).sum(axis=1)  # each G_bt - a exact where G_bt is near a
        np.subtract(b.X[lo : lo + k], c, out=Wx[:k, :T], casting="same_kind")
        Wx[:k, T] = c
        h = np.matmul(Gx[:k].transpose(0, 2, 1), Wx[:k], out=hw[:k])
        block_mean = h.mean(axis=0, dtype=np.float64)
        np.subtract(h, block_mean, out=h, casting="same_kind")
        block_m2 = np.square(h, out=h).sum(axis=0, dtype=np.float64)
        mean, m2 = (block_mean, block_m2) if lo == 0 else _chan(mean, m2, block_mean, block_m2, lo, k)
    return mean, m2
