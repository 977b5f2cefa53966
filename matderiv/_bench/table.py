"""How `python -m matderiv bench` prints and records its rows: a Section (an area's rows,
measured one at a time, and what a ratio means there), lines of at most WIDTH
characters with compact times (µs, ms, s), and the JSON record of a row."""
from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

from .timing import Row

#: No printed line is longer (the label and reference columns wrap).
WIDTH = 100
#: The columns of an area's table: label, matderiv's time, /floor; reference, its time, ratio.
LABEL, TIME, FLOOR, REFERENCE, RATIO = 34, 8, 6, 30, 6
_LEFT = LABEL + 1 + TIME + 1 + FLOOR

HEAD = (f"{'case':{LABEL}s} {'matderiv':>{TIME}s} {'/floor':>{FLOOR}s}  "
        f"{'reference':{REFERENCE}s} {'its time':>{TIME}s} {'ratio':>{RATIO}s}")


def fmt_time(seconds: float) -> str:
    """'412 µs', '3.20 ms', '12.5 s': three significant digits (four from 1000 s), '-' for NaN."""
    if seconds != seconds:
        return "-"
    for unit, name in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if seconds >= 0.9995 * unit or name == "µs":  # 0.9996 s is '1.00 s', not '1000 ms'
            value = seconds / unit
            break
    digits = 2 if value < 9.995 else 1 if value < 99.95 else 0
    return f"{value:.{digits}f} {name}"


def fmt_ratio(ratio: float | None) -> str:
    """'0.98', '12.3', '438', '0.0023', '2.1e-05', '1.2e+06'; '-' for none."""
    if ratio is None or not math.isfinite(ratio):
        return "-"
    if ratio >= 99999.5:
        return f"{ratio:.1e}"
    if ratio >= 99.5:
        return f"{ratio:.0f}"
    if ratio >= 9.995:
        return f"{ratio:.1f}"
    if ratio >= 0.1 or ratio == 0:
        return f"{ratio:.2f}"
    return f"{ratio:.2g}" if ratio >= 1e-4 else f"{ratio:.1e}"


def fit(text: str) -> list[str]:
    """Free text as lines of at most WIDTH characters (continuations indented); a single
    word longer than that (a long path) stays whole."""
    return textwrap.wrap(text, WIDTH, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, subsequent_indent="  ", break_on_hyphens=False) or [""]


def row_lines(row: Row) -> list[str]:
    """A row's lines: its label (wrapped), matderiv's time and /floor on the first line,
    one reference (wrapped) per line with its time and ratio beside the label."""
    floor = fmt_ratio(row.ours / row.floor) if row.floor else "-"
    label = _wrap(row.case, LABEL)
    left = [f"{label[0]:{LABEL}s} {fmt_time(row.ours):>{TIME}s} {floor:>{FLOOR}s}"] + label[1:]
    right = []
    for name, t in row.refs.items():
        parts = _wrap(name, REFERENCE)
        right.append(f"{parts[0]:{REFERENCE}s} {fmt_time(t):>{TIME}s} {fmt_ratio(row.ours / t):>{RATIO}s}")
        right += parts[1:]
    return [f"{a:{_LEFT}s}  {b}".rstrip() for a, b in zip_longest(left, right, fillvalue="")]


def row_record(row: Row) -> dict[str, Any]:
    """A row as JSON: times in seconds, ratios = matderiv time / the other (None: none);
    `ratio` is the one to the fastest reference."""
    return {
        "label": row.case, "matderiv_s": row.ours, "ratio": row.ratio,
        "floor_s": row.floor, "floor_ratio": row.ours / row.floor if row.floor else None,
        "references": [{"name": name, "time_s": t, "ratio": row.ours / t} for name, t in row.refs.items()],
    }


@dataclass
class Section:
    """One section of the bench: its area, what a ratio means there (one line), its rows
    (an iterable measured one row at a time as it is iterated), the table's header, a
    row's printed lines and JSON record, and an optional summary line of all its rows."""

    area: str
    ratio: str
    rows: Iterable[Any]
    head: str = HEAD
    lines: Callable[[Any], list[str]] = row_lines
    record: Callable[[Any], dict[str, Any]] = row_record
    summary: Callable[[list[Any]], str] | None = None
