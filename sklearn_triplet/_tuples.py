"""Learning from given pairs and triplets: the two forms of input, their checks, the batches and
the estimator that PairEmbedder and ComparisonEmbedder share.

The two forms of ``X``
----------------------
- Features: an array of shape ``(n_tuples, k, n_features)`` (``k = 2`` for pairs, 3 for
  triplets), each tuple carrying the features of its members.
- Indices: integers of shape ``(n_tuples, k)`` into the estimator's ``points`` parameter, an
  array of shape ``(n_points, n_features)`` given once, so that a million pairs over 10,000
  points do not copy rows.

The points live in a constructor parameter rather than in a ``fit`` argument because
:class:`~sklearn.model_selection.GridSearchCV` and
:func:`~sklearn.model_selection.cross_validate` split ``X`` and ``y`` by rows and hand nothing
else to ``score``: a ``points`` argument of ``fit`` would not reach the scoring of a fold, and one
of length ``n_tuples`` would even be split by rows. As a parameter it travels with every clone
(metric-learn's ``preprocessor`` does the same), and the folds split the tuples, never the points.

Both forms become, at the boundary, one float32 array of the points that the tuples use and an
int64 array ``(n_tuples, k)`` of rows of it; everything inside works on that. A batch of tuples
embeds each of its distinct points once.
"""

import math
import time
import warnings
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import _safe_indexing
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data

from . import _training
from ._base import _INFERENCE_BATCH_SIZE, EmbeddingCollapseWarning, _BaseEmbedder
from .verification import paired_distances

# -- the boundary: checks of X, points and y -------------------------------------------------------


def _check_tuples(estimator, X, *, tuple_size, reset):
    """Validate ``X`` in either form; return ``(points, tuples)``.

    Parameters
    ----------
    estimator : _TupleEmbedder
        Its ``points`` parameter serves index tuples; ``n_features_in_`` (and
        ``feature_names_in_``) are set when ``reset``, else checked.
    X : array-like of shape (n_tuples, tuple_size, n_features) or (n_tuples, tuple_size)
        Feature tuples, or integer index tuples into ``estimator.points``.
    tuple_size : {2, 3}
    reset : bool
        True in ``fit``.

    Returns
    -------
    points : ndarray of shape (n_used, n_features), float32
        The points the tuples use, each once.
    tuples : ndarray of shape (n_tuples, tuple_size), int64
        Rows of ``points``.
    """
    name = type(estimator).__name__
    kind = "pair" if tuple_size == 2 else "triplet"
    shape = getattr(X, "shape", None)
    if shape is None:
        X = np.asarray(X)
        shape = X.shape
    if len(shape) not in (2, 3) or shape[1] != tuple_size:
        raise ValueError(
            f"{name} takes {kind}s as X: an array of shape (n_{kind}s, {tuple_size}, n_features), "
            f"or integer indices of shape (n_{kind}s, {tuple_size}) into points; got X of shape "
            f"{tuple(shape)}."
        )
    if len(shape) == 3:
        X = check_array(X, allow_nd=True, dtype=np.float32, input_name="X", estimator=estimator)
        points = X.reshape(-1, X.shape[2])
        validate_data(estimator, points, reset=reset, skip_check_array=True)
        tuples = np.arange(points.shape[0], dtype=np.int64).reshape(X.shape[:2])
        return points, tuples
    return _indexed_points(estimator, X, name=name, kind=kind, reset=reset)


def _indexed_points(estimator, X, *, name, kind, reset):
    """``(points, tuples)`` for index tuples: only the rows of ``points`` they use, each once."""
    if estimator.points is None:
        raise ValueError(
            f"X of shape {tuple(X.shape)} holds index {kind}s, which need the points they index: "
            f"set points to an array of shape (n_points, n_features), or pass X of shape "
            f"(n_{kind}s, {X.shape[1]}, n_features)."
        )
    X = check_array(X, dtype=None, input_name="X", estimator=estimator)
    if X.dtype.kind not in "iu":
        raise ValueError(
            f"X of shape {X.shape} holds index {kind}s, which must be integers; got dtype "
            f"{X.dtype}."
        )
    n_points = _num_rows(estimator.points)
    bad = (X < 0) | (X >= n_points)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ValueError(
            f"X holds indices into points, which has {n_points} rows, so they must lie in "
            f"[0, {n_points - 1}]; got {X[row, column]} in {kind} {row}."
        )
    used, tuples = np.unique(X, return_inverse=True)
    points = _safe_indexing(estimator.points, used)
    validate_data(estimator, points, reset=reset, skip_check_array=True)
    points = check_array(points, dtype=np.float32, input_name="points", estimator=estimator)
    return points, tuples.reshape(X.shape).astype(np.int64, copy=False)


def _num_rows(points):
    shape = getattr(points, "shape", None)
    if shape is None or len(shape) != 2:
        shape = np.shape(points)
    if len(shape) != 2:
        raise ValueError(
            f"points must be an array of shape (n_points, n_features); got shape {tuple(shape)}."
        )
    return int(shape[0])


def _check_pair_labels(estimator, y, n_pairs, *, both_kinds):
    """``y`` as an int8 array of +1 (similar) and -1 (dissimilar)."""
    name = type(estimator).__name__
    if y is None:
        raise ValueError(
            f"{name} needs y: +1 for a similar pair, -1 for a dissimilar one; got y=None."
        )
    y = column_or_1d(y)
    if y.shape[0] != n_pairs:
        raise ValueError(
            f"X and y must describe the same pairs; got {n_pairs} pairs in X and {y.shape[0]} "
            "labels in y."
        )
    if y.dtype.kind not in "iuf" or not np.isin(y, (-1, 1)).all():
        values = np.unique(y)
        raise ValueError(
            "y must hold +1 (similar pair) or -1 (dissimilar pair) for each pair; got the values "
            f"{values[:10].tolist()}. For a boolean array same, pass np.where(same, 1, -1)."
        )
    y = y.astype(np.int8)
    if both_kinds and np.unique(y).shape[0] < 2:
        which = "similar (+1)" if y[0] > 0 else "dissimilar (-1)"
        raise ValueError(
            f"{name} needs both similar (+1) and dissimilar (-1) pairs to learn from; all "
            f"{n_pairs} pairs in y are {which}."
        )
    return y


# -- batches ---------------------------------------------------------------------------------------


def _tuple_batches(n_tuples, batch_size, rng):
    """One epoch: every tuple once, in a random order, ``batch_size`` tuples per batch."""
    order = rng.permutation(n_tuples)
    for start in range(0, n_tuples, batch_size):
        yield order[start : start + batch_size]


def _validation_split(n_tuples, y, fraction, rng):
    """Hold out ``fraction`` of the tuples (of each kind of pair when ``y`` is given)."""
    groups = [np.arange(n_tuples)] if y is None else [np.flatnonzero(y == v) for v in (-1, 1)]
    train_parts, val_parts = [], []
    for members in groups:
        if members.shape[0] < 2:
            what = "triplets" if y is None else "similar and two dissimilar pairs"
            raise ValueError(
                f"early_stopping needs at least two {what}, so that one of each stays on both "
                f"sides of the validation split. Use early_stopping=False."
            )
        members = rng.permutation(members)
        n_val = int(np.clip(round(fraction * members.shape[0]), 1, members.shape[0] - 1))
        val_parts.append(members[:n_val])
        train_parts.append(members[n_val:])
    return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(val_parts))


# -- the shared estimator --------------------------------------------------------------------------

_SHARED_CONSTRAINTS = {
    key: value
    for key, value in _BaseEmbedder._parameter_constraints.items()
    if key not in ("loss", "samples_per_class")
}


class _TupleEmbedder(_BaseEmbedder):
    """The estimator shared by PairEmbedder and ComparisonEmbedder.

    A subclass sets ``_tuple_size`` and ``_kind``, and defines ``_check_targets(y, n_tuples)``,
    ``_tuple_loss(members, y) -> (loss, stats)`` on embeddings of shape
    ``(batch, tuple_size, n_components)``, and ``_validation_score(members, y) -> float``.
    """

    _parameter_constraints: ClassVar[dict] = {
        **_SHARED_CONSTRAINTS,
        "points": ["array-like", None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
    }

    def _fit(self, X, y, *, n_epochs, incremental, validate):
        start_time = time.perf_counter()
        reset = not (incremental and hasattr(self, "module_"))
        points, tuples = _check_tuples(self, X, tuple_size=self._tuple_size, reset=reset)
        y = self._check_targets(y, tuples.shape[0])
        if reset:
            self._initialise(points.shape[1])
        all_tuples, all_y, validation = tuples, y, None
        if validate and self.early_stopping:
            train_idx, val_idx = _validation_split(
                tuples.shape[0], y, self.validation_fraction, self._rng
            )
            validation = (tuples[val_idx], None if y is None else y[val_idx])
            tuples, y = tuples[train_idx], None if y is None else y[train_idx]
        seed = int(self._rng.integers(2**31))
        device = self.device_
        forked = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=forked):
            torch.manual_seed(seed)
            stop_reason = self._train(
                points, tuples, y, validation, n_epochs=n_epochs, start_time=start_time
            )
        self._after_training(points, all_tuples, all_y)
        self._warn_after_training(stop_reason, validation is not None)
        return self

    def _after_training(self, points, tuples, y):
        """Hook run once training is over, on all the tuples of fit (PairEmbedder calibrates its
        threshold there)."""

    def _train(self, points, tuples, y, validation, *, n_epochs, start_time):
        module, device = self.module_, self.device_
        optimizer = torch.optim.Adam(
            module.parameters(), lr=self.learning_rate_init, weight_decay=self.weight_decay
        )
        if self._optimizer_state is not None:
            optimizer.load_state_dict(self._optimizer_state)
            for group in optimizer.param_groups:  # the moments carry over, the settings are today's
                group.update(lr=self.learning_rate_init, weight_decay=self.weight_decay)
        points_t = torch.from_numpy(points).to(device)
        tuples_t = torch.from_numpy(tuples).to(device)
        y_t = None if y is None else torch.from_numpy(y).to(device)
        point_ids = torch.arange(points.shape[0], device=device)

        # The training loop embeds X[indices] and hands the embeddings and y[indices] to the batch
        # loss. Here the indices of a batch are its distinct points (y: their ids, all distinct, so
        # the loop's mean distance is that between the batch's points), and the batch loss reads
        # which embeddings form each tuple from `current`, set by the generator just before the
        # loop embeds that batch.
        current = {}

        def batches():
            for batch in _tuple_batches(tuples.shape[0], self.batch_size, self._rng):
                batch = torch.as_tensor(batch, device=device)
                distinct, members = torch.unique(tuples_t[batch], return_inverse=True)
                current["members"] = members
                current["y"] = None if y_t is None else y_t[batch]
                yield distinct

        def batch_loss(embeddings, _ids):
            return self._tuple_loss(embeddings[current["members"]], current["y"])

        validation_score = None
        if validation is not None:
            val_tuples, val_y = validation
            validation_score = lambda: self._validation_score(
                self._embed_members(points, val_tuples), val_y
            )

        def on_epoch_end(epoch, logs):
            self.n_iter_ = epoch
            return bool(self.callback(self, epoch, logs)) if self.callback is not None else False

        keep_optimizer_state = True
        try:
            return _training.train(
                module=module,
                optimizer=optimizer,
                batch_loss=batch_loss,
                X=points_t,
                y=point_ids,
                batches=batches,
                n_epochs=n_epochs,
                first_epoch=self.n_iter_ + 1,
                history=self.history_,
                validation_score=validation_score,
                n_iter_no_change=self.n_iter_no_change,
                tol=self.tol,
                on_epoch_end=on_epoch_end,
                mixed_precision=self.mixed_precision,
                metric=self.metric,
                verbose=self.verbose,
                start_time=start_time,
            )
        except FloatingPointError:
            keep_optimizer_state = False
            raise
        finally:
            module.eval()
            self._optimizer_state = optimizer.state_dict() if keep_optimizer_state else None

    def _warn_after_training(self, stop_reason, early_stopping):
        if early_stopping and stop_reason == _training.STOP_MAX_ITER:
            warnings.warn(
                f"{type(self).__name__} reached max_iter={self.max_iter} while the validation score "
                "was still improving; increase max_iter.",
                ConvergenceWarning,
            )
        spread = self.history_[-1].get("mean_distance", math.nan) if self.history_ else math.nan
        if spread < 0.5 * self.margin:
            warnings.warn(
                f"The embeddings collapsed towards a single point: the mean {self.metric} distance "
                f"between the points of the last batch is {spread:.3g}, less than half the "
                f"margin={self.margin}. Likely causes: a learning rate too high "
                f"(learning_rate_init={self.learning_rate_init}); a margin too large for the "
                f"metric (metric={self.metric!r}); input features on a large common offset or "
                "scale (standardise them, e.g. with StandardScaler); or far more similar than "
                f"dissimilar {self._kind}s.",
                EmbeddingCollapseWarning,
            )

    # -- using a fitted estimator ------------------------------------------------------------------

    def _embed_members(self, points, tuples):
        """Embeddings of the members of each tuple, shape (n_tuples, tuple_size, n_components)."""
        embeddings = _training.embed(
            self.module_, points, batch_size=_INFERENCE_BATCH_SIZE, device=self.device_
        )
        return embeddings[tuples]

    def _embed_tuples(self, X, tuple_size):
        check_is_fitted(self)
        points, tuples = _check_tuples(self, X, tuple_size=tuple_size, reset=False)
        return self._embed_members(points, tuples)

    def pair_distance(self, pairs):
        """Distance between the embeddings of the two points of each pair.

        Parameters
        ----------
        pairs : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
            Pairs of points, or integer index pairs into ``points``.

        Returns
        -------
        distances : ndarray of shape (n_pairs,)
            In units of ``metric``; smaller means more alike.
        """
        members = self._embed_tuples(pairs, 2)
        return paired_distances(members[:, 0], members[:, 1], metric=self.metric)

    def fit_transform(self, X, y=None, **fit_params):
        """Not available: ``fit`` learns from tuples, ``transform`` embeds single points.

        Raises
        ------
        TypeError
            Always; call ``fit(tuples, ...)`` and then ``transform(points)``.
        """
        raise TypeError(
            f"{type(self).__name__}.fit learns from {self._kind}s and transform embeds single "
            f"points, so there is no one X for fit_transform; call fit({self._kind}s, ...) and "
            "then transform(points)."
        )


_THRESHOLD_CONSTRAINTS = {
    "threshold": [StrOptions({"accuracy", "far"}), Interval(Real, None, None, closed="neither")],
    "target_far": [Interval(Real, 0, 1, closed="both"), None],
}

# -- docstring sections of the two estimators ------------------------------------------------------

TUPLE_TRAINING_PARAMETERS = """\
    batch_size : int, default=128
        Number of %(kind)ss per batch; each distinct point of a batch is embedded once.
    max_iter : int, default=50
        Number of epochs; an epoch trains on every %(kind)s once, in a random order.
    learning_rate_init : float, default=1e-3
        Learning rate of the Adam optimiser.
    weight_decay : float, default=0.0
        L2 penalty (Adam's ``weight_decay``).
    mixed_precision : bool, default=False
        Run the backbone under bfloat16 autocast (useful on recent GPUs); the loss stays float32.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the %(kind)ss and stop when their %(score)s has not
        improved by more than ``tol`` for ``n_iter_no_change`` epochs; the best weights are
        restored. Without it, training runs exactly ``max_iter`` epochs.
    validation_fraction : float, default=0.1
        Share of the %(kind)ss held out for early stopping (at least one on each side).
    n_iter_no_change : int, default=10
        Patience of early stopping, in epochs.
    tol : float, default=1e-4
        Smallest validation-score improvement that counts for early stopping.
    warm_start : bool, default=False
        When True, ``fit`` continues from the fitted weights, optimiser state and history.
    callback : callable, default=None
        ``callback(estimator, epoch, logs)`` is called after each epoch with that epoch's history
        row; returning True stops training.
    device : "auto", str or torch.device, default="auto"
        Where to train and embed. ``"auto"`` picks CUDA when available, else Apple MPS, else the
        CPU, and is resolved again when a saved estimator is loaded.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, the order of the %(kind)ss and the validation split. An int
        gives the same transform on every CPU fit; the global numpy and torch random states are
        left untouched.
    verbose : int, default=0
        0 silent; 1 a progress bar over epochs with the loss and validation score; 2 one line per
        epoch."""

TUPLE_ATTRIBUTES = """\
    module_ : torch.nn.Sequential
        The trained network, with children ``backbone`` and ``normalize``, on ``device_``.
    n_components_ : int
        Width of the embedding (the backbone's output width).
    history_ : list of dict
        One row per epoch: ``epoch``, ``loss``, %(stats)s, ``mean_distance`` (mean distance
        between the distinct points of the last batch, in units of ``metric``; below half the
        margin at the end of training, a collapse is warned), ``validation_score`` (with early
        stopping) and ``time`` (seconds since the fit began).
    n_iter_ : int
        Number of epochs trained.
    device_ : torch.device
        The device in use.
    n_features_in_ : int
        Number of features of a point (the last axis of feature tuples, the columns of
        ``points``); ``transform`` takes points of this width.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features, when ``points`` is a DataFrame with string column names."""

PAIR_STATS = (
    "the epoch's pair counts (``n_pairs``, ``n_positive_pairs`` (similar), ``n_negative_pairs`` "
    "(dissimilar), ``n_active_pairs`` (loss above 0)), ``active_fraction``"
)
TRIPLET_STATS = (
    "the epoch's triplet counts (``n_triplets``, ``n_easy``, ``n_semi_hard``, ``n_hard``, "
    "``n_active``, as defined in :func:`~sklearn_triplet.losses.triplet_loss_on_triplets`), "
    "their fractions (``easy_fraction``, ``semi_hard_fraction``, ``hard_fraction``, "
    "``active_fraction``)"
)
