"""Threads: the intra-op thread count a fit chooses, and fits and transforms run concurrently."""

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import joblib
import numpy as np
import pytest
import torch
from joblib import parallel_backend
from sklearn.model_selection import GridSearchCV
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_triplet import SiameseEmbedder, TripletEmbedder, _threads
from sklearn_triplet.backbones import make_cnn, make_mlp

# do_no_harm=False: the tests count the threads of the network's passes, which a fit that keeps
# the raw features would not run at transform.
TINY = {
    "n_components": 8,
    "hidden_layer_sizes": (32,),
    "max_iter": 2,
    "batch_size": 64,
    "do_no_harm": False,
}


@pytest.fixture
def small_digits(digits):
    X, y = digits
    return X[:240] / 16.0, y[:240]


@pytest.fixture
def global_rng_untouched():
    """Seed the global generators, and check after the test that nothing drew from them."""
    np.random.seed(7)
    torch.manual_seed(7)
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    yield
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.get_rng_state(), torch_state)


def in_thread(function, *args):
    """Run ``function(*args)`` in a fresh OS thread and return its result."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(function, *args).result()


def dropout_factory(n_features, n_components):
    """A user factory that draws from torch's global generator, at construction and in training."""
    return torch.nn.Sequential(
        torch.nn.Linear(n_features, 16), torch.nn.Dropout(0.2), torch.nn.Linear(16, n_components)
    )


# -- the thread count ------------------------------------------------------------------------------


def test_torch_thread_count_is_per_thread():
    # The design rests on this: a count set in one thread leaves alone that of another thread which
    # has used PyTorch. (A thread that has not yet takes the last count set anywhere.)
    ready, done = threading.Event(), threading.Event()
    seen = {}

    def other():
        torch.get_num_threads()
        torch.set_num_threads(1)
        ready.set()
        done.wait(10)
        seen["other"] = torch.get_num_threads()

    thread = threading.Thread(target=other)
    thread.start()
    ready.wait(10)
    with _threads.limit_threads(3):
        seen["inside"] = torch.get_num_threads()
        done.set()
        thread.join()
    assert seen == {"inside": 3, "other": 1}


def test_limit_threads_restores_the_callers_count_also_after_an_error():
    def run():
        torch.set_num_threads(3)
        with _threads.limit_threads(2):
            inside = torch.get_num_threads()
        after = torch.get_num_threads()
        with pytest.raises(KeyError), _threads.limit_threads(1):
            raise KeyError("boom")
        return inside, after, torch.get_num_threads()

    assert in_thread(run) == (2, 3, 3)


def test_probe_counts_the_flops_of_each_weight_layer():
    mlp = make_mlp(64, 8, hidden_layer_sizes=(32,))
    output, flops = _threads.probe(mlp, 64, torch.device("cpu"))
    assert output.shape == (2, 8)
    assert flops == (2 * 64 * 32 + 2 * 32 * 8) / 2
    cnn = make_cnn(64, 8, input_shape=(1, 8, 8), channels=(4,), hidden_size=16)
    _, flops = _threads.probe(cnn, 64, torch.device("cpu"))
    conv1 = 2 * (1 * 9) * (4 * 64)  # each of 4 x 8 x 8 outputs: a 1 x 3 x 3 dot product
    conv2 = 2 * (4 * 9) * (4 * 64)
    hidden = 2 * (4 * 4) * 16  # pooled to 4 channels x 2 x 2
    out = 2 * 16 * 8
    assert flops == (conv1 + conv2 + hidden + out) / 4
    _, flops = _threads.probe(torch.nn.Sequential(torch.nn.ReLU()), 4, torch.device("cpu"))
    assert flops == 0.0


def test_choose_n_threads(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(joblib, "cpu_count", lambda: 8)
    for name in _threads._THREAD_LIMIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    # The default network on the digits at a batch of 128: one thread.
    _, flops = _threads.probe(make_mlp(64, 32), 64, cpu)
    assert _threads.choose_n_threads(None, flops_per_row=flops, n_rows=128, device=cpu) == 1
    # One more thread per 5e7 FLOP of an average layer, up to the cores.
    for work, expected in [(4.9e7, 1), (1e8, 2), (3.2e8, 6), (1e12, 8)]:
        assert _threads.choose_n_threads(None, flops_per_row=work, n_rows=1, device=cpu) == expected
    # Within the limits the process was given (loky and Dask set these in their workers).
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert _threads.choose_n_threads(None, flops_per_row=1e12, n_rows=1, device=cpu) == 3
    monkeypatch.setenv("MKL_NUM_THREADS", "2")
    assert _threads.choose_n_threads(None, flops_per_row=1e12, n_rows=1, device=cpu) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    monkeypatch.delenv("MKL_NUM_THREADS")
    assert _threads.choose_n_threads(None, flops_per_row=1e12, n_rows=1, device=cpu) == 8
    # Off the CPU, the CPU only feeds the device; an explicit count is always honoured.
    cuda = torch.device("cuda")
    assert _threads.choose_n_threads(None, flops_per_row=1e12, n_rows=1, device=cuda) == 1
    assert _threads.choose_n_threads(16, flops_per_row=0.0, n_rows=1, device=cpu) == 16


def recording(record):
    """A callback that records the thread count of each epoch (it runs inside the fit)."""
    return lambda estimator, epoch, logs: record.append(torch.get_num_threads())


def record_forward_passes(estimator, record):
    """Record the thread count of each forward pass of a fitted estimator (as in transform)."""
    estimator.module_.register_forward_pre_hook(lambda *_: record.append(torch.get_num_threads()))


@pytest.mark.parametrize("Estimator", [TripletEmbedder, SiameseEmbedder])
def test_explicit_n_threads_is_used_and_the_callers_count_restored(Estimator, small_digits):
    X, y = small_digits
    during_fit, during_transform = [], []

    def run():
        torch.set_num_threads(3)
        est = Estimator(callback=recording(during_fit), n_threads=2, **TINY).fit(X, y)
        after_fit = torch.get_num_threads()
        record_forward_passes(est, during_transform)
        est.set_params(n_threads=1).transform(X)
        return after_fit, torch.get_num_threads()

    assert in_thread(run) == (3, 3)
    assert during_fit == [2, 2] and during_transform == [1]


@pytest.mark.parametrize("Estimator", [TripletEmbedder, SiameseEmbedder])
def test_callers_count_restored_after_an_error(Estimator, small_digits):
    X, y = small_digits

    def stop(estimator, epoch, logs):
        raise RuntimeError("stop")

    def run():
        torch.set_num_threads(3)
        est = Estimator(callback=stop, n_threads=2, **TINY)
        with pytest.raises(RuntimeError, match="stop"):
            est.fit(X, y)
        after_fit = torch.get_num_threads()
        with pytest.raises(ValueError, match="features"):
            est.transform(X[:, :10])
        return after_fit, torch.get_num_threads()

    assert in_thread(run) == (3, 3)


def test_n_threads_none_decides_from_the_work(digits, monkeypatch):
    X, y = digits
    monkeypatch.setattr(joblib, "cpu_count", lambda: 8)
    for name in _threads._THREAD_LIMIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    records = {"default": ([], []), "wide": ([], [])}

    def run():
        torch.set_num_threads(5)
        for name, params in [
            ("default", {}),
            # (2 * 64 * 2048 + 2 * 2048 * 32) / 2 FLOP per row and layer: 4 threads of 5e7 FLOP at
            # a batch of 1024 rows, 7 for the transform's one pass over 1797 rows
            ("wide", {"hidden_layer_sizes": (2048,), "batch_size": 1024}),
        ]:
            during_fit, during_transform = records[name]
            est = TripletEmbedder(
                max_iter=1, callback=recording(during_fit), do_no_harm=False, **params
            ).fit(X, y)
            record_forward_passes(est, during_transform)
            est.transform(X)
        return torch.get_num_threads()

    assert in_thread(run) == 5
    assert records == {"default": ([1], [1]), "wide": ([4], [7])}


def test_n_threads_is_validated(small_digits):
    X, y = small_digits
    message = (
        "The 'n_threads' parameter of TripletEmbedder must be an int in the range [1, inf) or "
        "None. Got 0 instead."
    )
    with pytest.raises(InvalidParameterError, match=re.escape(message)):
        TripletEmbedder(n_threads=0).fit(X, y)


# -- concurrency -----------------------------------------------------------------------------------


def test_grid_search_under_the_threading_backend_equals_serial(small_digits, global_rng_untouched):
    X, y = small_digits

    def search():
        return GridSearchCV(
            TripletEmbedder(**TINY, random_state=0), {"margin": [0.1, 0.2, 0.5]}, cv=2
        ).fit(X, y)

    serial = search().cv_results_
    keys = ["split0_test_score", "split1_test_score", "mean_test_score"]
    for n_jobs in (2, 4):
        for _ in range(3):
            with parallel_backend("threading", n_jobs=n_jobs):
                threaded = search().cv_results_
            for key in keys:
                np.testing.assert_array_equal(threaded[key], serial[key])


def make_estimators():
    """Eight estimators of both kinds, two of them with a user factory that draws at random."""
    return [
        TripletEmbedder(**TINY, random_state=0),
        SiameseEmbedder(**TINY, random_state=1),
        TripletEmbedder(**TINY, random_state=2, mining="hard"),
        SiameseEmbedder(**TINY, random_state=3, early_stopping=True),
        TripletEmbedder(**{**TINY, "hidden_layer_sizes": (16, 16)}, random_state=4),
        TripletEmbedder(**TINY, backbone="linear", random_state=5),
        TripletEmbedder(**TINY, backbone=dropout_factory, random_state=6),
        SiameseEmbedder(**TINY, backbone=dropout_factory, random_state=7),
    ]


def test_eight_threads_fitting_give_the_transforms_of_serial_fits(
    small_digits, global_rng_untouched
):
    X, y = small_digits
    serial = [est.fit(X, y).transform(X) for est in make_estimators()]
    start = threading.Barrier(8)

    def fit_transform(est):
        start.wait(10)
        return est.fit(X, y).transform(X)

    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(fit_transform, make_estimators()))
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(a, b)


def test_eight_threads_transforming_one_estimator_get_identical_outputs(
    small_digits, global_rng_untouched
):
    X, y = small_digits
    est = TripletEmbedder(**TINY, random_state=0).fit(X, y)
    expected = est.transform(X)
    start = threading.Barrier(8)

    def transform(_):
        start.wait(10)
        return [est.transform(X) for _ in range(5)]

    with ThreadPoolExecutor(8) as pool:
        outputs = [out for outs in pool.map(transform, range(8)) for out in outs]
    for out in outputs:
        np.testing.assert_array_equal(out, expected)


def test_autocast_and_inference_mode_stay_in_the_fitting_thread(small_digits):
    X, y = small_digits
    in_forward, checked = threading.Event(), threading.Event()

    class Pausing(torch.nn.Linear):
        def forward(self, x):
            if self.training and not in_forward.is_set():
                in_forward.set()  # the other thread looks now, while this one is under autocast
                checked.wait(10)
            return super().forward(x)

    def fit():
        est = TripletEmbedder(
            backbone=Pausing(64, 8), mixed_precision=True, n_threads=2, **TINY, random_state=0
        )
        return est.fit(X, y)

    before = torch.get_num_threads()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(fit)
        assert in_forward.wait(10)
        seen = (
            torch.is_autocast_enabled("cpu"),
            torch.is_inference_mode_enabled(),
            torch.get_num_threads(),
        )
        checked.set()
        future.result()
    assert seen == (False, False, before)
