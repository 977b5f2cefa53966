"""md.hstack_operators: Jacobians (and other operators) side by side as one LinearOperator."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, aslinearoperator

import matderiv as md
from conftest import ORDERS


@pytest.mark.parametrize("order", ORDERS)
def test_equals_the_dense_hstack(rng, order):
    X = rng.standard_normal((4, 3))
    J1 = md.jacobian_wx(X, 2)
    J2 = md.jacobian_wx(np.ones((4, 1)), 2)
    D = rng.standard_normal((8, 3))
    S = sp.random_array((8, 5), density=0.4, rng=rng, format="csr")
    op = md.hstack_operators([J1, J2, D, S, aslinearoperator(D)], order=order)
    dense = np.hstack([J1.tovec(order), J2.tovec(order), D, S.toarray(), D])
    assert isinstance(op, LinearOperator) and op.shape == dense.shape and op.dtype == np.float64
    u = rng.standard_normal(dense.shape[1])
    w = rng.standard_normal(dense.shape[0])
    np.testing.assert_allclose(op.matvec(u), dense @ u, rtol=1e-12)
    np.testing.assert_allclose(op.rmatvec(w), dense.T @ w, rtol=1e-12)
    np.testing.assert_allclose(op.matmat(np.eye(dense.shape[1])), dense, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(op.H.matvec(w), dense.T @ w, rtol=1e-12)
    np.testing.assert_allclose(op @ u, dense @ u, rtol=1e-12)


def test_dtype_is_promoted_and_complex_adjoint_conjugates(rng):
    x = rng.standard_normal(3) + 1j * rng.standard_normal(3)
    J = md.jacobian_wx(x.astype(np.complex64), 2)
    op = md.hstack_operators([J, np.ones((2, 1), np.float32)])
    assert op.dtype == np.complex64
    dense = np.hstack([J.tovec(), np.ones((2, 1))])
    w = np.array([1 + 2j, 3 - 1j])
    np.testing.assert_allclose(op.rmatvec(w), dense.conj().T @ w, rtol=1e-5)


def test_errors():
    J = md.jacobian_wx(np.ones(3), 2)
    with pytest.raises(TypeError, match=r"blocks: expected a list or tuple of operators, got StructuredJacobian"):
        md.hstack_operators(J)
    with pytest.raises(TypeError, match=r"blocks: expected a list or tuple of operators, got ndarray"):
        md.hstack_operators(np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"blocks: expected at least one operator, got none"):
        md.hstack_operators([])
    with pytest.raises(ValueError, match=r"blocks\[1\]: expected 2 rows like blocks\[0\], got an operator of shape \(3, 1\)"):
        md.hstack_operators([J, np.ones((3, 1))])
    with pytest.raises(TypeError, match=r"blocks\[0\]: expected a matderiv Jacobian, a LinearOperator, an array or a sparse matrix, got str"):
        md.hstack_operators(["J"])
    with pytest.raises(ValueError, match=r"order: expected one of 'F', 'C', got 'K'"):
        md.hstack_operators([J], order="K")
    with pytest.raises(TypeError, match=r"blocks: expected a list or tuple of operators, got str"):
        md.hstack_operators("J")


def test_blocks_of_a_non_numeric_dtype_are_refused():
    J = md.jacobian_wx(np.ones(3), 2)
    with pytest.raises(TypeError, match=r"blocks\[1\]: unsupported dtype object; expected float32"):
        md.hstack_operators([J, np.ones((2, 1), dtype=object)])
    with pytest.raises(TypeError, match=r"blocks\[0\]: unsupported dtype str"):
        md.hstack_operators([aslinearoperator(np.full((2, 1), "a")), J])


class PublicProductsOnly(LinearOperator):
    """An operator from elsewhere: its scipy hooks are its own business, only its public
    matmat and rmatmat may be called."""

    def __init__(self, A):
        self.A = A
        super().__init__(A.dtype, A.shape)

    def matmat(self, X):
        return self.A @ X

    def rmatmat(self, X):
        return self.A.conj().T @ X

    def _matmat(self, X):
        raise AssertionError("a private hook called from outside the operator")

    _rmatmat = _matmat


def test_other_operators_are_called_through_their_public_products(rng):
    J = md.jacobian_wx(rng.standard_normal((4, 3)), 2)  # (8, 6)
    D = rng.standard_normal((8, 5))
    op = md.hstack_operators([J, PublicProductsOnly(D), J])
    dense = np.hstack([J.tovec(), D, J.tovec()])
    u, w = rng.standard_normal(17), rng.standard_normal(8)
    np.testing.assert_allclose(op.matvec(u), dense @ u, rtol=1e-12)
    np.testing.assert_allclose(op.rmatvec(w), dense.T @ w, rtol=1e-12)
    np.testing.assert_allclose(op.H @ w, dense.T @ w, rtol=1e-12)
    np.testing.assert_allclose(op @ sp.csr_array(u[:, None]), dense @ u[:, None], rtol=1e-12)  # sparse operands
    np.testing.assert_allclose(op.H @ sp.coo_array(w), dense.T @ w, rtol=1e-12)
