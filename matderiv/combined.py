"""Several statistics of one batch in one call, sharing the work (as BackPACK extends one
backward pass): the gradient and the sum of squares come out of the variance's moments,
and the norms out of the clipped sum's pass.

    stats = md.batch_stats(X, G, ("grad", "variance", "norms", "clipped"), max_norm=1.0)
    stats["variance"], stats["norms"]
"""
from __future__ import annotations

from typing import Any

from numpy.typing import ArrayLike

from . import _moments
from . import _validation as v
from ._batch import CONVENTIONS, Inputs
from ._dispatch import dask_aware
from .gradients import batch_grad, clip_and_sum, per_sample_grad_norms
from .statistics import kfac_factors, sum_grad_squared
from ._docs import doc, statistics as D

__all__ = ["STATS", "batch_stats"]

#: The names batch_stats computes.
STATS = ("grad", "norms", "clipped", "sum_grad_squared", "variance", "kfac")
#: Those the variance's moments give.
FROM_MOMENTS = frozenset(("grad", "sum_grad_squared", "variance"))


@doc(D.BATCH_STATS)
@dask_aware
def batch_stats(
    X: ArrayLike,
    G: ArrayLike,
    what: list[str] | tuple[str, ...],
    *,
    max_norm: float | None = None,
    convention: str = "Wx",
    bias: bool = False,
    ddof: int = 0,
    max_bytes: int | None = None,
    n_threads: int | None = None,
) -> dict[str, Any]:
    want, clip, bias, ddof = check_args(what, max_norm, convention, bias, ddof, n_threads)
    inp = Inputs(X, G)
    b = inp.load(output_parts(inp, want, convention, bias), what="batch_stats", max_bytes=max_bytes)
    same = {"convention": convention, "bias": bias, "max_bytes": max_bytes}
    results: dict[str, Any] = {}
    if "variance" in want:
        results.update(_moments.moments(b, bias).results(want & FROM_MOMENTS, ddof, convention, b.dtype))
    return gather(FUNCTIONS, b.X, b.G, want, results, clip, n_threads, same)


#: The single functions batch_stats calls for what the moments do not give.
FUNCTIONS = {"grad": batch_grad, "sum_grad_squared": sum_grad_squared, "clipped": clip_and_sum,
             "norms": per_sample_grad_norms, "kfac": kfac_factors}


def gather(functions: dict[str, Any], X: Any, G: Any, want: frozenset[str], results: dict[str, Any],
           clip: float | None, n_threads: int | None, same: dict[str, Any]) -> dict[str, Any]:
    """The names of `want` not yet in `results`, each from its function in `functions` (the
    in-memory ones or matderiv.dask's): "norms" with "clipped" from one clip_and_sum.
    Returns every name of want, in the order of STATS."""
    for name in ("grad", "sum_grad_squared"):
        if name in want and name not in results:
            results[name] = functions[name](X, G, **same)
    if "clipped" in want:
        *clipped, norms = functions["clipped"](X, G, clip, n_threads=n_threads, **same)
        results["clipped"] = tuple(clipped) if same["bias"] else clipped[0]
        if "norms" in want:
            results["norms"] = norms
    elif "norms" in want:
        results["norms"] = functions["norms"](X, G, bias=same["bias"], n_threads=n_threads)
    if "kfac" in want:
        results["kfac"] = functions["kfac"](X, G, bias=same["bias"], max_bytes=same["max_bytes"])
    return {name: results[name] for name in STATS if name in want}


def check_args(what: Any, max_norm: Any, convention: Any, bias: Any, ddof: Any, n_threads: Any) -> tuple:
    """(want, clip, bias, ddof) checked: the names asked for, the clipping norm (None where
    not given), the flag and ddof (in memory and on dask)."""
    want = v.check_names(what, "what", STATS)
    if "clipped" in want and max_norm is None:
        raise ValueError("max_norm: \"clipped\" in what needs max_norm (the clipping norm), got None")
    clip = v.positive_float(max_norm, "max_norm") if max_norm is not None else None
    v.check_choice(convention, "convention", CONVENTIONS)
    v.n_threads_value(n_threads)
    return want, clip, v.check_flag(bias, "bias"), v.check_size(ddof, "ddof")


def output_parts(inp: Inputs, want: frozenset[str], convention: str, bias: bool) -> list:
    """The (shape, dtype) of every output named in want, counted together."""
    weight = inp.parts(inp.w_shape(convention), bias)
    parts = [part for name in ("grad", "clipped", "sum_grad_squared", "variance") if name in want for part in weight]
    if want & {"norms", "clipped"}:
        parts.append(((inp.B,), inp.dtype))
    if "kfac" in want:
        parts += [((inp.m + bias,) * 2, inp.dtype), ((inp.n,) * 2, inp.dtype)]
    return parts
