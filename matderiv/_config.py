"""Run-time settings of the kernels (the environment gives their values at import)."""
from __future__ import annotations

import os
import sys

from . import _validation as v
from ._kernels import _openmp

#: The environment variable read when matderiv is imported.
SERIAL_BELOW_VAR = "MATDERIV_SERIAL_BELOW_BYTES"


def get_serial_below_bytes() -> int:
    """The size, in bytes written, below which a kernel call runs on the calling thread.

    Starting an OpenMP team costs more than it saves on small outputs (and leaves no idle
    team spinning beside BLAS). The value comes from the environment variable
    MATDERIV_SERIAL_BELOW_BYTES when matderiv is imported (default 1048576, 1 MiB);
    set_serial_below_bytes changes it.
    """
    return _openmp.get_serial_below_bytes()


def set_serial_below_bytes(nbytes: int) -> int:
    """Set the size, in bytes written, below which a kernel call runs on the calling
    thread, for every thread of this process; return the previous value.

    0 starts a team for every call given more than one thread (tests use it to run the
    parallel branches on small inputs); a huge value runs every call serially. Child
    processes started by spawn or forkserver read MATDERIV_SERIAL_BELOW_BYTES instead.
    """
    return _openmp.set_serial_below_bytes(v.byte_count(nbytes, "nbytes", at_most=sys.maxsize))


def serial_below_from_environment(text: str | None) -> int:
    """The threshold that MATDERIV_SERIAL_BELOW_BYTES gives (the default when unset or blank)."""
    return v.byte_setting(text, SERIAL_BELOW_VAR, _openmp.DEFAULT_SERIAL_BELOW_BYTES, at_most=sys.maxsize)


set_serial_below_bytes(serial_below_from_environment(os.environ.get(SERIAL_BELOW_VAR)))
