"""PairEmbedder and ComparisonEmbedder: the input forms, their errors, and scikit-learn's contract.

scikit-learn's estimator checks cannot feed 3-D tuples, so the equivalent checks are written here:
clone, pickle, determinism, searches and cross-validation, not-fitted errors, every bad input.
"""

import pickle
import re

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from sklearn_triplet import ComparisonEmbedder, EmbeddingCollapseWarning, PairEmbedder
from sklearn_triplet.losses import contrastive_loss_on_pairs, triplet_loss_on_triplets
from sklearn_triplet.verification import calibrate_threshold, make_pairs

FAST = {
    "n_components": 4,
    "hidden_layer_sizes": (16,),
    "max_iter": 3,
    "batch_size": 32,
    "device": "cpu",
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
    np.testing.assert_allclose(by_index.transform(X), by_features.transform(X), atol=1e-5)
    np.testing.assert_allclose(
        [row["loss"] for row in by_index.history_],
        [row["loss"] for row in by_features.history_],
        rtol=1e-5,
    )
    # Scoring works on either form, whatever the form of fit.
    np.testing.assert_allclose(
        by_index.decision_function(tuples), by_index.decision_function(X[tuples]), rtol=1e-5
    )


@pytest.mark.parametrize("kind", KINDS)
def test_training_sees_exactly_the_given_tuples(kind, blobs, pairs, triplets):
    # A known linear backbone (deep-copied at fit), no normalisation and one batch holding every
    # tuple: the first epoch's loss is the loss of the given tuples under the initial network,
    # nothing mined or inferred from points that several tuples share.
    X, _ = blobs
    tuples, y = data(kind, pairs, triplets)
    torch.manual_seed(0)
    linear = torch.nn.Linear(6, 4)
    model = make(kind, X, backbone=linear, normalize=False, batch_size=1000, max_iter=1)
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
    assert model.threshold_ == calibrate_threshold(distances, y > 0)
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

    def recording(distances, same, target_far=None):
        seen.append((len(distances), int(same.sum())))
        return calibrate_threshold(distances, same, target_far)

    monkeypatch.setattr("sklearn_triplet._pair.calibrate_threshold", recording)
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
        "points must be an array of shape (n_points, n_features) when X holds index pairs, as X "
        "of shape (120, 2) does (X of shape (n_pairs, 2, n_features) needs none); got None."
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


@pytest.mark.parametrize(
    "labels, values",
    [([0, 1], "[0, 1]"), ([1.0, 2.0], "[1.0, 2.0]"), (["a", "b"], "['a', 'b']")],
)
def test_pair_labels_other_than_plus_minus_one(labels, values, blobs, pairs):
    X, _ = blobs
    tuples, _ = pairs
    y = np.resize(np.array(labels), len(tuples))
    message = (
        "y must be +1 (similar pair) or -1 (dissimilar pair) for each pair (from a boolean array "
        f"same: np.where(same, 1, -1)); got the values {values}."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        make("pair", X).fit(tuples, y)


def test_bool_pair_labels_are_refused(blobs, pairs):
    X, _ = blobs
    tuples, y = pairs
    with pytest.raises(ValueError, match=re.escape("got the values [False, True]")):
        make("pair", X).fit(tuples, y > 0)


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
    message = "y must be +1 (similar pair) or -1 (dissimilar pair) for each pair; got None."
    with pytest.raises(ValueError, match=re.escape(message)):
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
    message = (
        "target_far must be the largest false-accept rate allowed, with threshold='far'; got None."
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
