"""The batch core under gradients.py, statistics.py and matderiv.dask.

A batch is X (B, m) with G (B, n), or sequences X (B, T, m) with G (B, T, n).  Sample b's
weight gradient is g_b = sum_t outer(G[b, t], X[b, t]) ("Wx" orientation, (n, m); "xW"
is its transpose) and its bias gradient db_b = sum_t G[b, t].  This module owns, for
every batched function: the inputs (Inputs: checked, nothing copied; Batch: coerced once
the byte count allows it), W's shape and orientation, bias gradients, the budget and
block size of temporaries, the per-sample gradient blocks and the float64 blocks, and the
per-sample norms (with the two routes for sequences); _moments.py, beside it, the
moments behind the variance.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import _validation as v
from ._kernels import _outer, _rows
from ._memory import MIN_TEMPORARY_BYTES, check_output_bytes, temporaries_budget

CONVENTIONS = v.CONVENTIONS
REDUCTIONS = ("sum", "mean")
ROUTES = ("gram", "materialize")

#: Bytes of temporaries a call may use: None for the budget that scales with the memory
#: limit (_memory.temporaries_budget); tests set a number to force many small blocks.
BLOCK_BYTES: int | None = None

#: float32 per-sample gradients come in blocks of at most this many samples: sums over a
#: block's samples run in float32 (at full float32 speed), sums across blocks in float64.
FLOAT32_BLOCK_ROWS = 256

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


def nbytes(parts: list[Part]) -> int:
    """The bytes of arrays given as (shape, dtype)."""
    return sum(math.prod(shape) * np.dtype(dtype).itemsize for shape, dtype in parts)


def budget_for(b: Batch, need: int) -> int:
    """Bytes of temporaries b's call may use for work that needs `need` bytes in one piece:
    all of it where that is under MIN_TEMPORARY_BYTES and no max_bytes was given (no lookup
    of the memory limit for small work), else b's budget."""
    if BLOCK_BYTES is not None:
        return BLOCK_BYTES
    if b.max_bytes is None and need <= MIN_TEMPORARY_BYTES:
        return need
    return b.budget()


def block_rows(per_sample_bytes: int, b: Batch, samples: int | None = None) -> int:
    """Samples per block (of b's, or of `samples`) whose temporaries fit b's budget: at least
    1, at most all of them."""
    B, per = b.B if samples is None else samples, max(1, per_sample_bytes)
    return max(1, min(B, budget_for(b, per * B) // per))


def gemm(Xc: np.ndarray, Gc: np.ndarray, convention: str) -> np.ndarray:
    """sum_b g_b as one GEMM over all B*T rows: G_flat.T @ X_flat ("Wx") or X_flat.T @ G_flat."""
    Xf, Gf = rows(Xc), rows(Gc)
    return product(Gf, Xf) if convention == "Wx" else product(Xf, Gf)


#: Rows staged for a GEMM (copied, scaled or squared into a reused buffer in front of it)
#: come in blocks of about this many bytes per operand and thread, cache-sized so that the
#: GEMM reads them back from cache, not from memory (and each BLAS thread gets a block's
#: worth of work), and of at least MIN_STAGE_ROWS rows, so that adding each block's product
#: into the sum costs little beside the product.
STAGE_BYTES = 1 << 20
MIN_STAGE_ROWS = 256


def stage_rows(row_bytes: int, rows_per_unit: int = 1, threads: int | None = None) -> int:
    """Units (rows, or samples of `rows_per_unit` rows) per staged block, for `row_bytes`
    bytes of the widest operand's row, on `threads` threads (None: OpenMP's default)."""
    threads = v.n_threads_value(None) if threads is None else threads
    unit_bytes = max(1, row_bytes * rows_per_unit)
    return max(1, STAGE_BYTES * max(1, threads) // unit_bytes, -(-MIN_STAGE_ROWS // max(1, rows_per_unit)))


def staged_product(count: int, step: int, shape: tuple[int, int], dtype: np.dtype,
                   fill: Callable[[int, int], tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """sum over blocks [lo, hi) of `step` units of range(count) of a.T @ c, shape `shape` in
    dtype, where (a, c) = fill(lo, hi) are 2-D with one number of rows: the block's rows as
    they are, or prepared (copied, scaled, squared) into cache-sized buffers that fill
    reuses (step from stage_rows).  One block is one GEMM; the sums across blocks run in
    dtype, like a single GEMM's accumulation."""
    if count <= step:
        a, c = fill(0, count)
        return a.T @ c
    out, part = np.zeros(shape, dtype), np.empty(shape, dtype)
    for lo in range(0, count, step):
        a, c = fill(lo, min(count, lo + step))
        np.matmul(a.T, c, out=part)
        out += part
    return out


def stager(M: np.ndarray, step: int) -> Callable[[int, int], np.ndarray]:
    """rows lo:hi of 2-D M, as they are where M is aligned, else copied into one reused
    aligned buffer of `step` rows (numpy's matmul skips BLAS for misaligned arrays)."""
    if M.flags.aligned:
        return lambda lo, hi: M[lo:hi]
    buf = np.empty((min(step, len(M)), M.shape[1]), M.dtype)

    def staged(lo: int, hi: int) -> np.ndarray:
        np.copyto(buf[: hi - lo], M[lo:hi])
        return buf[: hi - lo]

    return staged


def product(A: np.ndarray, C: np.ndarray) -> np.ndarray:
    """A.T @ C for 2-D A (k, p) and C (k, q) of one dtype: one GEMM where both are aligned;
    else staged block by block (each misaligned operand's block copied into a small
    aligned buffer)."""
    if A.flags.aligned and C.flags.aligned:
        return A.T @ C
    step = stage_rows(max(A.shape[1], C.shape[1]) * A.itemsize)
    rows_A, rows_C = stager(A, step), stager(C, step)
    return staged_product(len(A), step, (A.shape[1], C.shape[1]), A.dtype,
                          lambda lo, hi: (rows_A(lo, hi), rows_C(lo, hi)))


# --- inputs ------------------------------------------------------------------------------
class Batch:
    """Validated X and G: C-contiguous, native byte order, one dtype (float32 or float64),
    X (B, [T,] m) and G (B, [T,] n); aligned unless loaded with aligned=False."""

    __slots__ = ("X", "G", "max_bytes", "committed", "_budget")

    def __init__(self, X: np.ndarray, G: np.ndarray, max_bytes: int | None = None, committed: int = 0) -> None:
        self.X, self.G = X, G
        self.max_bytes, self.committed = max_bytes, committed  # what bounds the temporaries
        self._budget: int | None = None

    dtype = property(lambda self: self.X.dtype)
    ndim = property(lambda self: self.X.ndim)
    B = property(lambda self: self.X.shape[0])
    T = property(lambda self: self.X.shape[1] if self.X.ndim == 3 else 1)
    n = property(lambda self: self.G.shape[-1])
    m = property(lambda self: self.X.shape[-1])

    def take(self, index: Any) -> Batch:
        """The samples `index` (a slice, or integer indices: then a copy)."""
        return Batch(self.X[index], self.G[index], self.max_bytes, self.committed)

    def float64(self) -> Batch:
        X, G = self.X.astype(np.float64, copy=False), self.G.astype(np.float64, copy=False)
        return Batch(X, G, self.max_bytes, self.committed)

    def budget(self) -> int:
        """Bytes of temporaries this call may use (see _memory.temporaries_budget)."""
        if self._budget is None:
            self._budget = temporaries_budget(self.max_bytes, self.committed)
        return self._budget

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

    def copies(self, dtype: np.dtype | None = None, aligned: bool = True) -> list[Part]:
        """The copies of X and G that coercion to `dtype` (default: theirs) makes."""
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        return [(a.shape, dtype) for a in (self.X, self.G) if v.needs_copy(a, dtype, aligned=aligned)]

    def coerce(self, dtype: np.dtype | None = None, max_bytes: int | None = None, committed: int = 0,
               aligned: bool = True) -> Batch:
        """The Batch in `dtype`; its temporaries are bounded by max_bytes less `committed`.
        aligned=False keeps misaligned inputs as they are (see v.contiguous)."""
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        X, G = (v.contiguous(a, dtype, aligned=aligned) for a in (self.X, self.G))
        return Batch(X, G, max_bytes, committed)

    def load(self, parts: list[Part], *, what: str, max_bytes: int | None = None, hint: str = "",
             aligned: bool = True) -> Batch:
        """The Batch, once the outputs `parts` and the copies coercion makes fit the
        memory limit (OutputTooLargeError before anything is copied); the rest of
        max_bytes, or a share of the memory limit, bounds its temporaries.  aligned=False:
        misaligned inputs are not copied, for callers whose every read of them is safe
        (the row kernels; GEMMs through `product`, which stages them block by block)."""
        copies = self.copies(aligned=aligned)
        check_output_bytes(parts, what=what, max_bytes=max_bytes, hint=hint, copies=copies)
        return self.coerce(None, max_bytes, nbytes(parts + copies), aligned)


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
    blocks within b's budget (or of `step` samples), all in one reused buffer: consume
    each block before asking for the next."""
    if step is None:
        step = block_rows(b.n * b.m * b.dtype.itemsize, b)
        if b.dtype == np.float32:  # sums over a block's samples run in float32: keep them short
            step = min(step, FLOAT32_BLOCK_ROWS)
    buf = np.empty((min(step, b.B), b.n, b.m), dtype=b.dtype)
    for lo in range(0, b.B, step):
        part = b.take(slice(lo, lo + step))
        yield lo, grads(part, buf[: part.B])


def float64_blocks(b: Batch, per_sample_bytes: int) -> Iterator[tuple[int, Batch]]:
    """(lo, block): samples lo, lo + 1, ... as float64 Batches, in blocks whose float64
    conversion and `per_sample_bytes` of the caller's temporaries per sample stay within
    b's budget (float64 inputs are views, never copied)."""
    convert = 0 if b.dtype == np.float64 else 8 * b.T * (b.n + b.m)
    step = block_rows(per_sample_bytes + convert, b)
    for lo in range(0, b.B, step):
        yield lo, b.take(slice(lo, lo + step)).float64()


# --- norms ---------------------------------------------------------------------------------
#: Routes are compared by their cost in multiply-adds of float64 BLAS: float32 BLAS counts
#: half, a multiply-add of the T x T Gram kernel KERNEL_COST, and each byte of temporaries
#: MOVE_COST, or SPILL_COST where they outgrow the caches (CACHE_BYTES) and writing them costs
#: page faults and memory traffic.  Fitted to route timings on the development machine
#: (python -m matderiv bench, routes section).
KERNEL_COST, MOVE_COST, SPILL_COST, CACHE_BYTES = 4.0, 0.5, 4.5, 32 * 2**20
#: The batched T x T products of the blocked Gram norms run this much slower per
#: multiply-add than the per-sample gradients' (smaller outputs, two calls).
GRAM_BLAS_COST = 1.4


def route_cost(dtype: np.dtype, *, blas: int = 0, kernel: int = 0, temporaries: int = 0) -> float:
    """The cost of a route in float64 BLAS multiply-adds (see KERNEL_COST)."""
    move = SPILL_COST if temporaries > CACHE_BYTES else MOVE_COST
    return blas * (0.5 if np.dtype(dtype) == np.float32 else 1.0) + kernel * KERNEL_COST + move * temporaries


def norm_costs(b: Batch) -> dict[str, float]:
    """The cost of each 3-D norm route: the T x T Gram sums (a kernel pass for short
    sequences, else two batched GEMMs a block) and materialized per-sample gradients."""
    B, T, n, m, size = b.B, b.T, b.n, b.m, b.dtype.itemsize
    if T <= GRAM_KERNEL_STEPS:
        gram = route_cost(b.dtype, kernel=B * T * (T + 1) // 2 * (n + m))
    else:
        gram = route_cost(b.dtype, blas=GRAM_BLAS_COST * B * T * T * (n + m),
                          temporaries=2 * block_rows(2 * T * T * size, b) * T * T * size)
    return {"gram": gram, "materialize": route_cost(b.dtype, blas=B * T * n * m, temporaries=_block_bytes(b))}


def _block_bytes(b: Batch) -> int:
    """Bytes of the per-sample gradients grad_blocks holds at once."""
    return block_rows(b.n * b.m * b.dtype.itemsize, b) * b.n * b.m * b.dtype.itemsize


def norm_route(b: Batch) -> str:
    """The cheaper 3-D norm route by norm_costs."""
    costs = norm_costs(b)
    return min(costs, key=costs.get)


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
    chosen = norm_route(b) if route is None else v.check_choice(route, "route", ROUTES)
    sq = _gram_squares(b, threads) if chosen == "gram" else _materialized_squares(b)
    if bias:
        db = b.bias_grads()
        sq += row_dots(db, db, threads)
    return sq


def _gram_squares(b: Batch, threads: int) -> np.ndarray:
    """sum_{t,s} (G[b,t].G[b,s]) (X[b,t].X[b,s]), clamped at 0 (round-off of a cancelling
    sum; NaN stays NaN): one kernel pass for short sequences, else the two T x T Gram
    matrices of a block of samples by BLAS in the inputs' dtype and their products summed
    in float64 (entries that overflow give non-finite norms, which norms recomputes)."""
    sq = np.empty(b.B)
    T = b.T
    if T <= GRAM_KERNEL_STEPS:
        _rows.gram_sq(b.G, b.X, sq, threads)  # float64 sums, symmetry in t, s used
        return np.maximum(sq, 0.0, out=sq)
    step = block_rows(2 * T * T * b.dtype.itemsize, b)
    gg, xx = np.empty((step, T, T), b.dtype), np.empty((step, T, T), b.dtype)  # reused by every block
    with np.errstate(over="ignore", invalid="ignore"):
        for lo in range(0, b.B, step):
            Gb, Xb = b.G[lo : lo + step], b.X[lo : lo + step]
            k = len(Gb)
            np.matmul(Gb, Gb.transpose(0, 2, 1), out=gg[:k])
            np.matmul(Xb, Xb.transpose(0, 2, 1), out=xx[:k])
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
