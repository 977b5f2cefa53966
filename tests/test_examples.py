"""The examples run end to end and do what they claim (briefly: a few epochs)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str):
    if str(EXAMPLES) not in sys.path:  # as when run as a script: examples import each other
        sys.path.insert(0, str(EXAMPLES))
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


def test_data_attribution_finds_proponents_and_mislabeled_samples(capsys):
    attribution = _load("data_attribution")
    res = attribution.main(n_train=600, n_test=60, epochs=4, seed=0)
    assert res["accuracy"] > 0.8
    assert res["proponents_same_label"] > 0.8 > 3 * res["chance"]  # chance: 0.25
    assert res["self_influence_flipped"] > 4 * res["flip_rate"]  # mislabeled samples stand out
    assert res["opponents_flipped"] > 3 * res["flip_rate"]
    assert "proponents share the test sample's label" in capsys.readouterr().out


def test_tracin_scores_are_dots_of_materialized_gradients():
    """One checkpoint: the scores equal lr * <g_train, g_test> over both layers' weights
    and biases, with the per-sample gradients built by einsum."""
    attribution = _load("data_attribution")
    rng = np.random.default_rng(1)
    X, y, means = attribution.make_data(rng, 30, 5, 3)
    X2, y2, _ = attribution.make_data(rng, 7, 5, 3, means)
    params = attribution.init_params(rng, 5, 8, 3)
    params["c1"] = rng.standard_normal(8)
    got = attribution.tracin_scores([params], 0.5, X, y, X2, y2)
    want = np.zeros((30, 7))
    for (a, g, _, _), (a2, g2, _, _) in zip(attribution.layer_signals(params, X, y), attribution.layer_signals(params, X2, y2)):
        per, per2 = np.einsum("bi,bj->bij", a, g), np.einsum("bi,bj->bij", a2, g2)
        want += 0.5 * (np.einsum("aij,bij->ab", per, per2) + g @ g2.T)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        attribution.self_influence([params], 0.5, X, y), np.diag(attribution.tracin_scores([params], 0.5, X, y, X, y)),
        rtol=1e-12,
    )


def test_gauss_newton_matches_finite_differences_with_far_fewer_evaluations(capsys):
    gauss_newton = _load("gauss_newton")
    runs = gauss_newton.main(n_samples=200, hidden=4, n_in=8, n_out=2, seed=0)  # about 15 iterations
    (exact, _), (fd, _) = runs["matderiv"], runs["2-point"]
    assert exact.success and fd.success
    assert abs(exact.cost - fd.cost) <= 1e-6 * fd.cost
    n_params = exact.x.size
    assert gauss_newton.evaluations(fd, True, n_params) >= 10 * gauss_newton.evaluations(exact, False, n_params)
    out = capsys.readouterr().out
    assert "matderiv" in out and "2-point" in out and "fewer" in out


def test_gauss_newton_trace_holds_every_residual_evaluation(tmp_path):
    """fit(trace=) records the cost of each evaluation, Jacobian evaluations of 2-point
    included; the figure of both traces is saved."""
    gauss_newton = _load("gauss_newton")
    rng = np.random.default_rng(2)
    X, T, theta0 = gauss_newton.make_problem(rng, 50, 3, 2, 2, 0.05)
    traces = {}
    for name, exact in (("matderiv", True), ("2-point", False)):
        traces[name] = []
        res, _ = gauss_newton.fit(X, T, theta0, 2, exact, 1e-8, trace=traces[name])
        assert len(traces[name]) == gauss_newton.evaluations(res, not exact, theta0.size)
        assert min(traces[name]) == pytest.approx(res.cost, rel=1e-6)
    pytest.importorskip("matplotlib", reason="the figure needs the examples extra (matplotlib): pip install -e \".[examples]\"")
    fig = gauss_newton.draw(traces, theta0.size)
    assert [len(line.get_xdata()) for line in fig.axes[0].get_lines()] == [len(t) for t in traces.values()]
    gauss_newton.main(n_samples=50, hidden=2, n_in=3, verbose=False, figure=str(tmp_path / "fit.png"))
    assert (tmp_path / "fit.png").stat().st_size > 1000


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


def _dp_cnn_case(seed: int = 0, B: int = 5):
    dp_cnn = _load("dp_cnn")
    rng = np.random.default_rng(seed)
    params = dp_cnn.init_params(rng)
    params["b1"] = rng.standard_normal(params["b1"].shape) * 0.1
    x, y = rng.random((B, 1, 8, 8)), rng.integers(0, 10, size=B)
    return dp_cnn, rng, params, x, y


def test_dp_cnn_gradients_are_the_finite_difference_gradients():
    """No noise and a huge clipping norm: the private gradient is the gradient of the mean
    loss, checked entry by entry against central differences of the model's own loss."""
    dp_cnn, rng, params, x, y = _dp_cnn_case()
    grads = dp_cnn.private_gradients(params, x, y, 1e12, 0.0, len(y), rng)

    def loss(p):
        _, _, prob = dp_cnn.forward(p, x)
        return -np.mean(np.log(prob[np.arange(len(y)), y]))

    for name, value in params.items():
        numeric = np.empty_like(value)
        for i in np.ndindex(value.shape):
            old = value[i]
            value[i] = old + 1e-6
            up = loss(params)
            value[i] = old - 1e-6
            numeric[i] = (up - loss(params)) / 2e-6
            value[i] = old
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-8, err_msg=name)


def test_dp_cnn_clips_each_example_whole_gradient():
    """One example with a small clipping norm: its gradient (both layers) scaled to norm C."""
    dp_cnn, rng, params, x, y = _dp_cnn_case(seed=1, B=1)
    full = dp_cnn.private_gradients(params, x, y, 1e12, 0.0, 1, rng)
    norm = np.sqrt(sum(np.sum(g**2) for g in full.values()))
    clipped = dp_cnn.private_gradients(params, x, y, norm / 4, 0.0, 1, rng)
    for name in full:
        np.testing.assert_allclose(clipped[name], full[name] / 4, rtol=1e-10, atol=1e-15)


def test_dp_cnn_trains_and_accounts(tmp_path, capsys):
    """Two epochs on the digits: accuracy above chance, epsilon from the RDP accountant, a figure."""
    for module in ("sklearn", "dp_accounting", "matplotlib"):
        pytest.importorskip(module, reason=f"the example needs the examples extra ({module}): pip install -e \".[examples]\"")
    dp_cnn = _load("dp_cnn")
    history = dp_cnn.main(epochs=2, seed=0, figure=str(tmp_path / "curve.png"))
    assert len(history) == 2 and history[-1]["accuracy"] > 0.5
    assert 0 < history[0]["epsilon"] < history[1]["epsilon"] < 10
    assert (tmp_path / "curve.png").stat().st_size > 1000
    assert "test accuracy" in capsys.readouterr().out


def test_dask_examples_show_progress_unless_asked_not_to(capsys):
    """Each pass over the lazy data shows dask's progress bar after a label; progress=False
    (what their --no-progress passes) shows none."""
    pytest.importorskip("dask", reason="the dask examples need the dask extra: pip install -e \".[dask]\"")
    dp_sgd, tracin = _load("dask_dp_sgd"), _load("dask_tracin")
    dp_sgd.main(n_samples=2**12, chunk=2**10, steps=1, seed=0)
    out = capsys.readouterr().out
    assert out.count("% Completed") >= 2 and "step  0: one pass\n\r[" in out and "step  1: one pass\n\r[" in out
    tracin.main(n_samples=2**12, n_test=4, chunk=2**10, steps=2, seed=0)
    out = capsys.readouterr().out
    assert "training step 2/2\n\r[" in out and "TracIn scores: top proponents, self-influences\n\r[" in out
    assert out.count("\n\r[") == 4 and "100% Completed" in out  # a bar after each label: 2 steps, scores, labels
    dp_sgd.main(n_samples=2**12, chunk=2**10, steps=1, seed=0, progress=False)
    tracin.main(n_samples=2**12, n_test=4, chunk=2**10, steps=1, seed=0, progress=False)
    out = capsys.readouterr().out
    assert "Completed" not in out and "one pass" not in out and "training step" not in out
    assert "step  1  loss" in out and "TracIn of 4 test samples" in out


def test_dask_examples_progress_on_a_cluster(capsys):
    """Where a Client is the default scheduler, the bar is distributed's and the results
    are the computed values."""
    da = pytest.importorskip("dask.array", reason="the dask examples need the dask extra")
    distributed = pytest.importorskip("distributed", reason="the --workers runs need distributed (the dask extra)")
    dp_sgd = _load("dask_dp_sgd")
    x = da.arange(10.0, chunks=5)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0"):
        total, top = dp_sgd.compute(x.sum(), x.max(), label="a pass")
    assert (total, top) == (45.0, 9.0)
    out = capsys.readouterr().out
    assert out.startswith("a pass\n") and "100% Completed" in out
