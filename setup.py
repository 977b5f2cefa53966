"""Build the Cython kernels, with OpenMP where the compiler supports it.

Environment switches:
  MATDERIV_DEBUG=1      bounds checking, wraparound and initialisation checks on
  MATDERIV_NO_OPENMP=1  build serial kernels even where OpenMP is available
"""
import os
import sys
import tempfile
import textwrap

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("MATDERIV_DEBUG", "0") not in ("", "0")
KERNELS = ["_openmp", "_kron", "_outer", "_rows"]

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
}


def _openmp_flags(compiler):
    """Return (compile, link) flags that make OpenMP work, or ([], []) for a serial build."""
    if os.environ.get("MATDERIV_NO_OPENMP", "0") not in ("", "0"):
        return [], []
    if compiler.compiler_type == "msvc":
        candidates = [(["/openmp"], [])]
    elif sys.platform == "darwin":
        candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"]), (["-fopenmp"], ["-fopenmp"])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    probe = textwrap.dedent(
        """
        #include <omp.h>
        int main(void) {
            int n = 0;
            #pragma omp parallel reduction(+:n)
            n += 1;
            return n > 0 ? 0 : 1;
        }
        """
    )
    for cflags, lflags in candidates:
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "probe.c")
            with open(src, "w") as fh:
                fh.write(probe)
            try:
                objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
                compiler.link_executable(objs, os.path.join(tmp, "probe"), extra_postargs=lflags)
            except Exception:  # the compiler or linker refused: try the next spelling
                continue
        return cflags, lflags
    print("matderiv: OpenMP not available, building serial kernels", file=sys.stderr)
    return [], []


class BuildExt(build_ext):
    def build_extensions(self):
        cflags, lflags = _openmp_flags(self.compiler)
        opt = [] if self.compiler.compiler_type == "msvc" else ["-O3"]
        for ext in self.extensions:
            ext.extra_compile_args = opt + cflags
            ext.extra_link_args = lflags
        super().build_extensions()


extensions = [
    Extension(
        f"matderiv._kernels.{name}",
        [f"matderiv/_kernels/{name}.pyx"],
        include_dirs=[np.get_include(), "matderiv/_kernels"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for name in KERNELS
]

setup(
    ext_modules=cythonize(extensions, compiler_directives=DIRECTIVES),
    cmdclass={"build_ext": BuildExt},
)
