"""asv benchmarks for every materializing method of matderiv's Jacobians."""
import numpy as np

import matderiv as md


class Dense:
    """toarray (both layouts) and tovec (both orders), d(Wx)/dW and d(xW)/dW."""

    params = ([64, 200], ["float32", "float64"], ["Wx", "xW"])
    param_names = ["n", "dtype", "convention"]

    def setup(self, n, dtype, convention):
        x = np.random.default_rng(0).standard_normal(n).astype(dtype)
        self.J = (md.jacobian_wx if convention == "Wx" else md.jacobian_xw)(x, n)

    def time_toarray_numerator(self, n, dtype, convention):
        self.J.toarray("numerator")

    def peakmem_toarray_numerator(self, n, dtype, convention):
        self.J.toarray("numerator")

    def time_toarray_denominator(self, n, dtype, convention):
        self.J.toarray("denominator")

    def peakmem_toarray_denominator(self, n, dtype, convention):
        self.J.toarray("denominator")

    def time_tovec_F(self, n, dtype, convention):
        self.J.tovec("F")

    def peakmem_tovec_F(self, n, dtype, convention):
        self.J.tovec("F")

    def time_tovec_C(self, n, dtype, convention):
        self.J.tovec("C")

    def peakmem_tovec_C(self, n, dtype, convention):
        self.J.tovec("C")


class Sparse:
    """tosparse in every format, single and batched x."""

    params = ([300, 1000], ["float32", "float64"], ["csr", "csc", "coo"], [1, 8])
    param_names = ["n", "dtype", "format", "batch"]

    def setup(self, n, dtype, format, batch):
        x = np.random.default_rng(0).standard_normal((batch, n)).astype(dtype)
        self.J = md.jacobian_wx(x[0] if batch == 1 else x, n)

    def time_tosparse(self, n, dtype, format, batch):
        self.J.tosparse(format)

    def peakmem_tosparse(self, n, dtype, format, batch):
        self.J.tosparse(format)


class Products:
    """jvp and vjp: O(n*m), against which dW @ x and np.outer are the references."""

    params = ([256, 1000], ["float32", "float64"])
    param_names = ["n", "dtype"]

    def setup(self, n, dtype):
        rng = np.random.default_rng(0)
        self.J = md.jacobian_wx(rng.standard_normal(n).astype(dtype), n)
        self.dW = rng.standard_normal((n, n)).astype(dtype)
        self.v = rng.standard_normal(n).astype(dtype)
        self.op = self.J.aslinearoperator()
        self.vec = self.dW.ravel(order="F")

    def time_jvp(self, n, dtype):
        self.J.jvp(self.dW)

    def time_vjp(self, n, dtype):
        self.J.vjp(self.v)

    def peakmem_vjp(self, n, dtype):
        self.J.vjp(self.v)

    def time_operator_matvec(self, n, dtype):
        self.op.matvec(self.vec)


class Dependent:
    """The product-rule Jacobian of W @ tanh(W^T y)."""

    params = [[32, 96]]
    param_names = ["n"]

    def setup(self, n):
        rng = np.random.default_rng(0)
        W = rng.standard_normal((n, n)) / np.sqrt(n)
        y = rng.standard_normal(n)
        x = np.tanh(W.T @ y)
        dx = np.einsum("j,a,jb->jab", 1 - x**2, y, np.eye(n))
        self.T = md.jacobian_wx(x, n, W=W, dx_dW=dx)

    def time_toarray(self, n):
        self.T.toarray()

    def peakmem_toarray(self, n):
        self.T.toarray()
