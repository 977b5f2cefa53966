"""The one place for input checks: every public function validates its arguments here
before a kernel sees anything, and counts bytes before copying anything.

Kernels only ever see C-contiguous arrays of float32, float64, complex64 or complex128
in native byte order; everything is checked and coerced first.

core      arrays, batches and options: dtype policy, shapes, out=, n, n_threads, bytes
jacobian  the factors, left products, operands and blocks of matderiv.jacobian
conv      a convolution's input x (or its input_shape), weight W, kernel_size, stride, padding
          and dilation
embedding an embedding's indices, number of rows V and upstream gradient G
"""
from .core import *  # noqa: F401,F403 (the checks are used as _validation.<name>)
from .jacobian import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .embedding import *  # noqa: F401,F403
