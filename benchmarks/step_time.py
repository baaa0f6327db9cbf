"""Time of one training step of each embedder at B = 128, and the share of its statistics.

On scikit-learn's digits (scaled to [0, 1]), with the default MLP (64 -> 256 -> 32, L2-normalised)
and each estimator's default loss, one thread, on the CPU. For a class-balanced batch of 128
target samples (10 classes x 12 on the digits), three figures per estimator:

- ``step``: forward, the loss without statistics, backward and the Adam step;
- ``step + stats``: the same with the loss's ``return_stats=True``, which is what a step cost when
  every batch reported its statistics;
- ``fit / batch``: ``fit`` with ``max_iter`` epochs, divided by the number of batches: all that a
  training step really costs inside the estimator (sampling, statistics, the epoch's bookkeeping).

Times are the fastest of ``--repeats`` rounds of ``--steps`` calls, as the CPU time of the thread
(one torch thread: the time an idle core would take, whatever else runs on the machine) and as
wall-clock time.

    OMP_NUM_THREADS=1 python benchmarks/step_time.py
"""

import argparse
import datetime
import os
import platform
import time

import numpy as np
import torch
from sklearn.datasets import load_digits

import sklearn_triplet
from sklearn_triplet import SiameseEmbedder, TripletEmbedder, losses
from sklearn_triplet.sampling import class_balanced_batches

ESTIMATORS = {
    "TripletEmbedder": (TripletEmbedder, losses.triplet_loss),
    "SiameseEmbedder": (SiameseEmbedder, losses.contrastive_loss),
}


def _fastest(function, *, steps, repeats):
    """(thread CPU, wall) seconds per call: the fastest of ``repeats`` rounds of ``steps`` calls."""
    function()  # warm-up
    best_cpu = best_wall = float("inf")
    for _ in range(repeats):
        cpu, wall = time.thread_time(), time.perf_counter()
        for _ in range(steps):
            function()
        best_cpu = min(best_cpu, (time.thread_time() - cpu) / steps)
        best_wall = min(best_wall, (time.perf_counter() - wall) / steps)
    return best_cpu, best_wall


def measure(name, *, batch_size, max_iter, steps, repeats):
    Estimator, loss_function = ESTIMATORS[name]
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    estimator = Estimator(batch_size=batch_size, max_iter=1, device="cpu", random_state=0)
    estimator.fit(X, y)
    params = estimator.get_params()
    options = dict(margin=params["margin"], mining=params["mining"], metric=params["metric"])
    module = estimator.module_.train()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    indices = next(
        class_balanced_batches(
            y,
            batch_size=batch_size,
            samples_per_class=params["samples_per_class"],
            n_batches=1,
            rng=np.random.default_rng(0),
        )
    )
    xb, yb = torch.from_numpy(X[indices]), torch.from_numpy(y[indices])

    def step(return_stats):
        def run():
            loss = loss_function(module(xb), yb, return_stats=return_stats, **options)
            loss = loss[0] if return_stats else loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return run

    figures = {
        "step": _fastest(step(False), steps=steps, repeats=repeats),
        "step + stats": _fastest(step(True), steps=steps, repeats=repeats),
    }
    n_batches = -(-X.shape[0] // batch_size) * max_iter
    best = (float("inf"), float("inf"))
    for _ in range(max(1, repeats // 2)):
        cpu, wall = time.thread_time(), time.perf_counter()
        Estimator(batch_size=batch_size, max_iter=max_iter, device="cpu", random_state=0).fit(X, y)
        elapsed = ((time.thread_time() - cpu) / n_batches, (time.perf_counter() - wall) / n_batches)
        best = min(best, elapsed)
    figures["fit / batch"] = best
    return len(indices), figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-iter", type=int, default=10, help="epochs of the timed fit")
    parser.add_argument("--steps", type=int, default=50, help="calls per round")
    parser.add_argument("--repeats", type=int, default=5, help="rounds; the fastest is kept")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # torch's one-time optimiser import
    print(
        f"sklearn-triplet {sklearn_triplet.__version__}, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}, {datetime.datetime.now():%Y-%m-%d %H:%M}"
    )
    print(f"{'estimator':<16} {'B':>4} {'figure':<13} {'CPU ms':>8} {'wall ms':>8}")
    for name in ESTIMATORS:
        batch, figures = measure(
            name,
            batch_size=args.batch_size,
            max_iter=args.max_iter,
            steps=args.steps,
            repeats=args.repeats,
        )
        for figure, (cpu, wall) in figures.items():
            print(f"{name:<16} {batch:>4} {figure:<13} {1e3 * cpu:>8.3f} {1e3 * wall:>8.3f}")
        stats_share = 1 - figures["step"][0] / figures["step + stats"][0]
        print(f"{name:<16} {batch:>4} {'stats share':<13} {100 * stats_share:>7.1f}%")


if __name__ == "__main__":
    main()
