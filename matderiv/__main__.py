"""python -m matderiv demo | bench | info: what d(Wx)/dW is, in every form, how fast, and
what a bug report needs."""
from __future__ import annotations

import argparse
import json
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


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from ._kernels import _openmp
    from ._threads import usable_cores

    return (
        f"{cpu}, {usable_cores()} usable cores; OpenMP {'on' if _openmp.have_openmp() else 'off'}, "
        f"{_openmp.max_threads()} threads; numpy {np.__version__}, Python {platform.python_version()}"
    )


def bench(quick: bool = False, file: TextIO = sys.stdout, json_path: str | None = None) -> None:
    """Time every kernel against the numpy/scipy ways and the write-once floor, in one run,
    printing each area's rows as soon as they are measured; json_path: also write them there."""
    from ._bench import areas, as_json, print_routes, skipped
    from ._bench.timing import print_table

    print(f"matderiv {md.__version__} bench{' --quick' if quick else ''} on {_machine()}", file=file)
    print("speedup = reference time / matderiv time (above 1: matderiv is faster); "
          "/floor = matderiv time / write-once floor\n", file=file, flush=True)
    measured = []
    for k, (area, rows) in enumerate(areas(quick)):
        print_table(rows, file, header=k == 0)
        file.flush()
        measured.append((area, rows))
    for line in skipped(quick):
        print(line, file=file)
    if json_path is not None:
        with open(json_path, "w") as fh:
            json.dump({"version": md.__version__, "quick": quick, "machine": _machine(), "rows": as_json(measured)}, fh, indent=1)
        print(f"\nwrote {len(as_json(measured))} rows to {json_path}", file=file)
    print_routes(quick, file)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1 or value > 50:
        raise argparse.ArgumentTypeError(f"expected an int from 1 to 50, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m matderiv", description=__doc__)
    parser.add_argument("--version", action="version", version=f"matderiv {md.__version__}")
    sub = parser.add_subparsers(dest="command")
    p_demo = sub.add_parser("demo", help="d(Wx)/dW for a small example, in every form")
    p_demo.add_argument("--n", type=_positive, default=2, help="rows of W (default 2)")
    p_demo.add_argument("--m", type=_positive, default=3, help="columns of W (default 3)")
    p_demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p_bench = sub.add_parser("bench", help="time the kernels against numpy/scipy")
    p_bench.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    p_bench.add_argument("--json", metavar="PATH", help="also write the rows (times in seconds) to PATH as JSON")
    sub.add_parser("info", help="versions, OpenMP, threads, BLAS, the serial threshold and the memory limit (for bug reports)")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
    elif args.command == "demo":
        demo(args.n, args.m, args.seed)
    elif args.command == "bench":
        bench(args.quick, json_path=args.json)
    else:  # info
        from ._info import print_report

        print_report(sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
