"""Distances between embeddings, for torch tensors and NumPy arrays alike.

Everything in this library is a distance: small means similar. Cosine is
``1 - cos``, so it lies in ``[0, 2]``, and a zero row is at cosine distance 1
from every other row, as in scikit-learn's
:func:`~sklearn.metrics.pairwise.cosine_distances`; :data:`METRICS` lists the
metrics every part of the library accepts.

On tensors the matrices are computed with one matrix product
(``||x||² + ||y||² - 2 <x, y>`` for the Euclidean metrics), in O(n m) memory,
on the device and in the dtype of the input, and are differentiable
everywhere, with a finite gradient at distance 0. On arrays they come from
scikit-learn.
"""

import numpy as np
import torch
from sklearn.metrics import pairwise_distances as sklearn_pairwise_distances
from sklearn.preprocessing import normalize
from sklearn.utils.extmath import row_norms

from ._kernels import METRICS, distance_matrix
from ._validation import (
    StrOptions,
    check_array,
    check_embeddings,
    invalid,
    validate_function_params,
)

__all__ = ["METRICS", "paired_distances", "pairwise_distances"]


@validate_function_params(
    {
        "x": [torch.Tensor, "array-like"],
        "y": [torch.Tensor, "array-like", None],
        "metric": [StrOptions(set(METRICS))],
    }
)
def pairwise_distances(x, y=None, *, metric="euclidean"):
    """Distance between every row of ``x`` and every row of ``y``, for tensors and arrays alike.

    Parameters
    ----------
    x : Tensor of shape (n, d), or array-like of shape (n, d)
        Floating-point embeddings. A tensor gives a differentiable tensor computed here; an
        array-like gives a NumPy array computed by scikit-learn's
        :func:`sklearn.metrics.pairwise_distances` (SciPy's ``cdist`` for ``"sqeuclidean"``).
    y : Tensor of shape (m, d), or array-like of shape (m, d), default=None
        Of the kind of ``x``; a tensor with the dtype and device of ``x``. ``None``
        means ``x`` against itself: the result is then exactly symmetric and
        its diagonal is exactly 0.
    metric : {"euclidean", "sqeuclidean", "cosine"}, default="euclidean"
        - ``"euclidean"``: ``||x_i - y_j||``. Its gradient at distance 0 (the
          diagonal, duplicate points) is taken to be 0, the minimum-norm
          subgradient, instead of the NaN of a plain square root.
        - ``"sqeuclidean"``: ``||x_i - y_j||²``, clamped at 0 from below.
        - ``"cosine"``: ``1 - cos(x_i, y_j)``, clamped to ``[0, 2]``. A zero
          vector is at distance 1 from every other row, another zero vector
          included, as in scikit-learn's
          :func:`~sklearn.metrics.pairwise.cosine_distances` (the diagonal of
          ``x`` against itself stays 0).

    Returns
    -------
    distances : Tensor of shape (n, m), or ndarray of shape (n, m)
        A tensor of the dtype and device of ``x``, or a float64 array.

    Raises
    ------
    ValueError
        If ``metric`` is not one of :data:`METRICS`, or the shapes do not fit.

    See Also
    --------
    paired_distances : Distances between aligned rows of two arrays.

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
    >>> pairwise_distances([[0.0, 0.0], [3.0, 4.0]], [[1.0, 0.0]], metric="cosine")
    array([[1. ],
           [0.4]])
    """
    if not isinstance(x, torch.Tensor):
        return sklearn_pairwise_distances(x, y, metric=metric)
    check_embeddings("x", x)
    if y is not None:
        if not isinstance(y, torch.Tensor):
            raise invalid("y", "a torch.Tensor when x is one", type(y).__name__, TypeError)
        check_embeddings("y", y)
        if y.shape[1] != x.shape[1] or y.dtype != x.dtype or y.device != x.device:
            raise invalid(
                "y",
                "a tensor with the number of columns, dtype and device of x",
                f"x: {tuple(x.shape)}, {x.dtype}, {x.device} and "
                f"y: {tuple(y.shape)}, {y.dtype}, {y.device}",
            )
    return distance_matrix(x, y, metric)


@validate_function_params(
    {
        "X1": ["array-like"],
        "X2": ["array-like"],
        "metric": [StrOptions(set(METRICS))],
    }
)
def paired_distances(X1, X2, *, metric="euclidean"):
    """Distances between aligned rows of two embedding arrays.

    ``"euclidean"`` is scikit-learn's :func:`~sklearn.metrics.pairwise.paired_euclidean_distances`
    and ``"sqeuclidean"`` its square, without the square root. ``"cosine"`` is ``1 - cos`` of the
    rows scaled to unit norm by :func:`sklearn.preprocessing.normalize`: a zero row is at distance
    1 from every other row, as in :func:`~sklearn.metrics.pairwise.cosine_distances` (scikit-learn's
    :func:`~sklearn.metrics.pairwise.paired_cosine_distances` puts it at 0.5).

    Parameters
    ----------
    X1 : array-like of shape (n_pairs, n_components)
        First embedding of each pair.
    X2 : array-like of shape (n_pairs, n_components)
        Second embedding of each pair.
    metric : {"euclidean", "sqeuclidean", "cosine"}, default="euclidean"
        Distance; ``"cosine"`` is ``1 - cos``.

    Returns
    -------
    distances : ndarray of shape (n_pairs,)
        ``distances[i]`` is the distance between ``X1[i]`` and ``X2[i]``.

    See Also
    --------
    pairwise_distances : Distances between all the rows of two arrays.
    sklearn_triplet.verification.paired_embedding_distances : Embed two arrays of samples, then
        measure.

    Examples
    --------
    >>> from sklearn_triplet.distances import paired_distances
    >>> paired_distances([[0.0, 0.0], [1.0, 0.0]], [[3.0, 4.0], [0.0, 2.0]])
    array([5.        , 2.23606798])
    >>> paired_distances([[1.0, 0.0], [0.0, 0.0]], [[0.0, 2.0], [0.0, 0.0]], metric="cosine")
    array([1., 1.])
    """
    X1 = check_array(X1, dtype=np.float64, input_name="X1")
    X2 = check_array(X2, dtype=np.float64, input_name="X2")
    if X1.shape != X2.shape:
        raise invalid("X1 and X2", "of the same shape", f"{X1.shape} and {X2.shape}")
    if metric == "cosine":
        return 1.0 - np.einsum("ij,ij->i", np.asarray(normalize(X1)), np.asarray(normalize(X2)))
    return row_norms(X1 - X2, squared=metric == "sqeuclidean")
