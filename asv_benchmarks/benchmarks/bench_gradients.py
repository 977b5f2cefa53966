"""asv benchmarks for matderiv.gradients: per_sample_grads, batch_grad,
per_sample_grad_norms and clip_and_sum, on 2-D (B, m) and sequence (B, T, m) inputs.

Sizes are modest (the reference machine has 2 cores); every `time_*` has a `peakmem_*`
twin so that a regression in either shows up.
"""
import numpy as np

import matderiv as md

PARAMS = ([2, 3], ["float32", "float64"])
PARAM_NAMES = ["ndim", "dtype"]


def make_data(ndim, dtype, B, T, n, m):
    rng = np.random.default_rng(0)
    lead = (B,) if ndim == 2 else (B, T)
    X = rng.standard_normal(lead + (m,)).astype(dtype)
    G = rng.standard_normal(lead + (n,)).astype(dtype)
    return X, G


def short_or_long(ndim, dtype, T, B2):
    """2-D: B2 samples, n=m=256 (only T=8 runs: T applies to 3-D inputs); 3-D: B=32,
    n=m=128 with sequences of T steps."""
    if ndim == 2 and T != 8:
        raise NotImplementedError("T applies to 3-D inputs only")
    return make_data(2, dtype, B2, T, 256, 256) if ndim == 2 else make_data(3, dtype, 32, T, 128, 128)


class PerSampleGrads:
    """(B, n, m) per-sample gradients: 2-D B=256, n=m=128 (32 MiB in float64);
    3-D B=32, T=64, n=m=128."""

    params = PARAMS
    param_names = PARAM_NAMES

    def setup(self, ndim, dtype):
        B = 256 if ndim == 2 else 32
        self.X, self.G = make_data(ndim, dtype, B, 64, 128, 128)
        self.out = np.zeros((B, 128, 128), dtype=dtype)

    def time_per_sample_grads(self, ndim, dtype):
        md.per_sample_grads(self.X, self.G)

    def peakmem_per_sample_grads(self, ndim, dtype):
        md.per_sample_grads(self.X, self.G)

    def time_per_sample_grads_out(self, ndim, dtype):
        md.per_sample_grads(self.X, self.G, out=self.out)

    def peakmem_per_sample_grads_out(self, ndim, dtype):
        md.per_sample_grads(self.X, self.G, out=self.out)

    def time_per_sample_grads_xw_bias(self, ndim, dtype):
        md.per_sample_grads(self.X, self.G, convention="xW", bias=True)

    def peakmem_per_sample_grads_xw_bias(self, ndim, dtype):
        md.per_sample_grads(self.X, self.G, convention="xW", bias=True)


class BatchGrad:
    """G_flat.T @ X_flat: 2-D B=2048, n=m=256; 3-D B=64, T=32, n=m=256."""

    params = PARAMS
    param_names = PARAM_NAMES

    def setup(self, ndim, dtype):
        self.X, self.G = make_data(ndim, dtype, 2048 if ndim == 2 else 64, 32, 256, 256)

    def time_batch_grad(self, ndim, dtype):
        md.batch_grad(self.X, self.G)

    def peakmem_batch_grad(self, ndim, dtype):
        md.batch_grad(self.X, self.G)

    def time_batch_grad_mean_bias(self, ndim, dtype):
        md.batch_grad(self.X, self.G, reduce="mean", bias=True)

    def peakmem_batch_grad_mean_bias(self, ndim, dtype):
        md.batch_grad(self.X, self.G, reduce="mean", bias=True)


class PerSampleGradNorms:
    """Norms without materializing: 2-D B=2048, n=m=256; 3-D B=32, n=m=128 with a short
    sequence (T=8, the Gram route) and a long one (T=256, the materialize route)."""

    params = ([2, 3], ["float32", "float64"], [8, 256])
    param_names = ["ndim", "dtype", "T"]

    def setup(self, ndim, dtype, T):
        self.X, self.G = short_or_long(ndim, dtype, T, 2048)

    def time_per_sample_grad_norms(self, ndim, dtype, T):
        md.per_sample_grad_norms(self.X, self.G)

    def peakmem_per_sample_grad_norms(self, ndim, dtype, T):
        md.per_sample_grad_norms(self.X, self.G)

    def time_per_sample_grad_norms_bias(self, ndim, dtype, T):
        md.per_sample_grad_norms(self.X, self.G, bias=True)

    def peakmem_per_sample_grad_norms_bias(self, ndim, dtype, T):
        md.per_sample_grad_norms(self.X, self.G, bias=True)


class ClipAndSum:
    """Clipped sums (DP-SGD): 2-D B=2048, n=m=256; 3-D B=64, T=16, n=m=256.
    Compare with BatchGrad: the budget is 1.2 x one batch_grad."""

    params = PARAMS
    param_names = PARAM_NAMES

    def setup(self, ndim, dtype):
        self.X, self.G = make_data(ndim, dtype, 2048 if ndim == 2 else 64, 16, 256, 256)
        self.max_norm = float(np.median(md.per_sample_grad_norms(self.X, self.G)))

    def time_clip_and_sum(self, ndim, dtype):
        md.clip_and_sum(self.X, self.G, self.max_norm)

    def peakmem_clip_and_sum(self, ndim, dtype):
        md.clip_and_sum(self.X, self.G, self.max_norm)

    def time_clip_and_sum_bias(self, ndim, dtype):
        md.clip_and_sum(self.X, self.G, self.max_norm, bias=True)

    def peakmem_clip_and_sum_bias(self, ndim, dtype):
        md.clip_and_sum(self.X, self.G, self.max_norm, bias=True)

    def time_batch_grad_same_data(self, ndim, dtype):
        md.batch_grad(self.X, self.G)
