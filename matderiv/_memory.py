"""Byte counts with Python ints, the memory limit, and OutputTooLargeError."""
from __future__ import annotations

import math
import os
import time

import numpy as np

from . import _validation as v
from ._docs import checking as D, doc

__all__ = ["OutputTooLargeError", "available_bytes", "check_output_bytes", "memory_limit", "temporaries_budget"]


@doc(D.OUTPUT_TOO_LARGE)
class OutputTooLargeError(MemoryError):
    ...


#: Where the limits are read from; tests point this at a fake tree (self/cgroup,
#: self/mountinfo, meminfo, and the cgroup mount points that mountinfo names).
PROC_DIR = "/proc"

#: Of a cgroup's limit, this fraction is left free for the rest of the process.
CGROUP_HEADROOM = 1 / 16

#: cgroup v1 writes a limit of about 2**63 for "no limit".
_V1_UNLIMITED = 2**60


def _read(path: str) -> str | None:
    """The text of a /proc or cgroup file, None where it cannot be read (raw reads: a
    third of the cost of open(), which every limit lookup pays several times)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def _stat_value(text: str | None, key: str) -> int:
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


def _cgroup_mounts() -> dict[str, tuple[str, str]]:
    """{"v1"/"v2": (root within the hierarchy, mount point)} for the memory controller."""
    mounts: dict[str, tuple[str, str]] = {}
    for line in (_read(os.path.join(PROC_DIR, "self", "mountinfo")) or "").splitlines():
        pre, sep, post = line.partition(" - ")
        fields, tail = pre.split(), post.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        if tail[0] == "cgroup2":
            mounts.setdefault("v2", (fields[3], fields[4]))
        elif tail[0] == "cgroup" and "memory" in tail[2].split(","):
            mounts.setdefault("v1", (fields[3], fields[4]))
    return mounts


def _cgroup_dirs() -> list[tuple[str, str, str]]:
    """(version, directory, mount point) of this process's memory cgroup, v1 and/or v2."""
    mounts = _cgroup_mounts()
    found = []
    for line in (_read(os.path.join(PROC_DIR, "self", "cgroup")) or "").splitlines():
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        version = "v2" if hid == "0" and controllers == "" else "v1" if "memory" in controllers.split(",") else None
        if version is None or version not in mounts:
            continue
        root, mount_point = mounts[version]
        rel = path[len(root):] if path.startswith(root) else path
        found.append((version, os.path.normpath(mount_point + "/" + rel.strip("/")), mount_point))
    return found


#: Where this process's memory cgroups are (mounts and paths: they change only when the
#: process is moved to another cgroup) is read once per process and PROC_DIR, which saves
#: most of a limit lookup's 0.5 ms; the limits and usages themselves are read every time.
_layout_seen: tuple[tuple[int, str], list[tuple[str, str, str]]] | None = None


def _cgroup_layout() -> list[tuple[str, str, str]]:
    """_cgroup_dirs(), cached per process id (a forked child reads its own) and PROC_DIR."""
    global _layout_seen
    key = (os.getpid(), PROC_DIR)
    if _layout_seen is None or _layout_seen[0] != key:
        _layout_seen = (key, _cgroup_dirs())
    return _layout_seen[1]


def _cgroup_free(version: str, directory: str, mount_point: str) -> tuple[int, str] | None:
    """The tightest (limit - usage) over the cgroup and its ancestors, and where it is set.

    Usage excludes inactive page cache, which the kernel reclaims before it kills.
    """
    limit_file, usage_file, inactive = (
        ("memory.max", "memory.current", "inactive_file") if version == "v2"
        else ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
    )
    best = None
    d = directory
    while True:
        text = _read(os.path.join(d, limit_file))
        if text is not None and text.strip() not in ("", "max"):
            limit = int(text)
            if limit < _V1_UNLIMITED:
                usage = int(_read(os.path.join(d, usage_file)) or 0)
                usage -= _stat_value(_read(os.path.join(d, "memory.stat")), inactive)
                free = max(0, limit - max(0, usage) - int(limit * CGROUP_HEADROOM))
                if best is None or free < best[0]:
                    where = f"cgroup {version} {os.path.join(d, limit_file)}: limit {limit}, in use {max(0, usage)}"
                    best = (free, where)
        if os.path.normpath(d) == os.path.normpath(mount_point) or d in ("/", ""):
            return best
        d = os.path.dirname(d)


def _mem_available() -> int | None:
    for line in (_read(os.path.join(PROC_DIR, "meminfo")) or "").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024  # in kB
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def memory_limit() -> tuple[int | None, str]:
    """The default limit and where it comes from.

    MATDERIV_MAX_BYTES if set; else the smallest of the memory available on the machine
    (MemAvailable) and, for each memory cgroup (v1 or v2) the process is in, its limit
    minus what the cgroup already uses, less CGROUP_HEADROOM of the limit. (None, ...)
    where nothing can be read (no limit is applied then).
    """
    env = v.byte_setting(os.environ.get("MATDERIV_MAX_BYTES"), "MATDERIV_MAX_BYTES", -1)
    if env >= 0:
        return env, "MATDERIV_MAX_BYTES"
    candidates = []
    available = _mem_available()
    if available is not None:
        candidates.append((available, "memory available on the machine (MemAvailable)"))
    for version, directory, mount_point in _cgroup_layout():
        found = _cgroup_free(version, directory, mount_point)
        if found is not None:
            candidates.append(found)
    if not candidates:
        return None, "none (no memory information on this system)"
    return min(candidates)


def available_bytes() -> int | None:
    """The default limit in bytes (see memory_limit), None where none can be read."""
    return memory_limit()[0]


#: Below this, the default limit is not looked up: reading /proc/meminfo costs more
#: than writing such an output, and an allocation this small that fails still raises.
_SMALL_OUTPUT = 16 * 2**20


def _resolve_limit(max_bytes: int | None, nbytes: int) -> tuple[int | None, str]:
    if max_bytes is None:
        if nbytes < _SMALL_OUTPUT and "MATDERIV_MAX_BYTES" not in os.environ:
            return None, ""
        return recent_limit(nbytes)
    return v.byte_count(max_bytes, "max_bytes", or_none=True), "max_bytes="


#: A reading of the limit is reused for LIMIT_SECONDS, by the budget of temporaries always,
#: and by an output's check where the output is at most REUSE_SHARE of that reading (memory
#: would have to shrink by more than 7/8 within the second to make such an output not fit):
#: a lookup costs about 0.1 ms, a tenth of writing a 16 MiB output.
LIMIT_SECONDS = 1.0
REUSE_SHARE = 1 / 8
_limit_seen: tuple[float, str, tuple[int | None, str]] = (-math.inf, "", (None, ""))


def recent_limit(nbytes: int | None = None) -> tuple[int | None, str]:
    """memory_limit(), or a reading of it (for this PROC_DIR) at most LIMIT_SECONDS old where
    `nbytes` is None or at most REUSE_SHARE of that reading.  MATDERIV_MAX_BYTES, when set,
    is always read afresh."""
    global _limit_seen
    seen_at, proc, reading = _limit_seen
    now = time.monotonic()
    fresh = now - seen_at <= LIMIT_SECONDS and proc == PROC_DIR and "MATDERIV_MAX_BYTES" not in os.environ
    if fresh and (nbytes is None or (reading[0] is not None and nbytes <= reading[0] * REUSE_SHARE)):
        return reading
    reading = memory_limit()
    _limit_seen = (now, PROC_DIR, reading)
    return reading


def check_output_bytes(
    parts: list[tuple[tuple[int, ...], np.dtype]],
    *,
    what: str,
    max_bytes: int | None,
    hint: str,
    copies: list[tuple[tuple[int, ...], np.dtype]] = (),
) -> None:
    """Raise OutputTooLargeError if the arrays `parts` (shape, dtype), with the `copies`
    of inputs that the call will make, exceed the limit; ValueError if a dimension is
    beyond what numpy can index.  Called before anything is copied or allocated.

    Sizes are multiplied as Python ints, so they cannot overflow.
    """
    desc = _describe(parts)
    nbytes = sum(math.prod(int(d) for d in shape) * np.dtype(dt).itemsize for shape, dt in [*parts, *copies])
    # numpy refuses a shape whose nonzero dimensions times the itemsize exceed np.intp,
    # even when a zero dimension leaves it empty
    if nbytes == 0 and any(math.prod(int(d) for d in shape if d) * np.dtype(dt).itemsize > v.MAX_DIM for shape, dt in parts):
        raise ValueError(
            f"{what}: the empty output {desc} is beyond numpy's maximum array size of {v.MAX_DIM} "
            "bytes (counting its nonzero dimensions): n, m or the batch size is too large"
        )
    limit, source = _resolve_limit(max_bytes, nbytes)
    if nbytes > v.MAX_DIM and (limit is None or limit > v.MAX_DIM):
        limit, source = v.MAX_DIM, "numpy's maximum array size"
    if limit is None or nbytes <= limit:
        return
    if copies:
        desc += f" and copies of the inputs {_describe(copies)} (contiguous, aligned, of the result dtype)"
    raise OutputTooLargeError(
        f"{what}: the output {desc} needs {nbytes / 2**30:.3g} GiB ({nbytes} bytes), over the "
        f"limit of {limit / 2**30:.3g} GiB ({limit} bytes; set by {source}). {hint}"
    )


def _describe(parts: list[tuple[tuple[int, ...], np.dtype]]) -> str:
    return " + ".join(f"{tuple(int(d) for d in shape)} {np.dtype(dt).name}" for shape, dt in parts)


#: Fresh dense outputs at least this large come from np.zeros: calloc hands out pages the
#: OS has zeroed (glibc maps every block of 32 MiB or more), so the kernel only scatters
#: the values instead of writing the zeros a second time. Smaller outputs are zeroed by
#: the kernel, in parallel. (Read by matderiv.jacobian when it allocates an output.)
FRESH_ZEROS_BYTES = 32 * 2**20


#: A call's temporaries (blocks of per-sample gradients, Gram blocks, float64 conversions)
#: may use this share of the memory limit in effect (memory_limit) ...
TEMPORARIES_SHARE = 1 / 8
#: ... and never less than this (nor, below it, look the limit up: small work stays cheap).
MIN_TEMPORARY_BYTES = 16 * 2**20
#: Where no memory limit can be read.
DEFAULT_TEMPORARY_BYTES = 2**30
def temporaries_budget(max_bytes: int | None, committed: int) -> int:
    """Bytes of temporaries a call may use: with max_bytes, what it leaves once the call's
    outputs and input copies (`committed` bytes) are counted; else TEMPORARIES_SHARE of the
    memory limit in effect (read at most once a second), at least MIN_TEMPORARY_BYTES."""
    if max_bytes is not None:
        return max(0, int(max_bytes) - committed)
    limit = recent_limit()[0]
    if limit is None:
        return DEFAULT_TEMPORARY_BYTES
    return max(MIN_TEMPORARY_BYTES, int(limit * TEMPORARIES_SHARE))
