"""
============================================
Semi-hard, hard and batch-all triplet mining
============================================

Inside each batch, :class:`~sklearn_triplet.TripletEmbedder` chooses which triplets (anchor,
positive of its class, negative of another class) the loss averages over, by its ``mining``
parameter:

- ``"semi-hard"`` (FaceNet): for each anchor-positive pair, the closest negative that is farther
  than the positive;
- ``"hard"`` (batch-hard): for each anchor, its farthest positive and its closest negative;
- ``"all"`` (batch-all): every triplet whose loss is above zero.

Whatever the mode, ``history_`` counts every valid triplet of every batch as *easy*
(``d(a,n) > d(a,p) + margin``), *semi-hard* (``d(a,p) < d(a,n) <= d(a,p) + margin``) or *hard*
(``d(a,n) <= d(a,p)``), so the three runs can be compared on the same footing. See
:ref:`mining` in the User Guide for the exact rules.
"""

# %%
# Three fits
# ----------
# Same data, network, margin (0.2), epochs and seed; only ``mining`` changes.

import matplotlib.pyplot as plt
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sklearn_triplet import TripletEmbedder
from sklearn_triplet.metrics import map_at_r

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)

histories, scores = {}, {}
for mining in ["semi-hard", "hard", "all"]:
    embedder = TripletEmbedder(mining=mining, max_iter=25, random_state=0).fit(X_train, y_train)
    histories[mining] = pd.DataFrame(embedder.history_).set_index("epoch")
    # Test queries retrieve from the training set.
    scores[mining] = map_at_r(
        embedder.transform(X_test), y_test,
        X_reference=embedder.transform(X_train), y_reference=y_train,
    )
    print(f"mining={mining!r:<12} test MAP@R {scores[mining]:.4f}")

# %%
# The history of one fit
# ----------------------
# One row per epoch. The counts are summed over the epoch's batches; ``n_mined`` is how many terms
# the loss averaged over (anchor-positive pairs, anchors or active triplets, by mode).

columns = ["loss", "n_triplets", "n_mined", "easy_fraction", "semi_hard_fraction", "hard_fraction"]
print(histories["semi-hard"][columns].iloc[[0, 1, 2, -1]].round(3).to_string())

# %%
# Loss and triplet fractions per epoch
# ------------------------------------
# The losses are not on one scale (each mode averages over different triplets), but their
# fractions are: all three turn hard and semi-hard triplets into easy ones, at different speeds.

fig, axes = plt.subplots(1, 4, figsize=(13, 3.4), layout="constrained", sharex=True)
panels = [
    ("loss", "loss (each mode's own average)"),
    ("easy_fraction", "easy triplets"),
    ("semi_hard_fraction", "semi-hard triplets"),
    ("hard_fraction", "hard triplets"),
]
for ax, (column, title) in zip(axes, panels):
    for mining, history in histories.items():
        label = f"{mining} (test MAP@R {scores[mining]:.3f})"
        ax.plot(history.index, history[column], label=label)
    ax.set_title(title)
    ax.set_xlabel("epoch")
for ax in axes[1:]:
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction of valid triplets")
axes[0].legend(fontsize="small")
plt.show()
