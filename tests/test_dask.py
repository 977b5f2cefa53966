"""matderiv.dask and the dispatch from md.<function>: every result against the in-memory
function on the same data (itself tested against einsum references in test_gradients),
on the threaded scheduler and on a LocalCluster of two worker processes."""
from __future__ import annotations

import concurrent.futures
import os
import re
import sys

import numpy as np
import pytest

import matderiv as md
from matderiv import gradients as mem

from conftest import CONVENTIONS, assert_close

da = pytest.importorskip("dask.array", reason="the dask extra is optional: pip install -e \".[dask]\" (the test extra includes it)")
dask = pytest.importorskip("dask", reason="the dask extra is optional: pip install -e \".[dask]\" (the test extra includes it)")
threadpoolctl = pytest.importorskip("threadpoolctl", reason="the dask extra is optional: pip install -e \".[dask]\" (the test extra includes it)")

from matderiv import _dispatch
from matderiv.dask import _graph  # noqa: E402

FUNCS = ["per_sample_grads", "batch_grad", "per_sample_grad_norms", "clip_and_sum"]
B, T, M, N = 20, 3, 5, 4

#: How X and G are chunked: (X's chunks along B or None for numpy, G's likewise),
#: plus whether the non-batch axes of X are split too.
CHUNKINGS = {
    "uneven": ((6, 0, 9, 5), (6, 0, 9, 5), False),
    "one chunk": ((B,), (B,), False),
    "many chunks": ((1,) * B, (1,) * B, False),  # 20 partials: a tree of two levels
    "mismatched": ((8, 8, 4), (5, 10, 5), False),
    "non-batch axes": ((10, 10), (7, 13), True),
    "numpy G": ((7, 7, 6), None, False),
    "numpy X": (None, (12, 8), False),
}


def _data(rng, ndim, dtype, b=B):
    lead = (b,) if ndim == 2 else (b, T)
    X, G = rng.standard_normal(lead + (M,)), rng.standard_normal(lead + (N,))
    if np.dtype(dtype).kind == "i":
        return np.round(3 * X).astype(dtype), np.round(3 * G).astype(dtype)
    return X.astype(dtype), G.astype(dtype)


def _chunked(A, rows, split_inner):
    if rows is None:
        return A
    inner = tuple((max(1, d // 2) if split_inner else d) for d in A.shape[1:])
    return da.from_array(A, chunks=(rows,) + inner)


def _call(name, X, G, convention, bias, **kw):
    fn = getattr(md, name)
    if name == "per_sample_grad_norms":
        return fn(X, G, bias=bias, **kw)
    if name == "clip_and_sum":
        return fn(X, G, 0.8, convention=convention, bias=bias, **kw)
    return fn(X, G, convention=convention, bias=bias, **kw)


def _check_against_memory(name, X, G, Xd, Gd, convention, bias, scheduler="threads"):
    expected = _call(name, X, G, convention, bias)
    lazy = _call(name, Xd, Gd, convention, bias)
    expected = expected if isinstance(expected, tuple) else (expected,)
    lazy = lazy if isinstance(lazy, tuple) else (lazy,)
    assert len(lazy) == len(expected)
    assert all(isinstance(r, da.Array) for r in lazy)
    rows = (Xd if isinstance(Xd, da.Array) else Gd).chunks[0]
    computed = dask.compute(*lazy, scheduler=scheduler)
    for r, got, want in zip(lazy, computed, expected):
        assert r.shape == want.shape and r.dtype == want.dtype and got.dtype == want.dtype
        if r.shape[:1] == (X.shape[0],) and name in ("per_sample_grads", "per_sample_grad_norms") or (
            name == "clip_and_sum" and r is lazy[-1]
        ):
            assert r.chunks == (rows,) + tuple((d,) for d in want.shape[1:])  # X's chunks along B
        else:
            assert r.chunks == tuple((d,) for d in want.shape)  # one chunk
        assert_close(got, want, want.dtype)


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("ndim", [2, 3])
def test_equals_in_memory(rng, name, chunking, ndim):
    x_rows, g_rows, inner = CHUNKINGS[chunking]
    X, G = _data(rng, ndim, np.float64)
    Xd, Gd = _chunked(X, x_rows, inner), _chunked(G, g_rows, inner)
    for convention in CONVENTIONS:
        for bias in (False, True):
            _check_against_memory(name, X, G, Xd, Gd, convention, bias)


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("ndim", [2, 3])
def test_dtypes(rng, name, dtype, ndim):
    X, G = _data(rng, ndim, dtype)
    _check_against_memory(name, X, G, da.from_array(X, chunks=7), da.from_array(G, chunks=7), "xW", True)


def test_mixed_dtypes_promote(rng):
    X, G = _data(rng, 2, np.float32)
    G = G.astype(np.float64)
    _check_against_memory("clip_and_sum", X, G, da.from_array(X, chunks=6), G, "Wx", True)


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("ndim", [2, 3])
def test_empty_batch(rng, name, ndim):
    X, G = _data(rng, ndim, np.float64, b=0)
    for convention in CONVENTIONS:
        _check_against_memory(name, X, G, da.from_array(X), da.from_array(G), convention, True)


def test_batch_grad_mean_of_empty_batch_is_nan():
    dW = md.batch_grad(da.zeros((0, 3), chunks=4), da.zeros((0, 2), chunks=4), reduce="mean").compute()
    assert dW.shape == (2, 3) and np.isnan(dW).all()


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_batch_grad_reduce(rng, reduce):
    X, G = _data(rng, 3, np.float64)
    for bias in (False, True):
        want = md.batch_grad(X, G, reduce=reduce, bias=bias)
        got = dask.compute(md.batch_grad(da.from_array(X, chunks=3), G, reduce=reduce, bias=bias))[0]
        for g, w in zip(got if bias else (got,), want if bias else (want,)):
            assert_close(g, w, np.float64)


def test_sum_and_mean_are_different_graphs(rng):
    """Same chunk tasks, different finalize: the two results must not share a name."""
    X, G = _data(rng, 2, np.float64)
    Xd = da.from_array(X, chunks=5)
    total, mean = dask.compute(md.batch_grad(Xd, G), md.batch_grad(Xd, G, reduce="mean"))
    assert_close(total, md.batch_grad(X, G), np.float64)
    assert_close(mean, md.batch_grad(X, G, reduce="mean"), np.float64)


def test_nothing_computed_until_compute(rng):
    X, G = _data(rng, 2, np.float64)
    Xd, Gd = da.from_array(X, chunks=(6, 5)), da.from_array(G, chunks=(4, 2))  # rechunks too

    def refuse(*args, **kwargs):
        raise AssertionError("something was computed while building the graph")

    with dask.config.set(scheduler=refuse):
        results = [md.per_sample_grads(Xd, Gd, bias=True), md.batch_grad(Xd, Gd, reduce="mean"),
                   md.per_sample_grad_norms(Xd, Gd), md.clip_and_sum(Xd, Gd, 1.0, bias=True)]
    assert_close(results[3][0].compute(scheduler="threads"), md.clip_and_sum(X, G, 1.0, bias=True)[0], np.float64)


def _counted(monkeypatch, module, name):
    """Replace module.name by a wrapper that counts its calls: (the calls, the original)."""
    calls, original = [], getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls, original


def test_one_pass_per_chunk(rng, monkeypatch):
    """clip_and_sum's sums and norms come from the same tasks: computing both calls the
    in-memory function once per chunk."""
    calls, in_memory = _counted(monkeypatch, mem, "clip_and_sum")
    X, G = _data(rng, 2, np.float64)
    Xd = da.from_array(X, chunks=5)
    dW, norms = dask.compute(*md.clip_and_sum(Xd, G, 1.0), scheduler="sync")
    assert len(calls) == Xd.numblocks[0]
    assert_close(dW, in_memory(X, G, 1.0)[0], np.float64)


def test_per_chunk_allocation_bound(rng):
    X, G = _data(rng, 2, np.float64)
    lazy = md.per_sample_grads(da.from_array(X, chunks=10), G, max_bytes=100)
    with pytest.raises(md.OutputTooLargeError, match="per_sample_grads"):
        lazy.compute(scheduler="sync")


# --- errors -------------------------------------------------------------------------------
_X, _G = np.ones((6, 3)), np.ones((6, 2))
BAD = {
    "1-D X": (np.ones(6), _G, {}),
    "complex X": (_X.astype(complex), _G, {}),
    "object G": (_X, _G.astype(object), {}),
    "batch sizes": (_X, np.ones((5, 2)), {}),
    "2-D and 3-D": (_X, np.ones((6, 2, 2)), {}),
    "sequence lengths": (np.ones((6, 3, 3)), np.ones((6, 4, 2)), {}),
    "convention": (_X, _G, {"convention": "WX"}),
    "bias": (_X, _G, {"bias": 1}),
    "n_threads": (_X, _G, {"n_threads": 0}),
    "reduce": (_X, _G, {"reduce": "max"}),
    "max_bytes": (_X, _G, {"max_bytes": -1}),
    "max_norm": (_X, _G, {"max_norm": -1.0}),
    "max_norm type": (_X, _G, {"max_norm": "1"}),
}
SIGNATURES = {
    "per_sample_grads": {"convention", "bias", "n_threads", "max_bytes"},
    "batch_grad": {"convention", "reduce", "bias", "max_bytes"},
    "per_sample_grad_norms": {"bias", "n_threads"},
    "clip_and_sum": {"convention", "bias", "n_threads", "max_bytes", "max_norm"},
}


ERROR_CASES = [(name, case) for name in FUNCS for case, (_, _, kw) in BAD.items() if set(kw) <= SIGNATURES[name]]


@pytest.mark.parametrize(("name", "case"), ERROR_CASES)
@pytest.mark.parametrize("which", ["X", "G", "both"])
def test_errors_identical_to_in_memory(name, case, which):
    X, G, kw = BAD[case]
    if name == "clip_and_sum":
        kw = {"max_norm": 1.0, **kw}
    with pytest.raises((TypeError, ValueError)) as want:
        getattr(md, name)(X, G, **kw)
    Xd = da.from_array(X, chunks=4) if which != "G" else X
    Gd = da.from_array(G, chunks=4) if which != "X" else G
    with pytest.raises(want.type, match=f"^{re.escape(str(want.value))}$"):
        getattr(md, name)(Xd, Gd, **kw)


def test_out_is_refused():
    with pytest.raises(TypeError, match=r"out: expected None with dask inputs .*got ndarray"):
        md.per_sample_grads(da.ones((4, 3), chunks=2), np.ones((4, 2)), out=np.empty((4, 2, 3)))


def test_unknown_chunk_sizes_are_refused():
    X = da.ones((6, 3), chunks=2)
    X = X[X[:, 0] > 0]  # chunk sizes along B now unknown
    with pytest.raises(ValueError, match=r"X: expected known chunk sizes, got shape \(nan, 3\); call X.compute_chunk_sizes"):
        md.batch_grad(X, np.ones((6, 2)))


def test_missing_dask_says_how_to_install(monkeypatch):
    class Lazy:  # looks like a dask collection to the dispatch
        def __dask_graph__(self):
            return {}

    monkeypatch.setitem(sys.modules, "dask.array", None)  # import dask.array fails
    for module in [m for m in sys.modules if m.startswith("matderiv.dask")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setattr(_dispatch, "_implementations", {})  # as if matderiv.dask never loaded
    with pytest.raises(ImportError, match=r"matderiv.dask needs .*pip install matderiv\[dask\]"):
        md.batch_grad(Lazy(), np.ones((2, 2)))


def test_numpy_inputs_take_the_in_memory_path(monkeypatch):
    monkeypatch.setitem(sys.modules, "matderiv.dask", None)  # importing it would fail
    X, G = np.ones((3, 2)), np.ones((3, 4))
    assert type(md.batch_grad(X, G)) is np.ndarray
    assert type(md.clip_and_sum(X.tolist(), G, 1.0)[0]) is np.ndarray


def test_dask_inputs_load_the_plugin_on_first_use():
    """md.<function> on a dask array imports matderiv.dask itself (the user never does),
    which registers its implementations; the result is lazy and right."""
    import subprocess

    code = (
        "import sys, dask.array as da, matderiv as md\n"
        "assert 'matderiv.dask' not in sys.modules\n"
        "lazy = md.batch_grad(da.ones((4, 3), chunks=2), da.ones((4, 2), chunks=2))\n"
        "assert 'matderiv.dask' in sys.modules and type(lazy).__module__.startswith('dask')\n"
        "assert (lazy.compute() == 4).all() and lazy.shape == (2, 3)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_dispatch_calls_the_registered_implementation(monkeypatch):
    """The dispatcher looks implementations up by the public function object, not by name."""
    calls = []
    monkeypatch.setitem(_dispatch._implementations, md.clip_and_sum, lambda *args, **kw: calls.append(kw) or "lazy")
    assert md.clip_and_sum(da.ones((2, 2)), np.ones((2, 3)), 1.0, bias=True) == "lazy"
    assert calls == [{"bias": True}]
    assert type(md.clip_and_sum(np.ones((2, 2)), np.ones((2, 3)), 1.0)[0]) is np.ndarray


def test_core_never_imports_dask():
    import subprocess

    code = (
        "import sys, numpy as np, matderiv as md\n"
        "md.clip_and_sum(np.ones((3, 2)), np.ones((3, 4)), 1.0)\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'threadpoolctl')]\n"
    )
    # the working directory and PYTHONPATH of this run: the same matderiv as the tests import
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- threads in tasks ----------------------------------------------------------------------
def _blas_threads():
    return [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]


def _probe(X, G, n_threads):
    return np.array(_blas_threads()), n_threads


def test_worker_threads_run_blas_on_one_thread():
    """Every task in a worker thread sees one BLAS thread (also in a second pool, whose
    threads are new to threadpoolctl), and the count is restored after the last."""
    before = _blas_threads()
    for _ in range(2):
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda _: _graph._run_chunk(_probe, {"n_threads": None}, None, None), range(6)))
        for blas, n_threads in results:
            assert (blas == 1).all() and n_threads == 1
        assert _blas_threads() == before
    blas, n_threads = _graph._run_chunk(_probe, {"n_threads": None}, None, None)  # main thread: as is
    assert list(blas) == before and n_threads is None


def _norm_max_and_count(X, G):
    norms = md.per_sample_grad_norms(X, G)
    return norms.max(initial=0.0), len(norms)


def test_tree_reduction_takes_any_combine(rng):
    """A combine that is not a sum: the largest norm and the number of samples."""
    X, G = _data(rng, 2, np.float64)
    Xd, Gd, dtype = _graph.inputs(da.from_array(X, chunks=((1, 2, 3, 4, 10), (M,))), G)

    def combine(parts):
        return max(p[0] for p in parts), sum(p[1] for p in parts)

    def finalize(part):
        return np.array(part[0]), np.array(part[1])

    chunks = _graph.Chunks(_norm_max_and_count, Xd, Gd)
    top, count = chunks.reduction([0, 1], combine, finalize, [((), dtype), ((), np.int64)])
    top, count = dask.compute(top, count)
    assert top == md.per_sample_grad_norms(X, G).max() and count == B


def _dots(X, G, X2, G2):
    """<g_a, g'_b> of materialized per-sample gradients: a stand-in for per_sample_grad_dots."""
    return np.einsum("aij,bij->ab", md.per_sample_grads(X, G), md.per_sample_grads(X2, G2))


@pytest.mark.parametrize("ndim", [2, 3])
def test_pairs_of_chunks(rng, ndim):
    X, G = _data(rng, ndim, np.float64)
    X2, G2 = _data(rng, ndim, np.float64, b=7)
    Xd, Gd, _ = _graph.inputs(da.from_array(X, chunks=((6, 0, 9, 5),) + X.shape[1:]), G)
    X2d, G2d, dtype = _graph.inputs(X2, da.from_array(G2, chunks=3))
    K = _graph.pairs(_dots, [Xd, Gd], [X2d, G2d], dtype)
    assert K.shape == (B, 7) and K.chunks == ((6, 0, 9, 5), (3, 3, 1))
    seq = (lambda A: A) if ndim == 3 else (lambda A: A[:, None, :])  # 2-D as T = 1
    P, P2 = (np.einsum("bti,btj->bij", seq(g), seq(x)) for g, x in ((G, X), (G2, X2)))
    assert_close(K.compute(), np.einsum("aij,bij->ab", P, P2), np.float64)


def _self_dots(X, G, X2=None, G2=None):
    """_dots, with the diagonal blocks (X2 None) marked: +1000 on their diagonal."""
    return _dots(X, G, X, G) + 1000 * np.eye(len(X)) if X2 is None else _dots(X, G, X2, G2)


def test_pairs_of_chunks_with_themselves(rng):
    """cols=None: the diagonal blocks are func(*rows_i), those below the diagonal the
    transposes of those above (computed once: the result is exactly symmetric)."""
    X, G = _data(rng, 3, np.float64)
    Xd, Gd, dtype = _graph.inputs(da.from_array(X, chunks=((6, 0, 9, 5),) + X.shape[1:]), G)
    K = _graph.pairs(_self_dots, [Xd, Gd], None, dtype)
    assert K.chunks == ((6, 0, 9, 5), (6, 0, 9, 5))
    got = K.compute()
    assert (got == got.T).all()
    assert_close(got, _dots(X, G, X, G) + 1000 * np.eye(B), np.float64)
    assert len(K.dask.layers[K.name]) == 16 and sum(1 for t in K.dask.layers[K.name].values() if t[0] is np.transpose) == 6


# --- dask.distributed ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster_client():
    """A LocalCluster of 2 single-threaded worker processes (spawned), started once for
    the test run (only this module uses it; it is gone before the next module runs);
    the thread variables its start sets in this process are restored."""
    distributed = pytest.importorskip("distributed", reason="the dask extra is optional: pip install -e \".[dask]\" (the test extra includes it)")
    saved = dict(os.environ)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    os.environ.clear()  # the cluster's start set OMP_NUM_THREADS=1 and the like here too
    os.environ.update(saved)
    client = distributed.Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.mark.parametrize("ndim", [2, 3])
def test_distributed(rng, cluster_client, ndim):
    X, G = _data(rng, ndim, np.float32)
    Xd, Gd = da.from_array(X, chunks=((6, 0, 9, 5),) + X.shape[1:]), da.from_array(G, chunks=7)
    Xp, Gp = cluster_client.persist([Xd.rechunk({0: Xd.chunks[0], 1: -1}), Gd])  # chunks on the workers
    for name in FUNCS:
        _check_against_memory(name, X, G, Xp, Gp, "xW", True, scheduler=cluster_client.get)


# --- the example ---------------------------------------------------------------------------
def _example(name="dask_dp_sgd"):
    from test_examples import _load

    return _load(name)


def test_example_loss_falls(capsys):
    losses = _example().main(n_samples=2**13, chunk=2**10, steps=3, seed=0)
    assert len(losses) == 4 and np.isfinite(losses).all() and losses[-1] < 0.9 * losses[0]
    assert "step  3" in capsys.readouterr().out


def test_example_step_is_the_clipped_sum():
    """One step's lazy terms against plain numpy on the computed data (per-example
    gradients materialized with einsum, clipped and summed)."""
    ex = _example()
    X, y = ex.make_data(2**11, 5, 3, 2**8, seed=1)
    rng = np.random.default_rng(2)
    W, c, max_norm = rng.standard_normal((5, 3)), rng.standard_normal(3), 2.0
    loss, acc, dW, dc, clipped = dask.compute(*ex.step_terms(W, c, X, y, max_norm))
    Xn, yn = dask.compute(X, y)
    z = Xn @ W + c
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    G = p - np.eye(3)[yn]
    g = np.einsum("ba,bj->baj", Xn, G)
    norms = np.sqrt(np.einsum("baj,baj->b", g, g) + np.einsum("bj,bj->b", G, G))
    factor = np.minimum(1.0, max_norm / norms)
    assert_close(dW, np.einsum("b,baj->aj", factor, g), np.float64)
    assert_close(dc, factor @ G, np.float64)
    assert_close(loss, -np.log(p[np.arange(len(yn)), yn]).mean(), np.float64)
    assert acc == np.mean(p.argmax(axis=1) == yn) and clipped == np.mean(norms > max_norm)


def test_example_peak_memory_is_a_few_chunks():
    """64 MiB of X in chunks of 1 MiB: a step's peak traced memory stays well below the
    data (it is 5-13 MiB, whatever B; first a small step, for what is imported lazily)."""
    import tracemalloc

    ex = _example()
    X, y = ex.make_data(2**13, 32, 4, 2**12, seed=0)
    dask.compute(*ex.step_terms(np.zeros((32, 4)), np.zeros(4), X, y, 1.0), scheduler="threads")
    X, y = ex.make_data(2**18, 32, 4, 2**12, seed=0)
    terms = ex.step_terms(np.zeros((32, 4)), np.zeros(4), X, y, 1.0)
    tracemalloc.start()
    try:
        dask.compute(*terms, scheduler="threads")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, peak


# --- the statistics ----------------------------------------------------------------------------
STATS = ["sum_grad_squared", "grad_variance", "per_sample_grad_dots", "kfac_factors"]

#: Keyword sets of each statistic: every option and convention at least once.
STAT_OPTIONS = {
    "sum_grad_squared": [{"convention": c, "bias": b} for c in CONVENTIONS for b in (False, True)],
    "grad_variance": [{"convention": "Wx", "bias": False, "ddof": 0}, {"convention": "xW", "bias": True, "ddof": 1},
                      {"convention": "Wx", "bias": True, "ddof": 2}],
    "per_sample_grad_dots": [{"bias": b, "normalize": z} for b in (False, True) for z in (False, True)],
    "kfac_factors": [{"bias": b, "mode": mode} for b in (False, True) for mode in ("expand", "reduce")],
}


def _check_stat(name, X, G, Xd, Gd, kw, scheduler="threads", second=None):
    """The lazy statistic against the in-memory one: dtype, shape, chunks (one chunk for
    the reductions; X's along rows and X2's along columns for K), values; K of a batch
    with itself and the K-FAC factors exactly symmetric."""
    pair, lazy_pair = second if second is not None else ((), ())
    expected = getattr(md, name)(X, G, *pair, **kw)
    lazy = getattr(md.dask if pair else md, name)(Xd, Gd, *lazy_pair, **kw)
    expected = expected if isinstance(expected, tuple) else (expected,)
    lazy = lazy if isinstance(lazy, tuple) else (lazy,)
    assert len(lazy) == len(expected) and all(isinstance(r, da.Array) for r in lazy)
    computed = dask.compute(*lazy, scheduler=scheduler)
    for r, got, want in zip(lazy, computed, expected):
        assert r.shape == want.shape and r.dtype == want.dtype and got.dtype == want.dtype
        if name == "per_sample_grad_dots":
            sides = [(Xd, Gd)] + ([lazy_pair] if pair else [])
            assert r.chunks == tuple(_rows_of(*side) for side in sides + sides[:1])[:2]
        else:
            assert r.chunks == tuple((d,) for d in want.shape)
        if name == "kfac_factors" or name == "per_sample_grad_dots" and not pair:
            assert np.array_equal(got, got.T, equal_nan=True)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        assert_close(np.nan_to_num(got), np.nan_to_num(want), want.dtype)


def _rows_of(Xd, Gd):
    lazy = [A for A in (Xd, Gd) if isinstance(A, da.Array)]
    return lazy[0].chunks[0] if lazy else (len(Xd),)


@pytest.mark.parametrize("name", STATS)
@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("ndim", [2, 3])
def test_statistics_equal_in_memory(rng, name, chunking, ndim):
    x_rows, g_rows, inner = CHUNKINGS[chunking]
    X, G = _data(rng, ndim, np.float64)
    X += 2.0  # means away from 0: a wrong variance merge shows
    Xd, Gd = _chunked(X, x_rows, inner), _chunked(G, g_rows, inner)
    for kw in STAT_OPTIONS[name]:
        _check_stat(name, X, G, Xd, Gd, kw)


@pytest.mark.parametrize("name", STATS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("ndim", [2, 3])
def test_statistics_dtypes(rng, name, dtype, ndim):
    X, G = _data(rng, ndim, dtype)
    Xd, Gd = da.from_array(X, chunks=7), da.from_array(G, chunks=7)
    _check_stat(name, X, G, Xd, Gd, STAT_OPTIONS[name][-1])


@pytest.mark.parametrize("name", STATS)
@pytest.mark.parametrize("ndim", [2, 3])
def test_statistics_of_an_empty_batch(rng, name, ndim):
    """B = 0: zeros (sum_grad_squared), NaN (variance, K-FAC), a (0, 0) K."""
    X, G = _data(rng, ndim, np.float64, b=0)
    for kw in STAT_OPTIONS[name]:
        _check_stat(name, X, G, da.from_array(X), da.from_array(G), kw)


@pytest.mark.parametrize("ndim", [2, 3])
def test_statistics_of_empty_sequences(rng, ndim):
    """T = 0 (and m = 0): what the in-memory functions give, NaN where they divide by 0."""
    shape = (B, 0, M) if ndim == 3 else (B, 0)
    X, G = np.ones(shape), rng.standard_normal(shape[:-1] + (N,))
    Xd = da.from_array(X, chunks=(6,) + shape[1:])
    for name in STATS:
        for kw in STAT_OPTIONS[name]:
            _check_stat(name, X, G, Xd, G, kw)


@pytest.mark.parametrize("ndim", [2, 3])
def test_grad_variance_when_the_mean_dominates(ndim):
    """float32 gradients all near one value, in many uneven chunks: the merged variance
    keeps 1e-3 relative accuracy, as in memory (test_statistics), where float32's
    E[g^2] - E[g]^2 has no correct digit left."""
    rng = np.random.default_rng(3)
    lead, noise = ((4000,), 1e-4) if ndim == 2 else ((500, 3), 1e-3)
    X = (1 + noise * rng.standard_normal(lead + (M,))).astype(np.float32)
    G = (1 + noise * rng.standard_normal(lead + (N,))).astype(np.float32)
    rows = (1, 0, 37, 300) + (50,) * ((lead[0] - 338) // 50) + ((lead[0] - 338) % 50,)
    want = np.var(np.einsum("bti,btj->bij", *(A.astype(np.float64).reshape(lead[0], -1, A.shape[-1]) for A in (G, X))), axis=0)
    got = md.grad_variance(da.from_array(X, chunks=(rows,) + X.shape[1:]), G).compute()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-3)


@pytest.mark.parametrize("ratio", [1e4, 1e6, 1e9])
def test_grad_variance_2d_float64_when_the_mean_dominates(ratio):
    """X = ratio + N(64, 3), G = ratio + N(64, 2) in uneven chunks: each chunk's shifted sums
    and the Chan merge keep 1e-8 against a long-double two-pass variance (E[g^2] - E[g]^2
    was off by a factor 292 at 1e6)."""
    rng = np.random.default_rng(21)
    X, G = ratio + rng.standard_normal((64, 3)), ratio + rng.standard_normal((64, 2))
    P = np.einsum("bi,bj->bij", G.astype(np.longdouble), X.astype(np.longdouble))
    want = ((P - P.mean(axis=0)) ** 2).mean(axis=0)
    got = md.grad_variance(da.from_array(X, chunks=((5, 0, 40, 19), 3)), G).compute()
    np.testing.assert_allclose(got, want.astype(np.float64), rtol=1e-8)


def test_grad_variance_of_too_few_samples():
    """B <= ddof as np.var: 0 / 0 = NaN for one sample (ddof=1), inf for two (ddof=3);
    chunks of no samples in between change nothing."""
    for b, ddof in ((1, 1), (2, 3), (2, 2)):
        X, G = np.arange(1.0, 2 * b + 1).reshape(b, 2), np.ones((b, 3))
        rows = (0, 1, 0, b - 1, 0)
        want = md.grad_variance(X, G, bias=True, ddof=ddof)
        got = dask.compute(md.grad_variance(da.from_array(X, chunks=(rows, 2)), G, bias=True, ddof=ddof))[0]
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_grad_variance_merges_one_pass(rng, monkeypatch):
    """Both results of grad_variance(bias=True) come from one pass of the batch core's
    moments per chunk (the one the in-memory function makes over the whole batch)."""
    from matderiv import _moments

    calls, _ = _counted(monkeypatch, _moments, "moments")
    X, G = _data(rng, 3, np.float64)
    Xd = da.from_array(X, chunks=(4,) + X.shape[1:])
    vW, vb = dask.compute(*md.grad_variance(Xd, G, bias=True, ddof=1), scheduler="sync")
    assert len(calls) == Xd.numblocks[0]
    want = md.grad_variance(X, G, bias=True, ddof=1)
    assert_close(vW, want[0], np.float64) and assert_close(vb, want[1], np.float64)


def test_statistics_options_give_different_graphs(rng):
    """Same chunk tasks, different finalize (ddof; the K-FAC mode; normalize)."""
    X, G = _data(rng, 3, np.float64)
    Xd = da.from_array(X, chunks=(5,) + X.shape[1:])
    results = dask.compute(md.grad_variance(Xd, G), md.grad_variance(Xd, G, ddof=1),
                           md.per_sample_grad_dots(Xd, G), md.per_sample_grad_dots(Xd, G, normalize=True))
    for got, (name, kw) in zip(results, [("grad_variance", {}), ("grad_variance", {"ddof": 1}),
                                         ("per_sample_grad_dots", {}), ("per_sample_grad_dots", {"normalize": True})]):
        assert_close(got, getattr(md, name)(X, G, **kw), np.float64)


#: Second batches of per_sample_grad_dots: (B2, T2, X2's chunks or None, G2's likewise).
SECOND = {
    "both dask": (7, 2, (3, 3, 1), (7,)),
    "numpy X2": (7, 2, None, (2, 5)),
    "both numpy": (6, 4, None, None),
    "empty": (0, 2, (0,), (0,)),
}


@pytest.mark.parametrize("second", SECOND)
@pytest.mark.parametrize("ndim", [2, 3])
def test_dots_between_two_batches(rng, second, ndim):
    """K of a chunked batch against another one of other B and T (dask or numpy);
    X2 chunks along columns."""
    b2, t2, x2_rows, g2_rows = SECOND[second]
    X, G = _data(rng, ndim, np.float64)
    lead = (b2,) if ndim == 2 else (b2, t2)
    X2, G2 = rng.standard_normal(lead + (M,)), rng.standard_normal(lead + (N,))
    X2d, G2d = _chunked(X2, x2_rows, False), _chunked(G2, g2_rows, False)
    Xd = da.from_array(X, chunks=((6, 0, 9, 5),) + X.shape[1:])
    for kw in STAT_OPTIONS["per_sample_grad_dots"]:
        _check_stat("per_sample_grad_dots", X, G, Xd, G, kw, second=((X2, G2), (X2d, G2d)))


def test_dots_mixed_dtypes_and_numpy_first_batch(rng):
    """float32 X, G against float64 X2, G2 gives float64 (norms too); a numpy first batch
    is one chunk along rows."""
    X, G = _data(rng, 3, np.float32)
    X2, G2 = _data(rng, 3, np.float64, b=6)
    X2d = da.from_array(X2, chunks=(4,) + X2.shape[1:])
    _check_stat("per_sample_grad_dots", X, G, da.from_array(X, chunks=(8,) + X.shape[1:]), G,
                {"normalize": True}, second=((X2, G2), (X2d, G2)))
    _check_stat("per_sample_grad_dots", X, G, X, G, {"bias": True}, second=((X2, G2), (X2d, G2)))


def test_dots_exactly_symmetric_with_zero_gradients(rng):
    """A batch with itself in uneven chunks, float32, normalized, some gradients 0:
    K == K.T exactly, 0 rows for zero gradients, 1 on the diagonal elsewhere."""
    X, G = _data(rng, 2, np.float32)
    G[[3, 11]] = 0
    K = md.per_sample_grad_dots(da.from_array(X, chunks=((1, 6, 0, 9, 4), (M,))), G, normalize=True).compute()
    assert (K == K.T).all() and not K[[3, 11]].any()
    assert_close(np.delete(np.diag(K), [3, 11]), np.ones(B - 2), np.float32)


def test_dots_max_bytes_bounds_each_block(rng):
    """max_bytes is checked now (type and sign, as in memory) and bounds every block."""
    X, G = _data(rng, 2, np.float64)
    Xd = da.from_array(X, chunks=5)
    assert_close(md.per_sample_grad_dots(Xd, G, max_bytes=5 * 5 * 8).compute(), md.per_sample_grad_dots(X, G), np.float64)
    with pytest.raises(md.OutputTooLargeError, match=r"per_sample_grad_dots: the output \(5, 5\) float64"):
        md.per_sample_grad_dots(Xd, G, max_bytes=5 * 5 * 8 - 1).compute(scheduler="sync")


def test_statistics_build_lazily(rng):
    X, G = _data(rng, 3, np.float64)
    Xd, Gd = da.from_array(X, chunks=(6, 2, 5)), da.from_array(G, chunks=(4, 3, 2))  # rechunks too

    def refuse(*args, **kwargs):
        raise AssertionError("something was computed while building the graph")

    with dask.config.set(scheduler=refuse):
        results = [md.sum_grad_squared(Xd, Gd, bias=True), md.grad_variance(Xd, Gd, ddof=1),
                   md.per_sample_grad_dots(Xd, Gd, normalize=True), md.per_sample_grad_dots(Xd, Gd, Xd[:4], Gd[:4]),
                   md.kfac_factors(Xd, Gd, bias=True)]
    assert_close(results[2].compute(scheduler="threads"), md.per_sample_grad_dots(X, G, normalize=True), np.float64)


def test_statistics_are_in_matderiv_dask():
    import matderiv.dask as mdd

    assert set(STATS) <= set(mdd.__all__) and all(callable(getattr(mdd, name)) for name in STATS)


STAT_SIGNATURES = {
    "sum_grad_squared": {"convention", "bias", "max_bytes"},
    "grad_variance": {"convention", "bias", "max_bytes", "ddof"},
    "per_sample_grad_dots": {"bias", "max_bytes", "normalize", "X2", "G2"},
    "kfac_factors": {"bias", "mode"},
}
STAT_BAD = {
    **{case: BAD[case] for case in ("1-D X", "complex X", "object G", "batch sizes", "2-D and 3-D",
                                    "sequence lengths", "convention", "bias", "max_bytes")},
    "too large": (_X, _G, {"max_bytes": 8}),
    "ddof": (_X, _G, {"ddof": -1}),
    "ddof type": (_X, _G, {"ddof": 1.0}),
    "normalize": (_X, _G, {"normalize": "yes"}),
    "mode": (np.ones((6, 2, 3)), np.ones((6, 2, 2)), {"mode": "mean"}),
    "X2 only": (_X, _G, {"X2": _X}),
    "G2 only": (_X, _G, {"G2": _G}),
    "X2 ndim": (_X, _G, {"X2": np.ones((4, 2, 3)), "G2": np.ones((4, 2, 2))}),
    "X2 columns": (_X, _G, {"X2": np.ones((4, 4)), "G2": np.ones((4, 2))}),
    "G2 columns": (_X, _G, {"X2": np.ones((4, 3)), "G2": np.ones((4, 5))}),
    "X2 and G2 batch sizes": (_X, _G, {"X2": np.ones((4, 3)), "G2": np.ones((5, 2))}),
    "X2 and G2 ndim": (_X, _G, {"X2": np.ones((4, 3)), "G2": np.ones((4, 1, 2))}),
    "G2 1-D": (_X, _G, {"X2": np.ones((4, 3)), "G2": np.ones(4)}),
    "X2 complex": (_X, _G, {"X2": np.ones((4, 3), complex), "G2": np.ones((4, 2))}),
}
STAT_ERROR_CASES = [
    (name, case) for name in STATS for case, (_, _, kw) in STAT_BAD.items()
    if set(kw) <= STAT_SIGNATURES[name] and not (case == "too large" and name == "per_sample_grad_dots")
]


@pytest.mark.parametrize(("name", "case"), STAT_ERROR_CASES)
@pytest.mark.parametrize("which", ["X", "G", "both", "second"])
def test_statistics_errors_identical_to_in_memory(name, case, which):
    """The in-memory message, raised when the graph is built; "second": X2 and G2 as
    dask arrays (and X, G too)."""
    X, G, kw = STAT_BAD[case]
    with pytest.raises((TypeError, ValueError, MemoryError)) as want:
        getattr(md, name)(X, G, **kw)
    lazy = {key: da.from_array(a, chunks=3) if which == "second" else a for key, a in kw.items() if key in ("X2", "G2")}
    Xd = da.from_array(X, chunks=4) if which != "G" else X
    Gd = da.from_array(G, chunks=4) if which != "X" else G
    with pytest.raises(want.type, match=f"^{re.escape(str(want.value))}$"):
        getattr(md, name)(Xd, Gd, **{**kw, **lazy})


@pytest.mark.parametrize("ndim", [2, 3])
def test_statistics_distributed(rng, cluster_client, ndim):
    X, G = _data(rng, ndim, np.float32)
    Xd, Gd = da.from_array(X, chunks=((6, 0, 9, 5),) + X.shape[1:]), da.from_array(G, chunks=7)
    Xp, Gp = cluster_client.persist([Xd.rechunk({0: Xd.chunks[0], 1: -1}), Gd])  # chunks on the workers
    for name in STATS:
        _check_stat(name, X, G, Xp, Gp, STAT_OPTIONS[name][-1], scheduler=cluster_client.get)
    X2, G2 = _data(rng, ndim, np.float32, b=7)
    _check_stat("per_sample_grad_dots", X, G, Xp, Gp, {"normalize": True},
                scheduler=cluster_client.get, second=((X2, G2), (da.from_array(X2, chunks=4), G2)))


def test_tracin_example_finds_proponents_and_mislabeled(capsys):
    metrics = _example("dask_tracin").main(n_samples=2**13, n_test=8, chunk=2**10, steps=3, seed=0)
    assert metrics["proponents_same_label"] > 2 * metrics["chance"]
    assert metrics["self_influence_flipped"] > 3 * metrics["flip_rate"]
    assert "TracIn of 8 test samples" in capsys.readouterr().out


def test_tracin_example_scores_are_gradient_dots():
    """The lazy scores and self-influences against per-example gradients materialized
    with einsum from the computed data (weights and biases together)."""
    ex = _example("dask_tracin")
    X, y = _example().make_data(2**11, 5, 3, 2**9, seed=1)
    rng = np.random.default_rng(2)
    checkpoints = [(rng.standard_normal((5, 3)), rng.standard_normal(3)) for _ in range(2)]
    X_test, y_test = rng.standard_normal((4, 5)), np.array([0, 2, 1, 1])
    scores, influence = ex.tracin_terms(checkpoints, 0.5, X, y, X_test, y_test)
    assert scores.chunks == (X.chunks[0], (4,))
    scores, influence, Xn, yn = dask.compute(scores, influence, X, y)
    want_scores, want_influence = 0.0, 0.0
    for W, c in checkpoints:
        grads = []
        for A, labels in ((Xn, yn), (X_test, y_test)):
            z = A @ W + c
            p = np.exp(z - z.max(axis=1, keepdims=True))
            G = p / p.sum(axis=1, keepdims=True) - np.eye(3)[labels]
            grads.append(np.concatenate([np.einsum("ba,bj->baj", A, G).reshape(len(A), -1), G], axis=1))
        want_scores = want_scores + 0.5 * grads[0] @ grads[1].T
        want_influence = want_influence + 0.5 * np.einsum("bk,bk->b", grads[0], grads[0])
    assert_close(scores, want_scores, np.float64)
    assert_close(influence, want_influence, np.float64)


def test_dots_dispatch_on_a_dask_second_batch():
    """md.per_sample_grad_dots with numpy X, G and a dask X2, G2 stays lazy (X2 is never pulled in whole)."""
    rng = np.random.default_rng(11)
    X, G = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    X2, G2 = rng.standard_normal((9, 4)), rng.standard_normal((9, 3))
    want = md.per_sample_grad_dots(X, G, X2, G2)
    for args, kwargs in (((da.from_array(X2, chunks=4), da.from_array(G2, chunks=4)), {}),
                         ((), {"X2": da.from_array(X2, chunks=4), "G2": G2})):
        got = md.per_sample_grad_dots(X, G, *args, **kwargs)
        assert isinstance(got, da.Array)
        np.testing.assert_allclose(got.compute(), want, rtol=1e-12, atol=1e-12)
