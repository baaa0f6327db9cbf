"""Unseen classes, as in FaceNet: train on digits 0-6, evaluate retrieval and verification on 7-9.

Retrieval: leave-one-out precision@1 and MAP@R among the samples of digits 7-9, in the learned
embedding and on raw pixels. Verification: 2,000 labelled pairs of digits 7-9, split in half; a
PairVerifier calibrates its threshold on one half and is scored (accuracy, ROC AUC) on the other.

    python benchmarks/unseen_classes.py
"""

import argparse
import time

import torch
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from sklearn_triplet import SiameseEmbedder, TripletEmbedder
from sklearn_triplet.distances import paired_distances
from sklearn_triplet.metrics import retrieval_scores
from sklearn_triplet.verification import PairVerifier, make_pairs


def verification(E, y, seed):
    X1, X2, same = make_pairs(E, y, n_pairs=2000, random_state=seed)
    d = paired_distances(X1, X2)
    half = d.shape[0] // 2
    verifier = PairVerifier().fit(d[:half], same[:half])
    test_d, test_same = d[half:], same[half:]
    return verifier.score(test_d, test_same), roc_auc_score(
        test_same, verifier.decision_function(test_d)
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    seen = y <= 6
    rs = args.random_state
    rows = {"raw pixels": (X[~seen], 0.0)}
    for Estimator in (TripletEmbedder, SiameseEmbedder):
        start = time.perf_counter()
        est = Estimator(random_state=rs).fit(X[seen], y[seen])
        rows[Estimator.__name__] = (est.transform(X[~seen]), time.perf_counter() - start)
    print(
        f"# {time.strftime('%Y-%m-%d')}; train on digits 0-6 ({seen.sum()} samples), "
        f"evaluate on 7-9 ({(~seen).sum()} samples); random_state={rs}"
    )
    print("| representation | precision@1 | MAP@R | verification accuracy | ROC AUC | fit s |")
    print("|---|---|---|---|---|---|")
    for name, (E, fit_s) in rows.items():
        scores = retrieval_scores(E, y[~seen])
        acc, auc = verification(E, y[~seen], rs)
        print(
            f"| {name} | {scores['precision_at_1']:.4f} | {scores['map_at_r']:.4f} | {acc:.4f} | "
            f"{auc:.4f} | {fit_s:.1f} |"
        )


if __name__ == "__main__":
    main()
