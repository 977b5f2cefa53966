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

Where things are:
  _base.py       the Jacobian interface: shapes, argument checks, output allocation
  _kronecker.py  the Kronecker family: A @ W @ B, W @ x, x @ W, and left products M @ f
  _total.py      the product-rule Jacobian of W @ x(W) (jacobian_wx with W and dx_dW)
  _operator.py   the LinearOperator of a Jacobian, and hstack_operators
"""
from ._base import Jacobian
from ._kronecker import KroneckerJacobian, StructuredJacobian, jacobian_awb, jacobian_xw
from ._operator import hstack_operators
from ._total import TotalJacobian, jacobian_wx

__all__ = [
    "Jacobian",
    "KroneckerJacobian",
    "StructuredJacobian",
    "TotalJacobian",
    "hstack_operators",
    "jacobian_awb",
    "jacobian_wx",
    "jacobian_xw",
]

#: Fresh dense outputs at least this large come from np.zeros: calloc hands out pages the
#: OS has zeroed (glibc maps every block of 32 MiB or more), so the kernel only scatters
#: the values instead of writing the zeros a second time. Smaller outputs are zeroed by
#: the kernel, in parallel. (Read by _base.Jacobian._output when it allocates.)
_FRESH_ZEROS_BYTES = 32 * 2**20
