"""One process of the distributed tests (tests/test_distributed.py starts two of them).

``python tests/distributed_worker.py MODE OUT_DIR`` (MODE: step-and-fit, die or resume), under
``torchrun`` (the script never sets up a process group: fit joins torchrun's), or with ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` and ``TIMEOUT`` set (the script then sets up
the group itself, with that timeout in seconds). Each rank writes what it saw to files in
``OUT_DIR``; the tests compare them.
"""

import os
import sys


def data():
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=1200,
        n_features=16,
        n_informative=10,
        n_classes=6,
        n_clusters_per_class=1,
        class_sep=1.5,
        random_state=0,
    )
    return X.astype("float32"), y


def estimator(**params):
    from sklearn_triplet import TripletEmbedder

    defaults = dict(
        n_components=8, hidden_layer_sizes=(32,), batch_size=96, max_iter=6, random_state=0
    )
    return TripletEmbedder(**{**defaults, **params})


def step(out, rank):
    """One step on one global batch: the loss, its statistics and the gradients, in the group and
    in this process alone (the reference)."""
    import numpy as np
    import torch

    from sklearn_triplet import _distributed, _training

    X, y = data()
    est = estimator(max_iter=1)
    est._initialise(X.shape[1])  # the weights a fit starts from (seeded: the same on every rank)
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    batch = np.random.default_rng(1).choice(len(X), size=101, replace=False)  # uneven shares
    results = {}
    # group: every rank computes the whole loss; split: each rank its share's anchors (the
    # training loop's way for the triplet loss); alone: this process on the whole batch
    ranks = _distributed.current()
    for name in ["group", "split", "alone"]:
        module = est.module_
        module.zero_grad()
        indices, labels = torch.as_tensor(batch), y_t[batch]
        if name == "split":
            loss, counts, spread, _ = _training._split_loss_backward(
                module, X_t, indices, labels, "cpu", None, ranks, None, est._anchor_loss(),
                taxonomy=True, spread=True,
            )  # fmt: skip
        else:
            group = ranks if name == "group" else None
            embeddings = _training.embed_batch(module, X_t, indices, "cpu", None, group)
            loss, counts, spread = est._batch_loss(embeddings, labels, taxonomy=True, spread=True)
            loss.backward()
        if name != "alone":
            ranks.sum_gradients(module)
        results[f"{name}_loss"] = loss.detach().numpy()
        results[f"{name}_counts"] = counts.detach().numpy()
        results[f"{name}_spread"] = np.array([float(t) for t in spread])
        for i, p in enumerate(module.parameters()):
            results[f"{name}_grad{i}"] = p.grad.detach().numpy().copy()
    np.savez(os.path.join(out, f"step-{rank}.npz"), **results)


def fit(out, rank):
    """A short fit with early stopping; every rank saves the model to the same path and reads it.

    Every batch's loss split by anchors between the ranks (``SPLIT_LOSS_ROWS`` lowered from 256
    to the batch of 96 rows).
    """
    import numpy as np

    from sklearn_triplet import _format, _training, load

    _training.SPLIT_LOSS_ROWS = 0

    written = []
    write_file = _format.write_file
    _format.write_file = lambda *args: (written.append(rank), write_file(*args))
    X, y = data()
    est = estimator(early_stopping=True, n_iter_no_change=2).fit(X, y)
    path = os.path.join(out, "model.safetensors")
    est.save(path)
    loaded = load(path)  # on every rank, right after save returns
    loaded_embedding = loaded.transform(X)
    loaded.partial_fit(X, y)  # one more epoch, in the group too
    np.savez(
        os.path.join(out, f"fit-{rank}.npz"),
        weights=np.concatenate([p.detach().numpy().ravel() for p in est.module_.parameters()]),
        embedding=est.transform(X),
        loaded_embedding=loaded_embedding,
        partial_fit_weights=np.concatenate(
            [p.detach().numpy().ravel() for p in loaded.module_.parameters()]
        ),
        history=np.array(
            [[row["loss"], row["validation_score"], row["time"]] for row in est.history_]
        ),
        n_iter=est.n_iter_,
        written=np.array(written),
    )


def memory_map(out, rank):
    """Fits on X as a float64 memory map, and on X in memory: the rows each read of the map took."""
    import numpy as np

    from sklearn_triplet import _distributed

    reads = []
    read = _distributed.SharedRows._read
    _distributed.SharedRows._read = lambda self, rows: (reads.append(len(rows)), read(self, rows))[
        1
    ]
    X, y = data()
    path = os.path.join(out, f"X-{rank}.npy")
    np.save(path, X.astype(np.float64))
    # do_no_harm's check embeds every training row once more; the rows read here are training's
    params = dict(max_iter=2, early_stopping=True, do_no_harm=False)
    on_disk = estimator(**params).fit(np.load(path, mmap_mode="r"), y)
    in_memory = estimator(**params).fit(X, y)
    np.savez(
        os.path.join(out, f"memmap-{rank}.npz"),
        reads=np.array(reads),
        on_disk=np.concatenate([p.detach().numpy().ravel() for p in on_disk.module_.parameters()]),
        in_memory=np.concatenate(
            [p.detach().numpy().ravel() for p in in_memory.module_.parameters()]
        ),
    )


def checkpointed(out, rank, *, die_at=None):
    """A fit with a checkpoint every epoch; rank 1 dies at epoch ``die_at`` when given."""
    import numpy as np

    from sklearn_triplet._distributed import ProcessGroupError

    def callback(est, epoch, logs):
        if rank == 1 and epoch == die_at:
            os._exit(17)  # as if killed: no exception, no clean-up

    X, y = data()
    est = estimator(max_iter=8, checkpoint=os.path.join(out, "fit.ckpt"), callback=callback)
    try:
        est.fit(X, y)
    except ProcessGroupError as exc:
        with open(os.path.join(out, f"error-{rank}.txt"), "w") as f:
            f.write(str(exc))
        # Leave at once: tearing down a gloo group whose peer died (destroy_process_group, or
        # the interpreter's own exit) may abort the process ("terminate called without an active
        # exception"), which would hide this exit code.
        os._exit(3)
    np.savez(
        os.path.join(out, f"resumed-{rank}.npz"),
        epochs=np.array([row["epoch"] for row in est.history_]),
        weights=np.concatenate([p.detach().numpy().ravel() for p in est.module_.parameters()]),
    )


def main():
    mode, out = sys.argv[1], sys.argv[2]
    import torch

    torch.set_num_threads(1)
    if "TORCHELASTIC_RUN_ID" not in os.environ:  # started by the test: set the group up here
        from datetime import timedelta

        import torch.distributed as dist

        dist.init_process_group("gloo", timeout=timedelta(seconds=float(os.environ["TIMEOUT"])))
    rank = int(os.environ["RANK"])
    if mode == "step-and-fit":
        from sklearn_triplet import _distributed

        _distributed.current()  # joins torchrun's group, as fit would
        step(out, rank)
        fit(out, rank)
        memory_map(out, rank)
    elif mode == "die":
        checkpointed(out, rank, die_at=3)
    elif mode == "resume":
        checkpointed(out, rank)
    # Leave the group explicitly once both ranks are done: a gloo group still alive at interpreter
    # exit can abort the process (SIGABRT, "terminate called without an active exception").
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
