"""Jacobians as scipy LinearOperators, and several operators side by side.

A CheckedOperator checks the operand of every product (matvec, rmatvec, matmat, rmatmat,
@ and the hooks scipy's wrappers call) with _validation.operator_operand: its shape, masked
arrays refused, scipy sparse operands densified; its subclasses compute apply(X, adjoint)
on a checked C-contiguous (N, K) X, and its adjoint .H and transpose .T check theirs too.
The Jacobian itself is only called through its product hooks (_vec_shape, _matmat,
_rmatmat), so this module does not import _base.
"""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from .. import _validation as v
from .._memory import check_output_bytes


class CheckedOperator(LinearOperator, metaclass=ABCMeta):
    """A LinearOperator whose products check their operands first (see the module docstring)."""

    @abstractmethod
    def apply(self, X: np.ndarray, adjoint: bool) -> np.ndarray:
        """self @ X, or self^H @ X with adjoint=True, for a checked X."""

    def _operand(self, x: Any, method: str, adjoint: bool) -> np.ndarray:
        length = self.shape[0] if adjoint else self.shape[1]
        arr = v.operator_operand(x, method, length, self.shape, self.dtype)
        if sp.issparse(arr):  # densified once its bytes fit the default memory limit
            hint = "Multiply by a dense operand, or by the sparse one's columns a few at a time."
            check_output_bytes([(arr.shape, arr.dtype)], what=method, max_bytes=None, hint=hint)
            arr = v.contiguous(arr.toarray(), np.result_type(self.dtype, v.common_dtype({"x": arr})))
        return arr

    def matvec(self, x: ArrayLike) -> np.ndarray:
        return super().matvec(self._operand(x, "matvec", adjoint=False))

    def rmatvec(self, x: ArrayLike) -> np.ndarray:
        return super().rmatvec(self._operand(x, "rmatvec", adjoint=True))

    def matmat(self, X: ArrayLike) -> np.ndarray:
        return super().matmat(self._operand(X, "matmat", adjoint=False))

    def rmatmat(self, X: ArrayLike) -> np.ndarray:
        return super().rmatmat(self._operand(X, "rmatmat", adjoint=True))

    def dot(self, x: Any) -> Any:
        """self @ x; a masked x is refused here, where scipy's dot would drop its mask."""
        return super().dot(v.not_masked(x, "x"))

    def __rmatmul__(self, x: Any) -> Any:
        return super().__rmatmul__(v.not_masked(x, "x"))

    # scipy's hooks, also called by its wrappers (A.T, sums and products of operators)
    def _matmat(self, X: np.ndarray) -> np.ndarray:
        return self.apply(self._operand(X, "matmat", adjoint=False), adjoint=False)

    def _rmatmat(self, X: np.ndarray) -> np.ndarray:
        return self.apply(self._operand(X, "rmatmat", adjoint=True), adjoint=True)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self._matmat(x.reshape(-1, 1)).ravel()

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._rmatmat(x.reshape(-1, 1)).ravel()

    def _adjoint(self) -> CheckedOperator:
        return FlippedOperator(self, conjugate=False)

    def _transpose(self) -> CheckedOperator:
        return FlippedOperator(self, conjugate=True)


class FlippedOperator(CheckedOperator):
    """op^H, or with conjugate=True op^T = conj(op^H conj(.)), of a CheckedOperator op."""

    def __init__(self, op: CheckedOperator, conjugate: bool):
        self._op = op
        self._conjugate = conjugate
        super().__init__(dtype=op.dtype, shape=op.shape[::-1])

    def apply(self, X: np.ndarray, adjoint: bool) -> np.ndarray:
        if not self._conjugate:
            return self._op.apply(X, not adjoint)
        return _conj(self._op.apply(_conj(X), not adjoint))

    def _adjoint(self) -> CheckedOperator:
        return self._op if not self._conjugate else super()._adjoint()

    def _transpose(self) -> CheckedOperator:
        return self._op if self._conjugate else super()._transpose()


def _conj(a: np.ndarray) -> np.ndarray:
    return a.conj() if a.dtype.kind == "c" else a


class JacobianOperator(CheckedOperator):
    """tovec(order) of a Jacobian as a LinearOperator, never materialized."""

    def __init__(self, jac: Any, order: str):
        self._jac = jac
        self._order = order
        super().__init__(dtype=jac.dtype, shape=jac._vec_shape())

    def apply(self, X: np.ndarray, adjoint: bool) -> np.ndarray:
        if adjoint:
            return self._jac._rmatmat(X, self._order)
        return self._jac._matmat(X, self._order)


class HStackOperator(CheckedOperator):
    """[J_1, J_2, ...]: a product splits its operand by the blocks' columns and sums the
    blocks' products; an adjoint product stacks the blocks' adjoint products. A matderiv
    block is applied to the checked operand directly (lsmr asks for tens of products per
    solve, and the blocks are often small); any other through its public matmat/rmatmat."""

    def __init__(self, blocks: list[LinearOperator], dtype: np.dtype):
        ends = np.cumsum([b.shape[1] for b in blocks]).tolist()
        self._ranges = list(zip([0] + ends[:-1], ends))
        self._products = [
            (partial(b.apply, adjoint=False), partial(b.apply, adjoint=True))
            if isinstance(b, CheckedOperator) else (b.matmat, b.rmatmat)
            for b in blocks
        ]
        super().__init__(dtype=dtype, shape=(blocks[0].shape[0], ends[-1]))

    def apply(self, X: np.ndarray, adjoint: bool) -> np.ndarray:
        if adjoint:
            out = np.empty((self.shape[1], X.shape[1]), dtype=X.dtype)
            for (_, rmatmat), (lo, hi) in zip(self._products, self._ranges):
                out[lo:hi] = rmatmat(X)
            return out
        out = np.zeros((self.shape[0], X.shape[1]), dtype=X.dtype)
        for (matmat, _), (lo, hi) in zip(self._products, self._ranges):
            out += matmat(X[lo:hi])
        return out
