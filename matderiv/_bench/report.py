"""The run of `python -m matderiv bench`: each section under its header and the line
that says what a ratio means there, each row printed as soon as it is measured, the
JSON file rewritten after each section (so that an interrupted run keeps what it
measured) and the ratio chart drawn at the end."""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TextIO

from .table import Section, fit


def _say(text: str, file: TextIO) -> None:
    for line in fit(text):
        print(line, file=file)


def _section(section: Section, file: TextIO, records: list[dict[str, Any]]) -> None:
    """Print one section, a row at a time, and append its rows' records."""
    print(f"\n=== {section.area} ===", file=file)
    _say(section.ratio, file)
    print(section.head, file=file)
    print("-" * len(section.head), file=file, flush=True)
    measured = []
    for row in section.rows:
        for line in section.lines(row):
            print(line, file=file)
        file.flush()
        measured.append(row)
        records.append({"area": section.area, **section.record(row)})
    if section.summary is not None and measured:
        _say(section.summary(measured), file)


def save(path: str, header: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Write the header and the rows so far to `path` as JSON."""
    with open(path, "w") as fh:
        json.dump({"header": header, "rows": records}, fh, indent=1)


def run(sections: Iterable[Section], file: TextIO, title: Iterable[str], header: dict[str, Any],
        json_path: str | None = None, plot_path: str | None = None) -> list[dict[str, Any]]:
    """Print the title (paragraphs) and every section; write the rows to json_path (after
    each section) and draw their ratios to plot_path; the rows' records."""
    for paragraph in title:
        _say(paragraph, file)
    records: list[dict[str, Any]] = []
    for section in sections:
        _section(section, file, records)
        if json_path is not None:
            save(json_path, header, records)
    if json_path is not None:
        print(file=file)
        _say(f"wrote {len(records)} rows (every section) to {json_path}", file)
    if plot_path is not None:
        from . import plot

        bars = plot.draw(records, plot_path, f"matderiv {header['matderiv']} bench, {header['date']}")
        _say(f"drew the ratios of {bars} rows to {plot_path}", file)
    return records
