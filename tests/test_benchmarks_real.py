"""Smoke test of benchmarks/real.py: its quick mode, in-process, on tiny subsets of real data."""

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

pytest.importorskip("pyts")
pytest.importorskip("mlxtend")
pytest.importorskip("pytorch_metric_learning")


@pytest.fixture(scope="module")
def real():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "real.py"
    spec = importlib.util.spec_from_file_location("real", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(path.parent))


def test_series_are_z_normalised_per_channel(real):
    X = np.random.default_rng(0).normal(3.0, 5.0, size=(4, 2, 50))
    Z = real._znorm(X)
    assert Z.shape == (4, 2, 50) and Z.dtype == np.float32
    np.testing.assert_allclose(Z.mean(axis=2), 0, atol=1e-5)
    np.testing.assert_allclose(Z.std(axis=2), 1, atol=1e-5)
    assert real._znorm(X[:, 0]).shape == (4, 1, 50)  # univariate: one channel


def test_official_splits_and_the_fixed_mnist_split(real):
    task = real.TASKS["GunPoint"]()
    assert task.X_train.shape == (50, 1, 150) and task.X_test.shape == (150, 1, 150)
    task = real.TASKS["BasicMotions"]()
    assert task.X_train.shape == (40, 6, 100)
    task = real.TASKS["MNIST 5k"]()
    assert task.X_train.shape == (4000, 1, 28, 28) and task.X_test.shape == (1000, 1, 28, 28)
    assert np.bincount(task.y_test).tolist() == [100] * 10
    assert 0.0 <= task.X_train.min() and task.X_train.max() <= 1.0


def test_quick_mode_runs_every_contestant_and_checks_acceptance(real):
    config = dataclasses.replace(real.QUICK, max_iter=2, pml_max_iter=1, max_train=24, max_test=24)
    results = real.run(config, ["Coffee", "MNIST 5k"], log=lambda line: None)
    assert list(results["Coffee"]) == list(real.contestants("signal"))
    assert list(results["MNIST 5k"]) == list(real.contestants("image"))
    # The raw contestant is a plain 1-NN on the flattened z-normalised series.
    task = real.make_task("Coffee", config)
    flat = task.X_train.reshape(len(task.X_train), -1)
    expected = (
        KNeighborsClassifier(n_neighbors=1)
        .fit(flat, task.y_train)
        .score(task.X_test.reshape(len(task.X_test), -1), task.y_test)
    )
    assert results["Coffee"]["1-NN (raw)"][0]["acc1"] == pytest.approx(expected)
    # Our embedders report whether do_no_harm kept the raw features.
    assert "raw_kept" in results["Coffee"]["TripletEmbedder"][0]
    checks = real.acceptance(results)
    assert {task for task, *_ in checks} == {"Coffee", "MNIST 5k"}
    assert all(met in (True, False, None) for *_, met in checks)
    meta = {"date": "d", "command": "c", "cpu": "x", "cores": 2, "load": "0", "total": 1.0}
    text = real.rst(results, config, {**meta, "versions": ["v"]})
    assert ".. rubric:: Coffee" in text and ".. rubric:: Acceptance" in text


def test_published_numbers_cover_every_series_set(real):
    assert set(real.PUBLISHED) == {"Coffee", "GunPoint", "PigCVP", "BasicMotions"}
    for numbers in real.PUBLISHED.values():
        assert all(v is None or 0.0 <= v <= 1.0 for v in numbers.values())


def test_load_merges_saved_runs_and_lists_each_in_the_header(real, tmp_path):
    def run_(acc, fit):
        return {"acc1": acc, "acc5": acc, "map_at_r": acc, "fit_cpu": fit}

    base = {"cpu": "x", "cores": 2, "versions": ["v"]}
    first = {
        "config": "full",
        "meta": {**base, "date": "d1", "command": "c1", "load": "30", "total": 5.0, "note": "n1"},
        "results": {"Coffee": {"1-NN (raw)": [run_(0.5, 0.0)], "NCA": [run_(0.6, 1.0)] * 3}},
    }
    second = {
        "config": "full",
        "meta": {**base, "date": "d2", "command": "c2", "load": "2", "total": 7.0},
        "results": {"Coffee": {"NCA": [run_(0.9, 2.0)] * 3}},
    }
    paths = [tmp_path / "1.json", tmp_path / "2.json"]
    for path, document in zip(paths, (first, second)):
        path.write_text(real.json.dumps(document))
    output = tmp_path / "out.rst"
    results = real.main(["--load", *map(str, paths), "--output", str(output)])
    # The later file replaces the contestant it measured again; the others stay.
    assert results["Coffee"]["NCA"] == [run_(0.9, 2.0)] * 3
    assert results["Coffee"]["1-NN (raw)"] == [run_(0.5, 0.0)]
    text = output.read_text()
    assert "- d1, load average 30 at the start, 5 s: ``c1``. n1" in text
    assert "- d2, load average 2 at the start, 7 s: ``c2``." in text
    assert "in 2 runs" in text


def test_acceptance_counts_a_spread_of_exactly_0_02_as_met(real):
    def runs(*accs):
        return [{"acc1": a, "acc5": a, "map_at_r": a, "fit_cpu": 3.0} for a in accs]

    results = {
        "GunPoint": {"TripletEmbedder (fcn)": runs(0.98, 1.0, 1.0)},  # 3 of 150 test series
        "Coffee": {"TripletEmbedder (fcn)": runs(0.964, 1.0, 1.0)},
    }
    spread = {task: met for task, check, _, met in real.acceptance(results) if "spread" in check}
    assert spread == {"GunPoint": True, "Coffee": False}
