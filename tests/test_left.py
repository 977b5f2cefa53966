"""J.left(M), the Jacobian of M @ f, on every kind of Jacobian: against dense products
(np.einsum on the reference tensor), chains, per-sample M, a network against finite
differences, and the operator that never builds the stacked matrix."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

import matderiv as md
from conftest import DTYPES, FORMATS, LAYOUTS, ORDERS, assert_close, random_array, wider


def all_forms(J):
    """Every form of J as dense arrays (for comparison with a reference tensor)."""
    res = {("toarray", lay): J.toarray(lay) for lay in LAYOUTS}
    for order in ORDERS:
        res["tovec", order] = J.tovec(order)
        for fmt in FORMATS:
            res["tosparse", fmt, order] = J.tosparse(fmt, order).toarray()
    return res


def forms_of_tensor(D, lead, f_ndim):
    """The forms a Jacobian with tensor D (lead + f + W axes, W 2-D) must have."""
    nl = len(lead)
    f_axes = tuple(range(nl, nl + f_ndim))
    W_axes = (D.ndim - 2, D.ndim - 1)
    res = {("toarray", "numerator"): D, ("toarray", "denominator"): D.transpose(tuple(range(nl)) + W_axes + f_axes)}
    S = int(np.prod(lead)) if lead else 1
    for order in ORDERS:
        Dv = D
        if order == "F":  # column-major vec of f and of W
            Dv = D.transpose(tuple(range(nl)) + f_axes[::-1] + W_axes[::-1])
        mat = Dv.reshape(S * int(np.prod(D.shape[nl:nl + f_ndim])), -1)
        res["tovec", order] = mat
        for fmt in FORMATS:
            res["tosparse", fmt, order] = mat
    return res


def assert_forms(J, D, dtype):
    lead = (J.batch_size,) if J.batch_size is not None else ()
    expected = forms_of_tensor(D, lead, len(J.f_shape))
    got = all_forms(J)
    assert J.shape == D.shape
    for key, value in expected.items():
        assert_close(got[key], value, dtype)


def assert_products(rng, J, D, dtype):
    """jvp, vjp and the operator (both orders, adjoint too) against the tensor D."""
    lead = (J.batch_size,) if J.batch_size is not None else ()
    W_shape = J.W_shape
    dW = random_array(rng, W_shape, dtype, zeros=False)
    f_axes = "fg"[: len(J.f_shape)]
    lead_ax = "s" if lead else ""
    assert_close(J.jvp(dW), np.einsum(f"{lead_ax}{f_axes}ab,ab->{lead_ax}{f_axes}", D, dW), dtype)
    V = random_array(rng, lead + J.f_shape, dtype, zeros=False)
    assert_close(J.vjp(V), np.einsum(f"{lead_ax}{f_axes}ab,{lead_ax}{f_axes}->{lead_ax}ab", D, V), dtype)
    forms = forms_of_tensor(D, lead, len(J.f_shape))
    for order in ORDERS:
        M = forms["tovec", order].astype(wider(dtype))
        op = J.aslinearoperator(order)
        u = random_array(rng, (M.shape[1], 2), dtype, zeros=False)
        w = random_array(rng, (M.shape[0], 2), dtype, zeros=False)
        assert_close(op.matmat(u), M @ u, dtype)
        assert_close(op.rmatmat(w), M.conj().T @ w, dtype)
        assert_close(op.H.matvec(w[:, 0]), M.conj().T @ w[:, 0], dtype)
        lhs = np.vdot(op.matvec(u[:, 0]).astype(wider(dtype)), w[:, 0])
        assert_close(lhs, np.vdot(u[:, 0], op.rmatvec(w[:, 0]).astype(wider(dtype))), dtype)


def ref_wx(x, n):
    """d(W @ x)/dW for x (m,) or (B, m) by einsum: (n, n, m), batched (B, n, n, m)."""
    return np.einsum("ia,...b->...iab", np.eye(n), x)


def ref_xw(x, n):
    return np.einsum("...a,jb->...jab", x, np.eye(n))


def make_M(rng, shape, kind, dtype):
    M = random_array(rng, shape, dtype)
    if kind == "dense":
        return M, M
    S = sp.random_array(shape, density=0.5, rng=rng, format="coo").astype(dtype)
    cls = {"csr": sp.csr_array, "csc_matrix": sp.csc_matrix}[kind]
    return cls(S), S.toarray()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["dense", "csr", "csc_matrix"])
@pytest.mark.parametrize("convention", ["Wx", "xW"])
@pytest.mark.parametrize("batched", [False, True])
def test_left_of_wx_and_xw_is_M_times_the_tensor(rng, dtype, kind, convention, batched):
    n, m, r, B = 4, 3, 5, 3
    x = random_array(rng, (B, m) if batched else (m,), dtype)
    M, Mv = make_M(rng, (r, n), kind, dtype)
    J = (md.jacobian_wx if convention == "Wx" else md.jacobian_xw)(x, n)
    D = (ref_wx if convention == "Wx" else ref_xw)(x, n)
    L = J.left(M)
    assert L.dtype == np.dtype(dtype) and L.batch_size == J.batch_size
    expected = np.einsum("ri,...iab->...rab", Mv, D)
    assert_forms(L, expected, dtype)
    assert_products(rng, L, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("convention", ["Wx", "xW"])
def test_per_sample_M(rng, dtype, convention):
    """M of shape (B, r, n): sample b's rows are M_b @ (its Jacobian)."""
    B, n, m, r = 4, 3, 5, 2
    X = random_array(rng, (B, m), dtype)
    M = random_array(rng, (B, r, n), dtype)
    J = (md.jacobian_wx if convention == "Wx" else md.jacobian_xw)(X, n)
    D = (ref_wx if convention == "Wx" else ref_xw)(X, n)
    L = J.left(M)
    assert L.shape == (B, r) + J.W_shape
    expected = np.einsum("sri,siab->srab", M, D)
    assert_forms(L, expected, dtype)
    assert_products(rng, L, expected, dtype)
    for b in range(B):  # sample by sample it is the unbatched Jacobian's left product
        single = (md.jacobian_wx if convention == "Wx" else md.jacobian_xw)(X[b], n).left(M[b])
        assert_close(L.toarray()[b], single.toarray(), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_left_of_awb(rng, dtype):
    """f = A W B is a matrix (n, k): M @ f multiplies its rows."""
    A = sp.random_array((4, 3), density=0.6, rng=rng, format="csr").astype(dtype)
    Bm = random_array(rng, (5, 2), dtype)
    M = random_array(rng, (6, 4), dtype)
    L = md.jacobian_awb(A, Bm).left(M)
    expected = np.einsum("ri,ia,bj->rjab", M, A.toarray(), Bm)
    assert L.shape == (6, 2, 3, 5)
    assert_forms(L, expected, dtype)
    assert_products(rng, L, expected, dtype)
    Ls = md.jacobian_awb(None, Bm, W_shape=(4, 5)).left(sp.csr_array(M))  # identity A: A' = M, sparse
    assert_forms(Ls, np.einsum("ra,bj->rjab", M, Bm), dtype)


@pytest.mark.parametrize("M1_kind", ["dense", "csr"])
@pytest.mark.parametrize("per_sample", [False, True])
def test_chains_compose(rng, M1_kind, per_sample):
    B, n, m = 3, 4, 5
    X = rng.standard_normal((B, m))
    J = md.jacobian_wx(X, n)
    if per_sample:
        M1 = rng.standard_normal((B, 3, n))
        M2 = rng.standard_normal((B, 2, 3))
        M21 = M2 @ M1
    else:
        M1, M1v = make_M(rng, (3, n), M1_kind, np.float64)
        M2 = rng.standard_normal((2, 3))
        M21 = M2 @ M1v
    chained, direct = J.left(M1).left(M2), J.left(M21)
    assert chained.shape == direct.shape == (B, 2, n, m)
    got = all_forms(chained)
    for key, value in all_forms(direct).items():
        np.testing.assert_allclose(got[key], value, rtol=1e-12, atol=1e-12)
    # a shared M after a per-sample one and the other way round
    Mb = rng.standard_normal((B, 2, 3))
    np.testing.assert_allclose(
        J.left(np.ones((3, n))).left(Mb).toarray(), J.left(Mb @ np.ones((3, n))).toarray(), rtol=1e-12
    )


def test_left_of_total_jacobian_matches_finite_differences(rng):
    """f(W) = M @ W @ tanh(W^T y): the product-rule Jacobian's left product."""
    n, m, r = 3, 4, 2
    W = rng.standard_normal((n, m)) / 2
    y = rng.standard_normal(n)
    M = rng.standard_normal((r, n))
    x = np.tanh(W.T @ y)
    dx = np.einsum("j,a,jb->jab", 1 - x**2, y, np.eye(m))
    T = md.jacobian_wx(x, n, W=W, dx_dW=dx)
    L = T.left(M)
    assert isinstance(L, md.TotalJacobian) and L.shape == (r, n, m)
    expected = np.einsum("ri,iab->rab", M, T.toarray())
    assert_forms(L, expected, np.float64)
    assert_products(rng, L, expected, np.float64)
    md.check_jacobian(lambda W_: M @ W_ @ np.tanh(W_.T @ y), W, L)
    assert_forms(T.left(sp.csr_array(M)), expected, np.float64)
    # x = W^T y with dx/dW given as a structured Jacobian (never materialized)
    T2 = md.jacobian_wx(W.T @ y, n, W=W, dx_dW=md.jacobian_xw(y, m))
    L2 = T2.left(M)
    assert_forms(L2, np.einsum("ri,iab->rab", M, T2.toarray()), np.float64)
    md.check_jacobian(lambda W_: M @ W_ @ (W_.T @ y), W, L2)


def test_network_hidden_layer_gauss_newton_jacobian(rng):
    """y_b = W2 tanh(W1 x_b + b1): d y / d W1 = jacobian_wx(X, h).left(W2 * s[:, None, :]),
    s = tanh'(z), against finite differences of the whole batch."""
    B, n_in, h, n_out = 5, 3, 4, 2
    X = rng.standard_normal((B, n_in))
    W1 = rng.standard_normal((h, n_in))
    b1 = rng.standard_normal(h)
    W2 = rng.standard_normal((n_out, h))

    def f(W1_):
        return np.tanh(X @ W1_.T + b1) @ W2.T  # (B, n_out)

    s = 1 - np.tanh(X @ W1.T + b1) ** 2
    J = md.jacobian_wx(X, h).left(W2 * s[:, None, :])
    assert J.shape == (B, n_out, h, n_in)
    res = md.check_jacobian(f, W1, J)
    assert res.max_abs_error < 1e-7
    np.testing.assert_allclose(J.toarray(), md.numerical_jacobian(f, W1), rtol=1e-6, atol=1e-8)
    # the operator is the Gauss-Newton Jacobian of the residuals f(W1).ravel() in vec(W1)
    op = J.aslinearoperator("C")
    dW = rng.standard_normal(W1.shape) * 1e-6
    np.testing.assert_allclose(op.matvec(dW.ravel()), (f(W1 + dW) - f(W1 - dW)).ravel() / 2, rtol=1e-5, atol=1e-12)


def test_per_sample_operator_never_builds_the_stacked_matrix(rng):
    B, r, n, m = 512, 4, 64, 64
    X = rng.standard_normal((B, m))
    M = rng.standard_normal((B, r, n))
    op = md.jacobian_wx(X, n).left(M).aslinearoperator("F")
    u = rng.standard_normal(n * m)
    w = rng.standard_normal(B * r)
    stacked_bytes = B * r * n * m * 8  # 67 MB
    tracemalloc.start()
    a = op.matvec(u)
    b = op.rmatvec(w)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < stacked_bytes / 50
    Y = (u.reshape(m, n).T @ X.T).T  # (B, n): dW x_b
    np.testing.assert_allclose(a, np.einsum("brn,bn->br", M, Y).ravel(), rtol=1e-12)
    G = np.einsum("brn,br->bn", M, w.reshape(B, r)).T @ X  # sum_b (M_b^T w_b) x_b^T
    np.testing.assert_allclose(b, G.ravel(order="F"), rtol=1e-12)


def test_left_dtype_promotion(rng):
    J = md.jacobian_wx(rng.standard_normal(3).astype(np.float32), 2)
    assert J.left(np.ones((1, 2), np.float32)).dtype == np.float32
    assert J.left(np.ones((1, 2))).dtype == np.float64
    assert J.left(sp.csr_array(np.ones((1, 2), np.complex64))).dtype == np.complex64
    assert J.left([[1, 2]]).dtype == np.float64  # integers become float64
    L = J.left(np.ones((1, 2), np.complex128))
    assert L.dtype == np.complex128 and L.tovec().dtype == np.complex128


def test_left_errors_name_M(rng):
    J = md.jacobian_wx(rng.standard_normal(3), 2)
    JB = md.jacobian_wx(rng.standard_normal((4, 3)), 2)
    with pytest.raises(ValueError, match=r"M: expected a 2-D or 3-D array, got 1-D"):
        J.left(np.ones(2))
    with pytest.raises(ValueError, match=r"M: expected a 2-D or 3-D array, got 4-D"):
        JB.left(np.ones((4, 1, 1, 2)))
    with pytest.raises(ValueError, match=r"M: expected shape \(r, 2\) to multiply f of shape \(2,\), got \(3, 3\)"):
        J.left(np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"M: expected shape \(r, 2\) to multiply f of shape \(2,\), got \(1, 5\)"):
        J.left(sp.csr_array(np.ones((1, 5))))
    with pytest.raises(ValueError, match=r"M: expected shape \(B, r, 2\) .*got \(4, 1, 3\)"):
        JB.left(np.ones((4, 1, 3)))
    with pytest.raises(ValueError, match=r"M: a per-sample M of shape \(B, r, n\) needs a batched Jacobian"):
        J.left(np.ones((4, 1, 2)))
    with pytest.raises(ValueError, match=r"M: expected one matrix per sample, \(B, r, n\) with B = 4, got shape \(3, 1, 2\)"):
        JB.left(np.ones((3, 1, 2)))
    with pytest.raises(ValueError, match=r"M: expected a 2-D sparse matrix, got 1-D with shape \(2,\)"):
        J.left(sp.coo_array(np.ones(2)))
    with pytest.raises(TypeError, match=r"M: unsupported dtype"):
        J.left(np.array([["a", "b"]]))
    with pytest.raises(TypeError, match=r"M: unsupported dtype"):
        J.left(sp.csr_array(np.ones((1, 2), dtype=np.longdouble)))
    T = md.jacobian_wx(np.ones(3), 2, W=np.ones((2, 3)), dx_dW=np.zeros((3, 2, 3)))
    with pytest.raises(ValueError, match=r"M: a per-sample M .* needs a batched Jacobian"):
        T.left(np.ones((1, 1, 2)))
    A = md.jacobian_awb(np.ones((3, 2)), np.ones((4, 5)))  # f is (3, 5): M multiplies its rows
    with pytest.raises(ValueError, match=r"M: expected shape \(r, 3\) to multiply f of shape \(3, 5\), got \(2, 5\)"):
        A.left(np.ones((2, 5)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_per_sample_sparse_forms_int64_and_thread_invariance(rng, monkeypatch, fmt):
    from matderiv import _validation

    B, n, m, r = 3, 4, 5, 2
    X = rng.standard_normal((B, m))
    M = rng.standard_normal((B, r, n))
    J = md.jacobian_wx(X, n).left(M)
    for order in ORDERS:
        dense = J.tovec(order)
        base = J.tosparse(fmt, order, n_threads=1)
        for nt in (2, 3):
            S = J.tosparse(fmt, order, n_threads=nt)
            assert np.array_equal(S.data, base.data) and (S != base).nnz == 0
            assert np.array_equal(J.tovec(order, n_threads=nt), dense)
        monkeypatch.setattr(_validation.core, "INT32_INDEX_MAX", B * r * n * m - 1)
        S = J.tosparse(fmt, order)
        arrays = S.coords if fmt == "coo" else (S.indices, S.indptr)
        assert all(a.dtype == np.int64 for a in arrays)
        assert S.nnz == B * r * n * m and np.array_equal(S.toarray(), dense)
        monkeypatch.undo()


# --- products M @ A larger than M and A: kept lazy ---------------------------------------
def lazy_chain(rng, case, B, n, dtype):
    """[(argument of left, its dense value)] whose product, multiplied out, holds more entries
    than its factors: a rank-one step (1, n) then (3, 1), as dense, sparse or mixed factors,
    or a per-sample (B, 1, 1) in between (three factors none of whose pairs is smaller)."""
    def mat(shape, sparse):
        value = random_array(rng, shape, dtype, zeros=False)
        return (sp.csr_array(value) if sparse else value), value

    if case == "per-sample":
        return [mat((1, n), False), mat((B, 1, 1), False), mat((3, 1), False)]
    first_sparse, second_sparse = {"dense": (False, False), "sparse": (True, True), "mixed": (True, False)}[case]
    return [mat((1, n), first_sparse), mat((3, 1), second_sparse)]


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("case", ["dense", "sparse", "mixed", "per-sample"])
@pytest.mark.parametrize("convention", ["Wx", "xW"])
def test_left_keeps_larger_products_lazy_in_every_form(rng, dtype, case, convention):
    """J.left(M1).left(M2)... where M2 @ M1 would hold more entries than M1 and M2 (on A, or
    on B as M^T for x @ W): every form and product against the einsum reference of the
    product, and equal to J.left(M2 @ M1)."""
    B, n, m = 3, 4, 5
    X = random_array(rng, (B, m), dtype)
    make, ref = (md.jacobian_wx, ref_wx) if convention == "Wx" else (md.jacobian_xw, ref_xw)
    J, L, total = make(X, n), make(X, n), None
    for arg, value in lazy_chain(rng, case, B, n, dtype):
        L = L.left(arg)
        total = value if total is None else value @ total
    assert "lazy product" in repr(L)
    expected = np.einsum("sri,siab->srab", np.broadcast_to(total, (B,) + total.shape[-2:]), ref(X, n))
    assert_forms(L, expected, dtype)
    assert_products(rng, L, expected, dtype)
    assert_close(L.tovec("C"), J.left(total).tovec("C"), dtype)


def test_left_of_a_rank_one_product_never_builds_it():
    """The issue's example: M @ A would be (2^20, 2^20), 8 TiB. The Jacobian keeps M and A;
    its products apply them one after the other, its forms refuse before allocating."""
    N = 2**20
    J = md.jacobian_awb(np.ones((1, N)), None, W_shape=(N, 1)).left(np.ones((N, 1)))
    assert J.shape == (N, 1, N, 1) and "lazy product dense (1048576, 1) @ dense (1, 1048576)" in repr(J)
    rng = np.random.default_rng(5)
    u, w = rng.standard_normal(N), rng.standard_normal(N)
    tracemalloc.start()
    op = J.aslinearoperator()
    got = [op.matvec(u), op.rmatvec(w), J.jvp(u.reshape(N, 1)), J.vjp(w.reshape(N, 1))]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 * 8 * N  # a few vectors of N
    # f = M (A W) = sum(W) in every entry; the pull-back of V is A^T (M^T V) = sum(V) everywhere
    for value, total in zip(got, (u.sum(), w.sum(), u.sum(), w.sum())):
        np.testing.assert_allclose(value, np.full(value.shape, total), rtol=1e-9, atol=1e-9)
    for form, call in (("tovec", J.tovec), ("toarray", J.toarray), ("tosparse", J.tosparse)):
        with pytest.raises(md.OutputTooLargeError, match=rf"^{form}: .*\(1, 1048576, 1048576\) float64"):
            call()


def test_multiplying_out_a_lazy_product_counts_against_max_bytes(rng):
    """The forms multiply M @ A out: it is counted with the output, and tosparse refuses
    before multiplying when the product alone is over the limit."""
    r, p = 60, 80
    A, M = rng.standard_normal((1, p)), rng.standard_normal((r, 1))
    J = md.jacobian_awb(A, None, W_shape=(p, 1)).left(M)  # f (r, 1), W (p, 1): tovec = M @ A
    size = r * p * 8
    with pytest.raises(md.OutputTooLargeError, match=rf"tovec: the output \({r}, {p}\) float64 \+ \(1, {r}, {p}\) float64"):
        J.tovec(max_bytes=2 * size)
    np.testing.assert_allclose(J.tovec(max_bytes=3 * size), M @ A, rtol=1e-15)
    out = np.empty((r, p))
    assert J.tovec(out=out) is out and np.allclose(out, M @ A, rtol=1e-15)
    tracemalloc.start()
    with pytest.raises(md.OutputTooLargeError, match=rf"tosparse: the output \(1, {r}, {p}\) float64 \+ .*\({r * p},\) int64"):
        J.tosparse(max_bytes=2 * size)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < size / 4  # refused before multiplying out
    np.testing.assert_allclose(J.tosparse(max_bytes=10 * size).toarray(), M @ A, rtol=1e-15)
    Js = md.jacobian_awb(sp.csr_array(A), None, W_shape=(p, 1)).left(sp.csr_array(M))  # sparse: entries bounded
    with pytest.raises(md.OutputTooLargeError, match=rf"tosparse: the output \({r * p},\) float64 \+ \({r * p},\) int64"):
        Js.tosparse(max_bytes=size)
    assert Js.tosparse().nnz == r * p and np.allclose(Js.toarray()[:, 0, :, 0], M @ A, rtol=1e-15)
    # the product rule's first term is such a product too, also with a structured dx/dW
    n, m = 5, 3
    W, y = rng.standard_normal((n, m)), rng.standard_normal(n)
    T = md.jacobian_wx(W.T @ y, n, W=W, dx_dW=md.jacobian_xw(y, m)).left(np.ones((1, n))).left(M)
    with pytest.raises(md.OutputTooLargeError, match=rf"tovec: the output \({r}, {n * m}\) float64 \+ \(1, {r}, {n}\) float64"):
        T.tovec(max_bytes=r * n * m * 8)
