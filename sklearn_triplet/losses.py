"""Triplet and contrastive losses on a batch of embeddings.

Both losses are pure functions ``loss(embeddings, labels, **options)`` that
compute the pairwise distances of the batch, mine the triplets or pairs to
train on (:mod:`sklearn_triplet.mining`) and return a differentiable 0-dim
tensor. They use the embeddings as given: normalising them, if wanted, is the
caller's job.

The loss protocol
-----------------
The estimators accept, as their loss, any callable

    ``loss(embeddings, labels) -> Tensor``

taking a (B, d) floating-point tensor of embeddings and a (B,) integer tensor
of labels on the same device, and returning a differentiable 0-dim tensor to
minimise. :func:`functools.partial` of the functions here fits, and so do the
loss objects of pytorch-metric-learning, such as
``pytorch_metric_learning.losses.TripletMarginLoss(margin=0.2)``. A batch with
nothing to train on should give a zero attached to the graph (for example
``embeddings.sum() * 0``), not NaN.

The functions here also take ``return_stats=True`` and then return
``(loss, stats)``: ``stats`` maps names to 0-dim int64 tensors on the device
of the embeddings, computed without host synchronisation on accelerators, so
that a training loop can add them up over an epoch and read them once:

- FaceNet's taxonomy over all the valid triplets ``(a, p, n)`` of the batch
  (``a != p``, ``labels[a] == labels[p] != labels[n]``), counted with the
  loss's own margin ``m`` and metric ``d``, for both losses:
  ``n_triplets``; ``n_easy`` (``d(a, n) > d(a, p) + m``); ``n_semi_hard``
  (``d(a, p) < d(a, n) <= d(a, p) + m``); ``n_hard`` (``d(a, n) <= d(a, p)``);
  ``n_active`` (``d(a, n) < d(a, p) + m``: the triplet's hinge loss is above 0).
- ``n_mined``: how many terms the mining rule selected, and
  ``n_mined_active``: how many of them are above 0 (the loss averages over
  the former, or the latter with ``average="active"``).
- For :func:`contrastive_loss` also ``n_pairs``, ``n_positive_pairs``,
  ``n_negative_pairs`` and ``n_active_pairs``, over all the unordered pairs.

Given pairs and triplets
------------------------
:func:`contrastive_loss_on_pairs` and :func:`triplet_loss_on_triplets` take
the pairs or triplets themselves, as aligned rows of embeddings, rather than
a labelled batch: nothing is mined and nothing is inferred from points that
several tuples share. They are what
:class:`~sklearn_triplet.PairEmbedder` and
:class:`~sklearn_triplet.ComparisonEmbedder` train with, and their gradient is
plain autograd over the ``n`` row distances.

How the gradient is computed
----------------------------
Every loss here is a piecewise smooth function of the (B, B) distance matrix
``D`` of the batch. The functions compute ``D``, mine and evaluate the loss
without autograd, along with the derivative of the loss with respect to each
distance; a single autograd node then turns those derivatives into the
gradient of the embeddings with one or two (B, B) x (B, d) matrix products,
as the backward of :func:`torch.cdist` does. So the backward pass keeps one
(B, B) matrix alive, and every mode takes O(B²) memory and O(B² log B) time
at most. The price: the losses are differentiable once (no
``create_graph=True`` double backward).
"""

from numbers import Real

import torch

from ._kernels import (
    AVERAGES,
    CONTRASTIVE,
    CONTRASTIVE_STATISTICS,
    GIVEN_PAIRS_STATISTICS,
    GIVEN_TRIPLETS_STATISTICS,
    METRICS,
    TRIPLET,
    TRIPLET_STATISTICS,
    contrastive_kernel,
    given_pairs_kernel,
    given_triplets_kernel,
    triplet_kernel,
)
from ._validation import (
    Interval,
    StrOptions,
    check_embeddings,
    check_labels,
    invalid,
    validate_function_params,
)

__all__ = [
    "contrastive_loss",
    "contrastive_loss_on_pairs",
    "triplet_loss",
    "triplet_loss_on_triplets",
]


def _constraints(minings):
    return {
        "embeddings": [torch.Tensor],
        "labels": [torch.Tensor],
        "margin": [Interval(Real, 0, None, closed="neither")],
        "mining": [StrOptions(set(minings))],
        "metric": [StrOptions(set(METRICS))],
        "return_stats": ["boolean"],
    }


def _check_batch(embeddings, labels):
    check_embeddings("embeddings", embeddings, rows="batch_size", columns="n_components")
    check_labels(labels, embeddings.shape[0], embeddings.device)


@validate_function_params({**_constraints(TRIPLET.minings), "average": [StrOptions(set(AVERAGES))]})
def triplet_loss(
    embeddings,
    labels,
    *,
    margin=0.2,
    mining="semi-hard",
    metric="euclidean",
    average="all",
    return_stats=False,
):
    """Triplet loss of a batch, with online mining (Schroff et al., 2015).

    The hinge loss of a valid triplet ``(a, p, n)`` is
    ``max(0, d(a, p) - d(a, n) + margin)``; it is above 0 exactly when
    ``d(a, n) < d(a, p) + margin``.

    Parameters
    ----------
    embeddings : Tensor of shape (B, d)
        Floating-point embeddings, used as given, on any device.
    labels : Tensor of shape (B,)
        Integer class labels (any values) on the device of ``embeddings``.
    margin : float, default=0.2
        The margin, > 0.
    mining : {"all", "hard", "semi-hard", "easy-positive"}, default="semi-hard"
        Which triplets the loss is taken over:

        - ``"all"`` (batch-all, Hermans et al., 2017): the valid triplets
          whose loss is above 0; the loss is their mean hinge loss, 0 if
          there are none.
        - ``"hard"`` (batch-hard, Hermans et al., 2017): for each anchor that
          has at least one positive and one negative, its farthest positive
          and its closest negative, the triplet of hinge loss
          ``max(0, max_p d(a, p) - min_n d(a, n) + margin)``.
        - ``"semi-hard"`` (Schroff et al., 2015): for each ordered positive
          pair ``(a, p)`` whose anchor has at least one negative, the negative
          with the smallest ``d(a, n)`` among those with ``d(a, n) > d(a, p)``
          (strictly), or the negative with the largest ``d(a, n)`` when there
          is none.
        - ``"easy-positive"`` (Xuan et al., 2020): for each anchor that has
          at least one positive and one negative, its closest positive and
          its closest negative, the triplet of hinge loss
          ``max(0, min_p d(a, p) - min_n d(a, n) + margin)``: an anchor need
          only be nearer to some sample of its class than to any other class,
          so a class may spread over several clusters.

        Among equal distances the lowest index is chosen. See
        :func:`sklearn_triplet.mining.semi_hard_negatives`,
        :func:`sklearn_triplet.mining.hardest_positive_negative` and
        :func:`sklearn_triplet.mining.easiest_positive_negative`.
    metric : {"euclidean", "sqeuclidean", "cosine"}, default="euclidean"
        The distance, see :func:`sklearn_triplet.distances.pairwise_distances`.
    average : {"all", "active"}, default="all"
        The loss is the sum of the mined triplets' hinge losses divided by the
        number of mined triplets (``"all"``, the papers' rule), or by the
        number of them whose loss is above 0 (``"active"``, the default
        reduction of pytorch-metric-learning); 0 when there are none. For
        ``"all"`` mining, which mines only active triplets, both are the
        same.
    return_stats : bool, default=False
        Also return the statistics described in :mod:`sklearn_triplet.losses`.
        ``n_mined`` counts active triplets for ``"all"`` (so
        ``n_mined == n_mined_active``), positive pairs for ``"semi-hard"``
        and anchors for ``"hard"`` and ``"easy-positive"``.

    Returns
    -------
    loss : Tensor of shape ()
        Differentiable, in the dtype of ``embeddings``. A batch with nothing to
        train on (no valid triplet, or no active one for ``"all"``) gives 0,
        still attached to the graph.
    stats : dict of str to Tensor
        Only when ``return_stats`` is True.

    Raises
    ------
    ValueError
        If an option is not one of its allowed values, ``margin`` is not
        positive, or the shapes, dtypes or devices do not fit.

    See Also
    --------
    contrastive_loss : The pair-based loss.
    sklearn_triplet.mining.triplet_type_counts : The taxonomy alone.

    Notes
    -----
    Batch-all sums ``max(0, d(a, p) + m - d(a, n))`` over up to B³ triplets
    without enumerating them: for each positive pair it counts the ``k``
    negatives below ``d(a, p) + m`` with a search in the anchor's sorted
    negative distances, and for each anchor-negative pair the ``w`` positive
    pairs it is active with; the sum is then
    ``sum k (d(a, p) + m) - sum w d(a, n)``, with exact integer weights that
    are also its exact derivatives. The two sums are taken row by row, then
    subtracted and added up in float64, which keeps their cancellation
    harmless in float32 at B = 8192.

    The loss is differentiable once; see :mod:`sklearn_triplet.losses`.

    References
    ----------
    F. Schroff, D. Kalenichenko and J. Philbin, "FaceNet: A Unified Embedding
    for Face Recognition and Clustering", CVPR 2015.

    A. Hermans, L. Beyer and B. Leibe, "In Defense of the Triplet Loss for
    Person Re-Identification", arXiv:1703.07737, 2017.

    H. Xuan, A. Stylianou and R. Pless, "Improved Embeddings with Easy Positive
    Triplet Mining", WACV 2020.

    Examples
    --------
    >>> import torch
    >>> from sklearn_triplet.losses import triplet_loss
    >>> embeddings = torch.tensor([[0.0], [1.0], [3.0], [2.0]], requires_grad=True)
    >>> labels = torch.tensor([0, 0, 1, 1])
    >>> loss = triplet_loss(embeddings, labels, margin=1.0, mining="hard")
    >>> loss.item()
    0.5
    >>> loss.backward()
    >>> embeddings.grad.flatten()
    tensor([-0.2500,  0.7500,  0.2500, -0.7500])
    >>> loss, stats = triplet_loss(
    ...     embeddings, labels, margin=1.0, mining="all", return_stats=True
    ... )
    >>> loss.item()
    1.0
    >>> {key: int(value) for key, value in stats.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'n_triplets': 8, 'n_easy': 2, 'n_semi_hard': 4, 'n_hard': 2, 'n_active': 2,
     'n_mined': 2, 'n_mined_active': 2}
    """
    _check_batch(embeddings, labels)
    result = triplet_kernel(
        embeddings,
        labels,
        margin=margin,
        mining=mining,
        metric=metric,
        average=average,
        counts=return_stats,
    )
    if not return_stats:
        return result.loss
    return result.loss, TRIPLET_STATISTICS.as_dict(result.counts)


@validate_function_params(
    {
        **_constraints(CONTRASTIVE.minings),
        "average": [StrOptions(set(AVERAGES))],
        "squared": ["boolean"],
    }
)
def contrastive_loss(
    embeddings,
    labels,
    *,
    margin=1.0,
    mining="all",
    metric="euclidean",
    average="all",
    squared=True,
    return_stats=False,
):
    """Contrastive loss of a batch (Hadsell, Chopra and LeCun, 2006).

    For an unordered pair ``{i, j}`` at distance ``D = d(i, j)``, with
    ``Y = 0`` when the labels are equal and ``Y = 1`` otherwise, the loss is
    ``(1 - Y) D² + Y max(0, margin - D)²``, or without the squares,
    ``(1 - Y) D + Y max(0, margin - D)``, with ``squared=False``. It is above
    0 when ``D > 0`` for a positive pair and when ``D < margin`` for a
    negative pair.

    Parameters
    ----------
    embeddings : Tensor of shape (B, d)
        Floating-point embeddings, used as given, on any device.
    labels : Tensor of shape (B,)
        Integer class labels (any values) on the device of ``embeddings``.
    margin : float, default=1.0
        The margin, > 0.
    mining : {"all", "hard"}, default="all"
        Which pairs the loss averages over:

        - ``"all"``: the mean over all the unordered pairs ``i < j``.
        - ``"hard"``: the mean over the hard pairs of
          :func:`sklearn_triplet.mining.hard_pairs` (positive pairs farther
          apart than the closest negative of either member, negative pairs
          closer than the farthest positive of either member); 0 if none.
    metric : {"euclidean", "sqeuclidean", "cosine"}, default="euclidean"
        The distance ``D``, see
        :func:`sklearn_triplet.distances.pairwise_distances`. With
        ``"sqeuclidean"`` and ``squared=True`` the loss squares the squared
        distance.
    average : {"all", "active"}, default="all"
        ``"all"``: the sum of the mined pairs' losses divided by their number
        (Hadsell et al.). ``"active"``: the mean over the mined positive pairs
        whose loss is above 0 plus the mean over the mined negative pairs
        whose loss is above 0 (pytorch-metric-learning's reduction), either
        mean 0 when it has no pair.
    squared : bool, default=True
        Square the terms (Hadsell et al.); False takes them as they are, as
        pytorch-metric-learning's ``ContrastiveLoss`` does: a pull of
        constant strength on every positive pair, and a push that does not
        fade as a negative pair nears the margin.
    return_stats : bool, default=False
        Also return the statistics described in :mod:`sklearn_triplet.losses`;
        ``n_mined`` counts the pairs mined.

    Returns
    -------
    loss : Tensor of shape ()
        Differentiable, in the dtype of ``embeddings``; 0, still attached to
        the graph, when there are no pairs to average over.
    stats : dict of str to Tensor
        Only when ``return_stats`` is True.

    Raises
    ------
    ValueError
        If an option is not one of its allowed values, ``margin`` is not
        positive, or the shapes, dtypes or devices do not fit.

    See Also
    --------
    triplet_loss : The triplet-based loss.

    References
    ----------
    R. Hadsell, S. Chopra and Y. LeCun, "Dimensionality Reduction by Learning
    an Invariant Mapping", CVPR 2006.

    Examples
    --------
    >>> import torch
    >>> from sklearn_triplet.losses import contrastive_loss
    >>> embeddings = torch.tensor([[0.0], [1.0], [3.0], [2.0]], requires_grad=True)
    >>> labels = torch.tensor([0, 0, 1, 1])
    >>> loss = contrastive_loss(embeddings, labels, margin=2.5)
    >>> round(loss.item(), 4), loss.requires_grad
    (0.7917, True)
    >>> loss, stats = contrastive_loss(embeddings, labels, margin=2.5, return_stats=True)
    >>> {key: int(stats[key]) for key in ("n_pairs", "n_active_pairs", "n_mined")}
    {'n_pairs': 6, 'n_active_pairs': 5, 'n_mined': 6}
    """
    _check_batch(embeddings, labels)
    result = contrastive_kernel(
        embeddings,
        labels,
        margin=margin,
        mining=mining,
        metric=metric,
        average=average,
        squared=squared,
        counts=return_stats,
    )
    if not return_stats:
        return result.loss
    return result.loss, CONTRASTIVE_STATISTICS.as_dict(result.counts)


def _given_constraints(*tensors):
    return {
        **dict.fromkeys(tensors, [torch.Tensor]),
        "margin": [Interval(Real, 0, None, closed="neither")],
        "metric": [StrOptions(set(METRICS))],
        "return_stats": ["boolean"],
    }


def _check_rows(**tensors):
    """2-D floating-point tensors, all of one shape, dtype and device."""
    (first_name, first), *others = tensors.items()
    for name, tensor in tensors.items():
        check_embeddings(name, tensor, rows="n", columns="n_components")
    for name, tensor in others:
        if (tensor.shape, tensor.dtype, tensor.device) != (first.shape, first.dtype, first.device):
            raise invalid(
                name,
                f"of the shape, dtype and device of {first_name}",
                f"{first_name}: {tuple(first.shape)}, {first.dtype}, {first.device} and "
                f"{name}: {tuple(tensor.shape)}, {tensor.dtype}, {tensor.device}",
            )


def _check_pair_targets(y, first):
    if (
        y.shape != first.shape[:1]
        or y.device != first.device
        or y.dtype == torch.bool
        or y.is_complex()
    ):
        raise invalid(
            "y",
            f"a real or integer tensor of shape ({first.shape[0]},) on {first.device}",
            f"shape {tuple(y.shape)}, dtype {y.dtype} on {y.device}",
        )
    bad = (y != 1) & (y != -1)
    if bool(bad.any()):
        values = torch.unique(y[bad])[:5].tolist()
        raise invalid("y", "+1 (similar pair) or -1 (dissimilar pair)", f"also {values}")


@validate_function_params(_given_constraints("first", "second", "y"))
def contrastive_loss_on_pairs(
    first, second, y, *, margin=1.0, metric="euclidean", return_stats=False
):
    """Contrastive loss of given pairs (Hadsell, Chopra and LeCun, 2006).

    ``y`` follows metric-learn's convention, ``+1`` for a similar pair and ``-1`` for a
    dissimilar one. The paper's label is ``Y = (1 - y) / 2``: ``Y = 0`` similar, ``Y = 1``
    dissimilar. With ``D = d(first[i], second[i])`` the loss of pair ``i`` is

        ``(1 - Y) D² + Y max(0, margin - D)²``

    and the function returns its mean over the pairs. (The paper writes both terms with a factor
    ½, which only halves the loss; the formula here is that of
    :func:`sklearn_triplet.losses.contrastive_loss`, so one margin means the same in both.) A
    similar pair's loss is above 0 when ``D > 0``, a dissimilar pair's when ``D < margin``.

    Parameters
    ----------
    first, second : Tensor of shape (n_pairs, d)
        Floating-point embeddings of the two members of each pair, on one device and in one
        dtype.
    y : Tensor of shape (n_pairs,)
        ``+1`` (similar) or ``-1`` (dissimilar) for each pair, any real or integer dtype, on the
        device of the embeddings.
    margin : float, default=1.0
        The margin, > 0, in units of ``metric``.
    metric : {"euclidean", "sqeuclidean", "cosine"}, default="euclidean"
        The distance ``D``; ``"cosine"`` is ``1 - cos`` and a zero vector is at distance 1 from
        every vector. With ``"sqeuclidean"`` the loss squares the squared distance.
    return_stats : bool, default=False
        Also return ``stats``: ``n_pairs``, ``n_positive_pairs`` (similar), ``n_negative_pairs``
        (dissimilar) and ``n_active_pairs`` (pairs whose loss is above 0).

    Returns
    -------
    loss : Tensor of shape ()
        Differentiable, in the dtype of the embeddings; 0, still attached to the graph, for no
        pairs.
    stats : dict of str to Tensor
        Only when ``return_stats`` is True.

    Raises
    ------
    ValueError
        If ``margin`` is not positive, ``metric`` is unknown, ``y`` holds a value other than
        ``+1`` and ``-1``, or the shapes, dtypes or devices do not fit.
    TypeError
        If an input is not a tensor.

    See Also
    --------
    triplet_loss_on_triplets : The loss of given triplets.
    sklearn_triplet.losses.contrastive_loss : The same loss over the pairs of a labelled batch.

    References
    ----------
    R. Hadsell, S. Chopra and Y. LeCun, "Dimensionality Reduction by Learning an Invariant
    Mapping", CVPR 2006.

    Examples
    --------
    >>> import torch
    >>> from sklearn_triplet.losses import contrastive_loss_on_pairs
    >>> first = torch.tensor([[0.0, 0.0], [0.0, 0.0]], requires_grad=True)
    >>> second = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    >>> y = torch.tensor([1, -1])  # similar at distance 5, dissimilar at 0.5
    >>> loss = contrastive_loss_on_pairs(first, second, y, margin=1.0)
    >>> loss.item()  # (5² + (1 - 0.5)²) / 2
    12.625
    """
    _check_rows(first=first, second=second)
    _check_pair_targets(y, first)
    result = given_pairs_kernel(first, second, y, margin=margin, metric=metric, counts=return_stats)
    if not return_stats:
        return result.loss
    return result.loss, GIVEN_PAIRS_STATISTICS.as_dict(result.counts)


@validate_function_params(_given_constraints("anchors", "positives", "negatives"))
def triplet_loss_on_triplets(
    anchors, positives, negatives, *, margin=0.2, metric="euclidean", return_stats=False
):
    """Triplet loss of given triplets (Schroff, Kalenichenko and Philbin, 2015).

    Triplet ``i`` says that ``anchors[i]`` is more like ``positives[i]`` than like
    ``negatives[i]``; its loss is

        ``max(0, d(a, p) - d(a, n) + margin)``

    and the function returns the mean over the triplets. Each triplet is counted, as in
    :mod:`sklearn_triplet.losses`, as easy (``d(a, n) > d(a, p) + margin``), semi-hard
    (``d(a, p) < d(a, n) <= d(a, p) + margin``) or hard (``d(a, n) <= d(a, p)``), and as
    active when its loss is above 0 (``d(a, n) < d(a, p) + margin``).

    Parameters
    ----------
    anchors, positives, negatives : Tensor of shape (n_triplets, d)
        Floating-point embeddings of the members of each triplet, on one device and in one dtype.
    margin : float, default=0.2
        The margin, > 0, in units of ``metric``.
    metric : {"euclidean", "sqeuclidean", "cosine"}, default="euclidean"
        The distance ``d``; ``"cosine"`` is ``1 - cos`` and a zero vector is at distance 1 from
        every vector.
    return_stats : bool, default=False
        Also return ``stats``: ``n_triplets``, ``n_easy``, ``n_semi_hard``, ``n_hard`` and
        ``n_active``.

    Returns
    -------
    loss : Tensor of shape ()
        Differentiable, in the dtype of the embeddings; 0, still attached to the graph, for no
        triplets.
    stats : dict of str to Tensor
        Only when ``return_stats`` is True.

    Raises
    ------
    ValueError
        If ``margin`` is not positive, ``metric`` is unknown, or the shapes, dtypes or devices do
        not fit.
    TypeError
        If an input is not a tensor.

    See Also
    --------
    contrastive_loss_on_pairs : The loss of given pairs.
    sklearn_triplet.losses.triplet_loss : The same loss over triplets mined from a labelled
        batch.

    References
    ----------
    F. Schroff, D. Kalenichenko and J. Philbin, "FaceNet: A Unified Embedding for Face
    Recognition and Clustering", CVPR 2015.

    Examples
    --------
    >>> import torch
    >>> from sklearn_triplet.losses import triplet_loss_on_triplets
    >>> anchors = torch.tensor([[0.0], [0.0]], requires_grad=True)
    >>> positives = torch.tensor([[1.0], [1.0]])
    >>> negatives = torch.tensor([[3.0], [1.1]])  # one easy triplet, one semi-hard
    >>> loss, stats = triplet_loss_on_triplets(
    ...     anchors, positives, negatives, margin=0.5, return_stats=True
    ... )
    >>> round(loss.item(), 4)  # (0 + (1 - 1.1 + 0.5)) / 2
    0.2
    >>> {key: int(value) for key, value in stats.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'n_triplets': 2, 'n_easy': 1, 'n_semi_hard': 1, 'n_hard': 0, 'n_active': 1}
    """
    _check_rows(anchors=anchors, positives=positives, negatives=negatives)
    result = given_triplets_kernel(
        anchors, positives, negatives, margin=margin, metric=metric, counts=return_stats
    )
    if not return_stats:
        return result.loss
    return result.loss, GIVEN_TRIPLETS_STATISTICS.as_dict(result.counts)
