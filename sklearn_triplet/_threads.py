"""The process-wide state a fit or transform touches, set per thread or under a lock.

Two things in PyTorch belong to the process rather than to a fit:

- **Intra-op threads.** :func:`torch.set_num_threads` sets OpenMP's thread count (and MKL's) for the
  calling OS thread only; it also records the value as the default of threads that have not yet
  used PyTorch. :func:`limit_threads` sets it for the duration of a fit or transform and restores
  the caller's value afterwards, so concurrent fits in other threads keep their own counts.
  ``n_threads=None`` is decided by :func:`choose_n_threads` from the work per operation and the
  cores the process may use, never from the momentary load: the thread count can change the
  rounding of some operations (convolutions), and a fit seeded with ``random_state`` must give the
  same result however busy the machine is.
- **The global random generator.** The built-in backbones draw their initial weights from a
  :class:`torch.Generator` owned by the fit; only user code (a backbone factory, a module that
  draws in training, a callable loss) can draw from torch's global generator.
  :func:`seeded_global_generator` seeds it for such code and restores it afterwards, under a lock
  so that two fits never interleave their seeding.

Everything else a fit or transform changes (grad and inference mode, autocast, scikit-learn's
configuration, NumPy's error state) is already thread-local in those libraries.
"""

import contextlib
import os
import threading

import joblib
import torch
from torch import nn

# Work per thread, in floating-point operations, below which an operation is not worth splitting
# across threads: about half a millisecond of one core. A smaller operation (the default MLP at a
# batch of 128 does about 3 MFLOP per layer) runs faster on one thread than on several, and on a
# busy machine many times faster, because every parallel region waits for its slowest thread.
_FLOPS_PER_THREAD = 5e7

# Environment variables that cap PyTorch's default thread count, set by users, by joblib's loky
# workers (to about cpu_count // n_jobs) and by Dask's nanny (to 1).
_THREAD_LIMIT_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

_SET_THREADS_LOCK = threading.Lock()
_GLOBAL_GENERATOR_LOCK = threading.RLock()

# Layers whose forward pass is a matrix product of the weight with each output position (the
# estimators pass those of the backbone registry, sklearn_triplet.backbones.WEIGHT_LAYERS).
_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def allowed_threads():
    """The most threads this process should use: its cores, within the limits it was given.

    The cores are those of the process's CPU affinity and cgroup quota (:func:`joblib.cpu_count`),
    capped by ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` when they are set.

    Returns
    -------
    n_threads : int
        At least 1.
    """
    n_threads = joblib.cpu_count()
    for name in _THREAD_LIMIT_VARIABLES:
        value = os.environ.get(name, "").split(",")[0].strip()
        if value.isdigit() and int(value) >= 1:
            n_threads = min(n_threads, int(value))
    return max(1, n_threads)


def choose_n_threads(n_threads, *, flops_per_row, n_rows, device):
    """The intra-op thread count of a fit or transform.

    Parameters
    ----------
    n_threads : int or None
        The estimator's ``n_threads``. An int is returned as it is.
    flops_per_row : float
        Mean forward-pass floating-point operations of one weight layer for one row
        (:func:`probe`); 0 when unknown.
    n_rows : int
        Rows per forward pass (the batch size).
    device : torch.device
        Where the network runs; off the CPU, the CPU only feeds it and one thread is enough.

    Returns
    -------
    n_threads : int
        ``max(1, flops_per_row * n_rows // 5e7)`` threads, at most :func:`allowed_threads`: one
        thread until an operation gives each thread about half a millisecond of work.
    """
    if n_threads is not None:
        return int(n_threads)
    if device.type != "cpu":
        return 1
    by_work = int(flops_per_row * n_rows // _FLOPS_PER_THREAD)
    return max(1, min(by_work, allowed_threads()))


@contextlib.contextmanager
def limit_threads(n_threads):
    """Run the body with ``n_threads`` intra-op threads in the calling thread, then restore.

    PyTorch keeps the count per OS thread, so other threads are not affected; the caller's count
    is restored on exit, exceptions included.

    Parameters
    ----------
    n_threads : int
        Threads for the body.
    """
    previous = torch.get_num_threads()
    if n_threads == previous:
        yield
        return
    _set_num_threads(n_threads)
    try:
        yield
    finally:
        _set_num_threads(previous)


def _set_num_threads(n_threads):
    # The count itself is per thread, but the call also resizes a process-wide pool (used by
    # QNNPACK's quantised kernels) and writes the default of threads that have not used PyTorch.
    with _SET_THREADS_LOCK:
        torch.set_num_threads(n_threads)


def probe(module, n_features, device, weight_layers=_WEIGHT_LAYERS):
    """Run ``module`` on two rows of zeros and measure the work of its weight layers.

    Forward hooks on the module's own :class:`~torch.nn.Linear` and convolution layers (not global
    hooks, so other threads are not affected) record their output sizes.

    Parameters
    ----------
    module : torch.nn.Module
        A network not yet shared with other threads, on ``device``.
    n_features : int
        Input width.
    device : torch.device
    weight_layers : tuple of type, default=(Linear, Conv1d, Conv2d, Conv3d)
        The layers whose work is measured.

    Returns
    -------
    output : torch.Tensor
        The module's output for the two rows, in eval mode under inference mode.
    flops_per_row : float
        Mean forward-pass floating-point operations of one weight layer for one row; 0 when the
        module has no such layer.
    """
    flops = []

    def count(layer, inputs, output):
        # Each output entry is a dot product of one slice of the weight with the input.
        flops.append(2 * layer.weight[0].numel() * output.numel() / output.shape[0])

    layers = [m for m in module.modules() if isinstance(m, weight_layers)]
    handles = [layer.register_forward_hook(count) for layer in layers]
    try:
        with torch.inference_mode():
            output = module.eval()(torch.zeros(2, n_features, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return output, (sum(flops) / len(flops) if flops else 0.0)


@contextlib.contextmanager
def seeded_global_generator(seed, device):
    """Seed torch's global generator for user code, and restore it afterwards.

    Held under a process-wide lock, so the seeding of one fit never interleaves with another's:
    fits whose user code runs under it run that code one at a time.

    Parameters
    ----------
    seed : int
        Seed of the CPU generator (and of ``device``'s when it is a CUDA device).
    device : torch.device
        The fit's device.
    """
    devices = []
    if device.type == "cuda":
        devices = [torch.cuda.current_device() if device.index is None else device.index]
    with _GLOBAL_GENERATOR_LOCK, torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)  # torch.manual_seed would reseed every GPU
        for index in devices:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield
