"""Layers whose weight derivative is that of a linear map, as structured inputs of the batched
functions: a convolution is a sequence layer over its patches (conv_patches, Conv).
Importing this package registers their implementations (matderiv imports it)."""
from . import conv_grads  # noqa: F401 (registers the batched functions for Conv)
from .conv import Conv, conv_patches

__all__ = ["Conv", "conv_patches"]
