"""Which 2-D projection shows the structure a KNN sees in an embedding?

``EmbeddingDisplay`` draws an embedding wider than two components through a projection. This script
compares candidate projections on embeddings of scikit-learn's digits (the 450 test digits of a
stratified 75/25 split, and all 1,797):

- ``TripletEmbedder`` with its defaults (``random_state=0``), fitted on the training digits;
- the raw pixels, standardised (an embedding that was not trained for KNN at all).

For each projection it reports:

- ``knn_2d``: leave-one-out 5-NN accuracy on the 2-D points, beside ``knn_full``, the same on the
  embedding itself: a view that shows what a KNN sees keeps the first close to the second;
- ``trust``: :func:`sklearn.manifold.trustworthiness` with 10 neighbours (1 when the neighbours of
  each point in 2-D are neighbours in the embedding too);
- ``seconds``: wall time of ``fit_transform``, one thread.

A second table times the fastest candidates on larger random embeddings (Gaussian class clusters
in 32 dimensions), to see how the cost grows with the number of points.

Run from the repository root::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/projections.py
"""

import argparse
import platform
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.manifold import MDS, TSNE, Isomap, SpectralEmbedding, trustworthiness
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from sklearn_triplet import TripletEmbedder


def _candidates(n_samples):
    perplexity = min(30.0, max(1.0, (n_samples - 1) / 3))
    return {
        "pca": lambda: PCA(n_components=2, random_state=0),
        "tsne": lambda: TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0),
        "isomap": lambda: Isomap(n_components=2, n_neighbors=10),
        "spectral": lambda: SpectralEmbedding(n_components=2, n_neighbors=10, random_state=0),
        "mds": lambda: MDS(n_components=2, random_state=0, n_init=1, init="random"),
    }


def _knn_accuracy(points, y, k=5):
    """Leave-one-out k-NN accuracy: each point voted on by its k nearest others."""
    _, neighbours = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    votes = y[neighbours[:, 1:]]
    predicted = np.array([np.bincount(row, minlength=y.max() + 1).argmax() for row in votes])
    return float(np.mean(predicted == y))


def quality(skip):
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    embedder = TripletEmbedder(random_state=0).fit(X_train, y_train)
    scaler = StandardScaler().fit(X_train)
    embeddings = {
        "TripletEmbedder, 450 test digits": (embedder.transform(X_test), y_test),
        "TripletEmbedder, 1797 digits": (embedder.transform(X), y),
        "standardised pixels, 450 test digits": (scaler.transform(X_test), y_test),
    }
    print(
        f"{'embedding':<38} {'projection':<10} {'knn_2d':>7} {'knn_full':>8} {'trust':>6} "
        f"{'seconds':>8}"
    )
    for name, (embedding, labels) in embeddings.items():
        knn_full = _knn_accuracy(embedding, labels)
        for projection, make in _candidates(len(labels)).items():
            if projection in skip:
                continue
            start = time.perf_counter()
            points = make().fit_transform(embedding)
            seconds = time.perf_counter() - start
            trust = trustworthiness(embedding, points, n_neighbors=10)
            print(
                f"{name:<38} {projection:<10} {_knn_accuracy(points, labels):>7.3f} "
                f"{knn_full:>8.3f} {trust:>6.3f} {seconds:>8.2f}",
                flush=True,
            )


def cost(sizes):
    rng = np.random.default_rng(0)
    print(f"\n{'n_samples':>9} {'projection':<10} {'seconds':>8}")
    for n in sizes:
        centres = rng.normal(size=(20, 32))
        embedding = centres[rng.integers(20, size=n)] + 0.3 * rng.normal(size=(n, 32))
        for projection in ("pca", "tsne"):
            make = _candidates(n)[projection]
            start = time.perf_counter()
            make().fit_transform(embedding)
            print(f"{n:>9} {projection:<10} {time.perf_counter() - start:>8.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip", default="", help="comma-separated projections to leave out")
    parser.add_argument("--sizes", default="2000,5000,10000", help="sizes of the cost table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.processor() or platform.machine()}, "
        f"load average {', '.join(f'{v:.2f}' for v in __import__('os').getloadavg())}"
    )
    with threadpool_limits(limits=1):
        quality(set(filter(None, args.skip.split(","))))
        cost([int(n) for n in args.sizes.split(",") if n])


if __name__ == "__main__":
    main()
