"""batch_stats on dask arrays chunked along B: the names of matderiv.batch_stats, each a
lazy result; "grad", "sum_grad_squared" and "variance" together from one tree of merged
moments (one pass over the data), the others from their own lazy functions ("norms" with
"clipped" from one clip_and_sum)."""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .. import _batch, _moments
from .._batch import Inputs
from .._memory import check_output_bytes
from ..combined import FROM_MOMENTS, STATS, check_args, gather, output_parts
from .gradients import batch_grad, clip_and_sum, per_sample_grad_norms
from ._graph import Chunks, check_max_bytes, checked, inputs
from .statistics import chunk_moments, kfac_factors, merge_moments, sum_grad_squared
from .._docs import dask as D, doc

__all__ = ["batch_stats"]


@doc(D.BATCH_STATS)
def batch_stats(X: Any, G: Any, what: Any, *, max_norm: float | None = None, convention: str = "Wx",
                bias: bool = False, ddof: int = 0, max_bytes: int | None = None,
                n_threads: int | None = None) -> dict[str, Any]:
    want, clip, bias, ddof = check_args(what, max_norm, convention, bias, ddof, n_threads)
    check_max_bytes(max_bytes)
    Xd, Gd, dtype = inputs(X, G)
    parts = output_parts(Inputs(checked(Xd, "X"), checked(Gd, "G")), want, convention, bias)
    check_output_bytes(parts, what="batch_stats", max_bytes=max_bytes, hint="")  # all outputs, now
    same = {"convention": convention, "bias": bias, "max_bytes": max_bytes}
    results: dict[str, Any] = {}
    if "variance" in want:
        results.update(_from_moments(Xd, Gd, want & FROM_MOMENTS, ddof, convention, bias, dtype))
    return gather(FUNCTIONS, Xd, Gd, want, results, clip, n_threads, same)


#: The lazy single functions batch_stats calls for what the moments do not give.
FUNCTIONS = {"grad": batch_grad, "sum_grad_squared": sum_grad_squared, "clipped": clip_and_sum,
             "norms": per_sample_grad_norms, "kfac": kfac_factors}


def _from_moments(Xd: Any, Gd: Any, want: frozenset[str], ddof: int, convention: str, bias: bool,
                  dtype: np.dtype) -> dict[str, Any]:
    """The names of `want` from one tree of merged moments, each (W's shape[, (n,)])."""
    names = [name for name in STATS if name in want]
    n, m = Gd.shape[-1], Xd.shape[-1]
    each = [(_batch.w_shape(n, m, convention), dtype)] + ([((n,), dtype)] if bias else [])
    chunks = Chunks(chunk_moments, Xd, Gd, bias=bias)
    finalize = functools.partial(_flat_results, names, ddof, convention, dtype)
    flat = chunks.reduction(range(len(_moments.Moments._fields)), merge_moments, finalize, each * len(names))
    k = len(each)
    return {name: flat[i * k] if k == 1 else flat[i * k : (i + 1) * k] for i, name in enumerate(names)}


def _flat_results(names: list[str], ddof: int, convention: str, dtype: np.dtype, part: tuple[Any, ...]) -> tuple:
    """The merged moments' results for `names`, in that order, pairs flattened."""
    found = _moments.Moments(*part).results(frozenset(names), ddof, convention, dtype)
    return tuple(x for name in names for x in (found[name] if isinstance(found[name], tuple) else (found[name],)))
