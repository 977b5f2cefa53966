"""The public constructors: jacobian_wx, jacobian_xw and jacobian_awb (the Jacobians of W @ x,
x @ W and A @ W @ B with respect to W), and hstack_operators (Jacobians side by side)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.sparse.linalg import LinearOperator

from .. import _validation as v
from ._base import ORDERS, Jacobian
from ._factor import Factor
from ._kronecker import KroneckerJacobian, StructuredJacobian
from ._operator import HStackOperator
from ._total import TotalJacobian


def _structured(x: Any, n: Any, convention: str) -> StructuredJacobian:
    arr = v.as_array(x, "x", (1, 2))
    n = v.check_size(n, "n")
    dtype = v.common_dtype({"x": arr})
    batched = arr.ndim == 2
    x2 = v.owned(arr, dtype) if batched else v.owned(arr, dtype)[None, :]
    return StructuredJacobian(x2, n, convention, batched)


def jacobian_wx(
    x: ArrayLike,
    n: int,
    *,
    W: ArrayLike | None = None,
    dx_dW: ArrayLike | Jacobian | None = None,
) -> Jacobian:
    """Jacobian of f(W) = W @ x with respect to W (n, m): D[i, a, b] = delta_ia * x_b.

    x: (m,) or a batch (B, m); n: the number of rows of W.  Lazy: O(B*m) memory.
    With W (n, m) and dx_dW (the (m, n, m) Jacobian of x = x(W), as an array or a
    matderiv Jacobian), returns the total derivative delta_ia x_b + (W @ dx/dW)[i, a, b].
    Inputs are copied (the Jacobian is taken at this point). Complex inputs are treated
    as holomorphic: no conjugation.
    """
    base = _structured(x, n, "Wx")
    if W is None and dx_dW is None:
        return base
    W_arr, dx, dtype = v.check_dependent(base.x, base.n, W, dx_dW, isinstance(dx_dW, Jacobian))
    if not isinstance(dx, Jacobian):
        dx = v.owned(dx, dtype)
    base = StructuredJacobian(v.contiguous(base.x[None], dtype), base.n, "Wx", False)
    return TotalJacobian(base, v.owned(W_arr, dtype), dx)


def jacobian_xw(x: ArrayLike, n: int) -> StructuredJacobian:
    """Jacobian of f(W) = x @ W with respect to W (m, n): T[j, a, b] = x_a * delta_jb.

    x: (m,) or a batch (B, m); n: the number of columns of W. Tensor shape (n, m, n).
    x is copied; complex x is treated as holomorphic (no conjugation).
    """
    return _structured(x, n, "xW")


def jacobian_awb(A: Any, B: Any, *, W_shape: tuple[int, int] | None = None) -> KroneckerJacobian:
    """Jacobian of f(W) = A @ W @ B with respect to W (p, q): df_ij/dW_ab = A_ia B_bj.

    A (n, p) and B (q, k): 2-D arrays, scipy sparse matrices or arrays, or None for an
    identity (then W_shape = (p, q) gives its size). Tensor (n, k, p, q); tovec is
    B^T (x) A (order "F") or A (x) B^T (order "C"); tosparse stores nnz(A)*nnz(B) entries
    (an identity its diagonal, a dense array every entry). Lazy: A and B are copied,
    identities are never built. Complex factors are holomorphic: no conjugation.
    """
    A_, B_, (p, q), dtype = v.check_awb(A, B, W_shape)
    Af = Factor.eye(p) if A_ is None else Factor.matrix(A_, dtype)
    Bf = Factor.eye(q) if B_ is None else Factor.matrix(B_, dtype)
    return KroneckerJacobian(Af, Bf, 1, False, None, dtype)


def hstack_operators(blocks: Sequence[Any], *, order: str = "F") -> LinearOperator:
    """The blocks side by side, [J_1, J_2, ...], as one LinearOperator.

    The Jacobian of f with respect to several parameters (W1, b1, W2, ...) whose
    operand is the concatenation of their vec forms: what a Gauss-Newton solver such as
    scipy.optimize.least_squares(jac=...) takes. blocks: matderiv Jacobians (taken as
    aslinearoperator(order)), LinearOperators, arrays or scipy sparse matrices, all with
    the same number of rows. Nothing is materialized.
    """
    v.check_choice(order, "order", ORDERS)
    ops: list[LinearOperator] = []
    for i, block in enumerate(v.check_blocks(blocks)):
        op = block.aslinearoperator(order) if isinstance(block, Jacobian) else block
        ops.append(v.operator_block(op, f"blocks[{i}]", ops[0].shape[0] if ops else None))
    return HStackOperator(ops, np.result_type(*(op.dtype for op in ops)))
