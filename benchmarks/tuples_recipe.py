"""Which default recipe should PairEmbedder and ComparisonEmbedder have?

Candidates are parameter settings of the estimators themselves, fitted on every task of
``pairs.py`` at once (the digits and the digits with 200 noise features, from 500, 2,000 and
10,000 training pairs or triplets: six cells per estimator) and ranked on all of them together,
never per task. The figure of a cell is the KNN accuracy (k=5) of the test points against the
training points in the embedding, as in ``pairs.py``; beside it, the candidate's worst margin to
the better of KNN on the raw features and metric-learn's ITML on the same pairs (from the figures
``pairs.py`` stored in ``benchmarks/results/pairs.json``, same seeds), which the do-no-harm rule
asks to be at least 0.

Every fit goes to ``benchmarks/results/tuples_recipe.csv`` (a rerun skips those already there);
the summary to ``docs/benchmarks_tuples_recipe.rst``. One thread per fit; fit time is process CPU
time.

    python benchmarks/tuples_recipe.py --n-jobs 2          # every candidate, seed 0
    python benchmarks/tuples_recipe.py --seeds 0 1 2 --candidates "pairs: defaults"
    python benchmarks/tuples_recipe.py --seeds 0 1 2       # every candidate, three seeds
    python benchmarks/tuples_recipe.py --summary           # rewrite the summary from the CSV
"""

import argparse
import csv
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits

from sklearn_triplet import ComparisonEmbedder, PairEmbedder

sys.path.insert(0, str(Path(__file__).resolve().parent))

from environment import metadata, torch_threads, warm_up  # noqa: E402
from pairs import FULL, STORE, make_task, scores, training_pairs, training_triplets  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CSV_PATH = ROOT / "benchmarks" / "results" / "tuples_recipe.csv"
RST_PATH = ROOT / "docs" / "benchmarks_tuples_recipe.rst"
TASKS = ("digits", "digits + noise")
SIZES = FULL.sizes

# What the defaults were before this study: an MLP with L2-normalised output, Hadsell et al.'s
# loss averaged over all pairs (FaceNet's over all triplets), a constant rate, no do-no-harm.
_PREVIOUS = {
    "backbone": "mlp",
    "normalize": True,
    "average": "all",
    "learning_rate": "constant",
    "learning_rate_init": 1e-3,
    "do_no_harm": False,
}

# The defaults of the first study (seed 0 only; its figures are in
# benchmarks/results/tuples_recipe_first.csv): 32 components, a rate of 1e-3.
_FIRST = {"n_components": 32, "learning_rate_init": 1e-3}

# name: (estimator, parameters beyond its defaults)
CANDIDATES = {
    "pairs: defaults": (PairEmbedder, {}),
    "pairs: n_components=32": (PairEmbedder, {"n_components": 32}),
    "pairs: learning_rate_init=1e-3": (PairEmbedder, {"learning_rate_init": 1e-3}),
    "pairs: learning_rate_init=1e-4": (PairEmbedder, {"learning_rate_init": 1e-4}),
    "pairs: first study's defaults": (PairEmbedder, _FIRST),
    "pairs: previous defaults": (PairEmbedder, {**_PREVIOUS, **_FIRST, "squared": True}),
    "triplets: defaults": (ComparisonEmbedder, {}),
    "triplets: n_components=32": (ComparisonEmbedder, {"n_components": 32}),
    "triplets: learning_rate_init=1e-3": (ComparisonEmbedder, {"learning_rate_init": 1e-3}),
    "triplets: first study's defaults": (ComparisonEmbedder, _FIRST),
    "triplets: previous defaults": (ComparisonEmbedder, {**_PREVIOUS, **_FIRST}),
}
FIELDS = ("candidate", "task", "seed", "size", "knn_accuracy", "roc_auc", "raw_kept", "fit_cpu")


def run_one(name, task_name, seed):
    """Every size of one (candidate, task, seed): a list of CSV rows."""
    cls, params = CANDIDATES[name]
    rows = []
    with threadpool_limits(1), torch_threads(1):
        warm_up()
        task = make_task(task_name, FULL, seed)
        for size in SIZES:
            if cls is PairEmbedder:
                fit_args = training_pairs(task.y_train, size, seed)
            else:
                fit_args = (training_triplets(task.y_train, size, seed),)
            model = cls(
                points=task.X_train,
                max_iter=FULL.max_iter,
                device="cpu",
                random_state=seed,
                **params,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start = time.process_time()
                model.fit(*fit_args)
                fit_cpu = time.process_time() - start
            figures = scores(model.transform, task)
            rows.append(
                {
                    "candidate": name,
                    "task": task_name,
                    "seed": seed,
                    "size": size,
                    **{key: round(value, 4) for key, value in figures.items()},
                    "raw_kept": int(getattr(model, "raw_kept_", False)),
                    "fit_cpu": round(fit_cpu, 2),
                }
            )
    return rows


def load(path=CSV_PATH):
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def append(rows, path=CSV_PATH):
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def raw_knn(seeds):
    """``{task: KNN accuracy on the raw (standardised) features}``, medians over ``seeds``."""
    return {
        task: statistics.median(
            scores(lambda X: X, make_task(task, FULL, seed))["knn_accuracy"] for seed in seeds
        )
        for task in TASKS
    }


def references(seeds, *, itml=True):
    """``{(task, size): max(raw KNN, ITML) KNN accuracy}``, medians over ``seeds``: raw KNN
    measured here, ITML from the figures pairs.py stored (raw KNN alone without them, or with
    ``itml=False``)."""
    raw = raw_knn(seeds)
    out = {(task, size): raw[task] for task in TASKS for size in SIZES}
    if not itml or not STORE.exists():
        return out
    with open(STORE, encoding="utf-8") as f:
        stored = json.load(f).get(FULL.name, {}).get("results", [])
    by_cell = {}
    for r in stored:
        if r["seed"] in seeds and r["result"]["status"] == "ok":
            if r["contestant"] in ("KNN on the raw features", "ITML (metric-learn)"):
                by_cell.setdefault((r["task"], r["size"], r["contestant"]), []).append(
                    r["result"]["knn_accuracy"]
                )
    for task in TASKS:
        for size in SIZES:
            itml = by_cell.get((task, size, "ITML (metric-learn)"))
            if itml and len(itml) == len(seeds):
                out[task, size] = max(out[task, size], statistics.median(itml))
    return out


def summary(rows):
    """Per estimator, the candidates that do no harm on any cell (worst margin at least 0), then
    the others, each group by its mean rank over the six cells."""
    seeds = sorted({int(r["seed"]) for r in rows})
    # pairs answer to the better of raw KNN and ITML (which learns from the same pairs); triplets
    # to raw KNN
    refs = {"pairs": references(seeds), "triplets": references(seeds, itml=False)}
    cells = [(task, size) for task in TASKS for size in SIZES]
    means = {}
    for r in rows:
        means.setdefault((r["candidate"], r["task"], int(r["size"])), []).append(
            float(r["knn_accuracy"])
        )
    tables = {}
    for kind in ("pairs", "triplets"):
        names = [n for n in CANDIDATES if n.startswith(kind) and (n, *cells[0]) in means]
        names = [n for n in names if all((n, *cell) in means for cell in cells)]
        value = {(n, cell): statistics.median(means[(n, *cell)]) for n in names for cell in cells}
        ranks = {n: 0.0 for n in names}
        for cell in cells:
            ordered = sorted(names, key=lambda n: -value[n, cell])
            for n in names:  # ties share the best rank
                ranks[n] += 1 + sum(value[m, cell] > value[n, cell] for m in ordered)
        # the worst margin to the references, to the figures' precision (+ 0.0: no "-0.000")
        worst = {
            n: round(min(value[n, cell] - refs[kind][cell] for cell in cells), 3) + 0.0
            for n in names
        }
        table = []
        # Those that do no harm on any cell first, then by mean rank.
        for n in sorted(names, key=lambda n: (worst[n] < 0, ranks[n])):
            table.append(
                [n, f"{ranks[n] / len(cells):.2f}"]
                + [f"{value[n, cell]:.3f}" for cell in cells]
                + [f"{worst[n]:+.3f}"]
            )
        raw = raw_knn(seeds)
        table.append(
            ["KNN on the raw features", "-"] + [f"{raw[task]:.3f}" for task, _ in cells] + ["-"]
        )
        tables[kind] = table
    return seeds, cells, tables


def rst(rows, meta):
    seeds, cells, tables = summary(rows)
    header = ["candidate", "mean rank"]
    header += [f"{task}, {size:,}" for task, size in cells] + ["worst margin"]
    lines = [
        ".. This file is written by benchmarks/tuples_recipe.py; edit the script, not this file.",
        "",
        f"Measured on {meta['date']} with ``{meta['command']}`` on {meta['cpu']} ({meta['cores']} "
        f"cores, load average {meta['load']} at the start; one thread per fit); seeds "
        f"{', '.join(map(str, seeds))}. Versions: {', '.join(meta['versions'])}.",
        "",
        "KNN accuracy (k=5) of the test points, medians over the seeds, per task and number of "
        "training pairs or triplets. *mean rank*: the candidate's rank among its estimator's "
        "candidates in each of the six cells, averaged; lower is better. *worst margin*: the "
        "smallest difference, over the cells, to KNN on the raw features (and, for pairs, to "
        "metric-learn's ITML on the same pairs when ``pairs.py`` stored its figures for these "
        "seeds); at least "
        "0 means no harm done on any cell. The candidates that do no harm come first, then the "
        "others, each group by mean rank: a default must do no harm before it ranks. Candidates "
        "name what they change from the defaults; "
        "*first study's defaults* are those of the first, one-seed study (32 components, a rate "
        "of 1e-3), *previous defaults* those before it (an MLP with normalised output, the "
        "papers' losses averaged over all tuples, a constant rate of 1e-3, no do-no-harm).",
        "",
    ]
    for kind, table in tables.items():
        lines += [f".. list-table:: From {kind}", "   :header-rows: 1", ""]
        for row in [header] + table:
            lines.append(f"   * - {row[0]}")
            lines += [f"     - {cell}" for cell in row[1:]]
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), metavar="NAME")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--summary", action="store_true", help="only rewrite the summary")
    args = parser.parse_args(argv)
    meta = metadata("tuples_recipe.py", argv)
    done = {(r["candidate"], r["task"], int(r["seed"])) for r in load()}
    if not args.summary:
        jobs = [
            (name, task, seed)
            for name in args.candidates or CANDIDATES
            for task in TASKS
            for seed in args.seeds
            if (name, task, seed) not in done
        ]
        outputs = Parallel(n_jobs=args.n_jobs, return_as="generator_unordered")(
            delayed(run_one)(*job) for job in jobs
        )
        for rows in outputs:
            append(rows)
            for r in rows:
                print(
                    f"{r['candidate']:<36} {r['task']:<15} s{r['seed']} {r['size']:>6}  "
                    f"KNN {r['knn_accuracy']:.3f}  AUC {r['roc_auc']:.3f}  raw {r['raw_kept']}  "
                    f"{r['fit_cpu']:.1f}s",
                    flush=True,
                )
    RST_PATH.write_text(rst(load(), meta), encoding="utf-8")
    print(f"wrote {RST_PATH}")


if __name__ == "__main__":
    main()
