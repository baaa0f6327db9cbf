"""
===============================================
Nearest neighbours on a learned digit embedding
===============================================

A :class:`~sklearn.neighbors.KNeighborsClassifier` is only as good as the distance it votes with.
On raw pixels, the distance between two handwritten digits depends on stroke thickness and
position as much as on the digit drawn. Here a :class:`~sklearn_triplet.TripletEmbedder` learns a
32-dimensional embedding from the training labels, and the same classifier runs on it, in one
:class:`~sklearn.pipeline.Pipeline`. PCA to the same width is the unsupervised baseline. The three
are compared on classification (KNN accuracy) and on retrieval (MAP@R).
"""

# %%
# Data
# ----
# scikit-learn's bundled digits, split 75 / 25 with every class in the same proportion on both
# sides. Pixels range from 0 to 16; scaling them to [0, 1] keeps the network's inputs small.

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline

from sklearn_triplet import TripletEmbedder
from sklearn_triplet.metrics import map_at_r

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)

# %%
# Three pipelines, one classifier
# -------------------------------
# The embedder trains for 30 epochs of class-balanced batches with the default recipe (semi-hard
# triplets averaged over the active ones, a warm-up then cosine learning rate); ``random_state``
# makes the fit repeatable.

models = {
    "raw pixels": KNeighborsClassifier(),
    "PCA, 32 components": make_pipeline(
        PCA(n_components=32, random_state=0), KNeighborsClassifier()
    ),
    "TripletEmbedder, 32 components": make_pipeline(
        TripletEmbedder(n_components=32, max_iter=30, random_state=0), KNeighborsClassifier()
    ),
}


def space(model, X):
    """The space the classifier votes in: the pipeline's transform, or the raw pixels."""
    return model[:-1].transform(X) if isinstance(model, Pipeline) else X


scores = {}
for name, model in models.items():
    model.fit(X_train, y_train)
    # Retrieval: each test digit queries the training digits, in the space the classifier sees.
    scores[name] = {
        "accuracy": model.score(X_test, y_test),
        "map_at_r": map_at_r(
            space(model, X_test),
            y_test,
            X_reference=space(model, X_train),
            y_reference=y_train,
        ),
    }
    print(
        f"{name:<32} KNN test accuracy {scores[name]['accuracy']:.4f}   "
        f"test MAP@R {scores[name]['map_at_r']:.4f}"
    )

# %%
# Classification and retrieval
# ----------------------------
# On the digits, a 5-nearest-neighbour vote is already right about 98 % of the time on raw
# pixels, and it stays there on the embedding: five neighbours only need a majority of the right
# class. Retrieval asks more. MAP@R (mean average precision at R) ranks *all* the training digits
# by distance from each test digit and rewards the ones of its class for coming first; 1.0 means
# the whole class comes before any other digit. That is the structure the triplet loss trains
# for, and where the learned embedding differs from raw pixels and PCA.

fig, axes = plt.subplots(1, 2, figsize=(10, 2.9), layout="constrained", sharey=True)
names = list(scores)
colors = ["0.6", "0.6", "tab:blue"]
for ax, key, label in [
    (axes[0], "accuracy", "KNN test accuracy"),
    (axes[1], "map_at_r", "test MAP@R (against the training set)"),
]:
    values = [scores[name][key] for name in names]
    bars = ax.barh(names, values, color=colors)
    ax.bar_label(bars, fmt="%.3f", padding=3)
    ax.set_xlim(0, 1.15)
    ax.set_title(label)
axes[0].invert_yaxis()
plt.show()

# %%
# What the embedding looks like
# -----------------------------
# :class:`~sklearn_triplet.plotting.EmbeddingDisplay` draws the 450 test digits on the first two
# principal components of the raw pixels and of the 32-dimensional embedding (a linear view,
# nothing fitted to the labels). In the embedding each class gathers in a region of its own; the
# principal plane of the raw pixels mixes several.

from sklearn_triplet.plotting import EmbeddingDisplay

embedder = models["TripletEmbedder, 32 components"][0]
fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), layout="constrained")
EmbeddingDisplay.from_embedding(X_test, y_test, projection="pca", ax=axes[0], legend=False)
EmbeddingDisplay.from_estimator(
    embedder, X_test, y_test, projection="pca", ax=axes[1], legend=False
)
axes[0].set_title("raw pixels")
axes[1].set_title("triplet embedding")
axes[1].legend(title="digit", loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
plt.show()

# %%
# The embedder is a transformer like any other: ``transform`` returns float32 rows of unit norm,
# ready for any estimator that works with distances.

Z = embedder.transform(X_test[:3])
print(Z.dtype, Z.shape, np.linalg.norm(Z, axis=1))
