"""Eight Python threads calling every kernel at once (every Jacobian form, gradient function
and gradient statistic), on shared read-only inputs, get results identical to the same calls
made one at a time from a single thread with every kernel serial.

The kernels release the GIL, so the calls really overlap: with the serial threshold at 0
each call starts its own OpenMP team (n_threads=None and 2 both appear), numpy's BLAS runs
beside them, and the kernels' counters show that every kernel took its threaded branch.
Also: the serial threshold (matderiv.set_serial_below_bytes), and a team of two threads
seen from the operating system.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp

import matderiv as md
from conftest import CONVENTIONS, FORMATS, LAYOUTS, ORDERS, assert_every_kernel_threaded
from matderiv._config import serial_below_from_environment
from matderiv._kernels import _openmp

THREADS = 8
REPEATS = 3  # each call is made this many times, in a shuffled order


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _calls() -> list:
    """(name, call) for every Jacobian form, gradient function and gradient statistic."""
    rng = np.random.default_rng(7)
    B, T, n, m = 8, 6, 24, 32  # T = 6: the Gram kernel's four-pair blocks and their remainder
    x1 = _read_only(rng.standard_normal(m))
    xb = _read_only(rng.standard_normal((B, m)).astype(np.float32))
    xc = _read_only((rng.standard_normal((B, m)) + 1j * rng.standard_normal((B, m))).astype(np.complex128))
    X2, G2 = _read_only(rng.standard_normal((B, m))), _read_only(rng.standard_normal((B, n)))
    X3, G3 = _read_only(rng.standard_normal((B, T, m))), _read_only(rng.standard_normal((B, T, n)))
    calls = []
    for convention in CONVENTIONS:
        make = md.jacobian_wx if convention == "Wx" else md.jacobian_xw
        W_shape = (n, m) if convention == "Wx" else (m, n)
        dW = _read_only(rng.standard_normal(W_shape))
        for label, x in (("single", x1), ("batched f32", xb), ("batched c128", xc)):
            J = make(x, n)
            S = x.shape[0] if x.ndim == 2 else 1
            v = _read_only(rng.standard_normal((S, n) if x.ndim == 2 else (n,)))
            u, w = _read_only(rng.standard_normal(n * m)), _read_only(rng.standard_normal(S * n))
            tag = f"{convention} {label}"
            for nt in (None, 2):
                calls += [(f"{tag} toarray {lay} n_threads={nt}", lambda J=J, lay=lay, nt=nt: J.toarray(lay, n_threads=nt)) for lay in LAYOUTS]
                calls += [(f"{tag} tovec {o} n_threads={nt}", lambda J=J, o=o, nt=nt: J.tovec(o, n_threads=nt)) for o in ORDERS]
                calls += [
                    (f"{tag} tosparse {f} {o} n_threads={nt}", lambda J=J, f=f, o=o, nt=nt: J.tosparse(f, o, n_threads=nt))
                    for f in FORMATS
                    for o in ORDERS
                ]
                calls.append((f"{tag} vjp n_threads={nt}", lambda J=J, v=v, nt=nt: J.vjp(v, n_threads=nt)))
            calls.append((f"{tag} jvp", lambda J=J, dW=dW: J.jvp(dW)))
            for o in ORDERS:
                calls.append((f"{tag} operator {o} matvec", lambda J=J, o=o, u=u: J.aslinearoperator(o).matvec(u)))
                calls.append((f"{tag} operator {o} rmatvec", lambda J=J, o=o, w=w: J.aslinearoperator(o).rmatvec(w)))
        for dims, (X, G) in (("2-D", (X2, G2)), ("3-D", (X3, G3))):
            for bias in (False, True):
                tag = f"{convention} {dims} bias={bias}"
                kw = dict(convention=convention, bias=bias)
                calls += [
                    (f"{tag} per_sample_grads n_threads={nt}", lambda X=X, G=G, kw=kw, nt=nt: md.per_sample_grads(X, G, n_threads=nt, **kw))
                    for nt in (None, 2)
                ]
                calls += [
                    (f"{tag} batch_grad {r}", lambda X=X, G=G, kw=kw, r=r: md.batch_grad(X, G, reduce=r, **kw))
                    for r in ("sum", "mean")
                ]
                calls.append((f"{tag} per_sample_grad_norms", lambda X=X, G=G, b=bias: md.per_sample_grad_norms(X, G, bias=b)))
                calls.append((f"{tag} clip_and_sum", lambda X=X, G=G, kw=kw: md.clip_and_sum(X, G, 1.5, **kw)))
                calls.append((f"{tag} sum_grad_squared", lambda X=X, G=G, kw=kw: md.sum_grad_squared(X, G, **kw)))
                calls += [
                    (f"{tag} grad_variance ddof={d}", lambda X=X, G=G, kw=kw, d=d: md.grad_variance(X, G, ddof=d, **kw))
                    for d in (0, 1)
                ]
                calls += [
                    (f"{tag} kfac_factors {mode}", lambda X=X, G=G, b=bias, mode=mode: md.kfac_factors(X, G, bias=b, mode=mode))
                    for mode in ("expand", "reduce")
                ]
                X2, G2 = X[: B // 2], G[: B // 2]  # another batch: read-only views of the same data
                calls += [
                    (
                        f"{tag} per_sample_grad_dots {label} normalize={norm}",
                        lambda X=X, G=G, other=other, b=bias, norm=norm: md.per_sample_grad_dots(
                            X, G, *other, bias=b, normalize=norm
                        ),
                    )
                    for label, other in (("self", ()), ("two batches", (X2, G2)))
                    for norm in (False, True)
                ]
    return calls + _conv_calls(rng, B) + _embedding_calls(rng) + _conv_jacobian_calls(rng)


def _conv_calls(rng, B) -> list:
    """conv_patches and a Conv in the batched functions (kernel (3, 2), stride (2, 1), padding 1,
    dilation (1, 2): a (3, 9, 7) input gives (5, 7) positions)."""
    x = _read_only(rng.standard_normal((B, 3, 9, 7)))
    G = _read_only(rng.standard_normal((B, 5, 5, 7)))
    geometry = dict(kernel_size=(3, 2), stride=(2, 1), padding=1, dilation=(1, 2))
    X = md.Conv(x, **geometry)
    calls = [(f"conv_patches n_threads={nt}", lambda nt=nt: md.conv_patches(x, **geometry, n_threads=nt)) for nt in (None, 2)]
    # kernel rows contiguous (dilation 1): the interior patches' unchecked copy
    calls += [(f"conv_patches interior n_threads={nt}", lambda nt=nt: md.conv_patches(x, 3, padding=1, n_threads=nt))
              for nt in (None, 2)]
    return calls + [
        ("Conv per_sample_grads", lambda: md.per_sample_grads(X, G, bias=True, n_threads=2)),
        ("Conv per_sample_grad_norms", lambda: md.per_sample_grad_norms(X, G)),
        ("Conv clip_and_sum", lambda: md.clip_and_sum(X, G, 1.5)),
        ("Conv grad_variance", lambda: md.grad_variance(X, G, ddof=1)),
        ("Conv per_sample_grad_dots", lambda: md.per_sample_grad_dots(X, G, normalize=True)),
    ]


def _embedding_calls(rng) -> list:
    """Every batched function on an Embedding (the group-sum kernel, per sample and scattering)."""
    B, T, V, d = 8, 5, 6, 24
    E, G = md.Embedding(_read_only(rng.integers(0, V, (B, T))), V), _read_only(rng.standard_normal((B, T, d)))
    E2, G2 = md.Embedding(E.idx[:3], V), G[:3]
    return [
        ("embedding per_sample_grads", lambda: md.per_sample_grads(E, G, n_threads=2)),
        ("embedding batch_grad", lambda: md.batch_grad(E, G)),
        ("embedding norms", lambda: md.per_sample_grad_norms(E, G, n_threads=2)),
        ("embedding clip_and_sum", lambda: md.clip_and_sum(E, G, 1.5)),
        ("embedding sum_grad_squared", lambda: md.sum_grad_squared(E, G)),
        ("embedding grad_variance", lambda: md.grad_variance(E, G, ddof=1)),
        ("embedding dots", lambda: md.per_sample_grad_dots(E, G, E2, G2, normalize=True)),
        ("embedding kfac_factors", lambda: md.kfac_factors(E, G)),
    ]


def _conv_jacobian_calls(rng: np.random.Generator) -> list:
    """The convolution Jacobians' kernel forms (the input Jacobian's Toeplitz kernel)."""
    W = _read_only(rng.standard_normal((3, 2, 3, 2)).astype(np.float32))
    J = md.jacobian_conv_input(W, (2, 9, 7), stride=(2, 1), padding=1, dilation=(1, 2))
    Jw = md.jacobian_conv_weight(_read_only(rng.standard_normal((2, 9))), 3, 4, padding=2)
    calls = []
    for nt in (None, 2):
        calls += [(f"conv input toarray {lay} n_threads={nt}", lambda lay=lay, nt=nt: J.toarray(lay, n_threads=nt)) for lay in LAYOUTS]
        calls += [(f"conv input tovec {o} n_threads={nt}", lambda o=o, nt=nt: J.tovec(o, n_threads=nt)) for o in ORDERS]
        calls += [
            (f"conv {name} tosparse {f} {o} n_threads={nt}", lambda J=Jac, f=f, o=o, nt=nt: J.tosparse(f, o, n_threads=nt))
            for name, Jac in (("input", J), ("weight", Jw))
            for f in FORMATS
            for o in ORDERS
        ]
    return calls


def _sparse_arrays(A) -> list:
    return [A.data, *A.coords] if A.format == "coo" else [A.data, A.indices, A.indptr]


def _assert_identical(got, want, name: str) -> None:
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want), name
        for g, w in zip(got, want):
            _assert_identical(g, w, name)
    elif sp.issparse(want):
        assert type(got) is type(want) and got.shape == want.shape, name
        for g, w in zip(_sparse_arrays(got), _sparse_arrays(want)):
            assert g.dtype == w.dtype and np.array_equal(g, w), name
    else:
        assert got.dtype == want.dtype and np.array_equal(got, want), name


def test_eight_threads_at_once_match_one_thread(threaded_kernels):
    calls = _calls()  # (building a weight Jacobian unfolds its patches: a kernel call)
    md.set_serial_below_bytes(sys.maxsize)  # the reference: every kernel on the calling thread
    before = threaded_kernels()
    expected = {name: call() for name, call in calls}
    assert all(threaded == before[name][1] for name, (_, threaded) in threaded_kernels().items())
    md.set_serial_below_bytes(0)
    work = calls * REPEATS
    random.Random(0).shuffle(work)
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(lambda item: (item[0], item[1]()), work))
    for name, got in results:
        _assert_identical(got, expected[name], name)
    assert_every_kernel_threaded(threaded_kernels())


# --- the serial threshold ----------------------------------------------------------------------
def test_serial_threshold_is_set_and_restored():
    previous = md.set_serial_below_bytes(np.int64(123))
    try:
        assert md.get_serial_below_bytes() == 123 == _openmp.get_serial_below_bytes()
        assert md.set_serial_below_bytes(0) == 123
    finally:
        md.set_serial_below_bytes(previous)
    assert md.get_serial_below_bytes() == previous


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (-1, ValueError, r"nbytes: expected a non-negative int of at most 9223372036854775807 \(bytes\), got -1"),
        (2**63, ValueError, r"nbytes: expected a non-negative int of at most \d+ \(bytes\), got 9223372036854775808"),
        (1.5, TypeError, r"nbytes: expected a non-negative int \(bytes\), got float 1.5"),
        (True, TypeError, r"nbytes: expected a non-negative int \(bytes\), got bool True"),
        ("1024", TypeError, r"nbytes: expected a non-negative int \(bytes\), got str '1024'"),
    ],
)
def test_bad_serial_threshold_is_named(bad, error, message):
    before = md.get_serial_below_bytes()
    with pytest.raises(error, match=message):
        md.set_serial_below_bytes(bad)
    assert md.get_serial_below_bytes() == before


@pytest.mark.parametrize("text, want", [(None, 1 << 20), ("", 1 << 20), (" ", 1 << 20), ("0", 0), (" 4096\n", 4096)])
def test_serial_threshold_from_the_environment(text, want):
    assert serial_below_from_environment(text) == want


@pytest.mark.parametrize("text", ["-1", "1e6", "1MiB", "0x10", "1_000", "9223372036854775808"])
def test_bad_serial_threshold_in_the_environment_is_named(text):
    message = rf"MATDERIV_SERIAL_BELOW_BYTES: expected a non-negative integer number of bytes \(at most {sys.maxsize}\), got '{text}'"
    with pytest.raises(ValueError, match=message):
        serial_below_from_environment(text)


_TEAM_PROBE = """
import os, numpy as np, matderiv as md
from matderiv._kernels import _openmp
tasks = lambda: len(os.listdir("/proc/self/task"))  # this process's threads
X, G = np.ones((4, 3)), np.ones((4, 2))  # 96 bytes of output
at_load = md.set_serial_below_bytes(1 << 20)
before = tasks()
md.per_sample_grads(X, G, n_threads=2)
small = tasks()
md.set_serial_below_bytes(0)
md.per_sample_grads(X, G, n_threads=2)
print(at_load, before, small, tasks(), *_openmp.kernel_calls()["outer"])
"""


@pytest.mark.skipif(not _openmp.have_openmp(), reason="a serial build starts no team")
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc/self/task (Linux)")
def test_a_team_of_two_threads_starts():
    """In a fresh process (no team yet; its threshold from MATDERIV_SERIAL_BELOW_BYTES=0): a
    call under the threshold starts no thread, the same call at threshold 0 starts one."""
    env = dict(os.environ, MATDERIV_SERIAL_BELOW_BYTES="0")
    res = subprocess.run([sys.executable, "-c", _TEAM_PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    at_load, before, small, after, calls, threaded = map(int, res.stdout.split())
    assert at_load == 0
    assert small == before  # serial: no team, no thread
    assert after > before  # the team's second thread (the runtime keeps it for the next team)
    assert (calls, threaded) == (2, 1)
