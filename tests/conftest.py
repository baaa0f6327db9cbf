import pytest
import torch
from threadpoolctl import threadpool_limits

# Two cores: one torch thread per process keeps test runs (and grid searches) from oversubscribing.
torch.set_num_threads(1)
# One BLAS thread too: on a busy machine, multithreaded BLAS makes small
# decompositions (PCA in the tests) tens of times slower.
threadpool_limits(limits=1)

try:
    import matplotlib
except ImportError:  # matplotlib is optional; the plotting tests skip without it
    pass
else:
    matplotlib.use("Agg")


# The configurations the tests train with: they exercise the code, not the quality of the embedding.
# (test_common.py keeps its own, smaller one, for scikit-learn's estimator checks.) They train the
# network on all the data and always use it (do_no_harm=False): a three-epoch network seldom beats
# the raw features, and do_no_harm would then hand the raw features back; test_guard.py tests it.


@pytest.fixture(scope="session")
def fast():
    """A small network and three epochs: seconds per fit on the digits."""
    return dict(
        n_components=8,
        hidden_layer_sizes=(32,),
        max_iter=3,
        batch_size=64,
        random_state=0,
        do_no_harm=False,
    )


@pytest.fixture(scope="session")
def tiny():
    """Smaller still, for tests that fit many times (searches, chunking)."""
    return dict(
        n_components=4,
        hidden_layer_sizes=(16,),
        max_iter=2,
        batch_size=32,
        random_state=0,
        do_no_harm=False,
    )


@pytest.fixture
def digits():
    from sklearn.datasets import load_digits

    return load_digits(return_X_y=True)


@pytest.fixture(scope="session")
def digits_module():
    """The digits, loaded once for the tests that only read them."""
    from sklearn.datasets import load_digits

    return load_digits(return_X_y=True)


@pytest.fixture
def digits_300(digits):
    """The first 300 digits, scaled to [0, 1]."""
    X, y = digits
    return X[:300] / 16.0, y[:300]
