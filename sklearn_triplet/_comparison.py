"""ComparisonEmbedder: a backbone trained with the triplet loss on given relative comparisons."""

from collections.abc import Callable, Sequence

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from ._kernels import GIVEN_TRIPLETS, given_triplets_kernel
from ._tuples import TupleEmbedder
from ._validation import fit_context, invalid
from .distances import paired_distances


class ComparisonEmbedder(TupleEmbedder):
    """Learn an embedding from triplets "a is more like b than like c", with the triplet loss.

    For data judged by relative comparisons rather than class labels: a person's "this product is
    closer to that one than to the third", click or purchase logs, the triplets of a face data
    set. A PyTorch backbone is trained on the given triplets ``(a, p, n)`` with the triplet loss of
    FaceNet (Schroff et al., 2015), ``max(0, d(a, p) - d(a, n) + margin)``, then embeds single
    points (``transform``) and tells the order of new triplets (``predict``). Only the given
    triplets are trained on: none is made by combining triplets that share points.

    By default the network starts at the points' own geometry (``backbone="residual"``) and
    ``do_no_harm`` keeps the raw features when training did not beat them on held-out triplets,
    so the embedding is not worse than the features it was given.

    Read more in the :ref:`User Guide <tuples>`.

    Parameters
    ----------
    %(backbone)s
    margin : float, default=0.2
        The margin, in units of ``metric``: a triplet costs nothing once its negative is farther
        from the anchor than its positive by at least ``margin``.
    average : {"active", "all"}, default="active"
        ``"active"``: the loss is the mean over the triplets of the batch whose loss is above 0,
        so that the gradient keeps its size as training turns triplets easy. ``"all"``: the sum
        over the batch's triplets divided by their number (FaceNet).
    do_no_harm : bool, default=True
        Never be worse than the features given, on held-out triplets: ``fit`` holds out
        ``validation_fraction`` of the triplets (with ``early_stopping=True``, its validation
        triplets), trains on the rest, and counts the held-out triplets in the right order in the
        trained embedding (in ``metric``) and in the raw features (Euclidean). The embedding is
        kept only when it orders more of them right; otherwise ``transform`` returns the features
        unchanged (float32, ``n_components_ = n_features_in_``), triplets are ordered by
        Euclidean distance and ``raw_kept_`` is True. With fewer than two triplets, nothing is
        held out and the network is used. ``partial_fit`` always uses the network.
    points : array-like of shape (n_points, n_features) or callable, default=None
        The points that index triplets refer to, when ``X`` holds index triplets of shape
        ``(n_triplets, 3)``: an array whose rows the integer indices pick, or a callable that maps
        a 1-D array of ids (file names, database keys...) to their features, shape ``(n_ids,
        n_features)``, called once per ``fit`` with the distinct ids used (the lazy path for data
        that is not one array). Unused when ``X`` holds the features of the three points,
        ``(n_triplets, 3, n_features)``. With ``points`` set, ``transform`` also takes a 1-D array
        of indices or ids. A constructor parameter so that cross-validation and grid searches
        split the triplets while every fold sees the same points (cloning copies it);
        metric-learn's ``preprocessor``.
    %(training)s

    %(attributes)s

    See Also
    --------
    PairEmbedder : The same from pairs labelled similar or dissimilar.
    TripletEmbedder : The same loss on triplets mined from class labels.
    sklearn_triplet.losses.triplet_loss_on_triplets : The loss.

    References
    ----------
    .. [1] F. Schroff, D. Kalenichenko and J. Philbin, "FaceNet: A Unified Embedding for Face
       Recognition and Clustering", CVPR 2015.
    .. [2] M. Schultz and T. Joachims, "Learning a Distance Metric from Relative Comparisons",
       NIPS 2003.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_triplet import ComparisonEmbedder
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> rng = np.random.default_rng(0)
    >>> anchors = rng.integers(len(X), size=3000)
    >>> positives = np.array([rng.choice(np.flatnonzero(y == y[a])) for a in anchors])
    >>> negatives = np.array([rng.choice(np.flatnonzero(y != y[a])) for a in anchors])
    >>> triplets = np.stack([anchors, positives, negatives], axis=1)  # indices into X
    >>> model = ComparisonEmbedder(n_components=8, points=X, max_iter=5, random_state=0)
    >>> model = model.fit(triplets[:2000])
    >>> model.transform(X[:3]).shape
    (3, 8)
    >>> bool(model.score(triplets[2000:]) > 0.9)  # the share of held-out triplets in order
    True
    """

    _loss = GIVEN_TRIPLETS
    _tuple_size = 3
    _kind = "triplet"
    _negatives = "the anchors and the negatives"
    _validation_score_name = "triplet accuracy"
    _validation_score_doc = "triplet accuracy (the share in the right order)"
    _split_description = "at least one on each side"
    _split_minimum = "triplets"
    _own_attributes = """\
    raw_kept_ : bool
        True when ``do_no_harm`` found the trained embedding no better than the raw features on
        the held-out triplets: ``transform`` returns the features unchanged.
    held_out_scores_ : dict or None
        ``{"trained": float, "raw": float}``, the share of the held-out triplets in the right
        order in each, from the last ``fit`` with ``do_no_harm=True``; None otherwise.
"""

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
        margin=0.2,
        average="active",
        do_no_harm=True,
        points=None,
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
        self.do_no_harm = do_no_harm
        self.points = points
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
    def fit(self, X, y=None):
        """Train the backbone on triplets.

        Parameters
        ----------
        X : array-like of shape (n_triplets, 3, n_features) or (n_triplets, 3)
            Triplets ``(a, p, n)`` of points, or integer index triplets into ``points``: ``a`` is
            more like ``p`` than like ``n``.
        y : None
            There is no target: the order within each triplet says it all. Present for the API.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, n_epochs=self.max_iter, incremental=self.warm_start, validate=True)

    @fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Train one epoch on triplets, from the current weights when fitted.

        Early stopping does not apply.

        Parameters
        ----------
        X : array-like of shape (n_triplets, 3, n_features) or (n_triplets, 3)
            Triplets of points, or integer index triplets into ``points``.
        y : None
            Present for the API.

        Returns
        -------
        self : object
            The estimator, trained one more epoch.
        """
        return self._fit(X, y, n_epochs=1, incremental=True, validate=False)

    def _check_targets(self, y, n_tuples):
        if y is not None:
            raise invalid(
                "y",
                f"None: {type(self).__name__} learns from the order within each triplet alone (its "
                "first point is more like the second than like the third; swap the last two to "
                "reverse it)",
                type(y).__name__,
            )

    def _loss_terms(self, members, targets, *, counts, spread):
        return given_triplets_kernel(
            *members.unbind(1),
            margin=self.margin,
            metric=self.metric,
            average=self.average,
            counts=counts,
            spread=spread,
        )

    def _validation_score(self, members, y, *, metric=None):
        """The share of held-out triplets in the right order (higher is better)."""
        return float(np.mean(_gaps(members, self.metric if metric is None else metric) > 0))

    def decision_function(self, X):
        """``d(a, n) - d(a, p)``: positive for triplets in the right order.

        Parameters
        ----------
        X : array-like of shape (n_triplets, 3, n_features) or (n_triplets, 3)
            Triplets ``(a, p, n)`` of points, or integer index triplets into ``points``.

        Returns
        -------
        scores : ndarray of shape (n_triplets,)
            How much closer ``a`` is to ``p`` than to ``n``, in units of ``metric`` (Euclidean
            when ``do_no_harm`` kept the raw features).
        """
        check_is_fitted(self)
        return _gaps(self._embed_tuples(X, 3), self._distance_metric)

    def predict(self, X):
        """Predict ``+1`` when ``a`` is closer to ``p`` than to ``n``, else ``-1``.

        Parameters
        ----------
        X : array-like of shape (n_triplets, 3, n_features) or (n_triplets, 3)
            Triplets ``(a, p, n)`` of points, or integer index triplets into ``points``.

        Returns
        -------
        y_pred : ndarray of shape (n_triplets,)
            ``+1`` where ``d(a, p) < d(a, n)`` strictly, else ``-1`` (ties included).
        """
        return np.where(self.decision_function(X) > 0, 1, -1)

    def score(self, X, y=None):
        """The share of triplets in the right order, ``d(a, p) < d(a, n)`` (ties count wrong).

        Parameters
        ----------
        X : array-like of shape (n_triplets, 3, n_features) or (n_triplets, 3)
            Triplets ``(a, p, n)`` of points, or integer index triplets into ``points``.
        y : None
            Present for the API.

        Returns
        -------
        score : float
        """
        self._check_targets(y, None)
        return float(np.mean(self.predict(X) > 0))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        return tags


def _gaps(members, metric):
    """``d(a, n) - d(a, p)`` of embedded triplets of shape (n, 3, n_components)."""
    anchors = members[:, 0]
    return paired_distances(anchors, members[:, 2], metric=metric) - paired_distances(
        anchors, members[:, 1], metric=metric
    )
