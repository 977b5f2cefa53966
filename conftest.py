"""pytest's configuration at the root: the doctests of the package's docstrings.

CI runs them with `python -m pytest --doctest-modules matderiv --ignore=matderiv/_bench`.
Without the optional dependencies of matderiv.dask (pip install matderiv[dask]) its
modules cannot be imported, so their docstrings are not collected; every other
docstring's examples run.  The test suite (tests/, the README's command) is unaffected.
"""
try:
    import dask.array  # noqa: F401
    import threadpoolctl  # noqa: F401
except ImportError:
    collect_ignore = ["matderiv/dask", "matderiv/layers/conv_dask.py"]
