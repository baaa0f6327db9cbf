"""What every benchmark records of its run, and how it sets up a process before timing.

Imported by the scripts of this folder (``peers.py``, ``pairs.py``, ``sweep.py``), which put the
folder on ``sys.path``.
"""

import contextlib
import datetime
import functools
import inspect
import os
import platform
import shlex
import subprocess

import numpy as np
import sklearn
import torch

import sklearn_triplet


def metadata(script, argv):
    """Date, command, processor, cores, load average and versions of a run of ``script``."""

    def version(module):
        try:
            return __import__(module).__version__
        except ImportError:
            return "not installed"

    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in lscpu.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        cpu = platform.processor() or platform.machine()
    versions = {
        "sklearn-triplet": sklearn_triplet.__version__,
        "Python": platform.python_version(),
        "torch": torch.__version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "pytorch-metric-learning": version("pytorch_metric_learning"),
        "metric-learn": version("metric_learn"),
    }
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "command": shlex.join(["python", f"benchmarks/{script}", *argv]),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "load": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "versions": [f"{k} {v}" for k, v in versions.items()],
    }


def merge_saved_results(documents):
    """The ``results`` (``{task: {contestant: runs}}``) of saved runs, merged in order: a later
    document's runs of a contestant on a task replace the earlier ones."""
    merged = {}
    for document in documents:
        for task, by_contestant in document["results"].items():
            merged.setdefault(task, {}).update(by_contestant)
    return merged


def warm_up():
    """Pay the one-time costs of a process before any clock starts.

    The first optimiser built in a process imports ``torch._dynamo`` (seconds); without this, the
    first network contestant would be charged for it.
    """
    weights = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([weights])
    weights.sum().backward()
    optimizer.step()


@contextlib.contextmanager
def torch_threads(n):
    """PyTorch's intra-op thread count set to ``n`` in this thread, restored on exit."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def metric_learn():
    """metric-learn, its validation calls renamed for scikit-learn >= 1.8 when needed (once).

    metric-learn 0.7.0 calls scikit-learn's ``check_array`` / ``check_X_y`` with
    ``force_all_finite``, which scikit-learn 1.8 renamed ``ensure_all_finite``; on such versions the
    two functions that ``metric_learn._util`` imported are wrapped so that they rename the keyword.
    The benchmark scripts (and nothing else) use metric-learn through this.

    Raises
    ------
    ImportError
        When metric-learn is not installed.
    """
    import metric_learn
    import metric_learn._util as util

    for name in ("check_array", "check_X_y"):
        function = getattr(util, name)
        if "force_all_finite" not in inspect.signature(function).parameters:
            setattr(util, name, _renamed(function))
    return metric_learn


def _renamed(function):
    """``function`` taking ``force_all_finite=`` as its new name ``ensure_all_finite=``."""

    @functools.wraps(function)
    def wrapper(*args, force_all_finite=True, **kwargs):
        return function(*args, ensure_all_finite=force_all_finite, **kwargs)

    wrapper.__signature__ = inspect.signature(wrapper, follow_wrapped=False)  # marks it wrapped
    return wrapper
