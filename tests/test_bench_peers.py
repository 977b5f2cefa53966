"""The peers bench area (`python -m matderiv bench` against torch.func, BackPACK and Opacus):
where it is listed, its skip lines, its agreement check, and its rows at tiny sizes (torch
only; no timing is asserted)."""
from __future__ import annotations

import numpy as np
import pytest

from matderiv import _bench
from matderiv._bench import conv_jacobian, embedding, gradients, jacobian, kronecker, layers, pipeline, statistics

TORCH_REASON = "torch is optional (never a test dependency): the peers bench area runs where torch is installed"
AREAS = [(jacobian, "jacobian_rows"), (kronecker, "kronecker_rows"), (conv_jacobian, "conv_jacobian_rows"),
         (gradients, "gradient_rows"), (statistics, "statistics_rows"), (pipeline, "pipeline_rows"),
         (layers, "layer_rows"), (embedding, "embedding_rows")]


@pytest.mark.parametrize("quick", [False, True])
def test_peers_is_listed_only_with_torch_and_not_under_quick(monkeypatch, quick):
    for module, name in AREAS:
        monkeypatch.setattr(module, name, lambda q: [])
    try:
        from matderiv._bench import dask as dask_area
    except ImportError:  # no dask extra: no dask area
        pass
    else:
        monkeypatch.setattr(dask_area, "dask_rows", lambda q: [])
    if _bench.have_torch():
        from matderiv._bench import peers

        monkeypatch.setattr(peers, "peer_rows", lambda q: [])
    names = [section.area for section in _bench.sections(quick)]
    assert ("peers" in names) == (_bench.have_torch() and not quick)
    assert names[:8] == ["jacobian", "kronecker", "conv_jacobian", "gradients", "statistics", "pipeline", "layers", "embedding"]


def test_skip_lines(monkeypatch):
    assert _bench.skipped(True) == [
        "peers: left out of --quick (full-size layers against torch.func, BackPACK and Opacus); "
        "`python -m matderiv bench` runs it where torch is installed"]
    monkeypatch.setattr(_bench, "have_torch", lambda: False)
    assert _bench.skipped(False) == [
        "peers: skipped, torch is not installed (the comparisons with torch.func, BackPACK and Opacus need it)"]
    monkeypatch.setattr(_bench, "have_torch", lambda: True)
    assert _bench.skipped(False) == []


def test_agree_refuses_a_wrong_answer():
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    from matderiv._bench.peers import agree

    a = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    agree("same", a, torch.tensor(a * (1 + 5e-5)))
    with pytest.raises(RuntimeError, match=r"off by one: matderiv and the peer disagree \(shapes \(3,\) and \(3,\), "
                                           r"largest difference 1\); not timing a wrong answer"):
        agree("off by one", a, torch.tensor(a + np.float32([0, 0, 1])))
    with pytest.raises(RuntimeError, match=r"shape: .*shapes \(3,\) and \(1, 3\), largest difference nan"):
        agree("shape", a, a[None])
    with pytest.raises(RuntimeError, match="slack"):
        agree("slack", a.astype(np.float64), a * (1 + 1e-6))
    agree("slack", a.astype(np.float64), a * (1 + 1e-6), slack=2e-6)


def test_peer_rows_at_tiny_sizes():
    pytest.importorskip("torch", reason=TORCH_REASON)
    from matderiv._bench import peers

    rows = peers.peer_rows(True)
    cases = [row.case for row in rows]
    assert len(rows) == 13 and len(set(cases)) == 13
    assert all(row.ours > 0 and all(np.isfinite(t) for t in row.refs.values()) for row in rows)
    have_backpack, have_opacus = peers.optional("backpack") is not None, peers.optional("opacus") is not None
    for row in rows:
        refs = set(row.refs)
        if row.case.startswith(("per_sample_grad_norms seq", "per_sample_grad_dots seq")):
            assert any(r.startswith("vmap(grad)") for r in refs)
        if row.case.startswith(("per_sample_grad_norms", "grad_variance")):
            assert any(r.startswith("BackPACK") for r in refs) == have_backpack
        if row.case.startswith("clip_and_sum"):
            assert len(refs) == (2 if have_opacus else 0) and all(r.startswith("Opacus") for r in refs)
        if row.case.startswith("conv_patches"):
            assert refs == {"F.unfold (B, C k k, T)", "F.unfold + transpose .contiguous()"} and row.floor > 0
    assert sum(case.startswith("clip_and_sum Conv") for case in cases) == 2


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_clip_row_falls_back_to_grad_sample_module_without_ghost_clipping(monkeypatch):
    pytest.importorskip("torch", reason=TORCH_REASON)
    pytest.importorskip("opacus", reason="Opacus is optional: its columns are left out where it is not installed")
    from matderiv._bench import peers

    monkeypatch.setattr(peers, "ghost_clip", lambda case, max_norm: None)  # an Opacus without it
    row = peers.clip_row(peers.linear_case(np.random.default_rng(0), (4, 8), 16, np.float64), "tiny", 1)
    assert row.case == "clip_and_sum tiny" and set(row.refs) == {"Opacus GSM clip - fwd+bwd", "Opacus GSM clip - fwd+bwd + dW"}
