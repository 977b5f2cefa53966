"""sum_grad_squared, grad_variance, per_sample_grad_dots and kfac_factors against
statistics of per-sample gradients materialized with einsum in float64."""
from __future__ import annotations

import numpy as np
import pytest

import matderiv as md
from conftest import CONVENTIONS, REAL_DTYPES, assert_close, forced_dots, peak_bytes
from matderiv import _batch, statistics
from test_gradients import layouts, data, ref_grads, ref_norms

B, T, N, M = 5, 4, 3, 6
ROUTES = ["gram", "materialize"]


def ref_dots(X, G, X2, G2, bias=False):
    dW, db = ref_grads(X, G)
    dW2, db2 = ref_grads(X2, G2)
    K = np.einsum("aij,bij->ab", dW, dW2)
    return K + db @ db2.T if bias else K


def ref_kfac(X, G, bias, mode):
    """The K-FAC definitions of kfac_factors' docstring, by einsum over an explicitly augmented X."""
    X, G = np.asarray(X, np.float64), np.asarray(G, np.float64)
    if bias:
        X = np.concatenate([X, np.ones(X.shape[:-1] + (1,))], axis=-1)
    if X.ndim == 2:
        return X.T @ X / len(X), G.T @ G / len(G)
    b, t = X.shape[:2]
    if mode == "expand":
        return np.einsum("bti,btj->ij", X, X) / (b * t), np.einsum("bti,btj->ij", G, G) / b
    xbar, gbar = X.mean(axis=1), G.sum(axis=1)
    return xbar.T @ xbar / b, gbar.T @ gbar / b


def second_batch(ndim, dtype=np.float64, b=3, t=7):
    return data(ndim, dtype, b=b, t=t, seed=1)


# --- sum_grad_squared ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", REAL_DTYPES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("bias", [False, True])
def test_sum_grad_squared_matches_einsum(dtype, convention, ndim, bias):
    X, G = data(ndim, dtype)
    res = md.sum_grad_squared(X, G, convention=convention, bias=bias)
    dW, db = ref_grads(X, G, convention)
    got = res[0] if bias else res
    assert got.shape == dW.shape[1:] and got.dtype == dtype and got.flags.c_contiguous
    assert_close(got, (dW**2).sum(axis=0), dtype)
    if bias:
        assert res[1].shape == (N,) and res[1].dtype == dtype
        assert_close(res[1], (db**2).sum(axis=0), dtype)


def test_sum_grad_squared_in_many_blocks(monkeypatch):
    X, G = data(3, b=9)
    monkeypatch.setattr(_batch, "BLOCK_BYTES", 2 * N * M * 8)  # two samples per block
    assert_close(md.sum_grad_squared(X, G), (ref_grads(X, G)[0] ** 2).sum(axis=0), np.float64)


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("dtype", REAL_DTYPES)
def test_sum_grad_squared_2d_in_many_staged_blocks(monkeypatch, convention, dtype):
    """2-D squares formed 3 rows at a time in front of each block's GEMM (a short last
    block), misaligned inputs included: the reference's sums, bias included."""
    from test_pipeline import _misaligned

    monkeypatch.setattr(_batch, "STAGE_BYTES", 1)
    monkeypatch.setattr(_batch, "MIN_STAGE_ROWS", 3)
    X, G = data(2, dtype, b=11)
    dW, db = ref_grads(X, G, convention)
    for A, C in ((X, G), (_misaligned(X), _misaligned(G))):
        got, got_b = md.sum_grad_squared(A, C, convention=convention, bias=True)
        assert_close(got, (dW**2).sum(axis=0), dtype)
        assert_close(got_b, (db**2).sum(axis=0), dtype)


# --- grad_variance ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", REAL_DTYPES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("ddof", [0, 1])
def test_grad_variance_matches_np_var(dtype, convention, ndim, bias, ddof):
    X, G = data(ndim, dtype)
    res = md.grad_variance(X, G, convention=convention, bias=bias, ddof=ddof)
    dW, db = ref_grads(X, G, convention)
    got = res[0] if bias else res
    assert got.shape == dW.shape[1:] and got.dtype == dtype and got.flags.c_contiguous
    assert_close(got, np.var(dW, axis=0, ddof=ddof), dtype)
    if bias:
        assert res[1].shape == (N,) and res[1].dtype == dtype
        assert_close(res[1], np.var(db, axis=0, ddof=ddof), dtype)


@pytest.mark.parametrize("route_bytes", [None, 3 * N * M * 8])
def test_grad_variance_3d_merges_blocks(monkeypatch, route_bytes):
    X, G = data(3, b=10)
    X += 5.0  # means far from 0, so a wrong merge shows
    if route_bytes:
        monkeypatch.setattr(_batch, "BLOCK_BYTES", route_bytes)  # blocks of 3, 3, 3, 1
    assert_close(md.grad_variance(X, G, ddof=1), np.var(ref_grads(X, G)[0], axis=0, ddof=1), np.float64)


@pytest.mark.parametrize("ndim, noise", [(2, 1e-4), (3, 1e-3)])
def test_grad_variance_when_the_mean_dominates(ndim, noise):
    """float32 gradients all near one value: E[g^2] - E[g]^2 in float32 has no correct
    digit left; the result keeps 1e-3 relative accuracy."""
    rng = np.random.default_rng(3)
    lead = (4000,) if ndim == 2 else (500, 3)
    X = (1 + noise * rng.standard_normal(lead + (M,))).astype(np.float32)
    G = (1 + noise * rng.standard_normal(lead + (N,))).astype(np.float32)
    dW = ref_grads(X, G)[0]  # float64 products of the float32 inputs
    want = np.var(dW, axis=0)
    got = md.grad_variance(X, G)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-3)
    d32 = dW.astype(np.float32)
    naive = (d32 * d32).mean(axis=0) - d32.mean(axis=0) ** 2
    assert np.max(np.abs(naive - want) / want) > 0.1  # the cancellation this avoids


def test_grad_variance_of_too_few_samples():
    for ndim in (2, 3):
        X, G = data(ndim, b=1)
        vW, vb = md.grad_variance(X, G, bias=True, ddof=1)  # np.var: 0 / 0
        assert np.isnan(vW).all() and np.isnan(vb).all()
        assert not md.grad_variance(X, G).any()  # one sample, ddof 0: exactly 0


# --- per_sample_grad_dots ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", REAL_DTYPES)
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("cross", [False, True])
def test_dots_match_einsum(dtype, ndim, bias, cross):
    X, G = data(ndim, dtype)
    X2, G2 = second_batch(ndim, dtype) if cross else (X, G)
    K = md.per_sample_grad_dots(X, G, *((X2, G2) if cross else ()), bias=bias)
    assert K.shape == (B, len(X2)) and K.dtype == dtype
    assert_close(K, ref_dots(X, G, X2, G2, bias), dtype)
    if not cross:
        np.testing.assert_array_equal(K, K.T)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("block_bytes", [None, 1, 300])
def test_dots_3d_routes(monkeypatch, route, bias, cross, block_bytes):
    if block_bytes:
        monkeypatch.setattr(_batch, "BLOCK_BYTES", block_bytes)
    X, G = data(3, b=7)
    X2, G2 = second_batch(3, b=9) if cross else (X, G)
    K = forced_dots(X, G, X2, G2, not cross, bias, route)
    assert_close(K, ref_dots(X, G, X2, G2, bias), np.float64)
    if not cross:
        np.testing.assert_array_equal(K, K.T)
    other = forced_dots(X, G, X2, G2, not cross, bias, ROUTES[route == "gram"])
    assert_close(K, other, np.float64)


def test_dots_route_rule_compares_costs():
    def shaped(B, T, n, m):  # the route reads shapes and the dtype only
        return _batch.Batch(np.broadcast_to(0.0, (B, T, m)), np.broadcast_to(0.0, (B, T, n)))

    assert statistics.dots_route(shaped(64, 4, 256, 256), shaped(64, 4, 256, 256)) == "gram"
    assert statistics.dots_route(shaped(64, 512, 16, 16), shaped(64, 512, 16, 16)) == "materialize"
    assert statistics.dots_route(shaped(64, 4, 256, 256), shaped(64, 0, 256, 256)) == "materialize"


@pytest.mark.parametrize("dtype", REAL_DTYPES)
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("bias", [False, True])
def test_dots_diagonal_is_squared_norms(dtype, ndim, bias):
    X, G = data(ndim, dtype, b=11)
    K = md.per_sample_grad_dots(X, G, bias=bias)
    assert_close(np.diag(K), md.per_sample_grad_norms(X, G, bias=bias).astype(np.float64) ** 2, dtype)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("dtype", REAL_DTYPES)
def test_dots_exactly_symmetric_in_blocks(monkeypatch, ndim, dtype):
    monkeypatch.setattr(_batch, "BLOCK_BYTES", 200)  # many uneven blocks
    X, G = data(ndim, dtype, b=23, n=7, m=9)
    for normalize in (False, True):
        K = md.per_sample_grad_dots(X, G, bias=True, normalize=normalize)
        np.testing.assert_array_equal(K, K.T)
    assert_close(md.per_sample_grad_dots(X, G), ref_dots(X, G, X, G), dtype)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("cross", [False, True])
def test_dots_normalize_gives_cosines(ndim, bias, cross):
    X, G = data(ndim)
    G[1] = 0  # a zero gradient (also its bias part): cosine 0 with everything
    X2, G2 = second_batch(ndim) if cross else (X, G)
    K = md.per_sample_grad_dots(X, G, *((X2, G2) if cross else ()), bias=bias, normalize=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        want = ref_dots(X, G, X2, G2, bias) / np.outer(ref_norms(X, G, bias), ref_norms(X2, G2, bias))
    want[1] = 0
    if not cross:
        want[:, 1] = 0
    assert_close(K, want, np.float64)
    assert not K[1].any() and np.all(np.abs(K) <= 1 + 1e-12)


def test_dots_mixed_dtypes_give_float64():
    X, G = data(2, np.float32)
    X2, G2 = second_batch(2)
    K = md.per_sample_grad_dots(X, G, X2, G2)
    assert K.dtype == np.float64
    assert_close(K, ref_dots(X, G, X2, G2), np.float32)


# --- kfac_factors -------------------------------------------------------------------------------------
def test_kfac_honours_max_bytes():
    """A (m, m) of a wide X is counted before it is allocated: 32 TiB here."""
    with pytest.raises(md.OutputTooLargeError, match=r"kfac_factors: the output \(2097152, 2097152\) float64 \+ \(2, 2\)"):
        md.kfac_factors(np.ones((1, 2**21)), np.ones((1, 2)))
    X, G = data(3, b=4, t=5, n=3, m=6)
    A, S = md.kfac_factors(X, G, mode="reduce", max_bytes=(7 * 7 + 3 * 3 + 4 * 6 + 4 * 3) * 8)
    assert A.shape == (6, 6)
    with pytest.raises(md.OutputTooLargeError, match=r"kfac_factors: .* \(4, 6\) float64 \+ \(4, 3\) float64"):
        md.kfac_factors(X, G, mode="reduce", max_bytes=(6 * 6 + 3 * 3) * 8)  # the per-sample means count too
    with pytest.raises(TypeError, match="max_bytes: expected an int or None, got float"):
        md.kfac_factors(X, G, max_bytes=1.0)


def test_kfac_one_sample_is_exactly_the_outer_product_of_vec_f():
    rng = np.random.default_rng(5)
    x, g = rng.integers(-9, 10, (1, M)).astype(float), rng.integers(-9, 10, (1, N)).astype(float)
    A, S = md.kfac_factors(x, g)
    vec_f = md.per_sample_grads(x, g)[0].T.reshape(-1)  # column-major vec of the (n, m) gradient
    np.testing.assert_array_equal(np.kron(A, S), np.outer(vec_f, vec_f))


@pytest.mark.parametrize("dtype", REAL_DTYPES)
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("mode", ["expand", "reduce"])
def test_kfac_matches_definitions(dtype, ndim, bias, mode):
    X, G = data(ndim, dtype)
    A, S = md.kfac_factors(X, G, bias=bias, mode=mode)
    A_ref, S_ref = ref_kfac(X, G, bias, mode)
    assert A.shape == (M + bias, M + bias) and S.shape == (N, N)
    assert A.dtype == dtype and S.dtype == dtype
    assert_close(A, A_ref, dtype)
    assert_close(S, S_ref, dtype)
    np.testing.assert_array_equal(A, A.T)
    np.testing.assert_array_equal(S, S.T)


def test_kfac_modes_agree_for_one_step_and_differ_otherwise():
    X, G = data(3, t=1)
    for a, b in zip(md.kfac_factors(X, G, mode="expand"), md.kfac_factors(X, G, mode="reduce")):
        assert_close(a, b, np.float64)
    X, G = data(3)
    assert not np.allclose(md.kfac_factors(X, G)[0], md.kfac_factors(X, G, mode="reduce")[0])


def test_kfac_of_no_samples_is_nan():
    A, S = md.kfac_factors(*data(2, b=0), bias=True)
    assert A.shape == (M + 1, M + 1) and np.isnan(A).all() and np.isnan(S).all()


# --- layouts, empty inputs, memory ----------------------------------------------------------------------
def _all_statistics(X, G):
    return [
        *md.sum_grad_squared(X, G, bias=True),
        md.sum_grad_squared(X, G, convention="xW"),
        *md.grad_variance(X, G, bias=True, ddof=1),
        md.per_sample_grad_dots(X, G, bias=True),
        md.per_sample_grad_dots(X, G, X[:2], G[:2], normalize=True),
        *md.kfac_factors(X, G, bias=True),
        *md.kfac_factors(X, G, mode="reduce"),
    ]


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("which", ["fortran", "strided", "negative", "readonly", "byteswapped", "misaligned"])
def test_layout_invariance(ndim, which):
    X, G = data(ndim)
    ref = _all_statistics(X, G)

    def view(A):
        if which != "misaligned":
            return layouts(A)[which]
        raw = np.zeros(A.nbytes + 1, np.uint8)[1:].view(A.dtype).reshape(A.shape)  # offset by one byte
        raw[...] = A
        return raw

    for Xv, Gv in [(view(X), G), (X, view(G)), (view(X), view(G))]:
        np.testing.assert_array_equal(Xv, X)
        for got, want in zip(_all_statistics(Xv, Gv), ref):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "ndim, b, t, n, m",
    [(2, 0, 0, 3, 6), (2, 5, 0, 0, 6), (2, 5, 0, 3, 0), (3, 0, 4, 3, 6), (3, 5, 0, 3, 6), (3, 5, 4, 0, 6), (3, 5, 4, 3, 0)],
)
def test_empty_dimensions(ndim, b, t, n, m):
    X, G = data(ndim, b=b, t=t, n=n, m=m)
    dW, db = ref_grads(X, G)
    for convention in CONVENTIONS:
        want = dW if convention == "Wx" else dW.transpose(0, 2, 1)
        s2, sb = md.sum_grad_squared(X, G, convention=convention, bias=True)
        np.testing.assert_array_equal(s2, (want**2).sum(axis=0))
        np.testing.assert_allclose(sb, (db**2).sum(axis=0), rtol=1e-14)  # a sum in another order
        vW, vb = md.grad_variance(X, G, convention=convention, bias=True)
        assert vW.shape == want.shape[1:] and vb.shape == (n,)
        if b == 0:
            assert np.isnan(vW).all() and np.isnan(vb).all()
        else:
            np.testing.assert_array_equal(vW, np.var(want, axis=0))
    K = md.per_sample_grad_dots(X, G, bias=True, normalize=True)
    assert K.shape == (b, b)
    np.testing.assert_array_equal(md.per_sample_grad_dots(X, G, bias=True), ref_dots(X, G, X, G, True))
    if ndim == 3:
        for route in ROUTES:
            np.testing.assert_array_equal(forced_dots(X, G, X, G, True, True, route), ref_dots(X, G, X, G, True))
    A, S = md.kfac_factors(X, G, bias=True)
    assert A.shape == (m + 1, m + 1) and S.shape == (n, n)


def test_statistics_do_not_materialize(monkeypatch):
    """Peak memory stays O(inputs + outputs), far below the B n m per-sample gradients."""
    X, G = data(2, b=64, n=300, m=200)  # per-sample gradients: 30.7 MB
    budget = 4 * (X.nbytes + G.nbytes) + 2 * 300 * 200 * 8
    assert peak_bytes(lambda: md.sum_grad_squared(X, G, bias=True)) < budget
    # the shifted variance: three (n, m) float64 sums (G^T w and (G*u)^T w as one (2n, m)
    # GEMM, (G*G)^T (w*w)), one (n, m) temporary, the result
    assert peak_bytes(lambda: md.grad_variance(X, G, bias=True)) < budget + 4 * 300 * 200 * 8
    assert peak_bytes(lambda: md.per_sample_grad_dots(X, G, bias=True, normalize=True)) < budget
    X, G = data(3, b=64, t=10, n=300, m=200)  # 30.7 MB of per-sample gradients
    monkeypatch.setattr(_batch, "BLOCK_BYTES", 2 * 300 * 200 * 8)  # two samples per block
    one = 300 * 200 * 8  # one (n, m) float64 array
    assert peak_bytes(lambda: md.sum_grad_squared(X, G)) < 5 * one
    assert peak_bytes(lambda: md.grad_variance(X, G)) < 10 * one  # block, mean, spread, deltas
    peak = peak_bytes(lambda: forced_dots(X, G, X, G, True, False, "materialize"))
    assert peak < 5 * one


def test_nan_propagates():
    X, G = data(2)
    X[2, 1] = np.nan
    assert np.isnan(md.sum_grad_squared(X, G)[:, 1]).all()
    assert np.isnan(md.grad_variance(X, G)[:, 1]).all()
    K = md.per_sample_grad_dots(X, G)
    assert np.isnan(K[2]).all() and not np.isnan(np.delete(np.delete(K, 2, 0), 2, 1)).any()


# --- errors ----------------------------------------------------------------------------------------------
STATS = {
    "sum_grad_squared": md.sum_grad_squared,
    "grad_variance": md.grad_variance,
    "per_sample_grad_dots": md.per_sample_grad_dots,
    "kfac_factors": md.kfac_factors,
}


@pytest.mark.parametrize("name", STATS)
def test_shape_and_dtype_errors(name):
    fn = STATS[name]
    X, G = data(2)
    with pytest.raises(ValueError, match=r"X: expected a 2-D or 3-D array, got 1-D"):
        fn(X[0], G)
    with pytest.raises(ValueError, match=r"X and G: batch sizes differ: X has B=5 .* G has B=4"):
        fn(X, G[:4])
    with pytest.raises(TypeError, match=r"G: real inputs are required, got dtype complex128"):
        fn(X, G + 1j)
    with pytest.raises(TypeError, match=r"bias: expected True or False, got int 1"):
        fn(X, G, bias=1)


@pytest.mark.parametrize("name", ["sum_grad_squared", "grad_variance"])
def test_bad_convention_and_max_bytes(name):
    X, G = data(2)
    with pytest.raises(ValueError, match=r"convention: expected one of 'Wx', 'xW', got 'wx'"):
        STATS[name](X, G, convention="wx")
    with pytest.raises(md.OutputTooLargeError, match=rf"{name}: the output \(3, 6\) float64"):
        STATS[name](X, G, max_bytes=100)
    with pytest.raises(TypeError, match=r"max_bytes: expected an int or None, got str"):
        STATS[name](X, G, max_bytes="1")


@pytest.mark.parametrize("ddof, error, match", [(-1, ValueError, r"ddof: expected a non-negative int, got -1"),
                                                (1.0, TypeError, r"ddof: expected a non-negative int, got float 1.0")])
def test_bad_ddof(ddof, error, match):
    with pytest.raises(error, match=match):
        md.grad_variance(*data(2), ddof=ddof)


def test_dots_errors():
    X, G = data(3)
    with pytest.raises(ValueError, match=r"X2 and G2: expected both or neither, got X2 only"):
        md.per_sample_grad_dots(X, G, X)
    with pytest.raises(ValueError, match=r"X2 and G2: expected both or neither, got G2 only"):
        md.per_sample_grad_dots(X, G, G2=G)
    with pytest.raises(ValueError, match=r"X2: expected 3-D like X \(shape \(5,4,6\)\), got 2-D"):
        md.per_sample_grad_dots(X, G, X[:, 0], G[:, 0])
    with pytest.raises(ValueError, match=r"X2: expected 6 columns \(last axis\) like X, got shape \(5,4,5\)"):
        md.per_sample_grad_dots(X, G, X[..., :5], G)
    with pytest.raises(ValueError, match=r"G2: expected 3 columns \(last axis\) like G, got shape \(5,4,2\)"):
        md.per_sample_grad_dots(X, G, X, G[..., :2])
    with pytest.raises(ValueError, match=r"X2 and G2: sequence lengths differ: X2 has T=4 .* G2 has T=3"):
        md.per_sample_grad_dots(X, G, X, G[:, :3])
    with pytest.raises(ValueError, match=r"G2: expected a 2-D or 3-D array, got 1-D"):
        md.per_sample_grad_dots(X, G, X, G[0, 0])
    with pytest.raises(TypeError, match=r"X2: real inputs are required, got dtype complex128"):
        md.per_sample_grad_dots(X, G, X + 0j, G)
    with pytest.raises(TypeError, match=r"normalize: expected True or False, got str 'yes'"):
        md.per_sample_grad_dots(X, G, normalize="yes")
    with pytest.raises(md.OutputTooLargeError, match=r"per_sample_grad_dots: the output \(5, 5\) float64"):
        md.per_sample_grad_dots(X, G, max_bytes=10)
    with pytest.raises(ValueError, match=r"route: expected one of 'gram', 'materialize', got 'fast'"):
        forced_dots(X, G, X, G, True, False, "fast")


def test_kfac_bad_mode():
    with pytest.raises(ValueError, match=r"mode: expected one of 'expand', 'reduce', got 'mean'"):
        md.kfac_factors(*data(3), mode="mean")
