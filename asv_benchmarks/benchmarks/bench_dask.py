"""asv benchmarks for matderiv.dask: batch_grad, clip_and_sum, per_sample_grad_norms,
sum_grad_squared and per_sample_grad_dots (a numpy test batch of 16 rows against the
chunked set, TracIn-style) on dask arrays chunked along B (chunks of 2^16 rows,
m = n = 64, float64) on the threaded scheduler, each next to the in-memory call on the
same arrays.  Rows per second are B / time; the budget is dask <= 1.0 x in-memory at
B = 2^20 for the first three, <= 1.3 x for the statistics (the README's budgets).
"""
import numpy as np

import matderiv as md

try:
    import dask
    import dask.array as da
except ImportError:  # the dask extra is not installed
    da = None

CHUNK = 2**16


class DaskThreaded:
    params = ([2**16, 2**18, 2**20],)  # 2**22 rows: python -m matderiv bench (full mode)
    param_names = ["B"]
    timeout = 300

    def setup(self, B):
        if da is None:
            raise NotImplementedError("dask is not installed")
        rng = np.random.default_rng(0)
        self.X, self.G = rng.standard_normal((B, 64)), rng.standard_normal((B, 64))
        self.Xd = da.from_array(self.X, chunks=(CHUNK, 64))
        self.Gd = da.from_array(self.G, chunks=(CHUNK, 64))
        self.max_norm = float(np.median(md.per_sample_grad_norms(self.X[:4096], self.G[:4096])))
        self.X2, self.G2 = rng.standard_normal((16, 64)), rng.standard_normal((16, 64))

    def time_dask_batch_grad(self, B):
        dask.compute(md.batch_grad(self.Xd, self.Gd), scheduler="threads")

    def time_memory_batch_grad(self, B):
        md.batch_grad(self.X, self.G)

    def time_dask_clip_and_sum(self, B):
        dask.compute(*md.clip_and_sum(self.Xd, self.Gd, self.max_norm), scheduler="threads")

    def peakmem_dask_clip_and_sum(self, B):
        dask.compute(*md.clip_and_sum(self.Xd, self.Gd, self.max_norm), scheduler="threads")

    def time_memory_clip_and_sum(self, B):
        md.clip_and_sum(self.X, self.G, self.max_norm)

    def time_dask_per_sample_grad_norms(self, B):
        dask.compute(md.per_sample_grad_norms(self.Xd, self.Gd), scheduler="threads")

    def time_memory_per_sample_grad_norms(self, B):
        md.per_sample_grad_norms(self.X, self.G)

    def time_dask_sum_grad_squared(self, B):
        dask.compute(md.sum_grad_squared(self.Xd, self.Gd), scheduler="threads")

    def time_memory_sum_grad_squared(self, B):
        md.sum_grad_squared(self.X, self.G)

    def time_dask_per_sample_grad_dots(self, B):
        dask.compute(md.per_sample_grad_dots(self.Xd, self.Gd, self.X2, self.G2), scheduler="threads")

    def time_memory_per_sample_grad_dots(self, B):
        md.per_sample_grad_dots(self.X, self.G, self.X2, self.G2)
