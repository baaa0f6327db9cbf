"""Pairwise distance matrices between embeddings.

Everything in this library is a distance: small means similar. Cosine is
``1 - cos``, so it lies in ``[0, 2]``. The matrices are computed with one
matrix product (``||x||² + ||y||² - 2 <x, y>`` for the Euclidean metrics), in
O(n m) memory, on the device and in the dtype of the input, and are
differentiable everywhere, with a finite gradient at distance 0.
"""

import torch

__all__ = ["METRICS", "pairwise_distances"]

METRICS = ("euclidean", "sqeuclidean", "cosine")


def pairwise_distances(x, y=None, *, metric="euclidean"):
    """Distance between every row of ``x`` and every row of ``y``.

    Parameters
    ----------
    x : Tensor of shape (n, d)
        Floating-point embeddings.
    y : Tensor of shape (m, d), default=None
        Floating-point embeddings with the dtype and device of ``x``. ``None``
        means ``x`` against itself: the result is then exactly symmetric and
        its diagonal is exactly 0.
    metric : {"euclidean", "sqeuclidean", "cosine"}, default="euclidean"
        - ``"euclidean"``: ``||x_i - y_j||``. Its gradient at distance 0 (the
          diagonal, duplicate points) is taken to be 0, the minimum-norm
          subgradient, instead of the NaN of a plain square root.
        - ``"sqeuclidean"``: ``||x_i - y_j||²``, clamped at 0 from below.
        - ``"cosine"``: ``1 - cos(x_i, y_j)``, clamped to ``[0, 2]``. A zero
          vector is at distance 1 from every non-zero vector (as if
          orthogonal to all) and at distance 0 from another zero vector.

    Returns
    -------
    distances : Tensor of shape (n, m)
        Same dtype and device as ``x``.

    Raises
    ------
    ValueError
        If ``metric`` is not one of :data:`METRICS`, or the shapes do not fit.

    Notes
    -----
    All three metrics use the expansion ``||x||² + ||y||² - 2 <x, y>`` (as
    :func:`torch.cdist` does for large inputs), cosine on the rows scaled to
    unit norm, with a hand-written backward of two matrix products. The
    expansion rounds: two equal non-integer rows come out at a distance of
    the order of ``sqrt(eps) * ||x||`` rather than exactly 0. The gradient
    stays finite there as well, since a rounded squared distance is either
    exactly 0 or at least of the order of ``eps * ||x||²``.

    Examples
    --------
    >>> import torch
    >>> from sklearn_triplet.distances import pairwise_distances
    >>> x = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    >>> pairwise_distances(x)
    tensor([[0., 5.],
            [5., 0.]])
    >>> pairwise_distances(x, metric="sqeuclidean")
    tensor([[ 0., 25.],
            [25.,  0.]])
    >>> pairwise_distances(x, torch.tensor([[1.0, 0.0]]), metric="cosine")
    tensor([[1.0000],
            [0.4000]])
    """
    if metric not in _METRIC_FUNCTIONS:
        raise ValueError(
            f"metric must be one of {_quoted(METRICS)}; got {metric!r}."
        )
    _check_embeddings("x", x)
    if y is not None:
        _check_embeddings("y", y)
        if y.shape[1] != x.shape[1] or y.dtype != x.dtype or y.device != x.device:
            raise ValueError(
                "y must have the number of columns, dtype and device of x; got "
                f"x: {tuple(x.shape)}, {x.dtype}, {x.device} and "
                f"y: {tuple(y.shape)}, {y.dtype}, {y.device}."
            )
    return _METRIC_FUNCTIONS[metric](x, y)


def _squared_euclidean(x, y):
    """Squared Euclidean distances, (n, d), (m, d) or None -> (n, m), >= 0."""
    return _ExpandedDistances.apply(x, y, True, 1.0, None)


def _euclidean(x, y):
    """Euclidean distances, with a zero gradient at distance 0."""
    return _ExpandedDistances.apply(x, y, False, 1.0, None)


def _cosine(x, y):
    """Cosine distances ``1 - cos``, zero vectors handled as documented.

    For unit vectors ``1 - cos(u, v) = ||u - v||² / 2``. Zero rows get a unit
    extra coordinate (and every other row a zero one), which puts them at
    squared distance 2 (distance 1) from every unit row and 0 from each other.
    The clamp at 2 only removes rounding.
    """
    return _ExpandedDistances.apply(
        _unit_rows(x), None if y is None else _unit_rows(y), True, 0.5, 2.0
    )


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
        out.clamp_min_(0)
        if not squared:
            out.sqrt_()
        if scale != 1:
            out.mul_(scale)
        if upper is not None:
            out.clamp_max_(upper)
        return out

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, y, squared, scale, _ = inputs
        ctx.squared, ctx.scale = squared, scale
        ctx.save_for_backward(x, y, output)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
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
    if metric == "cosine":  # D = ||u_i - u_j||² / 2 for the rows u of _unit_rows(x)
        points, factor = _unit_rows(x), 1.0
    elif metric == "sqeuclidean":
        points, factor = x, 2.0
    else:  # d ||x_i - x_j|| / d x_i = (x_i - x_j) / d, taken as 0 at d = 0
        points, factor = x, 1.0
        weights.div_(distances).masked_fill_(distances == 0, 0)
    weights.fill_diagonal_(0)
    return _DistanceGradient.apply(points, weights, value.to(x.dtype), factor, symmetric)


class _DistanceGradient(torch.autograd.Function):
    """Returns ``value``; backward gives ``sum_ij W_ij (p_i - p_j)`` to each point ``p_i``.

    With ``W`` the prepared weights times ``factor``, that is
    ``grad_p = rowsum(W + W.T) * p - (W + W.T) @ p``.
    """

    @staticmethod
    def forward(points, weights, value, factor, symmetric):
        return value.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        points, weights, _, factor, symmetric = inputs
        ctx.factor, ctx.symmetric = factor, symmetric
        ctx.save_for_backward(points, weights)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        points, weights = ctx.saved_tensors
        if ctx.symmetric:
            grad_points = (weights.sum(dim=1)[:, None] * points - weights @ points) * 2
        else:
            row_weights = weights.sum(dim=1) + weights.sum(dim=0)
            grad_points = row_weights[:, None] * points - weights @ points - weights.mT @ points
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


_METRIC_FUNCTIONS = {
    "euclidean": _euclidean,
    "sqeuclidean": _squared_euclidean,
    "cosine": _cosine,
}


def _check_embeddings(name, tensor):
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(tensor).__name__}.")
    if tensor.ndim != 2 or not tensor.is_floating_point():
        raise ValueError(
            f"{name} must be a 2-D floating-point tensor of shape (n_samples, "
            f"n_features); got shape {tuple(tensor.shape)} and dtype {tensor.dtype}."
        )


def _quoted(options):
    return ", ".join(repr(option) for option in options)
