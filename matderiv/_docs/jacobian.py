"""The docstrings of matderiv.jacobian: the Jacobian interface and its classes, the
constructors jacobian_wx, jacobian_xw, jacobian_awb and hstack_operators."""

SETUP = """>>> import numpy as np
>>> import matderiv as md
>>> x = np.array([1.0, 2.0, 3.0])
>>> J = md.jacobian_wx(x, 2)          # d(W @ x)/dW for W of shape (2, 3)"""

OUT = """out : numpy.ndarray, optional
    Array to write the result into: C-contiguous, writeable, of the result's shape
    and dtype, not overlapping the stored inputs.  It is returned."""

MAX_BYTES = """max_bytes : int, optional
    Upper bound, in bytes, on what the call allocates.  None: the memory available
    to the process (the MATDERIV_MAX_BYTES environment variable when set)."""

N_THREADS = """n_threads : int, optional
    Threads for matderiv's kernels: None uses OpenMP's default, -1 every usable
    core, k >= 1 k threads."""

ORDER = """order : {"F", "C"}, default "F"
    The vectorization of W and f: "F" column-major (vec(W) stacks W's columns), "C"
    row-major (vec(W) = W.ravel())."""

DENSE_RAISES = """ValueError
    If an option is not one of its choices, or out does not fit.
TypeError
    If out is not a numpy.ndarray or n_threads not an int.
OutputTooLargeError
    If the result would exceed max_bytes (before anything is allocated)."""

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

F_SHAPE = f"""The shape of f for one sample.

(n,) for f = W @ x and f = x @ W, (n, k) for f = A @ W @ B; after `left` (M of
shape (r, n)) its first axis has length r.

Examples
--------
{SETUP}
>>> J.f_shape
(2,)
"""

W_SHAPE = f"""The shape of W.

(n, m) for f = W @ x, (m, n) for f = x @ W, (p, q) for f = A @ W @ B.

Examples
--------
{SETUP}
>>> J.W_shape
(2, 3)
"""

BATCH_SIZE = """The number of samples B of a batched Jacobian, None for a single sample.

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> md.jacobian_wx(np.ones(3), 2).batch_size is None
True
>>> md.jacobian_wx(np.ones((4, 3)), 2).batch_size
4
"""

SHAPE = f"""The tensor's shape in numerator layout: f.shape + W.shape, with a leading B when batched.

Examples
--------
{SETUP}
>>> J.shape
(2, 2, 3)
>>> md.jacobian_wx(np.ones((4, 3)), 2).shape
(4, 2, 2, 3)
"""

NDIM = f"""The number of axes of the tensor, len(shape).

Examples
--------
{SETUP}
>>> J.ndim
3
"""

TOARRAY = f"""Return the Jacobian as a dense tensor.

Parameters
----------
layout : {{"numerator", "denominator"}}, default "numerator"
    "numerator": f.shape + W.shape, D[i, a, b] = df_i / dW_ab ((n, n, m) for
    f = W @ x); "denominator": W.shape + f.shape, E[a, b, i] = D[i, a, b].  A
    batched Jacobian has a leading B axis in both.
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
Jacobian.tovec : The same entries as a matrix.
Jacobian.tosparse : The matrix as a scipy sparse array.

Notes
-----
For f = W @ x the tensor is D[i, a, b] = delta_ia x_b: mostly zeros.  Where only
products with the Jacobian are needed, `jvp`, `vjp` and `aslinearoperator` cost
no memory of its size.

Examples
--------
{SETUP}
>>> D = J.toarray()
>>> D.shape, np.allclose(D, np.einsum("ia,b->iab", np.eye(2), x))
((2, 2, 3), True)
>>> J.toarray("denominator").shape
(2, 3, 2)
"""

TOVEC = f"""Return the Jacobian as a dense matrix df / dvec(W).

Parameters
----------
{ORDER}
{OUT}
{MAX_BYTES}
{N_THREADS}

Returns
-------
numpy.ndarray, shape (B prod(f.shape), prod(W.shape))
    The matrix; row b prod(f.shape) + i belongs to sample b (B = 1 for a single
    sample).

Raises
------
{DENSE_RAISES}

See Also
--------
Jacobian.toarray : The same entries as a tensor.
Jacobian.tosparse : This matrix as a scipy sparse array.
Jacobian.aslinearoperator : This matrix as a LinearOperator, never formed.

Notes
-----
For f = W @ x with W of shape (n, m) the matrix is (n, n m): kron(x^T, I_n) for
order "F" (column a + n b for W[a, b]) and kron(I_n, x^T) for order "C" (column
a m + b).  For f = A @ W @ B it is kron(B^T, A) ("F") or kron(A, B^T) ("C").

Examples
--------
{SETUP}
>>> V = J.tovec("F")
>>> V.shape, np.allclose(V, np.kron(x[None, :], np.eye(2)))
((2, 6), True)
>>> np.allclose(J.tovec("C"), np.kron(np.eye(2), x[None, :]))
True
"""

TOSPARSE = f"""Return the matrix df / dvec(W) as a scipy sparse array.

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
    The matrix tovec(order) in canonical form (sorted indices, no duplicates); index arrays
    are int32 where every index fits, int64 otherwise.

Raises
------
ValueError
    If format or order is not one of its choices.
TypeError
    If n_threads is not an int.
OutputTooLargeError
    If the sparse arrays would exceed max_bytes (before anything is allocated).

See Also
--------
Jacobian.tovec : The dense matrix.

Notes
-----
The entries stored are the structural ones: for f = W @ x, n m of the n^2 m
entries (zeros of x included); for f = A @ W @ B, nnz(A) nnz(B), an identity
counting its diagonal and a dense array every entry.

Examples
--------
{SETUP}
>>> S = J.tosparse()
>>> type(S).__name__, S.shape, S.nnz
('csr_array', (2, 6), 6)
>>> np.allclose(S.toarray(), J.tovec())
True
"""

JVP = f"""Return the directional derivative of f along dW, the Jacobian-vector product.

Parameters
----------
dW : array_like
    A direction of W's shape.

Returns
-------
numpy.ndarray
    The change of f, of f's shape (with a leading B when batched): dW @ x for
    f = W @ x, x @ dW for f = x @ W, A @ dW @ B for f = A @ W @ B.  The dtype is
    the Jacobian's promoted with dW's.

Raises
------
ValueError
    If dW does not have W's shape.
TypeError
    If dW is masked or of an unsupported dtype.

See Also
--------
Jacobian.vjp : The transposed product.
Jacobian.aslinearoperator : Products with vec(dW).

Notes
-----
Costs a product of the size of the inputs, no work of the size of `tovec`.

Examples
--------
{SETUP}
>>> dW = np.arange(6.0).reshape(2, 3)
>>> np.allclose(J.jvp(dW), dW @ x)
True
"""

VJP = f"""Pull a gradient of f back to W, the vector-Jacobian product.

Parameters
----------
v_ : array_like
    The gradient v = dL/df, of f's shape, or (B,) + f's shape when the Jacobian
    is batched.
{OUT}
{MAX_BYTES}
{N_THREADS}

Returns
-------
numpy.ndarray
    The gradient dL/dW, of W's shape (one per sample, (B,) + W.shape, when batched):
    outer(v, x) for f = W @ x, outer(x, v) for f = x @ W.  The dtype is the
    Jacobian's promoted with v's.

Raises
------
ValueError
    If v does not have the shape above, or out does not fit.
TypeError
    If v is masked or of an unsupported dtype, or out is not a numpy.ndarray.
OutputTooLargeError
    If the result would exceed max_bytes.

See Also
--------
Jacobian.jvp : The forward product.
per_sample_grads : The same per-sample gradients from a batch of inputs and
    gradients.

Examples
--------
{SETUP}
>>> v = np.array([1.0, -1.0])
>>> np.allclose(J.vjp(v), np.outer(v, x))
True
"""

ASLINEAROPERATOR = f"""Return the matrix df / dvec(W) as a scipy LinearOperator, never formed.

Parameters
----------
{ORDER}

Returns
-------
scipy.sparse.linalg.LinearOperator
    An operator equal to tovec(order): its matvec is `jvp` on the vectorized
    direction, its rmatvec the conjugate transpose's product.

Raises
------
ValueError
    If order is not "F" or "C".

See Also
--------
Jacobian.tovec : The dense matrix.
hstack_operators : Several Jacobians side by side as one operator.

Notes
-----
Operands are checked: a vector of the wrong length or an unsupported dtype is an
error instead of a silent broadcast.

Examples
--------
{SETUP}
>>> op = J.aslinearoperator("F")
>>> dW = np.arange(6.0).reshape(2, 3)
>>> op.shape, np.allclose(op @ dW.ravel(order="F"), dW @ x)
((2, 6), True)
"""

LEFT = f"""Return the Jacobian of M @ f, the chain rule through a later linear map M.

Parameters
----------
M : array_like or scipy sparse matrix
    A matrix of shape (r, n), n being f's length (or its number of rows when f is
    a matrix); on a batched Jacobian also (B, r, n), one matrix per sample.

Returns
-------
Jacobian
    The Jacobian of M @ f with respect to W, f's first axis now of length r, in
    the dtype of the Jacobian promoted with M's.  Lazy as well.

Raises
------
ValueError
    If M's shape does not fit f (or a per-sample M is given to an unbatched
    Jacobian, or has the wrong number of samples).
TypeError
    If M is masked or of an unsupported dtype.

See Also
--------
Jacobian.vjp : The pull-back of one gradient.

Notes
-----
d(M @ f)/dW = M @ df/dW.  M is copied; it is multiplied into the Jacobian's
factor only where the product holds no more entries than both, else the product
stays lazy, so nothing of the size of `tovec` is formed.

Examples
--------
{SETUP}
>>> M = np.array([[1.0, 1.0], [0.0, 2.0], [3.0, 0.0]])
>>> JM = J.left(M)
>>> JM.shape, np.allclose(JM.toarray(), np.einsum("ri,iab->rab", M, J.toarray()))
((3, 2, 3), True)
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
>>> J.x
array([1., 2., 3.])
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
