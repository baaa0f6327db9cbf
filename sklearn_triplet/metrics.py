"""Retrieval metrics for embeddings: precision@1, R-precision and MAP@R.

The definitions follow Musgrave, Belongie and Lim, "A Metric Learning Reality
Check" (ECCV 2020). Every sample of ``X`` is a query. It ranks the reference
set by distance, nearest first, and an item is *relevant* when it has the
query's class. ``R`` is the number of relevant items in the reference set.

- precision@1 is the fraction of queries whose nearest item is relevant;
- R-precision is the mean over queries of the fraction of relevant items among
  the ``R`` nearest;
- MAP@R is the mean over queries of ``(1/R) * sum_{i=1..R} P(i) * rel(i)``,
  where ``rel(i)`` is 1 when the item at rank ``i`` is relevant and ``P(i)``
  is the precision among the ``i`` nearest.

Without a reference set the metrics are computed *leave-one-out*: ``X`` is
also the reference set and a query never retrieves itself, so ``R`` is the
number of *other* samples of its class. Queries with ``R == 0`` are left out,
as in that paper.

Ties
----
Items at exactly the same distance from a query form a tie group. Every metric
reports its *expected value when the ranks inside each tie group are drawn
uniformly at random*, computed exactly in closed form. The score therefore
does not depend on the order of the samples, and an embedding that collapses
all samples onto one point scores at chance level instead of being rewarded
by a lucky order. Distances are computed pair by pair (no ``|x|^2 - 2 x.y +
|y|^2`` expansion), so identical embeddings tie exactly.

Distances
---------
``"euclidean"`` and ``"sqeuclidean"`` rank items identically, so they give
the same scores. ``"cosine"`` is ``1 - cos``; a zero embedding is at distance 1
from every other embedding, as in scikit-learn's
:func:`~sklearn.metrics.pairwise.cosine_distances`. The distances come from
:func:`sklearn_triplet.distances.pairwise_distances`.

Memory and time
---------------
Queries are processed in chunks of ``chunk_size`` rows, so memory is
``O(chunk_size * n_reference)``; time is ``O(n_queries * n_reference *
n_features)`` for the distances plus a partial sort per query.

Scorers
-------
:func:`make_retrieval_scorer` and the ready-made :data:`map_at_r_scorer`,
:data:`precision_at_1_scorer` and :data:`r_precision_scorer` are callables
``scorer(estimator, X, y) -> float`` for ``GridSearchCV(scoring=...)``: they
embed ``X`` with ``estimator.transform`` and compute the metric
leave-one-out on the held-out fold. Given a Pipeline that ends in a
neighbours estimator or a classifier, such as
``Pipeline([("emb", TripletEmbedder()), ("knn", KNeighborsClassifier())])``,
they score the embedding made by the steps before that last one (what it
searches), in the embedder's metric.
"""

from numbers import Integral

import numpy as np
from sklearn.utils.validation import check_consistent_length, column_or_1d

from ._validation import (
    Interval,
    StrOptions,
    check_array,
    embedding_part,
    encode_labels,
    invalid,
    validate_function_params,
)
from .distances import METRICS, pairwise_distances

__all__ = [
    "make_retrieval_scorer",
    "map_at_r",
    "map_at_r_scorer",
    "precision_at_1",
    "precision_at_1_scorer",
    "r_precision",
    "r_precision_scorer",
    "retrieval_scores",
]

# One chunk's distance matrix holds about this many entries (32 MB in float64).
_CHUNK_ENTRIES = 2**22

# Distances that rank the reference items: "euclidean" ranks exactly like "sqeuclidean", whose
# SciPy cdist is computed pair by pair, so identical embeddings tie exactly.
_RANKING_METRIC = {"euclidean": "sqeuclidean", "sqeuclidean": "sqeuclidean", "cosine": "cosine"}

_CONSTRAINTS = {
    "X": ["array-like"],
    "y": ["array-like"],
    "metric": [StrOptions(set(METRICS))],
    "X_reference": ["array-like", None],
    "y_reference": ["array-like", None],
    "chunk_size": [Interval(Integral, 1, None, closed="left"), None],
}


def _validate(X, y, X_reference, y_reference):
    """Check the inputs; return float64 arrays, label codes and the mode."""
    if (X_reference is None) != (y_reference is None):
        raise invalid(
            "X_reference and y_reference",
            "given together or not at all",
            f"X_reference={'None' if X_reference is None else 'an array'} and "
            f"y_reference={'None' if y_reference is None else 'an array'}",
        )
    X = check_array(X, dtype=np.float64, input_name="X")
    y = column_or_1d(y, warn=True)
    check_consistent_length(X, y)
    leave_one_out = X_reference is None
    if leave_one_out:
        X_reference, y_reference = X, y
    else:
        X_reference = check_array(X_reference, dtype=np.float64, input_name="X_reference")
        y_reference = column_or_1d(y_reference, warn=True)
        check_consistent_length(X_reference, y_reference)
        if X.shape[1] != X_reference.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} features, but X_reference has "
                f"{X_reference.shape[1]} features; they must match."
            )
    codes, codes_reference = encode_labels(y, y_reference)
    return X, codes, X_reference, codes_reference, leave_one_out


def _expected_ranking(distances, relevant, k):
    """Expected hits and MAP terms at ranks 1..k under random tie-breaking.

    Parameters
    ----------
    distances : ndarray of shape (n_queries, n_reference)
        Distances from each query to every reference item; excluded items are
        ``+inf``. Every row has at least ``k`` finite entries.
    relevant : ndarray of shape (n_queries, n_reference), dtype=bool
        Whether each reference item has the query's class.
    k : int
        Number of ranks to return, ``1 <= k <= n_reference``.

    Returns
    -------
    hit : ndarray of shape (n_queries, k)
        ``E[rel(i)]`` for ranks ``i = 1..k``.
    ap_term : ndarray of shape (n_queries, k)
        ``E[P(i) * rel(i)]`` for ranks ``i = 1..k``.

    Notes
    -----
    A tie group holding ranks ``s+1..s+g`` with ``m`` relevant items, after
    ``c`` relevant items at smaller distances, gives rank ``i = s + j``
    ``E[rel(i)] = m/g`` and ``E[P(i) rel(i)] = (m/g (c + 1) + (j - 1) m (m-1) /
    (g (g-1))) / i``, since two distinct places of a random order are both
    relevant with probability ``m (m-1) / (g (g-1))``. Groups are read from the
    ``k`` nearest items, except the last one, which may continue past rank
    ``k`` and is counted over the whole row.
    """
    n_queries = distances.shape[0]
    nearest = np.argpartition(distances, k - 1, axis=1)[:, :k]
    near_distances = np.take_along_axis(distances, nearest, axis=1)
    order = np.argsort(near_distances, axis=1, kind="stable")
    nearest = np.take_along_axis(nearest, order, axis=1)
    near_distances = np.take_along_axis(near_distances, order, axis=1)
    rel = np.take_along_axis(relevant, nearest, axis=1)

    rank0 = np.broadcast_to(np.arange(k), (n_queries, k))
    opens = np.ones((n_queries, k), dtype=bool)
    opens[:, 1:] = near_distances[:, 1:] != near_distances[:, :-1]
    closes = np.ones((n_queries, k), dtype=bool)
    closes[:, :-1] = opens[:, 1:]
    start = np.maximum.accumulate(np.where(opens, rank0, 0), axis=1)
    end = np.minimum.accumulate(np.where(closes, rank0, k - 1)[:, ::-1], axis=1)[:, ::-1]
    cumulative = np.zeros((n_queries, k + 1))
    cumulative[:, 1:] = np.cumsum(rel, axis=1)
    before = np.take_along_axis(cumulative, start, axis=1)
    group_relevant = np.take_along_axis(cumulative, end + 1, axis=1) - before
    group_size = (end - start + 1).astype(np.float64)

    # The farthest group may hold items beyond rank k: count it over the row.
    farthest = near_distances[:, -1:]
    in_farthest = near_distances == farthest
    tied = distances == farthest
    extra_size = tied.sum(axis=1) - in_farthest.sum(axis=1)
    extra_relevant = (tied & relevant).sum(axis=1) - (in_farthest & rel).sum(axis=1)
    group_size += in_farthest * extra_size[:, None]
    group_relevant += in_farthest * extra_relevant[:, None]

    hit = group_relevant / group_size
    pair = np.divide(
        group_relevant * (group_relevant - 1),
        group_size * (group_size - 1),
        out=np.zeros_like(hit),
        where=group_size > 1,
    )
    ap_term = (hit * (before + 1) + (rank0 - start) * pair) / (rank0 + 1)
    return hit, ap_term


def _per_query_scores(
    X, codes, X_reference, codes_reference, leave_one_out, metric, chunk_size, names
):
    """Per-query scores for each name in ``names``, queries with R == 0 left out."""
    ranking_metric = _RANKING_METRIC[metric]
    n_queries, n_reference = X.shape[0], X_reference.shape[0]
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ENTRIES // n_reference)
    class_counts = np.bincount(codes_reference, minlength=codes.max() + 1)
    scores = {name: [] for name in names}
    for begin in range(0, n_queries, chunk_size):
        rows = np.arange(begin, min(begin + chunk_size, n_queries))
        n_relevant = class_counts[codes[rows]] - int(leave_one_out)
        kept = n_relevant > 0
        if not kept.any():
            continue
        rows, n_relevant = rows[kept], n_relevant[kept]
        distances = pairwise_distances(X[rows], X_reference, metric=ranking_metric)
        relevant = codes[rows, None] == codes_reference[None, :]
        if leave_one_out:
            distances[np.arange(len(rows)), rows] = np.inf
            relevant[np.arange(len(rows)), rows] = False
        k = 1 if names == ("precision_at_1",) else int(n_relevant.max())
        hit, ap_term = _expected_ranking(distances, relevant, k)
        within_r = np.arange(k) < n_relevant[:, None]
        for name in names:
            if name == "precision_at_1":
                scores[name].append(hit[:, 0])
            elif name == "r_precision":
                scores[name].append((hit * within_r).sum(axis=1) / n_relevant)
            else:
                scores[name].append((ap_term * within_r).sum(axis=1) / n_relevant)
    if not scores[names[0]]:
        raise ValueError(
            "No query has an item of its own class in the reference set (R = 0 for "
            "every query), so retrieval metrics are undefined. Without a reference "
            "set, at least one class needs two or more samples."
        )
    return {name: np.concatenate(values) for name, values in scores.items()}


def _retrieval(names, X, y, metric, X_reference, y_reference, chunk_size):
    validated = _validate(X, y, X_reference, y_reference)
    per_query = _per_query_scores(*validated, metric, chunk_size, names)
    return {name: float(values.mean()) for name, values in per_query.items()}


_SIGNATURE_DOC = """
    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Embeddings of the queries.
    y : array-like of shape (n_samples,)
        Class labels of the queries (integers, strings or other hashable values).
    metric : {"euclidean", "sqeuclidean", "cosine"}, default="euclidean"
        Distance used to rank the reference items; ``"cosine"`` is ``1 - cos``.
    X_reference : array-like of shape (n_reference, n_features), default=None
        Embeddings to retrieve from. When None, retrieval is leave-one-out
        within ``X``: a query never retrieves itself.
    y_reference : array-like of shape (n_reference,), default=None
        Class labels of ``X_reference``; given together with it.
    chunk_size : int, default=None
        Number of queries processed at once; memory is
        ``O(chunk_size * n_reference)``. None picks the largest chunk whose
        distance matrix has at most about 4 million entries (a working set
        of about 250 MB).
"""


@validate_function_params(_CONSTRAINTS)
def precision_at_1(
    X, y, *, metric="euclidean", X_reference=None, y_reference=None, chunk_size=None
):
    """Fraction of queries whose nearest reference item has their class.

    Queries without any other item of their class in the reference set
    (``R == 0``) are left out. Items tied at the nearest distance count in
    expectation over a random order: a tie of ``g`` items of which ``m`` are
    relevant scores ``m / g``.
    {signature}
    Returns
    -------
    score : float
        Precision@1 in ``[0, 1]``.

    Raises
    ------
    ValueError
        If no query has ``R >= 1``.

    See Also
    --------
    r_precision : Precision among the ``R`` nearest items.
    map_at_r : Mean average precision at ``R``.

    References
    ----------
    .. [1] K. Musgrave, S. Belongie and S.-N. Lim, "A Metric Learning Reality
       Check", ECCV 2020.

    Examples
    --------
    >>> from sklearn_triplet.metrics import precision_at_1
    >>> X = [[0.0], [1.0], [3.0], [4.0], [10.0]]
    >>> y = [0, 0, 1, 0, 1]
    >>> precision_at_1(X, y)
    0.4

    Ties count in expectation: when every embedding is the same point, each
    query's nearest item is one of 3 tied items, 1 of them of its class.

    >>> round(precision_at_1([[0.0, 0.0]] * 4, ["a", "a", "b", "b"]), 4)
    0.3333
    """
    return _retrieval(("precision_at_1",), X, y, metric, X_reference, y_reference, chunk_size)[
        "precision_at_1"
    ]


@validate_function_params(_CONSTRAINTS)
def r_precision(X, y, *, metric="euclidean", X_reference=None, y_reference=None, chunk_size=None):
    """Mean fraction of relevant items among each query's ``R`` nearest.

    ``R`` is the number of reference items with the query's class (other than
    the query itself in leave-one-out mode). Queries with ``R == 0`` are left
    out. Tied items count in expectation over a random order.
    {signature}
    Returns
    -------
    score : float
        R-precision in ``[0, 1]``.

    Raises
    ------
    ValueError
        If no query has ``R >= 1``.

    See Also
    --------
    precision_at_1 : Precision of the nearest item alone.
    map_at_r : Also rewards relevant items ranked first within the ``R`` nearest.

    References
    ----------
    .. [1] K. Musgrave, S. Belongie and S.-N. Lim, "A Metric Learning Reality
       Check", ECCV 2020.

    Examples
    --------
    >>> from sklearn_triplet.metrics import r_precision
    >>> X = [[0.0], [1.0], [3.0], [4.0], [10.0]]
    >>> y = [0, 0, 1, 0, 1]
    >>> round(r_precision(X, y), 4)
    0.3
    """
    return _retrieval(("r_precision",), X, y, metric, X_reference, y_reference, chunk_size)[
        "r_precision"
    ]


@validate_function_params(_CONSTRAINTS)
def map_at_r(X, y, *, metric="euclidean", X_reference=None, y_reference=None, chunk_size=None):
    """Mean average precision at ``R`` (MAP@R).

    For a query with ``R`` relevant reference items, average precision at
    ``R`` is ``(1/R) * sum_{i=1..R} P(i) * rel(i)``, with ``rel(i)`` 1 when the
    item at rank ``i`` has the query's class and ``P(i)`` the precision among
    the ``i`` nearest. MAP@R is its mean over queries; queries with ``R == 0``
    are left out. Tied items count in expectation over a random order.
    {signature}
    Returns
    -------
    score : float
        MAP@R in ``[0, 1]``.

    Raises
    ------
    ValueError
        If no query has ``R >= 1``.

    See Also
    --------
    precision_at_1 : Precision of the nearest item alone.
    r_precision : Precision among the ``R`` nearest items, whatever their order.
    retrieval_scores : All three metrics from one pass over the distances.

    References
    ----------
    .. [1] K. Musgrave, S. Belongie and S.-N. Lim, "A Metric Learning Reality
       Check", ECCV 2020.

    Examples
    --------
    >>> from sklearn_triplet.metrics import map_at_r
    >>> X = [[0.0], [1.0], [3.0], [4.0], [10.0]]
    >>> y = [0, 0, 1, 0, 1]
    >>> round(map_at_r(X, y), 4)
    0.25

    Queries retrieving from a separate reference set:

    >>> map_at_r([[0.2], [10.4]], ["cat", "dog"],
    ...          X_reference=[[0.0], [1.0], [10.0], [11.0]],
    ...          y_reference=["cat", "cat", "dog", "dog"])
    1.0
    """
    return _retrieval(("map_at_r",), X, y, metric, X_reference, y_reference, chunk_size)["map_at_r"]


@validate_function_params(_CONSTRAINTS)
def retrieval_scores(
    X, y, *, metric="euclidean", X_reference=None, y_reference=None, chunk_size=None
):
    """Precision@1, R-precision and MAP@R from one pass over the distances.

    Same definitions as :func:`precision_at_1`, :func:`r_precision` and
    :func:`map_at_r`, at the cost of one of them.
    {signature}
    Returns
    -------
    scores : dict
        ``{"precision_at_1": float, "r_precision": float, "map_at_r": float}``.

    Raises
    ------
    ValueError
        If no query has ``R >= 1``.

    Examples
    --------
    >>> from sklearn_triplet.metrics import retrieval_scores
    >>> X = [[0.0], [1.0], [3.0], [4.0], [10.0]]
    >>> y = [0, 0, 1, 0, 1]
    >>> {name: round(value, 4) for name, value in retrieval_scores(X, y).items()}
    {'precision_at_1': 0.4, 'r_precision': 0.3, 'map_at_r': 0.25}
    """
    return _retrieval(
        ("precision_at_1", "r_precision", "map_at_r"),
        X,
        y,
        metric,
        X_reference,
        y_reference,
        chunk_size,
    )


for _function in (precision_at_1, r_precision, map_at_r, retrieval_scores):
    if _function.__doc__:  # None under python -OO
        _function.__doc__ = _function.__doc__.replace("{signature}", _SIGNATURE_DOC)
del _function

_METRIC_FUNCTIONS = {
    "precision_at_1": precision_at_1,
    "r_precision": r_precision,
    "map_at_r": map_at_r,
}


class _RetrievalScorer:
    """``scorer(estimator, X, y) -> float``; see :func:`make_retrieval_scorer`."""

    def __init__(self, name, metric, chunk_size):
        self.name = name
        self.metric = metric
        self.chunk_size = chunk_size

    def __call__(self, estimator, X, y):
        if y is None:
            raise ValueError(f"The {self.name} scorer needs class labels y; got y=None.")
        embedder, metric = embedding_part(estimator, self.metric)
        embedding = embedder.transform(X)
        return _METRIC_FUNCTIONS[self.name](embedding, y, metric=metric, chunk_size=self.chunk_size)

    def __repr__(self):
        options = "".join(
            f", {key}={value!r}"
            for key, value in (("metric", self.metric), ("chunk_size", self.chunk_size))
            if value is not None
        )
        return f"make_retrieval_scorer({self.name!r}{options})"


@validate_function_params(
    {
        "name": [StrOptions({"map_at_r", "precision_at_1", "r_precision"})],
        "metric": [StrOptions(set(METRICS)), None],
        "chunk_size": [Interval(Integral, 1, None, closed="left"), None],
    }
)
def make_retrieval_scorer(name, *, metric=None, chunk_size=None):
    """Make a scorer for ``GridSearchCV(scoring=...)`` from a retrieval metric.

    The scorer is a callable ``scorer(estimator, X, y) -> float`` that embeds
    ``X`` with ``estimator.transform`` and computes the metric leave-one-out
    on those embeddings (the held-out fold during cross-validation). Higher is
    better. It can be passed alone or as a value of a ``scoring`` dict. A
    Pipeline whose last step is a neighbours estimator or a classifier is
    scored on the embedding made by the steps before that step.

    Parameters
    ----------
    name : {"map_at_r", "precision_at_1", "r_precision"}
        The retrieval metric.
    metric : {"euclidean", "sqeuclidean", "cosine"}, default=None
        Distance between embeddings. None uses the ``metric`` attribute of the
        embedder (of the last embedding step of a Pipeline) when it has one,
        otherwise ``"euclidean"``; a final classifier's own ``metric`` is
        not used.
    chunk_size : int, default=None
        Passed to the metric function; bounds memory.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y) -> float``.

    See Also
    --------
    map_at_r : The metric behind ``map_at_r_scorer``.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.decomposition import PCA
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn_triplet.metrics import make_retrieval_scorer
    >>> X, y = load_digits(return_X_y=True)
    >>> search = GridSearchCV(
    ...     PCA(), {"n_components": [2, 16]}, cv=3,
    ...     scoring={"map_at_r": make_retrieval_scorer("map_at_r"),
    ...              "p1": make_retrieval_scorer("precision_at_1", metric="cosine")},
    ...     refit="map_at_r",
    ... ).fit(X[:300], y[:300])
    >>> search.best_params_
    {'n_components': 16}
    """
    return _RetrievalScorer(name, metric, chunk_size)


map_at_r_scorer = make_retrieval_scorer("map_at_r")
precision_at_1_scorer = make_retrieval_scorer("precision_at_1")
r_precision_scorer = make_retrieval_scorer("r_precision")
