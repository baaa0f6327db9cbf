"""SiameseEmbedder: a backbone trained with the contrastive loss over the pairs of each batch."""

from sklearn.utils._param_validation import StrOptions

from . import _docstrings
from ._base import _BaseEmbedder
from .losses import contrastive_loss


class SiameseEmbedder(_BaseEmbedder):
    """Learn an embedding with the contrastive loss of a Siamese network.

    A PyTorch backbone is trained on the pairs of each class-balanced batch with the loss of Hadsell,
    Chopra & LeCun (2006): with ``Y = 0`` for a same-class pair and ``Y = 1`` otherwise, and ``D`` the
    distance between the two embeddings, ``(1 - Y) * D**2 + Y * max(0, margin - D)**2``. Same-class
    pairs are pulled together; different-class pairs are pushed at least ``margin`` apart.

    Read more in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    n_components : int, default=32
        Width of the embedding (for the built-in backbones).
%(backbone)s
    margin : float, default=1.0
        The margin ``m``, in units of ``metric``: different-class pairs closer than it are penalised.
        The triplet statistics in ``history_`` use the same margin.
    mining : {"all", "hard"}, default="all"
        Which pairs of a batch the loss averages over (see
        :func:`sklearn_triplet.losses.contrastive_loss`). ``"all"``: every unordered pair.
        ``"hard"``: positive pairs farther apart than the closest negative pair of either member, and
        negative pairs closer than the farthest positive pair of either member.
    loss : callable, default=None
        A replacement for the built-in loss: ``loss(embeddings, labels) -> scalar tensor``;
        ``margin`` and ``metric`` then only drive the statistics recorded in ``history_``.
%(training)s

    Attributes
    ----------
%(attributes)s
        For this estimator ``history_`` also holds the pair counts ``n_pairs``,
        ``n_positive_pairs``, ``n_negative_pairs`` and ``n_active_pairs``, and ``active_fraction`` is
        the share of pairs with a non-zero loss.

    See Also
    --------
    TripletEmbedder : The same estimator trained with the triplet loss.

    Notes
    -----
    Classes with a single sample in ``y`` only form negative pairs. ``y`` needs at least two classes
    and one class with two or more samples.

    References
    ----------
    .. [1] R. Hadsell, S. Chopra and Y. LeCun, "Dimensionality Reduction by Learning an Invariant
       Mapping", CVPR 2006.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_triplet import SiameseEmbedder
    >>> X, y = load_digits(return_X_y=True)
    >>> embedder = SiameseEmbedder(n_components=8, max_iter=5, random_state=0).fit(X, y)
    >>> embedder.transform(X[:3]).shape
    (3, 8)
    """

    _parameter_constraints = {
        **_BaseEmbedder._parameter_constraints,
        "mining": [StrOptions({"all", "hard"})],
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
        margin=1.0,
        mining="all",
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
        return contrastive_loss(
            embeddings,
            labels,
            margin=self.margin,
            mining=self.mining,
            metric=self.metric,
            return_stats=True,
        )


SiameseEmbedder.__doc__ = _docstrings.fill(
    SiameseEmbedder.__doc__,
    backbone=_docstrings.BACKBONE_PARAMETERS,
    training=_docstrings.TRAINING_PARAMETERS,
    attributes=_docstrings.ATTRIBUTES,
)
