"""Learning from given pairs and triplets: the two forms of input, their checks, the batches and
the estimator that PairEmbedder and ComparisonEmbedder share.

The two forms of ``X``
----------------------
- Features: an array of shape ``(n_tuples, k, n_features)`` (``k = 2`` for pairs, 3 for
  triplets), each tuple carrying the features of its members.
- Indices: integers of shape ``(n_tuples, k)`` into the estimator's ``points`` parameter, an
  array of shape ``(n_points, n_features)`` given once, so that a million pairs over 10,000
  points do not copy rows; or ids of any kind (file names...) that ``points``, a callable, maps to
  features: it is called with a 1-D array of the distinct ids used and returns their rows.

The points live in a constructor parameter rather than in a ``fit`` argument because
:class:`~sklearn.model_selection.GridSearchCV` and
:func:`~sklearn.model_selection.cross_validate` split ``X`` and ``y`` by rows and hand nothing
else to ``score``: a ``points`` argument of ``fit`` would not reach the scoring of a fold, and one
of length ``n_tuples`` would even be split by rows. As a parameter it travels with every clone
(metric-learn's ``preprocessor`` does the same), and the folds split the tuples, never the points.

With ``points`` set, ``transform`` takes a 1-D array of indices or ids as well as features.

Both forms become, at the boundary, one float32 array of the points that the tuples use and an
int64 array ``(n_tuples, k)`` of rows of it; everything inside works on that. A batch of tuples
embeds each of its distinct points once.
"""

import inspect
from abc import abstractmethod
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted, column_or_1d

from . import _docstrings
from ._base import BaseEmbedder, stratified_split
from ._kernels import AVERAGES, BatchLoss
from ._residual import ResidualMLP, initial_residual_weights
from ._training import TrainingData
from ._validation import StrOptions, check_array, invalid, safe_indexing, validate_data
from .backbones import L2Normalize
from .distances import paired_distances, paired_kernel

# -- the boundary: checks of X, points and y -------------------------------------------------------


def check_tuples(estimator, X, *, tuple_size, reset):
    """Validate ``X`` in either form; return ``(points, tuples)``.

    Parameters
    ----------
    estimator : TupleEmbedder
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
    kind = _KINDS[tuple_size]
    shape = getattr(X, "shape", None)
    if shape is None:
        X = np.asarray(X)
        shape = X.shape
    if len(shape) not in (2, 3) or shape[1] != tuple_size:
        raise invalid(
            "X",
            f"{kind}s for {type(estimator).__name__}: an array of shape (n_{kind}s, {tuple_size}, "
            f"n_features), or integer indices of shape (n_{kind}s, {tuple_size}) into points",
            f"shape {tuple(shape)}",
        )
    if len(shape) == 3:
        X = check_array(X, allow_nd=True, dtype=np.float32, input_name="X", estimator=estimator)
        points = X.reshape(-1, X.shape[2])
        validate_data(estimator, points, reset=reset, skip_check_array=True)
        return points, np.arange(points.shape[0], dtype=np.int64).reshape(X.shape[:2])
    return _indexed_points(estimator, X, kind=kind, reset=reset)


_KINDS = {2: "pair", 3: "triplet"}


def _indexed_points(estimator, X, *, kind, reset) -> tuple[np.ndarray, np.ndarray]:
    """``(points, tuples)`` for index tuples: only the points they use, each once."""
    if estimator.points is None:
        raise invalid(
            "points",
            f"an array of shape (n_points, n_features), or a callable, when X holds index {kind}s, "
            f"as X of shape {tuple(X.shape)} does (X of shape (n_{kind}s, {X.shape[1]}, "
            "n_features) needs none)",
            "None",
        )
    ids = _check_ids(estimator, X, what=f"the index {kind}s in X", where=kind)
    try:
        used, tuples = np.unique(np.asarray(ids), return_inverse=True)
    except TypeError as error:  # ids of types that do not sort together
        raise invalid("the ids in X", "of one type that sorts", f"{error}") from None
    points = _features_of(estimator, used, reset=reset)
    return points, tuples.reshape(ids.shape).astype(np.int64, copy=False)


def _check_ids(estimator, X, *, what, where):
    """``X`` as an array of ids: any values for a callable ``points``, else rows of ``points``."""
    if callable(estimator.points):
        return np.asarray(X)
    X = check_array(X, dtype=None, ensure_2d=False, input_name="X", estimator=estimator)
    if X.dtype.kind not in "iu":
        raise invalid(what, "integers", f"dtype {X.dtype}")
    n_points = _num_rows(estimator.points)
    bad = (X < 0) | (X >= n_points)
    if bad.any():
        position = np.argwhere(bad)[0]
        at = f"{where} {position[0]}" if X.ndim == 2 else f"position {position[0]}"
        raise invalid(
            "the indices in X",
            f"in [0, {n_points - 1}], rows of points (which has {n_points} rows)",
            f"{X[tuple(position)]} in {at}",
        )
    return X


def _features_of(estimator, ids, *, reset):
    """The features of ``ids`` (a 1-D array checked by ``_check_ids``), validated, float32."""
    if callable(estimator.points):
        points: Any = estimator.points(ids)
        shape = getattr(points, "shape", None) or np.shape(points)
        if len(shape) != 2 or shape[0] != len(ids):
            raise invalid(
                "points(ids)",
                f"of shape ({len(ids)}, n_features), one row of features per id of the 1-D array "
                "it is given",
                f"shape {tuple(shape)}",
            )
    else:
        points = safe_indexing(estimator.points, ids)
    validate_data(estimator, points, reset=reset, skip_check_array=True)
    return check_array(points, dtype=np.float32, input_name="points", estimator=estimator)


def _num_rows(points):
    shape = getattr(points, "shape", None)
    if shape is None:
        shape = np.shape(points)
    if len(shape) != 2:
        raise invalid("points", "an array of shape (n_points, n_features)", f"shape {shape}")
    return int(shape[0])


_LABELS = (
    "two labels, the greater meaning a similar pair (+1 and -1, 1 and 0, True and False), one per "
    "pair"
)
# A single label: similar or dissimilar (from the two-label pairs these values belong to).
_SIMILAR, _DISSIMILAR = (1, True), (-1, 0, False)


def check_pair_labels(estimator, y, n_pairs, *, both_kinds):
    """``y`` as an int8 array of +1 (similar) and -1 (dissimilar).

    Any two labels are taken, the greater one meaning similar (scikit-learn's binary classifiers
    read ``classes_[1]`` as the positive class; ``cross_val_predict`` re-encodes +1 / -1 as 1 / 0).
    A single label is similar when it is 1 (or True), dissimilar when it is -1 or 0 (or False).
    """
    if y is None:
        raise invalid("y", _LABELS, "None")
    y = column_or_1d(y)
    if y.shape[0] != n_pairs:
        raise invalid("y", f"of length {n_pairs}, one label per pair of X", str(y.shape[0]))
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise invalid("y", _LABELS, "NaN or infinite values")
    try:
        labels = np.unique(y)
    except TypeError:  # labels of types that do not sort together
        raise invalid("y", _LABELS, "labels of types that do not sort together") from None
    if labels.shape[0] > 2:
        raise invalid("y", _LABELS, f"the values {labels[:10].tolist()}")
    if labels.shape[0] == 2:
        return np.where(y == labels[1], 1, -1).astype(np.int8)
    label = labels[:1].tolist()
    similar = label[0] in _SIMILAR if label else True
    if label and not similar and label[0] not in _DISSIMILAR:
        raise invalid(
            "y",
            f"{_LABELS}; a single label must be 1 (similar) or -1 or 0 (dissimilar)",
            f"only {label[0]!r}",
        )
    if both_kinds:
        which = "similar (+1)" if similar else "dissimilar (-1)"
        raise ValueError(
            f"{type(estimator).__name__} needs both similar (+1) and dissimilar (-1) pairs to "
            f"learn from; all {n_pairs} pairs in y are {which}."
        )
    return np.full(n_pairs, 1 if similar else -1, dtype=np.int8)


# -- the shared estimator --------------------------------------------------------------------------


class TupleEmbedder(BaseEmbedder):
    """The estimator shared by PairEmbedder and ComparisonEmbedder.

    The training data of :class:`~sklearn_triplet._base.BaseEmbedder`'s ``fit`` become, here,
    ``X``: the points the tuples use (float32) and ``y``: ``(tuples, targets)``, the tuples as rows
    of ``X`` and their targets (+1 / -1 for pairs, None for triplets). A subclass declares
    ``_loss`` (a :class:`~sklearn_triplet._kernels.LossDeclaration`), ``_tuple_size``, ``_kind``
    and ``_negatives``, and defines ``_check_targets(y, n_tuples)``, ``_loss_terms(members,
    targets, *, counts, spread) -> BatchLoss`` on embeddings of shape ``(batch, tuple_size,
    n_components)`` and ``_validation_score(members, targets) -> float``.
    """

    points: object
    average: str
    do_no_harm: bool
    n_components: int | None  # type: ignore[assignment]  # None: as many as the features

    # How many points a tuple has, its name, and the steps of _fit only this kind has.
    _tuple_size: int
    _kind: str
    _split_description: str
    # The validation score's name in words, for the docstring (``_validation_score_name``: short)
    _validation_score_doc: str
    _split_minimum: str
    _own_attributes = ""

    _parameter_constraints: dict = {
        **BaseEmbedder._parameter_constraints,
        "points": ["array-like", callable, None],
        "average": [StrOptions(set(AVERAGES))],
        "do_no_harm": ["boolean"],
        # None: as many components as features (the residual backbone starts at the raw geometry)
        "n_components": [*BaseEmbedder._parameter_constraints["n_components"], None],
    }

    @classmethod
    def _docstring_sections(cls):
        assert cls._loss is not None  # every concrete estimator declares its loss
        return _docstrings.tuple_sections(
            cls._loss.statistics,
            parameters=inspect.signature(cls).parameters,
            kind=cls._kind,
            score=cls._validation_score_doc,
            split=cls._split_description,
            negatives=cls._negatives,
            own_attributes=cls._own_attributes,
        )

    @abstractmethod
    def _check_targets(self, y, n_tuples, /) -> np.ndarray | None:
        """``y`` checked: the targets of the tuples (None when the order says it all)."""

    @abstractmethod
    def _loss_terms(self, members, targets, /, *, counts, spread) -> BatchLoss:
        """The ``BatchLoss`` of embedded tuples ``(batch, tuple_size, n_components)``."""

    @abstractmethod
    def _validation_score(self, members, targets, /, *, metric=None) -> float:
        """The score of held-out tuples, embedded (higher is better), in ``metric`` (None: the
        estimator's)."""

    # -- the steps of fit ------------------------------------------------------------------------

    def _check_fit_parameters(self):
        """No rule between parameters here (a batch is any number of tuples)."""

    def _initialise_from_data(self, X, y):
        """Start ``backbone="residual"`` at the geometry of the points the tuples use (see
        :func:`~sklearn_triplet._residual.initial_residual_weights`); the other networks start
        from their own initialisation (there is no ``init``)."""
        if not (isinstance(self.backbone, str) and self.backbone == "residual"):
            return
        # Each distinct point once, so that index and feature tuples start alike.
        weights, scale = initial_residual_weights(
            np.unique(X, axis=0), self.n_components_, random_state=int(self._rng.integers(2**31))
        )
        network = self.module_.backbone
        assert isinstance(network, ResidualMLP)  # built by _build_module
        with torch.no_grad():
            network.linear.weight.copy_(torch.as_tensor(weights, dtype=network.linear.weight.dtype))
            network.scale.copy_(torch.tensor(scale))

    def _build_module(self, n_features, input_shape=None, *, generator=None):
        if not (isinstance(self.backbone, str) and self.backbone == "residual"):
            return super()._build_module(n_features, input_shape, generator=generator)
        if self.backbone_params:
            raise ValueError(
                "backbone='residual' takes no backbone_params; got "
                f"backbone_params={self.backbone_params}. Its hidden widths are "
                "hidden_layer_sizes."
            )
        network = ResidualMLP(
            n_features,
            self._embedding_width(n_features),
            hidden_layer_sizes=tuple(np.atleast_1d(self.hidden_layer_sizes).tolist()),
            generator=generator,
        )
        normalize = L2Normalize() if self.normalize else torch.nn.Identity()
        return torch.nn.Sequential(OrderedDict(backbone=network, normalize=normalize))

    def _embedding_width(self, n_features):
        """``n_components``, or the number of features when it is None."""
        return n_features if self.n_components is None else self.n_components

    def _check_training_data(self, X, y, *, reset):
        points, tuples = check_tuples(self, X, tuple_size=self._tuple_size, reset=reset)
        _, input_shape = self._rows(points, reset=reset)  # a CNN's, from backbone_params
        return points, (tuples, self._check_targets(y, tuples.shape[0])), input_shape

    def _split_validation(self, points, data):
        return self._split_tuples(points, data, what="early_stopping")

    def _splittable(self, data):
        """Whether two tuples of each kind (similar and dissimilar pairs) can be split."""
        tuples, targets = data
        if targets is None:
            return tuples.shape[0] >= 2
        return min(np.sum(targets > 0), np.sum(targets < 0)) >= 2

    def _split_tuples(self, points, data, *, what):
        """``points, train, points, held``: ``validation_fraction`` of the tuples held out (of
        each kind of pair, for pairs), one at least on each side."""
        tuples, targets = data
        groups = np.zeros(tuples.shape[0], np.int64) if targets is None else (targets > 0) * 1
        train, val, n_held_out = stratified_split(
            groups, self.validation_fraction, self._rng, min_per_side=1
        )
        if n_held_out.shape[0] < (1 if targets is None else 2) or not n_held_out.all():
            raise ValueError(
                f"{what} needs at least two {self._split_minimum}, so that one of each "
                f"stays on both sides of the validation split. Use {what}=False."
            )
        return points, _take(data, train), points, _take(data, val)

    def _training_data(self, points, data, points_val, data_val):
        device = self.device_
        points_t = torch.from_numpy(points).to(device)
        tuples, targets = data
        tuples_t = torch.from_numpy(tuples).to(device)
        targets_t = None if targets is None else torch.from_numpy(targets).to(device)

        def batches():
            # Each batch embeds its distinct points once; its targets tell the batch loss which
            # of those embeddings form each tuple.
            for batch in _tuple_batches(tuples.shape[0], self.batch_size, self._rng):
                batch = torch.as_tensor(batch, device=device)
                distinct, members = torch.unique(tuples_t[batch], return_inverse=True)
                yield distinct, (members, None if targets_t is None else targets_t[batch])

        if data_val is None:
            return TrainingData(points_t, None, batches, None)
        tuples_val, targets_val = data_val

        def validation_score():
            members = self._embed_members(points_val, tuples_val)
            return self._validation_score(members, targets_val)

        return TrainingData(points_t, None, batches, validation_score)

    # do_no_harm, on the base's steps: _fit holds out what _split_held_out gives (or early
    # stopping's validation tuples), trains on the rest and calls _choose_embedding.

    def _guarded(self) -> bool:
        """Whether ``fit`` holds out tuples for ``do_no_harm`` (``partial_fit`` never does)."""
        return bool(self.do_no_harm)

    def _split_held_out(self, points, data, /):
        """``points, data, points, held``: ``validation_fraction`` of the tuples held out for
        ``do_no_harm`` (of each kind of pair, for pairs); none when there are too few to split.
        The points stay shared: a held-out tuple's points may also be in training tuples."""
        if not self._splittable(data):
            return points, data, points, _take(data, np.zeros(0, dtype=np.int64))
        return self._split_tuples(points, data, what="do_no_harm")

    def _choose_embedding(self, points, data, held_out, /):
        """Keep the trained network, or the raw features when it did not beat them on the
        held-out tuples (``do_no_harm``); ``held_out`` is ``(points, (tuples, targets))``, or None
        when nothing was held out (``do_no_harm=False``, ``partial_fit``).

        Both are scored by ``_validation_score`` on the tuples training did not see: the raw
        features in Euclidean distance (what a nearest-neighbour search on the points uses), the
        embedding in ``metric``. The embedding is kept only when its score is strictly higher; a
        tie keeps the raw features. Sets ``raw_kept_``, ``held_out_scores_`` and
        ``n_components_``.
        """
        self.raw_kept_, self.held_out_scores_ = False, None
        if held_out is not None and held_out[1][0].shape[0]:
            points, (tuples, targets) = held_out
            trained = self._validation_score(self._embed_members(points, tuples), targets)
            raw = self._validation_score(points[tuples], targets, metric="euclidean")
            self.held_out_scores_ = {"trained": float(trained), "raw": float(raw)}
            self.raw_kept_ = not trained > raw
            if self.verbose:
                kept = "the raw features" if self.raw_kept_ else "the trained embedding"
                print(
                    f"do_no_harm: held-out {self._validation_score_name} {trained:.3f} trained, "
                    f"{raw:.3f} raw; keeping {kept}.",
                    flush=True,
                )
        self.n_components_ = self.n_features_in_ if self.raw_kept_ else self._network_width()

    def _batch_loss(self, embeddings, batch_targets, *, taxonomy, spread):
        members, targets = batch_targets
        return self._loss_terms(embeddings[members], targets, counts=True, spread=spread)

    @property
    def _statistics(self):
        assert self._loss is not None  # every concrete estimator declares its loss
        return self._loss.statistics

    # -- using a fitted estimator ----------------------------------------------------------------

    def _embed_members(self, points, tuples):
        """Embeddings of the members of each tuple, shape (n_tuples, tuple_size, n_components)."""
        return self._embed(points)[tuples]

    def _embed_tuples(self, X, tuple_size):
        check_is_fitted(self)
        points, tuples = check_tuples(self, X, tuple_size=tuple_size, reset=False)
        return self._embed_members(points, tuples)

    def _network_width(self):
        """The width of the network's output (``n_components_`` unless the raw features are
        kept)."""
        probe = torch.zeros(1, self.n_features_in_, device=self.device_)
        with torch.inference_mode():
            was_training = self.module_.training
            self.module_.eval()
            width = self.module_(probe).shape[1]
            self.module_.train(was_training)
        return int(width)

    def pair_distance(self, pairs):
        """Distance between the embeddings of the two points of each pair.

        Parameters
        ----------
        pairs : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
            Pairs of points, or integer index pairs into ``points``.

        Returns
        -------
        distances : ndarray of shape (n_pairs,)
            In units of ``metric`` (Euclidean when ``do_no_harm`` kept the raw features); smaller
            means more alike.
        """
        members = self._embed_tuples(pairs, 2)
        return paired_distances(members[:, 0], members[:, 1], metric=self._distance_metric)

    @property
    def _distance_metric(self):
        """``metric``, or the Euclidean distance of the raw features when they were kept."""
        return "euclidean" if getattr(self, "raw_kept_", False) else self.metric

    def pair_score(self, pairs):
        """Similarity of the two points of each pair: minus their distance (higher is more alike).

        metric-learn's name, for a score that ranks pairs the way scikit-learn ranks scores:
        ``roc_auc_score(y, model.pair_score(pairs))`` is the area under the ROC curve of the
        distances.

        Parameters
        ----------
        pairs : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
            Pairs of points, or index pairs (ids) into ``points``.

        Returns
        -------
        scores : ndarray of shape (n_pairs,)
            ``-pair_distance(pairs)``.
        """
        return -self.pair_distance(pairs)

    # Typed Any: scikit-learn's signatures are unannotated, so type checkers infer ``metric: str``
    # from their defaults and would flag ``KNeighborsClassifier(metric=model.get_metric())``.
    def get_metric(self) -> Any:
        """The learned distance as a plain function of two points, for scikit-learn's ``metric=``.

        ``metric(u, v)`` embeds the two points with a copy of the fitted network (later fits of
        this estimator leave it as it is) and returns the distance between the embeddings, in
        units of ``metric``: what ``pair_distance`` gives for the pair ``(u, v)``. It suits
        estimators that take a callable metric, such as ``DBSCAN(metric=model.get_metric())`` or
        ``KNeighborsClassifier(metric=...)``; being called once per pair of samples, it is slow on
        many samples, where ``transform`` followed by the estimator on the embeddings gives the
        same neighbours at the speed of NumPy.

        Returns
        -------
        metric : callable
            ``metric(u, v) -> float`` for two 1-D arrays of ``n_features_in_`` features. It can be
            pickled.
        """
        check_is_fitted(self)
        return EmbeddingMetric(self.export_module(), self._distance_metric, self.n_features_in_)

    def transform(self, X):
        """Embed points, given as features or, with ``points`` set, as ids.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples,)
            Points to embed: their features, or with ``points`` set a 1-D array of ids (rows of
            an array ``points``, or what a callable ``points`` maps to features).

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components), float32
            The embeddings (unit-norm rows when ``normalize=True``).
        """
        if self.points is not None and len(getattr(X, "shape", None) or np.shape(X)) == 1:
            check_is_fitted(self)
            ids = _check_ids(self, X, what="the ids in X", where="")
            X = _features_of(self, ids, reset=False)
        return super().transform(X)

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


def _take(data, rows):
    tuples, targets = data
    return tuples[rows], None if targets is None else targets[rows]


def _tuple_batches(n_tuples, batch_size, rng):
    """One epoch: every tuple once, in a random order, ``batch_size`` tuples per batch."""
    order = rng.permutation(n_tuples)
    for start in range(0, n_tuples, batch_size):
        yield order[start : start + batch_size]


class EmbeddingMetric:
    """The distance between the embeddings of two points: a picklable plain callable.

    Parameters
    ----------
    module : torch.nn.Module
        The network on the CPU, in eval mode (a copy: it never changes).
    metric : {"euclidean", "sqeuclidean", "cosine"}
    n_features : int
        Features of a point.
    """

    def __init__(self, module, metric, n_features):
        self.module = module
        self.metric = metric
        self.n_features = n_features

    def __call__(self, u, v):
        """``d(f(u), f(v))`` for two 1-D arrays of ``n_features`` features."""
        rows = []
        for name, point in (("u", u), ("v", v)):
            point = np.asarray(point, dtype=np.float32)
            if point.shape != (self.n_features,):
                raise invalid(
                    name, f"a 1-D array of {self.n_features} features", f"shape {point.shape}"
                )
            rows.append(point)
        # Each point alone: its embedding does not depend on the other point (a batch's rows can
        # differ in the last bits by their position), so d(u, u) is 0 and d(u, v) is d(v, u).
        with torch.inference_mode():
            first, second = (
                self.module(torch.from_numpy(row[None])).double().numpy() for row in rows
            )
        return float(paired_kernel(first, second, self.metric)[0])

    def __repr__(self):
        return f"{type(self).__name__}(metric={self.metric!r}, n_features={self.n_features})"
