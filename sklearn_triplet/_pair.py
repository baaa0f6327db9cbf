"""PairEmbedder: a backbone trained with the contrastive loss on given similar / dissimilar pairs."""

from typing import ClassVar

import numpy as np
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.metrics import roc_auc_score
from sklearn.utils.validation import check_is_fitted

from . import _docstrings
from ._tuple_losses import _contrastive_pairs
from ._tuples import (
    _THRESHOLD_CONSTRAINTS,
    PAIR_STATS,
    TUPLE_ATTRIBUTES,
    TUPLE_TRAINING_PARAMETERS,
    _check_pair_labels,
    _TupleEmbedder,
)
from .verification import _calibrate_threshold, paired_distances


class PairEmbedder(ClassifierMixin, _TupleEmbedder):
    """Learn an embedding from pairs labelled similar or dissimilar, with the contrastive loss.

        For data with no class labels, only judgements on pairs: duplicate questions or products,
        record linkage ("same customer?"), face-verification pair lists. A PyTorch backbone is trained
        on the given pairs with the contrastive loss of Hadsell, Chopra & LeCun (2006), and a
        distance threshold is then calibrated on them, so the fitted estimator both embeds single
        points (``transform``) and classifies new pairs (``predict``).

        ``y`` follows metric-learn: ``+1`` for a similar pair, ``-1`` for a dissimilar one. In the
        paper's notation ``Y = (1 - y) / 2`` (``Y = 0`` similar, ``Y = 1`` dissimilar) and a pair at
        distance ``D`` costs ``(1 - Y) * D**2 + Y * max(0, margin - D)**2``: similar pairs are pulled
        together, dissimilar ones pushed at least ``margin`` apart. Only the given pairs are trained
        on: two similar pairs that share a point do not make a third (see the User Guide for building
        such pairs yourself).

        Read more in the :ref:`User Guide <tuples>`.

        Parameters
        ----------
        n_components : int, default=32
            Width of the embedding (for the built-in backbones).
        points : array-like of shape (n_points, n_features), default=None
            The points that index pairs refer to, when ``X`` holds integer index pairs of shape
            ``(n_pairs, 2)``; unused when ``X`` holds the features of both points,
            ``(n_pairs, 2, n_features)``. A constructor parameter so that cross-validation and grid
            searches split the pairs while every fold sees the same points (cloning copies it).
    %(backbone)s
        margin : float, default=1.0
            The margin ``m``, in units of ``metric``: dissimilar pairs closer than it are penalised.
        threshold : {"accuracy", "far"} or float, default="accuracy"
            How ``fit`` sets ``threshold_``, on the distances of all the pairs it was given:
            ``"accuracy"`` maximises their accuracy, ``"far"`` takes the largest threshold whose
            false-accept rate (the share of dissimilar pairs predicted similar) is at most
            ``target_far``, and a float is used as is; see
            :class:`~sklearn_triplet.verification.PairVerifier`, which calibrates on held-out pairs.
        target_far : float in [0, 1], default=None
            The largest false-accept rate allowed; required by ``threshold="far"`` and only used by it.
    %(training)s

        Attributes
        ----------
        threshold_ : float
            Pairs at a distance strictly below it are predicted similar (``+1``).
        classes_ : ndarray of shape (2,)
            ``[-1, 1]``.
    %(attributes)s

        See Also
        --------
        ComparisonEmbedder : The same from triplets "a is more like b than like c".
        SiameseEmbedder : The same loss on pairs formed from class labels.
        sklearn_triplet.losses.contrastive_loss_on_pairs : The loss.

        References
        ----------
        .. [1] R. Hadsell, S. Chopra and Y. LeCun, "Dimensionality Reduction by Learning an Invariant
           Mapping", CVPR 2006.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn.datasets import load_digits
        >>> from sklearn_triplet import PairEmbedder
        >>> from sklearn_triplet.verification import make_pairs
        >>> X, y = load_digits(return_X_y=True)
        >>> X = X / 16
        >>> first, second, same = make_pairs(
        ...     np.arange(len(X))[:, None], y, n_pairs=2000, random_state=0
        ... )
        >>> pairs = np.hstack([first, second])  # (2000, 2) indices into X
        >>> model = PairEmbedder(n_components=8, points=X, max_iter=5, random_state=0)
        >>> model = model.fit(pairs, np.where(same, 1, -1))
        >>> model.transform(X[:3]).shape
        (3, 8)
        >>> model.predict(pairs[:4])
        array([ 1, -1, -1,  1])
        >>> round(model.score(pairs, np.where(same, 1, -1)), 2)
        0.9
    """

    _tuple_size = 2
    _kind = "pair"
    _parameter_constraints: ClassVar[dict] = {
        **_TupleEmbedder._parameter_constraints,
        **_THRESHOLD_CONSTRAINTS,
    }

    def __init__(
        self,
        n_components=32,
        *,
        points=None,
        backbone="mlp",
        hidden_layer_sizes=(256,),
        backbone_params=None,
        normalize=True,
        metric="euclidean",
        margin=1.0,
        threshold="accuracy",
        target_far=None,
        batch_size=128,
        max_iter=50,
        learning_rate_init=1e-3,
        weight_decay=0.0,
        mixed_precision=False,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        warm_start=False,
        callback=None,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.points = points
        self.backbone = backbone
        self.hidden_layer_sizes = hidden_layer_sizes
        self.backbone_params = backbone_params
        self.normalize = normalize
        self.metric = metric
        self.margin = margin
        self.threshold = threshold
        self.target_far = target_far
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.learning_rate_init = learning_rate_init
        self.weight_decay = weight_decay
        self.mixed_precision = mixed_precision
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.warm_start = warm_start
        self.callback = callback
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train the backbone on labelled pairs, then calibrate ``threshold_`` on them.

        Parameters
        ----------
        X : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
            The two points of each pair, or integer index pairs into ``points``.
        y : array-like of shape (n_pairs,)
            ``+1`` for a similar pair, ``-1`` for a dissimilar one; both must occur.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._check_threshold_options()
        return self._fit(X, y, n_epochs=self.max_iter, incremental=self.warm_start, validate=True)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y):
        """Train one epoch on labelled pairs, from the current weights when fitted.

        Early stopping does not apply; ``threshold_`` is calibrated again on these pairs.

        Parameters
        ----------
        X : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
            The two points of each pair, or integer index pairs into ``points``.
        y : array-like of shape (n_pairs,)
            ``+1`` for a similar pair, ``-1`` for a dissimilar one; both must occur.

        Returns
        -------
        self : object
            The estimator, trained one more epoch.
        """
        self._check_threshold_options()
        return self._fit(X, y, n_epochs=1, incremental=True, validate=False)

    def _check_threshold_options(self):
        if self.threshold == "far" and self.target_far is None:
            raise ValueError(
                "threshold='far' needs target_far, the largest false-accept rate allowed; got "
                "target_far=None."
            )
        if self.threshold != "far" and self.target_far is not None:
            raise ValueError(
                f"target_far={self.target_far!r} is only used with threshold='far'; got "
                f"threshold={self.threshold!r}."
            )

    def _check_targets(self, y, n_tuples):
        return _check_pair_labels(self, y, n_tuples, both_kinds=True)

    def _tuple_loss(self, members, y):
        return _contrastive_pairs(
            members[:, 0], members[:, 1], y, self.margin, self.metric, return_stats=True
        )

    def _validation_score(self, members, y):
        """ROC AUC of the held-out pairs ranked by distance (higher is better)."""
        return roc_auc_score(y, -paired_distances(members[:, 0], members[:, 1], metric=self.metric))

    def _after_training(self, points, tuples, y):
        self.classes_ = np.array([-1, 1])
        if isinstance(self.threshold, str):
            members = self._embed_members(points, tuples)
            distances = paired_distances(members[:, 0], members[:, 1], metric=self.metric)
            target_far = self.target_far if self.threshold == "far" else None
            self.threshold_ = _calibrate_threshold(distances, y > 0, target_far)
        else:
            self.threshold_ = float(self.threshold)

    def decision_function(self, X):
        """``threshold_ - distance``: positive for pairs predicted similar.

        Parameters
        ----------
        X : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
            Pairs of points, or integer index pairs into ``points``.

        Returns
        -------
        scores : ndarray of shape (n_pairs,)
            Higher means more alike; it ranks pairs as ``-pair_distance(X)`` does.
        """
        check_is_fitted(self)
        return self.threshold_ - self.pair_distance(X)

    def predict(self, X):
        """Predict ``+1`` (similar) or ``-1`` (dissimilar) for each pair.

        Parameters
        ----------
        X : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
            Pairs of points, or integer index pairs into ``points``.

        Returns
        -------
        y_pred : ndarray of shape (n_pairs,)
            ``+1`` where the distance is strictly below ``threshold_``, else ``-1``.
        """
        return np.where(self.decision_function(X) > 0, 1, -1)

    def score(self, X, y):
        """Accuracy of ``predict`` on labelled pairs.

        Parameters
        ----------
        X : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
            Pairs of points, or integer index pairs into ``points``.
        y : array-like of shape (n_pairs,)
            ``+1`` for a similar pair, ``-1`` for a dissimilar one.

        Returns
        -------
        score : float
            The share of pairs predicted right.
        """
        y_pred = self.predict(X)
        y = _check_pair_labels(self, y, y_pred.shape[0], both_kinds=False)
        return float(np.mean(y_pred == y))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags


PairEmbedder.__doc__ = _docstrings.fill(
    PairEmbedder.__doc__,
    backbone=_docstrings.BACKBONE_PARAMETERS,
    training=TUPLE_TRAINING_PARAMETERS % {"kind": "pair", "score": "ROC AUC"},
    attributes=TUPLE_ATTRIBUTES % {"stats": PAIR_STATS},
)
