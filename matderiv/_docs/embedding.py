"""The docstrings of the embedding lookups: Embedding and one_hot (matderiv.layers.embedding)."""

SETUP = """>>> import numpy as np
>>> import matderiv as md
>>> idx = np.array([[0, 2], [1, 1], [3, 0]])        # B = 3 samples of T = 2 lookups
>>> E = md.Embedding(idx, 5)                         # a table of V = 5 rows"""

EMBEDDING = f"""An embedding lookup y[b, t] = E[idx[b, t]], as the X of the batched functions.

A lookup into a table E of shape (V, d) is x @ E with x one-hot: the "xW" layer
with a sparse input.  Passed as X with G = dL/dy, the batched functions give the
table's per-sample gradients and their statistics without forming the one-hot
rows: sample b's gradient touches only the rows it looked up.

Parameters
----------
idx : array_like of int or dask array, shape (B,) or (B, T)
    The indices looked up, integers in [0, V); a dask array chunked along B stays
    lazy (its values are checked chunk by chunk when computed).
num_embeddings : int
    V, the number of rows of the table (positive).

Attributes
----------
idx : numpy.ndarray or dask array
    The indices, as checked.
num_embeddings : int
    V.

Raises
------
TypeError
    If idx is not of an integer dtype, or num_embeddings is not an int.
ValueError
    If idx is not 1-D or 2-D, an index is outside [0, V), or num_embeddings is
    below 1.

See Also
--------
one_hot : The one-hot rows as a sparse matrix.
jacobian_awb : The lookup's Jacobian, with one_hot(idx, V) as A.

Notes
-----
Sample b's gradient is g_b = sum_t outer(onehot(idx[b, t]), G[b, t]), of shape
(V, d): its row v is the sum of the G[b, t] with idx[b, t] = v, every other row
is zero.  With G of shape idx.shape + (d,), every result has the table's shape
(V, d) (or (V,)) and accumulates in float64, in G's dtype; nothing else of size V
is allocated, so a table of a million rows costs what the batch costs.

* per_sample_grads gives a scipy.sparse.csr_array (B, V d), row b holding
  g_b.ravel() at the touched rows only;
* batch_grad, clip_and_sum, sum_grad_squared and grad_variance give (V, d);
* per_sample_grad_norms uses ||g_b||^2 = sum over t, s with idx[b, t] =
  idx[b, s] of <G[b, t], G[b, s]>, in O(B T d);
* per_sample_grad_dots takes another Embedding of the same V as X2;
* kfac_factors returns A as its diagonal (V,) (the counts of each row divided by
  B T), S as for dense inputs; mode="reduce" on sequences (T > 1) is a
  ValueError, as its A would not be diagonal.

Only the default convention ("Wx") is accepted, and bias=True is a ValueError: a
lookup has no bias.

Examples
--------
{SETUP}
>>> G = np.random.default_rng(0).standard_normal((3, 2, 4))   # dL/dy, d = 4
>>> dE = md.batch_grad(E, G)
>>> dE.shape
(5, 4)

The same as the dense layer x @ E with one-hot x:

>>> x = np.eye(5)[idx]                               # (3, 2, 5)
>>> np.allclose(dE, md.batch_grad(x, G, convention="xW"))
True
>>> np.allclose(md.per_sample_grad_norms(E, G), md.per_sample_grad_norms(x, G))
True
>>> md.per_sample_grads(E, G).shape                  # sparse, (B, V d)
(3, 20)
"""

SHAPE = f"""The shape of the indices, (B,) or (B, T).

Examples
--------
{SETUP}
>>> E.shape
(3, 2)
"""

LOOKUP = f"""Check G against the indices and pair them, for the batched functions.

Parameters
----------
G : array_like or dask array
    The upstream gradient dL/dy, of shape idx.shape + (d,).
name : str, default "G"
    The name that error messages give G.

Returns
-------
object
    The indices with G, checked (nothing copied): what the batched functions'
    implementations for an Embedding work on.

Raises
------
ValueError
    If G's shape is not idx.shape + (d,).
TypeError
    If G is complex or of an unsupported dtype.

See Also
--------
Embedding : The lookup.

Examples
--------
{SETUP}
>>> pair = E.lookup(np.ones((3, 2, 4)))
>>> E.lookup(np.ones((3, 4)))
Traceback (most recent call last):
    ...
ValueError: G: expected shape idx.shape + (d,) = (3,2,d), got (3,4)
"""

ONE_HOT = """Return the one-hot rows of integer indices as a sparse matrix.

Parameters
----------
idx : array_like of int, shape (N,)
    The indices, integers in [0, num_classes).
num_classes : int
    V, the number of columns (positive).

Returns
-------
scipy.sparse.csr_array, shape (N, V)
    Float64 ones at (i, idx[i]), sorted; int32 indices where they fit, else
    int64.

Raises
------
TypeError
    If idx is not of an integer dtype, or num_classes is not an int.
ValueError
    If idx is not 1-D, an index is outside [0, V), or num_classes is below 1.

See Also
--------
Embedding : A lookup as the input of the batched functions.
jacobian_awb : With one_hot(idx, V) as A, the Jacobian of a lookup.

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> X = md.one_hot(np.array([2, 0, 1]), 3)
>>> X.toarray().tolist()
[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]

The Jacobian of the lookup X @ E with respect to the table E (3, 4):

>>> J = md.jacobian_awb(X, None, W_shape=(3, 4))
>>> J.shape
(3, 4, 3, 4)
"""
