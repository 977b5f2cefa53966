"""Differentially private full-batch gradient descent over a training set that never
exists in memory: 2^22 rows generated lazily by dask.array.random, chunked along the
batch, with matderiv.dask clipping and summing every example's gradient.

The model is softmax regression z = x @ W + c.  Each step is one pass over the data:

    G_b   = softmax(z_b) - onehot(y_b)                  d loss_b / d z_b, per chunk
    dW    = sum_b min(1, C/||g_b||) outer(x_b, G_b)     md.clip_and_sum(X, G, C, convention="xW", bias=True)
    W    -= lr * (dW + N(0, (sigma C)^2)) / N

The data, the logits and G are dask arrays; md.clip_and_sum sees dask inputs and
returns lazy sums, so the whole step (loss, accuracy, clipped sums, the fraction of
examples clipped) is one dask computation whose peak memory is a few chunks, on the
threaded scheduler or on a cluster of worker processes (--workers N).  Each pass shows
its progress (dask's progress bar; --no-progress: none).

    python examples/dask_dp_sgd.py --samples 4194304 --steps 5 --workers 2
"""
from __future__ import annotations

import argparse
import resource
import time

import dask
import dask.array as da
import numpy as np

import matderiv as md


def make_data(n_samples: int, n_features: int, n_classes: int, chunk: int, seed: int):
    """Lazy X (n_samples, n_features) and labels y from a hidden linear model plus
    Gumbel noise (so y follows a softmax of the true logits)."""
    rng = da.random.default_rng(seed)
    W_true = np.random.default_rng(seed).normal(scale=3 / np.sqrt(n_features), size=(n_features, n_classes))
    X = rng.standard_normal((n_samples, n_features), chunks=(chunk, n_features))
    noise = rng.gumbel(size=(n_samples, n_classes), chunks=(chunk, n_classes))
    y = (X @ W_true + noise).argmax(axis=1)
    return X, y


def compute(*collections, progress: bool = True, label: str = "") -> tuple:
    """dask.compute of the collections, with a progress bar where `progress` (after the
    label): dask's ProgressBar on the threaded scheduler, distributed's where a Client is
    the default scheduler."""
    if not progress:
        return dask.compute(*collections)
    if label:
        print(label, flush=True)
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):  # no distributed, or no client: a local scheduler
        client = None
    if client is None:
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            return dask.compute(*collections)
    from distributed import progress as show

    futures = client.compute(list(collections))
    show(futures)  # a text bar, until every future is done
    return tuple(client.gather(futures))


def step_terms(W: np.ndarray, c: np.ndarray, X: da.Array, y: da.Array, max_norm: float):
    """The lazy pieces of one step: mean loss, accuracy, clipped sums, fraction clipped."""
    z = X @ W + c
    z = z - z.max(axis=1, keepdims=True)
    logp = z - da.log(da.exp(z).sum(axis=1, keepdims=True))
    onehot = y[:, None] == da.arange(W.shape[1])[None, :]
    G = da.exp(logp) - onehot  # d loss_b / d z_b of each example's own loss
    dW, dc, norms = md.clip_and_sum(X, G, max_norm, convention="xW", bias=True)
    loss = -da.where(onehot, logp, 0.0).sum(axis=1).mean()
    accuracy = (logp.argmax(axis=1) == y).mean()
    return loss, accuracy, dW, dc, (norms > max_norm).mean()


def main(
    n_samples: int = 2**22, n_features: int = 32, n_classes: int = 4, chunk: int = 2**16,
    steps: int = 5, lr: float = 4.0, max_norm: float = 3.0, noise_multiplier: float = 1.0,
    seed: int = 0, workers: int = 0, progress: bool = True,
) -> list[float]:
    """Train (with a progress bar for each pass where `progress`); returns the loss before
    each step and after the last."""
    client = None
    if workers:
        from dask.distributed import Client

        client = Client(n_workers=workers, threads_per_worker=1, dashboard_address=":0")
    try:
        X, y = make_data(n_samples, n_features, n_classes, chunk, seed)
        rng = np.random.default_rng(seed + 1)
        W, c = np.zeros((n_features, n_classes)), np.zeros(n_classes)
        sigma = noise_multiplier * max_norm
        losses = []
        for step in range(steps + 1):
            t0 = time.perf_counter()
            terms = step_terms(W, c, X, y, max_norm)
            loss, acc, dW, dc, clipped = compute(*terms, progress=progress, label=f"step {step:2d}: one pass")
            losses.append(float(loss))
            print(f"step {step:2d}  loss {loss:.4f}  accuracy {acc:.3f}  clipped {clipped:.1%}  "
                  f"({time.perf_counter() - t0:.2f} s for {n_samples} rows)")
            if step < steps:
                W = W - lr * (dW + rng.normal(scale=sigma, size=dW.shape)) / n_samples
                c = c - lr * (dc + rng.normal(scale=sigma, size=dc.shape)) / n_samples
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
        print(f"data {n_samples * n_features * 8 / 2**20:.0f} MiB, peak resident memory of this process {rss:.0f} MiB")
        return losses
    finally:
        if client is not None:
            client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2**22)
    parser.add_argument("--chunk", type=int, default=2**16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--max-norm", type=float, default=3.0)
    parser.add_argument("--noise-multiplier", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=0, help="worker processes (0: threaded scheduler)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    a = parser.parse_args()
    main(a.samples, chunk=a.chunk, steps=a.steps, max_norm=a.max_norm,
         noise_multiplier=a.noise_multiplier, workers=a.workers, progress=not a.no_progress)
