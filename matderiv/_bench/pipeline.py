"""Pipeline rows of `python -m matderiv bench`: the settings users run matderiv in.

* A loop that alternates matderiv's OpenMP kernels with BLAS calls (numpy's G.T @ X and
  the BLAS-backed gradient functions), run in fresh interpreters: as matderiv loads the
  OpenMP runtime by default, under OMP_WAIT_POLICY=PASSIVE set by the user (the budget:
  within 1.2x of it), and under ACTIVE (spinning idle threads, the runtime's own
  default before matderiv chose PASSIVE). Once on one Python thread, once on 8.
* Misaligned inputs (a buffer read at an offset) against the same data aligned.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np

from .. import _batch, gradients
from .timing import Row, best_time

#: What a ratio means in this section (printed at its header).
RATIO = ("ratio = as shipped / with OMP_WAIT_POLICY set, or misaligned / aligned "
         "(above 1: what it costs)")

_LOOP = r"""
import sys, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np, matderiv as md
steps, workers = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
J = md.jacobian_wx(rng.standard_normal(64), 64)
X, G = rng.standard_normal((128, 64)), rng.standard_normal((128, 32))
X3, G3 = rng.standard_normal((16, 8, 64)), rng.standard_normal((16, 8, 32))
Xs, Gs = rng.standard_normal((5000, 64)), rng.standard_normal((5000, 32))  # clipping staged in blocks
x4, Gc = rng.standard_normal((16, 4, 8, 8)), rng.standard_normal((16, 8, 8, 8))
E, Ge = md.Embedding(rng.integers(0, 100, (16, 8)), 100), rng.standard_normal((16, 8, 32))
Jc = md.jacobian_conv_input(rng.standard_normal((8, 4, 3, 3)), (4, 8, 8), padding=1)
def step(_=None):
    J.toarray(); J.tosparse(); md.per_sample_grads(X, G)
    md.clip_and_sum(X3, G3, 1.0); md.per_sample_grad_norms(X3, G3); G.T @ X
    md.clip_and_sum(Xs, Gs, 1.0)  # the clip kernel and a GEMM per staged block
    md.clip_and_sum(md.Conv(x4, 3, padding=1), Gc, 1.0)  # the unfold kernel between GEMMs
    md.clip_and_sum(E, Ge, 1.0); Jc.tosparse()
step()
t0 = time.perf_counter()
if workers == 1:
    for _ in range(steps):
        step()
else:
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(step, range(steps)))
print(time.perf_counter() - t0)
"""

_WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def _loop_time(steps: int, workers: int, policy: str | None, repeat: int) -> float:
    """Best of `repeat` fresh interpreters running the mixed loop; policy None: as shipped."""
    env = {k: val for k, val in os.environ.items() if k not in _WAIT_VARS}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    runs = []
    for _ in range(repeat):
        res = subprocess.run([sys.executable, "-c", _LOOP, str(steps), str(workers)],
                             env=env, capture_output=True, text=True, check=True)
        runs.append(float(res.stdout.split()[-1]))
    return min(runs)


def _mixed_loop(steps: int, workers: int, repeat: int) -> Row:
    refs = {
        "same loop, OMP_WAIT_POLICY=PASSIVE": _loop_time(steps, workers, "PASSIVE", repeat),
        "same loop, OMP_WAIT_POLICY=ACTIVE": _loop_time(steps, workers, "ACTIVE", repeat),
    }
    ours = _loop_time(steps, workers, None, repeat)
    who = "1 thread" if workers == 1 else f"{workers} Python threads"
    return Row(f"mixed kernel/BLAS loop, {steps} steps x 10 calls, {who}", ours, None, refs)


def _misaligned(B: int, n: int, repeat: int) -> Iterator[Row]:
    """batch_grad, per_sample_grad_norms and clip_and_sum on float32 inputs that start 1 byte
    off (read in place by the kernels, staged block by block in front of the GEMMs)."""
    rng = np.random.default_rng(0)
    aligned = [rng.standard_normal((B, k)).astype(np.float32) for k in (n, n)]
    odd = []
    for a in aligned:
        buf = np.empty(a.nbytes + 1, dtype=np.uint8)
        arr = np.frombuffer(buf.data, dtype=np.float32, count=a.size, offset=1).reshape(a.shape)
        arr[...] = a
        odd.append(arr)
    calls = {"batch_grad": gradients.batch_grad, "per_sample_grad_norms": gradients.per_sample_grad_norms,
             "clip_and_sum": lambda X, G: gradients.clip_and_sum(X, G, 1.0)}
    for name, fn in calls.items():
        ref = best_time(lambda: fn(*aligned), repeat)
        ours = best_time(lambda: fn(*odd), repeat)
        yield Row(f"{name} float32 B={B} n=m={n}, inputs 1 byte off", ours, None, {"the same, aligned": ref})


def pipeline_rows(quick: bool) -> Iterator[Row]:
    """The mixed loops, then the misaligned inputs, one row at a time as it is measured."""
    steps, repeat = (50, 1) if quick else (200, 3)
    B = 2**16 if quick else 2**20
    yield _mixed_loop(steps, 1, repeat)
    yield _mixed_loop(steps, 8, repeat)
    yield from _misaligned(B, 64, 3 if quick else 5)
