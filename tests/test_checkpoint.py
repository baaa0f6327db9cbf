"""Checkpoints: a fit killed mid-epoch resumes to the weights of a fit never killed."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from sklearn_triplet import SiameseEmbedder, TripletEmbedder, _format, load
from sklearn_triplet.losses import triplet_loss

N_SAMPLES = 256  # 4 batches of 64 per epoch


@pytest.fixture
def config(fast):
    """Five epochs of four batches: room for checkpoints before and after an interruption."""
    return {**fast, "max_iter": 5}


@pytest.fixture
def data(digits):
    X, y = digits
    return X[:N_SAMPLES] / 16.0, y[:N_SAMPLES]


def assert_same_weights(a, b):
    state_a, state_b = a.module_.state_dict(), b.module_.state_dict()
    assert list(state_a) == list(state_b)
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), name


def assert_same_history(a, b):
    def strip(history):
        return [{k: v for k, v in row.items() if k != "time"} for row in history]

    np.testing.assert_equal(strip(a.history_), strip(b.history_))


class Interrupt(Exception):
    pass


def interrupt_after(n_epochs):
    """A callback that stops the fit with an exception at the end of epoch ``n_epochs``."""

    def callback(estimator, epoch, logs):
        if epoch == n_epochs:
            raise Interrupt

    return callback


def fit_interrupted(estimator, X, y, at):
    estimator.set_params(callback=interrupt_after(at))
    with pytest.raises(Interrupt):
        estimator.fit(X, y)


# -- in-process interruptions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "Estimator, params",
    [
        (TripletEmbedder, {}),
        (SiameseEmbedder, {}),
        (TripletEmbedder, {"checkpoint_every": 2}),
        (TripletEmbedder, {"early_stopping": True, "validation_fraction": 0.25}),
        (TripletEmbedder, {"random_state": np.random.RandomState(7)}),
    ],
    ids=["triplet", "siamese", "every-2", "early-stopping", "RandomState"],
)
def test_resumed_fit_ends_with_the_weights_of_an_uninterrupted_one(
    Estimator, params, data, tmp_path, config
):
    X, y = data
    path = tmp_path / "fit.ckpt"

    def make(**extra):  # a RandomState instance is consumed by a fit: a new one each time
        if "random_state" in params:
            extra["random_state"] = np.random.RandomState(7)
        return Estimator(**{**config, **params, **extra})

    reference = make().fit(X, y)
    fit_interrupted(make(checkpoint=path), X, y, at=4)
    every = params.get("checkpoint_every", 1)
    assert load(path).n_iter_ == 3 // every * every  # the last checkpoint before epoch 4 ended
    resumed = make(checkpoint=path).fit(X, y)

    assert_same_weights(resumed, reference)
    assert_same_history(resumed, reference)
    assert resumed.n_iter_ == reference.n_iter_
    assert resumed.validation_scores_ == reference.validation_scores_  # the whole fit's
    assert not path.exists()  # a finished fit deletes its checkpoint


def test_checkpointing_does_not_change_the_fit(data, tmp_path, config):
    X, y = data
    plain = TripletEmbedder(**config).fit(X, y)
    checkpointed = TripletEmbedder(**config, checkpoint=tmp_path / "fit.ckpt").fit(X, y)
    assert_same_weights(checkpointed, plain)
    assert os.listdir(tmp_path) == []


def test_a_checkpoint_loads_as_the_estimator_at_its_epoch(data, tmp_path, config):
    X, y = data
    path = tmp_path / "fit.ckpt"
    fit_interrupted(TripletEmbedder(**config, checkpoint=path), X, y, at=3)
    estimator = load(path)
    assert estimator.n_iter_ == 2 and len(estimator.history_) == 2
    assert estimator.transform(X).shape == (N_SAMPLES, 8)
    # The fit's callback was a local function: save() cannot store it, so the checkpoint has None.
    assert estimator.callback is None


def test_resume_with_more_epochs_and_other_free_parameters(data, tmp_path, config):
    X, y = data
    path = tmp_path / "fit.ckpt"
    config = {**config, "learning_rate": "constant"}  # a schedule would span max_iter epochs
    reference = TripletEmbedder(**{**config, "max_iter": 7}).fit(X, y)
    fit_interrupted(TripletEmbedder(**config, checkpoint=path), X, y, at=3)
    resumed = TripletEmbedder(
        **{**config, "max_iter": 7}, checkpoint=str(path), checkpoint_every=3, verbose=0
    ).fit(X, y)
    assert_same_weights(resumed, reference)
    assert resumed.n_iter_ == 7


def test_random_state_none_resumes_from_the_checkpoint_alone(data, tmp_path, config):
    X, y = data
    path = tmp_path / "fit.ckpt"
    params = {**config, "random_state": None, "early_stopping": True}
    fit_interrupted(TripletEmbedder(**params, checkpoint=path), X, y, at=3)
    shutil.copy(path, tmp_path / "copy.ckpt")
    first = TripletEmbedder(**params, checkpoint=path).fit(X, y)
    second = TripletEmbedder(**params, checkpoint=tmp_path / "copy.ckpt").fit(X, y)
    # Every random draw after the checkpoint (validation split, batches) came from its state.
    assert_same_weights(first, second)


def test_warm_start_resumes_from_the_same_starting_point(data, tmp_path, config):
    X, y = data
    path = tmp_path / "fit.ckpt"
    reference = TripletEmbedder(**config).fit(X, y).set_params(warm_start=True).fit(X, y)
    start = TripletEmbedder(**config).fit(X, y)
    start.save(tmp_path / "start.safetensors")
    interrupted = load(tmp_path / "start.safetensors").set_params(warm_start=True, checkpoint=path)
    fit_interrupted(interrupted, X, y, at=8)
    assert load(path).n_iter_ == 7
    resumed = load(tmp_path / "start.safetensors").set_params(warm_start=True, checkpoint=path)
    resumed.fit(X, y)
    assert_same_weights(resumed, reference)
    assert resumed.n_iter_ == 10

    # Another starting point (a fresh fit, here) is another fit.
    fit_interrupted(
        load(tmp_path / "start.safetensors").set_params(warm_start=True, checkpoint=path),
        X,
        y,
        at=8,
    )
    with pytest.raises(ValueError, match=re.escape("(different starting point (a warm start")):
        TripletEmbedder(**config, checkpoint=path).fit(X, y)


@pytest.mark.parametrize(
    "change, difference",
    [
        ({"margin": 0.3}, "parameter margin"),
        (
            {"hidden_layer_sizes": (17,), "learning_rate_init": 0.01},
            "parameter hidden_layer_sizes, parameter learning_rate_init",
        ),
        ({"data": True}, "data (X or y)"),
        # With a learning-rate schedule, max_iter sets the rate of every epoch.
        ({"max_iter": 7}, "parameter max_iter"),
        # The defaults of margin, mining and samples_per_class differ between the two, and only
        # one of them has squared.
        (
            {"estimator": SiameseEmbedder},
            "estimator, parameter margin, parameter mining, parameter samples_per_class, "
            "parameter squared",
        ),
    ],
    ids=["margin", "two-parameters", "data", "max_iter-with-a-schedule", "estimator"],
)
def test_a_checkpoint_of_another_fit_is_refused(change, difference, data, tmp_path, config):
    X, y = data
    path = tmp_path / "fit.ckpt"
    fit_interrupted(TripletEmbedder(**config, checkpoint=path), X, y, at=2)
    before = path.read_bytes()
    change = dict(change)
    Estimator = change.pop("estimator", TripletEmbedder)
    if change.pop("data", False):
        X = X.copy()
        X[0, 0] += 1.0
    estimator = Estimator(**{**config, **change}, checkpoint=path)
    message = (
        f"Cannot resume from the checkpoint {str(path)!r}: it belongs to another fit (different "
        f"{difference}). Delete it, or pass another checkpoint path, to start afresh."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        estimator.fit(X, y)
    assert not hasattr(estimator, "module_")
    assert path.read_bytes() == before


def test_a_damaged_checkpoint_is_an_error_that_says_what_to_do(data, tmp_path, config):
    X, y = data
    path = tmp_path / "fit.ckpt"
    fit_interrupted(TripletEmbedder(**config, checkpoint=path), X, y, at=2)
    path.write_bytes(path.read_bytes()[:-10])
    message = (
        f"Cannot resume from the checkpoint {str(path)!r}: the file is truncated, corrupted or "
        "not a safetensors file ("
    )
    with pytest.raises(ValueError, match=re.escape(message)) as excinfo:
        TripletEmbedder(**config, checkpoint=path).fit(X, y)
    assert str(excinfo.value).endswith(
        "Delete it, or pass another checkpoint path, to start afresh."
    )


def test_a_saved_model_is_not_a_checkpoint(data, tmp_path, config):
    X, y = data
    path = tmp_path / "fit.ckpt"
    TripletEmbedder(**config).fit(X, y).save(path)
    with pytest.raises(
        ValueError, match=re.escape("it is not a checkpoint (KeyError('checkpoint'))")
    ):
        TripletEmbedder(**config, checkpoint=path).fit(X, y)


def test_unstorable_parameters_are_compared_by_name(data, tmp_path, config):
    X, y = data
    path = tmp_path / "fit.ckpt"

    def params():
        backbone = torch.nn.Sequential(
            torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8)
        )
        return {**config, "backbone": backbone, "loss": lambda e, labels: triplet_loss(e, labels)}

    torch.manual_seed(0)
    reference = TripletEmbedder(**params()).fit(X, y)
    torch.manual_seed(0)
    fit_interrupted(TripletEmbedder(**params(), checkpoint=path), X, y, at=3)
    document, _ = _format.read_file(path)
    assert document["checkpoint"]["identity"]["params"]["backbone"] == {
        "__unstored__": "torch.nn.modules.container.Sequential"
    }
    message = (
        f"Cannot load {str(path)!r}: it is a checkpoint that records "
        "torch.nn.modules.container.Sequential by name only (a lambda, a local function or a "
        "module instance), which load() cannot rebuild."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load(path)
    torch.manual_seed(1)  # other initial weights: the checkpoint's replace them
    resumed = TripletEmbedder(**params(), checkpoint=path).fit(X, y)
    assert_same_weights(resumed, reference)


def test_partial_fit_writes_no_checkpoint(data, tmp_path, config):
    X, y = data
    TripletEmbedder(**config, checkpoint=tmp_path / "fit.ckpt").partial_fit(X, y).partial_fit(X, y)
    assert os.listdir(tmp_path) == []


def test_checkpoint_parameters_are_validated(data):
    X, y = data
    with pytest.raises(ValueError, match="The 'checkpoint_every' parameter of TripletEmbedder"):
        TripletEmbedder(checkpoint="fit.ckpt", checkpoint_every=0).fit(X, y)
    with pytest.raises(ValueError, match="The 'checkpoint' parameter of TripletEmbedder"):
        TripletEmbedder(checkpoint=3).fit(X, y)


# -- a process killed with SIGKILL -----------------------------------------------------------------

HELPER = '''
"""A backbone that can freeze in the middle of an epoch, and a slow checkpoint writer."""
import os
import pathlib
import threading

import torch
from safetensors.torch import save


class Net(torch.nn.Module):
    def __init__(self, n_features, n_components):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n_features, 16), torch.nn.ReLU(), torch.nn.Linear(16, n_components)
        )
        self.batches = 0

    def forward(self, x):
        if self.training:
            self.batches += 1
            if self.batches == int(os.environ.get("FREEZE_AT_BATCH", 0)):
                pathlib.Path(os.environ["READY_FILE"]).touch()
                threading.Event().wait()  # until killed
        return self.net(x)


def half_written_save_file(calls=[0]):
    """A save_file that writes its second file half, makes that durable, and freezes."""
    import sklearn_triplet._format as persistence

    original = persistence.save_file

    def save_file(tensors, filename, metadata):
        calls[0] += 1
        if calls[0] < 2:
            return original(tensors, filename, metadata=metadata)
        data = save(tensors, metadata=metadata)
        with open(filename, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
        pathlib.Path(os.environ["READY_FILE"]).touch()
        threading.Event().wait()  # until killed

    persistence.save_file = save_file
'''

CHILD = """
import json
import sys

import torch

torch.set_num_threads(1)
sys.path.insert(0, sys.argv[1])
from {helper} import Net, half_written_save_file
from sklearn.datasets import load_digits
from sklearn_triplet import TripletEmbedder

params = json.loads(sys.argv[2])
params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
if params.pop("slow_writes"):
    half_written_save_file()
X, y = load_digits(return_X_y=True)
TripletEmbedder(**params, backbone=Net).fit(X[:{n}] / 16.0, y[:{n}])
"""


@pytest.fixture
def helper(tmp_path, monkeypatch):
    """A helper module importable by name in this process and in the child."""
    name = "checkpoint_helper_" + os.urandom(4).hex()
    (tmp_path / f"{name}.py").write_text(HELPER)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(name)
    yield module
    sys.modules.pop(name, None)


def run_until_ready_and_kill(tmp_path, helper, params, *, env, config):
    """Start a fit in a child process, wait for its signal in a file, kill it with SIGKILL."""
    ready = tmp_path / "ready"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(helper=helper.__name__, n=N_SAMPLES))
    child_params = {**config, **params, "hidden_layer_sizes": list(config["hidden_layer_sizes"])}
    process = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), json.dumps(child_params)],
        env={**os.environ, "OMP_NUM_THREADS": "1", "READY_FILE": str(ready), **env},
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            if process.poll() is not None:
                pytest.fail(f"the child exited early: {process.stderr.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, "the child never signalled readiness"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()


@pytest.mark.slow
def test_fit_killed_mid_epoch_resumes_to_the_same_weights(helper, data, tmp_path, config):
    X, y = data
    path = tmp_path / "fit.ckpt"
    # 4 batches an epoch: batch 11 is the third of epoch 3, after the checkpoint of epoch 2.
    params = {"checkpoint": str(path), "slow_writes": False}
    run_until_ready_and_kill(tmp_path, helper, params, env={"FREEZE_AT_BATCH": "11"}, config=config)
    trusted = [f"{helper.__name__}.Net"]
    assert load(path, trusted=trusted).n_iter_ == 2

    resumed = TripletEmbedder(**config, backbone=helper.Net, checkpoint=path).fit(X, y)
    reference = TripletEmbedder(**config, backbone=helper.Net).fit(X, y)
    assert_same_weights(resumed, reference)
    assert_same_history(resumed, reference)
    assert not path.exists()


@pytest.mark.slow
def test_a_write_killed_midway_leaves_the_last_good_checkpoint(helper, data, tmp_path, config):
    X, y = data
    path = tmp_path / "fit.ckpt"
    params = {"checkpoint": str(path), "slow_writes": True}
    run_until_ready_and_kill(tmp_path, helper, params, env={}, config=config)

    # The second checkpoint was half written when the process died: the first one is in place.
    trusted = [f"{helper.__name__}.Net"]
    assert load(path, trusted=trusted).n_iter_ == 1
    (stray,) = tmp_path.glob(".fit.ckpt.*.tmp")
    with pytest.raises(ValueError, match="the file is truncated, corrupted or not a safetensors"):
        load(stray, trusted=trusted)

    resumed = TripletEmbedder(**config, backbone=helper.Net, checkpoint=path).fit(X, y)
    reference = TripletEmbedder(**config, backbone=helper.Net).fit(X, y)
    assert_same_weights(resumed, reference)


def test_write_file_replaces_the_destination_by_rename(tmp_path, monkeypatch):
    # The destination is replaced in one os.replace, from a complete, fsynced temporary file.
    path = tmp_path / "file.safetensors"
    _format.write_file(path, {"n": 1}, {"t": torch.zeros(3)})
    calls = []
    real_replace, real_fsync = os.replace, os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync") or real_fsync(fd))

    def replace(src, dst):
        calls.append("replace")
        assert _format.read_file(src)[0] == {"n": 2}  # complete before it is renamed
        assert _format.read_file(dst)[0] == {"n": 1}  # the old file until then
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    _format.write_file(path, {"n": 2}, {"t": torch.ones(3)})
    assert calls[:2] == ["fsync", "replace"]
    assert _format.read_file(path)[0] == {"n": 2}
    assert os.listdir(tmp_path) == ["file.safetensors"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resume_on_cuda(data, tmp_path, config):
    X, y = data
    path = tmp_path / "fit.ckpt"
    fit_interrupted(TripletEmbedder(**config, device="cuda", checkpoint=path), X, y, at=3)
    resumed = TripletEmbedder(**config, device="cuda", checkpoint=path).fit(X, y)
    assert resumed.n_iter_ == config["max_iter"] and not path.exists()
    np.testing.assert_allclose(
        resumed.transform(X),
        TripletEmbedder(**config, device="cuda").fit(X, y).transform(X),
        rtol=1e-4,
        atol=1e-5,
    )
