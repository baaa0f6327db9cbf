"""Threads: a fit's time with no thread setting, and fits and transforms run concurrently.

``default``: the main job's fits (``TripletEmbedder()`` and ``SiameseEmbedder()`` with their
defaults and ``random_state=0``, on a stratified 75 % of the digits), each timed in a fresh
process, with no thread setting (``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` removed from the
environment) and with ``OMP_NUM_THREADS=1``; on the machine as it is, then while a busy-loop process
started by this script keeps one core busy. The ratio of the two is the figure of merit (a target
of at most 1.3). One more row per estimator fits with ``n_threads`` set to the number of cores,
which is what PyTorch's default thread count made every fit do before ``n_threads`` existed; it is
stopped after ``--old-timeout`` seconds.

``stress``: a list of small jobs on the digits (fits of both estimators with different seeds and
settings, and transforms of one shared fitted estimator), run one after the other, then by a pool
of threads, then by a pool of processes, again and again until ``--duration`` seconds have passed.
It reports the throughput of each against the serial run and the number of results that differ
from the serial run's (there must be none), and checks that the threads left NumPy's and torch's
global random states as they were.

Run from the repository root::

    PYTHONPATH=. python benchmarks/threads.py                      # both
    PYTHONPATH=. python benchmarks/threads.py default --repeats 3
    PYTHONPATH=. python benchmarks/threads.py stress --duration 120
    PYTHONPATH=. python benchmarks/threads.py --output docs/benchmarks_threads.rst

The machine's load average is printed (and written) at the start and the end of each part: on a
shared machine, rerun when it moved.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime, timezone
from multiprocessing import get_context

import numpy as np
from sklearn.exceptions import ConvergenceWarning

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _loadavg():
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


# -- default: one fit in a fresh process ---------------------------------------------------------


def _fit_child(estimator, n_threads):
    """Time one default fit in this process; print a JSON line."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from sklearn_triplet import SiameseEmbedder, TripletEmbedder

    X, y = load_digits(return_X_y=True)
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    Estimator = {"triplet": TripletEmbedder, "siamese": SiameseEmbedder}[estimator]
    threads = []

    def record(estimator, epoch, logs):
        threads.append(torch.get_num_threads())

    # Pay torch's one-time costs (the optimiser's import, the first kernels) before the clock.
    Estimator(max_iter=1, random_state=0).fit(X_train[:200], y_train[:200])
    start = time.perf_counter()
    Estimator(random_state=0, callback=record, n_threads=n_threads).fit(X_train, y_train)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "threads": sorted(set(threads))}))


def _time_fit(estimator, *, omp_one, n_threads=None, timeout=None):
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    if omp_one:
        env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, __file__, "_fit", estimator]
    if n_threads is not None:
        command += ["--n-threads", str(n_threads)]
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout, check=True
        )
    except subprocess.TimeoutExpired:
        return {"seconds": None, "threads": [n_threads]}
    return json.loads(done.stdout.strip().splitlines()[-1])


class BusyCore:
    """A process spinning on one core for at most ``seconds``; stopped on exit."""

    def __init__(self, seconds):
        self.seconds = seconds

    def __enter__(self):
        code = (
            f"import time\nend = time.monotonic() + {self.seconds}\n"
            "while time.monotonic() < end: pass"
        )
        self.process = subprocess.Popen([sys.executable, "-c", code])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()


def bench_default(repeats, old_timeout):
    import joblib

    cores = joblib.cpu_count()
    rows = []
    for load in ("as it is", "one core kept busy"):
        started = _loadavg()
        budget = 2 * repeats * 2 * 60 + 2 * old_timeout + 60
        with BusyCore(budget) if load != "as it is" else _Nothing():
            for estimator in ("triplet", "siamese"):
                times = {False: [], True: []}
                chosen = {}
                for _ in range(repeats):  # interleaved, so a change of load hits both alike
                    for omp_one in (False, True):
                        result = _time_fit(estimator, omp_one=omp_one)
                        times[omp_one].append(result["seconds"])
                        chosen[omp_one] = result["threads"]
                old = _time_fit(estimator, omp_one=False, n_threads=cores, timeout=old_timeout)
                row = {
                    "old_timeout": old_timeout,
                    "load": load,
                    "estimator": estimator,
                    "default": statistics.median(times[False]),
                    "omp1": statistics.median(times[True]),
                    "all_default": times[False],
                    "all_omp1": times[True],
                    "threads": chosen[False],
                    "old": old["seconds"],
                    "cores": cores,
                }
                row["ratio"] = row["default"] / row["omp1"]
                rows.append(row)
                print(json.dumps(row), flush=True)
        for row in rows:
            if row["load"] == load:
                row["loadavg"] = (started, _loadavg())
    return rows


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# -- stress: many concurrent fits and transforms -------------------------------------------------

_TINY = {"n_components": 8, "hidden_layer_sizes": (32,), "max_iter": 3, "batch_size": 64}
_DATA = {}


def _data():
    if not _DATA:
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        _DATA.update(X=X[:600] / 16.0, y=y[:600])
    return _DATA["X"], _DATA["y"]


def _jobs():
    """The job list: (kind, seed). Fits of both estimators, and transforms of the shared one."""
    jobs = []
    for seed in range(8):
        jobs += [("triplet", seed), ("siamese", seed), ("transform", seed), ("transform", seed)]
    return jobs


def _shared_estimator():
    from sklearn_triplet import TripletEmbedder

    if "shared" not in _DATA:
        X, y = _data()
        _DATA["shared"] = TripletEmbedder(**_TINY, random_state=0).fit(X, y)
    return _DATA["shared"]


def _run_job(job):
    from sklearn_triplet import SiameseEmbedder, TripletEmbedder

    kind, seed = job
    X, y = _data()
    if kind == "transform":
        rows = slice(50 * seed, 50 * seed + 300)
        return _shared_estimator().transform(X[rows])
    Estimator = {"triplet": TripletEmbedder, "siamese": SiameseEmbedder}[kind]
    params = {"mining": "hard"} if seed % 2 else {}
    return Estimator(**_TINY, **params, random_state=seed).fit(X, y).transform(X[:100])


def _worker_init():
    # Set once per process, before any job runs: the jobs are short on purpose.
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    _data()
    _shared_estimator()


def bench_stress(duration, n_threads_workers, n_process_workers):
    import torch

    _worker_init()
    jobs = _jobs()
    started = _loadavg()
    expected = [_run_job(job) for job in jobs]  # also warms up this process
    np.random.seed(1)
    torch.manual_seed(1)
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    results = {}
    pools = [
        ("serial", lambda: _InProcess(), 1),
        ("threads", lambda: ThreadPoolExecutor(n_threads_workers), n_threads_workers),
        (
            "processes",
            lambda: ProcessPoolExecutor(
                n_process_workers, mp_context=get_context("spawn"), initializer=_worker_init
            ),
            n_process_workers,
        ),
    ]
    for name, make_pool, workers in pools:
        entry = results[name] = {"rounds": 0, "seconds": 0.0, "mismatches": 0, "workers": workers}
        with make_pool() as pool:
            list(pool.map(_worker_init_job, range(workers)))  # start the workers before the clock
            until = time.perf_counter() + duration / len(pools)
            while entry["rounds"] == 0 or time.perf_counter() < until:
                start = time.perf_counter()
                got = list(pool.map(_run_job, jobs))
                entry["seconds"] += time.perf_counter() - start
                entry["rounds"] += 1
                entry["mismatches"] += sum(
                    not np.array_equal(a, b) for a, b in zip(got, expected, strict=True)
                )
    results["global_rng_untouched"] = bool(
        np.array_equal(np.random.get_state()[1], np_state)
        and torch.equal(torch.get_rng_state(), torch_state)
    )
    for entry in results.values():
        if isinstance(entry, dict):
            entry["jobs_per_second"] = entry["rounds"] * len(jobs) / entry["seconds"]
    results["n_jobs"] = len(jobs)
    results["loadavg"] = (started, _loadavg())
    print(json.dumps(results), flush=True)
    return results


def _worker_init_job(_):
    _worker_init()


class _InProcess:
    """The serial run, with the interface of an executor."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, function, items):
        return map(function, items)


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return names[0]
    except (OSError, IndexError):
        return platform.machine()


# -- report --------------------------------------------------------------------------------------


def _seconds(value, limit):
    return f"> {limit:.0f}" if value is None else f"{value:.1f}"


def _median_and_range(values):
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def write_rst(path, command, default_rows, stress):
    import torch

    lines = [
        ".. Measured with benchmarks/threads.py; regenerate with the command below.",
        "",
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.",
        (
            f"- Machine: {os.cpu_count()} cores ({_cpu_name()}), "
            f"Python {platform.python_version()}, torch {torch.__version__}."
        ),
        "- Command, from the repository root::",
        "",
        f"      {command}",
        "",
    ]
    if default_rows:
        cores = default_rows[0]["cores"]
        lines += [
            "**A default fit with no thread setting.** Wall time of ``fit`` of the main job's",
            "estimators (defaults, ``random_state=0``, 1347 digits), median (and range) of",
            f"{len(default_rows[0]['all_default'])} fresh processes each, the two settings taken",
            "in turn; the load average (``os.getloadavg``) at the start and the end of each half;",
            "the busy core is a spinning process started by the script. *Threads chosen* is the",
            "count the fit used with no setting. The ratio of the medians is the figure of merit",
            "(at most 1.3); beside it, that of the fastest runs, which the load disturbs least.",
            f"``n_threads={cores}``: a fit on PyTorch's default thread count, as every fit ran",
            "before ``n_threads`` existed (one run, stopped when it passed the script's limit).",
            "",
            ".. list-table::",
            "   :header-rows: 1",
            "",
            "   * - load",
            "     - estimator",
            "     - no setting (s)",
            "     - threads chosen",
            "     - ``OMP_NUM_THREADS=1`` (s)",
            "     - ratio",
            "     - ratio of the fastest",
            f"     - ``n_threads={cores}`` (s)",
        ]
        for row in default_rows:
            load = f"{row['load']} (load {row['loadavg'][0]} to {row['loadavg'][1]})"
            lines += [
                f"   * - {load}",
                f"     - {row['estimator']}",
                f"     - {_median_and_range(row['all_default'])}",
                f"     - {', '.join(map(str, row['threads']))}",
                f"     - {_median_and_range(row['all_omp1'])}",
                f"     - {row['ratio']:.2f}",
                f"     - {min(row['all_default']) / min(row['all_omp1']):.2f}",
                f"     - {_seconds(row['old'], row['old_timeout'])}",
            ]
        lines.append("")
    if stress:
        lines += [
            f"**Concurrent fits and transforms.** {stress['n_jobs']} jobs (fits of both",
            "estimators with eight seeds, and transforms of one shared fitted estimator) run",
            "serially, then by",
            "a pool of threads and a pool of processes, round after round; a mismatch is a result",
            (
                "not bit-identical to the serial run's. Load average "
                f"{stress['loadavg'][0]} at the start, {stress['loadavg'][1]} at the end."
            ),
            "",
            ".. list-table::",
            "   :header-rows: 1",
            "",
            "   * - run",
            "     - workers",
            "     - rounds",
            "     - jobs per second",
            "     - against serial",
            "     - mismatches",
        ]
        serial = stress["serial"]["jobs_per_second"]
        for name in ("serial", "threads", "processes"):
            entry = stress[name]
            lines += [
                f"   * - {name}",
                f"     - {entry['workers']}",
                f"     - {entry['rounds']}",
                f"     - {entry['jobs_per_second']:.1f}",
                f"     - {entry['jobs_per_second'] / serial:.2f}x",
                f"     - {entry['mismatches']}",
            ]
        untouched = "untouched" if stress["global_rng_untouched"] else "CHANGED"
        lines += [
            "",
            f"NumPy's and torch's global random states after the threads: {untouched}. Each job is",
            "short (a fit of a few tenths of a second), and on a machine whose cores are already",
            "busy with other work neither pool can beat the serial run: the figure that must hold",
            "everywhere is the count of mismatches.",
            "",
        ]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "part", nargs="?", default="all", choices=["all", "default", "stress", "_fit"]
    )
    parser.add_argument("estimator", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--n-threads", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per setting")
    parser.add_argument("--old-timeout", type=float, default=60.0, help="limit of the old fits (s)")
    parser.add_argument("--duration", type=float, default=90.0, help="time of the stress part (s)")
    parser.add_argument("--thread-workers", type=int, default=8)
    parser.add_argument("--process-workers", type=int, default=2)
    parser.add_argument("--output", help="write the tables as reStructuredText to this file")
    args = parser.parse_args(argv)
    if args.part == "_fit":
        return _fit_child(args.estimator, args.n_threads)
    print(f"load average at the start: {_loadavg()}", flush=True)
    default_rows = stress = None
    if args.part in ("all", "default"):
        default_rows = bench_default(args.repeats, args.old_timeout)
    if args.part in ("all", "stress"):
        stress = bench_stress(args.duration, args.thread_workers, args.process_workers)
    print(f"load average at the end: {_loadavg()}", flush=True)
    if args.output:
        command = "PYTHONPATH=. python benchmarks/threads.py " + " ".join(sys.argv[1:])
        write_rst(args.output, command, default_rows, stress)


if __name__ == "__main__":
    main()
