"""Build the Cython kernels, with OpenMP where the compiler supports it.

Environment switches:
  MATDERIV_DEBUG=1           bounds checking, wraparound and initialisation checks on
  MATDERIV_NO_OPENMP=1       build serial kernels even where OpenMP is available
  MATDERIV_REQUIRE_OPENMP=1  make a missing OpenMP a build error that shows the
                             compiler's output, instead of a fall-back to serial kernels

Kernels are optimised with -O3 unless CFLAGS names an optimisation level itself (e.g.
CFLAGS="-O1 -g -fsanitize=address,undefined", as .ci/sanitizers builds them), and the
extensions compile in parallel unless build_ext is given -j/--parallel.

The OpenMP probe builds a small shared library the way the extensions are built: the
same compiler object (so CC, CFLAGS, CPPFLAGS, LDSHARED and LDFLAGS apply), the same
optimisation and OpenMP flags, the same libraries. A build with custom flags, e.g.
CFLAGS=-fsanitize=address LDFLAGS=-fsanitize=address, keeps OpenMP exactly when its
extensions can use it. The outcome is one line of the build log ("matderiv: OpenMP
on ..." or the reason it is off); `pip -q` hides it, hence MATDERIV_REQUIRE_OPENMP.
"""
import contextlib
import os
import shlex
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError


def _env_flag(name):
    return os.environ.get(name, "0") not in ("", "0")


DEBUG = _env_flag("MATDERIV_DEBUG")
NO_OPENMP = _env_flag("MATDERIV_NO_OPENMP")
REQUIRE_OPENMP = _env_flag("MATDERIV_REQUIRE_OPENMP")
KERNELS = ["_openmp", "_kron", "_outer", "_rows", "_conv", "_embed", "_toeplitz"]

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
}

# A parallel region and a runtime call, so that both the compiler flag and the runtime
# library are needed.
OPENMP_PROBE = """
#include <omp.h>
int matderiv_openmp_probe(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return n + omp_get_max_threads();
}
"""


@contextlib.contextmanager
def _output_to(path):
    """Send file descriptors 1 and 2 (ours and the compiler's) to `path` for a while."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "wb") as fh:
            os.dup2(fh.fileno(), 1)
            os.dup2(fh.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _optimisation_flags(compiler):
    """-O3, unless the compiler is MSVC or CFLAGS sets its own -O level."""
    if compiler.compiler_type == "msvc":
        return []
    if any(flag.startswith("-O") for flag in shlex.split(os.environ.get("CFLAGS", ""))):
        return []
    return ["-O3"]


class BuildExt(build_ext):
    def finalize_options(self):
        if self.parallel is None:
            self.parallel = True  # one job per core: the kernels compile independently
        super().finalize_options()

    def build_extensions(self):
        opt = _optimisation_flags(self.compiler)
        cflags, lflags = self._openmp_flags(opt)
        for ext in self.extensions:
            ext.extra_compile_args = opt + cflags
            ext.extra_link_args = lflags
        super().build_extensions()

    def _openmp_candidates(self):
        """(compile, link) flag pairs that may enable OpenMP, in order of preference."""
        if self.compiler.compiler_type == "msvc":
            return [(["/openmp"], [])]
        if sys.platform == "darwin":
            return [(["-Xpreprocessor", "-fopenmp"], ["-lomp"]), (["-fopenmp"], ["-fopenmp"])]
        return [(["-fopenmp"], ["-fopenmp"])]

    def _openmp_flags(self, opt):
        """Return (compile, link) flags that make OpenMP work, or ([], []) for a serial build."""
        if NO_OPENMP:
            if REQUIRE_OPENMP:
                raise CompileError(
                    "matderiv: MATDERIV_REQUIRE_OPENMP=1 and MATDERIV_NO_OPENMP=1 contradict each other"
                )
            print("matderiv: OpenMP off (MATDERIV_NO_OPENMP=1): building serial kernels")
            return [], []
        failures = []
        for cflags, lflags in self._openmp_candidates():
            error = self._probe(opt + cflags, lflags)
            if error is None:
                print(f"matderiv: OpenMP on (compile {' '.join(cflags)}, link {' '.join(lflags) or '-'})")
                return cflags, lflags
            failures.append(f"--- with compile {cflags} and link {lflags}:\n{error}")
        report = "\n".join(failures)
        if REQUIRE_OPENMP:
            raise CompileError(
                "matderiv: MATDERIV_REQUIRE_OPENMP=1, but OpenMP does not compile and link "
                f"with this compiler and these flags:\n{report}"
            )
        print(
            "matderiv: OpenMP not available, building serial kernels "
            f"(MATDERIV_REQUIRE_OPENMP=1 makes this an error):\n{report}",
            file=sys.stderr,
        )
        return [], []

    def _probe(self, compile_args, link_args):
        """None when OPENMP_PROBE compiles and links into a shared library as the
        extensions do; otherwise what the compiler and linker said."""
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "matderiv_openmp_probe.c")
            with open(src, "w") as fh:
                fh.write(OPENMP_PROBE)
            log = os.path.join(tmp, "probe.log")
            lib = os.path.join(tmp, "matderiv_openmp_probe" + (self.compiler.shared_lib_extension or ".so"))
            try:
                with _output_to(log):
                    objs = self.compiler.compile(
                        [src], output_dir=tmp, debug=self.debug, extra_postargs=compile_args
                    )
                    self.compiler.link_shared_object(
                        objs,
                        lib,
                        libraries=self.get_libraries(self.extensions[0]),
                        extra_postargs=link_args,
                        debug=self.debug,
                        build_temp=tmp,
                        target_lang="c",
                    )
            except CCompilerError as exc:
                with open(log, errors="replace") as fh:
                    return f"{fh.read().strip()}\n{exc}"
        return None


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
