"""Finite-difference verification of Jacobians: numerical_jacobian and check_jacobian."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from . import _validation as v
from ._memory import check_output_bytes
from .jacobian import Jacobian

__all__ = ["JacobianCheck", "JacobianMismatch", "check_jacobian", "numerical_jacobian"]


class JacobianMismatch(AssertionError):
    """A claimed Jacobian disagrees with central differences; the message names the worst entry."""


@dataclass(frozen=True)
class JacobianCheck:
    """Outcome of check_jacobian: the worst absolute and relative errors and where they are."""

    max_abs_error: float
    max_abs_index: tuple[int, ...]
    max_rel_error: float
    max_rel_index: tuple[int, ...]
    n_bad: int
    rtol: float
    atol: float
    numerical: np.ndarray

    @property
    def ok(self) -> bool:
        return self.n_bad == 0


def _work_dtype(dtype: np.dtype) -> np.dtype:
    """Differences are taken in double precision (complex128 for complex W)."""
    return np.dtype(np.complex128) if dtype.kind == "c" else np.dtype(np.float64)


def numerical_jacobian(
    f: Callable[[np.ndarray], ArrayLike],
    W: ArrayLike,
    *,
    eps: float | None = None,
    max_bytes: int | None = None,
) -> np.ndarray:
    """Central differences (f(W + h E_ab) - f(W - h E_ab)) / 2h, shape f(W).shape + W.shape.

    W is perturbed in float64 (complex128 for complex W: the holomorphic derivative
    along the real axis); h = eps * max(1, |W_ab|), eps defaulting to cbrt(float64 eps).
    Costs 2 * W.size calls of f; the result is guarded by max_bytes like every
    materializing call.
    """
    arr = v.as_array(W, "W", range(0, 33))
    # order="C": Wflat below must be a view of W0 (a Fortran-ordered copy would make
    # reshape(-1) a copy, and every perturbation would be lost)
    W0 = np.array(arr, dtype=_work_dtype(v.common_dtype({"W": arr})), order="C")
    if eps is None:
        eps = float(np.cbrt(np.finfo(np.float64).eps))
    elif not (isinstance(eps, (int, float, np.floating)) and np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps: expected a positive finite float, got {eps!r}")
    f0 = np.asarray(f(W0.copy()))
    shape, dtype = f0.shape + W0.shape, np.result_type(f0.dtype, W0.dtype, np.float64)
    check_output_bytes([(shape, dtype)], what="numerical_jacobian", max_bytes=max_bytes, hint="")
    J = np.empty(shape, dtype=dtype)
    Jflat = J.reshape(f0.size, W0.size)
    Wflat = W0.reshape(-1)
    for k in range(W0.size):
        h = eps * max(1.0, abs(Wflat[k]))
        old = Wflat[k]
        Wflat[k] = old + h
        fp = np.asarray(f(W0.copy()))
        Wflat[k] = old - h
        fm = np.asarray(f(W0.copy()))
        Wflat[k] = old
        if fp.shape != f0.shape or fm.shape != f0.shape:
            raise ValueError(f"f: returned shape {fp.shape} for a perturbed W, but {f0.shape} at W")
        Jflat[:, k] = ((fp - fm) / (2 * h)).reshape(-1)
    return J


def _default_tolerances(dtype: np.dtype) -> tuple[float, float]:
    """(rtol, atol) for a claimed Jacobian of `dtype`: the claim is rounded to its precision."""
    if dtype in (np.float32, np.complex64):
        return 1e-4, 1e-5
    return 1e-6, 1e-7


def check_jacobian(
    f: Callable[[np.ndarray], ArrayLike],
    W: ArrayLike,
    J: ArrayLike | Jacobian,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    eps: float | None = None,
    max_bytes: int | None = None,
) -> JacobianCheck:
    """Compare a claimed Jacobian of f at W with central differences.

    J: an array in numerator layout (f(W).shape + W.shape) or a matderiv Jacobian.
    An entry passes when |J - N| <= atol + rtol * |N|, with N the numerical Jacobian;
    the defaults depend on J's dtype (1e-6/1e-7 double, 1e-4/1e-5 single), with atol
    scaled by max(1, max|N|).  Returns a JacobianCheck; raises JacobianMismatch naming
    the worst entry when any entry fails.
    """
    if isinstance(J, Jacobian):
        claimed = J.toarray("numerator", max_bytes=max_bytes)
    else:
        claimed = v.as_array(J, "J", range(0, 65))
        claimed = v.contiguous(claimed, v.common_dtype({"J": claimed}))
    N = numerical_jacobian(f, W, eps=eps, max_bytes=max_bytes)
    if claimed.shape != N.shape:
        raise ValueError(
            f"J: expected shape {N.shape} (f(W).shape + W.shape, numerator layout), got {claimed.shape}"
        )
    d_rtol, d_atol = _default_tolerances(claimed.dtype)
    rtol = d_rtol if rtol is None else float(rtol)
    scale = max(1.0, float(np.max(np.abs(N), initial=0.0)))
    atol = d_atol * scale if atol is None else float(atol)
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not tol >= 0:
            raise ValueError(f"{name}: expected a non-negative float, got {tol!r}")
    with np.errstate(over="ignore", invalid="ignore"):  # inf/NaN entries are verdicts, not warnings
        err = np.abs(claimed - N)  # promotes: a complex claim is not cast to a real N
        rel = err / np.maximum(np.abs(N), np.finfo(np.float64).tiny)
        excess = err - (atol + rtol * np.abs(N))
    bad = ~(excess <= 0)  # NaN counts as a failure
    if err.size == 0:
        return JacobianCheck(0.0, (), 0.0, (), 0, rtol, atol, N)
    i_abs = _argmax(err)
    i_rel = _argmax(rel)
    result = JacobianCheck(
        float(err[i_abs]), i_abs, float(rel[i_rel]), i_rel, int(bad.sum()), rtol, atol, N
    )
    if result.n_bad:
        worst = _argmax(np.where(np.isnan(excess), np.inf, excess))
        raise JacobianMismatch(
            f"J disagrees with central differences in {result.n_bad} of {err.size} entries; "
            f"worst at index {worst}: J = {claimed[worst].item()!r}, numerical = {N[worst].item()!r}, "
            f"abs error {err[worst]:.3g}, rel error {rel[worst]:.3g} (rtol={rtol:.3g}, atol={atol:.3g})"
        )
    return result


def _argmax(a: np.ndarray) -> tuple[int, ...]:
    """Index of the largest entry, NaN counted as largest."""
    flat = np.where(np.isnan(a), np.inf, a).reshape(-1)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(flat)), a.shape))
