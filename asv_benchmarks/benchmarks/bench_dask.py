"""asv benchmarks for matderiv.dask: batch_grad, clip_and_sum and per_sample_grad_norms
on dask arrays chunked along B (chunks of 2^16 rows, m = n = 64, float64) on the
threaded scheduler, each next to the in-memory call on the same arrays.  Rows per
second are B / time; the budget is dask <= 1.0 x in-memory at B = 2^20.
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
    params = ([2**16, 2**18, 2**20, 2**22],)
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
