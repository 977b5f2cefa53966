"""The docstrings of the checker (matderiv.checking), the memory guard's error
(OutputTooLargeError) and the kernels' run-time setting (get/set_serial_below_bytes)."""

F_W = """f : callable
    The function, f(W) returning an array (or a number) of real or complex
    values; it is called on copies of W.
W : array_like
    The point at which to differentiate, of any shape (up to 32 axes)."""

EPS = """eps : float, optional
    The relative step: h = eps max(1, abs(W_ab)) for entry (a, b).  None: the cube
    root of the precision of f's output (float32 or float64), which balances the
    truncation and rounding errors."""

MAX_BYTES = """max_bytes : int, optional
    Upper bound, in bytes, on what the call allocates.  None: the memory available
    to the process."""

F_RAISES = """TypeError
    If f is not callable, returns a masked or non-numeric array, or W is of an
    unsupported dtype.
ValueError
    If f returns a different shape for a perturbed W, or eps is not positive and
    finite.
OutputTooLargeError
    If the Jacobian (and the checker's arrays of its size) would exceed max_bytes."""

NUMERICAL_JACOBIAN = f"""Return the Jacobian of f at W by central differences.

Parameters
----------
{F_W}
{EPS}
{MAX_BYTES}

Returns
-------
numpy.ndarray, shape f(W).shape + W.shape
    N[i, a, b] = (f(W + h E_ab) - f(W - h E_ab))[i] / 2h in numerator layout
    (E_ab the unit matrix of entry (a, b)), float64 (complex128 where f or W is
    complex).

Raises
------
{F_RAISES}

See Also
--------
check_jacobian : Compare a claimed Jacobian with this one.

Notes
-----
W is perturbed in float64 (complex128 for complex W: the holomorphic derivative
along the real axis).  The cost is 2 W.size calls of f.

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> x = np.array([1.0, 2.0, 3.0])
>>> N = md.numerical_jacobian(lambda W: W @ x, np.ones((2, 3)))
>>> N.shape, np.allclose(N, md.jacobian_wx(x, 2).toarray())
((2, 2, 3), True)
"""

CHECK_JACOBIAN = f"""Check a claimed Jacobian of f at W against central differences.

Parameters
----------
{F_W}
J : array_like or Jacobian
    The claim: an array in numerator layout (f(W).shape + W.shape), or any
    matderiv Jacobian (a `Jacobian`, `ConvWeightJacobian` or `ConvInputJacobian`).
rtol : float, optional
    Relative tolerance (non-negative).  None: 1e-6, or 1e-3 where J or f's
    output is single precision.
atol : float, optional
    Absolute tolerance (non-negative).  None: 1e-7 (single precision: 1e-4)
    times max(1, max abs(N)), widened by each difference quotient's rounding noise.
{EPS}
{MAX_BYTES}

Returns
-------
JacobianCheck
    The worst absolute and relative errors, where they are, the tolerances used
    and the numerical Jacobian; its `ok` is True (a failure raises).

Raises
------
JacobianMismatch
    If any entry fails, naming the number of failing entries and the worst one.
ValueError
    If J's shape is not f(W).shape + W.shape, a tolerance is negative or eps is
    not positive.
TypeError
    If f is not callable, or J, W or f's output is of an unsupported dtype.
OutputTooLargeError
    If the numerical Jacobian with the checker's arrays would exceed max_bytes.

See Also
--------
numerical_jacobian : The central differences alone.
JacobianCheck : The result.

Notes
-----
With N the numerical Jacobian, an entry passes when
abs(J - N) <= atol + rtol abs(N) (NaN fails).  The default absolute tolerance adds the
rounding noise of each difference quotient, about the precision times
max abs(f) / h, so that functions with large values are not failed for rounding.
Besides N, three arrays of N's size are needed, all counted against max_bytes.

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> x = np.array([1.0, 2.0, 3.0])
>>> result = md.check_jacobian(lambda W: W @ x, np.ones((2, 3)), md.jacobian_wx(x, 2))
>>> result.ok, result.n_bad
(True, 0)

A wrong claim raises, naming the worst entry:

>>> md.check_jacobian(lambda W: W @ x, np.ones((2, 3)), md.jacobian_wx(2 * x, 2))
Traceback (most recent call last):
    ...
matderiv.checking.JacobianMismatch: J disagrees with central differences in 6 of 12 ...
"""

JACOBIAN_CHECK = """The outcome of `check_jacobian`: the worst errors and where they are.

Made by `check_jacobian`; not constructed directly.  Frozen.

Attributes
----------
max_abs_error : float
    The largest abs(J - N) over all entries.
max_abs_index : tuple of int
    Where it is (an index into f(W).shape + W.shape; () when N is empty).
max_rel_error : float
    The largest abs(J - N) / abs(N).
max_rel_index : tuple of int
    Where it is.
n_bad : int
    The number of entries outside the tolerance (0 in a returned result).
rtol, atol : float
    The tolerances applied.
numerical : numpy.ndarray
    N, the numerical Jacobian.

See Also
--------
check_jacobian

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> x = np.array([1.0, 2.0, 3.0])
>>> result = md.check_jacobian(lambda W: W @ x, np.ones((2, 3)), md.jacobian_wx(x, 2))
>>> result.numerical.shape, result.rtol
((2, 2, 3), 1e-06)
"""

OK = """Whether every entry passed (n_bad == 0).

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> x = np.array([1.0, 2.0, 3.0])
>>> md.check_jacobian(lambda W: W @ x, np.ones((2, 3)), md.jacobian_wx(x, 2)).ok
True
"""

JACOBIAN_MISMATCH = """A claimed Jacobian disagrees with central differences.

Raised by `check_jacobian`; an AssertionError, so that a test that calls
check_jacobian fails on it.  The message names the number of failing entries and
the worst one, with both values and the tolerances.

See Also
--------
check_jacobian

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> x = np.array([1.0, 2.0, 3.0])
>>> try:
...     md.check_jacobian(lambda W: W @ x, np.ones((2, 3)), md.jacobian_wx(-x, 2))
... except md.JacobianMismatch as exc:
...     print(str(exc)[:45])
J disagrees with central differences in 6 of
"""

OUTPUT_TOO_LARGE = """A call would allocate more memory than its limit allows.

Raised before anything is allocated by every function that forms a result
(the batched functions, the dense and sparse forms of the Jacobians,
conv_patches, the checker).  A MemoryError.  The limit is the call's max_bytes,
else the MATDERIV_MAX_BYTES environment variable, else the memory available to
the process (the machine's, and its cgroup limits); the message gives the
sizes and, where there is one, a cheaper function to call instead.

See Also
--------
per_sample_grads, Jacobian.toarray

Examples
--------
>>> import numpy as np
>>> import matderiv as md
>>> X, G = np.ones((1000, 100)), np.ones((1000, 100))
>>> try:
...     md.per_sample_grads(X, G, max_bytes=10**6)      # 80 MB of gradients
... except md.OutputTooLargeError as exc:
...     print(str(exc)[:70])
per_sample_grads: the output (1000, 100, 100) float64 needs 0.0745 GiB
"""

GET_SERIAL_BELOW_BYTES = """Return the output size below which a kernel call runs on the calling thread alone.

Returns
-------
int
    The size in bytes written: a kernel call writing less runs serially,
    whatever n_threads says.

See Also
--------
set_serial_below_bytes : Change it.

Notes
-----
Starting a team of threads costs more than it saves on small outputs (and leaves
no idle team spinning beside numpy's BLAS).  The value comes from the environment
variable MATDERIV_SERIAL_BELOW_BYTES when matderiv is imported (default 1048576,
1 MiB).

Examples
--------
>>> import matderiv as md
>>> isinstance(md.get_serial_below_bytes(), int)
True
"""

SET_SERIAL_BELOW_BYTES = """Set the output size below which a kernel call runs on the calling thread alone.

Parameters
----------
nbytes : int
    The new threshold in bytes (non-negative): 0 starts a team of threads for
    every call given more than one thread, a huge value runs every call serially.

Returns
-------
int
    The previous threshold.

Raises
------
TypeError
    If nbytes is not an int.
ValueError
    If nbytes is negative or too large.

See Also
--------
get_serial_below_bytes : The current threshold.

Notes
-----
The setting holds for every thread of this process.  Child processes started by
spawn or forkserver read MATDERIV_SERIAL_BELOW_BYTES instead.

Examples
--------
>>> import matderiv as md
>>> previous = md.set_serial_below_bytes(0)       # threads even for small outputs
>>> md.get_serial_below_bytes()
0
>>> md.set_serial_below_bytes(previous)
0
"""
