"""Benchmark rows for matderiv.dask (`python -m matderiv bench`, when dask is installed).

Rows/second of the batched functions on dask arrays chunked along B, against the
in-memory call on the same arrays, in one run: the threaded scheduler for every B
(the statistics at one B: sum_grad_squared, grad_variance, kfac_factors, and the dot
products of a numpy test batch of TEST rows against the chunked set, TracIn-style),
and (full mode) a LocalCluster of 2 worker processes with X and G persisted on the
workers (G = cos(X), chunk by chunk, so that each chunk pair shares a worker).  m = n = 64, float64; chunks of 2^16 rows (2^13 with --quick).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import dask
import dask.array as da
import numpy as np

from .. import _batch, gradients, statistics
from .timing import Row, best_time

WIDTH = 64
TEST = 256
#: What a ratio means in this section (printed at its header).
RATIO = "ratio = the dask call's time / the same call's in memory (above 1: what chunking costs)"


def _label(func: str, B: int, where: str, seconds: float) -> str:
    return f"dask {func} B=2^{B.bit_length() - 1} {where} {B / seconds / 1e6:5.1f} Mrow/s"


def _rows(
    X: np.ndarray, G: np.ndarray, Xd: da.Array, Gd: da.Array, where: str,
    compute: Callable[..., tuple[object, ...]], funcs: tuple[str, ...], repeat: int,
) -> Iterator[Row]:
    """One row per function: the dask call computed by `compute`, the in-memory call."""
    max_norm = float(np.median(gradients.per_sample_grad_norms(X[:4096], G[:4096])))
    X2, G2 = X[:TEST].copy(), np.cos(X[:TEST])  # the "test batch"
    calls = {
        "batch_grad": (lambda A, C: (gradients.batch_grad(A, C),)),
        "clip_and_sum": (lambda A, C: gradients.clip_and_sum(A, C, max_norm)),
        "per_sample_grad_norms": (lambda A, C: (gradients.per_sample_grad_norms(A, C),)),
        "sum_grad_squared": (lambda A, C: (statistics.sum_grad_squared(A, C),)),
        "grad_variance": (lambda A, C: (statistics.grad_variance(A, C),)),
        "kfac_factors": (lambda A, C: statistics.kfac_factors(A, C)),
        "per_sample_grad_dots": (lambda A, C: (statistics.per_sample_grad_dots(A, C, X2, G2),)),
    }
    for func in funcs:
        call = calls[func]
        memory = best_time(lambda: call(X, G), repeat)
        lazy = best_time(lambda: compute(*call(Xd, Gd)), repeat)
        yield Row(_label(func, X.shape[0], where, lazy), lazy, None, {f"in-memory {func}": memory})


@contextlib.contextmanager
def local_cluster() -> Iterator[object]:
    """A client of a LocalCluster of 2 single-threaded worker processes.  Starting one
    sets OMP_NUM_THREADS=1 and OPENBLAS_NUM_THREADS=1 in this process as well: the
    environment is restored as it was."""
    import distributed

    saved = dict(os.environ)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
    client = distributed.Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def dask_rows(quick: bool) -> Iterator[Row]:
    """Threaded rows for B = 2^16 ... 2^22 (quick: 2^14, 2^15), then, in full mode,
    distributed rows for B = 2^16 ... 2^20 (the cluster runs only for those), one row at
    a time as it is measured."""
    chunk = 2**13 if quick else 2**16
    sizes = [2**14, 2**15] if quick else [2**k for k in range(16, 23)]
    repeat = 3
    rng = np.random.default_rng(0)
    threaded = lambda *r: dask.compute(*r, scheduler="threads")  # noqa: E731
    for B in sizes:
        X, G = rng.standard_normal((B, WIDTH)), rng.standard_normal((B, WIDTH))
        Xd, Gd = da.from_array(X, chunks=(chunk, WIDTH)), da.from_array(G, chunks=(chunk, WIDTH))
        yield from _rows(X, G, Xd, Gd, "threads", threaded, _funcs(B, sizes), repeat)
        del X, G, Xd, Gd
    if quick:
        return
    with local_cluster() as client:
        for B in sizes[: sizes.index(2**20) + 1]:
            # Generated and persisted on the workers, G from X chunk by chunk (as a model
            # computes it), so that the chunks of a pair share a worker:
            Xw = da.random.default_rng(B).standard_normal((B, WIDTH), chunks=(chunk, WIDTH))
            Xp, Gp = client.persist([Xw, da.cos(Xw)])
            # fresh copies: arrays that come back from workers can start at odd addresses
            X, G = (np.array(A) for A in client.compute([Xp, Gp], sync=True))
            yield from _rows(X, G, Xp, Gp, "2procs", lambda *r: client.compute(r, sync=True), _funcs(B, sizes), repeat)
            del X, G, Xp, Gp


STATS = ("sum_grad_squared", "grad_variance", "kfac_factors", "per_sample_grad_dots")


def _funcs(B: int, sizes: list[int]) -> tuple[str, ...]:
    """batch_grad and clip_and_sum everywhere, the norms too at B = 2^20 and the largest B,
    the statistics at B = 2^20 (quick: the largest B)."""
    return (
        ("batch_grad", "clip_and_sum")
        + (("per_sample_grad_norms",) if B in (2**20, sizes[-1]) else ())
        + (STATS if B == min(2**20, sizes[-1]) else ())
    )
