"""Ray Train's TorchTrainer runs an unchanged fit on two workers as one model.

Optional: skipped when Ray Train is not installed (``pip install "ray[train]"``; too heavy for the
project's CI, which does not install it). Starts a local Ray instance with two CPUs.
"""

import os

import numpy as np
import pytest

pytest.importorskip("ray.train.torch")

import ray  # noqa: E402
from ray.train import RunConfig, ScalingConfig  # noqa: E402
from ray.train.torch import TorchTrainer  # noqa: E402


def _train_loop(config):
    """What each Ray worker runs: the script of one process, writing what it fitted."""
    import sys

    import torch
    import torch.distributed as dist

    sys.path.insert(0, config["tests"])
    from distributed_worker import data, estimator

    torch.set_num_threads(1)
    X, y = data()
    est = estimator().fit(X, y)
    np.savez(
        os.path.join(config["out"], f"ray-{dist.get_rank()}.npz"),
        world_size=dist.get_world_size(),
        weights=np.concatenate([p.detach().numpy().ravel() for p in est.module_.parameters()]),
        embedding=est.transform(X),
        losses=np.array([row["loss"] for row in est.history_]),
    )


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torch_trainer_fits_one_model_on_two_workers(tmp_path):
    from distributed_worker import data, estimator
    from sklearn.neighbors import KNeighborsClassifier

    here = os.path.dirname(os.path.abspath(__file__))
    path = os.pathsep.join([here, os.path.dirname(here), os.environ.get("PYTHONPATH", "")])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        # the workers import this module (the loop's home) and the package from this checkout
        runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}},
    )
    try:
        trainer = TorchTrainer(
            _train_loop,
            train_loop_config={"out": str(tmp_path), "tests": here},
            scaling_config=ScalingConfig(num_workers=2, use_gpu=False),
            run_config=RunConfig(storage_path=str(tmp_path / "ray"), name="fit"),
        )
        trainer.fit()
    finally:
        ray.shutdown()
    ranks = [np.load(tmp_path / f"ray-{rank}.npz") for rank in range(2)]
    assert [int(r["world_size"]) for r in ranks] == [2, 2]
    np.testing.assert_array_equal(ranks[0]["weights"], ranks[1]["weights"])
    np.testing.assert_array_equal(ranks[0]["losses"], ranks[1]["losses"])
    X, y = data()
    alone = estimator().fit(X, y)
    train, test = np.arange(0, len(X), 2), np.arange(1, len(X), 2)

    def knn_accuracy(embedding):
        return (
            KNeighborsClassifier(5).fit(embedding[train], y[train]).score(embedding[test], y[test])
        )

    assert knn_accuracy(ranks[0]["embedding"]) >= knn_accuracy(alone.transform(X)) - 0.01
