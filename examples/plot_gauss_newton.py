"""
Gauss-Newton with an exact Jacobian against finite differences
==============================================================

``examples/gauss_newton.py`` fits a two-layer network y_b = W2 tanh(W1 x_b + b1) + b2 to
noisy targets with ``scipy.optimize.least_squares(method="trf", tr_solver="lsmr")``. The
Jacobian of the residuals with respect to all parameters is one LinearOperator, the
four parameters' lazy Jacobians side by side:

.. code-block:: python

    M = W2[None, :, :] * (1 - H**2)[:, None, :]            # M_b = W2 diag(tanh'(z_b))
    md.hstack_operators([
        md.jacobian_wx(X, hidden).left(M),                  # W1
        md.jacobian_wx(np.ones((B, 1)), hidden).left(M),    # b1
        md.jacobian_wx(H, n_out),                           # W2
        md.jacobian_wx(np.ones((B, 1)), n_out),             # b2
    ], order="C")

lsmr only asks for its products, so the (B * n_out, n_params) matrix is never built.
The same fit with ``jac="2-point"`` spends n_params + 1 residual evaluations on every
Jacobian. Here 300 samples and a network 8 -> 4 -> 2 (46 parameters):
"""

import gauss_newton  # examples/gauss_newton.py
import matplotlib.pyplot as plt
import numpy as np

rng = np.random.default_rng(0)
X, T, theta0 = gauss_newton.make_problem(rng, 300, 8, 4, 2, noise=0.05)
traces = {"matderiv": [], "2-point": []}
for name, exact in (("matderiv", True), ("2-point", False)):
    res, _ = gauss_newton.fit(X, T, theta0, 4, exact, 1e-8, trace=traces[name])
    print(f"{name:9s} final cost {res.cost:.10f} after {res.njev} Jacobians and {len(traces[name])} residual evaluations")

# %%
# Both fits take the same steps to the same cost; the exact Jacobian gets there with
# about 40 times fewer evaluations of the residuals.

fig = gauss_newton.draw(traces, theta0.size)
plt.show()
