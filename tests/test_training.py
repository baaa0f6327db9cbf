"""Training that a user can watch, stop, resume and trust."""

import math
import re
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from sklearn_triplet import EmbeddingCollapseWarning, SiameseEmbedder, TripletEmbedder
from sklearn_triplet._base import stratified_split
from sklearn_triplet._training import SCHEDULES


@pytest.fixture
def data(digits):
    X, y = digits
    return X[:400] / 16.0, y[:400]


# -- history ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("Estimator", [TripletEmbedder, SiameseEmbedder])
def test_history_rows(Estimator, data, fast):
    X, y = data
    est = Estimator(**fast).fit(X, y)
    assert [row["epoch"] for row in est.history_] == [1, 2, 3]
    for row in est.history_:
        assert math.isfinite(row["loss"]) and row["loss"] >= 0
        assert row["n_triplets"] > 0
        assert row["n_easy"] + row["n_semi_hard"] + row["n_hard"] == row["n_triplets"]
        total = row["easy_fraction"] + row["semi_hard_fraction"] + row["hard_fraction"]
        assert total == pytest.approx(1.0)
        assert 0 <= row["active_fraction"] <= 1
        assert row["mean_distance"] > 0
        assert "validation_score" not in row
    times = [row["time"] for row in est.history_]
    assert times == sorted(times) and times[0] > 0
    if Estimator is SiameseEmbedder:
        row = est.history_[0]
        assert row["n_positive_pairs"] + row["n_negative_pairs"] == row["n_pairs"]
        assert row["active_fraction"] == pytest.approx(row["n_active_pairs"] / row["n_pairs"])
    else:
        row = est.history_[0]
        assert row["active_fraction"] == pytest.approx(row["n_active"] / row["n_triplets"])


def test_training_moves_hard_triplets_to_easy(data, fast):
    X, y = data
    est = TripletEmbedder(**{**fast, "max_iter": 15}).fit(X, y)
    first, last = est.history_[0], est.history_[-1]
    assert last["easy_fraction"] > first["easy_fraction"]
    assert last["hard_fraction"] < first["hard_fraction"]


# -- validation and early stopping -----------------------------------------------------------------


def test_validation_split_is_stratified_and_keeps_two_per_side():
    y = np.repeat(np.arange(4), [4, 10, 40, 3])
    train, val, n_held_out = stratified_split(y, 0.25, np.random.default_rng(0), min_per_side=2)
    assert n_held_out.tolist() == [2, 2, 10, 0]
    assert np.intersect1d(train, val).size == 0 and train.size + val.size == y.size
    assert np.bincount(y[val], minlength=4).tolist() == [2, 2, 10, 0]
    assert np.bincount(y[train], minlength=4).tolist() == [2, 8, 30, 3]


def test_validation_split_error():
    y = np.repeat(np.arange(3), [3, 3, 10])
    msg = (
        "early_stopping needs at least two classes with four or more samples each, so that two of "
        "each stay on both sides of the validation split; got class sizes [10, 3, 3]. Use "
        "early_stopping=False."
    )
    embedder = TripletEmbedder(validation_fraction=0.2)
    embedder._rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=re.escape(msg)):
        embedder._split_validation(np.zeros((y.size, 2), np.float32), y)


def test_early_stopping_records_score_and_restores_best(data, fast):
    X, y = data
    est = TripletEmbedder(
        **{**fast, "max_iter": 40}, early_stopping=True, n_iter_no_change=2, tol=0.5
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est.fit(X, y)
    scores = [row["validation_score"] for row in est.history_]
    assert all(0 <= s <= 1 for s in scores)
    # tol=0.5 makes every later epoch "no improvement": it stops after 1 + n_iter_no_change epochs
    assert est.n_iter_ == 3 and len(scores) == 3


def test_best_weights_are_restored(data, fast):
    X, y = data
    snapshots = {}

    def remember(estimator, epoch, logs):
        snapshots[epoch] = estimator.export_module().state_dict()

    est = TripletEmbedder(
        **{**fast, "max_iter": 6}, early_stopping=True, n_iter_no_change=10, callback=remember
    )
    with pytest.warns(ConvergenceWarning, match="reached max_iter=6 while the validation score"):
        est.fit(X, y)
    scores = [row["validation_score"] for row in est.history_]
    best_epoch = int(np.argmax(scores)) + 1
    final = est.export_module().state_dict()
    for key, value in snapshots[best_epoch].items():
        assert torch.equal(final[key], value)


def test_validation_scores_as_mlp_has_them(data, fast):
    X, y = data
    est = TripletEmbedder(**fast, early_stopping=True, warm_start=True)
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    scores = [row["validation_score"] for row in est.history_]
    assert est.validation_scores_ == scores and len(scores) == fast["max_iter"]
    assert est.best_validation_score_ == max(scores)
    # a warm fit draws a new validation split: its own scores, and its best (the weights kept)
    with pytest.warns(ConvergenceWarning):
        est.set_params(max_iter=2).fit(X, y)
    assert est.validation_scores_ == [row["validation_score"] for row in est.history_[3:]]
    assert est.best_validation_score_ == max(est.validation_scores_)
    # partial_fit splits nothing off and keeps them; a fit without early stopping has none
    est.partial_fit(X, y)
    assert len(est.validation_scores_) == 2
    plain = TripletEmbedder(**fast).fit(X, y)
    assert plain.validation_scores_ is None and plain.best_validation_score_ is None
    assert TripletEmbedder(**fast).partial_fit(X, y).validation_scores_ is None


# -- convergence -----------------------------------------------------------------------------------


def test_underfitting_is_warned(data, fast):
    X, y = data
    message = (
        "TripletEmbedder reached max_iter=3 while the training loss was still falling by more "
        "than tol=0.0001 per epoch over the last 2 epochs; increase max_iter, or set "
        "early_stopping=True to train until a validation score stops improving."
    )
    constant = {**fast, "learning_rate": "constant"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        TripletEmbedder(**constant).fit(X, y)
    convergence = [w for w in caught if w.category is ConvergenceWarning]
    assert [str(w.message) for w in convergence] == [message]
    assert convergence[0].filename == __file__  # points at the caller's fit
    # with a tolerance no curve beats, one epoch at a time, or a schedule, nothing is warned
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        TripletEmbedder(**constant, tol=1.0).fit(X, y)
        TripletEmbedder(**constant).partial_fit(X, y).partial_fit(X, y)
        TripletEmbedder(**fast, learning_rate="cosine").fit(X, y)


def test_still_improving_reads_mean_falls_not_lucky_epochs():
    from sklearn_triplet._training import still_improving

    flat = [{"loss": 0.1, "active_fraction": 0.3} for _ in range(20)]
    assert still_improving(flat, window=10, tol=1e-4) is None
    # one lucky epoch 5e-4 below the rest is less than 1e-4 per epoch over 10 epochs
    lucky = [dict(row) for row in flat]
    lucky[15]["loss"] = 0.1 - 5e-4
    assert still_improving(lucky, window=10, tol=1e-4) is None
    # a loss on a plateau while fewer and fewer triplets are active: still improving
    shrinking = [{"loss": 0.1, "active_fraction": 0.3 - 0.01 * i} for i in range(20)]
    assert still_improving(shrinking, window=10, tol=1e-4) == "active_fraction"
    falling = [{"loss": 1.0 - 0.01 * i, "active_fraction": math.nan} for i in range(20)]
    assert still_improving(falling, window=10, tol=1e-4) == "loss"
    assert still_improving(falling, window=10, tol=0.01) is None  # 0.01 per epoch: not more
    assert still_improving(falling[:1], window=10, tol=1e-4) is None  # one epoch: nothing to say
    # a curve that did its work and creeps down as the learning rate anneals: converged
    tail = [
        {"loss": 0.1 + 0.9 * math.exp(-i / 5) - 5e-4 * i, "active_fraction": math.nan}
        for i in range(50)
    ]
    assert still_improving(tail, window=10, tol=1e-4) is None
    assert still_improving(tail[:6], window=10, tol=1e-4) == "loss"


def test_epoch_times_do_not_count_torch_start_up(tmp_path):
    # The first optimiser of a process imports torch's compiler stack (seconds). It must be built
    # before the clock of fit starts, so that epoch 1's "time" is the epoch's. Run in a fresh
    # process, where no optimiser was built yet.
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import time, types
        import torch
        from sklearn.datasets import load_digits
        from sklearn_triplet import TripletEmbedder, _base

        built = []
        original = torch.optim.Optimizer.__init__
        def counting_init(self, *args, **kwargs):
            built.append(1)
            original(self, *args, **kwargs)
        torch.optim.Optimizer.__init__ = counting_init
        clock = []
        def perf_counter():
            clock.append(len(built))
            return time.perf_counter()
        _base.time = types.SimpleNamespace(perf_counter=perf_counter)
        X, y = load_digits(return_X_y=True)
        TripletEmbedder(n_components=4, hidden_layer_sizes=(8,), max_iter=1).fit(X[:100], y[:100])
        print(clock[0], len(built))
        """
    )
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    built_before_clock, built_in_all = int(out[0]), int(out[1])
    assert built_before_clock >= 1 and built_in_all == built_before_clock + 1


# -- verbose ---------------------------------------------------------------------------------------


def test_verbose_2_prints_one_line_per_epoch(data, capsys, fast):
    X, y = data
    TripletEmbedder(**fast, verbose=2).fit(X, y)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("epoch 1/3  loss ") and "semi-hard" in lines[0]


def test_verbose_1_progress_bar(data, capsys, fast):
    X, y = data
    TripletEmbedder(**fast, verbose=1).fit(X, y)
    err = capsys.readouterr().err
    assert "3/3" in err and "loss=" in err


def test_verbose_0_is_silent(data, capsys, fast):
    X, y = data
    TripletEmbedder(**fast).fit(X, y)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# -- callback, warm start, partial_fit -------------------------------------------------------------


def test_callback_sees_each_epoch_and_can_stop(data, fast):
    X, y = data
    seen = []

    def stop_at_two(estimator, epoch, logs):
        seen.append((epoch, logs["epoch"], estimator.n_iter_))
        return epoch == 2

    est = TripletEmbedder(**{**fast, "max_iter": 10}, callback=stop_at_two).fit(X, y)
    assert seen == [(1, 1, 1), (2, 2, 2)]
    assert est.n_iter_ == 2 and len(est.history_) == 2


def test_a_list_of_callbacks(data, fast):
    X, y = data
    seen = []

    def log(estimator, epoch, logs):
        seen.append(("log", epoch))

    def stop_at_two(estimator, epoch, logs):
        seen.append(("stop", epoch))
        return epoch == 2

    est = TripletEmbedder(**{**fast, "max_iter": 10}, callback=[log, stop_at_two]).fit(X, y)
    # every callback sees every epoch, in order; any of them can stop training
    assert seen == [("log", 1), ("stop", 1), ("log", 2), ("stop", 2)]
    assert est.n_iter_ == 2
    seen.clear()
    TripletEmbedder(**{**fast, "max_iter": 10}, callback=(stop_at_two, log)).fit(X, y)
    assert seen == [("stop", 1), ("log", 1), ("stop", 2), ("log", 2)]
    message = "callback must be a callable or a list of callables; got a list whose item 1 is of "
    with pytest.raises(ValueError, match=re.escape(message + "type str.")):
        TripletEmbedder(**fast, callback=[log, "stop"]).fit(X, y)
    with pytest.raises(ValueError, match="The 'callback' parameter of TripletEmbedder must be"):
        TripletEmbedder(**fast, callback="stop").fit(X, y)


def test_warm_start_continues(data, fast):
    X, y = data
    est = TripletEmbedder(**fast, warm_start=True).fit(X, y)
    before = est.export_module().state_dict()
    est.fit(X, y)
    assert est.n_iter_ == 6 and [r["epoch"] for r in est.history_] == [1, 2, 3, 4, 5, 6]
    after = est.export_module().state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # without warm start a second fit starts over
    cold = TripletEmbedder(**fast).fit(X, y)
    cold.fit(X, y)
    assert cold.n_iter_ == 3


def test_warm_start_uses_the_current_learning_rate(data, fast):
    X, y = data
    est = TripletEmbedder(**fast, warm_start=True).fit(X, y)
    before = est.export_module().state_dict()
    est.set_params(learning_rate_init=1e-12, max_iter=1).fit(X, y)
    after = est.export_module().state_dict()
    # a negligible learning rate barely moves the weights (Adam steps are about lr in size)
    assert max((after[k] - before[k]).abs().max().item() for k in before) < 1e-9


# -- learning-rate schedule ------------------------------------------------------------------------


def test_cosine_schedule_warms_up_then_decays():
    n_steps = 200  # 10 warm-up steps (5%)
    factors = [SCHEDULES["cosine"](step, n_steps) for step in range(n_steps)]
    np.testing.assert_allclose(factors[:10], np.arange(1, 11) / 10)
    assert factors[10] == 1.0
    expected = 0.5 * (1 + np.cos(np.pi * np.arange(190) / 190))
    np.testing.assert_allclose(factors[10:], expected)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert 0 < factors[-1] < 1e-3
    assert SCHEDULES["cosine"](0, 3) == 1.0  # at least one warm-up step, the first at full rate
    assert {SCHEDULES["constant"](step, n_steps) for step in range(n_steps)} == {1.0}


@pytest.fixture
def step_rates(monkeypatch):
    """The learning rate of every optimiser step taken while the fixture is in use."""
    rates = []
    step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    return rates


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_fit_sets_the_rate_of_every_step(schedule, data, fast, step_rates):
    X, y = data
    est = TripletEmbedder(**fast, learning_rate=schedule, learning_rate_init=0.01).fit(X, y)
    n_steps = 3 * 7  # 3 epochs of ceil(400 / 64) batches
    assert est.n_iter_ == 3 and len(step_rates) == n_steps
    expected = [0.01 * SCHEDULES[schedule](step, n_steps) for step in range(n_steps)]
    np.testing.assert_allclose(step_rates, expected, rtol=1e-12)


def test_warm_start_runs_the_schedule_anew_and_partial_fit_keeps_the_rate(data, fast, step_rates):
    X, y = data
    est = TripletEmbedder(**fast, warm_start=True, learning_rate_init=0.01).fit(X, y)
    est.set_params(learning_rate_init=0.02).fit(X, y)
    cosine = [SCHEDULES["cosine"](step, 21) for step in range(21)]
    np.testing.assert_allclose(step_rates, [0.01 * f for f in cosine] + [0.02 * f for f in cosine])
    del step_rates[:]
    est.partial_fit(X, y)
    assert step_rates == [0.02] * 7


def test_partial_fit_trains_one_epoch_at_a_time(data, fast):
    X, y = data
    est = TripletEmbedder(**fast)
    est.partial_fit(X, y)
    assert est.n_iter_ == 1
    est.partial_fit(X, y).partial_fit(X, y)
    assert est.n_iter_ == 3 and len(est.history_) == 3
    assert est.transform(X).shape == (400, 8)
    with pytest.raises(ValueError, match="X has 10 features"):
        est.partial_fit(X[:, :10], y)


# -- failures --------------------------------------------------------------------------------------


def test_non_finite_loss_raises_and_keeps_finite_weights(data, fast):
    X, y = data
    est = TripletEmbedder(
        **{**fast, "max_iter": 20},
        normalize=False,
        metric="sqeuclidean",
        learning_rate_init=1e30,
    )
    with pytest.raises(
        FloatingPointError,
        match=(
            r"Training diverged in epoch \d+: the (loss became (nan|inf)|"
            r"embeddings became non-finite|weights became non-finite)"
        ),
    ):
        est.fit(X * 1e6, y)
    assert all(math.isfinite(row["loss"]) for row in est.history_)
    assert np.isfinite(est.transform(X)).all()
    assert est._optimizer_state is None  # Adam's moments may hold NaN: a warm start begins afresh


class _Dead(torch.nn.Module):
    """A backbone whose ReLU output is zero for every input: every embedding is the same point."""

    def __init__(self, n_features, n_components):
        super().__init__()
        self.linear = torch.nn.Linear(n_features, n_components)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.constant_(self.linear.bias, -1.0)

    def forward(self, x):
        return torch.relu(self.linear(x))


def test_collapse_is_warned(data, fast):
    X, y = data
    with pytest.warns(
        EmbeddingCollapseWarning, match="The embeddings collapsed towards a single point"
    ):
        TripletEmbedder(**fast, backbone=_Dead).fit(X, y)


def test_collapse_warning_does_not_depend_on_verbose(data, capsys, fast):
    X, y = data
    with pytest.warns(EmbeddingCollapseWarning):
        TripletEmbedder(**fast, backbone=_Dead, verbose=2).fit(X, y)


def test_no_collapse_warning_on_healthy_training(data, fast):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmbeddingCollapseWarning)
        TripletEmbedder(**fast).fit(X, y)


def test_keyboard_interrupt_from_callback_keeps_a_usable_estimator(data, fast):
    X, y = data

    def interrupt(estimator, epoch, logs):
        if epoch == 2:
            raise KeyboardInterrupt

    est = TripletEmbedder(**{**fast, "max_iter": 10}, callback=interrupt)
    with pytest.raises(KeyboardInterrupt):
        est.fit(X, y)
    assert est.n_iter_ == 2 and len(est.history_) == 2
    assert est.transform(X).shape == (400, 8)
    # and training can be resumed from there
    est.set_params(callback=None, warm_start=True, max_iter=1).fit(X, y)
    assert est.n_iter_ == 3


def test_keyboard_interrupt_inside_a_batch(data, fast):
    X, y = data
    calls = {"n": 0}
    from sklearn_triplet.losses import triplet_loss

    def loss(embeddings, labels):
        calls["n"] += 1
        if calls["n"] == 10:  # in the second epoch (7 batches per epoch)
            raise KeyboardInterrupt
        return triplet_loss(embeddings, labels, margin=0.2)

    est = TripletEmbedder(**{**fast, "max_iter": 5}, loss=loss)
    with pytest.raises(KeyboardInterrupt):
        est.fit(X, y)
    assert len(est.history_) == 1 and est.n_iter_ == 1
    assert np.isfinite(est.transform(X)).all()


def test_callable_loss_trains_and_logs_taxonomy(data, fast):
    X, y = data
    from sklearn_triplet.losses import triplet_loss

    est = TripletEmbedder(
        **fast, loss=lambda e, labels: triplet_loss(e, labels, margin=0.3, mining="hard")
    ).fit(X, y)
    row = est.history_[-1]
    assert row["n_easy"] + row["n_semi_hard"] + row["n_hard"] == row["n_triplets"] > 0


def test_callable_loss_must_return_a_scalar_tensor(data, fast):
    X, y = data
    with pytest.raises(
        TypeError,
        match=re.escape("loss must return a scalar (0-dim) torch.Tensor; got float of shape ()."),
    ):
        TripletEmbedder(**fast, loss=lambda e, labels: 1.0).fit(X, y)


def test_pytorch_metric_learning_loss(data, fast):
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    X, y = data
    est = TripletEmbedder(**fast, loss=losses.TripletMarginLoss(margin=0.2)).fit(X, y)
    assert np.isfinite(est.transform(X)).all() and len(est.history_) == 3
