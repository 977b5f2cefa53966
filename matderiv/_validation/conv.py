"""The checks of a convolution's arguments: the input x (B, C, *S) or one sample (C, *S)
(or only its shape, input_shape), the weight W (O, C, *kernel), and kernel_size, stride,
padding, dilation (an int for every axis, or one per axis), from
which `conv_geometry` derives the output's spatial shape as PyTorch does:

    out = floor((S + 2 p - d (k - 1) - 1) / s) + 1      per axis
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .core import as_array, check_size, shape_str, target_dtype


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


def is_lazy(obj: Any) -> bool:
    """Whether obj is a dask collection (recognised by type alone: nothing is imported)."""
    return hasattr(type(obj), "__dask_graph__")


def _seen(obj: Any, name: str) -> Any:
    """What the checks read: a dask array's shape and dtype as a zero-stride stand-in
    (nothing computed or allocated), anything else as it is."""
    if not is_lazy(obj):
        return obj
    shape = tuple(obj.shape)
    if any(d != d for d in shape):  # NaN: unknown chunk sizes
        raise ValueError(f"{name}: expected known chunk sizes, got shape {shape}; call {name}.compute_chunk_sizes() first")
    return np.broadcast_to(np.empty((), dtype=obj.dtype), shape)


def conv_input(x: Any, name: str = "x", *, batched: bool = True) -> Any:
    """x as an array of (B, C, L) or (B, C, H, W) (batched) or (C, L) or (C, H, W) (one
    sample), real (the dtype policy of the batched functions); nothing is copied.  A dask
    array is checked by its shape and dtype and returned as it is (nothing computed)."""
    arr = as_array(_seen(x, name), name, (3, 4) if batched else (2, 3), allow_complex=False)
    return x if is_lazy(x) else arr


def conv_output_grad(G: Any, batch: int, out: tuple[int, ...], name: str = "G") -> Any:
    """dL/dy of a convolution, (B, O, *out): real, of the convolution's batch size and output
    spatial shape (any number of channels O).  A dask array is checked by its shape and
    dtype and returned as it is (nothing computed); anything else as an array (no copy)."""
    arr = as_array(_seen(G, name), name, len(out) + 2, allow_complex=False)
    if arr.shape[0] != batch or tuple(arr.shape[2:]) != tuple(out):
        want = "(" + ", ".join([str(batch), "O", *(str(d) for d in out)]) + ")"
        raise ValueError(
            f"{name}: expected shape {want} (batch, output channels, *output spatial), got {shape_str(arr.shape)}"
        )
    return G if is_lazy(G) else arr


def conv_dtype(*arrays: Any) -> np.dtype:
    """The result dtype of a convolution's arrays under the batched dtype policy (float16 ->
    float32, integers and bools -> float64)."""
    return np.result_type(*(target_dtype(a.dtype, "x", allow_complex=False) for a in arrays))


def conv_convention(convention: Any) -> str:
    """A convolution's gradients have the weight's shape (O, C, *kernel): "Wx" only."""
    if convention != "Wx" or not isinstance(convention, str):
        raise ValueError(
            f"convention: a Conv's gradients have the weight's shape (O, C, *kernel): expected 'Wx', got {convention!r}"
        )
    return convention


def second_conv(X2: Any, G2: Any, kind: type, X: Any, O: int) -> Any:
    """per_sample_grad_dots' second batch of a convolution: X2 a `kind` (a Conv) with X's
    channels and kernel, G2 (checked against X2 by conv_output_grad) with X's O channels."""
    if X2 is None and G2 is None:
        return None
    if X2 is None or G2 is None:
        raise ValueError(f"X2 and G2: expected both or neither, got {'X2' if G2 is None else 'G2'} only")
    if not isinstance(X2, kind):
        raise TypeError(f"X2: expected a {kind.__name__} like X, got {type(X2).__name__}")
    if (X2.channels, X2.geometry.kernel) != (X.channels, X.geometry.kernel):
        raise ValueError(
            f"X2: expected {X.channels} channels and kernel {shape_str(X.geometry.kernel)} like X, "
            f"got {X2.channels} channels and kernel {shape_str(X2.geometry.kernel)}"
        )
    G2 = conv_output_grad(G2, X2.batch, X2.geometry.out, "G2")
    if G2.shape[1] != O:
        raise ValueError(f"G2: expected {O} output channels (axis 1) like G, got shape {shape_str(tuple(G2.shape))}")
    return G2


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
