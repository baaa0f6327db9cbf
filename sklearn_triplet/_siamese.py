"""SiameseEmbedder: a backbone trained with the contrastive loss over the pairs of each batch."""

from collections.abc import Callable, Sequence

import torch

from ._class_labels import ClassLabelEmbedder
from ._kernels import AVERAGES, CONTRASTIVE
from ._validation import StrOptions


class SiameseEmbedder(ClassLabelEmbedder):
    """Learn an embedding with the contrastive loss of a Siamese network.

    A PyTorch backbone is trained on the pairs of each class-balanced batch with the contrastive
    loss: with ``Y = 0`` for a same-class pair and ``Y = 1`` otherwise, and ``D`` the distance
    between the two embeddings, ``(1 - Y) * D + Y * max(0, margin - D)`` (by default, as
    pytorch-metric-learning's ``ContrastiveLoss``), or ``(1 - Y) * D**2 + Y * max(0, margin -
    D)**2`` with ``squared=True`` (Hadsell, Chopra & LeCun, 2006). Same-class pairs are pulled
    together; different-class pairs are pushed at least ``margin`` apart.

    Read more in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    %(backbone)s
    margin : float, default=1.0
        The margin ``m``, in units of ``metric``: different-class pairs closer than it are
        penalised. The triplet statistics in ``history_`` use the same margin.
    mining : {"all", "hard"}, default="all"
        Which pairs of a batch the loss is taken over (see
        :func:`sklearn_triplet.losses.contrastive_loss`). ``"all"``: every unordered pair.
        ``"hard"``: positive pairs farther apart than the closest negative pair of either member,
        and negative pairs closer than the farthest positive pair of either member.
    average : {"active", "all"}, default="active"
        ``"active"``: the loss is the mean over the mined positive pairs whose loss is above 0
        plus the mean over the mined negative pairs whose loss is above 0, so that neither kind
        of pair fades from the gradient as most pairs come to sit where they should.
        ``"all"``: the sum over the mined pairs divided by their number (Hadsell et al.).
    squared : bool, default=False
        Square each pair's term (Hadsell et al.). The default takes distances as they are: every
        positive pair is pulled with the same strength, however close, and a negative pair is
        pushed with the same strength until it is ``margin`` away.
    %(do_no_harm)s
    %(loss)s
    %(training)s

    %(attributes)s
    %(do_no_harm_attributes)s

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
    >>> embedder.transform(X[:3]).shape == (3, embedder.n_components_)  # 64 if raw_kept_
    True
    """

    _loss = CONTRASTIVE
    _parameter_constraints = {
        **ClassLabelEmbedder._parameter_constraints,
        "mining": [StrOptions(set(CONTRASTIVE.minings))],
        "average": [StrOptions(set(AVERAGES))],
        "squared": ["boolean"],
        "do_no_harm": ["boolean", StrOptions({"unseen-classes"})],
    }

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
        mining="all",
        average="active",
        squared=False,
        do_no_harm: bool | str = True,
        loss=None,
        loss_params=None,
        init="auto",
        batch_size=128,
        samples_per_class=2,
        augment="auto",
        max_iter=50,
        learning_rate="cosine",
        learning_rate_init=3e-3,
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
        self.mining = mining
        self.average = average
        self.squared = squared
        self.do_no_harm = do_no_harm
        self.loss = loss
        self.loss_params = loss_params
        self.init = init
        self.batch_size = batch_size
        self.samples_per_class = samples_per_class
        self.augment = augment
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
