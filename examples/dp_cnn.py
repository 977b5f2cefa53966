"""Differentially private training of a small CNN on scikit-learn's 8x8 digits, in numpy,
with matderiv doing the per-sample work of both layers.

The model: x (B, 1, 8, 8) -> conv 3x3, 8 channels, padding 1 -> ReLU -> 2x2 average pool
-> linear 128 -> 10 -> softmax.  DP-SGD (Abadi et al., 2016) clips every example's whole
gradient (both layers, weights and biases) to norm C and adds N(0, (sigma C)^2) noise:

    ||g_b||^2 = ||g_b^conv||^2 + ||g_b^linear||^2,   c_b = min(1, C / ||g_b||)
    update    = (sum_b c_b g_b + N(0, (sigma C)^2 I)) / L

A convolution is W applied to every patch, so its per-sample gradient is a sequence
layer's: md.per_sample_grad_norms(md.Conv(x, 3, padding=1), dL/dz) gives ||g_b^conv||
without materializing the (B, 8, 1, 3, 3) per-sample gradients, and the clipped sum is one
batch_grad with dL/dz scaled by c_b (c_b g_b = g_b of the scaled upstream gradient).
Lots are Poisson-sampled with rate q = L / N, and the privacy spent is computed by the RDP
accountant of Google's dp-accounting library.

    pip install "matderiv[examples]"
    python examples/dp_cnn.py --epochs 25 --figure dp_cnn.png
"""
from __future__ import annotations

import argparse
import math

import numpy as np

import matderiv as md

KERNEL, CHANNELS, CLASSES = 3, 8, 10


def load_digits(rng: np.random.Generator, test_share: float = 0.25):
    """scikit-learn's bundled 8x8 digits (no download), scaled to [0, 1], split at random."""
    from sklearn.datasets import load_digits as digits

    data = digits()
    x = (data.images / 16.0)[:, None]  # (N, 1, 8, 8)
    order = rng.permutation(len(x))
    cut = int(len(x) * (1 - test_share))
    train, test = order[:cut], order[cut:]
    return x[train], data.target[train], x[test], data.target[test]


def init_params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "W1": rng.standard_normal((CHANNELS, 1, KERNEL, KERNEL)) / KERNEL,
        "b1": np.zeros(CHANNELS),
        "W2": rng.standard_normal((CLASSES, CHANNELS * 16)) / math.sqrt(CHANNELS * 16),
        "b2": np.zeros(CLASSES),
    }


def forward(params: dict[str, np.ndarray], x: np.ndarray):
    """Pre-activations z (B, 8, 8, 8), pooled features h (B, 128) and probabilities (B, 10)."""
    U = md.conv_patches(x, KERNEL, padding=1)  # (B, 64, 9)
    z = (U @ params["W1"].reshape(CHANNELS, -1).T).transpose(0, 2, 1).reshape(len(x), CHANNELS, 8, 8)
    z += params["b1"][:, None, None]
    a = np.maximum(z, 0.0)
    h = a.reshape(len(x), CHANNELS, 4, 2, 4, 2).mean(axis=(3, 5)).reshape(len(x), -1)
    logits = h @ params["W2"].T + params["b2"]
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return z, h, p


def upstream(params: dict[str, np.ndarray], z: np.ndarray, p: np.ndarray, y: np.ndarray):
    """dL_b/dlogits (B, 10) and dL_b/dz (B, 8, 8, 8) of every example's own loss."""
    dlogits = p.copy()
    dlogits[np.arange(len(y)), y] -= 1.0
    dh = (dlogits @ params["W2"]).reshape(len(y), CHANNELS, 4, 1, 4, 1) / 4.0
    dz = np.broadcast_to(dh, (len(y), CHANNELS, 4, 2, 4, 2)).reshape(z.shape) * (z > 0)
    return dlogits, dz


def private_gradients(params, x, y, max_norm: float, sigma: float, lot: float, rng: np.random.Generator):
    """The DP-SGD update direction: clipped per-example gradients summed, noised, / lot."""
    z, h, p = forward(params, x)
    dlogits, dz = upstream(params, z, p, y)
    conv = md.Conv(x, KERNEL, padding=1)
    norms = np.hypot(md.per_sample_grad_norms(conv, dz, bias=True), md.per_sample_grad_norms(h, dlogits, bias=True))
    with np.errstate(divide="ignore"):
        c = np.minimum(1.0, max_norm / norms)
    grads = {}
    grads["W1"], grads["b1"] = md.batch_grad(conv, dz * c[:, None, None, None], bias=True)
    grads["W2"], grads["b2"] = md.batch_grad(h, dlogits * c[:, None], bias=True)
    return {k: (g + rng.normal(scale=sigma * max_norm, size=g.shape)) / lot for k, g in grads.items()}


def evaluate(params, x, y) -> tuple[float, float]:
    """Mean cross-entropy and accuracy."""
    _, _, p = forward(params, x)
    return float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12))), float(np.mean(p.argmax(axis=1) == y))


def epsilon(q: float, sigma: float, steps: int, delta: float) -> float:
    """The privacy spent: RDP accountant over `steps` Poisson-sampled Gaussian mechanisms."""
    import dp_accounting

    accountant = dp_accounting.rdp.RdpAccountant()
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
    accountant.compose(event, steps)
    return float(accountant.get_epsilon(delta))


def main(epochs: int = 25, lot: int = 64, lr: float = 1.0, max_norm: float = 1.0, sigma: float = 1.0,
         seed: int = 0, figure: str | None = None) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    x, y, x_test, y_test = load_digits(rng)
    params = init_params(rng)
    q, delta = lot / len(x), 1.0 / len(x) ** 1.1
    steps_per_epoch = int(round(1 / q))
    history = []
    for epoch in range(1, epochs + 1):
        for _ in range(steps_per_epoch):
            take = rng.random(len(x)) < q  # Poisson sampling: each example with probability q
            grads = private_gradients(params, x[take], y[take], max_norm, sigma, lot, rng)
            for k in params:
                params[k] -= lr * grads[k]
        loss, acc = evaluate(params, x_test, y_test)
        eps = epsilon(q, sigma, epoch * steps_per_epoch, delta)
        history.append({"epoch": epoch, "loss": loss, "accuracy": acc, "epsilon": eps})
        print(f"epoch {epoch:2d}  test loss {loss:.3f}  test accuracy {acc:.3f}  epsilon {eps:.2f} (delta {delta:.1e})")
    if figure:
        plot(history, figure)
    return history


def plot(history: list[dict[str, float]], path: str) -> None:
    """Test accuracy and epsilon against the epoch, saved to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = draw(history)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"saved {path}")


def draw(history: list[dict[str, float]]):
    """The training curve as a matplotlib figure: test accuracy and epsilon against the epoch."""
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, left = plt.subplots(figsize=(6, 3.5))
    left.plot(epochs, [h["accuracy"] for h in history], "o-", color="tab:blue")
    left.set_xlabel("epoch")
    left.set_ylabel("test accuracy", color="tab:blue")
    right = left.twinx()
    right.plot(epochs, [h["epsilon"] for h in history], "s--", color="tab:red")
    right.set_ylabel("epsilon (RDP accountant)", color="tab:red")
    left.set_title("DP-SGD CNN on 8x8 digits (matderiv per-sample clipping)")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--lot", type=int, default=64, help="expected examples per step (Poisson sampling)")
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--max-norm", type=float, default=1.0)
    parser.add_argument("--noise-multiplier", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default="dp_cnn.png", help="where to save the training curve ('' for none)")
    args = parser.parse_args()
    main(args.epochs, args.lot, args.lr, args.max_norm, args.noise_multiplier, args.seed, args.figure or None)
