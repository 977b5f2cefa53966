"""The batch core of an embedding lookup: the indices idx (B, T) and the upstream
gradient G (B, T, d) of y[b, t] = E[idx[b, t]], checked and coerced, and the group sums
every result is made of.

Sample b's gradient g_b (V, d) has as its row v the group sum S_bv = sum_{t: idx[b,t]=v}
G[b, t], and is zero elsewhere.  Each sample's T indices are sorted (np.argsort, B*T
integers) and the kernel _embed.group_sums walks the groups of equal indices, in float64:
  * ||g_b||^2 = sum_v ||S_bv||^2, one thread per sample, O(B T d), no group sum stored;
  * the group sums themselves, (groups, d), in (b, v) order (per-sample gradients, the
    statistics);
  * a scatter of rows into the table (V, d) (or a compact (U, d) table): the rows are
    sorted by their keys once and split into runs at key changes, one thread per run, so
    no row of the table is written by two threads (race-free, deterministic).
Nothing of size V is allocated here but the caller's table-shaped results.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validation as v
from .._kernels import _embed

_NONE_F64 = np.empty(0)
_NONE_I64 = np.empty(0, dtype=np.int64)


class Lookup:
    """idx (B, T) and G (B, T, d) of one lookup (1-D idx as T = 1), checked; the dtype is
    G's under the batched functions' policy (float32 or float64)."""

    def __init__(self, idx: np.ndarray, V: int, G: Any, name: str = "G") -> None:
        G = v.check_embedding_G(G, idx.shape, name)
        self.dtype = v.target_dtype(G.dtype, name, allow_complex=False)
        self.V, self.B = V, idx.shape[0]
        self.T = idx.shape[1] if idx.ndim == 2 else 1
        self.d = G.shape[-1]
        self.idx, self.G = idx, G

    @property
    def N(self) -> int:
        return self.B * self.T

    def load(self) -> None:
        """Coerce idx to the kernel's index dtype and G to (B T, d) rows of self.dtype
        (copies only where needed), and sort each sample's indices."""
        keys = np.ascontiguousarray(self.idx.reshape(self.B, self.T), dtype=v.index_dtype(self.V))
        self.rows = v.contiguous(self.G.reshape(self.N, self.d), self.dtype)
        order = np.argsort(keys, axis=1)  # (a group's rows in any fixed order: deterministic)
        self.keys = np.take_along_axis(keys, order, axis=1).ravel()
        order += np.arange(self.B, dtype=np.int64)[:, None] * self.T  # rows of G
        self.order = order.ravel().astype(np.int64, copy=False)
        self.ptr = np.arange(self.B + 1, dtype=np.int64) * self.T

    def squared_norms(self, threads: int) -> np.ndarray:
        """||g_b||^2 in float64, (B,), from the group sums (none stored)."""
        sq = np.empty(self.B)
        _embed.group_sums(self.keys, self.order, self.ptr, self.rows, _NONE_F64, _NONE_I64,
                          np.empty((0, self.d)), sq, threads)
        return sq

    def groups(self, threads: int, dtype: np.dtype | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(gptr (B + 1,), keys (groups,), sums (groups, d) of `dtype` (default float64),
        sq (B,)): sample b's groups are gptr[b]..gptr[b + 1], in increasing key order."""
        keys = self.keys.reshape(self.B, self.T)
        first = np.ones((self.B, self.T), dtype=bool)
        first[:, 1:] = keys[:, 1:] != keys[:, :-1]
        gptr = np.zeros(self.B + 1, dtype=np.int64)
        np.cumsum(first.sum(axis=1), out=gptr[1:])
        sums = np.empty((int(gptr[-1]), self.d), dtype=np.float64 if dtype is None else dtype)
        sq = np.empty(self.B)
        _embed.group_sums(self.keys, self.order, self.ptr, self.rows, _NONE_F64, gptr, sums, sq, threads)
        return gptr, keys[first], sums, sq


def scatter(keys: np.ndarray, rows: np.ndarray, out: np.ndarray, threads: int,
            scale: np.ndarray | None = None) -> np.ndarray:
    """out[k] = sum of rows[i] (times scale[i]) over the i with keys[i] = k, for every key
    that occurs (other rows of out untouched), in float64; returns out.  keys (R,) in
    [0, len(out)), rows (R, d) C-contiguous float32 or float64, out (K, d) float32 or float64."""
    keys = np.ascontiguousarray(keys, dtype=v.index_dtype(out.shape[0]))
    order = np.argsort(keys, kind="stable").astype(np.int64, copy=False)
    ordered = keys[order]
    runs = max(1, min(threads, len(keys)))  # one run per thread, split where the key changes
    cuts = np.searchsorted(ordered, ordered[np.arange(1, runs) * len(keys) // runs], side="left")
    ptr = np.unique(np.concatenate(([0], cuts, [len(keys)])).astype(np.int64))
    factors = _NONE_F64 if scale is None else np.ascontiguousarray(scale, dtype=np.float64)
    _embed.group_sums(ordered, order, ptr, rows, factors, _NONE_I64, out, _NONE_F64, threads)
    return out
