"""Shared fixtures and independent references for the matderiv test-suite.

The references here never call matderiv: they build every form of d(Wx)/dW and
d(xW)/dW from np.eye, np.einsum and np.kron (or by placing x's entries one by one),
so a test compares the library against the textbook formula, not against itself.
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import settings

# --- hypothesis profiles ----------------------------------------------------------------
# Two ways to run the suite:
#
#   python -m pytest -q
#       CI and the README command: profile "ci" (loaded below for every run). Derandomized:
#       every run of a command draws the same examples, whatever the machine or earlier
#       runs; no example database, so no saved failure replays (Hypothesis still caches
#       the constants it reads from the source, and patches for failures, in the
#       git-ignored .hypothesis/: neither changes what is drawn); --hypothesis-seed has no
#       effect under it.
#
#   python -m pytest -q --hypothesis-profile=explore [--hypothesis-seed=K] [tests/test_properties.py]
#       development: new random examples on every run (or those of seed K); failures are
#       saved in .hypothesis/ (git-ignored) and replayed first by later explore runs (not
#       with --hypothesis-seed, which neither reads nor writes the database). A failure
#       prints the seed or a @reproduce_failure blob (print_blob) to replay it.
#
# The tests' own @settings(...) give max_examples (and health checks) only and inherit
# the rest from the profile loaded here (the plugin loads --hypothesis-profile before
# any test module is imported).
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("explore", derandomize=False, deadline=None, print_blob=True)  # default database
settings.load_profile("ci")
# ------------------------------------------------------------------------------------------

from matderiv import _batch, _memory, statistics


@pytest.fixture(autouse=True)
def _fresh_memory_reading(monkeypatch):
    """Every test starts without a recent reading of the memory limit (calls reuse one for
    a second): tests that fake /proc or memory_limit see their own values at once."""
    monkeypatch.setattr(_memory, "_limit_seen", (-float("inf"), "", (None, "")))

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
REAL_DTYPES = [np.float32, np.float64]
CONVENTIONS = ["Wx", "xW"]
LAYOUTS = ["numerator", "denominator"]
ORDERS = ["F", "C"]
FORMATS = ["csr", "csc", "coo"]

#: Relative tolerance per dtype wherever arithmetic (sums, products) happens.
#: Structural outputs (toarray, tovec, tosparse) are compared exactly instead.
RTOL = {
    np.dtype(np.float32): 2e-5,
    np.dtype(np.float64): 1e-12,
    np.dtype(np.complex64): 2e-5,
    np.dtype(np.complex128): 1e-12,
}


def rtol_for(dtype) -> float:
    return RTOL[np.dtype(dtype)]


def assert_close(actual, expected, dtype) -> None:
    """assert_allclose with the dtype's rtol and an atol scaled by the result's magnitude."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    rtol = rtol_for(dtype)
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def peak_bytes(fn) -> int:
    """The peak of Python-visible allocations (numpy's included) while fn() runs."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def forced_norms(X, G, bias: bool, route) -> np.ndarray:
    """The batch core's per-sample norms with a 3-D route forced ("gram", "materialize"; None
    picks), in the inputs' dtype as per_sample_grad_norms returns them, on one thread."""
    b = _batch.Inputs(X, G).load([], what="forced_norms")
    return _batch.norms(b, bias, 1, route).astype(b.dtype)


def forced_dots(X, G, X2, G2, same: bool, bias: bool, route) -> np.ndarray:
    """statistics.grad_dots (per_sample_grad_dots without normalize) with a 3-D route forced."""
    dtype = np.result_type(X, G, X2, G2)
    b, b2 = (_batch.Inputs(*pair).coerce(dtype) for pair in ((X, G), (X2, G2)))
    return statistics.grad_dots(b, b2, same, bias, route)


def stable_norms(a, axis) -> np.ndarray:
    """Euclidean norms of `a` over `axis` (an int or a tuple) in float64, without the
    underflow (or overflow) of a naive sum of squares: s * sqrt(sum((a / s)^2)) with
    s = max |a|, so that no square that matters underflows (the largest scaled entry is 1).
    NaN where any entry is NaN, else inf where any is infinite; 0 over no entries."""
    a = np.abs(np.asarray(a, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        s = np.max(a, axis=axis, initial=0.0, keepdims=True)
    finite = np.isfinite(s) & (s > 0)
    safe = np.where(finite, s, 1.0)
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = np.where(np.isfinite(a), a / safe, 0.0)
        norms = np.where(finite, s, 0.0) * np.sqrt(np.square(scaled).sum(axis=axis, keepdims=True))
    norms = np.where(np.isinf(a).any(axis=axis, keepdims=True), np.inf, norms)
    norms = np.where(np.isnan(a).any(axis=axis, keepdims=True), np.nan, norms)
    return np.squeeze(norms, axis=axis)


def random_array(rng: np.random.Generator, shape, dtype, *, zeros: bool = True) -> np.ndarray:
    """Random values of `dtype` (complex ones with a nonzero imaginary part).

    With zeros=True a few entries are exactly 0, so sparse patterns are exercised
    with explicit zeros.
    """
    a = rng.standard_normal(shape)
    if np.issubdtype(dtype, np.complexfloating):
        a = a + 1j * rng.standard_normal(shape)
    if zeros and a.size >= 3:
        a.reshape(-1)[:: max(1, a.size // 3)] = 0
    return a.astype(dtype)


def wider(dtype) -> np.dtype:
    """The double-precision dtype references are computed in."""
    return np.dtype(np.complex128) if np.issubdtype(dtype, np.complexfloating) else np.dtype(np.float64)


# --- references: single x ------------------------------------------------------------
def ref_tensor(x: np.ndarray, n: int, convention: str, layout: str = "numerator") -> np.ndarray:
    """Dense tensor by einsum with np.eye.

    Wx: D[i, a, b] = delta_ia x_b, (n, n, m); denominator E[a, b, i] = D[i, a, b].
    xW: T[j, a, b] = x_a delta_jb, (n, m, n); denominator E[a, b, j] = T[j, a, b].
    A 2-D x (B, m) gives a leading B axis.
    """
    eye = np.eye(n, dtype=x.dtype)
    if convention == "Wx":
        D = np.einsum("ia,...b->...iab", eye, x)
    else:
        D = np.einsum("...a,jb->...jab", x, eye)
    if layout == "denominator":
        D = np.moveaxis(D, -3, -1)
    return D


def ref_vec(x: np.ndarray, n: int, convention: str, order: str) -> np.ndarray:
    """df/dvec(W) by np.kron: Wx F = x^T (x) I, Wx C = I (x) x^T, xW F = I (x) x^T, xW C = x^T (x) I.

    A 2-D x (B, m) gives the sample-major stack (B*n, n*m).
    """
    eye = np.eye(n, dtype=x.dtype)
    if x.ndim == 2:
        rows = [ref_vec(xb, n, convention, order) for xb in x]
        return np.concatenate(rows, axis=0) if rows else np.zeros((0, n * x.shape[1]), x.dtype)
    xr = x[None, :]
    kron_first = (convention == "Wx") == (order == "F")
    return np.kron(xr, eye) if kron_first else np.kron(eye, xr)


def ref_placed(x: np.ndarray, n: int, convention: str, layout: str = "numerator") -> np.ndarray:
    """The dense tensor built by assigning x's entries one by one (no arithmetic at all).

    Used where x holds NaN/inf, where 0 * inf would spoil an einsum reference.
    """
    xs = np.atleast_2d(x)
    B, m = xs.shape
    if convention == "Wx":
        D = np.zeros((B, n, n, m), dtype=x.dtype)
        for b in range(B):
            for i in range(n):
                D[b, i, i, :] = xs[b]
    else:
        D = np.zeros((B, n, m, n), dtype=x.dtype)
        for b in range(B):
            for j in range(n):
                D[b, j, :, j] = xs[b]
    if layout == "denominator":
        D = np.moveaxis(D, -3, -1)
    return D if x.ndim == 2 else D[0]


def vec(W: np.ndarray, order: str) -> np.ndarray:
    """vec(W): column-major for "F", W.ravel() for "C" (the last two axes, any leading ones)."""
    if order == "F":
        W = np.swapaxes(W, -1, -2)
    return W.reshape(W.shape[:-2] + (-1,))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


# --- kernel call counts: evidence that the parallel branches run ------------------------------
def kernel_calls_since(before: dict) -> dict:
    """{kernel: (calls, threaded)} since `before`, a snapshot of _openmp.kernel_calls()."""
    from matderiv._kernels import _openmp

    return {k: (calls - before[k][0], threaded - before[k][1]) for k, (calls, threaded) in _openmp.kernel_calls().items()}


def assert_every_kernel_threaded(counts: dict) -> None:
    """Every kernel ran and took its threaded branch at least once (none can in a serial build)."""
    from matderiv._kernels import _openmp

    assert [k for k, (calls, _) in counts.items() if calls == 0] == [], counts
    if _openmp.have_openmp():
        assert [k for k, (_, threaded) in counts.items() if threaded == 0] == [], counts
    else:
        assert [k for k, (_, threaded) in counts.items() if threaded] == [], counts


@pytest.fixture
def threaded_kernels(monkeypatch):
    """The serial threshold at 0 during one test: every kernel call given more than one thread
    starts a team, here (set_serial_below_bytes) and in the processes the test starts by spawn
    or forkserver (MATDERIV_SERIAL_BELOW_BYTES). Yields a function that returns the counts
    (kernel_calls_since) from the start of the test."""
    import matderiv as md
    from matderiv._kernels import _openmp

    monkeypatch.setenv("MATDERIV_SERIAL_BELOW_BYTES", "0")
    previous = md.set_serial_below_bytes(0)
    before = _openmp.kernel_calls()
    yield lambda: kernel_calls_since(before)
    md.set_serial_below_bytes(previous)


def pytest_terminal_summary(terminalreporter):
    """The kernels' calls and threaded calls over the run (this process, not its children)."""
    from matderiv._kernels import _openmp

    terminalreporter.section("matderiv kernel calls (this process)")
    terminalreporter.write_line(f"{'kernel':12s} {'calls':>8s} {'threaded':>9s}")
    for name, (calls, threaded) in _openmp.kernel_calls().items():
        terminalreporter.write_line(f"{name:12s} {calls:8d} {threaded:9d}")
    terminalreporter.write_line(f"serial below {_openmp.get_serial_below_bytes()} bytes at the end of the run")
