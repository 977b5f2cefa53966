"""Data attribution with TracIn: which training samples most influence a test prediction?

TracIn (Pruthi et al., 2020) scores a training sample z against a test sample z' by
summing, over checkpoints of training, the learning rate times the inner product of
their loss gradients:

    TracIn(z, z') = sum_k lr * <grad L(w_k, z), grad L(w_k, z')>

Large positive scores are "proponents" (training samples whose gradient steps lowered
the test loss), negative ones "opponents"; a sample's score against itself (its
self-influence) is large for mislabeled or atypical samples.  For a dense layer
z = x @ W + c the per-sample gradients are outer(x, dz), and md.per_sample_grad_dots
gives the whole (n_train, n_test) matrix of inner products from two small GEMMs per
layer, without ever materializing a per-sample gradient; self-influence is
md.per_sample_grad_norms squared (the diagonal of the same matrix).

The model, x -> relu(x @ W1 + c1) -> softmax(h @ W2 + c2) (examples/dp_sgd.py), is trained with minibatch
SGD on Gaussian blobs, every gradient from md.batch_grad; some training labels are
flipped so that self-influence has something to find.

    python examples/data_attribution.py --n-train 2000 --epochs 8 --flip 0.1
"""
from __future__ import annotations

import argparse

import numpy as np
from dp_sgd import forward  # the same two-layer model as the DP-SGD example next to this one

import matderiv as md


def make_data(rng: np.random.Generator, n_samples: int, n_features: int, n_classes: int, means=None):
    """Gaussian blobs around random class means (unit noise); returns X, y, means."""
    if means is None:
        means = rng.normal(scale=1.2, size=(n_classes, n_features))
    y = rng.integers(0, n_classes, size=n_samples)
    return means[y] + rng.standard_normal((n_samples, n_features)), y, means


def init_params(rng: np.random.Generator, n_features: int, n_hidden: int, n_classes: int) -> dict[str, np.ndarray]:
    return {
        "W1": rng.standard_normal((n_features, n_hidden)) / np.sqrt(n_features),
        "c1": np.zeros(n_hidden),
        "W2": rng.standard_normal((n_hidden, n_classes)) / np.sqrt(n_hidden),
        "c2": np.zeros(n_classes),
    }


def layer_signals(params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray):
    """Per layer, the (inputs, output gradients) pair whose per-sample outer products are
    the per-sample gradients of the cross-entropy of each sample."""
    z1, h, p = forward(params, X)
    dz2 = p.copy()
    dz2[np.arange(len(y)), y] -= 1.0
    dz1 = (dz2 @ params["W2"].T) * (z1 > 0)
    return [(X, dz1, "W1", "c1"), (h, dz2, "W2", "c2")]


def train(params, X, y, *, epochs: int, lr: float, batch: int, rng: np.random.Generator):
    """Minibatch SGD; returns the checkpoints (a copy of the parameters after each epoch)."""
    checkpoints = []
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for lo in range(0, len(y), batch):
            idx = order[lo : lo + batch]
            for a, g, w, c in layer_signals(params, X[idx], y[idx]):
                dW, dc = md.batch_grad(a, g, convention="xW", reduce="mean", bias=True)
                params[w] -= lr * dW
                params[c] -= lr * dc
        checkpoints.append({k: v.copy() for k, v in params.items()})
    return checkpoints


def tracin_scores(checkpoints, lr: float, X_train, y_train, X_test, y_test) -> np.ndarray:
    """(n_train, n_test) TracIn scores: sum over checkpoints and layers of
    lr * <g_train, g_test>, weights and biases together."""
    scores = np.zeros((len(y_train), len(y_test)))
    for params in checkpoints:
        train_layers = layer_signals(params, X_train, y_train)
        test_layers = layer_signals(params, X_test, y_test)
        for (a, g, _, _), (a2, g2, _, _) in zip(train_layers, test_layers):
            scores += lr * md.per_sample_grad_dots(a, g, a2, g2, bias=True)
    return scores


def self_influence(checkpoints, lr: float, X, y) -> np.ndarray:
    """TracIn(z, z) for every training sample: lr * ||g||^2 summed over checkpoints and layers."""
    total = np.zeros(len(y))
    for params in checkpoints:
        for a, g, _, _ in layer_signals(params, X, y):
            total += lr * md.per_sample_grad_norms(a, g, bias=True) ** 2
    return total


def main(
    *, n_train: int = 2000, n_test: int = 200, n_features: int = 10, n_classes: int = 4, n_hidden: int = 32,
    epochs: int = 8, lr: float = 0.1, batch: int = 64, flip: float = 0.1, top: int = 10, seed: int = 0,
) -> dict[str, float]:
    """Train, score, and report how well the scores explain the model; returns the metrics."""
    rng = np.random.default_rng(seed)
    X, y_true, means = make_data(rng, n_train, n_features, n_classes)
    flipped = rng.random(n_train) < flip
    y = np.where(flipped, (y_true + rng.integers(1, n_classes, n_train)) % n_classes, y_true)
    X_test, y_test, _ = make_data(rng, n_test, n_features, n_classes, means)

    params = init_params(rng, n_features, n_hidden, n_classes)
    checkpoints = train(params, X, y, epochs=epochs, lr=lr, batch=batch, rng=rng)
    accuracy = float(np.mean(forward(params, X_test)[2].argmax(axis=1) == y_test))

    scores = tracin_scores(checkpoints, lr, X, y, X_test, y_test)
    proponents = np.argsort(-scores, axis=0)[:top]  # (top, n_test): most helpful training samples
    opponents = np.argsort(scores, axis=0)[:top]
    same_label = float(np.mean(y[proponents] == y_test[None, :]))
    opponents_flipped = float(np.mean(flipped[opponents]))

    influence = self_influence(checkpoints, lr, X, y)
    k = max(1, int(round(flip * n_train)))
    caught = float(np.mean(flipped[np.argsort(-influence)[:k]]))

    print(f"trained {epochs} epochs on {n_train} samples ({flipped.sum()} labels flipped): test accuracy {accuracy:.3f}")
    print(f"top-{top} proponents share the test sample's label: {same_label:.3f} (chance {1 / n_classes:.3f})")
    print(f"top-{top} opponents that are mislabeled: {opponents_flipped:.3f} (base rate {flipped.mean():.3f})")
    print(f"the {k} highest self-influences that are mislabeled: {caught:.3f} (base rate {flipped.mean():.3f})")
    return {
        "accuracy": accuracy,
        "proponents_same_label": same_label,
        "opponents_flipped": opponents_flipped,
        "self_influence_flipped": caught,
        "flip_rate": float(flipped.mean()),
        "chance": 1 / n_classes,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--flip", type=float, default=0.1, help="fraction of training labels flipped")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(n_train=args.n_train, n_test=args.n_test, epochs=args.epochs, lr=args.lr, flip=args.flip, seed=args.seed)
