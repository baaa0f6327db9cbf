"""Scaling out: one grid search run three ways, and the memory of a chunked transform.

``search``: the same GridSearchCV over TripletEmbedder on the digits, run with n_jobs=1, with
joblib's loky backend and n_jobs=2, and on a local Dask cluster of two single-threaded worker
processes (with Dask's default worker environment, then with ``MALLOC_TRIM_THRESHOLD_`` unset); the
wall times, and whether all runs found the same scores.

``memory``: a 2,000,000 x 64 matrix written under /tmp as a float64 and a float32 ``.npy`` file,
opened as memory maps and embedded by a fitted TripletEmbedder, each run in a fresh process: the
peak resident memory (``VmHWM``, which counts the pages of the mapped file that were read), and the
peak anonymous memory (what the process allocated, sampled every 2 ms), against the file size.
Modes: ``chunked`` (``transform`` as it is), ``unchunked`` (the former ``transform``:
``validate_data`` on the whole input, then the batched forward pass) and ``dask``
(:func:`sklearn_triplet.chunking.transform_dask` over blocks read from the file by each task,
stored into a float32 memory map, so that the output is not held either). The files are deleted at
the end.

Run from the repository root::

    PYTHONPATH=. python benchmarks/scaling.py            # both
    PYTHONPATH=. python benchmarks/scaling.py search
    PYTHONPATH=. python benchmarks/scaling.py memory --n-samples 2000000

Needs ``dask[distributed]`` besides the package; Linux (it reads ``/proc/self/status``).
"""

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

# Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its workers; the search runs with and without.
_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
N_FEATURES = 64  # as the digits, so an embedder fitted on them embeds the big matrix
SEARCH = dict(
    estimator=dict(max_iter=5, batch_size=64, random_state=0),
    grid={"margin": [0.1, 0.3], "n_components": [16, 32]},
    cv=3,
)


# -- search ---------------------------------------------------------------------------------------


def _search():
    from sklearn.model_selection import GridSearchCV

    from sklearn_triplet import TripletEmbedder

    return GridSearchCV(
        TripletEmbedder(**SEARCH["estimator"]), SEARCH["grid"], cv=SEARCH["cv"], n_jobs=-1
    )


def bench_search():
    import dask
    import joblib
    import torch
    from distributed import Client, LocalCluster
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    n_candidates = len(SEARCH["grid"]["margin"]) * len(SEARCH["grid"]["n_components"])
    print(
        f"GridSearchCV(TripletEmbedder({SEARCH['estimator']}), {SEARCH['grid']}, "
        f"cv={SEARCH['cv']}) on the digits {X.shape}: {n_candidates * SEARCH['cv']} fits + 1 refit"
    )
    rows = []

    def run(label, n_jobs, backend=None, torch_threads=None):
        search = _search().set_params(n_jobs=n_jobs, estimator__n_threads=torch_threads)
        start = time.perf_counter()
        if backend is None:
            search.fit(X, y)
        else:
            with joblib.parallel_config(backend=backend):
                search.fit(X, y)
        wall = time.perf_counter() - start
        rows.append((label, wall, search.cv_results_["mean_test_score"]))
        print(f"  {label:<62s} {wall:7.1f} s   best {search.best_params_}", flush=True)

    n_cores = os.cpu_count()
    run(f"n_jobs=1, torch {n_cores} threads", 1, torch_threads=n_cores)
    run("n_jobs=1, torch 1 thread", 1, torch_threads=1)
    run("loky, n_jobs=2 (joblib gives each worker 1 thread)", 2, backend="loky")
    threads = {}
    for label, config in [
        ("dask defaults", {}),
        ("dask, MALLOC_TRIM_THRESHOLD_ unset", {_TRIM: None}),
    ]:
        environ = dict(os.environ)  # the nanny writes its variables into this process's environment
        start = time.perf_counter()
        with (
            dask.config.set(config),
            LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                env={"OMP_NUM_THREADS": "1"},
            ) as cluster,
            Client(cluster) as client,
        ):
            print(f"  (Dask cluster of 2 workers started in {time.perf_counter() - start:.1f} s)")
            run(f"{label}, 2 workers x 1 thread, torch 1 thread", -1, backend="dask")
            threads[label] = sorted(client.run(torch.get_num_threads).values())
        os.environ.clear()
        os.environ.update(environ)
    print(f"  torch threads on the Dask workers: {threads}")
    same = all(np.array_equal(rows[1][2], r[2]) for r in rows[1:])
    print(f"  same mean_test_score with 1 torch thread everywhere (n_jobs=1, loky, dask): {same}")
    return rows


# -- memory ----------------------------------------------------------------------------------------


def _write_npy(path, n_samples, dtype, block=250_000):
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n_samples, N_FEATURES))
    rng = np.random.default_rng(0)
    for start in range(0, n_samples, block):
        stop = min(start + block, n_samples)
        mm[start:stop] = rng.uniform(0, 16, size=(stop - start, N_FEATURES))  # digits' pixel range
    mm.flush()
    del mm


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _read_rows(path, start, stop):
    return np.load(path, mmap_mode="r")[start:stop]


def _transform_child(mode, data_path, model_path):
    """Run in a fresh process: embed the memory map, report peaks as one JSON line."""
    import torch

    from sklearn_triplet import chunking

    torch.set_num_threads(1)
    with open(model_path, "rb") as f:
        est = pickle.load(f)
    X = np.load(data_path, mmap_mode="r")
    if mode == "dask":
        import dask
        import dask.array as da
    baseline_rss, baseline_anon = _status_kib("VmRSS"), _status_kib("RssAnon")
    peak_anon = [baseline_anon]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak_anon[0] = max(peak_anon[0], _status_kib("RssAnon"))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    out_path = None
    if mode == "dask":
        out_path = data_path + ".out.npy"
        out = np.lib.format.open_memmap(
            out_path, mode="w+", dtype=np.float32, shape=(X.shape[0], est.n_components_)
        )
        # Not da.from_array(X): it copies a memory map whole into memory. Each task reads its rows.
        step = 65_536
        darr = da.concatenate(
            [
                da.from_delayed(
                    dask.delayed(_read_rows)(data_path, first, min(first + step, X.shape[0])),
                    shape=(min(first + step, X.shape[0]) - first, X.shape[1]),
                    dtype=X.dtype,
                )
                for first in range(0, X.shape[0], step)
            ]
        )
        with dask.config.set(scheduler="threads", num_workers=1):
            da.store(chunking.transform_dask(est, darr), out, lock=False)
        out.flush()
        checksum = float(out[::1000].sum())
        del out
    elif mode == "unchunked":  # transform as it was before chunking
        from sklearn.utils.validation import validate_data

        from sklearn_triplet import _inference

        Xv = validate_data(est, X, reset=False, dtype=np.float32)
        emb = _inference.embed(
            est.module_, Xv, batch_size=_inference.INFERENCE_BATCH_SIZE, device=est.device_
        )
        checksum = float(emb[::1000].sum())
    else:
        checksum = float(est.transform(X)[::1000].sum())
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    print(
        json.dumps(
            dict(
                mode=mode,
                wall_s=wall,
                baseline_rss_mib=baseline_rss / 1024,
                baseline_anon_mib=baseline_anon / 1024,
                peak_rss_mib=_status_kib("VmHWM") / 1024,
                peak_anon_mib=peak_anon[0] / 1024,
                checksum=checksum,
            )
        )
    )
    if out_path is not None:
        os.remove(out_path)


def bench_memory(n_samples):
    import torch
    from sklearn.datasets import load_digits

    from sklearn_triplet import TripletEmbedder

    torch.set_num_threads(1)
    X, y = load_digits(return_X_y=True)
    est = TripletEmbedder(max_iter=2, random_state=0).fit(X, y)
    print(
        f"transform of a {n_samples:,} x {N_FEATURES} memory map by TripletEmbedder(n_components="
        f"{est.n_components_}); output {n_samples * est.n_components_ * 4 / 2**20:.0f} MiB "
        "float32; each run in a fresh process"
    )
    results = []
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="sklearn_triplet_scaling_") as tmp:
        model_path = os.path.join(tmp, "model.pkl")
        with open(model_path, "wb") as f:
            pickle.dump(est, f)
        for dtype in ["float64", "float32"]:
            data_path = os.path.join(tmp, f"X_{dtype}.npy")
            _write_npy(data_path, n_samples, dtype)
            size = os.path.getsize(data_path) / 2**20
            print(f"  {dtype} file: {size:.0f} MiB")
            checksums = set()
            for mode in ["chunked", "unchunked", "dask"]:
                proc = subprocess.run(
                    [sys.executable, __file__, "_transform", mode, data_path, model_path],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                row.update(dtype=dtype, file_mib=size)
                results.append(row)
                checksums.add(round(row["checksum"], 2))
                print(
                    f"    {mode:<10s} {row['wall_s']:6.1f} s   "
                    f"peak RSS {row['peak_rss_mib']:6.0f} MiB   "
                    f"peak anonymous {row['peak_anon_mib']:6.0f} MiB (before transform: RSS "
                    f"{row['baseline_rss_mib']:.0f}, anonymous {row['baseline_anon_mib']:.0f})",
                    flush=True,
                )
            print(f"    same embeddings (checksum) in the three modes: {len(checksums) == 1}")
            os.remove(data_path)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "what", nargs="?", default="all", choices=["all", "search", "memory", "_transform"]
    )
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--n-samples", type=int, default=2_000_000)
    options = parser.parse_args(argv)
    if options.what == "_transform":
        _transform_child(*options.args)
        return
    print(time.strftime("%Y-%m-%d %H:%M"), os.uname().nodename, f"{os.cpu_count()} cores")
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    if options.what in ("all", "search"):
        bench_search()
    if options.what in ("all", "memory"):
        bench_memory(options.n_samples)
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
