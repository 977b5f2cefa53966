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
from .._docs import doc, jacobian as D


def _structured(x: Any, n: Any, convention: str) -> StructuredJacobian:
    arr = v.as_array(x, "x", (1, 2))
    n = v.check_size(n, "n")
    dtype = v.common_dtype({"x": arr})
    batched = arr.ndim == 2
    x2 = v.owned(arr, dtype) if batched else v.owned(arr, dtype)[None, :]
    return StructuredJacobian(x2, n, convention, batched)


@doc(D.JACOBIAN_WX)
def jacobian_wx(
    x: ArrayLike,
    n: int,
    *,
    W: ArrayLike | None = None,
    dx_dW: ArrayLike | Jacobian | None = None,
) -> Jacobian:
    base = _structured(x, n, "Wx")
    if W is None and dx_dW is None:
        return base
    W_arr, dx, dtype = v.check_dependent(base.x, base.n, W, dx_dW, isinstance(dx_dW, Jacobian))
    if not isinstance(dx, Jacobian):
        dx = v.owned(dx, dtype)
    base = StructuredJacobian(v.contiguous(base.x[None], dtype), base.n, "Wx", False)
    return TotalJacobian(base, v.owned(W_arr, dtype), dx)


@doc(D.JACOBIAN_XW)
def jacobian_xw(x: ArrayLike, n: int) -> StructuredJacobian:
    return _structured(x, n, "xW")


@doc(D.JACOBIAN_AWB)
def jacobian_awb(A: Any, B: Any, *, W_shape: tuple[int, int] | None = None) -> KroneckerJacobian:
    A_, B_, (p, q), dtype = v.check_awb(A, B, W_shape)
    Af = Factor.eye(p) if A_ is None else Factor.matrix(A_, dtype)
    Bf = Factor.eye(q) if B_ is None else Factor.matrix(B_, dtype)
    return KroneckerJacobian(Af, Bf, 1, False, None, dtype)


@doc(D.HSTACK_OPERATORS)
def hstack_operators(blocks: Sequence[Any], *, order: str = "F") -> LinearOperator:
    v.check_choice(order, "order", ORDERS)
    ops: list[LinearOperator] = []
    for i, block in enumerate(v.check_blocks(blocks)):
        op = block.aslinearoperator(order) if isinstance(block, Jacobian) else block
        ops.append(v.operator_block(op, f"blocks[{i}]", ops[0].shape[0] if ops else None))
    return HStackOperator(ops, np.result_type(*(op.dtype for op in ops)))
