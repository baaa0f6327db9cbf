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

import inspect
from abc import abstractmethod

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted, column_or_1d

from . import _docstrings
from ._base import BaseEmbedder, stratified_split
from ._kernels import BatchLoss
from ._training import TrainingData
from ._validation import check_array, invalid, safe_indexing, validate_data
from .distances import paired_distances

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


def _indexed_points(estimator, X, *, kind, reset):
    """``(points, tuples)`` for index tuples: only the rows of ``points`` they use, each once."""
    if estimator.points is None:
        raise invalid(
            "points",
            f"an array of shape (n_points, n_features) when X holds index {kind}s, as X of shape "
            f"{tuple(X.shape)} does (X of shape (n_{kind}s, {X.shape[1]}, n_features) needs none)",
            "None",
        )
    X = check_array(X, dtype=None, input_name="X", estimator=estimator)
    if X.dtype.kind not in "iu":
        raise invalid(f"the index {kind}s in X", "integers", f"dtype {X.dtype}")
    n_points = _num_rows(estimator.points)
    bad = (X < 0) | (X >= n_points)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise invalid(
            "the indices in X",
            f"in [0, {n_points - 1}], rows of points (which has {n_points} rows)",
            f"{X[row, column]} in {kind} {row}",
        )
    used, tuples = np.unique(X, return_inverse=True)
    points = safe_indexing(estimator.points, used)
    validate_data(estimator, points, reset=reset, skip_check_array=True)
    points = check_array(points, dtype=np.float32, input_name="points", estimator=estimator)
    return points, tuples.reshape(X.shape).astype(np.int64, copy=False)


def _num_rows(points):
    shape = getattr(points, "shape", None)
    if shape is None:
        shape = np.shape(points)
    if len(shape) != 2:
        raise invalid("points", "an array of shape (n_points, n_features)", f"shape {shape}")
    return int(shape[0])


def check_pair_labels(estimator, y, n_pairs, *, both_kinds):
    """``y`` as an int8 array of +1 (similar) and -1 (dissimilar)."""
    allowed = "+1 (similar pair) or -1 (dissimilar pair) for each pair"
    if y is None:
        raise invalid("y", allowed, "None")
    y = column_or_1d(y)
    if y.shape[0] != n_pairs:
        raise invalid("y", f"of length {n_pairs}, one label per pair of X", str(y.shape[0]))
    if y.dtype.kind not in "iuf" or not np.isin(y, (-1, 1)).all():
        raise invalid(
            "y",
            f"{allowed} (from a boolean array same: np.where(same, 1, -1))",
            f"the values {np.unique(y)[:10].tolist()}",
        )
    y = y.astype(np.int8)
    if both_kinds and np.unique(y).shape[0] < 2:
        which = "similar (+1)" if y[0] > 0 else "dissimilar (-1)"
        raise ValueError(
            f"{type(estimator).__name__} needs both similar (+1) and dissimilar (-1) pairs to "
            f"learn from; all {n_pairs} pairs in y are {which}."
        )
    return y


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
        "points": ["array-like", None],
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
    def _check_targets(self, y, n_tuples, /):
        """``y`` checked: the targets of the tuples (None when the order says it all)."""

    @abstractmethod
    def _loss_terms(self, members, targets, /, *, counts, spread) -> BatchLoss:
        """The ``BatchLoss`` of embedded tuples ``(batch, tuple_size, n_components)``."""

    @abstractmethod
    def _validation_score(self, members, targets, /) -> float:
        """The score of the held-out tuples, embedded (higher is better)."""

    # -- the steps of fit ------------------------------------------------------------------------

    def _check_fit_parameters(self):
        """No rule between parameters here (a batch is any number of tuples)."""

    def _initialise_from_data(self, X, y):
        """Nothing: the networks start from their own initialisation (there is no ``init``)."""

    def _check_training_data(self, X, y, *, reset):
        points, tuples = check_tuples(self, X, tuple_size=self._tuple_size, reset=reset)
        _, input_shape = self._rows(points, reset=reset)  # a CNN's, from backbone_params
        return points, (tuples, self._check_targets(y, tuples.shape[0])), input_shape

    def _split_validation(self, points, data):
        """Hold out ``validation_fraction`` of the tuples (of each kind of pair, for pairs), one at
        least on each side."""
        tuples, targets = data
        groups = np.zeros(tuples.shape[0], np.int64) if targets is None else (targets > 0) * 1
        train, val, n_held_out = stratified_split(
            groups, self.validation_fraction, self._rng, min_per_side=1
        )
        if n_held_out.shape[0] < (1 if targets is None else 2) or not n_held_out.all():
            raise ValueError(
                f"early_stopping needs at least two {self._split_minimum}, so that one of each "
                "stays on both sides of the validation split. Use early_stopping=False."
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

        def validation_score():
            tuples_val, targets_val = data_val
            return self._validation_score(self._embed_members(points_val, tuples_val), targets_val)

        return TrainingData(points_t, None, batches, None if data_val is None else validation_score)

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


def _take(data, rows):
    tuples, targets = data
    return tuples[rows], None if targets is None else targets[rows]


def _tuple_batches(n_tuples, batch_size, rng):
    """One epoch: every tuple once, in a random order, ``batch_size`` tuples per batch."""
    order = rng.permutation(n_tuples)
    for start in range(0, n_tuples, batch_size):
        yield order[start : start + batch_size]
