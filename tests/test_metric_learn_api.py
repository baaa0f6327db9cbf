"""What metric-learn's users rely on, on PairEmbedder, ComparisonEmbedder and PairVerifier.

The behaviours come from reading metric-learn's own tests of its pairs and triplets learners
(``test_pairs_classifiers``, ``test_triplets_classifiers``, ``test_sklearn_compat``,
``test_mahalanobis_mixin``); the tests are ours. Where we keep another convention, the test says
so (``# metric-learn: ...``) and ``docs/coming_from_metric_learn.rst`` explains why.
"""

import pickle
import re
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.cluster import DBSCAN
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import accuracy_score, fbeta_score, precision_score, roc_auc_score
from sklearn.model_selection import KFold, cross_val_predict, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from sklearn_triplet import ComparisonEmbedder, PairEmbedder
from sklearn_triplet.verification import PairVerifier, make_pairs

FAST = {
    "n_components": 4,
    "hidden_layer_sizes": (16,),
    "max_iter": 4,
    "batch_size": 32,
    "device": "cpu",
    "random_state": 0,
    # These tests look at the API on a trained network (the network of the previous defaults,
    # whose normalised output gives bitwise-equal scores whatever the batch): the raw features,
    # which separate the blobs perfectly, would be kept (see test_tuples.py's do-no-harm tests).
    "do_no_harm": False,
    "backbone": "mlp",
    "normalize": True,
}

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(4, 6))
    y = np.repeat(np.arange(4), 15)
    return centres[y] + rng.normal(size=(60, 6)), y


@pytest.fixture(scope="module")
def pairs(blobs):
    _, y = blobs
    first, second, same = make_pairs(np.arange(len(y))[:, None], y, n_pairs=160, random_state=0)
    return np.hstack([first, second]), np.where(same, 1, -1)


@pytest.fixture(scope="module")
def triplets(blobs):
    _, y = blobs
    rng = np.random.default_rng(1)
    anchors = rng.integers(len(y), size=120)
    positives = [rng.choice(np.flatnonzero(y == y[a])) for a in anchors]
    negatives = [rng.choice(np.flatnonzero(y != y[a])) for a in anchors]
    return np.stack([anchors, positives, negatives], axis=1)


@pytest.fixture(scope="module")
def pair_model(blobs, pairs):
    X, _ = blobs
    tuples, y = pairs
    return PairEmbedder(points=X, **FAST).fit(tuples[:100], y[:100])


@pytest.fixture(scope="module")
def comparison_model(blobs, triplets):
    X, _ = blobs
    return ComparisonEmbedder(points=X, **FAST).fit(triplets)


@pytest.fixture(scope="module", params=["pair", "comparison"])
def model(request, pair_model, comparison_model):
    return pair_model if request.param == "pair" else comparison_model


def _fit(kind, X, pairs, triplets, **params):
    if kind == "pair":
        return PairEmbedder(**{**FAST, **params}).fit(*pairs)
    return ComparisonEmbedder(**{**FAST, **params}).fit(triplets)


# -- the bug: labels re-encoded by scikit-learn ----------------------------------------------------


def test_cross_val_predict_decision_function(blobs, pairs):
    # scikit-learn re-encodes y to {0, 1} for method="decision_function"; the greater label means
    # similar, so the folds learn what they would from +1 / -1.
    X, _ = blobs
    tuples, y = pairs
    model = PairEmbedder(points=X, **FAST)
    cv = KFold(3)
    scores = cross_val_predict(model, tuples, y, cv=cv, method="decision_function")
    expected = np.empty(len(y))
    for train, test in cv.split(tuples):
        fold = clone(model).fit(tuples[train], y[train])
        expected[test] = fold.decision_function(tuples[test])
    np.testing.assert_array_equal(scores, expected)
    assert roc_auc_score(y, scores) > 0.8


# -- pair_score, pair_distance ---------------------------------------------------------------------


def test_pair_score_is_minus_the_distance(model, blobs, pairs):
    X, _ = blobs
    tuples, y = pairs
    embeddings = model.transform(X)
    distances = np.linalg.norm(embeddings[tuples[:, 0]] - embeddings[tuples[:, 1]], axis=1)
    np.testing.assert_allclose(model.pair_distance(tuples), distances, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.pair_score(tuples), -model.pair_distance(tuples))
    # The same pairs given as features.
    np.testing.assert_array_equal(model.pair_score(X[tuples]), model.pair_score(tuples))
    assert roc_auc_score(y, model.pair_score(tuples)) > 0.8


def test_triplet_decision_function_from_pair_scores(comparison_model, triplets):
    # metric-learn's triplets learners: pair_score(a, p) - pair_score(a, n).
    model = comparison_model
    expected = model.pair_score(triplets[:, [0, 1]]) - model.pair_score(triplets[:, [0, 2]])
    np.testing.assert_allclose(model.decision_function(triplets), expected, rtol=1e-6, atol=1e-6)
    assert set(model.predict(triplets)) <= {-1, 1}


def test_pair_score_of_a_pair_embedder_is_monotone_with_predict(pair_model, pairs):
    tuples, _ = pairs
    scores = pair_model.pair_score(tuples)
    predicted = pair_model.predict(tuples)
    assert set(predicted) == {-1, 1}
    assert scores[predicted == -1].max() < scores[predicted == 1].min()


# -- calibrate_threshold and set_threshold ---------------------------------------------------------


def _rates(y, predicted):
    tpr = np.mean(predicted[y == 1] == 1)
    tnr = np.mean(predicted[y == -1] == -1)
    return tpr, tnr


def _max_tpr(y, predicted, min_rate):
    tpr, tnr = _rates(y, predicted)
    return tpr if tnr >= min_rate else -1.0


def _max_tnr(y, predicted, min_rate):
    tpr, tnr = _rates(y, predicted)
    return tnr if tpr >= min_rate else -1.0


STRATEGIES = (
    [({"strategy": "accuracy"}, accuracy_score)]
    + [
        ({"strategy": "f_beta", "beta": beta}, partial(fbeta_score, beta=beta, zero_division=0))
        for beta in (0.5, 1.0, 2.0)
    ]
    + [({"strategy": "f_beta", "beta": 0.0}, partial(precision_score, zero_division=0))]
    + [
        ({"strategy": "max_tpr", "min_rate": rate}, partial(_max_tpr, min_rate=rate))
        for rate in (0.0, 0.3, 0.8, 1.0)
    ]
    + [
        ({"strategy": "max_tnr", "min_rate": rate}, partial(_max_tnr, min_rate=rate))
        for rate in (0.0, 0.3, 0.8, 1.0)
    ]
)


def _check_best(estimator, X, y, distances, options, scoring):
    """The calibrated threshold scores best among all thresholds, accepting the fewest pairs."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert estimator.calibrate_threshold(X, y, **options) is estimator
    labels = np.where(y > 0, 1, -1)
    best = scoring(labels, np.where(distances < estimator.threshold_, 1, -1))
    n_accepted = np.sum(distances < estimator.threshold_)
    candidates = np.concatenate([[distances.min() - 1], distances, [distances.max() + 1]])
    results = set()
    for candidate in candidates:
        predicted = np.where(distances <= candidate, 1, -1)
        score = scoring(labels, predicted)
        results.add(score)
        assert score <= best
        if score == best:
            assert np.sum(predicted == 1) >= n_accepted
    assert len(results) > 1
    np.testing.assert_array_equal(
        estimator.predict(X) == estimator.classes_[1], distances < estimator.threshold_
    )


@pytest.mark.parametrize("options, scoring", STRATEGIES)
def test_calibrated_threshold_is_the_best_for_its_strategy(options, scoring):
    rng = np.random.default_rng(42)
    distances = rng.gamma(2.0, size=60)
    y = np.where(rng.random(60) < 0.5 + 0.3 * (distances < 2), 1, -1)
    distances[10:16] = distances[20:26]  # ties, with their labels
    y[10:16] = y[20:26]
    verifier = PairVerifier().fit(distances, y)
    _check_best(verifier, distances, y, distances, options, scoring)


@pytest.mark.parametrize("options, scoring", STRATEGIES[::3])
def test_calibrate_threshold_of_a_pair_embedder(options, scoring, pair_model, pairs):
    tuples, y = pairs
    model = clone(pair_model).fit(tuples[:100], y[:100])  # its own threshold_
    held_out, labels = tuples[100:], y[100:]
    _check_best(model, held_out, labels, model.pair_distance(held_out), options, scoring)
    # Any two labels here too.
    again = clone(model).fit(tuples[:100], y[:100])
    again.calibrate_threshold(held_out, labels > 0, **options)
    assert again.threshold_ == model.threshold_


def test_calibrate_threshold_extremes():
    # Distances in the wrong order (the similar pairs farthest): accept all or none.
    distances = np.arange(7.0)
    verifier = PairVerifier().fit(distances, [-1, -1, -1, -1, 1, 1, 1])
    accept_none, accept_all = [-1] * 7, [1] * 7
    for y, accuracy in [([-1, -1, -1, -1, 1, 1, 1], accept_none), ([-1] * 3 + [1] * 4, accept_all)]:
        verifier.calibrate_threshold(distances, y)
        np.testing.assert_array_equal(verifier.predict(distances), accuracy)
        verifier.calibrate_threshold(distances, y, strategy="max_tpr", min_rate=0.0)
        np.testing.assert_array_equal(verifier.predict(distances), accept_all)
        verifier.calibrate_threshold(distances, y, strategy="max_tnr", min_rate=0.0)
        np.testing.assert_array_equal(verifier.predict(distances), accept_none)
    # Alternating labels: F1 is best accepting every pair.
    verifier.calibrate_threshold(distances[:6], [-1, 1, -1, 1, -1, 1], strategy="f_beta")
    np.testing.assert_array_equal(verifier.predict(distances[:6]), [1] * 6)
    assert verifier.threshold_ == np.nextafter(5.0, np.inf)


STRATEGY = "strategy must be one of 'accuracy', 'f_beta', 'max_tpr', 'max_tnr'; got "
MIN_RATE = "min_rate must be a number in [0, 1], the lowest {} rate strategy='{}' keeps; got {}."
BETA = "beta must be a real number >= 0, the weight of recall against precision; got {}."


@pytest.mark.parametrize(
    "options, message",
    [({"strategy": "weird"}, STRATEGY + "'weird'."), ({"strategy": None}, STRATEGY + "None.")]
    + [
        (
            {"strategy": strategy, "min_rate": rate},
            MIN_RATE.format(kept, strategy, shown),
        )
        for strategy, kept in [("max_tpr", "true-negative"), ("max_tnr", "true-positive")]
        for rate, shown in [
            (None, "None"),
            ("weird", "'weird'"),
            (-0.2, "-0.2"),
            (1.2, "1.2"),
            (3 + 2j, "(3+2j)"),
            (float("nan"), "nan"),
            (True, "True"),
        ]
    ]
    + [
        ({"strategy": "f_beta", "beta": beta}, BETA.format(shown))
        # metric-learn takes a negative beta (it is squared); a negative weight is a mistake here,
        # as in scikit-learn's fbeta_score.
        for beta, shown in [
            (None, "None"),
            ("weird", "'weird'"),
            (3 + 2j, "(3+2j)"),
            (-1.0, "-1.0"),
        ]
    ]
    + [
        # metric-learn ignores min_rate with the other strategies; an unused option is an error
        # here, as target_far is without threshold="far".
        (
            {"strategy": "accuracy", "min_rate": 0.5},
            "min_rate=0.5 is only used with strategy='max_tpr' or 'max_tnr'; got "
            "strategy='accuracy'.",
        )
    ],
)
def test_calibrate_threshold_options_are_checked(options, message, pair_model, pairs):
    tuples, y = pairs
    before = pair_model.threshold_
    verifier = PairVerifier().fit([0.1, 0.9], [1, -1])
    for estimator, X in [(pair_model, tuples), (verifier, np.linspace(0, 1, len(y)))]:
        with pytest.raises(ValueError, match=re.escape(message)):
            estimator.calibrate_threshold(X, y, **options)
    assert pair_model.threshold_ == before


def test_calibrate_threshold_needs_both_kinds_of_pairs(pair_model, pairs):
    tuples, y = pairs
    message = "calibrate_threshold needs both similar and dissimilar pairs in y; all 5 pairs are "
    with pytest.raises(ValueError, match=re.escape(message + "similar.")):
        pair_model.calibrate_threshold(tuples[:5], np.ones(5))
    verifier = PairVerifier().fit([0.1, 0.9], [True, False])
    with pytest.raises(ValueError, match=re.escape(message + "dissimilar.")):
        verifier.calibrate_threshold(np.arange(5.0), np.zeros(5, bool))
    message = "y must be labels seen in fit, [False, True]; got also [2]."
    with pytest.raises(ValueError, match=re.escape(message)):
        verifier.calibrate_threshold(np.arange(3.0), [0, 1, 2])


@pytest.mark.parametrize("estimator", ["pair", "verifier"])
def test_set_threshold(estimator, pair_model, pairs):
    tuples, y = pairs
    if estimator == "pair":
        model, X = clone(pair_model).fit(tuples[:100], y[:100]), tuples
        distances = model.pair_distance(X)
    else:
        distances = np.random.default_rng(0).random(len(y))
        model, X = PairVerifier().fit(distances, y), distances
    threshold = float(np.median(distances))
    assert model.set_threshold(np.float32(threshold)) is model
    assert model.threshold_ == np.float32(threshold)
    np.testing.assert_array_equal(model.predict(X), np.where(distances < model.threshold_, 1, -1))
    np.testing.assert_allclose(model.decision_function(X), model.threshold_ - distances)
    for bad, shown in [("0.5", "'0.5'"), (None, "None"), (float("nan"), "nan"), (True, "True")]:
        message = f"threshold must be a real number, a distance; got {shown}."
        with pytest.raises(ValueError, match=re.escape(message)):
            model.set_threshold(bad)
    # The next fit sets threshold_ again from the threshold parameter.
    model.set_threshold(-1.0)
    if estimator == "pair":
        assert model.fit(tuples[:100], y[:100]).threshold_ == pair_model.threshold_
    else:
        assert model.fit(distances, y).threshold_ != -1.0


def test_where_we_differ_from_metric_learn(pair_model, pairs):
    tuples, y = pairs
    model = pair_model
    distances = model.pair_distance(tuples)
    # metric-learn: score is the ROC AUC. Ours is the accuracy of predict, as for every
    # scikit-learn classifier; the ROC AUC is roc_auc_score(y, model.pair_score(pairs)).
    assert model.score(tuples, y) == accuracy_score(y, model.predict(tuples))
    assert model.score(tuples, y) != roc_auc_score(y, model.pair_score(tuples))
    # metric-learn: classes_ is [0, 1] while predict returns -1 / +1. Ours: what predict returns.
    np.testing.assert_array_equal(model.classes_, [-1, 1])
    assert set(model.predict(tuples)) <= set(model.classes_)
    # metric-learn: decision_function is -distance, the threshold apart. Ours: threshold_ -
    # distance, positive exactly where predict says similar (scikit-learn's reading).
    np.testing.assert_allclose(model.decision_function(tuples), model.threshold_ - distances)
    np.testing.assert_array_equal(model.decision_function(tuples) > 0, model.predict(tuples) == 1)
    # metric-learn: similar when distance <= threshold_. Ours: strictly below.
    boundary = clone(model).fit(tuples[:100], y[:100])
    # (the distance as predict computes it: embedding other batches may round it otherwise)
    boundary.set_threshold(boundary.pair_distance(tuples[:1])[0])
    assert boundary.predict(tuples[:1])[0] == -1


# -- get_metric -----------------------------------------------------------------------------------


def test_get_metric_is_the_distance_of_the_embeddings(model, blobs, pairs):
    X, _ = blobs
    tuples, _ = pairs
    metric = model.get_metric()
    distances = [metric(X[i], X[j]) for i, j in tuples[:20]]
    np.testing.assert_allclose(distances, model.pair_distance(tuples[:20]), rtol=1e-5, atol=1e-6)
    # A pseudo-metric, exactly for the symmetry and the zero.
    a, b, c = X[:3]
    assert metric(a, b) == metric(b, a) > 0
    assert metric(a, a) == 0
    assert metric(a, c) <= metric(a, b) + metric(b, c)
    assert isinstance(metric(a, b), float)
    again = pickle.loads(pickle.dumps(metric))
    assert again(a, b) == metric(a, b)


def test_get_metric_in_scikit_learn_estimators(model, blobs, pairs):
    X, y = blobs
    embeddings = model.transform(X)
    metric = model.get_metric()
    knn = KNeighborsClassifier(n_neighbors=3, metric=metric).fit(X[::2], y[::2])
    reference = KNeighborsClassifier(n_neighbors=3).fit(embeddings[::2], y[::2])
    np.testing.assert_array_equal(knn.predict(X[1::2]), reference.predict(embeddings[1::2]))
    tuples, same = pairs
    eps = float(np.median(model.pair_distance(tuples[same > 0]))) + 1e-3  # no distance at eps
    subset = X[::2]
    clusters = DBSCAN(eps=eps, min_samples=3, metric=metric).fit_predict(subset)
    reference = DBSCAN(eps=eps, min_samples=3).fit_predict(embeddings[::2])
    np.testing.assert_array_equal(clusters, reference)
    assert len(set(clusters) - {-1}) >= 2


def test_get_metric_does_not_follow_later_fits(blobs, pairs, triplets):
    X, _ = blobs
    for kind in ("pair", "comparison"):
        model = _fit(kind, None, (X[pairs[0]], pairs[1]), X[triplets])
        metric = model.get_metric()
        before = metric(X[0], X[1])
        model.set_params(random_state=1, max_iter=2)
        _ = model.fit(X[pairs[0]], pairs[1]) if kind == "pair" else model.fit(X[triplets])
        assert metric(X[0], X[1]) == before
        assert model.get_metric()(X[0], X[1]) != before


def test_get_metric_errors(model, blobs):
    X, _ = blobs
    metric = model.get_metric()
    with pytest.raises(ValueError, match=re.escape("u must be a 1-D array of 6 features; got")):
        metric(X[:2], X[1])
    message = "v must be a 1-D array of 6 features; got shape (5,)."
    with pytest.raises(ValueError, match=re.escape(message)):
        metric(X[0], X[1, :5])
    assert repr(metric) == "EmbeddingMetric(metric='euclidean', n_features=6)"


# -- not fitted ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pair", "comparison"])
def test_not_fitted(kind, blobs, pairs):
    X, _ = blobs
    tuples, y = pairs
    model = (PairEmbedder if kind == "pair" else ComparisonEmbedder)(points=X)
    calls = [
        lambda: model.pair_score(tuples),
        lambda: model.pair_distance(tuples),
        model.get_metric,
        lambda: model.transform(np.arange(3)),
        lambda: model.transform(X),
        lambda: model.decision_function(tuples if kind == "pair" else X[:3, None].repeat(3, 1)),
    ]
    if kind == "pair":
        calls += [
            lambda: model.calibrate_threshold(tuples, y),
            lambda: model.set_threshold(0.5),
            lambda: model.predict(tuples),
        ]
    for call in calls:
        with pytest.raises(NotFittedError):
            call()
    for call in [
        lambda: PairVerifier().calibrate_threshold([0.1], [1]),
        lambda: PairVerifier().set_threshold(0.5),
    ]:
        with pytest.raises(NotFittedError):
            call()


# -- transform of ids, and points as a callable ----------------------------------------------------


def test_transform_of_indices(model, blobs):
    X, _ = blobs
    ids = np.array([5, 0, 59, 5])
    np.testing.assert_array_equal(model.transform(ids), model.transform(X[ids]))
    np.testing.assert_array_equal(model.transform(list(ids)), model.transform(X[ids]))
    message = "the indices in X must be in [0, 59], rows of points (which has 60 rows); got 60 in "
    with pytest.raises(ValueError, match=re.escape(message + "position 1.")):
        model.transform(np.array([0, 60]))
    with pytest.raises(ValueError, match=re.escape("the ids in X must be integers; got dtype")):
        model.transform(np.array([0.0, 1.0]))


class _Loader:
    """Features of images by file name, recording which names it is asked for."""

    def __init__(self, X):
        self.X = X
        self.asked = []

    def __call__(self, names):
        self.asked.append(list(names))
        return self.X[[int(name[4:8]) for name in names]]


def _names(indices):
    return np.vectorize(lambda i: f"img_{i:04d}.png")(indices)


@pytest.mark.parametrize("kind", ["pair", "comparison"])
def test_points_as_a_callable_of_ids(kind, blobs, pairs, triplets):
    X, _ = blobs
    tuples = pairs[0] if kind == "pair" else triplets
    y = pairs[1] if kind == "pair" else None
    loader = _Loader(X)
    Estimator = PairEmbedder if kind == "pair" else ComparisonEmbedder
    lazy = Estimator(points=loader, **FAST).fit(_names(tuples[:80]), None if y is None else y[:80])
    eager = Estimator(points=X, **FAST).fit(tuples[:80], None if y is None else y[:80])
    # Asked once, for the distinct names the tuples use (sorted), and nothing else.
    assert loader.asked == [sorted(set(_names(tuples[:80]).ravel()))]
    np.testing.assert_array_equal(lazy.transform(X), eager.transform(X))
    np.testing.assert_array_equal(
        lazy.transform(_names(np.array([3, 1]))), eager.transform(X[[3, 1]])
    )
    np.testing.assert_array_equal(
        lazy.pair_distance(_names(tuples[80:, :2])), eager.pair_distance(tuples[80:, :2])
    )
    np.testing.assert_array_equal(lazy.predict(_names(tuples[80:])), eager.predict(tuples[80:]))
    # A clone carries the callable (scikit-learn deep-copies it) to every fold of a search.
    np.testing.assert_array_equal(clone(lazy).points(["img_0003.png"]), X[[3]])


def test_points_callable_returning_the_wrong_shape(blobs, pairs):
    X, _ = blobs
    tuples, y = pairs
    model = PairEmbedder(points=lambda ids: X[:3], **FAST)
    message = (
        "points(ids) must be of shape (59, n_features), one row of features per id of the 1-D "
        "array it is given; got shape (3, 6)."
    )
    n_used = len(np.unique(tuples))
    assert n_used == 59
    with pytest.raises(ValueError, match=re.escape(message)):
        model.fit(tuples, y)


# -- PairVerifier on index pairs -------------------------------------------------------------------


def test_pair_verifier_on_index_pairs(pair_model, blobs, pairs):
    X, _ = blobs
    tuples, y = pairs
    held_out, labels = tuples[100:], y[100:]
    verifier = PairVerifier(pair_model).fit(held_out, labels)
    on_features = PairVerifier(pair_model).fit(X[held_out], labels)
    assert verifier.threshold_ == on_features.threshold_
    assert verifier.n_features_in_ == 2
    np.testing.assert_allclose(
        verifier.decision_function(held_out),
        verifier.threshold_ - pair_model.pair_distance(held_out),
    )
    np.testing.assert_array_equal(verifier.predict(held_out), on_features.predict(X[held_out]))
    assert verifier.score(held_out, labels) == on_features.score(X[held_out], labels)
    verifier.calibrate_threshold(held_out, labels, strategy="max_tnr", min_rate=0.9)
    assert np.mean(verifier.predict(held_out)[labels == 1] == 1) >= 0.9
    # Cross-validated, with the embedder frozen.
    scores = cross_val_score(PairVerifier(FrozenEstimator(pair_model)), held_out, labels, cv=3)
    assert np.isfinite(scores).all()


def test_pair_verifier_on_ids_of_a_callable(blobs, pairs):
    X, _ = blobs
    tuples, y = pairs
    embedder = PairEmbedder(points=_Loader(X), **FAST).fit(_names(tuples[:100]), y[:100])
    verifier = PairVerifier(embedder).fit(_names(tuples[100:]), y[100:])
    reference = PairVerifier(embedder).fit(X[tuples[100:]], y[100:])
    assert verifier.threshold_ == reference.threshold_


# -- scikit-learn's contract, as metric-learn's compatibility tests read it ------------------------


def test_using_a_fitted_model_changes_nothing(model, blobs, pairs, triplets):
    X, _ = blobs
    tuples = pairs[0] if isinstance(model, PairEmbedder) else triplets
    before = {name: value for name, value in vars(model).items() if name != "module_"}
    weights = {name: tensor.clone() for name, tensor in model.module_.state_dict().items()}
    model.predict(tuples)
    model.decision_function(tuples)
    model.pair_score(pairs[0])
    model.transform(np.arange(5))
    model.get_metric()(X[0], X[1])
    after = {name: value for name, value in vars(model).items() if name != "module_"}
    assert after.keys() == before.keys()
    assert all(after[name] is before[name] for name in before)
    for name, tensor in model.module_.state_dict().items():
        assert (tensor == weights[name]).all()


def test_in_a_pipeline(blobs, pairs):
    X, _ = blobs
    tuples, y = pairs
    model = PairEmbedder(points=X, **FAST).fit(tuples, y)
    pipeline = make_pipeline(PairEmbedder(points=X, **FAST)).fit(tuples, y)
    np.testing.assert_array_equal(pipeline.predict(tuples), model.predict(tuples))
    assert pipeline.score(tuples, y) == model.score(tuples, y)
    np.testing.assert_array_equal(pipeline.transform(np.arange(5)), model.transform(np.arange(5)))


# -- the documentation page ------------------------------------------------------------------------


def test_the_coming_from_metric_learn_example_runs():
    page = Path(__file__).resolve().parents[1] / "docs" / "coming_from_metric_learn.rst"
    block = re.search(r"\.\. code-block:: python\n\n(.*?)\n\S", page.read_text(), re.S)[1]
    code = "\n".join(line[3:] for line in block.splitlines())
    namespace = {}
    exec(compile(code.replace("max_iter=10", "max_iter=1"), str(page), "exec"), namespace)
    model, y = namespace["model"], namespace["y"]
    np.testing.assert_array_equal(namespace["scores"], -namespace["distances"])
    assert np.mean(namespace["predicted"][y[2000:] == 1] == 1) >= 0.9  # max_tnr's min_rate
    assert namespace["accuracy"] == np.mean(namespace["predicted"] == y[2000:])
    np.testing.assert_array_equal(namespace["embedded"], model.transform(namespace["X"][:10]))
    assert namespace["knn"].score(namespace["X"][200:210], namespace["classes"][200:210]) > 0.5
