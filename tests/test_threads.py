"""Eight Python threads calling every kernel at once (every Jacobian form, gradient function
and gradient statistic), on shared read-only inputs, get
results identical to the same calls made one at a time from a single thread.

The kernels release the GIL, so the calls really overlap: each thread starts its own
OpenMP team (n_threads=None and 2 both appear) and numpy's BLAS runs beside them.
Public API only.
"""
from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

import matderiv as md
from conftest import CONVENTIONS, FORMATS, LAYOUTS, ORDERS

THREADS = 8
REPEATS = 3  # each call is made this many times, in a shuffled order


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _calls() -> list:
    """(name, call) for every Jacobian form, gradient function and gradient statistic."""
    rng = np.random.default_rng(7)
    B, T, n, m = 8, 4, 24, 32
    x1 = _read_only(rng.standard_normal(m))
    xb = _read_only(rng.standard_normal((B, m)).astype(np.float32))
    xc = _read_only((rng.standard_normal((B, m)) + 1j * rng.standard_normal((B, m))).astype(np.complex128))
    X2, G2 = _read_only(rng.standard_normal((B, m))), _read_only(rng.standard_normal((B, n)))
    X3, G3 = _read_only(rng.standard_normal((B, T, m))), _read_only(rng.standard_normal((B, T, n)))
    calls = []
    for convention in CONVENTIONS:
        make = md.jacobian_wx if convention == "Wx" else md.jacobian_xw
        W_shape = (n, m) if convention == "Wx" else (m, n)
        dW = _read_only(rng.standard_normal(W_shape))
        for label, x in (("single", x1), ("batched f32", xb), ("batched c128", xc)):
            J = make(x, n)
            S = x.shape[0] if x.ndim == 2 else 1
            v = _read_only(rng.standard_normal((S, n) if x.ndim == 2 else (n,)))
            u, w = _read_only(rng.standard_normal(n * m)), _read_only(rng.standard_normal(S * n))
            tag = f"{convention} {label}"
            for nt in (None, 2):
                calls += [(f"{tag} toarray {lay} n_threads={nt}", lambda J=J, lay=lay, nt=nt: J.toarray(lay, n_threads=nt)) for lay in LAYOUTS]
                calls += [(f"{tag} tovec {o} n_threads={nt}", lambda J=J, o=o, nt=nt: J.tovec(o, n_threads=nt)) for o in ORDERS]
                calls += [
                    (f"{tag} tosparse {f} {o} n_threads={nt}", lambda J=J, f=f, o=o, nt=nt: J.tosparse(f, o, n_threads=nt))
                    for f in FORMATS
                    for o in ORDERS
                ]
                calls.append((f"{tag} vjp n_threads={nt}", lambda J=J, v=v, nt=nt: J.vjp(v, n_threads=nt)))
            calls.append((f"{tag} jvp", lambda J=J, dW=dW: J.jvp(dW)))
            for o in ORDERS:
                calls.append((f"{tag} operator {o} matvec", lambda J=J, o=o, u=u: J.aslinearoperator(o).matvec(u)))
                calls.append((f"{tag} operator {o} rmatvec", lambda J=J, o=o, w=w: J.aslinearoperator(o).rmatvec(w)))
        for dims, (X, G) in (("2-D", (X2, G2)), ("3-D", (X3, G3))):
            for bias in (False, True):
                tag = f"{convention} {dims} bias={bias}"
                kw = dict(convention=convention, bias=bias)
                calls += [
                    (f"{tag} per_sample_grads n_threads={nt}", lambda X=X, G=G, kw=kw, nt=nt: md.per_sample_grads(X, G, n_threads=nt, **kw))
                    for nt in (None, 2)
                ]
                calls += [
                    (f"{tag} batch_grad {r}", lambda X=X, G=G, kw=kw, r=r: md.batch_grad(X, G, reduce=r, **kw))
                    for r in ("sum", "mean")
                ]
                calls.append((f"{tag} per_sample_grad_norms", lambda X=X, G=G, b=bias: md.per_sample_grad_norms(X, G, bias=b)))
                calls.append((f"{tag} clip_and_sum", lambda X=X, G=G, kw=kw: md.clip_and_sum(X, G, 1.5, **kw)))
                calls.append((f"{tag} sum_grad_squared", lambda X=X, G=G, kw=kw: md.sum_grad_squared(X, G, **kw)))
                calls += [
                    (f"{tag} grad_variance ddof={d}", lambda X=X, G=G, kw=kw, d=d: md.grad_variance(X, G, ddof=d, **kw))
                    for d in (0, 1)
                ]
                calls += [
                    (f"{tag} kfac_factors {mode}", lambda X=X, G=G, b=bias, mode=mode: md.kfac_factors(X, G, bias=b, mode=mode))
                    for mode in ("expand", "reduce")
                ]
                X2, G2 = X[: B // 2], G[: B // 2]  # another batch: read-only views of the same data
                calls += [
                    (
                        f"{tag} per_sample_grad_dots {label} normalize={norm}",
                        lambda X=X, G=G, other=other, b=bias, norm=norm: md.per_sample_grad_dots(
                            X, G, *other, bias=b, normalize=norm
                        ),
                    )
                    for label, other in (("self", ()), ("two batches", (X2, G2)))
                    for norm in (False, True)
                ]
    return calls


def _sparse_arrays(A) -> list:
    return [A.data, *A.coords] if A.format == "coo" else [A.data, A.indices, A.indptr]


def _assert_identical(got, want, name: str) -> None:
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want), name
        for g, w in zip(got, want):
            _assert_identical(g, w, name)
    elif sp.issparse(want):
        assert type(got) is type(want) and got.shape == want.shape, name
        for g, w in zip(_sparse_arrays(got), _sparse_arrays(want)):
            assert g.dtype == w.dtype and np.array_equal(g, w), name
    else:
        assert got.dtype == want.dtype and np.array_equal(got, want), name


def test_eight_threads_at_once_match_one_thread():
    calls = _calls()
    expected = {name: call() for name, call in calls}
    work = calls * REPEATS
    random.Random(0).shuffle(work)
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(lambda item: (item[0], item[1]()), work))
    assert len(results) == len(work)
    for name, got in results:
        _assert_identical(got, expected[name], name)
