"""Jacobian rows of `python -m matderiv bench`: each form against numpy/scipy and the floor."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

import matderiv as md

from .timing import Row, best_time, floor_time

#: What a ratio means in this section (printed at its header).
RATIO = "ratio = matderiv time / the numpy or scipy way's (below 1: matderiv is faster)"


def _handmade_csr(x: np.ndarray, n: int) -> sp.csr_array:
    """x^T kron I_n assembled with numpy index arithmetic, the usual hand-built way."""
    m = x.size
    data = np.tile(x, n)
    indices = (np.arange(n)[:, None] + n * np.arange(m)[None, :]).ravel()
    indptr = np.arange(n + 1) * m
    return sp.csr_array((data, indices, indptr), shape=(n, n * m))


def _fancy_tensor(x: np.ndarray, n: int) -> np.ndarray:
    D = np.zeros((n, n, x.size), dtype=x.dtype)
    i = np.arange(n)
    D[i, i, :] = x
    return D


def _sparse_rows(rng: np.random.Generator, n: int, rep: int) -> Iterator[Row]:
    """tosparse in every format against scipy.sparse.kron and a numpy-built csr_array."""
    x = rng.standard_normal(n)
    J = md.jacobian_wx(x, n)
    row_x = sp.csr_array(x[None, :])
    eye = sp.eye_array(n, format="csr")
    for fmt in ("csr", "csc", "coo"):
        A = J.tosparse(fmt)
        index_arrays = (A.coords if fmt == "coo" else (A.indices, A.indptr))
        nbytes = [A.data.nbytes] + [a.nbytes for a in index_arrays]
        refs = {f"scipy.sparse.kron(x, I, format={fmt!r})": best_time(lambda: sp.kron(row_x, eye, format=fmt), max(1, rep // 5))}
        if fmt == "csr":
            refs["hand-built csr_array (numpy)"] = best_time(lambda: _handmade_csr(x, n), rep)
        yield Row(f"tosparse {fmt} F n=m={n} f64", best_time(lambda: J.tosparse(fmt), rep), floor_time(nbytes, rep), refs)


def _dense_rows(rng: np.random.Generator, n: int, dtype: type, rep: int) -> Iterator[Row]:
    """toarray in both layouts and tovec against fancy indexing, einsum and np.kron."""
    x = rng.standard_normal(n).astype(dtype)
    J = md.jacobian_wx(x, n)
    eye_n = np.eye(n, dtype=dtype)
    tag = "f64" if dtype == np.float64 else "f32"
    floor = floor_time(n * n * n * x.itemsize, rep)
    numerator = {
        "np.zeros + fancy indexing": best_time(lambda: _fancy_tensor(x, n), rep),
        "np.einsum('ia,b->iab', I, x)": best_time(lambda: np.einsum("ia,b->iab", eye_n, x), rep),
    }
    yield Row(f"toarray numerator n=m={n} {tag}", best_time(J.toarray, rep), floor, numerator)
    denominator = {"np.einsum('ai,b->abi', I, x)": best_time(lambda: np.einsum("ai,b->abi", eye_n, x), rep)}
    yield Row(f"toarray denominator n=m={n} {tag}", best_time(lambda: J.toarray("denominator"), rep), floor, denominator)
    yield Row(f"tovec F (x^T kron I) n=m={n} {tag}", best_time(J.tovec, rep), floor,
              {"np.kron(x[None], I)": best_time(lambda: np.kron(x[None, :], eye_n), rep)})


def _product_rows(rng: np.random.Generator, n: int, rep: int) -> Iterator[Row]:
    """jvp and vjp against dW @ x and np.outer."""
    x, dW, g = rng.standard_normal(n), rng.standard_normal((n, n)), rng.standard_normal(n)
    J = md.jacobian_wx(x, n)
    yield Row(f"jvp n=m={n} f64", best_time(lambda: J.jvp(dW), rep), None, {"dW @ x": best_time(lambda: dW @ x, rep)})
    yield Row(f"vjp n=m={n} f64", best_time(lambda: J.vjp(g), rep), floor_time(n * n * 8, rep),
              {"np.outer(g, x)": best_time(lambda: np.outer(g, x), rep)})


def jacobian_rows(quick: bool) -> Iterator[Row]:
    """Every Jacobian row, one at a time as it is measured; quick=True: smaller sizes."""
    rng = np.random.default_rng(0)
    rep = 3 if quick else 15
    big, small = (300, 80) if quick else (1000, 200)
    yield from _sparse_rows(rng, big, rep)
    for dtype in (np.float64, np.float32):
        yield from _dense_rows(rng, small, dtype, rep)
    yield from _product_rows(rng, big, rep)
