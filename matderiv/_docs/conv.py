"""The docstrings of the convolutions: Conv and conv_patches (matderiv.layers.conv), and the
Jacobians jacobian_conv_weight, jacobian_conv_input with their classes (matderiv.jacobian)."""

GEOMETRY = """kernel_size : int or tuple of int
    The kernel's spatial size, one int for every axis or one per axis.
stride : int or tuple of int, default 1
    The step between output positions (at least 1).
padding : int or tuple of int, default 0
    Zeros added on both sides of every spatial axis.
dilation : int or tuple of int, default 1
    The spacing of the kernel's taps (at least 1)."""

GEOMETRY_NOTE = """The geometry is that of PyTorch's conv1d and conv2d (a cross-correlation): each
spatial axis of size S has out = floor((S + 2 p - d (k - 1) - 1) / s) + 1
positions for kernel size k, stride s, padding p and dilation d."""

GEOMETRY_RAISES = """ValueError
    If x is not 3-D or 4-D, a geometry value is negative (padding), below 1 (the
    others) or given for the wrong number of axes, or the dilated kernel is larger
    than the padded input.
TypeError
    If x is complex, masked or of an unsupported dtype, or a geometry value is not
    an int."""

CONV_SETUP = """>>> import numpy as np
>>> import matderiv as md
>>> x = np.random.default_rng(0).standard_normal((2, 3, 5, 5))   # (B, C, H, W)
>>> X = md.Conv(x, 3, padding=1)"""

CONV = f"""The patches of a convolution's input, as the X of the batched functions.

A convolution y = conv(W, x) applies its kernel W (O, C) + kernel to every patch
of x: with U = conv_patches(x) of shape (B, T, C K), y[b, :, t] =
W.reshape(O, C K) @ U[b, t], so the convolution is a sequence layer with X = U
and G = dL/dy.  Conv stands for U without forming it: the batched functions
unfold it a block of samples at a time.

Parameters
----------
x : array_like or dask array, shape (B, C, L) or (B, C, H, W)
    The input, channels first; a dask array chunked along B stays lazy.
{GEOMETRY}

Attributes
----------
x : numpy.ndarray or dask array
    The input, stored as given (validated, not copied).
geometry : tuple
    The validated geometry, a named tuple of tuples with one entry per spatial
    axis: spatial (the input's size), kernel, stride, padding, dilation, out.
dtype : numpy.dtype
    The patches' dtype: float32 for float32 and float16 inputs, float64 for
    float64, integer and bool inputs.

Raises
------
{GEOMETRY_RAISES}

See Also
--------
conv_patches : The patches as an array.
jacobian_conv_weight : The Jacobian dy/dW of one sample.

Notes
-----
{GEOMETRY_NOTE}

Pass a Conv as X to per_sample_grads, batch_grad,
per_sample_grad_norms, clip_and_sum, sum_grad_squared, grad_variance,
per_sample_grad_dots or kfac_factors, with G = dL/dy of shape (B, O) + out: their
weight results have the kernel's shape (O, C) + kernel.

Examples
--------
{CONV_SETUP}
>>> X.shape                                   # (B, T, C K): 25 positions, 27 features
(2, 25, 27)
>>> G = np.ones((2, 4, 5, 5))                 # dL/dy for O = 4 output channels
>>> md.batch_grad(X, G).shape                 # the kernel's shape (O, C, 3, 3)
(4, 3, 3, 3)
>>> U = md.conv_patches(x, 3, padding=1)
>>> dW = np.einsum("bot,btk->ok", G.reshape(2, 4, 25), U)     # sum_b,t outer(G, U)
>>> np.allclose(md.batch_grad(X, G), dW.reshape(4, 3, 3, 3))
True
"""

BATCH = f"""The number of samples B.

Examples
--------
{CONV_SETUP}
>>> X.batch
2
"""

CHANNELS = f"""The number of input channels C.

Examples
--------
{CONV_SETUP}
>>> X.channels
3
"""

POSITIONS = f"""The number of output positions T, the product of the output's spatial sizes.

Examples
--------
{CONV_SETUP}
>>> X.positions
25
"""

FEATURES = f"""The number of features of a patch, C times the kernel's size.

Examples
--------
{CONV_SETUP}
>>> X.features
27
"""

SHAPE = f"""The patches' shape (B, T, C K).

Examples
--------
{CONV_SETUP}
>>> X.shape
(2, 25, 27)
"""

WEIGHT_SHAPE = f"""Return the shape of the kernel W for a number of output channels.

Parameters
----------
out_channels : int
    The number of output channels O.

Returns
-------
tuple of int
    (O, C) + kernel, the shape of every weight result of the batched functions.

See Also
--------
Conv.shape : The patches' shape.

Examples
--------
{CONV_SETUP}
>>> X.weight_shape(4)
(4, 3, 3, 3)
"""

UNFOLD = f"""Write the patches of a block of samples into an array.

Parameters
----------
x : numpy.ndarray
    This Conv's input as a C-contiguous array of out's dtype.
lo : int
    The first sample of the block.
out : numpy.ndarray, shape (k, T, C K)
    C-contiguous array receiving the patches of samples lo, ..., lo + k - 1.
threads : int
    The number of threads of the unfolding kernel (at least 1).

Returns
-------
numpy.ndarray
    The array out, filled.

See Also
--------
conv_patches : All the patches, with the arguments checked.

Notes
-----
The low-level step that the batched functions call block by block; its arguments
are not checked.

Examples
--------
{CONV_SETUP}
>>> out = np.empty((1, 25, 27))
>>> np.allclose(X.unfold(x, 1, out, 1), md.conv_patches(x, 3, padding=1)[1:])
True
"""

CONV_PATCHES = f"""Return the patches of a convolution's input as an array (im2col).

Parameters
----------
x : array_like or dask array, shape (B, C, L) or (B, C, H, W)
    The input, channels first (a dask array is computed first).
{GEOMETRY}
max_bytes : int, optional
    Upper bound, in bytes, on the output (and on a copy of x the call needs).
    None: the memory available to the process.
n_threads : int, optional
    Threads of the unfolding kernel: None uses OpenMP's default, -1 every usable
    core, k >= 1 k threads.

Returns
-------
numpy.ndarray, shape (B, T, C K)
    U[b, t] is the patch of output position t (row-major over the output's
    spatial axes), its features in (c, k1, k2) order; zero in the padding.
    float32 for float32 and float16 inputs, else float64.

Raises
------
{GEOMETRY_RAISES}
OutputTooLargeError
    If the output would exceed max_bytes (before anything is allocated).

See Also
--------
Conv : The same patches, never formed, for the batched functions.

Notes
-----
For a 2-D input, U[b, oh OW + ow, (c k1 + i) k2 + j] =
x[b, c, oh s1 - p1 + i d1, ow s2 - p2 + j d2] (OW output columns, s the stride,
p the padding and d the dilation of each axis), so that the convolution is
y[b, :, t] = W.reshape(O, C K) @ U[b, t].  A parallel kernel
writes every output entry once.

{GEOMETRY_NOTE}

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> x = np.arange(2 * 3 * 5 * 5, dtype=float).reshape(2, 3, 5, 5)
>>> U = md.conv_patches(x, 3)
>>> U.shape                                  # 3 x 3 positions, 3 channels x 3 x 3 taps
(2, 9, 27)
>>> np.array_equal(U[0, 0], x[0, :, :3, :3].ravel())
True
>>> md.conv_patches(np.ones((2, 3, 10)), 3, stride=2).shape    # 1-D
(2, 4, 9)
"""
