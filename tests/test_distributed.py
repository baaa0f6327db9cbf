"""One model trained by two processes (gloo, on the CPU): each test starts two processes of
tests/distributed_worker.py, bounded in time, and compares what they wrote."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
from sklearn.neighbors import KNeighborsClassifier

from sklearn_triplet import _distributed, load

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed (gloo)"
)

WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Every launch ends within this many seconds, or the test fails (no hang).
LAUNCH_TIMEOUT = 120
# The process group's timeout in the processes the tests start themselves.
GROUP_TIMEOUT = 30


def _environment():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    return env


def _torchrun(mode, out):
    """Run the worker under ``torchrun --standalone --nproc_per_node=2`` (a free port)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    result = subprocess.run(
        [*command, WORKER, mode, str(out)],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes(mode, out):
    """Start two workers that set up their own group (env://); their return codes."""
    env = _environment()
    env.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        WORLD_SIZE="2",
        TIMEOUT=str(GROUP_TIMEOUT),
    )
    env.pop("TORCHELASTIC_RUN_ID", None)
    workers = [
        subprocess.Popen(
            [sys.executable, WORKER, mode, str(out)],
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    codes = []
    try:
        for worker in workers:
            worker.wait(timeout=LAUNCH_TIMEOUT)
            codes.append(worker.returncode)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    return codes, [worker.stderr.read() for worker in workers]


@pytest.fixture(scope="module")
def step_and_fit(tmp_path_factory):
    """The files of one step and one fit by two processes under torchrun."""
    out = tmp_path_factory.mktemp("distributed")
    _torchrun("step-and-fit", out)
    return out


@pytest.mark.parametrize("way", ["group", "split"])
def test_one_step_equals_one_process_on_the_global_batch(step_and_fit, way):
    # A batch of 101 rows, split 51 + 50: the loss, its counts, the negative distances and every
    # gradient on each rank equal those of this process alone on the whole batch, whether every
    # rank computes the whole loss (group) or the terms of its share's anchors (split).
    for rank in range(2):
        result = np.load(step_and_fit / f"step-{rank}.npz")
        np.testing.assert_allclose(result[f"{way}_loss"], result["alone_loss"], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(result[f"{way}_counts"], result["alone_counts"])
        assert result["alone_counts"][0] > 0  # the taxonomy was counted
        np.testing.assert_allclose(result[f"{way}_spread"], result["alone_spread"], rtol=1e-6)
        gradients = [name for name in result.files if name.startswith(f"{way}_grad")]
        assert len(gradients) == 4  # two linear layers: weights and biases
        for name in gradients:
            alone = result[name.replace(way, "alone")]
            assert np.abs(alone).max() > 1e-3  # a gradient that could differ
            np.testing.assert_allclose(result[name], alone, rtol=0, atol=1e-6)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fit_trains_one_model_as_good_as_one_process(step_and_fit):
    from distributed_worker import data, estimator

    ranks = [np.load(step_and_fit / f"fit-{rank}.npz") for rank in range(2)]
    # One model: identical weights, history (validation scores and times included) and epochs.
    np.testing.assert_array_equal(ranks[0]["weights"], ranks[1]["weights"])
    np.testing.assert_array_equal(ranks[0]["history"], ranks[1]["history"])
    assert int(ranks[0]["n_iter"]) == int(ranks[1]["n_iter"])
    # save wrote once, on rank 0, and both ranks loaded the model it wrote
    assert ranks[0]["written"].tolist() == [0] and ranks[1]["written"].tolist() == []
    for result in ranks:
        np.testing.assert_array_equal(result["loaded_embedding"], result["embedding"])
    # partial_fit in the group trains the same epoch on every rank
    np.testing.assert_array_equal(ranks[0]["partial_fit_weights"], ranks[1]["partial_fit_weights"])
    assert not np.array_equal(ranks[0]["partial_fit_weights"], ranks[0]["weights"])
    # As good as one process fitting the same data with the same parameters.
    X, y = data()
    alone = estimator(early_stopping=True, n_iter_no_change=2).fit(X, y)
    train, test = np.arange(0, len(X), 2), np.arange(1, len(X), 2)

    def knn_accuracy(embedding):
        knn = KNeighborsClassifier(5).fit(embedding[train], y[train])
        return knn.score(embedding[test], y[test])

    together, single = knn_accuracy(ranks[0]["embedding"]), knn_accuracy(alone.transform(X))
    assert single > 0.8
    assert together >= single - 0.01


def test_a_memory_map_is_read_a_share_at_a_time(step_and_fit):
    # Each rank of a fit on a float64 memory map reads its half of each of 2 x 12 batches of 96
    # rows (1080 training samples after the validation split), 48 rows a read; only rank 0 reads
    # the 120 validation rows to score them (besides, a rank may read one row to learn the shape
    # of a sample). No rank reads more at once: never the whole X. The weights are those of the
    # fit on X in memory.
    for rank in range(2):
        result = np.load(step_and_fit / f"memmap-{rank}.npz")
        reads = result["reads"].tolist()
        assert reads.count(48) == 2 * 12
        others = [n for n in reads if n != 48]
        assert set(others) <= ({1, 120} if rank == 0 else {1}), others
        np.testing.assert_array_equal(result["on_disk"], result["in_memory"])


def test_a_dead_rank_stops_the_others_and_a_restart_resumes(tmp_path):
    # Rank 1 exits at the end of epoch 3 as if killed; rank 0 stops with a clear error (within the
    # group's timeout: LAUNCH_TIMEOUT bounds the wait) when the ranks agree whether to stop,
    # before writing the checkpoint of epoch 3: the last one is that of epoch 2.
    codes, errors = _processes("die", tmp_path)
    assert codes == [3, 17], errors
    message = (tmp_path / "error-0.txt").read_text()
    assert message.startswith("Rank 0 of 2 stopped while ")
    assert "another process of the group stopped" in message
    assert load(tmp_path / "fit.ckpt").n_iter_ == 2
    # Started again, both ranks resume from the checkpoint: epochs 4 to 8, one model.
    codes, errors = _processes("resume", tmp_path)
    assert codes == [0, 0], errors
    resumed = [np.load(tmp_path / f"resumed-{rank}.npz") for rank in range(2)]
    for result in resumed:
        assert result["epochs"].tolist() == list(range(1, 9))
    np.testing.assert_array_equal(resumed[0]["weights"], resumed[1]["weights"])
    assert not (tmp_path / "fit.ckpt").exists()  # removed once, at the end


@pytest.mark.parametrize("mining", ["semi-hard", "all", "hard", "easy-positive"])
@pytest.mark.parametrize(("metric", "average"), [("euclidean", "active"), ("cosine", "all")])
def test_the_triplet_loss_split_by_anchors_adds_up_to_the_whole(mining, metric, average):
    # What the ranks of a group compute for their anchors: three uneven parts of one batch (an
    # empty one, duplicated rows at distance 0, a class of one) add up to the loss of the whole
    # batch, its counts, its negative distances and its gradient.
    from sklearn_triplet._kernels import triplet_kernel, triplet_part_kernel

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(37, 4, generator=generator)
    x[5] = x[6]
    labels = torch.randint(0, 5, (37,), generator=generator)
    labels[0] = 7
    options = dict(margin=0.3, mining=mining, metric=metric, average=average, counts=True)
    whole_x = x.clone().requires_grad_()
    whole = triplet_kernel(whole_x, labels, **options, spread=True)
    whole.loss.backward()
    assert whole_x.grad is not None and whole_x.grad.abs().max() > 1e-3
    parts, gradient = [], torch.zeros_like(x)
    for anchors in [slice(0, 0), slice(0, 11), slice(11, 37)]:
        part_x = x.clone().requires_grad_()
        part = triplet_part_kernel(part_x, labels, anchors, **options, spread=True)
        part.total.backward()
        assert part_x.grad is not None
        gradient += part_x.grad
        parts.append(part)
    denominator = sum(int(part.denominator) for part in parts)
    assert denominator > 0
    total = sum(float(part.total.detach()) for part in parts)
    assert total / denominator == pytest.approx(float(whole.loss.detach()), rel=1e-6)
    np.testing.assert_allclose(gradient / denominator, whole_x.grad, rtol=0, atol=1e-6)
    torch.testing.assert_close(sum(part.counts for part in parts), whole.counts, rtol=0, atol=0)
    assert whole.counts[0] > 0 and whole.negative_distances is not None
    distance_sum, n_negatives = whole.negative_distances
    assert sum(int(part.negative_distances[1]) for part in parts) == int(n_negatives)
    assert sum(float(part.negative_distances[0]) for part in parts) == pytest.approx(
        float(distance_sum), rel=1e-6
    )


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_a_ranks_rows_of_the_distance_matrix_are_the_whole_matrixs(metric):
    # A rank computes its anchors' rows alone; they are the whole matrix's to the bit (so that
    # its mining decisions are one process's): zero rows (cosine), duplicates, several blocks of
    # the symmetrisation (300 rows).
    from sklearn_triplet._kernels import distance_matrix, distance_rows

    x = torch.randn(300, 6, generator=torch.Generator().manual_seed(0))
    x[2], x[3], x[4] = 0.0, 0.0, x[1]
    whole = distance_matrix(x, None, metric)
    for anchors in [slice(0, 0), slice(0, 3), slice(1, 150), slice(150, 300), slice(0, 300)]:
        torch.testing.assert_close(
            distance_rows(x, metric, anchors), whole[anchors], rtol=0, atol=0
        )


def test_outside_a_process_group_a_fit_trains_alone(tmp_path):
    assert _distributed.current() is None
    assert _distributed.is_writer()
    np.save(tmp_path / "X.npy", np.zeros((3, 2)))
    assert not _distributed.reads_shares(np.load(tmp_path / "X.npy", mmap_mode="r"))


def test_shared_rows_read_only_what_a_tensor_asks_for():
    read = []

    class Recording(np.ndarray):
        def __getitem__(self, rows):
            read.append(np.asarray(rows).tolist())
            return np.asarray(self)[rows]

    data = np.arange(20, dtype=np.float64).reshape(10, 2).view(Recording)
    rows = _distributed.SharedRows(data)
    subset = rows[np.array([7, 3, 5])]  # a selection, nothing read
    assert subset.shape == (3, 2) and read == []
    batch = subset[torch.tensor([2, 0])]  # rows 5 and 7 of the data
    assert read == [[5, 7]]
    assert batch.dtype == torch.float32
    np.testing.assert_array_equal(batch.numpy(), [[10, 11], [14, 15]])
    np.testing.assert_array_equal(subset[1:], [[6, 7], [10, 11]])
    data[4, 0] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        rows[torch.tensor([4])]
