"""The contrastive and triplet losses of given pairs and triplets, without mining.

:func:`sklearn_triplet.losses.contrastive_loss` and :func:`sklearn_triplet.losses.triplet_loss`
take a batch of labelled samples and choose (mine) the pairs or triplets they train on. The
functions here take the pairs or triplets themselves, as aligned rows of embeddings, and average
the loss over exactly those: nothing is mined and nothing is inferred from points that several
tuples share.

Both are validated public functions in front of private kernels (``_contrastive_pairs``,
``_triplet_triplets``) that the estimators call on tensors they have already checked. Their
statistics are 0-dim int64 tensors on the device of the embeddings, computed without host
synchronisation, so a training loop can add them up over an epoch.
"""

import torch

from .distances import METRICS

__all__ = ["contrastive_loss_on_pairs", "triplet_loss_on_triplets"]


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
    _check_scalar_options(margin, metric)
    _check_rows({"first": first, "second": second})
    _check_targets(y, first)
    return _contrastive_pairs(first, second, y, margin, metric, return_stats)


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
    _check_scalar_options(margin, metric)
    _check_rows({"anchors": anchors, "positives": positives, "negatives": negatives})
    return _triplet_triplets(anchors, positives, negatives, margin, metric, return_stats)


# -- kernels: inputs already checked ---------------------------------------------------------------


def _paired_distances(x1, x2, metric):
    """Distance between aligned rows, (n, d), (n, d) -> (n,), differentiable everywhere.

    The Euclidean distance has a zero gradient where it is 0 (the minimum-norm subgradient, as in
    :func:`sklearn_triplet.distances.pairwise_distances`); cosine is ``1 - cos`` clamped to
    ``[0, 2]``, with a zero vector at distance 1 from every vector.
    """
    if metric == "cosine":
        dots = (x1 * x2).sum(dim=1)
        norms = torch.linalg.vector_norm(x1, dim=1) * torch.linalg.vector_norm(x2, dim=1)
        nonzero = norms > 0
        cosines = torch.where(nonzero, dots / torch.where(nonzero, norms, 1), 0)
        return (1 - cosines).clamp(0, 2)
    squared = (x1 - x2).square().sum(dim=1)
    if metric == "sqeuclidean":
        return squared
    return _safe_sqrt(squared)


def _safe_sqrt(squared):
    """``sqrt`` with a zero gradient at 0 instead of an infinite one."""
    positive = squared > 0
    return torch.where(positive, torch.where(positive, squared, 1).sqrt(), 0)


def _contrastive_pairs(first, second, y, margin, metric, return_stats):
    """Mean contrastive loss of the pairs ``(first[i], second[i])``; see the public function."""
    if metric == "euclidean":
        squared = (first - second).square().sum(dim=1)
        distances = _safe_sqrt(squared)
    else:
        distances = _paired_distances(first, second, metric)
        squared = distances.square()
    similar = y > 0
    shortfall = (margin - distances).clamp_min(0)
    terms = torch.where(similar, squared, shortfall.square())
    loss = terms.sum() / max(terms.shape[0], 1)
    if not return_stats:
        return loss
    n_positive = torch.count_nonzero(similar)
    n_pairs = torch.tensor(terms.shape[0], device=terms.device)
    stats = {
        "n_pairs": n_pairs,
        "n_positive_pairs": n_positive,
        "n_negative_pairs": n_pairs - n_positive,
        "n_active_pairs": torch.count_nonzero(terms.detach() > 0),
    }
    return loss, stats


def _triplet_triplets(anchors, positives, negatives, margin, metric, return_stats):
    """Mean hinge loss of the triplets ``(anchors[i], positives[i], negatives[i])``."""
    positive_distances = _paired_distances(anchors, positives, metric)
    negative_distances = _paired_distances(anchors, negatives, metric)
    terms = (positive_distances - negative_distances + margin).clamp_min(0)
    loss = terms.sum() / max(terms.shape[0], 1)
    if not return_stats:
        return loss
    with torch.no_grad():
        d_ap, d_an = positive_distances.detach(), negative_distances.detach()
        threshold = d_ap + margin
        easy = d_an > threshold
        hard = d_an <= d_ap
        stats = {
            "n_triplets": torch.tensor(terms.shape[0], device=terms.device),
            "n_easy": torch.count_nonzero(easy),
            "n_semi_hard": torch.count_nonzero(~easy & ~hard),
            "n_hard": torch.count_nonzero(hard),
            "n_active": torch.count_nonzero(d_an < threshold),
        }
    return loss, stats


# -- checks of the public functions ----------------------------------------------------------------


def _check_scalar_options(margin, metric):
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin > 0:
        raise ValueError(f"margin must be a real number > 0; got {margin!r}.")
    if not isinstance(metric, str) or metric not in METRICS:
        raise ValueError(
            f"metric must be one of {', '.join(repr(m) for m in METRICS)}; got {metric!r}."
        )


def _check_rows(tensors):
    """Every tensor 2-D floating point, and all of one shape, dtype and device."""
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(tensor).__name__}.")
        if tensor.ndim != 2 or not tensor.is_floating_point():
            raise ValueError(
                f"{name} must be a 2-D floating-point tensor of shape (n, n_components); got "
                f"shape {tuple(tensor.shape)} and dtype {tensor.dtype}."
            )
    (first_name, first), *others = tensors.items()
    for name, tensor in others:
        if (tensor.shape, tensor.dtype, tensor.device) != (first.shape, first.dtype, first.device):
            raise ValueError(
                f"{name} must have the shape, dtype and device of {first_name}; got "
                f"{first_name}: {tuple(first.shape)}, {first.dtype}, {first.device} and "
                f"{name}: {tuple(tensor.shape)}, {tensor.dtype}, {tensor.device}."
            )


def _check_targets(y, first):
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor; got {type(y).__name__}.")
    if y.shape != first.shape[:1] or y.device != first.device or y.dtype == torch.bool:
        raise ValueError(
            f"y must be a real or integer tensor of shape ({first.shape[0]},) on {first.device}; "
            f"got shape {tuple(y.shape)}, dtype {y.dtype} on {y.device}."
        )
    bad = (y != 1) & (y != -1)
    if bool(bad.any()):
        values = torch.unique(y[bad])[:5].tolist()
        raise ValueError(
            f"y must hold +1 (similar pair) or -1 (dissimilar pair); got also the values {values}."
        )
