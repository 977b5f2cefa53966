"""Route dask-array inputs, and structured inputs (a convolution's lazy patches, an
embedding's indices), of the batched functions to their implementations.

The in-memory functions are wrapped by `dask_aware`; matderiv.dask registers an
implementation for each of them (`register`) when it is imported.  The one reference
from the in-memory layer to dask is the lazy plugin load on the first dask input: the
check looks at types only (numpy arrays pass it first, in identity tests) and a dask
collection is recognised by its `__dask_graph__`, so a numpy call never imports dask.

A structured input type registers its implementations with `register_input` (matderiv.layers
does, when matderiv is imported); an X of that type is routed to them before any other check,
dask or not (the implementation handles a structured input that holds dask arrays).
"""
from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

F = TypeVar("F", bound=Callable[..., Any])

#: The plugin that registers the dask implementations when imported.
PLUGIN = "matderiv.dask"

#: public function -> its implementation for dask inputs
_implementations: dict[Callable[..., Any], Callable[..., Any]] = {}

#: (public function, type of X) -> its implementation for that structured input
_structured: dict[tuple[Callable[..., Any], type], Callable[..., Any]] = {}


def register(public: Callable[..., Any], implementation: Callable[..., Any]) -> None:
    """Call `implementation` instead of the dask_aware function `public` on dask inputs."""
    _implementations[public] = implementation


def register_input(public: Callable[..., Any], kind: type, implementation: Callable[..., Any]) -> None:
    """Call `implementation` instead of the dask_aware function `public` when X is a `kind`."""
    _structured[(public, kind)] = implementation


def _is_dask(obj: Any) -> bool:
    return hasattr(type(obj), "__dask_graph__")


def _has_dask(X: Any, G: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """X or G, or a positional or keyword second batch (X2, G2), is a dask collection."""
    if (type(X) is not np.ndarray or type(G) is not np.ndarray) and (_is_dask(X) or _is_dask(G)):
        return True
    return bool(args or "X2" in kwargs or "G2" in kwargs) and any(
        _is_dask(a) for a in (*args, kwargs.get("X2"), kwargs.get("G2"))
    )


def dask_aware(func: F) -> F:
    """func for in-memory inputs; the registered implementation for X's type when X is a
    structured input; the dask implementation when an input is a dask collection
    (matderiv.dask is imported on the first such call)."""

    @functools.wraps(func)
    def wrapper(X: Any, G: Any, *args: Any, **kwargs: Any) -> Any:
        if type(X) is not np.ndarray and (wrapper, type(X)) in _structured:
            return _structured[(wrapper, type(X))](X, G, *args, **kwargs)
        if not _has_dask(X, G, args, kwargs):
            return func(X, G, *args, **kwargs)
        if wrapper not in _implementations:
            importlib.import_module(PLUGIN)  # registers every implementation
        return _implementations[wrapper](X, G, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
