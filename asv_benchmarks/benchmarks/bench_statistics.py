"""asv benchmarks for matderiv.statistics: sum_grad_squared, grad_variance,
per_sample_grad_dots and kfac_factors on 2-D (B, m) and sequence (B, T, m) inputs,
each beside the plain numpy GEMMs it amounts to and the per-sample-materializing way.

Sizes are modest (the reference machine has 2 cores); every `time_*` has a
`peakmem_*` twin.
"""
import numpy as np

import matderiv as md

from .bench_gradients import PARAM_NAMES, PARAMS, make_data, short_or_long


def _materialized(X, G):
    return np.einsum("bi,bj->bij", G, X) if X.ndim == 2 else np.matmul(G.transpose(0, 2, 1), X)


class SumGradSquaredAndVariance:
    """2-D B=1024, n=m=256; 3-D B=32, T=64, n=m=128."""

    params = PARAMS
    param_names = PARAM_NAMES

    def setup(self, ndim, dtype):
        if ndim == 2:
            self.X, self.G = make_data(2, dtype, 1024, 1, 256, 256)
        else:
            self.X, self.G = make_data(3, dtype, 32, 64, 128, 128)

    def time_sum_grad_squared(self, ndim, dtype):
        md.sum_grad_squared(self.X, self.G)

    def peakmem_sum_grad_squared(self, ndim, dtype):
        md.sum_grad_squared(self.X, self.G)

    def time_grad_variance(self, ndim, dtype):
        md.grad_variance(self.X, self.G, bias=True)

    def peakmem_grad_variance(self, ndim, dtype):
        md.grad_variance(self.X, self.G, bias=True)

    def time_numpy_batch_grad(self, ndim, dtype):
        md.batch_grad(self.X, self.G)

    def time_materialize_square_sum(self, ndim, dtype):
        np.square(_materialized(self.X, self.G)).sum(axis=0)

    def peakmem_materialize_square_sum(self, ndim, dtype):
        np.square(_materialized(self.X, self.G)).sum(axis=0)


class PerSampleGradDots:
    """Gradient Gram matrices: 2-D B=512, n=m=256; 3-D B=32, n=m=128 with a short
    sequence (T=8, Gram) and a long one (T=256, materialize)."""

    params = ([2, 3], ["float32", "float64"], [8, 256])
    param_names = ["ndim", "dtype", "T"]

    def setup(self, ndim, dtype, T):
        self.X, self.G = short_or_long(ndim, dtype, T, 512)

    def time_per_sample_grad_dots(self, ndim, dtype, T):
        md.per_sample_grad_dots(self.X, self.G)

    def peakmem_per_sample_grad_dots(self, ndim, dtype, T):
        md.per_sample_grad_dots(self.X, self.G)

    def time_per_sample_grad_dots_test_batch(self, ndim, dtype, T):
        md.per_sample_grad_dots(self.X[:16], self.G[:16], self.X, self.G, normalize=True)

    def time_numpy_gram(self, ndim, dtype, T):
        if ndim == 2:
            (self.G @ self.G.T) * (self.X @ self.X.T)
        else:
            B = self.X.shape[0]
            Gf, Xf = self.G.reshape(B * T, -1), self.X.reshape(B * T, -1)
            ((Gf @ Gf.T) * (Xf @ Xf.T)).reshape(B, T, B, T).sum(axis=(1, 3))

    def time_materialize_dots(self, ndim, dtype, T):
        P = _materialized(self.X, self.G).reshape(self.X.shape[0], -1)
        P @ P.T

    def peakmem_materialize_dots(self, ndim, dtype, T):
        P = _materialized(self.X, self.G).reshape(self.X.shape[0], -1)
        P @ P.T


class KfacFactors:
    """2-D B=2048, n=m=256; 3-D B=64, T=32, n=m=256 ("expand" and "reduce")."""

    params = PARAMS
    param_names = PARAM_NAMES

    def setup(self, ndim, dtype):
        self.X, self.G = make_data(ndim, dtype, 2048 if ndim == 2 else 64, 32, 256, 256)

    def time_kfac_factors(self, ndim, dtype):
        md.kfac_factors(self.X, self.G, bias=True)

    def peakmem_kfac_factors(self, ndim, dtype):
        md.kfac_factors(self.X, self.G, bias=True)

    def time_kfac_factors_reduce(self, ndim, dtype):
        md.kfac_factors(self.X, self.G, mode="reduce")

    def time_numpy_gemms(self, ndim, dtype):
        Xf, Gf = self.X.reshape(-1, 256), self.G.reshape(-1, 256)
        Xf.T @ Xf, Gf.T @ Gf
