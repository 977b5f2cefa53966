"""Run a test suite against an installed matderiv, never the source tree.

usage: python pytest_installed.py PREFIX TESTS_DIR [PYTEST_ARGS...]

Imports matderiv and every kernel module (one per .pyx source in its _kernels folder)
first and fails unless each comes from under PREFIX (and has OpenMP when
MATDERIV_REQUIRE_OPENMP=1), then runs pytest on TESTS_DIR in this process, so the
tests use the very modules checked here. Run it from a directory that holds no
matderiv/ of its own.
"""
import importlib
import os
import sys
from pathlib import Path


def main() -> int:
    import pytest

    import matderiv
    from matderiv import _kernels
    from matderiv._kernels import _openmp

    prefix, tests = os.path.realpath(sys.argv[1]), sys.argv[2]
    names = sorted(p.stem for p in Path(_kernels.__file__).parent.glob("*.pyx"))
    if not names:
        sys.exit(f"pytest_installed: no kernel sources (*.pyx) next to {_kernels.__file__}")
    kernels = [importlib.import_module(f"matderiv._kernels.{name}") for name in names]
    for mod in [matderiv, *kernels]:
        path = os.path.realpath(mod.__file__)
        print(f"{mod.__name__}: {path}")
        if os.path.commonpath([prefix, path]) != prefix:
            sys.exit(f"pytest_installed: {mod.__name__} comes from {path}, not from under {prefix}")
    print(f"OpenMP: {'on' if _openmp.have_openmp() else 'off'}, {_openmp.max_threads()} threads")
    if os.environ.get("MATDERIV_REQUIRE_OPENMP", "0") not in ("", "0") and not _openmp.have_openmp():
        sys.exit("pytest_installed: MATDERIV_REQUIRE_OPENMP=1 but the kernels were built without OpenMP")
    return pytest.main(["-p", "no:cacheprovider", tests] + sys.argv[3:])


if __name__ == "__main__":  # not in the workers that spawn and forkserver start
    sys.exit(main())
