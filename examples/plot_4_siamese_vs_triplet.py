"""
==========================================
Contrastive (Siamese) against triplet loss
==========================================

:class:`~sklearn_triplet.SiameseEmbedder` and :class:`~sklearn_triplet.TripletEmbedder` share
everything (backbone, batches, distances, training parameters) but the loss:

- the contrastive loss pulls every same-class pair to distance 0 and pushes every different-class
  pair out to at least ``margin`` (1.0 by default): *absolute* distances;
- the triplet loss only asks each negative to be ``margin`` (0.5 by default) farther from an
  anchor than its positive: *relative* distances.

This example fits both on the same data and compares what downstream tasks see: nearest-neighbour
accuracy, retrieval (MAP@R), and how the distances of same-class and different-class pairs are
spread.
"""

# %%
# Fit both
# --------

import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

from sklearn_triplet import SiameseEmbedder, TripletEmbedder
from sklearn_triplet.distances import paired_distances
from sklearn_triplet.verification import make_pairs

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)

embedders = {
    "SiameseEmbedder": SiameseEmbedder(max_iter=25, random_state=0),
    "TripletEmbedder": TripletEmbedder(max_iter=25, random_state=0),
}
results = {}
for name, embedder in embedders.items():
    start = time.perf_counter()
    embedder.fit(X_train, y_train)
    fit_time = time.perf_counter() - start
    Z_train, Z_test = embedder.transform(X_train), embedder.transform(X_test)
    knn = KNeighborsClassifier().fit(Z_train, y_train)
    results[name] = {
        "KNN accuracy": knn.score(Z_test, y_test),
        "MAP@R": embedder.score(X_test, y_test),
        "fit time (s)": fit_time,
    }
    print(name, {key: round(value, 4) for key, value in results[name].items()})

# %%
# Distances of same-class and different-class pairs
# -------------------------------------------------
# 2,000 random test pairs, half of them of the same class
# (:func:`~sklearn_triplet.verification.make_pairs`). The contrastive loss pulls same-class pairs
# towards 0 and pushes different-class pairs out to the margin and beyond. The triplet loss
# fixes no distance, only the gap between the two kinds of pairs: same-class pairs settle where
# they are separated from the rest, and different-class pairs gather near ``sqrt(2)``, the
# distance of two orthogonal unit vectors.

X1, X2, same = make_pairs(X_test, y_test, n_pairs=2000, random_state=0)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), layout="constrained")
bins = np.linspace(0, 2, 41)
for ax, (name, embedder) in zip(axes, embedders.items()):
    d = paired_distances(embedder.transform(X1), embedder.transform(X2))
    ax.hist(d[same], bins=bins, alpha=0.7, label="same class")
    ax.hist(d[~same], bins=bins, alpha=0.7, label="different classes")
    ax.axvline(embedder.margin, color="k", ls="--", lw=1, label=f"margin = {embedder.margin}")
    ax.set_title(f"{name}: test pair distances")
    ax.set_xlabel("Euclidean distance between embeddings")
    ax.legend(fontsize="small")

# Downstream scores side by side.
metrics = ["KNN accuracy", "MAP@R"]
width = 0.38
positions = np.arange(len(metrics))
for offset, name in zip([-width / 2, width / 2], embedders):
    values = [results[name][m] for m in metrics]
    bars = axes[2].bar(positions + offset, values, width, label=name)
    axes[2].bar_label(bars, fmt="%.3f", fontsize="small")
axes[2].set_xticks(positions, metrics)
axes[2].set_ylim(0, 1.25)
axes[2].set_title("test scores")
axes[2].legend(fontsize="small", loc="upper center", ncols=2)
plt.show()

# %%
# On the digits the two end up close on both scores, at similar cost. Which suits a task is an
# empirical question, and the estimators make it a cheap one to answer: they share every
# parameter but ``margin`` and ``mining``, and both log the same triplet statistics in
# ``history_``, so they can be compared epoch by epoch as in the mining example.
