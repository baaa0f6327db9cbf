"""Which triplets and pairs of a batch the losses train on.

Vocabulary, used in every docstring here:

- ``distances`` is a (B, B) matrix of distances (small means similar) and
  ``labels`` a (B,) integer tensor; row ``a`` holds the anchor ``a``.
- A *valid triplet* ``(a, p, n)`` has ``a != p``, ``labels[a] == labels[p]``
  and ``labels[n] != labels[a]``. A *positive pair* is an ordered pair
  ``(a, p)`` with ``a != p`` and equal labels.
- The *gap* of a triplet is ``d(a, n) - d(a, p)``. With a margin ``m``, a
  triplet is *easy* when ``d(a, n) > d(a, p) + m``, *semi-hard* when
  ``d(a, p) < d(a, n) <= d(a, p) + m``, *hard* when ``d(a, n) <= d(a, p)``
  (FaceNet's taxonomy), and *active* (its hinge loss
  ``max(0, d(a, p) - d(a, n) + m)`` is above 0) when ``d(a, n) < d(a, p) + m``.

Nothing here builds a B x B x B tensor. Questions about all the negatives of
an anchor are answered from that anchor's negative distances sorted once
(O(B² log B) time, O(B²) memory) and :func:`torch.searchsorted`; on the CPU,
float32 distances are sorted by NumPy as packed integer keys, which is several
times faster there than :func:`torch.sort`. The functions run under
:func:`torch.no_grad` and return indices or counts.

Ties between equal distances follow the inequalities as written above. Where
a rule has to pick one of several negatives at the same distance, it picks the
one with the lowest index.
"""

from numbers import Real

import torch

from ._kernels import TAXONOMY, TripletIndex, compact_triplets, hard_pair_mask
from ._validation import Interval, check_distance_matrix, validate_function_params

__all__ = [
    "easiest_positive_negative",
    "hard_pairs",
    "hardest_positive_negative",
    "semi_hard_negatives",
    "triplet_type_counts",
]


@validate_function_params({"distances": [torch.Tensor], "labels": [torch.Tensor]})
@torch.no_grad()
def semi_hard_negatives(distances, labels):
    """FaceNet's semi-hard negative of every positive pair.

    For each positive pair ``(a, p)`` whose anchor has at least one negative,
    the negative ``n`` with the smallest ``d(a, n)`` among those with
    ``d(a, n) > d(a, p)`` (strictly: a negative at exactly ``d(a, p)`` is
    hard, not semi-hard); when there is none, the negative with the largest
    ``d(a, n)``. Among equal distances the lowest index is chosen. The margin
    does not enter the choice.

    Parameters
    ----------
    distances : Tensor of shape (B, B)
        Distances between the samples of the batch.
    labels : Tensor of shape (B,)
        Integer class labels.

    Returns
    -------
    anchors, positives, negatives : Tensors of shape (n_pairs,), int64
        One row per positive pair whose anchor has a negative, in row-major
        order of ``(a, p)``.

    Examples
    --------
    >>> import torch
    >>> from sklearn_triplet.mining import semi_hard_negatives
    >>> d = torch.tensor([[0., 1., 3., 2.],
    ...                   [1., 0., 4., 5.],
    ...                   [3., 4., 0., 6.],
    ...                   [2., 5., 6., 0.]])
    >>> semi_hard_negatives(d, torch.tensor([0, 0, 1, 1]))
    (tensor([0, 1, 2, 3]), tensor([1, 0, 3, 2]), tensor([3, 2, 1, 1]))
    """
    index = TripletIndex(*check_distance_matrix(distances, labels))
    negatives, selected = index.semi_hard_negatives()
    return compact_triplets(index.positive_columns, negatives, selected)


@validate_function_params({"distances": [torch.Tensor], "labels": [torch.Tensor]})
@torch.no_grad()
def hardest_positive_negative(distances, labels):
    """Batch-hard mining: each anchor's farthest positive and closest negative.

    For each anchor ``a`` with at least one positive and one negative, the
    positive with the largest ``d(a, p)`` and the negative with the smallest
    ``d(a, n)`` (Hermans et al., 2017). Among equal distances the lowest
    index is chosen.

    Parameters
    ----------
    distances : Tensor of shape (B, B)
        Distances between the samples of the batch.
    labels : Tensor of shape (B,)
        Integer class labels.

    Returns
    -------
    anchors, positives, negatives : Tensors of shape (n_anchors,), int64
        One row per anchor that has a positive and a negative, in increasing
        order of the anchor.

    Examples
    --------
    >>> import torch
    >>> from sklearn_triplet.mining import hardest_positive_negative
    >>> d = torch.tensor([[0., 1., 3., 2.],
    ...                   [1., 0., 4., 5.],
    ...                   [3., 4., 0., 6.],
    ...                   [2., 5., 6., 0.]])
    >>> hardest_positive_negative(d, torch.tensor([0, 0, 1, 1]))
    (tensor([0, 1, 2, 3]), tensor([1, 0, 3, 2]), tensor([3, 2, 0, 0]))
    """
    index = TripletIndex(*check_distance_matrix(distances, labels))
    positives, negatives, selected = index.hardest()
    anchors = torch.nonzero(selected).squeeze(1)
    return anchors, positives[anchors], negatives[anchors]


@validate_function_params({"distances": [torch.Tensor], "labels": [torch.Tensor]})
@torch.no_grad()
def easiest_positive_negative(distances, labels):
    """Easy-positive mining: each anchor's closest positive and closest negative.

    For each anchor ``a`` with at least one positive and one negative, the
    positive with the smallest ``d(a, p)`` and the negative with the smallest
    ``d(a, n)`` (Xuan et al., 2020). Among equal distances the lowest index is
    chosen. A triplet loss over these asks each anchor to be nearer to its
    nearest same-class sample than to any sample of another class, which is
    what a nearest-neighbour classifier needs, and lets a class spread over
    several clusters.

    Parameters
    ----------
    distances : Tensor of shape (B, B)
        Distances between the samples of the batch.
    labels : Tensor of shape (B,)
        Integer class labels.

    Returns
    -------
    anchors, positives, negatives : Tensors of shape (n_anchors,), int64
        One row per anchor that has a positive and a negative, in increasing
        order of the anchor.

    References
    ----------
    H. Xuan, A. Stylianou and R. Pless, "Improved Embeddings with Easy
    Positive Triplet Mining", WACV 2020.

    Examples
    --------
    >>> import torch
    >>> from sklearn_triplet.mining import easiest_positive_negative
    >>> d = torch.tensor([[0., 1., 3., 2., 4.],
    ...                   [1., 0., 4., 5., 2.],
    ...                   [3., 4., 0., 6., 5.],
    ...                   [2., 5., 6., 0., 1.],
    ...                   [4., 2., 5., 1., 0.]])
    >>> easiest_positive_negative(d, torch.tensor([0, 0, 1, 1, 0]))
    (tensor([0, 1, 2, 3, 4]), tensor([1, 0, 3, 2, 1]), tensor([3, 2, 0, 4, 3]))
    """
    index = TripletIndex(*check_distance_matrix(distances, labels))
    positives, negatives, selected = index.easiest()
    anchors = torch.nonzero(selected).squeeze(1)
    return anchors, positives[anchors], negatives[anchors]


@validate_function_params(
    {
        "distances": [torch.Tensor],
        "labels": [torch.Tensor],
        "margin": [Interval(Real, 0, None, closed="neither")],
    }
)
@torch.no_grad()
def triplet_type_counts(distances, labels, *, margin):
    """Count the valid triplets of a batch by FaceNet's taxonomy.

    Parameters
    ----------
    distances : Tensor of shape (B, B)
        Distances between the samples of the batch.
    labels : Tensor of shape (B,)
        Integer class labels.
    margin : float
        The margin ``m`` of the loss, > 0.

    Returns
    -------
    counts : dict of str to Tensor
        0-dim int64 tensors on the device of ``distances`` (no host
        synchronisation), counted over all valid triplets ``(a, p, n)``:

        - ``"n_triplets"``: all of them;
        - ``"n_easy"``: ``d(a, n) > d(a, p) + m``;
        - ``"n_semi_hard"``: ``d(a, p) < d(a, n) <= d(a, p) + m``;
        - ``"n_hard"``: ``d(a, n) <= d(a, p)``;
        - ``"n_active"``: ``d(a, n) < d(a, p) + m`` (hinge loss above 0).

        The first three partition the triplets. O(B² log B) time, O(B²)
        memory.

    Examples
    --------
    >>> import torch
    >>> from sklearn_triplet.mining import triplet_type_counts
    >>> d = torch.tensor([[0., 1., 3., 2.],
    ...                   [1., 0., 4., 5.],
    ...                   [3., 4., 0., 6.],
    ...                   [2., 5., 6., 0.]])
    >>> counts = triplet_type_counts(d, torch.tensor([0, 0, 1, 1]), margin=1.5)
    >>> {key: int(value) for key, value in counts.items()}
    {'n_triplets': 8, 'n_easy': 3, 'n_semi_hard': 1, 'n_hard': 4, 'n_active': 5}
    """
    index = TripletIndex(*check_distance_matrix(distances, labels))
    return dict(zip((count.name for count in TAXONOMY), index.type_counts(margin).unbind()))


@validate_function_params({"distances": [torch.Tensor], "labels": [torch.Tensor]})
@torch.no_grad()
def hard_pairs(distances, labels):
    """Hard pairs for the contrastive loss.

    An unordered pair ``{i, j}`` is selected when it is

    - a positive pair (equal labels) farther apart than the closest negative
      of either member: ``d(i, j) > min(c_i, c_j)`` with ``c_i`` the smallest
      ``d(i, n)`` over the negatives ``n`` of ``i`` (``+inf`` when it has
      none); or
    - a negative pair closer than the farthest positive of either member:
      ``d(i, j) < max(f_i, f_j)`` with ``f_i`` the largest ``d(i, p)`` over
      the positives ``p`` of ``i`` (``-inf`` when it has none).

    Equality selects nothing. This is the pair rule of Wang et al. (2019)
    with no slack, applied from both ends of a pair.

    Parameters
    ----------
    distances : Tensor of shape (B, B)
        Symmetric distances between the samples of the batch.
    labels : Tensor of shape (B,)
        Integer class labels.

    Returns
    -------
    rows, columns : Tensors of shape (n_pairs,), int64
        The selected pairs with ``rows < columns``, in row-major order.

    References
    ----------
    X. Wang, X. Han, W. Huang, D. Dong and M. R. Scott, "Multi-Similarity
    Loss with General Pair Weighting for Deep Metric Learning", CVPR 2019.

    Examples
    --------
    >>> import torch
    >>> from sklearn_triplet.mining import hard_pairs
    >>> d = torch.tensor([[0., 1., 3., 2.],
    ...                   [1., 0., 4., 5.],
    ...                   [3., 4., 0., 6.],
    ...                   [2., 5., 6., 0.]])
    >>> hard_pairs(d, torch.tensor([0, 0, 1, 1]))
    (tensor([0, 0, 1, 1, 2]), tensor([2, 3, 2, 3, 3]))
    """
    distances, labels = check_distance_matrix(distances, labels)
    mask = hard_pair_mask(distances, labels, labels[:, None] == labels[None, :])
    rows, columns = torch.nonzero(mask.triu_(1), as_tuple=True)
    return rows, columns
