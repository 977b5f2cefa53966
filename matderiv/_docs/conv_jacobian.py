"""The docstrings of a convolution's Jacobians: jacobian_conv_weight, jacobian_conv_input, and
their classes ConvWeightJacobian and ConvInputJacobian (matderiv.jacobian)."""
from .conv import GEOMETRY, GEOMETRY_NOTE

SETUP = """>>> import numpy as np
>>> import matderiv as md
>>> rng = np.random.default_rng(0)
>>> x, W = rng.standard_normal((3, 5, 5)), rng.standard_normal((4, 3, 3, 3))"""

WEIGHT_SETUP = SETUP + """
>>> J = md.jacobian_conv_weight(x, 4, 3, padding=1)     # dy/dW, y of shape (4, 5, 5)"""

INPUT_SETUP = SETUP + """
>>> J = md.jacobian_conv_input(W, (3, 5, 5), padding=1)  # dy/dx"""

COMMON_ATTRIBUTES = """Attributes
----------
f_shape : tuple of int
    The output's shape (O,) + out.
dtype : numpy.dtype
    The dtype of every form.
batch_size : None
    Always None: the Jacobian of one sample."""

FORMS = """Every form of `Jacobian` is there (toarray, tovec, tosparse, jvp, vjp,
aslinearoperator, left), for a tensor of any number of axes."""

WEIGHT_CLASS = f"""Lazy Jacobian dy/dW of a convolution of one sample with respect to its kernel.

Made by `jacobian_conv_weight`; not constructed directly.  It stores the
patches of x.

{COMMON_ATTRIBUTES}

See Also
--------
jacobian_conv_weight, ConvInputJacobian

Notes
-----
dy[o, t] / dW[a, c, k] = delta_oa U[t, (c, k)] with U the patches of x
(conv_patches): the Kronecker Jacobian of I_O @ W2 @ U^T for W2 =
W.reshape(O, C K), so tovec("C") is kron(I_O, U).

{FORMS}

Examples
--------
{WEIGHT_SETUP}
>>> J.shape                                   # y.shape + W.shape
(4, 5, 5, 4, 3, 3, 3)
"""

INPUT_CLASS = f"""Lazy Jacobian dy/dx of a convolution of one sample with respect to its input.

Made by `jacobian_conv_input`; not constructed directly.  It stores the kernel
alone.

{COMMON_ATTRIBUTES}

See Also
--------
jacobian_conv_input, ConvWeightJacobian

Notes
-----
dy/dx is the sparse block-Toeplitz matrix sum_k kron(W_k, S_k), W_k the kernel's
(O, C) slice at offset k and S_k the 0/1 matrix that takes the input positions
seen at that offset (positions in the padding have no entry).  `jvp` is a
convolution and `vjp` a transposed one: neither forms the matrix.

{FORMS}

Examples
--------
{INPUT_SETUP}
>>> J.shape, J.nnz                            # y.shape + x.shape
((4, 5, 5, 3, 5, 5), 2028)
"""

CONV_SHAPE = f"""The tensor's shape in numerator layout: y.shape + W.shape (or + x.shape).

Examples
--------
{WEIGHT_SETUP}
>>> J.shape
(4, 5, 5, 4, 3, 3, 3)
"""

CONV_NDIM = f"""The number of axes of the tensor, len(shape).

Examples
--------
{WEIGHT_SETUP}
>>> J.ndim
7
"""

W_SHAPE = f"""The kernel's shape (O, C) + kernel.

Examples
--------
{WEIGHT_SETUP}
>>> J.W_shape
(4, 3, 3, 3)
"""

X_SHAPE = f"""The input's shape (C,) + S.

Examples
--------
{INPUT_SETUP}
>>> J.x_shape
(3, 5, 5)
"""

W_PROPERTY = f"""The stored kernel (a read-only copy of the W given).

Examples
--------
{INPUT_SETUP}
>>> J.W.shape, J.W.flags.writeable
((4, 3, 3, 3), False)
"""

NNZ = f"""The number of structurally nonzero entries of the matrix, stored by `tosparse`.

O C times the number of in-bounds (output position, kernel offset) pairs.

Examples
--------
{INPUT_SETUP}
>>> J.nnz, J.tosparse().nnz
(2028, 2028)
"""


JACOBIAN_CONV_WEIGHT = f"""Return the Jacobian of a convolution of one sample with respect to its kernel.

Parameters
----------
x : array_like, shape (C, L) or (C, H, W)
    The input of one sample, channels first.
out_channels : int
    The number of output channels O.
{GEOMETRY}

Returns
-------
ConvWeightJacobian
    Lazy dy/dW for y = conv(W, x) with W of shape (O, C) + kernel_size: tensor
    shape y.shape + W.shape.  Its dtype is that of the patches of x.

Raises
------
ValueError
    If x is not 2-D or 3-D, out_channels is negative, or the geometry is invalid.
TypeError
    If x is complex or of an unsupported dtype, or an argument is not an int.

See Also
--------
jacobian_conv_input : The Jacobian dy/dx.
Conv : A batch of patches for the batched gradient functions.
jacobian_awb : The Kronecker Jacobian it is a case of.

Notes
-----
y is torch.nn.functional.conv1d / conv2d without bias.  dy[o, t] / dW[a, c, k] =
delta_oa U[t, (c, k)] with U the patches of x: tovec("C") is kron(I_O, U).
{GEOMETRY_NOTE}

Examples
--------
{SETUP}
>>> J = md.jacobian_conv_weight(x, 4, 3, padding=1)
>>> J.shape
(4, 5, 5, 4, 3, 3, 3)
>>> U = md.conv_patches(x[None], 3, padding=1)[0]
>>> conv = lambda W: (W.reshape(4, -1) @ U.T).reshape(4, 5, 5)
>>> md.check_jacobian(conv, W, J).ok
True
"""

JACOBIAN_CONV_INPUT = f"""Return the Jacobian of a convolution of one sample with respect to its input.

Parameters
----------
W : array_like, shape (O, C, K) or (O, C, K1, K2)
    The kernel (real).
input_shape : tuple of int
    The input's shape (C, L) or (C, H, W).
stride : int or tuple of int, default 1
    The step between output positions (at least 1).
padding : int or tuple of int, default 0
    Zeros added on both sides of every spatial axis.
dilation : int or tuple of int, default 1
    The spacing of the kernel's taps (at least 1).

Returns
-------
ConvInputJacobian
    Lazy dy/dx for y = conv(W, x): tensor shape y.shape + x.shape.  It stores a
    copy of W; its dtype is W's (integers and bools become float64).

Raises
------
ValueError
    If W is not 3-D or 4-D, input_shape does not fit W, or the geometry is
    invalid.
TypeError
    If W is complex or of an unsupported dtype, or a geometry value is not an int.

See Also
--------
jacobian_conv_weight : The Jacobian dy/dW.

Notes
-----
dy/dx is the sparse block-Toeplitz matrix sum_k kron(W_k, S_k); products with it
are convolutions, so it is formed only by `toarray`, `tovec` and `tosparse`.
{GEOMETRY_NOTE}

Examples
--------
{SETUP}
>>> J = md.jacobian_conv_input(W, (3, 5, 5), padding=1)
>>> J.shape, J.nnz
((4, 5, 5, 3, 5, 5), 2028)
>>> M = J.tovec()                               # (y.size, x.size), order "F"
>>> np.allclose(J.vjp(J.jvp(x)).ravel(order="F"), M.T @ M @ x.ravel(order="F"))
True
"""
