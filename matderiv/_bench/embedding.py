"""Benchmark rows for Embedding inputs (`python -m matderiv bench`): the per-sample norms
and clip_and_sum of a lookup at B = 256, T = 128, V = 50 000, d = 64 against the plain
numpy ways: np.add.at of G's rows into the table, and per-sample norms from a numpy sort
of each sample's indices with np.add.reduceat of the sorted rows of G."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .. import gradients
from ..layers import Embedding
from .timing import Row, best_time

#: What a ratio means in this section (printed at its header).
RATIO = ("ratio = matderiv time / numpy's (a sort + np.add.reduceat, or np.add.at): "
         "below 1 = matderiv faster")


def _numpy_norms(idx: np.ndarray, G: np.ndarray) -> np.ndarray:
    """||g_b|| by sorting each sample's indices and summing G's rows per group (reduceat)."""
    B, T, d = G.shape
    order = np.argsort(idx, axis=1, kind="stable")
    keys = np.take_along_axis(idx, order, axis=1)
    rows = np.take_along_axis(G, order[:, :, None], axis=1).reshape(B * T, d)
    first = np.ones((B, T), dtype=bool)
    first[:, 1:] = keys[:, 1:] != keys[:, :-1]
    starts = np.flatnonzero(first.ravel())
    sums = np.add.reduceat(rows, starts, axis=0)
    owner = starts // T
    return np.sqrt(np.bincount(owner, weights=np.einsum("gk,gk->g", sums, sums), minlength=B))


def _numpy_clip(idx: np.ndarray, G: np.ndarray, V: int, max_norm: float) -> np.ndarray:
    """The clipped sum by numpy: the reduceat norms, then np.add.at of the scaled rows."""
    c = np.minimum(1.0, max_norm / _numpy_norms(idx, G))
    out = np.zeros((V, G.shape[-1]), dtype=G.dtype)
    np.add.at(out, idx.ravel(), (G * c[:, None, None].astype(G.dtype)).reshape(-1, G.shape[-1]))
    return out


def embedding_rows(quick: bool) -> Iterator[Row]:
    """Norms, batch_grad and clip_and_sum of one lookup (float64 and float32), one row at a
    time as it is measured."""
    B, T, V, d = (32, 16, 5000, 16) if quick else (256, 128, 50_000, 64)
    repeat = 2 if quick else 5
    rng = np.random.default_rng(0)
    idx = rng.zipf(1.3, (B, T)) % V  # a few frequent rows: many coincidences within samples
    for dtype in (np.float64, np.float32):
        G = rng.standard_normal((B, T, d)).astype(dtype)
        E = Embedding(idx, V)
        shape = f"B={B} T={T} V={V} d={d} {np.dtype(dtype).name}"
        ours = best_time(lambda: gradients.per_sample_grad_norms(E, G), repeat)
        refs = {"numpy sort + np.add.reduceat": best_time(lambda: _numpy_norms(idx, G), repeat)}
        yield Row(f"embedding norms {shape}", ours, None, refs)

        def add_at() -> np.ndarray:
            out = np.zeros((V, d), dtype=dtype)
            np.add.at(out, idx.ravel(), G.reshape(-1, d))
            return out

        ours = best_time(lambda: gradients.batch_grad(E, G), repeat)
        yield Row(f"embedding batch_grad {shape}", ours, None, {"np.add.at into the table": best_time(add_at, repeat)})
        max_norm = float(np.median(_numpy_norms(idx, G)))
        ours = best_time(lambda: gradients.clip_and_sum(E, G, max_norm), repeat)
        refs = {
            "np.add.at (unclipped)": best_time(add_at, repeat),
            "numpy reduceat norms + np.add.at": best_time(lambda: _numpy_clip(idx, G, V, max_norm), repeat),
        }
        yield Row(f"embedding clip_and_sum {shape}", ours, None, refs)
