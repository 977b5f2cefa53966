"""Convolutions as sequence layers: their patches, and a lazy patches object for the batched
functions.

A convolution y = conv(x, W) of x (B, C, *S) with a kernel W (O, C, *kernel) applies W to
every patch: with U = conv_patches(x) of shape (B, T, C K) (T output positions, row-major;
features in (c, k1, k2) order, K = k1 k2),

    y[b, :, t] = W.reshape(O, C K) @ U[b, t]

so it is a sequence layer with X = U and G = dL/dy laid out (B, O, T), and sample b's weight
gradient is g_b = sum_t outer(G[b, :, t], U[b, t]), reshaped to (O, C, *kernel).
`Conv(x, kernel_size, ...)` stands for U without forming it: the batched functions take it
as X and unfold it a block of samples at a time (see matderiv.layers.conv_grads).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import _batch, _moments
from .. import _validation as v
from .._kernels import _conv
from .._memory import check_output_bytes
from .._docs import conv as D, doc

__all__ = ["Conv", "ConvBlocks", "conv_patches"]


@doc(D.CONV)
class Conv:
    __slots__ = ("x", "geometry", "dtype")

    def __init__(self, x: Any, kernel_size: Any, *, stride: Any = 1, padding: Any = 0, dilation: Any = 1) -> None:
        self.x = v.conv_input(x)
        self.geometry = v.conv_geometry(tuple(int(d) for d in self.x.shape[2:]), kernel_size, stride, padding, dilation)
        self.dtype = v.conv_dtype(self.x)  # of the patches: float32 or float64

    @property
    @doc(D.BATCH)
    def batch(self) -> int:
        return int(self.x.shape[0])

    @property
    @doc(D.CHANNELS)
    def channels(self) -> int:
        return int(self.x.shape[1])

    @property
    @doc(D.POSITIONS)
    def positions(self) -> int:
        return self.geometry.positions

    @property
    @doc(D.FEATURES)
    def features(self) -> int:
        return self.channels * self.geometry.window

    @property
    @doc(D.SHAPE)
    def shape(self) -> tuple[int, int, int]:
        return self.batch, self.positions, self.features

    @doc(D.WEIGHT_SHAPE)
    def weight_shape(self, out_channels: int) -> tuple[int, ...]:
        return (out_channels, self.channels) + self.geometry.kernel

    @doc(D.UNFOLD)
    def unfold(self, x: np.ndarray, lo: int, out: np.ndarray, threads: int) -> np.ndarray:
        g = self.geometry
        x4 = x if x.ndim == 4 else x[:, :, None, :]  # 1-D: one row of height 1
        oh, ow = _two_axes(g.out, 1)
        _conv.unfold(x4, out, lo, _two_axes(g.kernel, 1), _two_axes(g.stride, 1), _two_axes(g.padding, 0),
                     _two_axes(g.dilation, 1), oh, ow, threads)
        return out

    def __repr__(self) -> str:
        g = self.geometry
        return (f"Conv(x of shape {tuple(self.x.shape)}, kernel_size={g.kernel}, stride={g.stride}, "
                f"padding={g.padding}, dilation={g.dilation}) -> patches {self.shape} {self.dtype.name}")


def _two_axes(values: tuple[int, ...], fill: int) -> tuple[int, int]:
    """A 1-D parameter as that of a 2-D convolution over one row (`fill` for the row axis)."""
    return values if len(values) == 2 else (fill,) + values


@doc(D.CONV_PATCHES)
def conv_patches(
    x: Any, kernel_size: Any, *, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
    max_bytes: int | None = None, n_threads: int | None = None,
) -> np.ndarray:
    X = Conv(x, kernel_size, stride=stride, padding=padding, dilation=dilation)
    threads = v.n_threads_value(n_threads)
    dtype, xs = X.dtype, X.x
    copies = [(tuple(xs.shape), dtype)] if v.is_lazy(xs) or v.needs_copy(xs, dtype) else []
    check_output_bytes([(X.shape, dtype)], what="conv_patches", max_bytes=max_bytes, copies=copies,
                       hint="the batched functions take md.Conv(x, ...) and unfold a block of samples at a time.")
    return X.unfold(v.contiguous(np.asarray(xs), dtype), 0, np.empty(X.shape, dtype), threads)


Part = tuple[tuple[int, ...], np.dtype]


class ConvBlocks:
    """A Conv X with dL/dy G (B, O, *out), checked on construction (nothing copied); `load`
    counts the bytes and sizes the blocks, then blocks of samples come unfolded into reused
    buffers: U (k, T, C K) and Gt (k, T, O), G's block as steps (C-contiguous both)."""

    def __init__(self, X: Conv, G: Any, threads: int) -> None:
        self.X, self.threads = X, threads
        self.G = v.conv_output_grad(G, X.batch, X.geometry.out)
        self.B, self.T, self.m, self.O = X.batch, X.positions, X.features, int(self.G.shape[1])
        self.dtype = v.conv_dtype(X.x, self.G)
        self.step, self.inner_max, self.xc = 1, None, None

    def copies(self) -> list[Part]:
        """The copy of x that the result dtype needs (none where x is already one)."""
        x = self.X.x
        return [(tuple(x.shape), self.dtype)] if v.needs_copy(x, self.dtype) else []

    def load(self, parts: list[Part], *, what: str, max_bytes: int | None, hint: str = "",
             partial: list[Part] = (), per_extra: int = 0, sides: int = 1) -> None:
        """Check the outputs `parts`, the per-block results `partial`, a copy of x in the
        result dtype where one is needed, and one sample's buffers (for each of `sides`
        batches, and `per_extra` elements of the inner calls' results) against max_bytes,
        before anything is allocated; then size the blocks within the rest (see
        _batch.block_rows), leaving the inner calls `inner_max`: max_bytes less everything
        counted here but `partial`."""
        partial, dtype, copies = list(partial), self.dtype, self.copies()
        one = [((min(self.B, 1), self.T, self.m + self.O), dtype)] * sides + [((min(self.B, 1), per_extra), dtype)]
        check_output_bytes(parts + partial + one, what=what, max_bytes=max_bytes, hint=hint, copies=copies)
        committed = _batch.nbytes(parts + partial + copies)
        per = (sides * self.T * (self.m + self.O) + per_extra) * dtype.itemsize
        self.step = _batch.block_rows(per, _batch.Batch(self.X.x, self.G, max_bytes, committed))
        if max_bytes is not None:
            self.inner_max = max(0, max_bytes - committed - self.step * per) + _batch.nbytes(partial)
        self.xc = v.contiguous(self.X.x, dtype)

    def follow(self, other: ConvBlocks) -> None:
        """Blocks of other's size, for other's inner calls (a second batch counted by other's load)."""
        self.step, self.inner_max, self.dtype = other.step, other.inner_max, other.dtype
        self.xc = v.contiguous(self.X.x, self.dtype)

    @property
    def single(self) -> bool:
        """Whether one block holds the whole batch."""
        return self.step >= self.B

    def offsets(self, start: int = 0) -> range:
        """The first sample of every block from `start` (one empty block for B = 0)."""
        return range(start, max(self.B, 1), self.step)

    def buffers(self) -> tuple[np.ndarray, np.ndarray]:
        k = min(self.step, self.B)
        return np.empty((k, self.T, self.m), self.dtype), np.empty((k, self.T, self.O), self.dtype)

    def block(self, lo: int, buffers: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(U, Gt) of samples lo, lo + 1, ... (up to step), written into `buffers`."""
        k = min(self.step, self.B - lo)
        U, Gt = buffers[0][:k], buffers[1][:k]
        self.X.unfold(self.xc, lo, U, self.threads)
        steps = self.G[lo : lo + k].reshape(k, self.O, self.T).transpose(0, 2, 1)
        np.copyto(Gt, steps, casting="same_kind")
        return U, Gt

    def moments(self, bias: bool) -> _moments.Moments:
        """The Moments of the per-sample gradients ("Wx", (O, C K)) block by block, merged by
        Chan's update (each block's mean relative to its own shift: nothing cancels)."""
        merged = None
        for _, U, Gt in self:
            b = _batch.Inputs(U, Gt).load([], what="grad_variance", max_bytes=self.inner_max)
            found = _moments.moments(b, bias)
            merged = found if merged is None else merged.merge(found)
        return merged

    def __iter__(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(lo, U, Gt) for every block, all in one pair of reused buffers."""
        buffers = self.buffers()
        for lo in self.offsets():
            yield (lo, *self.block(lo, buffers))
