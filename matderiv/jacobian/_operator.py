"""Jacobians as scipy LinearOperators, and Jacobians of several parameters side by side."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike
from scipy.sparse.linalg import LinearOperator, aslinearoperator

from .. import _validation as v
from ._base import ORDERS, Jacobian


class JacobianOperator(LinearOperator):
    """tovec(order) as a LinearOperator, never materialized; with transposed=True its
    adjoint (the conjugate transpose), so that both check their operands the same way."""

    def __init__(self, jac: Jacobian, order: str, transposed: bool = False):
        self._jac = jac
        self._order = order
        self._transposed = transposed
        rows, cols = jac._vec_shape()
        super().__init__(dtype=jac.dtype, shape=(cols, rows) if transposed else (rows, cols))

    def _check(self, x: Any, length: int, name: str) -> np.ndarray:
        arr = np.asarray(x)
        if arr.ndim == 0 or arr.shape[0] != length or arr.ndim > 2:
            raise ValueError(
                f"{name}: expected a vector of length {length} or a matrix with {length} rows "
                f"for an operator of shape {self.shape}, got shape {arr.shape}"
            )
        return arr

    def matvec(self, x: ArrayLike) -> np.ndarray:
        return super().matvec(self._check(x, self.shape[1], "matvec"))

    def rmatvec(self, x: ArrayLike) -> np.ndarray:
        return super().rmatvec(self._check(x, self.shape[0], "rmatvec"))

    def matmat(self, X: ArrayLike) -> np.ndarray:
        return super().matmat(self._check(X, self.shape[1], "matmat"))

    def rmatmat(self, X: ArrayLike) -> np.ndarray:
        return super().rmatmat(self._check(X, self.shape[0], "rmatmat"))

    def _apply(self, X: np.ndarray, adjoint: bool) -> np.ndarray:
        flags = X.flags
        if X.dtype != self.dtype or not (flags.c_contiguous and flags.aligned):
            X = v.contiguous(X, np.result_type(self.dtype, v.common_dtype({"x": X})))
        if adjoint != self._transposed:
            return self._jac._rmatmat(X, self._order)
        return self._jac._matmat(X, self._order)

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        return self._apply(X, adjoint=False)

    def _rmatmat(self, X: np.ndarray) -> np.ndarray:
        return self._apply(X, adjoint=True)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self._matmat(x.reshape(-1, 1)).ravel()

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._rmatmat(x.reshape(-1, 1)).ravel()

    def _adjoint(self) -> LinearOperator:
        return JacobianOperator(self._jac, self._order, not self._transposed)



class _HStack(LinearOperator):
    """[J_1, J_2, ...]: matvec splits its operand by the blocks' columns and sums the
    blocks' products; rmatvec stacks the blocks' adjoint products."""

    def __init__(self, blocks: list[LinearOperator], dtype: np.dtype):
        self._blocks = blocks
        ends = np.cumsum([b.shape[1] for b in blocks]).tolist()
        self._ranges = list(zip([0] + ends[:-1], ends))
        super().__init__(dtype=dtype, shape=(blocks[0].shape[0], ends[-1]))

    # The blocks' own _matmat/_rmatmat: this operator has checked the operand's shape
    # already, and lsmr calls these tens of times per solve (the public methods'
    # checks would cost more than the products of small blocks).
    def _matmat(self, X: np.ndarray) -> np.ndarray:
        out = np.zeros((self.shape[0], X.shape[1]), dtype=self._out_dtype(X))
        for block, (lo, hi) in zip(self._blocks, self._ranges):
            out += block._matmat(X[lo:hi])
        return out

    def _rmatmat(self, Y: np.ndarray) -> np.ndarray:
        out = np.empty((self.shape[1], Y.shape[1]), dtype=self._out_dtype(Y))
        for block, (lo, hi) in zip(self._blocks, self._ranges):
            out[lo:hi] = block._rmatmat(Y)
        return out

    def _out_dtype(self, X: np.ndarray) -> np.dtype:
        return self.dtype if X.dtype == self.dtype else np.result_type(self.dtype, X.dtype)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self._matmat(x.reshape(-1, 1)).ravel()

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        return self._rmatmat(y.reshape(-1, 1)).ravel()


def hstack_operators(blocks: Sequence[Any], *, order: str = "F") -> LinearOperator:
    """The blocks side by side, [J_1, J_2, ...], as one LinearOperator.

    The Jacobian of f with respect to several parameters (W1, b1, W2, ...) whose
    operand is the concatenation of their vec forms: what a Gauss-Newton solver such as
    scipy.optimize.least_squares(jac=...) takes. blocks: matderiv Jacobians (taken as
    aslinearoperator(order)), LinearOperators, arrays or scipy sparse matrices, all with
    the same number of rows. Nothing is materialized.
    """
    v.check_choice(order, "order", ORDERS)
    if isinstance(blocks, (np.ndarray, Jacobian, LinearOperator)) or sp.issparse(blocks) or not isinstance(blocks, Sequence):
        raise TypeError(f"blocks: expected a list or tuple of operators, got {type(blocks).__name__}")
    if len(blocks) == 0:
        raise ValueError("blocks: expected at least one operator, got none")
    ops = []
    for i, block in enumerate(blocks):
        if isinstance(block, Jacobian):
            op = block.aslinearoperator(order)
        else:
            try:
                op = aslinearoperator(block)
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"blocks[{i}]: expected a matderiv Jacobian, a LinearOperator, an array or a sparse "
                    f"matrix, got {type(block).__name__} ({exc})"
                ) from None
        if ops and op.shape[0] != ops[0].shape[0]:
            raise ValueError(
                f"blocks[{i}]: expected {ops[0].shape[0]} rows like blocks[0], got an operator of shape {op.shape}"
            )
        ops.append(op)
    dtype = np.result_type(*(op.dtype for op in ops))
    return _HStack(ops, dtype)
