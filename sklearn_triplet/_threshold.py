"""The distance threshold of the pair classifiers, once: PairEmbedder and PairVerifier share it.

A pair classifier measures a distance per pair and predicts *similar* when it is strictly below
``threshold_``. Its ``decision_function`` is ``threshold_ - distance`` (positive means similar, as
scikit-learn reads a binary ``decision_function``), ``predict`` the class that its sign picks.

How a threshold is chosen
-------------------------
Accepting the ``c`` smallest distinct distances, ``c = 0..U``, covers every decision the
calibration pairs can tell apart; a strategy picks the cut ``c`` (among cuts of equal merit, the
smallest: the fewest pairs accepted), and the threshold is then the midpoint between the largest
accepted and the smallest rejected distance (``c = 0``: the smallest distance; ``c = U``: the float
just above the largest). The strategies, metric-learn's four and the FAR target:

- ``"accuracy"``: the share of pairs classified right;
- ``"f_beta"``: the F-beta score of the similar pairs, ``beta`` weighing recall against precision
  (``beta=0`` is the precision; 0 / 0 counts as 0);
- ``"max_tpr"``: the highest true-positive rate (similar pairs accepted) whose true-negative rate
  (dissimilar pairs rejected) is at least ``min_rate``;
- ``"max_tnr"``: the highest true-negative rate whose true-positive rate is at least ``min_rate``;
- ``"far"`` (the estimators' ``threshold="far"``): the *largest* threshold whose false-accept rate
  (dissimilar pairs accepted) is at most ``target_far``.
"""

from numbers import Real

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._validation import InvalidParameterError, invalid, plain

# The strategies of calibrate_threshold, in metric-learn's order.
STRATEGIES = ("accuracy", "f_beta", "max_tpr", "max_tnr")


# -- the kernel --------------------------------------------------------------------------------


def calibrate(distances, similar, strategy="accuracy", *, min_rate=None, beta=1.0, target_far=None):
    """The threshold on ``distances`` that ``strategy`` picks (see the module documentation).

    Parameters
    ----------
    distances : ndarray of shape (n_pairs,)
        Distance of each pair.
    similar : ndarray of shape (n_pairs,), dtype=bool
        Whether each pair is similar; both values occur.
    strategy : {"accuracy", "f_beta", "max_tpr", "max_tnr", "far"}, default="accuracy"
    min_rate : float in [0, 1], default=None
        The rate ``"max_tpr"`` and ``"max_tnr"`` must keep.
    beta : float >= 0, default=1.0
        ``"f_beta"``'s weight of recall.
    target_far : float in [0, 1], default=None
        ``"far"``'s largest false-accept rate.

    Returns
    -------
    threshold : float
        Pairs with ``distance < threshold`` are predicted similar.
    """
    values, inverse = np.unique(distances, return_inverse=True)
    inverse = inverse.reshape(-1)
    similar_at = np.bincount(inverse, weights=similar, minlength=len(values))
    dissimilar_at = np.bincount(inverse, weights=~similar, minlength=len(values))
    # True and false accepts of each cut c = 0..U (accepting the c smallest distinct distances).
    tp = np.concatenate([[0.0], np.cumsum(similar_at)])
    fp = np.concatenate([[0.0], np.cumsum(dissimilar_at)])
    cut = _CUTS[strategy](
        tp, fp, tp[-1], fp[-1], min_rate=min_rate, beta=beta, target_far=target_far
    )
    if cut == 0:
        return float(values[0])
    if cut == len(values):
        return float(np.nextafter(values[-1], np.inf))
    accepted, rejected = values[cut - 1], values[cut]
    midpoint = accepted / 2 + rejected / 2
    return float(max(midpoint, np.nextafter(accepted, np.inf)))


def _accuracy(tp, fp, n_similar, n_dissimilar, **options):
    return int(np.argmax(tp + (n_dissimilar - fp)))


def _f_beta(tp, fp, n_similar, n_dissimilar, *, beta, **options):
    weight = beta**2
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (1 + weight) * tp / ((1 + weight) * tp + weight * (n_similar - tp) + fp)
    return int(np.argmax(np.nan_to_num(f, nan=0.0)))


def _max_tpr(tp, fp, n_similar, n_dissimilar, *, min_rate, **options):
    # The true-negative rate falls as c grows: the allowed cuts are 0..last (c = 0 always is).
    last = int(np.flatnonzero((n_dissimilar - fp) / n_dissimilar >= min_rate).max())
    return int(np.argmax(tp[: last + 1]))


def _max_tnr(tp, fp, n_similar, n_dissimilar, *, min_rate, **options):
    # The true-positive rate grows with c: the allowed cuts are first..U (c = U always is), and
    # the first of them rejects the most.
    return int(np.flatnonzero(tp / n_similar >= min_rate).min())


def _far(tp, fp, n_similar, n_dissimilar, *, target_far, **options):
    return int(np.flatnonzero(fp / n_dissimilar <= target_far).max())


_CUTS = {
    "accuracy": _accuracy,
    "f_beta": _f_beta,
    "max_tpr": _max_tpr,
    "max_tnr": _max_tnr,
    "far": _far,
}


# -- the checks of the options -----------------------------------------------------------------


def check_strategy(strategy, min_rate, beta):
    """The options of ``calibrate_threshold``, checked; errors name the option and its value."""
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise invalid(
            "strategy",
            f"one of {', '.join(repr(name) for name in STRATEGIES)}",
            repr(plain(strategy)),
            InvalidParameterError,
        )
    if strategy in ("max_tpr", "max_tnr"):
        kept = "true-negative" if strategy == "max_tpr" else "true-positive"
        if not _is_real(min_rate) or not 0 <= min_rate <= 1:
            raise invalid(
                "min_rate",
                f"a number in [0, 1], the lowest {kept} rate strategy={strategy!r} keeps",
                repr(plain(min_rate)),
                InvalidParameterError,
            )
    elif min_rate is not None:
        raise InvalidParameterError(
            f"min_rate={plain(min_rate)!r} is only used with strategy='max_tpr' or 'max_tnr'; "
            f"got strategy={strategy!r}."
        )
    if strategy == "f_beta" and (not _is_real(beta) or not 0 <= beta < np.inf):
        raise invalid(
            "beta",
            "a real number >= 0, the weight of recall against precision",
            repr(plain(beta)),
            InvalidParameterError,
        )


def _is_real(value):
    return isinstance(value, Real) and not isinstance(value, bool)


def check_threshold_options(threshold, target_far):
    """The ``threshold`` and ``target_far`` parameters of a pair classifier, together."""
    if (isinstance(threshold, str) and threshold == "far") == (target_far is not None):
        return
    if target_far is None:
        raise ValueError(
            "threshold='far' needs target_far, the largest false-accept rate allowed; got "
            "target_far=None."
        )
    raise ValueError(
        f"target_far={plain(target_far)!r} is only used with threshold='far'; got "
        f"threshold={plain(threshold)!r}."
    )


def threshold_from_options(threshold, target_far, distances, similar):
    """``fit``'s threshold: a number as given, else calibrated as ``threshold`` says."""
    if not isinstance(threshold, str):
        return float(threshold)
    return calibrate(distances, similar, threshold, target_far=target_far)


# -- the methods the two classifiers share -----------------------------------------------------


class ThresholdClassifierMixin:
    """``decision_function``, ``predict``, ``set_threshold`` and ``calibrate_threshold``.

    A subclass sets ``threshold_`` and ``classes_`` (``classes_[1]`` means similar) in ``fit`` and
    defines ``_threshold_distances(X) -> ndarray (n_pairs,)`` (validating ``X``) and
    ``_similar(y, n_pairs) -> bool ndarray`` (validating ``y``).
    """

    threshold_: float
    classes_: np.ndarray

    def _threshold_distances(self, X):
        """The distance of each pair of ``X``, validated: ndarray of shape (n_pairs,)."""
        raise NotImplementedError

    def _similar(self, y, n_pairs):
        """Whether each pair of ``y`` is similar, validated: bool ndarray of shape (n_pairs,)."""
        raise NotImplementedError

    def decision_function(self, X):
        """``threshold_ - distance``: positive for pairs predicted similar.

        Parameters
        ----------
        X : array-like
            Pairs, in a form the estimator takes (see ``fit``).

        Returns
        -------
        scores : ndarray of shape (n_pairs,)
            Higher means more alike; it ranks pairs as ``-distance`` does.
        """
        check_is_fitted(self)
        return self.threshold_ - self._threshold_distances(X)

    def predict(self, X):
        """Predict whether each pair is similar.

        Parameters
        ----------
        X : array-like
            Pairs, in a form the estimator takes (see ``fit``).

        Returns
        -------
        y_pred : ndarray of shape (n_pairs,)
            ``classes_[1]`` (similar) where the distance is strictly below ``threshold_``, else
            ``classes_[0]``.
        """
        similar = self.decision_function(X) > 0
        return self.classes_[similar.astype(int)]

    def set_threshold(self, threshold):
        """Set ``threshold_``, the distance below which a pair is predicted similar.

        Until the next ``fit``, which sets it again from the ``threshold`` parameter.

        Parameters
        ----------
        threshold : float
            A distance; pairs strictly closer are predicted similar.

        Returns
        -------
        self : object
            The estimator.
        """
        check_is_fitted(self)
        if not _is_real(threshold) or np.isnan(threshold):
            raise invalid(
                "threshold",
                "a real number, a distance",
                repr(plain(threshold)),
                InvalidParameterError,
            )
        self.threshold_ = float(threshold)
        return self

    def calibrate_threshold(self, X, y, *, strategy="accuracy", min_rate=None, beta=1.0):
        """Set ``threshold_`` to the best for labelled pairs by a strategy of metric-learn's.

        Until the next ``fit``, which sets it again from the ``threshold`` parameter. Calibrate on
        pairs the estimator was not fitted on: it pulls its training pairs closer than new ones.

        Parameters
        ----------
        X : array-like
            Pairs, in a form the estimator takes (see ``fit``).
        y : array-like of shape (n_pairs,)
            Their labels, as in ``fit``; both similar and dissimilar pairs must occur.
        strategy : {"accuracy", "f_beta", "max_tpr", "max_tnr"}, default="accuracy"
            What the threshold maximises on ``(X, y)``:

            - ``"accuracy"``: the share of pairs predicted right;
            - ``"f_beta"``: the F-beta score of the similar pairs (``beta=0``: the precision);
            - ``"max_tpr"``: the share of similar pairs accepted, keeping the share of
              dissimilar pairs rejected at least ``min_rate``;
            - ``"max_tnr"``: the share of dissimilar pairs rejected, keeping the share of
              similar pairs accepted at least ``min_rate``.

            Among thresholds of equal merit, the one that accepts the fewest pairs; the
            threshold lies halfway between the largest accepted and the smallest rejected
            distance.
        min_rate : float in [0, 1], default=None
            Required by ``"max_tpr"`` and ``"max_tnr"``, and only used by them.
        beta : float >= 0, default=1.0
            The weight of recall against precision in ``"f_beta"``.

        Returns
        -------
        self : object
            The estimator, with its new ``threshold_``.
        """
        check_is_fitted(self)
        check_strategy(strategy, min_rate, beta)
        distances = self._threshold_distances(X)
        similar = self._similar(y, distances.shape[0])
        if similar.all() or not similar.any():
            raise ValueError(
                f"calibrate_threshold needs both similar and dissimilar pairs in y; all "
                f"{similar.shape[0]} pairs are {'similar' if similar.any() else 'dissimilar'}."
            )
        self.threshold_ = calibrate(distances, similar, strategy, min_rate=min_rate, beta=beta)
        return self
