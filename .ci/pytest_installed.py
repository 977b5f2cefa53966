"""Run a test suite against an installed matderiv, never the source tree.

usage: python pytest_installed.py PREFIX TESTS_DIR [PYTEST_ARGS...]

Imports matderiv first and fails unless it comes from under PREFIX (and has OpenMP
when MATDERIV_REQUIRE_OPENMP=1), then runs pytest on TESTS_DIR in this process, so
the tests use the very module checked here. Run it from a directory that holds no
matderiv/ of its own.
"""
import os
import sys


def main() -> int:
    import pytest

    import matderiv
    from matderiv._kernels import _kron, _openmp, _outer

    prefix, tests = os.path.realpath(sys.argv[1]), sys.argv[2]
    for mod in (matderiv, _kron, _openmp, _outer):
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
