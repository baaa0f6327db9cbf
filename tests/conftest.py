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


@pytest.fixture
def digits():
    from sklearn.datasets import load_digits

    return load_digits(return_X_y=True)
