"""A staged sweep of training recipes over all the benchmark tasks together.

Which default training recipe should ``TripletEmbedder`` and ``SiameseEmbedder`` have? This script
trains candidate recipes on every task of ``tasks.py`` with three seeds, and compares them with
each other and with the methods a user would otherwise pick (KNN on the standardised features,
scikit-learn's NCA, and the same network trained by plain loops on pytorch-metric-learning's
triplet and contrastive losses, as in ``peers.py``).

What a candidate is
-------------------
A :class:`Candidate` fixes every setting of a fit. Candidates are trained by a compact loop built
from the library's public pieces, mirroring the estimators: the network of
:mod:`sklearn_triplet.backbones`, L2-normalised output in 32 dimensions, Euclidean distances from
:func:`sklearn_triplet.distances.pairwise_distances`, class-balanced P x K batches of 128 from
:func:`sklearn_triplet.sampling.class_balanced_batches`, ``ceil(n_samples / 128)`` batches per
epoch, Adam. The losses are written here in plain PyTorch (autograd, O(B^2 K) memory) so that
variants cost one line each; the triplet family is

- ``positives``: which positives of an anchor ``a`` enter: ``"all"``, ``"hardest"`` (the
  farthest) or ``"easiest"`` (the closest: easy-positive mining, Xuan et al. 2020);
- ``negatives``: which negatives each (anchor, positive) pair ``(a, p)`` is set against:
  ``"facenet"`` (the closest negative farther than ``p``, else the farthest one: FaceNet's
  semi-hard rule, the library's ``mining="semi-hard"``), ``"semi-hard"`` (every negative with
  ``d(a, p) < d(a, n) < d(a, p) + margin``: pytorch-metric-learning's semi-hard miner),
  ``"hardest"`` (the closest) or ``"all"``;
- ``average``: the hinge losses ``max(0, d(a, p) - d(a, n) + margin)`` of the selected triplets
  are averaged over all of them (``"all"``) or over the non-zero ones only (``"active"``, as
  pytorch-metric-learning's default reducer does: the gradient keeps its size as the batch runs
  out of violating triplets);

and the contrastive family, over all the pairs of the batch, ``power`` 2 (Hadsell et al. 2006:
``d**2`` for positives, ``max(0, margin - d)**2`` for negatives, the library's loss) or 1
(pytorch-metric-learning's ``ContrastiveLoss``: ``max(0, d - pos_margin)`` and
``max(0, margin - d)``), averaged over ``"all"`` pairs, over the ``"active"`` (non-zero) ones, or
over the active positive pairs and the active negative pairs separately, then summed
(``"active-split"``, pytorch-metric-learning's reduction).

The training levers: ``lr`` and its ``schedule`` per step (``"constant"``, ``"cosine"`` decay to 0,
``"warmup-cosine"``: a linear warm-up over the first 5% of the steps then cosine,
``"one-cycle"``: :class:`torch.optim.lr_scheduler.OneCycleLR`), ``samples_per_class`` (K),
``epochs``, the MLP's ``width``, ``batch_norm`` after its hidden layer, ``dropout``,
``weight_decay`` (Adam's L2 penalty), and for the linear backbone its ``init``: torch's default,
``"pca"`` (the leading principal axes of the standardised training data, as NCA's
``init="pca"``) or ``"auto"`` (NCA's rule: LDA when there are more than ``n_components`` classes,
else PCA).

How the search goes
-------------------
Coordinate-wise, in stages (:data:`STAGES`): each stage varies one or two levers around the
leaders of the stages before it, and its candidates are ranked on every (task, metric) cell, the
metrics being KNN accuracy (k=5) and MAP@R, each the mean over the seeds; a candidate's score is
its mean rank over the cells of all tasks. The stage's best candidate becomes the base of the
next stage. Never per task: one recipe must serve every task. The summary also gives, per
candidate, the median of each metric over the tasks and its worst margin against the best peer
(the smallest ``score - best peer's score`` over the cells).

The figures of every fit go to ``benchmarks/results/sweep.csv`` (one row per candidate, task and
seed; a rerun skips the fits already there) and the summary to ``docs/benchmarks_sweep.rst``.
Every fit runs on one thread (``torch.set_num_threads(1)``, BLAS limited too); fit time is the
process CPU time of the training loop.

    python benchmarks/sweep.py --n-jobs 2             # every stage: about 40 CPU minutes
    python benchmarks/sweep.py --stages triplet-loss  # some stages (the earlier ones are reused)
    python benchmarks/sweep.py --summary              # rewrite the summary from the CSV
"""

import argparse
import csv
import dataclasses
import json
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed
from scipy.stats import rankdata
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.neighbors import NeighborhoodComponentsAnalysis
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # noqa: E402
import tasks  # noqa: E402

from sklearn_triplet import SiameseEmbedder, TripletEmbedder  # noqa: E402
from sklearn_triplet.backbones import make_linear, make_mlp  # noqa: E402
from sklearn_triplet.distances import pairwise_distances  # noqa: E402
from sklearn_triplet.metrics import retrieval_scores  # noqa: E402
from sklearn_triplet.sampling import class_balanced_batches  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CSV_PATH = ROOT / "benchmarks" / "results" / "sweep.csv"
RST_PATH = ROOT / "docs" / "benchmarks_sweep.rst"
SEEDS = (0, 1, 2)
N_COMPONENTS = 32
BATCH_SIZE = 128
METRICS = ("knn_accuracy", "map_at_r")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """Every setting of one fit; see the module docstring. The defaults are the library's."""

    loss: str = "triplet"  # "triplet" or "contrastive"
    backbone: str = "mlp"  # "mlp" or "linear"
    positives: str = "all"
    negatives: str = "facenet"
    average: str = "all"
    margin: float = 0.2
    power: int = 2
    pos_margin: float = 0.0
    lr: float = 1e-3
    schedule: str = "constant"
    samples_per_class: int = 4
    epochs: int = 50
    width: int = 256
    batch_norm: bool = False
    dropout: float = 0.0
    weight_decay: float = 0.0
    init: str = "default"

    @property
    def key(self):
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @property
    def name(self):
        """The settings that differ from the library's defaults of its loss, in a short form."""
        base = SIAMESE if self.loss == "contrastive" else TRIPLET
        diff = [
            f"{_SHORT.get(f.name, f.name)}={getattr(self, f.name)}"
            for f in dataclasses.fields(self)
            if f.name != "loss" and getattr(self, f.name) != getattr(base, f.name)
        ]
        prefix = "contrastive" if self.loss == "contrastive" else "triplet"
        return f"{prefix}: " + (" ".join(diff) if diff else "library default")


_SHORT = {"positives": "pos", "negatives": "neg", "average": "avg", "samples_per_class": "K"}

#: The library's defaults today, as candidates.
TRIPLET = Candidate()
SIAMESE = Candidate(loss="contrastive", negatives="all", margin=1.0)


# -- losses ----------------------------------------------------------------------------------------


def _positive_layout(same):
    """(B, Kp) column of each anchor's positives and a mask (padding where False)."""
    positives = same.clone().fill_diagonal_(False)
    width = max(int(positives.sum(dim=1).max()), 1)
    columns = torch.topk(positives.to(torch.int8), width, dim=1, sorted=False).indices
    return columns, positives.gather(1, columns)


def triplet_loss(embeddings, labels, c):
    """The triplet family of the module docstring, for candidate ``c``."""
    d = pairwise_distances(embeddings)
    same = labels[:, None] == labels[None, :]
    columns, valid = _positive_layout(same)
    d_ap = d.gather(1, columns)  # (B, Kp)
    if c.positives != "all":
        fill = math.inf if c.positives == "easiest" else -math.inf
        pick = torch.where(valid, d_ap.detach(), fill)
        pick = pick.argmin(dim=1) if c.positives == "easiest" else pick.argmax(dim=1)
        d_ap, valid = d_ap.gather(1, pick[:, None]), valid.gather(1, pick[:, None])
    negative = ~same
    valid = valid & negative.any(dim=1, keepdim=True)
    d_an = d[:, None, :]  # (B, 1, B)
    ap = d_ap.detach()[:, :, None]
    an = d_an.detach()
    if c.negatives in ("all", "semi-hard"):
        selected = valid[:, :, None] & negative[:, None, :]
        if c.negatives == "semi-hard":
            selected = selected & (an > ap) & (an < ap + c.margin)
        hinge = (d_ap[:, :, None] - d_an + c.margin).clamp_min(0)
    else:
        if c.negatives == "hardest":
            choice = torch.where(negative, d.detach(), math.inf).argmin(dim=1)[:, None]
            choice = choice.expand_as(d_ap)
        else:  # facenet: the closest negative beyond the positive, else the farthest
            beyond = negative[:, None, :] & (an > ap)
            closest = torch.where(beyond, an, math.inf).argmin(dim=2)
            farthest = torch.where(negative, d.detach(), -math.inf).argmax(dim=1)[:, None]
            choice = torch.where(beyond.any(dim=2), closest, farthest)
        selected = valid
        hinge = (d_ap - d.gather(1, choice) + c.margin).clamp_min(0)
    hinge = torch.where(selected, hinge, 0)
    if c.average == "active":
        count = (hinge.detach() > 0).sum()
    else:
        count = selected.sum()
    return hinge.sum() / count.clamp_min(1)


def contrastive_loss(embeddings, labels, c):
    """The contrastive family of the module docstring, for candidate ``c``."""
    d = pairwise_distances(embeddings)
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~torch.eye(len(labels), dtype=torch.bool)
    positive, negative = same & off_diagonal, ~same
    pos = (d - c.pos_margin).clamp_min(0) ** c.power
    neg = (c.margin - d).clamp_min(0) ** c.power
    pos, neg = torch.where(positive, pos, 0), torch.where(negative, neg, 0)
    if c.average == "all":
        return (pos.sum() + neg.sum()) / off_diagonal.sum()
    n_pos, n_neg = (pos.detach() > 0).sum(), (neg.detach() > 0).sum()
    if c.average == "active":
        return (pos.sum() + neg.sum()) / (n_pos + n_neg).clamp_min(1)
    return pos.sum() / n_pos.clamp_min(1) + neg.sum() / n_neg.clamp_min(1)  # active-split


# -- the compact training loop ---------------------------------------------------------------------


def build_network(c, X, y, generator_seed):
    n_features = X.shape[1]
    torch.manual_seed(generator_seed)
    if c.backbone == "linear":
        net = make_linear(n_features, N_COMPONENTS)
        if c.init != "default":
            with torch.no_grad():
                net.weight.copy_(torch.as_tensor(_linear_init(c.init, X, y), dtype=torch.float32))
        return net
    if not c.batch_norm and not c.dropout:
        return make_mlp(n_features, N_COMPONENTS, hidden_layer_sizes=(c.width,))
    layers = [torch.nn.Linear(n_features, c.width)]
    if c.batch_norm:
        layers.append(torch.nn.BatchNorm1d(c.width))
    layers.append(torch.nn.ReLU())
    if c.dropout:
        layers.append(torch.nn.Dropout(c.dropout))
    layers.append(torch.nn.Linear(c.width, N_COMPONENTS))
    return torch.nn.Sequential(*layers)


def _linear_init(init, X, y):
    """(n_components, n_features) initial weights, as NCA's ``init`` would give them."""
    n_classes = np.unique(y).shape[0]
    if init == "auto" and N_COMPONENTS <= min(X.shape[1], n_classes - 1):
        lda = LinearDiscriminantAnalysis(n_components=N_COMPONENTS).fit(X, y)
        return lda.scalings_.T[:N_COMPONENTS]
    return PCA(n_components=N_COMPONENTS, random_state=0).fit(X).components_


def _schedule(optimizer, c, n_steps):
    if c.schedule == "one-cycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=c.lr, total_steps=n_steps)
    warmup = max(1, round(0.05 * n_steps)) if c.schedule == "warmup-cosine" else 0

    def factor(step):
        if c.schedule == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, n_steps - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train(c, X, y, seed):
    """Train candidate ``c`` on standardised ``X, y``: the network (eval mode), the fit CPU time."""
    start = time.process_time()
    rng = np.random.default_rng(seed)
    X_t, y_t = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y)
    net = build_network(c, X, y, int(rng.integers(2**31)))
    optimizer = torch.optim.Adam(net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    n_batches = max(1, -(-X.shape[0] // BATCH_SIZE))
    scheduler = _schedule(optimizer, c, c.epochs * n_batches)
    loss_fn = contrastive_loss if c.loss == "contrastive" else triplet_loss
    net.train()
    for _ in range(c.epochs):
        for idx in class_balanced_batches(
            y,
            batch_size=BATCH_SIZE,
            samples_per_class=c.samples_per_class,
            n_batches=n_batches,
            rng=rng,
        ):
            idx = torch.as_tensor(idx)
            embeddings = torch.nn.functional.normalize(net(X_t[idx]), dim=1)
            loss = loss_fn(embeddings, y_t[idx], c)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    net.eval()
    return net, time.process_time() - start


def _embed(net, X):
    with torch.inference_mode():
        return torch.nn.functional.normalize(net(torch.as_tensor(X, dtype=torch.float32)), dim=1)


# -- tasks, peers and figures ----------------------------------------------------------------------

_DATA = {}


def data(task_name, seed):
    """The task standardised on its training split, labels encoded (cached)."""
    if (task_name, seed) not in _DATA:
        task = tasks.make(task_name, tasks.SIZES, seed)
        scaler = StandardScaler().fit(task.X_train)
        _DATA[task_name, seed] = dataclasses.replace(
            task,
            X_train=scaler.transform(task.X_train).astype(np.float32),
            X_test=scaler.transform(task.X_test).astype(np.float32),
            y_train=np.unique(task.y_train, return_inverse=True)[1],
        )
    return _DATA[task_name, seed]


def figures(E_test, E_train, task):
    """KNN accuracy, precision@1 and MAP@R, as ``peers.py`` computes them."""
    E_test = np.asarray(E_test, dtype=np.float32)
    if task.leave_one_out:
        E_train = None
        reference = {}
    else:
        E_train = np.asarray(E_train, dtype=np.float32)
        reference = {"X_reference": E_train, "y_reference": task.y_train}
    scores = retrieval_scores(E_test, task.y_test, **reference)
    y_train = None if task.leave_one_out else task.y_train
    return {
        "knn_accuracy": peers.knn_accuracy(E_test, task.y_test, E_train, y_train),
        "precision_at_1": scores["precision_at_1"],
        "map_at_r": scores["map_at_r"],
    }


def run_candidate(c, task_name, seed):
    task = data(task_name, seed)
    net, fit_cpu = train(c, task.X_train, task.y_train, seed)
    out = figures(_embed(net, task.X_test), _embed(net, task.X_train), task)
    return {**out, "fit_cpu": fit_cpu}


#: Reference methods: name -> fit(X_train, y_train, seed) -> transform function.
def _peer_raw(X, y, seed):
    return lambda Z: Z


def _peer_nca(X, y, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nca = NeighborhoodComponentsAnalysis(n_components=N_COMPONENTS, random_state=seed)
        return nca.fit(X, y).transform


def _peer_pml(loss):
    def fit(X, y, seed):
        return peers.PMLEmbedder(loss, max_iter=50, random_state=seed).fit(X, y).transform

    return fit


def _library(cls, **params):
    def fit(X, y, seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = cls(device="cpu", random_state=seed, **params).fit(X, y)
        return est.transform

    return fit


PEERS = {
    "KNN (raw)": _peer_raw,
    "NCA": _peer_nca,
    "pml triplet": _peer_pml("triplet"),
    "pml contrastive": _peer_pml("contrastive"),
}
#: The estimators' defaults before this sweep, spelled out (FaceNet's and Hadsell et al.'s rules).
PREVIOUS_TRIPLET = {
    "margin": 0.2,
    "mining": "semi-hard",
    "average": "all",
    "init": "random",
    "learning_rate": "constant",
    "learning_rate_init": 1e-3,
}
PREVIOUS_SIAMESE = {
    "margin": 1.0,
    "mining": "all",
    "average": "all",
    "squared": True,
    "samples_per_class": 4,
    "learning_rate": "constant",
    "learning_rate_init": 1e-3,
}
#: The estimators themselves: with the previous defaults they check that the compact loop is
#: faithful (it matches the candidates ``TRIPLET`` and ``SIAMESE``); with the defaults chosen from
#: this sweep they confirm its findings.
LIBRARY = {
    "TripletEmbedder (previous defaults)": _library(TripletEmbedder, **PREVIOUS_TRIPLET),
    "TripletEmbedder (previous defaults, linear)": _library(
        TripletEmbedder, backbone="linear", **PREVIOUS_TRIPLET
    ),
    "SiameseEmbedder (previous defaults)": _library(SiameseEmbedder, **PREVIOUS_SIAMESE),
    "TripletEmbedder (defaults)": _library(TripletEmbedder),
    "TripletEmbedder (defaults, linear)": _library(TripletEmbedder, backbone="linear"),
    "SiameseEmbedder (defaults)": _library(SiameseEmbedder),
}


def run_reference(name, task_name, seed):
    task = data(task_name, seed)
    start = time.process_time()
    transform = {**PEERS, **LIBRARY}[name](task.X_train, task.y_train, seed)
    fit_cpu = time.process_time() - start
    return {**figures(transform(task.X_test), transform(task.X_train), task), "fit_cpu": fit_cpu}


# -- stages ----------------------------------------------------------------------------------------


def _vary(base, **levers):
    """Candidates that differ from ``base`` in one lever each (``levers``: name -> values)."""
    return [dataclasses.replace(base, **{k: v}) for k, values in levers.items() for v in values]


def _grid(base, **levers):
    """Every combination of ``levers`` around ``base``."""
    out = [base]
    for k, values in levers.items():
        out = [dataclasses.replace(c, **{k: v}) for c in out for v in values]
    return out


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    family: str  # "triplet", "contrastive" or "linear": the ranking is within a family
    build: callable  # leaders -> candidates; leaders[0] is the best so far in the family
    n_leaders: int = 1  # how many of this stage's best the next stage receives


def _triplet_losses(leaders):
    rules = [
        ("all", "facenet", "all"),  # the library's "semi-hard"
        ("all", "facenet", "active"),
        ("all", "semi-hard", "active"),  # pytorch-metric-learning's semi-hard miner and reducer
        ("all", "all", "active"),  # the library's "all" (batch-all)
        ("hardest", "hardest", "all"),  # the library's "hard" (batch-hard)
        ("hardest", "hardest", "active"),
        ("easiest", "hardest", "active"),  # easy positive (Xuan et al. 2020)
        ("easiest", "hardest", "all"),
        ("easiest", "facenet", "active"),  # easy positive, semi-hard negative
        ("easiest", "all", "active"),
    ]
    base = leaders[0]
    return [dataclasses.replace(base, positives=p, negatives=n, average=a) for p, n, a in rules]


def _margins(leaders):
    return [dataclasses.replace(c, margin=m) for c in leaders for m in (0.1, 0.2, 0.3, 0.5)]


def _schedules(leaders):
    base = leaders[0]
    out = _grid(base, lr=(1e-3, 3e-3), schedule=("constant", "cosine", "warmup-cosine"))
    return out + [dataclasses.replace(base, lr=3e-3, schedule="one-cycle")]


def _batches(leaders):
    return [leaders[0]] + _vary(leaders[0], samples_per_class=(2, 8))


def _network(leaders):
    base = leaders[0]
    return [base] + _vary(
        base, width=(512,), batch_norm=(True,), dropout=(0.1,), weight_decay=(1e-4,)
    )


def _epochs(leaders):
    return [leaders[0]] + _vary(leaders[0], epochs=(25, 100))


def _contrastive_losses(leaders):
    base = leaders[0]
    forms = [
        (2, "all", 1.0),  # the library's (Hadsell et al.)
        (2, "active", 1.0),
        (2, "active-split", 1.0),
        (1, "all", 1.0),
        (1, "active", 1.0),
        (1, "active-split", 1.0),  # pytorch-metric-learning's ContrastiveLoss
        (2, "all", 0.5),
        (1, "active-split", 0.5),
    ]
    return [dataclasses.replace(base, power=p, average=a, margin=m) for p, a, m in forms]


def _contrastive_margins(leaders):
    base = leaders[0]
    return [base] + _vary(base, margin=(0.7, 1.3), pos_margin=(0.1,))


def _linear_recipes(leaders):
    best_mlp = leaders[0]
    linear = dataclasses.replace(TRIPLET, backbone="linear")
    return [
        linear,
        dataclasses.replace(best_mlp, backbone="linear"),
        dataclasses.replace(linear, positives="easiest", negatives="hardest", average="active"),
        dataclasses.replace(
            best_mlp, backbone="linear", positives="easiest", negatives="hardest", average="active"
        ),
    ]


def _linear_inits(leaders):
    return [leaders[0]] + _vary(leaders[0], init=("pca", "auto"))


def _linear_rates(leaders):
    base = leaders[0]
    return _grid(base, lr=(1e-3, 3e-3, 1e-2), schedule=("constant", "cosine"))


STAGES = [
    Stage("triplet-loss", "triplet", _triplet_losses, n_leaders=3),
    Stage("triplet-margin", "triplet", _margins),
    Stage("triplet-schedule", "triplet", _schedules),
    Stage("triplet-batches", "triplet", _batches),
    Stage("triplet-network", "triplet", _network),
    Stage("triplet-epochs", "triplet", _epochs),
    Stage("contrastive-loss", "contrastive", _contrastive_losses),
    Stage("contrastive-margin", "contrastive", _contrastive_margins),
    Stage("contrastive-schedule", "contrastive", _schedules),
    Stage("contrastive-batches", "contrastive", _batches),
    Stage("contrastive-epochs", "contrastive", _epochs),
    Stage("linear-recipe", "linear", _linear_recipes),
    Stage("linear-init", "linear", _linear_inits),
    Stage("linear-rate", "linear", _linear_rates),
]
_START = {"triplet": TRIPLET, "contrastive": SIAMESE, "linear": TRIPLET}


# -- results on disk -------------------------------------------------------------------------------

FIELDS = ("stage", "name", "key", "task", "seed", *METRICS, "precision_at_1", "fit_cpu")


def load(path=CSV_PATH):
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["seed"] = int(row["seed"])
        for key in (*METRICS, "precision_at_1", "fit_cpu"):
            row[key] = float(row[key])
    return rows


def append(row, path=CSV_PATH):
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({k: row[k] for k in FIELDS})


def cell_means(rows, key):
    """``{(task, metric): mean over seeds}`` of the rows of ``key`` (a candidate or a reference)."""
    out = {}
    for task_name in tasks.TASKS:
        mine = [r for r in rows if r["key"] == key and r["task"] == task_name]
        if mine:
            for metric in (*METRICS, "fit_cpu"):
                out[task_name, metric] = statistics.fmean(r[metric] for r in mine)
    return out


def mean_ranks(rows, keys):
    """Mean rank (1 = best) of each key over the (task, metric) cells, ranked among ``keys``."""
    means = {k: cell_means(rows, k) for k in keys}
    ranks = {k: [] for k in keys}
    for task_name in tasks.TASKS:
        for metric in METRICS:
            values = [means[k].get((task_name, metric), -math.inf) for k in keys]
            for k, r in zip(keys, rankdata([-v for v in values]), strict=True):
                ranks[k].append(r)
    return {k: statistics.fmean(v) for k, v in ranks.items()}


def best_peer(rows):
    """``{(task, metric): best peer's mean}`` over :data:`PEERS`."""
    best = {}
    for name in PEERS:
        for cell, value in cell_means(rows, _reference_key(name)).items():
            if cell[1] in METRICS:
                best[cell] = max(best.get(cell, -math.inf), value)
    return best


def _reference_key(name):
    return f"reference: {name}"


# -- the run ---------------------------------------------------------------------------------------


def stage_candidates(stage, leaders):
    """The candidates of ``stage``, given the leaders of the stages before it (by family)."""
    if stage.name == "linear-recipe":  # the linear backbone starts from the best MLP recipe
        family_leaders = leaders.get("triplet", [TRIPLET])
    else:
        family_leaders = leaders.get(stage.family, [_START[stage.family]])
    return list(dict.fromkeys(stage.build(family_leaders)))


def _complete(rows_done, candidates):
    return all((c.key, t, s) in rows_done for c in candidates for t in tasks.TASKS for s in SEEDS)


def _rank_stage(rows, stage, candidates, leaders):
    """The stage's candidates best first with their mean ranks; updates ``leaders``."""
    ranks = mean_ranks(rows, [c.key for c in candidates])
    order = sorted(candidates, key=lambda c: ranks[c.key])
    leaders[stage.family] = order[: stage.n_leaders]
    return order, ranks


def _fit_job(job):
    """``(job, figures)`` of one fit on one thread; ``job`` is ``(key, name, kind, spec, task,
    seed)`` with ``kind`` "reference" (``spec`` a name) or "candidate" (``spec`` a Candidate)."""
    _, _, kind, spec, task_name, seed = job
    with threadpool_limits(1), peers.torch_threads(1):
        peers.warm_up()
        if kind == "reference":
            return job, run_reference(spec, task_name, seed)
        return job, run_candidate(spec, task_name, seed)


def run(stage_names, *, n_jobs=1, log=print, path=CSV_PATH):
    """Fit the references and the candidates of ``stage_names`` not yet in the CSV at ``path``.

    Stages run in order, the fits of a stage ``n_jobs`` at a time in separate processes; a stage
    whose candidates are not all fitted (not selected, or stopped) ends the walk, since the stages
    after it depend on its leaders.
    """
    rows = load(path)
    done = {(r["key"], r["task"], r["seed"]) for r in rows}
    parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
    spent = []

    def ensure(stage, jobs):
        """``jobs``: (key, name, kind, spec) to fit on every task and seed."""
        todo = [
            (key, name, kind, spec, task_name, seed)
            for key, name, kind, spec in jobs
            for task_name in tasks.TASKS
            for seed in SEEDS
            if (key, task_name, seed) not in done
        ]
        for (key, name, _, _, task_name, seed), result in parallel(
            delayed(_fit_job)(job) for job in todo
        ):
            row = {"stage": stage, "name": name, "key": key, "task": task_name, "seed": seed}
            row.update(result)
            append(row, path)
            rows.append(row)
            done.add((key, task_name, seed))
            spent.append(row["fit_cpu"])
            log(
                f"{stage:<20} {name[:60]:<60} {task_name:<15} {seed}  "
                f"acc {row['knn_accuracy']:.3f}  MAP@R {row['map_at_r']:.3f}  "
                f"{row['fit_cpu']:.1f}s"
            )

    ensure(
        "reference",
        [(_reference_key(name), name, "reference", name) for name in {**PEERS, **LIBRARY}],
    )
    leaders = {}
    for stage in STAGES:
        candidates = stage_candidates(stage, leaders)
        if stage.name in stage_names:
            ensure(stage.name, [(c.key, c.name, "candidate", c) for c in candidates])
        if not _complete(done, candidates):
            break
        _rank_stage(rows, stage, candidates, leaders)
    log(f"# {len(spent)} fits in this run, {sum(spent):.0f} CPU s of fitting")
    return rows, leaders


# -- the summary -----------------------------------------------------------------------------------


def stage_tables(rows):
    """Per stage: its candidates with mean rank, median metrics over tasks, worst margin, time."""
    peer_best = best_peer(rows)
    done = {(r["key"], r["task"], r["seed"]) for r in rows}
    tables, leaders = [], {}
    for stage in STAGES:
        candidates = stage_candidates(stage, leaders)
        if not _complete(done, candidates):
            break
        order, ranks = _rank_stage(rows, stage, candidates, leaders)
        table = [
            {
                "candidate": c.name,
                "mean rank": ranks[c.key],
                **_spread(
                    cell_means(rows, c.key), peer_best, linear=stage.family == "linear", rows=rows
                ),
            }
            for c in order
        ]
        tables.append((stage, table))
    return tables, leaders


_TITLES = {"knn_accuracy": "KNN acc.", "map_at_r": "MAP@R"}


def _spread(means, peer_best, *, linear, rows):
    out = {}
    for metric in METRICS:
        out[f"median {_TITLES[metric]}"] = statistics.median(means[t, metric] for t in tasks.TASKS)
    if linear:  # the bar of the linear backbone is NCA
        nca = cell_means(rows, _reference_key("NCA"))
        margins = [means[cell] - nca[cell] for cell in nca if cell[1] in METRICS]
    else:
        margins = [means[cell] - value for cell, value in peer_best.items()]
    out["worst margin"] = min(margins)
    out["fit CPU (s)"] = statistics.fmean(means[t, "fit_cpu"] for t in tasks.TASKS)
    return out


def per_task_table(rows, keys_and_names):
    """Mean KNN accuracy / MAP@R per task of the given rows (references and leaders)."""
    lines = []
    for key, name in keys_and_names:
        means = cell_means(rows, key)
        if not means:
            continue
        cells = [
            f"{means[t, 'knn_accuracy']:.3f} / {means[t, 'map_at_r']:.3f} "
            f"({means[t, 'fit_cpu']:.1f} s)"
            for t in tasks.TASKS
        ]
        cells.append(f"{statistics.fmean(means[t, 'fit_cpu'] for t in tasks.TASKS):.2f}")
        lines.append([name] + cells)
    return lines


def rst(rows, meta):
    tables, leaders = stage_tables(rows)
    out = [
        ".. This file is written by benchmarks/sweep.py; edit the script, not this file.",
        "",
        f"Measured on {meta['date']} with ``{meta['command']}`` on {meta['cpu']} "
        f"({meta['cores']} cores shared with other work, one thread per fit, fit times in "
        f"process CPU seconds); {len(SEEDS)} seeds, {len(rows)} fits in the CSV "
        f"(``benchmarks/results/sweep.csv``). Versions: {', '.join(meta['versions'])}.",
        "",
        "Each stage varies one lever around the leaders of the stages before it. *mean rank*: "
        "the candidate's rank among the stage's candidates on each (task, metric) cell "
        "(KNN accuracy and MAP@R on each task, means over the seeds), averaged over the "
        f"{2 * len(tasks.TASKS)} cells; lower is better. *median*: over the tasks. *worst "
        "margin*: the smallest difference to the best peer (KNN on raw features, NCA, "
        "pytorch-metric-learning's triplet and contrastive loops) over the cells; for the "
        "linear backbone, to NCA. Positive means it beats them on every task. *fit CPU*: mean "
        "over the tasks of the compact loop's training time (the losses here are plain "
        "PyTorch, not the library's kernels).",
        "",
    ]
    for stage, table in tables:
        out += [f".. rubric:: {stage.name}", "", ".. list-table::", "   :header-rows: 1", ""]
        header = list(table[0])
        out.append(f"   * - {header[0]}")
        out += [f"     - {h}" for h in header[1:]]
        for row in table:
            out.append(f"   * - {row['candidate']}")
            for h in header[1:]:
                value = row[h]
                out.append(f"     - {value:+.3f}" if h == "worst margin" else f"     - {value:.3f}")
        out.append("")
    names = [(_reference_key(n), n) for n in {**PEERS, **LIBRARY}]
    for family in ("triplet", "contrastive", "linear"):
        if family in leaders:
            names.append((leaders[family][0].key, f"best {family}: {leaders[family][0].name}"))
    out += [
        ".. rubric:: Per task: the references and each family's best",
        "",
        "KNN accuracy / MAP@R per task, means over the seeds, with the mean fit CPU time in "
        "brackets, and the mean over the tasks of the fit CPU time. The *defaults* rows are the "
        "estimators with the defaults chosen from this sweep, the *previous defaults* rows the "
        "estimators before it (FaceNet's and Hadsell et al.'s rules, spelled out).",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - method",
    ]
    out += [f"     - {t}" for t in tasks.TASKS] + ["     - fit CPU (s)"]
    for line in per_task_table(rows, names):
        out.append(f"   * - {line[0]}")
        out += [f"     - {cell}" for cell in line[1:]]
    out.append("")
    return "\n".join(out)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--stages", default=None, help=f"comma-separated subset of {[s.name for s in STAGES]}"
    )
    parser.add_argument("--summary", action="store_true", help="only rewrite the summary")
    parser.add_argument(
        "--n-jobs", type=int, default=1, help="fits run side by side, one thread each"
    )
    parser.add_argument("--output", default=str(RST_PATH), help="where to write the summary")
    args = parser.parse_args(argv)
    names = [s.name for s in STAGES]
    if args.stages:
        names = [s.strip() for s in args.stages.split(",")]
        unknown = sorted(set(names) - {s.name for s in STAGES})
        if unknown:
            parser.error(f"unknown stages {unknown}")
    meta = peers.metadata("sweep.py", argv)
    if args.summary:
        rows = load()
    else:
        rows, _ = run(names, n_jobs=args.n_jobs, log=lambda line: print(line, flush=True))
    Path(args.output).write_text(rst(rows, meta) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
