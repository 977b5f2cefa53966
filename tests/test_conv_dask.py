"""Conv over dask arrays in every batched function, against the in-memory Conv results (tested
against plain-loop references in test_conv) on the same data."""
from __future__ import annotations

import numpy as np
import pytest

import matderiv as md
from conftest import assert_close

da = pytest.importorskip("dask.array", reason="the dask extra is optional: pip install -e \".[dask]\" (the test extra includes it)")
pytest.importorskip("threadpoolctl", reason="the dask extra is optional: pip install -e \".[dask]\" (the test extra includes it)")

B, O = 9, 3
GEOMETRY = {"kernel_size": (3, 2), "stride": (2, 1), "padding": 1, "dilation": (1, 2)}

CALLS = {
    "per_sample_grads": lambda X, G: md.per_sample_grads(X, G, bias=True),
    "batch_grad": lambda X, G: md.batch_grad(X, G, reduce="mean", bias=True),
    "per_sample_grad_norms": lambda X, G: md.per_sample_grad_norms(X, G, bias=True),
    "clip_and_sum": lambda X, G: md.clip_and_sum(X, G, 0.5, bias=True),
    "sum_grad_squared": lambda X, G: md.sum_grad_squared(X, G, bias=True),
    "grad_variance": lambda X, G: md.grad_variance(X, G, bias=True, ddof=1),
    "per_sample_grad_dots": lambda X, G: md.per_sample_grad_dots(X, G, bias=True, normalize=True),
    "kfac_factors": lambda X, G: md.kfac_factors(X, G, bias=True),
}


def data(dtype=np.float64, b=B, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, 2, 7, 6)).astype(dtype)
    G = rng.standard_normal((b, O, 4, 6)).astype(dtype)  # out: (4, 6) for GEOMETRY
    return x, G


def as_tuple(res):
    return res if isinstance(res, tuple) else (res,)


@pytest.mark.parametrize("chunks", [((4, 0, 5), (4, 0, 5)), ((1,) * B, None), (None, (5, 4)), ((9,), (3, 6))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_dask_conv_equals_the_in_memory_conv(name, dtype, chunks):
    x, G = data(dtype)
    xd = x if chunks[0] is None else da.from_array(x, chunks=(chunks[0], 2, 7, 6))
    Gd = G if chunks[1] is None else da.from_array(G, chunks=(chunks[1], 1, 4, 6))
    lazy = as_tuple(CALLS[name](md.Conv(xd, **GEOMETRY), Gd))
    expected = as_tuple(CALLS[name](md.Conv(x, **GEOMETRY), G))
    assert len(lazy) == len(expected)
    for a, e in zip(lazy, expected):
        assert isinstance(a, da.Array) and a.dtype == e.dtype and a.shape == e.shape
        assert_close(a.compute(scheduler="threads"), e, dtype)


@pytest.mark.parametrize("normalize", [False, True])
def test_dask_dots_between_two_convs(normalize):
    x, G = data()
    x2, G2 = data(b=5, seed=1)
    X2 = md.Conv(da.from_array(x2, chunks=(2, 2, 7, 6)), **GEOMETRY)
    K = md.per_sample_grad_dots(md.Conv(x, **GEOMETRY), G, X2, G2, normalize=normalize)
    expected = md.per_sample_grad_dots(md.Conv(x, **GEOMETRY), G, md.Conv(x2, **GEOMETRY), G2, normalize=normalize)
    assert K.chunks == ((9,), (2, 2, 1))
    assert_close(K.compute(scheduler="sync"), expected, np.float64)


def test_dask_checks_come_before_any_graph():
    x, G = data()
    X = md.Conv(da.from_array(x, chunks=3), **GEOMETRY)
    with pytest.raises(ValueError, match=r"G: expected shape \(9, O, 4, 6\)"):
        md.batch_grad(X, G[:, :, :3])
    with pytest.raises(TypeError, match=r"out: expected None with dask inputs"):
        md.per_sample_grads(X, G, out=np.empty((9, O, 2, 3, 2)))
    with pytest.raises(ValueError, match=r"convention: a Conv's gradients have the weight's shape"):
        md.clip_and_sum(X, G, 1.0, convention="xW")
    with pytest.raises(md.OutputTooLargeError, match=r"sum_grad_squared: the output \(3, 2, 3, 2\) float64"):
        md.sum_grad_squared(X, G, max_bytes=10)
    unknown = da.from_array(x, chunks=3)[da.from_array(np.ones(9, bool), chunks=3)]
    with pytest.raises(ValueError, match=r"x: expected known chunk sizes"):
        md.Conv(unknown, **GEOMETRY)
