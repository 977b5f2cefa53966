"""Graph building blocks for the batched functions on dask arrays chunked along B.

Every task calls an in-memory matderiv function on one chunk of X and the matching
chunk of G (so the in-memory validation, coercion and kernels apply to every chunk)
and returns a tuple of arrays.  From those chunk tuples:

* per_sample_map: func(X_k, G_k) itself as chunk k of an array that keeps X's chunks
  along B (one task per chunk: a separate task picking a field out of a tuple cost
  a third of the time of the norms on a 2-process cluster);
* Chunks.per_sample: one field of every chunk tuple, likewise;
* pairs:      func(X_i, G_i, X2_j, G2_j) for every pair of chunks, a (B, B2) array
  (per_sample_grad_dots between two chunked batches; of one batch with itself, the
  blocks on and above the diagonal, mirrored);
* reduction:  some fields of every chunk tuple merged by a tree of `combine` calls over
  groups of SPLIT_EVERY partials, then `finalize`d: one pass over the data, small
  partials only (any combine works, e.g. Chan et al.'s (count, mean, M2) update).

The graphs are built by hand rather than with blockwise/map_blocks: with concatenate
(implied by map_blocks(drop_axis=...)) those copy every chunk before the call.
"""
from __future__ import annotations

import functools
import math
import operator
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
from threadpoolctl import ThreadpoolController

from .. import _validation as v

#: Partials merged by one combine task of a tree reduction.
SPLIT_EVERY = 8

Key = tuple[Any, ...]


# --- inputs ------------------------------------------------------------------------------
def checked(obj: Any, name: str) -> Any:
    """What the in-memory checks see: a dask array's shape and dtype as a zero-stride
    stand-in (nothing is computed or allocated); any other input as it is."""
    if isinstance(obj, da.Array):
        if any(math.isnan(d) for d in obj.shape):
            raise ValueError(
                f"{name}: expected known chunk sizes, got shape {obj.shape}; "
                f"call {name}.compute_chunk_sizes() first"
            )
        return np.broadcast_to(np.empty((), dtype=obj.dtype), obj.shape)
    return obj


def inputs(X: Any, G: Any) -> tuple[da.Array, da.Array, np.dtype]:
    """Check X and G with the in-memory rules and messages; return them as dask arrays
    with the same chunks along B (X's, when X is a dask array, else G's, else one chunk),
    one chunk along every other axis, and the result dtype."""
    Xa, Ga, dtype = v.batch_pair(checked(X, "X"), checked(G, "G"))  # the in-memory checks
    lazy = [A for A in (X, G) if isinstance(A, da.Array)]
    rows = lazy[0].chunks[0] if lazy else (Xa.shape[0],)
    return _batch_chunked(X, Xa, rows), _batch_chunked(G, Ga, rows), dtype


def _batch_chunked(obj: Any, seen: np.ndarray, rows: tuple[int, ...]) -> da.Array:
    """obj with chunks `rows` along B and one chunk along every other axis (no-op when
    it has them already); `seen` is the array the checks saw, for numpy inputs."""
    chunks = (rows,) + (-1,) * (seen.ndim - 1)
    return obj.rechunk(chunks) if isinstance(obj, da.Array) else da.from_array(seen, chunks=chunks)


def check_max_bytes(max_bytes: int | None) -> None:
    """max_bytes checked now (type and sign); it bounds each task's allocation when computed."""
    if max_bytes is not None:
        v.byte_count(max_bytes, "max_bytes", or_none=True)


def check_lazy_out(out: Any) -> None:
    """out= cannot receive a lazy result."""
    if out is not None:
        raise TypeError(
            "out: expected None with dask inputs (the result is lazy; "
            f"da.store(result, out) writes it into an array), got {type(out).__name__}"
        )


# --- threads inside a task -------------------------------------------------------------------
_lock = threading.Lock()
_active = 0
_limiter: Any = None


@functools.cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()


def _take_blas_control() -> None:
    """Let this thread set BLAS's process-wide thread count: threadpoolctl lets only one
    "controlling thread" change OpenBLAS's (pthreads) pool and silently ignores the
    others, and tasks start and end in different worker threads."""
    for lib in _controller().lib_controllers:
        clear = getattr(lib, "clear_controlling_thread", None)
        if clear is not None:
            clear(force=True)


@contextmanager
def _one_blas_thread() -> Iterator[bool]:
    """In a worker thread (threaded scheduler, distributed workers) BLAS runs on one
    thread while any matderiv task runs: dask's threads already fill the cores, and
    BLAS's own threads on top made the calls 1.3-2x slower.  BLAS's thread count is
    process-wide, so the first task in sets it and the last one out restores it.
    In the main thread (the synchronous scheduler) nothing changes.  Yields whether
    the limit applies."""
    global _active, _limiter
    if threading.current_thread() is threading.main_thread():
        yield False
        return
    with _lock:
        if _active == 0:
            _take_blas_control()
            _limiter = _controller().limit(limits=1, user_api="blas")
        _active += 1
    try:
        yield True
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                _take_blas_control()
                _limiter.restore_original_limits()
                _take_blas_control()  # leave no worker thread in control


def _run(func: Callable[..., Any], kwargs: dict[str, Any], *chunks: np.ndarray) -> Any:
    """func(*chunks, **kwargs); n_threads=None becomes 1 in a worker thread."""
    with _one_blas_thread() as limited:
        if limited and "n_threads" in kwargs and kwargs["n_threads"] is None:
            kwargs = {**kwargs, "n_threads": 1}
        return func(*chunks, **kwargs)


def _run_chunk(func: Callable[..., Any], kwargs: dict[str, Any], *chunks: np.ndarray) -> tuple[Any, ...]:
    """_run's result as a tuple (one field for a single array)."""
    result = _run(func, kwargs, *chunks)
    return result if isinstance(result, tuple) else (result,)


# --- graphs ------------------------------------------------------------------------------------
def per_sample_map(func: Callable[..., np.ndarray], X: da.Array, G: da.Array, tail: tuple[int, ...],
                   dtype: np.dtype, **kwargs: Any) -> da.Array:
    """The array (B,) + tail whose chunk k is func(X_k, G_k, **kwargs): X's chunks along B."""
    name = f"{func.__name__}-{tokenize(func.__name__, X, G, kwargs)}"
    inner, zeros = (0,) * (X.ndim - 1), (0,) * len(tail)
    tasks = {
        (name, k) + zeros: (_run, func, kwargs, (X.name, k) + inner, (G.name, k) + inner)
        for k in range(len(X.chunks[0]))
    }
    graph = HighLevelGraph.from_collections(name, tasks, dependencies=[X, G])
    return _array(graph, name, (X.chunks[0],) + tuple((d,) for d in tail), dtype)


class Chunks:
    """The tasks `func(X_k, G_k, **kwargs)`, one per chunk k along B."""

    def __init__(self, func: Callable[..., Any], X: da.Array, G: da.Array, **kwargs: Any) -> None:
        self.name = f"{func.__name__}-chunks-{tokenize(func.__name__, X, G, kwargs)}"
        self.rows = X.chunks[0]
        tail = (0,) * (X.ndim - 1)
        tasks = {
            (self.name, k): (_run_chunk, func, kwargs, (X.name, k) + tail, (G.name, k) + tail)
            for k in range(len(self.rows))
        }
        self.graph = HighLevelGraph.from_collections(self.name, tasks, dependencies=[X, G])
        self.keys: list[Key] = [(self.name, k) for k in range(len(self.rows))]

    def per_sample(self, field: int, tail: tuple[int, ...], dtype: np.dtype) -> da.Array:
        """Field `field` of every chunk tuple: an array (B,) + tail with X's chunks along B."""
        name = f"{self.name}-{field}".replace("-chunks-", "-", 1)
        zeros = (0,) * len(tail)
        tasks = {(name, k) + zeros: (operator.getitem, key, field) for k, key in enumerate(self.keys)}
        return _array(_with_layer(self.graph, name, tasks, self.name), name, (self.rows,) + tuple((d,) for d in tail), dtype)

    def reduction(
        self,
        fields: Sequence[int],
        combine: Callable[[list[tuple[Any, ...]]], tuple[Any, ...]],
        finalize: Callable[[tuple[Any, ...]], tuple[np.ndarray, ...]],
        outputs: Sequence[tuple[tuple[int, ...], np.dtype]],
    ) -> tuple[da.Array, ...]:
        """Tree-reduce `fields` of the chunk tuples: `combine` merges a list of partial
        tuples into one, `finalize` turns the last into the outputs, given as
        (shape, dtype); each output is a one-chunk array."""
        token = tokenize(self.name, tuple(fields), combine, finalize, outputs)
        name = f"{self.name.split('-chunks-')[0]}-reduce-{token}"
        tasks: dict[Key, Any] = {}
        level: list[Any] = [(_pick, key, tuple(fields)) for key in self.keys]
        depth = 0
        while len(level) > 1:
            groups = [level[j : j + SPLIT_EVERY] for j in range(0, len(level), SPLIT_EVERY)]
            level = []
            for j, group in enumerate(groups):
                tasks[(f"{name}-level{depth}", j)] = (combine, group)
                level.append((f"{name}-level{depth}", j))
            depth += 1
        tasks[(name, "final")] = (finalize, level[0])
        graph = _with_layer(self.graph, name, tasks, self.name)
        results = []
        for i, (shape, dtype) in enumerate(outputs):
            out = f"{name}-out{i}"
            task = {(out,) + (0,) * len(shape): (operator.getitem, (name, "final"), i)}
            results.append(_array(_with_layer(graph, out, task, name), out, tuple((d,) for d in shape), dtype))
        return tuple(results)


def pairs(func: Callable[..., np.ndarray], rows: Sequence[da.Array], cols: Sequence[da.Array] | None,
          dtype: np.dtype, **kwargs: Any) -> da.Array:
    """The (B, B2) array whose block (i, j) is func(*rows_i, *cols_j, **kwargs), an array
    (len(rows_i), len(cols_j)), where rows_i are the chunks i of the arrays `rows` (all
    chunked alike along B) and cols_j those of `cols`: rows' chunks along rows, cols'
    along columns.  cols=None pairs rows with themselves and gives an exactly symmetric
    result: func(*rows_i) on the diagonal (it must be exactly symmetric), func(*rows_i,
    *rows_j) above it, and its transpose below."""
    name = f"{func.__name__}-pairs-{tokenize(func.__name__, rows, cols, kwargs)}"
    symmetric = cols is None
    cols = rows if cols is None else cols

    def chunks(arrays: Sequence[da.Array], k: int) -> list[Key]:
        return [(A.name, k) + (0,) * (A.ndim - 1) for A in arrays]

    tasks: dict[Key, Any] = {}
    for i in range(len(rows[0].chunks[0])):
        for j in range(len(cols[0].chunks[0])):
            if not symmetric or i < j:
                tasks[(name, i, j)] = (_run, func, kwargs, *chunks(rows, i), *chunks(cols, j))
            elif i == j:
                tasks[(name, i, j)] = (_run, func, kwargs, *chunks(rows, i))
            else:
                tasks[(name, i, j)] = (np.transpose, (name, j, i))
    graph = HighLevelGraph.from_collections(name, tasks, dependencies=[*rows, *cols])
    return _array(graph, name, (rows[0].chunks[0], cols[0].chunks[0]), dtype)


def _array(graph: HighLevelGraph, name: str, chunks: tuple[tuple[int, ...], ...], dtype: np.dtype) -> da.Array:
    return da.Array(graph, name, chunks, meta=np.empty((0,) * len(chunks), dtype=dtype))


def _with_layer(graph: HighLevelGraph, name: str, tasks: dict[Key, Any], after: str) -> HighLevelGraph:
    """`graph` plus a layer `name` of `tasks` that depends on layer `after`."""
    layers = {**graph.layers, name: MaterializedLayer(tasks)}
    return HighLevelGraph(layers, {**graph.dependencies, name: {after}})


def _pick(parts: tuple[Any, ...], fields: tuple[int, ...]) -> tuple[Any, ...]:
    return tuple(parts[f] for f in fields)


def same(parts: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """The finalize step of a reduction whose merged partials are the results."""
    return parts


def sum_partials(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """Field-wise sum of partial tuples."""
    return tuple(functools.reduce(np.add, arrays) for arrays in zip(*parts))
