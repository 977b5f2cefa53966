"""The docstrings of the Jacobian interface's members (matderiv.Jacobian: shapes, dense and
sparse forms, products, left), and the entries they share with the convolution Jacobians."""

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

SHAPE = f"""The tensor's shape in numerator layout, f.shape + W.shape.

A batched Jacobian has a leading B.

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
    The matrix tovec(order) in canonical form (sorted indices, no
    duplicates); index arrays are int32 where every index fits, int64 otherwise.

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
