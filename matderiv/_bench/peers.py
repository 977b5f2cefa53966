"""Benchmark rows against the torch tools for the same quantities (`python -m matderiv bench`,
where torch is installed; not under --quick): torch.func vmap(grad), BackPACK (BatchL2Grad,
Variance) and Opacus (ghost clipping, or GradSampleModule, "GSM"); a tool that is not
installed leaves its columns out.

One thread throughout: torch.set_num_threads(1), matderiv's n_threads=1, and (with
threadpoolctl) one BLAS/OpenMP thread.  Every case is a layer under the loss
sum_b ||y_b - t_b||^2 / 2: a bias-free nn.Linear on sequences (B, T, n=m) or rows (B, n=m),
or an nn.Conv2d with its bias.  The matderiv column is its call on (X, G), G = dL/dy from
the plain backward.  A column "TOOL - fwd+bwd" is the tool's time (its forward and backward
and whatever it needs after, e.g. the norms of vmap's per-sample gradients) less the plain
forward+backward of the same layer: both columns are then the cost on top of an ordinary
training step.  The clipped sum replaces the gradient the step uses, so "... - fwd+bwd + dW"
also charges the tool the weight-gradient GEMM (and bias sum) of the plain backward, which a
pipeline with matderiv's clip_and_sum leaves out.  Before a row is timed, matderiv's result
and each tool's are checked to agree (`agree`).
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import warnings
from collections.abc import Callable, Iterator
from types import ModuleType

import numpy as np
import torch
from torch.func import grad, vmap

from .. import gradients, statistics
from ..layers import Conv, conv_patches
from .timing import Row, best_time, best_times_alternating, floor_time

F = torch.nn.functional
RATIO = ("ratio = matderiv's call / the tool's cost over a plain forward+backward (below 1: matderiv "
         "is cheaper); one thread for both")
#: Relative tolerance of the agreement check (torch and matderiv sum in different orders).
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}


def agree(label: str, ours: object, theirs: object, slack: float = 0.0) -> None:
    """Raise unless matderiv's result and the tool's agree: a row must not time a wrong answer
    (slack: a relative difference that the tool's own definition allows)."""
    a = np.asarray(ours)
    b = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    rtol = max(RTOL[np.dtype(a.dtype)], slack)
    scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
    if a.shape != b.shape or not np.allclose(a, b, rtol=rtol, atol=rtol * scale):
        worst = float(np.max(np.abs(a - b))) if a.shape == b.shape else float("nan")
        raise RuntimeError(f"{label}: matderiv and the peer disagree (shapes {a.shape} and {b.shape}, "
                           f"largest difference {worst:.3g}); not timing a wrong answer")


def optional(name: str) -> ModuleType | None:
    """The module, or None where that tool is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread, and numpy's BLAS and OpenMP too where threadpoolctl is installed."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    limits = optional("threadpoolctl")
    try:
        with limits.threadpool_limits(limits=1) if limits else contextlib.nullcontext():
            yield
    finally:
        torch.set_num_threads(previous)


def per_sample_loss(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """||y_b - t_b||^2 / 2 for each sample b (the first axis)."""
    return ((y - t) ** 2).flatten(1).sum(1) / 2


class Case:
    """A layer (nn.Linear without bias, or any module), its input x and target t, and the
    plain fwd+bwd; X and G (= y - t) are matderiv's inputs."""

    def __init__(self, layer: torch.nn.Module, x: torch.Tensor, rng: np.random.Generator) -> None:
        self.layer, self.x = layer, x
        with torch.no_grad():
            y = layer(x)
        self.t = torch.from_numpy(rng.standard_normal(tuple(y.shape)).astype(x.numpy().dtype))
        self.X, self.G = x.numpy(), (y - self.t).numpy()

    def fwd_bwd(self, module: torch.nn.Module | None = None) -> torch.nn.Module:
        module = self.layer if module is None else module
        module.zero_grad(set_to_none=True)
        per_sample_loss(module(self.x), self.t).sum().backward()
        return module


    def copy(self) -> torch.nn.Module:
        """A copy of the layer for a tool that hooks into it (the plain layer stays plain)."""
        return copy.deepcopy(self.layer)


def linear_case(rng: np.random.Generator, lead: tuple[int, ...], nm: int, dtype: type) -> Case:
    layer = torch.nn.Linear(nm, nm, bias=False, dtype=torch.float64 if dtype is np.float64 else torch.float32)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(rng.standard_normal((nm, nm)) / np.sqrt(nm)))
    return Case(layer, torch.from_numpy(rng.standard_normal(lead + (nm,)).astype(dtype)), rng)


def vmap_grads(case: Case) -> torch.Tensor:
    """Per-sample weight gradients (B, n, m) of the linear case by torch.func vmap(grad)."""
    def loss(w: torch.Tensor, xb: torch.Tensor, tb: torch.Tensor) -> torch.Tensor:
        return ((F.linear(xb, w) - tb) ** 2).sum() / 2

    return vmap(grad(loss), in_dims=(None, 0, 0))(case.layer.weight.detach(), case.x, case.t)


def backpack_run(case: Case, extension: str) -> Callable[[], torch.nn.Module] | None:
    """fwd+bwd of an extended copy under BackPACK's extension (None without BackPACK)."""
    bp = optional("backpack")
    if bp is None:
        return None
    module, ext = bp.extend(case.copy()), getattr(importlib.import_module("backpack.extensions"), extension)()

    def run() -> torch.nn.Module:
        with bp.backpack(ext):
            return case.fwd_bwd(module)

    return run


def extra(run: Callable[[], object], plain: Callable[[], object], repeat: int) -> float:
    """A tool's time on top of the plain forward+backward, the two timed in alternation
    (torch's float64 convolution varies by 20 % from call to call here)."""
    plain_s, run_s = best_times_alternating(plain, run, 2 * repeat)
    return run_s - plain_s


def sequence_rows(case: Case, shape: str, repeat: int) -> list[Row]:
    """Norms and dots of a sequence layer against vmap(grad) and BackPACK BatchL2Grad."""
    X, G, plain = case.X, case.G, case.fwd_bwd
    norms = gradients.per_sample_grad_norms(X, G, n_threads=1)
    agree("norms vs vmap(grad)", norms, vmap_grads(case).flatten(1).norm(dim=1))
    refs = {"vmap(grad) + norms - fwd+bwd": extra(lambda: vmap_grads(case).flatten(1).norm(dim=1), plain, repeat)}
    run = backpack_run(case, "BatchL2Grad")
    if run is not None:
        agree("norms vs BackPACK BatchL2Grad", norms, run().weight.batch_l2.sqrt())
        refs["BackPACK BatchL2Grad - fwd+bwd"] = extra(run, plain, repeat)
    rows = [Row(f"per_sample_grad_norms {shape}",
                best_time(lambda: gradients.per_sample_grad_norms(X, G, n_threads=1), repeat), None, refs)]

    def vmap_dots() -> torch.Tensor:
        P = vmap_grads(case).flatten(1)
        return P @ P.T

    agree("dots vs vmap(grad) P P^T", statistics.per_sample_grad_dots(X, G), vmap_dots())
    rows.append(Row(f"per_sample_grad_dots {shape}",
                    best_time(lambda: statistics.per_sample_grad_dots(X, G), repeat), None,
                    {"vmap(grad) + P P^T - fwd+bwd": extra(vmap_dots, plain, repeat)}))
    return rows


def dw_gemm(case: Case) -> Callable[[], torch.Tensor]:
    """The plain backward's weight-gradient GEMM of the linear case, G^T X over all rows."""
    G2 = torch.from_numpy(case.G).reshape(-1, case.G.shape[-1])
    X2 = case.x.reshape(-1, case.X.shape[-1])
    return lambda: G2.T @ X2


def ghost_clip(case: Case, max_norm: float) -> Callable[[], torch.Tensor] | None:
    """Opacus ghost clipping of a copy (its two backward passes; None without it)."""
    gs = optional("opacus.grad_sample")
    if gs is None or not hasattr(gs, "GradSampleModuleFastGradientClipping"):
        return None
    module = case.copy()
    gsm = gs.GradSampleModuleFastGradientClipping(module, max_grad_norm=max_norm, use_ghost_clipping=True,
                                                  loss_reduction="sum")

    def run() -> torch.Tensor:
        gsm.zero_grad(set_to_none=True)
        loss = per_sample_loss(gsm(case.x), case.t)
        loss.sum().backward(retain_graph=True)
        gsm.zero_grad(set_to_none=True)
        coef = gsm.get_clipping_coef()
        gsm.disable_hooks()
        (coef * loss).sum().backward()
        gsm.enable_hooks()
        return module.weight.grad

    return run


def grad_sample_clip(case: Case, max_norm: float) -> Callable[[], list[torch.Tensor]] | None:
    """Opacus GradSampleModule per-sample gradients of a copy, their norms and the clipped
    sums (clamp(max_norm / (norm + 1e-6), max=1), as Opacus clips); None without Opacus."""
    opacus = optional("opacus")
    if opacus is None:
        return None
    gsm = opacus.GradSampleModule(case.copy(), loss_reduction="sum")
    params = [p for p in gsm.parameters() if p.requires_grad]

    def run() -> list[torch.Tensor]:
        gsm.zero_grad(set_to_none=True)
        per_sample_loss(gsm(case.x), case.t).sum().backward()
        samples = [p.grad_sample for p in params]
        norms = torch.stack([s.flatten(1).norm(dim=1) for s in samples]).norm(dim=0)
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        return [torch.einsum("b,b...->...", coef, s) for s in samples]

    return run


def clip_refs(label: str, ours: list[np.ndarray], run: Callable[[], object] | None, dw: Callable[[], object],
              plain: Callable[[], object], max_norm: float, repeat: int) -> dict[str, float]:
    """Opacus's clipped-sum columns: its time over fwd+bwd, and with the dW it replaces.
    Its factor max_norm / (norm + 1e-6) is below min(1, max_norm / norm) by a relative
    1e-6 / norm < 1e-6 / max_norm for a clipped sample: the check allows twice that."""
    if run is None:
        return {}
    got = run()
    for a, b in zip(ours, got if isinstance(got, list) else [got]):
        agree(f"clip_and_sum vs {label}", a, b, slack=2e-6 / max_norm)
    over = extra(run, plain, repeat)
    return {f"{label} - fwd+bwd": over, f"{label} - fwd+bwd + dW": over + best_time(dw, repeat)}


def clip_row(case: Case, shape: str, repeat: int) -> Row:
    X, G = case.X, case.G
    max_norm = float(np.median(gradients.per_sample_grad_norms(X, G)))
    ours = gradients.clip_and_sum(X, G, max_norm, n_threads=1)[:1]
    run = ghost_clip(case, max_norm)
    label = "Opacus ghost clip"
    if run is None:
        run, label = grad_sample_clip(case, max_norm), "Opacus GSM clip"
    refs = clip_refs(label, ours, run, dw_gemm(case), case.fwd_bwd, max_norm, repeat)
    return Row(f"clip_and_sum {shape}",
               best_time(lambda: gradients.clip_and_sum(X, G, max_norm, n_threads=1), repeat), None, refs)


def dense_2d_rows(case: Case, shape: str, repeat: int) -> list[Row]:
    """2-D grad_variance and norms against BackPACK Variance and BatchL2Grad (ddof 0, as BackPACK)."""
    X, G, plain = case.X, case.G, case.fwd_bwd
    ours = {"grad_variance": lambda: statistics.grad_variance(X, G, ddof=0),
            "per_sample_grad_norms": lambda: gradients.per_sample_grad_norms(X, G, n_threads=1)}
    rows = []
    for name, extension, attribute in (("grad_variance", "Variance", "variance"),
                                       ("per_sample_grad_norms", "BatchL2Grad", "batch_l2")):
        fn, run, refs = ours[name], backpack_run(case, extension), {}
        if run is not None:
            theirs = getattr(run().weight, attribute)
            agree(f"{name} vs BackPACK {extension}", fn(), theirs.sqrt() if attribute == "batch_l2" else theirs)
            refs[f"BackPACK {extension} - fwd+bwd"] = extra(run, plain, repeat)
        rows.append(Row(f"{name} {shape}", best_time(fn, repeat), None, refs))
    return rows


def patches_row(rng: np.random.Generator, B: int, C: int, S: int, repeat: int) -> Row:
    """conv_patches (B, T, C k k) against torch's unfold (B, C k k, T), and unfold made (B, T, C k k)."""
    x = rng.standard_normal((B, C, S, S)).astype(np.float32)
    xt = torch.from_numpy(x)
    agree("conv_patches vs F.unfold", conv_patches(x, 3, padding=1, n_threads=1), F.unfold(xt, 3, padding=1).transpose(1, 2))
    refs = {"F.unfold (B, C k k, T)": best_time(lambda: F.unfold(xt, 3, padding=1), repeat),
            "F.unfold + transpose .contiguous()": best_time(
                lambda: F.unfold(xt, 3, padding=1).transpose(1, 2).contiguous(), repeat)}
    ours = best_time(lambda: conv_patches(x, 3, padding=1, n_threads=1), repeat)
    floor = floor_time(x.nbytes * 9, repeat)
    return Row(f"conv_patches B={B} C={C} {S}x{S} k=3 padding=1 float32", ours, floor, refs)


def conv_clip_row(rng: np.random.Generator, B: int, C: int, O: int, S: int, dtype: type, repeat: int) -> Row:
    """clip_and_sum of a Conv (with bias) against Opacus GradSampleModule on nn.Conv2d(C, O, 3, padding=1)."""
    layer = torch.nn.Conv2d(C, O, 3, padding=1, dtype=torch.float64 if dtype is np.float64 else torch.float32)
    case = Case(layer, torch.from_numpy(rng.standard_normal((B, C, S, S)).astype(dtype)), rng)
    X = Conv(case.X, 3, padding=1)
    max_norm = float(np.median(gradients.per_sample_grad_norms(X, case.G, bias=True)))
    ours = list(gradients.clip_and_sum(X, case.G, max_norm, bias=True, n_threads=1)[:2])
    Gt, w_shape = torch.from_numpy(case.G), tuple(layer.weight.shape)

    def dw() -> tuple[torch.Tensor, torch.Tensor]:
        return torch.nn.grad.conv2d_weight(case.x, w_shape, Gt, padding=1), Gt.sum((0, 2, 3))

    refs = clip_refs("Opacus GSM clip", ours, grad_sample_clip(case, max_norm), dw, case.fwd_bwd,
                     max_norm, repeat)
    ours_t = best_time(lambda: gradients.clip_and_sum(X, case.G, max_norm, bias=True, n_threads=1), repeat)
    return Row(f"clip_and_sum Conv B={B} C={C} {S}x{S} k=3 O={O} bias {np.dtype(dtype).name}", ours_t, None, refs)


def peer_rows(quick: bool) -> list[Row]:
    """Every peer row on one thread; quick=True: tiny sizes and one repeat (for the tests)."""
    rng = np.random.default_rng(0)
    if quick:
        r, (B, T, nm), dense, conv = 1, (4, 8, 16), ((16, 16), (32, 16)), (2, 3, 4, 8)
    else:
        r, (B, T, nm), dense, conv = 5, (64, 128, 256), ((512, 256), (4096, 512)), (64, 16, 32, 32)
    rows: list[Row] = []
    with one_thread(), warnings.catch_warnings():
        # BackPACK's and Opacus's module hooks on a layer whose input needs no gradient: harmless
        warnings.filterwarnings("ignore", "Full backward hook is firing", UserWarning)
        for dtype in (np.float32, np.float64):
            case, shape = linear_case(rng, (B, T), nm, dtype), f"seq B={B} T={T} n=m={nm} {np.dtype(dtype).name}"
            rows += sequence_rows(case, shape, r)
            rows.append(clip_row(case, shape, r))
        for rows_2d, width in dense:
            rows += dense_2d_rows(linear_case(rng, (rows_2d,), width, np.float32), f"2-D B={rows_2d} n=m={width} float32", r)
        Bc, C, O, S = conv
        rows.append(patches_row(rng, Bc, C, S, r))
        for dtype in (np.float32, np.float64):
            rows.append(conv_clip_row(rng, Bc, C, O, S, dtype, r))
    return rows
