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
(O(B² log B) time, O(B²) memory) and :func:`torch.searchsorted`. The
functions run under :func:`torch.no_grad` and return indices or counts; the
losses gather the differentiable distances themselves.

Ties between equal distances follow the inequalities as written above. Where
a rule has to pick one of several negatives at the same distance, it picks the
one with the lowest index.
"""

from functools import cached_property

import numpy as np
import torch

__all__ = [
    "hard_pairs",
    "hardest_positive_negative",
    "semi_hard_negatives",
    "triplet_type_counts",
]


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
    index = _TripletIndex(*_check_distances(distances, labels))
    negatives, selected = index.semi_hard_negatives()
    return _compact(index.positive_columns, negatives, selected)


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
    index = _TripletIndex(*_check_distances(distances, labels))
    positives, negatives, selected = index.hardest()
    anchors = torch.nonzero(selected).squeeze(1)
    return anchors, positives[anchors], negatives[anchors]


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
    _check_margin(margin)
    index = _TripletIndex(*_check_distances(distances, labels))
    return index.type_counts(margin)


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
    distances, labels = _check_distances(distances, labels)
    rows, columns = torch.nonzero(_hard_pair_mask(distances, labels), as_tuple=True)
    return rows, columns


def _hard_pair_mask(distances, labels):
    """(B, B) bool mask of the hard pairs of :func:`hard_pairs`, upper triangle."""
    same = labels[:, None] == labels[None, :]
    if not len(labels):
        return same
    positive = same & ~_eye(len(labels), labels.device)
    closest_negative = torch.where(same, torch.inf, distances).amin(dim=1)
    farthest_positive = torch.where(positive, distances, -torch.inf).amax(dim=1)
    hard_positive = positive & (
        distances > torch.minimum(closest_negative[:, None], closest_negative[None, :])
    )
    hard_negative = ~same & (
        distances < torch.maximum(farthest_positive[:, None], farthest_positive[None, :])
    )
    return (hard_positive | hard_negative).triu_(1)


class _TripletIndex:
    """Label structure and sorted negative distances of one batch.

    Built once per batch and shared by the mining rules and the counts, so
    that a loss that also reports its statistics sorts only once.

    Attributes
    ----------
    distances : Tensor of shape (B, B)
        Detached distances.
    same : Tensor of shape (B, B), bool
        ``labels[a] == labels[b]`` (True on the diagonal).
    class_sizes, n_negatives : Tensors of shape (B,), int64
        Size of the class of each anchor, and its number of negatives.
    positive_columns, positive_mask : Tensors of shape (B, K)
        Row ``a`` lists the positives of ``a`` where ``positive_mask`` is
        True (padding elsewhere). ``K`` is the largest class size on the CPU,
        and ``B`` on other devices, so that no host synchronisation happens.
    """

    def __init__(self, distances, labels):
        self.distances = distances.detach()
        self.same = labels[:, None] == labels[None, :]
        self.class_sizes = self.same.sum(dim=1)
        self.n_negatives = len(labels) - self.class_sizes
        self.positive_columns, self.positive_mask = _positive_layout(labels, self.class_sizes)
        self._counts = {}

    @cached_property
    def positive_distances(self):
        """(B, K) distance of each anchor to the positives of its layout."""
        return self.distances.gather(1, self.positive_columns)

    @cached_property
    def sorted_negatives(self):
        """Each anchor's negative distances in increasing order, ties by column."""
        return _sort_negatives(self.distances, self.same)

    def negatives_below(self, offset, *, inclusive):
        """(B, K) number of negatives with ``d(a, n) < d(a, p) + offset``.

        ``<=`` instead of ``<`` when ``inclusive``. Garbage where
        ``positive_mask`` is False.
        """
        key = (offset, inclusive)
        if key not in self._counts:
            self._counts[key] = self.sorted_negatives.count(
                self.positive_distances + offset, inclusive=inclusive
            )
        return self._counts[key]

    def semi_hard_negatives(self):
        """(B, K) semi-hard negative column of each positive pair, and a mask.

        The mask keeps the positive pairs whose anchor has a negative.
        """
        n_negatives = self.n_negatives[:, None]
        n_hard = self.negatives_below(0.0, inclusive=True)
        # The first negative past d(a, p), else the first of the farthest ones.
        farthest = self.sorted_negatives.first_equal((n_negatives - 1).clamp_min(0))
        position = torch.where(n_hard < n_negatives, n_hard, farthest)
        negatives = self.sorted_negatives.columns(position)
        return negatives, self.positive_mask & (n_negatives > 0)

    def hardest(self):
        """(B,) farthest positive, closest negative, and anchors that have both."""
        has_both = (self.class_sizes > 1) & (self.n_negatives > 0)
        if not len(has_both):
            return has_both.long(), has_both.long(), has_both
        masked = torch.where(self.same, torch.inf, self.distances)
        closest = masked.min(dim=1).indices
        torch.where(self.same, self.distances, masked.new_tensor(-torch.inf), out=masked)
        farthest = masked.fill_diagonal_(-torch.inf).max(dim=1).indices
        return farthest, closest, has_both

    def batch_all_weights(self, margin):
        """Weights of the distances in the batch-all loss.

        Returns ``positive_weights`` of shape (B, K), the number of active
        triplets of each positive pair of the layout, and ``negative_weights``
        of shape (B, B), the number of active triplets ``(a, ., n)`` of each
        anchor-negative pair ``(a, n)``, as floats (float32 at least). The sum
        of the hinge losses of the active triplets is
        ``sum(positive_weights * (d(a, p) + margin)) -
        sum(negative_weights * d(a, n))``, and each weight is the exact
        derivative of that sum.
        """
        dtype = torch.promote_types(self.distances.dtype, torch.float32)
        n_active = torch.where(
            self.positive_mask, self.negatives_below(margin, inclusive=False), 0
        )
        # histogram[a, k]: positives of a with exactly k active negatives, i.e.
        # whose threshold lies between the k-th and the (k+1)-th sorted negative.
        histogram = torch.zeros(self.distances.shape, dtype=dtype, device=self.same.device)
        histogram.scatter_add_(1, n_active, self.positive_mask.to(dtype))
        # The j-th sorted negative is active with the positives whose count is
        # above j. Integers below 2**24, so the float cumulative sum is exact.
        n_positives = histogram.sum(dim=1, keepdim=True)
        sorted_weights = torch.sub(n_positives, histogram.cumsum_(dim=1), out=histogram)
        negative_weights = torch.zeros_like(sorted_weights)
        negative_weights.scatter_(1, self.sorted_negatives.columns(), sorted_weights)
        return n_active.to(dtype), negative_weights

    def type_counts(self, margin):
        """The dict of :func:`triplet_type_counts`."""
        mask = self.positive_mask
        n_negatives = self.n_negatives[:, None].expand_as(mask)
        hard = self.negatives_below(0.0, inclusive=True)
        within_margin = self.negatives_below(margin, inclusive=True)
        active = self.negatives_below(margin, inclusive=False)

        def total(counts):
            return torch.where(mask, counts, 0).sum()

        n_triplets = total(n_negatives)
        n_within_margin = total(within_margin)
        n_hard = total(hard)
        return {
            "n_triplets": n_triplets,
            "n_easy": n_triplets - n_within_margin,
            "n_semi_hard": n_within_margin - n_hard,
            "n_hard": n_hard,
            "n_active": total(active),
        }


def _positive_layout(labels, class_sizes):
    """(B, K) columns of the positives of each anchor, and their mask.

    The batch is ordered by label once; the positives of ``a`` are then the
    members of its class block other than ``a`` itself.
    """
    n = len(labels)
    width = _layout_width(class_sizes)
    sorted_labels, order = torch.sort(labels, stable=True)
    block_start = torch.searchsorted(sorted_labels, labels)
    slot = torch.arange(width, device=labels.device)
    position = (block_start[:, None] + slot).clamp_max_(max(n - 1, 0))
    columns = order[position]
    mask = (slot < class_sizes[:, None]) & (
        columns != torch.arange(n, device=labels.device)[:, None]
    )
    return columns, mask


def _layout_width(class_sizes):
    """Width of the positive layout: the largest class size, read on the CPU only.

    Reading it elsewhere would synchronise the device with the host; the full
    batch size, known without looking at the data, is used there instead.
    """
    if class_sizes.device.type == "cpu":
        return int(class_sizes.max()) if len(class_sizes) else 0
    return len(class_sizes)


def _sort_negatives(distances, same):
    """Sort each anchor's negative distances; see :class:`_SortedRows`."""
    if distances.device.type == "cpu" and distances.dtype == torch.float32:
        return _PackedSortedRows(distances, same)
    return _SortedRows(distances, same)


class _SortedRows:
    """Each row's negative distances in increasing order, ties by column.

    Parameters
    ----------
    distances : Tensor of shape (B, B)
    same : bool Tensor of shape (B, B)
        The entries to leave out (sorted last, as ``+inf``).
    """

    def __init__(self, distances, same):
        masked = torch.where(same, torch.inf, distances)
        self._values, self._columns = torch.sort(masked, dim=1, stable=True)

    def count(self, thresholds, *, inclusive):
        """(B, K) number of entries of each row below ``thresholds`` (B, K).

        Below means ``<``, or ``<=`` when ``inclusive``.
        """
        return torch.searchsorted(self._values, thresholds, right=inclusive)

    def columns(self, positions=None):
        """Columns of the sorted entries, all (B, B) or at ``positions`` (B, K)."""
        return self._columns if positions is None else self._columns.gather(1, positions)

    def first_equal(self, positions):
        """(B, K) position of the first entry equal to the one at ``positions`` (B, K)."""
        return torch.searchsorted(self._values, self._values.gather(1, positions))


class _PackedSortedRows(_SortedRows):
    """:class:`_SortedRows` for float32 on the CPU, several times faster there.

    Each value's bits are mapped to an int32 of the same order and packed with
    its column into one int64 key, value in the high half and column in the
    low half. A NumPy sort of the keys (vectorised, unlike :func:`torch.sort`
    on the CPU) then orders the values with their columns, ties by column,
    and the keys are searched directly. One (B, B) int64 array in all.
    """

    def __init__(self, distances, same):
        keys = torch.empty(distances.shape, dtype=torch.int64)
        keys.copy_(distances.view(torch.int32))
        if keys.numel() and keys.min() < 0:  # negatives or -0.0: the slower, general map
            keys = _ordered_bits(distances.view(torch.int32)).to(torch.int64)
        keys.masked_fill_(same, _INF_BITS)
        keys.bitwise_left_shift_(32).bitwise_or_(torch.arange(len(keys)))
        keys.numpy().sort(axis=1)
        self._keys = keys

    def count(self, thresholds, *, inclusive):
        bits = _ordered_bits((thresholds + 0.0).view(torch.int32)).to(torch.int64) << 32
        if inclusive:  # above every key of the same value, whatever its column
            bits |= 0xFFFFFFFF
        return torch.searchsorted(self._keys, bits)

    def columns(self, positions=None):
        keys = self._keys if positions is None else self._keys.gather(1, positions)
        return keys & 0xFFFFFFFF

    def first_equal(self, positions):
        return torch.searchsorted(self._keys, self._keys.gather(1, positions) & (-1 << 32))


_INF_BITS = 0x7F800000


def _ordered_bits(bits):
    """Map float32 bit patterns (as int32) to int32 of the same order.

    Non-negative floats already compare like their bits; negative ones in
    reverse, which flipping all but the sign bit corrects. -0.0 goes to +0.0.
    """
    bits = torch.where(bits == torch.iinfo(torch.int32).min, 0, bits)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


def _compact(positive_columns, negatives, selected):
    """Flatten a (B, K) layout to (anchor, positive, negative) index triples."""
    anchors, slots = torch.nonzero(selected, as_tuple=True)
    return anchors, positive_columns[anchors, slots], negatives[anchors, slots]


def _eye(n, device):
    return torch.eye(n, dtype=torch.bool, device=device)


def _check_margin(margin):
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.number)) or not (
        0 < margin < float("inf")
    ):
        raise ValueError(f"margin must be a finite number greater than 0; got {margin!r}.")


def _check_labels(labels, n_samples, device):
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor; got {type(labels).__name__}.")
    if (
        labels.ndim != 1
        or labels.is_floating_point()
        or labels.is_complex()
        or labels.dtype == torch.bool
    ):
        raise ValueError(
            "labels must be a 1-D tensor of integers; got shape "
            f"{tuple(labels.shape)} and dtype {labels.dtype}."
        )
    if len(labels) != n_samples:
        raise ValueError(
            f"labels must have one entry per sample: expected {n_samples}, got {len(labels)}."
        )
    if labels.device != device:
        raise ValueError(f"labels must be on the device {device}; got {labels.device}.")


def _check_distances(distances, labels):
    if not isinstance(distances, torch.Tensor):
        raise TypeError(f"distances must be a torch.Tensor; got {type(distances).__name__}.")
    if (
        distances.ndim != 2
        or distances.shape[0] != distances.shape[1]
        or not distances.is_floating_point()
    ):
        raise ValueError(
            "distances must be a square 2-D floating-point tensor; got shape "
            f"{tuple(distances.shape)} and dtype {distances.dtype}."
        )
    _check_labels(labels, distances.shape[0], distances.device)
    return distances.detach(), labels
