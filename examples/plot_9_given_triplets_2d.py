"""
======================================================
The classic triplet-loss exercise: given triplets, 2-D
======================================================

The way the triplet loss is usually taught (the Keras triplet-loss examples, for one) builds the
triplets beforehand: for each *anchor* image, a *positive* of the same class and a *negative* of
another. A network maps each image to a point in the plane; with the squared Euclidean distance
``d``, a triplet costs

.. code-block:: text

    max(d(anchor, positive) - d(anchor, negative) + margin, 0)

so that training pulls the positive closer to the anchor than the negative by at least the margin.
Two epochs later, the plane is drawn, one colour per digit.

:class:`~sklearn_triplet.ComparisonEmbedder` is that recipe as a scikit-learn transformer: ``fit``
takes the triplets, shape ``(n_triplets, 3, n_features)`` (anchor, positive, negative), and
nothing else (no class labels), ``transform`` embeds single images. Here on scikit-learn's 8x8
digits, so that it runs in seconds on a CPU.
"""

# %% The triplets --------------------------------------------------------------------------------

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

from sklearn_triplet import ComparisonEmbedder
from sklearn_triplet.plotting import EmbeddingDisplay

X, y = load_digits(return_X_y=True)
X = X / 16  # pixels in [0, 1]
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)
rng = np.random.default_rng(0)


def make_triplets(X, y, n_triplets):
    """(anchor, positive, negative) images: a random anchor, a random image of its class, a
    random image of another class."""
    anchors = rng.integers(len(y), size=n_triplets)
    positives = np.array([rng.choice(np.flatnonzero(y == y[a])) for a in anchors])
    negatives = np.array([rng.choice(np.flatnonzero(y != y[a])) for a in anchors])
    return np.stack([X[anchors], X[positives], X[negatives]], axis=1)


train_triplets = make_triplets(X_train, y_train, 10_000)
test_triplets = make_triplets(X_test, y_test, 2_000)
print(f"training triplets: {train_triplets.shape}, held-out triplets: {test_triplets.shape}")

# %%
# Two epochs
# ----------
# ``metric="sqeuclidean"`` is the squared Euclidean distance of the classic loss, and
# ``margin=0.5`` its margin. ``normalize=False`` leaves the plane as it is: by default the
# embedders put their output on the unit sphere, which in two dimensions is a circle, one degree
# of freedom. Two epochs stop training long before it converges, as in the exercise, and the
# estimator says so with a ConvergenceWarning.

# The classic exercise's network and training, by name: a plain MLP, the loss averaged over all
# the triplets of a batch, a constant learning rate, and the embedding it learns (not the library's
# default recipe, which starts from the pixels' own geometry and may keep them).
model = ComparisonEmbedder(
    n_components=2,
    metric="sqeuclidean",
    margin=0.5,
    backbone="mlp",
    normalize=False,
    average="all",
    do_no_harm=False,
    learning_rate="constant",
    learning_rate_init=1e-3,
    max_iter=2,
    random_state=0,
)
model.fit(train_triplets)
for row in model.history_:
    print(
        f"epoch {row['epoch']}: loss {row['loss']:.3f}, "
        f"triplets already satisfied by the margin {row['easy_fraction']:.0%}"
    )

# %%
# The figures
# -----------
# ``score`` is the share of held-out triplets (images never seen in training) whose negative is
# farther from the anchor than its positive. A 5-nearest-neighbours classifier then reads the
# labels in the plane, beside the same classifier on the raw 64 pixels and on the plane of the
# first two principal components, which uses no labels at all.

E_train, E_test = model.transform(X_train), model.transform(X_test)
pca = PCA(n_components=2).fit(X_train)
accuracy = {
    "raw pixels (64-D)": KNeighborsClassifier().fit(X_train, y_train).score(X_test, y_test),
    "PCA (2-D)": KNeighborsClassifier()
    .fit(pca.transform(X_train), y_train)
    .score(pca.transform(X_test), y_test),
    "triplet embedding (2-D)": KNeighborsClassifier().fit(E_train, y_train).score(E_test, y_test),
}
print(f"held-out triplets in the right order: {model.score(test_triplets):.3f}")
for name, value in accuracy.items():
    print(f"5-NN test accuracy, {name}: {value:.3f}")

# %%
# The plane
# ---------
# The test images in the learned plane, coloured by their digit (the colours are for the picture
# only: training saw triplets, never a label). Two epochs already gather most digits into their
# own regions; the classes still overlapping are those a 2-D plane has little room to separate.

fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
EmbeddingDisplay.from_embedding(pca.transform(X_test), y_test, ax=axes[0], legend=False)
axes[0].set_title("PCA of the pixels")
EmbeddingDisplay.from_embedding(E_test, y_test, ax=axes[1])
axes[1].set_title("ComparisonEmbedder, two epochs")
plt.show()
