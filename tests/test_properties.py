"""Property tests: every Jacobian form and every gradient function against an independent
numpy reference, over random shapes (0 and 1 included), dtypes (int and bool inputs too),
conventions, layouts, orders, formats, thread counts and the memory layout of the inputs
(Fortran order, negative strides, strided and broadcast views, read-only, byte-swapped and
misaligned buffers).

Public API only: the references are np.einsum and np.kron (tests/conftest.py), computed
from a plain numpy copy of the inputs in double precision, so these tests keep holding
while matderiv's internals change. Structural outputs (toarray, tovec, tosparse) must be
exact; arithmetic ones must be within the dtype's rtol of the sum of the absolute values
of their terms, a bound that cancellation cannot loosen.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import matderiv as md
from conftest import CONVENTIONS, FORMATS, LAYOUTS, ORDERS, ref_tensor, ref_vec, rtol_for, stable_norms

# Example counts and health checks only: derandomization, the database, the deadline and
# print_blob come from the hypothesis profile that tests/conftest.py loads ("ci" by default,
# "explore" with --hypothesis-profile=explore), which this object inherits at import.
PROPERTIES = settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

JACOBIAN_DTYPES = [np.bool_, np.int8, np.int64, np.uint16, np.float32, np.float64, np.complex64, np.complex128]
GRADIENT_DTYPES = [np.bool_, np.int32, np.uint8, np.float32, np.float64]
MEMORY_LAYOUTS = ("C", "F", "negative", "strided", "broadcast")
SPARSE_TYPES = {"csr": sp.csr_array, "csc": sp.csc_array, "coo": sp.coo_array}
N_THREADS = [None, 1, 2, 3]
SIZES = st.integers(0, 4)


# --- inputs ------------------------------------------------------------------------------
def elements(dtype):
    """Finite values of moderate size: no overflow, no NaN; floats may be subnormal."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return st.booleans()
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return st.integers(max(info.min, -50), min(info.max, 50))
    if dtype.kind == "f":
        return st.floats(-100, 100, width=8 * dtype.itemsize)
    return st.complex_numbers(max_magnitude=100, width=8 * dtype.itemsize, allow_nan=False, allow_infinity=False)


def _storage(values: np.ndarray, layout: str):
    """A contiguous block and the view of it that holds `values` in the given layout."""
    if layout == "F":
        return np.asfortranarray(values), lambda s: s
    if layout == "negative":  # every axis reversed
        return np.ascontiguousarray(np.flip(values)), np.flip
    if layout == "strided":  # every other element of the last axis
        block = np.zeros(values.shape[:-1] + (2 * values.shape[-1],), values.dtype)
        block[..., ::2] = values
        return block, lambda s: s[..., ::2]
    if layout == "broadcast":  # one row repeated along the first axis (stride 0)
        return values[:1].copy(), lambda s: np.broadcast_to(s, values.shape)
    return np.ascontiguousarray(values), lambda s: s


def _relocate(block: np.ndarray, *, byteswap: bool, misaligned: bool) -> np.ndarray:
    """A copy of `block` (same shape, same C or F order) in a fresh buffer, in the given
    byte order, starting at an address that is (misaligned=True) or is not a multiple of
    the dtype's alignment: np.frombuffer at an offset, as data read from a file would be."""
    dtype = block.dtype.newbyteorder() if byteswap else block.dtype
    raw = bytearray(block.nbytes + 64)
    start = np.frombuffer(raw, np.uint8).ctypes.data
    offset = (-start) % 16 + (1 if misaligned and dtype.itemsize > 1 else 0)
    flat = np.frombuffer(raw, dtype=dtype, count=block.size, offset=offset)
    order = "F" if block.flags.f_contiguous and not block.flags.c_contiguous else "C"
    copy = flat.reshape(block.shape, order=order)
    copy[...] = block
    return copy


@st.composite
def array_views(draw, dtype, shape):
    """An array of `dtype` and `shape` in one of many memory layouts."""
    values = draw(hnp.arrays(dtype, shape, elements=elements(dtype)))
    layout = draw(st.sampled_from(MEMORY_LAYOUTS if len(shape) else ("C",)))
    block, view = _storage(values, layout)
    block = _relocate(block, byteswap=draw(st.booleans()), misaligned=draw(st.booleans()))
    block.flags.writeable = not draw(st.booleans())
    return view(block)


def result_dtype(*dtypes) -> np.dtype:
    """The documented policy: bool and integers become float64, then numpy's promotion."""
    return np.result_type(*(np.float64 if np.dtype(d).kind in "biu" else np.dtype(d) for d in dtypes))


def plain(a: np.ndarray, dtype) -> np.ndarray:
    """A fresh C-contiguous native copy of `a` in `dtype`, made by numpy alone."""
    return np.array(a, dtype=np.dtype(dtype).newbyteorder("="), order="C")


# --- comparisons -----------------------------------------------------------------------
def assert_exact(actual, expected, dtype) -> None:
    actual = np.asarray(actual)
    assert actual.dtype == dtype, (actual.dtype, dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert np.array_equal(actual, expected)


def assert_within(actual, expected, bound, dtype) -> None:
    """|actual - expected| <= rtol(dtype) * bound (+ underflow slack), elementwise, where
    `bound` is the sum of the absolute values of the terms behind each entry."""
    actual = np.asarray(actual)
    assert actual.dtype == dtype, (actual.dtype, dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    # absolute slack for underflow: every product, square or result that falls below the
    # normal range is rounded by up to half the dtype's smallest subnormal (in the library
    # and in the float64 reference alike), then maybe multiplied by another factor (<= 1e4
    # here); 1e3 * tiny is 1e3 * 2^52 (float64) or 1e3 * 2^23 (float32) smallest subnormals,
    # far more than the few dozen such roundings behind an entry
    slack = 1e3 * np.finfo(dtype).tiny
    err = np.abs(actual.astype(np.complex128) - expected)
    ok = err <= rtol_for(dtype) * bound + slack
    assert ok.all(), f"worst entry {np.unravel_index(np.argmax(err - rtol_for(dtype) * bound), err.shape)}"


def wide(a: np.ndarray) -> np.ndarray:
    return a.astype(np.complex128 if a.dtype.kind == "c" else np.float64)


# --- Jacobians -----------------------------------------------------------------------------
@PROPERTIES
@given(st.data())
def test_every_jacobian_form_matches_kron_and_einsum(data):
    draw = data.draw
    convention = draw(st.sampled_from(CONVENTIONS), label="convention")
    batched = draw(st.booleans(), label="batched")
    B, n, m = draw(SIZES, label="B"), draw(SIZES, label="n"), draw(SIZES, label="m")
    dtype = draw(st.sampled_from(JACOBIAN_DTYPES), label="dtype")
    x = draw(array_views(dtype, (B, m) if batched else (m,)), label="x")
    n_threads = draw(st.sampled_from(N_THREADS), label="n_threads")

    J = (md.jacobian_wx if convention == "Wx" else md.jacobian_xw)(x, n)
    rdt = result_dtype(dtype)
    xr = plain(x, rdt)
    S = B if batched else 1
    W_shape = (n, m) if convention == "Wx" else (m, n)
    assert J.shape == ((B,) if batched else ()) + (n,) + W_shape
    assert J.dtype == rdt

    for layout in LAYOUTS:
        assert_exact(J.toarray(layout, n_threads=n_threads), ref_tensor(xr, n, convention, layout), rdt)
    for order in ORDERS:
        V = ref_vec(xr, n, convention, order)
        assert_exact(J.tovec(order, n_threads=n_threads), V, rdt)
        for fmt in FORMATS:
            A = J.tosparse(fmt, order, n_threads=n_threads)
            assert type(A) is SPARSE_TYPES[fmt]
            assert A.nnz == S * n * m and A.has_canonical_format
            assert_exact(A.toarray(), V, rdt)

        op = J.aslinearoperator(order)
        assert op.shape == V.shape
        u_dtype = draw(st.sampled_from(JACOBIAN_DTYPES), label="operator vector dtype")
        u = draw(array_views(u_dtype, (n * m,)), label=f"matvec u, order {order}")
        w = draw(array_views(u_dtype, (S * n,)), label=f"rmatvec w, order {order}")
        odt = result_dtype(rdt, u_dtype)
        Vw = wide(V)
        assert_within(op.matvec(u), Vw @ wide(plain(u, odt)), np.abs(Vw) @ np.abs(wide(plain(u, odt))), odt)
        assert_within(
            op.rmatvec(w), Vw.conj().T @ wide(plain(w, odt)), np.abs(Vw).T @ np.abs(wide(plain(w, odt))), odt
        )

    dW_dtype = draw(st.sampled_from(JACOBIAN_DTYPES), label="dW dtype")
    dW = draw(array_views(dW_dtype, W_shape), label="dW")
    pdt = result_dtype(rdt, dW_dtype)
    xw, dWw = wide(plain(xr, pdt)), wide(plain(dW, pdt))
    spec = "...b,ab->...a" if convention == "Wx" else "...a,ab->...b"  # dW @ x, x @ dW
    assert_within(J.jvp(dW), np.einsum(spec, xw, dWw), np.einsum(spec, abs(xw), abs(dWw)), pdt)

    v_dtype = draw(st.sampled_from(JACOBIAN_DTYPES), label="v dtype")
    v = draw(array_views(v_dtype, (B, n) if batched else (n,)), label="v")
    vdt = result_dtype(rdt, v_dtype)
    xw, vw = wide(plain(xr, vdt)), wide(plain(v, vdt))
    spec = "...i,...b->...ib" if convention == "Wx" else "...a,...j->...aj"  # outer(v, x), outer(x, v)
    args = (vw, xw) if convention == "Wx" else (xw, vw)
    expected = np.einsum(spec, *args)
    assert_within(J.vjp(v, n_threads=n_threads), expected, np.abs(expected), vdt)


# --- gradients ---------------------------------------------------------------------------
class Batch:
    """X (B, m) or (B, T, m) and G (B, n) or (B, T, n) as drawn (any dtype and layout),
    with the per-sample gradients and bias gradients computed by einsum in float64, and
    the sums of absolute values of their terms (the error bounds)."""

    def __init__(self, X, G, convention: str, sequences: bool):
        self.X, self.G, self.convention = X, G, convention
        B, m, n = X.shape[0], X.shape[-1], G.shape[-1]
        self.B, self.steps = B, (X.shape[1] if sequences else 1)
        self.dtype = result_dtype(X.dtype, G.dtype)
        self.X3 = plain(X, np.float64).reshape(B, self.steps, m)  # 2-D: sequences of one step
        self.G3 = plain(G, np.float64).reshape(B, self.steps, n)
        spec = "btn,btm->bnm" if convention == "Wx" else "btm,btn->bmn"
        pair = (self.G3, self.X3) if convention == "Wx" else (self.X3, self.G3)
        self.grads = np.einsum(spec, *pair)  # (B,) + W.shape
        self.bound = np.einsum(spec, *map(np.abs, pair))
        self.db, self.db_bound = self.G3.sum(axis=1), np.abs(self.G3).sum(axis=1)
        # grad_variance forms its sums from X and G shifted by the means c and a of their
        # rows: h_b = sum_t G_bt (x) (X_bt - c) + (G_bt - a) (x) c has g_b's spread, and the
        # magnitudes of these terms bound its rounding (they exceed |G_bt| |X_bt| where
        # G_bt (x) X_bt vanishes but the deviations from the means do not)
        rows = B * self.steps
        c = self.X3.reshape(rows, m).mean(axis=0) if rows else np.zeros(m)
        a = self.G3.reshape(rows, n).mean(axis=0) if rows else np.zeros(n)
        shifted = np.einsum("btn,btm->bnm", np.abs(self.G3), np.abs(self.X3 - c))
        shifted += np.einsum("btn,m->bnm", np.abs(self.G3 - a), np.abs(c))
        self.shifted_bound = shifted if convention == "Wx" else shifted.transpose(0, 2, 1)

    def __repr__(self) -> str:  # what a falsifying example shows
        with np.printoptions(threshold=10**6, floatmode="unique"):
            return f"Batch(convention={self.convention!r}, X={self.X!r}, G={self.G!r})"


@st.composite
def batches(draw, *, sequences: bool | None = None, convention: str | None = None, n: int | None = None, m: int | None = None) -> Batch:
    convention = draw(st.sampled_from(CONVENTIONS), label="convention") if convention is None else convention
    sequences = draw(st.booleans(), label="3-D") if sequences is None else sequences
    B, T = draw(SIZES, label="B"), draw(SIZES, label="T")
    n = draw(SIZES, label="n") if n is None else n
    m = draw(SIZES, label="m") if m is None else m
    lead = (B, T) if sequences else (B,)
    X = draw(array_views(draw(st.sampled_from(GRADIENT_DTYPES), label="X dtype"), lead + (m,)), label="X")
    G = draw(array_views(draw(st.sampled_from(GRADIENT_DTYPES), label="G dtype"), lead + (n,)), label="G")
    return Batch(X, G, convention, sequences)


def check(result, expected, bound, db_expected, db_bound, dtype, bias: bool) -> None:
    """assert_within for a weight result, or for (weight, bias) results when bias=True."""
    if bias:
        result, db = result
        assert_within(db, db_expected, db_bound, dtype)
    assert_within(result, expected, bound, dtype)


def _batch(x, g, dtype=np.float64) -> Batch:
    return Batch(np.array([[x]], dtype), np.array([[g]], dtype), "Wx", False)


@settings(PROPERTIES, max_examples=400)  # cheap examples: explore more of them
@given(batches(), st.booleans(), st.sampled_from(N_THREADS), st.floats(0.1, 100))
# found by seeds that failed: a norm of 2^-150 rounds to 0 in float32 (ties to even) ...
@example(_batch(1.1e-44, 0.0625, np.float32), False, None, 1.0)
# ... a norm of 2e-197 whose square underflows (a naive reference gave 0) ...
@example(_batch(4.550662785441595e-99, 4.550662785441595e-99), False, None, 1.0)
# ... and the library's ||X||^2 = 1e-326 underflows to 0: a norm of 0 for 1e-161
@example(_batch(1e-163, 100.0), False, None, 1.0)
def test_every_gradient_function_matches_einsum(batch, bias, n_threads, max_norm):
    X, G, B, rdt, kw = batch.X, batch.G, batch.B, batch.dtype, dict(convention=batch.convention, bias=bias)
    grads, bound, db, db_bound = batch.grads, batch.bound, batch.db, batch.db_bound

    check(md.per_sample_grads(X, G, n_threads=n_threads, **kw), grads, bound, db, db_bound, rdt, bias)
    check(
        md.batch_grad(X, G, reduce="sum", **kw),
        grads.sum(axis=0), bound.sum(axis=0), db.sum(axis=0), db_bound.sum(axis=0), rdt, bias,
    )
    mean = md.batch_grad(X, G, reduce="mean", **kw)
    if B == 0:  # the mean over no samples is NaN (0/0), as np.mean of an empty axis
        assert all(np.isnan(r).all() and r.dtype == rdt for r in (mean if bias else (mean,)))
    else:
        sums = (grads, bound, db, db_bound)
        check(mean, *(a.sum(axis=0) / B for a in sums), rdt, bias)

    # Norms. The reference is scaled (conftest.stable_norms): a naive sqrt(sum(g**2))
    # loses everything below ~1e-154, where the squares underflow.
    T, n, m = batch.steps, G.shape[-1], X.shape[-1]
    norms_ref = stable_norms(np.concatenate([grads.reshape(B, n * m)] + ([db] if bias else []), axis=1), 1)
    g_norm = stable_norms(batch.G3.reshape(B, T * n), 1)  # ||G[b]||
    x_norm = stable_norms(batch.X3.reshape(B, T * m), 1) + (np.sqrt(T) if bias else 0)  # ||X[b]|| (+ the bias' ones)
    sub64, sub = np.finfo(np.float64).smallest_subnormal, np.finfo(rdt).smallest_subnormal
    norm_tol = (
        # rounding, relative to the norm
        rtol_for(rdt) * norms_ref
        # the 3-D Gram route's cancellation: about sqrt(eps) * ||G[b]|| ||X[b]|| (documented;
        # 1e-7 > sqrt(eps64)), and the rounding of the terms of a cancelling sum
        + (rtol_for(rdt) + 1e-7) * g_norm * x_norm
        # underflow of the float64 squares and dot products the library sums (k terms
        # give an absolute error <= k * sub64 / 2 in a squared norm, so <= sqrt(k * sub64)
        # in the norm): ||G[b]||^2 and ||X[b]||^2 are formed apart (2-D: the norm is their
        # product; 3-D Gram: products of T x T dot products), so each one's error is
        # multiplied by the other norm; the materialize route sums n*m squares
        + np.sqrt(T * sub64) * (np.sqrt(m) * g_norm + np.sqrt(n) * x_norm)
        + np.sqrt(n * m * sub64)
        # underflow of the n*m entries of the materialized gradients (T products each),
        # formed in the inputs' dtype
        + T * np.sqrt(n * m) * sub
        # rounding of the float64 norm into the output dtype: its smallest subnormal
        + sub
    )
    norms = md.per_sample_grad_norms(X, G, bias=bias, n_threads=n_threads)
    assert norms.dtype == rdt and norms.shape == (B,)
    assert (np.abs(norms - norms_ref) <= norm_tol).all(), (norms, norms_ref, norm_tol)

    # Clipping: c_b = min(1, max_norm / ||g_b||), 1 for a zero gradient. An error d in a
    # norm moves each entry of c_b g_b by at most d (|entry| <= ||g_b||).
    with np.errstate(divide="ignore", over="ignore"):  # max_norm / 0 or / a subnormal: inf, c = 1
        factor = np.minimum(1.0, max_norm / norms_ref)
    slack = norm_tol.sum() / rtol_for(rdt)
    *sums, got_norms = md.clip_and_sum(X, G, max_norm, n_threads=n_threads, **kw)
    assert (np.abs(got_norms - norms_ref) <= norm_tol).all() and got_norms.dtype == rdt, (got_norms, norms_ref, norm_tol)
    check(
        tuple(sums) if bias else sums[0],
        np.einsum("b,bij->ij", factor, grads), np.einsum("b,bij->ij", factor, bound) + slack,
        factor @ db, factor @ db_bound + slack, rdt, bias,
    )


# --- gradient statistics -------------------------------------------------------------------
def gram(a: np.ndarray) -> np.ndarray:
    """sum over samples and steps of outer(a[b, t], a[b, t])."""
    return np.einsum("bti,btj->ij", a, a)


@st.composite
def batch_pairs(draw) -> tuple[Batch, Batch | None]:
    """A batch and, half of the time, a second one with the same ndim, n and m."""
    first = draw(batches())
    if not draw(st.booleans(), label="second batch"):
        return first, None
    n, m = first.G.shape[-1], first.X.shape[-1]
    return first, draw(batches(sequences=first.X.ndim == 3, convention=first.convention, n=n, m=m))


@settings(PROPERTIES, max_examples=400)
@given(batch_pairs(), st.booleans(), st.sampled_from([0, 1]), st.sampled_from(["expand", "reduce"]))
def test_every_gradient_statistic_matches_einsum(pair, bias, ddof, mode):
    batch, other = pair
    X, G, B, rdt, kw = batch.X, batch.G, batch.B, batch.dtype, dict(convention=batch.convention, bias=bias)
    grads, bound, db, db_bound = batch.grads, batch.bound, batch.db, batch.db_bound

    # sum of squares: an error e in g_b moves g_b^2 by about 2 |g_b| e <= 2 bound_b e
    check(
        md.sum_grad_squared(X, G, **kw),
        (grads**2).sum(axis=0), 3 * (bound**2).sum(axis=0), (db**2).sum(axis=0), 3 * (db_bound**2).sum(axis=0),
        rdt, bias,
    )

    var = md.grad_variance(X, G, ddof=ddof, **kw)
    if B == 0:  # no samples: NaN, as np.var of an empty axis
        assert all(np.isnan(r).all() and r.dtype == rdt for r in (var if bias else (var,)))
    elif B > ddof:
        dof = B - ddof
        check(
            var,
            np.var(grads, axis=0, ddof=ddof), 4 * (bound**2 + batch.shifted_bound**2).sum(axis=0) / dof,
            np.var(db, axis=0, ddof=ddof), 4 * (db_bound**2).sum(axis=0) / dof,
            rdt, bias,
        )

    # Gram matrix of the per-sample gradients: K[a, b] = <g_a, g'_b> (+ <db_a, db'_b>)
    second = other or batch
    K = md.per_sample_grad_dots(X, G, *((other.X, other.G) if other else ()), bias=bias)
    K_ref = np.einsum("aij,bij->ab", grads, second.grads)
    K_bound = np.einsum("aij,bij->ab", bound, second.bound)
    if bias:
        K_ref += db @ second.db.T
        K_bound += db_bound @ second.db_bound.T
    assert_within(K, K_ref, K_bound, result_dtype(rdt, second.dtype))
    if other is None:
        assert np.array_equal(K, K.T)  # exactly symmetric

    # K-FAC factors of the "Wx" layout; bias appends a 1 to every x
    A, S = md.kfac_factors(X, G, bias=bias, mode=mode)
    X3 = np.concatenate([batch.X3, np.ones(batch.X3.shape[:-1] + (1,))], axis=-1) if bias else batch.X3
    G3, T = batch.G3, batch.steps
    if B == 0:  # a mean over no samples
        assert np.isnan(A).all() and np.isnan(S).all()
    elif T > 0:
        if mode == "expand":
            A_ref, A_bound = gram(X3) / (B * T), gram(np.abs(X3)) / (B * T)
            S_ref, S_bound = gram(G3) / B, gram(np.abs(G3)) / B
        else:
            xbar, gbar = X3.mean(axis=1), G3.sum(axis=1)
            xabs, gabs = np.abs(X3).mean(axis=1), np.abs(G3).sum(axis=1)
            A_ref, A_bound = xbar.T @ xbar / B, xabs.T @ xabs / B
            S_ref, S_bound = gbar.T @ gbar / B, gabs.T @ gabs / B
        assert_within(A, A_ref, A_bound, rdt)
        assert_within(S, S_ref, S_bound, rdt)
    assert np.array_equal(A, A.T, equal_nan=True) and np.array_equal(S, S.T, equal_nan=True)


@pytest.mark.parametrize("big", [96.0, 1e4])
def test_grad_variance_float32_2d_correlated_samples(big):
    """Per-sample gradients 3, 0, 0: np.var is 2 (float32 exactly); X's large middle row
    moves mean(X) but not g."""
    X = np.array([[1.0], [big], [1.0]], np.float32)
    G = np.array([[3.0], [0.0], [0.0]], np.float32)
    expected = np.var(np.array([[[3.0]], [[0.0]], [[0.0]]]), axis=0)
    assert_within(md.grad_variance(X, G), expected, 4 * 9 / 3, np.dtype(np.float32))
