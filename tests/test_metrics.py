import itertools
import math
import re
import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier, KNeighborsTransformer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_triplet.metrics import (
    make_retrieval_scorer,
    map_at_r,
    map_at_r_scorer,
    precision_at_1,
    precision_at_1_scorer,
    r_precision,
    r_precision_scorer,
    retrieval_scores,
)

METRIC_FUNCTIONS = {
    "precision_at_1": precision_at_1,
    "r_precision": r_precision,
    "map_at_r": map_at_r,
}


def _distance(a, b, metric):
    """One distance written out in plain Python."""
    if metric in ("euclidean", "sqeuclidean"):
        squared = sum((u - v) ** 2 for u, v in zip(a, b))
        return math.sqrt(squared) if metric == "euclidean" else squared
    norms = math.sqrt(sum(u * u for u in a)) * math.sqrt(sum(v * v for v in b))
    cosine = sum(u * v for u, v in zip(a, b)) / norms if norms > 0 else 0.0
    return 1.0 - cosine


def _paper_scores(relevance, R):
    """precision@1, R-precision and AP@R of one ranked relevance list (Musgrave et al.)."""
    precision_1 = float(relevance[0])
    r_prec = sum(relevance[:R]) / R
    average_precision = sum(sum(relevance[: i + 1]) / (i + 1) for i in range(R) if relevance[i]) / R
    return precision_1, r_prec, average_precision


def _brute_force(X, y, metric="euclidean", X_reference=None, y_reference=None, tie_orders=None):
    """Mean scores over queries with R > 0, ties broken by each order in ``tie_orders``
    (a list of permutations of the reference indices) and averaged over them."""
    leave_one_out = X_reference is None
    if leave_one_out:
        X_reference, y_reference = X, y
    n_reference = len(X_reference)
    if tie_orders is None:
        tie_orders = [list(range(n_reference))]
    per_query = []
    for q in range(len(X)):
        candidates = [j for j in range(n_reference) if not (leave_one_out and j == q)]
        R = sum(y_reference[j] == y[q] for j in candidates)
        if R == 0:
            continue
        distance = {j: _distance(X[q], X_reference[j], metric) for j in candidates}
        totals = np.zeros(3)
        for order in tie_orders:
            place = {j: i for i, j in enumerate(order)}
            ranked = sorted(candidates, key=lambda j: (distance[j], place[j]))
            relevance = [y_reference[j] == y[q] for j in ranked]
            totals += _paper_scores(relevance, R)
        per_query.append(totals / len(tie_orders))
    means = np.mean(per_query, axis=0)
    return dict(zip(["precision_at_1", "r_precision", "map_at_r"], means))


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
@pytest.mark.parametrize("n_classes", [2, 5])
@pytest.mark.parametrize("chunk_size", [None, 1, 7])
def test_leave_one_out_matches_paper_definition(metric, n_classes, chunk_size):
    rng = np.random.default_rng(n_classes)
    X = rng.normal(size=(40, 3))
    y = rng.integers(n_classes, size=40)
    expected = _brute_force(X.tolist(), y.tolist(), metric)
    scores = retrieval_scores(X, y, metric=metric, chunk_size=chunk_size)
    assert scores == pytest.approx(expected, abs=1e-12)
    for name, function in METRIC_FUNCTIONS.items():
        assert function(X, y, metric=metric, chunk_size=chunk_size) == pytest.approx(
            expected[name], abs=1e-12
        )


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_reference_set_matches_paper_definition(metric, chunk_size):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(15, 4)), rng.integers(4, size=15)
    X_ref, y_ref = rng.normal(size=(30, 4)), rng.integers(3, size=30)  # class 3 has R = 0
    expected = _brute_force(X.tolist(), y.tolist(), metric, X_ref.tolist(), y_ref.tolist())
    scores = retrieval_scores(
        X, y, metric=metric, X_reference=X_ref, y_reference=y_ref, chunk_size=chunk_size
    )
    assert scores == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_ties_score_their_expectation_over_random_orders(seed):
    # Small integer coordinates make many exact ties; the reference averages the
    # paper's scores over every order of the reference items.
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, size=(6, 1 + seed % 2)).astype(float)
    y = rng.integers(0, 2 + seed % 2, size=6)
    y[:2] = y[2]  # at least one class with R >= 1
    all_orders = [list(order) for order in itertools.permutations(range(6))]
    expected = _brute_force(X.tolist(), y.tolist(), tie_orders=all_orders)
    for chunk_size in (None, 1, 4):
        assert retrieval_scores(X, y, chunk_size=chunk_size) == pytest.approx(expected, abs=1e-12)


def test_ties_with_a_reference_set_score_their_expectation():
    X = np.array([[0.0], [1.0], [2.0]])
    y = np.array([0, 1, 0])
    X_ref = np.array([[1.0], [1.0], [0.0], [2.0], [1.0], [0.0]])
    y_ref = np.array([0, 1, 1, 0, 1, 0])
    all_orders = [list(order) for order in itertools.permutations(range(6))]
    expected = _brute_force(
        X.tolist(), y.tolist(), "euclidean", X_ref.tolist(), y_ref.tolist(), all_orders
    )
    scores = retrieval_scores(X, y, X_reference=X_ref, y_reference=y_ref, chunk_size=2)
    assert scores == pytest.approx(expected, abs=1e-12)


def test_collapsed_embedding_scores_chance_level():
    # All points equal: every order is equally likely, so each metric is the
    # class frequency among the other samples, whatever the order of the data.
    y = np.repeat([0, 1, 2], [2, 3, 5])
    X = np.ones((10, 4))
    chance = np.mean([(np.sum(y == label) - 1) / 9 for label in y])
    scores = retrieval_scores(X, y)
    assert scores["precision_at_1"] == pytest.approx(chance)
    assert scores["r_precision"] == pytest.approx(chance)


def test_scores_do_not_depend_on_sample_order():
    rng = np.random.default_rng(3)
    X = rng.integers(0, 4, size=(50, 2)).astype(float)
    y = rng.integers(3, size=50)
    permutation = rng.permutation(50)
    assert retrieval_scores(X[permutation], y[permutation]) == pytest.approx(
        retrieval_scores(X, y), abs=1e-12
    )


def test_euclidean_and_sqeuclidean_rank_alike():
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(30, 3)), rng.integers(3, size=30)
    assert retrieval_scores(X, y, metric="euclidean") == retrieval_scores(
        X, y, metric="sqeuclidean"
    )


def test_cosine_ignores_norms_and_treats_zero_rows_as_orthogonal():
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(30, 3)), rng.integers(3, size=30)
    scaled = X * rng.uniform(0.5, 3.0, size=(30, 1))
    assert retrieval_scores(scaled, y, metric="cosine") == pytest.approx(
        retrieval_scores(X, y, metric="cosine"), abs=1e-12
    )
    # a zero query is at distance 1 from all of [1, 0], [0, 1], [-1, 0]: a 3-way tie
    X = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]
    assert precision_at_1(
        [[0.0, 0.0]], [0], X_reference=X[1:], y_reference=[0, 1, 1], metric="cosine"
    ) == pytest.approx(1 / 3)


def test_separated_classes_score_one_and_singletons_are_left_out():
    X = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [9.0]])
    y = np.array(["a", "a", "a", "b", "b", "c"])  # "c" has R = 0 and is not scored
    assert retrieval_scores(X, y) == {
        "precision_at_1": 1.0,
        "r_precision": 1.0,
        "map_at_r": 1.0,
    }


def test_map_at_r_rewards_relevant_items_ranked_first():
    # Query 0 has R = 2: ranks (hit, miss, hit) give AP@R 1/2; (miss, hit) gives 1/4.
    X_ref = [[1.0], [2.0], [3.0]]
    assert map_at_r([[0.0]], [0], X_reference=X_ref, y_reference=[0, 1, 0]) == 0.5
    assert map_at_r([[0.0]], [0], X_reference=X_ref, y_reference=[1, 0, 0]) == 0.25
    assert r_precision([[0.0]], [0], X_reference=X_ref, y_reference=[1, 0, 0]) == 0.5


@pytest.mark.parametrize(
    "y",
    [
        np.array([3, 3, 7, 7, 7]),
        np.array(["x", "x", "y", "y", "y"]),
        np.array([3, 3, "y", "y", "y"], dtype=object),
        np.array([3.5, 3.5, None, None, None], dtype=object),
    ],
    ids=["int", "str", "mixed-object", "float-and-none"],
)
def test_label_types(y):
    X = [[0.0], [1.0], [10.0], [11.0], [12.0]]
    expected = retrieval_scores(X, [0, 0, 1, 1, 1])
    assert retrieval_scores(X, y) == expected


def test_float32_and_lists_are_accepted():
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(20, 3)), rng.integers(2, size=20)
    expected = map_at_r(X, y)
    assert map_at_r(X.astype(np.float32).astype(np.float64), y) == map_at_r(X.astype(np.float32), y)
    assert map_at_r(X.tolist(), y.tolist()) == expected


def test_one_query_chunks_bound_memory_not_results():
    # The largest chunk holds O(chunk_size * n_reference) entries; results agree.
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(200, 5)), rng.integers(10, size=200)
    assert retrieval_scores(X, y, chunk_size=1) == pytest.approx(retrieval_scores(X, y), abs=1e-12)


def _invalid_parameter(name, function, allowed_pattern, value):
    """scikit-learn's message; the options of a set are listed in an order Python does not fix."""
    prefix = re.escape(f"The '{name}' parameter of {function} must be ")
    return f"^{prefix}{allowed_pattern}{re.escape(f'. Got {value!r} instead.')}$"


STR_AMONG_3 = r"a str among \{('[a-z_0-9]+', ){2}'[a-z_0-9]+'\}"


@pytest.mark.parametrize("function", list(METRIC_FUNCTIONS.values()))
def test_unknown_metric(function):
    pattern = _invalid_parameter("metric", function.__name__, STR_AMONG_3, "manhattan")
    with pytest.raises(ValueError, match=pattern):
        function([[0.0], [1.0]], [0, 0], metric="manhattan")


def test_no_query_with_a_relevant_item():
    message = (
        "No query has an item of its own class in the reference set (R = 0 for every "
        "query), so retrieval metrics are undefined. Without a reference set, at least "
        "one class needs two or more samples."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        map_at_r([[0.0], [1.0], [2.0]], [0, 1, 2])
    with pytest.raises(ValueError, match=re.escape(message)):
        precision_at_1([[0.0]], [0], X_reference=[[1.0]], y_reference=[1])


def test_nan_is_rejected():
    with pytest.raises(ValueError, match="Input X contains NaN"):
        map_at_r([[0.0], [np.nan]], [0, 0])
    with pytest.raises(ValueError, match="Input X_reference contains NaN"):
        map_at_r([[0.0]], [0], X_reference=[[np.nan]], y_reference=[0])


def test_one_dimensional_X_is_rejected():
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array instead"):
        map_at_r([0.0, 1.0, 2.0], [0, 0, 1])


def test_feature_mismatch_names_both_numbers():
    message = "X has 2 features, but X_reference has 3 features; they must match."
    with pytest.raises(ValueError, match=re.escape(message)):
        map_at_r([[0.0, 1.0]], [0], X_reference=[[0.0, 1.0, 2.0]], y_reference=[0])


def test_inconsistent_lengths():
    with pytest.raises(ValueError, match=re.escape("inconsistent numbers of samples: [2, 3]")):
        map_at_r([[0.0], [1.0]], [0, 0, 1])
    with pytest.raises(ValueError, match=re.escape("inconsistent numbers of samples: [1, 2]")):
        map_at_r([[0.0]], [0], X_reference=[[0.0]], y_reference=[0, 1])


def test_reference_needs_both_arrays():
    message = (
        "X_reference and y_reference must be given together or not at all; got "
        "X_reference=an array and y_reference=None."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        map_at_r([[0.0]], [0], X_reference=[[0.0]])


@pytest.mark.parametrize("chunk_size", [0, -1, 2.5, "10"])
def test_invalid_chunk_size(chunk_size):
    allowed = re.escape("an int in the range [1, inf) or None")
    with pytest.raises(
        ValueError, match=_invalid_parameter("chunk_size", "map_at_r", allowed, chunk_size)
    ):
        map_at_r([[0.0], [1.0]], [0, 0], chunk_size=chunk_size)


def test_numpy_integer_chunk_size():
    X, y = [[0.0], [1.0], [5.0], [6.0]], [0, 0, 1, 1]
    assert map_at_r(X, y, chunk_size=np.int64(3)) == 1.0


# Scorers ---------------------------------------------------------------------


class _Embedding(TransformerMixin, BaseEstimator):
    """A stand-in embedder: a fixed linear map and a ``metric`` attribute."""

    def __init__(self, scale=1.0, metric="euclidean"):
        self.scale = scale
        self.metric = metric

    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=float)
        return X * np.r_[self.scale, np.ones(X.shape[1] - 1)]


def test_scorer_embeds_with_transform_and_uses_the_estimator_metric():
    rng = np.random.default_rng(8)
    X, y = rng.normal(size=(30, 3)), rng.integers(3, size=30)
    for metric in ("euclidean", "cosine"):
        embedder = _Embedding(scale=4.0, metric=metric).fit(X)
        expected = map_at_r(embedder.transform(X), y, metric=metric)
        assert map_at_r_scorer(embedder, X, y) == expected
        pipeline = make_pipeline(StandardScaler(), _Embedding(scale=4.0, metric=metric))
        pipeline.fit(X, y)
        assert map_at_r_scorer(pipeline, X, y) == map_at_r(pipeline.transform(X), y, metric=metric)
    assert precision_at_1_scorer(embedder, X, y) == precision_at_1(
        embedder.transform(X), y, metric="cosine"
    )
    assert r_precision_scorer(embedder, X, y) == r_precision(
        embedder.transform(X), y, metric="cosine"
    )


def test_scorer_metric_overrides_and_defaults():
    rng = np.random.default_rng(9)
    X, y = rng.normal(size=(30, 3)), rng.integers(3, size=30)
    embedder = _Embedding(metric="euclidean").fit(X)
    scorer = make_retrieval_scorer("map_at_r", metric="cosine", chunk_size=4)
    assert scorer(embedder, X, y) == pytest.approx(map_at_r(X, y, metric="cosine"))
    pca = PCA(n_components=2).fit(X)  # no metric attribute: euclidean
    assert map_at_r_scorer(pca, X, y) == map_at_r(pca.transform(X), y)


def test_scorers_in_grid_search():
    X, y = load_digits(return_X_y=True)
    X, y = X[:360], y[:360]
    pipeline = make_pipeline(StandardScaler(), PCA(random_state=0))
    grid = {"pca__n_components": [1, 8]}
    search = GridSearchCV(pipeline, grid, scoring=map_at_r_scorer, cv=3).fit(X, y)
    assert search.best_params_ == {"pca__n_components": 8}
    scores = search.cv_results_["mean_test_score"]
    assert np.all((scores >= 0) & (scores <= 1)) and scores[1] > scores[0]

    scoring = {
        "map_at_r": map_at_r_scorer,
        "p1": precision_at_1_scorer,
        "rp": make_retrieval_scorer("r_precision", metric="cosine"),
    }
    multi = GridSearchCV(pipeline, grid, scoring=scoring, refit="p1", cv=3).fit(X, y)
    assert multi.best_params_ == {"pca__n_components": 8}
    np.testing.assert_allclose(multi.cv_results_["mean_test_map_at_r"], scores)
    for name in scoring:
        assert multi.cv_results_[f"mean_test_{name}"].shape == (2,)

    # the held-out fold is scored leave-one-out on its own embeddings
    first_test = np.arange(120)
    fitted = make_pipeline(StandardScaler(), PCA(n_components=8, random_state=0))
    fitted.fit(X[120:], y[120:])
    assert search.cv_results_["split0_test_score"][1] == pytest.approx(
        map_at_r(fitted.transform(X[first_test]), y[first_test])
    )


@pytest.mark.parametrize("last", [KNeighborsClassifier(), KNeighborsTransformer()])
def test_scorer_scores_the_embedding_a_final_neighbours_step_searches(last):
    # The README's pipeline: the KNN's own metric ("minkowski") is not what is scored, and the
    # pipeline has no transform; the embedding made by the steps before the KNN is, in the
    # embedder's metric.
    rng = np.random.default_rng(10)
    X, y = rng.normal(size=(40, 3)), rng.integers(3, size=40)
    pipeline = Pipeline(
        [
            ("scale", StandardScaler()),
            ("emb", _Embedding(scale=4.0, metric="cosine")),
            ("knn", last),
        ]
    ).fit(X, y)
    embedding = pipeline[:-1].transform(X)
    assert map_at_r_scorer(pipeline, X, y) == map_at_r(embedding, y, metric="cosine")
    assert precision_at_1_scorer(pipeline, X, y) == precision_at_1(embedding, y, metric="cosine")
    scorer = make_retrieval_scorer("r_precision", metric="euclidean")
    assert scorer(pipeline, X, y) == r_precision(embedding, y, metric="euclidean")


def test_scorers_in_a_multi_metric_grid_search_over_the_readme_pipeline():
    from sklearn_triplet import TripletEmbedder

    X, y = load_digits(return_X_y=True)
    X, y = X[:240] / 16.0, y[:240]
    embedder = TripletEmbedder(
        n_components=8, max_iter=2, learning_rate_init=1e-2, metric="cosine", random_state=0
    )
    pipeline = Pipeline([("emb", embedder), ("knn", KNeighborsClassifier())])
    scoring = {"acc": "accuracy", "map": map_at_r_scorer}
    with warnings.catch_warnings():
        # a failed scorer only warns "Scoring failed ... set to nan" and goes on
        warnings.filterwarnings("error", message="(?s).*(Scoring failed|non-finite)")
        search = GridSearchCV(
            pipeline, {"knn__n_neighbors": [1, 3]}, scoring=scoring, refit="acc", cv=2
        ).fit(X, y)
    scores = search.cv_results_["mean_test_map"]
    assert np.all((scores > 0) & (scores <= 1))
    # the MAP@R column does not depend on the KNN's parameter, only on the embedding
    assert scores[0] == scores[1]
    refitted = search.best_estimator_
    assert map_at_r_scorer(refitted, X, y) == map_at_r(
        refitted[:-1].transform(X), y, metric="cosine"
    )


def test_scorer_says_what_it_needs_from_an_estimator_without_transform():
    X, y = [[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]
    message = (
        "estimator must be an embedder (with transform), or a Pipeline whose steps before its last "
        "one embed X, such as Pipeline([('emb', TripletEmbedder()), ('knn', "
        "KNeighborsClassifier())]); got {}, which has no transform."
    )
    knn = KNeighborsClassifier(n_neighbors=1).fit(X, y)
    with pytest.raises(TypeError, match=f"^{re.escape(message.format('KNeighborsClassifier'))}$"):
        map_at_r_scorer(knn, X, y)
    lone = Pipeline([("knn", KNeighborsClassifier(n_neighbors=1))]).fit(X, y)
    with pytest.raises(TypeError, match=f"^{re.escape(message.format('Pipeline'))}$"):
        map_at_r_scorer(lone, X, y)


def test_scorer_rejects_an_estimator_metric_it_cannot_use():
    X, y = [[0.0, 1.0], [1.0, 0.0]], [0, 0]
    embedder = _Embedding(metric="manhattan").fit(X)
    message = (
        "_Embedding.metric must be one of 'euclidean', 'sqeuclidean', 'cosine'; got 'manhattan'."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        map_at_r_scorer(embedder, X, y)


def test_scorer_needs_labels():
    embedder = _Embedding().fit([[0.0]])
    message = "The map_at_r scorer needs class labels y; got y=None."
    with pytest.raises(ValueError, match=re.escape(message)):
        map_at_r_scorer(embedder, [[0.0], [1.0]], None)


def test_make_retrieval_scorer_validation_and_repr():
    name = "make_retrieval_scorer"
    with pytest.raises(ValueError, match=_invalid_parameter("name", name, STR_AMONG_3, "recall")):
        make_retrieval_scorer("recall")
    with pytest.raises(ValueError, match=re.escape(f"The 'metric' parameter of {name} must be")):
        make_retrieval_scorer("map_at_r", metric="l1")
    with pytest.raises(
        ValueError, match=re.escape(f"The 'chunk_size' parameter of {name} must be")
    ):
        make_retrieval_scorer("map_at_r", chunk_size=0)
    assert repr(map_at_r_scorer) == "make_retrieval_scorer('map_at_r')"
    assert (
        repr(make_retrieval_scorer("r_precision", metric="cosine", chunk_size=8))
        == "make_retrieval_scorer('r_precision', metric='cosine', chunk_size=8)"
    )


def test_scorers_pickle():
    import pickle

    scorer = pickle.loads(pickle.dumps(make_retrieval_scorer("map_at_r", metric="cosine")))
    assert repr(scorer) == "make_retrieval_scorer('map_at_r', metric='cosine')"
