"""md.one_hot and md.Embedding inputs of every batched function, against per-sample
gradients materialized by plain loops (np.zeros((B, V, d)), row v of g_b += G[b, t]), and
the lookup's Jacobian jacobian_awb(one_hot(idx, V), None) against its formula."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp

import matderiv as md
from conftest import REAL_DTYPES, assert_close, peak_bytes
from matderiv._kernels import _openmp

#: (idx shape, V): repeated indices within samples (V small), T = 1, 1-D idx, B = 0, T = 0
CASES = {
    "coincidences": ((6, 9), 4),
    "sparse": ((5, 7), 50),
    "T=1": ((6, 1), 5),
    "1-D": ((7,), 3),
    "B=0": ((0, 4), 6),
    "T=0": ((3, 0), 6),
}
D = 3


def _case(name, dtype, seed=0):
    shape, V = CASES[name]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, V, shape).astype(np.uint64 if name == "sparse" else np.int16)
    G = rng.standard_normal(shape + (D,)).astype(dtype)
    return idx, V, G


def _steps(idx) -> np.ndarray:
    """idx as (B, T) (1-D idx: T = 1)."""
    return idx.reshape(idx.shape[0], idx.shape[1] if idx.ndim == 2 else 1)


def _dense(idx, V, G) -> np.ndarray:
    """The per-sample gradients (B, V, d), by loops, in float64."""
    idx2 = _steps(idx)
    G2 = G.reshape(idx2.shape + (G.shape[-1],)).astype(np.float64)
    P = np.zeros((idx2.shape[0], V, G.shape[-1]))
    for b in range(idx2.shape[0]):
        for t in range(idx2.shape[1]):
            P[b, idx2[b, t]] += G2[b, t]
    return P


def _norms(P):
    return np.sqrt((P.reshape(len(P), P.shape[1] * P.shape[2]) ** 2).sum(axis=1))


@pytest.fixture(params=sorted(CASES))
def case(request):
    return request.param


@pytest.mark.parametrize("dtype", REAL_DTYPES)
def test_gradients_match_materialized(case, dtype):
    idx, V, G = _case(case, dtype)
    P, E = _dense(idx, V, G), md.Embedding(idx, V)
    B = len(P)
    psg = md.per_sample_grads(E, G)
    assert isinstance(psg, sp.csr_array) and psg.shape == (B, V * D) and psg.dtype == dtype
    assert psg.has_sorted_indices and psg.nnz == sum(len(np.unique(r)) for r in _steps(idx)) * D
    assert_close(psg.toarray().reshape(P.shape), P, dtype)
    norms = md.per_sample_grad_norms(E, G)
    assert norms.dtype == dtype
    assert_close(norms, _norms(P), dtype)
    for reduce, ref in (("sum", P.sum(axis=0)), ("mean", P.sum(axis=0) / B if B else np.full((V, D), np.nan))):
        got = md.batch_grad(E, G, reduce=reduce)
        assert got.dtype == dtype and got.shape == (V, D)
        assert_close(got, ref, dtype)
    with np.errstate(divide="ignore"):
        c = np.minimum(1.0, 0.7 / _norms(P))
    dW, clip_norms = md.clip_and_sum(E, G, 0.7)
    assert_close(dW, np.einsum("b,bvk->vk", c, P), dtype)
    assert_close(clip_norms, _norms(P), dtype)


@pytest.mark.parametrize("dtype", REAL_DTYPES)
def test_statistics_match_materialized(case, dtype):
    idx, V, G = _case(case, dtype)
    P, E = _dense(idx, V, G), md.Embedding(idx, V)
    B = len(P)
    assert_close(md.sum_grad_squared(E, G), (P**2).sum(axis=0), dtype)
    for ddof in (0, 1):
        got = md.grad_variance(E, G, ddof=ddof)
        assert got.dtype == dtype and got.shape == (V, D)
        with np.errstate(invalid="ignore", divide="ignore"):
            want = np.sum((P - P.sum(axis=0) / B) ** 2, axis=0) / max(B - ddof, 0)  # np.var's formula
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        assert_close(np.nan_to_num(got), np.nan_to_num(want), dtype)
    flat = P.reshape(B, V * D)
    K = md.per_sample_grad_dots(E, G)
    assert K.dtype == dtype and np.array_equal(K, K.T)
    assert_close(K, flat @ flat.T, dtype)
    n = _norms(P)
    inv = np.where(n > 0, 1 / np.where(n > 0, n, 1), 0.0)
    assert_close(md.per_sample_grad_dots(E, G, normalize=True), flat @ flat.T * np.outer(inv, inv), dtype)
    A, S = md.kfac_factors(E, G)
    steps = idx.size
    with np.errstate(invalid="ignore", divide="ignore"):
        want_A = np.array([(idx == v).sum() for v in range(V)]) / steps
        rows = G.reshape(-1, D).astype(np.float64)
        want_S = rows.T @ rows / B
    assert A.shape == (V,) and S.shape == (D, D) and A.dtype == S.dtype == dtype
    assert_close(np.nan_to_num(A), np.nan_to_num(want_A), dtype)
    assert_close(np.nan_to_num(S), np.nan_to_num(want_S), dtype)


@pytest.mark.parametrize("dtype", REAL_DTYPES)
def test_dots_between_two_lookups(dtype):
    idx, V, G = _case("coincidences", dtype)
    idx2, _, G2 = _case("coincidences", np.float64, seed=3)
    idx2, G2 = idx2[:4], G2[:4]
    P, P2 = (_dense(i, V, g).reshape(len(i), V * D) for i, g in ((idx, G), (idx2, G2)))
    K = md.per_sample_grad_dots(md.Embedding(idx, V), G, md.Embedding(idx2, V), G2)
    assert K.shape == (6, 4) and K.dtype == np.float64
    assert_close(K, P @ P2.T, dtype)


def test_kfac_reduce_on_steps_of_one():
    idx, V, G = _case("T=1", np.float64)
    E = md.Embedding(idx, V)
    for got, want in zip(md.kfac_factors(E, G, mode="reduce"), md.kfac_factors(E, G)):
        np.testing.assert_array_equal(got, want)


def test_variance_when_the_mean_dominates():
    """Row 0 touched by every sample with a common offset of 1e8: the centred sums keep the
    spread (of order 1), where E[g^2] - E[g]^2 would lose every digit."""
    rng = np.random.default_rng(5)
    B, T, V = 16, 3, 4
    idx = rng.integers(1, V, (B, T))
    idx[:, 0] = 0
    G = rng.standard_normal((B, T, 2)) + np.array([1e8, -3e8])
    got = md.grad_variance(md.Embedding(idx, V), G, ddof=1)
    P = _dense(idx, V, G)
    for v in range(V):
        for k in range(2):
            vals = [Fraction(float(x)) for x in P[:, v, k]]  # the float64 gradients, exactly
            mean = sum(vals) / B
            exact = float(sum((x - mean) ** 2 for x in vals) / (B - 1))
            assert got[v, k] == pytest.approx(exact, rel=1e-9, abs=1e-12)
    naive = (P**2).mean(axis=0) - P.mean(axis=0) ** 2
    assert abs(naive[0, 0] * B / (B - 1) - got[0, 0]) > 1e-3 * got[0, 0]  # the cancelling formula is off


def test_threads(threaded_kernels):
    """n_threads=2 with the serial threshold at 0: the kernel's parallel branches (per sample
    and the scatter's runs) give what one thread gives."""
    idx, V, G = _case("coincidences", np.float64)
    E = md.Embedding(idx, V)
    for fn in (
        lambda nt: (md.per_sample_grad_norms(E, G, n_threads=nt),),
        lambda nt: md.clip_and_sum(E, G, 0.5, n_threads=nt),
        lambda nt: (md.per_sample_grads(E, G, n_threads=nt).toarray(),),
    ):
        for one, two in zip(fn(1), fn(2)):
            np.testing.assert_array_equal(one, two)
    calls, threaded = threaded_kernels()["group_sums"]
    assert calls >= 6 and (threaded >= 3 if _openmp.have_openmp() else threaded == 0)


def test_norms_allocate_nothing_of_the_tables_size():
    rng = np.random.default_rng(2)
    B, T, V, d = 64, 16, 1_000_000, 16
    E, G = md.Embedding(rng.integers(0, V, (B, T)), V), rng.standard_normal((B, T, d))
    md.per_sample_grad_norms(E, G)  # warm up
    table = V * d * 8
    assert peak_bytes(lambda: md.per_sample_grad_norms(E, G)) < table // 100
    assert peak_bytes(lambda: md.per_sample_grads(E, G)) < table // 100
    assert peak_bytes(lambda: md.clip_and_sum(E, G, 1.0)) < table * 1.05  # the result alone
    assert peak_bytes(lambda: md.grad_variance(E, G)) < table * 1.05


def test_int64_indices(monkeypatch):
    """Tables and per-sample gradients beyond int32 indices: int64 keys in the kernel and
    int64 sparse indices (the limit lowered), the same values."""
    from matderiv import _validation

    idx, V, G = _case("coincidences", np.float64)
    E = md.Embedding(idx, V)
    want = [md.per_sample_grads(E, G).toarray(), md.per_sample_grad_norms(E, G), md.batch_grad(E, G),
            md.grad_variance(E, G), md.one_hot(idx[0], V).toarray()]
    monkeypatch.setattr(_validation.core, "INT32_INDEX_MAX", V - 1)
    P, A = md.per_sample_grads(E, G), md.one_hot(idx[0], V)
    assert P.indices.dtype == P.indptr.dtype == A.indices.dtype == np.int64
    got = [P.toarray(), md.per_sample_grad_norms(E, G), md.batch_grad(E, G), md.grad_variance(E, G), A.toarray()]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


# --- one_hot and the lookup's Jacobian -----------------------------------------------------------
def test_one_hot():
    idx = np.array([2, 0, 2, 4], dtype=np.uint8)
    A = md.one_hot(idx, 5)
    want = np.zeros((4, 5))
    want[np.arange(4), idx] = 1
    assert isinstance(A, sp.csr_array) and A.dtype == np.float64 and A.indices.dtype == np.int32
    np.testing.assert_array_equal(A.toarray(), want)
    assert md.one_hot(np.array([], dtype=int), 3).shape == (0, 3)


def test_lookup_jacobian_is_jacobian_awb_of_one_hot():
    rng = np.random.default_rng(4)
    idx, V, d = np.array([1, 3, 1, 0]), 5, 3
    J = md.jacobian_awb(md.one_hot(idx, V), None, W_shape=(V, d))
    X = np.zeros((4, V))
    X[np.arange(4), idx] = 1
    D = np.einsum("iv,jk->ijvk", X, np.eye(d))  # d y[i, j] / d E[v, k] = [idx_i = v] delta_jk
    np.testing.assert_array_equal(J.toarray(), D)
    np.testing.assert_array_equal(J.tovec("C"), D.reshape(4 * d, V * d))
    np.testing.assert_array_equal(J.tovec("F"), np.kron(np.eye(d), X))  # B^T (x) A with B = I
    E = rng.standard_normal((V, d))
    np.testing.assert_array_equal(J.jvp(E), E[idx])
    Gy = rng.standard_normal((4, d))
    want = np.zeros((V, d))
    np.add.at(want, idx, Gy)
    np.testing.assert_allclose(J.vjp(Gy), want, rtol=1e-15)


# --- errors: every check names its argument, before anything is allocated -------------------------
IDX = np.array([[0, 2], [1, 1]])
GOOD_G = np.ones((2, 2, 3))


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: md.Embedding(IDX, 2.0), TypeError, r"num_embeddings: expected a positive int, got float 2\.0"),
        (lambda: md.Embedding(IDX, 0), ValueError, r"num_embeddings: expected a positive int, got 0"),
        (lambda: md.Embedding(IDX.astype(float), 3), TypeError, r"idx: expected integer indices, got dtype float64"),
        (lambda: md.Embedding(np.zeros((1, 1, 1), int), 3), ValueError, r"idx: expected a 1-D or 2-D array, got 3-D"),
        (lambda: md.Embedding(IDX, 2), ValueError, r"idx: expected integers in \[0, 2\), got 2 at position \(0, 1\)"),
        (lambda: md.Embedding(np.array([0, -1]), 3), ValueError, r"idx: expected integers in \[0, 3\), got -1 at position 1"),
        (lambda: md.one_hot(IDX, 3), ValueError, r"idx: expected a 1-D array, got 2-D"),
        (lambda: md.one_hot([0, 5], 3), ValueError, r"idx: expected integers in \[0, 3\), got 5 at position 1"),
        (lambda: md.one_hot([0], True), TypeError, r"num_classes: expected a positive int"),
        (lambda: md.batch_grad(md.Embedding(IDX, 3), np.ones((2, 3, 3))), ValueError,
         r"G: expected shape idx.shape \+ \(d,\) = \(2,2,d\), got \(2,3,3\)"),
        (lambda: md.per_sample_grad_norms(md.Embedding(IDX, 3), np.ones((2, 2))), ValueError,
         r"G: expected shape idx.shape \+ \(d,\) = \(2,2,d\), got \(2,2\)"),
        (lambda: md.per_sample_grad_norms(md.Embedding(IDX, 3), GOOD_G.astype(complex)), TypeError,
         r"G: real inputs are required, got dtype complex128"),
        (lambda: md.batch_grad(md.Embedding(IDX, 3), GOOD_G, convention="xW"), ValueError,
         r"convention: an Embedding's results always have the table's shape \(V, d\); expected the default 'Wx', got 'xW'"),
        (lambda: md.sum_grad_squared(md.Embedding(IDX, 3), GOOD_G, bias=True), ValueError,
         r"bias: an embedding lookup has no bias"),
        (lambda: md.per_sample_grads(md.Embedding(IDX, 3), GOOD_G, out=np.empty(3)), ValueError,
         r"out: expected None for an Embedding"),
        (lambda: md.per_sample_grad_dots(md.Embedding(IDX, 3), GOOD_G, IDX, GOOD_G), TypeError,
         r"X2: expected an Embedding like X \(or None\), got ndarray"),
        (lambda: md.per_sample_grad_dots(md.Embedding(IDX, 3), GOOD_G, md.Embedding(IDX, 4), GOOD_G), ValueError,
         r"X2: expected num_embeddings=3 like X, got 4"),
        (lambda: md.per_sample_grad_dots(md.Embedding(IDX, 3), GOOD_G, md.Embedding(IDX, 3), np.ones((2, 2, 4))),
         ValueError, r"G2: expected d=3 columns \(last axis\) like G, got shape \(2,2,4\)"),
        (lambda: md.kfac_factors(md.Embedding(IDX, 3), GOOD_G, mode="reduce"), ValueError,
         r"mode: 'reduce' averages the one-hot rows of a sequence \(T = 2\)"),
    ],
)
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_output_too_large_before_allocating():
    E = md.Embedding(np.array([[0]]), 10**6)
    with pytest.raises(md.OutputTooLargeError, match="batch_grad"):
        md.batch_grad(E, np.ones((1, 1, 64)), max_bytes=2**20)


# --- dask: idx (and G) chunked along B, against the in-memory functions tested above -------------
DASK_CALLS = [
    ("per_sample_grads", (), {}),
    ("batch_grad", (), {"reduce": "mean"}),
    ("per_sample_grad_norms", (), {}),
    ("clip_and_sum", (0.8,), {}),
    ("sum_grad_squared", (), {}),
    ("grad_variance", (), {"ddof": 1}),
    ("per_sample_grad_dots", (), {"normalize": True}),
    ("kfac_factors", (), {}),
]


@pytest.mark.parametrize("lazy", ["idx", "G", "both"])
@pytest.mark.parametrize("name, args, kwargs", DASK_CALLS, ids=[c[0] for c in DASK_CALLS])
def test_dask(name, args, kwargs, lazy):
    dask = pytest.importorskip("dask", reason="the dask extra is optional: pip install -e \".[dask]\" (the test extra includes it)")
    da = pytest.importorskip("dask.array", reason="the dask extra is optional: pip install -e \".[dask]\" (the test extra includes it)")
    idx, V, G = _case("coincidences", np.float32)
    idx, G = np.concatenate([idx, idx[::-1] % 3]), np.concatenate([G, G[::-1] * 1e3])  # B = 12
    idx_d = da.from_array(idx, chunks=((5, 0, 4, 3), -1)) if lazy != "G" else idx
    G_d = da.from_array(G, chunks=((7, 5), -1, -1)) if lazy != "idx" else G
    got = dask.compute(getattr(md, name)(md.Embedding(idx_d, V), G_d, *args, **kwargs))[0]
    want = getattr(md, name)(md.Embedding(idx, V), G, *args, **kwargs)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        g, w = (g.toarray(), w.toarray()) if sp.issparse(w) else (g, w)
        assert g.dtype == w.dtype
        assert_close(g, w, np.float32)
    if name == "per_sample_grad_dots":
        assert np.array_equal(got, got.T)


def test_dask_two_batches_and_errors():
    da = pytest.importorskip("dask.array", reason="the dask extra is optional: pip install -e \".[dask]\" (the test extra includes it)")
    idx, V, G = _case("coincidences", np.float64)
    E, E2 = md.Embedding(da.from_array(idx, chunks=2), V), md.Embedding(da.from_array(idx[:4], chunks=3), V)
    K = md.per_sample_grad_dots(E, G, E2, G[:4]).compute()
    np.testing.assert_allclose(K, md.per_sample_grad_dots(md.Embedding(idx, V), G, md.Embedding(idx[:4], V), G[:4]))
    with pytest.raises(ValueError, match=r"G2: expected d=3 columns \(last axis\) like G, got shape \(4,9,2\)"):
        md.per_sample_grad_dots(E, G, E2, G[:4, :, :2])
    with pytest.raises(TypeError, match=r"G: real inputs are required, got dtype complex128"):
        md.batch_grad(E, da.from_array(G.astype(complex)))
    bad = md.Embedding(da.from_array(np.array([[0, 1], [5, 1]]), chunks=1), 4)  # checked when computed
    with pytest.raises(ValueError, match=r"idx: expected integers in \[0, 4\), got 5 at position \(0, 0\)"):
        md.per_sample_grad_norms(bad, np.ones((2, 2, 3))).compute()
