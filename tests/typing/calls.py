"""Ordinary calls of every public estimator, as users write them: checked by the type checker.

``.ci/typecheck`` runs basedpyright over this file (with the package, the README's code and the
gallery); a keyword an editor could not see, or a value of a type the signature does not accept,
is an error there. The test suite also runs it, so it stays runnable.
"""

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from sklearn_triplet import (
    ComparisonEmbedder,
    PairEmbedder,
    SiameseEmbedder,
    TripletEmbedder,
    load,
)
from sklearn_triplet.plotting import HistoryDisplay


class SmallNet(torch.nn.Module):
    hidden: torch.nn.Linear
    out: torch.nn.Linear

    def __init__(self, n_features: int, n_components: int, width: int = 16):
        super().__init__()
        self.hidden = torch.nn.Linear(n_features, width)
        self.out = torch.nn.Linear(width, n_components)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x)))


def calls(path: str = "embedder.safetensors") -> None:
    X, y = load_digits(return_X_y=True)
    X = np.asarray(X, dtype=np.float32) / 16
    y = np.asarray(y)

    triplet = TripletEmbedder(
        16,
        backbone="mlp",
        hidden_layer_sizes=(64, 32),
        normalize=True,
        metric="cosine",
        margin=0.3,
        mining="semi-hard",
        average="all",
        init="auto",
        batch_size=64,
        samples_per_class=4,
        max_iter=2,
        learning_rate="constant",
        learning_rate_init=1e-3,
        weight_decay=1e-4,
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=5,
        tol=1e-3,
        device="cpu",
        n_threads=1,
        random_state=0,
        verbose=0,
    )
    model = make_pipeline(triplet, KNeighborsClassifier()).fit(X, y)
    accuracy: float = model.score(X, y)

    siamese = SiameseEmbedder(
        n_components=8,
        backbone=SmallNet,
        backbone_params={"width": 32},
        hidden_layer_sizes=64,
        margin=1.0,
        mining="hard",
        squared=True,
        max_iter=1,
        device=torch.device("cpu"),
        callback=lambda estimator, epoch, logs: epoch >= 1,
        random_state=np.random.RandomState(0),
    ).fit(X, y)
    embedding: np.ndarray = siamese.transform(X[:5])
    HistoryDisplay.from_estimator(siamese)

    linear = TripletEmbedder(n_components=8, backbone="linear", init="pca", max_iter=1)
    linear.fit(X, y).save(path)
    loaded = load(path, trusted=[])
    loaded.transform(X[:2])

    rng = np.random.default_rng(0)
    pairs = rng.integers(len(X), size=(200, 2))
    same = np.where(y[pairs[:, 0]] == y[pairs[:, 1]], 1, -1)
    pair = PairEmbedder(
        n_components=8,
        points=X,
        margin=0.5,
        threshold="far",
        target_far=0.05,
        batch_size=32,
        max_iter=1,
        random_state=0,
    ).fit(pairs, same)
    predicted: np.ndarray = pair.predict(pairs[:5])
    distances: np.ndarray = pair.pair_distance(pairs[:5])
    PairEmbedder(points=X, threshold=0.4, max_iter=1).fit(pairs, same)

    triplets = rng.integers(len(X), size=(200, 3))
    comparison = ComparisonEmbedder(
        n_components=4, points=X, margin=0.2, max_iter=1, checkpoint=None, random_state=0
    ).fit(triplets)
    order: float = comparison.score(triplets)
    print(accuracy, embedding.shape, predicted, distances, order)
