"""Input checking: the dtype policy, shapes, options, out=, n_threads, max_bytes and
the memory guard; and the inputs that must be accepted (lists, views of every layout,
read-only, byte-swapped, broadcast) giving the same results as a fresh C-contiguous copy.

Every `raise` in matderiv/_validation/, _memory.py, jacobian.py and checking.py has
a pytest.raises(..., match=...) here or in test_checking.py / test_jacobian.py.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp

import matderiv as md
from matderiv import _memory, _validation
from matderiv.jacobian import Jacobian
from conftest import CONVENTIONS, DTYPES, FORMATS, LAYOUTS, ORDERS, random_array, ref_tensor, ref_vec, wider


def make_jac(x, n, convention):
    return md.jacobian_wx(x, n) if convention == "Wx" else md.jacobian_xw(x, n)


def all_forms(J, rng_seed=0):
    """Every output of a Jacobian, as a dict of arrays (sparse ones densified with their pattern)."""
    rng = np.random.default_rng(rng_seed)
    res = {}
    for layout in LAYOUTS:
        res["toarray", layout] = J.toarray(layout)
    for order in ORDERS:
        res["tovec", order] = J.tovec(order)
        for fmt in FORMATS:
            A = J.tosparse(fmt, order)
            res["sparse", fmt, order] = A.toarray()
            res["sparse-data", fmt, order] = A.data
        op = J.aslinearoperator(order)
        res["matvec", order] = op.matvec(rng.standard_normal(op.shape[1]))
        res["rmatvec", order] = op.rmatvec(rng.standard_normal(op.shape[0]))
    lead = (J.batch_size,) if J.batch_size is not None else ()
    res["jvp"] = J.jvp(rng.standard_normal(J.W_shape))
    res["vjp"] = J.vjp(rng.standard_normal(lead + (J.n,)))
    return res


def assert_same_forms(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert np.array_equal(a[k], b[k], equal_nan=True), k


# ===================================================================================
# dtype policy
# ===================================================================================
@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint64, np.bool_])
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_int_and_bool_become_float64(dtype, convention):
    x = np.array([[1, 0, 1], [0, 1, 1]], dtype=dtype)
    J = make_jac(x, 2, convention)
    assert J.dtype == np.float64
    ref = make_jac(x.astype(np.float64), 2, convention)
    assert_same_forms(all_forms(J), all_forms(ref))


@pytest.mark.parametrize("dtype", DTYPES)
def test_float_and_complex_dtypes_are_kept(dtype):
    x = np.arange(3).astype(dtype)
    J = md.jacobian_wx(x, 2)
    assert J.dtype == np.dtype(dtype)
    for form in (J.toarray(), J.tovec(), J.tosparse().data, J.vjp(np.ones(2, dtype))):
        assert form.dtype == np.dtype(dtype)


def test_float16_becomes_float32():
    J = md.jacobian_wx(np.array([1.5, 2.0], np.float16), 2)
    assert J.dtype == np.float32
    assert np.array_equal(J.tovec(), np.kron(np.array([[1.5, 2.0]], np.float32), np.eye(2, dtype=np.float32)))


_BAD_DTYPES = [
    np.array([1, 2], dtype=object),
    np.array(["a", "b"]),
    np.array([b"a", b"b"]),
    np.array(["2020-01-01", "2021-01-01"], dtype="datetime64[D]"),
    np.array([1, 2], dtype="timedelta64[s]"),
    np.zeros(2, dtype=[("a", "f8"), ("b", "f8")]),
]
if np.dtype(np.longdouble).itemsize > 8:
    _BAD_DTYPES += [np.ones(2, np.longdouble), np.ones(2, np.clongdouble)]


@pytest.mark.parametrize("x", _BAD_DTYPES, ids=lambda a: a.dtype.name)
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_unsupported_x_dtype_raises_type_error(x, convention):
    with pytest.raises(TypeError, match=rf"x: unsupported dtype {re.escape(x.dtype.name)}; expected float32, float64, complex64, complex128"):
        make_jac(x, 2, convention)


def test_string_list_and_ragged_list_raise_type_error():
    with pytest.raises(TypeError, match="x: unsupported dtype"):
        md.jacobian_wx(["a", "b"], 2)
    with pytest.raises(TypeError, match="x: could not be converted to an array"):
        md.jacobian_wx([[1.0, 2.0], [3.0]], 2)


def test_target_dtype_policy_directly():
    t = _validation.target_dtype
    assert t(np.int16, "a", allow_complex=True) == np.float64
    assert t(np.bool_, "a", allow_complex=True) == np.float64
    assert t(np.float16, "a", allow_complex=False) == np.float32
    assert t(np.dtype(">f4"), "a", allow_complex=False) == np.float32
    assert t(np.dtype(">c8"), "a", allow_complex=True) == np.complex64
    assert t(np.dtype(">c8"), "a", allow_complex=True).isnative
    with pytest.raises(TypeError, match="G: real inputs are required, got dtype complex128"):
        t(np.complex128, "G", allow_complex=False)
    with pytest.raises(TypeError, match=r"G: unsupported dtype object; expected float32, float64, an integer"):
        t(object, "G", allow_complex=False)
    with pytest.raises(TypeError, match="X: real inputs are required"):
        _validation.as_array(np.ones(2, np.complex64), "X", 1, allow_complex=False)
    assert _validation.common_dtype({"a": np.ones(1, np.float32), "b": np.ones(1, np.int8)}) == np.float64
    assert _validation.common_dtype({"a": np.ones(1, np.float32), "b": np.ones(1, np.float32)}) == np.float32
    assert _validation.common_dtype({"a": np.ones(1, np.float32), "b": np.ones(1, np.complex64)}) == np.complex64
    assert _validation.common_dtype({"a": np.ones(1, np.float64), "b": np.ones(1, np.complex64)}) == np.complex128


# ===================================================================================
# x and n
# ===================================================================================
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_x_wrong_ndim(convention):
    with pytest.raises(ValueError, match=r"x: expected a 1-D or 2-D array, got 0-D with shape \(\)"):
        make_jac(np.float64(3.0), 2, convention)
    with pytest.raises(ValueError, match=r"x: expected a 1-D or 2-D array, got 0-D"):
        make_jac(3.0, 2, convention)
    with pytest.raises(ValueError, match=r"x: expected a 1-D or 2-D array, got 3-D with shape \(2,3,4\)"):
        make_jac(np.ones((2, 3, 4)), 2, convention)


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize(
    "n,exc,msg",
    [
        (2.0, TypeError, r"n: expected a non-negative int, got float 2\.0"),
        (True, TypeError, r"n: expected a non-negative int, got bool True"),
        (np.True_, TypeError, r"n: expected a non-negative int, got bool"),
        ("3", TypeError, r"n: expected a non-negative int, got str '3'"),
        (None, TypeError, r"n: expected a non-negative int, got NoneType None"),
        (np.float64(2), TypeError, r"n: expected a non-negative int, got float64"),
        (-1, ValueError, r"n: expected a non-negative int, got -1"),
        (np.int8(-3), ValueError, r"n: expected a non-negative int, got -3"),
    ],
)
def test_bad_n(convention, n, exc, msg):
    with pytest.raises(exc, match=msg):
        make_jac(np.ones(3), n, convention)


@pytest.mark.parametrize("n", [np.int64(3), np.uint8(3), np.int32(3), 3])
def test_numpy_integer_n_accepted(n):
    J = md.jacobian_wx(np.ones(2), n)
    assert J.n == 3 and type(J.n) is int
    assert J.shape == (3, 3, 2)


# ===================================================================================
# layout / order / format
# ===================================================================================
@pytest.mark.parametrize("bad", ["num", "Numerator", "", None, 0])
def test_unknown_layout(bad):
    J = md.jacobian_wx(np.ones(3), 2)
    with pytest.raises(ValueError, match=rf"layout: expected one of 'numerator', 'denominator', got {re.escape(repr(bad))}"):
        J.toarray(bad)


@pytest.mark.parametrize("bad", ["f", "c", "A", "K", None])
def test_unknown_order(bad):
    J = md.jacobian_xw(np.ones(3), 2)
    pat = rf"order: expected one of 'F', 'C', got {re.escape(repr(bad))}"
    with pytest.raises(ValueError, match=pat):
        J.tovec(bad)
    with pytest.raises(ValueError, match=pat):
        J.tosparse("csr", bad)
    with pytest.raises(ValueError, match=pat):
        J.aslinearoperator(bad)


@pytest.mark.parametrize("bad", ["dense", "CSR", "bsr", "lil", "dia", None])
def test_unknown_format(bad):
    J = md.jacobian_wx(np.ones(3), 2)
    with pytest.raises(ValueError, match=rf"format: expected one of 'csr', 'csc', 'coo', got {re.escape(repr(bad))}"):
        J.tosparse(bad)


# ===================================================================================
# dW, v, and operator operands
# ===================================================================================
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_bad_dW(convention):
    J = make_jac(np.ones(4), 3, convention)
    good = J.W_shape
    wrong = good[::-1]
    with pytest.raises(ValueError, match=rf"dW: expected shape {re.escape(str(good).replace(' ', ''))}, got {re.escape(str(wrong).replace(' ', ''))}"):
        J.jvp(np.ones(wrong))
    with pytest.raises(ValueError, match=r"dW: expected a 2-D array, got 1-D with shape \(12,\)"):
        J.jvp(np.ones(12))
    with pytest.raises(ValueError, match=r"dW: expected a 2-D array, got 3-D"):
        J.jvp(np.ones((1,) + good))
    with pytest.raises(TypeError, match="dW: unsupported dtype object"):
        J.jvp(np.ones(good, dtype=object))
    # a batched Jacobian takes one dW of W's shape, not one per sample
    JB = make_jac(np.ones((2, 4)), 3, convention)
    with pytest.raises(ValueError, match=r"dW: expected a 2-D array, got 3-D"):
        JB.jvp(np.ones((2,) + good))


def test_bad_v():
    J = md.jacobian_wx(np.ones(4), 3)
    with pytest.raises(ValueError, match=r"v: expected shape \(3,\), got \(4,\)"):
        J.vjp(np.ones(4))
    with pytest.raises(ValueError, match=r"v: expected a 1-D array, got 2-D with shape \(1,3\)"):
        J.vjp(np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"v: expected a 1-D array, got 0-D"):
        J.vjp(1.0)
    with pytest.raises(TypeError, match="v: unsupported dtype str"):
        J.vjp(np.array(["a", "b", "c"]))
    JB = md.jacobian_xw(np.ones((5, 4)), 3)
    with pytest.raises(ValueError, match=r"v: expected a 2-D array, got 1-D with shape \(3,\)"):
        JB.vjp(np.ones(3))
    with pytest.raises(ValueError, match=r"v: expected shape \(5,3\), got \(4,3\)"):
        JB.vjp(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"v: expected shape \(5,3\), got \(5,4\)"):
        JB.vjp(np.ones((5, 4)))


@pytest.mark.parametrize("order", ORDERS)
def test_operator_wrong_length(order):
    A = md.jacobian_wx(np.ones((2, 3)), 4).aslinearoperator(order)  # (8, 12)
    with pytest.raises(ValueError, match=r"matvec: expected a vector of length 12 or a matrix with 12 rows for an operator of shape \(8, 12\), got shape \(11,\)"):
        A.matvec(np.ones(11))
    with pytest.raises(ValueError, match=r"matvec: expected a vector of length 12 .* got shape \(\)"):
        A.matvec(1.0)
    with pytest.raises(ValueError, match=r"matvec: expected a vector of length 12 .* got shape \(12, 1, 1\)"):
        A.matvec(np.ones((12, 1, 1)))
    with pytest.raises(ValueError, match=r"rmatvec: expected a vector of length 8 .* got shape \(12,\)"):
        A.rmatvec(np.ones(12))
    with pytest.raises(ValueError, match=r"matmat: expected a vector of length 12 or a matrix with 12 rows .* got shape \(8, 2\)"):
        A.matmat(np.ones((8, 2)))
    with pytest.raises(ValueError, match=r"rmatmat: expected a vector of length 8 .* got shape \(12, 2\)"):
        A.rmatmat(np.ones((12, 2)))
    with pytest.raises(ValueError, match=r"matvec: expected a vector of length 8 .* operator of shape \(12, 8\), got shape \(12,\)"):
        A.H.matvec(np.ones(12))  # the adjoint checks its operands the same way
    with pytest.raises(ValueError, match=r"rmatvec: expected a vector of length 12 .* got shape \(8, 3\)"):
        A.H.rmatvec(np.ones((8, 3)))
    with pytest.raises(TypeError, match="x: unsupported dtype object"):
        A.matvec(np.ones(12, dtype=object))


# ===================================================================================
# out=
# ===================================================================================
def _out_calls(J, v):
    """(name, callable taking out) for every method with out=."""
    return [
        ("toarray", lambda out: J.toarray(out=out), J.toarray().shape, J.dtype),
        ("toarray-den", lambda out: J.toarray("denominator", out=out), J.toarray("denominator").shape, J.dtype),
        ("tovec", lambda out: J.tovec("C", out=out), J.tovec().shape, J.dtype),
        ("vjp", lambda out: J.vjp(v, out=out), J.vjp(v).shape, J.vjp(v).dtype),
    ]


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_bad_out(convention):
    J = make_jac(np.arange(1.0, 4.0), 2, convention)
    v = np.ones(2)
    for name, call, shape, dtype in _out_calls(J, v):
        with pytest.raises(TypeError, match="out: expected a numpy.ndarray, got list"):
            call(np.zeros(shape).tolist())
        with pytest.raises(TypeError, match="out: expected a numpy.ndarray, got csr_array"):
            call(sp.csr_array((shape[0], int(np.prod(shape[1:])))))
        wrong = shape[:-1] + (shape[-1] + 1,)
        with pytest.raises(ValueError, match=rf"out: expected shape {re.escape(str(shape).replace(' ', ''))}, got {re.escape(str(wrong).replace(' ', ''))}"):
            call(np.zeros(wrong))
        with pytest.raises(ValueError, match="out: expected shape"):
            call(np.zeros(int(np.prod(shape))))  # right size, wrong shape
        with pytest.raises(ValueError, match="out: expected dtype float64, got float32"):
            call(np.zeros(shape, np.float32))
        with pytest.raises(ValueError, match="out: expected dtype float64, got complex128"):
            call(np.zeros(shape, np.complex128))
        with pytest.raises(ValueError, match="out: expected a C-contiguous array, got a non-contiguous one"):
            call(np.zeros(shape[:-1] + (2 * shape[-1],))[..., ::2])
        with pytest.raises(ValueError, match="out: expected a C-contiguous array"):
            call(np.zeros(shape, order="F"))
        ro = np.zeros(shape)
        ro.flags.writeable = False
        with pytest.raises(ValueError, match="out: expected a writeable array, got a read-only one"):
            call(ro)
        with pytest.raises(ValueError, match="out: expected native byte order, got a byte-swapped array"):
            call(np.zeros(shape, dtype=np.dtype(np.float64).newbyteorder()))


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_out_overlapping_an_input(convention):
    n, m = 2, 3
    buf = np.zeros(n * n * m)
    x = buf[:m]
    x[:] = [1.0, 2.0, 3.0]
    J = make_jac(x, n, convention)  # x is copied: J is the Jacobian at this x
    shape = J.toarray().shape
    expected = J.toarray()
    out = buf.reshape(shape)
    assert J.toarray(out=out) is out and np.array_equal(out, expected)  # overwrites the caller's x, not J's
    assert np.array_equal(J.toarray(), expected)
    out = buf.reshape(n, n * m)
    assert J.tovec(out=out) is out and np.array_equal(out, J.tovec())
    assert np.array_equal(J.toarray(), expected)
    J = make_jac(np.ones(m), n, convention)
    vbuf = np.zeros(n * m)
    v = vbuf[:n]
    with pytest.raises(ValueError, match="out: must not overlap an input array"):
        J.vjp(v, out=vbuf.reshape(J.W_shape))
    with pytest.raises(ValueError, match="out: must not overlap an input array"):
        J.vjp(vbuf[::m], out=vbuf.reshape(J.W_shape))  # non-contiguous v inside out


def test_out_near_but_not_overlapping_an_input_is_accepted():
    """Memory bounds overlap (np.may_share_memory) but no element is shared."""
    n, m = 2, 3
    L = n * m
    buf = np.zeros(2 * L + 2)
    v = buf[0 :: L + 1][:n]  # buf[0], buf[L + 1]
    v[:] = [1.0, 2.0]
    out = buf[1 : L + 1].reshape(n, m)
    assert np.may_share_memory(v, out) and not np.shares_memory(v, out)
    J = md.jacobian_wx(np.array([3.0, 4.0, 5.0]), n)
    assert J.vjp(v, out=out) is out
    assert np.array_equal(out, np.outer([1.0, 2.0], [3.0, 4.0, 5.0]))


def test_out_overlap_too_hard_to_decide_counts_as_overlap(monkeypatch):
    def too_hard(*args, **kwargs):
        raise np.exceptions.TooHardError("max_work exceeded")

    monkeypatch.setattr(np, "shares_memory", too_hard)
    buf = np.zeros(20)
    v = buf[0::7][:2]
    out = buf[1:7].reshape(2, 3)
    with pytest.raises(ValueError, match="out: must not overlap an input array"):
        md.jacobian_wx(np.ones(3), 2).vjp(v, out=out)


def test_out_dtype_of_vjp_is_the_promoted_dtype():
    J = md.jacobian_wx(np.ones(3, np.float32), 2)
    with pytest.raises(ValueError, match="out: expected dtype float64, got float32"):
        J.vjp(np.ones(2), out=np.zeros((2, 3), np.float32))
    out = np.zeros((2, 3), np.complex64)
    assert J.vjp(np.ones(2, np.complex64), out=out) is out


# ===================================================================================
# n_threads
# ===================================================================================
@pytest.mark.parametrize(
    "nt,exc,msg",
    [
        (0, ValueError, r"n_threads: expected None, -1 or an int from 1 to \d+ \(the thread limit\), got 0"),
        (-2, ValueError, r"n_threads: expected None, -1 or an int from 1 to \d+ \(the thread limit\), got -2"),
        (2**40, ValueError, r"n_threads: expected None, -1 or an int from 1 to \d+ \(the thread limit\), got 1099511627776"),
        (True, TypeError, r"n_threads: expected None or an int, got bool"),
        (np.False_, TypeError, r"n_threads: expected None or an int, got bool"),
        (1.0, TypeError, r"n_threads: expected None or an int, got float"),
        ("2", TypeError, r"n_threads: expected None or an int, got str"),
    ],
)
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_bad_n_threads(convention, nt, exc, msg):
    J = make_jac(np.ones((2, 3)), 2, convention)
    for call in (
        lambda: J.toarray(n_threads=nt),
        lambda: J.tovec(n_threads=nt),
        lambda: J.tosparse("coo", n_threads=nt),
        lambda: J.vjp(np.ones((2, 2)), n_threads=nt),
    ):
        with pytest.raises(exc, match=msg):
            call()
    Jt = md.jacobian_wx(np.ones(3), 2, W=np.ones((2, 3)), dx_dW=np.zeros((3, 2, 3)))
    with pytest.raises(exc, match=msg):
        Jt.toarray(n_threads=nt)


def test_n_threads_values():
    assert _validation.n_threads_value(None) >= 1
    assert _validation.n_threads_value(-1) >= 1
    assert _validation.n_threads_value(3) == 3
    assert _validation.n_threads_value(np.int16(2)) == 2
    assert type(_validation.n_threads_value(np.int16(2))) is int


# ===================================================================================
# The dependent case
# ===================================================================================
def test_dependent_case_bad_inputs():
    n, m = 2, 3
    x, W, dx = np.ones(m), np.ones((n, m)), np.zeros((m, n, m))
    with pytest.raises(ValueError, match="dx_dW: the dependent case needs both W and dx_dW, got only one"):
        md.jacobian_wx(x, n, W=W)
    with pytest.raises(ValueError, match="W: the dependent case needs both W and dx_dW, got only one"):
        md.jacobian_wx(x, n, dx_dW=dx)
    with pytest.raises(ValueError, match=r"x: the dependent case takes a single x of shape \(m,\), got shape \(4, 3\)"):
        md.jacobian_wx(np.ones((4, m)), n, W=W, dx_dW=dx)
    with pytest.raises(ValueError, match=r"W: expected shape \(2,3\), got \(3,2\)"):
        md.jacobian_wx(x, n, W=W.T, dx_dW=dx)
    with pytest.raises(ValueError, match=r"W: expected a 2-D array, got 1-D"):
        md.jacobian_wx(x, n, W=np.ones(6), dx_dW=dx)
    with pytest.raises(TypeError, match="W: unsupported dtype object"):
        md.jacobian_wx(x, n, W=W.astype(object), dx_dW=dx)
    with pytest.raises(ValueError, match=r"dx_dW: expected shape \(3,2,3\), got \(2,2,3\)"):
        md.jacobian_wx(x, n, W=W, dx_dW=np.zeros((n, n, m)))
    with pytest.raises(ValueError, match=r"dx_dW: expected a 3-D array, got 2-D with shape \(3,6\)"):
        md.jacobian_wx(x, n, W=W, dx_dW=np.zeros((m, n * m)))
    with pytest.raises(TypeError, match="dx_dW: unsupported dtype str"):
        md.jacobian_wx(x, n, W=W, dx_dW=np.full((m, n, m), "a"))
    with pytest.raises(ValueError, match=r"dx_dW: expected a Jacobian of shape \(3, 2, 3\), got shape \(2, 2, 3\)"):
        md.jacobian_wx(x, n, W=W, dx_dW=md.jacobian_wx(np.ones(m), n))
    with pytest.raises(ValueError, match=r"dx_dW: expected a Jacobian of shape \(3, 2, 3\), got shape \(5, 3, 2, 3\)"):
        md.jacobian_wx(x, n, W=W, dx_dW=md.jacobian_xw(np.ones((5, n)), m))  # batched
    with pytest.raises(ValueError, match=r"dx_dW: expected a Jacobian of shape \(3, 2, 3\), got shape \(3, 3, 2\)"):
        md.jacobian_wx(x, n, W=W, dx_dW=md.jacobian_xw(np.ones(m), n).__class__(np.ones((1, 2)), m, "Wx", False))
    with pytest.raises(ValueError, match=r"x: expected a 1-D or 2-D array"):
        md.jacobian_wx(np.ones((1, 1, m)), n, W=W, dx_dW=dx)
    with pytest.raises(TypeError, match=r"n: expected a non-negative int"):
        md.jacobian_wx(x, 2.0, W=W, dx_dW=dx)


def test_dependent_case_bad_dW_v_out():
    n, m = 2, 3
    J = md.jacobian_wx(np.ones(m), n, W=np.ones((n, m)), dx_dW=np.zeros((m, n, m)))
    with pytest.raises(ValueError, match=r"dW: expected shape \(2,3\), got \(3,2\)"):
        J.jvp(np.ones((m, n)))
    with pytest.raises(ValueError, match=r"v: expected shape \(2,\), got \(3,\)"):
        J.vjp(np.ones(m))
    with pytest.raises(ValueError, match=r"out: expected shape \(2,2,3\), got \(2,3,2\)"):
        J.toarray(out=np.zeros((n, m, n)))
    with pytest.raises(ValueError, match=r"out: expected shape \(2,3,2\), got \(2,2,3\)"):
        J.toarray("denominator", out=np.zeros((n, n, m)))
    with pytest.raises(ValueError, match="layout: expected one of"):
        J.toarray("transposed")
    with pytest.raises(ValueError, match="format: expected one of"):
        J.tosparse("dok")
    with pytest.raises(ValueError, match=r"matvec: expected a vector of length 6"):
        J.aslinearoperator().matvec(np.ones(5))


# ===================================================================================
# max_bytes, the memory guard and MATDERIV_MAX_BYTES
# ===================================================================================
def _materializing_calls(J, v):
    return [
        ("toarray", lambda **kw: J.toarray(**kw)),
        ("toarray", lambda **kw: J.toarray("denominator", **kw)),
        ("tovec", lambda **kw: J.tovec("C", **kw)),
        ("tosparse", lambda **kw: J.tosparse("csr", **kw)),
        ("tosparse", lambda **kw: J.tosparse("csc", **kw)),
        ("tosparse", lambda **kw: J.tosparse("coo", **kw)),
        ("vjp", lambda **kw: J.vjp(v, **kw)),
    ]


def _jacobians():
    return [
        (md.jacobian_wx(np.ones(3), 2), np.ones(2)),
        (md.jacobian_xw(np.ones((4, 3), np.float32), 2), np.ones((4, 2), np.float32)),
        (md.jacobian_wx(np.ones(3), 2, W=np.ones((2, 3)), dx_dW=np.zeros((3, 2, 3))), np.ones(2)),
    ]


@pytest.mark.parametrize("bad,exc,msg", [
    (-1, ValueError, r"max_bytes: expected a non-negative int \(bytes\), got -1"),
    (1.5, TypeError, r"max_bytes: expected an int or None, got float"),
    (1e9, TypeError, r"max_bytes: expected an int or None, got float"),
    ("100", TypeError, r"max_bytes: expected an int or None, got str"),
    (True, TypeError, r"max_bytes: expected an int or None, got bool"),
])
def test_bad_max_bytes(bad, exc, msg):
    for J, v in _jacobians():
        for _, call in _materializing_calls(J, v):
            with pytest.raises(exc, match=msg):
                call(max_bytes=bad)


def test_memory_guard_message_names_shape_dtype_and_gib():
    for J, v in _jacobians():
        dtype = J.dtype.name
        for what, call in _materializing_calls(J, v):
            with pytest.raises(md.OutputTooLargeError, match=rf"{what}: the output \(.*\) {dtype}.* needs .* GiB \(\d+ bytes\), over the limit of .* GiB \(8 bytes; set by max_bytes=\)"):
                call(max_bytes=8)
            with pytest.raises(MemoryError):
                call(max_bytes=np.int64(0))
    J = md.jacobian_wx(np.ones(3), 2)
    with pytest.raises(md.OutputTooLargeError, match=r"toarray: the output \(2, 2, 3\) float64 needs .*\(96 bytes\)"):
        J.toarray(max_bytes=95)
    with pytest.raises(md.OutputTooLargeError, match=r"toarray: the output \(2, 3, 2\) float64"):
        J.toarray("denominator", max_bytes=95)
    with pytest.raises(md.OutputTooLargeError, match=r"tovec: the output \(2, 6\) float64 needs"):
        J.tovec(max_bytes=95)
    with pytest.raises(md.OutputTooLargeError, match=r"vjp: the output \(2, 3\) float64 needs .*\(48 bytes\)"):
        J.vjp(np.ones(2), max_bytes=47)
    # tosparse counts data, indices and indptr: 6*8 + 6*4 + 3*4 bytes for csr
    with pytest.raises(md.OutputTooLargeError, match=r"tosparse: the output \(6,\) float64 \+ \(6,\) int32 \+ \(3,\) int32 needs .*\(84 bytes\)"):
        J.tosparse("csr", max_bytes=83)
    assert J.tosparse("csr", max_bytes=84).nnz == 6
    with pytest.raises(md.OutputTooLargeError, match="Use the lazy Jacobian"):
        J.toarray(max_bytes=0)


def test_memory_guard_boundary_is_inclusive():
    J = md.jacobian_wx(np.ones(3, np.float32), 2)
    assert J.toarray(max_bytes=48).shape == (2, 2, 3)  # 12 float32 = 48 bytes
    with pytest.raises(md.OutputTooLargeError):
        J.toarray(max_bytes=47)
    assert J.vjp(np.ones(2, np.float32), max_bytes=24).shape == (2, 3)
    with pytest.raises(md.OutputTooLargeError):
        J.vjp(np.ones(2, np.float32), max_bytes=23)
    # an empty output always fits
    assert md.jacobian_wx(np.ones(0), 5).toarray(max_bytes=0).shape == (5, 5, 0)


def test_env_var_sets_the_default_limit(monkeypatch):
    J = md.jacobian_wx(np.ones(3), 2)
    monkeypatch.setenv("MATDERIV_MAX_BYTES", "96")
    assert J.toarray().shape == (2, 2, 3)
    monkeypatch.setenv("MATDERIV_MAX_BYTES", "83")  # toarray/tovec need 96, csr 84 bytes
    with pytest.raises(md.OutputTooLargeError, match=r"over the limit of .* GiB \(83 bytes"):
        J.toarray()
    with pytest.raises(md.OutputTooLargeError):
        J.tovec()
    with pytest.raises(md.OutputTooLargeError):
        J.tosparse()
    monkeypatch.setenv("MATDERIV_MAX_BYTES", "0")
    with pytest.raises(md.OutputTooLargeError):
        J.vjp(np.ones(2))
    # an explicit max_bytes wins over the environment
    assert J.toarray(max_bytes=10**6).shape == (2, 2, 3)
    assert _memory.available_bytes() == 0
    monkeypatch.setenv("MATDERIV_MAX_BYTES", " 1000 ")
    assert _memory.available_bytes() == 1000


@pytest.mark.parametrize("value", ["abc", "1.5", "1e9", "10GB", "0x10"])
def test_env_var_malformed(monkeypatch, value):
    monkeypatch.setenv("MATDERIV_MAX_BYTES", value)
    with pytest.raises(ValueError, match=rf"MATDERIV_MAX_BYTES: expected a non-negative integer number of bytes, got {re.escape(repr(value))}"):
        md.jacobian_wx(np.ones(3), 2).toarray()
    # an explicit max_bytes does not read the environment at all
    assert md.jacobian_wx(np.ones(3), 2).toarray(max_bytes=1000).shape == (2, 2, 3)


def test_env_var_negative(monkeypatch):
    monkeypatch.setenv("MATDERIV_MAX_BYTES", "-5")
    with pytest.raises(ValueError, match="MATDERIV_MAX_BYTES: expected a non-negative integer number of bytes, got '-5'"):
        md.jacobian_wx(np.ones(3), 2).tovec()


def test_env_var_blank_falls_back_to_available_memory(monkeypatch):
    monkeypatch.setenv("MATDERIV_MAX_BYTES", "  ")
    avail = _memory.available_bytes()
    assert avail is None or (isinstance(avail, int) and avail > 0)
    monkeypatch.delenv("MATDERIV_MAX_BYTES")
    assert md.jacobian_wx(np.ones(3), 2).toarray().shape == (2, 2, 3)


def test_available_bytes_fallbacks(monkeypatch):
    monkeypatch.delenv("MATDERIV_MAX_BYTES", raising=False)

    monkeypatch.setattr(_memory, "_read", lambda path: None)  # no /proc here
    monkeypatch.setattr(_memory.os, "sysconf", lambda name: {"SC_AVPHYS_PAGES": 10, "SC_PAGE_SIZE": 4096}[name])
    assert _memory.available_bytes() == 40960
    big = [((4 * 2**20,), np.float64)]  # 32 MiB: large enough for the default limit to be read
    with pytest.raises(md.OutputTooLargeError, match=r"\(40960 bytes"):
        _memory.check_output_bytes(big, what="toarray", max_bytes=None, hint="")

    def no_sysconf(name):
        raise ValueError(name)

    monkeypatch.setattr(_memory.os, "sysconf", no_sysconf)
    assert _memory.available_bytes() is None
    # no limit known: nothing is refused (only the check, nothing allocated here)
    _memory.check_output_bytes([((10**15,), np.float64)], what="toarray", max_bytes=None, hint="")


def test_default_limit_is_read_only_for_large_outputs(monkeypatch):
    """Small outputs skip the /proc/meminfo lookup; large ones, or a set env var, do not."""
    monkeypatch.delenv("MATDERIV_MAX_BYTES", raising=False)
    monkeypatch.setattr(_memory, "memory_limit", lambda: (1000, "a test"))
    _memory.check_output_bytes([((1000,), np.float64)], what="toarray", max_bytes=None, hint="")
    with pytest.raises(md.OutputTooLargeError, match=r"\(1000 bytes; set by a test\)"):
        _memory.check_output_bytes([((2**22,), np.float64)], what="toarray", max_bytes=None, hint="")
    monkeypatch.setenv("MATDERIV_MAX_BYTES", "1000")
    with pytest.raises(md.OutputTooLargeError):
        md.jacobian_wx(np.ones(100), 10).toarray()  # 80 kB, over the env limit


def test_a_recent_limit_reading_is_reused_only_for_outputs_far_below_it(monkeypatch):
    """Within a second, an output at most 1/8 of the last reading reuses it; a larger one,
    a stale reading or a set MATDERIV_MAX_BYTES reads the limit again."""
    monkeypatch.delenv("MATDERIV_MAX_BYTES", raising=False)
    readings = []
    limit = 8 * 2**30

    def fake_limit():
        readings.append(limit)
        return limit, "a test"

    monkeypatch.setattr(_memory, "memory_limit", fake_limit)
    small, large = [((2**22,), np.float64)], [((2**28,), np.float64)]  # 32 MiB, and 2 GiB: over 1/8 of 8 GiB
    _memory.check_output_bytes(small, what="toarray", max_bytes=None, hint="")
    _memory.check_output_bytes(small, what="toarray", max_bytes=None, hint="")
    assert len(readings) == 1  # reused
    limit = 2**20  # memory shrank: an output over 1/8 of the old reading looks again, and is refused
    with pytest.raises(md.OutputTooLargeError, match=r"\(1048576 bytes; set by a test\)"):
        _memory.check_output_bytes(large, what="toarray", max_bytes=None, hint="")
    assert len(readings) == 2
    monkeypatch.setattr(_memory, "_limit_seen", (_memory._limit_seen[0] - 2 * _memory.LIMIT_SECONDS,) + _memory._limit_seen[1:])
    with pytest.raises(md.OutputTooLargeError):  # stale: read again, though small
        _memory.check_output_bytes(small, what="toarray", max_bytes=None, hint="")
    assert len(readings) == 3
    limit = 8 * 2**30
    monkeypatch.setenv("MATDERIV_MAX_BYTES", str(limit))  # (read by the real memory_limit)
    for _ in range(2):
        _memory.check_output_bytes(small, what="toarray", max_bytes=None, hint="")
    assert len(readings) == 5  # the variable is read at every call


def test_byte_count_uses_python_ints():
    """Sizes beyond int64 are computed exactly and refused, never wrapped."""
    huge = (2**40, 2**40, 2**10)
    with pytest.raises(md.OutputTooLargeError, match=rf"\({2**90 * 8} bytes\)"):
        _memory.check_output_bytes([(huge, np.float64)], what="toarray", max_bytes=2**62, hint="")
    with pytest.raises(md.OutputTooLargeError):
        md.jacobian_wx(np.ones(3), 2**40).toarray(max_bytes=2**62)


# ===================================================================================
# Accepted inputs: every layout gives the same result as a fresh C-contiguous copy
# ===================================================================================
def _x_variants(rng, dtype, batched):
    base = random_array(rng, (4, 6), dtype)
    x = base if batched else base[1]
    ro = x.copy()
    ro.flags.writeable = False
    variants = {
        "list": x.tolist(),
        "tuple": tuple(map(tuple, x)) if batched else tuple(x),
        "non-contiguous": np.repeat(x, 2, axis=-1)[..., ::2],
        "negative-stride": np.ascontiguousarray(x[..., ::-1])[..., ::-1],
        "fortran": np.asfortranarray(x),
        "read-only": ro,
        "byte-swapped": x.astype(x.dtype.newbyteorder()),
        "broadcast": np.broadcast_to(x[..., :1], x.shape) if not batched else np.broadcast_to(x[:1], x.shape),
    }
    if batched:
        variants["transposed"] = np.ascontiguousarray(x.T).T
    return x, variants


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("batched", [False, True])
def test_x_layouts_give_the_same_results(rng, dtype, convention, batched):
    x, variants = _x_variants(rng, dtype, batched)
    for name, xv in variants.items():
        fresh = np.ascontiguousarray(np.asarray(xv))
        fresh = fresh.astype(fresh.dtype.newbyteorder("="))  # a fresh, native, C-contiguous copy
        assert fresh.dtype == (wider(dtype) if name == "list" else np.dtype(dtype)), name
        if name != "broadcast":
            assert np.array_equal(fresh, x), name
        got = all_forms(make_jac(xv, 3, convention))
        want = all_forms(make_jac(fresh, 3, convention))
        assert_same_forms(got, want)


def test_memmap_read_only_x(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(6.0).reshape(2, 3))
    X = np.load(path, mmap_mode="r")
    assert not X.flags.writeable
    J = md.jacobian_wx(X, 2)
    assert np.array_equal(J.tovec(), np.kron(np.arange(6.0).reshape(2, 3), np.eye(2)))


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_dW_v_and_operand_layouts(rng, convention):
    X = random_array(rng, (3, 4), np.float64)
    J = make_jac(X, 5, convention)
    dW = random_array(rng, J.W_shape, np.float64)
    V = random_array(rng, (3, 5), np.float64)
    u = random_array(rng, (20,), np.float64)
    ref_jvp, ref_vjp = J.jvp(dW), J.vjp(V)
    op = J.aslinearoperator("C")
    ref_mv, ref_rmv = op.matvec(u), op.rmatvec(V.reshape(-1))

    def views(a):
        ro = a.copy()
        ro.flags.writeable = False
        out = [a.tolist(), np.asfortranarray(a), a[::-1][::-1], np.repeat(a, 2, axis=-1)[..., ::2],
               ro, a.astype(">f8")]
        return out

    for d in views(dW):
        np.testing.assert_array_equal(J.jvp(d), ref_jvp)
    for d in views(V):
        np.testing.assert_array_equal(J.vjp(d), ref_vjp)
        np.testing.assert_array_equal(op.rmatvec(np.asarray(d).reshape(-1)), ref_rmv)
    for d in (u.tolist(), u[::-1].copy()[::-1], np.repeat(u, 2)[::2], u.astype(">f8")):
        np.testing.assert_array_equal(op.matvec(d), ref_mv)
    # broadcast operands
    b = np.broadcast_to(dW[:1], dW.shape)
    np.testing.assert_array_equal(J.jvp(b), J.jvp(np.ascontiguousarray(b)))
    b = np.broadcast_to(V[:, :1], V.shape)
    np.testing.assert_array_equal(J.vjp(b), J.vjp(np.ascontiguousarray(b)))


def test_dependent_case_input_layouts(rng):
    n, m = 3, 4
    W = random_array(rng, (n, m), np.float64, zeros=False)
    x = random_array(rng, (m,), np.float64, zeros=False)
    dx = random_array(rng, (m, n, m), np.float64, zeros=False)
    want = all_forms(md.jacobian_wx(x, n, W=W, dx_dW=dx))
    ro = dx.copy()
    ro.flags.writeable = False
    for xx, WW, dd in [
        (x.tolist(), W.tolist(), dx.tolist()),
        (x[::-1].copy()[::-1], np.asfortranarray(W), np.asfortranarray(dx)),
        (x.astype(">f8"), W.astype(">f8"), dx.astype(">f8")),
        (x, np.ascontiguousarray(W.T).T, ro),
        (np.repeat(x, 2)[::2], np.repeat(W, 3, axis=1)[:, ::3], dx.transpose(2, 1, 0).copy().transpose(2, 1, 0)),
    ]:
        assert_same_forms(all_forms(md.jacobian_wx(xx, n, W=WW, dx_dW=dd)), want)
    dxb = np.broadcast_to(dx[:1], dx.shape)
    assert_same_forms(
        all_forms(md.jacobian_wx(x, n, W=W, dx_dW=dxb)),
        all_forms(md.jacobian_wx(x, n, W=W, dx_dW=np.ascontiguousarray(dxb))),
    )


def test_caller_arrays_are_not_modified(rng):
    x = random_array(rng, (4,), np.float64)
    W = random_array(rng, (3, 4), np.float64)
    dx = random_array(rng, (4, 3, 4), np.float64)
    copies = [a.copy() for a in (x, W, dx)]
    J = md.jacobian_wx(x, 3, W=W, dx_dW=dx)
    all_forms(J)
    for a, c in zip((x, W, dx), copies):
        assert np.array_equal(a, c)
        assert a.flags.writeable


# ===================================================================================
# helpers of _validation used everywhere
# ===================================================================================
def test_index_dtype_boundary():
    imax = np.iinfo(np.int32).max
    assert _validation.INT32_INDEX_MAX == imax
    assert _validation.index_dtype(0) == np.int32
    assert _validation.index_dtype(imax) == np.int32
    assert _validation.index_dtype(imax + 1) == np.int64
    assert _validation.index_dtype(10**30) == np.int64


def test_check_shape_and_as_array_messages():
    with pytest.raises(ValueError, match=r"G: expected shape \(3,\), got \(\)"):
        _validation.check_shape(np.float64(1.0), "G", (3,))
    with pytest.raises(ValueError, match=r"G: expected a 2-D or 3-D array, got 1-D with shape \(4,\)"):
        _validation.as_array(np.ones(4), "G", (2, 3))
    with pytest.raises(ValueError, match=r"convention: expected one of 'Wx', 'xW', got 'WX'"):
        _validation.check_choice("WX", "convention", ("Wx", "xW"))
    assert _validation.check_size(np.int64(7), "T") == 7


def test_contiguous_returns_native_c_copy_only_when_needed():
    a = np.arange(6.0).reshape(2, 3)
    c = _validation.contiguous(a, np.float64)
    assert np.shares_memory(c, a) and c.shape == a.shape  # no copy
    for v in (a.T, a.astype(">f8"), a[:, ::2]):
        c = _validation.contiguous(v, np.float64)
        assert c.flags.c_contiguous and c.dtype.isnative and c.dtype == np.float64
        assert np.array_equal(c, v)


def test_jacobian_subclass_must_implement_the_shapes_and_hooks():
    class Bare(Jacobian):
        dtype, _samples, _batched = np.dtype(np.float64), 1, False

    with pytest.raises(TypeError, match=r"abstract class Bare .*W_shape.*_fill_tensor.*_vjp.*f_shape"):
        Bare()


def test_sparse_outputs_are_sparse_arrays_not_matrices():
    J = md.jacobian_wx(np.ones((2, 3)), 2)
    for fmt in FORMATS:
        A = J.tosparse(fmt)
        assert isinstance(A, sp.sparray)
        assert not isinstance(A, sp.spmatrix)
    assert np.array_equal(J.tovec(), ref_vec(np.ones((2, 3)), 2, "Wx", "F"))
    assert np.array_equal(J.toarray(), ref_tensor(np.ones((2, 3)), 2, "Wx"))


class _ArrayLikeOnly:
    """What a CPU torch or jax array offers numpy: __array__, nothing else."""

    def __init__(self, data):
        self._data = np.asarray(data)

    def __array__(self, dtype=None, copy=None):
        return self._data if dtype is None else self._data.astype(dtype)


def test_objects_with___array___are_accepted_everywhere():
    x = np.array([1.0, -2.0, 3.0])
    J = md.jacobian_wx(_ArrayLikeOnly(x), 2)
    assert np.array_equal(J.toarray(), md.jacobian_wx(x, 2).toarray())
    assert np.array_equal(J.jvp(_ArrayLikeOnly(np.ones((2, 3)))), np.ones((2, 3)) @ x)
    assert np.array_equal(J.vjp(_ArrayLikeOnly([1.0, 2.0])), np.outer([1.0, 2.0], x))
    X = np.arange(6.0).reshape(2, 3)
    G = np.arange(4.0).reshape(2, 2)
    assert np.array_equal(md.per_sample_grads(_ArrayLikeOnly(X), _ArrayLikeOnly(G)), np.einsum("bi,bj->bij", G, X))
    assert np.array_equal(md.batch_grad(_ArrayLikeOnly(X), _ArrayLikeOnly(G)), G.T @ X)


# --- a convolution's parameters ----------------------------------------------------------------
def test_conv_geometry_matches_the_output_size_formula():
    """out = floor((S + 2p - d(k-1) - 1)/s) + 1 per axis, by a plain loop over the positions a
    window can start at."""
    for S, k, s, p, d in [(7, 3, 1, 0, 1), (7, 3, 2, 1, 1), (8, 2, 3, 2, 2), (5, 5, 1, 0, 1), (1, 3, 1, 1, 1)]:
        starts = [i for i in range(-p, S + p) if i + d * (k - 1) <= S + p - 1][::s]
        g = _validation.conv_geometry((S,), k, s, p, d)
        assert g.out == (len(starts),) and g.positions == len(starts) and g.window == k
    g = _validation.conv_geometry((5, 6), (3, 2), (1, 2), (0, 1), 1)
    assert g == ((5, 6), (3, 2), (1, 2), (0, 1), (1, 1), (3, 4)) and g.positions == 12 and g.window == 6


@pytest.mark.parametrize(
    "args, error, match",
    [
        (((5,), 0, 1, 0, 1), ValueError, r"kernel_size: expected ints of at least 1, got 0"),
        (((5,), 3, 0, 0, 1), ValueError, r"stride: expected ints of at least 1, got 0"),
        (((5,), 3, 1, -1, 1), ValueError, r"padding: expected ints of at least 0, got -1"),
        (((5,), 3, 1, 0, 0), ValueError, r"dilation: expected ints of at least 1, got 0"),
        (((5, 5), (3, 3, 3), 1, 0, 1), ValueError, r"kernel_size: expected an int or 2 ints"),
        (((5,), 2.0, 1, 0, 1), TypeError, r"kernel_size: expected ints, got float 2.0"),
        (((5,), True, 1, 0, 1), TypeError, r"kernel_size: expected ints, got bool"),
        (((5,), 6, 1, 0, 1), ValueError, r"kernel_size: expected a dilated kernel .* no larger than the padded input"),
        (((5,), 3, 1, 0, 3), ValueError, r"kernel_size: .*\(7,\).* padded input .*\(5,\)"),
    ],
)
def test_conv_geometry_refuses_bad_parameters(args, error, match):
    with pytest.raises(error, match=match):
        _validation.conv_geometry(*args)


def test_conv_input_takes_batched_or_single_samples():
    assert _validation.conv_input(np.ones((2, 3, 4))).shape == (2, 3, 4)
    assert _validation.conv_input(np.ones((3, 4)), batched=False).shape == (3, 4)
    with pytest.raises(ValueError, match=r"x: expected a 3-D or 4-D array, got 2-D"):
        _validation.conv_input(np.ones((3, 4)))
