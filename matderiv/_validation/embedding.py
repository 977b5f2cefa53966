"""The checks of an embedding lookup's arguments: the indices idx ((B,) or (B, T)
integers in [0, V)), the number of rows V of the table, and the upstream gradient G of
shape idx.shape + (d,).  Every check reads shapes, dtypes and the indices only, and runs
before anything is allocated.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .core import CONVENTIONS, as_array, check_choice, check_flag, shape_str, target_dtype

__all__ = ["check_embedding_G", "check_indices", "check_num_classes", "embedding_options", "is_lazy"]


def check_num_classes(value: Any, name: str) -> int:
    """V, the number of rows of the table (classes of one_hot): a positive int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected a positive int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value}")
    return int(value)


def check_indices(idx: Any, V: int, name: str = "idx", ndim: tuple[int, ...] = (1, 2), *,
                  values: bool = True) -> Any:
    """idx as an integer array of one of the `ndim`s (a dask array stays lazy: its values
    are checked where each chunk is computed); values=True checks 0 <= idx < V."""
    if not is_lazy(idx):
        idx = np.asarray(idx)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer indices, got dtype {idx.dtype}")
    if idx.ndim not in ndim:
        want = " or ".join(f"{d}-D" for d in ndim)
        raise ValueError(f"{name}: expected a {want} array, got {idx.ndim}-D with shape {shape_str(idx.shape)}")
    if values and not is_lazy(idx) and idx.size:
        bad = np.flatnonzero(((idx < 0) | (idx >= V)).ravel())
        if bad.size:
            pos = np.unravel_index(bad[0], idx.shape)
            where = pos[0] if idx.ndim == 1 else tuple(int(i) for i in pos)
            raise ValueError(
                f"{name}: expected integers in [0, {V}), got {idx.ravel()[bad[0]]} at position {where}"
            )
    return idx


def check_embedding_G(G: Any, idx_shape: tuple[int, ...], name: str = "G") -> Any:
    """G of shape idx.shape + (d,), real (the dtype policy of the batched functions); a
    dask array is checked by its shape and dtype and stays lazy."""
    if is_lazy(G):
        target_dtype(G.dtype, name, allow_complex=False)
    else:
        G = as_array(G, name, G.ndim if isinstance(G, np.ndarray) else np.ndim(G), allow_complex=False)
    if G.ndim != len(idx_shape) + 1 or tuple(G.shape[:-1]) != tuple(idx_shape):
        raise ValueError(
            f"{name}: expected shape idx.shape + (d,) = {shape_str(tuple(idx_shape) + ('d',))}, "
            f"got {shape_str(G.shape)}"
        )
    return G


def embedding_options(convention: Any, bias: Any) -> None:
    """convention and bias of a batched function called with an Embedding: only the
    defaults ("Wx", whose results have the table's shape (V, d); no bias: a lookup has none)."""
    check_choice(convention, "convention", CONVENTIONS)
    if convention != "Wx":
        raise ValueError(
            f"convention: an Embedding's results always have the table's shape (V, d); "
            f"expected the default 'Wx', got {convention!r}"
        )
    if check_flag(bias, "bias"):
        raise ValueError("bias: an embedding lookup has no bias; expected False, got True")


def is_lazy(obj: Any) -> bool:
    """obj is a dask collection (recognised by its type, never imported here)."""
    return hasattr(type(obj), "__dask_graph__")
