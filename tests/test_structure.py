"""The package's structure rules (.ci/structure.py: no import cycle, no private name used
across modules, no module or function over its size), run with the suite in a source
checkout (the sdist's suite runs against an installed package and has no .ci/)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / ".ci" / "structure.py"


@pytest.mark.skipif(not SCRIPT.exists(), reason="needs a source checkout's .ci/structure.py")
def test_the_import_graph_keeps_its_rules():
    res = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 cycles, 0 private names across modules, 0 over size" in res.stdout
