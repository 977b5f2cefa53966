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


def test_gauss_newton_matches_finite_differences_with_far_fewer_evaluations(capsys):
    gauss_newton = _load("gauss_newton")
    runs = gauss_newton.main(n_samples=120, hidden=5, n_in=3, n_out=2, seed=0)  # about 100 iterations
    (exact, _), (fd, _) = runs["matderiv"], runs["2-point"]
    assert exact.success and fd.success
    assert abs(exact.cost - fd.cost) <= 1e-6 * fd.cost
    n_params = exact.x.size
    assert gauss_newton.evaluations(fd, True, n_params) >= 10 * gauss_newton.evaluations(exact, False, n_params)
    out = capsys.readouterr().out
    assert "matderiv" in out and "2-point" in out and "fewer" in out


def test_gauss_newton_jacobian_is_the_finite_difference_jacobian():
    """The stacked operator equals the residuals' Jacobian column by column."""
    import matderiv as md

    gauss_newton = _load("gauss_newton")
    rng = np.random.default_rng(1)
    n_in, hidden, n_out = 3, 4, 2
    X, T, theta = gauss_newton.make_problem(rng, 7, n_in, hidden, n_out, 0.1)

    def residuals(th):
        return gauss_newton.forward(gauss_newton.unpack(th, n_in, hidden, n_out), X)[1] - T

    op = gauss_newton.jacobian(gauss_newton.unpack(theta, n_in, hidden, n_out), X)
    dense = op.matmat(np.eye(theta.size))
    numeric = md.numerical_jacobian(lambda th: residuals(th[0]).ravel(), theta[None, :])[:, 0, :]
    np.testing.assert_allclose(dense, numeric, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(op.rmatmat(np.eye(op.shape[0])), dense.T, rtol=1e-12, atol=1e-14)
