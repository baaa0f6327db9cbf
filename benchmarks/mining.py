"""Time and peak memory of the losses' mining modes, beside the torch.cdist floor.

For each batch size B, each case runs forward and backward on a (B, 128)
float32 batch of balanced classes, in a fresh Python process of its own:

- ``cdist``: ``torch.cdist(x, x).sum().backward()``, the distance matrix alone,
  the floor every mode pays;
- ``triplet all / hard / semi-hard`` and ``contrastive all / hard``: the loss
  with ``return_stats=True``, as the estimators call it;
- ``triplet semi-hard, loss only``: ``return_stats=False``;
- ``pml semi-hard``: pytorch-metric-learning's
  ``TripletMarginMiner(type_of_triplets="semihard")`` + ``TripletMarginLoss``,
  when that package is installed, up to ``--pml-max-batch`` (its miner builds
  B x B x B masks; larger batches are recorded as skipped rather than risk
  exhausting the memory of a shared machine; 512 with ``--quick``).

Time is the fastest of ``--repeats`` calls after one warm-up call, both as
wall-clock time and as the CPU time of the process (which other processes
running on the machine disturb less). Peak memory is the growth of the
process's peak resident set size (``ru_maxrss``) over its resident size just
before the first call: it counts everything the case allocated on the CPU,
torch, NumPy or otherwise.

Run from the repository root::

    python benchmarks/mining.py --quick
    python benchmarks/mining.py --sizes 256 512 1024 2048 4096 8192 --rst
"""

import argparse
import datetime
import multiprocessing
import os
import platform
import resource
import sys
import time
from pathlib import Path

SIZES = (256, 512, 1024, 2048, 4096, 8192)
QUICK_SIZES = (256, 512, 1024)
CASES = (
    "cdist",
    "triplet all",
    "triplet hard",
    "triplet semi-hard",
    "triplet semi-hard, loss only",
    "contrastive all",
    "contrastive hard",
    "pml semi-hard",
)
MARGIN = 0.2


def make_loss(case):
    """The function of ``(x, labels)`` to time for a case."""
    import torch

    from sklearn_triplet.losses import contrastive_loss, triplet_loss

    if case == "cdist":
        return lambda x, labels: torch.cdist(x, x).sum()
    if case == "pml semi-hard":
        from pytorch_metric_learning import losses, miners

        miner = miners.TripletMarginMiner(margin=MARGIN, type_of_triplets="semihard")
        loss = losses.TripletMarginLoss(margin=MARGIN)
        return lambda x, labels: loss(x, labels, miner(x, labels))
    name, _, rest = case.partition(" ")
    mining, _, only = rest.partition(", ")
    function = triplet_loss if name == "triplet" else contrastive_loss
    margin = MARGIN if name == "triplet" else 1.0

    def run(x, labels):
        out = function(x, labels, margin=margin, mining=mining, return_stats=not only)
        return out if only else out[0]

    return run


def current_rss_kib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def run_case(case, size, args):
    """Measure one case in this process; return a dict."""
    import torch

    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(size, args.dim, generator=generator)
    labels = (torch.arange(size) % args.classes)[torch.randperm(size, generator=generator)]
    x.requires_grad_()
    loss_function = make_loss(case)
    baseline = current_rss_kib()
    wall, cpu = [], []
    for repeat in range(args.repeats + 1):
        x.grad = None
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        loss_function(x, labels).backward()
        if repeat:  # the first call is a warm-up
            wall.append(time.perf_counter() - wall_start)
            cpu.append(time.process_time() - cpu_start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline
    return {"wall_s": min(wall), "cpu_s": min(cpu), "peak_mib": peak / 1024}


def measure(case, size, args):
    """Run one case in a new process; a dict, or a dict with an ``error``.

    The process is forked from this one, which has imported torch but run
    nothing, so that each case starts from the same memory and pays no import.
    """
    if case == "pml semi-hard":
        try:
            import pytorch_metric_learning  # noqa: F401
        except ImportError:
            return {"error": "not installed"}
        if size > args.pml_max_batch:
            return {"error": "skipped"}
    receiver, sender = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.get_context("fork").Process(
        target=_child, args=(case, size, args, sender)
    )
    process.start()
    sender.close()
    result = receiver.recv() if receiver.poll(None) else None
    process.join()
    if result is None:  # killed, by the kernel's out-of-memory killer for one
        return {"error": "OOM" if process.exitcode == -9 else f"exit {process.exitcode}"}
    return result


def _child(case, size, args, sender):
    try:
        sender.send(run_case(case, size, args))
    except (MemoryError, RuntimeError) as error:
        message = str(error)
        sender.send({"error": "OOM" if "memory" in message.lower() else message[:60]})


def cell_time(result, floor):
    if "error" in result:
        return result["error"]
    ratio = result["cpu_s"] / floor["cpu_s"] if "cpu_s" in floor else float("nan")
    return f"{1000 * result['wall_s']:.0f} / {1000 * result['cpu_s']:.0f} ({ratio:.1f}x)"


def cell_memory(result, floor):
    if "error" in result:
        return result["error"]
    return f"{result['peak_mib']:.0f}"


def table(rows, header, rst):
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    if rst:
        rule = "  ".join("=" * width for width in widths)
        lines = [rule, "  ".join(h.ljust(w) for h, w in zip(header, widths)), rule]
        lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
        return "\n".join([*lines, rule])
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |" for row in rows
    ]
    return "\n".join(lines)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 256, 512, 1024 only")
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--classes", type=int, default=32)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pml-max-batch", type=int, default=1024)
    parser.add_argument("--rst", action="store_true", help="reStructuredText tables")
    args = parser.parse_args()
    if args.quick:
        args.pml_max_batch = min(args.pml_max_batch, 512)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import torch

    import sklearn_triplet.losses  # noqa: F401  (imported once, before the forks)

    sizes = QUICK_SIZES if args.quick else args.sizes
    load_before = os.getloadavg()
    started = datetime.datetime.now().astimezone()
    results = {}
    for size in sizes:
        for case in CASES:
            results[case, size] = measure(case, size, args)
            print(f"B={size:5d}  {case:30s} {results[case, size]}", file=sys.stderr)
    load_after = os.getloadavg()

    header = ["case", *[f"B={size}" for size in sizes]]
    time_rows = [
        [case, *[cell_time(results[case, s], results["cdist", s]) for s in sizes]] for case in CASES
    ]
    memory_rows = [
        [case, *[cell_memory(results[case, s], results["cdist", s]) for s in sizes]]
        for case in CASES
    ]
    print(
        f"Date: {started:%Y-%m-%d %H:%M %Z}; machine: {cpu_model()}, "
        f"{os.cpu_count()} logical CPUs; torch {torch.__version__}, "
        f"{args.threads} thread(s); d={args.dim}, {args.classes} balanced classes; "
        f"load average (1, 5, 15 min) {', '.join(f'{v:.2f}' for v in load_before)} before, "
        f"{', '.join(f'{v:.2f}' for v in load_after)} after."
    )
    print(f"Command: python {' '.join(sys.argv)}")
    print()
    print(
        "Forward + backward, milliseconds: wall / CPU (CPU time over the cdist floor's), "
        f"fastest of {args.repeats} after a warm-up:"
    )
    print()
    print(table(time_rows, header, args.rst))
    print()
    print("Peak memory, MiB (growth of the peak resident set size during the calls):")
    print()
    print(table(memory_rows, header, args.rst))


if __name__ == "__main__":
    main()
