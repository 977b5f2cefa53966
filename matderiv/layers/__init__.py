"""Structured inputs of the batched functions: layers whose per-sample gradients have more
structure than a dense X (importing this package registers their implementations)."""
from .embedding import Embedding, one_hot

__all__ = ["Embedding", "one_hot"]
