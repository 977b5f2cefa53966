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


def _route_row(function="clip_and_sum", shape=(512, 1024, 512), ours=2.5, best_time=2.0):
    from matderiv._bench.routes import RouteRow

    return RouteRow(function, shape, "float32", "all", ours, "materialize in blocks", best_time)


def _fake_sections(out, long=False):
    """Two areas of fake rows (no timing) and the routes section with fake rows; each
    generator checks that the row before it was printed before it 'measures' the next."""
    from matderiv._bench import routes
    from matderiv._bench.table import Section
    from matderiv._bench.timing import Row

    word = "a_very_long_label_part_" * 3 if long else ""
    refs = {f"{word}numpy reference, a long name that wraps": 123.0, "the other way": 2e-7} if long else {"numpy": 0.004}

    def first():
        yield Row(f"case one {word}B=1048576 T=1024 n=m=512 float64 (materialize) fresh", 0.002, 0.001, refs)
        assert "case one" in out.getvalue()  # printed before the second row is measured
        yield Row("case two", 0.003, None, {})

    def second():
        yield Row("case three", 4321.0 if long else 0.5, 1e-9 if long else None, {"numpy": 1.0, "scipy": 0.25})

    def route_rows():
        yield _route_row()
        assert "materialize in blocks" in out.getvalue()
        yield _route_row("per_sample_grad_norms", (8, 8, 64), 1e-5, 1e-5)

    return [
        Section("first", "ratio = first's meaning", first()),
        Section("second", "ratio = second's meaning", second()),
        Section("routes", routes.RATIO, route_rows(), routes.HEADER, routes.row_lines, routes.record, routes.summary),
    ]


@pytest.fixture
def fake_bench(monkeypatch):
    """bench() on fake sections (long labels without --quick) that print to the buffer
    returned: pass it as the file, or, where main() is called, make it sys.stdout."""
    from matderiv import _bench

    out = io.StringIO()
    monkeypatch.setattr(_bench, "sections", lambda quick: _fake_sections(out, long=not quick))
    return out


def test_bench_prints_each_row_as_measured_under_its_section(fake_bench):
    """Each row is printed before the next is measured, under one table header per section
    and the line that says what a ratio means there (no timing here: fake rows)."""
    from matderiv.__main__ import bench
    from matderiv._bench import routes
    from matderiv._bench.table import HEAD

    records = bench(True, fake_bench)
    text = fake_bench.getvalue()
    assert text.count(HEAD) == 2 and text.count(routes.HEADER) == 1
    for area, meaning in (("first", "ratio = first's meaning"), ("second", "ratio = second's meaning"),
                          ("routes", "ratio = matderiv time / the best plain-numpy route's (below 1: faster)")):
        assert f"\n=== {area} ===\n{meaning}" in text
    assert text.index("case one") < text.index("case two") < text.index("=== second") < text.index("case three")
    lines = text.splitlines()
    assert "case one B=1048576 T=1024 n=m=512   2.00 ms   2.00  numpy" in lines[lines.index(HEAD) + 2]
    assert lines[lines.index(HEAD) + 2].endswith("4.00 ms   0.50")
    assert "  float64 (materialize) fresh" in lines[lines.index(HEAD) + 3]
    assert "case three" in text and "  scipy " in text and " ".join(text.split()).endswith("; 1 over the budget")
    assert "clip_and_sum" in text and " f32   all   2.50 s  materialize in blocks   2.00 s   1.25 over" in text
    assert [r["area"] for r in records] == ["first", "first", "second", "routes", "routes"]


def test_bench_lines_fit_100_columns(fake_bench, monkeypatch):
    """Long labels and reference names wrap, times are compact: no line over 100 characters,
    the title included (a long CPU name)."""
    from matderiv import __main__ as cli

    words, fields = cli._machine()
    monkeypatch.setattr(cli, "_machine", lambda: ("Some Vendor(R) Very Long Processor Name(TM) 64-Core @ 3.5GHz " * 2 + words,
                                                 fields))
    cli.bench(False, fake_bench)
    lines = fake_bench.getvalue().splitlines()
    assert max(map(len, lines)) <= 100, max(lines, key=len)
    assert any("a_very_long_label_part_" in line for line in lines) and any("4321 s" in line for line in lines)
    assert any("the other way" in line and "0.20 µs" in line for line in lines)


@pytest.mark.parametrize(("seconds", "text"), [(4.2e-7, "0.42 µs"), (4.1e-4, "410 µs"), (0.0009996, "1.00 ms"),
                                              (0.0999, "99.9 ms"), (0.9996, "1.00 s"), (12.5, "12.5 s"),
                                              (float("nan"), "-")])
def test_times_are_compact(seconds, text):
    from matderiv._bench.table import fmt_time

    assert fmt_time(seconds) == text


@pytest.mark.parametrize(("ratio", "text"), [(0.98, "0.98"), (12.34, "12.3"), (438.2, "438"), (0.0023, "0.0023"),
                                            (2.1e-5, "2.1e-05"), (1.23e6, "1.2e+06"), (None, "-"),
                                            (float("inf"), "-")])
def test_ratios_are_compact(ratio, text):
    from matderiv._bench.table import fmt_ratio

    assert fmt_ratio(ratio) == text


def test_every_section_says_in_one_line_what_its_ratio_is():
    """The real sections (their rows are generators: nothing is measured here), the routes last."""
    from matderiv._bench import sections

    found = list(sections(True))
    assert [s.area for s in found][:8] == ["jacobian", "kronecker", "conv_jacobian", "gradients", "statistics",
                                           "pipeline", "layers", "embedding"]
    assert found[-1].area == "routes"
    for section in found:
        assert section.ratio.startswith("ratio = ") and len(section.ratio) <= 100, section.area
        section.rows.close()  # never started


def test_bench_json_holds_every_row_of_every_section(fake_bench, tmp_path, monkeypatch):
    import json

    from matderiv import __main__ as cli

    path = tmp_path / "bench.json"
    monkeypatch.setattr(sys, "stdout", fake_bench)
    assert cli.main(["bench", "--quick", "--json", str(path)]) == 0
    saved = json.loads(path.read_text())
    header = saved["header"]
    assert header["matderiv"] == md.__version__ and header["numpy"] == np.__version__ and header["quick"] is True
    assert header["threads"] >= 1 and header["date"].endswith(" UTC") and "cpu" in header
    assert [r["area"] for r in saved["rows"]] == ["first", "first", "second", "routes", "routes"]
    one, two, three, route = saved["rows"][:4]
    assert one == {"area": "first", "label": "case one B=1048576 T=1024 n=m=512 float64 (materialize) fresh",
                   "matderiv_s": 0.002, "ratio": 0.5, "floor_s": 0.001, "floor_ratio": 2.0,
                   "references": [{"name": "numpy", "time_s": 0.004, "ratio": 0.5}]}
    assert two["ratio"] is None and two["floor_s"] is None and two["references"] == []
    assert three["ratio"] == 2.0 and [r["ratio"] for r in three["references"]] == [0.5, 2.0]
    assert route == {"area": "routes", "label": "clip_and_sum B=512 T=1024 n=m=512 float32 all thread(s)",
                     "matderiv_s": 2.5, "ratio": 1.25, "floor_s": None, "floor_ratio": None,
                     "references": [{"name": "materialize in blocks", "time_s": 2.0, "ratio": 1.25}],
                     "function": "clip_and_sum", "shape": [512, 1024, 512], "dtype": "float32", "threads": "all",
                     "within_budget": False}
    assert saved["rows"][4]["within_budget"] is True


def test_bench_help_documents_json_and_plot(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for needle in ("the routes included", "matderiv_s", "time_s", "references", "within_budget", "seconds",
                   "date", "threads", "--plot PATH", "needs matplotlib", "below 1, matderiv is faster"):
        assert needle in out


def test_bench_plot_draws_the_ratio_chart(fake_bench, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib: pip install matplotlib")
    png, path = tmp_path / "ratios.png", tmp_path / "bench.json"
    monkeypatch.setattr(sys, "stdout", fake_bench)
    assert main(["bench", "--quick", "--plot", str(png), "--json", str(path)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert path.exists()
    said = " ".join(fake_bench.getvalue().split())
    assert f"drew the ratios of 4 rows to {png}" in said  # case two has no reference to compare with


def test_bench_plot_without_matplotlib_is_a_usage_error(monkeypatch, capsys, tmp_path):
    """No traceback and exit status 2, before anything is measured."""
    from matderiv import _bench
    from matderiv._bench import plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setattr(_bench, "sections", lambda quick: pytest.fail("the bench ran"))
    with pytest.raises(ImportError, match=r"^--plot needs matplotlib, which is not installed: python -m pip install"):
        plot.require()
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--plot", str(tmp_path / "x.png")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: --plot needs matplotlib, which is not installed" in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_an_interrupted_bench_keeps_the_sections_it_finished(monkeypatch, tmp_path):
    """The JSON file is rewritten after each section: a run stopped in the second keeps the first."""
    import json

    from matderiv import _bench
    from matderiv.__main__ import bench
    from matderiv._bench.table import Section
    from matderiv._bench.timing import Row

    def stopped():
        raise KeyboardInterrupt
        yield  # a generator, as the sections' rows are

    sections = [Section("first", "ratio = one", iter([Row("case one", 1.0, None, {"numpy": 2.0})])),
                Section("second", "ratio = two", stopped())]
    monkeypatch.setattr(_bench, "sections", lambda quick: sections)
    path = tmp_path / "bench.json"
    with pytest.raises(KeyboardInterrupt):
        bench(True, io.StringIO(), json_path=str(path))
    assert [r["label"] for r in json.loads(path.read_text())["rows"]] == ["case one"]


def test_alternating_timer_times_both_in_turn():
    """best_times_alternating calls each function once to warm up, then in turn, and returns
    the best time of each (here the second always sleeps longer)."""
    import time

    from matderiv._bench.timing import best_times_alternating

    order = []
    first, second = (lambda: order.append("a")), (lambda: (order.append("b"), time.sleep(0.002)))
    fast, slow = best_times_alternating(first, second, 3)
    assert order == ["a", "b"] * 4
    assert 0 <= fast < slow and slow >= 0.002
