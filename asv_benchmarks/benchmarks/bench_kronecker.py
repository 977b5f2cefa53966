"""asv benchmarks for jacobian_awb's forms and the per-sample left operator."""
import numpy as np
import scipy.sparse as sp

import matderiv as md


class SparseIdentityRight:
    """jacobian_awb(A, None).tosparse for a sparse A: I_q kron A (order F) and A kron I_q (C)."""

    params = ([500, 2000], ["csr", "csc", "coo"], ["F", "C"])
    param_names = ["n", "format", "order"]

    def setup(self, n, format, order):
        A = sp.random_array((n, n), density=0.01, rng=np.random.default_rng(0), format="csr")
        self.J = md.jacobian_awb(A, None, W_shape=(n, n // 10))

    def time_tosparse(self, n, format, order):
        self.J.tosparse(format, order)

    def peakmem_tosparse(self, n, format, order):
        self.J.tosparse(format, order)


class DenseFactors:
    """Dense jacobian_awb(A, B): tovec (B^T kron A, A kron B^T) and the tensor."""

    params = ([20, 40], ["float32", "float64"])
    param_names = ["d", "dtype"]

    def setup(self, d, dtype):
        rng = np.random.default_rng(0)
        self.J = md.jacobian_awb(rng.standard_normal((d, d)).astype(dtype), rng.standard_normal((d, d)).astype(dtype))

    def time_tovec_F(self, d, dtype):
        self.J.tovec("F")

    def peakmem_tovec_F(self, d, dtype):
        self.J.tovec("F")

    def time_toarray_denominator(self, d, dtype):
        self.J.toarray("denominator")


class PerSampleLeft:
    """The operator of jacobian_wx(X, n).left(M) with one M_b per sample: matvec + rmatvec."""

    params = ([512, 4096],)
    param_names = ["batch"]

    def setup(self, batch):
        rng = np.random.default_rng(0)
        r, n, m = 16, 128, 128
        self.op = md.jacobian_wx(rng.standard_normal((batch, m)), n).left(rng.standard_normal((batch, r, n))).aslinearoperator()
        self.u = rng.standard_normal(n * m)
        self.w = rng.standard_normal(batch * r)

    def time_matvec_rmatvec(self, batch):
        self.op.matvec(self.u)
        self.op.rmatvec(self.w)

    def peakmem_matvec_rmatvec(self, batch):
        self.op.matvec(self.u)
        self.op.rmatvec(self.w)
