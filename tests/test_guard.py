"""do_no_harm: the held-out split, the scores, the choice, and the estimators that use them."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, make_blobs

from sklearn_triplet import RawFeaturesKeptWarning, SiameseEmbedder, TripletEmbedder, load
from sklearn_triplet._guard import held_out_scores, held_out_split, keeps_trained

ESTIMATORS = [TripletEmbedder, SiameseEmbedder]


def _brute_force_scores(E_held, y_held, E_train, y_train):
    """Precision@1 and MAP@R of each held-out query among the training samples, by loops."""
    p1, maps = [], []
    for e, label in zip(E_held, y_held):
        d = np.sqrt(((E_train - e) ** 2).sum(axis=1))
        order = np.argsort(d, kind="stable")
        relevant = y_train[order] == label
        r = int((y_train == label).sum())
        p1.append(float(relevant[0]))
        hits, precisions = 0, []
        for i in range(r):
            if relevant[i]:
                hits += 1
                precisions.append(hits / (i + 1))
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
    rng = np.random.default_rng(1)
    E_train, y_train = rng.normal(size=(30, 3)), rng.integers(3, size=30)
    E_held, y_held = rng.normal(size=(10, 3)), rng.integers(3, size=10)
    got = held_out_scores(E_held, y_held, E_train, y_train)
    expected = _brute_force_scores(E_held, y_held, E_train, y_train)
    assert got == pytest.approx(expected)


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
    # The network was trained all the same and stays in module_.
    assert embedder.n_iter_ == 3


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
    # The raw scores are those of the held-out samples among the training ones, recomputed here by
    # a loop from the split that fit drew (recorded on its way out of held_out_split).
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
def test_a_small_set_keeps_the_checked_network_and_trains_it_on_all_the_samples(
    Estimator, monkeypatch
):
    # Below _guard.SMALL_SET samples a quarter is held out to judge; the winning network, the one
    # checked, then trains a quarter of max_iter more epochs on every sample (not a new network).
    X, y = load_digits(return_X_y=True)
    X = np.hstack([X / 16, np.random.default_rng(0).normal(size=(X.shape[0], 300))])[:400]
    y = y[:400]
    params = dict(n_components=8, max_iter=10, random_state=0)
    guarded = Estimator(**params).fit(X, y)
    assert not guarded.raw_kept_ and guarded.held_out_scores_ is not None
    assert guarded.n_iter_ == len(guarded.history_) == 10 + 2
    # The same by hand: the check alone, then two more epochs on all the samples from it.
    monkeypatch.setattr(Estimator, "_refits", lambda self, *args: False)
    checked = Estimator(**params).fit(X, y)
    assert checked.n_iter_ == 10 and not checked.raw_kept_
    assert not np.array_equal(checked.transform(X), guarded.transform(X))
    assert guarded.held_out_scores_ == checked.held_out_scores_  # the check judged this network
    checked.set_params(warm_start=True, max_iter=2, do_no_harm=False).fit(X, y)
    assert np.array_equal(guarded.transform(X), checked.transform(X))
