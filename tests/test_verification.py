import re

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_triplet._threshold import calibrate
from sklearn_triplet.distances import paired_distances
from sklearn_triplet.verification import (
    PairVerifier,
    make_pairs,
    paired_embedding_distances,
)


class _Embedding(TransformerMixin, BaseEstimator):
    """A stand-in embedder: doubles its input and has a ``metric`` attribute."""

    def __init__(self, metric="euclidean"):
        self.metric = metric

    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X):
        return 2.0 * np.asarray(X, dtype=float)


# paired embedding distances ------------------------------------------------------


def test_paired_embedding_distances_use_the_embedder_metric():
    rng = np.random.default_rng(1)
    X1, X2 = rng.normal(size=(10, 3)), rng.normal(size=(10, 3))
    cosine = _Embedding(metric="cosine").fit(X1)
    np.testing.assert_allclose(
        paired_embedding_distances(cosine, X1, X2),
        paired_distances(2 * X1, 2 * X2, metric="cosine"),
    )
    pipeline = make_pipeline(StandardScaler(), _Embedding(metric="sqeuclidean")).fit(X1)
    np.testing.assert_allclose(
        paired_embedding_distances(pipeline, X1, X2),
        paired_distances(pipeline.transform(X1), pipeline.transform(X2), metric="sqeuclidean"),
    )
    pca = PCA(n_components=2).fit(X1)  # no metric attribute: euclidean
    np.testing.assert_allclose(
        paired_embedding_distances(pca, X1, X2, metric=None),
        paired_distances(pca.transform(X1), pca.transform(X2)),
    )
    np.testing.assert_allclose(
        paired_embedding_distances(cosine, X1, X2, metric="euclidean"),
        paired_distances(2 * X1, 2 * X2),
    )


# make_pairs ---------------------------------------------------------------------


def test_make_pairs_balanced_and_labelled():
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    X = np.arange(len(y), dtype=float)[:, None]  # the sample index, to recover pairs
    for n_pairs in (2, 7, 200):
        X1, X2, same = make_pairs(X, y, n_pairs=n_pairs, random_state=0)
        assert X1.shape == X2.shape == (n_pairs, 1) and same.dtype == bool
        assert same.sum() == n_pairs // 2
        i, j = X1[:, 0].astype(int), X2[:, 0].astype(int)
        np.testing.assert_array_equal(same, y[i] == y[j])
        assert np.all(i != j)


def test_make_pairs_draws_uniformly_over_ordered_pairs():
    # class 0 has 2 ordered same pairs, class 1 has 6: P(class 0) = 1/4.
    # Different pairs: 12 ordered pairs, each with probability 1/12.
    y = np.array([0, 0, 1, 1, 1])
    X = np.arange(5.0)[:, None]
    X1, X2, same = make_pairs(X, y, n_pairs=24000, random_state=0)
    i, j = X1[:, 0].astype(int), X2[:, 0].astype(int)
    assert np.mean(y[i[same]] == 0) == pytest.approx(0.25, abs=0.02)
    different = np.bincount(i[~same] * 5 + j[~same], minlength=25)
    observed = different[different > 0] / (~same).sum()
    assert len(observed) == 12
    np.testing.assert_allclose(observed, 1 / 12, atol=0.01)


def test_make_pairs_is_reproducible_and_keeps_sample_shape():
    X, y = np.random.default_rng(2).normal(size=(12, 2, 3)), np.repeat(["a", "b", "c"], 4)
    first = make_pairs(X, y, n_pairs=10, random_state=3)
    second = make_pairs(X, y, n_pairs=10, random_state=np.random.RandomState(3))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert first[0].shape == (10, 2, 3)
    other = make_pairs(X, y, n_pairs=10, random_state=4)
    assert not np.array_equal(first[0], other[0])


def test_make_pairs_errors():
    X = np.zeros((3, 1))
    message = (
        "make_pairs needs a class with two or more samples to make same-class pairs; "
        "got class counts {0: 1, 1: 1, 2: 1}."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        make_pairs(X, [0, 1, 2], n_pairs=4)
    message = (
        "make_pairs needs two or more classes to make different-class pairs; "
        "got class counts {'a': 3}."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        make_pairs(X, ["a", "a", "a"], n_pairs=4)
    for n_pairs in (1, 2.0, True, None):
        message = (
            "The 'n_pairs' parameter of make_pairs must be an int in the range [2, inf). "
            f"Got {n_pairs!r} instead."
        )
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            make_pairs(X, [0, 0, 1], n_pairs=n_pairs)
    with pytest.raises(ValueError, match=re.escape("inconsistent numbers of samples: [3, 2]")):
        make_pairs(X, [0, 0], n_pairs=4)


# threshold calibration ------------------------------------------------------------


def _accuracy(distances, same, threshold):
    return np.mean((distances < threshold) == same)


def test_separable_distances_give_accuracy_one_between_the_classes():
    rng = np.random.default_rng(3)
    same = rng.random(50) < 0.5
    same[:2] = [True, False]
    distances = np.where(same, rng.uniform(0.0, 1.0, 50), rng.uniform(2.0, 3.0, 50))
    verifier = PairVerifier().fit(distances, same)
    assert distances[same].max() < verifier.threshold_ < distances[~same].min()
    assert verifier.threshold_ == pytest.approx(
        (distances[same].max() + distances[~same].min()) / 2
    )
    assert verifier.score(distances, same) == 1.0


def test_accuracy_threshold_matches_brute_force():
    # Rounded distances make ties; the brute force tries every threshold.
    rng = np.random.default_rng(4)
    for _ in range(20):
        same = rng.random(40) < 0.4
        same[:2] = [True, False]
        distances = np.round(rng.normal(np.where(same, 1.0, 1.8), 0.5), 1)
        candidates = np.concatenate([np.unique(distances), [np.inf]])
        best = max(_accuracy(distances, same, t) for t in candidates)
        threshold = calibrate(distances, same)
        assert _accuracy(distances, same, threshold) == best
        # the smallest threshold with that accuracy: one step down loses accuracy
        below = distances[distances < threshold]
        if below.size:
            assert _accuracy(distances, same, below.max()) < best


def test_target_far_is_honoured_exactly():
    # 10 different pairs at distances 1..10, same pairs in between.
    different = np.arange(1.0, 11.0)
    same_distances = np.array([0.5, 1.5, 2.5, 3.5])
    distances = np.concatenate([same_distances, different])
    same = np.concatenate([np.ones(4, bool), np.zeros(10, bool)])
    for target_far, expected_threshold in [
        (0.0, 0.75),  # between 0.5 and the first different pair, 1
        (0.1, 1.75),  # 1 false accept (at 1); the next, at 2, would make 2 of 10
        (0.25, 2.75),  # 2 false accepts; between 2.5 and 3
        (0.3, 3.75),  # 3 false accepts; between 3.5 and 4
        (0.35, 3.75),  # still 3: a fourth would make 0.4
        (1.0, np.nextafter(10.0, np.inf)),
    ]:
        verifier = PairVerifier(threshold="far", target_far=target_far).fit(distances, same)
        assert verifier.threshold_ == expected_threshold
        far = np.mean(verifier.predict(distances)[~same])
        assert far <= target_far
        # largest: accepting the next distance too would break the target
        next_distance = distances[distances >= verifier.threshold_].min(initial=np.inf)
        if np.isfinite(next_distance):
            assert np.mean(different <= next_distance) > target_far


def test_far_threshold_when_the_nearest_pair_is_different():
    verifier = PairVerifier(threshold="far", target_far=0.0).fit([0.1, 0.2, 0.3], [0, 1, 0])
    assert verifier.threshold_ == 0.1
    np.testing.assert_array_equal(verifier.predict([0.1, 0.2, 0.3]), [0, 0, 0])


def test_fixed_threshold():
    verifier = PairVerifier(threshold=0.5).fit([[0.2], [0.9]], [1, 0])
    assert verifier.threshold_ == 0.5
    np.testing.assert_array_equal(verifier.predict([[0.4], [0.5], [0.6]]), [1, 0, 0])
    np.testing.assert_allclose(verifier.decision_function([0.4, 0.5]), [0.1, 0.0])


def test_decision_function_gives_roc_auc_of_the_distances():
    rng = np.random.default_rng(5)
    same = rng.random(200) < 0.5
    distances = rng.normal(np.where(same, 1.0, 1.5), 0.5)
    verifier = PairVerifier().fit(distances, same)
    scores = verifier.decision_function(distances)
    # Mann-Whitney: chance that a same pair is closer than a different pair
    expected = np.mean(distances[same][:, None] < distances[~same][None, :])
    assert roc_auc_score(same, scores) == pytest.approx(expected)
    np.testing.assert_array_equal(verifier.predict(distances), scores > 0)


@pytest.mark.parametrize(
    "same, expected_dtype",
    [([True, False, True, False], bool), ([1, 0, 1, 0], np.int64), (["yes", "no"] * 2, str)],
)
def test_predict_returns_the_classes_of_y(same, expected_dtype):
    verifier = PairVerifier().fit([0.1, 0.9, 0.2, 0.8], same)
    predictions = verifier.predict([0.0, 1.0])
    assert np.issubdtype(predictions.dtype, expected_dtype)
    assert predictions.tolist() == [verifier.classes_[1], verifier.classes_[0]]


# verifier with an embedder --------------------------------------------------------


def test_verifier_on_pairs_of_samples_matches_distances():
    X, y = load_digits(return_X_y=True)
    pca = PCA(n_components=8, random_state=0).fit(X[:800])
    X1, X2, same = make_pairs(X[800:], y[800:], n_pairs=300, random_state=0)
    pairs = np.hstack([X1, X2])
    on_pairs = PairVerifier(pca, metric="cosine").fit(pairs, same)
    distances = paired_embedding_distances(pca, X1, X2, metric="cosine")
    on_distances = PairVerifier().fit(distances, same)
    assert on_pairs.threshold_ == on_distances.threshold_
    assert on_pairs.n_features_in_ == 128
    np.testing.assert_allclose(
        on_pairs.decision_function(pairs), on_distances.decision_function(distances)
    )
    assert on_pairs.score(pairs, same) == on_distances.score(distances, same) > 0.7


def test_verifier_uses_the_embedder_metric():
    rng = np.random.default_rng(6)
    X1, X2 = rng.normal(size=(30, 2)), rng.normal(size=(30, 2))
    same = rng.random(30) < 0.5
    embedder = _Embedding(metric="cosine").fit(X1)
    verifier = PairVerifier(embedder).fit(np.hstack([X1, X2]), same)
    expected = PairVerifier().fit(paired_distances(2 * X1, 2 * X2, metric="cosine"), same)
    assert verifier.threshold_ == expected.threshold_


def test_verifier_cross_validates_with_a_frozen_embedder():
    X, y = load_digits(return_X_y=True)
    pca = PCA(n_components=8, random_state=0).fit(X[:800])
    X1, X2, same = make_pairs(X[800:], y[800:], n_pairs=300, random_state=1)
    pairs = np.hstack([X1, X2])
    verifier = PairVerifier(FrozenEstimator(pca))
    scores = cross_val_score(verifier, pairs, same, cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.6)
    auc = cross_val_score(verifier, pairs, same, cv=3, scoring="roc_auc")
    assert np.all(auc > 0.7)
    # without freezing, clone returns an unfitted PCA
    message = (
        "The embedder PCA is not fitted; PairVerifier uses it as is. Fit it first, and "
        "wrap it in sklearn.frozen.FrozenEstimator if the verifier is cloned."
    )
    with pytest.raises(NotFittedError, match=re.escape(message)):
        clone(PairVerifier(pca)).fit(pairs, same)


def test_not_fitted_verifier():
    with pytest.raises(NotFittedError):
        PairVerifier().predict([0.5])


# parameter and input errors -------------------------------------------------------


def test_far_needs_target_far_and_target_far_needs_far():
    message = (
        "threshold='far' needs target_far, the largest false-accept rate allowed; "
        "got target_far=None."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        PairVerifier(threshold="far").fit([0.1, 0.9], [1, 0])
    message = "target_far=0.1 is only used with threshold='far'; got threshold='accuracy'."
    with pytest.raises(ValueError, match=re.escape(message)):
        PairVerifier(target_far=0.1).fit([0.1, 0.9], [1, 0])


def test_metric_needs_an_embedder():
    message = (
        "metric='cosine' needs an embedder; without one, X already holds distances. "
        "Leave metric=None or pass an embedder."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        PairVerifier(metric="cosine").fit([0.1, 0.9], [1, 0])


def test_invalid_parameters_are_reported_by_constraints():
    with pytest.raises(ValueError, match="The 'threshold' parameter of PairVerifier must be"):
        PairVerifier(threshold="f1").fit([0.1, 0.9], [1, 0])
    with pytest.raises(ValueError, match="The 'target_far' parameter of PairVerifier must be"):
        PairVerifier(threshold="far", target_far=1.5).fit([0.1, 0.9], [1, 0])
    with pytest.raises(ValueError, match="The 'embedder' parameter of PairVerifier must be"):
        PairVerifier(embedder="pca").fit([0.1, 0.9], [1, 0])


def test_input_shape_errors():
    message = (
        "Without an embedder, X holds one distance per pair, of shape (n_pairs,) or "
        "(n_pairs, 1); got shape (2, 2)."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        PairVerifier().fit([[0.1, 0.2], [0.3, 0.4]], [1, 0])
    embedder = _Embedding().fit([[0.0]])
    message = (
        "With an embedder, X holds the two samples of each pair: shape (n_pairs, 2, n_features), "
        "or (n_pairs, 2 * n_features) with the two samples side by side as "
        "np.hstack([X1, X2]). The embedder _Embedding takes 1 features, so X must have shape "
        "(n_pairs, 2, 1) or (n_pairs, 2); got shape (2, 3)."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        PairVerifier(embedder).fit(np.zeros((2, 3)), [1, 0])
    verifier = PairVerifier(embedder).fit(np.array([[0.0, 0.1], [0.0, 3.0]]), [1, 0])
    with pytest.raises(ValueError, match=re.escape(message.replace("(2, 3)", "(1, 4)"))):
        verifier.predict(np.zeros((1, 4)))


def test_pair_shape_errors_name_the_shapes_expected_not_half_widths():
    X, y = load_digits(return_X_y=True)
    pca = PCA(n_components=8, random_state=0).fit(X[:800])
    X1, X2, same = make_pairs(X[800:], y[800:], n_pairs=40, random_state=0)
    expected = (
        "With an embedder, X holds the two samples of each pair: shape (n_pairs, 2, n_features), "
        "or (n_pairs, 2 * n_features) with the two samples side by side as "
        "np.hstack([X1, X2]). The embedder PCA takes 64 features, so X must have shape "
        "(n_pairs, 2, 64) or (n_pairs, 128); got shape {}."
    )
    # one side only: an even width, but not two samples of the embedder's width
    with pytest.raises(ValueError, match=re.escape(expected.format("(40, 64)"))):
        PairVerifier(pca).fit(X1, same)
    with pytest.raises(ValueError, match=re.escape(expected.format("(40, 3, 64)"))):
        PairVerifier(pca).fit(np.stack([X1, X2, X1], axis=1), same)
    with pytest.raises(ValueError, match=re.escape(expected.format("(40, 2, 32)"))):
        PairVerifier(pca).fit(np.stack([X1[:, :32], X2[:, :32]], axis=1), same)
    verifier = PairVerifier(pca).fit(np.hstack([X1, X2]), same)
    with pytest.raises(ValueError, match=re.escape(expected.format("(40,)"))):
        verifier.predict(X1[:, 0])
    # no embedder: pairs of samples are refused with a pointer to the embedder
    message = (
        "Without an embedder, X holds one distance per pair, of shape (n_pairs,) or "
        "(n_pairs, 1); got shape (40, 2, 64). To compare pairs of samples, pass a fitted embedder."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        PairVerifier().fit(np.stack([X1, X2], axis=1), same)


def test_verifier_accepts_metric_learn_style_pairs():
    X, y = load_digits(return_X_y=True)
    pca = PCA(n_components=8, random_state=0).fit(X[:800])
    X1, X2, same = make_pairs(X[800:], y[800:], n_pairs=200, random_state=2)
    stacked, side_by_side = np.stack([X1, X2], axis=1), np.hstack([X1, X2])
    assert stacked.shape == (200, 2, 64)
    on_stacked = PairVerifier(pca, metric="cosine").fit(stacked, same)
    on_side_by_side = PairVerifier(pca, metric="cosine").fit(side_by_side, same)
    assert on_stacked.threshold_ == on_side_by_side.threshold_
    assert on_stacked.n_features_in_ == 128
    expected = on_side_by_side.decision_function(side_by_side)
    np.testing.assert_array_equal(on_stacked.decision_function(stacked), expected)
    np.testing.assert_array_equal(on_stacked.decision_function(side_by_side), expected)
    # metric-learn's labels: +1 for similar pairs, -1 for dissimilar ones
    signed = np.where(same, 1, -1)
    learn_style = PairVerifier(pca, metric="cosine").fit(stacked.tolist(), signed)
    assert learn_style.threshold_ == on_stacked.threshold_
    np.testing.assert_array_equal(
        learn_style.predict(stacked), np.where(on_stacked.predict(stacked), 1, -1)
    )


def test_y_must_hold_both_kinds_of_pairs():
    message = (
        "PairVerifier needs both same-class and different-class pairs in y; got the classes [True]."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        PairVerifier().fit([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match=re.escape("got the classes [0, 1, 2]")):
        PairVerifier().fit([0.1, 0.2, 0.3], [0, 1, 2])
    with pytest.raises(ValueError, match="Unknown label type"):
        PairVerifier().fit([0.1, 0.2], [0.5, 1.5])
