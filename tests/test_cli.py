"""python -m matderiv demo | bench | info, --version and no command: the command line; and
`import matderiv` in a source tree without a build."""
import io
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import matderiv as md

from matderiv.__main__ import demo, main


def test_demo_shows_every_form_and_its_check():
    buf = io.StringIO()
    demo(n=3, m=4, seed=1, file=buf)
    text = buf.getvalue()
    for needle in (
        "shape (3, 3, 4)",  # tensor
        "x^T kron I_n",  # vec F
        "I_n kron x^T",  # vec C
        "12 stored entries = n*m",  # sparse pattern
        "Row convention",
        "per-sample gradients",
        "Dependent case",
    ):
        assert needle in text
    for claim in ("'every entry of d(Wx)/dW is 1'", "ignoring the product rule"):
        assert (f"  a deliberately WRONG claim, {claim}, to show that the check catches a wrong answer:\n"
                "    caught, as intended: J disagrees with central differences in ") in text
    assert text.count("finite differences agree") == 5  # four claims and every sample
    assert "equals np.kron(x[None], np.eye(n)): True" in text


def test_demo_as_a_module():
    res = subprocess.run(
        [sys.executable, "-m", "matderiv", "demo", "--n", "2", "--m", "2"],
        capture_output=True, text=True, check=True,
    )
    assert "Dependent case" in res.stdout


@pytest.mark.parametrize("argv", [["demo", "--n", "0"], ["demo", "--m", "x"], ["nope"], ["--nope"]])
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_bad_size_message(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--n", "99"])
    assert exc.value.code == 2
    assert "expected an int from 1 to 50, got 99" in capsys.readouterr().err


def test_demo_refuses_to_show_a_right_claim_as_caught():
    from matderiv.__main__ import _caught

    x = np.array([1.0, 2.0])
    W = np.ones((3, 2))
    with pytest.raises(AssertionError, match="the wrong claim 'right' passed the finite-difference check"):
        _caught("'right'", lambda W_: W_ @ x, W, md.jacobian_wx(x, 3), io.StringIO())


def test_no_command_prints_the_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m matderiv [-h] [--version] {demo,bench,info} ...")
    for sub in ("demo", "bench", "info"):
        assert f"\n    {sub} " in out


def test_version_and_bare_module():
    version = subprocess.run([sys.executable, "-m", "matderiv", "--version"], capture_output=True, text=True, check=True)
    assert version.stdout == f"matderiv {md.__version__}\n"
    bare = subprocess.run([sys.executable, "-m", "matderiv"], capture_output=True, text=True)
    assert bare.returncode == 0 and bare.stdout.startswith("usage: python -m matderiv") and bare.stderr == ""


def test_source_tree_without_a_build_says_how_to_build(tmp_path):
    """`import matderiv` from a source tree whose kernels were never built (a fresh clone)
    names the directory and the ways out, instead of a circular import."""
    src = os.path.dirname(os.path.dirname(os.path.abspath(md.__file__)))
    shutil.copytree(os.path.join(src, "matderiv"), tmp_path / "matderiv",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "*.c", "__pycache__"))
    kernels = re.escape(str(tmp_path / "matderiv" / "_kernels"))
    message = (rf"matderiv's compiled kernels are not built in {kernels} \(for Python \d+\.\d+\)\. "
               rf"To use the sources in {re.escape(str(tmp_path))}, build them there with "
               r"`python -m pip install -e \.` or `python setup.py build_ext --inplace`; to use an "
               r"installed matderiv, run Python from a directory without a matderiv/ source folder\.")
    code = f"import pytest\nwith pytest.raises(ImportError, match={message!r}):\n    import matderiv"
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_bench_prints_each_area_as_measured_and_writes_json(monkeypatch, tmp_path):
    """bench prints an area's rows before the next area is measured (one table header), and
    --json writes every row with its area, times in seconds (no timing here: fake areas)."""
    import io
    import json

    from matderiv import __main__ as cli
    from matderiv import _bench
    from matderiv._bench.timing import Row

    out = io.StringIO()

    def areas(quick):
        assert quick
        yield "first", [Row("case one", 0.002, 0.001, {"numpy": 0.004})]
        assert "case one" in out.getvalue()  # printed before the second area is measured
        yield "second", [Row("case two", 0.003, None, {})]

    monkeypatch.setattr(_bench, "areas", areas)
    monkeypatch.setattr(_bench, "print_routes", lambda quick, file: print("routes section", file=file))
    path = tmp_path / "bench.json"
    cli.bench(True, out, json_path=str(path))
    text = out.getvalue()
    assert text.count("matderiv ms") == 1 and text.index("case one") < text.index("case two") < text.index("routes section")
    assert "2.00x" in text and f"wrote 2 rows to {path}" in text
    assert text.index("case two") < text.index("peers: left out of --quick") < text.index("routes section")
    saved = json.loads(path.read_text())
    assert saved["quick"] is True and [r["area"] for r in saved["rows"]] == ["first", "second"]
    assert saved["rows"][0] == {"area": "first", "case": "case one", "ours_s": 0.002, "floor_s": 0.001,
                                "refs_s": {"numpy": 0.004}}
    assert saved["rows"][1]["floor_s"] is None
