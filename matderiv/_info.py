"""`python -m matderiv info`: what a bug report needs, one "name: value" line each."""
from __future__ import annotations

import os
import platform

import numpy as np
import scipy

from . import _threads
from . import _validation as v
from ._config import get_serial_below_bytes
from ._kernels import WAIT_POLICY, _openmp, loaded_runtimes
from ._memory import memory_limit


def _blas() -> str:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        built = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # numpy's config layout is not a stable API
        built = "unknown"
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return f"{built} (threadpoolctl not installed: thread count unknown)"
    pools = [f"{p['internal_api']} {p.get('version')} {p['num_threads']} threads" for p in threadpool_info()
             if p.get("user_api") == "blas"]
    return f"{built}; loaded: " + ("; ".join(pools) or "none")


def report() -> list[tuple[str, str]]:
    from . import __version__

    limit, source = memory_limit()
    runtime = ", ".join(loaded_runtimes()) or "none loaded"
    return [
        ("matderiv", __version__),
        ("numpy", np.__version__),
        ("scipy", scipy.__version__),
        ("python", f"{platform.python_version()} ({platform.python_implementation()}, {platform.platform()})"),
        ("openmp", "on" if _openmp.have_openmp() else "off (serial build)"),
        ("openmp runtime", runtime),
        ("openmp wait policy", WAIT_POLICY),
        ("threads", f"default {_openmp.max_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), "
                    f"{_threads.usable_cores()} usable cores, n_threads at most {v.max_threads()}"),
        ("serial below", f"{get_serial_below_bytes()} bytes (kernel calls that write less run on one "
                         "thread; MATDERIV_SERIAL_BELOW_BYTES or matderiv.set_serial_below_bytes)"),
        ("forked child", "yes: kernels run serially" if _threads.serial_after_fork() else "no"),
        ("blas", _blas()),
        ("memory limit", "none" if limit is None else f"{limit} bytes ({limit / 2**30:.3g} GiB), from {source}"),
    ]


def print_report(file) -> None:
    for name, value in report():
        print(f"{name + ':':20s}{value}", file=file)
