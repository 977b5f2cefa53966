"""Exact, fast derivatives with respect to matrices.

matderiv computes the derivatives of linear layers with respect to their weight
matrix W, in closed form: no automatic differentiation, no per-sample loop.  The
core is compiled (Cython, with OpenMP threads); matrix products run in numpy's BLAS.

* Jacobians of f = W @ x, f = x @ W and every f = A @ W @ B, as lazy objects that
  materialize into dense tensors, Kronecker matrices, scipy sparse arrays or
  LinearOperators, with the chain rule through a later linear map (left) and the
  product rule where x depends on W (jacobian_wx with dx_dW).
* Per-sample gradients of a batch, X (B, m) or sequences X (B, T, m) with the
  upstream gradients G, and their statistics without forming them: the batch
  gradient, the norms, the clipped sum of DP-SGD, the squared sum (diagonal
  Fisher), the variance, the Gram matrix (empirical NTK) and the K-FAC factors,
  several at once with batch_stats.
* Convolutions and embedding lookups as inputs of the same functions (Conv and
  Embedding), and a convolution's Jacobians with respect to its kernel and input.
* The same batched functions on dask arrays chunked along the batch
  (matderiv.dask, installed with the "dask" extra), called for dask inputs.
* A finite-difference checker for any claimed Jacobian.

The public names by task:

Jacobians of linear maps
    jacobian_wx, jacobian_xw, jacobian_awb, hstack_operators; their classes
    Jacobian, KroneckerJacobian, StructuredJacobian, TotalJacobian.
Batched gradients
    per_sample_grads, batch_grad, per_sample_grad_norms, clip_and_sum.
Statistics of per-sample gradients
    sum_grad_squared, grad_variance, per_sample_grad_dots, kfac_factors,
    batch_stats.
Convolutions and embeddings
    Conv, conv_patches, jacobian_conv_weight, jacobian_conv_input,
    ConvWeightJacobian, ConvInputJacobian; Embedding, one_hot.
Checking
    check_jacobian, numerical_jacobian, JacobianCheck, JacobianMismatch.
Memory and threads
    OutputTooLargeError (raised before any allocation over max_bytes or the
    memory available), get_serial_below_bytes, set_serial_below_bytes.
Dask
    matderiv.dask: the batched functions and statistics on dask arrays.

Conventions: for f = W @ x ("Wx") W has the shape (n, m) and sample b's gradient
is g_b = outer(G[b], X[b]); for f = x @ W ("xW") W is (m, n) and g_b its
transpose.  float32 inputs give float32 results, float64, integer and bool inputs
float64 (the Jacobians keep complex64 and complex128 as well).  The
command line (python -m matderiv) prints what a bug report needs (info), runs a
demo and the benchmarks.

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> rng = np.random.default_rng(0)
>>> X, G = rng.standard_normal((32, 5)), rng.standard_normal((32, 3))
>>> md.per_sample_grads(X, G).shape          # one (n, m) gradient per sample
(32, 3, 5)
>>> dW, norms = md.clip_and_sum(X, G, 1.0)   # DP-SGD's clipped sum, none formed
>>> J = md.jacobian_wx(X[0], 3)              # d(W @ x)/dW, lazy
>>> np.allclose(J.vjp(G[0]), md.per_sample_grads(X, G)[0])
True
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
