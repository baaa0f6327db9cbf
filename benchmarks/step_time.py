"""Time of one training step of each embedder at B = 128, and the share of its statistics.

On scikit-learn's digits (scaled to [0, 1]), with the default MLP (64 -> 256 -> 32, L2-normalised)
and each estimator's default loss, one thread, on the CPU. For a class-balanced batch of 128
target samples (10 classes x 12 on the digits), three figures per estimator:

- ``step``: forward, the loss without statistics (as ``fit`` calls it: the loss kernel, or before
  the consolidation the public function, with ``return_stats=False``), backward and the Adam step;
- ``step + stats``: the same with the loss and statistics as ``fit`` computes them, through the
  estimator's batch-loss hook, over a cycle of 16 batches (a loss may count part of its statistics
  on every 16th batch only); ``stats share`` is the part of this step the statistics take;
- ``fit / batch``: ``fit`` with ``max_iter`` epochs, divided by the number of batches: all that a
  training step really costs inside the estimator (sampling, statistics, the epoch's bookkeeping).

The hook is private and its signature changed with the consolidation of the package; the script
calls either form, so that it times the code before and after alike (point ``PYTHONPATH`` at the
other source tree).

Times are the fastest of ``--repeats`` rounds of ``--steps`` calls (``step`` and ``step + stats`` in
turn within each round), as the CPU time of the thread
(one torch thread: the time an idle core would take, whatever else runs on the machine) and as
wall-clock time.

    OMP_NUM_THREADS=1 python benchmarks/step_time.py
"""

import argparse
import datetime
import inspect
import os
import platform
import time

import numpy as np
import torch
from sklearn.datasets import load_digits

import sklearn_triplet
from sklearn_triplet import SiameseEmbedder, TripletEmbedder, losses
from sklearn_triplet.sampling import class_balanced_batches

# Batches per timed cycle of "step + stats": the longest period of a sampled statistic.
CYCLE = 16

ESTIMATORS = {
    "TripletEmbedder": (TripletEmbedder, losses.triplet_loss),
    "SiameseEmbedder": (SiameseEmbedder, losses.contrastive_loss),
}


def _fastest(functions, *, steps, repeats):
    """(thread CPU, wall) seconds per call of each function: the fastest of ``repeats`` rounds.

    A round makes ``steps`` calls of each function in turn, so that all of them see the same
    state of a shared machine.
    """
    best = [[float("inf"), float("inf")] for _ in functions]
    for function in functions:
        function()  # warm-up
    for _ in range(repeats):
        for function, (steps_of, record) in zip(functions, zip(steps, best)):
            cpu, wall = time.thread_time(), time.perf_counter()
            for _ in range(steps_of):
                function()
            record[0] = min(record[0], (time.thread_time() - cpu) / steps_of)
            record[1] = min(record[1], (time.perf_counter() - wall) / steps_of)
    return [tuple(record) for record in best]


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

    kernel = getattr(getattr(estimator, "_loss", None), "kernel", None)

    def bare():
        if kernel is not None:  # the consolidated package: the kernel, as fit calls it
            loss = kernel(module(xb), yb, **options).loss
        else:  # the former package: the public function, which fit called
            loss = loss_function(module(xb), yb, **options)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    hook = estimator._batch_loss
    takes_flags = "taxonomy" in inspect.signature(hook).parameters

    def with_stats():
        for i in range(CYCLE):
            embeddings = module(xb)
            if takes_flags:  # the consolidated hook: statistics as the training loop asks
                loss = hook(embeddings, yb, taxonomy=i == 0, spread=False)[0]
            else:  # the former hook: every statistic on every batch
                loss = hook(embeddings, yb)[0]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    cycles = max(1, steps // CYCLE)
    step, (cpu, wall) = _fastest(
        [bare, with_stats], steps=[cycles * CYCLE, cycles], repeats=repeats
    )
    figures = {"step": step, "step + stats": (cpu / CYCLE, wall / CYCLE)}
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
        f"sklearn-triplet from {os.path.dirname(sklearn_triplet.__file__)}, "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load average "
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
