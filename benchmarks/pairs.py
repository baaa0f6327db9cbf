"""Learning from pairs and triplets alone: PairEmbedder and ComparisonEmbedder against metric-learn.

Tasks: scikit-learn's ``load_digits`` (``digits``), and the same with 200 standard Gaussian
features added (``digits + noise``); a stratified 75/25 split, features standardised by a
``StandardScaler`` fitted on the training split, the same for every contestant.

Supervision. From the labels of the training split (1,347 points) the script draws 500, 2,000 and
10,000 training pairs with :func:`sklearn_triplet.verification.make_pairs` (half similar, half
dissimilar, +1 / -1) and as many triplets (anchor uniform, positive of its class, negative of
another, each uniform). The tuple learners never see a label, only these index tuples into the
standardised training points:

- ``PairEmbedder`` on the pairs, ``ComparisonEmbedder`` on the triplets, default parameters;
- metric-learn's pair learners ``ITML`` and ``MMC`` on the same pairs, default parameters, and
  ``MMC(diagonal=True)``. Full ``MMC`` runs on ``digits`` only: at 264 features one fit takes over
  four CPU-minutes (it is reported as skipped).

For reference, contestants given every label of the training split: KNN on the raw (standardised)
features, scikit-learn's ``NeighborhoodComponentsAnalysis`` (32 components) and our
``TripletEmbedder`` and ``SiameseEmbedder`` with default parameters.

metric-learn 0.7.0 calls scikit-learn's ``check_array`` / ``check_X_y`` with ``force_all_finite``,
which scikit-learn 1.8 renamed ``ensure_all_finite``; on such versions this script (and nothing
else) wraps the two functions that ``metric_learn._util`` imported so that they rename the keyword.

Figures, medians over the seeds: KNN accuracy (k=5) of the test points against the training
points in each embedding, and the ROC AUC of 2,000 held-out pairs of test points (half similar),
ranked by their distance in the embedding. Fit time is process CPU time on one thread.

Every figure of a run is stored, per seed, in ``benchmarks/results/pairs.json`` with the run that
measured it; ``--contestants`` refits only the contestants named (after a change to the library,
say) and the tables show the stored figures of the others, each run's date and command listed.

    python benchmarks/pairs.py --quick        # one seed, 500 and 2,000 tuples, 10 epochs
    python benchmarks/pairs.py --output docs/benchmarks_pairs.rst
    python benchmarks/pairs.py --contestants PairEmbedder ComparisonEmbedder \
        --output docs/benchmarks_pairs.rst    # refit these two, keep the others' figures
"""

import argparse
import dataclasses
import functools
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier, NeighborhoodComponentsAnalysis
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from sklearn_triplet import ComparisonEmbedder, PairEmbedder, SiameseEmbedder, TripletEmbedder
from sklearn_triplet.distances import paired_distances
from sklearn_triplet.verification import make_pairs

sys.path.insert(0, str(Path(__file__).resolve().parent))

import environment  # noqa: E402
from environment import metadata, torch_threads, warm_up  # noqa: E402

STORE = Path(__file__).resolve().parent / "results" / "pairs.json"
N_NEIGHBORS = 5
N_TEST_PAIRS = 2000


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    seeds: tuple
    sizes: tuple  # training pairs, and as many triplets
    max_iter: int  # epochs of our networks
    n_noise_features: int = 200
    max_samples: int = None  # stratified subsample of the digits (for smoke tests)


FULL = Config(name="full", seeds=(0, 1, 2), sizes=(500, 2000, 10000), max_iter=50)
QUICK = dataclasses.replace(FULL, name="quick", seeds=(0,), sizes=(500, 2000), max_iter=10)


# -- data ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Task:
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    test_pairs: np.ndarray  # (N_TEST_PAIRS, 2) indices into X_test
    test_same: np.ndarray


def make_task(name, config, seed):
    X, y = load_digits(return_X_y=True)
    if name == "digits + noise":
        noise = np.random.default_rng(seed).standard_normal((X.shape[0], config.n_noise_features))
        X = np.hstack([X, noise])
    if config.max_samples is not None:
        X, _, y, _ = train_test_split(
            X, y, train_size=config.max_samples, stratify=y, random_state=seed
        )
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=seed
    )
    scaler = StandardScaler().fit(X_train)
    first, second, same = make_pairs(
        _ids(y_test), y_test, n_pairs=N_TEST_PAIRS, random_state=seed + 1000
    )
    return Task(
        scaler.transform(X_train),
        y_train,
        scaler.transform(X_test),
        y_test,
        np.hstack([first, second]),
        same,
    )


def _ids(y):
    return np.arange(y.shape[0])[:, None]


def training_pairs(y, n_pairs, seed):
    """``(pairs, y_pairs)``: index pairs into the training points, +1 similar / -1 dissimilar."""
    first, second, same = make_pairs(_ids(y), y, n_pairs=n_pairs, random_state=seed)
    return np.hstack([first, second]), np.where(same, 1, -1)


def training_triplets(y, n_triplets, seed):
    """Index triplets ``(a, p, n)``: ``p`` of the class of ``a`` (not ``a``), ``n`` of another.

    The anchor is uniform over the points, the positive and the negative uniform among those
    allowed.
    """
    rng = np.random.default_rng(seed)
    classes, codes = np.unique(y, return_inverse=True)
    by_class = [np.flatnonzero(codes == c) for c in range(classes.shape[0])]
    anchors = rng.integers(y.shape[0], size=n_triplets)
    positives, negatives = np.empty_like(anchors), np.empty_like(anchors)
    for i, a in enumerate(anchors):
        members = by_class[codes[a]]  # sorted, and holding a
        k = rng.integers(members.shape[0] - 1)
        positives[i] = members[k + (k >= np.searchsorted(members, a))]
        others = np.flatnonzero(codes != codes[a])
        negatives[i] = others[rng.integers(others.shape[0])]
    return np.stack([anchors, positives, negatives], axis=1)


# -- metric-learn, with the shim ------------------------------------------------------------------


class NotRun(Exception):
    """A contestant that is not installed, or skipped by design."""


def metric_learn():
    """metric-learn through the shim of ``environment.py`` (a keyword renamed by scikit-learn)."""
    try:
        return environment.metric_learn()
    except ImportError as exc:
        raise NotRun("metric-learn is not installed") from exc


# -- contestants -----------------------------------------------------------------------------------


def _ours(cls, **params):
    def build(config, seed, task_name, points):
        return cls(
            points=points, max_iter=config.max_iter, device="cpu", random_state=seed, **params
        )

    return build


def _itml(config, seed, task_name, points):
    return metric_learn().ITML(preprocessor=points, random_state=seed)


def _mmc(diagonal):
    def build(config, seed, task_name, points):
        if not diagonal and task_name == "digits + noise":
            raise NotRun("over four CPU-minutes per fit at 264 features")
        return metric_learn().MMC(preprocessor=points, diagonal=diagonal, random_state=seed)

    return build


# name: (supervision, builder); supervision is "pairs" or "triplets".
TUPLE_CONTESTANTS = {
    "PairEmbedder": ("pairs", _ours(PairEmbedder)),
    "ComparisonEmbedder": ("triplets", _ours(ComparisonEmbedder)),
    "ITML (metric-learn)": ("pairs", _itml),
    "MMC (metric-learn)": ("pairs", _mmc(diagonal=False)),
    "MMC, diagonal=True (metric-learn)": ("pairs", _mmc(diagonal=True)),
}

LABEL_CONTESTANTS = {
    "KNN on the raw features": lambda config, seed: None,
    "NCA (scikit-learn)": lambda config, seed: NeighborhoodComponentsAnalysis(
        n_components=32, random_state=seed
    ),
    "TripletEmbedder": lambda config, seed: TripletEmbedder(
        max_iter=config.max_iter, device="cpu", random_state=seed
    ),
    "SiameseEmbedder": lambda config, seed: SiameseEmbedder(
        max_iter=config.max_iter, device="cpu", random_state=seed
    ),
}


# -- evaluation ------------------------------------------------------------------------------------


def scores(transform, task):
    """KNN accuracy of the test points against the training points, and held-out pair ROC AUC."""
    E_train, E_test = transform(task.X_train), transform(task.X_test)
    knn = KNeighborsClassifier(n_neighbors=N_NEIGHBORS).fit(E_train, task.y_train)
    pairs = task.test_pairs
    distances = paired_distances(E_test[pairs[:, 0]], E_test[pairs[:, 1]])
    return {
        "knn_accuracy": float(knn.score(E_test, task.y_test)),
        "roc_auc": float(roc_auc_score(task.test_same, -distances)),
    }


def _fit_and_score(build, fit_args, task):
    try:
        model = build()
    except NotRun as exc:
        return {"status": "not run", "error": str(exc)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation and convergence chatter
            start = time.process_time()
            if model is not None:
                model.fit(*fit_args)
            fit_cpu = time.process_time() - start
            transform = (lambda X: X) if model is None else model.transform
            return {"status": "ok", "fit_cpu": fit_cpu, **scores(transform, task)}
    except Exception as exc:  # noqa: BLE001 (a peer that fails with these versions)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {"status": "failed", "error": f"{type(exc).__name__}: {message}"}


def run_job(config, task_name, seed, names=None):
    """Contestants ``names`` (None: all) on one (task, seed): ``{(contestant, size): result}``."""
    with threadpool_limits(1), torch_threads(1):
        warm_up()
        task = make_task(task_name, config, seed)
        results = {}
        for size in config.sizes:
            pairs, y_pairs = training_pairs(task.y_train, size, seed)
            triplets = training_triplets(task.y_train, size, seed)
            for name, (supervision, builder) in TUPLE_CONTESTANTS.items():
                if names is not None and name not in names:
                    continue
                fit_args = (pairs, y_pairs) if supervision == "pairs" else (triplets,)
                build = functools.partial(builder, config, seed, task_name, task.X_train)
                results[name, size] = _fit_and_score(build, fit_args, task)
        for name, builder in LABEL_CONTESTANTS.items():
            if names is not None and name not in names:
                continue
            build = functools.partial(builder, config, seed)
            results[name, "labels"] = _fit_and_score(build, (task.X_train, task.y_train), task)
    return task_name, seed, results


def run(config, *, tasks, n_jobs=2, log=print, names=None, stored=None):
    """``{task: {(contestant, size): [result per seed]}}``.

    ``names`` (None: all) are fitted; the figures of the others come from ``stored``, results of
    earlier runs as :func:`load_store` reads them (``{(task, seed, contestant, size): result}``).
    """
    jobs = [(task, seed) for task in tasks for seed in config.seeds]
    outputs = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
        delayed(run_job)(config, task, seed, names) for task, seed in jobs
    )
    by_seed = {task: {} for task in tasks}
    for task, seed, results in outputs:
        for key, result in results.items():
            by_seed[task].setdefault(key, {})[seed] = result
            log(f"{task:<15} seed {seed}  {key[0]:<40} {key[1]!s:>6}  {_short(result)}")
    for (task, seed, name, size), result in (stored or {}).items():
        if task in by_seed and seed in config.seeds and (names is None or name not in names):
            by_seed[task].setdefault((name, size), {})[seed] = result
    return {
        task: {key: [runs[s] for s in config.seeds] for key, runs in by_key.items()}
        for task, by_key in by_seed.items()
    }


def load_store(path, config):
    """``(runs, {(task, seed, contestant, size): result})`` stored for ``config``'s mode."""
    if not Path(path).exists():
        return [], {}
    with open(path, encoding="utf-8") as f:
        store = json.load(f).get(config.name, {"runs": [], "results": []})
    results = {
        (r["task"], r["seed"], r["contestant"], r["size"]): r["result"] for r in store["results"]
    }
    return store["runs"], results


def save_store(path, config, runs, results):
    """Write ``runs`` and ``results`` (as :func:`load_store` returns them) for ``config``'s mode."""
    store = {}
    if Path(path).exists():
        with open(path, encoding="utf-8") as f:
            store = json.load(f)
    store[config.name] = {
        "runs": runs,
        "results": [
            {"task": task, "seed": seed, "contestant": name, "size": size, "result": result}
            for (task, seed, name, size), result in sorted(results.items(), key=str)
        ],
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(store, f, indent=1)
        f.write("\n")


def _short(result):
    if result["status"] != "ok":
        return f"{result['status']}: {result['error']}"
    return (
        f"KNN {result['knn_accuracy']:.3f}  AUC {result['roc_auc']:.3f}  "
        f"fit {result['fit_cpu']:.1f}s CPU"
    )


# -- tables ----------------------------------------------------------------------------------------


def _median(runs, key):
    ok = [r[key] for r in runs if r["status"] == "ok"]
    return statistics.median(ok) if ok else None


def _cell(runs, key, fmt):
    value = _median(runs, key)
    if value is None:
        return runs[0]["status"]
    return fmt.format(value)


def tables(results, config):
    """``{task: (tuple_rows, label_rows, notes)}`` of median figures."""
    out = {}
    for task, by_key in results.items():
        tuple_rows, label_rows, notes = [], [], []
        for name, (supervision, _) in TUPLE_CONTESTANTS.items():
            if (name, config.sizes[0]) not in by_key:  # neither fitted nor stored
                continue
            runs = [by_key[name, size] for size in config.sizes]
            row = [name, supervision]
            row += [_cell(r, "knn_accuracy", "{:.3f}") for r in runs]
            row += [_cell(r, "roc_auc", "{:.3f}") for r in runs]
            row += [_cell(runs[-1], "fit_cpu", "{:.1f}")]
            tuple_rows.append(row)
            errors = {r["error"] for size_runs in runs for r in size_runs if r["status"] != "ok"}
            notes += [(name, error) for error in sorted(errors)]
        for name in LABEL_CONTESTANTS:
            if (name, "labels") not in by_key:
                continue
            runs = by_key[name, "labels"]
            label_rows.append(
                [
                    name,
                    _cell(runs, "knn_accuracy", "{:.3f}"),
                    _cell(runs, "roc_auc", "{:.3f}"),
                    _cell(runs, "fit_cpu", "{:.1f}"),
                ]
            )
        out[task] = (tuple_rows, label_rows, notes)
    return out


def _headers(config):
    sizes = [f"{size:,}" for size in config.sizes]
    tuple_header = ["contestant", "trained on"]
    tuple_header += [f"KNN acc., {s}" for s in sizes] + [f"ROC AUC, {s}" for s in sizes]
    tuple_header += [f"fit CPU (s), {sizes[-1]}"]
    return tuple_header, ["contestant", "KNN acc.", "ROC AUC", "fit CPU (s)"]


def markdown(results, config):
    tuple_header, label_header = _headers(config)
    lines = []
    for task, (tuple_rows, label_rows, notes) in tables(results, config).items():
        for header, rows in ((tuple_header, tuple_rows), (label_header, label_rows)):
            lines += [f"### {task}", "", "| " + " | ".join(header) + " |"]
            lines.append("|" + "|".join(["---"] * len(header)) + "|")
            lines += ["| " + " | ".join(row) + " |" for row in rows] + [""]
        lines += [f"- {name}: `{error}`" for name, error in notes] + ([""] if notes else [])
    return "\n".join(lines)


def _measured(runs, config):
    """One sentence per run: when, the command, the machine, its load, what it cost."""
    sentences = []
    for meta in runs:
        who = (
            "every contestant"
            if meta["contestants"] is None
            else "contestants " + ", ".join(meta["contestants"])
        )
        sentences.append(
            f"Measured on {meta['date']} with ``{meta['command']}`` ({who}; {config.name} mode: "
            f"{len(config.seeds)} seed{'s' if len(config.seeds) > 1 else ''}, {config.max_iter} "
            f"epochs for our networks), on {meta['cpu']} ({meta['cores']} cores, load average "
            f"{meta['load']} at the start), one thread per contestant, {meta['n_jobs']} (task, "
            f"seed) jobs side by side; {meta['total']:.0f} s wall and {meta['cpu_total']:.0f} CPU "
            f"seconds of fitting in all. Versions: {', '.join(meta['versions'])}."
        )
    return " ".join(sentences)


def rst(results, config, runs):
    tuple_header, label_header = _headers(config)
    measured = _measured(runs, config)
    protocol = (
        "The tuple learners see no label: only index pairs (+1 similar, -1 dissimilar) or index "
        "triplets drawn from the labels of the training split, in the numbers given. The "
        "reference contestants below each table are given every label of the training split. "
        f"KNN accuracy (k={N_NEIGHBORS}) is that of the test points against the training points "
        f"in each embedding; ROC AUC ranks {N_TEST_PAIRS:,} held-out pairs of test points by "
        "their distance. Medians over the seeds; fit CPU is that of the largest size. metric-learn "
        "0.7.0 runs on scikit-learn 1.8 or later only through a shim of the benchmark script, "
        "which renames the ``force_all_finite`` keyword of the two validation functions it calls "
        "to ``ensure_all_finite``."
    )
    lines = [
        ".. This file is written by benchmarks/pairs.py; edit the script, not this file.",
        "",
        measured,
        "",
        protocol,
        "",
    ]
    for task, (tuple_rows, label_rows, notes) in tables(results, config).items():
        lines += [f".. rubric:: {task}", ""]
        for caption, header, rows in (
            ("From pairs or triplets alone", tuple_header, tuple_rows),
            ("Given every label (reference)", label_header, label_rows),
        ):
            lines += [f".. list-table:: {caption}", "   :header-rows: 1", ""]
            for row in [header] + rows:
                lines.append(f"   * - {row[0]}")
                lines += [f"     - {cell}" for cell in row[1:]]
            lines.append("")
        lines += [f"- {name}: ``{error}``" for name, error in notes] + ([""] if notes else [])
    return "\n".join(lines)


TASKS = ("digits", "digits + noise")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one seed, 500 and 2,000 tuples")
    parser.add_argument("--output", default=None, help="write the rst fragment here")
    parser.add_argument("--n-jobs", type=int, default=2, help="(task, seed) jobs side by side")
    known = [*TUPLE_CONTESTANTS, *LABEL_CONTESTANTS]
    parser.add_argument(
        "--contestants",
        nargs="+",
        choices=known,
        metavar="NAME",
        help="fit only these (names as in the tables); the others' figures come from --store",
    )
    parser.add_argument("--store", default=str(STORE), help="the per-seed figures of every run")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    meta = metadata("pairs.py", argv)
    meta["n_jobs"] = args.n_jobs
    meta["contestants"] = args.contestants
    print(f"# {meta['date']}  {meta['command']}  {meta['cpu']} (load {meta['load']})")
    print("# " + ", ".join(meta["versions"]), flush=True)
    runs, stored = load_store(args.store, config) if args.contestants else ([], {})
    start = time.perf_counter()
    results = run(
        config,
        tasks=TASKS,
        n_jobs=args.n_jobs,
        log=lambda s: print(s, flush=True),
        names=args.contestants,
        stored=stored,
    )
    meta["total"] = time.perf_counter() - start
    fitted = [
        r
        for by_key in results.values()
        for (name, _), by_seed in by_key.items()
        if args.contestants is None or name in args.contestants
        for r in by_seed
    ]
    meta["cpu_total"] = sum(r["fit_cpu"] for r in fitted if r["status"] == "ok")
    for r in fitted:
        r["measured"] = meta["date"]
    shown = {r.get("measured") for by_key in results.values() for rs in by_key.values() for r in rs}
    runs = [run_ for run_ in runs if run_["date"] in shown] + [meta]
    save_store(
        args.store,
        config,
        runs,
        {
            (task, seed, name, size): r
            for task, by_key in results.items()
            for (name, size), rs in by_key.items()
            for seed, r in zip(config.seeds, rs)
        },
    )
    print(f"# total {meta['total']:.0f} s wall, {meta['cpu_total']:.0f} s CPU of fitting\n")
    print(markdown(results, config))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(rst(results, config, runs))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
