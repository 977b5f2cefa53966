"""jacobian_awb (f = A @ W @ B) in every form against np.kron / np.einsum references, for
dense, sparse and identity factors; the errors of its arguments."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import matderiv as md
from matderiv import _validation
from conftest import DTYPES, FORMATS, LAYOUTS, ORDERS, assert_close, random_array, vec, wider

KINDS = ["dense", "csr", "csc", "coo", "csr_matrix", "coo_matrix", "none"]


def make_factor(rng, shape, kind, dtype):
    """(argument for jacobian_awb, its dense value). Sparse factors have explicit zeros
    among their stored entries and empty rows/columns."""
    if kind == "none":
        return None, np.eye(shape[0])
    dense = random_array(rng, shape, dtype)
    if kind == "dense":
        return dense, dense
    keep = rng.random(shape) < 0.5
    keep.reshape(-1)[0] = True  # dense[0, 0] is an explicit 0 (random_array sets it)
    rows, cols = np.nonzero(keep)
    coo = sp.coo_array((dense[rows, cols], (rows, cols)), shape=shape)
    value = coo.toarray()
    cls = {"csr": sp.csr_array, "csc": sp.csc_array, "coo": sp.coo_array,
           "csr_matrix": sp.csr_matrix, "coo_matrix": sp.coo_matrix}[kind]
    return cls(coo), value


def stored(arg, value):
    """Entries the Kronecker forms store for one factor: its diagonal for an identity,
    every entry of a dense array, the stored entries of a sparse one."""
    if arg is None:
        return value.shape[0]
    return sp.csr_array(arg).nnz if sp.issparse(arg) else value.size


def ref_tensor(A, B, layout="numerator"):
    """D[i, j, a, b] = A_ia B_bj, (n, k, p, q); denominator (p, q, n, k)."""
    D = np.einsum("ia,bj->ijab", A, B)
    return D if layout == "numerator" else D.transpose(2, 3, 0, 1)


def ref_vec(A, B, order):
    return np.kron(B.T, A) if order == "F" else np.kron(A, B.T)


def assert_product(actual, expected, dtype):
    """Products of two real numbers are rounded once, so real results are compared exactly;
    complex products may be contracted differently (fma), so to the dtype's tolerance."""
    if np.issubdtype(dtype, np.complexfloating):
        assert_close(actual, expected, dtype)
    else:
        assert np.array_equal(actual, expected)


def assert_canonical(S, fmt, nnz):
    assert S.format == fmt and S.nnz == nnz
    assert isinstance(S, sp.sparray)
    if fmt == "coo":
        rows, cols = S.coords
        key = rows.astype(np.int64) * S.shape[1] + cols
        assert np.all(np.diff(key) > 0)
    else:
        assert S.has_canonical_format
        for i in range(S.indptr.size - 1):
            assert np.all(np.diff(S.indices[S.indptr[i]:S.indptr[i + 1]]) > 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind_a", KINDS)
@pytest.mark.parametrize("kind_b", ["dense", "csr", "none"])
def test_every_form_matches_kron_and_einsum(rng, dtype, kind_a, kind_b):
    p, q = 3, 5
    n = p if kind_a == "none" else 4
    k = q if kind_b == "none" else 2
    A, Av = make_factor(rng, (n, p), kind_a, dtype)
    B, Bv = make_factor(rng, (q, k), kind_b, dtype)
    W_shape = (p, q) if A is None or B is None else None
    J = md.jacobian_awb(A, B, W_shape=W_shape)
    dtype = J.dtype
    assert J.shape == (n, k, p, q) and J.f_shape == (n, k) and J.W_shape == (p, q)
    assert J.dtype == np.dtype(np.float64 if A is None and B is None else dtype) and J.batch_size is None
    for layout in LAYOUTS:
        assert_product(J.toarray(layout), ref_tensor(Av, Bv, layout), dtype)
    nnz = stored(A, Av) * stored(B, Bv)
    for order in ORDERS:
        expected = ref_vec(Av, Bv, order)
        assert_product(J.tovec(order), expected, dtype)
        for fmt in FORMATS:
            S = J.tosparse(fmt, order)
            assert_canonical(S, fmt, nnz)
            assert S.indices.dtype == np.int32 if fmt != "coo" else S.coords[0].dtype == np.int32
            assert_product(S.toarray(), expected, dtype)
    # products
    dW = random_array(rng, (p, q), dtype, zeros=False)
    V = random_array(rng, (n, k), dtype, zeros=False)
    assert_close(J.jvp(dW), Av @ dW @ Bv, dtype)
    assert_close(J.vjp(V), Av.T @ V @ Bv.T, dtype)
    for order in ORDERS:
        M = ref_vec(Av, Bv, order).astype(wider(dtype))
        op = J.aslinearoperator(order)
        u = random_array(rng, (p * q,), dtype, zeros=False)
        w = random_array(rng, (n * k,), dtype, zeros=False)
        U = random_array(rng, (p * q, 3), dtype, zeros=False)
        assert op.shape == M.shape and op.dtype == np.dtype(dtype)
        assert_close(op.matvec(u), M @ u, dtype)
        assert_close(op.matmat(U), M @ U, dtype)
        assert_close(op.rmatvec(w), M.conj().T @ w, dtype)
        assert_close(op.H.matvec(w), M.conj().T @ w, dtype)
        assert_close(op.matvec(vec(dW, order)), vec(Av @ dW @ Bv, order), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ORDERS)
def test_operator_adjoint_dot_test(rng, dtype, order):
    A = make_factor(rng, (5, 4), "csr", dtype)[0]
    B = random_array(rng, (3, 6), dtype, zeros=False)
    op = md.jacobian_awb(A, B).aslinearoperator(order)
    u = random_array(rng, (op.shape[1],), dtype, zeros=False).astype(wider(dtype))
    w = random_array(rng, (op.shape[0],), dtype, zeros=False).astype(wider(dtype))
    assert_close(np.vdot(op.matvec(u), w), np.vdot(u, op.rmatvec(w)), dtype)


def test_identity_factors_store_their_diagonal_only(rng):
    A, Av = make_factor(rng, (30, 20), "csr", np.float64)
    J = md.jacobian_awb(A, None, W_shape=(20, 6))
    S = J.tosparse("csr", "F")
    assert S.nnz == A.nnz * 6
    assert np.array_equal(S.toarray(), np.kron(np.eye(6), Av))
    both = md.jacobian_awb(None, None, W_shape=(3, 4))  # f = W: the identity of size 12
    assert both.shape == (3, 4, 3, 4)
    for order in ORDERS:
        assert np.array_equal(both.tovec(order), np.eye(12))
        assert both.tosparse("coo", order).nnz == 12


def test_sparse_factor_is_not_densified_for_sparse_forms():
    """A 10^5 x 10^5 sparse A with 10 entries: the sparse form has 10 * q entries."""
    n = 10**5
    A = sp.csr_array((np.arange(1.0, 11.0), (np.arange(10), np.arange(10) * 7)), shape=(n, n))
    J = md.jacobian_awb(A, None, W_shape=(n, 3))
    S = J.tosparse("csc", "C", max_bytes=2 * 10**6)
    assert S.nnz == 30 and S.shape == (3 * n, 3 * n)
    assert np.array_equal(S.tocoo().coords[0][:3], [0, 1, 2])
    assert (S != sp.kron(A, sp.eye_array(3))).nnz == 0


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("order", ORDERS)
def test_int64_indices_when_int32_does_not_fit(rng, monkeypatch, fmt, order):
    A, Av = make_factor(rng, (4, 3), "csc", np.float64)
    B = random_array(rng, (2, 5), np.float64)
    J = md.jacobian_awb(A, B)
    nnz = A.nnz * B.size
    monkeypatch.setattr(_validation.core, "INT32_INDEX_MAX", nnz - 1)
    S = J.tosparse(fmt, order)
    arrays = S.coords if fmt == "coo" else (S.indices, S.indptr)
    assert all(a.dtype == np.int64 for a in arrays)
    assert np.array_equal(S.toarray(), ref_vec(Av, B, order))
    monkeypatch.setattr(_validation.core, "INT32_INDEX_MAX", max(nnz, 20, 15))  # fits exactly
    arrays = J.tosparse(fmt, order).coords if fmt == "coo" else (J.tosparse(fmt, order).indices,)
    assert all(a.dtype == np.int32 for a in arrays)


def test_dtype_policy(rng):
    A = rng.integers(0, 3, (3, 2))
    assert md.jacobian_awb(A, None, W_shape=(2, 2)).dtype == np.float64
    assert md.jacobian_awb(None, None, W_shape=(2, 2)).dtype == np.float64
    A32 = rng.standard_normal((3, 2)).astype(np.float32)
    assert md.jacobian_awb(A32, None, W_shape=(2, 2)).dtype == np.float32
    assert md.jacobian_awb(A32, np.ones((2, 2))).dtype == np.float64
    assert md.jacobian_awb(sp.csr_array(A32), np.ones((2, 2), np.complex64)).dtype == np.complex64
    assert md.jacobian_awb(sp.csr_array(np.eye(2, dtype=bool)), None, W_shape=(2, 1)).dtype == np.float64
    J = md.jacobian_awb(A32, np.ones((2, 2), np.float16))
    assert J.dtype == np.float32 and J.tovec().dtype == np.float32


def test_input_layouts_and_copies(rng):
    """Fortran-ordered, negative-stride, byte-swapped and read-only factors give the
    results of fresh C-contiguous copies; later changes to them do not leak in."""
    A = rng.standard_normal((4, 6))
    B = rng.standard_normal((5, 3))
    ref = md.jacobian_awb(A.copy(), B.copy()).tovec("F")
    views = [
        (np.asfortranarray(A), B[::-1][::-1]),
        (A[::-1].copy()[::-1], np.asfortranarray(B)),
        (A.astype(A.dtype.newbyteorder(">")), B),
    ]
    ro = A.copy()
    ro.flags.writeable = False
    views.append((ro, B))
    for A_, B_ in views:
        assert np.array_equal(md.jacobian_awb(A_, B_).tovec("F"), ref)
    A2 = A.copy()
    J = md.jacobian_awb(A2, B)
    A2[:] = 0
    assert np.array_equal(J.tovec("F"), ref)


def test_thread_count_invariance(rng):
    A, _ = make_factor(rng, (37, 11), "csr", np.float64)
    J = md.jacobian_awb(A, rng.standard_normal((7, 5)))
    for order in ORDERS:
        base = J.tovec(order, n_threads=1)
        sparse = {fmt: J.tosparse(fmt, order, n_threads=1) for fmt in FORMATS}
        for nt in (2, 3, -1):
            assert np.array_equal(J.tovec(order, n_threads=nt), base)
            for fmt in FORMATS:
                S = J.tosparse(fmt, order, n_threads=nt)
                assert np.array_equal(S.data, sparse[fmt].data)
                assert (S != sparse[fmt]).nnz == 0


@pytest.mark.parametrize("shapes", [((0, 3), (3, 2)), ((2, 0), (0, 2)), ((2, 3), (3, 0)), ((0, 0), (0, 0))])
def test_empty_dimensions(shapes):
    (n, p), (q, k) = shapes
    A, B = np.ones((n, p)), np.ones((q, k))
    J = md.jacobian_awb(A, B)
    assert J.toarray().shape == (n, k, p, q) and J.toarray("denominator").shape == (p, q, n, k)
    for order in ORDERS:
        assert J.tovec(order).shape == (n * k, p * q)
        for fmt in FORMATS:
            assert J.tosparse(fmt, order).shape == (n * k, p * q)
    assert J.jvp(np.ones((p, q))).shape == (n, k)
    assert J.vjp(np.ones((n, k))).shape == (p, q)


def test_out_and_memory_guard(rng):
    J = md.jacobian_awb(None, None, W_shape=(10**5, 10**5))
    with pytest.raises(md.OutputTooLargeError, match=r"tovec: the output .* float64 needs"):
        J.tovec()
    with pytest.raises(md.OutputTooLargeError, match=r"toarray: .*GiB"):
        J.toarray("denominator")
    with pytest.raises(md.OutputTooLargeError, match=r"tosparse: .*int64.*"):
        J.tosparse("csr", max_bytes=10**6)
    A = rng.standard_normal((3, 2))
    J = md.jacobian_awb(A, None, W_shape=(2, 2))
    out = np.empty((6, 4))
    assert J.tovec("C", out=out) is out and np.array_equal(out, np.kron(A, np.eye(2)))
    # a sparse factor is densified for the dense forms: counted against max_bytes
    big = md.jacobian_awb(sp.eye_array(2000, format="csr"), np.ones((1, 1)))
    with pytest.raises(md.OutputTooLargeError, match=r"\(2000, 2000\) float64"):
        big.toarray(max_bytes=2000 * 2000 * 8 + 100)


def test_repr(rng):
    r = repr(md.jacobian_awb(sp.csr_array(np.eye(3)), None, W_shape=(3, 2)))
    assert "KroneckerJacobian" in r and "sparse (3, 3), 3 stored" in r and "identity (2)" in r and "(3, 2, 3, 2)" in r


# --- errors ---------------------------------------------------------------------------
def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"W_shape: needed when A is None"):
        md.jacobian_awb(None, np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"W_shape: needed when B is None"):
        md.jacobian_awb(np.ones((2, 2)), None)
    with pytest.raises(ValueError, match=r"A: expected shape \(n, 3\) to match W_shape \(3, 2\), got \(2, 2\)"):
        md.jacobian_awb(np.ones((2, 2)), None, W_shape=(3, 2))
    with pytest.raises(ValueError, match=r"B: expected shape \(2, k\) to match W_shape \(3, 2\), got \(3, 1\)"):
        md.jacobian_awb(None, np.ones((3, 1)), W_shape=(3, 2))
    with pytest.raises(ValueError, match=r"A: expected shape \(n, 3\) to match W_shape \(3, 2\), got \(2, 2\)"):
        md.jacobian_awb(sp.csr_array(np.ones((2, 2))), np.ones((2, 2)), W_shape=(3, 2))
    with pytest.raises(ValueError, match=r"A: expected a 2-D array, got 1-D"):
        md.jacobian_awb(np.ones(3), None, W_shape=(3, 3))
    with pytest.raises(ValueError, match=r"B: expected a 2-D sparse matrix, got 1-D with shape \(3,\)"):
        md.jacobian_awb(None, sp.coo_array(np.ones(3)), W_shape=(3, 3))
    with pytest.raises(TypeError, match=r"A: unsupported dtype object"):
        md.jacobian_awb(np.array([[None]]), None, W_shape=(1, 1))
    with pytest.raises(TypeError, match=r"B: unsupported dtype"):
        md.jacobian_awb(None, np.array([["a"]]), W_shape=(1, 1))
    with pytest.raises(TypeError, match=r"A: unsupported dtype longdouble|A: unsupported dtype float128"):
        md.jacobian_awb(sp.csr_array(np.ones((1, 1), dtype=np.longdouble)), None, W_shape=(1, 1))
    with pytest.raises(TypeError, match=r"W_shape: expected a pair \(p, q\) of non-negative ints, got 3"):
        md.jacobian_awb(None, None, W_shape=3)
    with pytest.raises(TypeError, match=r"W_shape: expected a pair"):
        md.jacobian_awb(None, None, W_shape=(1, 2, 3))
    with pytest.raises(ValueError, match=r"W_shape\[1\]: expected a non-negative int, got -1"):
        md.jacobian_awb(None, None, W_shape=(2, -1))
    with pytest.raises(TypeError, match=r"W_shape\[0\]: expected a non-negative int, got float"):
        md.jacobian_awb(None, None, W_shape=(2.0, 1))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("order", ORDERS)
def test_sparse_factor_with_equal_row_counts(rng, fmt, order):
    """Every row (and column) of A holds two entries: the kernels' strided-run paths."""
    n = 6
    rows = np.repeat(np.arange(n), 2)
    cols = np.stack([np.arange(n), (np.arange(n) + 3) % n], axis=1).ravel()
    A = sp.csr_array((rng.standard_normal(2 * n), (rows, cols)), shape=(n, n))
    for B_ in (None, rng.standard_normal((4, 1))):  # both store 4 entries
        J = md.jacobian_awb(A, B_, W_shape=(n, 4))
        Bv = np.eye(4) if B_ is None else B_
        S = J.tosparse(fmt, order)
        assert_canonical(S, fmt, A.nnz * 4)
        assert np.array_equal(S.toarray(), ref_vec(A.toarray(), Bv, order))
