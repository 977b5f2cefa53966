"""The docstrings of matderiv.dask: the batched functions on dask arrays chunked along B."""
import textwrap

from .common import BIAS, CONVENTION, N_THREADS

X = """X : dask.array.Array or array_like, shape (B, m) or (B, T, m)
    The layer's inputs, in chunks along B (a numpy X takes G's chunks, or one
    chunk; other axes are joined into one chunk); chunk sizes must be known."""

G = """G : dask.array.Array or array_like, shape (B, n) or (B, T, n)
    The upstream gradients dL/df, with X's number of dimensions, batch size and
    (3-D) sequence length; rechunked to X's chunks along B where they differ."""

MAX_BYTES = """max_bytes : int, optional
    Passed to every task, bounding what each allocates when computed; checked now
    (a non-negative int) and, where a result has a size known now, against it."""

RAISES = """TypeError
    If X or G is complex or of an unsupported dtype, or an option has the wrong
    type.
ValueError
    If the shapes of X and G do not fit each other, their chunk sizes are
    unknown, or an option is out of range.
OutputTooLargeError
    If a result of known size exceeds max_bytes (at the call); when computed, if a
    task's allocation would."""

LAZY = """The result is lazy: nothing is computed until .compute() (or dask.compute)
runs it, one in-memory call per chunk.  In a worker thread each task runs numpy's BLAS
on one thread, as the scheduler's threads fill the cores."""

SETUP = """>>> import numpy as np
>>> import dask.array as da
>>> import matderiv as md
>>> import matderiv.dask
>>> rng = np.random.default_rng(0)
>>> X = da.from_array(rng.standard_normal((8, 3)), chunks=(4, 3))
>>> G = da.from_array(rng.standard_normal((8, 2)), chunks=(4, 2))"""


def lazy(name: str, summary: str, parameters: str, returns: str, notes: str, check: str, raises: str = RAISES) -> str:
    """The docstring of matderiv.dask.`name`, the lazy matderiv.`name`."""
    return f"""{summary}

Parameters
----------
{parameters}

Returns
-------
{returns}

Raises
------
{raises}

See Also
--------
matderiv.{name} : The in-memory function, with the formulas and routes.

Notes
-----
{textwrap.fill(" ".join(f"Same arguments, conventions and errors as matderiv.{name}, which calls this function when given dask arrays. {notes} {LAZY}".split()), 84)}

Examples
--------
{SETUP}
{check}
"""


PER_SAMPLE_GRADS = lazy(
    "per_sample_grads",
    "Compute every sample's weight gradient lazily, chunk by chunk.",
    f"""{X}
{G}
{CONVENTION}
{BIAS}
out : None
    Must be None: a lazy result cannot be written into an array (store it with
    dask.array.store).
{MAX_BYTES}
{N_THREADS}""",
    """dW : dask.array.Array, shape (B, n, m) or (B, m, n)
    The per-sample gradients, with X's chunks along B.
db : dask.array.Array, shape (B, n)
    The bias gradients, only with bias=True.""",
    "Every chunk of samples is one in-memory call.",
    """>>> dW = md.dask.per_sample_grads(X, G)
>>> dW.shape, dW.chunks[0]
((8, 2, 3), (4, 4))
>>> np.allclose(dW.compute(), md.per_sample_grads(X.compute(), G.compute()))
True""",
    RAISES.replace("type.\nValueError", "type, or out is not None.\nValueError"),
)

BATCH_GRAD = lazy(
    "batch_grad",
    "Compute the weight gradient of a whole batch lazily, by a tree reduction.",
    f"""{X}
{G}
{CONVENTION}
reduce : {{"sum", "mean"}}, default "sum"
    "mean" divides the sum by B, the number of samples.
{BIAS}
{MAX_BYTES}""",
    """dW : dask.array.Array, shape (n, m) or (m, n)
    The sum (or mean) of the per-sample gradients, one chunk.
db : dask.array.Array, shape (n,)
    The bias gradient, only with bias=True.""",
    "Each chunk's batch gradient is summed in a tree of small partials, divided by B at the end for \"mean\".",
    """>>> dW = md.dask.batch_grad(X, G)
>>> np.allclose(dW.compute(), G.compute().T @ X.compute())
True""",
)

PER_SAMPLE_GRAD_NORMS = lazy(
    "per_sample_grad_norms",
    "Compute the norm of every sample's gradient lazily, chunk by chunk.",
    f"""{X}
{G}
bias : bool, default False
    Include the bias gradient in each norm.
{N_THREADS}""",
    """dask.array.Array, shape (B,)
    The norms ||g_b||, with X's chunks along B.""",
    "Every chunk of samples is one in-memory call.",
    """>>> norms = md.dask.per_sample_grad_norms(X, G)
>>> np.allclose(norms.compute(), md.per_sample_grad_norms(X.compute(), G.compute()))
True""",
)

CLIP_AND_SUM = lazy(
    "clip_and_sum",
    "Clip every sample's gradient and sum them lazily, chunk by chunk.",
    f"""{X}
{G}
max_norm : float
    The clipping norm (positive, finite).
{CONVENTION}
{BIAS}
{MAX_BYTES}
{N_THREADS}""",
    """dW : dask.array.Array, shape (n, m) or (m, n)
    The clipped sum, one chunk.
db : dask.array.Array, shape (n,)
    The clipped sum of the bias gradients, only with bias=True.
norms : dask.array.Array, shape (B,)
    The unclipped norms, with X's chunks along B.""",
    "Each task clips and sums its chunk (a sample's clipping factor depends on that sample alone, so the result is exact); the partial sums meet in a tree reduction.",
    """>>> dW, norms = md.dask.clip_and_sum(X, G, 1.0)
>>> expected, _ = md.clip_and_sum(X.compute(), G.compute(), 1.0)
>>> np.allclose(dW.compute(), expected), norms.chunks
(True, ((4, 4),))""",
)

SUM_GRAD_SQUARED = lazy(
    "sum_grad_squared",
    "Compute the sum of the squared per-sample gradients lazily, by a tree reduction.",
    f"""{X}
{G}
{CONVENTION}
{BIAS}
{MAX_BYTES}""",
    """dW2 : dask.array.Array, shape (n, m) or (m, n)
    The sum sum_b g_b * g_b, one chunk.
db2 : dask.array.Array, shape (n,)
    The sum for the bias gradients, only with bias=True.""",
    "One in-memory call per chunk, the sums meeting in a tree reduction.",
    """>>> F = md.dask.sum_grad_squared(X, G)
>>> np.allclose(F.compute(), md.sum_grad_squared(X.compute(), G.compute()))
True""",
)

GRAD_VARIANCE = lazy(
    "grad_variance",
    "Compute the variance of the per-sample gradients lazily, in one pass.",
    f"""{X}
{G}
{CONVENTION}
bias : bool, default False
    Also return the variance of the bias gradients.
ddof : int, default 0
    Delta degrees of freedom: the division is by B - ddof.
{MAX_BYTES}""",
    """vW : dask.array.Array, shape (n, m) or (m, n)
    The variance, one chunk.
vb : dask.array.Array, shape (n,)
    The variance of the bias gradients, only with bias=True.""",
    "Each chunk gives its count, mean and sum of squared deviations (in float64), merged in a tree by Chan et al.'s update: no cancellation where the mean dominates.  An empty batch gives NaN.",
    """>>> var = md.dask.grad_variance(X, G, ddof=1)
>>> np.allclose(var.compute(), md.grad_variance(X.compute(), G.compute(), ddof=1))
True""",
)

PER_SAMPLE_GRAD_DOTS = lazy(
    "per_sample_grad_dots",
    "Compute the inner products of all pairs of per-sample gradients lazily, block by block.",
    f"""{X}
{G}
X2 : dask.array.Array or array_like, optional
    A second batch's inputs (with X's number of dimensions and width), or None
    for X itself.
G2 : dask.array.Array or array_like, optional
    The second batch's upstream gradients, given together with X2.
bias : bool, default False
    Add the bias gradients' inner products.
normalize : bool, default False
    Divide by the norms (cosine similarities; 0 for a zero gradient).
{MAX_BYTES}""",
    """dask.array.Array, shape (B, B2)
    K[a, b] = <g_a, g'_b>, with X's chunks along the rows and X2's (or G2's;
    one chunk when both are numpy arrays) along the columns.""",
    "One in-memory call per pair of chunks; without a second batch K is exactly symmetric (the blocks above the diagonal are mirrored).",
    """>>> K = md.dask.per_sample_grad_dots(X, G)
>>> np.allclose(K.compute(), md.per_sample_grad_dots(X.compute(), G.compute()))
True""",
)

KFAC_FACTORS = lazy(
    "kfac_factors",
    "Compute the K-FAC Kronecker factors lazily, by a tree reduction.",
    f"""{X}
{G}
bias : bool, default False
    Append a 1 to every input (A is then (m + 1, m + 1)).
mode : {{"expand", "reduce"}}, default "expand"
    How sequences are counted, as in matderiv.kfac_factors.
{MAX_BYTES}""",
    """A : dask.array.Array, shape (m, m) or (m + 1, m + 1)
    The input factor, exactly symmetric, one chunk.
S : dask.array.Array, shape (n, n)
    The gradient factor, exactly symmetric, one chunk.""",
    "Each chunk's unnormalized sums are added in a tree and divided by the whole batch's counts at the end.",
    """>>> A, S = md.dask.kfac_factors(X, G)
>>> A0, S0 = md.kfac_factors(X.compute(), G.compute())
>>> np.allclose(A.compute(), A0), np.allclose(S.compute(), S0)
(True, True)""",
)

BATCH_STATS = lazy(
    "batch_stats",
    "Compute several statistics of one batch lazily, sharing the passes over the chunks.",
    f"""{X}
{G}
what : list or tuple of str
    Any of "grad", "norms", "clipped", "sum_grad_squared", "variance" and "kfac".
max_norm : float, optional
    The clipping norm, needed for "clipped".
{CONVENTION}
{BIAS}
ddof : int, default 0
    Delta degrees of freedom of "variance".
max_bytes : int, optional
    All the outputs counted together against it now; passed to every task.
{N_THREADS}""",
    """dict
    One lazy result per name of what, as matderiv.batch_stats gives them.""",
    "The moments of one tree give \"grad\", \"sum_grad_squared\" and \"variance\"; \"norms\" with \"clipped\" come from one clipping pass.",
    """>>> stats = md.dask.batch_stats(X, G, ["grad", "variance"])
>>> np.allclose(stats["grad"].compute(), md.batch_grad(X.compute(), G.compute()))
True""",
)
