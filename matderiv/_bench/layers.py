"""Benchmark rows for convolutions (`python -m matderiv bench`): conv_patches against the
write-once floor and numpy's sliding_window_view + copy, and a Conv in the batched
functions (unfolded a block at a time) against conv_patches + the same function on the
materialized patches."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .. import gradients, statistics
from ..layers import Conv, conv_patches
from .timing import Row, best_time, floor_time

#: What a ratio means in this section (printed at its header).
RATIO = ("ratio = matderiv time / numpy's patches, or conv_patches + the function "
         "(below 1: matderiv faster)")


def numpy_patches(x: np.ndarray, k: int, padding: int) -> np.ndarray:
    """The patches (B, T, C k k) by np.pad, sliding_window_view and one copy (stride 1)."""
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))  # (B, C, OH, OW, k, k)
    B, C, OH, OW = win.shape[:4]
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(B, OH * OW, C * k * k)


def _patches(rng: np.random.Generator, B: int, C: int, S: int, dtype: type, repeat: int) -> Row:
    x = rng.standard_normal((B, C, S, S)).astype(dtype)
    ours = best_time(lambda: conv_patches(x, 3, padding=1), repeat)
    floor = floor_time(B * S * S * C * 9 * np.dtype(dtype).itemsize, repeat)
    ref = best_time(lambda: numpy_patches(x, 3, 1), repeat)
    return Row(f"conv_patches B={B} C={C} {S}x{S} k=3 padding=1 {np.dtype(dtype).name}", ours, floor,
               {"sliding_window_view + copy": ref})


def _conv_function(rng: np.random.Generator, name: str, B: int, C: int, S: int, O: int, repeat: int) -> Row:
    x = rng.standard_normal((B, C, S, S))
    G = rng.standard_normal((B, O, S, S))
    Gt = G.reshape(B, O, S * S).transpose(0, 2, 1)
    args = (1.0,) if name == "clip_and_sum" else ()
    fn = getattr(gradients, name, None) or getattr(statistics, name)
    X = Conv(x, 3, padding=1)
    ours = best_time(lambda: fn(X, G, *args), repeat)
    ref = best_time(lambda: fn(conv_patches(x, 3, padding=1), Gt, *args), repeat)
    return Row(f"{name} Conv B={B} C={C} {S}x{S} k=3 O={O} float64", ours, None,
               {"conv_patches + the function": ref})


def layer_rows(quick: bool) -> Iterator[Row]:
    """Every convolution row, one at a time as it is measured; quick=True: a smaller batch
    and fewer repeats."""
    rng = np.random.default_rng(0)
    r, B, S = (2, 8, 16) if quick else (5, 64, 32)
    for dtype in (np.float32, np.float64):
        yield _patches(rng, B, 16, 32, dtype, r)
    for name in ("per_sample_grad_norms", "clip_and_sum", "sum_grad_squared"):
        yield _conv_function(rng, name, B, 16, S, 32, r)
