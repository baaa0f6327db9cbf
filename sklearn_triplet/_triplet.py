"""TripletEmbedder: a backbone trained with the triplet loss and online mining."""

from ._base import BaseEmbedder
from ._kernels import TRIPLET
from ._validation import StrOptions


class TripletEmbedder(BaseEmbedder):
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
    margin : float, default=0.2
        The margin, in units of ``metric``, used by the loss and by the mining alike.
    mining : {"semi-hard", "hard", "all"}, default="semi-hard"
        Which triplets of a batch the loss averages over (see
        :func:`sklearn_triplet.losses.triplet_loss` for the exact rules). ``"semi-hard"``: for each
        positive pair, the closest negative farther than the positive (FaceNet). ``"hard"``: for
        each anchor, its farthest positive and closest negative (batch-hard). ``"all"``: every
        triplet with a non-zero loss (batch-all).
    loss : callable, default=None
        A replacement for the built-in loss: ``loss(embeddings, labels) -> scalar tensor``, with
        embeddings of shape ``(batch, n_components)`` (normalised when ``normalize=True``) and
        integer labels of shape ``(batch,)``; pytorch-metric-learning's losses have this signature.
        ``margin`` and ``metric`` then only drive the triplet statistics recorded in ``history_``.
    %(training)s

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

    _loss = TRIPLET
    _own_parameters = {"margin": 0.2, "mining": "semi-hard"}
    _parameter_constraints = {
        **BaseEmbedder._parameter_constraints,
        "mining": [StrOptions(set(TRIPLET.minings))],
    }
