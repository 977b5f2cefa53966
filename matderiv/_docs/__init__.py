"""The public docstrings, kept apart from the code they describe.

A numpydoc docstring (Parameters, Returns, Raises, See Also, Notes, Examples) is longer
than most of the functions it documents: here it does not count against a function's
length, and each module keeps its code together.  Every public function, class, method
and property takes its text with `doc`:

    @doc(gradients.PER_SAMPLE_GRADS)
    def per_sample_grads(...): ...

common               the parameter and raise entries that the batched functions share
gradients            per_sample_grads, batch_grad, per_sample_grad_norms, clip_and_sum
statistics           sum_grad_squared, grad_variance, per_sample_grad_dots, kfac_factors,
                     batch_stats
jacobian             the Jacobian classes and constructors (jacobian_wx, ..., hstack_operators)
jacobian_forms       the Jacobian interface's members (shapes, toarray, ..., left)
conv                 Conv and conv_patches
conv_jacobian        jacobian_conv_weight, jacobian_conv_input and their classes
conv_jacobian_forms  those classes' methods
embedding            Embedding and one_hot
checking             the checker, OutputTooLargeError, the serial threshold
dask                 matderiv.dask's functions

.ci/numpydoc.py validates every text; the doctest step of CI runs their examples.
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
