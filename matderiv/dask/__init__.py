"""The batched gradient functions and their statistics on dask arrays.

The arrays are chunked along the batch axis B, for example::

    import dask.array as da
    X = da.random.standard_normal((2**22, 64), chunks=(2**16, 64))
    dW, norms = matderiv.dask.clip_and_sum(X, G, 1.0)     # lazy; .compute() runs it

Same names, arguments, conventions and errors as the in-memory functions (which the
top-level names call for dask inputs); every task runs the in-memory function on one
chunk pair.  Results are lazy dask arrays: per-sample results keep X's chunks along B,
reductions are one pass with a tree of small partials and come as one chunk.  Needs
the optional dependencies: pip install matderiv[dask].

per_sample_grads, batch_grad, per_sample_grad_norms, clip_and_sum
    The batched gradients.
sum_grad_squared, grad_variance, per_sample_grad_dots, kfac_factors, batch_stats
    Their statistics.
"""
try:
    import dask.array  # noqa: F401
    import threadpoolctl  # noqa: F401
except ImportError as exc:
    raise ImportError(
        f"matderiv.dask needs the optional dependencies dask[array] and threadpoolctl ({exc}); "
        "install them with: pip install matderiv[dask]"
    ) from exc

from .. import combined as in_memory_combined, gradients as in_memory, statistics as in_memory_statistics
from .._dispatch import register
from .combined import batch_stats
from .gradients import batch_grad, clip_and_sum, per_sample_grad_norms, per_sample_grads
from .statistics import grad_variance, kfac_factors, per_sample_grad_dots, sum_grad_squared

__all__ = [
    "batch_grad", "batch_stats", "clip_and_sum", "grad_variance", "kfac_factors", "per_sample_grad_dots",
    "per_sample_grad_norms", "per_sample_grads", "sum_grad_squared",
]

# The top-level functions route dask inputs to these (see matderiv._dispatch).
for _public, _lazy in (
    (in_memory.per_sample_grads, per_sample_grads),
    (in_memory.batch_grad, batch_grad),
    (in_memory.per_sample_grad_norms, per_sample_grad_norms),
    (in_memory.clip_and_sum, clip_and_sum),
    (in_memory_statistics.sum_grad_squared, sum_grad_squared),
    (in_memory_statistics.grad_variance, grad_variance),
    (in_memory_statistics.per_sample_grad_dots, per_sample_grad_dots),
    (in_memory_statistics.kfac_factors, kfac_factors),
    (in_memory_combined.batch_stats, batch_stats),
):
    register(_public, _lazy)
