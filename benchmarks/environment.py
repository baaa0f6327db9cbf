"""What every benchmark records of its run, and how it sets up a process before timing.

Imported by the scripts of this folder (``peers.py``, ``pairs.py``, ``sweep.py``), which put the
folder on ``sys.path``.
"""

import contextlib
import datetime
import os
import platform
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
        "command": " ".join(["python", f"benchmarks/{script}", *argv]),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "load": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "versions": [f"{k} {v}" for k, v in versions.items()],
    }


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
