"""Timing helpers for `python -m matderiv bench`: every row times matderiv, the plain
numpy/scipy ways of computing the same thing, and the write-once floor, in one run."""
from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time in seconds of `repeat` calls (garbage collector paused)."""
    fn()  # warm-up: first touch of code paths and caches
    best = float("inf")
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
    finally:
        if enabled:
            gc.enable()
    return best


def best_times_alternating(first: Callable[[], object], second: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best wall times in seconds of `first` and `second`, timed in turn `repeat` times
    each (garbage collector paused), so that a drift of the machine's speed does not land
    on one of them only."""
    first(), second()
    best = [float("inf"), float("inf")]
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            for k, fn in enumerate((first, second)):
                t0 = time.perf_counter()
                fn()
                best[k] = min(best[k], time.perf_counter() - t0)
    finally:
        if enabled:
            gc.enable()
    return best[0], best[1]


def floor_time(nbytes: int | Sequence[int], repeat: int) -> float:
    """The floor for a memory-bound kernel: allocate each output
    array fresh (one per entry of nbytes, all alive at once, as an output's arrays are) as
    float64 of the same size, and write every byte once on one thread:
    a = np.empty(N); a.fill(0)."""
    counts = [-(-size // 8) for size in ([nbytes] if isinstance(nbytes, int) else nbytes)]

    def write_once() -> list[np.ndarray]:
        arrays = [np.empty(count) for count in counts]
        for a in arrays:
            a.fill(0)
        return arrays

    return best_time(write_once, repeat)


@dataclass
class Row:
    """One benchmarked case: matderiv's time, the floor (if memory-bound) and references."""

    case: str
    ours: float
    floor: float | None = None
    refs: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """matderiv's time / the fastest reference's (None without a reference)."""
        return self.ours / min(self.refs.values()) if self.refs else None


def data(rng: np.random.Generator, lead: tuple[int, ...], n: int, m: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal X (lead + (m,)) and G (lead + (n,)) of dtype."""
    X = rng.standard_normal(lead + (m,)).astype(dtype)
    G = rng.standard_normal(lead + (n,)).astype(dtype)
    return X, G
