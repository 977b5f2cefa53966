"""The routes section of `python -m matderiv bench`: on a grid of sequence shapes, each
batched function against the best of the plain-numpy routes to the same result, with one
thread (OpenMP and BLAS, through threadpoolctl) and with all cores.

The plain routes: materialize the (B, n, m) per-sample gradients once, materialize them in
blocks (of PLAIN_BLOCK_BYTES), and the T x T Gram identity (norms, clipping, dots).  A
route whose arrays would not fit is left out; one that is far slower than matderiv on its
first call is timed once.  The budget: matderiv <= 1.05 x the best route + 0.1 ms.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import gradients, statistics
from .table import fmt_ratio, fmt_time
from .timing import data

FUNCTIONS = ("per_sample_grad_norms", "clip_and_sum", "sum_grad_squared", "grad_variance", "per_sample_grad_dots")
GRID = {"B": (8, 64, 512), "T": (8, 128, 1024), "nm": (64, 256, 512)}
QUICK_GRID = {"B": (8, 64), "T": (8, 128), "nm": (64,)}
#: Shapes whose X and G together exceed this are left out of the grid.
INPUT_LIMIT = 2**30
#: The plain routes' arrays (a materialized stack, a Gram matrix) are kept under this.
ARRAY_LIMIT = 2**31
#: Blocks of the plain "materialize in blocks" route.
PLAIN_BLOCK_BYTES = 128 * 2**20
#: The budget: ours <= SLACK * best + GRACE seconds.
SLACK, GRACE = 1.05, 1e-4

Routes = dict[str, Callable[[], object]]
#: What a ratio means in this section (printed at its header).
RATIO = (f"ratio = matderiv time / the best plain-numpy route's (below 1: faster); "
         f"over: > {SLACK} x + {GRACE * 1e3:.1f} ms")


@dataclass
class RouteRow:
    """One function at one shape, dtype and thread count: matderiv and the best plain route."""

    function: str
    shape: tuple[int, int, int]
    dtype: str
    threads: str
    ours: float
    best: str
    best_time: float

    @property
    def ratio(self) -> float:
        return self.ours / self.best_time

    @property
    def within_budget(self) -> bool:
        return self.ours <= SLACK * self.best_time + GRACE


def _stack(X: np.ndarray, G: np.ndarray) -> np.ndarray:
    return np.matmul(G.transpose(0, 2, 1), X)


def _blocks(X: np.ndarray, G: np.ndarray) -> Iterator[np.ndarray]:
    step = max(1, PLAIN_BLOCK_BYTES // (G.shape[-1] * X.shape[-1] * X.itemsize))
    for lo in range(0, len(X), step):
        yield _stack(X[lo : lo + step], G[lo : lo + step])


def _gram_norms(X: np.ndarray, G: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("bts,bts->b", G @ G.transpose(0, 2, 1), X @ X.transpose(0, 2, 1)))


def _stack_norms(P: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("bij,bij->b", P, P))


def _clipped(P: np.ndarray, norms: np.ndarray, max_norm: float) -> np.ndarray:
    return np.einsum("b,bij->ij", np.minimum(1.0, max_norm / norms), P)


def _plain_routes(function: str, X: np.ndarray, G: np.ndarray, max_norm: float) -> Routes:
    """The plain-numpy routes to `function`'s result that fit ARRAY_LIMIT."""
    B, T, n, m = X.shape[0], X.shape[1], G.shape[-1], X.shape[-1]
    stack_fits = B * n * m * X.itemsize <= ARRAY_LIMIT
    gram_fits = 2 * B * T * T * X.itemsize <= ARRAY_LIMIT
    Xf, Gf = X.reshape(B * T, m), G.reshape(B * T, n)
    routes: Routes = {}
    if function == "per_sample_grad_norms":
        routes["materialize once"] = lambda: _stack_norms(_stack(X, G))
        routes["materialize in blocks"] = lambda: np.concatenate([_stack_norms(P) for P in _blocks(X, G)])
        routes["T x T Gram"] = lambda: _gram_norms(X, G)
    elif function == "clip_and_sum":
        routes["materialize once"] = lambda: _clipped(P := _stack(X, G), _stack_norms(P), max_norm)
        routes["materialize in blocks"] = lambda: sum(_clipped(P, _stack_norms(P), max_norm) for P in _blocks(X, G))
        routes["T x T Gram"] = lambda: (
            (G * np.minimum(1.0, max_norm / _gram_norms(X, G))[:, None, None]).reshape(B * T, n).T @ Xf
        )
    elif function == "sum_grad_squared":
        routes["materialize once"] = lambda: np.square(_stack(X, G)).sum(axis=0)
        routes["materialize in blocks"] = lambda: sum(np.square(P).sum(axis=0) for P in _blocks(X, G))
    elif function == "grad_variance":
        routes["materialize once"] = lambda: np.var(_stack(X, G), axis=0)
        routes["materialize in blocks"] = lambda: _blocked_variance(X, G)
    else:  # per_sample_grad_dots
        routes["materialize once"] = lambda: (P := _stack(X, G).reshape(B, -1)) @ P.T
        if (B * T) ** 2 * X.itemsize * 2 <= ARRAY_LIMIT:
            routes["(B T)^2 Gram"] = lambda: ((Gf @ Gf.T) * (Xf @ Xf.T)).reshape(B, T, B, T).sum(axis=(1, 3))
    if not stack_fits:
        routes.pop("materialize once", None)
    if not gram_fits:
        routes.pop("T x T Gram", None)
    return routes


def _blocked_variance(X: np.ndarray, G: np.ndarray) -> np.ndarray:
    """np.var of each block merged with Chan et al.'s update (the plain route that stays
    accurate where the mean dominates, as matderiv's does)."""
    count, mean, m2 = 0, 0.0, 0.0
    for P in _blocks(X, G):
        k, block_mean = len(P), P.mean(axis=0)
        block_m2 = np.square(P - block_mean).sum(axis=0)
        delta, total = block_mean - mean, count + k
        mean, m2 = mean + delta * (k / total), m2 + block_m2 + np.square(delta) * (count * k / total)
        count = total
    return m2 / count


def _ours(function: str, X: np.ndarray, G: np.ndarray, max_norm: float) -> Callable[[], object]:
    if function == "clip_and_sum":
        return lambda: gradients.clip_and_sum(X, G, max_norm)
    module = gradients if hasattr(gradients, function) else statistics
    fn = getattr(module, function)
    return lambda: fn(X, G)


def measure(fns: dict[str, Callable[[], object]], seconds: float, cap: float = 20.0) -> dict[str, float]:
    """Seconds per call of each function, timed side by side: rounds that call each one in
    turn (a loop of calls where one call takes under a millisecond), the best of at least
    three rounds and of as many more as `seconds` allow.  The first entry is the one the
    others are compared with: a function over `cap` times slower on its first call is timed
    by that call alone."""
    first = {name: _one_call(fn, 1) for name, fn in fns.items()}  # also the warm-up
    lead = first[next(iter(fns))]
    slow = {name for name, t in first.items() if t > cap * lead and t > 0.05}
    best = {name: first[name] if name in slow else math.inf for name in fns}
    loops = {name: max(1, int(1e-3 / max(t, 1e-7))) for name, t in first.items()}
    start, rounds = time.perf_counter(), 0
    order = [name for name in fns if name not in slow]
    while rounds < 3 or (time.perf_counter() - start < seconds and rounds < 100):
        for name in order[rounds % len(order):] + order[: rounds % len(order)]:  # each first in turn
            best[name] = min(best[name], _one_call(fns[name], loops[name]))
        rounds += 1
    return best


def _one_call(fn: Callable[[], object], loops: int) -> float:
    """Seconds per call of `loops` calls in a row."""
    t0 = time.perf_counter()
    for _ in range(loops):
        fn()
    return (time.perf_counter() - t0) / loops


def route_functions(function: str, X: np.ndarray, G: np.ndarray, max_norm: float | None = None) -> Routes:
    """matderiv's call first, then the plain routes that fit; max_norm of clip_and_sum
    defaults to the median norm."""
    if max_norm is None:
        max_norm = float(np.median(gradients.per_sample_grad_norms(X, G)))
    return {"matderiv": _ours(function, X, G, max_norm), **_plain_routes(function, X, G, max_norm)}


def _shapes(quick: bool, dtype: type) -> Iterator[tuple[int, int, int]]:
    grid = QUICK_GRID if quick else GRID
    for B, T, nm in itertools.product(grid["B"], grid["T"], grid["nm"]):
        if B * T * 2 * nm * np.dtype(dtype).itemsize <= INPUT_LIMIT:
            yield B, T, nm


@contextlib.contextmanager
def _threads(label: str) -> Iterator[None]:
    """One thread for OpenMP and BLAS ("1"), or the defaults ("all")."""
    if label == "all":
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def _thread_settings() -> tuple[str, ...]:
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return ("all",)
    return ("1", "all")


def route_rows(quick: bool, functions: tuple[str, ...] = FUNCTIONS,
               dtypes: tuple[type, ...] = (np.float32, np.float64)) -> Iterator[RouteRow]:
    """Every function at every shape of the grid (QUICK_GRID, float64, one thread with
    quick=True), one row at a time as it is measured."""
    rng = np.random.default_rng(0)
    seconds = 0.1 if quick else 1.0
    dtypes = (np.float64,) if quick else dtypes
    for dtype, threads in itertools.product(dtypes, _thread_settings()[:1] if quick else _thread_settings()):
        for B, T, nm in _shapes(quick, dtype):
            X, G = data(rng, (B, T), nm, nm, dtype)
            max_norm = float(np.median(gradients.per_sample_grad_norms(X, G)))
            with _threads(threads):
                for function in functions:
                    fns = route_functions(function, X, G, max_norm)
                    times = measure(fns, seconds)
                    ours = times.pop("matderiv")
                    best = min(times, key=times.get)
                    yield RouteRow(function, (B, T, nm), np.dtype(dtype).name, threads, ours, best, times[best])


HEADER = (f"{'function':21s} {'B':>4s} {'T':>5s} {'n=m':>4s} {'dtype':5s} {'thr':>3s} {'matderiv':>8s}  "
          f"{'best plain route':21s} {'its time':>8s} {'ratio':>6s}")


def row_lines(row: RouteRow) -> list[str]:
    """The row's line: shape, dtype (f32, f64), threads, times, ratio, 'over' past the budget."""
    B, T, nm = row.shape
    flag = "" if row.within_budget else " over"
    dtype = f"f{np.dtype(row.dtype).itemsize * 8}"
    return [f"{row.function:21s} {B:4d} {T:5d} {nm:4d} {dtype:5s} {row.threads:>3s} {fmt_time(row.ours):>8s}  "
            f"{row.best:21s} {fmt_time(row.best_time):>8s} {fmt_ratio(row.ratio):>6s}{flag}"]


def record(row: RouteRow) -> dict[str, Any]:
    """The row as JSON, with the keys of the other sections' rows (the best route its one
    reference) and its shape, dtype, threads and whether it is within the budget."""
    B, T, nm = row.shape
    return {
        "label": f"{row.function} B={B} T={T} n=m={nm} {row.dtype} {row.threads} thread(s)",
        "matderiv_s": row.ours, "ratio": row.ratio, "floor_s": None, "floor_ratio": None,
        "references": [{"name": row.best, "time_s": row.best_time, "ratio": row.ratio}],
        "function": row.function, "shape": [B, T, nm], "dtype": row.dtype, "threads": row.threads,
        "within_budget": row.within_budget,
    }


def summary(rows: list[RouteRow]) -> str:
    """The worst ratio, and how many rows are over the budget."""
    worst = max(rows, key=lambda r: r.ratio)
    over = sum(not r.within_budget for r in rows)
    return (f"routes: {len(rows)} rows, worst ratio {worst.ratio:.2f} ({worst.function} {worst.shape} "
            f"{worst.dtype}, {worst.threads} thread(s)); {over} over the budget")
