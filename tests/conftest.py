import torch
from threadpoolctl import threadpool_limits

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
