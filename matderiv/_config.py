"""Run-time settings of the kernels (the environment gives their values at import)."""
from __future__ import annotations

import os
import sys

from . import _validation as v
from ._kernels import _openmp
from ._docs import checking as D, doc

#: The environment variable read when matderiv is imported.
SERIAL_BELOW_VAR = "MATDERIV_SERIAL_BELOW_BYTES"


@doc(D.GET_SERIAL_BELOW_BYTES)
def get_serial_below_bytes() -> int:
    return _openmp.get_serial_below_bytes()


@doc(D.SET_SERIAL_BELOW_BYTES)
def set_serial_below_bytes(nbytes: int) -> int:
    return _openmp.set_serial_below_bytes(v.byte_count(nbytes, "nbytes", at_most=sys.maxsize))


def serial_below_from_environment(text: str | None) -> int:
    """The threshold that MATDERIV_SERIAL_BELOW_BYTES gives (the default when unset or blank)."""
    return v.byte_setting(text, SERIAL_BELOW_VAR, _openmp.DEFAULT_SERIAL_BELOW_BYTES, at_most=sys.maxsize)


set_serial_below_bytes(serial_below_from_environment(os.environ.get(SERIAL_BELOW_VAR)))
