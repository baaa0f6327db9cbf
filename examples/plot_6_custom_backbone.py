"""
==============================
Choosing or writing a backbone
==============================

The backbone is the network that maps a sample to its embedding. ``backbone`` accepts:

- ``"mlp"`` (the default), ``"linear"``, or ``"cnn"``: a small convolutional network for images
  passed as flattened pixels, told their shape by ``backbone_params={"input_shape": (channels,
  height, width)}``;
- a :class:`torch.nn.Module` instance, deep-copied at ``fit`` (yours is never changed);
- a class or factory, called as ``backbone(n_features, n_components, **backbone_params)``, which
  lets grid search tune its settings through ``backbone_params``.

This example trains the built-in CNN on the 8 x 8 digits, and two networks written here: a module
instance and a factory class.
"""

# %%
# Data
# ----

import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from sklearn_triplet import TripletEmbedder

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)

# %%
# A module instance
# -----------------
# Any module that maps a float32 tensor ``(batch, 64)`` to ``(batch, n_components)`` will do. Its
# output width is the embedding's width (``n_components`` is then not used); the estimator adds
# the unit-norm scaling after it (``normalize=True``). The estimator trains a copy of it from the
# weights it has, so ``random_state`` cannot seed them: seed torch before building it for a
# repeatable fit.

torch.manual_seed(0)
instance = nn.Sequential(
    nn.Linear(64, 128),
    nn.LayerNorm(128),
    nn.GELU(),
    nn.Dropout(0.1),
    nn.Linear(128, 16),
)

# %%
# A factory class
# ---------------
# A class (or any callable) receives the data's width and ``n_components`` and returns the module;
# ``backbone_params`` feeds its other arguments. This one is a small network of residual blocks.


class ResidualMLP(nn.Module):
    def __init__(self, n_features, n_components, *, width=128, n_blocks=2):
        super().__init__()
        self.stem = nn.Linear(n_features, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU())
            for _ in range(n_blocks)
        )
        self.head = nn.Linear(width, n_components)

    def forward(self, x):
        h = self.stem(x)
        for block in self.blocks:
            h = h + block(h)
        return self.head(h)


# %%
# Four embedders
# --------------
# The CNN reshapes each row of 64 pixels to one 8 x 8 channel. A narrower CNN than the default
# (``channels=(16, 32)``) keeps this example fast on a CPU.

embedders = {
    "MLP (default)": TripletEmbedder(random_state=0),
    "CNN": TripletEmbedder(
        backbone="cnn",
        backbone_params={"input_shape": (1, 8, 8), "channels": (16, 32)},
        random_state=0,
    ),
    "module instance": TripletEmbedder(backbone=instance, random_state=0),
    "ResidualMLP factory": TripletEmbedder(
        backbone=ResidualMLP, backbone_params={"width": 128, "n_blocks": 2}, random_state=0
    ),
}
results = {}
for name, embedder in embedders.items():
    embedder.set_params(max_iter=20)
    start = time.perf_counter()
    embedder.fit(X_train, y_train)
    fit_time = time.perf_counter() - start
    n_parameters = sum(p.numel() for p in embedder.module_.parameters())
    results[name] = (embedder.score(X_test, y_test), fit_time, n_parameters)
    print(
        f"{name:<20} test MAP@R {results[name][0]:.4f}   fit {fit_time:5.1f} s   "
        f"{n_parameters:>7} parameters   embedding width {embedder.n_components_}"
    )

# %%
# The fitted network
# ------------------
# ``module_`` is the trained network: the backbone followed by the normalisation. The module you
# passed is left untouched.

print(embedders["CNN"].module_)
print("the instance passed in was not trained:", instance[0].weight.grad is None)

# %%
# Scores, training curves and cost
# --------------------------------

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
names = list(results)
bars = axes[0].barh(names, [results[n][0] for n in names], color="tab:blue")
axes[0].bar_label(
    bars, labels=[f"{results[n][0]:.3f}  ({results[n][1]:.1f} s)" for n in names], padding=3
)
axes[0].invert_yaxis()
axes[0].set_xlim(0, 1.25)
axes[0].set_xlabel("test MAP@R  (fit time)")
axes[0].set_title("retrieval quality by backbone")
for name, embedder in embedders.items():
    axes[1].plot(
        [row["epoch"] for row in embedder.history_],
        [row["loss"] for row in embedder.history_],
        label=name,
    )
axes[1].set_xlabel("epoch")
axes[1].set_ylabel("training loss (semi-hard triplets)")
axes[1].set_title("training loss per epoch")
axes[1].legend(fontsize="small")
plt.show()

# %%
# A custom module is exported like a built-in one: ``export_module`` returns the trained network
# on the CPU, ready for :func:`torch.jit.script` or :func:`torch.export.export`.

exported = embedders["ResidualMLP factory"].export_module()
with torch.inference_mode():
    same = np.allclose(
        exported(torch.from_numpy(np.asarray(X_test[:5], dtype=np.float32))).numpy(),
        embedders["ResidualMLP factory"].transform(X_test[:5]),
        atol=1e-6,
    )
print("exported module reproduces transform:", same)
