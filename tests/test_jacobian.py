"""d(Wx)/dW and d(xW)/dW in every form, against independent numpy references.

References come from tests/conftest.py (np.eye + np.einsum, np.kron, element-wise
placement) and from finite differences (md.numerical_jacobian).  Structural forms
(toarray, tovec, tosparse) must match exactly; products use the per-dtype RTOL table.
"""
from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.sparse.linalg import LinearOperator, lsqr

import matderiv as md
from matderiv import _memory, _validation
from conftest import (
    CONVENTIONS,
    DTYPES,
    FORMATS,
    LAYOUTS,
    ORDERS,
    assert_close,
    random_array,
    ref_placed,
    ref_tensor,
    ref_vec,
    vec,
    wider,
)

SPARSE_CLASSES = {"csr": sp.csr_array, "csc": sp.csc_array, "coo": sp.coo_array}


def make_jac(x, n, convention):
    return md.jacobian_wx(x, n) if convention == "Wx" else md.jacobian_xw(x, n)


def W_shape(n, m, convention):
    return (n, m) if convention == "Wx" else (m, n)


def assert_canonical(A, fmt, nnz):
    """The sparse array is of the right class, canonical, with exactly `nnz` stored entries."""
    assert type(A) is SPARSE_CLASSES[fmt]
    assert not sp.isspmatrix(A)  # a sparse array, not the legacy matrix class
    assert A.nnz == nnz
    if fmt == "coo":
        row, col = A.coords
        assert row.dtype == col.dtype
        assert np.array_equal(np.lexsort((col, row)), np.arange(A.nnz))  # row-major order
        if A.nnz > 1:
            key = row.astype(np.int64) * A.shape[1] + col
            assert np.all(np.diff(key) > 0)  # strictly increasing: no duplicates
        assert A.has_canonical_format
    else:
        assert A.indices.dtype == A.indptr.dtype
        assert A.has_sorted_indices
        assert A.has_canonical_format
        B = A.copy()
        B.check_format(full_check=True)
        major = A.shape[0] if fmt == "csr" else A.shape[1]
        assert A.indptr.shape == (major + 1,)
        assert A.indptr[0] == 0 and A.indptr[-1] == A.nnz
        for r in range(major):  # strictly increasing minor indices within each major slice
            seg = A.indices[A.indptr[r] : A.indptr[r + 1]]
            assert np.all(np.diff(seg) > 0)


# ===================================================================================
# The formulas: toarray, tovec, tosparse against np.einsum / np.kron
# ===================================================================================
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_toarray_equals_einsum_reference(rng, dtype, convention, batched, layout):
    n, m, B = 4, 3, 5
    x = random_array(rng, (B, m) if batched else (m,), dtype)
    J = make_jac(x, n, convention)
    D = J.toarray(layout)
    expected = ref_tensor(x, n, convention, layout)
    assert D.dtype == np.dtype(dtype)
    assert D.shape == expected.shape
    assert D.flags.c_contiguous
    assert np.array_equal(D, expected)
    # the shapes spelled out
    lead = (B,) if batched else ()
    if convention == "Wx":
        want = (n, n, m) if layout == "numerator" else (n, m, n)
    else:
        want = (n, m, n) if layout == "numerator" else (m, n, n)
    assert D.shape == lead + want


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_denominator_is_numerator_with_W_axes_first(rng, dtype, convention):
    x = random_array(rng, (3, 4), dtype)
    J = make_jac(x, 2, convention)
    num = J.toarray("numerator")
    den = J.toarray(layout="denominator")
    assert np.array_equal(den, np.transpose(num, (0, 2, 3, 1)))
    assert np.array_equal(J.toarray(), num)  # numerator is the default


def test_wx_tensor_by_hand():
    x = np.array([1.0, 2.0, 3.0])
    D = md.jacobian_wx(x, 2).toarray()
    expected = np.zeros((2, 2, 3))
    expected[0, 0] = x
    expected[1, 1] = x
    assert np.array_equal(D, expected)
    T = md.jacobian_xw(x, 2).toarray()  # T[j, a, b] = x_a delta_jb
    expected = np.zeros((2, 3, 2))
    expected[0, :, 0] = x
    expected[1, :, 1] = x
    assert np.array_equal(T, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("order", ORDERS)
def test_tovec_equals_kron_reference(rng, dtype, convention, order):
    n, m = 3, 4
    x = random_array(rng, (m,), dtype)
    V = make_jac(x, n, convention).tovec(order)
    eye = np.eye(n, dtype=dtype)
    expected = {
        ("Wx", "F"): np.kron(x[None], eye),
        ("Wx", "C"): np.kron(eye, x[None]),
        ("xW", "F"): np.kron(eye, x[None]),
        ("xW", "C"): np.kron(x[None], eye),
    }[convention, order]
    assert V.shape == (n, n * m)
    assert V.dtype == np.dtype(dtype)
    assert np.array_equal(V, expected)
    assert np.array_equal(V, ref_vec(x, n, convention, order))


def test_tovec_default_order_is_F(rng):
    x = random_array(rng, (4,), np.float64)
    J = md.jacobian_wx(x, 3)
    assert np.array_equal(J.tovec(), J.tovec("F"))
    assert np.array_equal(J.tovec(), np.kron(x[None], np.eye(3)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("order", ORDERS)
def test_tovec_is_tensor_with_W_vectorized(rng, dtype, convention, order):
    """tovec(order)[i, k] is the tensor entry whose W index vectorizes to k."""
    n, m = 3, 5
    x = random_array(rng, (m,), dtype)
    J = make_jac(x, n, convention)
    assert np.array_equal(J.tovec(order), vec(ref_tensor(x, n, convention), order))


@pytest.mark.parametrize("dtype", DTYPES)
def test_batched_wx_F_is_X_kron_I(rng, dtype):
    """The Gauss-Newton Jacobian of f_b = W x_b, rows sample-major: X (x) I_n."""
    B, n, m = 4, 3, 5
    X = random_array(rng, (B, m), dtype)
    V = md.jacobian_wx(X, n).tovec("F")
    assert V.shape == (B * n, n * m)
    assert np.array_equal(V, np.kron(X, np.eye(n, dtype=dtype)))


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("order", ORDERS)
def test_batched_tovec_rows_are_per_sample_rows(rng, convention, order):
    B, n, m = 3, 4, 2
    X = random_array(rng, (B, m), np.float64)
    stacked = make_jac(X, n, convention).tovec(order)
    for b in range(B):
        single = make_jac(X[b], n, convention).tovec(order)
        for i in range(n):
            assert np.array_equal(stacked[b * n + i], single[i])
    assert np.array_equal(stacked, ref_vec(X, n, convention, order))


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_batched_toarray_is_stack_of_single(rng, convention, layout):
    B, n, m = 3, 2, 4
    X = random_array(rng, (B, m), np.complex128)
    D = make_jac(X, n, convention).toarray(layout)
    assert D.shape[0] == B
    for b in range(B):
        assert np.array_equal(D[b], make_jac(X[b], n, convention).toarray(layout))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("batched", [False, True])
def test_tosparse_equals_kron_and_is_canonical(rng, dtype, convention, order, fmt, batched):
    n, m, B = 4, 5, 3
    x = random_array(rng, (B, m) if batched else (m,), dtype)  # has exact zeros
    assert np.count_nonzero(x == 0) > 0
    J = make_jac(x, n, convention)
    A = J.tosparse(fmt, order)
    S = B if batched else 1
    assert A.shape == (S * n, n * m)
    assert A.dtype == J.dtype == np.dtype(dtype)
    assert_canonical(A, fmt, S * n * m)  # zeros of x are kept: pattern independent of values
    assert np.array_equal(A.toarray(), ref_vec(x, n, convention, order))
    idx = (A.coords[0], A.coords[1]) if fmt == "coo" else (A.indices, A.indptr)
    for a in idx:
        assert a.dtype == np.int32


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_tosparse_pattern_independent_of_values(rng, convention, order, fmt):
    n, m = 3, 4
    x = random_array(rng, (2, m), np.float64)
    z = np.zeros_like(x)
    A = make_jac(x, n, convention).tosparse(fmt, order)
    Z = make_jac(z, n, convention).tosparse(fmt, order)
    assert Z.nnz == A.nnz == 2 * n * m
    if fmt == "coo":
        assert np.array_equal(A.coords[0], Z.coords[0])
        assert np.array_equal(A.coords[1], Z.coords[1])
    else:
        assert np.array_equal(A.indices, Z.indices)
        assert np.array_equal(A.indptr, Z.indptr)
    assert np.all(Z.data == 0)


def test_tosparse_defaults_are_csr_F(rng):
    x = random_array(rng, (4,), np.float64)
    A = md.jacobian_wx(x, 3).tosparse()
    assert type(A) is sp.csr_array
    assert np.array_equal(A.toarray(), np.kron(x[None], np.eye(3)))


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_tosparse_int64_indices_when_int32_does_not_fit(rng, monkeypatch, convention, order, fmt):
    B, n, m = 3, 4, 5  # rows 12, cols 20, nnz 60
    x = random_array(rng, (B, m), np.float64)
    J = make_jac(x, n, convention)
    expected = ref_vec(x, n, convention, order)
    monkeypatch.setattr(_validation.core, "INT32_INDEX_MAX", 59)  # nnz 60 does not fit
    A = J.tosparse(fmt, order)
    idx = list(A.coords) if fmt == "coo" else [A.indices, A.indptr]
    for a in idx:
        assert a.dtype == np.int64
    assert_canonical(A, fmt, B * n * m)
    if fmt != "coo":  # indices AND indptr both int64, indptr ends at nnz (no wrap)
        assert A.indptr[-1] == B * n * m
    assert np.array_equal(A.toarray(), expected)
    monkeypatch.setattr(_validation.core, "INT32_INDEX_MAX", 60)  # boundary: fits exactly
    A = J.tosparse(fmt, order)
    for a in list(A.coords) if fmt == "coo" else [A.indices, A.indptr]:
        assert a.dtype == np.int32
    assert np.array_equal(A.toarray(), expected)


def test_tosparse_int64_for_dimension_larger_than_nnz(monkeypatch):
    """A column count over the int32 limit needs int64 even when nnz is small."""
    x = np.array([1.0, 0.0, 2.0])
    J = md.jacobian_wx(x, 2)  # (2, 6), nnz 6, csc indptr 7 entries with values up to 6
    monkeypatch.setattr(_validation.core, "INT32_INDEX_MAX", 5)
    A = J.tosparse("csc")
    assert A.indices.dtype == A.indptr.dtype == np.int64
    assert np.array_equal(A.toarray(), np.kron(x[None], np.eye(2)))


# ===================================================================================
# jvp / vjp
# ===================================================================================
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("batched", [False, True])
def test_jvp_is_dW_times_x(rng, dtype, convention, batched):
    n, m, B = 5, 7, 4
    x = random_array(rng, (B, m) if batched else (m,), dtype, zeros=False)
    dW = random_array(rng, W_shape(n, m, convention), dtype, zeros=False)
    J = make_jac(x, n, convention)
    y = J.jvp(dW)
    wx, wd = x.astype(wider(dtype)), dW.astype(wider(dtype))
    expected = wx @ wd.T if convention == "Wx" else wx @ wd  # dW @ x_b / x_b @ dW per row
    assert y.shape == ((B, n) if batched else (n,))
    assert y.dtype == np.dtype(dtype)
    assert_close(y, expected, dtype)
    # jvp is the Jacobian applied to dW: contraction with the reference tensor
    D = ref_tensor(wx, n, convention)
    assert_close(y, np.einsum("...iab,ab->...i", D, wd), dtype)
    # and tovec(order) @ vec(dW) in either order
    for order in ORDERS:
        lin = J.tovec(order).astype(wider(dtype)) @ vec(wd, order)
        assert_close(y.reshape(-1), lin, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_vjp_is_outer(rng, dtype, convention):
    n, m = 5, 6
    x = random_array(rng, (m,), dtype)
    v = random_array(rng, (n,), dtype)
    J = make_jac(x, n, convention)
    g = J.vjp(v)
    wx, wv = x.astype(wider(dtype)), v.astype(wider(dtype))
    expected = np.outer(wv, wx) if convention == "Wx" else np.outer(wx, wv)
    assert g.shape == W_shape(n, m, convention)
    assert g.dtype == np.dtype(dtype)
    assert_close(g, expected, dtype)
    # pull-back through the reference tensor: sum_i v_i D[i, :, :] (no conjugation)
    assert_close(g, np.einsum("i,iab->ab", wv, ref_tensor(wx, n, convention)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_vjp_batched_is_per_sample_outer(rng, dtype, convention):
    B, n, m = 4, 3, 5
    X = random_array(rng, (B, m), dtype)
    V = random_array(rng, (B, n), dtype)
    g = make_jac(X, n, convention).vjp(V)
    assert g.shape == (B,) + W_shape(n, m, convention)
    for b in range(B):
        xb, vb = X[b].astype(wider(dtype)), V[b].astype(wider(dtype))
        assert_close(g[b], np.outer(vb, xb) if convention == "Wx" else np.outer(xb, vb), dtype)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_jvp_vjp_promote_mixed_dtypes(rng, convention):
    x = random_array(rng, (3,), np.float32)
    J = make_jac(x, 2, convention)
    dW = random_array(rng, W_shape(2, 3, convention), np.float64)
    assert J.jvp(dW).dtype == np.float64
    assert J.jvp(dW.astype(np.complex64)).dtype == np.complex64
    assert J.vjp(np.ones(2)).dtype == np.float64
    assert J.vjp(np.ones(2, np.float32)).dtype == np.float32
    assert J.vjp(np.ones(2, np.complex128)).dtype == np.complex128
    assert J.vjp([1, 2]).dtype == np.float64  # int list -> float64
    assert_close(J.vjp(np.array([1.0, 2.0])), J.vjp(np.array([1, 2])), np.float64)


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("batched", [False, True])
def test_vjp_out_returns_same_object(rng, convention, batched):
    n, m, B = 3, 4, 2
    x = random_array(rng, (B, m) if batched else (m,), np.float64)
    v = random_array(rng, (B, n) if batched else (n,), np.float64)
    J = make_jac(x, n, convention)
    out = np.full(J.vjp(v).shape, np.nan)
    res = J.vjp(v, out=out)
    assert res is out
    assert np.array_equal(out, J.vjp(v))


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_toarray_out_returns_same_object(rng, convention, layout):
    x = random_array(rng, (2, 3), np.complex64)
    J = make_jac(x, 4, convention)
    out = np.full(J.toarray(layout).shape, 7, dtype=np.complex64)  # garbage is overwritten
    assert J.toarray(layout, out=out) is out
    assert np.array_equal(out, ref_tensor(x, 4, convention, layout))


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("order", ORDERS)
def test_tovec_out_returns_same_object(rng, convention, order):
    x = random_array(rng, (3, 2), np.float32)
    J = make_jac(x, 4, convention)
    out = np.full((12, 8), 7, dtype=np.float32)
    assert J.tovec(order, out=out) is out
    assert np.array_equal(out, ref_vec(x, 4, convention, order))


def test_out_skips_the_memory_guard(rng):
    """out= allocates nothing, so max_bytes does not apply to it."""
    x = random_array(rng, (3,), np.float64)
    J = md.jacobian_wx(x, 2)
    out = np.empty((2, 2, 3))
    assert J.toarray(out=out, max_bytes=0) is out
    out = np.empty((2, 6))
    assert J.tovec(out=out, max_bytes=0) is out
    out = np.empty((2, 3))
    assert J.vjp(np.ones(2), out=out, max_bytes=0) is out


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_thread_count_invariance(rng, convention):
    B, n, m = 7, 37, 23
    X = random_array(rng, (B, m), np.float64)
    V = random_array(rng, (B, n), np.float64)
    J = make_jac(X, n, convention)
    base_arr = {lay: J.toarray(lay, n_threads=1) for lay in LAYOUTS}
    base_vec = {o: J.tovec(o, n_threads=1) for o in ORDERS}
    base_sp = {(f, o): J.tosparse(f, o, n_threads=1) for f in FORMATS for o in ORDERS}
    base_vjp = J.vjp(V, n_threads=1)
    for nt in (2, 3, None, -1, np.int64(2)):
        for lay in LAYOUTS:
            assert np.array_equal(J.toarray(lay, n_threads=nt), base_arr[lay])
        for o in ORDERS:
            assert np.array_equal(J.tovec(o, n_threads=nt), base_vec[o])
        for (f, o), A0 in base_sp.items():
            A = J.tosparse(f, o, n_threads=nt)
            assert np.array_equal(A.data, A0.data)
            if f == "coo":
                assert all(np.array_equal(a, b) for a, b in zip(A.coords, A0.coords))
            else:
                assert np.array_equal(A.indices, A0.indices)
                assert np.array_equal(A.indptr, A0.indptr)
        assert np.array_equal(J.vjp(V, n_threads=nt), base_vjp)
    assert np.array_equal(base_arr["numerator"], ref_tensor(X, n, convention))


# ===================================================================================
# LinearOperator
# ===================================================================================
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("batched", [False, True])
def test_operator_matches_tovec(rng, dtype, convention, order, batched):
    n, m, B = 4, 3, 3
    x = random_array(rng, (B, m) if batched else (m,), dtype)
    J = make_jac(x, n, convention)
    A = J.aslinearoperator(order)
    M = ref_vec(x, n, convention, order).astype(wider(dtype))
    assert isinstance(A, LinearOperator)
    assert A.shape == M.shape
    assert A.dtype == np.dtype(dtype)
    u = random_array(rng, (M.shape[1],), dtype, zeros=False)
    w = random_array(rng, (M.shape[0],), dtype, zeros=False)
    U = random_array(rng, (M.shape[1], 3), dtype, zeros=False)
    Wm = random_array(rng, (M.shape[0], 2), dtype, zeros=False)
    assert_close(A.matvec(u), M @ u, dtype)
    assert_close(A @ u, M @ u, dtype)
    assert_close(A.matvec(u[:, None]), (M @ u)[:, None], dtype)
    assert_close(A.matmat(U), M @ U, dtype)
    assert_close(A.rmatvec(w), M.conj().T @ w, dtype)
    assert_close(A.rmatmat(Wm), M.conj().T @ Wm, dtype)
    # matvec on vec(dW) is the jvp
    dW = random_array(rng, W_shape(n, m, convention), dtype, zeros=False)
    assert_close(A.matvec(vec(dW, order)), J.jvp(dW).reshape(-1), dtype)
    # adjoint
    for H in (A.H, A.adjoint()):
        assert H.shape == M.shape[::-1]
        assert_close(H.matvec(w), M.conj().T @ w, dtype)
        assert_close(H.rmatvec(u), M @ u, dtype)
        assert_close(H.matmat(Wm), M.conj().T @ Wm, dtype)
        assert_close(H @ w, A.rmatvec(w), dtype)
    # plain transpose (no conjugation), through scipy's default
    assert A.T.shape == M.shape[::-1]
    assert_close(A.T.matvec(w), M.T @ w, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("order", ORDERS)
def test_operator_adjoint_dot_test(rng, dtype, convention, order):
    """<A u, w> == <u, A^H w> (vdot conjugates its first argument)."""
    B, n, m = 3, 5, 4
    X = random_array(rng, (B, m), dtype, zeros=False)
    A = make_jac(X, n, convention).aslinearoperator(order)
    u = random_array(rng, (n * m,), dtype, zeros=False)
    w = random_array(rng, (B * n,), dtype, zeros=False)
    lhs = np.vdot(A.matvec(u).astype(wider(dtype)), w.astype(wider(dtype)))
    rhs = np.vdot(u.astype(wider(dtype)), A.rmatvec(w).astype(wider(dtype)))
    assert_close(lhs, rhs, dtype)


def test_operator_promotes_operand_dtype(rng):
    x = random_array(rng, (3,), np.float32)
    A = md.jacobian_wx(x, 2).aslinearoperator()
    assert A.matvec(np.ones(6)).dtype == np.float64
    assert A.matvec(np.ones(6, np.float32)).dtype == np.float32
    assert A.matvec(np.ones(6, np.complex64)).dtype == np.complex64
    assert A.matvec([1, 1, 1, 1, 1, 1]).dtype == np.float64
    assert_close(A.matvec(np.ones(6)), np.kron(x[None], np.eye(2)).astype(np.float64) @ np.ones(6), np.float32)


def test_operator_gauss_newton_least_squares(rng):
    """Recover W from f_b = W @ x_b with lsqr on the stacked Jacobian X (x) I_n."""
    B, n, m = 12, 3, 4
    X = rng.standard_normal((B, m))
    W_true = rng.standard_normal((n, m))
    F = X @ W_true.T  # (B, n), row b = W x_b
    A = md.jacobian_wx(X, n).aslinearoperator("F")
    sol = lsqr(A, F.reshape(-1), atol=1e-14, btol=1e-14, iter_lim=500)[0]
    np.testing.assert_allclose(sol.reshape(m, n).T, W_true, rtol=1e-8, atol=1e-8)


def sparse_operand(rng, shape, fmt, matrix):
    """A scipy sparse operand in format fmt (a sparse matrix with matrix=True, else a sparse
    array; 1-D only as a coo_array) and its dense value."""
    S = sp.random_array(shape, density=0.5, format="coo", rng=rng)
    if matrix:
        return sp.coo_matrix(S).asformat(fmt), S.toarray()
    return S.asformat(fmt), S.toarray()


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "bsr", "dia", "dok", "lil"])
@pytest.mark.parametrize("matrix", [False, True])
def test_operator_takes_sparse_operands(rng, fmt, matrix):
    """As scipy's own operators: a sparse operand of any format gives the ndarray its dense
    value gives, in matvec, rmatvec, matmat, rmatmat and @, of the operator, its adjoint
    and its transpose."""
    X = rng.standard_normal((2, 3))
    op = md.jacobian_wx(X, 4).aslinearoperator("F")
    M = ref_vec(X, 4, "Wx", "F")  # (8, 12)
    for shape, product, dense in (
        ((12, 3), op.matmat, M), ((8, 2), op.rmatmat, M.T), ((12, 1), op.matvec, M),
        ((8, 1), op.rmatvec, M.T), ((12, 3), op.dot, M), ((12, 1), op.dot, M),
        ((8, 2), op.H.matmat, M.T), ((8, 1), op.T.dot, M.T), ((12, 2), op.T.rmatmat, M),
    ):
        S, value = sparse_operand(rng, shape, fmt, matrix)
        got = product(S)
        assert type(got) is np.ndarray and got.shape == (dense.shape[0], shape[1])
        np.testing.assert_allclose(got, dense @ value, rtol=1e-13, atol=1e-15)
    if fmt == "coo" and not matrix:  # a 1-D sparse vector
        S, value = sparse_operand(rng, (12,), fmt, matrix)
        np.testing.assert_allclose(op @ S, M @ value, rtol=1e-13, atol=1e-15)


def test_operator_sparse_operand_errors(monkeypatch):
    op = md.jacobian_wx(np.ones((2, 3)), 4).aslinearoperator()  # (8, 12)
    with pytest.raises(ValueError, match=r"matmat: expected a vector of length 12 or a matrix with 12 rows for an operator of shape \(8, 12\), got shape \(8, 2\)"):
        op.matmat(sp.csr_array(np.ones((8, 2))))
    with pytest.raises(TypeError, match=r"x: unsupported dtype"):
        op.matvec(sp.csr_array(np.ones((12, 1), dtype=np.longdouble)))
    monkeypatch.setenv("MATDERIV_MAX_BYTES", str(12 * 3 * 8 - 1))  # densified: counted first
    with pytest.raises(md.OutputTooLargeError, match=r"matmat: the output \(12, 3\) float64 needs"):
        op.matmat(sp.csr_array(np.ones((12, 3))))
    with pytest.raises(md.OutputTooLargeError, match=r"rmatmat: the output \(8, 5\) float64 needs"):
        op.rmatmat(sp.coo_array(np.ones((8, 5))))


def test_operator_refuses_masked_operands():
    """Every product refuses a masked operand (the mask would be ignored), as every other
    function of matderiv does: the public methods, @ on either side, the adjoint, the
    transpose and an hstack of operators."""
    J = md.jacobian_wx(np.ones((2, 3)), 4)
    op = J.aslinearoperator()  # (8, 12)
    stack = md.hstack_operators([J, np.ones((8, 1))])
    u = np.ma.masked_array(np.ones(12), mask=np.arange(12) == 3)
    w = np.ma.masked_array(np.ones(8), mask=np.arange(8) == 3)
    calls = [
        lambda: op.matvec(u), lambda: op.matmat(u[:, None]), lambda: op.rmatvec(w),
        lambda: op.rmatmat(w[:, None]), lambda: op @ u, lambda: w @ op, lambda: op.H.matvec(w),
        lambda: op.T.matvec(w), lambda: stack.matvec(np.ma.masked_array(np.ones(13))), lambda: stack.rmatvec(w),
    ]
    for call in calls:
        with pytest.raises(TypeError, match=r"x: masked arrays are not supported \(the mask would be ignored\)"):
            call()


# ===================================================================================
# The dependent case: x = x(W), total derivative by the product rule
# ===================================================================================
def tanh_case(rng, n, m, dtype=np.float64):
    """x(W) = tanh(W.T @ y) with W (n, m), y (n,); dx_j/dW_ab = (1 - x_j^2) y_a delta_jb."""
    W = random_array(rng, (n, m), dtype, zeros=False) * 0.5
    y = random_array(rng, (n,), dtype, zeros=False)

    def x_of(Wm):
        return np.tanh(Wm.T @ y)

    def f(Wm):
        return Wm @ x_of(Wm)

    x = x_of(W).astype(dtype)
    Jx = np.einsum("j,a,jb->jab", 1 - x.astype(wider(dtype)) ** 2, y, np.eye(m)).astype(dtype)
    return W, y, x, Jx, f


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("n,m", [(3, 4), (4, 2), (1, 1)])
def test_dependent_tanh_all_forms_vs_finite_differences(rng, dtype, n, m):
    W, y, x, Jx, f = tanh_case(rng, n, m, dtype)
    J = md.jacobian_wx(x, n, W=W, dx_dW=Jx)
    assert isinstance(J, md.TotalJacobian)
    assert J.shape == (n, n, m) and J.W_shape == (n, m) and J.batch_size is None
    assert J.dtype == np.dtype(dtype)
    N = md.numerical_jacobian(f, W)
    assert N.shape == (n, n, m)
    tol = dict(rtol=1e-7, atol=1e-8)
    D = J.toarray()
    np.testing.assert_allclose(D, N, **tol)
    np.testing.assert_allclose(J.toarray("denominator"), np.moveaxis(N, 0, -1), **tol)
    for order in ORDERS:
        Nv = vec(N, order)
        np.testing.assert_allclose(J.tovec(order), Nv, **tol)
        for fmt in FORMATS:
            A = J.tosparse(fmt, order)
            assert_canonical(A, fmt, n * n * m)  # W @ dx/dW is dense: every entry stored
            assert A.dtype == J.dtype
            np.testing.assert_allclose(A.toarray(), Nv, **tol)
        op = J.aslinearoperator(order)
        u = random_array(rng, (n * m,), dtype, zeros=False)
        w = random_array(rng, (n,), dtype, zeros=False)
        np.testing.assert_allclose(op.matvec(u), Nv @ u, **tol)
        np.testing.assert_allclose(op.rmatvec(w), Nv.conj().T @ w, **tol)
        np.testing.assert_allclose(op.H.matvec(w), Nv.conj().T @ w, **tol)
        np.testing.assert_allclose(
            np.vdot(op.matvec(u), w), np.vdot(u, op.rmatvec(w)), rtol=1e-12
        )
    dW = random_array(rng, (n, m), dtype, zeros=False)
    v = random_array(rng, (n,), dtype, zeros=False)
    np.testing.assert_allclose(J.jvp(dW), np.einsum("iab,ab->i", N, dW), **tol)
    np.testing.assert_allclose(J.vjp(v), np.einsum("i,iab->ab", v, N), **tol)
    # the checker agrees (Jacobian object and its dense tensor)
    assert md.check_jacobian(f, W, J).ok
    assert md.check_jacobian(f, W, D).ok


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_dependent_naive_jacobian_fails_the_check(rng, dtype):
    n, m = 3, 4
    W, y, x, Jx, f = tanh_case(rng, n, m, dtype)
    naive = md.jacobian_wx(x, n)  # ignores the product rule
    with pytest.raises(md.JacobianMismatch, match=r"worst at index \(\d+, \d+, \d+\)"):
        md.check_jacobian(f, W, naive)
    assert md.check_jacobian(f, W, md.jacobian_wx(x, n, W=W, dx_dW=Jx)).ok


@pytest.mark.parametrize("dtype", DTYPES)
def test_dependent_linear_with_jacobian_object(rng, dtype):
    """x = W.T @ y = y @ W: dx/dW is jacobian_xw(y, m); D[i,a,b] = delta_ia x_b + W_ib y_a."""
    n, m = 3, 5
    W = random_array(rng, (n, m), dtype, zeros=False)
    y = random_array(rng, (n,), dtype, zeros=False)
    x = (W.astype(wider(dtype)).T @ y.astype(wider(dtype))).astype(dtype)
    Jx_obj = md.jacobian_xw(y, m)
    assert Jx_obj.shape == (m, n, m)
    J = md.jacobian_wx(x, n, W=W, dx_dW=Jx_obj)
    Jarr = md.jacobian_wx(x, n, W=W, dx_dW=Jx_obj.toarray())
    wW, wy, wx = (a.astype(wider(dtype)) for a in (W, y, x))
    expected = np.einsum("ia,b->iab", np.eye(n), wx) + np.einsum("ib,a->iab", wW, wy)
    u = random_array(rng, (n * m,), dtype, zeros=False)
    w = random_array(rng, (n,), dtype, zeros=False)
    dW = random_array(rng, (n, m), dtype, zeros=False)
    v = random_array(rng, (n,), dtype, zeros=False)
    for K in (J, Jarr):
        assert K.dtype == np.dtype(dtype)
        assert_close(K.toarray(), expected, dtype)
        assert_close(K.toarray("denominator"), np.moveaxis(expected, 0, -1), dtype)
        for order in ORDERS:
            Ev = vec(expected, order)
            assert_close(K.tovec(order), Ev, dtype)
            for fmt in FORMATS:
                assert_close(K.tosparse(fmt, order).toarray(), Ev, dtype)
            op = K.aslinearoperator(order)
            assert_close(op.matvec(u), Ev @ u, dtype)
            assert_close(op.matmat(np.stack([u, 2 * u], 1)), Ev @ np.stack([u, 2 * u], 1), dtype)
            assert_close(op.rmatvec(w), Ev.conj().T @ w, dtype)
            assert_close(op.adjoint().matvec(w), Ev.conj().T @ w, dtype)
        assert_close(K.jvp(dW), np.einsum("iab,ab->i", expected, dW), dtype)
        assert_close(K.vjp(v), np.einsum("i,iab->ab", v, expected), dtype)
    if dtype in (np.float64, np.complex128):
        f = lambda Wm: Wm @ (Wm.T @ y)  # noqa: E731
        assert md.check_jacobian(f, W, J).ok
        with pytest.raises(md.JacobianMismatch):
            md.check_jacobian(f, W, md.jacobian_wx(x, n))


def test_dependent_float32_checks_with_single_precision_tolerances(rng):
    n, m = 3, 4
    W, y, x, Jx, f = tanh_case(rng, n, m, np.float32)
    J = md.jacobian_wx(x, n, W=W, dx_dW=Jx)
    assert J.dtype == np.float32
    res = md.check_jacobian(f, W, J)
    assert res.ok and res.rtol == pytest.approx(1e-3)


def test_dependent_mixed_float32_float64_becomes_float64(rng):
    n, m = 3, 4
    W, y, x, Jx, f = tanh_case(rng, n, m, np.float64)
    for xx, WW, JJ in [
        (x.astype(np.float32), W, Jx),
        (x, W.astype(np.float32), Jx),
        (x, W, Jx.astype(np.float32)),
        (x.astype(np.float32), W.astype(np.float32), Jx),
    ]:
        J = md.jacobian_wx(xx, n, W=WW, dx_dW=JJ)
        assert J.dtype == np.float64
        assert J.toarray().dtype == np.float64
        assert J.tovec().dtype == np.float64
        assert J.tosparse().dtype == np.float64
    J = md.jacobian_wx(x.astype(np.float32), n, W=W.astype(np.float32), dx_dW=Jx.astype(np.float32))
    assert J.dtype == np.float32
    # float32 Jacobian object as dx_dW with float64 W
    Jobj = md.jacobian_xw(np.ones(n, np.float32), m)
    assert md.jacobian_wx(x, n, W=W, dx_dW=Jobj).dtype == np.float64
    assert md.jacobian_wx(x.astype(np.float32), n, W=W.astype(np.float32), dx_dW=Jobj).dtype == np.float32
    # int / bool inputs become float64
    Jint = md.jacobian_wx(np.ones(m, int), n, W=np.ones((n, m), bool), dx_dW=np.zeros((m, n, m), np.int8))
    assert Jint.dtype == np.float64


@pytest.mark.parametrize("layout", LAYOUTS)
def test_dependent_out_and_memory_guard(rng, layout):
    n, m = 3, 2
    W, y, x, Jx, f = tanh_case(rng, n, m)
    J = md.jacobian_wx(x, n, W=W, dx_dW=Jx)
    expected = J.toarray(layout)
    out = np.full(expected.shape, np.nan)
    assert J.toarray(layout, out=out) is out
    assert np.array_equal(out, expected)
    out = np.full((n, n * m), np.nan)
    assert J.tovec("C", out=out) is out
    assert np.array_equal(out, J.tovec("C"))
    out = np.full((n, m), np.nan)
    v = np.arange(n, dtype=float)
    assert J.vjp(v, out=out) is out
    np.testing.assert_allclose(out, J.vjp(v), rtol=1e-15)
    # v is read while out is written: they must not overlap
    vbuf = np.zeros(n * m)
    vbuf[:n] = v
    with pytest.raises(ValueError, match="out: must not overlap an input"):
        J.vjp(vbuf[:n], out=vbuf.reshape(n, m))
    # W and dx_dW are copied at construction: writing out= over the caller's arrays
    # cannot change the Jacobian
    buf = np.zeros(n * n * m)
    Wv = buf[: n * m].reshape(n, m)
    Wv[...] = W
    Jv = md.jacobian_wx(x, n, W=Wv, dx_dW=Jx)
    out = buf.reshape(n, n, m)
    assert Jv.toarray("numerator", out=out) is out
    assert np.array_equal(out, J.toarray("numerator"))  # the caller's W was overwritten, not Jv's
    assert np.array_equal(Jv.toarray("numerator"), J.toarray("numerator"))
    for call in (lambda: J.toarray(layout, max_bytes=8), lambda: J.tovec(max_bytes=8),
                 lambda: J.tosparse("coo", max_bytes=8), lambda: J.vjp(v, max_bytes=8)):
        with pytest.raises(md.OutputTooLargeError, match="GiB"):
            call()


@pytest.mark.parametrize("n,m", [(0, 3), (3, 0), (0, 0)])
@pytest.mark.parametrize("as_object", [False, True])
def test_dependent_empty(n, m, as_object):
    dx = md.jacobian_xw(np.ones(n), m) if as_object else np.ones((m, n, m))
    J = md.jacobian_wx(np.ones(m), n, W=np.ones((n, m)), dx_dW=dx)
    assert J.toarray().shape == (n, n, m)
    assert J.toarray("denominator").shape == (n, m, n)
    for order in ORDERS:
        assert J.tovec(order).shape == (n, n * m)
        for fmt in FORMATS:
            A = J.tosparse(fmt, order)
            assert A.shape == (n, n * m) and A.nnz == 0
        op = J.aslinearoperator(order)
        assert op.matvec(np.ones(n * m)).shape == (n,)
        assert op.rmatvec(np.ones(n)).shape == (n * m,)
    assert J.jvp(np.ones((n, m))).shape == (n,)
    assert J.vjp(np.ones(n)).shape == (n, m)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_dependent_nested_total_jacobian(rng, dtype):
    """f = W @ x2, x2 = W @ x1, x1 = W @ z (W square): dx2/dW is itself a TotalJacobian."""
    m = 3
    W = random_array(rng, (m, m), dtype, zeros=False)
    z = random_array(rng, (m,), dtype, zeros=False)
    x1 = W @ z
    x2 = W @ x1
    J2 = md.jacobian_wx(x1, m, W=W, dx_dW=md.jacobian_wx(z, m))  # d(W W z)/dW
    J3 = md.jacobian_wx(x2, m, W=W, dx_dW=J2)  # d(W W W z)/dW
    f = lambda Wm: Wm @ (Wm @ (Wm @ z))  # noqa: E731
    N = md.numerical_jacobian(f, W)
    np.testing.assert_allclose(J3.toarray(), N, rtol=1e-7, atol=1e-8)
    assert md.check_jacobian(f, W, J3).ok
    for order in ORDERS:
        Nv = vec(N, order)
        op = J3.aslinearoperator(order)
        u = random_array(rng, (m * m,), dtype, zeros=False)
        np.testing.assert_allclose(op.matvec(u), Nv @ u, rtol=1e-7, atol=1e-8)
        np.testing.assert_allclose(op.rmatvec(u[:m]), Nv.conj().T @ u[:m], rtol=1e-7, atol=1e-8)
        np.testing.assert_allclose(J3.tosparse("csc", order).toarray(), Nv, rtol=1e-7, atol=1e-8)
    dW = random_array(rng, (m, m), dtype, zeros=False)
    np.testing.assert_allclose(J3.jvp(dW), np.einsum("iab,ab->i", N, dW), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(J3.vjp(z), np.einsum("i,iab->ab", z, N), rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("fmt", FORMATS)
def test_dependent_tosparse_int64_indices(rng, monkeypatch, fmt):
    n, m = 3, 4
    W, y, x, Jx, f = tanh_case(rng, n, m)
    J = md.jacobian_wx(x, n, W=W, dx_dW=Jx)
    expected = J.tovec("C")
    A = J.tosparse(fmt, "C")
    assert all(a.dtype == np.int32 for a in (A.coords if fmt == "coo" else (A.indices, A.indptr)))
    monkeypatch.setattr(_validation.core, "INT32_INDEX_MAX", n * n * m - 1)
    A = J.tosparse(fmt, "C")
    assert all(a.dtype == np.int64 for a in (A.coords if fmt == "coo" else (A.indices, A.indptr)))
    assert_canonical(A, fmt, n * n * m)
    assert np.array_equal(A.toarray(), expected)


def test_dependent_thread_count_invariance(rng):
    W, y, x, Jx, f = tanh_case(rng, 5, 4)
    J = md.jacobian_wx(x, 5, W=W, dx_dW=Jx)
    for nt in (1, 2, None, -1):
        assert np.array_equal(J.toarray(n_threads=nt), J.toarray(n_threads=1))
        assert np.array_equal(J.tovec("F", n_threads=nt), J.tovec("F", n_threads=1))
        assert np.array_equal(J.tosparse("csc", n_threads=nt).toarray(), J.tovec("F"))
        assert np.array_equal(J.vjp(np.ones(5), n_threads=nt), J.vjp(np.ones(5), n_threads=1))


# ===================================================================================
# Attributes, repr, laziness
# ===================================================================================
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_attributes(rng, convention):
    x = random_array(rng, (4,), np.float32)
    J = make_jac(x, 3, convention)
    assert isinstance(J, md.StructuredJacobian) and isinstance(J, md.Jacobian)
    assert J.shape == ((3, 3, 4) if convention == "Wx" else (3, 4, 3))
    assert J.ndim == 3
    assert J.dtype == np.float32
    assert J.W_shape == ((3, 4) if convention == "Wx" else (4, 3))
    assert J.batch_size is None
    assert J.n == 3 and J.m == 4 and J.convention == convention
    assert np.array_equal(J.x, x) and J.x.shape == (4,)
    assert not J.x.flags.writeable
    X = random_array(rng, (2, 4), np.complex128)
    JB = make_jac(X, 3, convention)
    assert JB.batch_size == 2
    assert JB.shape == (2,) + J.shape and JB.ndim == 4
    assert np.array_equal(JB.x, X)
    assert JB.dtype == np.complex128


def test_x_is_read_only_but_user_array_is_not(rng):
    x = random_array(rng, (4,), np.float64)
    J = md.jacobian_wx(x, 2)
    with pytest.raises(ValueError):
        J.x[0] = 1.0
    x[0] = 5.0  # the caller's array stays writeable
    assert x.flags.writeable


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_repr_is_readable(rng, convention):
    J = make_jac(random_array(rng, (4,), np.float32), 3, convention)
    r = repr(J)
    assert str(J.shape) in r and "float32" in r and "lazy" in r
    assert ("W @ x" if convention == "Wx" else "x @ W") in r
    rb = repr(make_jac(np.ones((5, 4)), 3, convention))
    assert "batch of 5" in rb and "float64" in rb and str((5,) + J.shape) in rb
    W, dx = np.ones((3, 4)), np.zeros((4, 3, 4))
    rt = repr(md.jacobian_wx(np.ones(4), 3, W=W, dx_dW=dx))
    assert "TotalJacobian" in rt and "(3, 3, 4)" in rt and "float64" in rt and "ndarray" in rt
    rt = repr(md.jacobian_wx(np.ones(4), 3, W=W, dx_dW=md.jacobian_xw(np.ones(3), 4)))
    assert "StructuredJacobian" in rt


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_huge_n_is_lazy_and_guarded(convention):
    n = 10**12
    x = np.array([1.0, 2.0, 3.0])
    tracemalloc.start()
    try:
        J = make_jac(x, n, convention)
        op = J.aslinearoperator()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000
    assert J.shape == ((n, n, 3) if convention == "Wx" else (n, 3, n))
    assert op.shape == (n, 3 * n)
    shape_txt = str(J.shape)
    with pytest.raises(md.OutputTooLargeError, match=rf"toarray: the output {re.escape(shape_txt)} float64 needs .* GiB"):
        J.toarray()
    with pytest.raises(md.OutputTooLargeError, match=r"tovec: .*float64 needs .* GiB"):
        J.tovec("C")
    for fmt in FORMATS:
        with pytest.raises(md.OutputTooLargeError, match=r"tosparse: .*int64.*GiB"):
            J.tosparse(fmt)
    assert issubclass(md.OutputTooLargeError, MemoryError)


# ===================================================================================
# Empty dimensions and non-finite values
# ===================================================================================
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("shape,n", [((3,), 0), ((0,), 2), ((0,), 0), ((0, 3), 2), ((2, 0), 3), ((2, 3), 0), ((0, 0), 0)])
def test_empty_dimensions(convention, shape, n):
    x = np.ones(shape, np.float32)
    J = make_jac(x, n, convention)
    S = shape[0] if len(shape) == 2 else 1
    m = shape[-1]
    lead = shape[:-1]
    for layout in LAYOUTS:
        D = J.toarray(layout)
        assert D.shape == ref_tensor(x, n, convention, layout).shape
        assert D.dtype == np.float32
    for order in ORDERS:
        assert J.tovec(order).shape == (S * n, n * m)
        for fmt in FORMATS:
            A = J.tosparse(fmt, order)
            assert A.shape == (S * n, n * m)
            assert A.nnz == S * n * m
            assert np.array_equal(A.toarray(), ref_vec(x, n, convention, order))
        op = J.aslinearoperator(order)
        assert op.shape == (S * n, n * m)
        assert op.matvec(np.ones(n * m)).shape == (S * n,)
        assert op.rmatvec(np.ones(S * n)).shape == (n * m,)
        assert op.matmat(np.ones((n * m, 2))).shape == (S * n, 2)
        assert op.rmatmat(np.ones((S * n, 2))).shape == (n * m, 2)
    assert J.jvp(np.ones(W_shape(n, m, convention))).shape == lead + (n,)
    g = J.vjp(np.ones(lead + (n,)))
    assert g.shape == lead + W_shape(n, m, convention)
    assert np.all(g == 1)


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_land_exactly_where_x_lands(convention, dtype):
    x = np.array([[1.0, np.nan, 0.0, np.inf], [-np.inf, 2.0, np.nan, 3.0]], dtype=dtype)
    n = 3
    J = make_jac(x, n, convention)
    for layout in LAYOUTS:
        assert np.array_equal(J.toarray(layout), ref_placed(x, n, convention, layout), equal_nan=True)
    finite = np.where(np.isfinite(x), x, 5).astype(dtype)
    Jf = make_jac(finite, n, convention)
    for order in ORDERS:
        V = J.tovec(order)
        expected = vec(ref_placed(x, n, convention), order).reshape(V.shape)
        assert np.array_equal(V, expected, equal_nan=True)
        for fmt in FORMATS:
            A = J.tosparse(fmt, order)
            Af = Jf.tosparse(fmt, order)
            assert A.nnz == Af.nnz == x.size * n
            if fmt == "coo":
                assert all(np.array_equal(a, b) for a, b in zip(A.coords, Af.coords))
            else:
                assert np.array_equal(A.indices, Af.indices) and np.array_equal(A.indptr, Af.indptr)
            assert np.array_equal(A.toarray(), V, equal_nan=True)
    # vjp: outer products put inf/nan in x's columns (rows, for xW), as numpy's arithmetic
    # does (complex: (1+0j) * (inf+0j) is inf+nanj in numpy as in C)
    ones = np.ones(n, dtype)
    g = J.vjp(np.ones((2, n), dtype))
    for b in range(2):
        with np.errstate(invalid="ignore"):
            expected = np.outer(ones, x[b]) if convention == "Wx" else np.outer(x[b], ones)
        assert np.array_equal(g[b], expected, equal_nan=True)
        nonfinite = ~np.isfinite(expected)
        assert np.array_equal(nonfinite, np.broadcast_to(~np.isfinite(x[b]), (n, 4)) if convention == "Wx"
                              else np.broadcast_to(~np.isfinite(x[b])[:, None], (4, n)))
    # jvp: arithmetic says NaN/inf
    with np.errstate(invalid="ignore"):
        y = J.jvp(np.ones(W_shape(n, 4, convention), dtype))
    assert np.all(np.isnan(y))


# ===================================================================================
# Property tests
# ===================================================================================
def _x_strategy():
    @st.composite
    def build(draw):
        dtype = draw(st.sampled_from(DTYPES))
        batched = draw(st.booleans())
        m = draw(st.integers(0, 5))
        shape = (draw(st.integers(0, 4)), m) if batched else (m,)
        if np.issubdtype(dtype, np.complexfloating):
            elements = st.complex_numbers(max_magnitude=1e3, allow_nan=False, allow_infinity=False,
                                          width=64 if dtype == np.complex64 else 128)
        else:
            elements = st.floats(-1e3, 1e3, width=32 if dtype == np.float32 else 64)
        return draw(hnp.arrays(dtype, shape, elements=elements))

    return build()


@settings(max_examples=60, deadline=None)
@given(x=_x_strategy(), n=st.integers(0, 5), convention=st.sampled_from(CONVENTIONS),
       order=st.sampled_from(ORDERS), fmt=st.sampled_from(FORMATS))
def test_property_sparse_equals_dense(x, n, convention, order, fmt):
    J = make_jac(x, n, convention)
    V = J.tovec(order)
    A = J.tosparse(fmt, order)
    assert A.nnz == x.size * n
    assert A.dtype == V.dtype == x.dtype
    assert np.array_equal(A.toarray(), V)
    assert np.array_equal(V, ref_vec(x, n, convention, order))


@settings(max_examples=60, deadline=None)
@given(x=_x_strategy(), n=st.integers(0, 5), convention=st.sampled_from(CONVENTIONS),
       layout=st.sampled_from(LAYOUTS))
def test_property_toarray_equals_einsum(x, n, convention, layout):
    J = make_jac(x, n, convention)
    D = J.toarray(layout)
    assert D.dtype == x.dtype
    assert np.array_equal(D, ref_tensor(x, n, convention, layout))


@settings(max_examples=40, deadline=None)
@given(x=_x_strategy(), n=st.integers(0, 5), convention=st.sampled_from(CONVENTIONS),
       order=st.sampled_from(ORDERS), seed=st.integers(0, 2**32 - 1))
def test_property_products_consistent_with_tovec(x, n, convention, order, seed):
    rng = np.random.default_rng(seed)
    J = make_jac(x, n, convention)
    M = J.tovec(order).astype(wider(x.dtype))
    u = random_array(rng, (M.shape[1],), x.dtype, zeros=False)
    w = random_array(rng, (M.shape[0],), x.dtype, zeros=False)
    op = J.aslinearoperator(order)
    assert_close(op.matvec(u), M @ u, x.dtype)
    assert_close(op.rmatvec(w), M.conj().T @ w, x.dtype)
    dW = random_array(rng, J.W_shape, x.dtype, zeros=False)
    assert_close(J.jvp(dW).reshape(-1), M @ vec(dW.astype(M.dtype), order), x.dtype)
    g = J.vjp(w.reshape(J.x.shape[:-1] + (n,)))
    back = (w.astype(M.dtype) @ M)  # sum over rows of w_r * M[r, :] (no conjugation)
    S = x.shape[0] if x.ndim == 2 else 1
    # per-sample vjp summed over samples, vectorized in `order`, is w @ tovec
    assert_close(vec(g.reshape((S,) + J.W_shape).sum(axis=0), order), back, x.dtype)



@pytest.mark.parametrize("make", [md.jacobian_wx, md.jacobian_xw])
def test_jacobian_is_taken_at_a_point_later_changes_to_x_do_not_leak(make):
    x = np.array([1.0, 2.0, 3.0])
    J = make(x, 2)
    before = J.toarray()
    x[:] = -7.0
    assert np.array_equal(J.toarray(), before)
    W = np.ones((2, 3))
    dx = np.zeros((3, 2, 3))
    T = md.jacobian_wx(np.ones(3), 2, W=W, dx_dW=dx)
    before = T.toarray()
    W[:] = 5.0
    dx[:] = 1.0
    assert np.array_equal(T.toarray(), before)


@pytest.mark.parametrize("threshold", [0, 2**62])
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_fresh_zeroed_outputs_and_kernel_zeroing_agree(monkeypatch, rng, convention, threshold):
    """Large fresh outputs come from np.zeros and skip the kernel's zeroing; both paths
    give the reference (threshold 0 forces the first, a huge one the second)."""
    monkeypatch.setattr(_memory, "FRESH_ZEROS_BYTES", threshold)
    X = random_array(rng, (2, 4), np.float64)
    J = make_jac(X, 3, convention)
    for layout in LAYOUTS:
        assert np.array_equal(J.toarray(layout), np.stack([ref_tensor(x, 3, convention, layout) for x in X]))
    for order in ORDERS:
        assert np.array_equal(J.tovec(order), np.concatenate([ref_vec(x, 3, convention, order) for x in X]))


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_operator_adjoint_of_adjoint_is_the_operator(rng, dtype):
    J = md.jacobian_wx(random_array(rng, (2, 3), dtype), 4)
    A = J.aslinearoperator("C")
    u = random_array(rng, (12,), dtype)
    w = random_array(rng, (8,), dtype)
    assert A.H.H.shape == A.shape
    np.testing.assert_allclose(A.H.H @ u, A @ u, rtol=1e-13)
    np.testing.assert_allclose(A.H @ w, J.tovec("C").conj().T @ w, rtol=1e-13)
    M = ref_vec(J.x, 4, "Wx", "C")  # transposes and adjoints of each other: A.T.H = A.H.T = conj(A)
    np.testing.assert_allclose(A.T.T @ u, M @ u, rtol=1e-13)
    np.testing.assert_allclose(A.T @ w, M.T @ w, rtol=1e-13)
    for conj_A in (A.T.H, A.H.T):
        assert conj_A.shape == A.shape
        np.testing.assert_allclose(conj_A @ u, M.conj() @ u, rtol=1e-13)
        np.testing.assert_allclose(conj_A.H @ w, M.T @ w, rtol=1e-13)


@pytest.mark.parametrize("order", ORDERS)
def test_dependent_with_a_structured_dx_never_builds_dx(rng, order):
    """x = W.T @ y with dx_dW = jacobian_xw(y, m): W @ dx/dW is written by broadcasting,
    so an output far smaller than dx/dW fits a budget of twice its size."""
    n, m = 2, 3000
    W = rng.standard_normal((n, m))
    y = rng.standard_normal(n)
    T = md.jacobian_wx(W.T @ y, n, W=W, dx_dW=md.jacobian_xw(y, m))
    dense = md.jacobian_wx(W.T @ y, n, W=W, dx_dW=md.jacobian_xw(y, m).toarray())
    budget = 2 * n * n * m * 8  # dx/dW alone would be m * n * m * 8 = 144 MB
    expected = {layout: dense.toarray(layout) for layout in LAYOUTS}
    expected_vec = dense.tovec(order)
    tracemalloc.start()
    got = {layout: T.toarray(layout, max_bytes=budget) for layout in LAYOUTS}
    got_vec = T.tovec(order, max_bytes=budget)
    got_csc = T.tosparse("csc", order)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    for layout in LAYOUTS:
        np.testing.assert_allclose(got[layout], expected[layout], rtol=1e-14)
    np.testing.assert_allclose(got_vec, expected_vec, rtol=1e-14)
    np.testing.assert_allclose(got_csc.toarray(), expected_vec, rtol=1e-14)
    assert peak < 20 * n * n * m * 8
