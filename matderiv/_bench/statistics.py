"""Benchmark rows for the gradient statistics (`python -m matderiv bench`).

Each row times matderiv against the GEMMs the statistic amounts to (the plain numpy
way) and, where it fits in memory, against materializing the per-sample gradients.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .. import _batch, combined, gradients, statistics
from .timing import Row, best_time, data

#: What a ratio means in this section (printed at its header).
RATIO = "ratio = matderiv time / the reference's (below 1: faster); one batch_grad is one GEMM: a lower bound"
#: Materializing references run only when the (B, n, m) stack is at most this large.
MATERIALIZE_LIMIT = 512 * 2**20


def _grads(X: np.ndarray, G: np.ndarray) -> np.ndarray:
    """The per-sample gradients, materialized: the reference matderiv avoids."""
    return np.einsum("bi,bj->bij", G, X) if X.ndim == 2 else np.matmul(G.transpose(0, 2, 1), X)


def _fits(X: np.ndarray, G: np.ndarray) -> bool:
    return X.shape[0] * X.shape[-1] * G.shape[-1] * X.dtype.itemsize <= MATERIALIZE_LIMIT


def _dims(X: np.ndarray) -> str:
    lead = f"B={X.shape[0]}" + (f" T={X.shape[1]}" if X.ndim == 3 else "")
    return f"{X.ndim}-D {lead} n=m={X.shape[-1]} {X.dtype.name}"


def _squares(X: np.ndarray, G: np.ndarray, repeat: int) -> Iterator[Row]:
    refs = {"one batch_grad": best_time(lambda: gradients.batch_grad(X, G), repeat)}
    if X.ndim == 2:
        refs["numpy (G*G).T @ (X*X)"] = best_time(lambda: np.square(G).T @ np.square(X), repeat)
    if _fits(X, G):
        refs["materialize, square, sum"] = best_time(lambda: np.square(_grads(X, G)).sum(axis=0), repeat)
    ours = best_time(lambda: statistics.sum_grad_squared(X, G), repeat)
    yield Row(f"sum_grad_squared {_dims(X)}", ours, None, refs)
    var_refs = {"one batch_grad": refs["one batch_grad"], "matderiv sum_grad_squared": ours}
    if _fits(X, G):
        var_refs["np.var(materialized)"] = best_time(lambda: np.var(_grads(X, G), axis=0), repeat)
    yield Row(f"grad_variance {_dims(X)}", best_time(lambda: statistics.grad_variance(X, G), repeat), None, var_refs)


def _dots(X: np.ndarray, G: np.ndarray, repeat: int) -> Row:
    refs = {}
    if X.ndim == 2:
        refs["numpy (G@G.T)*(X@X.T)"] = best_time(lambda: (G @ G.T) * (X @ X.T), repeat)
    else:
        Gf, Xf = _batch.rows(G), _batch.rows(X)
        B, T = X.shape[:2]
        refs["numpy Gram (B T)^2 trick"] = best_time(
            lambda: ((Gf @ Gf.T) * (Xf @ Xf.T)).reshape(B, T, B, T).sum(axis=(1, 3)), repeat
        )
        b = _batch.Inputs(X, G).load([], what="bench")
        for route in _batch.ROUTES:
            refs[f"matderiv forced {route}"] = best_time(lambda: statistics.grad_dots(b, b, True, False, route), repeat)
    if _fits(X, G):

        def materialize() -> np.ndarray:
            P = _grads(X, G).reshape(X.shape[0], -1)
            return P @ P.T

        refs["materialize, P @ P.T"] = best_time(materialize, repeat)
    ours = best_time(lambda: statistics.per_sample_grad_dots(X, G), repeat)
    picked = "" if X.ndim == 2 else f" ({statistics.dots_route(b, b)})"
    return Row(f"per_sample_grad_dots {_dims(X)}{picked}", ours, None, refs)


def _kfac(X: np.ndarray, G: np.ndarray, repeat: int) -> Row:
    Xf, Gf = _batch.rows(X), _batch.rows(G)
    refs = {"numpy X.T @ X, G.T @ G": best_time(lambda: (Xf.T @ Xf, Gf.T @ Gf), repeat)}
    nm = X.shape[-1] * G.shape[-1]
    if _fits(X, G) and nm * nm * X.dtype.itemsize <= MATERIALIZE_LIMIT:  # the (nm, nm) Fisher too

        def materialize() -> np.ndarray:
            P = _grads(X, G).transpose(0, 2, 1).reshape(X.shape[0], -1)  # vec_F rows
            return P.T @ P

        refs["materialize, full Fisher"] = best_time(materialize, repeat)
    ours = best_time(lambda: statistics.kfac_factors(X, G), repeat)
    return Row(f"kfac_factors {_dims(X)}", ours, None, refs)


def _float32_vs_float64(rng: np.random.Generator, lead: tuple[int, ...], nm: int, repeat: int) -> Iterator[Row]:
    X, G = data(rng, lead, nm, nm, np.float64)
    X32, G32 = X.astype(np.float32), G.astype(np.float32)
    for name, fn in (("sum_grad_squared", statistics.sum_grad_squared), ("per_sample_grad_dots", statistics.per_sample_grad_dots)):
        ref = {"the float64 call": best_time(lambda: fn(X, G), repeat)}
        yield Row(f"{name} {_dims(X32)}", best_time(lambda: fn(X32, G32), repeat), None, ref)


def _batch_stats(X: np.ndarray, G: np.ndarray, repeat: int) -> Iterator[Row]:
    """batch_stats against the single function that does the shared work (or the two GEMMs)."""
    Xf, Gf = _batch.rows(X), _batch.rows(G)
    cases = (
        (("grad", "variance"), {"grad_variance alone": lambda: statistics.grad_variance(X, G)}),
        (("norms", "clipped"), {"clip_and_sum alone": lambda: gradients.clip_and_sum(X, G, 1.0)}),
        (("grad", "sum_grad_squared"), {"numpy G.T @ X, (G*G).T @ (X*X)": lambda: (Gf.T @ Xf, np.square(Gf).T @ np.square(Xf))}
         if X.ndim == 2 else {"batch_grad + sum_grad_squared": lambda: (gradients.batch_grad(X, G), statistics.sum_grad_squared(X, G))}),
    )
    for what, refs in cases:
        ours = best_time(lambda: combined.batch_stats(X, G, what, max_norm=1.0), repeat)
        yield Row(f"batch_stats {'+'.join(what)} {_dims(X)}", ours, None,
                  {name: best_time(fn, repeat) for name, fn in refs.items()})


def statistics_rows(quick: bool) -> Iterator[Row]:
    """Every statistics benchmark row, one at a time as it is measured; quick=True: smaller
    sizes and fewer repeats."""
    rng = np.random.default_rng(0)
    r = 3 if quick else 5
    if quick:
        B2, n2, B3, T3, n3, Bd, nd = 512, 128, 16, 32, 128, 256, 128
    else:
        B2, n2, B3, T3, n3, Bd, nd = 4096, 512, 64, 128, 256, 1024, 256
    X, G = data(rng, (B2,), n2, n2, np.float64)
    yield from _squares(X, G, r)
    yield _kfac(X, G, r)
    X, G = data(rng, (B3, T3), n3, n3, np.float64)
    yield from _squares(X, G, r)
    yield _kfac(X, G, r)
    yield _dots(*data(rng, (Bd,), nd, nd, np.float64), r)
    yield _dots(*data(rng, (B3, T3 // 8), n3, n3, np.float64), r)  # short sequences: Gram
    yield _dots(*data(rng, (B3 // 2, T3), n3 // 4, n3 // 4, np.float64), r)  # long, small layer
    yield from _float32_vs_float64(rng, (Bd,), nd, r)
    for dtype in (np.float64, np.float32):
        yield from _batch_stats(*data(rng, (B2,), n2, n2, dtype), r)
