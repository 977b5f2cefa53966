"""matderiv: exact, fast derivatives with respect to matrices.

The derivative of f = W @ x with respect to W, in every form (lazy structured
Jacobians that materialize into dense tensors, Kronecker matrices, scipy sparse
arrays or LinearOperators), batched outer-product gradients, and a
finite-difference checker.
"""
from ._config import get_serial_below_bytes, set_serial_below_bytes
from ._memory import OutputTooLargeError
from .checking import JacobianCheck, JacobianMismatch, check_jacobian, numerical_jacobian
from .combined import batch_stats
from .gradients import batch_grad, clip_and_sum, per_sample_grad_norms, per_sample_grads
from .jacobian import (
    ConvInputJacobian,
    ConvWeightJacobian,
    Jacobian,
    KroneckerJacobian,
    StructuredJacobian,
    TotalJacobian,
    hstack_operators,
    jacobian_awb,
    jacobian_conv_input,
    jacobian_conv_weight,
    jacobian_wx,
    jacobian_xw,
)
from .layers import Conv, Embedding, conv_patches, one_hot
from .statistics import grad_variance, kfac_factors, per_sample_grad_dots, sum_grad_squared

__version__ = "0.1.0"

__all__ = [
    "Conv",
    "ConvInputJacobian",
    "ConvWeightJacobian",
    "Embedding",
    "Jacobian",
    "JacobianCheck",
    "JacobianMismatch",
    "KroneckerJacobian",
    "OutputTooLargeError",
    "StructuredJacobian",
    "TotalJacobian",
    "__version__",
    "batch_grad",
    "batch_stats",
    "check_jacobian",
    "clip_and_sum",
    "conv_patches",
    "get_serial_below_bytes",
    "grad_variance",
    "hstack_operators",
    "jacobian_awb",
    "jacobian_conv_input",
    "jacobian_conv_weight",
    "jacobian_wx",
    "jacobian_xw",
    "kfac_factors",
    "numerical_jacobian",
    "one_hot",
    "per_sample_grad_dots",
    "per_sample_grad_norms",
    "per_sample_grads",
    "set_serial_below_bytes",
    "sum_grad_squared",
]
