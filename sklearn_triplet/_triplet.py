"""TripletEmbedder: a backbone trained with the triplet loss and online mining."""

from collections.abc import Callable, Sequence

import torch

from ._class_labels import ClassLabelEmbedder
from ._kernels import AVERAGES, TRIPLET
from ._validation import StrOptions


class TripletEmbedder(ClassLabelEmbedder):
    """Learn an embedding with the triplet loss and online triplet mining.

    A PyTorch backbone is trained so that, for triplets of an anchor ``a``, a positive ``p`` of the
    same class and a negative ``n`` of another class, ``d(a, n) >= d(a, p) + margin``: the loss of a
    triplet is ``max(d(a, p) - d(a, n) + margin, 0)`` (Schroff et al., 2015). Triplets are mined
    online inside each class-balanced batch. ``transform`` returns the embeddings, to be used by
    :class:`~sklearn.neighbors.KNeighborsClassifier` or any distance-based estimator.

    Read more in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    %(backbone)s
    margin : float, default=0.5
        The margin, in units of ``metric``, used by the loss and by the mining alike.
    mining : {"auto", "semi-hard", "hard", "all", "easy-positive"}, default="auto"
        Which triplets of a batch the loss is taken over (see
        :func:`sklearn_triplet.losses.triplet_loss` for the exact rules). ``"semi-hard"``: for each
        positive pair, the closest negative farther than the positive (FaceNet). ``"hard"``: for
        each anchor, its farthest positive and closest negative (batch-hard). ``"all"``: every
        triplet with a non-zero loss (batch-all). ``"easy-positive"``: for each anchor, its
        closest positive and closest negative (Xuan et al. 2020), which lets a class spread over
        several clusters. ``"auto"``: ``"easy-positive"`` for ``backbone="linear"``, which cannot
        pull a class that lies in several clusters into one, and ``"semi-hard"`` for every other
        backbone.
    average : {"active", "all"}, default="active"
        The loss is the mean of the mined triplets' hinge losses over the triplets whose loss is
        above 0 (``"active"``), or over all the mined triplets (``"all"``, the papers' rule). As
        training turns triplets easy, ``"all"`` shrinks the gradient with the share of active
        ones; ``"active"`` keeps its size, so the last epochs still learn from the triplets left.
        For ``mining="all"``, which mines only active triplets, both are the same.
    %(do_no_harm)s
    %(loss)s
    %(training)s

    %(attributes)s
    %(do_no_harm_attributes)s

    See Also
    --------
    SiameseEmbedder : The same estimator trained with the contrastive loss over pairs.
    sklearn.neighbors.NeighborhoodComponentsAnalysis : A linear metric learned by a softmax over
        neighbours.

    Notes
    -----
    The defaults are a training recipe chosen by a sweep over several benchmark tasks (see the
    User Guide), not a paper's settings: FaceNet's rule is ``mining="semi-hard", average="all",
    margin=0.2, learning_rate="constant", learning_rate_init=1e-3``.

    Classes with a single sample in ``y`` cannot form a positive pair: they take part as negatives
    only. ``y`` needs at least two classes and one class with two or more samples.

    References
    ----------
    .. [1] F. Schroff, D. Kalenichenko and J. Philbin, "FaceNet: A Unified Embedding for Face
       Recognition and Clustering", CVPR 2015, arXiv:1503.03832.
    .. [2] A. Hermans, L. Beyer and B. Leibe, "In Defense of the Triplet Loss for Person
       Re-Identification", arXiv:1703.07737, 2017.
    .. [3] H. Xuan, A. Stylianou and R. Pless, "Improved Embeddings with Easy Positive Triplet
       Mining", WACV 2020.

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

    _loss = TRIPLET
    _parameter_constraints = {
        **ClassLabelEmbedder._parameter_constraints,
        "mining": [StrOptions({"auto", *TRIPLET.minings})],
        "average": [StrOptions(set(AVERAGES))],
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
        margin=0.5,
        mining="auto",
        average="active",
        do_no_harm: bool | str = True,
        loss=None,
        loss_params=None,
        init="auto",
        batch_size=128,
        samples_per_class=4,
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

    def _resolve_loss_options(self):
        options = super()._resolve_loss_options()
        if options["mining"] == "auto":
            linear = isinstance(self.backbone, str) and self.backbone == "linear"
            options["mining"] = "easy-positive" if linear else "semi-hard"
        return options
