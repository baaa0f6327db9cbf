"""PairEmbedder and ComparisonEmbedder: the input forms, their errors, and scikit-learn's contract.

scikit-learn's estimator checks cannot feed 3-D tuples, so the equivalent checks are written here:
clone, pickle, determinism, searches and cross-validation, not-fitted errors, every bad input.
"""

import pickle
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone, is_classifier
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
from sklearn.pipeline import make_pipeline

from sklearn_triplet import ComparisonEmbedder, EmbeddingCollapseWarning, PairEmbedder
from sklearn_triplet._kernels import given_pairs_kernel, given_triplets_kernel
from sklearn_triplet._threshold import calibrate, threshold_from_options
from sklearn_triplet.losses import contrastive_loss_on_pairs, triplet_loss_on_triplets
from sklearn_triplet.verification import make_pairs

FAST = {
    "n_components": 4,
    "hidden_layer_sizes": (16,),
    "max_iter": 3,
    "batch_size": 32,
    "device": "cpu",
    # These tests look at the network and its training: the raw features, which separate the
    # blobs perfectly, would be kept (see the do-no-harm tests).
    "do_no_harm": False,
}


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4.0, size=(4, 6))
    y = np.repeat(np.arange(4), 15)
    X = centres[y] + rng.normal(size=(60, 6))
    return X, y


@pytest.fixture(scope="module")
def pairs(blobs):
    _, y = blobs
    first, second, same = make_pairs(np.arange(len(y))[:, None], y, n_pairs=120, random_state=0)
    return np.hstack([first, second]), np.where(same, 1, -1)


@pytest.fixture(scope="module")
def triplets(blobs):
    _, y = blobs
    rng = np.random.default_rng(0)
    anchors = rng.integers(len(y), size=120)
    positives = [
        rng.choice(np.flatnonzero((y == y[a]) & (np.arange(len(y)) != a))) for a in anchors
    ]
    negatives = [rng.choice(np.flatnonzero(y != y[a])) for a in anchors]
    return np.stack([anchors, positives, negatives], axis=1)


def make(kind, X, **params):
    cls = PairEmbedder if kind == "pair" else ComparisonEmbedder
    return cls(points=X, random_state=0, **{**FAST, **params})


def data(kind, pairs, triplets):
    """(X, y) of fit for the estimator ``kind``, as index tuples."""
    return pairs if kind == "pair" else (triplets, None)


KINDS = ["pair", "comparison"]


# -- the two forms of X --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_index_and_feature_tuples_train_the_same_network(kind, blobs, pairs, triplets):
    X, _ = blobs
    tuples, y = data(kind, pairs, triplets)
    by_index = make(kind, X).fit(tuples, y)
    by_features = make(kind, None).fit(X[tuples], y)
    # The same start and batches; the two forms embed a batch's points in another order, and
    # Adam's normalised steps carry the float rounding of the sums to about 1e-4.
    np.testing.assert_allclose(by_index.transform(X), by_features.transform(X), atol=1e-3)
    np.testing.assert_allclose(
        [row["loss"] for row in by_index.history_],
        [row["loss"] for row in by_features.history_],
        rtol=1e-4,
    )
    # Scoring works on either form, whatever the form of fit.
    np.testing.assert_allclose(
        by_index.decision_function(tuples), by_index.decision_function(X[tuples]), rtol=1e-5
    )


def _pair_loss_loop(first, second, y, margin, *, squared, average):
    """The contrastive loss of given pairs, one pair at a time."""
    terms = {1: [], -1: []}
    for a, b, label in zip(first.tolist(), second.tolist(), y.tolist()):
        d = sum((u - v) ** 2 for u, v in zip(a, b)) ** 0.5
        term = d if label == 1 else max(0.0, margin - d)
        terms[label].append(term**2 if squared else term)
    if average == "all":
        return sum(terms[1] + terms[-1]) / len(y)
    return sum(sum(kind) / max(1, sum(t > 0 for t in kind)) for kind in (terms[1], terms[-1]))


def _triplet_loss_loop(anchors, positives, negatives, margin, *, average):
    terms = []
    for a, p, n in zip(anchors.tolist(), positives.tolist(), negatives.tolist()):
        d_ap = sum((u - v) ** 2 for u, v in zip(a, p)) ** 0.5
        d_an = sum((u - v) ** 2 for u, v in zip(a, n)) ** 0.5
        terms.append(max(0.0, d_ap - d_an + margin))
    count = len(terms) if average == "all" else max(1, sum(t > 0 for t in terms))
    return sum(terms) / count


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("average", ["all", "active"])
def test_pair_loss_options_equal_a_loop(squared, average):
    rng = np.random.default_rng(0)
    first, second = torch.randn(40, 3, generator=torch.Generator().manual_seed(0)).split(20)
    y = torch.as_tensor(rng.choice([-1, 1], size=20))
    loss = given_pairs_kernel(
        first, second, y, margin=1.5, metric="euclidean", average=average, squared=squared
    ).loss
    expected = _pair_loss_loop(first, second, y, 1.5, squared=squared, average=average)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # Nothing active: a zero that stays attached to the graph.
    far = first.clone().requires_grad_()
    loss = given_pairs_kernel(
        far, far + 10, -torch.ones(20), margin=1.0, metric="euclidean", average=average
    ).loss
    assert loss.item() == 0.0 and loss.requires_grad


@pytest.mark.parametrize("average", ["all", "active"])
def test_triplet_loss_options_equal_a_loop(average):
    anchors, positives, negatives = torch.randn(
        60, 3, generator=torch.Generator().manual_seed(1)
    ).split(20)
    loss = given_triplets_kernel(
        anchors, positives, negatives, margin=0.5, metric="euclidean", average=average
    ).loss
    expected = _triplet_loss_loop(anchors, positives, negatives, 0.5, average=average)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("average", ["all", "active"])
def test_given_loss_gradients_in_float64(average):
    generator = torch.Generator().manual_seed(2)
    first, second = torch.randn(2, 8, 3, dtype=torch.float64, generator=generator)
    first.requires_grad_()
    y = torch.tensor([1, -1, 1, -1, 1, -1, 1, -1])

    def pair_loss(first):
        return given_pairs_kernel(
            first, second, y, margin=3.0, metric="euclidean", average=average, squared=False
        ).loss

    assert torch.autograd.gradcheck(pair_loss, (first,))

    def triplet_loss(first):
        return given_triplets_kernel(
            first, second, second.flip(0), margin=3.0, metric="euclidean", average=average
        ).loss

    assert torch.autograd.gradcheck(triplet_loss, (first,))


@pytest.mark.parametrize("kind", KINDS)
def test_training_sees_exactly_the_given_tuples(kind, blobs, pairs, triplets):
    # A known linear backbone (deep-copied at fit), no normalisation and one batch holding every
    # tuple: the first epoch's loss is the loss of the given tuples under the initial network,
    # nothing mined or inferred from points that several tuples share.
    X, _ = blobs
    tuples, y = data(kind, pairs, triplets)
    torch.manual_seed(0)
    linear = torch.nn.Linear(6, 4)
    papers = {"squared": True, "average": "all"} if kind == "pair" else {"average": "all"}
    model = make(kind, X, backbone=linear, normalize=False, batch_size=1000, max_iter=1, **papers)
    model.fit(tuples, y)
    with torch.no_grad():
        members = linear(torch.as_tensor(X[tuples], dtype=torch.float32))
        if kind == "pair":
            expected = contrastive_loss_on_pairs(
                members[:, 0], members[:, 1], torch.as_tensor(y), margin=1.0
            )
        else:
            expected = triplet_loss_on_triplets(*members.unbind(1), margin=0.2)
    assert model.history_[0]["loss"] == pytest.approx(expected.item(), rel=1e-5)
    row = model.history_[0]
    if kind == "pair":
        assert (row["n_pairs"], row["n_positive_pairs"]) == (120, int((y == 1).sum()))
    else:
        assert row["n_triplets"] == 120
        assert row["n_easy"] + row["n_semi_hard"] + row["n_hard"] == 120


def test_pair_embedder_predicts_with_the_threshold_calibrated_on_its_pairs(blobs, pairs):
    X, _ = blobs
    tuples, y = pairs
    model = make("pair", X).fit(tuples, y)
    assert is_classifier(model)
    embeddings = model.transform(X)
    distances = np.linalg.norm(embeddings[tuples[:, 0]] - embeddings[tuples[:, 1]], axis=1)
    np.testing.assert_allclose(model.pair_distance(tuples), distances, rtol=1e-5)
    distances = model.pair_distance(tuples)
    assert model.threshold_ == calibrate(distances, y > 0)
    np.testing.assert_allclose(model.decision_function(tuples), model.threshold_ - distances)
    expected = np.where(distances < model.threshold_, 1, -1)
    np.testing.assert_array_equal(model.predict(tuples), expected)
    assert model.score(tuples, y) == pytest.approx(np.mean(expected == y))
    np.testing.assert_array_equal(model.classes_, [-1, 1])
    # A calibrated threshold maximises the accuracy of the training pairs.
    for candidate in np.unique(distances):
        assert np.mean(np.where(distances < candidate, 1, -1) == y) <= model.score(tuples, y)


def test_pair_embedder_threshold_options(blobs, pairs):
    X, _ = blobs
    tuples, y = pairs
    fixed = make("pair", X, threshold=0.5).fit(tuples, y)
    assert fixed.threshold_ == 0.5
    strict = make("pair", X, threshold="far", target_far=0.0).fit(tuples, y)
    dissimilar = y < 0
    assert not (strict.predict(tuples)[dissimilar] == 1).any()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_early_stopping_calibrates_the_threshold_on_the_held_out_pairs(blobs, pairs, monkeypatch):
    X, _ = blobs
    tuples, y = pairs
    seen = []

    def recording(threshold, target_far, distances, same):
        seen.append((len(distances), int(same.sum())))
        return threshold_from_options(threshold, target_far, distances, same)

    monkeypatch.setattr("sklearn_triplet._pair.threshold_from_options", recording)
    n_similar = int((y == 1).sum())
    make("pair", X, early_stopping=True, validation_fraction=0.25).fit(tuples, y)
    expected_similar = round(0.25 * n_similar)
    assert seen == [(expected_similar + round(0.25 * (120 - n_similar)), expected_similar)]
    make("pair", X).fit(tuples, y)
    assert seen[-1] == (120, n_similar)


def test_comparison_embedder_orders_triplets_by_distance(blobs, triplets):
    X, _ = blobs
    model = make("comparison", X, max_iter=10).fit(triplets)
    embeddings = model.transform(X)
    a, p, n = (embeddings[triplets[:, i]] for i in range(3))
    gaps = np.linalg.norm(a - n, axis=1) - np.linalg.norm(a - p, axis=1)
    np.testing.assert_allclose(model.decision_function(triplets), gaps, atol=1e-5)
    np.testing.assert_array_equal(model.predict(triplets), np.where(gaps > 0, 1, -1))
    assert model.score(triplets) == pytest.approx(np.mean(gaps > 0))
    assert model.score(triplets) > 0.9  # well separated blobs
    # Reversing each triplet's last two points reverses the order.
    assert model.score(triplets[:, [0, 2, 1]]) == pytest.approx(1 - model.score(triplets))


@pytest.mark.parametrize("kind", KINDS)
def test_transform_embeds_points_for_a_downstream_pipeline(kind, blobs, pairs, triplets):
    X, labels = blobs
    tuples, y = data(kind, pairs, triplets)
    model = make(kind, X, max_iter=10).fit(tuples, y)
    assert model.transform(X).shape == (60, 4)
    assert model.transform(X).dtype == np.float32
    assert model.n_features_in_ == 6
    pipeline = make_pipeline(FrozenEstimator(model), KNeighborsClassifier(n_neighbors=3))
    assert pipeline.fit(X[::2], labels[::2]).score(X[1::2], labels[1::2]) > 0.9
    names = model.get_feature_names_out()
    assert names.tolist() == [f"{type(model).__name__.lower()}{i}" for i in range(4)]


def test_points_as_a_dataframe_keeps_feature_names(blobs, pairs):
    X, _ = blobs
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    model = make("pair", frame).fit(*pairs)
    assert model.feature_names_in_.tolist() == list(frame.columns)
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        plain = model.transform(X)
    np.testing.assert_allclose(model.transform(frame), plain)


# -- scikit-learn's contract -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_clone_pickle_and_determinism(kind, blobs, pairs, triplets):
    X, _ = blobs
    tuples, y = data(kind, pairs, triplets)
    model = make(kind, X)
    unfitted = clone(model)
    assert not hasattr(unfitted, "module_")
    assert unfitted.get_params()["points"] is not X  # clone copies the points
    np.testing.assert_array_equal(unfitted.points, X)
    model.fit(tuples, y)
    again = clone(model).fit(tuples, y)
    np.testing.assert_array_equal(model.transform(X), again.transform(X))
    assert model.history_[-1]["loss"] == again.history_[-1]["loss"]
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.transform(X), model.transform(X))
    np.testing.assert_array_equal(
        restored.decision_function(tuples), model.decision_function(tuples)
    )
    pickle.loads(pickle.dumps(clone(model)))  # unfitted too


@pytest.mark.parametrize("kind", KINDS)
def test_global_random_state_is_left_alone(kind, blobs, pairs, triplets):
    X, _ = blobs
    tuples, y = data(kind, pairs, triplets)
    np.random.seed(1)
    torch.manual_seed(1)
    numpy_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state()
    make(kind, X).fit(tuples, y)
    assert np.array_equal(np.random.get_state()[1], numpy_state)
    assert torch.equal(torch.get_rng_state(), torch_state)


@pytest.mark.parametrize("kind", KINDS)
def test_grid_search_over_margin_and_cross_validation(kind, blobs, pairs, triplets):
    X, _ = blobs
    tuples, y = data(kind, pairs, triplets)
    search = GridSearchCV(make(kind, X), {"margin": [0.2, 0.5]}, cv=3).fit(tuples, y)
    assert search.best_params_["margin"] in (0.2, 0.5)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    # 3-D tuples, without points, split the same way.
    scores = cross_validate(make(kind, None), X[tuples], y, cv=3)["test_score"]
    assert scores.shape == (3,) and ((scores >= 0) & (scores <= 1)).all()


@pytest.mark.parametrize("kind", KINDS)
def test_partial_fit_warm_start_and_early_stopping(kind, blobs, pairs, triplets):
    X, _ = blobs
    tuples, y = data(kind, pairs, triplets)
    model = make(kind, X, max_iter=2, warm_start=True).fit(tuples, y)
    model.fit(tuples, y)
    assert [row["epoch"] for row in model.history_] == [1, 2, 3, 4]
    model.partial_fit(tuples, y)
    assert model.n_iter_ == 5
    stopped = make(kind, X, max_iter=30, early_stopping=True, n_iter_no_change=2).fit(tuples, y)
    assert "validation_score" in stopped.history_[0]
    assert 0.0 <= stopped.history_[-1]["validation_score"] <= 1.0
    assert stopped.n_iter_ < 30
    assert stopped.validation_scores_ == [row["validation_score"] for row in stopped.history_]
    assert stopped.best_validation_score_ == max(stopped.validation_scores_)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "method", ["transform", "decision_function", "predict", "pair_distance", "score"]
)
def test_not_fitted(kind, method, blobs, pairs, triplets):
    X, _ = blobs
    tuples, y = data(kind, pairs, triplets)
    model = make(kind, X)
    argument = (
        X if method == "transform" else (tuples[:, :2] if method == "pair_distance" else tuples)
    )
    args = (argument, y) if method == "score" and kind == "pair" else (argument,)
    with pytest.raises(NotFittedError):
        getattr(model, method)(*args)


@pytest.mark.parametrize("kind", KINDS)
def test_fit_transform_is_refused(kind, blobs, pairs, triplets):
    X, _ = blobs
    tuples, y = data(kind, pairs, triplets)
    name, what = ("PairEmbedder", "pair") if kind == "pair" else ("ComparisonEmbedder", "triplet")
    message = (
        f"{name}.fit learns from {what}s and transform embeds single points, so there is no one X "
        f"for fit_transform; call fit({what}s, ...) and then transform(points)."
    )
    with pytest.raises(TypeError, match=re.escape(message)):
        make(kind, X).fit_transform(tuples, y)


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, shape",
    [("pair", (10, 3, 6)), ("pair", (10,)), ("pair", (10, 2, 3, 2)), ("comparison", (10, 2))],
)
def test_wrong_tuple_shape(kind, shape):
    name, what, k = (
        ("PairEmbedder", "pair", 2) if kind == "pair" else ("ComparisonEmbedder", "triplet", 3)
    )
    message = (
        f"X must be {what}s for {name}: an array of shape (n_{what}s, {k}, n_features), or "
        f"integer indices of shape (n_{what}s, {k}) into points; got shape {shape}."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        make(kind, None).fit(np.zeros(shape, dtype=int), np.ones(10) if kind == "pair" else None)


def test_index_tuples_need_points_and_integers(blobs, pairs):
    X, _ = blobs
    tuples, y = pairs
    message = (
        "points must be an array of shape (n_points, n_features), or a callable, when X holds "
        "index pairs, as X of shape (120, 2) does (X of shape (n_pairs, 2, n_features) needs "
        "none); got None."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        make("pair", None).fit(tuples, y)
    message = "the index pairs in X must be integers; got dtype float64."
    with pytest.raises(ValueError, match=re.escape(message)):
        make("pair", X).fit(tuples.astype(float), y)


@pytest.mark.parametrize("bad, where", [(-1, "negative"), (60, "past the end")])
def test_indices_out_of_range(bad, where, blobs, triplets):
    X, _ = blobs
    broken = triplets.copy()
    broken[7, 2] = bad
    message = (
        "the indices in X must be in [0, 59], rows of points (which has 60 rows); got "
        f"{bad} in triplet 7."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        make("comparison", X).fit(broken)


def test_nan_in_features_or_points(blobs, pairs):
    X, _ = blobs
    tuples, y = pairs
    features = X[tuples]
    features[3, 1, 2] = np.nan
    with pytest.raises(ValueError, match=re.escape("Input X contains NaN.")):
        make("pair", None).fit(features, y)
    points = X.copy()
    points[tuples[5, 0], 0] = np.nan
    with pytest.raises(ValueError, match=re.escape("Input points contains NaN.")):
        make("pair", points).fit(tuples, y)


LABELS = (
    "y must be two labels, the greater meaning a similar pair (+1 and -1, 1 and 0, True and "
    "False), one per pair; got "
)


@pytest.mark.parametrize("labels", [[0, 1], [False, True], [1.0, 2.0], ["different", "same"]])
def test_any_two_pair_labels_the_greater_meaning_similar(labels, blobs, pairs):
    # metric-learn takes +1 / -1 alone; the greater of any two labels means similar here, as
    # scikit-learn's binary classifiers read classes_[1] as the positive class.
    X, _ = blobs
    tuples, y = pairs
    relabelled = np.where(y > 0, labels[1], labels[0])
    reference = make("pair", X).fit(tuples, y)
    model = make("pair", X).fit(tuples, relabelled)
    assert model.threshold_ == reference.threshold_
    np.testing.assert_array_equal(model.classes_, [-1, 1])  # ours, whatever the labels
    np.testing.assert_array_equal(model.predict(tuples), reference.predict(tuples))
    assert model.score(tuples, relabelled) == reference.score(tuples, y)


@pytest.mark.parametrize(
    "labels, received",
    [([0, 1, 2], "the values [0, 1, 2]"), (["a", "b", "c"], "the values ['a', 'b', 'c']")],
)
def test_three_pair_labels_are_refused(labels, received, blobs, pairs):
    X, _ = blobs
    tuples, _ = pairs
    y = np.resize(np.array(labels), len(tuples))
    with pytest.raises(ValueError, match=re.escape(f"{LABELS}{received}.")):
        make("pair", X).fit(tuples, y)


def test_nan_pair_labels_are_refused(blobs, pairs):
    X, _ = blobs
    tuples, y = pairs
    with pytest.raises(ValueError, match=re.escape(f"{LABELS}NaN or infinite values.")):
        make("pair", X).fit(tuples, np.where(y > 0, 1.0, np.nan))


def test_one_pair_label_in_score(blobs, pairs):
    X, _ = blobs
    tuples, y = pairs
    model = make("pair", X).fit(tuples, y)
    similar = y > 0
    expected = np.mean(model.predict(tuples[similar]) == 1)
    for label in (1, True):
        assert model.score(tuples[similar], np.full(similar.sum(), label)) == expected
    expected = np.mean(model.predict(tuples[~similar]) == -1)
    for label in (-1, 0, False):
        assert model.score(tuples[~similar], np.full((~similar).sum(), label)) == expected
    message = (
        f"{LABELS[:-6]}; a single label must be 1 (similar) or -1 or 0 (dissimilar); got only 'a'."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        model.score(tuples, np.full(len(tuples), "a"))


@pytest.mark.parametrize("label, which", [(1, "similar (+1)"), (-1, "dissimilar (-1)")])
def test_only_one_kind_of_pair(label, which, blobs, pairs):
    X, _ = blobs
    tuples, _ = pairs
    message = (
        "PairEmbedder needs both similar (+1) and dissimilar (-1) pairs to learn from; all 120 "
        f"pairs in y are {which}."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        make("pair", X).fit(tuples, np.full(len(tuples), label))


def test_pair_labels_missing_or_misaligned(blobs, pairs):
    X, _ = blobs
    tuples, y = pairs
    with pytest.raises(ValueError, match=re.escape(f"{LABELS}None.")):
        make("pair", X).fit(tuples, None)
    message = "y must be of length 120, one label per pair of X; got 119."
    with pytest.raises(ValueError, match=re.escape(message)):
        make("pair", X).fit(tuples, y[:-1])


def test_triplets_take_no_y(blobs, triplets):
    X, _ = blobs
    message = (
        "y must be None: ComparisonEmbedder learns from the order within each triplet alone (its "
        "first point is more like the second than like the third; swap the last two to reverse "
        "it); got ndarray."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        make("comparison", X).fit(triplets, np.ones(len(triplets)))


def test_threshold_options_are_checked(blobs, pairs):
    X, _ = blobs
    # The messages of PairVerifier: one implementation of the threshold options.
    message = (
        "threshold='far' needs target_far, the largest false-accept rate allowed; got "
        "target_far=None."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        make("pair", X, threshold="far").fit(*pairs)
    message = "target_far=0.1 is only used with threshold='far'; got threshold='accuracy'."
    with pytest.raises(ValueError, match=re.escape(message)):
        make("pair", X, target_far=0.1).fit(*pairs)


@pytest.mark.parametrize("kind", KINDS)
def test_parameters_are_validated(kind, blobs, pairs, triplets):
    X, _ = blobs
    tuples, y = data(kind, pairs, triplets)
    with pytest.raises(ValueError, match=re.escape("The 'margin' parameter of")):
        make(kind, X, margin=0).fit(tuples, y)
    with pytest.raises(ValueError, match=re.escape("The 'points' parameter of")):
        make(kind, "points").fit(tuples, y)


def test_new_points_of_another_width_are_refused(blobs, pairs):
    X, _ = blobs
    model = make("pair", X).fit(*pairs)
    message = "X has 5 features, but PairEmbedder is expecting 6 features as input."
    with pytest.raises(ValueError, match=re.escape(message)):
        model.decision_function(np.zeros((4, 2, 5)))
    with pytest.raises(ValueError, match=re.escape(message)):
        model.transform(np.zeros((4, 5)))


# -- training: history, callbacks, verbose, warnings, devices --------------------------------------


def test_history_counts_the_given_pairs(blobs, pairs):
    X, _ = blobs
    tuples, y = pairs
    model = make("pair", X, batch_size=50).fit(tuples, y)
    for row in model.history_:
        assert (row["n_pairs"], row["n_positive_pairs"]) == (120, int((y == 1).sum()))
        assert row["n_negative_pairs"] == 120 - row["n_positive_pairs"]
        assert row["active_fraction"] == row["n_active_pairs"] / 120
        assert 0.0 < row["mean_distance"] <= 2.0  # unit vectors
    assert model.n_iter_ == 3


def test_history_counts_the_triplet_taxonomy(blobs, triplets):
    X, _ = blobs
    model = make("comparison", X).fit(triplets)
    row = model.history_[-1]
    assert row["n_triplets"] == 120
    assert row["n_easy"] + row["n_semi_hard"] + row["n_hard"] == 120
    assert row["easy_fraction"] == row["n_easy"] / 120


@pytest.mark.parametrize("kind", KINDS)
def test_callback_stops_and_verbose_reports(kind, blobs, pairs, triplets, capsys):
    X, _ = blobs
    tuples, y = data(kind, pairs, triplets)
    seen = []

    def callback(estimator, epoch, logs):
        seen.append((epoch, logs["loss"]))
        return epoch == 2

    model = make(kind, X, max_iter=10, callback=callback, verbose=2).fit(tuples, y)
    assert model.n_iter_ == 2 and [epoch for epoch, _ in seen] == [1, 2]
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1/10  loss") and "active" in lines[0]


def test_collapse_warning_names_the_dissimilar_pairs(blobs, pairs):
    X, _ = blobs
    tuples, y = pairs
    # A margin far beyond the diameter of the unit sphere: every pair stays inside it.
    with pytest.warns(EmbeddingCollapseWarning) as record:
        make("pair", X, margin=100.0).fit(tuples, y)
    (message,) = [str(w.message) for w in record if w.category is EmbeddingCollapseWarning]
    assert "between the two points of the dissimilar pairs in the last batch" in message
    assert "mining" not in message


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_fit_matches_the_cpu(kind, blobs, pairs, triplets):
    X, _ = blobs
    tuples, y = data(kind, pairs, triplets)
    on_gpu = make(kind, X, device="cuda").fit(tuples, y)
    on_cpu = make(kind, X, device="cpu").fit(tuples, y)
    assert on_gpu.device_.type == "cuda"
    np.testing.assert_allclose(on_gpu.transform(X), on_cpu.transform(X), atol=1e-3)
    np.testing.assert_allclose(
        on_gpu.decision_function(tuples), on_cpu.decision_function(tuples), atol=1e-3
    )
    restored = pickle.loads(pickle.dumps(on_gpu))
    np.testing.assert_array_equal(restored.transform(X), on_gpu.transform(X))


# -- the validation score is named by the estimator ------------------------------------------------


@pytest.mark.parametrize(
    "kind, name", [("pair", "ROC AUC"), ("comparison", "triplet accuracy")], ids=KINDS
)
def test_the_validation_score_is_reported_and_plotted_under_its_own_name(
    kind, name, blobs, pairs, triplets, capsys
):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from sklearn_triplet.plotting import HistoryDisplay

    X, _ = blobs
    model = make(kind, X, max_iter=2, early_stopping=True, verbose=2)
    model.fit(*data(kind, pairs, triplets))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    score = model.history_[0]["validation_score"]
    assert f"  val {name} {score:.3f}  " in lines[0] and "MAP@R" not in lines[0]
    display = HistoryDisplay.from_estimator(model)
    validation = display.axes_[-1]
    assert validation.get_ylabel() == name
    assert validation.get_legend().get_texts()[0].get_text() == f"validation {name}"
    plt.close("all")


# -- the default recipe and do no harm -----------------------------------------------------------


@pytest.fixture(scope="module")
def digits_pairs():
    """500 pairs and 500 triplets of standardised digits, as index tuples into the points."""
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    first, second, same = make_pairs(np.arange(len(y))[:, None], y, n_pairs=500, random_state=0)
    rng = np.random.default_rng(0)
    anchors = rng.integers(len(y), size=500)
    positives = [
        rng.choice(np.flatnonzero((y == y[a]) & (np.arange(len(y)) != a))) for a in anchors
    ]
    negatives = [rng.choice(np.flatnonzero(y != y[a])) for a in anchors]
    triplets = np.stack([anchors, positives, negatives], axis=1)
    return X, (np.hstack([first, second]), np.where(same, 1, -1)), (triplets, None)


@pytest.mark.parametrize("kind", KINDS)
def test_a_short_grid_search_with_the_defaults_warns_nothing(kind, digits_pairs):
    # With the previous constant learning rate, 4 of the 7 fits of this search (3 folds x 2
    # margins, then the refit) warned that the training loss was still falling at max_iter.
    X, pairs, triplets = digits_pairs
    tuples, y = pairs if kind == "pair" else triplets
    cls = PairEmbedder if kind == "pair" else ComparisonEmbedder
    search = GridSearchCV(
        cls(points=X, hidden_layer_sizes=(64,), random_state=0), {"margin": [0.5, 1.0]}, cv=3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        search.fit(tuples, y)
    assert search.best_score_ > 0.5


def test_the_defaults_are_the_studied_recipe():
    for cls in (PairEmbedder, ComparisonEmbedder):
        params = cls().get_params()
        assert params["backbone"] == "residual" and params["normalize"] is False
        assert params["learning_rate"] == "cosine" and params["learning_rate_init"] == 3e-4
        assert params["average"] == "active" and params["do_no_harm"] is True
        assert params["n_components"] is None  # as many as the features: the raw geometry
    assert PairEmbedder().squared is False


@pytest.mark.parametrize("kind", KINDS)
def test_training_that_cannot_help_keeps_the_raw_neighbours(kind, blobs, pairs, triplets):
    # The raw features already order every held-out tuple right: the trained network cannot be
    # better on them, so the defaults keep the raw features and their nearest neighbours.
    X, _ = blobs
    tuples, y = data(kind, pairs, triplets)
    cls = PairEmbedder if kind == "pair" else ComparisonEmbedder
    model = cls(points=X, max_iter=5, random_state=0).fit(tuples, y)
    assert model.raw_kept_
    assert model.held_out_scores_ == {"trained": 1.0, "raw": 1.0}
    assert model.n_components_ == X.shape[1]
    np.testing.assert_array_equal(model.transform(X), X.astype(np.float32))
    raw = NearestNeighbors(n_neighbors=5).fit(X).kneighbors(X, return_distance=False)
    ours = NearestNeighbors(n_neighbors=5).fit(model.transform(X))
    np.testing.assert_array_equal(ours.kneighbors(model.transform(X), return_distance=False), raw)
    exported = model.export_module()
    assert torch.equal(
        exported(torch.as_tensor(X[:3], dtype=torch.float32)).double(),
        torch.as_tensor(X[:3]).float().double(),
    )
    if kind == "pair":  # the threshold is calibrated on the raw distances
        assert model.score(tuples, y) == pytest.approx(
            calibrated_accuracy(np.linalg.norm(X[tuples[:, 0]] - X[tuples[:, 1]], axis=1), y)
        )


def calibrated_accuracy(distances, y):
    threshold = calibrate(distances, y > 0)
    return float(np.mean(np.where(distances < threshold, 1, -1) == y))


@pytest.mark.parametrize("kind", KINDS)
def test_training_that_helps_is_kept(kind):
    # Two informative features under 30 of noise: the raw neighbours are poor, the tuples say
    # which features matter.
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    X = np.hstack([3.0 * rng.normal(size=(3, 2))[labels], rng.normal(size=(120, 30))])
    if kind == "pair":
        first, second, same = make_pairs(
            np.arange(120)[:, None], labels, n_pairs=600, random_state=0
        )
        tuples, y = np.hstack([first, second]), np.where(same, 1, -1)
    else:
        anchors = rng.integers(120, size=600)
        positives = [rng.choice(np.flatnonzero(labels == labels[a])) for a in anchors]
        negatives = [rng.choice(np.flatnonzero(labels != labels[a])) for a in anchors]
        tuples, y = np.stack([anchors, positives, negatives], axis=1), None
    cls = PairEmbedder if kind == "pair" else ComparisonEmbedder
    model = cls(points=X, n_components=8, hidden_layer_sizes=(32,), random_state=0)
    model.fit(tuples, y)
    assert not model.raw_kept_
    assert model.held_out_scores_["trained"] > model.held_out_scores_["raw"]
    assert model.transform(X).shape == (120, 8) and model.n_components_ == 8
    knn = KNeighborsClassifier(5)
    raw = knn.fit(X[::2], labels[::2]).score(X[1::2], labels[1::2])
    embedded = model.transform(X)
    assert knn.fit(embedded[::2], labels[::2]).score(embedded[1::2], labels[1::2]) > raw


@pytest.mark.parametrize("kind", KINDS)
def test_do_no_harm_off_and_partial_fit_use_the_network(kind, blobs, pairs, triplets):
    X, _ = blobs
    tuples, y = data(kind, pairs, triplets)
    cls = PairEmbedder if kind == "pair" else ComparisonEmbedder
    model = cls(points=X, n_components=4, max_iter=2, do_no_harm=False, random_state=0)
    model.fit(tuples, y)
    assert not model.raw_kept_ and model.held_out_scores_ is None
    assert model.transform(X).shape == (60, 4)
    guarded = cls(points=X, n_components=4, max_iter=2, random_state=0).fit(tuples, y)
    assert guarded.raw_kept_
    guarded.partial_fit(tuples, y)  # partial_fit trains the network and uses it
    assert not guarded.raw_kept_ and guarded.transform(X).shape == (60, 4)


def test_do_no_harm_without_enough_pairs_to_hold_out_uses_the_network(blobs):
    X, _ = blobs
    pairs = np.array([[0, 1], [2, 3], [0, 20], [2, 40], [5, 50]])
    y = np.array([1, 1, -1, -1, -1])
    model = PairEmbedder(points=X, n_components=4, max_iter=2, random_state=0).fit(pairs[1:], y[1:])
    assert not model.raw_kept_ and model.held_out_scores_ is None
    assert model.transform(X).shape == (60, 4)


def test_the_residual_network_starts_at_the_raw_geometry(blobs, pairs):
    # With n_components >= n_features and no training step, distances are the raw ones, scaled
    # so that their root mean square is 1.
    X, _ = blobs
    points = X.astype(np.float32)
    model = PairEmbedder(
        points=X, n_components=8, max_iter=1, learning_rate_init=1e-30, do_no_harm=False
    ).fit(*pairs)
    embedded = model.transform(X)
    raw = np.linalg.norm(points[:, None] - points[None], axis=-1)
    ours = np.linalg.norm(embedded[:, None] - embedded[None], axis=-1)
    scale = float(model.module_.backbone.scale)
    np.testing.assert_allclose(ours, scale * raw, atol=1e-4)
    used = np.unique(pairs[0])  # the points the pairs use set the scale
    distinct = ~np.eye(len(used), dtype=bool)
    assert np.sqrt(np.mean(ours[np.ix_(used, used)][distinct] ** 2)) == pytest.approx(1.0, rel=1e-4)


def test_residual_network_checks_and_round_trip(blobs, pairs, tmp_path):
    from sklearn_triplet import load

    X, _ = blobs
    with pytest.raises(
        ValueError,
        match=re.escape(
            "backbone='residual' takes no backbone_params; got backbone_params={'a': 1}. Its "
            "hidden widths are hidden_layer_sizes."
        ),
    ):
        PairEmbedder(points=X, backbone_params={"a": 1}).fit(*pairs)
    for do_no_harm in (True, False):
        model = PairEmbedder(points=X, max_iter=2, do_no_harm=do_no_harm, random_state=0)
        model.fit(*pairs)
        path = tmp_path / f"model{do_no_harm}.safetensors"
        model.save(path)
        loaded = load(path)
        assert loaded.raw_kept_ == model.raw_kept_
        np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
        np.testing.assert_array_equal(
            pickle.loads(pickle.dumps(model)).transform(X), model.transform(X)
        )


@pytest.mark.parametrize("kind", KINDS)
def test_the_default_embedding_starts_as_the_raw_distances(kind, blobs, pairs, triplets):
    # n_components=None: as many components as features, so that before any training step the
    # embedding keeps every raw distance (scaled), not those of a projection on fewer axes.
    X, _ = blobs
    cls = PairEmbedder if kind == "pair" else ComparisonEmbedder
    model = cls(points=X, max_iter=1, learning_rate_init=1e-30, do_no_harm=False, random_state=0)
    model.fit(*data(kind, pairs, triplets))
    embedded = model.transform(X)
    assert model.n_components is None and model.n_components_ == embedded.shape[1] == X.shape[1]
    raw = np.linalg.norm(X[:, None] - X[None], axis=-1)
    ours = np.linalg.norm(embedded[:, None] - embedded[None], axis=-1)
    np.testing.assert_allclose(ours, float(model.module_.backbone.scale) * raw, atol=1e-4)
    with pytest.raises(ValueError, match="The 'n_components' parameter of"):
        cls(points=X, n_components=0).fit(*data(kind, pairs, triplets))


def digit_splits(seed, n_tuples):
    """The protocol of benchmarks/pairs.py on the digits: a stratified 3:1 split, standardised
    on the training part; ``n_tuples`` training pairs and triplets drawn from its labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=seed
    )
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    first, second, same = make_pairs(
        np.arange(len(y_train))[:, None], y_train, n_pairs=n_tuples, random_state=seed
    )
    rng = np.random.default_rng(seed)
    anchors = rng.integers(len(y_train), size=n_tuples)
    positives = [
        rng.choice(np.flatnonzero((y_train == y_train[a]) & (np.arange(len(y_train)) != a)))
        for a in anchors
    ]
    negatives = [rng.choice(np.flatnonzero(y_train != y_train[a])) for a in anchors]
    return (
        (X_train, y_train, X_test, y_test),
        (np.hstack([first, second]), np.where(same, 1, -1)),
        np.stack([anchors, positives, negatives], axis=1),
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_learning_from_digit_tuples_does_not_make_the_neighbours_worse(kind):
    # The digits' raw pixels are already good neighbours (5-NN accuracy 0.97): learning from
    # 2,000 pairs or triplets with the defaults must not make KNN worse. With 32 components and
    # a rate of 1e-3 (the defaults before), it did, on average over these three splits.
    knn = KNeighborsClassifier(n_neighbors=5)
    cls = PairEmbedder if kind == "pair" else ComparisonEmbedder
    raw, ours = [], []
    for seed in range(3):
        (X_train, y_train, X_test, y_test), pairs, triplets = digit_splits(seed, 2000)
        model = cls(points=X_train, random_state=seed).fit(*data(kind, pairs, triplets))
        raw.append(knn.fit(X_train, y_train).score(X_test, y_test))
        embedded = model.transform(X_train), model.transform(X_test)
        ours.append(knn.fit(embedded[0], y_train).score(embedded[1], y_test))
    assert np.mean(ours) >= np.mean(raw)
