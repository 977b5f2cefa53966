"""matderiv inside pipelines it does not control: forked workers, every start method,
the OpenMP runtime next to BLAS, thread limits, container memory limits, misaligned
buffers, and the errors of odd inputs (masked arrays, bad callables, huge n)."""
from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys

import numpy as np
import pytest

import matderiv as md
from conftest import assert_every_kernel_threaded, kernel_calls_since, peak_bytes
from matderiv import _memory, _threads
from matderiv import _validation as v
from matderiv._info import report
from matderiv._kernels import _openmp

_B, _N, _M = 64, 48, 64


def _data():
    rng = np.random.default_rng(7)
    return rng.standard_normal((_B, _M)), rng.standard_normal((_B, _N)), rng.standard_normal((8, 5, _M))


def _kernel_results(_=None):
    """Every OpenMP kernel at least once (and the BLAS-backed batch_grad), two threads
    requested; and (meta) the kernels' counts of this call, the serial threshold, and
    whether this process is a child forked after a team."""
    before = _openmp.kernel_calls()
    X, G, X3 = _data()
    J = md.jacobian_wx(X[0], _N)  # dense forms (48, 48, 64)
    Jb = md.jacobian_xw(X[:4], 32)  # sparse forms of 4 * 32 * 64 entries
    out = {
        "per_sample_grads": md.per_sample_grads(X, G, n_threads=2),  # outer
        "toarray": J.toarray(n_threads=2),  # kron_dense
        "toarray denominator": md.jacobian_xw(X[:2], 24).toarray("denominator", n_threads=2),
        "tovec": J.tovec("F", n_threads=2),
        "vjp": md.jacobian_wx(X[:8], _N).vjp(G[:8], n_threads=2),
        "per_sample_grad_norms": md.per_sample_grad_norms(X, G, n_threads=2),  # outer_norms
        "3-D norms": md.per_sample_grad_norms(X3, X3[..., :_N], bias=True, n_threads=2),  # gram_sq, row_dots
        "clip_and_sum": md.clip_and_sum(X, G, 1.0, n_threads=2)[0],  # clip_rows
        "batch_grad": md.batch_grad(X, G),
        "conv_patches": md.conv_patches(X3, 3, padding=1, n_threads=2),  # conv_unfold
        "embedding norms": md.per_sample_grad_norms(md.Embedding(X3[..., 0].argsort(axis=1) % 3, 3), X3, n_threads=2),  # group_sums
    }
    Jc = md.jacobian_conv_input(X[:2].reshape(2, 4, 4, 4), (4, 12, 10), padding=1)  # toeplitz
    for fmt in ("csr", "csc", "coo"):  # kron_csr
        for name, Jac in (("", Jb), ("conv input ", Jc)):
            A = Jac.tosparse(fmt, n_threads=2)
            out[f"{name}tosparse {fmt}"] = np.concatenate([A.data, *(A.coords if fmt == "coo" else (A.indices, A.indptr))])
    meta = {
        "kernel calls": kernel_calls_since(before),
        "serial below": _openmp.get_serial_below_bytes(),
        "serial after fork": _threads.serial_after_fork(),
    }
    return out, meta


def _assert_same_results(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for name, arr in want.items():
        np.testing.assert_allclose(got[name], arr, rtol=1e-12, atol=1e-12, err_msg=name)


def _assert_forked_child_ran_serially(counts: dict) -> None:
    """Every kernel ran in the child, and none started a team (a team of one thread each)."""
    assert [k for k, (calls, threaded) in counts.items() if calls == 0 or threaded] == [], counts


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_kernels_in_worker_processes(method, threaded_kernels):
    """After the parent ran OpenMP teams, workers of every start method return the
    parent's results (a forked child of libgomp used to hang forever): children started by
    forkserver and spawn run every kernel threaded (their threshold, 0, from the
    environment), forked children run them serially, and the parent keeps its threads."""
    if method not in mp.get_all_start_methods():
        pytest.skip(f"the {method} start method does not exist on {sys.platform}")
    want, meta = _kernel_results()  # the parent starts its OpenMP teams
    assert_every_kernel_threaded(meta["kernel calls"])
    with mp.get_context(method).Pool(2) as pool:
        got = pool.map_async(_kernel_results, range(2)).get(timeout=120)
    for res, child in got:
        _assert_same_results(res, want)
        assert child["serial below"] == 0
        assert child["serial after fork"] == (method == "fork")
        if method == "fork":
            _assert_forked_child_ran_serially(child["kernel calls"])
        else:
            assert_every_kernel_threaded(child["kernel calls"])
    assert not _threads.serial_after_fork()
    assert v.n_threads_value(2) == 2
    assert v.n_threads_value(None) == max(1, _openmp.max_threads())


def test_fork_of_a_fork_stays_serial(threaded_kernels):
    """A grandchild forked from a child forked after a team: the parent's results, each
    kernel on one thread (grandchild's exit status 1: an error; 3: not serial after fork,
    or other results; 4: a kernel that started a team or did not run)."""
    want, _ = _kernel_results()
    pid = os.fork()
    if pid == 0:  # child: fork again and run the kernels in the grandchild
        code = 1
        try:
            pid2 = os.fork()
            if pid2 == 0:
                status = 1
                try:
                    got, meta = _kernel_results()
                    status = 3
                    assert _threads.serial_after_fork() and v.n_threads_value(2) == 1
                    _assert_same_results(got, want)
                    status = 4
                    _assert_forked_child_ran_serially(meta["kernel calls"])
                    status = 0
                finally:
                    os._exit(status)
            _, status = os.waitpid(pid2, 0)
            code = os.waitstatus_to_exitcode(status)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_huge_n_threads_is_an_error_not_a_crash():
    X, G, _ = _data()
    limit = v.max_threads()
    assert 64 <= limit <= max(64, v.MAX_THREADS_PER_CORE * _threads.usable_cores())
    for nt in (2**31 - 1, limit + 1):
        msg = rf"n_threads: expected None, -1 or an int from 1 to {limit} \(the thread limit\), got {nt}"
        with pytest.raises(ValueError, match=msg):
            md.per_sample_grads(X, G, n_threads=nt)
        with pytest.raises(ValueError, match=msg):
            md.jacobian_wx(X[0], 4).toarray(n_threads=nt)
    want = md.per_sample_grads(X, G, n_threads=1)
    assert np.array_equal(md.per_sample_grads(X, G, n_threads=limit), want)


def test_thread_limit_follows_the_runtime(monkeypatch):
    monkeypatch.setattr(v.core._openmp, "thread_limit", lambda: 3)
    assert v.max_threads() == 3
    with pytest.raises(ValueError, match=r"an int from 1 to 3 \(the thread limit\), got 4"):
        v.n_threads_value(4)


def test_one_core_count(monkeypatch):
    """The cores of the CPU affinity where there is one, else os.cpu_count(); n_threads=-1,
    the n_threads limit and info all use that count."""
    if hasattr(os, "sched_getaffinity"):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5})
        assert _threads.usable_cores() == 3
        monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 5)
    assert _threads.usable_cores() == 5
    assert v.n_threads_value(-1) == 5
    monkeypatch.setattr(v.core._openmp, "thread_limit", lambda: 10**6)
    assert v.max_threads() == 80  # MAX_THREADS_PER_CORE per core
    assert "5 usable cores" in dict(report())["threads"]
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # undeterminable
    assert _threads.usable_cores() == 1


# --- the OpenMP runtime's wait policy ------------------------------------------------------
_SHOW = "import os, matderiv; from matderiv._kernels import WAIT_POLICY; print(WAIT_POLICY); print(os.environ.get('OMP_WAIT_POLICY'))"
_PRINT_RUNTIMES = "import matderiv; from matderiv._kernels import loaded_runtimes; print(*loaded_runtimes(), sep='\\n')"


def _run_python(code, **env_changes):
    env = {k: val for k, val in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120)


def test_runtime_loaded_passive_and_environment_restored():
    res = _run_python(_SHOW, OMP_DISPLAY_ENV="TRUE")
    policy, env_after = res.stdout.split("\n")[:2]
    assert env_after == "None"  # the process environment is as it was
    if _openmp.have_openmp():
        assert policy == "PASSIVE (set by matderiv at load)"
        if "libgomp" in res.stderr or "OPENMP DISPLAY ENVIRONMENT" in res.stderr:
            # the runtime printed the settings it read at load
            assert "OMP_WAIT_POLICY = 'PASSIVE'" in res.stderr
    else:
        assert policy == "none (serial build)"


def test_user_wait_policy_is_respected():
    res = _run_python(_SHOW, OMP_WAIT_POLICY="ACTIVE", OMP_DISPLAY_ENV="TRUE")
    policy, env_after = res.stdout.split("\n")[:2]
    assert policy == "set by the environment (OMP_WAIT_POLICY=ACTIVE)"
    assert env_after == "ACTIVE"
    if "OPENMP DISPLAY ENVIRONMENT" in res.stderr:
        assert "OMP_WAIT_POLICY = 'ACTIVE'" in res.stderr


# --- the memory limit: machine, cgroup v1 and v2 ---------------------------------------------
def _fake_proc(tmp_path, monkeypatch, *, cgroup, mounts, meminfo_kb=4 * 2**20, files=()):
    """A fake /proc (self/cgroup, self/mountinfo, meminfo) and cgroup files under tmp_path."""
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(cgroup)
    lines = [f"{30 + k} 20 0:{k} {root} {tmp_path / mp_} rw - {fs} cgroup {opts}"
             for k, (root, mp_, fs, opts) in enumerate(mounts)]
    (proc / "self" / "mountinfo").write_text("\n".join(lines) + "\n")
    if meminfo_kb is not None:
        (proc / "meminfo").write_text(f"MemTotal: 99999999 kB\nMemAvailable:   {meminfo_kb} kB\n")
    for rel, text in files:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.setattr(_memory, "PROC_DIR", str(proc))
    monkeypatch.delenv("MATDERIV_MAX_BYTES", raising=False)


GiB = 2**30


def test_cgroup_v2_limit_below_memavailable(tmp_path, monkeypatch):
    _fake_proc(tmp_path, monkeypatch, cgroup="0::/job/worker\n",
               mounts=[("/", "cg2", "cgroup2", "rw")],
               files=[("cg2/job/worker/memory.max", "max\n"),
                      ("cg2/job/worker/memory.current", "100\n"),
                      ("cg2/job/memory.max", f"{GiB}\n"),
                      ("cg2/job/memory.current", f"{GiB // 4 + 4096}\n"),
                      ("cg2/job/memory.stat", "anon 1\ninactive_file 4096\n")])
    limit, source = _memory.memory_limit()
    assert limit == GiB - GiB // 4 - GiB // 16  # limit - (usage - inactive cache) - headroom
    assert "cgroup v2" in source and "job/memory.max" in source
    with pytest.raises(md.OutputTooLargeError, match=r"set by cgroup v2 .*memory.max: limit 1073741824"):
        md.jacobian_wx(np.ones(2**10), 2**10).toarray()  # 8 GiB, over the 704 MiB left


def test_cgroup_layout_is_read_once_and_limits_every_time(tmp_path, monkeypatch):
    """Where the cgroup is (mountinfo, self/cgroup) is read once per process and /proc; the
    limit and the usage are read at every lookup, so a lowered limit counts at once."""
    _fake_proc(tmp_path, monkeypatch, cgroup="0::/job\n", mounts=[("/", "cg2", "cgroup2", "rw")],
               files=[("cg2/job/memory.max", f"{GiB}\n"), ("cg2/job/memory.current", "0\n")])
    assert _memory.memory_limit()[0] == GiB - GiB // 16
    (tmp_path / "cg2" / "job" / "memory.max").write_text(f"{GiB // 2}\n")
    (tmp_path / "proc" / "self" / "mountinfo").unlink()  # not read again
    assert _memory.memory_limit()[0] == GiB // 2 - GiB // 32
    reads = []
    monkeypatch.setattr(_memory, "_cgroup_dirs", lambda: reads.append(1) or [])
    _memory.memory_limit()
    assert reads == []  # the layout came from the cache
    monkeypatch.setattr(_memory, "PROC_DIR", str(tmp_path / "other"))  # another /proc: read anew
    _memory.memory_limit()
    assert reads == [1]


def test_cgroup_v1_with_mount_root(tmp_path, monkeypatch):
    """v1 in a container: the hierarchy path /docker/abc is mounted as the root."""
    _fake_proc(tmp_path, monkeypatch, cgroup="5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n",
               mounts=[("/docker/abc", "memory", "cgroup", "rw,memory"), ("/", "cpu", "cgroup", "rw,cpu")],
               files=[("memory/memory.limit_in_bytes", f"{2 * GiB}\n"),
                      ("memory/memory.usage_in_bytes", f"{GiB}\n"),
                      ("memory/memory.stat", "cache 5\ntotal_inactive_file 0\n")])
    limit, source = _memory.memory_limit()
    assert limit == GiB - 2 * GiB // 16
    assert source.startswith("cgroup v1 ") and "memory.limit_in_bytes" in source


def test_cgroup_v1_unlimited_and_v2_max_fall_back_to_memavailable(tmp_path, monkeypatch):
    _fake_proc(tmp_path, monkeypatch, cgroup="4:memory:/a\n0::/b\n",
               mounts=[("/", "memory", "cgroup", "rw,memory"), ("/", "unified", "cgroup2", "rw")],
               files=[("memory/a/memory.limit_in_bytes", "9223372036854771712\n"),
                      ("memory/a/memory.usage_in_bytes", "5\n"),
                      ("unified/b/memory.max", "max\n")],
               meminfo_kb=3 * 2**20)
    assert _memory.memory_limit() == (3 * GiB, "memory available on the machine (MemAvailable)")


def test_cgroup_files_missing(tmp_path, monkeypatch):
    """A cgroup named in /proc/self/cgroup whose files are absent, or no mount: ignored."""
    _fake_proc(tmp_path, monkeypatch, cgroup="0::/gone\n4:memory:/x\n", mounts=[("/", "cg2", "cgroup2", "rw")],
               meminfo_kb=2**20)
    assert _memory.memory_limit() == (GiB, "memory available on the machine (MemAvailable)")


def test_cgroup_usage_over_limit_gives_zero(tmp_path, monkeypatch):
    _fake_proc(tmp_path, monkeypatch, cgroup="0::/\n", mounts=[("/", "cg2", "cgroup2", "rw")],
               files=[("cg2/memory.max", "1000000\n"), ("cg2/memory.current", "2000000\n")])
    assert _memory.memory_limit()[0] == 0
    with pytest.raises(md.OutputTooLargeError, match=r"over the limit of 0 GiB \(0 bytes; set by cgroup v2"):
        _memory.check_output_bytes([((2**22,), np.float64)], what="toarray", max_bytes=None, hint="")


def test_no_memory_information(tmp_path, monkeypatch):
    """Neither /proc nor sysconf (macOS, Windows): no default limit, and it says so."""
    _fake_proc(tmp_path, monkeypatch, cgroup="", mounts=[], meminfo_kb=None)

    def no_sysconf(name):
        raise ValueError(name)

    monkeypatch.setattr(_memory.os, "sysconf", no_sysconf)
    assert _memory.memory_limit() == (None, "none (no memory information on this system)")
    _memory.check_output_bytes([((10**15,), np.float64)], what="toarray", max_bytes=None, hint="")


def test_env_limit_wins(tmp_path, monkeypatch):
    _fake_proc(tmp_path, monkeypatch, cgroup="0::/\n", mounts=[("/", "cg2", "cgroup2", "rw")],
               files=[("cg2/memory.max", "1000\n")])
    monkeypatch.setenv("MATDERIV_MAX_BYTES", str(5 * GiB))
    assert _memory.memory_limit() == (5 * GiB, "MATDERIV_MAX_BYTES")


@pytest.mark.parametrize("threshold", [None, "4096"])
def test_info_reports_what_a_bug_report_needs(threshold):
    env = {k: val for k, val in os.environ.items() if k != "MATDERIV_SERIAL_BELOW_BYTES"}
    env.update({} if threshold is None else {"MATDERIV_SERIAL_BELOW_BYTES": threshold})
    res = subprocess.run([sys.executable, "-m", "matderiv", "info"], env=env, capture_output=True, text=True, check=True)
    names = [line.split(":", 1)[0] for line in res.stdout.splitlines()]
    assert names == ["matderiv", "numpy", "scipy", "python", "openmp", "openmp runtime", "openmp wait policy",
                     "threads", "serial below", "forked child", "blas", "memory limit"]
    assert f"matderiv:           {md.__version__}" in res.stdout
    assert f"serial below:       {threshold or 1048576} bytes (kernel calls that write less run on one thread; " in res.stdout
    assert "memory limit:       " in res.stdout and " from " in res.stdout


# --- misaligned buffers ------------------------------------------------------------------------
def _misaligned(a: np.ndarray) -> np.ndarray:
    """The same values in memory that starts 1 byte past an aligned address."""
    buf = np.empty(a.nbytes + 1, dtype=np.uint8)
    out = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


def test_contiguous_aligns():
    a = _misaligned(np.arange(12.0).reshape(3, 4))
    c = v.contiguous(a, np.dtype(np.float64))
    assert c.flags.aligned and c.flags.c_contiguous and np.array_equal(c, a)
    ok = np.arange(4.0)
    assert np.shares_memory(v.contiguous(ok, np.dtype(np.float64)), ok)  # no copy when aligned


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ndim", [2, 3])
def test_misaligned_gradient_inputs(dtype, ndim):
    rng = np.random.default_rng(3)
    lead = (6,) if ndim == 2 else (6, 3)
    X = rng.standard_normal(lead + (5,)).astype(dtype)
    G = rng.standard_normal(lead + (4,)).astype(dtype)
    Xo, Go = _misaligned(X), _misaligned(G)
    for fn in (md.per_sample_grads, md.batch_grad, md.per_sample_grad_norms):
        np.testing.assert_array_equal(fn(Xo, Go), fn(X, G))
    for got, want in zip(md.clip_and_sum(Xo, Go, 0.5, bias=True), md.clip_and_sum(X, G, 0.5, bias=True)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [False, True])
def test_misaligned_inputs_are_staged_block_by_block(monkeypatch, dtype, bias):
    """2-D batch_grad and clip_and_sum stage misaligned rows into a small aligned buffer in
    front of each GEMM (here 2 rows at a time: many blocks, a last short one), and the norms'
    kernels read them in place: the results are those of the aligned inputs, and no copy of
    X or G is made (peak memory below half an input; clip_and_sum scales its blocks in a
    staged buffer too)."""
    from matderiv import _batch

    monkeypatch.setattr(_batch, "STAGE_BYTES", 1)
    monkeypatch.setattr(_batch, "MIN_STAGE_ROWS", 2)
    rng = np.random.default_rng(5)
    X, G = rng.standard_normal((7, 5)).astype(dtype), rng.standard_normal((7, 4)).astype(dtype)
    Xo, Go = _misaligned(X), _misaligned(G)
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    for convention in ("Wx", "xW"):
        got, want = (md.batch_grad(A, C, convention=convention, bias=bias) for A, C in ((Xo, Go), (X, G)))
        for g, w in zip(got if bias else (got,), want if bias else (want,)):
            np.testing.assert_allclose(g, w, rtol=rtol)
        for got, want in zip(md.clip_and_sum(Xo, Go, 0.7, convention=convention, bias=bias),
                             md.clip_and_sum(X, G, 0.7, convention=convention, bias=bias)):
            np.testing.assert_allclose(got, want, rtol=rtol)
    np.testing.assert_array_equal(md.per_sample_grad_norms(Xo, Go, bias=bias), md.per_sample_grad_norms(X, G, bias=bias))
    big = [_misaligned(rng.standard_normal((4096, 64)).astype(dtype)) for _ in range(2)]
    monkeypatch.setattr(_batch, "STAGE_BYTES", 1 << 16)
    for fn in (md.batch_grad, md.per_sample_grad_norms, lambda *a: md.clip_and_sum(*a, 1.0, bias=bias)):
        assert peak_bytes(lambda: fn(*big)) < big[0].nbytes / 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_misaligned_jacobian_inputs(dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5)).astype(dtype)
    xo = _misaligned(x)
    for make in (md.jacobian_wx, md.jacobian_xw):
        J, Jo = make(x, 4), make(xo, 4)
        np.testing.assert_array_equal(Jo.toarray(), J.toarray())
        np.testing.assert_array_equal(Jo.tosparse("csc").toarray(), J.tovec("F"))
        dW = _misaligned(rng.standard_normal(J.W_shape).astype(dtype))
        np.testing.assert_array_equal(J.jvp(dW), J.jvp(np.array(dW)))
        V = _misaligned(rng.standard_normal((3, 4)).astype(dtype))
        np.testing.assert_array_equal(J.vjp(V), J.vjp(np.array(V)))
        u = _misaligned(rng.standard_normal(12).astype(dtype))
        np.testing.assert_array_equal(J.aslinearoperator().rmatvec(u), J.aslinearoperator().rmatvec(np.array(u)))
    W = _misaligned(rng.standard_normal((4, 5)))
    dx = rng.standard_normal((5, 4, 5))
    T = md.jacobian_wx(x[0].real, 4, W=W, dx_dW=_misaligned(dx))
    np.testing.assert_array_equal(T.toarray(), md.jacobian_wx(x[0].real, 4, W=np.array(W), dx_dW=dx).toarray())


def test_misaligned_out_is_refused():
    X = np.ones((2, 3))
    out = _misaligned(np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match=r"out: expected an aligned array \(its address a multiple of the itemsize\), got a misaligned one"):
        md.per_sample_grads(X, X, out=out)


# --- smaller gaps ------------------------------------------------------------------------------
def test_masked_arrays_are_refused():
    X = np.ma.masked_array(np.ones((3, 2)), mask=[[0, 1], [0, 0], [0, 0]])
    with pytest.raises(TypeError, match=r"X: masked arrays are not supported \(the mask would be ignored\); pass X.filled\(value\)"):
        md.per_sample_grads(X, np.ones((3, 2)))
    with pytest.raises(TypeError, match=r"x: masked arrays are not supported"):
        md.jacobian_wx(X[0], 2)
    with pytest.raises(TypeError, match=r"W: masked arrays are not supported"):
        md.numerical_jacobian(lambda W: W, X)
    with pytest.raises(TypeError, match=r"f: returned a masked array; return out.filled\(value\) instead"):
        md.numerical_jacobian(lambda W: np.ma.masked_array(W), np.ones(2))


@pytest.mark.parametrize("fn", [md.numerical_jacobian, lambda f, W: md.check_jacobian(f, W, np.ones((2, 2)))])
def test_bad_callables_are_named(fn):
    with pytest.raises(TypeError, match=r"f: expected a callable f\(W\) returning an array, got int"):
        fn(3, np.ones(2))
    with pytest.raises(TypeError, match=r"f: expected f\(W\) to return numbers \(bool, integer, float or complex\), got str of dtype <U3"):
        fn(lambda W: "abc", np.ones(2))
    with pytest.raises(TypeError, match=r"f: expected f\(W\) to return numbers .*, got ndarray of dtype object"):
        fn(lambda W: np.array([object(), object()]), np.ones(2))


def test_clip_and_sum_with_infinite_input_is_quiet():
    X = np.ones((4, 3))
    G = np.ones((4, 2))
    X[1, 0] = np.inf
    with np.errstate(all="raise"):  # a leaked warning would raise here
        dW, db, norms = md.clip_and_sum(X, G, 1.0, bias=True)
    assert np.isinf(norms[1]) and np.isnan(dW[:, 0]).all() and np.isfinite(dW[:, 1:]).all()
    assert np.isfinite(db).all()


def test_huge_n_is_named():
    with pytest.raises(ValueError, match=rf"n: expected at most {2**63 - 1} \(numpy's largest dimension\), got {2**63}"):
        md.jacobian_wx(np.ones(0), 2**63)
    J = md.jacobian_wx(np.ones((2, 0)), 2**62)  # fine lazily, and its stacked form is empty
    big = r"the empty output \(.*\) float64 is beyond numpy's maximum array size of 9223372036854775807 bytes \(counting its nonzero dimensions\): n, m or the batch size is too large"
    with pytest.raises(ValueError, match="tovec: " + big):
        J.tovec()  # 2**63 rows
    with pytest.raises(ValueError, match="toarray: " + big):
        J.toarray()  # (2, 2**62, 2**62, 0)
    assert md.jacobian_wx(np.ones((2, 0)), 2**20).toarray().shape == (2, 2**20, 2**20, 0)
    with pytest.raises(md.OutputTooLargeError, match=r"over the limit of .* \(9223372036854775807 bytes; set by numpy's maximum array size\)"):
        _memory.check_output_bytes([((2**62, 4), np.float64)], what="toarray", max_bytes=2**64, hint="")


def test_runtime_loaded_before_matderiv_is_reported():
    # the runtime matderiv itself loads (the system's libgomp, or the copy that a repaired
    # wheel vendors under another name in matderiv.libs), loaded first by path
    ours = _run_python(_PRINT_RUNTIMES).stdout.splitlines()
    res = _run_python("import ctypes; " + "".join(f"ctypes.CDLL({path!r}); " for path in ours) + _SHOW)
    policy = res.stdout.split("\n")[0]
    if _openmp.have_openmp() and ours:
        assert policy == f"the runtime's default ({', '.join(ours)} was loaded before matderiv)"
    else:  # a serial build, or no /proc/self/maps to find the runtime in (not Linux)
        assert policy in ("none (serial build)", "PASSIVE (set by matderiv at load)")
