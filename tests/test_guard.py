"""do_no_harm: the held-out split, the scores, the choice, and the estimators that use them."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, make_blobs

from sklearn_triplet import RawFeaturesKeptWarning, SiameseEmbedder, TripletEmbedder, load
from sklearn_triplet._guard import (
    held_out_classes_split,
    held_out_scores,
    held_out_split,
    keeps_trained,
)
from sklearn_triplet.metrics import retrieval_scores

ESTIMATORS = [TripletEmbedder, SiameseEmbedder]


def _brute_force_scores(E_held, y_held, E_train=None, y_train=None):
    """Precision@1 and MAP@R of each held-out query among all the other samples (the training
    samples and the other held-out ones; the other held-out ones alone without training samples),
    by loops."""
    p1, maps = [], []
    for i, (e, label) in enumerate(zip(E_held, y_held)):
        others = [j for j in range(len(y_held)) if j != i]
        E_ref, y_ref = E_held[others], y_held[others]
        if E_train is not None:
            E_ref, y_ref = np.vstack([E_ref, E_train]), np.concatenate([y_ref, y_train])
        r = int((y_ref == label).sum())
        if r == 0:
            continue  # no sample of its class to find: not a query
        d = np.sqrt(((E_ref - e) ** 2).sum(axis=1))
        relevant = y_ref[np.argsort(d, kind="stable")] == label
        p1.append(float(relevant[0]))
        hits, precisions = 0, []
        for k in range(r):
            if relevant[k]:
                hits += 1
                precisions.append(hits / (k + 1))
        maps.append(sum(precisions) / r)
    return {"precision_at_1": np.mean(p1), "map_at_r": np.mean(maps)}


def test_held_out_split_keeps_a_sample_of_every_class_in_training():
    rng = np.random.default_rng(0)
    # 52 classes of two samples (as PigCVP), 3 of 14, one singleton
    y = np.concatenate([np.repeat(np.arange(52), 2), np.repeat([52, 53, 54], 14), [55]])
    train, held = held_out_split(y, 0.1, rng)
    assert np.intersect1d(train, held).size == 0
    assert np.union1d(train, held).tolist() == list(range(y.shape[0]))
    assert set(y[train]) == set(range(56))  # every class keeps a training sample
    assert 55 not in set(y[held])  # a singleton cannot be a query
    # about a tenth held out: the 52 pairs send about 10 of their 104 samples
    assert 5 <= held.shape[0] <= 20


def test_held_out_split_holds_out_one_sample_when_rounding_gives_none():
    y = np.array([0, 0, 1, 1])
    train, held = held_out_split(y, 0.01, np.random.default_rng(0))
    assert held.shape[0] == 1 and train.shape[0] == 3
    assert y[held[0]] in set(y[train])


def test_held_out_split_is_deterministic():
    y = np.repeat(np.arange(5), 7)
    a = held_out_split(y, 0.2, np.random.default_rng(3))
    b = held_out_split(y, 0.2, np.random.default_rng(3))
    assert all(np.array_equal(u, v) for u, v in zip(a, b))


def test_held_out_scores_match_a_brute_force_loop():
    # Each held-out query retrieves among the training samples and the other held-out samples.
    rng = np.random.default_rng(1)
    E_train, y_train = rng.normal(size=(30, 3)), rng.integers(3, size=30)
    E_held, y_held = rng.normal(size=(10, 3)), rng.integers(3, size=10)
    got = held_out_scores(E_held, y_held, E_train, y_train)
    expected = _brute_force_scores(E_held, y_held, E_train, y_train)
    assert got == pytest.approx(expected)
    # Not among the training samples alone: the other held-out samples are references too.
    among_training_only = {"precision_at_1": 0.2, "map_at_r": 0.17103996}
    assert got != pytest.approx(among_training_only)


def test_held_out_scores_of_held_out_classes_retrieve_among_each_other():
    rng = np.random.default_rng(2)
    E_held, y_held = rng.normal(size=(12, 3)), rng.integers(3, size=12)
    got = held_out_scores(E_held, y_held)
    assert got == pytest.approx(_brute_force_scores(E_held, y_held))


def test_the_raw_features_are_judged_with_as_many_references_as_a_test_sample_meets():
    # Two shapes per class, each shape a tight pair: a held-out sample finds its twin only when
    # the other held-out samples are references too. Among the training samples alone the raw
    # features would look worse than they are once fitted on all the data.
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    labels = np.array([0, 1, 1, 0])  # each class has two distant shapes
    E = np.vstack([centres, centres + 0.01, centres + 20.0 * np.array([1.0, 1.0])])
    y = np.concatenate([labels, labels, labels])
    held = np.arange(8)  # both twins held out
    train = np.arange(8, 12)
    got = held_out_scores(E[held], y[held], E[train], y[train])
    assert got["precision_at_1"] == 1.0  # every held-out sample finds its twin
    among_training = retrieval_scores(E[held], y[held], X_reference=E[train], y_reference=y[train])
    assert among_training["precision_at_1"] == 0.5


@pytest.mark.parametrize(
    "trained, raw, kept",
    [
        ((0.9, 0.8), (0.9, 0.5), True),  # a tie on one, above on the other
        ((0.95, 0.8), (0.9, 0.5), True),
        ((0.89, 0.8), (0.9, 0.5), True),  # precision@1 one query (of 100) below: noise
        ((0.88, 0.8), (0.9, 0.5), False),  # two queries below
        ((0.95, 0.49), (0.9, 0.5), False),  # worse MAP@R
        ((0.9, 0.5), (0.9, 0.5), False),  # a tie on both keeps the raw features
        ((0.89, 0.5), (0.9, 0.5), False),
    ],
)
def test_keeps_trained_only_when_at_least_as_good_on_both_and_better_on_one(trained, raw, kept):
    def scores(pair):
        return dict(zip(("precision_at_1", "map_at_r"), pair))

    assert keeps_trained(scores(trained), scores(raw), n_held=100) is kept


def _separated_blobs():
    """Classes that the raw features already separate perfectly: training cannot beat them."""
    return make_blobs(
        n_samples=120, centers=4, n_features=5, cluster_std=0.05, center_box=(-50, 50),
        random_state=0,
    )  # fmt: skip


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_a_fit_that_cannot_beat_the_raw_features_returns_them(Estimator):
    X, y = _separated_blobs()
    with pytest.warns(RawFeaturesKeptWarning, match="did not beat the raw features") as record:
        embedder = Estimator(n_components=3, max_iter=3, random_state=0).fit(X, y)
    assert record[0].filename == __file__  # points at the caller of fit
    assert embedder.raw_kept_
    raw = embedder.held_out_scores_["raw"]
    assert raw == {"precision_at_1": 1.0, "map_at_r": 1.0}
    # The raw features come back unchanged, so their neighbours are those of X.
    assert np.array_equal(embedder.transform(X), X.astype(np.float32))
    assert embedder.n_components_ == X.shape[1]
    assert embedder.get_feature_names_out().shape == (X.shape[1],)
    # The network checked stays in module_: on a small set (120 samples) it trained half of
    # max_iter, round(1.5) = 2 epochs.
    assert embedder.n_iter_ == 2


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_a_fit_that_beats_the_raw_features_keeps_the_network(Estimator):
    # Digits buried in noise features: raw neighbours are poor, a trained network is much better.
    X, y = load_digits(return_X_y=True)
    X = np.hstack([X / 16, np.random.default_rng(0).normal(size=(X.shape[0], 300))])[:800]
    y = y[:800]
    embedder = Estimator(n_components=8, max_iter=10, random_state=0).fit(X, y)
    scores = embedder.held_out_scores_
    assert not embedder.raw_kept_
    assert scores["trained"]["map_at_r"] > scores["raw"]["map_at_r"]
    assert scores["trained"]["precision_at_1"] >= scores["raw"]["precision_at_1"]
    assert embedder.transform(X[:5]).shape == (5, 8) and embedder.n_components_ == 8


def test_the_raw_candidate_is_scored_on_the_held_out_split(monkeypatch):
    # The raw scores are those of the held-out samples among all the others, recomputed here by a
    # loop from the split that fit drew (recorded on its way out of held_out_split).
    from sklearn_triplet import _guard

    drawn = []

    def recording_split(*args):
        drawn.append(held_out_split(*args))
        return drawn[-1]

    monkeypatch.setattr(_guard, "held_out_split", recording_split)
    X, y = load_digits(return_X_y=True)
    X, y = X[:300], y[:300]
    embedder = TripletEmbedder(n_components=8, max_iter=2, random_state=0).fit(X, y)
    ((train, held),) = drawn
    expected = _brute_force_scores(X[held], y[held], X[train], y[train])
    assert embedder.held_out_scores_["raw"] == pytest.approx(expected, abs=1e-4)  # float32
    E = embedder.module_(torch.as_tensor(X, dtype=torch.float32)).detach().numpy()
    expected = _brute_force_scores(E[held], y[held], E[train], y[train])
    assert embedder.held_out_scores_["trained"] == pytest.approx(expected, abs=1e-4)


def test_do_no_harm_off_trains_on_everything_and_keeps_the_network():
    X, y = _separated_blobs()
    on = TripletEmbedder(n_components=3, max_iter=2, random_state=0).fit(X, y)
    off = TripletEmbedder(n_components=3, max_iter=2, random_state=0, do_no_harm=False).fit(X, y)
    assert on.raw_kept_ and not off.raw_kept_
    assert off.held_out_scores_ is None
    assert off.transform(X).shape == (X.shape[0], 3)


def test_do_no_harm_is_deterministic():
    X, y = load_digits(return_X_y=True)
    X, y = X[:400], y[:400]
    a = TripletEmbedder(max_iter=3, random_state=0).fit(X, y)
    b = TripletEmbedder(max_iter=3, random_state=0).fit(X, y)
    assert a.held_out_scores_ == b.held_out_scores_ and a.raw_kept_ == b.raw_kept_
    assert np.array_equal(a.transform(X), b.transform(X))


def test_partial_fit_uses_the_network():
    X, y = _separated_blobs()
    embedder = TripletEmbedder(n_components=3, max_iter=2, random_state=0).fit(X, y)
    assert embedder.raw_kept_
    embedder.partial_fit(X, y)
    assert not embedder.raw_kept_ and embedder.held_out_scores_ is None
    assert embedder.transform(X).shape == (X.shape[0], 3)


def test_raw_kept_survives_save_load_and_export(tmp_path):
    X, y = _separated_blobs()
    embedder = TripletEmbedder(n_components=3, max_iter=2, random_state=0).fit(X, y)
    path = tmp_path / "raw.safetensors"
    embedder.save(path)
    loaded = load(path)
    assert loaded.raw_kept_
    assert np.array_equal(loaded.transform(X), embedder.transform(X))
    module = embedder.export_module()
    assert torch.equal(
        module(torch.as_tensor(X[:4], dtype=torch.float32)),
        torch.as_tensor(X[:4], dtype=torch.float32),
    )


def test_early_stopping_shares_its_split_with_do_no_harm():
    X, y = load_digits(return_X_y=True)
    X, y = X[:400], y[:400]
    embedder = TripletEmbedder(max_iter=3, early_stopping=True, random_state=0).fit(X, y)
    assert embedder.validation_scores_ is not None
    assert embedder.held_out_scores_ is not None


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_a_small_set_checks_half_the_epochs_then_trains_a_new_network_on_all_the_samples(
    Estimator, monkeypatch
):
    # Below _guard.SMALL_SET samples a quarter is held out to judge a network trained for half of
    # max_iter; when it wins, the network used is a new one trained for max_iter on every sample:
    # bit for bit the network of do_no_harm=False.
    X, y = load_digits(return_X_y=True)
    X = np.hstack([X / 16, np.random.default_rng(0).normal(size=(X.shape[0], 300))])[:400]
    y = y[:400]
    params = dict(n_components=8, max_iter=20, random_state=0)
    checked_epochs = []
    refit = Estimator._refit

    def recording_refit(self, *args):
        checked_epochs.append(self.n_iter_)
        return refit(self, *args)

    monkeypatch.setattr(Estimator, "_refit", recording_refit)
    guarded = Estimator(**params).fit(X, y)
    assert checked_epochs == [10]
    assert not guarded.raw_kept_ and guarded.held_out_scores_ is not None
    assert guarded.n_iter_ == len(guarded.history_) == 20
    unguarded = Estimator(**params, do_no_harm=False).fit(X, y)
    assert np.array_equal(guarded.transform(X), unguarded.transform(X))
    # The check alone, ten epochs on three quarters: the network the scores judged.
    monkeypatch.setattr(Estimator, "_refits", lambda self, *args: False)
    check = Estimator(**{**params, "max_iter": 10}).fit(X, y)
    assert check.n_iter_ == 10 and not check.raw_kept_
    assert guarded.held_out_scores_ == check.held_out_scores_
    assert not np.array_equal(check.transform(X), guarded.transform(X))


# -- do_no_harm="unseen-classes" -------------------------------------------------------------------


def test_held_out_classes_split_holds_out_whole_classes():
    y = np.concatenate([np.repeat(np.arange(20), 5), [20]])  # twenty classes of 5, one singleton
    train, held = held_out_classes_split(y, 0.1, np.random.default_rng(0))
    assert np.union1d(train, held).tolist() == list(range(y.shape[0]))
    held_classes, train_classes = set(y[held]), set(y[train])
    assert not held_classes & train_classes  # whole classes
    assert len(held_classes) == 2  # a tenth of 21 classes, rounded
    assert 20 not in held_classes  # a singleton cannot be a query
    again = held_out_classes_split(y, 0.1, np.random.default_rng(0))
    assert all(np.array_equal(u, v) for u, v in zip((train, held), again))


def test_held_out_classes_split_holds_out_two_classes_at_least_and_leaves_two():
    y = np.repeat(np.arange(4), 3)
    train, held = held_out_classes_split(y, 0.01, np.random.default_rng(0))
    assert len(set(y[held])) == 2 and len(set(y[train])) == 2
    train, held = held_out_classes_split(y, 0.9, np.random.default_rng(0))
    assert len(set(y[held])) == 2 and len(set(y[train])) == 2


def test_unseen_classes_needs_four_classes():
    X, y = make_blobs(n_samples=30, centers=3, n_features=4, random_state=0)
    with pytest.raises(ValueError, match=r"needs at least four classes.*y has 3 classes"):
        TripletEmbedder(max_iter=1, do_no_harm="unseen-classes").fit(X, y)


def test_an_unknown_do_no_harm_option_is_refused():
    X, y = _separated_blobs()
    with pytest.raises(ValueError, match="do_no_harm"):
        TripletEmbedder(max_iter=1, do_no_harm="classes").fit(X, y)


def test_held_out_classes_see_what_held_out_samples_cannot():
    # Digits 0-6: a network trained on some of them beats the raw pixels on held-out samples of
    # its classes, and loses to them on classes it never saw (as digits 7-9 later are).
    X, y = load_digits(return_X_y=True)
    X, y = X[y < 7] / 16, y[y < 7]
    params = dict(n_components=8, max_iter=5, random_state=0)
    samples = TripletEmbedder(**params).fit(X, y)
    assert not samples.raw_kept_
    with pytest.warns(RawFeaturesKeptWarning, match="on the held-out classes"):
        classes = TripletEmbedder(**params, do_no_harm="unseen-classes").fit(X, y)
    assert classes.raw_kept_
    scores = classes.held_out_scores_
    assert scores["trained"]["map_at_r"] < scores["raw"]["map_at_r"]
    assert np.array_equal(classes.transform(X), X.astype(np.float32))


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_a_network_that_wins_on_held_out_classes_is_trained_again_on_all_classes(Estimator):
    # Digits buried in noise features: a network that learns to ignore the noise helps on any
    # digit, seen in training or not. It is then trained on every class: the network a fit
    # without do_no_harm trains.
    X, y = load_digits(return_X_y=True)
    X = np.hstack([X / 16, np.random.default_rng(0).normal(size=(X.shape[0], 300))])[:600]
    y = y[:600]
    params = dict(n_components=8, max_iter=8, random_state=0)
    guarded = Estimator(**params, do_no_harm="unseen-classes").fit(X, y)
    plain = Estimator(**params, do_no_harm=False).fit(X, y)
    assert not guarded.raw_kept_
    held = guarded.held_out_scores_
    assert held["trained"]["map_at_r"] > held["raw"]["map_at_r"]
    assert np.array_equal(guarded.transform(X), plain.transform(X))


def test_unseen_classes_with_early_stopping_validates_on_the_training_classes():
    X, y = load_digits(return_X_y=True)
    X, y = X[:500] / 16, y[:500]
    embedder = TripletEmbedder(
        max_iter=3, early_stopping=True, do_no_harm="unseen-classes", random_state=0
    )
    embedder.fit(X, y)
    assert embedder.validation_scores_ is not None and embedder.held_out_scores_ is not None
