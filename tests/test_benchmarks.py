"""Smoke test of benchmarks/peers.py: its quick configuration, in-process, on a tiny subset."""

import dataclasses
import importlib.util
from pathlib import Path
from unittest.mock import ANY

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

pytest.importorskip("pytorch_metric_learning")


@pytest.fixture(scope="module")
def peers():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"
    spec = importlib.util.spec_from_file_location("peers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_leave_one_out_knn_accuracy_matches_refitting_without_the_query(peers):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(3, size=40)
    # The brute-force reference: refit the classifier without each query in turn.
    predictions = [
        KNeighborsClassifier(n_neighbors=5).fit(np.delete(X, i, 0), np.delete(y, i)).predict(X[[i]])
        for i in range(len(y))
    ]
    expected = np.mean(np.concatenate(predictions) == y)
    assert peers.knn_accuracy(X, y) == pytest.approx(expected)


def test_unseen_classes_task_keeps_the_evaluated_classes_out_of_training(peers):
    task = peers.benchmark_tasks.make("unseen classes", peers.QUICK.sizes, seed=0)
    assert set(np.unique(task.y_train)) == set(range(7))
    assert set(np.unique(task.y_test)) == {7, 8, 9}
    assert task.leave_one_out


def test_open_set_task_evaluates_among_classes_unseen_in_training(peers):
    sizes = peers.QUICK.sizes
    task = peers.benchmark_tasks.make("open set", sizes, seed=0)
    train_classes, test_classes = set(np.unique(task.y_train)), set(np.unique(task.y_test))
    assert len(train_classes) == sizes.open_set_classes - sizes.open_set_unseen
    assert len(test_classes) == sizes.open_set_unseen
    assert not train_classes & test_classes
    assert task.leave_one_out
    assert len(task.y_train) + len(task.y_test) == sizes.open_set_classes * sizes.open_set_per_class


def test_signals_are_shifted_scaled_templates(peers):
    make_signals = peers.benchmark_tasks.make_signals
    X, y = make_signals(4, 30, n_modes=2, shape=(3, 40), seed=0)
    assert X.shape == (120, 3 * 40) and np.bincount(y).tolist() == [30] * 4
    # Without shifts, scaling, offsets and noise, a class holds exactly its templates.
    X, y = make_signals(
        4, 30, n_modes=2, shape=(3, 40), max_shift=0, scale=(1, 1), offset=0, noise=0, seed=0
    )
    assert [len(np.unique(X[y == c], axis=0)) for c in range(4)] == [2] * 4
    assert len(np.unique(X, axis=0)) == 8
    # With shifts only, the samples are the 7 windows of one template shifted by -3 to 3 steps:
    # any two agree once one is moved by the difference of their shifts.
    X, _ = make_signals(
        1, 200, n_modes=1, shape=(1, 40), max_shift=3, scale=(1, 1), offset=0, noise=0, seed=0
    )
    assert len(np.unique(X, axis=0)) == 7
    first = X[0]
    for row in X:
        assert any(
            np.array_equal(row[delta:], first[: 40 - delta])
            or np.array_equal(row[: 40 - delta], first[delta:])
            for delta in range(7)
        )


def test_signal_task_says_its_shape(peers):
    sizes = peers.QUICK.sizes
    task = peers.benchmark_tasks.make("signals", sizes, seed=0)
    assert task.input_shape == tuple(sizes.signal_shape)
    assert task.X_train.shape[1] == np.prod(sizes.signal_shape)
    assert not task.leave_one_out


def test_quick_configuration_runs_on_a_tiny_subset(peers, monkeypatch):
    lmnn = peers.CONTESTANTS["LMNN + KNN"]

    def lmnn_briefly(config, seed, task):  # its 1,000 iterations would take seconds per task
        return lmnn(config, seed, task).set_params(max_iter=5)

    monkeypatch.setitem(peers.CONTESTANTS, "LMNN + KNN", lmnn_briefly)
    sizes = dataclasses.replace(
        peers.QUICK.sizes,
        max_samples=200,
        synthetic_classes=20,
        signal_per_class=20,
        signal_shape=(2, 16),
        open_set_classes=30,
        open_set_unseen=10,
    )
    config = dataclasses.replace(peers.QUICK, max_iter=1, pml_max_iter=1, sizes=sizes)
    results = peers.run(config, default_threads=True, log=lambda line: None)
    try:  # LMNN runs through the shim for scikit-learn >= 1.8 wherever metric-learn installs
        import metric_learn
    except ImportError:
        metric_learn = None

    assert list(results) == list(peers.TASKS)
    for task_name, by_contestant in results.items():
        expected = [
            name
            for name in peers.CONTESTANTS
            if task_name == "signals" or not name.endswith(("(cnn)", "(fcn)"))
        ]
        assert list(by_contestant) == expected
        for name, runs in by_contestant.items():
            assert len(runs) == len(config.seeds)
            for result in runs:
                if name == "LMNN + KNN" and metric_learn is None:
                    assert result == {"status": "not installed", "error": ANY}
                    continue
                if name == "LMNN + KNN" and task_name in peers.LMNN_SKIPPED:
                    assert result == {"status": "not run", "error": peers.LMNN_TOO_SLOW}
                    continue
                assert result["status"] == "ok", (name, result)
                for key in ("knn_accuracy", "precision_at_1", "map_at_r"):
                    assert 0.0 <= result[key] <= 1.0
                for key in ("fit_cpu", "fit_wall", "transform_cpu", "transform_wall"):
                    assert result[key] >= 0.0
            if runs[0]["status"] == "ok":
                assert runs[0]["fit_wall_default"] >= 0.0
            if name.endswith("(tuned)"):
                assert set(runs[0]["best_params"]) == {"margin", "mining"}

    meta = {**peers.metadata("peers.py", ["--quick"]), "n_jobs": 1, "total": 1.0}
    fragment = peers.rst(results, config, meta)
    assert fragment.count(".. list-table::") == len(peers.TASKS)
    assert "python benchmarks/peers.py --quick" in fragment
    assert "fit wall, default threads (s)" in fragment
    table = peers.markdown(results)
    assert table.count("| TripletEmbedder (tuned) |") == len(peers.TASKS)
    assert table.count("| TripletEmbedder (linear) |") == len(peers.TASKS)
    assert table.count("| TripletEmbedder (cnn) |") == 1


def test_saved_runs_merge_later_rows_over_earlier_ones(peers, tmp_path):
    def result(accuracy, **extra):
        figures = dict.fromkeys(("precision_at_1", "map_at_r", "fit_cpu", "fit_wall"), 0.5)
        return {"status": "ok", "knn_accuracy": accuracy, "transform_cpu": 1e-3, **figures, **extra}

    def save(name, results, command):
        meta = {**peers.metadata("peers.py", command.split()), "n_jobs": 1, "total": 2.0}
        meta["tasks"] = list(results)
        meta["contestants"] = sorted({c for by_c in results.values() for c in by_c})
        path = tmp_path / name
        path.write_text(peers.json.dumps({"meta": meta, "results": results}))
        return str(path)

    first = save(
        "first.json",
        {"digits": {"KNN (raw)": [result(0.9)], "TripletEmbedder": [result(0.8)]}},
        "--tasks digits",
    )
    again = save(
        "again.json",
        {"digits": {"TripletEmbedder": [result(0.95, raw_kept=True)]}},
        "--contestants TripletEmbedder",
    )
    results, metas = peers.load_runs([first, again])
    assert results["digits"]["KNN (raw)"][0]["knn_accuracy"] == 0.9
    assert results["digits"]["TripletEmbedder"][0]["knn_accuracy"] == 0.95
    fragment = peers.rst(results, peers.FULL, metas)
    assert "python benchmarks/peers.py --tasks digits" in fragment
    assert "The rows of TripletEmbedder on digits come from a run" in fragment
    assert "python benchmarks/peers.py --contestants TripletEmbedder" in fragment
    assert "TripletEmbedder: do_no_harm kept the raw features in ``1 of 1 seeds``" in fragment


# -- benchmarks/pairs.py ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pairs_benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "pairs.py"
    spec = importlib.util.spec_from_file_location("pairs_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_triplets_follow_the_labels(pairs_benchmark):
    y = np.repeat(np.arange(5), [2, 3, 4, 5, 6])
    triplets = pairs_benchmark.training_triplets(y, 500, seed=0)
    anchors, positives, negatives = triplets.T
    assert (anchors != positives).all()
    assert (y[anchors] == y[positives]).all() and (y[anchors] != y[negatives]).all()
    # Every other member of the class of an anchor is drawn as its positive.
    assert set(positives[anchors == 0]) == {1}
    assert set(positives[anchors == 2]) == {3, 4}
    assert set(positives[anchors == 5]) == {6, 7, 8}


def test_pairs_quick_configuration_runs_on_a_tiny_subset(pairs_benchmark, monkeypatch):
    pytest.importorskip("metric_learn")
    bench = pairs_benchmark
    config = dataclasses.replace(bench.QUICK, max_samples=200, sizes=(60,), max_iter=1)
    kept = ["PairEmbedder", "ComparisonEmbedder", "ITML (metric-learn)", "MMC (metric-learn)"]
    monkeypatch.setattr(
        bench, "TUPLE_CONTESTANTS", {name: bench.TUPLE_CONTESTANTS[name] for name in kept}
    )
    _, _, results = bench.run_job(config, "digits + noise", seed=0)
    for name in kept[:3]:
        result = results[name, 60]
        assert result["status"] == "ok", result
        assert 0.0 <= result["knn_accuracy"] <= 1.0 and 0.0 <= result["roc_auc"] <= 1.0
    assert results["MMC (metric-learn)", 60]["status"] == "not run"  # too slow at 264 features
    assert results["NCA (scikit-learn)", "labels"]["status"] == "ok"
    table = bench.markdown({"digits + noise": {k: [v] for k, v in results.items()}}, config)
    assert "| PairEmbedder | pairs |" in table
