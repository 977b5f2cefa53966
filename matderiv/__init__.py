"""matderiv: exact, fast derivatives with respect to matrices.

The derivative of f = W @ x with respect to W, in every form (lazy structured
Jacobians that materialize into dense tensors, Kronecker matrices, scipy sparse
arrays or LinearOperators), batched outer-product gradients, and a
finite-difference checker.
"""
from ._memory import OutputTooLargeError
from .checking import JacobianCheck, JacobianMismatch, check_jacobian, numerical_jacobian
from .jacobian import Jacobian, StructuredJacobian, TotalJacobian, jacobian_wx, jacobian_xw

__version__ = "0.1.0"

__all__ = [
    "Jacobian",
    "JacobianCheck",
    "JacobianMismatch",
    "OutputTooLargeError",
    "StructuredJacobian",
    "TotalJacobian",
    "__version__",
    "check_jacobian",
    "jacobian_wx",
    "jacobian_xw",
    "numerical_jacobian",
]
