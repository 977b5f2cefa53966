"""The ratio chart of `python -m matderiv bench --plot PATH`: a horizontal bar per row,
from 1 to matderiv's time / the row's fastest reference (log scale: left of the line at 1
matderiv is faster), coloured by area.  matplotlib is imported only here, only when a
chart is drawn, and drawn with the Agg canvas (no display, no pyplot state)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .table import fmt_ratio

#: Inches of figure height per bar, and the longest label shown (longer ones are cut).
BAR_INCHES, LABEL_CHARS = 0.17, 64


def require() -> None:
    """Raise ImportError, saying how to install it, where matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError("--plot needs matplotlib, which is not installed: python -m pip install matplotlib") from exc


def _label(record: dict[str, Any]) -> str:
    text = record["label"]
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 3] + "..."


def draw(records: Sequence[dict[str, Any]], path: str, title: str) -> int:
    """Draw the rows that have a ratio to `path` (its format from the extension: PNG, SVG,
    PDF, ...); the number of bars."""
    require()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows = [r for r in records if r["ratio"] is not None and math.isfinite(r["ratio"]) and r["ratio"] > 0]
    areas = list(dict.fromkeys(r["area"] for r in rows))
    palette = [f"C{k % 10}" for k in range(len(areas))]
    colour = dict(zip(areas, palette))
    fig = Figure(figsize=(11, 1.6 + BAR_INCHES * max(len(rows), 1)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ratios = [r["ratio"] for r in rows]
    y = range(len(rows))
    ax.barh(y, [q - 1 for q in ratios], left=1, height=0.7, color=[colour[r["area"]] for r in rows])
    for k, q in zip(y, ratios):
        ax.text(q, k, f" {fmt_ratio(q)} ", va="center", ha="left" if q >= 1 else "right", fontsize=6)
    ax.axvline(1, color="black", linewidth=0.8)
    ax.set_xscale("log")
    lo, hi = min(ratios + [1.0]), max(ratios + [1.0])
    ax.set_xlim(lo / 3, hi * 3)
    ax.set_yticks(list(y), [_label(r) for r in rows], fontsize=6)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # the first row at the top
    ax.set_xlabel("matderiv time / the row's fastest reference (log scale; left of 1: matderiv is faster)")
    ax.set_title(title, fontsize=10)
    ax.legend(handles=[Patch(color=colour[a], label=a) for a in areas], fontsize=7, loc="best")
    ax.grid(axis="x", which="both", linewidth=0.3, alpha=0.5)
    fig.savefig(path, dpi=110)
    return len(rows)
