"""python -m matderiv demo | bench | info: what d(Wx)/dW is, in every form, how fast, and
what a bug report needs."""
from __future__ import annotations

import argparse
import datetime
import platform
import sys
from collections.abc import Sequence
from typing import TextIO

import numpy as np

import matderiv as md


def _show(title: str, arr: object, file: TextIO) -> None:
    if title:
        print(f"\n{title}", file=file)
    print(np.array2string(np.asarray(arr), precision=3, suppress_small=True, max_line_width=110), file=file)


def _checked(label: str, f, W: np.ndarray, J, file: TextIO) -> None:
    res = md.check_jacobian(f, W, J)
    print(f"  finite differences agree: {label} (worst abs error {res.max_abs_error:.1e} at {res.max_abs_index})", file=file)


def _caught(label: str, f, W: np.ndarray, claim, file: TextIO) -> None:
    try:
        md.check_jacobian(f, W, claim)
    except md.JacobianMismatch as exc:
        print(f"  a deliberately WRONG claim, {label}, to show that the check catches a wrong answer:\n"
              f"    caught, as intended: {exc}", file=file)
    else:
        raise AssertionError(f"the wrong claim {label} passed the finite-difference check")


def demo(n: int = 2, m: int = 3, seed: int = 0, file: TextIO = sys.stdout) -> None:
    """Answer d(Wx)/dW for one small example in every form, each checked by finite differences."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n, m)).round(2)
    x = rng.standard_normal(m).round(2)
    print(f"f(W) = W @ x with W of shape ({n}, {m}) and x = {x}", file=file)

    J = md.jacobian_wx(x, n)
    print(f"\n{J!r}", file=file)
    _show(f"1. The exact answer: a third-order tensor D[i, a, b] = delta_ia * x_b, shape {J.shape}", J.toarray(), file)
    _checked("D (numerator layout)", lambda W_: W_ @ x, W, J, file)
    print(f"   denominator layout (W's axes first): shape {J.toarray('denominator').shape}", file=file)
    _caught("'every entry of d(Wx)/dW is 1'", lambda W_: W_ @ x, W, np.ones(J.shape), file)

    _show("2. Vectorized, column-major vec(W) (order='F'): x^T kron I_n", J.tovec("F"), file)
    print(f"  equals np.kron(x[None], np.eye(n)): {np.array_equal(J.tovec('F'), np.kron(x[None], np.eye(n)))}", file=file)
    _show("   row-major vec(W) = W.ravel() (order='C'): I_n kron x^T", J.tovec("C"), file)
    print(f"  equals np.kron(np.eye(n), x[None]): {np.array_equal(J.tovec('C'), np.kron(np.eye(n), x[None]))}", file=file)

    S = J.tosparse("csr", order="F")
    print(f"\n3. Sparse (csr_array, order='F'): {S.nnz} stored entries = n*m, index dtype {S.indices.dtype}", file=file)
    print(f"  indptr  {S.indptr}\n  indices {S.indices}", file=file)

    z_W = rng.standard_normal((m, n)).round(2)
    K = md.jacobian_xw(x, n)
    _show(f"4. Row convention z = x @ W (W of shape ({m}, {n})): dz_j/dW_ab = x_a * delta_jb, shape {K.shape}", K.toarray(), file)
    _checked("row convention", lambda W_: x @ W_, z_W, K, file)

    g = rng.standard_normal(n).round(2)
    print(f"\n5. Under a scalar loss with dL/df = g = {g}: dL/dW = outer(g, x) = J.vjp(g)", file=file)
    _show("", J.vjp(g), file)
    _checked("dL/dW", lambda W_: g @ (W_ @ x), W, J.vjp(g), file)

    B = 4
    X = rng.standard_normal((B, m)).round(2)
    G = rng.standard_normal((B, n)).round(2)
    per = md.per_sample_grads(X, G)
    print(f"\n6. A batch of {B}: per-sample gradients G[b] outer X[b], shape {per.shape}; their sum is G^T X", file=file)
    print(f"  sum of per-sample == batch_grad: {np.allclose(per.sum(0), md.batch_grad(X, G))}", file=file)
    print(f"  per-sample norms {md.per_sample_grad_norms(X, G).round(3)}", file=file)
    for b in range(B):
        md.check_jacobian(lambda W_: G[b] @ (W_ @ X[b]), W, per[b])
    print("  finite differences agree for every sample", file=file)

    y = rng.standard_normal(n).round(2)
    xw = np.tanh(W.T @ y)
    dx = np.einsum("j,a,jb->jab", 1 - xw**2, y, np.eye(m))  # dx_j/dW_ab = (1 - x_j^2) y_a delta_jb
    T = md.jacobian_wx(xw, n, W=W, dx_dW=dx)
    print(f"\n7. Dependent case x = tanh(W^T y): the product rule adds W @ dx/dW\n  {T!r}", file=file)
    _checked("total derivative", lambda W_: W_ @ np.tanh(W_.T @ y), W, T, file)
    _caught("ignoring the product rule", lambda W_: W_ @ np.tanh(W_.T @ y), W, md.jacobian_wx(xw, n), file)


def _machine() -> tuple[str, dict[str, object]]:
    """The machine in words (the bench's title), and as the JSON header's fields."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from ._kernels import _openmp
    from ._threads import usable_cores

    fields = {"cpu": cpu, "usable_cores": usable_cores(), "openmp": bool(_openmp.have_openmp()),
              "threads": _openmp.max_threads(), "numpy": np.__version__, "python": platform.python_version()}
    words = (f"{cpu}, {fields['usable_cores']} usable cores; OpenMP {'on' if fields['openmp'] else 'off'}, "
             f"{fields['threads']} threads; numpy {np.__version__}, Python {fields['python']}")
    return words, fields


def bench(quick: bool = False, file: TextIO | None = None, json_path: str | None = None,
          plot_path: str | None = None) -> list[dict]:
    """Time every kernel against the numpy/scipy ways and the write-once floor, in one run,
    section by section, printing each row as soon as it is measured; json_path: also write
    every row there, plot_path: draw their ratios there; file: sys.stdout by default;
    returns the rows' records."""
    from ._bench import report, sections

    words, fields = _machine()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = {"matderiv": md.__version__, **fields, "date": date, "quick": quick}
    title = (f"matderiv {md.__version__} bench{' --quick' if quick else ''}, {date}", f"on {words}",
             "times: the best of repeated calls; /floor = matderiv time / the write-once floor (allocating "
             "the output, writing each byte once on one thread); each section says what its ratio is")
    return report.run(sections(quick), sys.stdout if file is None else file, title, header, json_path, plot_path)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1 or value > 50:
        raise argparse.ArgumentTypeError(f"expected an int from 1 to 50, got {value}")
    return value


BENCH = """Time every kernel against the plain numpy/scipy ways of computing the same thing and
against the write-once floor, section by section (one per area, then the routes), each row
printed as soon as it is measured. A ratio is matderiv's time over the time it is compared
with: below 1, matderiv is faster; each section's header says what it is compared with."""
JSON_HELP = """also write every row of every section, the routes included, to PATH as JSON
(rewritten after each section): {"header": {matderiv, numpy and python versions, cpu,
usable_cores, openmp, threads, date, quick}, "rows": [{area, label, matderiv_s, ratio
(to the fastest reference), floor_s, floor_ratio, references: [{name, time_s, ratio}]},
...]}; times in seconds, a ratio is matderiv's time / the other, null where there is none;
routes rows also carry function, shape [B, T, n=m], dtype, threads and within_budget"""
PLOT_HELP = """draw the ratio chart to PATH (PNG, or SVG/PDF by the extension): a horizontal
bar per row from 1 to matderiv's time / its fastest reference, log scale, coloured by area;
needs matplotlib; can be combined with --json"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m matderiv", description=__doc__)
    parser.add_argument("--version", action="version", version=f"matderiv {md.__version__}")
    sub = parser.add_subparsers(dest="command")
    p_demo = sub.add_parser("demo", help="d(Wx)/dW for a small example, in every form")
    p_demo.add_argument("--n", type=_positive, default=2, help="rows of W (default 2)")
    p_demo.add_argument("--m", type=_positive, default=3, help="columns of W (default 3)")
    p_demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p_bench = sub.add_parser("bench", help="time the kernels against numpy/scipy", description=BENCH)
    p_bench.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    p_bench.add_argument("--json", metavar="PATH", help=JSON_HELP)
    p_bench.add_argument("--plot", metavar="PATH", help=PLOT_HELP)
    sub.add_parser("info", help="versions, OpenMP, threads, BLAS, the serial threshold and the memory limit (for bug reports)")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
    elif args.command == "demo":
        demo(args.n, args.m, args.seed)
    elif args.command == "bench":
        if args.plot is not None:
            from ._bench import plot

            try:
                plot.require()  # before the bench runs, not after
            except ImportError as exc:
                p_bench.error(str(exc))
        bench(args.quick, json_path=args.json, plot_path=args.plot)
    else:  # info
        from ._info import print_report

        print_report(sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
