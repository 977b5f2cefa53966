"""md.batch_stats: several statistics of one batch in one call, each equal to its own
function's result and to an independent reference built from the materialized per-sample
gradients (np.einsum), in 2-D and 3-D, float32 and float64, both conventions, with and
without bias; the shared routes (moments, one clipping pass) included."""
from __future__ import annotations

import numpy as np
import pytest

import matderiv as md
from conftest import RTOL, rtol_for
from matderiv.combined import STATS

ALL = STATS


def batch(shape, dtype, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    B, *T, m, n = shape
    X = (rng.standard_normal((B, *T, m)) + offset).astype(dtype)
    G = rng.standard_normal((B, *T, n)).astype(dtype)
    return X, G


def reference(X, G, *, convention, bias, ddof, max_norm):
    """Every statistic from the stack of per-sample gradients, in float64."""
    X64, G64 = X.astype(np.float64), G.astype(np.float64)
    if X.ndim == 2:
        X64, G64 = X64[:, None], G64[:, None]
    g = np.einsum("btn,btm->bnm", G64, X64)
    if convention == "xW":
        g = g.transpose(0, 2, 1)
    db = G64.sum(axis=1)
    flat = g.reshape(len(g), -1)
    norms = np.sqrt((flat**2).sum(axis=1) + ((db**2).sum(axis=1) if bias else 0.0))
    with np.errstate(divide="ignore"):
        factor = np.minimum(1.0, max_norm / norms)
    pair = (lambda w, b: (w, b)) if bias else (lambda w, b: w)
    return {
        "grad": pair(g.sum(axis=0), db.sum(axis=0)),
        "norms": norms,
        "clipped": pair(np.einsum("b,bij->ij", factor, g), factor @ db),
        "sum_grad_squared": pair((g**2).sum(axis=0), (db**2).sum(axis=0)),
        "variance": pair(np.var(g, axis=0, ddof=ddof), np.var(db, axis=0, ddof=ddof)),
    }


def assert_same(got, want, rtol):
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for a, b in zip(got, want):
            assert_same(a, b, rtol)
        return
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(1.0, float(np.max(np.abs(want), initial=0.0))))


@pytest.mark.parametrize("shape", [(40, 5, 3), (12, 4, 5, 3)], ids=["2-D", "3-D"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("convention", ["Wx", "xW"])
@pytest.mark.parametrize("bias", [False, True])
def test_every_statistic_matches_the_reference_and_its_own_function(shape, dtype, convention, bias):
    X, G = batch(shape, dtype)
    got = md.batch_stats(X, G, ALL, max_norm=2.0, convention=convention, bias=bias, ddof=1)
    assert list(got) == list(ALL)
    ref = reference(X, G, convention=convention, bias=bias, ddof=1, max_norm=2.0)
    rtol = 50 * rtol_for(dtype)
    for name in ("grad", "norms", "clipped", "sum_grad_squared", "variance"):
        assert_same(got[name], ref[name], rtol)
    same = {"convention": convention, "bias": bias}
    singles = {
        "grad": md.batch_grad(X, G, **same),
        "norms": md.per_sample_grad_norms(X, G, bias=bias),
        "clipped": md.clip_and_sum(X, G, 2.0, **same)[:-1],
        "sum_grad_squared": md.sum_grad_squared(X, G, **same),
        "variance": md.grad_variance(X, G, ddof=1, **same),
        "kfac": md.kfac_factors(X, G, bias=bias),
    }
    singles["clipped"] = singles["clipped"] if bias else singles["clipped"][0]
    for name, want in singles.items():
        assert_same(got[name], want, rtol)
        for part in got[name] if isinstance(got[name], tuple) else (got[name],):
            assert part.dtype == np.dtype(dtype)


@pytest.mark.parametrize(
    "what",
    [("grad",), ("variance",), ("grad", "variance"), ("grad", "sum_grad_squared"), ("sum_grad_squared", "variance"),
     ("norms",), ("clipped",), ("clipped", "norms"), ("kfac", "grad"), ["norms", "norms"], ()],
)
def test_subsets_give_exactly_the_names_asked_for(what):
    X, G = batch((30, 6, 4), np.float64, seed=1)
    got = md.batch_stats(X, G, what, max_norm=1.5, ddof=0)
    assert set(got) == set(what)
    ref = reference(X, G, convention="Wx", bias=False, ddof=0, max_norm=1.5)
    for name in set(what) - {"kfac"}:
        assert_same(got[name], ref[name], 1e-11)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(64, 6, 5), (16, 8, 6, 5)], ids=["2-D", "3-D"])
def test_shared_sums_stay_accurate_when_the_mean_dominates(dtype, shape):
    """The gradient and the sum of squares derived from the shifted moments (B mean and
    M2 + B mean^2) keep their accuracy where X's mean is 1e3 spreads (the shifted routes)."""
    X, G = batch(shape, dtype, seed=2, offset=1e3)
    G += 50.0
    got = md.batch_stats(X, G, ("grad", "sum_grad_squared", "variance"))
    ref = reference(X, G, convention="Wx", bias=False, ddof=0, max_norm=1.0)
    rtol = 50 * RTOL[np.dtype(dtype)]
    assert_same(got["grad"], ref["grad"], rtol)
    assert_same(got["sum_grad_squared"], ref["sum_grad_squared"], rtol)
    np.testing.assert_allclose(got["variance"], ref["variance"], rtol=1e-3 if dtype == np.float32 else 1e-9)


def test_an_empty_batch_gives_what_each_function_gives():
    X, G = np.empty((0, 3)), np.empty((0, 2))
    got = md.batch_stats(X, G, ALL, max_norm=1.0, bias=True)
    np.testing.assert_array_equal(got["grad"][0], np.zeros((2, 3)))
    np.testing.assert_array_equal(got["sum_grad_squared"][1], np.zeros(2))
    assert np.isnan(got["variance"][0]).all() and got["norms"].shape == (0,)
    np.testing.assert_array_equal(got["clipped"][0], md.clip_and_sum(X, G, 1.0, bias=True)[0])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"what": "grad"}, TypeError, r"what: expected a list or tuple of names, got str 'grad'"),
        ({"what": ("grad", "hessian")}, ValueError, r"what: expected one of 'grad', .*, got 'hessian'"),
        ({"what": ("clipped",)}, ValueError, r"max_norm: \"clipped\" in what needs max_norm .* got None"),
        ({"what": ("norms",), "max_norm": -1.0}, ValueError, r"max_norm: expected a positive finite float, got -1.0"),
        ({"what": ("grad",), "convention": "WX"}, ValueError, r"convention: expected one of 'Wx', 'xW', got 'WX'"),
        ({"what": ("variance",), "ddof": -1}, ValueError, r"ddof: expected a non-negative int, got -1"),
        ({"what": ("grad",), "bias": 1}, TypeError, r"bias: expected True or False, got int 1"),
        ({"what": ("grad",), "n_threads": 0}, ValueError, r"n_threads"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    X, G = batch((4, 3, 2), np.float64)
    with pytest.raises(error, match=match):
        md.batch_stats(X, G, **kwargs)


def test_outputs_are_counted_together_against_max_bytes():
    """Each output alone fits 5 (4, 3) float64 arrays' bytes; the five together do not."""
    X, G = batch((10, 3, 4), np.float64)
    one = 4 * 3 * 8
    for name in ("grad", "variance", "sum_grad_squared"):
        md.batch_stats(X, G, (name,), max_bytes=one)
    with pytest.raises(md.OutputTooLargeError, match=r"batch_stats"):
        md.batch_stats(X, G, ("grad", "variance", "sum_grad_squared"), max_bytes=2 * one)


def test_dask_inputs_give_the_in_memory_results():
    da = pytest.importorskip("dask.array", reason="the dask extra is optional: pip install -e \".[dask]\" (the test extra includes it)")
    X, G = batch((50, 6, 4), np.float64, seed=3)
    want = md.batch_stats(X, G, ALL, max_norm=1.0, bias=True, ddof=1)
    got = md.batch_stats(da.from_array(X, chunks=(16, 6)), da.from_array(G, chunks=(16, 4)), ALL,
                         max_norm=1.0, bias=True, ddof=1)
    assert list(got) == list(want)
    for name in ALL:
        lazy = got[name] if isinstance(got[name], tuple) else (got[name],)
        assert all(hasattr(part, "dask") for part in lazy)
        assert_same(tuple(part.compute() for part in lazy) if isinstance(got[name], tuple) else got[name].compute(),
                    want[name], 1e-11)
