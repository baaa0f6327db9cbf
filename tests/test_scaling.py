"""Scaling out: searches on Dask and Ray clusters (the user guide's docs/scaling.rst)."""

import importlib
import os

import joblib
import numpy as np
import pytest
import torch
from scipy.stats import loguniform
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline

import sklearn_triplet._base
from sklearn_triplet import SiameseEmbedder, TripletEmbedder

# -- searches on a cluster -------------------------------------------------------------------------

SEARCH_DATA = slice(0, 400)


def _searches(tiny):
    """Three small searches: the embedder alone, in a KNN pipeline, and a randomized one."""
    embedder = TripletEmbedder(**tiny)
    pipeline = Pipeline([("embed", TripletEmbedder(**tiny)), ("knn", KNeighborsClassifier(3))])
    return {
        "grid": GridSearchCV(embedder, {"margin": [0.1, 0.5]}, cv=2, n_jobs=-1),
        "pipeline": GridSearchCV(pipeline, {"embed__n_components": [2, 4]}, cv=2, n_jobs=-1),
        "randomized": RandomizedSearchCV(
            SiameseEmbedder(**tiny),
            {"margin": loguniform(0.2, 2.0)},
            n_iter=2,
            cv=2,
            n_jobs=-1,
            random_state=0,
        ),
    }


@pytest.fixture(scope="module")
def local_searches(digits_module, tiny):
    X, y = digits_module[0][SEARCH_DATA], digits_module[1][SEARCH_DATA]
    fitted = {}
    for name, search in _searches(tiny).items():
        fitted[name] = search.set_params(n_jobs=1).fit(X, y)
    return fitted


def _assert_same_search(remote, local, X):
    assert remote.best_params_ == local.best_params_
    assert [str(p) for p in remote.cv_results_["params"]] == [
        str(p) for p in local.cv_results_["params"]
    ]
    for key in ["split0_test_score", "split1_test_score", "mean_test_score", "rank_test_score"]:
        np.testing.assert_array_equal(remote.cv_results_[key], local.cv_results_[key], err_msg=key)
    np.testing.assert_array_equal(_best_output(remote, X), _best_output(local, X))


def _best_output(search, X):
    best = search.best_estimator_
    return best.predict(X) if hasattr(best, "predict") else best.transform(X)


TORCH_THREADS_PER_TASK = 1  # two single-threaded workers on two cores


@pytest.fixture(scope="module")
def dask_client(tmp_path_factory):
    pytest.importorskip("distributed")
    import dask
    from distributed import Client, LocalCluster

    environ = dict(os.environ)  # the nanny writes its worker variables into this process's too
    with (
        dask.config.set({"temporary-directory": str(tmp_path_factory.mktemp("dask"))}),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # torch reads OMP_NUM_THREADS when it starts: one thread per task, no oversubscription
            env={"OMP_NUM_THREADS": str(TORCH_THREADS_PER_TASK)},
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(importlib.import_module, "sklearn_triplet")  # both workers at once
        yield client
    os.environ.clear()
    os.environ.update(environ)


def test_dask_workers_run_torch_with_one_thread_per_task(dask_client):
    workers = list(dask_client.scheduler_info()["workers"])
    assert len(workers) == 2
    # Asked inside tasks, in each worker's executor thread, where joblib's tasks run.
    submit = lambda *args: [  # noqa: E731
        dask_client.submit(*args, workers=[address], pure=False) for address in workers
    ]
    assert dask_client.gather(submit(torch.get_num_threads)) == [TORCH_THREADS_PER_TASK] * 2
    assert (
        dask_client.gather(submit(os.environ.get, "OMP_NUM_THREADS"))
        == [str(TORCH_THREADS_PER_TASK)] * 2
    )


@pytest.mark.parametrize("name", ["grid", "pipeline", "randomized"])
def test_search_on_dask_equals_local(name, dask_client, local_searches, digits_module, tiny):
    from distributed import get_task_stream

    X, y = digits_module[0][SEARCH_DATA], digits_module[1][SEARCH_DATA]
    search = _searches(tiny)[name]
    with get_task_stream(dask_client) as stream, joblib.parallel_config(backend="dask"):
        search.fit(X, y)
    assert {task["worker"] for task in stream.data} == set(dask_client.scheduler_info()["workers"])
    _assert_same_search(search, local_searches[name], X)


def test_search_on_ray_equals_local(local_searches, digits_module, tiny):
    ray = pytest.importorskip("ray")
    from ray.util.joblib import register_ray

    X, y = digits_module[0][SEARCH_DATA], digits_module[1][SEARCH_DATA]
    root = os.path.dirname(os.path.dirname(os.path.abspath(sklearn_triplet._base.__file__)))
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": root}},  # workers import sklearn_triplet
    )
    try:
        register_ray()
        search = _searches(tiny)["pipeline"]
        with joblib.parallel_config(backend="ray"):
            search.fit(X, y)
    finally:
        ray.shutdown()
    _assert_same_search(search, local_searches["pipeline"], X)
