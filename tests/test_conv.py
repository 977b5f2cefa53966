"""conv_patches and Conv in every batched function, against a plain-loop unfold, a plain-loop
convolution and per-sample gradients built from the padded input by einsum (never from
matderiv), and against the same function on the reference patches."""
from __future__ import annotations

import numpy as np
import pytest

import matderiv as md
from conftest import REAL_DTYPES, assert_close
from matderiv import _batch

# (x shape, kernel_size, stride, padding, dilation): 1-D and 2-D, strides, paddings,
# dilations, non-square kernels, odd sizes, an empty batch
GEOMETRIES = [
    ((3, 2, 11), 3, 2, 1, 1),
    ((2, 3, 7), 2, 1, 0, 3),
    ((3, 2, 6, 5), (3, 2), (2, 1), (1, 0), (1, 2)),
    ((2, 3, 5, 5), 3, 1, 1, 1),
    ((2, 1, 4, 7), (1, 3), (1, 3), (0, 2), 1),
    ((0, 2, 5, 5), 3, 1, 1, 1),
]
O = 4


def as_axes(value, axes):
    return tuple(value) if isinstance(value, tuple) else (value,) * axes


def params(geometry):
    """x's shape and the per-axis parameters as 2-D ones (1-D: a height-1 row)."""
    shape, *rest = geometry
    axes = len(shape) - 2
    k, s, p, d = (as_axes(r, axes) for r in rest)
    if axes == 1:
        k, s, p, d = (1,) + k, (1,) + s, (0,) + p, (1,) + d
    return shape, k, s, p, d


def out_shape(geometry):
    shape, k, s, p, d = params(geometry)
    spatial = ((1,) + shape[2:]) if len(shape) == 3 else shape[2:]
    out = tuple((S + 2 * pp - dd * (kk - 1) - 1) // ss + 1 for S, kk, ss, pp, dd in zip(spatial, k, s, p, d))
    return out if len(shape) == 4 else out[1:]


def ref_unfold(x, geometry):
    """The patches by plain loops over samples, positions, channels and kernel offsets."""
    shape, (k1, k2), (s1, s2), (p1, p2), (d1, d2) = params(geometry)
    x4 = np.asarray(x, np.float64).reshape(shape[:2] + ((1,) + shape[2:] if len(shape) == 3 else shape[2:]))
    B, C, H, W = x4.shape
    OH, OW = (H + 2 * p1 - d1 * (k1 - 1) - 1) // s1 + 1, (W + 2 * p2 - d2 * (k2 - 1) - 1) // s2 + 1
    U = np.zeros((B, OH * OW, C * k1 * k2))
    for b in range(B):
        for oh in range(OH):
            for ow in range(OW):
                for c in range(C):
                    for i in range(k1):
                        for j in range(k2):
                            ih, iw = oh * s1 - p1 + i * d1, ow * s2 - p2 + j * d2
                            if 0 <= ih < H and 0 <= iw < W:
                                U[b, oh * OW + ow, (c * k1 + i) * k2 + j] = x4[b, c, ih, iw]
    return U


def padded_windows(x, geometry):
    """{(i, j): x_pad[:, :, oh s1 + i d1, ow s2 + j d2]} of shape (B, C, OH, OW), from np.pad."""
    shape, (k1, k2), (s1, s2), (p1, p2), (d1, d2) = params(geometry)
    x4 = np.asarray(x, np.float64).reshape(shape[:2] + ((1,) + shape[2:] if len(shape) == 3 else shape[2:]))
    xp = np.pad(x4, ((0, 0), (0, 0), (p1, p1), (p2, p2)))
    OH, OW = (xp.shape[2] - d1 * (k1 - 1) - 1) // s1 + 1, (xp.shape[3] - d2 * (k2 - 1) - 1) // s2 + 1
    return {(i, j): xp[:, :, i * d1 : i * d1 + s1 * (OH - 1) + 1 : s1, j * d2 : j * d2 + s2 * (OW - 1) + 1 : s2]
            for i in range(k1) for j in range(k2)}


def ref_conv(x, W, geometry):
    """y[b, o, oh, ow] = sum_{c, i, j} W[o, c, i, j] x_pad[b, c, oh s1 + i d1, ow s2 + j d2]."""
    _, (k1, k2), *_ = params(geometry)
    W4 = np.asarray(W, np.float64).reshape(W.shape[:2] + (k1, k2))
    y = sum(np.einsum("oc,bchw->bohw", W4[:, :, i, j], win) for (i, j), win in padded_windows(x, geometry).items())
    return y.reshape(y.shape[:2] + out_shape(geometry))


def ref_grads(x, G, geometry):
    """Per-sample weight gradients (B, O, C, *kernel) and bias gradients (B, O): the adjoint of
    ref_conv, g_b[o, c, i, j] = sum_{oh, ow} G[b, o, oh, ow] x_pad[b, c, oh s1 + i d1, ow s2 + j d2]."""
    shape, (k1, k2), *_ = params(geometry)
    windows = padded_windows(x, geometry)
    G4 = np.asarray(G, np.float64).reshape(G.shape[:2] + windows[0, 0].shape[2:])
    g = np.zeros((G.shape[0], G.shape[1], shape[1], k1, k2))
    for (i, j), win in windows.items():
        g[..., i, j] = np.einsum("bohw,bchw->boc", G4, win)
    kernel = (k1, k2) if len(shape) == 4 else (k2,)
    return g.reshape(g.shape[:3] + kernel), G4.sum(axis=(2, 3))


def sample(geometry, dtype=np.float64, seed=0, o=O):
    rng = np.random.default_rng(seed)
    shape, kernel, stride, padding, dilation = geometry
    x = rng.standard_normal(shape).astype(dtype)
    G = rng.standard_normal((shape[0], o) + out_shape(geometry)).astype(dtype)
    X = md.Conv(x, kernel, stride=stride, padding=padding, dilation=dilation)
    return x, G, X


def steps(G):
    """G (B, O, *out) as the steps (B, T, O) of a sequence layer."""
    return G.reshape(G.shape[:2] + (int(np.prod(G.shape[2:])),)).transpose(0, 2, 1)


def kwargs_of(geometry):
    _, kernel, stride, padding, dilation = geometry
    return {"stride": stride, "padding": padding, "dilation": dilation, "kernel_size": kernel}


# --- conv_patches ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", REAL_DTYPES)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_patches_match_the_loop_unfold(geometry, dtype):
    x, _, X = sample(geometry, dtype)
    U = md.conv_patches(x, **kwargs_of(geometry))
    assert U.dtype == dtype and U.flags.c_contiguous and U.shape == X.shape
    np.testing.assert_array_equal(U, ref_unfold(x, geometry).astype(dtype))


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_patches_times_the_weight_is_the_convolution(geometry):
    x, _, X = sample(geometry)
    W = np.random.default_rng(3).standard_normal(X.weight_shape(O))
    U = md.conv_patches(x, **kwargs_of(geometry))
    y = (U @ W.reshape(O, -1).T).transpose(0, 2, 1).reshape((len(x), O) + out_shape(geometry))
    assert_close(y, ref_conv(x, W, geometry), np.float64)


def test_patches_on_a_team_of_threads_equal_the_serial_ones():
    geometry = ((5, 3, 9, 8), (3, 2), (2, 1), 1, (1, 2))
    x, _, _ = sample(geometry)
    previous = md.set_serial_below_bytes(0)  # every call starts a team
    try:
        threaded = md.conv_patches(x, **kwargs_of(geometry), n_threads=2)
    finally:
        md.set_serial_below_bytes(previous)
    np.testing.assert_array_equal(threaded, md.conv_patches(x, **kwargs_of(geometry), n_threads=1))


@pytest.mark.parametrize("dtype, expected", [(np.int64, np.float64), (np.bool_, np.float64), (np.float16, np.float32)])
def test_patches_follow_the_dtype_policy(dtype, expected):
    x = (np.arange(2 * 2 * 9).reshape(2, 2, 9) % 3).astype(dtype)
    U = md.conv_patches(x, 2, padding=1)
    assert U.dtype == expected
    np.testing.assert_array_equal(U, ref_unfold(x, ((2, 2, 9), 2, 1, 1, 1)))


def test_patches_of_a_strided_view_equal_those_of_a_copy():
    x = np.random.default_rng(0).standard_normal((3, 4, 6, 10))[:, ::2, :, ::2]
    np.testing.assert_array_equal(md.conv_patches(x, 2, stride=2), ref_unfold(x, (x.shape, 2, 2, 0, 1)))


def test_patches_over_max_bytes_raise_before_allocating():
    x = np.zeros((2, 3, 8, 8))
    with pytest.raises(md.OutputTooLargeError, match=r"conv_patches: the output \(2, 64, 27\) float64"):
        md.conv_patches(x, 3, padding=1, max_bytes=1000)


# --- every batched function on a Conv ---------------------------------------------------------------
def reference(name, g, db, bias, **kw):
    """The function's result from per-sample gradients g (B, O, C, *kernel) and db (B, O)."""
    B = len(g)
    flat = g.reshape(B, int(np.prod(g.shape[1:])))
    flat = np.concatenate([flat, db], axis=1) if bias else flat
    with np.errstate(invalid="ignore", divide="ignore"):
        if name == "per_sample_grads":
            return (g, db) if bias else g
        if name == "batch_grad":
            return (g.sum(0), db.sum(0)) if bias else g.sum(0)
        if name == "per_sample_grad_norms":
            return np.linalg.norm(flat, axis=1)
        if name == "clip_and_sum":
            norms = np.linalg.norm(flat, axis=1)
            c = np.minimum(1.0, kw["max_norm"] / norms)
            sums = (np.einsum("b,b...->...", c, g),) + ((c @ db,) if bias else ())
            return sums + (norms,)
        if name == "sum_grad_squared":
            return ((g**2).sum(0), (db**2).sum(0)) if bias else (g**2).sum(0)
        if name == "grad_variance" and B > 1:
            return (g.var(0, ddof=1), db.var(0, ddof=1)) if bias else g.var(0, ddof=1)
        if name == "grad_variance":  # no degrees of freedom
            return (np.full(g.shape[1:], np.nan), np.full(db.shape[1:], np.nan)) if bias else np.full(g.shape[1:], np.nan)
        return flat @ flat.T  # per_sample_grad_dots


CALLS = {
    "per_sample_grads": lambda X, G, bias: md.per_sample_grads(X, G, bias=bias),
    "batch_grad": lambda X, G, bias: md.batch_grad(X, G, bias=bias),
    "per_sample_grad_norms": lambda X, G, bias: md.per_sample_grad_norms(X, G, bias=bias),
    "clip_and_sum": lambda X, G, bias: md.clip_and_sum(X, G, 0.7, bias=bias),
    "sum_grad_squared": lambda X, G, bias: md.sum_grad_squared(X, G, bias=bias),
    "grad_variance": lambda X, G, bias: md.grad_variance(X, G, bias=bias, ddof=1),
    "per_sample_grad_dots": lambda X, G, bias: md.per_sample_grad_dots(X, G, bias=bias),
}


def as_tuple(res):
    return res if isinstance(res, tuple) else (res,)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("dtype", REAL_DTYPES)
@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("name", sorted(CALLS))
def test_functions_match_per_sample_references(name, geometry, dtype, bias):
    x, G, X = sample(geometry, dtype)
    g, db = ref_grads(x, G, geometry)
    got = as_tuple(CALLS[name](X, G, bias))
    expected = as_tuple(reference(name, g, db, bias, max_norm=0.7))
    assert len(got) == len(expected)
    for a, e in zip(got, expected):
        assert a.dtype == dtype and a.shape == e.shape
        assert_close(a, e, dtype)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("name", sorted(CALLS))
def test_one_block_is_exactly_the_function_on_the_patches(name, geometry, bias):
    x, G, X = sample(geometry, np.float32)
    U, Gt = md.conv_patches(x, **kwargs_of(geometry)), steps(G)
    for a, e in zip(as_tuple(CALLS[name](X, G, bias)), as_tuple(CALLS[name](U, Gt, bias))):
        np.testing.assert_array_equal(a.reshape(e.shape), e)


@pytest.mark.parametrize("dtype", REAL_DTYPES)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_small_blocks_give_the_same_results(monkeypatch, name, bias, dtype):
    geometry = ((7, 2, 6, 5), (3, 2), (2, 1), 1, (1, 2))
    x, G, X = sample(geometry, dtype)
    whole = as_tuple(CALLS[name](X, G, bias))
    monkeypatch.setattr(_batch, "BLOCK_BYTES", 1)  # one sample a block
    for a, e in zip(as_tuple(CALLS[name](X, G, bias)), whole):
        assert_close(a, e, dtype)
    monkeypatch.setattr(_batch, "BLOCK_BYTES", 3 * dtype().itemsize * 6 * (12 + O) * 2)  # a few samples a block
    for a, e in zip(as_tuple(CALLS[name](X, G, bias)), whole):
        assert_close(a, e, dtype)


@pytest.mark.parametrize("mode", ["expand", "reduce"])
@pytest.mark.parametrize("bias", [False, True])
def test_kfac_factors_match_the_patches_factors(monkeypatch, mode, bias):
    geometry = ((5, 2, 6, 5), (3, 2), (2, 1), 1, (1, 2))
    x, G, X = sample(geometry)
    U, Gt = ref_unfold(x, geometry), steps(G)
    if bias:
        U = np.concatenate([U, np.ones(U.shape[:2] + (1,))], axis=-1)
    B, T = U.shape[:2]
    if mode == "expand":
        A, S = np.einsum("bti,btj->ij", U, U) / (B * T), np.einsum("bti,btj->ij", Gt, Gt) / B
    else:
        ubar, gbar = U.mean(axis=1), Gt.sum(axis=1)
        A, S = ubar.T @ ubar / B, gbar.T @ gbar / B
    for blocks in (None, 1):
        monkeypatch.setattr(_batch, "BLOCK_BYTES", blocks)
        got = md.kfac_factors(X, G, bias=bias, mode=mode)
        assert_close(got[0], A, np.float64)
        assert_close(got[1], S, np.float64)


@pytest.mark.parametrize("normalize", [False, True])
def test_dots_between_two_convs_in_blocks(monkeypatch, normalize):
    geometry = ((5, 2, 6, 5), 3, 1, 1, 1)
    other = ((3, 2, 4, 7), 3, 2, 0, 1)
    x, G, X = sample(geometry)
    x2, G2, X2 = sample(other, seed=1)
    g, _ = ref_grads(x, G, geometry)
    g2, _ = ref_grads(x2, G2, other)
    K = g.reshape(5, -1) @ g2.reshape(3, -1).T
    if normalize:
        K /= np.multiply.outer(np.linalg.norm(g.reshape(5, -1), axis=1), np.linalg.norm(g2.reshape(3, -1), axis=1))
    for blocks in (None, 1):
        monkeypatch.setattr(_batch, "BLOCK_BYTES", blocks)
        assert_close(md.per_sample_grad_dots(X, G, X2, G2, normalize=normalize), K, np.float64)
        sym = md.per_sample_grad_dots(X, G, normalize=normalize)
        np.testing.assert_array_equal(sym, sym.T)


def test_batch_grad_mean_and_per_sample_grads_out(monkeypatch):
    geometry = GEOMETRIES[2]
    x, G, X = sample(geometry)
    g, db = ref_grads(x, G, geometry)
    dW, dbm = md.batch_grad(X, G, reduce="mean", bias=True)
    assert_close(dW, g.mean(0), np.float64)
    assert_close(dbm, db.mean(0), np.float64)
    out = np.empty_like(g)
    monkeypatch.setattr(_batch, "BLOCK_BYTES", 1)
    assert md.per_sample_grads(X, G, out=out) is out
    assert_close(out, g, np.float64)


def test_mixed_dtypes_promote_as_the_batched_functions_do():
    geometry = GEOMETRIES[0]
    x, G, X = sample(geometry, np.float32)
    g, _ = ref_grads(x, G, geometry)
    assert md.batch_grad(X, G.astype(np.float64)).dtype == np.float64
    got = md.batch_grad(md.Conv(np.round(x * 4).astype(np.int32), 3, stride=2, padding=1), G)
    assert got.dtype == np.float64  # integers become float64
    assert_close(got, ref_grads(np.round(x * 4), G, geometry)[0].sum(0), np.float64)


def test_conv_repr_and_shapes():
    X = md.Conv(np.zeros((2, 3, 8, 6)), (3, 2), stride=2, padding=1)
    assert X.shape == (2, 4 * 4, 3 * 6) and X.weight_shape(5) == (5, 3, 3, 2)
    assert "Conv(x of shape (2, 3, 8, 6), kernel_size=(3, 2)" in repr(X)


# --- errors ---------------------------------------------------------------------------------------
X0 = np.zeros((2, 3, 8, 8))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"kernel_size": 9}, ValueError, r"kernel_size: expected a dilated kernel .* no larger than the padded input"),
    ({"kernel_size": 3, "stride": 0}, ValueError, r"stride: expected ints of at least 1, got 0"),
    ({"kernel_size": 3, "padding": -1}, ValueError, r"padding: expected ints of at least 0, got -1"),
    ({"kernel_size": 3, "dilation": (1, 0)}, ValueError, r"dilation: expected ints of at least 1"),
    ({"kernel_size": (3, 3, 3)}, ValueError, r"kernel_size: expected an int or 2 ints"),
    ({"kernel_size": 2.0}, TypeError, r"kernel_size: expected ints, got float 2.0"),
])
def test_geometry_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        md.Conv(X0, **kwargs)
    with pytest.raises(error, match=match):
        md.conv_patches(X0, **kwargs)


def test_input_errors():
    with pytest.raises(ValueError, match=r"x: expected a 3-D or 4-D array, got 2-D"):
        md.Conv(np.zeros((3, 4)), 2)
    with pytest.raises(TypeError, match=r"x: real inputs are required, got dtype complex128"):
        md.Conv(np.zeros((2, 3, 4), complex), 2)


@pytest.mark.parametrize("G, match", [
    (np.zeros((3, 4, 8, 8)), r"G: expected shape \(2, O, 8, 8\) \(batch, output channels, \*output spatial\), got \(3,4,8,8\)"),
    (np.zeros((2, 4, 7, 8)), r"G: expected shape \(2, O, 8, 8\) .*, got \(2,4,7,8\)"),
    (np.zeros((2, 4, 64)), r"G: expected a 4-D array, got 3-D"),
])
def test_wrong_output_gradients_are_refused(G, match):
    X = md.Conv(X0, 3, padding=1)
    for name in CALLS:
        with pytest.raises(ValueError, match=match):
            CALLS[name](X, G, False)
    with pytest.raises(ValueError, match=match):
        md.kfac_factors(X, G)


@pytest.mark.parametrize("call", [
    lambda X, G: md.per_sample_grads(X, G, convention="xW"),
    lambda X, G: md.batch_grad(X, G, convention="xW"),
    lambda X, G: md.clip_and_sum(X, G, 1.0, convention="xW"),
    lambda X, G: md.sum_grad_squared(X, G, convention="xW"),
    lambda X, G: md.grad_variance(X, G, convention="xW"),
])
def test_only_the_weight_convention_is_accepted(call):
    with pytest.raises(ValueError, match=r"convention: a Conv's gradients have the weight's shape .*expected 'Wx', got 'xW'"):
        call(md.Conv(X0, 3), np.zeros((2, 4, 6, 6)))


def test_second_batch_errors():
    X, G = md.Conv(X0, 3), np.zeros((2, 4, 6, 6))
    with pytest.raises(TypeError, match=r"X2: expected a Conv like X, got ndarray"):
        md.per_sample_grad_dots(X, G, np.zeros((2, 36, 27)), np.zeros((2, 36, 4)))
    with pytest.raises(ValueError, match=r"X2 and G2: expected both or neither, got X2 only"):
        md.per_sample_grad_dots(X, G, X)
    with pytest.raises(ValueError, match=r"X2: expected 3 channels and kernel \(3,3\) like X, got 3 channels and kernel \(2,2\)"):
        md.per_sample_grad_dots(X, G, md.Conv(X0, 2), np.zeros((2, 4, 7, 7)))
    with pytest.raises(ValueError, match=r"G2: expected 4 output channels \(axis 1\) like G, got shape \(2,5,6,6\)"):
        md.per_sample_grad_dots(X, G, X, np.zeros((2, 5, 6, 6)))
    with pytest.raises(ValueError, match=r"G2: expected shape \(2, O, 6, 6\)"):
        md.per_sample_grad_dots(X, G, X, np.zeros((2, 4, 5, 6)))


def test_option_errors_and_max_bytes():
    X, G = md.Conv(X0, 3), np.zeros((2, 4, 6, 6))
    with pytest.raises(md.OutputTooLargeError, match=r"per_sample_grads: the output \(2, 4, 3, 3, 3\) float64"):
        md.per_sample_grads(X, G, max_bytes=100)
    with pytest.raises(md.OutputTooLargeError, match=r"batch_grad: the output \(4, 27\) float64"):
        md.batch_grad(X, G, max_bytes=100)
    with pytest.raises(ValueError, match=r"out: expected shape \(2,4,3,3,3\), got \(2,4,27\)"):
        md.per_sample_grads(X, G, out=np.empty((2, 4, 27)))
    with pytest.raises(ValueError, match=r"reduce: expected one of 'sum', 'mean', got 'max'"):
        md.batch_grad(X, G, reduce="max")
    with pytest.raises(ValueError, match=r"mode: expected one of 'expand', 'reduce', got 'full'"):
        md.kfac_factors(X, G, mode="full")
    with pytest.raises(ValueError, match=r"max_norm: expected a positive finite float, got -1.0"):
        md.clip_and_sum(X, G, -1.0)


def test_max_bytes_that_fit_one_sample_a_block_give_the_result():
    geometry = ((6, 2, 6, 5), 3, 1, 1, 1)
    x, G, X = sample(geometry)
    g, db = ref_grads(x, G, geometry)
    U_bytes = 30 * (18 + O) * 8  # one sample's patches and steps
    got = md.sum_grad_squared(X, G, max_bytes=2 * O * 18 * 8 + 2 * U_bytes)
    assert_close(got, (g**2).sum(0), np.float64)


def test_blocks_never_hold_the_whole_patches(monkeypatch):
    from conftest import peak_bytes

    x = np.random.default_rng(0).standard_normal((64, 4, 12, 12))
    G = np.random.default_rng(1).standard_normal((64, 2, 12, 12))
    X = md.Conv(x, 3, padding=1)
    whole = 64 * 144 * 36 * 8
    monkeypatch.setattr(_batch, "BLOCK_BYTES", whole // 16)
    for call in (md.per_sample_grad_norms, md.sum_grad_squared, md.batch_grad):
        assert peak_bytes(lambda: call(X, G)) < whole / 4


def test_the_bench_reference_patches_are_the_patches():
    from matderiv._bench.layers import numpy_patches

    x = np.random.default_rng(0).standard_normal((3, 4, 7, 6))
    np.testing.assert_array_equal(numpy_patches(x, 3, 1), ref_unfold(x, (x.shape, 3, 1, 1, 1)))
