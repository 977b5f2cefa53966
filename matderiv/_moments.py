"""The moments of per-sample gradients behind grad_variance (in memory and on dask):
count, mean and M2 = sum_b (g_b - mean)^2, formed without materializing the (B, n, m)
stack in 2-D, and without the cancellation of E[g^2] - E[g]^2 where the mean dominates.

Routes, chosen per call (see moments):
  * 2-D plain:    M2 = (G*G)^T (X*X) - (G^T X)^2 / B, two GEMMs, taken where a sample of the
                  rows shows no dominant mean and the result shows that the subtraction lost
                  at most PLAIN_LOSS of the variance;
  * 2-D shifted:  X and G shifted by their means c and a (three GEMMs, see _shifted);
  * 3-D:          per-sample gradients in blocks, each centred on its own mean and merged
                  with Chan's update; computed again, shifted by T a (x) c, where the result
                  shows a mean that dominates the spread (UNSHIFTED_LOSS).
A Moments holds its mean relative to its shift, so partials merge without cancellation.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ._batch import FLOAT32_BLOCK_ROWS, Batch, block_rows, float64_blocks, grad_blocks, oriented, rows

#: The plain 2-D sums are kept where S2 <= PLAIN_LOSS * B * var, i.e. at most this factor of
#: the variance was lost to cancellation (about log10 of it in digits).
PLAIN_LOSS = {np.dtype(np.float32): 16.0, np.dtype(np.float64): 1e4}
#: 2-D: means of X's and G's rows larger than this many spreads (in a sample of the rows)
#: are shifted away at once, where the plain sums would only be recomputed.
DOMINANT = {np.dtype(np.float32): 4.0, np.dtype(np.float64): 30.0}
#: 3-D: unshifted per-sample gradients are kept where eps * sqrt(T) * |mean| / spread, about
#: the share of the variance their rounding takes, is under this; else they are shifted.
UNSHIFTED_LOSS = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}
#: Rows of X and G sampled (evenly) to estimate mean / spread.
SAMPLE_ROWS = 256


def per_dof(m2: np.ndarray, count: int, ddof: int) -> np.ndarray:
    """M2 / max(count - ddof, 0): NaN or inf where there are no degrees of freedom."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return m2 / max(count - ddof, 0)


class Moments(NamedTuple):
    """count, mean and M2 = sum_b (g_b - mean)^2 of per-sample gradients in float64
    ("Wx", (n, m)), the mean held relative to a shift: it is `mean + steps * outer(a, c)`,
    with a and c the means of G's and X's rows where they dominate (else zeros), so that
    partials merge without cancellation.  With bias, those of db_b: its mean is
    `bias_mean + steps * a` (bias_mean and bias_m2 are None without bias)."""

    count: int
    steps: int
    a: np.ndarray
    c: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    bias_mean: np.ndarray | None = None
    bias_m2: np.ndarray | None = None

    def grad_mean(self) -> np.ndarray:
        return self.mean + self.steps * np.outer(self.a, self.c)

    def results(self, want: frozenset[str], ddof: int, convention: str, dtype: np.dtype) -> dict[str, Any]:
        """Those of "grad" (sum_b g_b = count mean), "sum_grad_squared" (sum_b g_b^2 = M2 +
        count mean^2: two non-negative terms, no cancellation) and "variance" (M2 / (count -
        ddof)) that are in `want`, W's in the convention and dtype; each a pair with db's
        with bias."""
        with np.errstate(invalid="ignore", over="ignore"):
            mean = self.grad_mean()
            found = {"grad": self.count * mean, "sum_grad_squared": self.m2 + self.count * np.square(mean),
                     "variance": per_dof(self.m2, self.count, ddof)}
            if self.bias_mean is not None:
                mean_b = self.bias_mean + self.steps * self.a
                found_b = {"grad": self.count * mean_b, "sum_grad_squared": self.bias_m2 + self.count * np.square(mean_b),
                           "variance": per_dof(self.bias_m2, self.count, ddof)}
        results: dict[str, Any] = {}
        for name in want & found.keys():
            dW = oriented(found[name], convention, dtype)
            results[name] = dW if self.bias_mean is None else (dW, found_b[name].astype(dtype))
        return results

    def merge(self, other: Moments) -> Moments:
        """Chan et al.'s pairwise update, M2 = M2_a + M2_b + delta^2 n_a n_b / n, with
        delta taken between shifted means: a' (x) c' - a (x) c = a' (x) (c' - c) +
        (a' - a) (x) c needs no difference of large products.  The result keeps self's
        shift; a partial of no samples contributes nothing."""
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        k, total = other.count, self.count + other.count
        with np.errstate(invalid="ignore", over="ignore"):
            da, dc = other.a - self.a, other.c - self.c
            shift = self.steps * (np.outer(other.a, dc) + np.outer(da, self.c))
            merged = [chan(self.mean, self.m2, other.mean + shift, other.m2.copy(), self.count, k)]
            if self.bias_mean is not None:
                merged.append(chan(self.bias_mean, self.bias_m2, other.bias_mean + self.steps * da,
                                   other.bias_m2.copy(), self.count, k))
        return Moments(total, self.steps, self.a, self.c, *(x for pair in merged for x in pair))


def chan(mean: np.ndarray, m2: np.ndarray, mean2: np.ndarray, m2b: np.ndarray, n1: int, n2: int) -> tuple:
    """The merged (mean, M2) of partials of n1 and n2 samples, written over mean2 and m2b
    (the caller's own arrays) with one temporary."""
    total = n1 + n2
    delta = np.subtract(mean2, mean, out=mean2)
    m2b += m2
    spread = np.square(delta)
    spread *= n1 * n2 / total
    m2b += spread
    delta *= n2 / total
    delta += mean
    return delta, m2b


def moments(b: Batch, bias: bool) -> Moments:
    """The Moments of b's per-sample gradients (see the module docstring for the routes).
    B = 0: zeros."""
    n, m, T = b.n, b.m, b.T
    if b.B == 0:
        zeros = [np.zeros((n, m)), np.zeros((n, m))] + ([np.zeros(n), np.zeros(n)] if bias else [])
        return Moments(0, T, np.zeros(n), np.zeros(m), *zeros)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # non-finite inputs propagate
        a, c = np.zeros(n), np.zeros(m)
        if b.ndim == 3:
            found = _chan_blocks(b, a, c)
            if _mean_dominated(b, *found):
                a, c = _shifts(b)
                found = _chan_blocks(b, a, c)
        else:
            found = None if dominance(b) > DOMINANT[b.dtype] else _plain(b)
            if found is None:
                a, c = _shifts(b)
                found = _shifted(b, a, c)
        mean, m2 = found
        if b.B == 1:  # one sample has no spread (not round-off): 0, or NaN where not finite
            np.multiply(m2, 0.0, out=m2)
        if not bias:
            return Moments(b.B, T, a, c, mean, m2)
        du = (b.G - a).sum(axis=1) if b.ndim == 3 else b.G - a  # db_b - T a, each G_bt - a first
        du_mean = du.mean(axis=0)
        return Moments(b.B, T, a, c, mean, m2, du_mean, np.square(du - du_mean).sum(axis=0))


def _shifts(b: Batch) -> tuple[np.ndarray, np.ndarray]:
    """a and c, the means of G's and X's rows in float64 (c representable in the inputs'
    dtype: 3-D forms X - c in it)."""
    a, c = rows(b.G).mean(axis=0, dtype=np.float64), rows(b.X).mean(axis=0, dtype=np.float64)
    return a, c.astype(b.dtype).astype(np.float64)


def _mean_dominated(b: Batch, mean: np.ndarray, m2: np.ndarray) -> bool:
    """3-D: whether unshifted per-sample gradients may have lost more than UNSHIFTED_LOSS of
    the variance to rounding: a mean that dominates the spread, measured over all entries
    (a shift dominates them all; NaN compares False)."""
    if b.B < 2:
        return False
    ratio = math.sqrt(np.square(mean).sum() / (m2.sum() / b.B))  # |mean| / spread over all entries
    return bool(np.finfo(b.dtype).eps * math.sqrt(b.T) * ratio > UNSHIFTED_LOSS[b.dtype])


def dominance(b: Batch) -> float:
    """How far the means of X's and G's rows exceed their spreads: min over X and G of
    max over columns of |mean| / spread, estimated on SAMPLE_ROWS rows taken evenly
    (inf where a column is constant and nonzero, NaN where one is not finite)."""
    ratios = []
    for A in (rows(b.X), rows(b.G)):
        if len(A) == 0:
            return 0.0
        sample = A[:: max(1, math.ceil(len(A) / SAMPLE_ROWS))]
        mean = sample.mean(axis=0, dtype=np.float64)
        squares = np.einsum("ij,ij->j", sample, sample, dtype=np.float64) / len(sample)
        spread = np.sqrt(np.maximum(squares - np.square(mean), 0.0))
        ratio = np.abs(mean) / spread
        ratios.append(np.max(np.where(mean == 0, 0.0, ratio), initial=0.0))
    return min(ratios)


def _plain(b: Batch) -> tuple[np.ndarray, np.ndarray] | None:
    """2-D: mean and M2 from S1 = G^T X and S2 = (G*G)^T (X*X), in the inputs' dtype a block
    of samples at a time (float64 across blocks); None where S2 shows that the subtraction
    S2 - S1^2 / B lost more than PLAIN_LOSS of M2."""
    s1, s2 = np.zeros((b.n, b.m)), np.zeros((b.n, b.m))
    step = len(b.X) if b.dtype == np.float64 else block_rows(4 * (b.n + b.m), b, 1024)
    for lo in range(0, b.B, step):
        Gb, Xb = b.G[lo : lo + step], b.X[lo : lo + step]
        s1 += Gb.T @ Xb
        s2 += np.square(Gb).T @ np.square(Xb)
    m2 = s2 - s1 * (s1 / b.B)
    if np.any(s2 > PLAIN_LOSS[b.dtype] * np.maximum(m2, 0.0)):  # NaN compares False
        return None
    np.maximum(m2, 0.0, out=m2)  # round-off of the subtraction; NaN stays NaN
    return np.divide(s1, b.B, out=s1), m2


def _shifted(b: Batch, a: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-D: with w = X - c and u = G - a, the shifted gradients h_b = g_b - a (x) c =
    G_b (x) w_b + u_b (x) c have g's spread and a small mean, so M2 = sum h^2 - (sum h)^2 / B
    cancels only what the spread itself does.  sum h = G^T w + (sum u) (x) c and sum h^2 =
    (G*G)^T (w*w) + 2 c * ((G*u)^T w) + (sum u^2) (x) c^2: three GEMMs.  Returns (mean of
    h, M2)."""
    B, n, m = b.B, b.n, b.m
    lin, cross, sq = np.empty((n, m)), np.empty((n, m)), np.empty((n, m))  # G^T w, (G*u)^T w, (G*G)^T (w*w)
    su, suu = np.zeros(n), np.zeros(n)
    # float64 inputs in one block: the temporaries (w, u) are the inputs' size, and one GEMM
    # over all samples each is what makes it fast; float32 is converted a block at a time
    per_sample = 0 if b.dtype == np.float64 else 8 * (2 * n + 2 * m)
    for lo, part in float64_blocks(b, per_sample):
        w, u = part.X - c, part.G - a
        su += u.sum(axis=0)
        suu += np.einsum("bn,bn->n", u, u)
        _gemm_into(lin, part.G, w, lo)
        _gemm_into(cross, np.multiply(u, part.G, out=u), w, lo)
        _gemm_into(sq, np.square(part.G, out=u), np.square(w, out=w), lo)
    # in place, with one (n, m) temporary: h_sum = G^T w + su (x) c in lin;
    # h_sq = sq + 2 c * (G*u)^T w + suu (x) c^2 in sq; M2 = h_sq - h_sum^2 / B in sq
    tmp = np.empty((n, m))
    h_sum = lin
    h_sum += np.outer(su, c, out=tmp)
    cross *= 2 * c
    sq += cross
    sq += np.outer(suu, c * c, out=tmp)
    np.divide(h_sum, B, out=tmp)
    tmp *= h_sum
    m2 = np.subtract(sq, tmp, out=sq)
    np.maximum(m2, 0.0, out=m2)  # round-off of the subtraction; NaN stays NaN
    h_sum /= B
    return h_sum, m2


def _gemm_into(acc: np.ndarray, A: np.ndarray, C: np.ndarray, lo: int) -> None:
    """acc = A^T C for the first block (lo = 0), acc += A^T C for later ones."""
    if lo == 0:
        np.matmul(A.T, C, out=acc)
    else:
        acc += A.T @ C


def _chan_blocks(b: Batch, a: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3-D: the gradients h_b = g_b - T a (x) c in blocks, each block centred on its own
    mean and merged with Chan's update in float64 (no cancellation at all).  With a zero
    shift they are the per-sample gradients themselves; else sum_t G_bt (x) (X_bt - c) +
    s_b (x) c, s_b = sum_t (G_bt - a), as one batched product over T + 1 steps (the last
    step holds s_b and c) in the inputs' dtype (c must be representable in it).
    Returns (mean of h, M2)."""
    mean = m2 = None
    for lo, h in (grad_blocks(b) if not c.any() and not a.any() else _shifted_blocks(b, a, c)):
        block_mean = h.mean(axis=0)  # in the inputs' dtype: a float32 block is short (grad_blocks)
        h -= block_mean
        block_m2 = np.square(h, out=h).sum(axis=0).astype(np.float64)
        block_mean = block_mean.astype(np.float64)
        mean, m2 = (block_mean, block_m2) if lo == 0 else chan(mean, m2, block_mean, block_m2, lo, len(h))
    return mean, m2


def _shifted_blocks(b: Batch, a: np.ndarray, c: np.ndarray):
    """(lo, h): blocks of h_b = g_b - T a (x) c (see _chan_blocks), in one reused buffer."""
    B, T, n, m, dt = b.B, b.T, b.n, b.m, b.dtype
    step = block_rows(dt.itemsize * ((T + 1) * (n + m) + n * m), b)
    step = min(step, FLOAT32_BLOCK_ROWS) if dt == np.float32 else step  # float32 sums stay short
    Gx, Wx = np.empty((step, T + 1, n), dt), np.empty((step, T + 1, m), dt)
    hw = np.empty((step, n, m), dt)
    for lo in range(0, B, step):
        k = min(step, B - lo)
        Gx[:k, :T] = b.G[lo : lo + k]
        Gx[:k, T] = (b.G[lo : lo + k] - a).sum(axis=1)  # each G_bt - a exact where G_bt is near a
        np.subtract(b.X[lo : lo + k], c, out=Wx[:k, :T], casting="same_kind")
        Wx[:k, T] = c
        yield lo, np.matmul(Gx[:k].transpose(0, 2, 1), Wx[:k], out=hw[:k])
