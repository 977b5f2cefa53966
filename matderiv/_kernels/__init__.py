"""Compiled kernels (private). Python code outside matderiv never imports these.

Importing this package loads the OpenMP runtime, which reads its settings from the
environment once, at load. Idle OpenMP threads spin-wait by default (libgomp: about
300 000 spins; LLVM's libomp: 200 ms), which starves numpy's BLAS threads whenever a
loop alternates matderiv's kernels with matrix products: each switch then stalls for a
scheduler time slice (15-25x slower loops on 2 cores). Unless the user chose a policy
(OMP_WAIT_POLICY, GOMP_SPINCOUNT or KMP_BLOCKTIME set), the runtime is loaded with
OMP_WAIT_POLICY=PASSIVE and the environment is restored right after, so child processes
and other libraries see it unchanged. WAIT_POLICY says what happened.

The size in bytes below which a kernel call runs on the calling thread is held by
_openmp (default 1 MiB); matderiv._config sets it from MATDERIV_SERIAL_BELOW_BYTES when
matderiv is imported.
"""
from __future__ import annotations

import importlib.util
import os
import re
import sys

_USER_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def loaded_runtimes():
    """Paths of the OpenMP runtimes mapped into this process (Linux; empty elsewhere)."""
    try:
        with open("/proc/self/maps") as fh:
            maps = fh.read()
    except OSError:
        return []
    return sorted(set(re.findall(r"(/\S*/(?:libgomp|libiomp5|libomp)[^/\s]*\.so[^/\s]*)$", maps, re.M)))


def _load():
    """Import the kernels with the runtime configured; return how its wait policy was set."""
    user = {name: os.environ[name] for name in _USER_VARS if name in os.environ}
    preloaded = loaded_runtimes()
    if not user:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        from . import _openmp
    except ImportError:
        if importlib.util.find_spec(f"{__name__}._openmp") is None:
            raise ImportError(_not_built()) from None
        raise
    finally:
        if not user:
            del os.environ["OMP_WAIT_POLICY"]
    if user:
        return "set by the environment (" + ", ".join(f"{k}={val}" for k, val in user.items()) + ")"
    if not _openmp.have_openmp():
        return "none (serial build)"
    if preloaded and set(loaded_runtimes()) <= set(preloaded):  # ours was already there
        return f"the runtime's default ({', '.join(preloaded)} was loaded before matderiv)"
    return "PASSIVE (set by matderiv at load)"


def _not_built() -> str:
    """What to do when the extension modules are missing here (a source tree, no build)."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    return (
        f"matderiv's compiled kernels are not built in {here} (for Python "
        f"{sys.version_info.major}.{sys.version_info.minor}). To use the sources in {root}, build "
        "them there with `python -m pip install -e .` or `python setup.py build_ext --inplace`; "
        "to use an installed matderiv, run Python from a directory without a matderiv/ source folder."
    )


WAIT_POLICY = _load()
from . import _openmp  # noqa: E402 (loaded by _load, with the runtime configured)
