"""The examples run end to end and do what they claim (briefly: a few epochs)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dp_sgd_loss_falls(capsys):
    dp_sgd = _load("dp_sgd")
    losses = dp_sgd.main(epochs=3, seed=0, n_samples=1500)
    assert len(losses) == 4 and np.isfinite(losses).all()
    assert losses[-1] < 0.7 * losses[0]  # from ~ln(4) = 1.39 + init noise to well below it
    out = capsys.readouterr().out
    assert "epoch  3" in out and "accuracy" in out


def test_dp_sgd_gradients_are_clipped_sums_plus_noise():
    """With no noise and a huge clipping norm, the private gradient is the plain mean gradient."""
    dp_sgd = _load("dp_sgd")
    rng = np.random.default_rng(0)
    X, y = dp_sgd.make_data(rng, 64, 5, 3)
    params = {
        "W1": rng.standard_normal((5, 7)),
        "c1": np.zeros(7),
        "W2": rng.standard_normal((7, 3)),
        "c2": np.zeros(3),
    }
    grads = dp_sgd.private_gradients(params, X, y, 1e12, 0.0, rng)
    z1, h, p = dp_sgd.forward(params, X)
    dz2 = p.copy()
    dz2[np.arange(64), y] -= 1
    dz1 = (dz2 @ params["W2"].T) * (z1 > 0)
    np.testing.assert_allclose(grads["W2"], h.T @ dz2 / 64, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grads["W1"], X.T @ dz1 / 64, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grads["c2"], dz2.mean(axis=0), rtol=1e-12, atol=1e-14)
