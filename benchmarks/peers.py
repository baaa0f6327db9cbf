"""TripletEmbedder and SiameseEmbedder against the methods users would otherwise pick.

Contestants, each a transformer followed by the same k-nearest-neighbour evaluation:

- ``KNN (raw)``: the standardised features themselves;
- ``PCA + KNN``: :class:`~sklearn.decomposition.PCA` to 32 components;
- ``NCA + KNN``: :class:`~sklearn.neighbors.NeighborhoodComponentsAnalysis` to 32 components;
- ``LMNN + KNN``: metric-learn's ``LMNN`` to 32 components, where metric-learn installs and runs;
- ``pml triplet`` and ``pml contrastive``: the MLP of our default backbone (Linear(d, 256)-ReLU-
  Linear(256, 32), L2-normalised output) trained by a hand-written loop with
  pytorch-metric-learning's ``TripletMarginLoss(margin=0.2)`` and
  ``TripletMarginMiner(margin=0.2, type_of_triplets="semihard")``, or its
  ``ContrastiveLoss(pos_margin=0, neg_margin=1)`` over all pairs; Adam at 1e-3, the epochs of our
  default (``max_iter``), and ``MPerClassSampler`` batches of the shape our sampler draws.
  Not the same losses as ours: pml's "semihard" keeps every triplet with
  ``d(a,p) < d(a,n) < d(a,p) + margin``, where ours keeps, per positive pair, the closest negative
  farther than the positive (FaceNet); pml's contrastive loss is on unsquared distances and
  averages over the pairs with a non-zero loss, ours (Hadsell et al.) squares them and averages over
  all pairs;
- ``TripletEmbedder`` and ``SiameseEmbedder`` with default parameters (``max_iter`` aside in quick
  mode), ``TripletEmbedder (linear)``: the same with ``backbone="linear"`` (a linear map to 32
  dimensions, like NCA's), and ``(tuned)``: chosen by a ``GridSearchCV`` over ``margin`` and
  ``mining`` on one stratified 75/25 split of the training split (scored by the embedder's own
  leave-one-out MAP@R on the validation quarter), then refitted on the whole training split; its
  fit time includes the search;
- on a task of signals (``Task.input_shape`` set), ``(cnn)``: our embedders and the two
  pytorch-metric-learning loops with the 1-D convolutional network of ``backbone="cnn"`` instead of
  the MLP; ``TripletEmbedder (fcn)``: the recommended settings for signals,
  ``backbone="fcn", augment="signals"``.

Every contestant is a pipeline ``StandardScaler -> transformer`` fitted on the training split (the
same standardisation for all: the raw digits' pixel scale would otherwise drown the noise task's
features, or the reverse), on the CPU with one thread (``torch.set_num_threads(1)``, BLAS and OpenMP
limited to one thread too). ``--n-jobs`` (task, seed) jobs run side by side in separate processes.
With ``--default-threads``, every contestant is then fitted once more on the first seed of each
task, one fit at a time, with torch's and BLAS's thread settings left as they are (what a user who
sets nothing gets); that fit's wall time is reported beside the one-thread figures.

Tasks: those of ``benchmarks/tasks.py`` (its docstring describes them): ``digits``,
``digits + noise``, ``unseen classes`` (trained on digits 0-6, evaluated on 7-9), ``500 classes``,
``signals`` (1-D signals: shifted, scaled templates with noise, several per class) and ``open set``
(trained on 400 classes of a generated 500-class problem whose classes share structure, evaluated
among the 100 unseen).

Figures, medians over the seeds: KNN accuracy (k=5) of test samples against the training set, and
precision@1 and MAP@R (:mod:`sklearn_triplet.metrics`) of test queries retrieving from the training
set; on ``unseen classes`` and ``open set`` the training set holds none of the classes evaluated,
so the evaluated set is its own reference, leave-one-out, for all three figures. Fit time is the
transformer pipeline's ``fit`` on the training split, transform time its ``transform`` of the
evaluated (test) set; the KNN and the scores are not timed. Times are process CPU time (on one
thread, the wall time of an idle core, whatever else shares the machine); the fit's wall time is
shown too.

    python benchmarks/peers.py --quick          # one seed, 10 epochs, small grids: a few minutes
    python benchmarks/peers.py --quick --tasks digits,signals --default-threads
    python benchmarks/peers.py --default-threads --output docs/benchmarks_peers.rst
"""

import argparse
import contextlib
import dataclasses
import json
import shlex
import statistics
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV, StratifiedShuffleSplit
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors, NeighborhoodComponentsAnalysis
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

import environment  # noqa: E402
import tasks as benchmark_tasks  # noqa: E402
from environment import merge_saved_results, metadata, torch_threads, warm_up  # noqa: E402

from sklearn_triplet import SiameseEmbedder, TripletEmbedder  # noqa: E402
from sklearn_triplet.backbones import build_backbone, make_mlp  # noqa: E402
from sklearn_triplet.metrics import retrieval_scores  # noqa: E402
from sklearn_triplet.sampling import batch_shape  # noqa: E402

N_COMPONENTS = 32
N_NEIGHBORS = 5


@dataclasses.dataclass(frozen=True)
class Config:
    """One size of the benchmark."""

    name: str
    seeds: tuple
    max_iter: int  # epochs of our embedders; None: their default
    pml_max_iter: int  # epochs of the pytorch-metric-learning loops
    triplet_grid: dict
    siamese_grid: dict
    sizes: benchmark_tasks.Sizes = benchmark_tasks.SIZES


FULL = Config(
    name="full",
    seeds=(0, 1, 2),
    max_iter=None,
    pml_max_iter=50,
    triplet_grid={"margin": [0.1, 0.2, 0.5], "mining": ["semi-hard", "hard"]},
    siamese_grid={"margin": [0.5, 1.0], "mining": ["all", "hard"]},
)
QUICK = dataclasses.replace(
    FULL,
    name="quick",
    seeds=(0,),
    max_iter=10,
    pml_max_iter=10,
    triplet_grid={"margin": [0.1, 0.2], "mining": ["semi-hard"]},
    siamese_grid={"margin": [0.5, 1.0], "mining": ["all"]},
)


# -- tasks -----------------------------------------------------------------------------------------

#: The task names, in the order of the tables (see ``benchmarks/tasks.py``).
TASKS = list(benchmark_tasks.TASKS)
# The longest jobs go first, so that side-by-side processes end together.
_LONGEST_FIRST = ("500 classes", "open set")


# -- the pytorch-metric-learning contestant --------------------------------------------------------


class PMLEmbedder(TransformerMixin, BaseEstimator):
    """Our default MLP (or CNN) trained by a plain loop on a pytorch-metric-learning loss.

    Parameters
    ----------
    loss : {"triplet", "contrastive"}, default="triplet"
        ``TripletMarginLoss(margin=0.2)`` with ``TripletMarginMiner(margin=0.2,
        type_of_triplets="semihard")``, or ``ContrastiveLoss(pos_margin=0, neg_margin=1)`` over all
        pairs of the batch.
    input_shape : tuple of int, default=None
        None: our default MLP, ``make_mlp(n_features, 32, hidden_layer_sizes=(256,))``. A shape:
        our default CNN for it, ``make_cnn(n_features, 32, input_shape=input_shape)``, or the
        network ``backbone`` names.
    backbone : str, default="cnn"
        With ``input_shape``, the built-in backbone to train (``"cnn"``, ``"fcn"``, ``"resnet"``),
        built by :func:`~sklearn_triplet.backbones.build_backbone` with its defaults.
    max_iter, batch_size, samples_per_class, learning_rate_init, random_state
        As in :class:`~sklearn_triplet.TripletEmbedder`: epochs of ``ceil(n_samples / batch_size)``
        batches of P classes x K samples from ``MPerClassSampler``, Adam.
    """

    def __init__(
        self,
        loss="triplet",
        *,
        input_shape=None,
        backbone="cnn",
        max_iter=50,
        batch_size=128,
        samples_per_class=4,
        learning_rate_init=1e-3,
        random_state=None,
    ):
        self.loss = loss
        self.input_shape = input_shape
        self.backbone = backbone
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.samples_per_class = samples_per_class
        self.learning_rate_init = learning_rate_init
        self.random_state = random_state

    def fit(self, X, y):
        from pytorch_metric_learning import losses, miners, samplers
        from pytorch_metric_learning.utils import common_functions

        X = torch.as_tensor(np.asarray(X, dtype=np.float32))
        _, y = np.unique(y, return_inverse=True)
        y_t = torch.as_tensor(y)
        make_loss = {
            "triplet": lambda: (
                losses.TripletMarginLoss(margin=0.2),
                miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard"),
            ),
            "contrastive": lambda: (losses.ContrastiveLoss(pos_margin=0, neg_margin=1), None),
        }
        if self.loss not in make_loss:
            raise ValueError(f"loss must be one of {sorted(make_loss)}; got {self.loss!r}.")
        loss_fn, miner = make_loss[self.loss]()
        n_classes = int(y.max()) + 1
        n_per_batch, k = batch_shape(
            n_classes, batch_size=self.batch_size, samples_per_class=self.samples_per_class
        )
        n_batches = max(1, -(-X.shape[0] // self.batch_size))
        numpy_random = common_functions.NUMPY_RANDOM
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state or 0)
            # pytorch-metric-learning samples from this module-level generator; seed a private one.
            common_functions.NUMPY_RANDOM = np.random.RandomState(self.random_state)
            try:
                if self.input_shape is None:
                    self.module_ = make_mlp(X.shape[1], N_COMPONENTS, hidden_layer_sizes=(256,))
                else:
                    self.module_ = build_backbone(
                        self.backbone,
                        X.shape[1],
                        N_COMPONENTS,
                        params={"input_shape": self.input_shape},
                    )
                sampler = samplers.MPerClassSampler(
                    y,
                    m=k,
                    batch_size=n_per_batch * k,
                    length_before_new_iter=n_batches * n_per_batch * k,
                )
                optimizer = torch.optim.Adam(self.module_.parameters(), lr=self.learning_rate_init)
                self.module_.train()
                for _ in range(self.max_iter):
                    order = torch.as_tensor(list(iter(sampler))).view(-1, n_per_batch * k)
                    for idx in order:
                        embeddings = torch.nn.functional.normalize(self.module_(X[idx]), dim=1)
                        labels = y_t[idx]
                        pairs = miner(embeddings, labels) if miner is not None else None
                        loss = loss_fn(embeddings, labels, pairs)
                        optimizer.zero_grad()
                        loss.backward()
                        optimizer.step()
            finally:
                common_functions.NUMPY_RANDOM = numpy_random
        self.module_.eval()
        return self

    def transform(self, X):
        with torch.inference_mode():
            out = self.module_(torch.as_tensor(np.asarray(X, dtype=np.float32)))
            return torch.nn.functional.normalize(out, dim=1).numpy()


# -- contestants -----------------------------------------------------------------------------------


class NotAvailable(Exception):
    """A contestant whose library is not installed."""


class NotRun(Exception):
    """A contestant skipped by design on a task (the reason says why)."""


# LMNN's cost grows with the classes: on digits (10 classes) a fit takes 737 of its up to 1,000
# iterations, 12 CPU seconds; on the 400 and 500 classes of "open set" and "500 classes" an
# iteration takes 0.3-0.5 CPU seconds, and a fit on "open set" was stopped unfinished after 131 CPU
# seconds (measured on 2026-12-06, one thread, the scaled training split of seed 0).
LMNN_TOO_SLOW = (
    "over two CPU minutes per fit with 400-500 classes (0.3-0.5 CPU s per iteration, of up to "
    "1,000; 0.016 s on digits)"
)

#: Tasks LMNN is not run on, and why.
LMNN_SKIPPED = {
    "500 classes": LMNN_TOO_SLOW,
    "open set": LMNN_TOO_SLOW,
}


def _lmnn(config, seed, task):
    try:
        metric_learn = environment.metric_learn()  # through the shim of scikit-learn >= 1.8
    except ImportError as exc:
        raise NotAvailable("metric-learn is not installed") from exc
    if task.name in LMNN_SKIPPED:
        raise NotRun(LMNN_SKIPPED[task.name])
    return metric_learn.LMNN(n_components=N_COMPONENTS, random_state=seed)


def _pml(loss, *, cnn=False):
    def build(config, seed, task):
        try:
            import pytorch_metric_learning  # noqa: F401
        except ImportError as exc:
            raise NotAvailable("pytorch-metric-learning is not installed") from exc
        input_shape = task.input_shape if cnn else None
        return PMLEmbedder(
            loss, input_shape=input_shape, max_iter=config.pml_max_iter, random_state=seed
        )

    return build


def _ours(cls, *, tuned=False, backbone=None, **options):
    def build(config, seed, task):
        params = {} if config.max_iter is None else {"max_iter": config.max_iter}
        params.update(options)
        if backbone in SHAPED:
            params.update(backbone=backbone, backbone_params={"input_shape": task.input_shape})
        elif backbone is not None:
            params["backbone"] = backbone
        embedder = cls(device="cpu", random_state=seed, **params)
        if not tuned:
            return embedder
        grid = config.triplet_grid if cls is TripletEmbedder else config.siamese_grid
        step = type(embedder).__name__.lower()
        return GridSearchCV(
            make_pipeline(StandardScaler(), embedder),
            {f"{step}__{name}": values for name, values in grid.items()},
            # One stratified 75/25 split of the training split: k-fold would multiply the cost.
            cv=StratifiedShuffleSplit(n_splits=1, test_size=0.25, random_state=seed),
            error_score="raise",
        )

    return build


#: Built-in backbones that read the shape of a sample (``Task.input_shape``).
SHAPED = ("cnn", "fcn", "resnet")

CONTESTANTS = {
    "KNN (raw)": lambda config, seed, task: None,
    "PCA + KNN": lambda config, seed, task: PCA(n_components=N_COMPONENTS, random_state=seed),
    "NCA + KNN": lambda config, seed, task: NeighborhoodComponentsAnalysis(
        n_components=N_COMPONENTS, random_state=seed
    ),
    "LMNN + KNN": _lmnn,
    "pml triplet": _pml("triplet"),
    "pml contrastive": _pml("contrastive"),
    "TripletEmbedder": _ours(TripletEmbedder),
    "TripletEmbedder (linear)": _ours(TripletEmbedder, backbone="linear"),
    "TripletEmbedder (tuned)": _ours(TripletEmbedder, tuned=True),
    "TripletEmbedder (unseen-classes)": _ours(TripletEmbedder, do_no_harm="unseen-classes"),
    "SiameseEmbedder": _ours(SiameseEmbedder),
    "SiameseEmbedder (tuned)": _ours(SiameseEmbedder, tuned=True),
    "pml triplet (cnn)": _pml("triplet", cnn=True),
    "pml contrastive (cnn)": _pml("contrastive", cnn=True),
    "TripletEmbedder (cnn)": _ours(TripletEmbedder, backbone="cnn"),
    "SiameseEmbedder (cnn)": _ours(SiameseEmbedder, backbone="cnn"),
    # the recommended settings for signals (user guide, "Which backbone for which data")
    "TripletEmbedder (fcn)": _ours(TripletEmbedder, backbone="fcn", augment="signals"),
}


def applies(name, task):
    """Whether contestant ``name`` runs on ``task``: the ``(cnn)`` and ``(fcn)`` ones on signals
    only."""
    return task.input_shape is not None or not name.endswith(("(cnn)", "(fcn)"))


def _pipeline(step):
    """Standardise first; a grid search already holds its own scaler."""
    if isinstance(step, GridSearchCV):
        return step
    return make_pipeline(StandardScaler(), *([step] if step is not None else []))


# -- evaluation ------------------------------------------------------------------------------------


def knn_accuracy(E_test, y_test, E_train=None, y_train=None, *, n_neighbors=N_NEIGHBORS):
    """KNN accuracy of the test set against the training set, or leave-one-out within it.

    Leave-one-out drops each query from its own neighbours (by index, so duplicates still count)
    and votes like :class:`~sklearn.neighbors.KNeighborsClassifier` (ties go to the smallest label).
    """
    if E_train is not None:
        knn = KNeighborsClassifier(n_neighbors=n_neighbors).fit(E_train, y_train)
        return float(knn.score(E_test, y_test))
    classes, codes = np.unique(y_test, return_inverse=True)
    neighbours = (
        NearestNeighbors(n_neighbors=n_neighbors + 1).fit(E_test).kneighbors(return_distance=False)
    )
    votes = np.zeros((codes.shape[0], classes.shape[0]), dtype=np.int64)
    np.add.at(votes, (np.arange(codes.shape[0])[:, None], codes[neighbours[:, :n_neighbors]]), 1)
    return float(np.mean(votes.argmax(axis=1) == codes))


def evaluate(name, build, task, config, seed):
    """Fit one contestant on one task; a dict of its figures, or of why it could not run."""
    try:
        model = _pipeline(build(config, seed, task))
    except NotAvailable as exc:
        return {"status": "not installed", "error": str(exc)}
    except NotRun as exc:
        return {"status": "not run", "error": str(exc)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter; the figures tell the story
            with _clock() as fit_time:
                model.fit(task.X_train, task.y_train)
            with _clock() as transform_time:
                E_test = model.transform(task.X_test)
            E_train = None if task.leave_one_out else model.transform(task.X_train)
    except Exception as exc:  # noqa: BLE001 (a peer that does not run with these versions)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {"status": "failed", "error": f"{type(exc).__name__}: {message}"}
    reference = {} if task.leave_one_out else {"X_reference": E_train, "y_reference": task.y_train}
    scores = retrieval_scores(E_test, task.y_test, **reference)
    result = {
        "status": "ok",
        "knn_accuracy": knn_accuracy(E_test, task.y_test, E_train, task.y_train),
        "precision_at_1": scores["precision_at_1"],
        "map_at_r": scores["map_at_r"],
        "fit_cpu": fit_time["cpu"],
        "fit_wall": fit_time["wall"],
        "transform_cpu": transform_time["cpu"],
        "transform_wall": transform_time["wall"],
    }
    if isinstance(model, GridSearchCV):
        result["best_params"] = {k.split("__", 1)[1]: v for k, v in model.best_params_.items()}
    fitted = model.best_estimator_ if isinstance(model, GridSearchCV) else model
    if hasattr(fitted[-1], "raw_kept_"):  # do_no_harm handed the features back
        result["raw_kept"] = bool(fitted[-1].raw_kept_)
    return result


def run(config, *, tasks=None, contestants=None, n_jobs=1, default_threads=False, log=print):
    """Run the benchmark; ``{task: {contestant: [result per seed]}}``.

    Each (task, seed) pair is one job; ``n_jobs`` processes run jobs side by side, each contestant
    on one thread, the longest jobs first. A contestant that does not apply to a task (see
    :func:`applies`) is left out of that task's results. With ``default_threads``, each
    contestant is then fitted again on each task's first seed, one fit at a time in this process
    with the thread settings left alone, and the first seed's result gains ``fit_wall_default``
    and ``fit_cpu_default``.
    """
    tasks = list(TASKS) if tasks is None else tasks
    contestants = list(CONTESTANTS) if contestants is None else contestants
    jobs = sorted(
        ((task, seed) for task in tasks for seed in config.seeds),
        key=lambda job: job[0] not in _LONGEST_FIRST,
    )
    if n_jobs == 1:
        outputs = (_run_job(config, task, seed, contestants) for task, seed in jobs)
    else:
        outputs = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            delayed(_run_job)(config, task, seed, contestants) for task, seed in jobs
        )
    by_seed = {task: {name: {} for name in contestants} for task in tasks}
    for task, seed, job_results in outputs:
        for name, result in job_results.items():
            by_seed[task][name][seed] = result
            log(f"{task:<15} seed {seed}  {name:<24} {_short(result)}")
    results = {
        task: {
            name: [runs[seed] for seed in config.seeds] for name, runs in by_name.items() if runs
        }
        for task, by_name in by_seed.items()
    }
    if default_threads:
        for task_name in tasks:
            _time_with_default_threads(config, task_name, results[task_name], log)
    return results


def _run_job(config, task_name, seed, contestants):
    with threadpool_limits(1), torch_threads(1):
        warm_up()
        task = benchmark_tasks.make(task_name, config.sizes, seed)
        return (
            task_name,
            seed,
            {
                name: evaluate(name, CONTESTANTS[name], task, config, seed)
                for name in contestants
                if applies(name, task)
            },
        )


def _time_with_default_threads(config, task_name, by_contestant, log):
    """Fit each contestant once more on the first seed with the thread settings left alone."""
    seed = config.seeds[0]
    warm_up()
    task = benchmark_tasks.make(task_name, config.sizes, seed)
    for name, runs in by_contestant.items():
        if runs[0]["status"] != "ok":
            continue
        result = evaluate(name, CONTESTANTS[name], task, config, seed)
        if result["status"] == "ok":
            runs[0]["fit_wall_default"] = result["fit_wall"]
            runs[0]["fit_cpu_default"] = result["fit_cpu"]
            log(
                f"{task_name:<15} seed {seed}  {name:<24} default threads: fit "
                f"{result['fit_wall']:.2f}s wall ({result['fit_cpu']:.2f}s CPU)"
            )


@contextlib.contextmanager
def _clock():
    """Measure a block: ``{"cpu": process CPU seconds, "wall": seconds}``.

    Every contestant runs on one thread, so its CPU time is what the wall time would be on an idle
    core; the wall time also counts waiting for a core that other processes hold.
    """
    times = {}
    wall, cpu = time.perf_counter(), time.process_time()
    yield times
    times["wall"] = time.perf_counter() - wall
    times["cpu"] = time.process_time() - cpu


def _short(result):
    if result["status"] != "ok":
        return f"{result['status']}: {result['error']}"
    return (
        f"acc {result['knn_accuracy']:.3f}  P@1 {result['precision_at_1']:.3f}  "
        f"MAP@R {result['map_at_r']:.3f}  fit {result['fit_cpu']:.2f}s CPU "
        f"({result['fit_wall']:.2f}s wall)  transform {1e3 * result['transform_cpu']:.1f}ms CPU"
    )


# -- tables ----------------------------------------------------------------------------------------

COLUMNS = (
    ("knn_accuracy", f"KNN acc. (k={N_NEIGHBORS})", "{:.3f}"),
    ("precision_at_1", "P@1", "{:.3f}"),
    ("map_at_r", "MAP@R", "{:.3f}"),
    ("fit_cpu", "fit CPU (s)", "{:.2f}"),
    ("fit_wall", "fit wall (s)", "{:.2f}"),
    ("transform_cpu", "transform CPU (ms)", "{:.1f}"),
)
#: Added when the run timed the fits with the default thread settings (first seed only).
DEFAULT_THREADS_COLUMN = ("fit_wall_default", "fit wall, default threads (s)", "{:.2f}")


def columns(results):
    """The columns of the tables of ``results``."""
    timed = any(
        "fit_wall_default" in run
        for by_contestant in results.values()
        for runs in by_contestant.values()
        for run in runs
    )
    return COLUMNS + ((DEFAULT_THREADS_COLUMN,) if timed else ())


def summarise(results):
    """``{task: (rows, notes)}``: median figures per contestant; notes ``(text, code)`` on failures
    (``code`` the error message) and on the parameters the grid searches chose."""
    tables = {}
    table_columns = columns(results)
    for task, by_contestant in results.items():
        rows, notes = [], []
        for name, runs in by_contestant.items():
            ok = [r for r in runs if r["status"] == "ok"]
            for error in sorted({r["error"] for r in runs if r["status"] != "ok"}):
                n_failed = sum(r.get("error") == error for r in runs)
                status = next(r["status"] for r in runs if r.get("error") == error)
                notes.append((f"{name}: {status} ({n_failed} of {len(runs)} seeds):", error))
            if not ok:
                rows.append([name, runs[0]["status"]] + ["n/a"] * (len(table_columns) - 1))
                continue
            cells = []
            for key, _, fmt in table_columns:
                values = [r[key] for r in ok if key in r]
                if not values:
                    cells.append("n/a")
                    continue
                value = statistics.median(values)
                cells.append(fmt.format(1e3 * value if key == "transform_cpu" else value))
            rows.append([name] + cells)
            if "raw_kept" in ok[0]:
                kept = sum(r["raw_kept"] for r in ok)
                notes.append(
                    (f"{name}: do_no_harm kept the raw features in", f"{kept} of {len(ok)} seeds")
                )
            if "best_params" in ok[0]:
                chosen = Counter(
                    ", ".join(f"{k}={v!r}" for k, v in sorted(r["best_params"].items())) for r in ok
                )
                for params, n in chosen.items():
                    notes.append((f"{name}: chose ({n} of {len(ok)} seeds)", params))
        tables[task] = (rows, notes)
    return tables


def markdown(results):
    """One Markdown table per task, with its notes."""
    lines = []
    for task, (rows, notes) in summarise(results).items():
        header = ["contestant"] + [title for _, title, _ in columns(results)]
        lines += [f"### {task}", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines += [""] + [f"- {text} `{code}`" for text, code in notes] + ([""] if notes else [])
    return "\n".join(lines)


def rst(results, config, meta, *, rendered=None):
    """The rst fragment: how it was measured, then one table per task with its notes.

    ``meta`` is one run's, or a list of runs' merged by ``--load`` (``rendered``: that command).
    """

    def grid(g):
        return ", ".join(f"``{k}`` in {v}" for k, v in g.items())

    epochs = (
        "our embedders' default epochs"
        if config.max_iter is None
        else f"{_count(config.max_iter, 'epoch')} for our embedders"
    )
    default_threads = (
        " The last column is the wall time of one more fit on the first seed, one fit at a time "
        "in one process, with torch's and BLAS's thread settings left as they are."
        if any(key == "fit_wall_default" for key, _, _ in columns(results))
        else ""
    )
    later = []
    if isinstance(meta, list):  # runs merged by --load: the first, then those that replaced rows
        meta, later = meta[0], meta[1:]
    measured = (
        f"Measured on {meta['date']} with ``{meta['command']}`` ({config.name} mode: "
        f"{_count(len(config.seeds), 'seed')}, {epochs}, "
        f"{_count(config.pml_max_iter, 'epoch')} for pytorch-metric-learning's), on "
        f"{meta['cpu']} ({meta['cores']} cores, load average {meta['load']} at the start), one "
        f"thread for every contestant, {_count(meta['n_jobs'], 'process', 'processes')} running "
        f"(task, seed) jobs side by side; {meta['total']:.0f} s in all. Versions: "
        f"{', '.join(meta['versions'])}.{default_threads}"
    )
    for run_meta in later:
        measured += (
            f" The rows of {', '.join(run_meta['contestants'])} on "
            f"{', '.join(run_meta['tasks'])} come from a run on {run_meta['date']} with "
            f"``{run_meta['command']}`` (load average {run_meta['load']} at the start, "
            f"{run_meta['total']:.0f} s in all)."
        )
    if rendered:
        measured += f" The table was rendered from the saved runs with ``{rendered}``."
    protocol = (
        "Every contestant standardises the features (``StandardScaler`` fitted on the training "
        f"split) and embeds in {N_COMPONENTS} dimensions. KNN accuracy (k={N_NEIGHBORS}), "
        "precision@1 and MAP@R are those of test queries against the training set, except on "
        "*unseen classes* (trained on digits 0-6, evaluated on all of 7-9 leave-one-out) and "
        "*open set* (trained on 400 classes, evaluated among the 100 others leave-one-out). "
        '*signals* is also run with the 1-D CNN of ``backbone="cnn"`` (rows *(cnn)*) and with '
        'the recommended settings for signals, ``backbone="fcn", augment="signals"`` (row '
        "*TripletEmbedder (fcn)*). Figures "
        "are medians over the seeds. Fit time is the fit of the transformer on the training split "
        "(for the tuned embedders, the whole grid search and refit); transform time embeds the "
        "evaluated set. Times are process CPU time, which on one thread is the wall time of an "
        "idle core; the fit's wall time, which also counts waiting for a core held by other "
        "processes, is shown too. Tuned: ``GridSearchCV`` on one stratified 75/25 split of the "
        "training split, scored by the embedder's leave-one-out MAP@R on the validation quarter, "
        "then refitted on the whole training split, over TripletEmbedder "
        f"{grid(config.triplet_grid)} and SiameseEmbedder {grid(config.siamese_grid)}."
    )
    peers = (
        "*pml triplet* and *pml contrastive* train our default network (Linear(d, 256)-ReLU-"
        "Linear(256, 32), L2-normalised; our default CNN in the rows *(cnn)*) with a plain loop "
        "on pytorch-metric-learning's "
        "``TripletMarginLoss(margin=0.2)`` and ``TripletMarginMiner(margin=0.2, "
        'type_of_triplets="semihard")``, or its ``ContrastiveLoss(pos_margin=0, neg_margin=1)``: '
        "the same epochs, Adam at 1e-3 and ``MPerClassSampler`` batches of the shape ours draw. "
        "Their rules differ from ours: pml's semi-hard miner keeps every triplet with "
        "d(a, p) < d(a, n) < d(a, p) + margin, ours the closest such negative per positive pair "
        "(FaceNet); pml's contrastive loss takes unsquared distances and averages over the pairs "
        "with a non-zero loss, ours squares them (Hadsell et al.) and averages over all pairs."
    )
    lines = [
        ".. This file is written by benchmarks/peers.py; edit the script, not this file.",
        "",
        measured,
        "",
        protocol,
        "",
        peers,
        "",
    ]
    for task, (rows, notes) in summarise(results).items():
        lines += [f".. rubric:: {task}", "", ".. list-table::", "   :header-rows: 1", ""]
        for row in [["contestant"] + [title for _, title, _ in columns(results)]] + rows:
            lines.append(f"   * - {row[0]}")
            lines += [f"     - {cell}" for cell in row[1:]]
        lines.append("")
        lines += [f"- {text} ``{code}``" for text, code in notes] + ([""] if notes else [])
    return "\n".join(lines)


def _count(n, singular, plural=None):
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one seed, 10 epochs, small grids")
    parser.add_argument("--tasks", default=None, help=f"comma-separated subset of {list(TASKS)}")
    parser.add_argument(
        "--contestants", default=None, help=f"comma-separated subset of {list(CONTESTANTS)}"
    )
    parser.add_argument("--output", default=None, help="write the rst fragment here")
    parser.add_argument(
        "--n-jobs", type=int, default=2, help="(task, seed) jobs run side by side, one thread each"
    )
    parser.add_argument("--save", default=None, help="also write the results to this JSON file")
    parser.add_argument(
        "--load",
        nargs="+",
        default=None,
        help="render saved runs instead of running: later files replace the rows they hold",
    )
    parser.add_argument(
        "--default-threads",
        action="store_true",
        help="also time one fit per task and contestant with the thread settings left alone",
    )
    args = parser.parse_args(argv)
    tasks = None
    if args.tasks:
        tasks = [t.strip() for t in args.tasks.split(",")]
        unknown = sorted(set(tasks) - set(TASKS))
        if unknown:
            parser.error(f"unknown tasks {unknown}; expected some of {list(TASKS)}")
    contestants = None
    if args.contestants:
        contestants = [c.strip() for c in args.contestants.split(",")]
        unknown = sorted(set(contestants) - set(CONTESTANTS))
        if unknown:
            parser.error(f"unknown contestants {unknown}; expected some of {list(CONTESTANTS)}")
    config = QUICK if args.quick else FULL
    if args.load:
        results, metas = load_runs(args.load)
        print(markdown(results))
        rendered = shlex.join(["python", "benchmarks/peers.py", *argv])
        _write(args.output, lambda: rst(results, config, metas, rendered=rendered))
        return
    meta = metadata("peers.py", argv)
    meta["n_jobs"] = args.n_jobs
    print(
        f"# {meta['date']}  {meta['command']}  {meta['cpu']} ({meta['cores']} cores, "
        f"load {meta['load']}), {args.n_jobs} jobs side by side"
    )
    print("# " + ", ".join(meta["versions"]), flush=True)
    start = time.perf_counter()
    results = run(
        config,
        tasks=tasks,
        contestants=contestants,
        n_jobs=args.n_jobs,
        default_threads=args.default_threads,
        log=lambda line: print(line, flush=True),
    )
    meta["total"] = time.perf_counter() - start
    print(f"# total {meta['total']:.0f} s\n")
    print(markdown(results))
    if args.save:
        meta["tasks"] = list(results)
        meta["contestants"] = sorted({c for by_c in results.values() for c in by_c})
        with open(args.save, "w", encoding="utf-8") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)
    _write(args.output, lambda: rst(results, config, meta))


def _write(output, fragment):
    """Write the rst ``fragment()`` to ``output``, when one is given."""
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(fragment())
        print(f"wrote {output}")


def load_runs(paths):
    """Merge saved runs: ``(results, metas)``; a later file's rows replace the earlier ones, and
    the tasks and contestants keep the order of the benchmark."""
    saved = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            saved.append(json.load(f))
    merged = merge_saved_results(saved)
    tasks = [t for t in TASKS if t in merged]
    results = {t: {c: merged[t][c] for c in CONTESTANTS if c in merged[t]} for t in tasks}
    return results, [document["meta"] for document in saved]


if __name__ == "__main__":
    main()
