"""
Sparsity of the vectorized Jacobians
====================================

The Jacobian of f(W) = W @ x with respect to W (n, m) has n * m nonzeros out of
n * (n * m) entries. Which columns hold them depends on how W is vectorized:
column-major vec(W) (``order="F"``) gives x^T (x) I_n, row-major ``W.ravel()``
(``order="C"``) gives I_n (x) x^T. ``J.tosparse`` builds either one with exactly its
nonzeros stored.

The same holds for every linear map f(W) = A @ W @ B (``md.jacobian_awb``): order "F"
is B^T (x) A and order "C" is A (x) B^T, with nnz(A) * nnz(B) stored entries. Below A is
a sparse second-difference matrix and B the identity, so f = A @ W applies A to every
column of W: a block-diagonal Jacobian in order "F", a block-banded one in order "C".
"""

import matplotlib.pyplot as plt
import numpy as np
import scipy.sparse as sp

import matderiv as md

n, m = 4, 6
x = np.arange(1.0, m + 1)
J = md.jacobian_wx(x, n)
wx = {order: J.tosparse("csr", order=order) for order in ("F", "C")}

p, q = 6, 3
A = sp.diags_array([-np.ones(p - 1), 2 * np.ones(p), -np.ones(p - 1)], offsets=[-1, 0, 1], format="csr")
K = md.jacobian_awb(A, None, W_shape=(p, q))
awb = {order: K.tosparse("csr", order=order) for order in ("F", "C")}

for order, S in wx.items():
    print(f"W @ x,   order {order}: shape {S.shape}, {S.nnz} stored entries (n * m = {n * m})")
for order, S in awb.items():
    print(f"A @ W,   order {order}: shape {S.shape}, {S.nnz} stored entries (nnz(A) * q = {A.nnz * q})")

# %%
# The four patterns: a marker for every stored entry.

fig, axes = plt.subplots(2, 2, figsize=(9, 6.5), gridspec_kw={"height_ratios": [1, 3]})
titles = {
    ("wx", "F"): r"$x^T \otimes I_n$: W @ x, order 'F'",
    ("wx", "C"): r"$I_n \otimes x^T$: W @ x, order 'C'",
    ("awb", "F"): r"$I_q \otimes A$: A @ W, order 'F'",
    ("awb", "C"): r"$A \otimes I_q$: A @ W, order 'C'",
}
for row, (name, forms) in enumerate((("wx", wx), ("awb", awb))):
    for col, (order, S) in enumerate(forms.items()):
        ax = axes[row, col]
        ax.spy(S, markersize=6 if name == "wx" else 4, color="tab:blue")
        ax.set_title(titles[name, order], fontsize=10)
        ax.set_xlabel("entry of vec(W)")
        ax.set_ylabel("entry of f")
fig.suptitle(f"stored entries of J.tosparse(order=...): n = {n}, m = {m}; A ({p} x {p}) tridiagonal, W ({p} x {q})")
fig.tight_layout()
plt.show()
