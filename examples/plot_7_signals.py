"""
========================================
1-D signals with a convolutional network
========================================

Time series, spectra and sensor recordings are rows of numbers too, but their features move: the
same peak arrives a little earlier or later, a little higher or lower. A fully connected network
sees each time step as its own feature and must learn every shift separately. A 1-D convolutional
network slides the same small filters along the signal, so a pattern is recognised wherever it
occurs.

``backbone="cnn"`` with ``backbone_params={"input_shape": (channels, length)}`` builds one (see
:func:`~sklearn_triplet.backbones.make_cnn`); rows of ``X`` hold the channels one after the other,
each ``length`` steps long. This example generates three-channel signals (think of an
accelerometer) and compares KNN on the raw signals with KNN on the embeddings of the default MLP
and of the 1-D CNN.
"""

# %%
# Generated signals
# -----------------
# Six classes, each with two templates (two ways of performing the same movement, say). A
# template is, in each channel, a sum of four smooth bumps of random sign, width and place. A
# sample is one of its class's templates shifted by up to 16 steps either way, scaled by 0.6 to
# 1.4, on a random offset, with noise.

import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_triplet import TripletEmbedder

n_classes, n_templates, n_per_class = 6, 2, 100
n_channels, length, max_shift = 3, 64, 16
rng = np.random.default_rng(0)

t = np.arange(length + 2 * max_shift)
shape = (n_classes, n_templates, n_channels, 4, 1)  # four bumps per channel
centres = rng.uniform(max_shift, t.size - max_shift, shape)
widths = rng.uniform(3.0, 10.0, shape)
heights = rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 1.5, shape)
templates = (heights * np.exp(-0.5 * ((t - centres) / widths) ** 2)).sum(axis=3)

y = np.repeat(np.arange(n_classes), n_per_class)
X = np.empty((y.size, n_channels, length))
for i, label in enumerate(y):
    template = templates[label, rng.integers(n_templates)]
    start = rng.integers(2 * max_shift + 1)
    X[i] = rng.uniform(0.6, 1.4) * template[:, start : start + length] + rng.normal()
X += 0.8 * rng.normal(size=X.shape)
X = X.reshape(y.size, n_channels * length)  # one row per sample: channel 0, then 1, then 2

X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)

fig, axes = plt.subplots(2, 3, figsize=(12, 4.5), sharex=True, sharey=True, layout="constrained")
for label, ax in enumerate(axes.flat):
    for row in X_train[y_train == label][:4]:
        ax.plot(row.reshape(n_channels, length)[0], lw=1)
    ax.set_title(f"class {label}: channel 0 of four samples")
fig.supxlabel("time step")

# %%
# Embed with the MLP and with the 1-D CNN
# ---------------------------------------
# The same estimator, the same training recipe; only the backbone differs. The CNN's
# ``kernel_size`` defaults to 7 steps for signals (3 x 3 for images).

models = {
    "KNN on the raw signals": make_pipeline(StandardScaler(), KNeighborsClassifier()),
    "MLP embedding + KNN": make_pipeline(
        StandardScaler(), TripletEmbedder(random_state=0), KNeighborsClassifier()
    ),
    "1-D CNN embedding + KNN": make_pipeline(
        StandardScaler(),
        TripletEmbedder(
            backbone="cnn",
            backbone_params={"input_shape": (n_channels, length), "channels": (16, 32)},
            max_iter=30,
            random_state=0,
        ),
        KNeighborsClassifier(),
    ),
}
scores = {}
for name, model in models.items():
    start = time.perf_counter()
    model.fit(X_train, y_train)
    scores[name] = model.score(X_test, y_test)
    print(f"{name:<26} KNN accuracy {scores[name]:.3f}  ({time.perf_counter() - start:.1f} s)")

# %%
# Scores
# ------

fig, ax = plt.subplots(figsize=(7, 2.6), layout="constrained")
ax.barh(list(scores), list(scores.values()), color=["0.6", "tab:blue", "tab:orange"])
for i, value in enumerate(scores.values()):
    ax.text(value - 0.01, i, f"{value:.3f}", va="center", ha="right", color="white")
ax.set_xlim(0, 1)
ax.invert_yaxis()
ax.set_xlabel("KNN accuracy on the test signals")
plt.show()
