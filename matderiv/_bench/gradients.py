"""Benchmark rows for the gradient functions (`python -m matderiv bench`).

Each row times matderiv against the plain numpy way of computing the same thing, in
the same run; memory-bound rows also carry the write-once floor.  "fresh" rows
allocate their output inside the timed call (as a user's first call does), "out="
rows write into a preallocated, already-touched array (as a training loop does).
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .. import _batch, gradients
from .timing import Row, best_time, data, floor_time

#: What a ratio means in this section (printed at its header).
RATIO = "ratio = matderiv time / the reference's (below 1: faster); one batch_grad is one GEMM: a lower bound"


def _per_sample_2d(rng: np.random.Generator, B: int, n: int, m: int, dtype: type, repeat: int) -> Iterator[Row]:
    X, G = data(rng, (B,), n, m, dtype)
    out = np.zeros((B, n, m), dtype=dtype)
    floor = floor_time(out.nbytes, repeat)
    name = f"per_sample_grads 2-D B={B} n=m={n} {np.dtype(dtype).name}"
    multiply_out = best_time(lambda: np.multiply(G[:, :, None], X[:, None, :], out=out), repeat)
    einsum = best_time(lambda: np.einsum("bi,bj->bij", G, X), repeat)
    fresh = best_time(lambda: gradients.per_sample_grads(X, G), repeat)
    yield Row(f"{name} fresh", fresh, floor, {"np.multiply(out=)": multiply_out, "np.einsum fresh": einsum})
    given = best_time(lambda: gradients.per_sample_grads(X, G, out=out), repeat)
    yield Row(f"{name} out=", given, floor, {"np.multiply(out=)": multiply_out})


def _per_sample_3d(rng: np.random.Generator, B: int, T: int, n: int, m: int, repeat: int) -> Iterator[Row]:
    X, G = data(rng, (B, T), n, m, np.float64)
    out = np.zeros((B, n, m))
    name = f"per_sample_grads 3-D B={B} T={T} n=m={n} float64"
    Gt = G.transpose(0, 2, 1)
    matmul = best_time(lambda: np.matmul(Gt, X), repeat)
    fresh = best_time(lambda: gradients.per_sample_grads(X, G), repeat)
    yield Row(f"{name} fresh", fresh, None, {"np.matmul fresh": matmul})
    matmul_out = best_time(lambda: np.matmul(Gt, X, out=out), repeat)
    given = best_time(lambda: gradients.per_sample_grads(X, G, out=out), repeat)
    yield Row(f"{name} out=", given, None, {"np.matmul(out=)": matmul_out})


def _batch_grad(rng: np.random.Generator, B: int, n: int, m: int, repeat: int) -> Row:
    X, G = data(rng, (B,), n, m, np.float64)
    ref = best_time(lambda: G.T @ X, repeat)
    ours = best_time(lambda: gradients.batch_grad(X, G), repeat)
    return Row(f"batch_grad B={B} n=m={n} float64", ours, None, {"G.T @ X": ref})


def _norms_2d(rng: np.random.Generator, B: int, n: int, m: int, repeat: int) -> Row:
    X, G = data(rng, (B,), n, m, np.float64)

    def materialize() -> np.ndarray:
        P = np.einsum("bi,bj->bij", G, X)
        return np.sqrt(np.einsum("bij,bij->b", P, P))

    refs = {
        "materialize + norm (einsum)": best_time(materialize, repeat),
        "np.linalg.norm(G)*norm(X)": best_time(
            lambda: np.linalg.norm(G, axis=1) * np.linalg.norm(X, axis=1), repeat
        ),
    }
    ours = best_time(lambda: gradients.per_sample_grad_norms(X, G), repeat)
    return Row(f"per_sample_grad_norms 2-D B={B} n=m={n} float64", ours, None, refs)


def _norms_float32(rng: np.random.Generator, B: int, nm: int, repeat: int) -> Row:
    """float32 norms accumulate in float64 without a float64 copy (vectorized float ->
    double loads): about half the time of the float64 call where memory-bound, and about
    numpy's float32 einsum (which accumulates in float32)."""
    X, G = data(rng, (B,), nm, nm, np.float64)
    X32, G32 = X.astype(np.float32), G.astype(np.float32)
    refs = {
        "the float64 call": best_time(lambda: gradients.per_sample_grad_norms(X, G), repeat),
        "numpy float32 einsum norms": best_time(
            lambda: np.sqrt(np.einsum("ij,ij->i", G32, G32) * np.einsum("ij,ij->i", X32, X32)), repeat
        ),
        "numpy float64 norms of float32": best_time(
            lambda: np.linalg.norm(G32.astype(np.float64), axis=1) * np.linalg.norm(X32.astype(np.float64), axis=1),
            repeat,
        ),
    }
    ours = best_time(lambda: gradients.per_sample_grad_norms(X32, G32), repeat)
    return Row(f"per_sample_grad_norms 2-D B={B} n=m={nm} float32", ours, None, refs)


def _norms_3d(rng: np.random.Generator, B: int, T: int, n: int, m: int, repeat: int) -> Row:
    X, G = data(rng, (B, T), n, m, np.float64)

    def materialize() -> np.ndarray:
        P = np.matmul(G.transpose(0, 2, 1), X)
        return np.sqrt(np.einsum("bij,bij->b", P, P))

    def gram() -> np.ndarray:
        gg = np.matmul(G, G.transpose(0, 2, 1))
        xx = np.matmul(X, X.transpose(0, 2, 1))
        return np.sqrt(np.einsum("bts,bts->b", gg, xx))

    refs = {
        "numpy materialize + norm": best_time(materialize, repeat),
        "numpy Gram trick": best_time(gram, repeat),
    }
    b, threads = _batch.Inputs(X, G).load([], what="bench"), 1
    for route in _batch.ROUTES:
        refs[f"matderiv forced {route}"] = best_time(lambda: _batch.norms(b, False, threads, route), repeat)
    ours = best_time(lambda: gradients.per_sample_grad_norms(X, G), repeat)
    picked = _batch.norm_route(b)
    return Row(f"per_sample_grad_norms 3-D B={B} T={T} n=m={n} ({picked})", ours, None, refs)


def _clip(rng: np.random.Generator, lead: tuple[int, ...], n: int, m: int, repeat: int, materialize: bool) -> Row:
    X, G = data(rng, lead, n, m, np.float64)
    max_norm = float(np.median(gradients.per_sample_grad_norms(X, G)))
    refs = {"one batch_grad": best_time(lambda: gradients.batch_grad(X, G), repeat)}
    if materialize:

        def materialize_clip_sum() -> np.ndarray:
            P = gradients.per_sample_grads(X, G)
            norms = np.sqrt(np.einsum("bij,bij->b", P, P))
            c = np.minimum(1.0, max_norm / norms)
            return np.einsum("b,bij->ij", c, P)

        refs["materialize-clip-sum"] = best_time(materialize_clip_sum, repeat)
    ours = best_time(lambda: gradients.clip_and_sum(X, G, max_norm), repeat)
    dims = "B=" + "x".join(str(d) for d in lead) if len(lead) == 1 else f"B={lead[0]} T={lead[1]}"
    return Row(f"clip_and_sum {len(lead) + 1}-D {dims} n=m={n} float64", ours, None, refs)


def gradient_rows(quick: bool) -> Iterator[Row]:
    """Every gradient benchmark row, one at a time as it is measured; quick=True: smaller
    sizes and fewer repeats."""
    rng = np.random.default_rng(0)
    r = 3 if quick else 7
    if quick:
        B2, nm, B3, T3, Bb, nb = 128, 128, 16, 64, 1024, 256
    else:
        B2, nm, B3, T3, Bb, nb = 512, 256, 64, 128, 4096, 512
    for dtype in (np.float64, np.float32):
        yield from _per_sample_2d(rng, B2, nm, nm, dtype, r)
    yield from _per_sample_3d(rng, B3, T3, nm, nm, r)
    yield _batch_grad(rng, Bb, nb, nb, r)
    yield _norms_2d(rng, B2, nm, nm, r)
    yield _norms_float32(rng, 2**16 if quick else 2**20, 64, r)
    yield _norms_3d(rng, B3, T3, nm, nm, r)  # the two routes cost about the same here
    yield _norms_3d(rng, B3, T3 // 8, nm, nm, r)  # short sequences: Gram
    yield _norms_3d(rng, B3, 4 * T3, nm // 4, nm // 4, r)  # long sequences, small layer: materialize
    yield _clip(rng, (Bb,), nb, nb, r, materialize=False)
    yield _clip(rng, (B2,), nm, nm, r, materialize=True)
    yield _clip(rng, (B3, T3 // 8), nm, nm, r, materialize=True)
