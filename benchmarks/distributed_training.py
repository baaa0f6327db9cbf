"""One model fitted by one and by two processes (one thread each), and on paper by 8 and 64 GPUs.

The task: 20,000 training samples of 64 features in 20 classes (``make_classification``, 5,000
more held out). The models: ``TripletEmbedder(max_iter=20, random_state=0)`` with its other
defaults (``default``: an MLP 64-256-32, batches of 128), with ``batch_size=1024``
(``default-batch-1024``), with ``hidden_layer_sizes=(1024, 1024)`` (``wide``), and the wide one
with ``batch_size=1024`` (``wide-batch-1024``). Each fit is timed in a fresh process, or in two
started by ``torchrun``, every process on one PyTorch thread. Reported: the fit's wall time, its
samples per second (samples x epochs / wall time), the speed-up of two processes over one, the CPU
time of each process and the KNN accuracy (k=5) of the held-out samples in the embedding of the
training ones.

Phases: the CPU time of each part of a training step (``PhaseTimer``: the backbone's forward and
backward pass on the rank's share, the loss and its mining on the whole batch or on the rank's
anchors, each collective, the optimiser, the rest of the loop), in a fit of ``PHASE_EPOCHS`` epochs
by one process and by two (each rank's): what the ranks split, what each repeats, and what the
collectives add. CPU time counts every thread of a process (gloo's too) and survives a busy
machine better than wall time.

On paper: what one step moves between the ranks (the gathered embeddings, the parts of a split
loss and the ring all-reduce of the gradients) against its compute, measured here on one thread as
the backbone's forward and backward pass and the loss (what the ranks split) and the rest of a
step (sampling, the optimiser: repeated on every rank), and the speed-up that predicts for 2
processes here and for 8 and 64 GPUs under the assumptions in ``GPU``.

Run from the repository root::

    # all (about 4 minutes on two free cores): runs, phases, profile, report; the figures of
    # docs/distributed.rst, also written to benchmarks/results/distributed_training.json
    PYTHONPATH=. python benchmarks/distributed_training.py
    PYTHONPATH=. python benchmarks/distributed_training.py --models wide  # one model
    # one run by hand: one process, then two
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/distributed_training.py run --model default
    PYTHONPATH=. OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 \\
        benchmarks/distributed_training.py run --model default

The fit script (``run``) is the same for one process and for two: ``fit`` joins torchrun's process
group itself. On a shared machine, the load average printed at the start and the end of each run
says whether the two cores were free; a speed-up measured on busy cores means little.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

N_TRAIN, N_TEST, N_FEATURES, N_CLASSES, EPOCHS = 20_000, 5_000, 64, 20, 20
MODELS = {
    "default": {},
    "default-batch-1024": {"batch_size": 1024},
    "wide": {"hidden_layer_sizes": (1024, 1024)},
    "wide-batch-1024": {"hidden_layer_sizes": (1024, 1024), "batch_size": 1024},
}
# What ``all`` measures by default: about 4 minutes on two free cores.
DEFAULT_MODELS = ("default", "default-batch-1024", "wide-batch-1024")
# The epochs of the fit whose steps ``phases`` times (the costs of a step do not change with them).
PHASE_EPOCHS = 3

# On paper: a GPU, the links between GPUs, and a ResNet-50-sized backbone on 224 x 224 images.
GPU = {
    "flops": 100e12,  # achieved in mixed precision on an H100-class GPU
    "step_overhead_s": 1e-3,  # kernel launches of the loss and optimiser, Python, per step
    # 8 GPUs: one node, NVLink; 64 GPUs: 8 nodes, 400 Gb/s InfiniBand per GPU (NCCL bus bandwidth)
    "bandwidth": {8: 150e9, 64: 40e9},
    "latency_s": {8: 15e-6, 64: 50e-6},  # per collective
}
RESNET50 = {"parameters": 25.6e6, "flops_per_sample": 3 * 4.1e9, "n_components": 128}


def _loadavg():
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def data():
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=N_TRAIN + N_TEST,
        n_features=N_FEATURES,
        n_informative=32,
        n_classes=N_CLASSES,
        n_clusters_per_class=2,
        class_sep=1.0,
        random_state=0,
    )
    X = X.astype(np.float32)
    return X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:], y[N_TRAIN:]


def estimator(model, **params):
    from sklearn_triplet import TripletEmbedder

    # n_threads=1: one thread in every process, whatever the environment says
    defaults = {"max_iter": EPOCHS, "random_state": 0, "n_threads": 1}
    return TripletEmbedder(**{**defaults, **MODELS[model], **params})


# -- run: one fit, in one process or in each of torchrun's -----------------------------------------


def _quick():
    """A check that the script runs: 2,000 samples, 2 epochs (``--quick``)."""
    global N_TRAIN, N_TEST, EPOCHS
    N_TRAIN, N_TEST, EPOCHS = 2_000, 500, 2


def run(model, output, *, phases=False):
    """Fit once; rank 0 (or the lone process) writes the figures as JSON to ``output``.

    With ``phases``, a fit of ``PHASE_EPOCHS`` epochs whose training steps are timed by part
    (:class:`PhaseTimer`), every rank's parts written.
    """
    import torch
    import torch.distributed as dist
    from environment import warm_up

    from sklearn_triplet import _distributed

    torch.set_num_threads(1)
    warm_up()
    X, y, X_test, y_test = data()
    ranks = _distributed.current()  # joins torchrun's group, as fit would
    world_size = 1 if ranks is None else ranks.world_size
    timer = PhaseTimer() if phases else None
    est = estimator(model, **({"max_iter": PHASE_EPOCHS} if phases else {}))
    if ranks is not None:
        dist.barrier()  # start the clocks together
    load_before = _loadavg()
    cpu, wall = time.process_time(), time.perf_counter()
    est.fit(X, y)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if timer is not None:
        timer.remove()
    per_rank = [(cpu, None if timer is None else timer.per_step(est))]
    if ranks is not None:
        gathered = [None] * world_size
        dist.all_gather_object(gathered, per_rank[0])
        per_rank = gathered
    if ranks is None or ranks.rank == 0:
        _write_result(
            model,
            est,
            X,
            y,
            X_test,
            y_test,
            world_size,
            wall,
            per_rank,
            load_before,
            output,
            phases,
        )
    if ranks is not None:  # leave the group together: a rank that exits inside it aborts
        dist.barrier()
        dist.destroy_process_group()


def _write_result(
    model, est, X, y, X_test, y_test, world_size, wall, per_rank, load_before, output, phases
):
    """Rank 0's part of :func:`run`: the figures, as JSON to ``output`` and to the console."""
    from sklearn.neighbors import KNeighborsClassifier

    result = {
        "model": model,
        "processes": world_size,
        "wall_s": wall,
        "samples_per_s": N_TRAIN * est.n_iter_ / wall,
        "cpu_s_per_process": [c for c, _ in per_rank],
        "epochs": est.n_iter_,
        "final_loss": est.history_[-1]["loss"],
        "load_before": load_before,
        "load_after": _loadavg(),
    }
    if phases:
        result["phases_ms_per_step"] = [p for _, p in per_rank]
    else:
        knn = KNeighborsClassifier(5).fit(est.transform(X), y)
        result["knn_accuracy"] = float(knn.score(est.transform(X_test), y_test))
    with open(output, "w") as f:
        json.dump(result, f)
    print(json.dumps(result), flush=True)


class PhaseTimer:
    """CPU time (``time.process_time``: every thread of the process, gloo's included) spent in
    each part of the training steps of a fit, by wrapping the functions that do them.

    A part nested in another (a collective inside the gathering of the embeddings) counts for
    itself alone; ``"rest of the step"`` is the training loop's time outside every part (Python,
    sampling the batches, the learning-rate schedule, the checks of an epoch's end).
    """

    def __init__(self):
        import torch

        from sklearn_triplet import _class_labels, _distributed, _training

        self.cpu, self._stack, self._undo = {}, [], []
        self._wrap(_training, "train", "training loop")
        self._wrap(_training, "embed_batch", "backbone forward (own share)")
        self._wrap(_training, "_split_loss_backward", "backbone forward (own share)")
        self._wrap(_class_labels.ClassLabelEmbedder, "_batch_loss", "loss + mining (whole batch)")
        self._wrap(torch.autograd, "grad", "loss backward (own anchors)")
        self._wrap(torch.Tensor, "backward", "backward")
        self._wrap(torch.optim.Adam, "step", "optimizer")
        self._wrap(_class_labels, "map_at_r", "validation score")
        self._wrap(_distributed.Ranks, "gather", "all-gather of the embeddings")
        self._wrap(_distributed.Ranks, "sum_parts", "all-reduce of the loss's parts")
        self._wrap(_distributed.Ranks, "sum_gradients", "all-reduce of the gradients")
        self._wrap(_distributed.Ranks, "broadcast_module", "collectives of an epoch's end")
        self._wrap(_distributed.Ranks, "from_writer", "collectives of an epoch's end")
        self._wrap(_distributed.Ranks, "any", "collectives of an epoch's end")
        anchor_loss = _class_labels.ClassLabelEmbedder._anchor_loss
        timer = self

        def timed_anchor_loss(estimator):
            loss = anchor_loss(estimator)
            return None if loss is None else timer._timed(loss, "loss + mining (own anchors)")

        self._set(_class_labels.ClassLabelEmbedder, "_anchor_loss", timed_anchor_loss)

    def _set(self, owner, name, value):
        self._undo.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, value)

    def _wrap(self, owner, name, label):
        self._set(owner, name, self._timed(getattr(owner, name), label))

    def _timed(self, function, label):
        def timed(*args, **kwargs):
            start = time.process_time()
            self._stack.append(0.0)
            try:
                return function(*args, **kwargs)
            finally:
                spent = time.process_time() - start
                inner = self._stack.pop()
                self.cpu[label] = self.cpu.get(label, 0.0) + spent - inner
                if self._stack:
                    self._stack[-1] += spent

        return timed

    def remove(self):
        for owner, name, value in reversed(self._undo):
            setattr(owner, name, value)

    def per_step(self, est):
        """Milliseconds of CPU per training step of each part, and of the whole step."""
        n_steps = est.n_iter_ * -(-N_TRAIN // est.batch_size)
        parts = {k: v * 1e3 / n_steps for k, v in self.cpu.items()}
        parts["rest of the step"] = parts.pop("training loop")
        parts["whole step"] = sum(parts.values())
        return parts


# -- profile: the costs of one step on one thread --------------------------------------------------


def profile(model, repeats=20):
    """Seconds per step of a whole training step, of the backbone's forward and backward pass on
    the global batch and of the loss's, on one thread; the parameters and the batch size."""
    import torch
    from environment import warm_up

    from sklearn_triplet import _training

    torch.set_num_threads(1)
    warm_up()
    X, y, _, _ = data()
    est = estimator(model, max_iter=1)
    timer = PhaseTimer()
    est.fit(X, y)
    timer.remove()
    step_s = timer.per_step(est)["whole step"] / 1e3  # the training loop's, per step
    module = est.module_.train()
    X_t = torch.from_numpy(X)
    batch = torch.as_tensor(np.random.default_rng(0).choice(N_TRAIN, est.batch_size, False))
    start = time.process_time()
    for _ in range(repeats):
        module.zero_grad()
        _training.embed_batch(module, X_t, batch, "cpu").sum().backward()
    backbone_s = (time.process_time() - start) / repeats
    embeddings = _training.embed_batch(module, X_t, batch, "cpu").detach().requires_grad_()
    labels = torch.from_numpy(y)[batch]
    start = time.process_time()
    for _ in range(repeats):
        loss = est._batch_loss(embeddings, labels, taxonomy=False, spread=False).loss
        loss.backward()
    loss_s = (time.process_time() - start) / repeats
    n_parameters = sum(p.numel() for p in module.parameters())
    return {
        "model": model,
        "step_s": step_s,
        "backbone_s": backbone_s,
        "loss_s": loss_s,
        "parameters": n_parameters,
        "batch_size": est.batch_size,
        "n_components": est.n_components_,
    }


def _splits(batch_size):
    from sklearn_triplet import _training

    return batch_size >= _training.SPLIT_LOSS_ROWS


def bytes_per_step(*, batch_size, n_components, parameters, n_ranks, dtype_bytes=4):
    """Bytes each rank sends per step: a ring all-gather of the global batch's embeddings
    ((n - 1) / n of them), a ring all-reduce of the gradients (2 (n - 1) / n of them) and, when
    the ranks split the loss (batches of ``SPLIT_LOSS_ROWS`` rows or more), a ring all-reduce of
    the gradient in the batch's embeddings (in float64)."""
    share = (n_ranks - 1) / n_ranks
    floats = batch_size * n_components + 2 * parameters
    if _splits(batch_size):
        floats += 2 * 2 * batch_size * n_components
    return floats * dtype_bytes * share


def predicted_speedup(*, parallel_s, serial_s, n_bytes, bandwidth, latency_s, n_ranks, n_calls):
    """One process's step (``parallel_s + serial_s``) over that of ``n_ranks``:
    ``parallel_s / n + serial_s + n_calls latency + bytes / bandwidth`` (``n_calls`` collectives a
    step, the all-reduce not overlapped with the backward pass)."""
    step = parallel_s / n_ranks + serial_s + n_calls * latency_s + n_bytes / bandwidth
    return (parallel_s + serial_s) / step


# A gloo collective between two processes of this machine (the phases of a step, measured).
CPU_COLLECTIVE_S = 0.3e-3


def on_paper(profiles, phases=()):
    """Rows of the paper analysis: the measured models on 2 CPU processes (their step's parts
    measured in one process by ``phases``, else by ``profile``), and the measured MLPs and a
    ResNet-50-sized backbone on 8 and 64 GPUs."""
    alone = {r["model"]: r["phases_ms_per_step"][0] for r in phases if r["processes"] == 1}
    rows = []
    for p in profiles:
        split = _splits(p["batch_size"])
        backbone, loss, step = p["backbone_s"], p["loss_s"], p["step_s"]
        if p["model"] in alone:
            parts = {name: ms / 1e3 for name, ms in alone[p["model"]].items()}
            backbone = parts["backbone forward (own share)"] + parts["backward"]
            loss = parts["loss + mining (whole batch)"]
            step = parts["whole step"]
        # what the ranks split: the backbone, and the loss when it is split by anchors
        parallel = backbone + (loss if split else 0.0)
        serial = step - parallel
        n_bytes = bytes_per_step(
            batch_size=p["batch_size"],
            n_components=p["n_components"],
            parameters=p["parameters"],
            n_ranks=2,
        )
        rows.append(
            {
                "case": f"{p['model']} MLP, 2 CPU processes (measured costs, loopback 1 GB/s)",
                "parameters": p["parameters"],
                "bytes_per_step": n_bytes,
                "compute_s": parallel,
                "serial_s": serial,
                "speedup": predicted_speedup(
                    parallel_s=parallel,
                    serial_s=serial,
                    n_bytes=n_bytes,
                    bandwidth=1e9,
                    latency_s=CPU_COLLECTIVE_S,
                    n_ranks=2,
                    n_calls=3 if split else 2,
                ),
            }
        )
    cases = [
        (f"{p['model']} MLP", p["parameters"], 6 * p["parameters"], p["n_components"])
        for p in profiles
    ]
    cases.append(
        (
            "ResNet-50-sized CNN",
            RESNET50["parameters"],
            RESNET50["flops_per_sample"],
            RESNET50["n_components"],
        )
    )
    for name, parameters, flops_per_sample, n_components in cases:
        for batch_size in (128, 4096):
            compute = flops_per_sample * batch_size / GPU["flops"]
            for n in (8, 64):
                n_bytes = bytes_per_step(
                    batch_size=batch_size,
                    n_components=n_components,
                    parameters=parameters,
                    n_ranks=n,
                )
                rows.append(
                    {
                        "case": f"{name}, batch {batch_size}, {n} GPUs",
                        "parameters": parameters,
                        "bytes_per_step": n_bytes,
                        "compute_s": compute,
                        "serial_s": GPU["step_overhead_s"],
                        "speedup": predicted_speedup(
                            parallel_s=compute,
                            serial_s=GPU["step_overhead_s"],
                            n_bytes=n_bytes,
                            bandwidth=GPU["bandwidth"][n],
                            latency_s=GPU["latency_s"][n],
                            n_ranks=n,
                            n_calls=3 if _splits(batch_size) else 2,
                        ),
                    }
                )
    return rows


# -- all: both runs, the profile and the report ----------------------------------------------------


def _launch(model, processes, output, *, phases=False):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    script = os.path.abspath(__file__)
    command = [sys.executable]
    if processes > 1:
        command += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command += [script, "phases" if phases else "run", "--model", model, "--output", output]
    if N_TRAIN < 20_000:
        command.append("--quick")
    subprocess.run(command, env=env, check=True, timeout=1800)
    with open(output) as f:
        return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("command", nargs="?", default="all", choices=["all", "run", "phases"])
    parser.add_argument("--model", default="default", choices=sorted(MODELS))
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--output", default=None)
    parser.add_argument("--quick", action="store_true", help="2,000 samples, 2 epochs")
    args = parser.parse_args()
    if args.quick:
        _quick()
    if args.command in ("run", "phases"):
        run(args.model, args.output or os.devnull, phases=args.command == "phases")
        return
    from environment import metadata

    meta = metadata("distributed_training.py", sys.argv[1:])
    results = {"metadata": meta, "runs": [], "phases": [], "profiles": []}
    scratch = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    for model in args.models.split(","):
        for phases, key in ((False, "runs"), (True, "phases")):
            for processes in (1, 2):
                path = os.path.join(scratch, f".distributed_training-{model}-{processes}.json")
                results[key].append(_launch(model, processes, path, phases=phases))
                os.remove(path)
        results["profiles"].append(profile(model))
    results["paper"] = on_paper(results["profiles"], results["phases"])
    output = args.output or os.path.join(
        scratch, "distributed_training-quick.json" if args.quick else "distributed_training.json"
    )
    with open(output, "w") as f:
        json.dump(results, f, indent=1)
    report(results)


def report(results):
    meta = results["metadata"]
    print(f"\n{meta['date']}, {meta['cpu']}, {meta['cores']} cores, load {meta['load']}")
    print(f"command: {meta['command']}")
    print(
        f"{'model':19} {'procs':>5} {'wall s':>8} {'samples/s':>10} {'speed-up':>9} "
        f"{'CPU s per process':>20} {'CPU ratio':>9} {'KNN acc':>8}  load before / after"
    )
    # CPU ratio: one process's CPU time over the busiest rank's. Waiting in a collective costs no
    # CPU, so on busy cores it bounds the speed-up that free cores would give from above.
    alone = {}
    for r in results["runs"]:
        if r["processes"] == 1:
            alone[r["model"]] = r
        speedup = alone[r["model"]]["wall_s"] / r["wall_s"]
        cpu_ratio = alone[r["model"]]["cpu_s_per_process"][0] / max(r["cpu_s_per_process"])
        cpus = ", ".join(f"{c:.1f}" for c in r["cpu_s_per_process"])
        print(
            f"{r['model']:19} {r['processes']:>5} {r['wall_s']:8.1f} {r['samples_per_s']:10.0f} "
            f"{speedup:9.2f} {cpus:>20} {cpu_ratio:9.2f} {r['knn_accuracy']:8.3f}  "
            f"{r['load_before']} / {r['load_after']}"
        )
    print(
        f"\nCPU ms per training step, by part ({PHASE_EPOCHS}-epoch fits; 2 processes: rank 0, 1):"
    )
    by_model = {}
    for r in results.get("phases", []):
        by_model.setdefault(r["model"], []).extend(r["phases_ms_per_step"])
    for model, columns in by_model.items():
        names = [n for n in columns[-1] if n != "whole step"] + [
            n for n in columns[0] if n not in columns[-1]
        ]
        print(f"  {model}:{'1 process':>37} {'2 processes':>21}")
        for name in sorted(set(names), key=lambda n: -max(c.get(n, 0.0) for c in columns)):
            cells = "".join(f"{c[name]:11.3f}" if name in c else f"{'-':>11}" for c in columns)
            print(f"    {name:32} {cells}")
        cells = "".join(f"{c['whole step']:11.3f}" for c in columns)
        print(f"    {'whole step':32} {cells}")
    print("\nper step, one thread:")
    for p in results["profiles"]:
        print(
            f"  {p['model']}: {p['parameters']} parameters, whole step {p['step_s'] * 1e3:.2f} ms, "
            f"backbone forward + backward {p['backbone_s'] * 1e3:.2f} ms, "
            f"loss forward + backward {p['loss_s'] * 1e3:.2f} ms"
        )
    print("\non paper:")
    for row in results["paper"]:
        print(
            f"  {row['case']}: {row['bytes_per_step'] / 1e6:.3f} MB/step, compute "
            f"{row['compute_s'] * 1e3:.3f} ms, serial {row['serial_s'] * 1e3:.2f} ms -> "
            f"speed-up {row['speedup']:.2f}"
        )


if __name__ == "__main__":
    main()
