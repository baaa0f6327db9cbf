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
- ``n_mined``: how many terms the loss averaged over, and ``n_mined_active``:
  how many of them are above 0.
- For :func:`contrastive_loss` also ``n_pairs``, ``n_positive_pairs``,
  ``n_negative_pairs`` and ``n_active_pairs``, over all the unordered pairs.

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

import torch

from ._tuple_losses import contrastive_loss_on_pairs, triplet_loss_on_triplets
from .distances import METRICS, _with_distance_gradient, pairwise_distances
from .mining import _check_labels, _check_margin, _hard_pair_mask, _TripletIndex, _widen

__all__ = [
    "contrastive_loss",
    "contrastive_loss_on_pairs",
    "triplet_loss",
    "triplet_loss_on_triplets",
]


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
    _check_margin(margin)
    mine = _check_option("mining", mining, _TRIPLET_MINING)
    _check_option("metric", metric, METRICS)
    _check_batch(embeddings, labels)
    if len(labels) < 2:
        return _nothing_to_train_on(embeddings, _TRIPLET_STATS, return_stats)

    with torch.no_grad():
        distances = pairwise_distances(embeddings.detach(), metric=metric)
        index = _TripletIndex(distances, labels)
        # Counted first: batch-all then reuses the sorted negatives' memory.
        stats = index.type_counts(margin) if return_stats else {}
        value, weights, n_mined, n_mined_active = mine(index, margin)
    loss = _with_distance_gradient(embeddings, distances, weights, value, metric=metric)
    if not return_stats:
        return loss
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
    >>> loss = contrastive_loss(embeddings, labels, margin=2.5)
    >>> round(loss.item(), 4), loss.requires_grad
    (0.7917, True)
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

    with torch.no_grad():
        distances = pairwise_distances(embeddings.detach(), metric=metric)
        same = labels[:, None] == labels[None, :]
        # Half the derivative of each pair's loss: D for a positive pair,
        # -max(0, margin - D) for a negative one. It is nonzero exactly where
        # the pair's loss, its square, is above 0.
        half_slopes = torch.sub(distances, margin).clamp_max_(0)
        torch.where(same, distances, half_slopes, out=half_slopes)
        n_active_pairs = torch.count_nonzero(half_slopes) // 2
        selected = select(distances, labels, same)
        if selected is not None:
            torch.where(selected, half_slopes, half_slopes.new_zeros(()), out=half_slopes)
            n_mined = torch.count_nonzero(selected) // 2
        else:
            n_mined = _n_pairs(len(labels), same.device)
        n_mined_active = torch.count_nonzero(half_slopes) // 2
        # Both triangles hold every pair, hence the halves.
        count = n_mined.clamp_min(1).to(distances.dtype)
        row_norms = torch.linalg.vector_norm(half_slopes, dim=1)
        value = _widen(row_norms).square().sum() / (2 * count)
        weights = half_slopes.div_(count)
    loss = _with_distance_gradient(
        embeddings, distances, weights, value, metric=metric, symmetric=True
    )
    if not return_stats:
        return loss

    stats = _TripletIndex(distances, labels).type_counts(margin)
    n_pairs = _n_pairs(len(labels), same.device)
    n_positive_pairs = (torch.count_nonzero(same) - len(labels)) // 2
    stats.update(
        n_mined=n_mined,
        n_mined_active=n_mined_active,
        n_pairs=n_pairs,
        n_positive_pairs=n_positive_pairs,
        n_negative_pairs=n_pairs - n_positive_pairs,
        n_active_pairs=n_active_pairs,
    )
    return loss, stats


def _n_pairs(n_samples, device):
    return torch.tensor(n_samples * (n_samples - 1) // 2, device=device)


def _batch_all(index, margin):
    """Mean hinge loss over the active triplets; see :func:`triplet_loss`."""
    total, weights, n_active = index.batch_all(margin)
    count = n_active.clamp_min(1)
    return total / count, weights.div_(count), n_active, n_active


def _batch_hard(index, margin):
    """Mean over anchors of the hardest positive and negative's hinge loss."""
    positives, negatives, selected = index.hardest()
    return _mean_hinge(index, positives[:, None], negatives[:, None], selected[:, None], margin)


def _semi_hard(index, margin):
    """Mean over positive pairs of the semi-hard negative's hinge loss."""
    negatives, selected = index.semi_hard_negatives()
    return _mean_hinge(index, index.positive_columns, negatives, selected, margin)


def _mean_hinge(index, positives, negatives, selected, margin):
    """Mean of ``max(0, d(a, p) + margin - d(a, n))`` over the selected triplets.

    Parameters
    ----------
    index : _TripletIndex
    positives, negatives : int64 Tensors of shape (B, K)
        Row ``a`` holds the triplets ``(a, positives[a, k], negatives[a, k])``.
    selected : bool Tensor of shape (B, K)

    Returns
    -------
    value : Tensor of shape (), 0 when nothing is selected
    weights : Tensor of shape (B, B), the derivative of ``value`` in each distance
    n_selected, n_active : int64 Tensors of shape ()
    """
    distances = index.distances
    positive_distances = distances.gather(1, positives)
    threshold = positive_distances + margin
    negative_distances = distances.gather(1, negatives)
    active = selected & (negative_distances < threshold)
    n_selected = selected.sum()
    count = n_selected.clamp_min(1).to(distances.dtype)
    value = torch.where(active, threshold - negative_distances, 0).sum() / count
    slopes = active.to(distances.dtype) / count
    weights = torch.zeros_like(distances).scatter_add_(1, positives, slopes)
    weights.scatter_add_(1, negatives, slopes.neg_())
    return value, weights, n_selected, active.sum()


def _all_pairs(distances, labels, same):
    return None


def _hard_pairs(distances, labels, same):
    return _hard_pair_mask(distances, labels, same)


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
