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
of the embeddings, computed without any host synchronisation, so that a
training loop can add them up over an epoch and read them once:

- FaceNet's taxonomy over all the valid triplets ``(a, p, n)`` of the batch
  (``a != p``, ``labels[a] == labels[p] != labels[n]``), counted with the
  loss's own margin ``m`` and metric ``d``, for both losses:
  ``n_triplets``; ``n_easy`` (``d(a, n) > d(a, p) + m``); ``n_semi_hard``
  (``d(a, p) < d(a, n) <= d(a, p) + m``); ``n_hard`` (``d(a, n) <= d(a, p)``);
  ``n_active`` (``d(a, n) < d(a, p) + m``: the triplet's hinge loss is above 0).
- ``n_mined``: how many terms the loss averaged over, and ``n_mined_active``:
  how many of them are above 0.
- For :func:`contrastive_loss` also ``n_pairs``, ``n_positive_pairs``,
  ``n_negative_pairs`` and ``n_active_pairs``, over all the unordered pairs.

Every mode takes O(B²) memory and O(B² log B) time at most.
"""

import torch

from .distances import METRICS, pairwise_distances
from .mining import _check_labels, _check_margin, _hard_pair_mask, _TripletIndex

__all__ = ["contrastive_loss", "triplet_loss"]


def triplet_loss(
    embeddings, labels, *, margin=0.2, mining="semi-hard", metric="euclidean", return_stats=False
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
    mining : {"all", "hard", "semi-hard"}, default="semi-hard"
        Which triplets the loss averages over:

        - ``"all"`` (batch-all, Hermans et al., 2017): the mean hinge loss over
          the valid triplets whose loss is above 0; 0 if there are none.
        - ``"hard"`` (batch-hard, Hermans et al., 2017): for each anchor that
          has at least one positive and one negative, its farthest positive
          and its closest negative; the mean over those anchors of
          ``max(0, max_p d(a, p) - min_n d(a, n) + margin)``.
        - ``"semi-hard"`` (Schroff et al., 2015): for each ordered positive
          pair ``(a, p)`` whose anchor has at least one negative, the negative
          with the smallest ``d(a, n)`` among those with ``d(a, n) > d(a, p)``
          (strictly), or the negative with the largest ``d(a, n)`` when there
          is none; the mean over those pairs of the hinge loss.

        See :func:`sklearn_triplet.mining.semi_hard_negatives` and
        :func:`sklearn_triplet.mining.hardest_positive_negative`.
    metric : {"euclidean", "sqeuclidean", "cosine"}, default="euclidean"
        The distance, see :func:`sklearn_triplet.distances.pairwise_distances`.
    return_stats : bool, default=False
        Also return the statistics described in :mod:`sklearn_triplet.losses`.
        ``n_mined`` counts active triplets for ``"all"`` (the terms of its
        mean, so ``n_mined == n_mined_active``), positive pairs for
        ``"semi-hard"`` and anchors for ``"hard"``.

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
    negative distances, and for each anchor-negative pair the positive pairs
    it is active with; the sum is then ``sum k (d(a, p) + m) - sum w d(a, n)``
    with exact integer weights ``k`` and ``w`` (which are also its exact
    gradient), accumulated in float64 (float32 on devices without float64)
    to keep the cancellation between the two sums harmless at B = 8192.

    References
    ----------
    F. Schroff, D. Kalenichenko and J. Philbin, "FaceNet: A Unified Embedding
    for Face Recognition and Clustering", CVPR 2015.

    A. Hermans, L. Beyer and B. Leibe, "In Defense of the Triplet Loss for
    Person Re-Identification", arXiv:1703.07737, 2017.

    Examples
    --------
    >>> import torch
    >>> from sklearn_triplet.losses import triplet_loss
    >>> embeddings = torch.tensor([[0.0], [1.0], [3.0], [2.0]], requires_grad=True)
    >>> labels = torch.tensor([0, 0, 1, 1])
    >>> loss = triplet_loss(embeddings, labels, margin=1.0, mining="hard")
    >>> loss
    tensor(0.5000, grad_fn=<DivBackward0>)
    >>> loss.backward()
    >>> embeddings.grad.flatten()
    tensor([-0.2500,  0.7500,  0.2500, -0.7500])
    >>> loss, stats = triplet_loss(
    ...     embeddings, labels, margin=1.0, mining="all", return_stats=True
    ... )
    >>> loss
    tensor(1., grad_fn=<ToCopyBackward0>)
    >>> {key: int(value) for key, value in stats.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'n_triplets': 8, 'n_easy': 2, 'n_semi_hard': 4, 'n_hard': 2, 'n_active': 2,
     'n_mined': 2, 'n_mined_active': 2}
    """
    _check_margin(margin)
    mine = _check_option("mining", mining, _TRIPLET_MINING)
    _check_option("metric", metric, METRICS)
    _check_batch(embeddings, labels)
    if len(labels) < 2:
        return _nothing_to_train_on(embeddings, _TRIPLET_STATS, return_stats)

    distances = pairwise_distances(embeddings, metric=metric)
    index = _TripletIndex(distances, labels)
    loss, n_mined, n_mined_active = mine(distances, index, margin)
    if not return_stats:
        return loss
    stats = index.type_counts(margin)
    stats.update(n_mined=n_mined, n_mined_active=n_mined_active)
    return loss, stats


def contrastive_loss(
    embeddings, labels, *, margin=1.0, mining="all", metric="euclidean", return_stats=False
):
    """Contrastive loss of a batch (Hadsell, Chopra and LeCun, 2006).

    For an unordered pair ``{i, j}`` at distance ``D = d(i, j)``, with
    ``Y = 0`` when the labels are equal and ``Y = 1`` otherwise, the loss is
    ``(1 - Y) D² + Y max(0, margin - D)²``. It is above 0 when ``D > 0`` for a
    positive pair and when ``D < margin`` for a negative pair.

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
        ``"sqeuclidean"`` the loss squares the squared distance.
    return_stats : bool, default=False
        Also return the statistics described in :mod:`sklearn_triplet.losses`;
        ``n_mined`` counts the pairs averaged over.

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
    >>> contrastive_loss(embeddings, labels, margin=2.5)
    tensor(0.7917, grad_fn=<DivBackward0>)
    >>> loss, stats = contrastive_loss(embeddings, labels, margin=2.5, return_stats=True)
    >>> {key: int(stats[key]) for key in ("n_pairs", "n_active_pairs", "n_mined")}
    {'n_pairs': 6, 'n_active_pairs': 5, 'n_mined': 6}
    """
    _check_margin(margin)
    select = _check_option("mining", mining, _CONTRASTIVE_MINING)
    _check_option("metric", metric, METRICS)
    _check_batch(embeddings, labels)
    if len(labels) < 2:
        return _nothing_to_train_on(embeddings, _CONTRASTIVE_STATS, return_stats)

    distances = pairwise_distances(embeddings, metric=metric)
    same = labels[:, None] == labels[None, :]
    pairs = torch.ones_like(same).triu_(1)
    selected = select(distances.detach(), labels, pairs)
    terms = torch.where(same, distances.square(), (margin - distances).clamp_min(0).square())
    active = pairs & torch.where(same, distances > 0, distances < margin)
    n_mined = selected.sum()
    loss = torch.where(selected, terms, 0).sum() / n_mined.clamp_min(1)
    if not return_stats:
        return loss

    stats = _TripletIndex(distances, labels).type_counts(margin)
    n_pairs = pairs.sum()
    n_positive_pairs = (same & pairs).sum()
    stats.update(
        n_mined=n_mined,
        n_mined_active=(selected & active).sum(),
        n_pairs=n_pairs,
        n_positive_pairs=n_positive_pairs,
        n_negative_pairs=n_pairs - n_positive_pairs,
        n_active_pairs=active.sum(),
    )
    return loss, stats


def _batch_all(distances, index, margin):
    """Mean hinge loss over the active triplets; see :func:`triplet_loss`."""
    positive_weights, negative_weights = index.batch_all_weights(margin)
    positive_distances = distances.gather(1, index.positive_columns)
    accumulate = _accumulation_dtype(distances.device)
    total = (positive_weights * (positive_distances + margin)).sum(dtype=accumulate) - (
        negative_weights * distances
    ).sum(dtype=accumulate)
    n_active = torch.where(
        index.positive_mask, index.negatives_below(margin, inclusive=False), 0
    ).sum()
    loss = (total / n_active.clamp_min(1)).to(distances.dtype)
    return loss, n_active, n_active


def _batch_hard(distances, index, margin):
    """Mean over anchors of the hardest positive and negative's hinge loss."""
    positives, negatives, selected = index.hardest()
    pair_distances = distances.gather(1, torch.stack([positives, negatives], dim=1))
    positive_distances, negative_distances = pair_distances.unbind(dim=1)
    return _mean_hinge(positive_distances, negative_distances, selected, margin)


def _semi_hard(distances, index, margin):
    """Mean over positive pairs of the semi-hard negative's hinge loss."""
    negatives, selected = index.semi_hard_negatives()
    # One gather, so that the backward builds one (B, B) gradient, not two.
    pair_distances = distances.gather(1, torch.cat([index.positive_columns, negatives], dim=1))
    positive_distances, negative_distances = pair_distances.chunk(2, dim=1)
    return _mean_hinge(positive_distances, negative_distances, selected, margin)


def _mean_hinge(positive_distances, negative_distances, selected, margin):
    """Mean of ``max(0, d_ap + margin - d_an)`` where ``selected``, and counts.

    Parameters
    ----------
    positive_distances, negative_distances : Tensors of the same shape
    selected : bool Tensor of that shape

    Returns
    -------
    loss : Tensor of shape (), 0 (attached) when nothing is selected
    n_selected, n_active : int64 Tensors of shape ()
    """
    threshold = positive_distances + margin
    active = selected & (negative_distances < threshold)
    n_selected = selected.sum()
    loss = torch.where(active, threshold - negative_distances, 0).sum() / n_selected.clamp_min(1)
    return loss, n_selected, active.sum()


def _all_pairs(distances, labels, pairs):
    return pairs


def _hard_pairs(distances, labels, pairs):
    return _hard_pair_mask(distances, labels)


_TRIPLET_MINING = {"all": _batch_all, "hard": _batch_hard, "semi-hard": _semi_hard}
_CONTRASTIVE_MINING = {"all": _all_pairs, "hard": _hard_pairs}

_TRIPLET_STATS = (
    "n_triplets",
    "n_easy",
    "n_semi_hard",
    "n_hard",
    "n_active",
    "n_mined",
    "n_mined_active",
)
_CONTRASTIVE_STATS = _TRIPLET_STATS + (
    "n_pairs",
    "n_positive_pairs",
    "n_negative_pairs",
    "n_active_pairs",
)


def _nothing_to_train_on(embeddings, stat_names, return_stats):
    """A zero attached to the graph (and zero statistics) for B < 2."""
    loss = embeddings.sum() * 0
    if not return_stats:
        return loss
    zero = torch.zeros((), dtype=torch.int64, device=embeddings.device)
    return loss, {name: zero.clone() for name in stat_names}


def _accumulation_dtype(device):
    return torch.float32 if device.type == "mps" else torch.float64


def _check_option(name, value, allowed):
    """Return ``allowed[value]`` (or ``value``), or raise listing the allowed values."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(
            f"{name} must be one of {', '.join(repr(option) for option in allowed)}; "
            f"got {value!r}."
        )
    return allowed[value] if isinstance(allowed, dict) else value


def _check_batch(embeddings, labels):
    if not isinstance(embeddings, torch.Tensor):
        raise TypeError(f"embeddings must be a torch.Tensor; got {type(embeddings).__name__}.")
    if embeddings.ndim != 2 or not embeddings.is_floating_point():
        raise ValueError(
            "embeddings must be a 2-D floating-point tensor of shape (batch_size, "
            f"n_components); got shape {tuple(embeddings.shape)} and dtype {embeddings.dtype}."
        )
    _check_labels(labels, embeddings.shape[0], embeddings.device)
