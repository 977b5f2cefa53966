"""md.numerical_jacobian and md.check_jacobian: central differences and the verdict."""
from __future__ import annotations

import re

import numpy as np
import pytest

import matderiv as md
from conftest import REAL_DTYPES, random_array


# ===================================================================================
# numerical_jacobian
# ===================================================================================
def test_numerical_jacobian_shape_is_f_shape_plus_W_shape(rng):
    W = rng.standard_normal((3, 4))
    x = rng.standard_normal(4)
    assert md.numerical_jacobian(lambda W: W @ x, W).shape == (3, 3, 4)
    assert md.numerical_jacobian(lambda W: np.sum(W**2), W).shape == (3, 4)  # scalar f
    assert md.numerical_jacobian(lambda W: np.outer(W @ x, x), W).shape == (3, 4, 3, 4)
    W3 = rng.standard_normal((2, 3, 2))
    assert md.numerical_jacobian(lambda W: W.sum(axis=0), W3).shape == (3, 2, 2, 3, 2)
    assert md.numerical_jacobian(lambda w: w**3, np.float64(2.0)).shape == ()  # 0-d W


def test_numerical_jacobian_of_linear_map_is_delta_x(rng):
    W = rng.standard_normal((3, 4))
    x = rng.standard_normal(4)
    N = md.numerical_jacobian(lambda W: W @ x, W)
    expected = np.einsum("ia,b->iab", np.eye(3), x)
    np.testing.assert_allclose(N, expected, rtol=1e-9, atol=1e-10)


def test_numerical_jacobian_nonlinear_matches_analytic(rng):
    """f(W) = tanh(W @ x): df_i/dW_ab = delta_ia (1 - tanh(Wx)_i^2) x_b."""
    n, m = 3, 5
    W = rng.standard_normal((n, m)) * 0.3
    x = rng.standard_normal(m)
    N = md.numerical_jacobian(lambda W: np.tanh(W @ x), W)
    s = 1 - np.tanh(W @ x) ** 2
    expected = np.einsum("ia,i,b->iab", np.eye(n), s, x)
    assert N.dtype == np.float64
    np.testing.assert_allclose(N, expected, rtol=1e-8, atol=1e-10)
    # sum(W**2) -> 2 W; w**3 at 2 -> 12
    np.testing.assert_allclose(md.numerical_jacobian(lambda W: np.sum(W**2), W), 2 * W, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(md.numerical_jacobian(lambda w: w**3, 2.0), 12.0, rtol=1e-8)


def test_numerical_jacobian_complex_holomorphic(rng):
    """f(W) = exp(W) @ x for complex W: df_i/dW_ab = delta_ia exp(W_ab) x_b."""
    n, m = 2, 3
    W = random_array(rng, (n, m), np.complex128, zeros=False) * 0.5
    x = random_array(rng, (m,), np.complex128, zeros=False)
    N = md.numerical_jacobian(lambda W: np.exp(W) @ x, W)
    assert N.dtype == np.complex128
    expected = np.einsum("ia,ab,b->iab", np.eye(n), np.exp(W), x)
    np.testing.assert_allclose(N, expected, rtol=1e-8, atol=1e-10)
    # real W, complex-valued f
    Wr = rng.standard_normal((n, m))
    Nr = md.numerical_jacobian(lambda W: W @ x, Wr)
    assert Nr.dtype == np.complex128
    np.testing.assert_allclose(Nr, np.einsum("ia,b->iab", np.eye(n), x), rtol=1e-9, atol=1e-10)


def test_numerical_jacobian_accepts_lists_ints_and_views(rng):
    x = np.array([1.0, -2.0])
    N = md.numerical_jacobian(lambda W: W @ x, [[1, 2], [3, 4]])
    assert N.dtype == np.float64
    np.testing.assert_allclose(N, np.einsum("ia,b->iab", np.eye(2), x), rtol=1e-9)
    W = rng.standard_normal((4, 2))
    for Wv in (W[::2], W[::-2], np.asfortranarray(W[1:3]), W[1:3].astype(">f8")):
        np.testing.assert_allclose(md.numerical_jacobian(lambda W: W @ x, Wv), N, rtol=1e-9, atol=1e-12)


def test_numerical_jacobian_does_not_touch_callers_W_and_survives_mutating_f(rng):
    W = rng.standard_normal((2, 3))
    W0 = W.copy()
    x = rng.standard_normal(3)

    def f(Wm):
        Wm += 1.0  # a rude f that writes into its argument
        return Wm @ x

    N = md.numerical_jacobian(f, W)
    assert np.array_equal(W, W0)
    np.testing.assert_allclose(N, np.einsum("ia,b->iab", np.eye(2), x), rtol=1e-8, atol=1e-10)


def test_numerical_jacobian_eps(rng):
    W = rng.standard_normal((2, 3))
    x = rng.standard_normal(3)
    expected = np.einsum("ia,b->iab", np.eye(2), x)
    for eps in (1e-3, 1e-7, np.float32(1e-4), 1):
        np.testing.assert_allclose(md.numerical_jacobian(lambda W: W @ x, W, eps=eps), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("eps", [0, -1e-6, np.nan, np.inf])
def test_numerical_jacobian_bad_eps(eps):
    with pytest.raises(ValueError, match="eps: expected a positive finite float, got"):
        md.numerical_jacobian(lambda W: W, np.ones(2), eps=eps)


@pytest.mark.parametrize("eps,shown", [("1e-6", "str '1e-6'"), (1j, "complex 1j"), (True, "bool True")])
def test_numerical_jacobian_eps_of_the_wrong_type(eps, shown):
    with pytest.raises(TypeError, match=f"eps: expected a positive finite float, got {re.escape(shown)}"):
        md.numerical_jacobian(lambda W: W, np.ones(2), eps=eps)


@pytest.mark.parametrize("name", ["rtol", "atol"])
@pytest.mark.parametrize("value,shown", [("a", "str 'a'"), (True, "bool True"), (1j, "complex 1j")])
def test_check_jacobian_tolerance_of_the_wrong_type(name, value, shown):
    x = np.ones(2)
    J = md.jacobian_wx(x, 2)
    with pytest.raises(TypeError, match=f"{name}: expected a non-negative float, got {re.escape(shown)}"):
        md.check_jacobian(lambda W: W @ x, np.ones((2, 2)), J, **{name: value})


def test_check_jacobian_of_a_float32_f():
    """f rounds to float32: the default step and tolerances follow f's precision, so a
    right claim passes and a wrong one still fails."""
    rng = np.random.default_rng(3)
    x32 = rng.standard_normal(30).astype(np.float32)
    W32 = rng.standard_normal((20, 30)).astype(np.float32)
    f = lambda W_: W_.astype(np.float32) @ x32  # noqa: E731
    md.check_jacobian(f, W32, md.jacobian_wx(x32, 20))
    nonlinear = lambda W_: np.tanh(W_.astype(np.float32) @ x32)  # noqa: E731
    D = (1 - np.tanh(W32 @ x32) ** 2)[:, None, None] * md.jacobian_wx(x32, 20).toarray()
    md.check_jacobian(nonlinear, W32, D)
    with pytest.raises(md.JacobianMismatch):
        md.check_jacobian(f, W32, 1.01 * md.jacobian_wx(x32, 20).toarray())


def test_numerical_jacobian_f_changing_shape_raises():
    W = np.zeros((2, 2))

    def f(Wm):
        return np.zeros(3) if Wm[0, 0] == 0 else np.zeros(4)

    with pytest.raises(ValueError, match=r"f: returned shape \(4,\) for a perturbed W, but \(3,\) at W"):
        md.numerical_jacobian(f, W)


@pytest.mark.parametrize("W", [np.array(["a", "b"]), np.array([1, None], dtype=object)])
def test_numerical_jacobian_bad_W_dtype(W):
    with pytest.raises(TypeError, match="W: unsupported dtype"):
        md.numerical_jacobian(lambda W: W, W)


def test_numerical_jacobian_empty():
    N = md.numerical_jacobian(lambda W: W @ np.ones(3), np.ones((0, 3)))
    assert N.shape == (0, 0, 3)


# ===================================================================================
# check_jacobian: passing claims
# ===================================================================================
@pytest.mark.parametrize("dtype", REAL_DTYPES)
@pytest.mark.parametrize("convention", ["Wx", "xW"])
def test_check_jacobian_passes_correct_claims(rng, dtype, convention):
    n, m = 3, 4
    x = random_array(rng, (m,), dtype)
    if convention == "Wx":
        W = rng.standard_normal((n, m))
        f = lambda W: W @ x  # noqa: E731
        J = md.jacobian_wx(x, n)
    else:
        W = rng.standard_normal((m, n))
        f = lambda W: x @ W  # noqa: E731
        J = md.jacobian_xw(x, n)
    for claim in (J, J.toarray(), J.toarray().tolist()):
        res = md.check_jacobian(f, W, claim)
        assert isinstance(res, md.JacobianCheck)
        assert res.ok and res.n_bad == 0
        assert 0 <= res.max_abs_error < 1e-6
        assert res.max_rel_error >= 0
        for idx in (res.max_abs_index, res.max_rel_index):
            assert isinstance(idx, tuple) and len(idx) == 3 and all(type(i) is int for i in idx)
        assert res.numerical.shape == J.shape
    res = md.check_jacobian(f, W, J)
    want_rtol = 1e-3 if dtype == np.float32 else 1e-6
    want_atol = (1e-4 if dtype == np.float32 else 1e-7) * max(1.0, float(np.max(np.abs(x))))
    assert res.rtol == pytest.approx(want_rtol)
    assert res.atol == pytest.approx(want_atol)


def test_check_jacobian_batched_and_complex(rng):
    B, n, m = 3, 2, 4
    X = rng.standard_normal((B, m))
    W = rng.standard_normal((n, m))
    res = md.check_jacobian(lambda W: X @ W.T, W, md.jacobian_wx(X, n))
    assert res.ok and res.numerical.shape == (B, n, n, m)
    xc = random_array(rng, (m,), np.complex128, zeros=False)
    Wc = random_array(rng, (n, m), np.complex128, zeros=False)
    assert md.check_jacobian(lambda W: W @ xc, Wc, md.jacobian_wx(xc, n)).ok
    assert md.check_jacobian(lambda W: xc @ W, Wc.T, md.jacobian_xw(xc, n)).ok
    assert md.check_jacobian(lambda W: W @ xc, Wc, md.jacobian_wx(xc.astype(np.complex64), n)).ok
    # holomorphic: the conjugate is a different (wrong) claim
    with pytest.raises(md.JacobianMismatch):
        md.check_jacobian(lambda W: W @ xc, Wc, md.jacobian_wx(xc.conj(), n))


def test_check_jacobian_reports_worst_abs_and_rel_indices():
    x = np.array([0.5, 2.0, -1.5])
    W = np.zeros((2, 3))
    J = np.einsum("ia,b->iab", np.eye(2), x)
    J[0, 0, 1] += 5e-8  # largest absolute error, inside tolerance
    J[1, 0, 2] += 1e-9  # where the true value is 0: largest relative error
    res = md.check_jacobian(lambda W: W @ x, W, J)
    assert res.ok
    assert res.max_abs_index == (0, 0, 1)
    assert res.max_abs_error == pytest.approx(5e-8, rel=1e-3)
    assert res.max_rel_index == (1, 0, 2)
    assert res.max_rel_error > 1e100


def test_check_jacobian_tolerances_depend_on_claim_dtype():
    """A claim off by 1e-5 relative passes as float32 and fails as float64."""
    x = np.array([1.0, -3.0, 2.0])
    W = np.zeros((2, 3))
    J = np.einsum("ia,b->iab", np.eye(2), x) * (1 + 1e-5)
    assert md.check_jacobian(lambda W: W @ x, W, J.astype(np.float32)).ok
    with pytest.raises(md.JacobianMismatch):
        md.check_jacobian(lambda W: W @ x, W, J)
    # explicit tolerances override the defaults
    assert md.check_jacobian(lambda W: W @ x, W, J, rtol=1e-4).ok
    with pytest.raises(md.JacobianMismatch):
        md.check_jacobian(lambda W: W @ x, W, J.astype(np.float32), rtol=1e-7, atol=0)


def test_check_jacobian_integer_claim(rng):
    x = np.array([1, 2, 3])
    res = md.check_jacobian(lambda W: W @ x, rng.standard_normal((2, 3)), np.einsum("ia,b->iab", np.eye(2, dtype=int), x))
    assert res.ok


def test_check_jacobian_empty():
    res = md.check_jacobian(lambda W: W @ np.ones(3), np.ones((0, 3)), np.ones((0, 0, 3)))
    assert res.ok and res.max_abs_error == 0.0 and res.max_abs_index == ()


# ===================================================================================
# check_jacobian: failing claims
# ===================================================================================
def test_all_ones_claim_is_wrong_and_names_worst_entry():
    """The claim "every entry of d(Wx)/dW is 1" is wrong; the worst entry is named."""
    n = 2
    x = np.array([0.5, -7.0, 2.0])
    W = np.zeros((n, 3))
    ones = np.ones((n, n, 3))
    with pytest.raises(md.JacobianMismatch, match=r"in 12 of 12 entries; worst at index \(0, 0, 1\): J = 1\.0, numerical = -7\.0") as info:
        md.check_jacobian(lambda W: W @ x, W, ones)
    assert isinstance(info.value, AssertionError)
    assert issubclass(md.JacobianMismatch, AssertionError)
    # with a random W the worst entry is still on the diagonal block i == a, at b = 1
    W = np.random.default_rng(0).standard_normal((n, 3))
    with pytest.raises(AssertionError, match=r"worst at index \((\d), \1, 1\)"):
        md.check_jacobian(lambda W: W @ x, W, ones)


def test_wrong_jacobian_object_fails():
    x = np.array([1.0, 2.0, 3.0])
    W = np.ones((2, 3))
    with pytest.raises(md.JacobianMismatch, match="worst at index"):
        md.check_jacobian(lambda W: W @ x, W, md.jacobian_wx(2 * x, 2))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_claim_fails_at_that_entry(bad):
    x = np.array([1.0, 2.0, 3.0])
    W = np.zeros((2, 3))
    J = np.einsum("ia,b->iab", np.eye(2), x)
    J[1, 0, 2] = bad
    with pytest.raises(md.JacobianMismatch, match=r"in 1 of 12 entries; worst at index \(1, 0, 2\)"):
        md.check_jacobian(lambda W: W @ x, W, J)


def test_nan_from_f_fails():
    x = np.array([1.0, np.nan])  # f = W @ x is NaN whatever W is: every entry fails
    with pytest.raises(md.JacobianMismatch, match=r"in 2 of 2 entries; worst at index \(0, 0, 0\).*numerical = nan"):
        md.check_jacobian(lambda W: W @ x, np.zeros((1, 2)), np.array([[[1.0, 0.0]]]))


@pytest.mark.parametrize(
    "J",
    [np.zeros((2, 3)), np.zeros((2, 3, 2)), np.zeros((2, 2, 3, 1)), np.zeros(())],
)
def test_check_jacobian_wrong_shape(J):
    with pytest.raises(ValueError, match=r"J: expected shape \(2, 2, 3\) \(f\(W\)\.shape \+ W\.shape, numerator layout\), got"):
        md.check_jacobian(lambda W: W @ np.ones(3), np.zeros((2, 3)), J)


def test_check_jacobian_wrong_shape_jacobian_object():
    """A batched Jacobian or the denominator-shaped one does not match a single f."""
    with pytest.raises(ValueError, match=r"J: expected shape \(2, 2, 3\).*got \(4, 2, 2, 3\)"):
        md.check_jacobian(lambda W: W @ np.ones(3), np.zeros((2, 3)), md.jacobian_wx(np.ones((4, 3)), 2))
    with pytest.raises(ValueError, match=r"J: expected shape \(2, 2, 3\).*got \(2, 3, 2\)"):
        md.check_jacobian(lambda W: W @ np.ones(3), np.zeros((2, 3)), md.jacobian_xw(np.ones(3), 2))


@pytest.mark.parametrize("J", [np.array(["a"] * 12).reshape(2, 2, 3), np.zeros((2, 2, 3), dtype=object)])
def test_check_jacobian_bad_claim_dtype(J):
    with pytest.raises(TypeError, match="J: unsupported dtype"):
        md.check_jacobian(lambda W: W @ np.ones(3), np.zeros((2, 3)), J)


@pytest.mark.parametrize("kw,name", [({"rtol": -1e-3}, "rtol"), ({"atol": -1.0}, "atol"), ({"rtol": np.nan}, "rtol"), ({"atol": np.nan}, "atol")])
def test_check_jacobian_bad_tolerances(kw, name):
    J = md.jacobian_wx(np.ones(3), 2)
    with pytest.raises(ValueError, match=rf"{name}: expected a non-negative float, got"):
        md.check_jacobian(lambda W: W @ np.ones(3), np.zeros((2, 3)), J, **kw)


def test_check_jacobian_passes_eps_through():
    with pytest.raises(ValueError, match="eps: expected a positive finite float"):
        md.check_jacobian(lambda W: W @ np.ones(3), np.zeros((2, 3)), md.jacobian_wx(np.ones(3), 2), eps=-1.0)
    assert md.check_jacobian(lambda W: W @ np.ones(3), np.zeros((2, 3)), md.jacobian_wx(np.ones(3), 2), eps=1e-3).ok


def test_numerical_jacobian_fortran_ordered_W(rng):
    """Regression: a Fortran-ordered W used to give an all-zero Jacobian (the perturbed
    flat view was a copy)."""
    x = rng.standard_normal(3)
    W = np.asfortranarray(rng.standard_normal((2, 3)))
    N = md.numerical_jacobian(lambda W: W @ x, W)
    np.testing.assert_allclose(N, np.einsum("ia,b->iab", np.eye(2), x), rtol=1e-9, atol=1e-12)
    assert md.check_jacobian(lambda W: W @ x, W, md.jacobian_wx(x, 2)).ok
    Wc = np.asfortranarray(random_array(rng, (2, 3), np.complex128, zeros=False))
    xc = random_array(rng, (3,), np.complex128, zeros=False)
    assert md.check_jacobian(lambda W: W @ xc, Wc, md.jacobian_wx(xc, 2)).ok


@pytest.mark.filterwarnings("error")
def test_complex_claim_for_real_f_is_not_truncated():
    """Regression: a complex claim was cast to the real dtype of the numerical Jacobian,
    dropping its imaginary part, so a wrong claim passed."""
    x = np.array([1.0, 2.0, 3.0])
    W = np.ones((2, 3))
    D = np.einsum("ia,b->iab", np.eye(2), x)
    with pytest.raises(md.JacobianMismatch, match=r"in 12 of 12 entries; worst at index \(0, 1, 0\): J = 5j, numerical = 0\.0"):
        md.check_jacobian(lambda W: W @ x, W, D + 5j)
    assert md.check_jacobian(lambda W: W @ x, W, D.astype(np.complex128)).ok
    assert md.check_jacobian(lambda W: W @ x, W, md.jacobian_wx(x.astype(np.complex64), 2)).ok


@pytest.mark.filterwarnings("error")
def test_large_error_where_true_value_is_zero_raises_no_warning():
    """Relative error against an exact 0 is inf; computing it must not emit RuntimeWarnings."""
    x = np.array([1.0, 2.0])
    J = np.einsum("ia,b->iab", np.eye(2), x)
    J[0, 1, 0] = 1e10
    with pytest.raises(md.JacobianMismatch, match=r"worst at index \(0, 1, 0\).*rel error inf"):
        md.check_jacobian(lambda W: W @ x, np.ones((2, 2)), J)
    J[0, 1, 0] = 0.0
    J[1, 1, 1] = np.inf
    with pytest.raises(md.JacobianMismatch, match=r"worst at index \(1, 1, 1\): J = inf"):
        md.check_jacobian(lambda W: W @ x, np.ones((2, 2)), J)


def test_checker_honours_max_bytes():
    W = np.ones((2, 3))
    with pytest.raises(md.OutputTooLargeError, match=r"numerical_jacobian: the output \(2, 2, 3\) float64"):
        md.numerical_jacobian(lambda W_: W_ @ np.ones(3), W, max_bytes=8)
    with pytest.raises(md.OutputTooLargeError, match="toarray"):
        md.check_jacobian(lambda W_: W_ @ np.ones(3), W, md.jacobian_wx(np.ones(3), 2), max_bytes=8)
