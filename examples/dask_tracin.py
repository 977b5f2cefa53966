"""TracIn data attribution against a training set that never exists in memory: 2^22 rows
generated lazily by dask.array.random (examples/dask_dp_sgd.py), a small test batch in
numpy, and matderiv.dask for the (n_train, n_test) gradient dot products.

The model is softmax regression z = x @ W + c, trained by full-batch gradient descent
(each step one pass: md.batch_grad of dask arrays).  Some training labels are flipped.
TracIn (Pruthi et al., 2020) scores training sample z against test sample z' by

    TracIn(z, z') = sum_k lr * <grad L(w_k, z), grad L(w_k, z')>     over checkpoints w_k

    scores += lr * md.per_sample_grad_dots(X, G_k, X_test, G_test_k, bias=True)

a lazy (n_train, n_test) array chunked like X along rows; only its top entries per test
sample (da.argtopk, a tree reduction) and the self-influences lr * ||g||^2 are computed,
so the peak memory does not grow with the training set (about 0.6 GB resident for
2^18 ... 2^20 rows on the threaded scheduler).  Each pass shows its progress (dask's
progress bar; --no-progress: none).

    python examples/dask_tracin.py --samples 4194304 --test 64 --workers 2
"""
from __future__ import annotations

import argparse
import contextlib
import time

import dask
import dask.array as da
import numpy as np
from dask_dp_sgd import compute, make_data  # the lazy training set and the progress bars of the DP example

import matderiv as md


def flip_labels(y: da.Array, n_classes: int, rate: float, seed: int) -> tuple[da.Array, da.Array]:
    """y with a fraction `rate` of labels moved to another class (lazily); the flip mask."""
    rng = da.random.default_rng(seed)
    flipped = rng.random(y.shape, chunks=y.chunks) < rate
    shift = rng.integers(1, n_classes, size=y.shape, chunks=y.chunks)
    return da.where(flipped, (y + shift) % n_classes, y), flipped


def output_grads(W: np.ndarray, c: np.ndarray, X, y):
    """d loss_b / d z_b = softmax(z_b) - onehot(y_b) for every sample (dask or numpy)."""
    z = X @ W + c
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p = p / p.sum(axis=1, keepdims=True)
    return p - (y[:, None] == np.arange(W.shape[1])[None, :])


def train(X: da.Array, y: da.Array, n_classes: int, steps: int, lr: float, progress: bool = False):
    """Full-batch gradient descent from zeros (a progress bar for each step where
    `progress`); the checkpoints (W, c) after each step."""
    W, c = np.zeros((X.shape[1], n_classes)), np.zeros(n_classes)
    checkpoints = []
    for step in range(steps):
        dW, dc = compute(*md.batch_grad(X, output_grads(W, c, X, y), convention="xW", reduce="mean", bias=True),
                         progress=progress, label=f"training step {step + 1}/{steps}")
        W, c = W - lr * dW, c - lr * dc
        checkpoints.append((W, c))
    return checkpoints


def tracin_terms(checkpoints, lr: float, X: da.Array, y: da.Array, X_test: np.ndarray, y_test: np.ndarray):
    """The lazy (n_train, n_test) TracIn scores and (n_train,) self-influences."""
    scores, influence = 0.0, 0.0
    for W, c in checkpoints:
        G, G_test = output_grads(W, c, X, y), output_grads(W, c, X_test, y_test)
        scores = scores + lr * md.per_sample_grad_dots(X, G, X_test, G_test, bias=True)
        influence = influence + lr * md.per_sample_grad_norms(X, G, bias=True) ** 2
    return scores, influence


def _scheduler(workers: int):
    """A client of `workers` worker processes while in use (dask's default scheduler
    then), or the threaded scheduler for 0."""
    if not workers:
        return contextlib.nullcontext()
    from dask.distributed import Client

    return Client(n_workers=workers, threads_per_worker=1, dashboard_address=":0")


def main(
    n_samples: int = 2**22, n_test: int = 64, n_features: int = 32, n_classes: int = 4, chunk: int = 2**16,
    steps: int = 4, lr: float = 2.0, flip: float = 0.05, top: int = 10, seed: int = 0, workers: int = 0,
    progress: bool = True,
) -> dict[str, float]:
    """Train, score, and report how well the scores explain the model (a progress bar for
    each pass over the data where `progress`); returns the metrics."""
    with _scheduler(workers):
        X_all, y_all = make_data(n_samples + n_test, n_features, n_classes, chunk, seed)  # one hidden model
        X, (X_test, y_test) = X_all[:n_samples], dask.compute(X_all[n_samples:], y_all[n_samples:])  # one chunk
        y, flipped = flip_labels(y_all[:n_samples], n_classes, flip, seed + 1)
        t0 = time.perf_counter()
        checkpoints = train(X, y, n_classes, steps, lr, progress)
        scores, influence = tracin_terms(checkpoints, lr, X, y, X_test, y_test)
        k = max(1, int(round(flip * n_samples)))
        proponents = da.argtopk(scores, top, axis=0)  # (top, n_test), largest first
        suspects = da.argtopk(influence, k)
        proponents, suspects, flip_rate = compute(proponents, suspects, flipped.mean(), progress=progress,
                                                  label="TracIn scores: top proponents, self-influences")
        y_prop, caught = compute(y[proponents.ravel()], flipped[np.sort(suspects)].mean(), progress=progress,
                                 label="their labels")
        same_label = float(np.mean(y_prop.reshape(proponents.shape) == y_test[None, :]))
        print(f"{steps} steps on {n_samples} rows, TracIn of {n_test} test samples: {time.perf_counter() - t0:.1f} s")
        print(f"top-{top} proponents share the test sample's label: {same_label:.3f} (chance {1 / n_classes:.3f})")
        print(f"the {k} highest self-influences that are mislabeled: {caught:.3f} (base rate {flip_rate:.3f})")
        return {"proponents_same_label": same_label, "chance": 1 / n_classes,
                "self_influence_flipped": float(caught), "flip_rate": float(flip_rate)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2**22)
    parser.add_argument("--test", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=2**16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--workers", type=int, default=0, help="worker processes (0: threaded scheduler)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    a = parser.parse_args()
    main(a.samples, a.test, chunk=a.chunk, steps=a.steps, workers=a.workers, progress=not a.no_progress)
