"""The public docstrings, kept apart from the code they describe.

A numpydoc docstring (Parameters, Returns, Raises, See Also, Notes, Examples) is longer
than most of the functions it documents: here it does not count against a function's
length, and each module keeps its code together.  Every public function, class, method
and property takes its text with `doc`:

    @doc(gradients.PER_SAMPLE_GRADS)
    def per_sample_grads(...): ...

common  the parameter and raise entries that many functions share
one module per area (gradients, statistics, jacobian, conv, embedding, checking, config,
dask); .ci/numpydoc.py validates every text, the doctests run them.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def doc(text: str) -> Callable[[T], T]:
    """Give the decorated function, class or property getter `text` as its docstring."""

    def attach(obj: T) -> T:
        obj.__doc__ = text
        return obj

    return attach
