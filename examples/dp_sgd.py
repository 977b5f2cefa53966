"""Differentially private SGD (DP-SGD) for a one-hidden-layer MLP, with matderiv doing
the gradient work.

DP-SGD (Abadi et al., 2016) replaces the mini-batch gradient by

    (sum_b clip(g_b, C) + N(0, (sigma C)^2 I)) / batch_size,   clip(g, C) = min(1, C/||g||) g

so that no single example can move the model by more than C before the noise.  The
per-example gradients g_b of a dense layer z = x @ W + c are outer(x_b, dz_b), and
md.clip_and_sum clips and sums them without ever materializing them: one norms pass
plus one GEMM, the same cost as an ordinary batch gradient.

The model is x -> relu(x @ W1 + c1) -> softmax(h @ W2 + c2), trained on a synthetic
Gaussian-blob classification problem.  Clipping is per layer (McMahan et al., 2018):
each of the L = 2 layers is clipped to C / sqrt(L), so every example's whole gradient
has norm at most C and the Gaussian noise of scale sigma * C covers it.

    python examples/dp_sgd.py --epochs 10 --noise-multiplier 1.0 --max-norm 1.0
"""
from __future__ import annotations

import argparse
import math

import numpy as np

import matderiv as md


def make_data(rng: np.random.Generator, n_samples: int, n_features: int, n_classes: int):
    """Gaussian blobs: class k is centred on a random mean, unit noise around it."""
    means = rng.normal(scale=0.5, size=(n_classes, n_features))
    y = rng.integers(0, n_classes, size=n_samples)
    X = means[y] + rng.standard_normal((n_samples, n_features))
    return X, y


def forward(params: dict[str, np.ndarray], X: np.ndarray):
    """Hidden activations, pre-activations and class probabilities."""
    z1 = X @ params["W1"] + params["c1"]
    h = np.maximum(z1, 0.0)
    logits = h @ params["W2"] + params["c2"]
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return z1, h, p


def evaluate(params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy."""
    _, _, p = forward(params, X)
    loss = -np.mean(np.log(p[np.arange(len(y)), y] + 1e-12))
    return float(loss), float(np.mean(p.argmax(axis=1) == y))


def private_gradients(
    params: dict[str, np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    max_norm: float,
    noise_multiplier: float,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """The DP-SGD gradient of the mean cross-entropy for one batch."""
    batch = len(y)
    z1, h, p = forward(params, X)
    # Upstream gradients of each example's own loss (not divided by the batch size):
    dz2 = p.copy()
    dz2[np.arange(batch), y] -= 1.0  # d loss_b / d logits_b
    dz1 = (dz2 @ params["W2"].T) * (z1 > 0)  # d loss_b / d z1_b
    clip = max_norm / math.sqrt(2)  # per-layer share of the clipping norm
    grads = {}
    for W, c, inputs, upstream in (("W1", "c1", X, dz1), ("W2", "c2", h, dz2)):
        # Row convention z = x @ W + c: g_b = outer(x_b, dz_b), clipped with its bias part.
        dW, dc, _ = md.clip_and_sum(inputs, upstream, clip, convention="xW", bias=True)
        sigma = noise_multiplier * max_norm
        grads[W] = (dW + rng.normal(scale=sigma, size=dW.shape)) / batch
        grads[c] = (dc + rng.normal(scale=sigma, size=dc.shape)) / batch
    return grads


def main(
    epochs: int = 10,
    seed: int = 0,
    *,
    n_samples: int = 4000,
    n_features: int = 20,
    n_classes: int = 4,
    hidden: int = 32,
    batch_size: int = 128,
    lr: float = 0.3,
    max_norm: float = 1.0,
    noise_multiplier: float = 1.0,
    verbose: bool = True,
) -> list[float]:
    """Train with DP-SGD; return the training loss before training and after each epoch
    (epochs + 1 values)."""
    rng = np.random.default_rng(seed)
    X, y = make_data(rng, n_samples, n_features, n_classes)
    params = {
        "W1": rng.standard_normal((n_features, hidden)) * math.sqrt(2.0 / n_features),
        "c1": np.zeros(hidden),
        "W2": rng.standard_normal((hidden, n_classes)) * math.sqrt(1.0 / hidden),
        "c2": np.zeros(n_classes),
    }
    loss, acc = evaluate(params, X, y)
    losses = [loss]
    if verbose:
        print(f"epoch  0  loss {loss:.4f}  accuracy {acc:.3f}")
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n_samples)
        for start in range(0, n_samples, batch_size):
            idx = order[start : start + batch_size]
            grads = private_gradients(params, X[idx], y[idx], max_norm, noise_multiplier, rng)
            for name, g in grads.items():
                params[name] -= lr * g
        loss, acc = evaluate(params, X, y)
        losses.append(loss)
        if verbose:
            print(f"epoch {epoch:2d}  loss {loss:.4f}  accuracy {acc:.3f}")
    return losses


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.3)
    parser.add_argument("--max-norm", type=float, default=1.0, help="clipping norm C")
    parser.add_argument("--noise-multiplier", type=float, default=1.0, help="sigma: noise std is sigma * C")
    args = parser.parse_args()
    main(
        args.epochs,
        args.seed,
        n_samples=args.samples,
        batch_size=args.batch_size,
        lr=args.lr,
        max_norm=args.max_norm,
        noise_multiplier=args.noise_multiplier,
    )
