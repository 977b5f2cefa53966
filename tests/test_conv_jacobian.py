"""The Jacobians of a convolution, dy/dW (jacobian_conv_weight) and dy/dx (jacobian_conv_input),
in every form, against independent references.

The reference convolution is a plain loop over output positions and kernel offsets with
explicit bounds checks; since y is linear in W and in x, the reference Jacobians are built
column by column by pushing basis arrays through it, and checked once more by central
differences. Structural forms (toarray, tovec, tosparse) must match the basis-vector
tensors to rounding of one product; products use the per-dtype tolerances.
"""
from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
import scipy.sparse as sp

import matderiv as md
from matderiv import _validation
from conftest import FORMATS, LAYOUTS, ORDERS, REAL_DTYPES, assert_close

SPARSE_CLASSES = {"csr": sp.csr_array, "csc": sp.csc_array, "coo": sp.coo_array}

# (name, C, O, S, kernel, stride, padding, dilation), per-axis tuples
CASES = [
    ("1-D plain", 2, 3, (7,), (3,), (1,), (0,), (1,)),
    ("1-D stride pad dil", 3, 2, (9,), (2,), (2,), (2,), (3,)),
    ("2-D pad 1", 2, 3, (5, 4), (3, 3), (1, 1), (1, 1), (1, 1)),
    ("2-D non-square stride", 2, 2, (6, 7), (2, 3), (2, 1), (0, 1), (1, 1)),
    ("2-D dilation odd pads", 1, 3, (7, 5), (3, 2), (1, 2), (2, 0), (2, 2)),
    ("2-D wide padding", 2, 1, (3, 4), (2, 2), (3, 2), (3, 2), (1, 1)),
]
IDS = [c[0] for c in CASES]


def out_shape(S, k, s, p, d):
    return tuple((S[a] + 2 * p[a] - d[a] * (k[a] - 1) - 1) // s[a] + 1 for a in range(len(S)))


def ref_conv(x, W, s, p, d):
    """y = conv(W, x) by loops over output positions and kernel offsets (PyTorch's cross-correlation)."""
    S, k = x.shape[1:], W.shape[2:]
    out = out_shape(S, k, s, p, d)
    y = np.zeros((W.shape[0],) + out, dtype=np.result_type(x, W))
    for pos in itertools.product(*map(range, out)):
        for kk in itertools.product(*map(range, k)):
            src = tuple(pos[a] * s[a] - p[a] + kk[a] * d[a] for a in range(len(S)))
            if all(0 <= src[a] < S[a] for a in range(len(S))):
                y[(slice(None),) + pos] += W[(slice(None), slice(None)) + kk] @ x[(slice(None),) + src]
    return y


def basis_jacobian(f, shape):
    """The tensor f(E).shape + shape of a linear f, one basis array E at a time."""
    cols = []
    for idx in np.ndindex(*shape):
        E = np.zeros(shape)
        E[idx] = 1.0
        cols.append(f(E))
    return np.stack(cols, axis=-1).reshape(cols[0].shape + tuple(shape))


@functools.lru_cache(maxsize=None)
def reference(case_index):
    """(x, W, dy/dW, dy/dx) of a case in float64."""
    _, C, O, S, k, s, p, d = CASES[case_index]
    rng = np.random.default_rng(100 + case_index)
    x, W = rng.standard_normal((C,) + S), rng.standard_normal((O, C) + k)
    dW = basis_jacobian(lambda E: ref_conv(x, E, s, p, d), W.shape)
    dx = basis_jacobian(lambda E: ref_conv(E, W, s, p, d), x.shape)
    return x, W, dW, dx


def vec_of(tensor, nf, order):
    """tovec(order) of a tensor f.shape + Z.shape (nf = f.ndim): rows and columns follow
    ravel(order) of f and of Z (for "F": the axes of each reversed, then C order)."""
    f_axes, z_axes = list(range(nf)), list(range(nf, tensor.ndim))
    rows, cols = int(np.prod(tensor.shape[:nf])), int(np.prod(tensor.shape[nf:]))
    if order == "F":
        tensor = tensor.transpose(f_axes[::-1] + z_axes[::-1])
    return tensor.reshape(rows, cols)


def make(case_index, wrt, dtype):
    """(J, x, W, reference tensor, the argument Z's shape) in dtype."""
    _, C, O, S, k, s, p, d = CASES[case_index]
    x, W, dW, dx = reference(case_index)
    kw = dict(stride=s, padding=p, dilation=d)
    if wrt == "W":
        return md.jacobian_conv_weight(x.astype(dtype), O, k, **kw), x, W, dW, W.shape
    return md.jacobian_conv_input(W.astype(dtype), x.shape, **kw), x, W, dx, x.shape


def structural_count(case_index):
    """dy/dx's structurally nonzero entries, by loops: (o, pos, c, in-bounds source)."""
    _, C, O, S, k, s, p, d = CASES[case_index]
    count = 0
    for pos in itertools.product(*map(range, out_shape(S, k, s, p, d))):
        for kk in itertools.product(*map(range, k)):
            src = [pos[a] * s[a] - p[a] + kk[a] * d[a] for a in range(len(S))]
            count += all(0 <= src[a] < S[a] for a in range(len(S)))
    return O * C * count


def assert_canonical(A, fmt):
    assert type(A) is SPARSE_CLASSES[fmt]
    if fmt == "coo":
        rows, cols = A.coords
        key = rows.astype(np.int64) * A.shape[1] + cols
        assert (np.diff(key) > 0).all()
    else:
        major = A.shape[0] if fmt == "csr" else A.shape[1]
        assert A.indptr.shape == (major + 1,) and A.indptr[0] == 0 and A.indptr[-1] == A.nnz
        for r in range(major):  # strictly increasing minor indices in every row (column)
            assert (np.diff(A.indices[A.indptr[r] : A.indptr[r + 1]]) > 0).all()
    assert A.has_canonical_format


# --- every form against the basis-vector reference -------------------------------------------
@pytest.mark.parametrize("wrt", ["W", "x"])
@pytest.mark.parametrize("dtype", REAL_DTYPES)
@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
def test_dense_and_sparse_forms(case, dtype, wrt):
    J, x, W, ref, z_shape = make(case, wrt, dtype)
    nf = ref.ndim - len(z_shape)
    assert J.shape == ref.shape and J.dtype == dtype and J.ndim == ref.ndim and J.batch_size is None
    assert_close(J.toarray(), ref, dtype)
    den = np.moveaxis(ref, list(range(nf)), list(range(ref.ndim - nf, ref.ndim)))
    assert_close(J.toarray("denominator"), den, dtype)
    for order in ORDERS:
        expected = vec_of(ref, nf, order)
        assert_close(J.tovec(order), expected, dtype)
        for fmt in FORMATS:
            A = J.tosparse(fmt, order)
            assert_canonical(A, fmt)
            assert A.dtype == dtype and A.shape == expected.shape
            assert_close(A.toarray(), expected, dtype)


@pytest.mark.parametrize("wrt", ["W", "x"])
@pytest.mark.parametrize("dtype", REAL_DTYPES)
@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
def test_products_and_operator(case, dtype, wrt):
    J, x, W, ref, z_shape = make(case, wrt, dtype)
    nf = ref.ndim - len(z_shape)
    rng = np.random.default_rng(case)
    dZ = rng.standard_normal(z_shape).astype(dtype)
    v = rng.standard_normal(ref.shape[:nf]).astype(dtype)
    s, p, d = CASES[case][5:]
    jvp_ref = ref_conv(x, dZ, s, p, d) if wrt == "W" else ref_conv(dZ, W, s, p, d)
    assert J.jvp(dZ).dtype == dtype and J.vjp(v).dtype == dtype
    assert_close(J.jvp(dZ), jvp_ref, dtype)
    assert_close(J.vjp(v), np.tensordot(v, ref, axes=nf), dtype)
    for order in ORDERS:
        M = vec_of(ref, nf, order)
        op = J.aslinearoperator(order)
        assert op.shape == M.shape
        u, w = dZ.ravel(order=order), v.ravel(order=order)
        assert_close(op.matvec(u), M @ u, dtype)
        assert_close(op.rmatvec(w), M.T @ w, dtype)
        U2 = rng.standard_normal((M.shape[1], 3))
        assert_close(op.matmat(U2), M @ U2, dtype)
        assert_close(op.T.matvec(w), M.T @ w, dtype)


@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
def test_input_jacobian_holds_exactly_the_structural_nonzeros(case):
    J = make(case, "x", np.float64)[0]
    count = structural_count(case)
    assert J.nnz == count
    for fmt, order in itertools.product(FORMATS, ORDERS):
        assert J.tosparse(fmt, order).nnz == count


@pytest.mark.parametrize("case", [0, 3, 4], ids=[IDS[0], IDS[3], IDS[4]])
def test_central_differences(case):
    """The reference tensors themselves, and the Jacobians, agree with central differences
    of the plain-loop convolution (exact up to rounding: y is linear)."""
    J_W, x, W, dW, _ = make(case, "W", np.float64)
    J_x = make(case, "x", np.float64)[0]
    s, p, d = CASES[case][5:]
    h = 1e-3
    for J, Z, f in ((J_W, W, lambda Z: ref_conv(x, Z, s, p, d)), (J_x, x, lambda Z: ref_conv(Z, W, s, p, d))):
        cols = []
        for idx in np.ndindex(*Z.shape):
            E = np.zeros_like(Z)
            E[idx] = h
            cols.append((f(Z + E) - f(Z - E)) / (2 * h))
        fd = np.stack(cols, axis=-1).reshape(J.shape)
        np.testing.assert_allclose(J.toarray(), fd, rtol=1e-8, atol=1e-8)


def test_check_jacobian_takes_the_convolution_jacobians():
    J_W, x, W, _, _ = make(4, "W", np.float64)
    J_x = make(4, "x", np.float64)[0]
    s, p, d = CASES[4][5:]
    assert md.check_jacobian(lambda Z: ref_conv(x, Z, s, p, d), W, J_W).max_abs_error < 1e-7
    assert md.check_jacobian(lambda Z: ref_conv(Z, W, s, p, d), x, J_x).max_abs_error < 1e-7
    with pytest.raises(md.JacobianMismatch):
        md.check_jacobian(lambda Z: 2 * ref_conv(Z, W, s, p, d), x, J_x)


@pytest.mark.parametrize("wrt", ["W", "x"])
def test_left_mixes_output_channels(wrt):
    J, x, W, ref, z_shape = make(2, wrt, np.float64)
    nf = ref.ndim - len(z_shape)
    M = np.random.default_rng(3).standard_normal((4, ref.shape[0]))
    expected = np.tensordot(M, ref, axes=1)
    for Mi in (M, sp.csr_array(M)):
        L = J.left(Mi)
        assert L.shape == expected.shape
        assert_close(L.toarray(), expected, np.float64)
        for order in ORDERS:
            assert_close(L.tovec(order), vec_of(expected, nf, order), np.float64)
            assert_close(L.tosparse("csr", order).toarray(), vec_of(expected, nf, order), np.float64)


@pytest.mark.parametrize("wrt", ["W", "x"])
def test_out_and_threads(wrt):
    J, x, W, ref, z_shape = make(3, wrt, np.float64)
    nf = ref.ndim - len(z_shape)
    out = np.full(ref.shape, np.nan)
    assert J.toarray(out=out, n_threads=2) is out
    assert_close(out, ref, np.float64)
    outv = np.full(vec_of(ref, nf, "F").shape, np.nan)
    assert J.tovec("F", out=outv, n_threads=1) is outv
    assert_close(outv, vec_of(ref, nf, "F"), np.float64)
    v = np.ones(ref.shape[:nf])
    outz = np.empty(z_shape)
    assert J.vjp(v, out=outz) is outz
    assert_close(outz, np.tensordot(v, ref, axes=nf), np.float64)


def test_integer_inputs_become_float64_and_empty_output_channels():
    x = np.arange(10).reshape(2, 5)
    J = md.jacobian_conv_weight(x, 2, 3)
    assert J.dtype == np.float64 and J.shape == (2, 3, 2, 2, 3)
    Ji = md.jacobian_conv_input(np.ones((2, 2, 3), dtype=np.int32), (2, 5))
    assert Ji.dtype == np.float64
    J0 = md.jacobian_conv_input(np.ones((0, 2, 3)), (2, 5))
    assert J0.shape == (0, 3, 2, 5) and J0.tosparse("csr").shape == (0, 10) and J0.nnz == 0
    assert J0.toarray().shape == (0, 3, 2, 5) and J0.vjp(np.ones((0, 3))).tolist() == np.zeros((2, 5)).tolist()


def test_int64_index_path(monkeypatch):
    J, _, _, ref, _ = make(2, "x", np.float64)
    expected = vec_of(ref, 3, "C")
    monkeypatch.setattr(_validation.core, "INT32_INDEX_MAX", J.nnz - 1)
    for fmt in FORMATS:
        A = J.tosparse(fmt, "C")
        idx = list(A.coords) if fmt == "coo" else [A.indices, A.indptr]
        assert all(a.dtype == np.int64 for a in idx)
        assert_close(A.toarray(), expected, np.float64)


# --- torch (optional) ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", REAL_DTYPES)
@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
def test_against_torch_jacrev(case, dtype):
    """The Jacobians by torch.func.jacrev, and jvp/vjp by torch.func.jvp and vjp, in dtype."""
    torch = pytest.importorskip("torch", reason="torch is optional (never a test dependency): this cross-check against torch.func runs where torch is installed")
    _, C, O, S, k, s, p, d = CASES[case]
    x, W, _, _ = reference(case)
    x, W = x.astype(dtype), W.astype(dtype)
    conv = torch.nn.functional.conv1d if len(S) == 1 else torch.nn.functional.conv2d
    xt, Wt = torch.tensor(x), torch.tensor(W)
    f = lambda xx, WW: conv(xx[None], WW, stride=s, padding=p, dilation=d)[0]  # noqa: E731
    Jw = md.jacobian_conv_weight(x, O, k, stride=s, padding=p, dilation=d)
    Jx = md.jacobian_conv_input(W, x.shape, stride=s, padding=p, dilation=d)
    assert_close(Jw.toarray(), torch.func.jacrev(f, argnums=1)(xt, Wt).numpy(), dtype)
    assert_close(Jx.toarray(), torch.func.jacrev(f, argnums=0)(xt, Wt).numpy(), dtype)
    rng = np.random.default_rng(case)
    dW, dx = rng.standard_normal(W.shape).astype(dtype), rng.standard_normal(x.shape).astype(dtype)
    y, vjp_of = torch.func.vjp(f, xt, Wt)
    v = rng.standard_normal(tuple(y.shape)).astype(dtype)
    gx, gW = (g.numpy() for g in vjp_of(torch.tensor(v)))
    assert_close(Jw.vjp(v), gW, dtype)
    assert_close(Jx.vjp(v), gx, dtype)
    assert_close(Jw.jvp(dW), torch.func.jvp(lambda WW: f(xt, WW), (Wt,), (torch.tensor(dW),))[1].numpy(), dtype)
    assert_close(Jx.jvp(dx), torch.func.jvp(lambda xx: f(xx, Wt), (xt,), (torch.tensor(dx),))[1].numpy(), dtype)


# --- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((np.ones(5), 2, 3), {}, ValueError, r"x: expected a 2-D or 3-D array, got 1-D"),
        ((np.ones((2, 5)) * 1j, 2, 3), {}, TypeError, r"x: real inputs are required"),
        ((np.ones((2, 5)), -1, 3), {}, ValueError, r"out_channels: expected a non-negative int, got -1"),
        ((np.ones((2, 5)), 2.0, 3), {}, TypeError, r"out_channels: expected a non-negative int, got float"),
        ((np.ones((2, 5)), 2, 6), {}, ValueError, r"kernel_size: expected a dilated kernel .* got kernel_size \(6,\)"),
        ((np.ones((2, 5, 5)), 2, (3, 3, 3)), {}, ValueError, r"kernel_size: expected an int or 2 ints"),
        ((np.ones((2, 5)), 2, 3), {"stride": 0}, ValueError, r"stride: expected ints of at least 1"),
        ((np.ones((2, 5)), 2, 3), {"padding": -1}, ValueError, r"padding: expected ints of at least 0"),
    ],
)
def test_weight_jacobian_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        md.jacobian_conv_weight(*args, **kwargs)


@pytest.mark.parametrize(
    "W, input_shape, kwargs, error, match",
    [
        (np.ones((2, 3)), (3, 5), {}, ValueError, r"W: expected a 3-D or 4-D array, got 2-D"),
        (np.ones((2, 3, 2, 2, 2)), (3, 5, 5, 5), {}, ValueError, r"W: expected a 3-D or 4-D array, got 5-D"),
        (np.ones((2, 3, 2)) * 1j, (3, 5), {}, TypeError, r"W: real inputs are required"),
        (np.ones((2, 3, 0)), (3, 5), {}, ValueError, r"W: expected a kernel of at least 1 on every spatial axis, got shape \(2,3,0\)"),
        (np.ones((2, 3, 2)), (3, 5, 5), {}, ValueError, r"input_shape: expected a tuple \(C, L\) of 2 ints \(W of shape \(2,3,2\) has 1 spatial axes\)"),
        (np.ones((2, 3, 2, 2)), 5, {}, ValueError, r"input_shape: expected a tuple \(C, H, W\) of 3 ints"),
        (np.ones((2, 3, 2)), (4, 5), {}, ValueError, r"input_shape: expected C = 3 input channels \(axis 1 of W"),
        (np.ones((2, 3, 2)), (3, -5), {}, ValueError, r"input_shape\[1\]: expected a non-negative int, got -5"),
        (np.ones((2, 3, 2)), (3, 2.5), {}, TypeError, r"input_shape\[1\]: expected a non-negative int, got float"),
        (np.ones((2, 3, 6)), (3, 5), {}, ValueError, r"W's kernel: expected a dilated kernel .* got W's kernel \(6,\)"),
        (np.ones((2, 3, 3)), (3, 5), {"dilation": 3}, ValueError, r"W's kernel: expected a dilated kernel \(dilation \(k - 1\) \+ 1 = \(7,\)\)"),
        (np.ones((2, 3, 2)), (3, 5), {"stride": (1, 1)}, ValueError, r"stride: expected an int or 1 ints"),
    ],
)
def test_input_jacobian_errors(W, input_shape, kwargs, error, match):
    with pytest.raises(error, match=match):
        md.jacobian_conv_input(W, input_shape, **kwargs)


@pytest.mark.parametrize("wrt", ["W", "x"])
def test_form_argument_errors(wrt):
    J, x, W, ref, z_shape = make(2, wrt, np.float64)
    name = "dW" if wrt == "W" else "dx"
    nf = ref.ndim - len(z_shape)
    with pytest.raises(ValueError, match=rf"{name}: expected shape"):
        J.jvp(np.ones(z_shape[:-1] + (z_shape[-1] + 1,)))
    with pytest.raises(ValueError, match=rf"{name}: expected a {len(z_shape)}-D array"):
        J.jvp(np.ones(3))
    with pytest.raises(ValueError, match=r"v: expected shape"):
        J.vjp(np.ones(ref.shape[:nf - 1] + (99,)))
    with pytest.raises(ValueError, match=r"out: expected shape"):
        J.vjp(np.ones(ref.shape[:nf]), out=np.empty(3))
    with pytest.raises(ValueError, match=r"out: expected shape"):
        J.toarray(out=np.empty(3))
    with pytest.raises(ValueError, match=r"out: expected dtype float64"):
        J.tovec("C", out=np.empty(vec_of(ref, nf, "C").shape, dtype=np.float32))
    with pytest.raises(ValueError, match=r"layout: expected one of"):
        J.toarray("rows")
    with pytest.raises(ValueError, match=r"order: expected one of"):
        J.tovec("K")
    with pytest.raises(ValueError, match=r"format: expected one of"):
        J.tosparse("dok")
    with pytest.raises(ValueError, match=r"order: expected one of"):
        J.aslinearoperator("A")
    with pytest.raises(ValueError, match=r"n_threads: expected None, -1 or an int"):
        J.tosparse("csr", n_threads=0)
    with pytest.raises(ValueError, match=r"M: expected shape \(r, 3\) to multiply f of shape"):
        J.left(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"matvec: expected a vector of length"):
        J.aslinearoperator("C").matvec(np.ones(2))


def test_input_left_refuses_complex_M():
    J = make(2, "x", np.float64)[0]
    with pytest.raises(TypeError, match=r"M: real inputs are required, got dtype complex128"):
        J.left(np.ones((2, 3), dtype=np.complex128))


@pytest.mark.parametrize("wrt", ["W", "x"])
def test_max_bytes_refuses_before_allocating(wrt):
    J, x, W, ref, z_shape = make(2, wrt, np.float64)
    nf = ref.ndim - len(z_shape)
    for call in (
        lambda: J.toarray(max_bytes=64),
        lambda: J.toarray("denominator", max_bytes=64),
        lambda: J.tovec("F", max_bytes=64),
        lambda: J.tosparse("csr", max_bytes=64),
        lambda: J.tosparse("csc", "F", max_bytes=64),
        lambda: J.tosparse("coo", max_bytes=64),
        lambda: J.vjp(np.ones(ref.shape[:nf]), max_bytes=8),
    ):
        with pytest.raises(md.OutputTooLargeError, match=r"max_bytes"):
            call()
