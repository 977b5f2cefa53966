"""The docstrings of matderiv.jacobian's classes (Jacobian, KroneckerJacobian, StructuredJacobian,
TotalJacobian) and constructors (jacobian_wx, jacobian_xw, jacobian_awb, hstack_operators)."""
from .jacobian_forms import SETUP

JACOBIAN = f"""Lazy Jacobian of f with respect to a matrix W, in every form.

The common interface of the Jacobians that `jacobian_wx`, `jacobian_xw` and
`jacobian_awb` return (not constructed directly).  Nothing of the size of the
Jacobian exists until a dense or sparse form is asked for.

Attributes
----------
dtype : numpy.dtype
    The dtype of every form: the inputs' dtype (float32, float64, complex64 or
    complex128; integers and bools become float64).

See Also
--------
jacobian_wx, jacobian_xw, jacobian_awb

Notes
-----
For one sample, the tensor of a Jacobian has the shape f.shape + W.shape
(numerator layout, D[i, a, b] = df_i / dW_ab) or W.shape + f.shape (denominator
layout); a batched Jacobian (one per sample of a batch of B) has a leading B.
The vectorized form df / dvec(W) has the shape (B prod(f.shape), prod(W.shape)),
the samples stacked in rows.  Complex inputs are treated as holomorphic: nothing
is conjugated except in the adjoint of `aslinearoperator`.

Examples
--------
{SETUP}
>>> isinstance(J, md.Jacobian), J.shape
(True, (2, 2, 3))
"""

KRONECKER = """Lazy Jacobian of f = A @ W @ B with respect to W, a Kronecker product.

Made by `jacobian_awb`, by `jacobian_wx` and `jacobian_xw` (the subclass
`StructuredJacobian`) and by `Jacobian.left` of any of them; not constructed
directly.  It stores its two factors A and B only.

Attributes
----------
dtype : numpy.dtype
    The dtype of every form.

See Also
--------
jacobian_awb, Jacobian

Notes
-----
df_ij / dW_ab = A_ia B_bj, so the tensor has the shape (n, k, p, q) for A (n, p),
W (p, q) and B (q, k), and every form is a Kronecker product: kron(B^T, A) for
order "F", kron(A, B^T) for order "C" and the tensor, kron(A^T, B) for the
denominator layout.

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> J = md.jacobian_awb(np.ones((2, 3)), np.ones((4, 5)))
>>> isinstance(J, md.KroneckerJacobian), J.shape
(True, (2, 5, 3, 4))
"""

STRUCTURED = """Lazy Jacobian of W @ x or x @ W with respect to W, stored as x alone.

Made by `jacobian_wx` and `jacobian_xw`; not constructed directly.  Memory O(B m).

Attributes
----------
n : int
    The length of f.
m : int
    The length of x.
convention : {"Wx", "xW"}
    "Wx" for f = W @ x (W of shape (n, m)), "xW" for f = x @ W (W of shape
    (m, n)).
dtype : numpy.dtype
    The dtype of every form.

See Also
--------
jacobian_wx, jacobian_xw, KroneckerJacobian

Notes
-----
A `KroneckerJacobian` whose factors are A = I_n, B = x (as a column) for "Wx" and
A = x (as a row), B = I_n for "xW".

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> J = md.jacobian_wx(np.array([1.0, 2.0, 3.0]), 2)
>>> J.n, J.m, J.convention
(2, 3, 'Wx')
"""

X_PROPERTY = """The stored x, read-only: shape (m,), or (B, m) when batched.

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> J = md.jacobian_wx(np.array([1.0, 2.0, 3.0]), 2)
>>> J.x.tolist()
[1.0, 2.0, 3.0]
>>> J.x.flags.writeable
False
"""

TOTAL = """Lazy total derivative of f(W) = W @ x(W) with respect to W, by the product rule.

Made by `jacobian_wx` given W and dx_dW; not constructed directly.  It stores x,
W and dx/dW.

Attributes
----------
n, m : int
    W's shape (n, m).
convention : str
    Always "Wx".
dtype : numpy.dtype
    The dtype of every form.

See Also
--------
jacobian_wx, Jacobian

Notes
-----
D[i, a, b] = delta_ia x_b + sum_j W[i, j] dx_j / dW_ab, shape (n, n, m).  Products
(jvp, vjp, the LinearOperator) apply both terms; the dense forms are one matrix
product written straight into the output, plus the first term's entries.
`left` applies M to both terms.

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> rng = np.random.default_rng(0)
>>> W, c = rng.standard_normal((2, 3)), rng.standard_normal(2)
>>> J = md.jacobian_wx(c @ W, 2, W=W, dx_dW=md.jacobian_xw(c, 3))
>>> type(J).__name__, J.shape
('TotalJacobian', (2, 2, 3))
"""

JACOBIAN_WX = """Return the Jacobian of f(W) = W @ x with respect to W.

Parameters
----------
x : array_like, shape (m,) or (B, m)
    The input, or a batch of inputs (then one Jacobian per sample).
n : int
    The number of rows of W (the length of f).
W : array_like, shape (n, m), optional
    W itself, for the total derivative when x depends on W (given with dx_dW;
    x then a single input).
dx_dW : array_like or Jacobian, optional
    The Jacobian of x = x(W) with respect to W, shape (m, n, m), as an array in
    numerator layout or as a matderiv Jacobian (given with W).

Returns
-------
StructuredJacobian or TotalJacobian
    Lazy: a StructuredJacobian (memory O(B m)), or with W and dx_dW the
    TotalJacobian of the product rule.  Its dtype is x's (with W's and dx_dW's);
    integers and bools become float64.

Raises
------
ValueError
    If x is not 1-D or 2-D, n is negative, only one of W and dx_dW is given, or
    their shapes do not fit x and n.
TypeError
    If x, W or dx_dW is masked or of an unsupported dtype, or n is not an int.

See Also
--------
jacobian_xw : The row convention f = x @ W.
jacobian_awb : The general case f = A @ W @ B.
per_sample_grads : The pull-backs of a batch, directly.

Notes
-----
D[i, a, b] = df_i / dW_ab = delta_ia x_b, tensor shape (n, n, m).  Its matrix
forms are kron(x^T, I_n) for column-major vec(W) (order "F") and kron(I_n, x^T)
for row-major vec(W) (order "C").  With W and dx_dW:
D[i, a, b] = delta_ia x_b + sum_j W[i, j] dx_j / dW_ab.  The inputs are copied:
the Jacobian is taken at this point, later changes to the arrays do not reach it.
Complex inputs are treated as holomorphic (no conjugation).

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> x = np.array([1.0, 2.0, 3.0])
>>> J = md.jacobian_wx(x, 2)
>>> J.shape, np.allclose(J.tovec("F"), np.kron(x[None, :], np.eye(2)))
((2, 2, 3), True)

A batch of inputs gives one Jacobian per sample, stacked in the rows of `tovec`:

>>> Jb = md.jacobian_wx(np.ones((4, 3)), 2)
>>> Jb.shape, Jb.tovec().shape
((4, 2, 2, 3), (8, 6))

The total derivative of f(W) = W @ (c @ W), checked by finite differences:

>>> rng = np.random.default_rng(0)
>>> W, c = rng.standard_normal((2, 3)), rng.standard_normal(2)
>>> T = md.jacobian_wx(c @ W, 2, W=W, dx_dW=md.jacobian_xw(c, 3))
>>> md.check_jacobian(lambda W: W @ (c @ W), W, T).ok
True
"""

JACOBIAN_XW = """Return the Jacobian of f(W) = x @ W with respect to W.

Parameters
----------
x : array_like, shape (m,) or (B, m)
    The input row, or a batch of them (then one Jacobian per sample).
n : int
    The number of columns of W (the length of f).

Returns
-------
StructuredJacobian
    Lazy (memory O(B m)), tensor shape (n, m, n), of x's dtype (integers and bools
    become float64).

Raises
------
ValueError
    If x is not 1-D or 2-D, or n is negative.
TypeError
    If x is masked or of an unsupported dtype, or n is not an int.

See Also
--------
jacobian_wx : The column convention f = W @ x.
jacobian_awb : The general case f = A @ W @ B.

Notes
-----
T[j, a, b] = df_j / dW_ab = x_a delta_jb for W of shape (m, n).  Its matrix forms
are kron(I_n, x^T) for order "F" and kron(x^T, I_n) for order "C".  x is copied;
complex x is treated as holomorphic (no conjugation).

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> x = np.array([1.0, 2.0, 3.0])
>>> J = md.jacobian_xw(x, 2)
>>> J.shape, J.W_shape
((2, 3, 2), (3, 2))
>>> dW = np.arange(6.0).reshape(3, 2)
>>> np.allclose(J.jvp(dW), x @ dW)
True
"""

JACOBIAN_AWB = """Return the Jacobian of f(W) = A @ W @ B with respect to W.

Parameters
----------
A : array_like or scipy sparse matrix or None
    The left factor, shape (n, p); None for the identity (then W_shape sets its
    size).
B : array_like or scipy sparse matrix or None
    The right factor, shape (q, k); None for the identity.
W_shape : tuple of int, optional
    W's shape (p, q); needed where A or B is None, checked against them otherwise.

Returns
-------
KroneckerJacobian
    Lazy: A and B are copied, identities never built.  Tensor shape
    (n, k, p, q); the dtype is A's and B's promoted (float64 for two identities).

Raises
------
ValueError
    If A or B is not 2-D, their shapes do not fit W_shape, or W_shape is missing
    for an identity.
TypeError
    If A or B is masked or of an unsupported dtype, or W_shape is not a pair of
    ints.

See Also
--------
jacobian_wx : The case A = I, B = x.
jacobian_xw : The case A = x, B = I.
one_hot : A as the one-hot matrix of an embedding lookup.

Notes
-----
df_ij / dW_ab = A_ia B_bj.  The matrix forms are kron(B^T, A) (order "F") and
kron(A, B^T) (order "C"); `tosparse` stores nnz(A) nnz(B) entries.  The Jacobian
of an embedding lookup one_hot(idx) @ E is jacobian_awb(one_hot(idx, V), None,
W_shape=(V, d)).  Complex factors are treated as holomorphic (no conjugation).

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> A, B = np.arange(6.0).reshape(2, 3), np.arange(8.0).reshape(4, 2)
>>> J = md.jacobian_awb(A, B)
>>> J.shape, np.allclose(J.tovec("F"), np.kron(B.T, A))
((2, 2, 3, 4), True)
>>> dW = np.ones((3, 4))
>>> np.allclose(J.jvp(dW), A @ dW @ B)
True
>>> md.jacobian_awb(None, B, W_shape=(5, 4)).shape
(5, 2, 5, 4)
"""

HSTACK_OPERATORS = """Put several Jacobians side by side as one LinearOperator, [J_1, J_2, ...].

Parameters
----------
blocks : list or tuple
    The blocks: matderiv Jacobians (taken as their `aslinearoperator(order)`),
    LinearOperators, arrays or scipy sparse matrices, all with the same number of
    rows.
order : {"F", "C"}, default "F"
    The vectorization used for the Jacobians among the blocks.

Returns
-------
scipy.sparse.linalg.LinearOperator
    The operator whose operand is the concatenation of the blocks' operands, of
    the blocks' dtypes promoted.  Nothing is formed.

Raises
------
TypeError
    If blocks is not a list or tuple, or a block is none of the kinds above.
ValueError
    If blocks is empty, the blocks' numbers of rows differ, or order is not "F"
    or "C".

See Also
--------
Jacobian.aslinearoperator : One Jacobian as an operator.

Notes
-----
The Jacobian of f with respect to several parameters (W1, b1, W2, ...), whose
operand is the concatenation of their vectorized forms: what a Gauss-Newton
solver such as scipy.optimize.least_squares(jac=...) takes.

Examples
--------
For f = W @ x + b, the Jacobian with respect to (W, b):

>>> import numpy as np
>>> import matderiv as md
>>> x = np.array([1.0, 2.0, 3.0])
>>> J = md.hstack_operators([md.jacobian_wx(x, 2), np.eye(2)])
>>> J.shape
(2, 8)
>>> dW, db = np.arange(6.0).reshape(2, 3), np.array([1.0, 2.0])
>>> np.allclose(J @ np.concatenate([dW.ravel(order="F"), db]), dW @ x + db)
True
"""
