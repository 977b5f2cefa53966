"""Finite-difference verification of Jacobians: numerical_jacobian and check_jacobian."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _validation as v
from ._memory import check_output_bytes
from .jacobian import ConvJacobian, Jacobian
from ._docs import checking as D, doc

__all__ = ["JacobianCheck", "JacobianMismatch", "check_jacobian", "numerical_jacobian"]


@doc(D.JACOBIAN_MISMATCH)
class JacobianMismatch(AssertionError):
    ...


@doc(D.JACOBIAN_CHECK)
@dataclass(frozen=True)
class JacobianCheck:
    max_abs_error: float
    max_abs_index: tuple[int, ...]
    max_rel_error: float
    max_rel_index: tuple[int, ...]
    n_bad: int
    rtol: float
    atol: float
    numerical: np.ndarray

    @property
    @doc(D.OK)
    def ok(self) -> bool:
        return self.n_bad == 0


def _work_dtype(dtype: np.dtype) -> np.dtype:
    """Differences are taken in double precision (complex128 for complex W)."""
    return np.dtype(np.complex128) if dtype.kind == "c" else np.dtype(np.float64)


def _single(dtype: np.dtype) -> bool:
    return np.dtype(dtype) in (np.dtype(np.float32), np.dtype(np.complex64))


def _resolution(dtype: np.dtype) -> float:
    """Relative rounding of f's values: float32 eps for single-precision outputs, else float64's."""
    return float(np.finfo(np.float32 if _single(dtype) else np.float64).eps)


def _value(f: Callable[[np.ndarray], ArrayLike], W: np.ndarray) -> np.ndarray:
    """f at a copy of W, as an array of numbers (bool, integer, float or complex)."""
    return v.function_value(f(W.copy()), "f")


def _differences(
    f: Callable[[np.ndarray], ArrayLike],
    W: ArrayLike,
    eps: float | None,
    max_bytes: int | None,
    scratch: int,
) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    """Central differences, the rounding noise of each column (per W entry), f's dtype.

    `scratch` output-sized float64 arrays that the caller will add are counted
    against max_bytes with the result.
    """
    v.check_callable(f, "f")
    arr = v.as_array(W, "W", range(0, 33))
    # order="C": Wflat below must be a view of W0 (a Fortran-ordered copy would make
    # reshape(-1) a copy, and every perturbation would be lost)
    W0 = np.array(arr, dtype=_work_dtype(v.common_dtype({"W": arr})), order="C")
    if eps is not None:
        eps = v.positive_float(eps, "eps")
    f0 = _value(f, W0)
    resolution = _resolution(f0.dtype)
    if eps is None:
        eps = float(np.cbrt(resolution))  # balances truncation (h^2) against rounding (1/h)
    shape, dtype = f0.shape + W0.shape, np.result_type(f0.dtype, W0.dtype, np.float64)
    check_output_bytes(
        [(shape, dtype)] + [(shape, np.dtype(np.float64))] * scratch,
        what="numerical_jacobian",
        max_bytes=max_bytes,
        hint="",
    )
    J = np.empty(shape, dtype=dtype)
    noise = np.empty(W0.size)
    Jflat = J.reshape(f0.size, W0.size)
    Wflat = W0.reshape(-1)
    for k in range(W0.size):
        h = eps * max(1.0, abs(Wflat[k]))
        old = Wflat[k]
        Wflat[k] = old + h
        fp = _value(f, W0)
        Wflat[k] = old - h
        fm = _value(f, W0)
        Wflat[k] = old
        if fp.shape != f0.shape or fm.shape != f0.shape:
            raise ValueError(f"f: returned shape {fp.shape} for a perturbed W, but {f0.shape} at W")
        Jflat[:, k] = ((fp - fm) / (2 * h)).reshape(-1)
        # each value of f is rounded to `resolution` relative: the quotient carries
        # about resolution * |f| / h of noise
        noise[k] = 2 * resolution * max(np.max(np.abs(fp), initial=0.0), np.max(np.abs(fm), initial=0.0)) / h
    return J, noise.reshape(W0.shape), f0.dtype


@doc(D.NUMERICAL_JACOBIAN)
def numerical_jacobian(
    f: Callable[[np.ndarray], ArrayLike],
    W: ArrayLike,
    *,
    eps: float | None = None,
    max_bytes: int | None = None,
) -> np.ndarray:
    return _differences(f, W, eps, max_bytes, scratch=0)[0]


def _default_tolerances(single: bool) -> tuple[float, float]:
    """(rtol, atol) when the claim or f is single precision, or both are double."""
    return (1e-3, 1e-4) if single else (1e-6, 1e-7)


@doc(D.CHECK_JACOBIAN)
def check_jacobian(
    f: Callable[[np.ndarray], ArrayLike],
    W: ArrayLike,
    J: ArrayLike | Jacobian | ConvJacobian,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    eps: float | None = None,
    max_bytes: int | None = None,
) -> JacobianCheck:
    if isinstance(J, (Jacobian, ConvJacobian)):
        claimed = J.toarray("numerator", max_bytes=max_bytes)
    else:
        claimed = v.as_array(J, "J", range(0, 65))
        claimed = v.contiguous(claimed, v.common_dtype({"J": claimed}))
    tolerances = {name: v.non_negative_float(tol, name) for name, tol in (("rtol", rtol), ("atol", atol)) if tol is not None}
    N, noise, f_dtype = _differences(f, W, eps, max_bytes, scratch=3)
    if claimed.shape != N.shape:
        raise ValueError(
            f"J: expected shape {N.shape} (f(W).shape + W.shape, numerator layout), got {claimed.shape}"
        )
    d_rtol, d_atol = _default_tolerances(_single(claimed.dtype) or _single(f_dtype))
    rtol = tolerances.get("rtol", d_rtol)
    scale = max(1.0, float(np.max(np.abs(N), initial=0.0)))
    atol = tolerances.get("atol", d_atol * scale)
    if N.size == 0:
        return JacobianCheck(0.0, (), 0.0, (), 0, rtol, atol, N)
    with np.errstate(over="ignore", invalid="ignore"):  # inf/NaN entries are verdicts, not warnings
        absN = np.abs(N)
        err = np.abs(claimed - N)  # promotes: a complex claim is not cast to a real N
        bound = absN * rtol
        bound += atol
        if "atol" not in tolerances:
            bound += noise  # broadcast over f's axes
        bad = ~(err <= bound)  # NaN counts as a failure
        excess = np.subtract(err, bound, out=bound)
        rel = np.divide(err, np.maximum(absN, np.finfo(np.float64).tiny, out=absN), out=absN)
    i_abs = _argmax(err)
    i_rel = _argmax(rel)
    result = JacobianCheck(
        float(err[i_abs]), i_abs, float(rel[i_rel]), i_rel, int(bad.sum()), rtol, atol, N
    )
    if result.n_bad:
        worst = _argmax(np.where(np.isnan(excess), np.inf, excess))
        raise JacobianMismatch(
            f"J disagrees with central differences in {result.n_bad} of {N.size} entries; "
            f"worst at index {worst}: J = {claimed[worst].item()!r}, numerical = {N[worst].item()!r}, "
            f"abs error {err[worst]:.3g}, rel error {rel[worst]:.3g} (rtol={rtol:.3g}, atol={atol:.3g})"
        )
    return result


def _argmax(a: np.ndarray) -> tuple[int, ...]:
    """Index of the largest entry, NaN counted as largest."""
    flat = np.where(np.isnan(a), np.inf, a).reshape(-1)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(flat)), a.shape))
