"""Derivatives of f with respect to the matrix W, as lazy Jacobians.

For W of shape (n, m) and x of shape (m,), f = W @ x has the Jacobian

    D[i, a, b] = df_i / dW_ab = delta_ia * x_b            (numerator layout, (n, n, m))

whose vectorised forms are x^T (x) I_n for column-major vec(W) (order="F") and
I_n (x) x^T for row-major vec(W) (order="C").  For the row convention f = x @ W
with W of shape (m, n), df_j / dW_ab = x_a * delta_jb: tensor (n, m, n), vec_F
form I_n (x) x^T and vec_C form x^T (x) I_n. Both are cases of f = A @ W @ B
(jacobian_awb), whose forms are Kronecker products of A and B.

Jacobians are lazy: construction stores x (or A and B); nothing of the size of the
Jacobian exists until toarray/tovec/tosparse is called.  Complex inputs are treated
as holomorphic: no conjugation anywhere except in the LinearOperator's adjoint.

Where things are (each module imports only those listed before it):
  _factor.py        Kronecker factors (identity, dense, per-sample, sparse), their products,
                    and lazy products of them (compose, FactorChain)
  _operator.py      LinearOperators that check their operands: a Jacobian's, and hstack's
  _base.py          the Jacobian interface: shapes, forms, output allocation, left(M)
  _kronecker.py     the Kronecker family: A @ W @ B, and W @ x, x @ W stored as x alone
  _total.py         the product-rule Jacobian of W @ x(W) (jacobian_wx with W and dx_dW)
  _constructors.py  jacobian_wx, jacobian_xw, jacobian_awb and hstack_operators
  _conv.py          a convolution's Jacobians: dy/dW (the Kronecker family on the patches of x)
                    and dy/dx (sparse block-Toeplitz), jacobian_conv_weight, jacobian_conv_input
Argument checks are in matderiv/_validation/jacobian.py (conv.py for the convolutions).
"""
from ._base import Jacobian
from ._constructors import hstack_operators, jacobian_awb, jacobian_wx, jacobian_xw
from ._conv import ConvInputJacobian, ConvJacobian, ConvWeightJacobian, jacobian_conv_input, jacobian_conv_weight
from ._kronecker import KroneckerJacobian, StructuredJacobian
from ._total import TotalJacobian

__all__ = [
    "ConvInputJacobian",
    "ConvJacobian",
    "ConvWeightJacobian",
    "Jacobian",
    "KroneckerJacobian",
    "StructuredJacobian",
    "TotalJacobian",
    "hstack_operators",
    "jacobian_awb",
    "jacobian_conv_input",
    "jacobian_conv_weight",
    "jacobian_wx",
    "jacobian_xw",
]
