"""The checks of a convolution's arguments: the input x (B, C, *S) or one sample (C, *S)
(or only its shape, input_shape), the weight W (O, C, *kernel), and kernel_size, stride,
padding, dilation (an int for every axis, or one per axis), from
which `conv_geometry` derives the output's spatial shape as PyTorch does:

    out = floor((S + 2 p - d (k - 1) - 1) / s) + 1      per axis
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .core import as_array, check_size, shape_str


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
    spatial: tuple[int, ...], kernel_size: Any, stride: Any, padding: Any, dilation: Any,
    *, kernel_name: str = "kernel_size",
) -> ConvGeometry:
    """The checked parameters of a convolution over an input of spatial shape `spatial`:
    kernel_size, stride and dilation at least 1, padding at least 0, and a dilated kernel
    d (k - 1) + 1 no larger than the padded input S + 2 p on every axis. kernel_name: what
    the errors about the kernel call it (W's kernel, where W gives it)."""
    axes = len(spatial)
    kernel = per_axis(kernel_size, kernel_name, axes, 1)
    strides = per_axis(stride, "stride", axes, 1)
    pads = per_axis(padding, "padding", axes, 0)
    dilations = per_axis(dilation, "dilation", axes, 1)
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilations))
    padded = tuple(S + 2 * p for S, p in zip(spatial, pads))
    if any(w > P for w, P in zip(span, padded)):
        raise ValueError(
            f"{kernel_name}: expected a dilated kernel (dilation (k - 1) + 1 = {shape_str(span)}) no larger "
            f"than the padded input (S + 2 padding = {shape_str(padded)}), got {kernel_name} {shape_str(kernel)}"
        )
    out = tuple((P - w) // s + 1 for P, w, s in zip(padded, span, strides))
    return ConvGeometry(tuple(spatial), kernel, strides, pads, dilations, out)


def conv_input(x: Any, name: str = "x", *, batched: bool = True) -> np.ndarray:
    """x as an array of (B, C, L) or (B, C, H, W) (batched) or (C, L) or (C, H, W) (one
    sample), real (the dtype policy of the batched functions); nothing is copied."""
    return as_array(x, name, (3, 4) if batched else (2, 3), allow_complex=False)


def conv_weight(W: Any, name: str = "W") -> np.ndarray:
    """W (O, C, L_k) or (O, C, H_k, W_k) of a convolution, real, with every kernel axis at
    least 1; nothing is copied."""
    arr = as_array(W, name, (3, 4), allow_complex=False)
    if 0 in arr.shape[2:]:
        raise ValueError(
            f"{name}: expected a kernel of at least 1 on every spatial axis, got shape {shape_str(arr.shape)}"
        )
    return arr


def conv_input_shape(input_shape: Any, W_shape: tuple[int, ...]) -> tuple[int, ...]:
    """input_shape (C, *S) of a convolution by W of shape W_shape: one int per axis, as many
    spatial axes as W's kernel, and C = W's input channels (W_shape[1])."""
    axes = len(W_shape) - 2
    want = "(C, L)" if axes == 1 else "(C, H, W)"
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != axes + 1:
        raise ValueError(
            f"input_shape: expected a tuple {want} of {axes + 1} ints (W of shape {shape_str(W_shape)} has "
            f"{axes} spatial axes), got {input_shape!r}"
        )
    sizes = tuple(check_size(d, f"input_shape[{k}]") for k, d in enumerate(input_shape))
    if sizes[0] != W_shape[1]:
        raise ValueError(
            f"input_shape: expected C = {W_shape[1]} input channels (axis 1 of W, of shape "
            f"{shape_str(W_shape)}), got {sizes[0]}"
        )
    return sizes
