"""The docstrings of matderiv.gradients: per_sample_grads, batch_grad, per_sample_grad_norms
and clip_and_sum."""
from .common import BIAS, indented, CONVENTION, DASK, DTYPE_RULE, GRADIENT, MAX_BYTES, N_THREADS, raises, STRUCTURED_X, G, X

PER_SAMPLE_GRADS = f"""Compute the weight gradient of every sample of a batch.

For a linear layer f = W @ x (or f = x @ W) under a scalar loss L, with X the
layer's inputs and G = dL/df the upstream gradients, return the stack of
per-sample gradients dL/dW, one per sample.

Parameters
----------
{X}
{G}
convention : {{"Wx", "xW"}}, default "Wx"
    "Wx" (f = W @ x, W of shape (n, m)) gives out[b] = outer(G[b], X[b]), shape
    (B, n, m); "xW" (f = x @ W, W of shape (m, n)) gives the transposes, (B, m, n).
bias : bool, default False
    Also return the bias gradients db, shape (B, n): db[b] = G[b] (2-D) or
    sum_t G[b, t] (3-D).
out : numpy.ndarray, optional
    Array to write the weight gradients into: C-contiguous, writeable, of the
    result's shape and dtype and not overlapping X or G.  It is returned.
{MAX_BYTES}
{N_THREADS}

Returns
-------
dW : numpy.ndarray, shape (B, n, m) or (B, m, n)
    The per-sample weight gradients.
    {indented(DTYPE_RULE)}
db : numpy.ndarray, shape (B, n)
    The per-sample bias gradients (a new array), only with bias=True.

Raises
------
{raises("bias is not a bool, max_bytes or n_threads not an int, or out not a numpy.ndarray", 'convention is not "Wx" or "xW", n_threads is out of range, max_bytes is negative, or out has the wrong shape or dtype, is not C-contiguous, aligned and writeable, or overlaps X or G')}

See Also
--------
batch_grad : The sum of the per-sample gradients, without forming them.
per_sample_grad_norms : Their norms, without forming them.
clip_and_sum : Their clipped sum (DP-SGD), without forming them.

Notes
-----
{GRADIENT}

The stack holds B n m numbers, often far more than X and G: form it only where the
gradients are needed one by one.  2-D inputs are written by a parallel kernel that
writes every output entry once; sequences are one batched matrix product
G[b].T @ X[b].

{STRUCTURED_X}

{DASK}

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> rng = np.random.default_rng(0)
>>> X, G = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
>>> dW = md.per_sample_grads(X, G)
>>> dW.shape
(4, 2, 3)
>>> np.allclose(dW, np.einsum("bn,bm->bnm", G, X))
True

Sequences sum their steps; "xW" gives the transposes, and bias=True the bias
gradients too:

>>> X3, G3 = rng.standard_normal((4, 5, 3)), rng.standard_normal((4, 5, 2))
>>> dW, db = md.per_sample_grads(X3, G3, convention="xW", bias=True)
>>> dW.shape, db.shape
((4, 3, 2), (4, 2))
>>> np.allclose(dW, np.einsum("btm,btn->bmn", X3, G3)), np.allclose(db, G3.sum(axis=1))
(True, True)
"""

BATCH_GRAD = f"""Compute the weight gradient of a whole batch, the sum (or mean) of its samples'.

Parameters
----------
{X}
{G}
{CONVENTION}
reduce : {{"sum", "mean"}}, default "sum"
    "sum" gives sum_b g_b; "mean" divides it by B, the number of samples (not by
    B T: the steps of a sequence add up within their sample).
{BIAS}
{MAX_BYTES}

Returns
-------
dW : numpy.ndarray, shape (n, m) or (m, n)
    G.T @ X over all B T rows ("Wx", (n, m)) or X.T @ G ("xW", (m, n)).
    {indented(DTYPE_RULE)}
db : numpy.ndarray, shape (n,)
    The sum (or mean) of G over samples and steps, only with bias=True.

Raises
------
{raises("bias is not a bool or max_bytes not an int", 'convention is not "Wx" or "xW", reduce not "sum" or "mean", or max_bytes negative')}

See Also
--------
per_sample_grads : The gradients one by one.
clip_and_sum : The sum of clipped per-sample gradients.
batch_stats : Several statistics of one batch in one call.

Notes
-----
One matrix product over all B T rows: dW = sum_b g_b, where
{GRADIENT}
With reduce="mean" an empty batch (B = 0) gives NaN (0 / 0), as np.mean of an
empty axis does.

{STRUCTURED_X}

{DASK}

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> rng = np.random.default_rng(0)
>>> X, G = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
>>> dW = md.batch_grad(X, G)
>>> dW.shape, np.allclose(dW, G.T @ X)
((2, 3), True)
>>> mean = md.batch_grad(X, G, reduce="mean")
>>> np.allclose(mean, md.per_sample_grads(X, G).mean(axis=0))
True
>>> dW, db = md.batch_grad(X, G, convention="xW", bias=True)
>>> dW.shape, np.allclose(db, G.sum(axis=0))
((3, 2), True)
"""

PER_SAMPLE_GRAD_NORMS = f"""Compute the Frobenius norm of every sample's gradient without forming the gradients.

Parameters
----------
{X}
{G}
bias : bool, default False
    Include the bias gradient: the norm of the whole gradient,
    sqrt(||g_b||^2 + ||db_b||^2).
{N_THREADS}

Returns
-------
numpy.ndarray, shape (B,)
    ||g_b||, the same for both conventions (a transpose keeps the norm).
    {indented(DTYPE_RULE)}

Raises
------
{raises("bias is not a bool or n_threads not an int", "n_threads is out of range")}

See Also
--------
per_sample_grads : The gradients themselves.
clip_and_sum : Clip to a norm and sum, in one pass.
per_sample_grad_dots : All inner products <g_a, g_b>.

Notes
-----
{GRADIENT}

2-D inputs factor: ||outer(G[b], X[b])|| = ||G[b]|| ||X[b]||, in O(B (n + m)) time
and memory, accurate over the whole floating-point range.  For sequences one of
two routes is taken, whichever costs fewer multiply-adds:

* the Gram route, ||g_b||^2 = sum_(t, s) <G[b, t], G[b, s]> <X[b, t], X[b, s]>,
  about T^2 (n + m + 1) per sample, cheaper roughly when T < n m / (n + m);
* forming g_b block by block (about (T + 1) n m per sample) and summing its
  squares.

Both work on blocks of samples, so temporaries stay small (a few MiB).  The Gram
sum can cancel: where the steps of a gradient nearly cancel, its norm is accurate
to about sqrt(eps) ||G[b]|| ||X[b]|| (round-off below zero is clamped to 0), and as
both routes form squared norms, a float64 norm below about 1e-154 carries an
absolute error of about 1e-162.  Every dot product accumulates in float64, for
float32 inputs too.  A sample with an infinite or NaN input gets the norm of its
formed gradient: NaN where an entry of g_b is NaN (0 * inf included), else inf.
{STRUCTURED_X}

{DASK}

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> rng = np.random.default_rng(0)
>>> X, G = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
>>> norms = md.per_sample_grad_norms(X, G)
>>> norms.shape
(4,)
>>> np.allclose(norms, np.linalg.norm(md.per_sample_grads(X, G), axis=(1, 2)))
True

With a bias, the norm of the weight and the bias gradient together:

>>> with_bias = md.per_sample_grad_norms(X, G, bias=True)
>>> np.allclose(with_bias**2, norms**2 + (G**2).sum(axis=1))
True
"""

CLIP_AND_SUM = f"""Clip every sample's gradient to a maximal norm and sum them, as DP-SGD does.

Parameters
----------
{X}
{G}
max_norm : float
    The clipping norm c > 0 (finite).
{CONVENTION}
bias : bool, default False
    Clip the whole gradient, weight and bias together, and also return the
    clipped sum of the bias gradients.
{MAX_BYTES}
{N_THREADS}

Returns
-------
dW : numpy.ndarray, shape (n, m) or (m, n)
    The clipped sum sum_b c_b g_b, of W's shape for the convention.
    {indented(DTYPE_RULE)}
db : numpy.ndarray, shape (n,)
    The clipped sum of the bias gradients, sum_b c_b db_b, only with bias=True.
norms : numpy.ndarray, shape (B,)
    The unclipped norms ||g_b|| (with bias=True, of weight and bias together).

Raises
------
{raises("max_norm is not a number, bias not a bool, or max_bytes or n_threads not an int", 'max_norm is not positive and finite, convention not "Wx" or "xW", n_threads out of range or max_bytes negative')}

See Also
--------
per_sample_grad_norms : The norms alone.
batch_grad : The unclipped sum.
batch_stats : The clipped sum with other statistics, in one call.

Notes
-----
dW = sum_b c_b g_b with c_b = min(1, max_norm / ||g_b||), where

{GRADIENT}

||g_b|| is the norm of sample b's whole gradient (with bias=True,
sqrt(||g_b||^2 + ||db_b||^2)); a zero-norm sample has c_b = 1.  No per-sample
gradient is formed for 2-D inputs and short sequences: the sum is one matrix
product taken a cache-sized block of rows at a time, the narrower of G and X scaled
by c_b in front of each block's product (for 2-D inputs the block's norms and
factors come from the same pass, so G and X are read once); no scaled copy of an
input is made (memory O(B + n m) beyond the inputs).  For long sequences the gradients
are formed a block of samples at a time, each block giving its norms, factors and
share of the sum, so none is formed twice.

Infinite and NaN inputs follow the arithmetic of c_b g_b (they are not dropped):
a NaN norm gives c_b = NaN, which makes all of dW NaN; an infinite norm gives
c_b = 0, and 0 * inf is NaN where g_b is infinite.

{STRUCTURED_X}

{DASK}

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> rng = np.random.default_rng(0)
>>> X, G = rng.standard_normal((16, 3)), rng.standard_normal((16, 2))
>>> dW, norms = md.clip_and_sum(X, G, 1.0)
>>> dW.shape, norms.shape
((2, 3), (16,))

The same as clipping the formed gradients one by one:

>>> g = md.per_sample_grads(X, G)
>>> c = np.minimum(1.0, 1.0 / np.linalg.norm(g, axis=(1, 2)))
>>> np.allclose(dW, np.einsum("b,bnm->nm", c, g))
True
>>> bool(np.all(np.linalg.norm(c[:, None, None] * g, axis=(1, 2)) <= 1 + 1e-12))
True
"""
