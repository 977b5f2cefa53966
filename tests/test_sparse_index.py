"""The 64-bit index path of tosparse, reached on small inputs by lowering the int32 limit
(matderiv._validation.INT32_INDEX_MAX, the hook the library keeps for this).

Index arrays are int32 when every index and count fits (nnz, the row count and the column
count), int64 otherwise, one dtype for all of them. For every format, order and
convention, for a single x and a batch, and for the product-rule Jacobian, both sides of
the limit give the same canonical matrix as np.kron, and scipy computes with it.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import matderiv as md
from matderiv import _validation
from conftest import CONVENTIONS, DTYPES, FORMATS, ORDERS, assert_close, random_array, ref_vec, vec

SPARSE_TYPES = {"csr": sp.csr_array, "csc": sp.csc_array, "coo": sp.coo_array}


def _index_arrays(A) -> list[np.ndarray]:
    return list(A.coords) if A.format == "coo" else [A.indices, A.indptr]


def assert_sparse(A, fmt: str, expected: np.ndarray, index_dtype, *, exact: bool = True) -> None:
    """A is a canonical `fmt` array equal to `expected`, with every index array of
    index_dtype holding in-range values (no wrap-around), and usable by scipy."""
    assert type(A) is SPARSE_TYPES[fmt]
    assert A.shape == expected.shape and A.dtype == expected.dtype
    for a in _index_arrays(A):
        assert a.dtype == index_dtype, (fmt, a.dtype, index_dtype)
    if fmt == "coo":
        rows, cols = A.coords
        assert ((rows >= 0) & (rows < A.shape[0])).all() and ((cols >= 0) & (cols < A.shape[1])).all()
        key = rows.astype(np.int64) * A.shape[1] + cols
        assert (np.diff(key) > 0).all()  # row-major, no duplicates
    else:
        major, minor = A.shape if fmt == "csr" else A.shape[::-1]
        assert A.indptr.shape == (major + 1,) and A.indptr[0] == 0 and A.indptr[-1] == A.nnz
        assert ((A.indices >= 0) & (A.indices < minor)).all()
        A.copy().check_format(full_check=True)
    assert A.has_canonical_format
    if exact:
        assert np.array_equal(A.toarray(), expected)
    else:
        assert_close(A.toarray(), expected, expected.dtype)
    u = np.arange(A.shape[1], dtype=np.float64) - 1.5  # scipy's own kernels on these indices
    assert_close(A @ u, expected @ u, expected.dtype)
    assert_close(A.T @ np.ones(A.shape[0]), expected.T @ np.ones(A.shape[0]), expected.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("batched", [False, True])
def test_index_dtype_on_both_sides_of_the_limit(rng, monkeypatch, dtype, convention, fmt, order, batched):
    S, n, m = (3 if batched else 1), 4, 5
    x = random_array(rng, (S, m) if batched else (m,), dtype)
    J = (md.jacobian_wx if convention == "Wx" else md.jacobian_xw)(x, n)
    expected = ref_vec(x, n, convention, order)
    nnz = S * n * m  # also the largest of nnz, S*n rows and n*m columns
    monkeypatch.setattr(_validation.core, "INT32_INDEX_MAX", nnz - 1)
    assert_sparse(J.tosparse(fmt, order), fmt, expected, np.int64)
    monkeypatch.setattr(_validation.core, "INT32_INDEX_MAX", nnz)  # fits exactly
    assert_sparse(J.tosparse(fmt, order), fmt, expected, np.int32)


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("shape", [(3, 0), (0, 4), (0,)], ids=["m=0", "B=0", "single m=0"])
def test_index_dtype_follows_a_dimension_when_there_are_no_entries(monkeypatch, convention, fmt, order, shape):
    """nnz = 0, yet a row or column count over the limit needs int64 (csr/csc indptr
    positions, coo coordinates must be able to address the shape)."""
    n = 4
    x = np.zeros(shape)
    J = (md.jacobian_wx if convention == "Wx" else md.jacobian_xw)(x, n)
    expected = ref_vec(x, n, convention, order)
    largest = max(expected.shape)
    assert largest > 0 and J.tosparse(fmt, order).nnz == 0
    monkeypatch.setattr(_validation.core, "INT32_INDEX_MAX", largest - 1)
    assert_sparse(J.tosparse(fmt, order), fmt, expected, np.int64)
    monkeypatch.setattr(_validation.core, "INT32_INDEX_MAX", largest)
    assert_sparse(J.tosparse(fmt, order), fmt, expected, np.int32)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dx_kind", ["array", "jacobian"])
def test_product_rule_jacobian_on_both_sides_of_the_limit(rng, monkeypatch, fmt, order, dx_kind):
    """f = W x(W) with x = W^T y: D[i, a, b] = delta_ia x_b + W[i, b] y_a, every entry stored."""
    n = m = 3
    W = random_array(rng, (n, m), np.float64, zeros=False)
    y = random_array(rng, (n,), np.float64, zeros=False)
    x = W.T @ y
    dx = np.einsum("jb,a->jab", np.eye(m), y)  # dx_j/dW_ab = delta_jb y_a, (m, n, m)
    J = md.jacobian_wx(x, n, W=W, dx_dW=dx if dx_kind == "array" else md.jacobian_xw(y, m))
    D = np.einsum("ia,b->iab", np.eye(n), x) + np.einsum("ij,jab->iab", W, dx)
    expected = vec(D, order)
    nnz = expected.size
    monkeypatch.setattr(_validation.core, "INT32_INDEX_MAX", nnz - 1)
    assert_sparse(J.tosparse(fmt, order), fmt, expected, np.int64, exact=False)
    monkeypatch.setattr(_validation.core, "INT32_INDEX_MAX", nnz)
    assert_sparse(J.tosparse(fmt, order), fmt, expected, np.int32, exact=False)
