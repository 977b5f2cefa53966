"""Fork safety of the OpenMP kernels: the thread count a kernel call may use.

A child forked after this process ran a parallel region runs every kernel on one
thread: GNU libgomp's thread pool does not survive fork, and a child that asks it for a
team waits forever for threads that exist only in the parent. A team of one never
touches the pool, so the child's kernels return the parent's results; the parent keeps
its threads, and children started by spawn or forkserver (whose server never ran a
kernel) keep theirs. (Work too small to gain from threads runs serially in the kernels
themselves; see matderiv.set_serial_below_bytes.)

usable_cores() is the one core count matderiv uses (n_threads=-1, the n_threads limit, info).
"""
from __future__ import annotations

import os

_team_started = False  # this process, or the one it was forked from, asked for a team
_forked_after_team = False  # ... and this process is such a forked child


def _after_fork_in_child() -> None:
    global _forked_after_team
    _forked_after_team = _forked_after_team or _team_started


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the OS has one (Linux),
    else every core of the machine (os.process_cpu_count() of Python 3.13)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def usable(threads: int) -> int:
    """The threads a kernel may start for a validated request: 1 in a forked child."""
    global _team_started
    if threads <= 1 or _forked_after_team:
        return 1
    _team_started = True
    return threads


def serial_after_fork() -> bool:
    """True in a child forked after a parallel region (its kernels run on one thread)."""
    return _forked_after_team
