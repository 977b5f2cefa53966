"""Layers whose weight derivative is that of a linear map, as structured inputs of the batched
functions: a convolution is a sequence layer over its patches (conv_patches, Conv); an
embedding lookup is x @ E with x one-hot (one_hot, Embedding), whose per-sample gradients
touch only the looked-up rows.  Importing this package registers their implementations
(matderiv imports it)."""
from . import conv_grads  # noqa: F401 (registers the batched functions for Conv)
from .conv import Conv, conv_patches
from .embedding import Embedding, one_hot

__all__ = ["Conv", "Embedding", "conv_patches", "one_hot"]
