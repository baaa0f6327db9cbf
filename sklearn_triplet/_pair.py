"""PairEmbedder: a backbone trained with the contrastive loss on given similar and dissimilar
pairs."""

from collections.abc import Callable, Sequence
from numbers import Real

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.metrics import roc_auc_score
from sklearn.utils.validation import check_is_fitted

from ._kernels import GIVEN_PAIRS, given_pairs_kernel
from ._tuples import TupleEmbedder, check_pair_labels
from ._validation import Interval, StrOptions, fit_context, invalid
from .distances import paired_distances
from .verification import calibrate_threshold


class PairEmbedder(ClassifierMixin, TupleEmbedder):
    """Learn an embedding from pairs labelled similar or dissimilar, with the contrastive loss.

    For data with no class labels, only judgements on pairs: duplicate questions or products,
    record linkage ("same customer?"), face-verification pair lists. A PyTorch backbone is
    trained on the given pairs with the contrastive loss of Hadsell, Chopra & LeCun (2006), then a
    distance threshold is calibrated on them, so the fitted estimator both embeds single points
    (``transform``) and classifies new pairs (``predict``).

    ``y`` follows metric-learn: ``+1`` for a similar pair, ``-1`` for a dissimilar one. In the
    paper's notation ``Y = (1 - y) / 2`` (``Y = 0`` similar, ``Y = 1`` dissimilar) and a pair at
    distance ``D`` costs ``(1 - Y) * D**2 + Y * max(0, margin - D)**2``: similar pairs are
    pulled together, dissimilar ones pushed at least ``margin`` apart. Only the given pairs are
    trained on: two similar pairs that share a point do not make a third.

    Read more in the :ref:`User Guide <tuples>`.

    Parameters
    ----------
    %(backbone)s
    margin : float, default=1.0
        The margin ``m``, in units of ``metric``: dissimilar pairs closer than it are penalised.
    points : array-like of shape (n_points, n_features), default=None
        The points that index pairs refer to, when ``X`` holds integer index pairs of shape
        ``(n_pairs, 2)``; unused when ``X`` holds the features of both points, ``(n_pairs, 2,
        n_features)``. A constructor parameter so that cross-validation and grid searches split
        the pairs while every fold sees the same points (cloning copies it).
    threshold : {"accuracy", "far"} or float, default="accuracy"
        How ``fit`` sets ``threshold_``: ``"accuracy"`` maximises the accuracy of the
        calibration pairs, ``"far"`` takes the largest threshold whose false-accept rate (the
        share of dissimilar pairs predicted similar) on them is at most ``target_far``, and a
        float is used as is. The calibration pairs are those held out by ``early_stopping``, else
        all the pairs of ``fit``. The network pulls its training pairs closer than new ones, so a
        threshold calibrated on them is too strict for new pairs: prefer early stopping, or
        :class:`~sklearn_triplet.verification.PairVerifier` on pairs of your own.
    target_far : float in [0, 1], default=None
        The largest false-accept rate allowed; required by ``threshold="far"``, and only used by
        it.
    %(training)s

    %(attributes)s

    See Also
    --------
    ComparisonEmbedder : The same from triplets "a is more like b than like c".
    SiameseEmbedder : The same loss on pairs formed from class labels.
    sklearn_triplet.losses.contrastive_loss_on_pairs : The loss.

    References
    ----------
    .. [1] R. Hadsell, S. Chopra and Y. LeCun, "Dimensionality Reduction by Learning an
       Invariant Mapping", CVPR 2006.

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
    >>> labels = np.where(same, 1, -1)  # +1 similar, -1 dissimilar
    >>> model = PairEmbedder(n_components=8, points=X, max_iter=5, random_state=0)
    >>> model = model.fit(pairs, labels)
    >>> model.transform(X[:3]).shape
    (3, 8)
    >>> model.predict(pairs[:6]), labels[:6]
    (array([ 1, -1, -1, -1,  1,  1]), array([ 1, -1, -1, -1,  1,  1]))
    >>> bool(model.score(pairs, labels) > 0.8)  # the share of pairs predicted right
    True
    """

    _loss = GIVEN_PAIRS
    _tuple_size = 2
    _kind = "pair"
    _negatives = "the two points of the dissimilar pairs"
    _validation_score_name = "ROC AUC"
    _validation_score_doc = "ROC AUC"
    _split_description = (
        "of the similar and of the dissimilar pairs alike, at least one on each side"
    )
    _split_minimum = "similar and two dissimilar pairs"
    _own_attributes = """\
    threshold_ : float
        Pairs at a distance strictly below it are predicted similar (``+1``).
    classes_ : ndarray of shape (2,)
        ``[-1, 1]``.
"""
    _parameter_constraints = {
        **TupleEmbedder._parameter_constraints,
        "threshold": [
            StrOptions({"accuracy", "far"}),
            Interval(Real, None, None, closed="neither"),
        ],
        "target_far": [Interval(Real, 0, 1, closed="both"), None],
    }

    # The learning rate of the embedders' recipe was not studied for tuples: theirs stays as it was.
    def __init__(
        self,
        n_components=32,
        *,
        backbone: str | torch.nn.Module | Callable[..., torch.nn.Module] = "mlp",
        hidden_layer_sizes: int | Sequence[int] = (256,),
        backbone_params=None,
        normalize=True,
        metric="euclidean",
        margin=1.0,
        points=None,
        threshold: str | float = "accuracy",
        target_far=None,
        batch_size=128,
        max_iter=50,
        learning_rate="constant",
        learning_rate_init=1e-3,
        weight_decay=0.0,
        mixed_precision=False,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        warm_start=False,
        callback=None,
        checkpoint=None,
        checkpoint_every=1,
        device: str | torch.device = "auto",
        n_threads=None,
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.backbone = backbone
        self.hidden_layer_sizes = hidden_layer_sizes
        self.backbone_params = backbone_params
        self.normalize = normalize
        self.metric = metric
        self.margin = margin
        self.points = points
        self.threshold = threshold
        self.target_far = target_far
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.weight_decay = weight_decay
        self.mixed_precision = mixed_precision
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.warm_start = warm_start
        self.callback = callback
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train the backbone on labelled pairs, then calibrate ``threshold_``.

        ``threshold_`` is calibrated on the pairs held out by ``early_stopping``, else on all the
        pairs.

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
        return self._fit(X, y, n_epochs=self.max_iter, incremental=self.warm_start, validate=True)

    @fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y):
        """Train one epoch on labelled pairs, from the current weights when fitted.

        Early stopping does not apply; ``threshold_`` is calibrated again, on these pairs.

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
        return self._fit(X, y, n_epochs=1, incremental=True, validate=False)

    def _check_fit_parameters(self):
        if (self.threshold == "far") != (self.target_far is not None):
            if self.target_far is None:
                raise invalid(
                    "target_far",
                    "the largest false-accept rate allowed, with threshold='far'",
                    "None",
                )
            raise ValueError(
                f"target_far={self.target_far!r} is only used with threshold='far'; got "
                f"threshold={self.threshold!r}."
            )

    def _check_targets(self, y, n_tuples):
        return check_pair_labels(self, y, n_tuples, both_kinds=True)

    def _loss_terms(self, members, targets, *, counts, spread):
        return given_pairs_kernel(
            members[:, 0],
            members[:, 1],
            targets,
            margin=self.margin,
            metric=self.metric,
            counts=counts,
            spread=spread,
        )

    def _validation_score(self, members, targets):
        """ROC AUC of the held-out pairs ranked by distance (higher is better)."""
        distances = paired_distances(members[:, 0], members[:, 1], metric=self.metric)
        return roc_auc_score(targets, -distances)

    def _after_training(self, points, data, points_val, data_val):
        """Calibrate ``threshold_``: on the held-out pairs with early stopping, else on all."""
        self.classes_ = np.array([-1, 1])
        if not isinstance(self.threshold, str):
            self.threshold_ = float(self.threshold)
            return
        tuples, targets = data if data_val is None else data_val
        members = self._embed_members(points, tuples)
        distances = paired_distances(members[:, 0], members[:, 1], metric=self.metric)
        target_far = self.target_far if self.threshold == "far" else None
        self.threshold_ = calibrate_threshold(distances, targets > 0, target_far)

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

    # (ClassifierMixin.score takes sample_weight too; the share of pairs right takes none.)
    def score(self, X, y):  # pyright: ignore[reportIncompatibleMethodOverride]
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
        y = check_pair_labels(self, y, y_pred.shape[0], both_kinds=False)
        return float(np.mean(y_pred == y))
