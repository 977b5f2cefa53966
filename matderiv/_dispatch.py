"""Route dask-array inputs of the batched gradient functions to matderiv.dask.

The check looks at types only (numpy arrays pass it first, in two identity tests)
and never imports dask: a dask collection is recognised by its `__dask_graph__`.
"""
from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

F = TypeVar("F", bound=Callable[..., Any])


def _is_dask(obj: Any) -> bool:
    return hasattr(type(obj), "__dask_graph__")


def dask_aware(func: F) -> F:
    """Call matderiv.dask's function of the same name when X or G (or per_sample_grad_dots'
    X2 or G2) is a dask collection."""
    name = func.__name__

    @functools.wraps(func)
    def wrapper(X: Any, G: Any, *args: Any, **kwargs: Any) -> Any:
        if (type(X) is not np.ndarray or type(G) is not np.ndarray) and (_is_dask(X) or _is_dask(G)) or (
            (args or "X2" in kwargs or "G2" in kwargs)  # per_sample_grad_dots' second batch
            and any(_is_dask(a) for a in (*args, kwargs.get("X2"), kwargs.get("G2")))
        ):
            return getattr(importlib.import_module("matderiv.dask"), name)(X, G, *args, **kwargs)
        return func(X, G, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
