"""Pair verification: are two samples of the same class?

A verification system embeds both samples, measures the distance between the
two embeddings and accepts the pair as *same* when that distance is below a
threshold. This module provides the pieces:

- :func:`make_pairs` draws labelled pairs from a classification data set;
- :func:`paired_distances` (from :mod:`sklearn_triplet.distances`) measures
  aligned rows of two embedding arrays, and :func:`paired_embedding_distances`
  embeds two arrays of samples first;
- :class:`PairVerifier` calibrates the threshold on labelled pairs and
  predicts *same* / *different* for new ones.

What :class:`PairVerifier` takes as ``X``
------------------------------------------
It accepts two inputs, chosen by its ``embedder`` parameter:

- ``embedder=None``: one distance per pair, shape ``(n_pairs,)`` or
  ``(n_pairs, 1)``. Distances may come from any source (an embedder of this
  package, another model, a precomputed matrix), and calibrating a threshold
  needs nothing more.
- a fitted ``embedder``: the two samples of each pair, either stacked as in
  metric-learn, shape ``(n_pairs, 2, n_features)``, i.e.
  ``np.stack([X1, X2], axis=1)``, or side by side, shape
  ``(n_pairs, 2 * n_features)``, i.e. ``np.hstack([X1, X2])``. The first
  form is turned into the second, so ``n_features_in_`` is ``2 * n_features``
  either way. One row per pair keeps scikit-learn's contract (one label per
  row), so :func:`~sklearn.model_selection.cross_val_score`, ``GridSearchCV``
  and :func:`~sklearn.metrics.RocCurveDisplay.from_estimator` work on raw
  pairs directly.

The embedder is used as given and never refitted: it learns from class
labels, whereas the verifier sees only same / different flags. Because
:func:`~sklearn.base.clone` returns an unfitted copy of an estimator, wrap the
embedder in :class:`sklearn.frozen.FrozenEstimator` when the verifier is
cloned (cross-validation, grid search).

Conventions
-----------
Larger distance means less alike. A pair is predicted *same* when its
distance is strictly below ``threshold_``, and ``decision_function`` returns
``threshold_ - distance``: positive means *same*, and it ranks pairs like
``-distance``, so ``roc_auc_score(same, verifier.decision_function(X))`` is
the area under the ROC curve of the distances. The false-accept rate (FAR) is
the fraction of different-class pairs predicted *same*.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    check_array,
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
)

from ._validation import (
    HasMethods,
    Interval,
    StrOptions,
    embedding_part,
    encode_labels,
    fit_context,
    plain,
    validate_data,
    validate_estimator_params,
    validate_function_params,
)
from .distances import METRICS, paired_distances

# paired_distances lives in sklearn_triplet.distances; it stays importable from here.
__all__ = [
    "PairVerifier",
    "make_pairs",
    "paired_embedding_distances",
]


@validate_function_params(
    {
        "estimator": "no_validation",  # checked by embedding_part, which knows Pipelines
        "X1": ["array-like"],
        "X2": ["array-like"],
        "metric": [StrOptions(set(METRICS)), None],
    }
)
def paired_embedding_distances(estimator, X1, X2, *, metric=None):
    """Embed two aligned arrays of samples and measure each pair.

    Parameters
    ----------
    estimator : estimator with ``transform``, or Pipeline
        A fitted embedder, or a Pipeline holding one. A Pipeline whose last
        step is a neighbours estimator or a classifier (such as
        ``Pipeline([("emb", TripletEmbedder()), ("knn",
        KNeighborsClassifier())])``) embeds with the steps before that one.
    X1 : array-like of shape (n_pairs, n_features)
        First sample of each pair.
    X2 : array-like of shape (n_pairs, n_features)
        Second sample of each pair.
    metric : {"euclidean", "sqeuclidean", "cosine"}, default=None
        Distance between embeddings. None uses the ``metric`` attribute of
        the embedder (of the last embedding step of a Pipeline) when it has
        one, otherwise ``"euclidean"``.

    Returns
    -------
    distances : ndarray of shape (n_pairs,)
        Distance between the embeddings of ``X1[i]`` and ``X2[i]``.

    See Also
    --------
    sklearn_triplet.distances.paired_distances : The same on embeddings.

    Examples
    --------
    >>> from sklearn.decomposition import PCA
    >>> from sklearn_triplet.verification import paired_embedding_distances
    >>> X = [[0.0, 0.0], [2.0, 0.0], [4.0, 0.1], [6.0, -0.1]]
    >>> pca = PCA(n_components=1).fit(X)
    >>> paired_embedding_distances(pca, X[:2], X[2:]).round(2)
    array([4., 4.])
    """
    embedder, metric = embedding_part(estimator, metric)
    return paired_distances(embedder.transform(X1), embedder.transform(X2), metric=metric)


@validate_function_params(
    {
        "X": ["array-like"],
        "y": ["array-like"],
        "n_pairs": [Interval(Integral, 2, None, closed="left")],
        "random_state": ["random_state"],
    }
)
def make_pairs(X, y, *, n_pairs, random_state=None):
    """Draw labelled pairs, half of the same class and half of different classes.

    Same-class pairs are drawn uniformly among ordered pairs of two distinct
    samples of one class, different-class pairs uniformly among ordered pairs
    of samples of two classes. Draws are independent, so a pair may repeat.

    Parameters
    ----------
    X : array-like of shape (n_samples, ...)
        Samples; the first axis indexes them.
    y : array-like of shape (n_samples,)
        Class labels.
    n_pairs : int
        Number of pairs, at least 2: ``n_pairs // 2`` same-class pairs and
        the rest different-class pairs, in random order.
    random_state : int, RandomState instance or None, default=None
        Seed or generator for the draws.

    Returns
    -------
    X1 : ndarray of shape (n_pairs, ...)
        First sample of each pair.
    X2 : ndarray of shape (n_pairs, ...)
        Second sample of each pair.
    same : ndarray of shape (n_pairs,), dtype=bool
        Whether the two samples share a class.

    Raises
    ------
    ValueError
        If no class has two samples, or if there is only one class.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_triplet.verification import make_pairs
    >>> X = np.arange(12.0).reshape(6, 2)
    >>> X1, X2, same = make_pairs(X, [0, 0, 0, 1, 1, 2], n_pairs=8, random_state=0)
    >>> X1.shape, X2.shape, int(same.sum())
    ((8, 2), (8, 2), 4)
    """
    X = check_array(X, allow_nd=True, input_name="X")
    y = column_or_1d(y, warn=True)
    check_consistent_length(X, y)
    rng = check_random_state(random_state)

    codes, _ = encode_labels(y, y[:0])
    counts = np.bincount(codes)
    by_class = np.argsort(codes, kind="stable")  # sample indices grouped by class
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    class_counts = {label: int(count) for label, count in zip(_first_labels(y, codes), counts)}
    if counts.max() < 2:
        raise ValueError(
            "make_pairs needs a class with two or more samples to make same-class "
            f"pairs; got class counts {class_counts}."
        )
    if len(counts) < 2:
        raise ValueError(
            "make_pairs needs two or more classes to make different-class pairs; "
            f"got class counts {class_counts}."
        )

    n_same, n_different = n_pairs // 2, n_pairs - n_pairs // 2
    # Same class: class c with weight n_c (n_c - 1), then two distinct members.
    weights = counts * (counts - 1.0)
    cls = rng.choice(len(counts), size=n_same, p=weights / weights.sum())
    first = rng.randint(counts[cls])
    second = rng.randint(counts[cls] - 1)
    second += second >= first
    same_1, same_2 = by_class[starts[cls] + first], by_class[starts[cls] + second]
    # Different classes: class a with weight n_a (n - n_a), a member of a, then
    # any sample outside a's block of ``by_class``.
    n_samples = len(codes)
    weights = counts * (n_samples - counts.astype(float))
    cls = rng.choice(len(counts), size=n_different, p=weights / weights.sum())
    different_1 = by_class[starts[cls] + rng.randint(counts[cls])]
    outside = rng.randint(n_samples - counts[cls])
    different_2 = by_class[outside + counts[cls] * (outside >= starts[cls])]

    order = rng.permutation(n_pairs)
    index_1 = np.concatenate([same_1, different_1])[order]
    index_2 = np.concatenate([same_2, different_2])[order]
    same = np.concatenate([np.ones(n_same, bool), np.zeros(n_different, bool)])[order]
    return X[index_1], X[index_2], same


def _first_labels(y, codes):
    """The label of each code, for messages."""
    _, first = np.unique(codes, return_index=True)
    return [y[i].item() if hasattr(y[i], "item") else y[i] for i in first]


def calibrate_threshold(distances, same, target_far=None):
    """Threshold on distances that separates same from different pairs.

    Parameters
    ----------
    distances : ndarray of shape (n_pairs,)
        Distance of each pair.
    same : ndarray of shape (n_pairs,), dtype=bool
        Whether each pair is a same-class pair; both values occur.
    target_far : float or None
        None maximises accuracy; a float in [0, 1] picks the largest threshold
        whose false-accept rate is at most ``target_far``.

    Returns
    -------
    threshold : float
        Pairs with ``distance < threshold`` are accepted as same.

    Notes
    -----
    Accepting the ``c`` smallest distinct distances, ``c = 0..U``, covers every
    decision the data can tell apart. The cut ``c`` becomes the midpoint
    between the largest accepted and the smallest rejected distance; ``c = 0``
    becomes the smallest distance and ``c = U`` the float just above the
    largest. Among cuts of equal accuracy the smallest wins (fewest accepts).
    """
    values, inverse = np.unique(distances, return_inverse=True)
    inverse = inverse.reshape(-1)
    same_per_value = np.bincount(inverse, weights=same, minlength=len(values))
    different_per_value = np.bincount(inverse, weights=~same, minlength=len(values))
    true_accepts = np.concatenate([[0.0], np.cumsum(same_per_value)])
    false_accepts = np.concatenate([[0.0], np.cumsum(different_per_value)])
    n_different = different_per_value.sum()
    if target_far is None:
        correct = true_accepts + (n_different - false_accepts)
        cut = int(np.argmax(correct))
    else:
        cut = int(np.flatnonzero(false_accepts / n_different <= target_far).max())
    if cut == 0:
        return float(values[0])
    if cut == len(values):
        return float(np.nextafter(values[-1], np.inf))
    accepted, rejected = values[cut - 1], values[cut]
    midpoint = accepted / 2 + rejected / 2
    return float(max(midpoint, np.nextafter(accepted, np.inf)))


class PairVerifier(ClassifierMixin, BaseEstimator):
    """Decide whether two samples are of the same class by thresholding a distance.

    ``fit`` calibrates ``threshold_`` on labelled pairs; ``predict`` accepts a
    pair as *same* when its distance is strictly below it. See the module
    documentation for the two forms of ``X``.

    Parameters
    ----------
    embedder : estimator with ``transform``, default=None
        None: ``X`` holds one distance per pair. Otherwise a *fitted* embedder
        (or Pipeline ending in one), used as is, and ``X`` holds both samples
        of each pair, shape ``(n_pairs, 2, n_features)`` or side by side,
        ``np.hstack([X1, X2])``. Wrap it in
        :class:`sklearn.frozen.FrozenEstimator` to cross-validate the verifier.
    metric : {"euclidean", "sqeuclidean", "cosine"}, default=None
        Distance between the two embeddings of a pair. None uses the
        embedder's ``metric`` attribute when it has one, otherwise
        ``"euclidean"``. Must be None without an embedder.
    threshold : {"accuracy", "far"} or float, default="accuracy"
        How ``fit`` sets ``threshold_``:

        - ``"accuracy"``: maximise accuracy on the calibration pairs;
        - ``"far"``: the largest threshold whose false-accept rate on the
          calibration pairs is at most ``target_far``;
        - a float: use it as is.
    target_far : float in [0, 1], default=None
        Largest false-accept rate allowed; required by ``threshold="far"``
        and only used by it.

    Attributes
    ----------
    threshold_ : float
        Pairs with a distance strictly below it are predicted *same*. A
        calibrated threshold is the midpoint between the largest accepted and
        the smallest rejected calibration distance.
    classes_ : ndarray of shape (2,)
        The two values of ``y``; ``classes_[1]`` (True, or 1) means *same*.
    n_features_in_ : int
        Number of columns of ``X`` seen in ``fit``: 1 for distances,
        ``2 * n_features`` for pairs of samples in either form.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names of ``X``, when it is a DataFrame with string column names.

    See Also
    --------
    make_pairs : Draw labelled pairs from a classification data set.
    paired_embedding_distances : Distances between the embeddings of pairs.

    References
    ----------
    .. [1] F. Schroff, D. Kalenichenko and J. Philbin, "FaceNet: A Unified
       Embedding for Face Recognition and Clustering", CVPR 2015 (threshold
       on the squared L2 distance for face verification).

    Examples
    --------
    On distances:

    >>> from sklearn_triplet.verification import PairVerifier
    >>> distances = [0.2, 0.4, 0.9, 1.1, 1.5, 2.0]
    >>> same = [True, True, True, False, False, False]
    >>> verifier = PairVerifier().fit(distances, same)
    >>> verifier.threshold_
    1.0
    >>> verifier.predict([0.5, 1.2])
    array([ True, False])

    On pairs of samples, with a fitted embedder:

    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.decomposition import PCA
    >>> from sklearn_triplet.verification import make_pairs
    >>> X, y = load_digits(return_X_y=True)
    >>> pca = PCA(n_components=16, random_state=0).fit(X[:1000])
    >>> X1, X2, same = make_pairs(X[1000:], y[1000:], n_pairs=400, random_state=0)
    >>> verifier = PairVerifier(pca).fit(np.hstack([X1, X2])[:200], same[:200])
    >>> accuracy = verifier.score(np.hstack([X1, X2])[200:], same[200:])
    >>> bool(accuracy > 0.7)
    True
    """

    _parameter_constraints = {
        "embedder": [HasMethods(["transform"]), None],
        "metric": [StrOptions(set(METRICS)), None],
        "threshold": [
            StrOptions({"accuracy", "far"}),
            Interval(Real, None, None, closed="neither"),
        ],
        "target_far": [Interval(Real, 0, 1, closed="both"), None],
    }

    def __init__(self, embedder=None, *, metric=None, threshold="accuracy", target_far=None):
        self.embedder = embedder
        self.metric = metric
        self.threshold = threshold
        self.target_far = target_far

    def _validate_params(self):
        # scikit-learn's check, with "Got 0" rather than "Got np.int64(0)" in its messages
        validate_estimator_params(self)

    def _check_options(self):
        if (self.threshold == "far") != (self.target_far is not None):
            if self.target_far is None:
                raise ValueError(
                    "threshold='far' needs target_far, the largest false-accept rate "
                    "allowed; got target_far=None."
                )
            raise ValueError(
                f"target_far={plain(self.target_far)!r} is only used with threshold='far'; "
                f"got threshold={plain(self.threshold)!r}."
            )
        if self.embedder is None and self.metric is not None:
            raise ValueError(
                f"metric={self.metric!r} needs an embedder; without one, X already "
                "holds distances. Leave metric=None or pass an embedder."
            )
        if self.embedder is not None:
            check_is_fitted(
                self.embedder,
                msg=(
                    f"The embedder {type(self.embedder).__name__} is not fitted; "
                    "PairVerifier uses it as is. Fit it first, and wrap it in "
                    "sklearn.frozen.FrozenEstimator if the verifier is cloned."
                ),
            )

    def _distances(self, X, y=None, *, reset):
        """Validate X (and y); return the distance of each pair (and y)."""
        X = self._check_shape(X)
        if y is None:
            X = validate_data(self, X, reset=reset, dtype=np.float64)
        else:
            X, y = validate_data(self, X, y, reset=reset, dtype=np.float64)
        if self.embedder is None:
            distances = X[:, 0]
        else:
            n_features = X.shape[1] // 2
            distances = paired_embedding_distances(
                self.embedder, X[:, :n_features], X[:, n_features:], metric=self.metric
            )
        return distances if y is None else (distances, y)

    def _check_shape(self, X):
        """X as a 2-D array-like of one row per pair, or an error that says which shape to give."""
        shape = X.shape if hasattr(X, "shape") else np.shape(X)
        if self.embedder is None:
            if len(shape) == 1:
                return np.reshape(X, (-1, 1))
            if len(shape) != 2 or shape[1] != 1:
                raise ValueError(
                    "Without an embedder, X holds one distance per pair, of shape (n_pairs,) or "
                    f"(n_pairs, 1); got shape {tuple(shape)}. To compare pairs of samples, pass a "
                    "fitted embedder."
                )
            return X
        n_features = getattr(self.embedder, "n_features_in_", None)
        if len(shape) >= 3 and shape[1] == 2:  # (n_pairs, 2, n_features): one pair per row
            X = np.reshape(np.asarray(X), (shape[0], -1))
            width = X.shape[1]
        else:
            width = shape[1] if len(shape) == 2 else None
        if width is None or (width != 2 * n_features if n_features else width % 2):
            expected = (
                f". The embedder {type(self.embedder).__name__} takes {n_features} features, so "
                f"X must have shape (n_pairs, 2, {n_features}) or (n_pairs, {2 * n_features})"
                if n_features
                else ""
            )
            raise ValueError(
                "With an embedder, X holds the two samples of each pair: shape "
                "(n_pairs, 2, n_features), or (n_pairs, 2 * n_features) with the two samples side "
                f"by side as np.hstack([X1, X2]){expected}; got shape {tuple(shape)}."
            )
        return X

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Calibrate the threshold on labelled pairs.

        Parameters
        ----------
        X : array-like of shape (n_pairs,), (n_pairs, 1), (n_pairs, 2, d) or (n_pairs, 2 * d)
            Distances, or with an embedder pairs of samples of ``d`` features each.
        y : array-like of shape (n_pairs,)
            True (or 1) for same-class pairs, False (or 0) for different-class pairs.

        Returns
        -------
        self : PairVerifier
            The fitted verifier.
        """
        self._check_options()
        distances, y = self._distances(X, y, reset=True)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            raise ValueError(
                "PairVerifier needs both same-class and different-class pairs in y; "
                f"got the classes {self.classes_.tolist()}."
            )
        if isinstance(self.threshold, str):
            target_far = self.target_far if self.threshold == "far" else None
            self.threshold_ = calibrate_threshold(distances, y == self.classes_[1], target_far)
        else:
            self.threshold_ = float(self.threshold)
        return self

    def decision_function(self, X):
        """``threshold_ - distance``: positive for pairs predicted *same*.

        Parameters
        ----------
        X : array-like of shape (n_pairs,), (n_pairs, 1), (n_pairs, 2, d) or (n_pairs, 2 * d)
            Distances, or with an embedder pairs of samples of ``d`` features each.

        Returns
        -------
        scores : ndarray of shape (n_pairs,)
            Higher means more likely the same class.
        """
        check_is_fitted(self)
        return self.threshold_ - self._distances(X, reset=False)  # pyright: ignore[reportOperatorIssue]

    def predict(self, X):
        """Predict whether each pair is of the same class.

        Parameters
        ----------
        X : array-like of shape (n_pairs,), (n_pairs, 1), (n_pairs, 2, d) or (n_pairs, 2 * d)
            Distances, or with an embedder pairs of samples of ``d`` features each.

        Returns
        -------
        same : ndarray of shape (n_pairs,)
            ``classes_[1]`` (True, or 1) for pairs with a distance below
            ``threshold_``, ``classes_[0]`` otherwise.
        """
        same = self.decision_function(X) > 0
        return self.classes_[same.astype(int)]
