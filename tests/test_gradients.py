"""per_sample_grads, batch_grad, per_sample_grad_norms and clip_and_sum against plain numpy.

References are einsum over the per-sample outer products, in float64; results are
compared with the per-dtype RTOL table of conftest.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import matderiv as md
from conftest import CONVENTIONS, REAL_DTYPES, assert_close, forced_norms, peak_bytes, rtol_for
from matderiv import _batch, gradients

DTYPES = REAL_DTYPES  # gradients are real-only
B, T, N, M = 5, 4, 3, 6  # n != m so that a transpose cannot pass unnoticed


# --- references --------------------------------------------------------------------------------
def ref_grads(X, G, convention="Wx"):
    """Per-sample weight and bias gradients by einsum, in float64."""
    X, G = np.asarray(X, np.float64), np.asarray(G, np.float64)
    if X.ndim == 2:
        dW, db = np.einsum("bi,bj->bij", G, X), G.copy()
    else:
        dW, db = np.einsum("bti,btj->bij", G, X), G.sum(axis=1)
    return (dW if convention == "Wx" else dW.transpose(0, 2, 1)), db


def ref_norms(X, G, bias=False):
    dW, db = ref_grads(X, G)
    sq = (dW**2).sum(axis=(1, 2))
    if bias:
        sq = sq + (db**2).sum(axis=1)
    return np.sqrt(sq)


def ref_clip_and_sum(X, G, max_norm, convention="Wx", bias=False):
    dW, db = ref_grads(X, G, convention)
    norms = ref_norms(X, G, bias)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.minimum(1.0, max_norm / norms)
    return (c[:, None, None] * dW).sum(axis=0), (c[:, None] * db).sum(axis=0), norms


def data(ndim, dtype=np.float64, b=B, t=T, n=N, m=M, seed=0):
    rng = np.random.default_rng(seed)
    lead = (b,) if ndim == 2 else (b, t)
    return rng.standard_normal(lead + (m,)).astype(dtype), rng.standard_normal(lead + (n,)).astype(dtype)


# --- per_sample_grads ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("bias", [False, True])
def test_per_sample_grads_matches_einsum(dtype, convention, ndim, bias):
    X, G = data(ndim, dtype)
    res = md.per_sample_grads(X, G, convention=convention, bias=bias)
    dW_ref, db_ref = ref_grads(X, G, convention)
    dW = res[0] if bias else res
    assert dW.shape == ((B, N, M) if convention == "Wx" else (B, M, N))
    assert dW.dtype == dtype and dW.flags.c_contiguous
    assert_close(dW, dW_ref, dtype)
    if bias:
        assert res[1].shape == (B, N) and res[1].dtype == dtype
        assert_close(res[1], db_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_per_sample_grads_equal_jacobian_vjp(dtype):
    X, G = data(2, dtype)
    wx = md.per_sample_grads(X, G)
    xw = md.per_sample_grads(X, G, convention="xW")
    for b in range(B):
        np.testing.assert_array_equal(wx[b], md.jacobian_wx(X[b], N).vjp(G[b]))
        np.testing.assert_array_equal(xw[b], md.jacobian_xw(X[b], N).vjp(G[b]))
    np.testing.assert_array_equal(wx, md.jacobian_wx(X, N).vjp(G))
    np.testing.assert_array_equal(xw, md.jacobian_xw(X, N).vjp(G))


def test_sequence_grads_are_sums_of_step_vjps():
    X, G = data(3)
    res = md.per_sample_grads(X, G)
    for b in range(B):
        ref = sum(md.jacobian_wx(X[b, t], N).vjp(G[b, t]) for t in range(T))
        assert_close(res[b], ref, np.float64)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("bias", [False, True])
def test_out_is_filled_and_returned(ndim, convention, bias):
    X, G = data(ndim)
    expected = md.per_sample_grads(X, G, convention=convention, bias=bias)
    shape = (B, N, M) if convention == "Wx" else (B, M, N)
    out = np.full(shape, 7.0)
    res = md.per_sample_grads(X, G, convention=convention, bias=bias, out=out)
    if bias:
        assert res[0] is out
        np.testing.assert_array_equal(res[1], expected[1])
        expected = expected[0]
    else:
        assert res is out
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("ndim", [2, 3])
def test_bias_gradient_never_aliases_G(ndim):
    X, G = data(ndim)
    G_before = G.copy()
    _, db = md.per_sample_grads(X, G, bias=True)
    db[...] = 99.0
    np.testing.assert_array_equal(G, G_before)


def test_nested_lists_are_accepted():
    X, G = data(2)
    np.testing.assert_array_equal(md.per_sample_grads(X.tolist(), G.tolist()), md.per_sample_grads(X, G))
    np.testing.assert_array_equal(md.batch_grad(X.tolist(), G), md.batch_grad(X, G))


def test_out_skips_the_memory_check_for_what_it_holds():
    X, G = data(2)
    out = np.empty((B, N, M))
    assert md.per_sample_grads(X, G, out=out, max_bytes=0) is out
    with pytest.raises(md.OutputTooLargeError, match=r"per_sample_grads: the output \(5, 3\) float64"):
        md.per_sample_grads(X, G, out=out, bias=True, max_bytes=0)


@pytest.mark.parametrize("ndim", [2, 3])
def test_max_bytes_refuses_before_allocating(ndim):
    X, G = data(ndim)
    nbytes = B * N * M * 8
    md.per_sample_grads(X, G, max_bytes=nbytes)
    with pytest.raises(md.OutputTooLargeError, match=r"\(5, 3, 6\) float64 .* over the limit"):
        md.per_sample_grads(X, G, max_bytes=nbytes - 1)
    with pytest.raises(md.OutputTooLargeError, match=r"\(5, 3, 6\) float64 \+ \(5, 3\) float64"):
        md.per_sample_grads(X, G, bias=True, max_bytes=nbytes)
    with pytest.raises(md.OutputTooLargeError, match="clip_and_sum"):
        md.per_sample_grads(X, G, max_bytes=0)


# --- batch_grad -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_batch_grad_matches_einsum(dtype, convention, ndim, bias, reduce):
    X, G = data(ndim, dtype)
    dW_ref, db_ref = ref_grads(X, G, convention)
    div = B if reduce == "mean" else 1  # mean: over samples, not over samples * steps
    res = md.batch_grad(X, G, convention=convention, reduce=reduce, bias=bias)
    dW = res[0] if bias else res
    assert dW.shape == ((N, M) if convention == "Wx" else (M, N)) and dW.dtype == dtype
    assert_close(dW, dW_ref.sum(axis=0) / div, dtype)
    if bias:
        assert res[1].shape == (N,) and res[1].dtype == dtype
        assert_close(res[1], db_ref.sum(axis=0) / div, dtype)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_sum_of_per_sample_grads_is_batch_grad(ndim, convention):
    X, G = data(ndim)
    per = md.per_sample_grads(X, G, convention=convention, bias=True)
    total = md.batch_grad(X, G, convention=convention, bias=True)
    assert_close(per[0].sum(axis=0), total[0], np.float64)
    assert_close(per[1].sum(axis=0), total[1], np.float64)


def test_batch_grad_mean_of_an_empty_batch_is_nan():
    X, G = data(2, b=0)
    dW, db = md.batch_grad(X, G, reduce="mean", bias=True)
    assert dW.shape == (N, M) and np.isnan(dW).all() and np.isnan(db).all()


# --- norms -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("bias", [False, True])
def test_norms_match_materialized(dtype, ndim, bias):
    X, G = data(ndim, dtype)
    res = md.per_sample_grad_norms(X, G, bias=bias)
    assert res.shape == (B,) and res.dtype == dtype
    assert_close(res, ref_norms(X, G, bias), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("route", ["gram", "materialize"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(5, 4, 3, 6), (3, 9, 2, 2), (4, 1, 7, 5)])
def test_both_3d_norm_routes(dtype, route, bias, shape):
    b, t, n, m = shape
    X, G = data(3, dtype, b=b, t=t, n=n, m=m)
    Xc, Gc = X.astype(dtype), G.astype(dtype)
    res = forced_norms(Xc, Gc, bias, route)
    assert res.shape == (b,) and res.dtype == dtype
    assert_close(res, ref_norms(X, G, bias), dtype)


@pytest.mark.parametrize("route", ["gram", "materialize"])
def test_norm_routes_in_many_blocks(monkeypatch, route):
    X, G = data(3, b=7)
    monkeypatch.setattr(_batch, "BLOCK_BYTES", 2 * T * T * 8 * 2)  # 2 samples per Gram block
    res = forced_norms(X, G, True, route)
    monkeypatch.setattr(_batch, "BLOCK_BYTES", 1)  # one sample per block
    res1 = forced_norms(X, G, True, route)
    assert_close(res, ref_norms(X, G, True), np.float64)
    np.testing.assert_array_equal(res, res1)


def shaped(B, T, n, m, dtype=np.float64):
    """A batch of the shape and dtype for the route rules, which read nothing else."""
    return _batch.Batch(np.broadcast_to(np.zeros((), dtype), (B, T, m)), np.broadcast_to(np.zeros((), dtype), (B, T, n)))


def test_route_rule_compares_costs():
    assert _batch.norm_route(shaped(64, 4, 256, 256)) == "gram"  # T^2 (n + m) << T n m
    assert _batch.norm_route(shaped(64, 512, 64, 64)) == "materialize"  # T >> n m / (n + m)
    # a stack of gradients that outgrows the caches costs its memory traffic: Gram longer
    assert _batch.norm_route(shaped(512, 128, 512, 512)) == "gram"
    assert _batch.norm_route(shaped(8, 128, 64, 64)) == "materialize"
    costs, costs32 = (_batch.norm_costs(shaped(64, 64, 256, 256, dt)) for dt in (np.float64, np.float32))
    assert costs32["gram"] < costs["gram"] and costs32["materialize"] < costs["materialize"]  # float32 BLAS: half
    assert gradients.clip_route(shaped(64, 16, 512, 512)) == "gram"  # the stack would be 128 MiB
    assert gradients.clip_route(shaped(64, 16, 64, 64)) == "materialize"  # 2 MiB: cheaper than the GEMM
    for t, n, m in [(2, 50, 40), (60, 5, 6)]:
        X, G = data(3, b=3, t=t, n=n, m=m)
        assert_close(md.per_sample_grad_norms(X, G), ref_norms(X, G), np.float64)


def test_gram_route_clamps_cancelling_round_off():
    """Two steps whose gradients cancel exactly: the Gram sum is round-off of either sign
    (about half of these come out negative before the clamp), never NaN from sqrt."""
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((200, 1, 7)), rng.standard_normal((200, 1, 5))
    X, G = np.concatenate([x, x], axis=1), np.concatenate([g, -g], axis=1)
    gram = forced_norms(X, G, False, "gram")
    scale = np.linalg.norm(x[:, 0], axis=1) * np.linalg.norm(g[:, 0], axis=1)
    assert (gram >= 0).all() and (gram <= 1e-7 * scale).all()  # sqrt(eps) * ||g|| ||x||
    assert (forced_norms(X, G, False, "materialize") <= 1e-15 * scale).all()


def test_norms_and_clipping_do_not_materialize(monkeypatch):
    """Peak memory stays O(inputs + n*m): far below the B*n*m per-sample gradients."""
    X, G = data(2, b=64, n=300, m=200)  # per-sample gradients: 30.7 MB
    inputs = X.nbytes + G.nbytes
    assert peak_bytes(lambda: md.per_sample_grad_norms(X, G, bias=True)) < inputs
    assert peak_bytes(lambda: md.clip_and_sum(X, G, 1.0, bias=True)) < 2 * inputs + 300 * 200 * 8
    X, G = data(3, b=16, t=40, n=300, m=200)  # materialize route, 7.7 MB of gradients
    monkeypatch.setattr(_batch, "BLOCK_BYTES", 2 * 300 * 200 * 8)  # two samples per block
    peak = peak_bytes(lambda: forced_norms(X, G, False, "materialize"))
    assert peak < 3 * 300 * 200 * 8


# --- clip_and_sum -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("nm", [(N, M), (M, N)])  # scales G rows, or X rows (the narrower)
def test_clip_and_sum_matches_materialize_clip_sum(dtype, convention, ndim, bias, nm):
    X, G = data(ndim, dtype, n=nm[0], m=nm[1])
    max_norm = float(np.median(ref_norms(X, G, bias)))  # about half the samples are clipped
    res = md.clip_and_sum(X, G, max_norm, convention=convention, bias=bias)
    dW_ref, db_ref, norms_ref = ref_clip_and_sum(X, G, max_norm, convention, bias)
    assert len(res) == (3 if bias else 2)
    assert res[0].shape == dW_ref.shape and res[0].dtype == dtype
    assert res[-1].shape == (B,) and res[-1].dtype == dtype
    assert_close(res[0], dW_ref, dtype)
    assert_close(res[-1], norms_ref, dtype)
    if bias:
        assert res[1].shape == (nm[0],) and res[1].dtype == dtype
        assert_close(res[1], db_ref, dtype)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("nm", [(N, M), (M, N)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_and_sum_in_many_staged_blocks(monkeypatch, convention, ndim, nm, dtype):
    """The clipped sum is a GEMM staged 3 samples at a time (a short last block), each block
    scaled in front of its GEMM; norms, factors, dW and db stay those of the reference, with
    an infinite and a zero sample in later blocks (their fix-ups index the whole batch)."""
    monkeypatch.setattr(_batch, "STAGE_BYTES", 1)
    monkeypatch.setattr(_batch, "MIN_STAGE_ROWS", 3)
    X, G = data(ndim, dtype, b=11, n=nm[0], m=nm[1], seed=3)
    max_norm = float(np.median(ref_norms(X, G, True)))
    got = md.clip_and_sum(X, G, max_norm, convention=convention, bias=True)
    want = ref_clip_and_sum(X, G, max_norm, convention, True)
    for g, w in zip(got, want):
        assert_close(g, w, dtype)
    G[7, ...] = 0.0  # sample 7 (third block) has norm 0: factor 1
    X[(9,) + (0,) * (ndim - 1)] = np.inf  # sample 9 (fourth block): norm inf, factor 0
    dW, db, norms = md.clip_and_sum(X, G, max_norm, convention=convention, bias=True)
    assert norms[7] == 0 and norms[9] == np.inf
    _, db_ref, _ = ref_clip_and_sum(np.delete(X, 9, 0), np.delete(G, 9, 0), max_norm, convention, True)
    assert_close(db, db_ref, dtype)  # c_9 = 0 times a finite db_9
    infinite = np.isinf(md.per_sample_grads(X, G, convention=convention)[9])
    assert np.isnan(dW[infinite]).all() and np.isfinite(dW[~infinite]).all()


@pytest.mark.parametrize("ndim", [2, 3])
def test_clip_and_sum_limits(ndim):
    X, G = data(ndim)
    dW, db, norms = md.clip_and_sum(X, G, 1e300, bias=True)  # nothing clipped
    ref = md.batch_grad(X, G, bias=True)
    assert_close(dW, ref[0], np.float64)
    assert_close(db, ref[1], np.float64)
    dW, norms = md.clip_and_sum(X, G, 1e-3)  # every sample clipped to norm 1e-3
    assert (norms > 1e-3).all()
    per = md.per_sample_grads(X, G)
    assert_close(dW, (per / norms[:, None, None] * 1e-3).sum(axis=0), np.float64)


def test_clip_and_sum_zero_norm_sample_has_factor_one():
    X, G = data(2)
    G[1] = 0.0
    dW, db, norms = md.clip_and_sum(X, G, 0.5, bias=True)
    assert norms[1] == 0
    assert np.isfinite(dW).all() and np.isfinite(db).all()
    assert_close(dW, ref_clip_and_sum(X, G, 0.5, bias=True)[0], np.float64)


def test_clip_and_sum_accepts_integer_max_norm():
    X, G = data(2)
    np.testing.assert_array_equal(md.clip_and_sum(X, G, 2)[0], md.clip_and_sum(X, G, 2.0)[0])
    np.testing.assert_array_equal(md.clip_and_sum(X, G, np.int64(2))[0], md.clip_and_sum(X, G, 2.0)[0])


# --- NaN and inf -------------------------------------------------------------------------------------
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("nm", [(N, M), (M, N)])
def test_nan_propagates(ndim, nm):
    X, G = data(ndim, n=nm[0], m=nm[1])
    X[(1,) + (0,) * (ndim - 1)] = np.nan  # one entry of sample 1
    per = md.per_sample_grads(X, G)
    assert np.isnan(per[1, :, 0]).all() and np.isfinite(np.delete(per, 1, axis=0)).all()
    assert np.isnan(md.batch_grad(X, G)[:, 0]).all()
    norms = md.per_sample_grad_norms(X, G)
    assert np.isnan(norms[1]) and np.isfinite(np.delete(norms, 1)).all()
    if ndim == 3:
        for route in ("gram", "materialize"):
            assert np.isnan(forced_norms(X, G, False, route)[1])
    # clip factor of sample 1 is NaN: the whole sum turns NaN, it is not silently dropped
    dW, db, norms = md.clip_and_sum(X, G, 1.0, bias=True)
    assert np.isnan(dW).all() and np.isnan(db).all() and np.isnan(norms[1])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("nm", [(N, M), (M, N)])
def test_inf_sample_in_clip_and_sum_gives_nan(nm):
    X, G = data(2, n=nm[0], m=nm[1])
    X[2, 1] = np.inf
    dW, norms = md.clip_and_sum(X, G, 1.0)
    assert norms[2] == np.inf
    # c_2 = max_norm / inf = 0, and 0 * inf = NaN exactly where g_2 is infinite
    assert np.isnan(dW[:, 1]).all() and np.isfinite(np.delete(dW, 1, axis=1)).all()
    assert np.isinf(md.per_sample_grads(X, G)[2, :, 1]).all()


# --- threads, layouts, dtypes ----------------------------------------------------------------------------
def _all_results(X, G, n_threads=None):
    return [
        md.per_sample_grads(X, G, n_threads=n_threads),
        md.per_sample_grads(X, G, convention="xW", bias=True, n_threads=n_threads)[0],
        md.batch_grad(X, G, bias=True)[0],
        md.per_sample_grad_norms(X, G, bias=True, n_threads=n_threads),
        *md.clip_and_sum(X, G, 1.0, bias=True, n_threads=n_threads),
    ]


@pytest.mark.parametrize("ndim", [2, 3])
def test_thread_count_invariance(ndim):
    X, G = data(ndim, b=33, n=17, m=29)
    ref = _all_results(X, G, 1)
    for n_threads in (2, 3, -1, None):
        for got, want in zip(_all_results(X, G, n_threads), ref):
            np.testing.assert_array_equal(got, want)


def layouts(A):
    """Views of the same values: Fortran order, strided, negative stride, read-only,
    byte-swapped, broadcast."""
    fortran = np.asfortranarray(A)
    big = np.zeros(A.shape[:-1] + (2 * A.shape[-1],), A.dtype)
    big[..., ::2] = A
    reversed_ = np.ascontiguousarray(A[::-1])[::-1]
    readonly = A.copy()
    readonly.flags.writeable = False
    swapped = A.astype(A.dtype.newbyteorder(">" if A.dtype.byteorder in "=<" else "<"))
    return {
        "fortran": fortran,
        "strided": big[..., ::2],
        "negative": reversed_,
        "readonly": readonly,
        "byteswapped": swapped,
    }


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("which", ["fortran", "strided", "negative", "readonly", "byteswapped"])
def test_layout_invariance(ndim, which):
    X, G = data(ndim)
    ref = _all_results(X, G)
    for Xv, Gv in [(layouts(X)[which], G), (X, layouts(G)[which]), (layouts(X)[which], layouts(G)[which])]:
        np.testing.assert_array_equal(Xv, X)
        for got, want in zip(_all_results(Xv, Gv), ref):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("ndim", [2, 3])
def test_broadcast_views(ndim):
    rng = np.random.default_rng(1)
    row_x, row_g = rng.standard_normal(M), rng.standard_normal(N)
    lead = (B,) if ndim == 2 else (B, T)
    Xv, Gv = np.broadcast_to(row_x, lead + (M,)), np.broadcast_to(row_g, lead + (N,))
    ref = _all_results(np.array(Xv), np.array(Gv))
    for got, want in zip(_all_results(Xv, Gv), ref):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "xdt, gdt, expected",
    [
        (np.float32, np.float32, np.float32),
        (np.float32, np.float64, np.float64),
        (np.int32, np.float32, np.float64),
        (np.int64, np.int8, np.float64),
        (np.bool_, np.float32, np.float64),
        (np.float16, np.float32, np.float32),
    ],
)
def test_dtype_policy(xdt, gdt, expected):
    X, G = data(3)
    X, G = (X * 3).astype(xdt), (G * 3).astype(gdt)
    for res in _all_results(X, G):
        assert res.dtype == expected
    ref = _all_results(X.astype(np.float64), G.astype(np.float64))
    assert_close(md.per_sample_grads(X, G), ref[0], expected)


# --- empty dimensions ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ndim, b, t, n, m",
    [
        (2, 0, 0, 3, 6),
        (2, 5, 0, 0, 6),
        (2, 5, 0, 3, 0),
        (3, 0, 4, 3, 6),
        (3, 5, 0, 3, 6),
        (3, 5, 4, 0, 6),
        (3, 5, 4, 3, 0),
    ],
)
def test_empty_dimensions(ndim, b, t, n, m):
    X, G = data(ndim, b=b, t=t, n=n, m=m)
    for convention in CONVENTIONS:
        shape = (b, n, m) if convention == "Wx" else (b, m, n)
        dW, db = md.per_sample_grads(X, G, convention=convention, bias=True)
        assert dW.shape == shape and db.shape == (b, n)
        np.testing.assert_array_equal(dW, ref_grads(X, G, convention)[0])
        np.testing.assert_array_equal(db, ref_grads(X, G, convention)[1])
        out = np.full(shape, 7.0)  # garbage that must be overwritten
        assert md.per_sample_grads(X, G, convention=convention, out=out) is out
        np.testing.assert_array_equal(out, ref_grads(X, G, convention)[0])
        dW, db = md.batch_grad(X, G, convention=convention, bias=True)
        assert dW.shape == shape[1:] and db.shape == (n,)
        np.testing.assert_array_equal(dW, ref_grads(X, G, convention)[0].sum(axis=0))
        dW, db, norms = md.clip_and_sum(X, G, 1.0, convention=convention, bias=True)
        assert dW.shape == shape[1:] and db.shape == (n,) and norms.shape == (b,)
    np.testing.assert_array_equal(md.per_sample_grad_norms(X, G, bias=True), ref_norms(X, G, True))
    if ndim == 3:
        for route in ("gram", "materialize"):
            np.testing.assert_array_equal(forced_norms(X, G, True, route), ref_norms(X, G, True))


def test_no_steps_gives_zeros_not_garbage():
    X, G = data(3, t=0)
    dW, db = md.per_sample_grads(X, G, bias=True)
    assert dW.shape == (B, N, M) and not dW.any() and not db.any()
    assert not md.batch_grad(X, G).any() and not md.per_sample_grad_norms(X, G).any()


# --- errors --------------------------------------------------------------------------------------------------
FUNCS = {
    "per_sample_grads": lambda X, G, **k: md.per_sample_grads(X, G, **k),
    "batch_grad": lambda X, G, **k: md.batch_grad(X, G, **k),
    "per_sample_grad_norms": lambda X, G, **k: md.per_sample_grad_norms(X, G, **k),
    "clip_and_sum": lambda X, G, **k: md.clip_and_sum(X, G, 1.0, **k),
}


@pytest.mark.parametrize("name", list(FUNCS))
def test_shape_errors_name_both_arrays(name):
    f = FUNCS[name]
    X, G = data(2)
    with pytest.raises(ValueError, match=r"X and G: batch sizes differ: X has B=5 \(axis 0\), G has B=4 \(axis 0\)"):
        f(X, G[:4])
    X3, G3 = data(3)
    with pytest.raises(ValueError, match=r"X and G: batch sizes differ: X has B=4 \(axis 0\), G has B=5 \(axis 0\)"):
        f(X3[:4], G3)
    msg = r"X and G: sequence lengths differ: X has T=4 \(axis 1\), G has T=3 \(axis 1\)"
    with pytest.raises(ValueError, match=msg):
        f(X3, G3[:, :3])
    with pytest.raises(ValueError, match=r"X and G: expected both 2-D .* got X 2-D with shape \(5,6\) and G 3-D"):
        f(X, G3)
    with pytest.raises(ValueError, match=r"X and G: expected both 2-D .* got X 3-D with shape \(5,4,6\) and G 2-D"):
        f(X3, G)
    for bad, desc in [(np.float64(1.0), r"0-D with shape \(\)"), (X[0], r"1-D with shape \(6,\)"), (X3[None], "4-D")]:
        with pytest.raises(ValueError, match=r"X: expected a 2-D or 3-D array, got " + desc):
            f(bad, G)
        with pytest.raises(ValueError, match=r"G: expected a 2-D or 3-D array, got " + desc):
            f(G, bad)


@pytest.mark.parametrize("name", list(FUNCS))
def test_dtype_errors(name):
    f = FUNCS[name]
    X, G = data(2)
    with pytest.raises(TypeError, match="X: real inputs are required, got dtype complex128"):
        f(X.astype(np.complex128), G)
    with pytest.raises(TypeError, match="G: real inputs are required, got dtype complex64"):
        f(X, G.astype(np.complex64))
    with pytest.raises(TypeError, match="X: unsupported dtype object"):
        f(X.astype(object), G)
    with pytest.raises(TypeError, match="G: unsupported dtype str"):
        f(X, G.astype(str))
    with pytest.raises(TypeError, match="G: unsupported dtype datetime64"):
        f(X, np.zeros(G.shape, "datetime64[s]"))


@pytest.mark.parametrize("name", ["per_sample_grads", "batch_grad", "clip_and_sum"])
def test_bad_convention(name):
    X, G = data(2)
    with pytest.raises(ValueError, match=r"convention: expected one of 'Wx', 'xW', got 'WX'"):
        FUNCS[name](X, G, convention="WX")


def test_bad_reduce():
    X, G = data(2)
    with pytest.raises(ValueError, match=r"reduce: expected one of 'sum', 'mean', got 'avg'"):
        md.batch_grad(X, G, reduce="avg")
    with pytest.raises(ValueError, match=r"reduce: expected one of 'sum', 'mean', got None"):
        md.batch_grad(X, G, reduce=None)


@pytest.mark.parametrize("name", ["per_sample_grads", "per_sample_grad_norms", "clip_and_sum"])
def test_bad_n_threads(name):
    X, G = data(2)
    with pytest.raises(ValueError, match="n_threads: expected None, -1 or an int from 1 to \\d+ \\(the thread limit\\), got 0"):
        FUNCS[name](X, G, n_threads=0)
    with pytest.raises(ValueError, match="n_threads: expected None, -1 or an int from 1 to \\d+ \\(the thread limit\\), got -2"):
        FUNCS[name](X, G, n_threads=-2)
    with pytest.raises(TypeError, match="n_threads: expected None or an int, got float"):
        FUNCS[name](X, G, n_threads=2.0)


@pytest.mark.parametrize("value", [0, -1.0, 0.0, float("inf"), float("nan"), -np.inf])
def test_bad_max_norm_value(value):
    X, G = data(2)
    with pytest.raises(ValueError, match="max_norm: expected a positive finite float, got"):
        md.clip_and_sum(X, G, value)


@pytest.mark.parametrize("value", ["1.0", None, True, np.array([1.0]), 1 + 0j])
def test_bad_max_norm_type(value):
    X, G = data(2)
    with pytest.raises(TypeError, match="max_norm: expected a positive finite float, got"):
        md.clip_and_sum(X, G, value)


def test_bad_route():
    X, G = data(3)
    with pytest.raises(ValueError, match="route: expected one of 'gram', 'materialize', got 'fast'"):
        forced_norms(X, G, False, "fast")


@pytest.mark.parametrize("ndim", [2, 3])
def test_bad_out(ndim):
    X, G = data(ndim)
    f = md.per_sample_grads
    with pytest.raises(ValueError, match=r"out: expected shape \(5,3,6\), got \(5,6,3\)"):
        f(X, G, out=np.empty((B, M, N)))
    with pytest.raises(ValueError, match=r"out: expected shape \(5,6,3\), got \(5,3,6\)"):
        f(X, G, convention="xW", out=np.empty((B, N, M)))
    with pytest.raises(ValueError, match=r"out: expected shape \(5,3,6\), got \(5,4,6\)"):  # wrong n
        f(X, G, out=np.empty((B, N + 1, M)))
    with pytest.raises(ValueError, match="out: expected dtype float64, got float32"):
        f(X, G, out=np.empty((B, N, M), np.float32))
    with pytest.raises(ValueError, match="out: expected dtype float32, got float64"):
        f(X.astype(np.float32), G.astype(np.float32), out=np.empty((B, N, M)))
    with pytest.raises(ValueError, match="out: expected a C-contiguous array"):
        f(X, G, out=np.empty((B, M, N)).transpose(0, 2, 1))
    readonly = np.empty((B, N, M))
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="out: expected a writeable array"):
        f(X, G, out=readonly)
    with pytest.raises(ValueError, match="out: expected native byte order"):
        f(X, G, out=np.empty((B, N, M), np.dtype(np.float64).newbyteorder("S")))
    with pytest.raises(TypeError, match="out: expected a numpy.ndarray, got list"):
        f(X, G, out=np.empty((B, N, M)).tolist())


def test_out_overlapping_an_input():
    buf = np.random.default_rng(0).standard_normal(B * N * M)
    out = buf.reshape(B, N, M)
    X = buf[: B * M].reshape(B, M)
    G = buf[-B * N :].reshape(B, N)
    with pytest.raises(ValueError, match="out: must not overlap an input array"):
        md.per_sample_grads(X, np.ones((B, N)), out=out)
    with pytest.raises(ValueError, match="out: must not overlap an input array"):
        md.per_sample_grads(np.ones((B, M)), G, out=out)


# --- properties ------------------------------------------------------------------------------------------------
_floats = st.floats(-10, 10, allow_nan=False, width=64)


@st.composite
def xg_pairs(draw):
    ndim = draw(st.sampled_from([2, 3]))
    b, t, n, m = (draw(st.integers(0, 5)) for _ in range(4))
    lead = (b,) if ndim == 2 else (b, t)
    dtype = draw(st.sampled_from(DTYPES))
    X = draw(hnp.arrays(dtype, lead + (m,), elements=_floats.map(dtype)))
    G = draw(hnp.arrays(dtype, lead + (n,), elements=_floats.map(dtype)))
    return X, G


@settings(max_examples=60, deadline=None)
@given(xg_pairs(), st.sampled_from(CONVENTIONS), st.booleans())
def test_property_against_einsum(xg, convention, bias):
    X, G = xg
    dtype = X.dtype.type
    dW_ref, db_ref = ref_grads(X, G, convention)
    dW, db = md.per_sample_grads(X, G, convention=convention, bias=True)
    assert_close(dW, dW_ref, dtype)
    assert_close(db, db_ref, dtype)
    assert_close(md.batch_grad(X, G, convention=convention), dW_ref.sum(axis=0), dtype)
    # norms: absolute tolerance scaled by ||G[b]|| ||X[b]||, the size of the Gram sum's terms
    ref = ref_norms(X, G, bias)
    axes = tuple(range(1, X.ndim))
    g2 = (np.asarray(G, float) ** 2).sum(axis=axes)
    x2 = (np.asarray(X, float) ** 2).sum(axis=axes)
    scale = 1.0 + np.sqrt(g2 * (1.0 + x2))
    tol = np.sqrt(rtol_for(dtype)) if X.ndim == 3 else rtol_for(dtype)
    routes = ("gram", "materialize") if X.ndim == 3 else (None,)
    for route in routes:
        got = forced_norms(np.ascontiguousarray(X), np.ascontiguousarray(G), bias, route)
        assert np.all(np.abs(got - ref) <= tol * scale)


@settings(max_examples=40, deadline=None)
@given(xg_pairs(), st.floats(0.01, 100))
def test_property_clipped_norms_are_bounded(xg, max_norm):
    """Each clipped per-sample gradient has norm <= max_norm, so ||dW|| <= B * max_norm."""
    X, G = xg
    dW, db, norms = md.clip_and_sum(X, G, max_norm, bias=True)
    total = np.sqrt((np.asarray(dW, float) ** 2).sum() + (np.asarray(db, float) ** 2).sum())
    assert total <= len(X) * max_norm * (1 + 1e-4) + 1e-6


@pytest.mark.parametrize(
    "call",
    [
        lambda X, G, b: md.per_sample_grads(X, G, bias=b),
        lambda X, G, b: md.batch_grad(X, G, bias=b),
        lambda X, G, b: md.per_sample_grad_norms(X, G, bias=b),
        lambda X, G, b: md.clip_and_sum(X, G, 1.0, bias=b),
    ],
)
def test_bias_must_be_a_bool(call):
    X, G = np.ones((2, 3)), np.ones((2, 4))
    with pytest.raises(TypeError, match="bias: expected True or False, got str 'yes'"):
        call(X, G, "yes")
    with pytest.raises(TypeError, match="bias: expected True or False, got int 1"):
        call(X, G, 1)


def test_batch_grad_and_clip_and_sum_honour_max_bytes(monkeypatch):
    X, G = np.ones((1, 100)), np.ones((1, 100))  # 1.6 kB in, an 80 kB (100, 100) out
    with pytest.raises(md.OutputTooLargeError, match=r"batch_grad: the output \(100, 100\) float64"):
        md.batch_grad(X, G, max_bytes=1000)
    with pytest.raises(md.OutputTooLargeError, match=r"clip_and_sum: the output \(100, 100\) float64"):
        md.clip_and_sum(X, G, 1.0, max_bytes=1000)
    monkeypatch.setenv("MATDERIV_MAX_BYTES", "1000")
    with pytest.raises(md.OutputTooLargeError, match="batch_grad"):
        md.batch_grad(X, G)
    with pytest.raises(md.OutputTooLargeError, match="clip_and_sum"):
        md.clip_and_sum(X, G, 1.0, bias=True)


@pytest.mark.parametrize("route", [None, "gram", "materialize"])
@pytest.mark.parametrize("scale", [3e19, 1e-25])
def test_float32_norms_do_not_overflow_or_underflow_in_the_squares(route, scale):
    """||G[b]|| ||X[b]|| fits float32 although the squares of the entries do not."""
    X = np.full((2, 1, 3), scale, dtype=np.float32)
    G = np.full((2, 1, 3), 1 / scale, dtype=np.float32) * np.float32(2.0)
    expected = np.float32(2.0 * 3.0)  # ||G_b|| ||X_b|| = sqrt(3) * 2/s * sqrt(3) * s
    if route is None:
        got2 = md.per_sample_grad_norms(X[:, 0], G[:, 0])
        np.testing.assert_allclose(got2, expected, rtol=1e-6)
        got3 = md.per_sample_grad_norms(X, G)
    else:
        got3 = forced_norms(X, G, False, route=route)
    assert got3.dtype == np.float32
    np.testing.assert_allclose(got3, expected, rtol=1e-6)
    dW, norms = md.clip_and_sum(X[:, 0], G[:, 0], 1.0)
    assert np.all(np.isfinite(dW))


@pytest.mark.parametrize("ndim", [2, 3])
def test_float32_norms_accumulate_in_float64_without_a_float64_copy(monkeypatch, ndim):
    """The row sums are float64 (matching a float64 reference to float32's last bit) and
    no float64 copy of X or G is made (the peak is far below the inputs' size; the 3-D
    Gram route converts one block of samples at a time)."""
    monkeypatch.setattr(_batch, "BLOCK_BYTES", 2**16)
    X, G = data(ndim, np.float32, b=2048, t=3, n=40, m=50)
    want = ref_norms(X, G, True)  # float64 arithmetic on the float32 values
    got = md.per_sample_grad_norms(X, G, bias=True)
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=2e-7)
    _, norms = md.clip_and_sum(X, G, 1.0)
    np.testing.assert_allclose(norms, ref_norms(X, G).astype(np.float32), rtol=2e-7)
    inputs = X.nbytes + G.nbytes
    assert peak_bytes(lambda: md.per_sample_grad_norms(X, G, bias=True)) < inputs / 4
    assert peak_bytes(lambda: md.clip_and_sum(X, G, 1.0)) < inputs + 40 * 50 * 4 + 2048 * 8 * 3


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t", [0, 1, 4, 9])
def test_gram_kernel_and_gram_blocks_agree(monkeypatch, dtype, t):
    """Short sequences take the Gram route in one kernel pass, long ones in BLAS blocks:
    both give the einsum norms (also where steps cancel, and for float32 entries whose
    squares overflow float32)."""
    X, G = data(3, dtype, b=7, t=t)
    want = ref_norms(X, G, True)
    kernel = forced_norms(X, G, True, "gram")
    monkeypatch.setattr(_batch, "GRAM_KERNEL_STEPS", 0)
    monkeypatch.setattr(_batch, "BLOCK_BYTES", 1)  # one sample per block
    blocks = forced_norms(X, G, True, "gram")
    assert_close(kernel, want, dtype)
    assert_close(blocks, want, dtype)
    big = np.full((2, 2, 3), 3e19, dtype=np.float32)
    assert_close(forced_norms(big, 1 / big, False, "gram"), [6.0, 6.0], np.float32)
    x, g = X[:, :1], G[:, :1]
    cancelled = forced_norms(np.concatenate([x, x], axis=1), np.concatenate([g, -g], axis=1), False, "gram")
    assert (cancelled >= 0).all() and (cancelled <= 1e-3 * want.max()).all()
