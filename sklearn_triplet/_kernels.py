"""The mathematics on tensors: distance matrices, the mining index and the loss kernels.

The public functions of :mod:`~sklearn_triplet.distances`, :mod:`~sklearn_triplet.mining` and
:mod:`~sklearn_triplet.losses` validate their arguments and call the functions here; the estimators
call them directly, their parameters validated once at ``fit``. Nothing here validates: shapes,
dtypes and options are trusted.

Each loss declares, once, the statistics it reports (:class:`Statistics`): the names of its counts,
the fractions derived from them, their labels for the console and the plots and their documentation.
The training loop, the console report, :class:`~sklearn_triplet.plotting.HistoryDisplay` and the
estimators' docstrings read that declaration.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import torch

#: The distances the losses, the miners, the metrics and the estimators accept.
METRICS = ("euclidean", "sqeuclidean", "cosine")


def distance_matrix(x, y, metric):
    """Distances between the rows of ``x`` and of ``y`` (``None``: ``x`` itself).

    See :func:`sklearn_triplet.distances.pairwise_distances`, which validates and calls this.
    """
    return _DISTANCE_FUNCTIONS[metric](x, y)


# -- distances -------------------------------------------------------------------------------------


def _squared_euclidean(x, y):
    """Squared Euclidean distances, (n, d), (m, d) or None -> (n, m), >= 0."""
    return _ExpandedDistances.apply(x, y, True, 1.0, None)


def _euclidean(x, y):
    """Euclidean distances, with a zero gradient at distance 0."""
    return _ExpandedDistances.apply(x, y, False, 1.0, None)


def _cosine(x, y):
    """Cosine distances ``1 - cos``; a zero row is at distance 1 from every other row.

    For unit vectors ``1 - cos(u, v) = ||u - v||² / 2``. Zero rows get a unit extra coordinate (and
    every other row a zero one), which puts them at squared distance 2 (distance 1) from every unit
    row; two zero rows, which that leaves at 0, are then set to 1, as scikit-learn's
    :func:`~sklearn.metrics.pairwise.cosine_distances` does (the diagonal of ``x`` against itself,
    ``y`` None or ``x``, stays 0). The clamp at 2 only removes rounding.
    """
    points = _unit_rows(x)
    other = None if y is None else _unit_rows(y)
    out = _ExpandedDistances.apply(points, other, True, 0.5, 2.0)
    zero_x = points[:, -1]
    zero_y = zero_x if other is None else other[:, -1]
    both_zero = torch.outer(zero_x, zero_y) > 0
    if y is None or y is x:
        both_zero.fill_diagonal_(False)
    return torch.where(both_zero, 1.0, out)


def distance_rows(x, metric, anchors):
    """Rows ``anchors`` (a slice) of ``distance_matrix(x, None, metric)``, the same numbers.

    The expansion and its matrix product are the whole batch's, as in the whole matrix; the
    symmetrisation, the diagonal, the clamps and the square root, elementwise, are done on these
    rows alone (``a + b == b + a`` exactly, so each entry equals the whole matrix's).
    """
    if metric == "cosine":
        points = _unit_rows(x)
        out = _expanded_rows(points, anchors, squared=True, scale=0.5, upper=2.0)
        zero = points[:, -1]
        both_zero = torch.outer(zero[anchors], zero) > 0
        _fill_self_(both_zero, anchors, False)
        return torch.where(both_zero, 1.0, out)
    return _expanded_rows(x, anchors, squared=metric == "sqeuclidean", scale=1.0, upper=None)


def _expanded_rows(x, anchors, *, squared, scale, upper):
    """The rows ``anchors`` of ``_ExpandedDistances.forward(x, None, ...)``, no gradient."""
    x_sq = (x * x).sum(dim=1)
    whole = (x_sq[:, None] + x_sq[None, :]).addmm_(x, x.mT, alpha=-2)
    out = torch.add(whole[anchors], whole[:, anchors].mT).mul_(0.5)
    _fill_self_(out, anchors, 0)
    return _finish_distances_(out, squared=squared, scale=scale, upper=upper)


def _finish_distances_(out, *, squared, scale, upper):
    """Squared distances of the expansion to the distances asked for, in place: clamped at 0,
    the square root unless ``squared``, times ``scale``, clamped at ``upper`` (None: no bound)."""
    out.clamp_min_(0)
    if not squared:
        out.sqrt_()
    if scale != 1:
        out.mul_(scale)
    if upper is not None:
        out.clamp_max_(upper)
    return out


def _unit_rows(x):
    """(n, d) -> (n, d + 1): rows scaled to norm 1, and a column of zero-row flags."""
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    is_zero = norm == 0
    unit = x / torch.where(is_zero, 1.0, norm)
    return torch.cat([unit, is_zero.to(x.dtype)], dim=1)


class _ExpandedDistances(torch.autograd.Function):
    """``scale * ||x_i - y_j||`` (or its square) with a hand-written backward.

    The forward uses the expansion ``||x||² + ||y||² - 2 <x, y>`` in place in
    its output, and the backward is two matrix products, as in
    :func:`torch.cdist`: autograd through the expansion would keep and
    traverse several (n, m) intermediates. For an upstream gradient ``G`` and
    ``W = G / d`` (0 where ``d == 0``) for the distance, ``W = 2 G`` for the
    squared distance,

        grad_x = rowsum(W) * x - W @ y,    grad_y = colsum(W) * y - W.T @ x,

    and when ``y`` is ``x`` the two add up; the diagonal, a constant 0, passes
    no gradient. ``y=None`` means ``x`` against itself: the output is then
    made exactly symmetric and its diagonal exactly 0.
    """

    @staticmethod
    def forward(x, y, squared, scale, upper):
        same = y is None
        y = x if same else y
        x_sq = (x * x).sum(dim=1)
        y_sq = x_sq if same else (y * y).sum(dim=1)
        out = (x_sq[:, None] + y_sq[None, :]).addmm_(x, y.mT, alpha=-2)
        if same:
            _symmetrize_(out)
            out.fill_diagonal_(0)
        return _finish_distances_(out, squared=squared, scale=scale, upper=upper)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, y, squared, scale, _ = inputs
        ctx.squared, ctx.scale = squared, scale
        ctx.save_for_backward(x, y, output)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # pyright: ignore[reportIncompatibleMethodOverride]
        x, y, out = ctx.saved_tensors
        if ctx.squared:
            weights, factor = grad, 2 * ctx.scale
        else:
            # d(scale * r) / dx_i = scale * (x_i - y_j) / r with out = scale * r.
            weights, factor = grad / out, ctx.scale**2
            weights.masked_fill_(out == 0, 0)
        if y is None:
            if weights is grad:
                weights = grad.clone()
            weights.fill_diagonal_(0)
            row_weights = weights.sum(dim=1) + weights.sum(dim=0)
            grad_x = row_weights[:, None] * x - weights @ x - weights.mT @ x
            return grad_x * factor, None, None, None, None
        grad_x = weights.sum(dim=1)[:, None] * x - weights @ y
        grad_y = weights.sum(dim=0)[:, None] * y - weights.mT @ x
        return grad_x * factor, grad_y * factor, None, None, None


def _with_distance_gradient(x, distances, weights, value, *, metric, symmetric=False):
    """``value`` as a tensor whose gradient is that of ``sum(weights * D(x))``.

    The losses are piecewise smooth functions of the distance matrix ``D`` of
    the batch. They compute their value and its derivative ``weights`` with
    respect to each distance on the detached matrix (the mining decisions
    are constant in a neighbourhood), and this one autograd node maps the
    weights back to the embeddings with two matrix products (one when
    ``weights`` is symmetric), as the backward of :func:`torch.cdist` does,
    without keeping any other (B, B) tensor alive for the backward pass.

    Parameters
    ----------
    x : Tensor of shape (B, d)
        The embeddings, attached to the graph.
    distances : Tensor of shape (B, B)
        ``pairwise_distances(x, metric=metric)``, detached.
    weights : Tensor of shape (B, B)
        ``d value / d distances``, detached; overwritten.
    value : Tensor of shape ()
        The loss, detached; returned in the dtype of ``x``.
    metric : str
        One of :data:`METRICS`.
    symmetric : bool, default=False
        Whether ``weights`` is symmetric, which saves one matrix product.

    Returns
    -------
    loss : Tensor of shape ()
    """
    points, factor = _gradient_points(x, distances, weights, metric)
    weights.fill_diagonal_(0)
    return _DistanceGradient.apply(points, weights, value.to(x.dtype), factor, symmetric)


def _gradient_points(x, distances, weights, metric):
    """``points, factor``: what the distance-gradient Functions differentiate through, for
    ``metric``; turns ``weights`` (``d value / d distances``) into the points' weights, in
    place."""
    if metric == "cosine":  # D = ||u_i - u_j||² / 2 for the rows u of _unit_rows(x)
        return _unit_rows(x), 1.0
    if metric == "sqeuclidean":
        return x, 2.0
    # d ||x_i - x_j|| / d x_i = (x_i - x_j) / d, taken as 0 at d = 0
    weights.div_(distances).masked_fill_(distances == 0, 0)
    return x, 1.0


class _ValueWithDistanceGradient(torch.autograd.Function):
    """Returns ``value``; the subclass's ``backward`` gives the points' gradient from the saved
    ``points`` and ``weights``, ``ctx.factor`` and ``ctx.option`` (the last input of ``apply``)."""

    @staticmethod
    def forward(points, weights, value, factor, option):
        return value.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        points, weights, _, factor, option = inputs
        ctx.factor, ctx.option = factor, option
        ctx.save_for_backward(points, weights)


class _DistanceGradient(_ValueWithDistanceGradient):
    """Returns ``value``; backward gives ``sum_ij W_ij (p_i - p_j)`` to each point ``p_i``.

    With ``W`` the prepared weights times ``factor``, that is
    ``grad_p = rowsum(W + W.T) * p - (W + W.T) @ p``.
    """

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # pyright: ignore[reportIncompatibleMethodOverride]
        points, weights = ctx.saved_tensors
        if ctx.option:  # symmetric weights
            grad_points = (weights.sum(dim=1)[:, None] * points - weights @ points) * 2
        else:
            row_weights = weights.sum(dim=1) + weights.sum(dim=0)
            grad_points = row_weights[:, None] * points - weights @ points - weights.mT @ points
        return grad_points * (grad * ctx.factor), None, None, None, None


def _with_anchor_distance_gradient(x, distances, weights, value, *, metric, anchors):
    """:func:`_with_distance_gradient` for the rows ``anchors`` (a slice) of the batch's matrix.

    ``distances`` and ``weights`` are (A, B): the rows of those anchors. The gradient reaches
    every embedding of the batch: the anchors' through their rows, every other through its column.
    """
    points, factor = _gradient_points(x, distances, weights, metric)
    _fill_self_(weights, anchors, 0)
    return _AnchorDistanceGradient.apply(points, weights, value.to(x.dtype), factor, anchors)


class _AnchorDistanceGradient(_ValueWithDistanceGradient):
    """Returns ``value``; backward gives ``sum_{a, j} W_aj (p_a - p_j)``'s gradient: for the
    anchors' rows ``rowsum(W) * p_a - W @ p``, and to every point ``colsum(W) * p - W.T @ p_A``."""

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # pyright: ignore[reportIncompatibleMethodOverride]
        points, weights = ctx.saved_tensors
        anchors = ctx.option
        rows = points[anchors]
        grad_points = weights.sum(dim=0)[:, None] * points - weights.mT @ rows
        grad_points[anchors] += weights.sum(dim=1)[:, None] * rows - weights @ points
        return grad_points * (grad * ctx.factor), None, None, None, None


def _symmetrize_(square, block_size=256):
    """Replace a square matrix by the mean of itself and its transpose, in place.

    ``a + b == b + a`` holds exactly in floating point, so the result is
    exactly symmetric whatever the summation order of the matrix product
    that made it. Block by block, to stay in cache and allocate no second
    (n, n) matrix.
    """
    n = square.shape[0]
    for start in range(0, n, block_size):
        diagonal = square[start : start + block_size, start : start + block_size]
        diagonal.copy_((diagonal + diagonal.mT).mul_(0.5))
        for other in range(start + block_size, n, block_size):
            upper = square[start : start + block_size, other : other + block_size]
            lower = square[other : other + block_size, start : start + block_size]
            upper.add_(lower.mT).mul_(0.5)
            lower.copy_(upper.mT)


_DISTANCE_FUNCTIONS = {
    "euclidean": _euclidean,
    "sqeuclidean": _squared_euclidean,
    "cosine": _cosine,
}


# -- the mining index ------------------------------------------------------------------------------


def hard_pair_mask(distances, labels, same):
    """(B, B) symmetric bool mask of the hard pairs of :func:`sklearn_triplet.mining.hard_pairs`.

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


class TripletIndex:
    """Label structure and sorted negative distances of one batch.

    Built once per batch and shared by the mining rules and the counts, so
    that a loss that also reports its statistics sorts only once.

    With ``anchors`` (a slice of the batch), ``distances`` holds those rows of the batch's
    distance matrix, and the index answers for those anchors alone (``A`` of them; ``A = B``
    otherwise): each anchor's terms depend on its row alone, so a process group splits the
    anchors of a batch between its ranks.

    Attributes
    ----------
    distances : Tensor of shape (A, B)
        Detached distances.
    same : Tensor of shape (A, B), bool
        ``labels[a] == labels[b]`` (True on each anchor's own entry).
    class_sizes, n_negatives : Tensors of shape (B,), int64
        Size of the class of each anchor, and its number of negatives.
    positive_columns, positive_mask : Tensors of shape (B, K)
        Row ``a`` lists the positives of ``a`` where ``positive_mask`` is
        True (padding elsewhere). ``K`` is the largest class size on the CPU,
        and ``B`` on other devices, so that no host synchronisation happens.
    """

    def __init__(self, distances, labels, anchors=None):
        self.distances = distances.detach()
        layout = _positive_layout(labels)
        if anchors is not None:  # rows ``anchors`` of the batch's matrix: their anchors alone
            layout = tuple(part[anchors] for part in layout)
        self.same = labels[anchors if anchors is not None else slice(None), None] == labels[None, :]
        self.class_sizes, self.positive_columns, self.positive_mask = layout
        self.n_negatives = len(labels) - self.class_sizes
        self.anchors = anchors
        self._counts = {}

    def fill_self_(self, square, value):
        """Set each anchor's entry of itself (the diagonal of the batch's matrix) to ``value``."""
        return _fill_self_(square, self.anchors, value)

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

    def count_all_below(self, requests):
        """:meth:`negatives_below` for several ``(offset, inclusive)`` requests at once.

        The requests not counted yet are answered by one search of the sorted negatives (which
        costs about what one search of them does, at the batch sizes of training), and memoised.
        """
        missing = [key for key in dict.fromkeys(requests) if key not in self._counts]
        if len(missing) > 1:
            counts = self.sorted_negatives.count_many(
                [self.positive_distances + offset for offset, _ in missing],
                [inclusive for _, inclusive in missing],
            )
            self._counts.update(zip(missing, counts))
        return [self.negatives_below(offset, inclusive=inclusive) for offset, inclusive in requests]

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
        return self._extreme_positive(farthest=True)

    def easiest(self):
        """(B,) closest positive, closest negative, and anchors that have both."""
        return self._extreme_positive(farthest=False)

    def _extreme_positive(self, *, farthest):
        """(B,) the farthest or closest positive, the closest negative, and anchors with both.

        Among equal distances, the lowest index.
        """
        has_both = (self.class_sizes > 1) & (self.n_negatives > 0)
        if not len(has_both):
            return has_both.long(), has_both.long(), has_both
        masked = torch.where(self.same, torch.inf, self.distances)
        closest_negative = masked.min(dim=1).indices
        if farthest:
            torch.where(self.same, self.distances, masked.new_tensor(-torch.inf), out=masked)
            positive = self.fill_self_(masked, -torch.inf).max(dim=1).indices
        else:
            torch.where(self.same, self.distances, masked.new_tensor(torch.inf), out=masked)
            positive = self.fill_self_(masked, torch.inf).min(dim=1).indices
        return positive, closest_negative, has_both

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
        """FaceNet's taxonomy: int64 Tensor of shape (5,), in the order of :data:`TAXONOMY`."""
        mask = self.positive_mask
        hard, within_margin, active = self.count_all_below(
            [(0.0, True), (margin, True), (margin, False)]
        )
        counts = torch.stack([hard, within_margin, active])
        n_hard, n_within_margin, n_active = torch.where(mask, counts, 0).sum(dim=(1, 2)).unbind()
        n_triplets = torch.where(mask, self.n_negatives[:, None], 0).sum()
        return torch.stack(
            [
                n_triplets,
                n_triplets - n_within_margin,
                n_within_margin - n_hard,
                n_hard,
                n_active,
            ]
        )


def _fill_self_(square, anchors, value):
    """Fill the diagonal of a (B, B) matrix, or each row's own column when the matrix holds the
    rows ``anchors`` (a slice) of one."""
    if anchors is None:
        return square.fill_diagonal_(value)
    rows = torch.arange(square.shape[0], device=square.device)
    square[rows, rows + anchors.start] = value
    return square


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

    def count_many(self, thresholds, inclusive) -> Sequence[torch.Tensor]:
        """``[count(t, inclusive=i) for t, i in zip(thresholds, inclusive)]``."""
        return [self.count(t, inclusive=i) for t, i in zip(thresholds, inclusive)]

    def count_ties(self, thresholds, below):
        """``count(thresholds, inclusive=True)``, given ``below``, its ``<`` version."""
        return self.count(thresholds, inclusive=True)

    def columns(self, positions=None):
        """Columns of the sorted entries, all (B, B) or at ``positions`` (B, K)."""
        return self._columns if positions is None else self._columns.gather(1, positions)

    def pop_columns(self):
        """``columns()``, after which this object answers no further question."""
        columns = self._columns
        del self._values, self._columns
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
        keys.bitwise_left_shift_(32).bitwise_or_(torch.arange(keys.shape[1]))
        keys.numpy().sort(axis=1)
        self._keys = keys

    def count(self, thresholds, *, inclusive):
        bits = _threshold_keys(thresholds)
        if inclusive:  # above every key of the same value, whatever its column
            bits |= 0xFFFFFFFF
        return torch.searchsorted(self._keys, bits)

    def count_many(self, thresholds, inclusive) -> Sequence[torch.Tensor]:
        # One search for all: the keys of the (B, K) blocks side by side, (B, n K).
        keys = []
        for t, i in zip(thresholds, inclusive):
            bits = _threshold_keys(t)
            keys.append(bits | 0xFFFFFFFF if i else bits)
        return torch.searchsorted(self._keys, torch.cat(keys, dim=1)).chunk(len(keys), dim=1)

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
        keys = self._keys
        del self._keys
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


def compact_triplets(positive_columns, negatives, selected):
    """Flatten a (B, K) layout to (anchor, positive, negative) index triples."""
    anchors, slots = torch.nonzero(selected, as_tuple=True)
    return anchors, positive_columns[anchors, slots], negatives[anchors, slots]


# -- the statistics a loss reports -----------------------------------------------------------------


@dataclass(frozen=True)
class Count:
    """A count a loss reports for each batch, summed over an epoch in ``history_``."""

    name: str
    doc: str


@dataclass(frozen=True)
class Fraction:
    """``numerator / denominator`` of two counts of an epoch (NaN when the denominator is 0)."""

    name: str
    numerator: str
    denominator: str
    label: str  # in the console report and the plot legends
    doc: str


@dataclass(frozen=True)
class Statistics:
    """The statistics of one loss: its counts, in the order of its counts vector, and fractions.

    Attributes
    ----------
    counts : tuple of Count
        What the kernel's int64 counts vector holds, entry by entry.
    fractions : tuple of Fraction
        Derived from the epoch's counts.
    taxonomy_every : int
        The taxonomy (the first five counts, :data:`TAXONOMY`) is counted on every
        ``taxonomy_every``-th batch of an epoch (the first, then every ``taxonomy_every``-th), and
        its entries are 0 on the other batches. 1 for a loss that builds the sorted triplet index
        anyway; more for a loss for which the index would be extra work, so that the statistics
        cost at most about a tenth of a training step.
    """

    counts: tuple
    fractions: tuple
    taxonomy_every: int = 1

    @property
    def names(self):
        """The names of the counts, in the order of the counts vector."""
        return tuple(count.name for count in self.counts)

    def as_dict(self, counts):
        """``{name: 0-dim tensor}`` from a counts vector."""
        return dict(zip(self.names, counts.unbind()))

    def vector(self, taxonomy, **counts):
        """The counts vector of a batch: ``taxonomy`` (the :data:`TAXONOMY` counts, a vector),
        then the loss's own counts, given by name and put in the declared order here."""
        own = self.names[len(TAXONOMY) :]
        if set(counts) != set(own):
            raise ValueError(f"Expected the counts {list(own)}; got {sorted(counts)}.")
        return torch.cat([taxonomy, torch.stack([counts[name] for name in own])])

    def epoch_logs(self, counts):
        """The history entries of an epoch's summed counts vector: counts, then fractions."""
        logs = dict(zip(self.names, counts.tolist()))
        for fraction in self.fractions:
            denominator = logs[fraction.denominator]
            logs[fraction.name] = (
                logs[fraction.numerator] / denominator if denominator else math.nan
            )
        return logs


TAXONOMY = (
    Count("n_triplets", "the valid triplets ``(a, p, n)``"),
    Count("n_easy", "easy triplets, ``d(a, n) > d(a, p) + margin``"),
    Count("n_semi_hard", "semi-hard triplets, ``d(a, p) < d(a, n) <= d(a, p) + margin``"),
    Count("n_hard", "hard triplets, ``d(a, n) <= d(a, p)``"),
    Count("n_active", "triplets with a hinge loss above 0, ``d(a, n) < d(a, p) + margin``"),
)
_MINED = (
    Count("n_mined", "the terms the mining rule selected"),
    Count("n_mined_active", "those of them above 0"),
)
_PAIRS = (
    Count("n_pairs", "the unordered pairs"),
    Count("n_positive_pairs", "same-class pairs"),
    Count("n_negative_pairs", "different-class pairs"),
    Count("n_active_pairs", "pairs with a contrastive loss above 0"),
)
TAXONOMY_FRACTIONS = tuple(
    Fraction(f"{name}_fraction", f"n_{name}", "n_triplets", label, f"``n_{name} / n_triplets``")
    for name, label in (("easy", "easy"), ("semi_hard", "semi-hard"), ("hard", "hard"))
)
_ACTIVE_TRIPLETS = Fraction(
    "active_fraction", "n_active", "n_triplets", "active", "``n_active / n_triplets``"
)
_ACTIVE_PAIRS = Fraction(
    "active_fraction", "n_active_pairs", "n_pairs", "active", "``n_active_pairs / n_pairs``"
)

# Counting the taxonomy costs a sort of each anchor's negatives, which the contrastive loss and a
# user's loss do not need: at B = 128 more than the contrastive loss itself. Every 16th batch keeps
# the statistics under about a tenth of a training step (benchmarks/step_time.py).
SAMPLED_TAXONOMY = 16

TRIPLET_STATISTICS = Statistics(TAXONOMY + _MINED, TAXONOMY_FRACTIONS + (_ACTIVE_TRIPLETS,))
CONTRASTIVE_STATISTICS = Statistics(
    TAXONOMY + _MINED + _PAIRS, TAXONOMY_FRACTIONS + (_ACTIVE_PAIRS,), SAMPLED_TAXONOMY
)
CALLABLE_STATISTICS = Statistics(
    TAXONOMY, TAXONOMY_FRACTIONS + (_ACTIVE_TRIPLETS,), SAMPLED_TAXONOMY
)


# -- the loss kernels ------------------------------------------------------------------------------


class BatchLoss(NamedTuple):
    """What a loss kernel returns for one batch.

    Attributes
    ----------
    loss : Tensor of shape ()
        Differentiable.
    counts : int64 Tensor of shape (n_counts,) or None
        The loss's counts (see its :class:`Statistics`), on the device; None when not asked for.
    negative_distances : tuple of two Tensors of shape (), or None
        The sum of the distances between the embeddings of different classes (over ordered pairs)
        and their number, when asked for; the training loop reports their ratio.
    """

    loss: torch.Tensor
    counts: "torch.Tensor | None" = None
    negative_distances: "tuple | None" = None


class PartialLoss(NamedTuple):
    """What a loss kernel returns for some anchors of a batch (``anchors=``), for a process group
    whose ranks split the anchors between them.

    The loss of the batch is ``sum(total) / max(sum(denominator), 1)`` over the parts, and its
    gradient the sum of the parts' divided by the same; the counts and negative distances of the
    batch are the sums of the parts'.

    Attributes
    ----------
    total : Tensor of shape ()
        The sum of these anchors' terms, differentiable (attached to every embedding of the batch).
    denominator : int64 Tensor of shape ()
        These anchors' share of the number the loss divides by.
    counts, negative_distances
        As :class:`BatchLoss`'s, over these anchors' rows.
    """

    total: torch.Tensor
    denominator: torch.Tensor
    counts: "torch.Tensor | None" = None
    negative_distances: "tuple | None" = None


def triplet_kernel(
    embeddings,
    labels,
    *,
    margin,
    mining,
    metric,
    average="all",
    counts=False,
    taxonomy=True,
    spread=False,
):
    """The triplet loss of :func:`sklearn_triplet.losses.triplet_loss`, unvalidated.

    Parameters
    ----------
    embeddings : Tensor of shape (B, d)
    labels : int Tensor of shape (B,)
    margin : float
    mining : {"all", "hard", "semi-hard", "easy-positive"}
    metric : str
        One of :data:`METRICS`.
    average : {"all", "active"}, default="all"
        One of :data:`AVERAGES`.
    counts : bool, default=False
        Return the counts of :data:`TRIPLET_STATISTICS`.
    taxonomy : bool, default=True
        Count the taxonomy (else its entries are 0).
    spread : bool, default=False
        Return the sum and number of the distances between different classes.

    Returns
    -------
    BatchLoss
    """
    loss, vector, negatives, _ = _triplet_terms(
        embeddings, labels, None, margin, mining, metric, average, counts, taxonomy, spread
    )
    return BatchLoss(loss, vector, negatives)


def triplet_part_kernel(
    embeddings,
    labels,
    anchors,
    *,
    margin,
    mining,
    metric,
    average="all",
    counts=False,
    taxonomy=True,
    spread=False,
):
    """The terms of the anchors ``anchors`` (a slice of the batch) of :func:`triplet_kernel`.

    Every mining rule and count of the triplet loss is a sum over anchors, each decided on its
    anchor's row of the batch's distance matrix, so the ranks of a process group split a batch's
    anchors between them; the parts add up to the whole (see :class:`PartialLoss`). The distance
    matrix is the whole batch's, computed as :func:`triplet_kernel` computes it, so that every
    mining decision is the one of one process.

    Parameters as :func:`triplet_kernel`'s.

    Returns
    -------
    PartialLoss
    """
    total, vector, negatives, denominator = _triplet_terms(
        embeddings, labels, anchors, margin, mining, metric, average, counts, taxonomy, spread
    )
    return PartialLoss(total, denominator, vector, negatives)


def _triplet_terms(
    embeddings, labels, anchors, margin, mining, metric, average, counts, taxonomy, spread
):
    """``(loss, counts, negative distances, denominator)`` of the whole batch, divided, or of the
    anchors ``anchors``, undivided."""
    if len(labels) < 2:
        nothing = nothing_to_train_on(embeddings, TRIPLET_STATISTICS, counts, spread)
        zero = labels.new_zeros((), dtype=torch.int64)
        return nothing.loss, nothing.counts, nothing.negative_distances, zero
    with torch.no_grad():
        if anchors is None:
            distances = distance_matrix(embeddings.detach(), None, metric)
        else:  # their rows of the whole matrix: the numbers of one process
            distances = distance_rows(embeddings.detach(), metric, anchors)
        index = TripletIndex(distances, labels, anchors)
        # Counted first: batch-all then reuses the sorted negatives' memory.
        type_counts = index.type_counts(margin) if counts and taxonomy else None
        value, weights, n_mined, n_mined_active, denominator = _TRIPLET_MINING[mining](
            index, margin, average, divide=anchors is None
        )
        negatives = negative_distances(distances, index.same) if spread else None
    if anchors is None:
        loss = _with_distance_gradient(embeddings, distances, weights, value, metric=metric)
    else:
        loss = _with_anchor_distance_gradient(
            embeddings, distances, weights, value, metric=metric, anchors=anchors
        )
    vector = None
    if counts:
        if type_counts is None:
            type_counts = n_mined.new_zeros(len(TAXONOMY))
        vector = TRIPLET_STATISTICS.vector(
            type_counts, n_mined=n_mined, n_mined_active=n_mined_active
        )
    return loss, vector, negatives, denominator


def contrastive_kernel(
    embeddings,
    labels,
    *,
    margin,
    mining,
    metric,
    average="all",
    squared=True,
    counts=False,
    taxonomy=True,
    spread=False,
):
    """The contrastive loss of :func:`sklearn_triplet.losses.contrastive_loss`, unvalidated.

    Parameters and returns as :func:`triplet_kernel`, with ``mining`` in ``{"all", "hard"}``,
    ``squared`` a bool and the counts of :data:`CONTRASTIVE_STATISTICS`. The taxonomy needs the
    sorted triplet index, which the loss itself does not: ``taxonomy=False`` skips it.
    """
    if len(labels) < 2:
        return nothing_to_train_on(embeddings, CONTRASTIVE_STATISTICS, counts, spread)
    with torch.no_grad():
        distances = distance_matrix(embeddings.detach(), None, metric)
        same = labels[:, None] == labels[None, :]
        # Half the derivative of each pair's loss: D for a positive pair,
        # -max(0, margin - D) for a negative one. It is nonzero exactly where
        # the pair's loss, its square, is above 0.
        half_slopes = torch.sub(distances, margin).clamp_max_(0)
        torch.where(same, distances, half_slopes, out=half_slopes)
        n_active_pairs = torch.count_nonzero(half_slopes) // 2 if counts else None
        n_mined_active = n_active_pairs  # unless some pairs are left out below
        selected = _CONTRASTIVE_MINING[mining](distances, labels, same)
        n_pairs = torch.tensor(len(labels) * (len(labels) - 1) // 2, device=same.device)
        if selected is not None:
            torch.where(selected, half_slopes, half_slopes.new_zeros(()), out=half_slopes)
            n_mined = torch.count_nonzero(selected) // 2
            n_mined_active = torch.count_nonzero(half_slopes) // 2 if counts else None
        else:
            n_mined = n_pairs
        if squared and average == "all":  # Hadsell et al.: the mean of the squares
            # Both triangles hold every pair, hence the halves.
            count = n_mined.clamp_min(1).to(distances.dtype)
            row_norms = torch.linalg.vector_norm(half_slopes, dim=1)
            value = _widen(row_norms).square().sum() / (2 * count)
            weights = half_slopes.div_(count)
        else:
            value, weights = _contrastive_terms(half_slopes, same, n_mined, average, squared)
        negatives = negative_distances(distances, same) if spread else None
    loss = _with_distance_gradient(
        embeddings, distances, weights, value, metric=metric, symmetric=True
    )
    if not counts:
        return BatchLoss(loss, None, negatives)
    assert n_active_pairs is not None and n_mined_active is not None  # counted when counts
    with torch.no_grad():
        if taxonomy:
            type_counts = TripletIndex(distances, labels).type_counts(margin)
        else:
            type_counts = n_pairs.new_zeros(len(TAXONOMY))
        n_positive_pairs = (torch.count_nonzero(same) - len(labels)) // 2
        vector = CONTRASTIVE_STATISTICS.vector(
            type_counts,
            n_mined=n_mined,
            n_mined_active=n_mined_active,
            n_pairs=n_pairs,
            n_positive_pairs=n_positive_pairs,
            n_negative_pairs=n_pairs - n_positive_pairs,
            n_active_pairs=n_active_pairs,
        )
    return BatchLoss(loss, vector, negatives)


def _contrastive_terms(half_slopes, same, n_mined, average, squared):
    """The contrastive loss and its derivative in each distance, from the signed pair slopes.

    ``half_slopes`` (B, B) holds ``D`` for a positive pair and ``-max(0, margin - D)`` for a
    negative one (0 for the pairs not mined): a pair's term is its square, or its absolute value
    when not ``squared``, and the term's derivative in ``D`` is twice it, or its sign. With
    ``average="all"`` the terms are summed and divided by ``n_mined``; with ``"active"`` the
    terms of positive pairs are divided by the number of positive pairs above 0, those of
    negative pairs by the number of negative pairs above 0 (pytorch-metric-learning's
    reduction). Both triangles hold every pair: the sums are halved, and so are the weights.
    """
    if squared:
        terms, slopes = half_slopes.square(), half_slopes * 2
    else:
        terms, slopes = half_slopes.abs(), half_slopes.sign()
    if average == "all":
        denominators = n_mined.clamp_min(1).to(half_slopes.dtype)
    else:
        active = half_slopes != 0
        n_positive = torch.count_nonzero(active & same) // 2
        n_negative = torch.count_nonzero(active & ~same) // 2
        denominators = torch.where(same, n_positive, n_negative).clamp_min_(1)
        denominators = denominators.to(half_slopes.dtype)
    value = (_widen(terms) / denominators).sum() / 2
    return value, slopes.div_(denominators * 2)


def callable_kernel(
    loss_function, embeddings, labels, *, margin, metric, counts=False, taxonomy=True, spread=False
):
    """A user's ``loss(embeddings, labels)``; the taxonomy counted with ``margin`` and ``metric``.

    Returns as :func:`triplet_kernel`, with the counts of :data:`CALLABLE_STATISTICS`; the distance
    matrix is computed once, and only when a statistic needs it.

    Raises
    ------
    TypeError
        If the loss is not a 0-dim tensor.
    """
    loss = loss_function(embeddings, labels)
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise TypeError(
            "loss must return a scalar (0-dim) torch.Tensor; got "
            f"{type(loss).__name__} of shape {tuple(getattr(loss, 'shape', ()))}."
        )
    taxonomy = counts and taxonomy
    type_counts = negatives = None
    if taxonomy or spread:
        with torch.no_grad():
            distances = distance_matrix(embeddings.detach(), None, metric)
            index = TripletIndex(distances, labels)
            type_counts = index.type_counts(margin) if taxonomy else None
            negatives = negative_distances(distances, index.same) if spread else None
    if counts and type_counts is None:
        type_counts = torch.zeros(len(TAXONOMY), dtype=torch.int64, device=labels.device)
    return BatchLoss(loss, type_counts, negatives)


def negative_distances(distances, same):
    """Sum of the distances between different classes, over ordered pairs, and their number."""
    negatives = ~same
    return (distances * negatives).sum(), negatives.sum()


def nothing_to_train_on(embeddings, statistics, counts, spread):
    """A zero attached to the graph, zero counts and no negatives, for B < 2."""
    loss = embeddings.sum() * 0
    zero = torch.zeros((), dtype=torch.int64, device=embeddings.device)
    return BatchLoss(
        loss,
        zero.new_zeros(len(statistics.counts)) if counts else None,
        (embeddings.new_zeros(()), zero) if spread else None,
    )


def _batch_all(index, margin, average, divide=True):
    """Mean hinge loss over the active triplets; see :func:`sklearn_triplet.losses.triplet_loss`.

    The triplets mined are the active ones, so both ``average`` rules give that mean. The mining
    rules return ``(value, weights, n_mined, n_mined_active, denominator)``: the value and its
    derivative in each distance divided by ``max(denominator, 1)``, or, without ``divide``, not.
    """
    total, weights, n_active = index.batch_all(margin)
    if not divide:
        return total, weights, n_active, n_active, n_active
    count = n_active.clamp_min(1)
    return total / count, weights.div_(count), n_active, n_active, n_active


def _batch_hard(index, margin, average, divide=True):
    """Mean over anchors of the hardest positive and negative's hinge loss."""
    positives, negatives, selected = index.hardest()
    return _mean_hinge(
        index, positives[:, None], negatives[:, None], selected[:, None], margin, average, divide
    )


def _easy_positive(index, margin, average, divide=True):
    """Mean over anchors of the closest positive and closest negative's hinge loss."""
    positives, negatives, selected = index.easiest()
    return _mean_hinge(
        index, positives[:, None], negatives[:, None], selected[:, None], margin, average, divide
    )


def _semi_hard(index, margin, average, divide=True):
    """Mean over positive pairs of the semi-hard negative's hinge loss."""
    negatives, selected = index.semi_hard_negatives()
    return _mean_hinge(index, index.positive_columns, negatives, selected, margin, average, divide)


def _mean_hinge(index, positives, negatives, selected, margin, average, divide=True):
    """Mean of ``max(0, d(a, p) + margin - d(a, n))`` over the selected triplets.

    Parameters
    ----------
    index : TripletIndex
    positives, negatives : int64 Tensors of shape (B, K)
        Row ``a`` holds the triplets ``(a, positives[a, k], negatives[a, k])``.
    selected : bool Tensor of shape (B, K)
    margin : float
    average : {"all", "active"}
        Divide the sum by the number of selected triplets, or by the number of them whose hinge
        loss is above 0.
    divide : bool, default=True
        Divide; else return the sum and its derivative, undivided.

    Returns
    -------
    value : Tensor of shape (), 0 when nothing is selected (or nothing is active)
    weights : Tensor of shape (B, B), the derivative of ``value`` in each distance
    n_selected, n_active : int64 Tensors of shape ()
    denominator : int64 Tensor of shape (), what ``value`` is divided by (at least 1)
    """
    distances = index.distances
    positive_distances = distances.gather(1, positives)
    threshold = positive_distances + margin
    negative_distances = distances.gather(1, negatives)
    active = selected & (negative_distances < threshold)
    n_selected, n_active = selected.sum(), active.sum()
    denominator = n_active if average == "active" else n_selected
    count = denominator.clamp_min(1).to(distances.dtype) if divide else 1.0
    value = torch.where(active, threshold - negative_distances, 0).sum() / count
    slopes = active.to(distances.dtype) / count
    weights = torch.zeros_like(distances).scatter_add_(1, positives, slopes)
    weights.scatter_add_(1, negatives, slopes.neg_())
    return value, weights, n_selected, n_active, denominator


def _all_pairs(distances, labels, same):
    return None


def _hard_pairs(distances, labels, same):
    return hard_pair_mask(distances, labels, same)


_TRIPLET_MINING = {
    "all": _batch_all,
    "hard": _batch_hard,
    "semi-hard": _semi_hard,
    "easy-positive": _easy_positive,
}
#: How a triplet loss averages its terms: over all the mined triplets, or the active ones only.
AVERAGES = ("all", "active")
_CONTRASTIVE_MINING = {"all": _all_pairs, "hard": _hard_pairs}


@dataclass(frozen=True)
class LossDeclaration:
    """A built-in loss: its name, its kernel, its mining rules, its statistics and its options.

    The registry of built-in losses, :data:`sklearn_triplet._registry.LOSSES`, lists every
    declaration once; the estimators, the training loop, the console report, the history plots, the
    documentation and the trust policy of ``load`` read them from there.

    Attributes
    ----------
    name : str
        Its name; with ``params``, the value of ``loss`` that selects it in the class-label
        estimators (``loss="multi-similarity"``).
    kernel : callable
        ``kernel(embeddings, labels, *, margin, metric, **options, counts, taxonomy, spread) ->
        BatchLoss``.
    minings : tuple of str
        Its mining rules (the values of an estimator's ``mining``), if it has several.
    statistics : Statistics
        The counts and fractions it reports in ``history_``.
    options : tuple of str
        Estimator parameters that the kernel takes as keyword arguments of the same names, beside
        ``margin`` and ``metric`` (for the loss an estimator is built around).
    params : dict or None
        For a loss selected by name: its options and their defaults, which ``loss_params``
        overrides. None: not selectable by name.
    function : str or None
        Import path of its public function, which ``load`` trusts as a ``loss``.
    summary : str
        One line for the documentation of ``loss``.
    """

    name: str
    kernel: Callable[..., BatchLoss]
    minings: tuple
    statistics: Statistics
    options: tuple = ("mining",)
    params: "dict | None" = None
    function: "str | None" = None
    summary: str = ""


TRIPLET = LossDeclaration(
    "triplet",
    triplet_kernel,
    tuple(_TRIPLET_MINING),
    TRIPLET_STATISTICS,
    ("mining", "average"),
    function="sklearn_triplet.losses.triplet_loss",
)
CONTRASTIVE = LossDeclaration(
    "contrastive",
    contrastive_kernel,
    tuple(_CONTRASTIVE_MINING),
    CONTRASTIVE_STATISTICS,
    ("mining", "average", "squared"),
    function="sklearn_triplet.losses.contrastive_loss",
)


# -- the losses of given pairs and triplets --------------------------------------------------------


def paired_distance(x1, x2, metric):
    """Distance between aligned rows, (n, d), (n, d) -> (n,), differentiable everywhere.

    See :func:`sklearn_triplet.distances.paired_distances` for the definitions. The Euclidean
    distance has a zero gradient where it is 0 (the minimum-norm subgradient, as in
    :func:`distance_matrix`); cosine is ``1 - cos`` clamped to ``[0, 2]``, a zero row at distance
    1 from every row.
    """
    if metric == "cosine":
        dots = (x1 * x2).sum(dim=1)
        norms = torch.linalg.vector_norm(x1, dim=1) * torch.linalg.vector_norm(x2, dim=1)
        nonzero = norms > 0
        cosines = torch.where(nonzero, dots / torch.where(nonzero, norms, 1), 0)
        return (1 - cosines).clamp(0, 2)
    squared = (x1 - x2).square().sum(dim=1)
    return squared if metric == "sqeuclidean" else _safe_sqrt(squared)


def _safe_sqrt(squared):
    """``sqrt`` with a zero gradient at 0 instead of an infinite one."""
    positive = squared > 0
    return torch.where(positive, torch.where(positive, squared, 1).sqrt(), 0)


def given_pairs_kernel(
    first,
    second,
    y,
    *,
    margin,
    metric,
    average="all",
    squared=True,
    counts=False,
    spread=False,
):
    """The contrastive loss of :func:`sklearn_triplet.losses.contrastive_loss_on_pairs`.

    Parameters
    ----------
    first, second : Tensor of shape (n_pairs, d)
    y : Tensor of shape (n_pairs,)
        +1 (similar) or -1 (dissimilar).
    margin : float
    metric : str
        One of :data:`METRICS`.
    average : {"all", "active"}, default="all"
        ``"all"``: the sum of the pairs' terms over the number of pairs (Hadsell et al.).
        ``"active"``: the terms of the similar pairs over the number of similar pairs whose term
        is above 0, plus those of the dissimilar pairs over the number of dissimilar pairs whose
        term is above 0 (the reduction of :func:`contrastive_kernel`).
    squared : bool, default=True
        Each pair's term is ``D²`` or ``max(0, margin - D)²`` (Hadsell et al.); False takes them
        unsquared, ``D`` or ``max(0, margin - D)``.
    counts : bool, default=False
        Return the counts of :data:`GIVEN_PAIRS_STATISTICS`.
    spread : bool, default=False
        Return the sum and number of the distances of the dissimilar pairs.

    Returns
    -------
    BatchLoss
    """
    if metric == "euclidean":  # D² straight from the coordinates: smooth at D = 0
        squares = (first - second).square().sum(dim=1)
        distances = _safe_sqrt(squares)
    else:
        distances = paired_distance(first, second, metric)
        squares = distances.square()
    similar = y > 0
    if squared:
        terms = torch.where(similar, squares, (margin - distances).clamp_min(0).square())
    else:
        terms = torch.where(similar, distances, (margin - distances).clamp_min(0))
    if average == "all":
        loss = terms.sum() / max(terms.shape[0], 1)
    else:
        with torch.no_grad():
            active = terms.detach() > 0
            n_similar = torch.count_nonzero(active & similar).clamp_min(1).to(terms.dtype)
            n_dissimilar = torch.count_nonzero(active & ~similar).clamp_min(1).to(terms.dtype)
            denominators = torch.where(similar, n_similar, n_dissimilar)
        loss = (terms / denominators).sum()
    with torch.no_grad():
        dissimilar = ~similar
        negatives = (distances.detach()[dissimilar].sum(), dissimilar.sum()) if spread else None
        if not counts:
            return BatchLoss(loss, None, negatives)
        n_pairs = torch.tensor(terms.shape[0], device=terms.device)
        n_similar = torch.count_nonzero(similar)
        pair_counts = torch.stack(
            [n_pairs, n_similar, n_pairs - n_similar, torch.count_nonzero(terms.detach() > 0)]
        )
    return BatchLoss(loss, pair_counts, negatives)


def given_triplets_kernel(
    anchors, positives, negatives, *, margin, metric, average="all", counts=False, spread=False
):
    """The triplet loss of :func:`sklearn_triplet.losses.triplet_loss_on_triplets`.

    Parameters
    ----------
    anchors, positives, negatives : Tensor of shape (n_triplets, d)
    margin : float
    metric : str
        One of :data:`METRICS`.
    average : {"all", "active"}, default="all"
        The sum of the hinge terms over the number of triplets (FaceNet), or over the number of
        active triplets, those whose term is above 0.
    counts : bool, default=False
        Return the counts of :data:`GIVEN_TRIPLETS_STATISTICS` (the taxonomy).
    spread : bool, default=False
        Return the sum and number of the anchor-negative distances.

    Returns
    -------
    BatchLoss
    """
    positive_distances = paired_distance(anchors, positives, metric)
    negative_distances = paired_distance(anchors, negatives, metric)
    terms = (positive_distances - negative_distances + margin).clamp_min(0)
    if average == "all":
        loss = terms.sum() / max(terms.shape[0], 1)
    else:
        n_active = torch.count_nonzero(terms.detach() > 0).clamp_min(1).to(terms.dtype)
        loss = terms.sum() / n_active
    with torch.no_grad():
        d_ap, d_an = positive_distances.detach(), negative_distances.detach()
        n_triplets = torch.tensor(terms.shape[0], device=terms.device)
        spread_sums = (d_an.sum(), n_triplets) if spread else None
        if not counts:
            return BatchLoss(loss, None, spread_sums)
        threshold = d_ap + margin
        easy, hard = d_an > threshold, d_an <= d_ap
        type_counts = torch.stack(
            [
                n_triplets,
                torch.count_nonzero(easy),
                torch.count_nonzero(~easy & ~hard),
                torch.count_nonzero(hard),
                torch.count_nonzero(d_an < threshold),
            ]
        )
    return BatchLoss(loss, type_counts, spread_sums)


GIVEN_PAIRS_STATISTICS = Statistics(
    (
        Count("n_pairs", "the given pairs"),
        Count("n_positive_pairs", "similar pairs, ``y = +1``"),
        Count("n_negative_pairs", "dissimilar pairs, ``y = -1``"),
        Count("n_active_pairs", "pairs with a contrastive loss above 0"),
    ),
    (_ACTIVE_PAIRS,),
)
GIVEN_TRIPLETS_STATISTICS = Statistics(TAXONOMY, TAXONOMY_FRACTIONS + (_ACTIVE_TRIPLETS,))

GIVEN_PAIRS = LossDeclaration("given-pairs", given_pairs_kernel, (), GIVEN_PAIRS_STATISTICS, ())
GIVEN_TRIPLETS = LossDeclaration(
    "given-triplets", given_triplets_kernel, (), GIVEN_TRIPLETS_STATISTICS, ()
)
