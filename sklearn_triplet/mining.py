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

import numbers
from functools import cached_property

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
    mask = _hard_pair_mask(distances, labels, labels[:, None] == labels[None, :])
    rows, columns = torch.nonzero(mask.triu_(1), as_tuple=True)
    return rows, columns


def _hard_pair_mask(distances, labels, same):
    """(B, B) symmetric bool mask of the hard pairs of :func:`hard_pairs`.

    One (B, B) float buffer serves in turn for the closest negatives, the
    farthest positives and the two thresholds.
    """
    if not len(labels):
        return same.clone()
    buffer = torch.where(same, torch.inf, distances)
    closest_negative = buffer.amin(dim=1)
    torch.where(same, distances, buffer.new_tensor(-torch.inf), out=buffer)
    farthest_positive = buffer.fill_diagonal_(-torch.inf).amax(dim=1)
    torch.minimum(closest_negative[:, None], closest_negative[None, :], out=buffer)
    hard = torch.gt(distances, buffer)  # the rule for positive pairs
    torch.maximum(farthest_positive[:, None], farthest_positive[None, :], out=buffer)
    torch.where(same, hard, torch.lt(distances, buffer), out=hard)
    return hard.fill_diagonal_(False)


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
        self.class_sizes, self.positive_columns, self.positive_mask = _positive_layout(labels)
        self.n_negatives = len(labels) - self.class_sizes
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
            thresholds = self.positive_distances + offset
            if inclusive and (offset, False) in self._counts:
                below = self._counts[offset, False]
                self._counts[key] = self.sorted_negatives.count_ties(thresholds, below)
            else:
                self._counts[key] = self.sorted_negatives.count(thresholds, inclusive=inclusive)
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

    def batch_all(self, margin):
        """Sum of the hinge losses of the active triplets, and its derivative.

        Batch-all sums ``d(a, p) + margin - d(a, n)`` over up to B³ active
        triplets without enumerating them. For each positive pair, the number
        ``k(a, p)`` of negatives below ``d(a, p) + margin`` comes from a search
        in the anchor's sorted negative distances; for each anchor-negative
        pair, the number ``w(a, n)`` of positive pairs it is active with comes
        from a histogram of those ``k`` and a cumulative sum over the sorted
        negatives (exact: integers below 2**24 in floating point). Then

            total = sum k(a, p) (d(a, p) + margin) - sum w(a, n) d(a, n),

        and ``k`` and ``-w`` are exactly its derivative in each distance. The
        two sums are taken row by row in the dtype of the distances (pairwise
        summation), then subtracted and summed over the rows in float64, which
        keeps their cancellation harmless at B = 8192 in float32.

        The sorted negatives answer no further question afterwards: counts
        needed later must have been asked for (and memoised) before.

        Returns
        -------
        total : float64 Tensor of shape () (float32 on MPS, which has no float64)
        weights : Tensor of shape (B, B)
            The derivative of ``total`` in each distance.
        n_active : int64 Tensor of shape ()
        """
        distances = self.distances
        mask = self.positive_mask
        n_active = torch.where(mask, self.negatives_below(margin, inclusive=False), 0)
        # histogram[a, j]: positives of a with exactly j active negatives.
        buffer = torch.zeros_like(distances)
        buffer.scatter_add_(1, n_active, mask.to(distances.dtype))
        n_positives = buffer.sum(dim=1, keepdim=True)
        # The j-th sorted negative is active with the positives whose count is above j.
        torch.sub(n_positives, buffer.cumsum_(dim=1), out=buffer)
        columns = self.sorted_negatives.pop_columns()
        weights = torch.zeros_like(distances).scatter_(1, columns, buffer)
        del columns
        negative_part = torch.mul(weights, distances, out=buffer).sum(dim=1)
        positive_counts = n_active.to(distances.dtype)
        positive_part = (positive_counts * (self.positive_distances + margin)).sum(dim=1)
        total = (_widen(positive_part) - _widen(negative_part)).sum()
        weights.neg_().scatter_add_(1, self.positive_columns, positive_counts)
        return total, weights, n_active.sum()

    def type_counts(self, margin):
        """The dict of :func:`triplet_type_counts`."""
        mask = self.positive_mask
        n_negatives = self.n_negatives[:, None].expand_as(mask)
        hard = self.negatives_below(0.0, inclusive=True)
        active = self.negatives_below(margin, inclusive=False)
        within_margin = self.negatives_below(margin, inclusive=True)

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


def _positive_layout(labels):
    """Class sizes (B,), and the (B, K) columns of the positives of each anchor with their mask.

    The batch is ordered by label once; the positives of ``a`` are then the
    members of its class block other than ``a`` itself.
    """
    n = len(labels)
    sorted_labels, order = torch.sort(labels, stable=True)
    block_start = torch.searchsorted(sorted_labels, labels)
    class_sizes = torch.searchsorted(sorted_labels, labels, right=True) - block_start
    width = _layout_width(class_sizes)
    slot = torch.arange(width, device=labels.device)
    position = (block_start[:, None] + slot).clamp_max_(max(n - 1, 0))
    columns = order[position]
    mask = (slot < class_sizes[:, None]) & (
        columns != torch.arange(n, device=labels.device)[:, None]
    )
    return class_sizes, columns, mask


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

    def count_ties(self, thresholds, below):
        """``count(thresholds, inclusive=True)``, given ``below``, its ``<`` version."""
        return self.count(thresholds, inclusive=True)

    def columns(self, positions=None):
        """Columns of the sorted entries, all (B, B) or at ``positions`` (B, K)."""
        return self._columns if positions is None else self._columns.gather(1, positions)

    def pop_columns(self):
        """``columns()``, after which this object answers no further question."""
        columns, self._values, self._columns = self._columns, None, None
        return columns

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
        bits = _threshold_keys(thresholds)
        if inclusive:  # above every key of the same value, whatever its column
            bits |= 0xFFFFFFFF
        return torch.searchsorted(self._keys, bits)

    def count_ties(self, thresholds, below):
        # The entries equal to a threshold start at `below`: step over the few
        # there usually are rather than search again (host checks are free on
        # the CPU); search again when there are many.
        bits = _threshold_keys(thresholds)
        n = self._keys.shape[1]
        at_most = below.clone()
        for _ in range(4):
            at = self._keys.gather(1, at_most.clamp_max(max(n - 1, 0))) & (-1 << 32)
            tied = (at == bits) & (at_most < n)
            if not tied.any():
                return at_most
            at_most += tied
        return self.count(thresholds, inclusive=True)

    def columns(self, positions=None):
        keys = self._keys if positions is None else self._keys.gather(1, positions)
        return keys & 0xFFFFFFFF

    def pop_columns(self):
        keys, self._keys = self._keys, None
        return keys.bitwise_and_(0xFFFFFFFF)  # in place: no second (B, B) int64 array

    def first_equal(self, positions):
        return torch.searchsorted(self._keys, self._keys.gather(1, positions) & (-1 << 32))


_INF_BITS = 0x7F800000


def _threshold_keys(thresholds):
    """Search keys of float32 thresholds: their ordered bits in the high half."""
    return _ordered_bits((thresholds + 0.0).view(torch.int32)).to(torch.int64) << 32


def _ordered_bits(bits):
    """Map float32 bit patterns (as int32) to int32 of the same order.

    Non-negative floats already compare like their bits; negative ones in
    reverse, which flipping all but the sign bit corrects. -0.0 goes to +0.0.
    """
    bits = torch.where(bits == torch.iinfo(torch.int32).min, 0, bits)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


def _widen(tensor):
    """The tensor in float64 for accumulating, except on MPS, which has no float64."""
    return tensor if tensor.device.type == "mps" else tensor.double()


def _compact(positive_columns, negatives, selected):
    """Flatten a (B, K) layout to (anchor, positive, negative) index triples."""
    anchors, slots = torch.nonzero(selected, as_tuple=True)
    return anchors, positive_columns[anchors, slots], negatives[anchors, slots]


def _check_margin(margin):
    if (
        isinstance(margin, bool)
        or not isinstance(margin, numbers.Real)
        or not 0 < margin < float("inf")
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
