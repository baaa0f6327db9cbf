"""TripletEmbedder: a backbone trained with the triplet loss and online mining."""

from sklearn.utils._param_validation import StrOptions

from . import _docstrings
from ._base import _BaseEmbedder
from .losses import triplet_loss


class TripletEmbedder(_BaseEmbedder):
    """Learn an embedding with the triplet loss and online triplet mining.

    A PyTorch backbone is trained so that, for triplets of an anchor ``a``, a positive ``p`` of the
    same class and a negative ``n`` of another class, ``d(a, n) >= d(a, p) + margin``: the loss of a
    triplet is ``max(d(a, p) - d(a, n) + margin, 0)`` (Schroff et al., 2015). Triplets are mined
    online inside each class-balanced batch. ``transform`` returns the embeddings, to be used by
    :class:`~sklearn.neighbors.KNeighborsClassifier` or any distance-based estimator.

    Read more in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    n_components : int, default=32
        Width of the embedding (for the built-in backbones).
%(backbone)s
    margin : float, default=0.2
        The margin, in units of ``metric``, used by the loss and by the mining alike.
    mining : {"semi-hard", "hard", "all"}, default="semi-hard"
        Which triplets of a batch the loss averages over (see
        :func:`sklearn_triplet.losses.triplet_loss` for the exact rules). ``"semi-hard"``: for each
        positive pair, the closest negative farther than the positive (FaceNet). ``"hard"``: for each
        anchor, its farthest positive and closest negative (batch-hard). ``"all"``: every triplet with
        a non-zero loss (batch-all).
    loss : callable, default=None
        A replacement for the built-in loss: ``loss(embeddings, labels) -> scalar tensor``, with
        embeddings of shape ``(batch, n_components)`` (normalised when ``normalize=True``) and integer
        labels of shape ``(batch,)``; pytorch-metric-learning's losses have this signature. ``margin``
        and ``metric`` then only drive the triplet statistics recorded in ``history_``.
%(training)s

    Attributes
    ----------
%(attributes)s

    See Also
    --------
    SiameseEmbedder : The same estimator trained with the contrastive loss over pairs.
    sklearn.neighbors.NeighborhoodComponentsAnalysis : A linear metric learned by a softmax over
        neighbours.

    Notes
    -----
    Classes with a single sample in ``y`` cannot form a positive pair: they take part as negatives
    only. ``y`` needs at least two classes and one class with two or more samples.

    References
    ----------
    .. [1] F. Schroff, D. Kalenichenko and J. Philbin, "FaceNet: A Unified Embedding for Face
       Recognition and Clustering", CVPR 2015, arXiv:1503.03832.
    .. [2] A. Hermans, L. Beyer and B. Leibe, "In Defense of the Triplet Loss for Person
       Re-Identification", arXiv:1703.07737, 2017.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_triplet import TripletEmbedder
    >>> X, y = load_digits(return_X_y=True)
    >>> model = make_pipeline(TripletEmbedder(max_iter=5, random_state=0), KNeighborsClassifier())
    >>> model.fit(X[:1000], y[:1000]).score(X[1000:], y[1000:]) > 0.9
    True
    """

    _parameter_constraints = {
        **_BaseEmbedder._parameter_constraints,
        "mining": [StrOptions({"semi-hard", "hard", "all"})],
    }

    def __init__(
        self,
        n_components=32,
        *,
        backbone="mlp",
        hidden_layer_sizes=(256,),
        backbone_params=None,
        normalize=True,
        metric="euclidean",
        margin=0.2,
        mining="semi-hard",
        loss=None,
        batch_size=128,
        samples_per_class=4,
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
        checkpoint=None,
        checkpoint_every=1,
        device="auto",
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
        self.mining = mining
        self.loss = loss
        self.batch_size = batch_size
        self.samples_per_class = samples_per_class
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
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _batch_loss(self, embeddings, labels):
        if self.loss is not None:
            return self._callable_loss(embeddings, labels)
        return triplet_loss(
            embeddings,
            labels,
            margin=self.margin,
            mining=self.mining,
            metric=self.metric,
            return_stats=True,
        )


TripletEmbedder.__doc__ = _docstrings.fill(
    TripletEmbedder.__doc__,
    backbone=_docstrings.BACKBONE_PARAMETERS,
    training=_docstrings.TRAINING_PARAMETERS,
    attributes=_docstrings.ATTRIBUTES,
)
