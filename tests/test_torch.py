"""Cross-checks against PyTorch, where it is installed (never a test dependency: without
torch the whole module is skipped, with the reason printed under -rs).

Per-sample gradients come from torch.func: vmap(grad(loss)) of a real, nonlinear loss
through torch.nn.functional.linear / conv1d / conv2d / embedding; the upstream gradients
G handed to matderiv come from torch.autograd on the summed loss.  Every batched function
is then compared with the same quantity computed from torch's per-sample gradients
(norms, clipped sum, sum, sum of squares, variance, Gram matrix), in float32 and float64,
with and without a bias.  K-FAC's factors of a Conv are compared with torch's unfold.
"""
from __future__ import annotations

import numpy as np
import pytest

import matderiv as md
from conftest import REAL_DTYPES, assert_close

torch = pytest.importorskip(
    "torch", reason="torch is optional (never a test dependency): these cross-checks against torch.func run where torch is installed"
)
from torch.func import grad, vmap  # noqa: E402

F = torch.nn.functional
MAX_NORM_QUANTILE = 0.5  # clip about half the samples
FUNCTIONS = ["per_sample_grads", "batch_grad", "per_sample_grad_norms", "clip_and_sum",
             "sum_grad_squared", "grad_variance", "per_sample_grad_dots"]


def smooth_loss(y, target):
    """A per-sample loss whose dL/dy is not y - target: sum((tanh(y) - target)^2) / 2."""
    return ((torch.tanh(y) - target) ** 2).sum() / 2


def torch_per_sample(forward, params, x, target):
    """(per-sample gradients of each param, dL/dy of the summed loss) by torch.func and autograd.

    forward(params, xb) is one sample's output; vmap runs it on the batch."""
    def loss(ps, xb, tb):
        return smooth_loss(forward(ps, xb), tb)

    per_sample = vmap(grad(loss, argnums=0), in_dims=(None, 0, 0))(params, x, target)
    y = vmap(forward, in_dims=(None, 0))(params, x).detach().requires_grad_(True)
    (G,) = torch.autograd.grad(smooth_loss(y, target), (y,))
    return [g.numpy() for g in per_sample], G.numpy()


def expected(name, parts, max_norm):
    """The function's result from the per-sample gradients parts [(B, ...), ...] (float64)."""
    parts = [np.asarray(p, np.float64) for p in parts]
    B = len(parts[0])
    flat = np.concatenate([p.reshape(B, -1) for p in parts], axis=1)
    norms = np.linalg.norm(flat, axis=1)
    if name == "per_sample_grads":
        return parts
    if name == "batch_grad":
        return [p.sum(0) for p in parts]
    if name == "per_sample_grad_norms":
        return [norms]
    if name == "clip_and_sum":
        c = np.minimum(1.0, max_norm / norms)
        return [np.einsum("b,b...->...", c, p) for p in parts] + [norms]
    if name == "sum_grad_squared":
        return [(p**2).sum(0) for p in parts]
    if name == "grad_variance":
        return [p.var(0, ddof=1) for p in parts]
    return [flat @ flat.T]  # per_sample_grad_dots


def call(name, X, G, max_norm, **kw):
    """matderiv's result as a list of dense arrays (norms and dots take no convention: the
    transpose has the same norm and inner products)."""
    if name in ("per_sample_grad_norms", "per_sample_grad_dots"):
        kw.pop("convention", None)
    if name == "clip_and_sum":
        res = md.clip_and_sum(X, G, max_norm, **kw)
    elif name == "grad_variance":
        res = md.grad_variance(X, G, ddof=1, **kw)
    else:
        res = getattr(md, name)(X, G, **kw)
    res = list(res) if isinstance(res, tuple) else [res]
    return [r.toarray() if hasattr(r, "toarray") else r for r in res]


def compare_all(X, G, parts, dtype, **kw):
    """Every batched function on (X, G) against the same quantity from torch's parts."""
    B = len(parts[0])
    norms = np.linalg.norm(np.concatenate([np.asarray(p, np.float64).reshape(B, -1) for p in parts], axis=1), axis=1)
    max_norm = float(np.quantile(norms, MAX_NORM_QUANTILE))
    for name in FUNCTIONS:
        got, want = call(name, X, G, max_norm, **kw), expected(name, parts, max_norm)
        assert len(got) == len(want), name
        for a, e in zip(got, want):
            assert a.dtype == dtype, name
            assert_close(a.reshape(e.shape), e, dtype)


# --- dense layers: "Wx" (torch's linear) and "xW", 2-D batches and sequences -------------------------
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("dtype", REAL_DTYPES)
@pytest.mark.parametrize("lead", [(7,), (5, 6)], ids=["2-D", "sequences"])
@pytest.mark.parametrize("convention", ["Wx", "xW"])
def test_dense_layer_against_vmap_grad(convention, lead, dtype, bias):
    rng = np.random.default_rng(1)
    m, n = 5, 3
    x = rng.standard_normal(lead + (m,)).astype(dtype)
    target = rng.standard_normal(lead + (n,)).astype(dtype)
    W = rng.standard_normal((n, m) if convention == "Wx" else (m, n)).astype(dtype)
    c = rng.standard_normal(n).astype(dtype)

    def forward(ps, xb):
        y = F.linear(xb, ps[0]) if convention == "Wx" else xb @ ps[0]
        return y + ps[1] if bias else y

    params = (torch.from_numpy(W), torch.from_numpy(c)) if bias else (torch.from_numpy(W),)
    parts, G = torch_per_sample(forward, params, torch.from_numpy(x), torch.from_numpy(target))
    assert parts[0].shape == (lead[0],) + W.shape
    compare_all(x, G, parts, dtype, convention=convention, bias=bias)


# --- convolutions: conv1d and conv2d, strides, paddings, dilations, odd sizes --------------------------
#: (x shape, kernel_size, stride, padding, dilation)
GEOMETRIES = [
    ((3, 2, 11), 3, 2, 1, 1),
    ((4, 3, 7), 2, 1, 0, 3),
    ((3, 2, 6, 5), (3, 2), (2, 1), (1, 0), (1, 2)),
    ((4, 3, 5, 5), 3, 1, 1, 1),
    ((3, 1, 4, 7), (1, 3), (1, 3), (0, 2), 1),
    ((5, 2, 9, 6), (2, 3), 2, (2, 1), (3, 1)),
]
O = 4


def conv_case(geometry, dtype, bias):
    """(x, Conv, torch's per-sample gradient parts, G) for a smooth loss of conv(x; W, c)."""
    shape, k, s, p, d = geometry
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(dtype)
    X = md.Conv(x, k, stride=s, padding=p, dilation=d)
    W = rng.standard_normal(X.weight_shape(O)).astype(dtype)
    c = rng.standard_normal(O).astype(dtype)
    conv = F.conv1d if len(shape) == 3 else F.conv2d

    def forward(ps, xb):
        return conv(xb[None], ps[0], ps[1] if bias else None, stride=s, padding=p, dilation=d)[0]

    params = (torch.from_numpy(W), torch.from_numpy(c)) if bias else (torch.from_numpy(W),)
    y_shape = tuple(forward(params, torch.from_numpy(x[0])).shape)
    target = torch.from_numpy(rng.standard_normal((len(x),) + y_shape).astype(dtype))
    parts, G = torch_per_sample(forward, params, torch.from_numpy(x), target)
    return x, X, parts, G


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("dtype", REAL_DTYPES)
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=[f"{len(g[0]) - 2}-D-{i}" for i, g in enumerate(GEOMETRIES)])
def test_conv_against_vmap_grad(geometry, dtype, bias):
    x, X, parts, G = conv_case(geometry, dtype, bias)
    assert parts[0].shape == (len(x),) + X.weight_shape(O)
    compare_all(X, G, parts, dtype, bias=bias)


def torch_patches(x, geometry):
    """The patches (B, T, C k1 k2) by torch.nn.functional.unfold (1-D: a height-1 image)."""
    shape, k, s, p, d = geometry
    xt = torch.from_numpy(x)
    if len(shape) == 3:
        xt, (k, s, p, d) = xt[:, :, None], ((1, k), (1, s), (0, p), (1, d))
    return F.unfold(xt, k, dilation=d, padding=p, stride=s).transpose(1, 2).numpy()


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=[f"{len(g[0]) - 2}-D-{i}" for i, g in enumerate(GEOMETRIES)])
def test_conv_patches_are_torch_unfold(geometry):
    shape, k, s, p, d = geometry
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(md.conv_patches(x, k, stride=s, padding=p, dilation=d), torch_patches(x, geometry))


@pytest.mark.parametrize("mode", ["expand", "reduce"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("geometry", [GEOMETRIES[0], GEOMETRIES[5]], ids=["1-D", "2-D"])
def test_conv_kfac_factors_from_torch_unfold_and_autograd(geometry, bias, mode):
    x, X, _, G = conv_case(geometry, np.float64, bias)
    U = torch_patches(x, geometry)
    if bias:
        U = np.concatenate([U, np.ones(U.shape[:2] + (1,))], axis=-1)
    Gt = G.reshape(G.shape[:2] + (-1,)).transpose(0, 2, 1)  # (B, T, O): autograd's dL/dy per position
    B, T = U.shape[:2]
    if mode == "expand":
        A, S = np.einsum("bti,btj->ij", U, U) / (B * T), np.einsum("bti,btj->ij", Gt, Gt) / B
    else:
        ubar, gbar = U.mean(axis=1), Gt.sum(axis=1)
        A, S = ubar.T @ ubar / B, gbar.T @ gbar / B
    got = md.kfac_factors(X, G, bias=bias, mode=mode)
    assert_close(got[0], A, np.float64)
    assert_close(got[1], S, np.float64)


# --- embeddings ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", REAL_DTYPES)
def test_embedding_against_vmap_grad(dtype):
    rng = np.random.default_rng(9)
    B, T, V, d = 6, 7, 5, 3  # V < T: indices repeat within a sample
    idx = rng.integers(0, V, (B, T))
    table = rng.standard_normal((V, d)).astype(dtype)
    target = torch.from_numpy(rng.standard_normal((B, T, d)).astype(dtype))

    def forward(ps, ib):
        return F.embedding(ib, ps[0])

    parts, G = torch_per_sample(forward, (torch.from_numpy(table),), torch.from_numpy(idx), target)
    E = md.Embedding(idx, V)
    compare_all(E, G, parts, dtype)
    counts, S = md.kfac_factors(E, G)
    one_hot = F.one_hot(torch.from_numpy(idx), V).reshape(B * T, V).double().numpy()
    assert counts.dtype == dtype
    assert_close(np.diag(counts), one_hot.T @ one_hot / (B * T), dtype)
    assert_close(S, np.einsum("bti,btj->ij", G, G).astype(np.float64) / B, dtype)
