"""The docstrings of the convolution Jacobians' methods (ConvWeightJacobian and
ConvInputJacobian: toarray, tovec, tosparse, jvp, vjp, aslinearoperator, left)."""
from .conv_jacobian import INPUT_SETUP, WEIGHT_SETUP
from .jacobian_forms import DENSE_RAISES, MAX_BYTES, N_THREADS, ORDER, OUT


def toarray(wrt: str, setup: str) -> str:
    """The docstring of toarray for the Jacobian with respect to `wrt` ("W" or "x")."""
    return f"""Return the Jacobian as a dense tensor.

Parameters
----------
layout : {{"numerator", "denominator"}}, default "numerator"
    "numerator": y.shape + {wrt}.shape; "denominator": {wrt}.shape + y.shape.
{OUT}
{MAX_BYTES}
{N_THREADS}

Returns
-------
numpy.ndarray
    The tensor, of the Jacobian's dtype.

Raises
------
{DENSE_RAISES}

See Also
--------
tovec : The same entries as a matrix.

Examples
--------
{setup}
>>> J.toarray().shape == J.shape
True
"""


def tovec(wrt: str, setup: str, check: str) -> str:
    """The docstring of tovec for the Jacobian with respect to `wrt`."""
    return f"""Return the Jacobian as a dense matrix dvec(y) / dvec({wrt}).

Parameters
----------
{ORDER}
{OUT}
{MAX_BYTES}
{N_THREADS}

Returns
-------
numpy.ndarray, shape (y.size, {wrt}.size)
    The matrix; rows follow y.ravel(order), columns {wrt}.ravel(order).

Raises
------
{DENSE_RAISES}

See Also
--------
tosparse : This matrix as a scipy sparse array.

Examples
--------
{setup}
{check}
"""


def tosparse(setup: str, stored: str) -> str:
    """The docstring of tosparse, with what the sparse form stores."""
    return f"""Return the matrix of `tovec` as a scipy sparse array.

Parameters
----------
format : {{"csr", "csc", "coo"}}, default "csr"
    The sparse format: scipy.sparse.csr_array, csc_array or coo_array.
{ORDER}
{MAX_BYTES}
{N_THREADS}

Returns
-------
scipy.sparse.csr_array or scipy.sparse.csc_array or scipy.sparse.coo_array
    The matrix tovec(order) in canonical form (sorted indices, no duplicates),
    {stored}

Raises
------
ValueError
    If format or order is not one of its choices.
TypeError
    If n_threads is not an int.
OutputTooLargeError
    If the sparse arrays would exceed max_bytes.

See Also
--------
tovec : The dense matrix.

Examples
--------
{setup}
>>> np.allclose(J.tosparse("csc").toarray(), J.tovec())
True
"""


def aslinearoperator(setup: str, products: str) -> str:
    """The docstring of aslinearoperator."""
    return f"""Return the matrix of `tovec` as a scipy LinearOperator, never formed.

Parameters
----------
{ORDER}

Returns
-------
scipy.sparse.linalg.LinearOperator
    An operator equal to tovec(order); {products}

Raises
------
ValueError
    If order is not "F" or "C".

See Also
--------
tovec : The dense matrix.
hstack_operators : Several Jacobians side by side as one operator.

Examples
--------
{setup}
>>> op = J.aslinearoperator()
>>> op.shape == J.tovec().shape
True
"""


def qualify(text: str, cls: str) -> str:
    """text with its See Also entries of the class's own methods named with the class."""
    for name in ("tovec", "tosparse", "jvp", "vjp"):
        text = text.replace(f"\n{name} : ", f"\n{cls}.{name} : ")
    return text


WEIGHT_TOARRAY = toarray("W", WEIGHT_SETUP)
INPUT_TOARRAY = toarray("x", INPUT_SETUP)
WEIGHT_TOVEC = tovec("W", WEIGHT_SETUP, """>>> U = md.conv_patches(x[None], 3, padding=1)[0]
>>> np.allclose(J.tovec("C"), np.kron(np.eye(4), U))
True""")
INPUT_TOVEC = tovec("x", INPUT_SETUP, """>>> y = J.jvp(x)
>>> np.allclose(J.tovec("F") @ x.ravel(order="F"), y.ravel(order="F"))
True""")
WEIGHT_TOSPARSE = tosparse(WEIGHT_SETUP, "with O T C K entries (every entry of the patches, the zeros of\n    the padding included).")
INPUT_TOSPARSE = tosparse(INPUT_SETUP, "with exactly the structurally nonzero entries (nnz; none for\n    the padding).")
WEIGHT_ASLINEAROPERATOR = aslinearoperator(WEIGHT_SETUP, "its products are those of the Kronecker\n    factors.")
INPUT_ASLINEAROPERATOR = aslinearoperator(INPUT_SETUP, "its products are convolutions and\n    transposed convolutions.")

WEIGHT_JVP = f"""Return the directional derivative of y along dW: conv(dW, x).

Parameters
----------
dW : array_like
    A direction of the kernel's shape (O, C) + kernel.

Returns
-------
numpy.ndarray
    The change of y, of y's shape (O,) + out.

Raises
------
ValueError
    If dW does not have the kernel's shape.
TypeError
    If dW is masked or of an unsupported dtype.

See Also
--------
vjp : The transposed product.

Notes
-----
y is linear in W, so jvp(W) is the convolution itself.

Examples
--------
{WEIGHT_SETUP}
>>> U = md.conv_patches(x[None], 3, padding=1)[0]
>>> np.allclose(J.jvp(W), (W.reshape(4, -1) @ U.T).reshape(4, 5, 5))
True
"""

INPUT_JVP = f"""Return the directional derivative of y along dx: conv(W, dx).

Parameters
----------
dx : array_like
    A direction of the input's shape (C,) + S.

Returns
-------
numpy.ndarray
    The change of y, of y's shape (O,) + out.

Raises
------
ValueError
    If dx does not have the input's shape.
TypeError
    If dx is masked or of an unsupported dtype.

See Also
--------
vjp : The transposed product.

Notes
-----
y is linear in x, so jvp(x) is the convolution itself.

Examples
--------
{INPUT_SETUP}
>>> U = md.conv_patches(x[None], 3, padding=1)[0]
>>> np.allclose(J.jvp(x), (W.reshape(4, -1) @ U.T).reshape(4, 5, 5))
True
"""


def vjp(wrt: str, setup: str, result: str, check: str) -> str:
    """The docstring of vjp."""
    return f"""Pull a gradient of y back to {wrt}, the vector-Jacobian product.

Parameters
----------
v_ : array_like
    The gradient v = dL/dy, of y's shape (O,) + out.
{OUT}
{MAX_BYTES}
{N_THREADS}

Returns
-------
numpy.ndarray
    The gradient dL/d{wrt}, of {wrt}'s shape: {result}

Raises
------
ValueError
    If v does not have y's shape, or out does not fit.
TypeError
    If v is masked or of an unsupported dtype, or out is not a numpy.ndarray.
OutputTooLargeError
    If the result would exceed max_bytes.

See Also
--------
jvp : The forward product.

Examples
--------
{setup}
>>> v = rng.standard_normal((4, 5, 5))
{check}
"""


WEIGHT_VJP = vjp("W", WEIGHT_SETUP, "v.reshape(O, T) @ U, reshaped.", """>>> U = md.conv_patches(x[None], 3, padding=1)[0]
>>> np.allclose(J.vjp(v), (v.reshape(4, -1) @ U).reshape(W.shape))
True""")
INPUT_VJP = vjp("x", INPUT_SETUP, "the transposed convolution of v.", """>>> np.allclose(J.vjp(v).ravel(order="F"), J.tovec("F").T @ v.ravel(order="F"))
True""")


def left(setup: str, result: str) -> str:
    """The docstring of left."""
    return f"""Return the Jacobian of M @ y, a later linear map mixing y's channels.

Parameters
----------
M : array_like or scipy sparse matrix
    A matrix of shape (r, O).

Returns
-------
{result}
    The Jacobian of y' = M @ y (y taken as (O,) + out), y' of shape (r,) + out.

Raises
------
ValueError
    If M is not of shape (r, O).
TypeError
    If M is masked or of an unsupported dtype.

See Also
--------
jvp : The product with a direction.

Examples
--------
{setup}
>>> M = rng.standard_normal((2, 4))
>>> J.left(M).shape[:3]
(2, 5, 5)
"""


WEIGHT_LEFT = left(WEIGHT_SETUP, "ConvWeightJacobian")
INPUT_LEFT = left(INPUT_SETUP, "ConvInputJacobian").replace(
    "    The Jacobian of y' = M @ y (y taken as (O,) + out),",
    "    The convolution Jacobian of the kernel M @ W: that of y' = M @ y\n    (y taken as (O,) + out),").replace(
    "masked or of an unsupported dtype.", "complex, masked or of an unsupported dtype.")


# the methods' See Also entries name their own class's methods
WEIGHT_TOARRAY, WEIGHT_TOVEC, WEIGHT_TOSPARSE, WEIGHT_JVP, WEIGHT_VJP, WEIGHT_LEFT = (
    qualify(text, "ConvWeightJacobian")
    for text in (WEIGHT_TOARRAY, WEIGHT_TOVEC, WEIGHT_TOSPARSE, WEIGHT_JVP, WEIGHT_VJP, WEIGHT_LEFT)
)
INPUT_TOARRAY, INPUT_TOVEC, INPUT_TOSPARSE, INPUT_JVP, INPUT_VJP, INPUT_LEFT = (
    qualify(text, "ConvInputJacobian")
    for text in (INPUT_TOARRAY, INPUT_TOVEC, INPUT_TOSPARSE, INPUT_JVP, INPUT_VJP, INPUT_LEFT)
)
WEIGHT_ASLINEAROPERATOR = qualify(WEIGHT_ASLINEAROPERATOR, "ConvWeightJacobian")
INPUT_ASLINEAROPERATOR = qualify(INPUT_ASLINEAROPERATOR, "ConvInputJacobian")
