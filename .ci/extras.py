"""Print the requirements of the given extras of this project, one per line, with the
project's own extras (matderiv[dask] inside [examples]) expanded, for

    python -m pip install $(python .ci/extras.py examples docs)

This installs what an extra needs without reinstalling matderiv itself: an editable
install already built is kept (`pip install -e ".[extra]"` would compile every kernel
again, about 45 s on 2 cores).
"""
from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def requirements(extras: list[str]) -> list[str]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    table, name = project["optional-dependencies"], project["name"]
    out: list[str] = []
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop(0)
        if extra in seen:
            continue
        if extra not in table:
            raise SystemExit(f"extras.py: no extra {extra!r} in pyproject.toml (it has {', '.join(table)})")
        seen.add(extra)
        for req in table[extra]:
            own = re.fullmatch(rf"{re.escape(name)}\[([^\]]+)\]", req.replace(" ", ""))
            if own:
                todo += own.group(1).split(",")
            elif req not in out:
                out.append(req)
    return out


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: python .ci/extras.py EXTRA [EXTRA ...]")
    print("\n".join(requirements(sys.argv[1:])))
