"""
DP-SGD training of a small CNN
==============================

``examples/dp_cnn.py`` trains conv 3x3 (8 channels) -> ReLU -> 2x2 average pool ->
linear -> softmax on scikit-learn's 8x8 digits with differentially private SGD, in
numpy. Every example's whole gradient (both layers, weights and biases) is clipped to
norm C = 1 and Gaussian noise of scale sigma * C (sigma = 1) is added to the sum:

* ``md.per_sample_grad_norms(md.Conv(x, 3, padding=1), dz, bias=True)`` gives each
  example's norm for the convolution without forming the (B, 8, 1, 3, 3) per-sample
  gradients, and ``md.per_sample_grad_norms(h, dlogits, bias=True)`` the dense layer's;
* the clipped sum of each layer is one ``md.batch_grad`` with the upstream gradient
  scaled by min(1, C / ||g_b||).

The privacy spent, epsilon at delta = 1 / N^1.1, comes from dp-accounting's RDP
accountant for Poisson-sampled lots. Here 10 epochs (the script's default is 25):
"""

import dp_cnn  # examples/dp_cnn.py
import matplotlib.pyplot as plt

history = dp_cnn.main(epochs=10, seed=0)

# %%
# Test accuracy rises while epsilon grows with every step the accountant composes.

fig = dp_cnn.draw(history)
plt.show()
