"""One model trained by several processes: what a fit does inside a ``torch.distributed`` group.

When ``fit`` or ``partial_fit`` runs in an initialised process group of two or more processes
(started by ``torchrun``, Ray Train or the user; gloo on the CPU, NCCL on GPUs), the processes
train one model together, and the script that calls ``fit`` is the same as for one process:

- **One sampling plan.** The estimator's generator, and so the weights it initialises, the
  validation split and every batch, is rank 0's on every rank. Every rank draws the same global
  batches of ``batch_size`` samples and embeds its share of each: the contiguous slice
  :meth:`Ranks.share` gives it (``numpy.array_split`` of the batch into ``world_size`` parts).
- **One global batch.** The shares' embeddings are gathered in rank order, so every rank holds the
  embeddings of the whole batch in the order one process would compute them; only the rank's own
  share carries gradients. Mining, the loss and its statistics see the global batch and are the
  same on every rank.
- **The loss split by anchors.** For the triplet loss and batches of at least
  ``_training.SPLIT_LOSS_ROWS`` rows, each rank computes only the terms of its own share's anchors
  against the whole batch (``_kernels.triplet_part_kernel``) and their gradient in every
  embedding of the batch; one all-reduce (:meth:`Ranks.sum_parts`) sums the parts, the divisor,
  the statistics and those gradients, so that every rank holds one process's loss, statistics and
  gradient in the embeddings, and passes its share's back through the network.
- **One gradient.** Each rank's backward pass gives the global loss's gradient through its own
  share; the ranks sum these (one all-reduce of a flat buffer per step), which is the gradient of
  one process on the global batch, and take identical optimiser steps.

Why an explicit all-reduce rather than ``DistributedDataParallel``: DDP averages the gradients of
per-rank losses, while here every rank computes the *same* global loss, whose gradient is the *sum*
of the ranks' shares (DDP would need the loss scaled by ``world_size``); and DDP wraps the module,
whose ``state_dict`` keys, snapshots, best-weight restores, checkpoints and ``module_`` would all
have to unwrap it. The price is that the all-reduce does not overlap the backward pass as DDP's
buckets do; for the networks this package builds, that all-reduce is a small part of a step (see
``benchmarks/distributed_training.py``).

**Each rank reads its shares.** Every rank passes the whole ``X``. Given a 2-D
:class:`numpy.memmap`, a fit in a group keeps it on disk (:class:`SharedRows`): it checks the first
rows for the number of features and the dtype, and the training loop reads, converts to float32 and
checks for finiteness the rows of this rank's share of each batch, and nothing else; the validation
rows are read by rank 0 when it scores them. (``init="pca"`` or ``"lda"`` of the linear backbone,
and a checkpoint's fingerprint of the data, read every row once.) Other inputs are validated whole
on every rank, as in one process.

Validation scores and the ``"time"`` column are rank 0's, broadcast, and a callback that stops
training on any rank stops it on all, so ``history_``, early stopping and the convergence warnings
are identical everywhere. Checkpoints and ``save`` are written by rank 0 alone; every rank reads a
checkpoint to resume, so its path must be on a file system all ranks see.

A collective that fails (a rank died, or did not answer within the process group's timeout) raises
:class:`ProcessGroupError` naming what was under way, rather than hanging.
"""

import contextlib
import hashlib
import os
from typing import overload

import numpy as np
import torch
import torch.distributed as dist
from sklearn.utils import check_consistent_length, column_or_1d

from ._validation import check_array, validate_data

# torch >= 2.10 names it all_gather_single, and deprecates all_gather_into_tensor
_all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


class ProcessGroupError(RuntimeError):
    """Raised when a collective of a fit fails: another rank stopped, or timed out."""


def current():
    """The :class:`Ranks` of the process group this process trains in, or None.

    A process started by ``torchrun`` with two or more processes in all joins their default
    group here if the script has not (NCCL when CUDA is available, each process on the GPU
    ``LOCAL_RANK`` names; gloo otherwise), so a script needs no change. None outside a group,
    and in a group of one process (which trains exactly as without a group).
    """
    if not dist.is_available():
        return None
    if not dist.is_initialized() and _launched_by_torchrun():
        _join_torchrun_group()
    if not dist.is_initialized():
        return None
    if dist.get_world_size() < 2:
        return None
    return Ranks()


def _launched_by_torchrun():
    # torchrun's agent sets TORCHELASTIC_RUN_ID, with WORLD_SIZE, RANK and MASTER_ADDR/PORT.
    return "TORCHELASTIC_RUN_ID" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def _join_torchrun_group():
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")


def is_writer():
    """Whether this process writes the files of a fit: rank 0 of a group, or a lone process."""
    ranks = current()
    return ranks is None or ranks.rank == 0


def write_once(write):
    """Call ``write()`` on rank 0 alone, and return once every rank knows it succeeded.

    Outside a group it is ``write()``. In a group, a failure on rank 0 is re-raised there, and the
    other ranks raise :class:`ProcessGroupError`; a rank reading the file afterwards finds it.
    """
    ranks = current()
    if ranks is None:
        return write()
    failure = None
    if ranks.rank == 0:
        try:
            write()
        except Exception as exc:  # the others must learn of it, not wait for a file
            failure = exc
    if ranks.any(failure is not None, what="writing a file on rank 0"):
        if failure is not None:
            raise failure
        raise ProcessGroupError(
            f"Rank 0 failed to write the file (its error is in rank 0's output); rank "
            f"{ranks.rank} stops too."
        )
    return None


class Ranks:
    """This process's place in the default process group, and the collectives a fit uses.

    Collective tensors live on the CPU with gloo and on this process's current CUDA device with
    NCCL.
    """

    def __init__(self):
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        backend = dist.get_backend()
        self.device = (
            torch.device("cuda", torch.cuda.current_device())
            if backend == "nccl"
            else torch.device("cpu")
        )

    @property
    def writer(self):
        """Whether this rank writes files and prints progress (rank 0)."""
        return self.rank == 0

    # -- the batches -------------------------------------------------------------------------------

    def sizes(self, n_rows):
        """The share of every rank in a batch of ``n_rows``: ``numpy.array_split``'s sizes."""
        base, extra = divmod(int(n_rows), self.world_size)
        return [base + (r < extra) for r in range(self.world_size)]

    def share(self, indices):
        """``(this rank's indices, every rank's share size)`` of a global batch's ``indices``.

        The shares are contiguous slices of the batch in rank order, so gathering them in rank
        order gives back the global batch.
        """
        sizes = self.sizes(len(indices))
        start = sum(sizes[: self.rank])
        return indices[start : start + sizes[self.rank]], sizes

    def gather(self, local, sizes):
        """The embeddings of the global batch: every rank's share, in rank order.

        Parameters
        ----------
        local : torch.Tensor of shape (sizes[rank], n_components)
            This rank's embeddings, attached to its graph.
        sizes : list of int
            Every rank's share size (from :meth:`share`).

        Returns
        -------
        embeddings : torch.Tensor of shape (sum(sizes), n_components)
            The other ranks' shares are constants; this rank's share is ``local`` itself, so the
            backward pass sends the loss's gradient through it alone.
        """
        n_max = max(sizes)
        padded = local.detach()
        if local.shape[0] < n_max:
            padded = local.new_zeros((n_max, *local.shape[1:]))
            padded[: local.shape[0]] = local.detach()
        gathered = local.new_empty((self.world_size * n_max, *local.shape[1:]))
        with self._collective("gathering the batch's embeddings"):
            _all_gather_single(gathered, padded.contiguous())
        parts = [gathered[r * n_max : r * n_max + n] for r, n in enumerate(sizes)]
        parts[self.rank] = local
        return torch.cat(parts)

    def rows(self, sizes):
        """This rank's share of a batch as a slice of its rows (``sizes`` from :meth:`share`)."""
        start = sum(sizes[: self.rank])
        return slice(start, start + sizes[self.rank])

    def sum_parts(self, gradient, part):
        """Sum the ranks' parts of a batch's loss: one all-reduce.

        Parameters
        ----------
        gradient : torch.Tensor of shape (B, n_components)
            The gradient of this rank's ``part.total`` in every embedding of the batch.
        part : sklearn_triplet._kernels.PartialLoss
            The terms of this rank's anchors, the number they are divided by, their counts and
            negative distances.

        Returns
        -------
        gradient : torch.Tensor of shape (B, n_components)
            The gradient of the batch's loss, ``sum(total) / max(sum(denominator), 1)``.
        loss : torch.Tensor of shape ()
        counts : int64 torch.Tensor or None
        negative_distances : tuple of two torch.Tensor of shape (), or None
        """
        # float64: the counts stay exact (below 2**53), and float32 gradients sum as they would
        scalars = [part.total.detach().reshape(1), part.denominator.reshape(1)]
        if part.counts is not None:
            scalars.append(part.counts)
        if part.negative_distances is not None:
            scalars += [t.reshape(1) for t in part.negative_distances]
        flat = torch.cat(  # to the group's device first: a device may have no float64 (MPS)
            [gradient.reshape(-1).to(self.device).double()]
            + [t.to(self.device).double() for t in scalars]
        )
        with self._collective("summing the parts of the batch's loss"):
            dist.all_reduce(flat)
        n = gradient.numel()
        total, denominator = flat[n], flat[n + 1].clamp_min(1)

        def back(tensor, like):  # the dtype first: a device may have no float64 (MPS)
            return tensor.to(like.dtype).to(like.device)

        loss = back(total / denominator, gradient)
        gradient = back(flat[:n] / denominator, gradient).view_as(gradient)
        counts = negatives = None
        end = n + 2
        if part.counts is not None:
            counts = back(flat[end : end + len(part.counts)].round(), part.counts)
            end += len(part.counts)
        if part.negative_distances is not None:
            distance_sum, count = part.negative_distances
            negatives = (back(flat[end], distance_sum), back(flat[end + 1].round(), count))
        return gradient, loss, counts, negatives

    def sum_gradients(self, module):
        """Sum the gradients of ``module``'s trainable parameters over the ranks (one all-reduce).

        A parameter without a gradient on this rank counts as zero, so every rank steps the same.
        """
        parameters = [p for p in module.parameters() if p.requires_grad]
        if not parameters:
            return
        flat = torch.cat(
            [
                (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                for p in parameters
            ]
        )
        with self._collective("summing the gradients"):
            dist.all_reduce(flat)
        start = 0
        for p in parameters:  # views of the summed buffer, new each step
            n = p.numel()
            p.grad = flat[start : start + n].view_as(p)
            start += n

    # -- agreeing ----------------------------------------------------------------------------------

    def broadcast_module(self, module, *, parameters=True):
        """Give every rank rank 0's weights (a user's module may start differently) and buffers.

        With ``parameters=False``, the buffers alone: the running statistics of batch
        normalisation, which each rank updates from its own share of the batches, as under
        ``DistributedDataParallel``.
        """
        tensors = [*module.parameters()] if parameters else []
        tensors += [*module.buffers()]
        with self._collective("broadcasting rank 0's weights"), torch.no_grad():
            for tensor in tensors:
                dist.broadcast(tensor.data, src=0)

    def agree_generator(self, rng):
        """Set ``rng`` (a NumPy Generator) to rank 0's state, so every rank draws the same plan."""
        state = [rng.bit_generator.state]
        with self._collective("sharing rank 0's random generator"):
            dist.broadcast_object_list(state, src=0, device=self.device)
        rng.bit_generator.state = state[0]

    def from_writer(self, compute):
        """Rank 0's ``float(compute())``, on every rank (the others do not call it)."""
        value = float(compute()) if self.rank == 0 else 0.0
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        with self._collective("sharing rank 0's validation score and time"):
            dist.broadcast(tensor, src=0)
        return float(tensor.item())

    def any(self, flag, *, what="agreeing to stop"):
        """Whether ``flag`` is true on any rank."""
        tensor = torch.tensor([float(bool(flag))], device=self.device)
        with self._collective(what):
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item() > 0)

    def check_same(self, name, digest, fix):
        """Raise ValueError on every rank when the string ``digest`` of ``name`` differs."""
        key = hashlib.blake2b(digest.encode(), digest_size=7).digest()
        tensor = torch.tensor([int.from_bytes(key, "little")], device=self.device)
        gathered = [torch.empty_like(tensor) for _ in range(self.world_size)]
        with self._collective(f"comparing {name} across the ranks"):
            dist.all_gather(gathered, tensor)
        values = [int(t.item()) for t in gathered]
        differing = [r for r, v in enumerate(values) if v != values[0]]
        if differing:
            raise ValueError(
                f"Every rank of a process group must fit on the same {name}; on rank(s) "
                f"{differing} it differs from rank 0's. {fix}"
            )

    def barrier(self, what):
        """Wait for every rank."""
        with self._collective(what):
            dist.barrier()

    @contextlib.contextmanager
    def _collective(self, what):
        try:
            yield
        except RuntimeError as exc:  # torch.distributed.DistError and gloo's errors
            raise ProcessGroupError(
                f"Rank {self.rank} of {self.world_size} stopped while {what}: another process of "
                "the group stopped, or did not answer within the process group's timeout (the "
                "timeout of torch.distributed.init_process_group). Rerun the same command to "
                f"resume from the last checkpoint, when the fit has one. ({exc})"
            ) from exc


def reads_shares(X):
    """Whether a fit reads ``X`` a share at a time: a 2-D memory map, inside a process group."""
    return isinstance(X, np.memmap) and X.ndim == 2 and current() is not None


class SharedRows:
    """Rows of a 2-D array that are read (as float32, checked finite) only when asked for.

    Indexing with a NumPy index array selects rows without reading them (the validation split);
    with a tensor, it reads them and returns a float32 tensor (the training loop's share of a
    batch); with a slice, a float32 array (embedding the validation rows in batches).

    Parameters
    ----------
    data : ndarray of shape (n_samples, n_features)
        A :class:`numpy.memmap`, or any array that NumPy indexes by rows.
    rows : ndarray of int, default=None
        The rows of ``data`` that this object holds, in order; None for all of them.
    """

    device = torch.device("cpu")

    def __init__(self, data, rows=None):
        self.data, self.rows = data, rows

    @classmethod
    def validated(cls, estimator, X, y, *, reset):
        """``(SharedRows(X), y)`` after the checks a fit makes before reading any other row:
        the first rows' dtype and number of features, and ``y`` whole."""
        validate_data(estimator, X[: min(2, X.shape[0])], reset=reset, dtype=np.float32)
        y = column_or_1d(y, warn=True)
        check_consistent_length(X, y)
        return cls(X), y

    @property
    def shape(self):
        n = self.data.shape[0] if self.rows is None else self.rows.shape[0]
        return (n, self.data.shape[1])

    def __len__(self):
        return self.shape[0]

    def source(self):
        """The underlying array (for a fingerprint, when this holds all of its rows)."""
        return self.data if self.rows is None else self.data[self.rows]

    def _select(self, indices):
        return indices if self.rows is None else self.rows[indices]

    def _read(self, rows):
        return check_array(self.data[rows], dtype=np.float32, input_name="X")

    @overload
    def __getitem__(self, indices: torch.Tensor) -> torch.Tensor: ...
    @overload
    def __getitem__(self, indices: slice) -> np.ndarray: ...
    @overload
    def __getitem__(self, indices: np.ndarray) -> "SharedRows": ...

    def __getitem__(self, indices):
        if isinstance(indices, slice):
            return self._read(self._select(np.arange(self.shape[0])[indices]))
        if isinstance(indices, torch.Tensor):
            return torch.from_numpy(self._read(self._select(indices.cpu().numpy())))
        return SharedRows(self.data, self._select(np.asarray(indices)))

    def __array__(self, dtype=None, copy=None):
        rows: np.ndarray = self[:]
        return rows.astype(dtype or np.float32, copy=False)
