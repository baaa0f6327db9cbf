"""PairEmbedder: a backbone trained with the contrastive loss on given similar and dissimilar
pairs."""

from collections.abc import Callable, Sequence
from numbers import Real

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.metrics import roc_auc_score

from ._kernels import GIVEN_PAIRS, given_pairs_kernel
from ._threshold import ThresholdClassifierMixin, check_threshold_options, threshold_from_options
from ._tuples import TupleEmbedder, check_pair_labels
from ._validation import Interval, StrOptions, fit_context
from .distances import paired_distances


class PairEmbedder(ThresholdClassifierMixin, ClassifierMixin, TupleEmbedder):
    """Learn an embedding from pairs labelled similar or dissimilar, with the contrastive loss.

    For data with no class labels, only judgements on pairs: duplicate questions or products,
    record linkage ("same customer?"), face-verification pair lists. A PyTorch backbone is
    trained on the given pairs with the contrastive loss of Hadsell, Chopra & LeCun (2006), then a
    distance threshold is calibrated on them, so the fitted estimator both embeds single points
    (``transform``) and classifies new pairs (``predict``).

    ``y`` follows metric-learn: ``+1`` for a similar pair, ``-1`` for a dissimilar one; any two
    labels are taken, the greater one meaning similar (``1`` / ``0``, ``True`` / ``False``, as
    :func:`~sklearn.model_selection.cross_val_predict` re-encodes them), and ``classes_`` stays
    ``[-1, 1]``. In the paper's notation ``Y = (1 - y) / 2`` (``Y = 0`` similar, ``Y = 1``
    dissimilar) and a pair at distance ``D`` costs ``(1 - Y) * D + Y * max(0, margin - D)`` (by
    default, as pytorch-metric-learning's ``ContrastiveLoss``), or ``(1 - Y) * D**2 + Y * max(0,
    margin - D)**2`` with ``squared=True`` (the paper's): similar pairs are pulled together,
    dissimilar ones pushed at least ``margin`` apart. Only the given pairs are trained on: two
    similar pairs that share a point do not make a third.

    By default the network starts at the points' own geometry (``backbone="residual"``) and
    ``do_no_harm`` keeps the raw features when training did not beat them on held-out pairs, so
    the embedding is not worse than the features it was given.

    Read more in the :ref:`User Guide <tuples>`.

    Parameters
    ----------
    %(backbone)s
    margin : float, default=1.0
        The margin ``m``, in units of ``metric``: dissimilar pairs closer than it are penalised.
        The residual backbone starts with a root mean square distance of 1 between points.
    average : {"active", "all"}, default="active"
        ``"active"``: the loss is the mean over the similar pairs of the batch whose loss is
        above 0 plus the mean over the dissimilar pairs whose loss is above 0, so that neither
        kind fades from the gradient as most pairs come to sit where they should. ``"all"``: the
        sum over the batch's pairs divided by their number (Hadsell et al.).
    squared : bool, default=False
        Square each pair's term (Hadsell et al.). The default takes distances as they are: every
        similar pair is pulled with the same strength, however close.
    do_no_harm : bool, default=True
        Never be worse than the features given, on held-out pairs: ``fit`` holds out
        ``validation_fraction`` of the similar and of the dissimilar pairs (with
        ``early_stopping=True``, its validation pairs), trains on the rest, and ranks the held-out
        pairs by distance in the trained embedding (in ``metric``) and in the raw features
        (Euclidean). The embedding is kept only when its ROC AUC is higher; otherwise
        ``transform`` returns the features unchanged (float32, ``n_components_ =
        n_features_in_``), pairs are compared by their Euclidean distance and ``raw_kept_`` is
        True. With fewer than two pairs of a kind, nothing is held out and the network is used.
        ``partial_fit`` always uses the network.
    points : array-like of shape (n_points, n_features) or callable, default=None
        The points that index pairs refer to, when ``X`` holds index pairs of shape ``(n_pairs,
        2)``: an array whose rows the integer indices pick, or a callable that maps a 1-D array of
        ids (file names, database keys...) to their features, shape ``(n_ids, n_features)``,
        called once per ``fit`` with the distinct ids used, and per ``transform``, ``predict``...
        with theirs (the lazy path for data that is not one array). Unused when ``X`` holds the
        features of both points, ``(n_pairs, 2, n_features)``. With ``points`` set, ``transform``
        also takes a 1-D array of indices or ids. A constructor parameter so that cross-validation
        and grid searches split the pairs while every fold sees the same points (cloning copies
        it); metric-learn's ``preprocessor``.
    threshold : {"accuracy", "far"} or float, default="accuracy"
        How ``fit`` sets ``threshold_``: ``"accuracy"`` maximises the accuracy of the
        calibration pairs, ``"far"`` takes the largest threshold whose false-accept rate (the
        share of dissimilar pairs predicted similar) on them is at most ``target_far``, and a
        float is used as is. The calibration pairs are those held out by ``early_stopping``, else
        all the pairs of ``fit``. The network pulls its training pairs closer than new ones, so a
        threshold calibrated on them is too strict for new pairs: prefer early stopping, or
        :class:`~sklearn_triplet.verification.PairVerifier` on pairs of your own, or
        ``calibrate_threshold`` on held-out pairs, with metric-learn's other strategies.
    target_far : float in [0, 1], default=None
        The largest false-accept rate allowed; required by ``threshold="far"``, and only used by
        it.
    %(training)s

    %(attributes)s

    See Also
    --------
    sklearn_triplet.verification.PairVerifier : A threshold calibrated on pairs of your own.
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
    >>> model.predict(pairs[:6]).shape, model.classes_  # +1 similar, -1 dissimilar
    ((6,), array([-1,  1]))
    >>> bool(model.score(pairs, labels) > 0.8)  # the share of pairs predicted right
    True
    >>> # Accept a share of at least 0.95 of the similar pairs (a strategy of metric-learn)
    >>> model = model.calibrate_threshold(pairs, labels, strategy="max_tnr", min_rate=0.95)
    >>> bool(np.mean(model.predict(pairs[labels == 1]) == 1) >= 0.95)
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
    raw_kept_ : bool
        True when ``do_no_harm`` found the trained embedding no better than the raw features on
        the held-out pairs: ``transform`` returns the features unchanged.
    held_out_scores_ : dict or None
        ``{"trained": float, "raw": float}``, the ROC AUC of the held-out pairs in each, from the
        last ``fit`` with ``do_no_harm=True``; None otherwise.
    threshold_ : float
        Pairs at a distance strictly below it are predicted similar (``+1``). Set by ``fit``
        from the ``threshold`` parameter, or later by ``calibrate_threshold`` or
        ``set_threshold``.
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
        "squared": ["boolean"],
    }

    # The defaults: the recipe studied on the tasks of benchmarks/pairs.py (tuples_recipe.py).
    def __init__(
        self,
        n_components=None,
        *,
        backbone: str | torch.nn.Module | Callable[..., torch.nn.Module] = "residual",
        hidden_layer_sizes: int | Sequence[int] = (256,),
        backbone_params=None,
        normalize=False,
        metric="euclidean",
        margin=1.0,
        average="active",
        squared=False,
        do_no_harm=True,
        points=None,
        threshold: str | float = "accuracy",
        target_far=None,
        batch_size=128,
        max_iter=50,
        learning_rate="cosine",
        learning_rate_init=3e-4,
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
        self.average = average
        self.squared = squared
        self.do_no_harm = do_no_harm
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
            ``+1`` for a similar pair, ``-1`` for a dissimilar one (any two labels: the greater
            means similar); both must occur.

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
            ``+1`` for a similar pair, ``-1`` for a dissimilar one (any two labels: the greater
            means similar); both must occur.

        Returns
        -------
        self : object
            The estimator, trained one more epoch.
        """
        return self._fit(X, y, n_epochs=1, incremental=True, validate=False)

    def _check_fit_parameters(self):
        check_threshold_options(self.threshold, self.target_far)

    def _check_targets(self, y, n_tuples):
        return check_pair_labels(self, y, n_tuples, both_kinds=True)

    def _loss_terms(self, members, targets, *, counts, spread):
        return given_pairs_kernel(
            members[:, 0],
            members[:, 1],
            targets,
            margin=self.margin,
            metric=self.metric,
            average=self.average,
            squared=self.squared,
            counts=counts,
            spread=spread,
        )

    def _validation_score(self, members, targets, *, metric=None):
        """ROC AUC of the held-out pairs ranked by distance (higher is better)."""
        metric = self.metric if metric is None else metric
        distances = paired_distances(members[:, 0], members[:, 1], metric=metric)
        return roc_auc_score(targets, -distances)

    def _after_training(self, points, data, points_val, data_val):
        """Choose the embedding (``do_no_harm``), then calibrate ``threshold_`` in it: on the
        held-out pairs with early stopping, else on all."""
        super()._after_training(points, data, points_val, data_val)
        self.classes_ = np.array([-1, 1])
        distances = similar = None
        if isinstance(self.threshold, str):
            tuples, targets = data if data_val is None else data_val
            members = self._embed_members(points, tuples)
            distances = paired_distances(members[:, 0], members[:, 1], metric=self._distance_metric)
            similar = targets > 0
        self.threshold_ = threshold_from_options(
            self.threshold, self.target_far, distances, similar
        )

    def _threshold_distances(self, X):
        return self.pair_distance(X)

    def _similar(self, y, n_pairs):
        return check_pair_labels(self, y, n_pairs, both_kinds=False) > 0

    # (ClassifierMixin.score takes sample_weight too; the share of pairs right takes none.)
    def score(self, X, y):  # pyright: ignore[reportIncompatibleMethodOverride]
        """Accuracy of ``predict`` on labelled pairs.

        Parameters
        ----------
        X : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
            Pairs of points, or integer index pairs into ``points``.
        y : array-like of shape (n_pairs,)
            ``+1`` for a similar pair, ``-1`` for a dissimilar one (any two labels: the greater
            means similar).

        Returns
        -------
        score : float
            The share of pairs predicted right.
        """
        y_pred = self.predict(X)
        y = check_pair_labels(self, y, y_pred.shape[0], both_kinds=False)
        return float(np.mean(y_pred == y))
