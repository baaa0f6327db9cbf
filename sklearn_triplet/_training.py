"""The training loop as a plain function.

``train`` runs epochs of class-balanced batches, appends one dict per epoch to a history list, and
returns why it stopped (a value, never an exception, except for a non-finite loss). It knows nothing
of scikit-learn: the estimators hand it a module, an optimiser, a batch-loss hook, the declaration
of the loss's statistics and closures for validation and callbacks.
"""

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

_warmed_up = False


def warm_up():
    """Pay torch's one-time start-up of a process, so that no epoch's time counts it.

    Building the first optimiser of a process imports torch's compiler stack: seconds, once. The
    estimators call this before their clock starts.
    """
    global _warmed_up
    if not _warmed_up:
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])
        _warmed_up = True


# The share of a curve's whole range that its last epochs must still fall by to count as improving.
_TAIL_SHARE = 0.05


def still_improving(history, *, window, tol, keys=("loss", "active_fraction")):
    """Which training curve of ``history`` was still falling at its end, if any.

    A curve is still falling when its lowest value over the last ``window`` epochs is below its
    lowest value before them by more than ``tol`` per epoch (a mean fall, so that one lucky epoch
    of a noisy curve does not count) and by more than a twentieth of the curve's whole range over
    the fit (so that the slow tail of a curve that has done its work, creeping down as a
    learning-rate schedule anneals, does not count either).

    Parameters
    ----------
    history : list of dict
        One row per epoch.
    window : int
        Number of last epochs to look at (fewer when the history is shorter).
    tol : float
        Smallest fall per epoch that counts.
    keys : tuple of str, default=("loss", "active_fraction")
        The curves, lower is better; rows without a finite value are skipped.

    Returns
    -------
    key : str or None
        The first key still falling, or None.

    Examples
    --------
    >>> history = [{"loss": 1.0}, {"loss": 0.5}, {"loss": 0.4}]
    >>> still_improving(history, window=2, tol=0.1)
    'loss'
    >>> still_improving(history, window=2, tol=0.5) is None
    True
    """
    for key in keys:
        values = [row[key] for row in history if _finite(row.get(key))]
        span = min(window, len(values) - 1)
        if span < 1:
            continue
        fall = min(values[:-span]) - min(values[-span:])
        if fall > tol * span and fall > _TAIL_SHARE * (max(values) - min(values)):
            return key
    return None


# Under a learning-rate schedule: the share of a fit's epochs that make its end; the share of the
# fit's mean fall per epoch that the curve must still fall by there; the multiple of the curve's
# noise that the fall must exceed; the fewest epochs whose second half gives that noise.
_END_SHARE = 0.1
_END_RATE = 0.5
_END_NOISE = 2.0
_NOISE_MIN_EPOCHS = 10


def still_falling_at_the_end(history, *, tol, keys=("loss", "active_fraction")):
    """Which training curve of a fit under a learning-rate schedule was still falling at its end.

    A schedule anneals the learning rate towards 0 over the fit, so the curve of a fit that has
    done its work flattens at the end: a fall per epoch there cannot be judged against ``tol``
    alone (see :func:`still_improving`). It is judged against the fit's own curve instead. With
    ``end`` the last tenth of the epochs (at least one), a curve is still falling when its lowest
    value over ``end`` is below its lowest value before, per epoch of ``end``:

    - by more than half the fit's mean fall per epoch, ``(first - lowest) / (n_epochs - 1)``:
      with the learning rate almost spent, the fit still learns at least half as fast as on
      average;
    - by more than ``tol``;
    - and, in all, by more than twice the curve's noise, the standard deviation of its second
      half around a straight line (fits of 10 epochs or more; shorter ones have too few epochs to
      tell noise): the lucky last epoch of a flat, noisy curve does not count.

    A fit of two epochs whose loss fell always counts. Neither the main job's default fits
    (``python -m sklearn_triplet``) nor those of ``benchmarks/peers.py`` on its six tasks (50
    epochs, and 10 in its quick mode) do.

    Parameters
    ----------
    history : list of dict
        One row per epoch of the fit.
    tol : float
        Smallest fall per epoch that counts.
    keys : tuple of str, default=("loss", "active_fraction")
        The curves, lower is better; rows without a finite value are skipped.

    Returns
    -------
    falling : tuple or None
        ``(key, n_epochs, fall_per_epoch, rate)`` of the first curve still falling, ``rate`` its
        fall per epoch over the last ``n_epochs`` epochs divided by the fit's mean; or None.

    Examples
    --------
    >>> still_falling_at_the_end([{"loss": 0.5}, {"loss": 0.25}], tol=1e-4)
    ('loss', 1, 0.25, 1.0)
    >>> flattening = [{"loss": 1.0 / epoch} for epoch in range(1, 11)]
    >>> still_falling_at_the_end(flattening, tol=1e-4) is None
    True
    """
    for key in keys:
        values = np.array([row[key] for row in history if _finite(row.get(key))])
        if len(values) < 2:
            continue
        span = max(1, math.ceil(_END_SHARE * (len(values) - 1)))
        drop = float(values[:-span].min() - values[-span:].min())
        mean = float(values[0] - values.min()) / (len(values) - 1)
        noise = 0.0
        if len(values) >= _NOISE_MIN_EPOCHS:
            half = values[len(values) // 2 :]
            steps = np.arange(len(half))
            noise = float(np.std(half - np.polyval(np.polyfit(steps, half, 1), steps)))
        if drop / span > tol and drop / span > _END_RATE * mean and drop > _END_NOISE * noise:
            return key, span, drop / span, drop / span / mean
    return None


def _finite(value):
    return value is not None and math.isfinite(value)


# In a process group, the fewest rows of a batch for which the ranks split its loss by anchors
# (``anchor_loss``): the split saves half the mining of a batch and costs one more collective a
# step. On one thread, the triplet loss (semi-hard) costs about 1.1 ms at 128 rows whether one
# rank computes all of its anchors or half (a fixed cost of its ~40 operations), 2.2 against
# 1.8 ms at 256 rows and 10 against 5.5 ms at 512; a gloo collective between two processes on one
# machine costs 0.3 ms or more (benchmarks/distributed_training.py).
SPLIT_LOSS_ROWS = 256

# Why training stopped; the estimators turn these into warnings and attributes.
STOP_MAX_ITER = "max_iter"
STOP_NO_CHANGE = "n_iter_no_change"
STOP_CALLBACK = "callback"

# The share of a cosine schedule's steps spent warming up.
WARMUP_FRACTION = 0.05


def _constant(step, n_steps):
    return 1.0


def _cosine(step, n_steps):
    """A linear warm-up over the first 5% of the steps, then half a cosine from 1 towards 0.

    ``step`` counts from 0 and ``n_warmup = max(1, round(0.05 * n_steps))``: step ``s`` is taken
    at ``(s + 1) / n_warmup`` of the rate while ``s < n_warmup``, then at
    ``(1 + cos(pi * (s - n_warmup) / (n_steps - n_warmup))) / 2``, which falls from 1 to just
    above 0 at the last step.
    """
    n_warmup = max(1, round(WARMUP_FRACTION * n_steps))
    if step < n_warmup:
        return (step + 1) / n_warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - n_warmup) / max(1, n_steps - n_warmup)))


#: Learning-rate schedules: ``factor(step, n_steps)``, the multiple of the initial rate at a step.
SCHEDULES = {"constant": _constant, "cosine": _cosine}


@dataclass(frozen=True)
class LearningRateSchedule:
    """The learning rate of every step of one fit: ``initial * SCHEDULES[name](step, n_steps)``.

    The fit's epochs are numbered from ``first_epoch`` and it has ``n_epochs`` of them; with ``B``
    batches an epoch, step ``(epoch - first_epoch) * B + batch`` of ``n_epochs * B``. A fit resumed
    from a checkpoint keeps its ``first_epoch`` and goes on where it stopped.
    """

    name: str
    initial: float
    first_epoch: int
    n_epochs: int

    def rate(self, epoch, batch, n_batches):
        """The learning rate of batch ``batch`` (from 0) of ``n_batches`` in epoch ``epoch``."""
        step = (epoch - self.first_epoch) * n_batches + batch
        return self.initial * SCHEDULES[self.name](step, self.n_epochs * n_batches)


class Rows(Protocol):
    """Training rows read as they are needed (``_distributed.SharedRows``): indexed by a tensor
    of row indices, they give those rows as a float32 tensor, from ``device``."""

    @property
    def device(self) -> torch.device: ...

    def __getitem__(self, indices: torch.Tensor, /) -> torch.Tensor: ...


@dataclass(frozen=True)
class TrainingData:
    """What one fit trains on, as the estimator prepared it.

    Attributes
    ----------
    X : torch.Tensor of shape (n_samples, n_features), or Rows
        Training data, on the device when it fits there, else on the CPU (pinned when the device is
        CUDA); or rows read as the batches need them (a memory map in a process group).
    y : torch.Tensor of shape (n_samples,) or None
        Encoded labels, on the same device as ``X``; None when every batch brings its targets.
    batches : callable
        ``batches() -> iterable``: the batches of one epoch, each an index array into ``X`` (and
        ``y``), or a pair ``(indices, targets)`` whose ``targets``, already on the device, are
        handed to the batch loss in place of ``y[indices]`` (the estimators that learn from given
        pairs and triplets pass there which embeddings of the batch form each tuple).
    validation_score : callable or None
        ``validation_score() -> float``, higher is better; enables early stopping on it, restoring
        the best weights at the end. None: no early stopping.
    augment : callable or None
        ``augment(batch) -> batch``, applied to each training batch of rows on the device before
        the module sees it; None leaves batches as they are.
    """

    X: "torch.Tensor | Rows"
    y: "torch.Tensor | None"
    batches: Callable[[], Iterable]
    validation_score: "Callable[[], float] | None" = None
    augment: "Callable[[torch.Tensor], torch.Tensor] | None" = None


@dataclass(frozen=True)
class LoopSettings:
    """How the loop runs: its epochs, its schedule, early stopping's rule and its output.

    Attributes
    ----------
    n_epochs : int
        The most epochs to run in this call.
    first_epoch : int, default=1
        Number of the first epoch (continues the count for warm starts).
    schedule : LearningRateSchedule, default=None
        Sets the optimiser's learning rate before every step; None leaves it as it is.
    n_iter_no_change : int, default=10
        Epochs without an improvement of more than ``tol`` before early stopping.
    tol : float, default=0.0
        Minimal improvement of the validation score.
    mixed_precision : bool, default=False
        Run the forward pass under bfloat16 autocast (the loss is computed in float32).
    verbose : int, default=0
        0 silent, 1 a progress bar over epochs, 2 one line per epoch.
    score_name : str, default="validation score"
        What the validation score is (``"MAP@R"``, ``"ROC AUC"``...), for the console report.
    """

    n_epochs: int
    first_epoch: int = 1
    schedule: "LearningRateSchedule | None" = None
    n_iter_no_change: int = 10
    tol: float = 0.0
    mixed_precision: bool = False
    verbose: int = 0
    score_name: str = "validation score"


@dataclass
class EarlyStopping:
    """Early stopping's state: the best validation score, its weights, epochs since it improved.

    Updated after every epoch with a validation score; a checkpoint stores it (``as_dict``) so that
    a resumed fit goes on with it.
    """

    best_score: float = -math.inf
    best_state: "dict | None" = None
    n_no_change: int = 0

    def update(self, score, module, tol):
        """Count ``score`` of the epoch just trained; keep ``module``'s weights when the best."""
        if score > self.best_score + tol:
            self.n_no_change = 0
        else:
            self.n_no_change += 1
        if score > self.best_score:
            self.best_score = score
            self.best_state = _copy_state(module)

    def as_dict(self):
        return {
            "best_score": self.best_score,
            "best_state": self.best_state,
            "n_no_change": self.n_no_change,
        }


def train(
    module,
    optimizer,
    batch_loss,
    statistics,
    data,
    settings,
    *,
    history,
    on_epoch_end=None,
    start_time=None,
    stopping=None,
    checkpoint=None,
    ranks=None,
    anchor_loss=None,
):
    """Train ``module`` in place for up to ``settings.n_epochs`` epochs.

    Parameters
    ----------
    module : torch.nn.Module
        Maps a batch ``(B, n_features)`` to embeddings ``(B, n_components)``; already on the device.
    optimizer : torch.optim.Optimizer
        Over ``module``'s parameters.
    batch_loss : callable
        ``batch_loss(embeddings, labels, *, taxonomy, spread) -> BatchLoss``: the loss, the batch's
        counts vector (summed over the epoch on the device, so there is no host sync per batch;
        with the taxonomy counted when ``taxonomy``) and, when ``spread``, the sum and number of the
        distances between different classes.
    statistics : Statistics
        The declaration of the counts and fractions of the loss (how often the taxonomy is
        counted, the names of the counts vector's entries, the fractions of the history).
    data : TrainingData
        The training data, the batches of an epoch and the validation score.
    settings : LoopSettings
        The epochs, the learning-rate schedule, early stopping's rule and the output.
    history : list
        One dict per epoch is appended here as soon as the epoch ends, so a caller interrupted by
        ``KeyboardInterrupt`` keeps every completed epoch.
    on_epoch_end : callable, default=None
        ``on_epoch_end(epoch, logs) -> bool``; returning True stops training.
    start_time : float, default=None
        ``time.perf_counter()`` at the start of fit; the ``"time"`` column counts from it.
    stopping : EarlyStopping, default=None
        Early stopping's state to resume an interrupted loop from; updated in place after every
        epoch. None starts afresh.
    checkpoint : callable, default=None
        ``checkpoint(epoch, stopping)``, called after each epoch that training continues from,
        when the weights, the optimiser and ``stopping`` are those the next epoch starts from.
    ranks : sklearn_triplet._distributed.Ranks, default=None
        The process group training one model together (see :mod:`sklearn_triplet._distributed`):
        every rank embeds its share of each batch, the loss sees the gathered global batch, the
        gradients are summed, and the validation score, the time and the decision to stop are
        the same on every rank. None trains in this process alone.
    anchor_loss : callable, default=None
        ``anchor_loss(embeddings, labels, anchors, *, taxonomy, spread) -> PartialLoss``: the
        terms of the anchors ``anchors`` (a slice) of the batch alone, for a loss that is a sum
        over anchors (:class:`~sklearn_triplet._kernels.PartialLoss`). In a process group, each
        rank then computes the terms of its own share's anchors against the whole batch, rather
        than every rank the whole loss. None: every rank computes ``batch_loss``.

    Returns
    -------
    stop_reason : {"max_iter", "n_iter_no_change", "callback"}
        Why the loop ended.

    Raises
    ------
    FloatingPointError
        When an epoch's loss is not finite. The weights are first restored to those at the start of
        that epoch, so the module never holds NaN weights.
    """
    start_time = time.perf_counter() if start_time is None else start_time
    device = next(iter(module.parameters()), torch.empty(0)).device
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if settings.mixed_precision
        else contextlib.nullcontext()
    )
    stopping = EarlyStopping() if stopping is None else stopping
    if ranks is not None:
        ranks.broadcast_module(module)
    stop_reason = STOP_MAX_ITER
    first_epoch = settings.first_epoch
    epochs = range(first_epoch, first_epoch + settings.n_epochs)
    with _progress(epochs, settings.verbose) as bar:
        for epoch in epochs:
            snapshot = _copy_state(module)
            logs = _train_epoch(
                module,
                optimizer,
                settings.schedule,
                epoch,
                batch_loss,
                statistics,
                data.X,
                data.y,
                data.batches(),
                device,
                autocast,
                ranks,
                data.augment,
                anchor_loss,
            )
            problem = _divergence(logs, module)
            if problem:
                module.load_state_dict(snapshot)
                raise FloatingPointError(
                    f"Training diverged in epoch {epoch}: {problem}; the weights were "
                    "restored to those before that epoch. Likely fixes: a smaller learning rate "
                    "(learning_rate_init), standardised input features (e.g. StandardScaler), "
                    "normalize=True, or mixed_precision=False."
                )
            logs = {"epoch": epoch, **logs}
            if data.validation_score is not None:
                logs["validation_score"] = (
                    float(data.validation_score())
                    if ranks is None
                    else ranks.from_writer(data.validation_score)
                )
                stopping.update(logs["validation_score"], module, settings.tol)
            logs["time"] = time.perf_counter() - start_time
            if ranks is not None:
                logs["time"] = ranks.from_writer(lambda elapsed=logs["time"]: elapsed)
            history.append(logs)
            _report(bar, logs, settings, first_epoch + settings.n_epochs - 1, statistics)
            stop = on_epoch_end is not None and on_epoch_end(epoch, logs)
            if stop if ranks is None else ranks.any(stop):
                stop_reason = STOP_CALLBACK
                break
            if (
                data.validation_score is not None
                and stopping.n_no_change >= settings.n_iter_no_change
            ):
                stop_reason = STOP_NO_CHANGE
                break
            if checkpoint is not None and epoch < epochs[-1]:
                checkpoint(epoch, stopping)
    if stopping.best_state is not None:
        module.load_state_dict(stopping.best_state)
    return stop_reason


def _train_epoch(
    module,
    optimizer,
    schedule,
    epoch,
    batch_loss,
    statistics,
    X,
    y,
    batches,
    device,
    autocast,
    ranks=None,
    augment=None,
    anchor_loss=None,
):
    module.train()
    batches = list(batches)
    loss_sum = torch.zeros((), device=device)
    finite = torch.ones((), dtype=torch.bool, device=device)
    totals = negatives = None
    for i, batch in enumerate(batches):
        indices, targets = batch if isinstance(batch, tuple) else (batch, None)
        indices = torch.as_tensor(indices, device=X.device)
        yb = y[indices].to(device, non_blocking=True) if targets is None else targets
        taxonomy = i % statistics.taxonomy_every == 0
        last = i == len(batches) - 1  # the spread: the embeddings of the epoch's last batch
        if ranks is not None and anchor_loss is not None and len(indices) >= SPLIT_LOSS_ROWS:
            optimizer.zero_grad(set_to_none=True)
            loss, counts, spread, embeddings = _split_loss_backward(
                module, X, indices, yb, device, autocast, ranks, augment, anchor_loss,
                taxonomy=taxonomy, spread=last,
            )  # fmt: skip
        else:
            embeddings = embed_batch(module, X, indices, device, autocast, ranks, augment)
            loss, counts, spread = batch_loss(embeddings, yb, taxonomy=taxonomy, spread=last)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        if ranks is not None:
            ranks.sum_gradients(module)
        if schedule is not None:
            rate = schedule.rate(epoch, i, len(batches))
            for group in optimizer.param_groups:
                group["lr"] = rate
        optimizer.step()
        loss_sum += loss.detach()
        # NaN embeddings make every comparison false, so a loss alone can read 0: check both.
        finite &= torch.isfinite(embeddings.detach()).all()
        totals = counts if totals is None else totals + counts
        negatives = spread if spread is not None else negatives
    if ranks is not None:
        ranks.broadcast_module(module, parameters=False)
    logs = {
        "loss": (loss_sum / max(len(batches), 1)).item(),
        "_finite_embeddings": bool(finite),
    }
    if totals is not None:
        logs.update(statistics.epoch_logs(totals))
    logs["mean_distance"] = _mean_negative_distance(negatives)
    return logs


def embed_batch(module, X, indices, device, autocast=None, ranks=None, augment=None):
    """The float32 embeddings ``(len(indices), n_components)`` of the rows ``indices`` of ``X``.

    In a process group (``ranks``), this rank embeds its share of the batch alone, with gradients,
    and the others' shares are gathered: the result is that of the whole batch, in its order.
    ``augment(rows) -> rows``, when given, changes the rows (this rank's share) first.
    """
    augment = augment or (lambda rows: rows)
    if ranks is None:
        with autocast or contextlib.nullcontext():
            return module(augment(X[indices].to(device, non_blocking=True))).float()
    share, sizes = ranks.share(indices)
    with autocast or contextlib.nullcontext():
        embeddings = module(augment(X[share].to(device, non_blocking=True)))
    return ranks.gather(embeddings.float(), sizes)


def _split_loss_backward(
    module, X, indices, labels, device, autocast, ranks, augment, anchor_loss, *, taxonomy, spread
):
    """One batch's loss in a process group whose ranks split its anchors; its backward pass.

    This rank embeds its share of the batch (:meth:`Ranks.share`), the shares are gathered, and
    this rank computes the terms of its share's anchors against the whole batch, and their
    gradient in every embedding of the batch. One all-reduce sums the ranks' parts, gradients,
    counts and negative distances (:meth:`Ranks.sum_parts`): every rank then holds the loss, the
    counts and the gradient in the batch's embeddings of one process, and passes the gradient of
    its share back through the module. The module's gradients are this rank's part of one
    process's; the caller sums them over the ranks.

    Returns
    -------
    loss, counts, negative_distances
        As a :class:`~sklearn_triplet._kernels.BatchLoss`'s, of the whole batch, detached.
    embeddings : torch.Tensor of shape (B, n_components)
        The batch's embeddings, detached.
    """
    augment = augment or (lambda rows: rows)
    share, sizes = ranks.share(indices)
    with autocast or contextlib.nullcontext():
        local = module(augment(X[share].to(device, non_blocking=True))).float()
    embeddings = ranks.gather(local.detach(), sizes).requires_grad_()
    anchors = ranks.rows(sizes)
    part = anchor_loss(embeddings, labels, anchors, taxonomy=taxonomy, spread=spread)
    (gradient,) = torch.autograd.grad(part.total, embeddings, allow_unused=True)
    if gradient is None:  # a loss constant in the embeddings
        gradient = torch.zeros_like(embeddings)
    gradient, loss, counts, negatives = ranks.sum_parts(gradient, part)
    local.backward(gradient[anchors])
    return loss, counts, negatives, embeddings.detach()


def _divergence(logs, module):
    """What went non-finite in the epoch, or an empty string (pops the private flag from logs)."""
    finite_embeddings = logs.pop("_finite_embeddings")
    if not math.isfinite(logs["loss"]):
        return f"the loss became {logs['loss']}"
    if not finite_embeddings:
        return "the embeddings became non-finite (the loss cannot see NaN and may read 0)"
    if not all(torch.isfinite(p).all() for p in module.parameters()):
        return "the weights became non-finite"
    return ""


def _mean_negative_distance(negatives):
    """Mean distance between embeddings of different classes, from their sum and number.

    Negatives only: same-class pairs rightly sit close together, and counting them would make a
    healthy two-class embedding look collapsed. A collapse drives this towards 0.
    """
    if negatives is None:
        return math.nan
    total, count = negatives
    return float(total.item() / count.item()) if count.item() else math.nan


def _copy_state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@contextlib.contextmanager
def _progress(epochs, verbose):
    if verbose != 1:
        yield None
        return
    from tqdm.auto import tqdm

    # Outside a terminal (a log file, CI), update at most every 10 s so the log stays readable.
    interactive = sys.stderr.isatty()
    bar = tqdm(
        total=len(epochs),
        unit="epoch",
        mininterval=0.1 if interactive else 10.0,
        ascii=not interactive,
        file=sys.stderr,
    )
    try:
        yield bar
    finally:
        bar.close()


def _report(bar, logs, settings, last_epoch, statistics):
    verbose = settings.verbose
    if verbose == 1:
        postfix = {"loss": f"{logs['loss']:.4f}"}
        if "validation_score" in logs:
            postfix["val"] = f"{logs['validation_score']:.4f}"
        bar.set_postfix(postfix, refresh=False)
        bar.update(1)
    elif verbose >= 2:
        parts = [f"epoch {logs['epoch']}/{last_epoch}", f"loss {logs['loss']:.4f}"]
        columns = [(fraction.name, fraction.label) for fraction in statistics.fractions]
        for key, label in columns + [("validation_score", f"val {settings.score_name}")]:
            if key in logs:
                parts.append(f"{label} {logs[key]:.3f}")
        parts.append(f"{logs['time']:.1f}s")
        print("  ".join(parts), flush=True)
