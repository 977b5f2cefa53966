"""The batch core (matderiv._batch) under gradients, statistics and dask: inputs checked
and counted before anything is copied, the blocks of per-sample gradients and of float64
conversions, the norms with their non-finite fix-up, and the moments behind the variance.
References are plain numpy (einsum, loops) and exact rational arithmetic (fractions)."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import matderiv as md
from conftest import peak_bytes
from matderiv import _batch, _moments


def _batch_of(X, G):
    return _batch.Inputs(X, G).load([], what="test")


# --- inputs: counted before copied ---------------------------------------------------------
def test_inputs_list_the_copies_coercion_makes():
    X, G = np.ones((4, 3)), np.ones((4, 2), np.float32)
    inp = _batch.Inputs(X, G)
    assert inp.dtype == np.float64 and (inp.B, inp.n, inp.m, inp.ndim) == (4, 2, 3, 2)
    assert inp.copies() == [((4, 2), np.dtype(np.float64))]  # G is converted, X is used as it is
    b = inp.coerce()
    assert np.shares_memory(b.X, X) and b.G.dtype == np.float64 and b.G.flags.c_contiguous
    strided = _batch.Inputs(np.ones((4, 6))[:, ::2], X)
    assert strided.copies() == [((4, 3), np.dtype(np.float64))]


def test_zero_stride_inputs_are_counted_before_they_are_copied():
    """A broadcast view (stride 0) costs nothing to pass and 256 MiB to copy: the byte count
    refuses before any copy is made."""
    B = np.broadcast_to(1.0, (2**15, 2**10))
    with pytest.raises(md.OutputTooLargeError, match=r"per_sample_grads: the output .* and copies of the inputs"):
        md.per_sample_grads(B, B, max_bytes=0)
    assert peak_bytes(lambda: pytest.raises(md.OutputTooLargeError, md.per_sample_grads, B, B, max_bytes=0)) < 2**20
    huge = np.broadcast_to(1.0, (2**40, 2))  # 16 TiB once copied; per_sample_grad_norms has no max_bytes
    with pytest.raises(md.OutputTooLargeError, match=r"per_sample_grad_norms: .* copies of the inputs \(1099511627776, 2\)"):
        md.per_sample_grad_norms(huge, huge)


# --- blocks --------------------------------------------------------------------------------
@pytest.mark.parametrize("ndim", [2, 3])
def test_grad_blocks_cover_every_sample_in_bounded_blocks(monkeypatch, ndim):
    rng = np.random.default_rng(0)
    lead = (11,) if ndim == 2 else (11, 3)
    X, G = rng.standard_normal(lead + (5,)), rng.standard_normal(lead + (4,))
    monkeypatch.setattr(_batch, "BLOCK_BYTES", 3 * 4 * 5 * 8)  # three samples a block
    spec = "bn,bm->bnm" if ndim == 2 else "btn,btm->bnm"
    want = np.einsum(spec, G, X)
    seen = []
    for lo, gw in _batch.grad_blocks(_batch_of(X, G)):
        assert gw.shape[0] <= 3
        np.testing.assert_allclose(gw, want[lo : lo + len(gw)], rtol=1e-12, atol=1e-15)
        seen += range(lo, lo + len(gw))
    assert seen == list(range(11))


def test_float64_blocks_view_float64_and_convert_float32_in_pieces(monkeypatch):
    X = np.arange(40.0).reshape(10, 4)
    G = np.arange(30.0).reshape(10, 3)
    monkeypatch.setattr(_batch, "BLOCK_BYTES", 4 * 8 * 7)  # four samples' conversion a block
    blocks = list(_batch.float64_blocks(_batch_of(X, G), 0))
    assert len(blocks) == 1 and np.shares_memory(blocks[0][1].X, X)  # float64: no copy, one block
    b32 = _batch_of(X.astype(np.float32), G.astype(np.float32))
    blocks = list(_batch.float64_blocks(b32, 0))
    assert [lo for lo, _ in blocks] == [0, 4, 8]
    for lo, part in blocks:
        assert part.X.dtype == np.float64 and np.array_equal(part.X, X[lo : lo + part.B])


# --- norms ---------------------------------------------------------------------------------
def test_exact_norms_follow_the_materialized_gradient():
    X = np.array([[np.inf, 1.0], [1.0, 2.0], [1e-170, 3e-170], [np.nan, 0.0]])
    G = np.array([[1.0, 0.0], [1.0, 1.0], [2e-170, 1e170], [0.0, 0.0]])
    got = _batch.exact_norms(_batch_of(X, G), np.arange(4), bias=False)
    assert np.isnan(got[0])  # outer([1, 0], [inf, 1]) holds 0 * inf
    assert got[1] == pytest.approx(np.sqrt(2 * 5))
    assert got[2] == pytest.approx(np.hypot(2e-170, 1e170) * np.hypot(1e-170, 3e-170), rel=1e-14)
    assert np.isnan(got[3])  # 0 * nan


@pytest.mark.parametrize("scale", [1e-170, 1e170])
def test_float64_norms_are_accurate_where_the_squares_leave_double_range(scale):
    """||G[b]||^2 under- or overflows float64, ||outer(G[b], X[b])|| does not."""
    X = np.array([[3.0, 4.0]]) / scale
    G = np.array([[scale, 0.0, 0.0]])
    assert md.per_sample_grad_norms(X, G)[0] == pytest.approx(5.0, rel=1e-15)
    assert md.per_sample_grad_norms(X, G, bias=True)[0] == pytest.approx(np.hypot(5.0, scale), rel=1e-15)
    dW, norms = md.clip_and_sum(X, G, 1.0)
    assert norms[0] == pytest.approx(5.0, rel=1e-15)
    np.testing.assert_allclose(dW, np.outer(G[0], X[0]) / 5.0, rtol=1e-15)


# --- moments -------------------------------------------------------------------------------
def _exact_var(X, G, ddof=0):
    """np.var of the per-sample gradients sum_t G[b, t] (x) X[b, t] (2-D: G[b] (x) X[b]) in
    exact rational arithmetic."""
    X3, G3 = (np.asarray(A, np.float64).reshape(len(A), -1, A.shape[-1]) for A in (X, G))
    Xf = [[[Fraction(float(x)) for x in step] for step in sample] for sample in X3]
    Gf = [[[Fraction(float(g)) for g in step] for step in sample] for sample in G3]
    B, T, n, m = X3.shape[0], X3.shape[1], G3.shape[2], X3.shape[2]
    out = np.empty((n, m))
    for i in range(n):
        for j in range(m):
            vals = [sum(Gf[b][t][i] * Xf[b][t][j] for t in range(T)) for b in range(B)]
            mean = sum(vals) / B
            out[i, j] = float(sum((val - mean) ** 2 for val in vals) / (B - ddof))
    return out


@pytest.mark.parametrize("ratio", [1e2, 1e4, 1e6, 1e9])
@pytest.mark.parametrize("ddof", [0, 1])
def test_grad_variance_2d_when_the_mean_dominates(ratio, ddof):
    """X = mean + spread N(64, 3), G likewise: the E[g^2] - E[g]^2 formula lost every digit
    at mean/spread 1e6 (relative error 292); the shifted sums keep 1e-8."""
    rng = np.random.default_rng(12)
    X = ratio + rng.standard_normal((64, 3))
    G = ratio + rng.standard_normal((64, 2))
    want = _exact_var(X, G, ddof)
    for convention, got in (("Wx", md.grad_variance(X, G, ddof=ddof)),
                            ("xW", md.grad_variance(X, G, ddof=ddof, convention="xW").T)):
        np.testing.assert_allclose(got, want, rtol=1e-8, err_msg=convention)
    moments = _moments.moments(_batch_of(X, G), bias=False)
    assert moments.count == 64
    np.testing.assert_allclose(moments.grad_mean(), np.einsum("bn,bm->nm", G, X) / 64, rtol=1e-14)


@pytest.mark.parametrize("dtype, rtol, ratio", [(np.float64, 1e-8, r) for r in (1e3, 1e6, 1e9)] + [(np.float32, 1e-4, 1e3)])
def test_grad_variance_3d_when_the_mean_dominates(monkeypatch, ratio, dtype, rtol):
    """Sequences: per-sample gradients shifted by T a (x) c, in blocks merged with Chan's
    update (three samples a block here); float64 to 1e-8 up to mean/spread 1e9, float32 to
    1e-4 up to 1e3."""
    rng = np.random.default_rng(15)
    X = (ratio + rng.standard_normal((20, 3, 3))).astype(dtype)
    G = (ratio + rng.standard_normal((20, 3, 2))).astype(dtype)
    monkeypatch.setattr(_batch, "BLOCK_BYTES", 3 * dtype().itemsize * (4 * 5 + 6))
    np.testing.assert_allclose(md.grad_variance(X, G, ddof=1), _exact_var(X, G, ddof=1), rtol=rtol)


@pytest.mark.parametrize("ratio", [1.0, 1e2, 1e3])
def test_grad_variance_2d_float32_when_the_mean_dominates(ratio):
    rng = np.random.default_rng(13)
    X = (ratio + rng.standard_normal((64, 3))).astype(np.float32)
    G = (ratio + rng.standard_normal((64, 2))).astype(np.float32)
    got = md.grad_variance(X, G)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _exact_var(X, G), rtol=1e-4)


def test_grad_variance_2d_in_many_blocks(monkeypatch):
    """The shifted sums accumulate over blocks of samples exactly as over one."""
    rng = np.random.default_rng(14)
    X, G = 50 + rng.standard_normal((37, 4)), -20 + rng.standard_normal((37, 3))
    whole = md.grad_variance(X, G, bias=True)
    monkeypatch.setattr(_batch, "BLOCK_BYTES", 1)  # one sample a block
    pieces = md.grad_variance(X, G, bias=True)
    for a, b in zip(whole, pieces):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(whole[0], _exact_var(X, G), rtol=1e-10)


def test_a_registered_structured_input_is_routed_to_its_implementation(monkeypatch):
    """_dispatch.register_input: an X of the registered type goes to its implementation
    (with every argument), before any check; other types and other functions do not."""
    from matderiv import _dispatch

    class Lazy:
        pass

    calls = []
    monkeypatch.setattr(_dispatch, "_structured", {})
    _dispatch.register_input(md.batch_grad, Lazy, lambda X, G, *a, **kw: calls.append((X, G, a, kw)) or "routed")
    X = Lazy()
    assert md.batch_grad(X, "G", bias=True) == "routed"
    assert calls == [(X, "G", (), {"bias": True})]
    with pytest.raises(ValueError, match=r"X: expected a 2-D or 3-D array, got 0-D"):
        md.per_sample_grad_norms(X, np.ones((2, 3)))  # not registered for this function
    np.testing.assert_array_equal(md.batch_grad(np.ones((2, 3)), np.ones((2, 1))), np.full((1, 3), 2.0))
