"""Save and load time, and file size, of each way to persist a fitted embedder.

A ``TripletEmbedder`` with an MLP of about 200,000 parameters (64 features -> 512 -> 320 -> 32) is
fitted for one epoch on synthetic data, so that it also holds the optimiser's state (Adam's two
moments per weight), as any fitted estimator does. Then, for each format, into a temporary
directory:

- ``pickle``: :func:`pickle.dump` / :func:`pickle.load` of the estimator;
- ``joblib``: :func:`joblib.dump` / :func:`joblib.load`;
- ``save / load``: :meth:`TripletEmbedder.save` / :func:`sklearn_triplet.load` (atomic write with
  fsync, SHA-256 checksum);
- ``ONNX``: :meth:`TripletEmbedder.export_onnx` / an ``onnxruntime.InferenceSession`` (the network
  only, for serving; when onnx, onnxscript and onnxruntime are installed).

Each time is the median of ``--repeats`` calls after one warm-up call, on one torch thread, in
milliseconds of wall-clock time; each load is checked to give the same transform. Prints a
reStructuredText table with the date, the machine and the command, or writes it with ``--output``.

    python benchmarks/persistence.py               # 20 repeats (ONNX: 3), about a minute
    python benchmarks/persistence.py --output docs/benchmarks_persistence.rst   # the docs' table
"""

import argparse
import datetime
import os
import pickle
import platform
import statistics
import sys
import tempfile
import time

import joblib
import numpy as np
import torch

import sklearn_triplet
from sklearn_triplet import TripletEmbedder, load


def make_model(seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(20, size=2000)
    X = rng.normal(size=(20, 64))[y] + rng.normal(size=(2000, 64))
    model = TripletEmbedder(
        n_components=32, hidden_layer_sizes=(512, 320), max_iter=1, device="cpu", random_state=seed
    )
    return model.fit(X, y), X.astype(np.float32)


def formats(directory, onnx=True):
    """Name -> (save(model) -> path, load(path) -> callable embedding X)."""
    pickle_path = os.path.join(directory, "model.pkl")
    joblib_path = os.path.join(directory, "model.joblib")
    save_path = os.path.join(directory, "model.safetensors")
    onnx_path = os.path.join(directory, "model.onnx")

    def pickle_save(model):
        with open(pickle_path, "wb") as f:
            pickle.dump(model, f)
        return pickle_path

    def pickle_load(path):
        with open(path, "rb") as f:
            return pickle.load(f).transform

    def onnx_load(path):
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        return lambda X: session.run(None, {"X": X})[0]

    out = {
        "pickle": (pickle_save, pickle_load),
        "joblib": (
            lambda model: joblib.dump(model, joblib_path)[0],
            lambda path: joblib.load(path).transform,
        ),
        "save / load": (
            lambda model: model.save(save_path) or save_path,
            lambda path: load(path).transform,
        ),
    }
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        onnx = False
    if not onnx:
        return out
    out["ONNX (network only)"] = (
        lambda model: model.export_onnx(onnx_path) or onnx_path,
        onnx_load,
    )
    return out


def median_ms(function, repeats):
    times = []
    for repeat in range(repeats + 1):
        start = time.perf_counter()
        result = function()
        if repeat:  # the first call is a warm-up
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), result


def run(repeats, onnx_repeats, onnx=True):
    """Rows of (format, save ms, load ms, file bytes), and the number of parameters."""
    model, X = make_model()
    expected = model.transform(X)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for name, (save, load_) in formats(directory, onnx).items():
            n = onnx_repeats if name.startswith("ONNX") else repeats
            save_ms, path = median_ms(lambda: save(model), n)  # noqa: B023
            load_ms, embed = median_ms(lambda: load_(path), n)  # noqa: B023
            np.testing.assert_allclose(embed(X), expected, rtol=1e-5, atol=1e-6)
            rows.append((name, save_ms, load_ms, os.path.getsize(path)))
    n_parameters = sum(p.numel() for p in model.module_.parameters())
    return rows, n_parameters


def rst(rows, n_parameters, command):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line)
    except (OSError, StopIteration):
        pass
    try:
        load_average = f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    except OSError:
        load_average = ""
    lines = [
        (
            f"``{command}`` on {datetime.date.today().isoformat()} ({cpu}{load_average}, one torch "
            f"thread; sklearn-triplet {sklearn_triplet.__version__}, torch {torch.__version__}, "
            f"Python {platform.python_version()}). An MLP of {n_parameters:,} parameters, fitted, "
            "with its optimiser state; median wall-clock times:"
        ),
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - format",
        "     - save (ms)",
        "     - load (ms)",
        "     - file size (KiB)",
    ]
    for name, save_ms, load_ms, size in rows:
        lines += [
            f"   * - {name}",
            f"     - {save_ms:.1f}",
            f"     - {load_ms:.1f}",
            f"     - {size / 1024:,.0f}",
        ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per format")
    parser.add_argument("--onnx-repeats", type=int, default=3, help="timed calls for ONNX")
    parser.add_argument("--output", help="write the table to this file instead of printing it")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows, n_parameters = run(args.repeats, args.onnx_repeats)
    command = " ".join(["python benchmarks/persistence.py", *(argv or sys.argv[1:])])
    table = rst(rows, n_parameters, command)
    if args.output:
        with open(args.output, "w") as f:
            f.write(table + "\n")
    else:
        print(table)


if __name__ == "__main__":
    main()
