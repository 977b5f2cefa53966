"""
TracIn: proponents and self-influence
=====================================

``examples/data_attribution.py`` trains a two-layer network on Gaussian blobs (4
classes, 10% of the training labels flipped) with minibatch SGD, keeping a checkpoint
after every epoch. TracIn scores a training sample z against a test sample z' by
sum_k lr * <grad L(w_k, z), grad L(w_k, z')> over the checkpoints:

* the (n_train, n_test) scores of every layer are one ``md.per_sample_grad_dots(X, G,
  X_test, G_test, bias=True)``, two small GEMMs, no per-sample gradient formed;
* a sample's self-influence TracIn(z, z) is ``md.per_sample_grad_norms(X, G,
  bias=True) ** 2`` summed the same way.

Below, the training samples ranked by their score against one test sample (the
proponents, the highest scores, share its label), and the self-influence of clean
and of mislabeled training samples.
"""

import data_attribution as attribution  # examples/data_attribution.py
import matplotlib.pyplot as plt
import numpy as np

rng = np.random.default_rng(0)
n_train, n_test, n_features, n_classes, flip, lr = 800, 40, 10, 4, 0.1, 0.1
X, y_true, means = attribution.make_data(rng, n_train, n_features, n_classes)
flipped = rng.random(n_train) < flip
y = np.where(flipped, (y_true + rng.integers(1, n_classes, n_train)) % n_classes, y_true)
X_test, y_test, _ = attribution.make_data(rng, n_test, n_features, n_classes, means)

params = attribution.init_params(rng, n_features, 32, n_classes)
checkpoints = attribution.train(params, X, y, epochs=6, lr=lr, batch=64, rng=rng)
scores = attribution.tracin_scores(checkpoints, lr, X, y, X_test, y_test)  # (n_train, n_test)
influence = attribution.self_influence(checkpoints, lr, X, y)  # (n_train,)

top = np.argsort(-scores, axis=0)[:10]
print(f"top-10 proponents sharing the test sample's label: {np.mean(y[top] == y_test):.2f} (chance {1 / n_classes:.2f})")
k = int(flipped.sum())
print(f"mislabeled among the {k} highest self-influences: {np.mean(flipped[np.argsort(-influence)[:k]]):.2f} "
      f"(base rate {flipped.mean():.2f})")

# %%
# Left: every training sample's score against test sample 0, highest first, coloured by
# whether its (possibly flipped) label is the test sample's. Right: self-influence is
# much larger for the mislabeled samples: the network does not fit them, so their
# gradients stay large at every checkpoint.

t = 0
order = np.argsort(-scores[:, t])
same = y[order] == y_test[t]
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
ranks = np.arange(n_train)
left.scatter(ranks[same], scores[order, t][same], s=6, color="tab:blue", label=f"label {y_test[t]} (the test sample's)")
left.scatter(ranks[~same], scores[order, t][~same], s=6, color="tab:gray", label="another label")
left.axhline(0.0, color="black", lw=0.5)
left.set_xlabel("training samples, ranked by score")
left.set_ylabel("TracIn score against test sample 0")
left.set_title("proponents (left end) and opponents (right end)")
left.legend(fontsize=8)

bins = np.geomspace(influence.min(), influence.max(), 40)
right.hist(influence[~flipped], bins=bins, color="tab:blue", alpha=0.7, label=f"clean ({(~flipped).sum()})")
right.hist(influence[flipped], bins=bins, color="tab:red", alpha=0.7, label=f"mislabeled ({flipped.sum()})")
right.set_xscale("log")
right.set_xlabel("self-influence TracIn(z, z)")
right.set_ylabel("training samples")
right.set_title("self-influence finds the flipped labels")
right.legend(fontsize=8)
fig.tight_layout()
plt.show()
