"""The docstrings of matderiv.statistics (sum_grad_squared, grad_variance, per_sample_grad_dots,
kfac_factors) and matderiv.combined (batch_stats)."""
from .common import (
    BIAS, CONVENTION, DASK, DTYPE_RULE, GRADIENT, MAX_BYTES, N_THREADS, STRUCTURED_X, G, X, indented, raises,
)

SUM_GRAD_SQUARED = f"""Compute the sum of the squared per-sample gradients, the diagonal empirical Fisher.

Parameters
----------
{X}
{G}
{CONVENTION}
{BIAS}
{MAX_BYTES}

Returns
-------
dW2 : numpy.ndarray, shape (n, m) or (m, n)
    The sum sum_b g_b * g_b (elementwise), of W's shape for the convention.
    {indented(DTYPE_RULE)}
db2 : numpy.ndarray, shape (n,)
    The sum sum_b db_b * db_b, only with bias=True.

Raises
------
{raises("bias is not a bool or max_bytes not an int", 'convention is not "Wx" or "xW" or max_bytes is negative')}

See Also
--------
grad_variance : The variance of the per-sample gradients.
kfac_factors : A Kronecker-factored curvature approximation.
batch_stats : Several statistics of one batch in one call.

Notes
-----
{GRADIENT}

For 2-D inputs the sum is one matrix product, (G * G).T @ (X * X) for "Wx", taken a
cache-sized block of rows at a time with each block's squares formed in front of
its product: no squared copy of G or X.
Sequences form the per-sample gradients a block of samples at a time (a few MiB),
square and sum them (in float64 across blocks): never the whole (B, n, m) stack.
An empty batch gives zeros.

{STRUCTURED_X}

{DASK}

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> rng = np.random.default_rng(0)
>>> X, G = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
>>> F = md.sum_grad_squared(X, G)
>>> F.shape, np.allclose(F, (md.per_sample_grads(X, G) ** 2).sum(axis=0))
((2, 3), True)
"""

GRAD_VARIANCE = f"""Compute the variance of the per-sample gradients over the batch, entry by entry.

The result equals np.var(per_sample_grads(X, G), axis=0, ddof=ddof), without the
(B, n, m) stack of per-sample gradients.

Parameters
----------
{X}
{G}
{CONVENTION}
bias : bool, default False
    Also return the variance of the bias gradients, shape (n,).
ddof : int, default 0
    Delta degrees of freedom: the sum of squared deviations is divided by B - ddof.
{MAX_BYTES}

Returns
-------
vW : numpy.ndarray, shape (n, m) or (m, n)
    The variance sum_b (g_b - mean)^2 / (B - ddof), of W's shape for the
    convention.
    {indented(DTYPE_RULE)}
vb : numpy.ndarray, shape (n,)
    The variance of the bias gradients db_b, only with bias=True.

Raises
------
{raises("bias is not a bool, or ddof or max_bytes not an int", 'convention is not "Wx" or "xW", or ddof or max_bytes is negative')}

See Also
--------
sum_grad_squared : The uncentred second moment, summed.
batch_stats : The variance together with the mean gradient and other statistics.

Notes
-----
{GRADIENT}

The result is accurate when the mean dominates the spread: for 2-D inputs, two
matrix products ((G * G).T @ (X * X) - (G.T @ X)^2 / B) are used only where a
sample of the rows shows no dominant mean and the subtraction loses little;
elsewhere X and G are first shifted by their column means, and the sums are
formed in float64 (float32 inputs a block of samples at a time, never copied
whole).  Sequences form the per-sample gradients block by block, each block
centred on its own mean and the blocks merged with Chan's pairwise update in
float64.  The bias variance is two-pass in float64.  With B <= ddof the division
is by zero or less, as np.var does (an empty batch gives NaN).
{STRUCTURED_X}

{DASK}

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> rng = np.random.default_rng(0)
>>> X, G = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
>>> var = md.grad_variance(X, G, ddof=1)
>>> var.shape
(2, 3)
>>> np.allclose(var, md.per_sample_grads(X, G).var(axis=0, ddof=1))
True
"""

DOTS_VALUE = ("only one of X2 and G2 is given, X2 and G2 differ from X and G in their number of "
              "dimensions or width, or max_bytes is negative")

PER_SAMPLE_GRAD_DOTS = f"""Compute the gradient Gram matrix, the inner products of all per-sample gradients.

K[a, b] = <g_a, g'_b> is the layer's empirical neural tangent kernel; with a second
batch (X2, G2) of test samples against training samples (X, G) its entries are
TracIn-style influence scores.

Parameters
----------
{X}
{G}
X2 : array_like, shape (B2, m) or (B2, T2, m), optional
    A second batch's inputs, with X's number of dimensions and width m (its batch
    size and sequence length may differ).  None (with G2 None): X itself.
G2 : array_like, shape (B2, n) or (B2, T2, n), optional
    The second batch's upstream gradients; given together with X2.
bias : bool, default False
    Add the bias gradients' inner products <db_a, db'_b>.
normalize : bool, default False
    Divide by ||g_a|| ||g'_b||, giving cosine similarities (0 where either
    gradient is zero).
{MAX_BYTES}

Returns
-------
numpy.ndarray, shape (B, B2)
    K[a, b] = <g_a, g'_b>, the same for both conventions; B2 = B without a second
    batch, and K then exactly symmetric.  The dtype follows the dtype rule of X
    and G, applied to both batches together.

Raises
------
{raises("bias or normalize is not a bool, or max_bytes not an int", DOTS_VALUE)}

See Also
--------
per_sample_grad_norms : The diagonal of K without the bias, square-rooted.
per_sample_grads : The gradients themselves.

Notes
-----
{GRADIENT}

K is never formed through the (B, n, m) stack.  For 2-D inputs it factors:
K = (G @ G2.T) * (X @ X2.T) (plus G @ G2.T with bias), in blocks so that
temporaries stay small.  For sequences the cheaper by multiply-add counts of two
routes is taken: the Gram route,
K[a, b] = sum_(t, s) <G[a, t], G2[b, s]> <X[a, t], X2[b, s]>, about
B B2 T T2 (n + m) multiply-adds, or forming the per-sample gradients of blocks of
samples and multiplying them, about (B T + B2 T2 + B B2) n m (more where the
second batch's gradients do not all fit at once).  Entries that come out infinite
or NaN are recomputed from formed gradients, so that a 0 * inf in g_a gives NaN
as it does there.  Without a second batch each off-diagonal block is computed once
and mirrored.

{STRUCTURED_X}

{DASK}

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> rng = np.random.default_rng(0)
>>> X, G = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
>>> K = md.per_sample_grad_dots(X, G)
>>> g = md.per_sample_grads(X, G)
>>> K.shape, np.allclose(K, np.einsum("anm,bnm->ab", g, g)), bool((K == K.T).all())
((5, 5), True, True)

Against a second batch, and as cosines:

>>> X2, G2 = rng.standard_normal((2, 3)), rng.standard_normal((2, 2))
>>> md.per_sample_grad_dots(X, G, X2, G2).shape
(5, 2)
>>> cos = md.per_sample_grad_dots(X, G, normalize=True)
>>> np.allclose(np.diag(cos), 1.0)
True
"""

KFAC_FACTORS = f"""Compute the two Kronecker factors of K-FAC's curvature approximation.

A (x) S approximates the uncentred covariance E[vec_F(g) vec_F(g)^T] of the
per-sample gradients (vec_F stacking the columns of the "Wx" gradient g, (n, m)).

Parameters
----------
{X}
{G}
bias : bool, default False
    Append a 1 to every input x (the bias's input): A is then (m + 1, m + 1).
mode : {{"expand", "reduce"}}, default "expand"
    For sequences: "expand" treats every step as a sample of the input
    statistics, "reduce" first averages the steps of each sample (and sums their
    gradients).  The two agree for 2-D inputs.
{MAX_BYTES}

Returns
-------
A : numpy.ndarray, shape (m, m) or (m + 1, m + 1)
    The input factor, exactly symmetric.
    {indented(DTYPE_RULE)}
S : numpy.ndarray, shape (n, n)
    The gradient factor, exactly symmetric.

Raises
------
{raises("bias is not a bool or max_bytes not an int", 'mode is not "expand" or "reduce", or max_bytes is negative')}

See Also
--------
sum_grad_squared : The diagonal of the empirical Fisher.
grad_variance : The variance of the per-sample gradients.

Notes
-----
2-D: A = X.T @ X / B and S = G.T @ G / B; for a single sample A (x) S equals
vec_F(g) vec_F(g)^T exactly.  For sequences, "expand" gives
A = sum_(b, t) X[b, t] X[b, t]^T / (B T) and S = sum_(b, t) G[b, t] G[b, t]^T / B;
"reduce" gives A = sum_b xbar_b xbar_b^T / B with xbar_b = mean_t X[b, t] and
S = sum_b gbar_b gbar_b^T / B with gbar_b = sum_t G[b, t].  With bias=True the
last row and column of A hold the column sums of the inputs divided by the count,
and its corner is 1 (no augmented copy of X is made).  Each factor is one
symmetric rank-k product.  An empty batch gives NaN (0 / 0).

{STRUCTURED_X}
For an `Embedding`, A is diagonal and comes as its diagonal, shape (V,).

{DASK}

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> rng = np.random.default_rng(0)
>>> X, G = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
>>> A, S = md.kfac_factors(X, G)
>>> A.shape, S.shape, np.allclose(A, X.T @ X / 8), np.allclose(S, G.T @ G / 8)
((3, 3), (2, 2), True, True)

For one sample the Kronecker product is exact:

>>> A, S = md.kfac_factors(X[:1], G[:1])
>>> g = md.per_sample_grads(X[:1], G[:1])[0].ravel(order="F")
>>> np.allclose(np.kron(A, S), np.outer(g, g))
True
>>> md.kfac_factors(X, G, bias=True)[0].shape
(4, 4)
"""

BATCH_STATS_TYPE = ("what is not a list or tuple, max_norm not a number, bias not a bool, or ddof, "
                    "max_bytes or n_threads not an int")
BATCH_STATS_VALUE = ('what names an unknown statistic or asks for "clipped" without max_norm, max_norm '
                     'is not positive and finite, convention not "Wx" or "xW", ddof or max_bytes negative, '
                     "or n_threads out of range")

BATCH_STATS = f"""Compute several statistics of one batch in one call, sharing the work between them.

Parameters
----------
{X}
{G}
what : list or tuple of str
    The statistics to compute, any of "grad", "norms", "clipped",
    "sum_grad_squared", "variance" and "kfac".
max_norm : float, optional
    The clipping norm, needed for "clipped".
{CONVENTION}
{BIAS}
ddof : int, default 0
    Delta degrees of freedom of "variance".
{MAX_BYTES}
    All the outputs are counted together, before anything is computed.
{N_THREADS}

Returns
-------
dict
    One entry per name of what, in the order listed above, each equal to its
    own function's result: "grad" to batch_grad(X, G), "norms" to
    per_sample_grad_norms(X, G), "clipped" to clip_and_sum(X, G, max_norm)'s
    gradient(s) without its norms, "sum_grad_squared" to sum_grad_squared(X, G),
    "variance" to grad_variance(X, G, ddof=ddof) and "kfac" to
    kfac_factors(X, G) (the pair (A, S)).  With bias=True each weight result
    comes as the same pair (or triple) as its function gives.

Raises
------
{raises(BATCH_STATS_TYPE, BATCH_STATS_VALUE)}

See Also
--------
batch_grad, per_sample_grad_norms, clip_and_sum, sum_grad_squared, grad_variance
kfac_factors

Notes
-----
Work is shared as one backward pass shares it among several extensions: with
"variance", "grad" (B times the mean) and "sum_grad_squared" (M2 + B mean^2) come
from the variance's moments without another matrix product, and "norms" with
"clipped" come from clip_and_sum's one pass.

{DASK}

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> rng = np.random.default_rng(0)
>>> X, G = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
>>> stats = md.batch_stats(X, G, ("grad", "variance", "norms", "clipped"), max_norm=1.0)
>>> list(stats)
['grad', 'norms', 'clipped', 'variance']
>>> np.allclose(stats["grad"], md.batch_grad(X, G))
True
>>> np.allclose(stats["variance"], md.grad_variance(X, G))
True
"""
