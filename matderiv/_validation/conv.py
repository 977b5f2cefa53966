"""The checks of a convolution's arguments: the input x (B, C, *S) or one sample (C, *S),
and kernel_size, stride, padding, dilation (an int for every axis, or one per axis), from
which `conv_geometry` derives the output's spatial shape as PyTorch does:

    out = floor((S + 2 p - d (k - 1) - 1) / s) + 1      per axis
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .core import as_array, shape_str


class ConvGeometry(NamedTuple):
    """A convolution's checked parameters, one entry per spatial axis (1 or 2 axes)."""

    spatial: tuple[int, ...]  # the input's spatial shape S
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    out: tuple[int, ...]  # the output's spatial shape

    @property
    def positions(self) -> int:
        """T: the number of output positions (row-major over `out`)."""
        return int(np.prod(self.out, dtype=np.int64))

    @property
    def window(self) -> int:
        """K: the number of kernel offsets (k1 k2)."""
        return int(np.prod(self.kernel, dtype=np.int64))


def per_axis(value: Any, name: str, axes: int, least: int) -> tuple[int, ...]:
    """An int for every axis, or a tuple of one int per axis; each at least `least`."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * axes
    if len(values) != axes:
        raise ValueError(f"{name}: expected an int or {axes} ints (one per spatial axis), got {value!r}")
    for item in values:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, np.integer)):
            raise TypeError(f"{name}: expected ints, got {type(item).__name__} {item!r}")
        if item < least:
            raise ValueError(f"{name}: expected ints of at least {least}, got {value!r}")
    return tuple(int(item) for item in values)


def conv_geometry(
    spatial: tuple[int, ...], kernel_size: Any, stride: Any, padding: Any, dilation: Any
) -> ConvGeometry:
    """The checked parameters of a convolution over an input of spatial shape `spatial`:
    kernel_size, stride and dilation at least 1, padding at least 0, and a dilated kernel
    d (k - 1) + 1 no larger than the padded input S + 2 p on every axis."""
    axes = len(spatial)
    kernel = per_axis(kernel_size, "kernel_size", axes, 1)
    strides = per_axis(stride, "stride", axes, 1)
    pads = per_axis(padding, "padding", axes, 0)
    dilations = per_axis(dilation, "dilation", axes, 1)
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilations))
    padded = tuple(S + 2 * p for S, p in zip(spatial, pads))
    if any(w > P for w, P in zip(span, padded)):
        raise ValueError(
            f"kernel_size: expected a dilated kernel (dilation (k - 1) + 1 = {shape_str(span)}) no larger "
            f"than the padded input (S + 2 padding = {shape_str(padded)}), got kernel_size {shape_str(kernel)}"
        )
    out = tuple((P - w) // s + 1 for P, w, s in zip(padded, span, strides))
    return ConvGeometry(tuple(spatial), kernel, strides, pads, dilations, out)


def conv_input(x: Any, name: str = "x", *, batched: bool = True) -> np.ndarray:
    """x as an array of (B, C, L) or (B, C, H, W) (batched) or (C, L) or (C, H, W) (one
    sample), real (the dtype policy of the batched functions); nothing is copied."""
    return as_array(x, name, (3, 4) if batched else (2, 3), allow_complex=False)
