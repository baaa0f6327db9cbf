"""The main job: ``python -m sklearn_triplet``.

Fits ``TripletEmbedder`` + KNN on scikit-learn's bundled digits (a stratified 75/25 split) and
prints the test accuracy of KNN on the raw pixels, on the learned embedding, and on scikit-learn's
NeighborhoodComponentsAnalysis for comparison, with the fit times.
"""

import argparse
import time

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier, NeighborhoodComponentsAnalysis
from sklearn.pipeline import Pipeline

from ._siamese import SiameseEmbedder
from ._triplet import TripletEmbedder
from ._version import __version__

# The --help text: plain words, as a terminal shows them (the module docstring is reStructuredText).
DESCRIPTION = (
    "The main job of sklearn-triplet: fit TripletEmbedder and SiameseEmbedder, each followed by "
    "a 5-nearest-neighbours classifier, on scikit-learn's bundled digits (a stratified 75/25 "
    "split), and print the test accuracy and fit time of each, beside KNN on the raw pixels and "
    "after NeighborhoodComponentsAnalysis."
)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sklearn_triplet", description=DESCRIPTION)
    parser.add_argument(
        "--random-state", type=int, default=0, help="seed of the split and the models"
    )
    parser.add_argument(
        "--verbose", type=int, default=0, help="verbosity of the embedders (0, 1, 2)"
    )
    args = parser.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=args.random_state
    )
    rs, verbose = args.random_state, args.verbose
    models = {
        "KNN on raw pixels": KNeighborsClassifier(),
        "TripletEmbedder + KNN": Pipeline(
            [
                ("emb", TripletEmbedder(random_state=rs, verbose=verbose)),
                ("knn", KNeighborsClassifier()),
            ]
        ),
        "SiameseEmbedder + KNN": Pipeline(
            [
                ("emb", SiameseEmbedder(random_state=rs, verbose=verbose)),
                ("knn", KNeighborsClassifier()),
            ]
        ),
        "NCA + KNN": Pipeline(
            [
                ("nca", NeighborhoodComponentsAnalysis(random_state=rs)),
                ("knn", KNeighborsClassifier()),
            ]
        ),
    }
    print(
        f"sklearn-triplet {__version__}: load_digits, stratified 75/25 split "
        f"({len(y_train)} train, {len(y_test)} test), random_state={rs}"
    )
    # torch imports its compiler stack the first time an optimiser is built (seconds, once per
    # process): pay it here so it is not charged to whichever model happens to be timed first.
    start = time.perf_counter()
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    print(
        f"(torch's one-time optimiser import: {time.perf_counter() - start:.1f} s, "
        "not counted below)"
    )
    print(f"{'model':<24} {'test accuracy':>13} {'fit time (s)':>13}")
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(X_train, y_train)
        elapsed = time.perf_counter() - start
        print(f"{name:<24} {model.score(X_test, y_test):>13.4f} {elapsed:>13.2f}", flush=True)


if __name__ == "__main__":
    main()
