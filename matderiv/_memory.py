"""Byte counts with Python ints, the memory limit, and OutputTooLargeError."""
from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["OutputTooLargeError", "available_bytes", "check_output_bytes"]


class OutputTooLargeError(MemoryError):
    """A materializing call would need more memory than `max_bytes` allows.

    Raised before anything is allocated.
    """


def available_bytes() -> int | None:
    """The default limit: MATDERIV_MAX_BYTES if set, else the memory available now.

    Returns None when neither can be read (no limit is applied then).
    """
    env = os.environ.get("MATDERIV_MAX_BYTES")
    if env is not None and env.strip():
        try:
            value = int(env)
        except ValueError:
            raise ValueError(
                f"MATDERIV_MAX_BYTES: expected a non-negative integer, got {env!r}"
            ) from None
        if value < 0:
            raise ValueError(f"MATDERIV_MAX_BYTES: expected a non-negative integer, got {value}")
        return value
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


#: Below this, the default limit is not looked up: reading /proc/meminfo costs more
#: than writing such an output, and an allocation this small that fails still raises.
_SMALL_OUTPUT = 16 * 2**20


def _resolve_limit(max_bytes: int | None, nbytes: int) -> int | None:
    if max_bytes is None:
        if nbytes < _SMALL_OUTPUT and "MATDERIV_MAX_BYTES" not in os.environ:
            return None
        return available_bytes()
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)):
        raise TypeError(f"max_bytes: expected an int or None, got {type(max_bytes).__name__}")
    if max_bytes < 0:
        raise ValueError(f"max_bytes: expected a non-negative int, got {max_bytes}")
    return int(max_bytes)


def check_output_bytes(
    parts: list[tuple[tuple[int, ...], np.dtype]],
    *,
    what: str,
    max_bytes: int | None,
    hint: str,
) -> None:
    """Raise OutputTooLargeError if the arrays `parts` (shape, dtype) exceed the limit.

    Sizes are multiplied as Python ints, so they cannot overflow.
    """
    nbytes = sum(math.prod(int(d) for d in shape) * np.dtype(dt).itemsize for shape, dt in parts)
    limit = _resolve_limit(max_bytes, nbytes)
    if limit is None or nbytes <= limit:
        return
    desc = " + ".join(f"{tuple(int(d) for d in shape)} {np.dtype(dt).name}" for shape, dt in parts)
    raise OutputTooLargeError(
        f"{what}: the output {desc} needs {nbytes / 2**30:.3g} GiB ({nbytes} bytes), over the "
        f"limit of {limit / 2**30:.3g} GiB ({limit} bytes; set by max_bytes=, "
        f"MATDERIV_MAX_BYTES or the memory available). {hint}"
    )
