"""Checkpoints: the whole state of a fit, written atomically every few epochs, and resumed from.

A checkpoint is a file in the format of ``save`` (so :func:`sklearn_triplet.load` reads it as the
estimator at that epoch) whose document has one more entry, ``"checkpoint"``:

- ``"identity"``: what the fit was: the estimator's class and its parameters when the fit began
  (those in ``FREE_PARAMETERS`` left out), a fingerprint of ``X`` and ``y``, the epoch it started
  from and a fingerprint of the weights it started from (for a warm start);
- ``"start_rng"``: the state of the estimator's NumPy generator when the fit began, so that a
  resumed fit draws the same validation split and torch seed even with ``random_state=None``;
- ``"loop"``: early stopping's best score, best weights and count of epochs without improvement;
- ``"torch_rng"``: torch's generator state on the CPU (and on the fit's CUDA device), which only
  user code draws from (dropout, for one).

The fitted attributes hold the live state of the fit: weights, optimiser, ``history_``,
``n_iter_`` and the generator the batches are drawn from.

A fit resumes from a checkpoint whose identity equals its own, and refuses, naming what differs,
one that belongs to another fit. It deletes the file when it ends without an error, so that a
checkpoint on disk always means an interrupted fit.
"""

import hashlib
import os
from typing import Any

import numpy as np
import torch

from ._format import Decoder, Encoder, document_of, read_file, write_file

# Parameters that do not change what a fit computes, or that a resumed fit may change: leaving
# them out of a checkpoint's identity lets a fit be resumed on another device, with more epochs,
# another callback or less output (where a fit starts from is part of the identity, so warm_start
# need not be). One that save() cannot store by name (a lambda callback) is written as None.
FREE_PARAMETERS = frozenset(
    {
        "callback",
        "checkpoint",
        "checkpoint_every",
        "device",
        "max_iter",
        "n_threads",
        "verbose",
        "warm_start",
    }
)


# The fitted attributes a resumed fit takes from its checkpoint; the others are those of the fit
# itself (derived from the same parameters and data).
RESTORED = ("module_", "_optimizer_state", "history_", "n_iter_", "_rng")


def fingerprint(*arrays):
    """A hex digest of the shapes, dtypes and bytes of ``arrays``; about 1 GB/s."""
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        if array is None or isinstance(array, (tuple, list)):  # e.g. (tuples, targets or None)
            digest.update(repr(None).encode() if array is None else fingerprint(*array).encode())
            continue
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.reshape(-1).view(np.uint8).data)
    return digest.hexdigest()


def weights_fingerprint(module):
    """A hex digest of a network's weights (their bytes, whatever their dtype)."""
    state = module.state_dict()
    return fingerprint(
        *(
            state[k].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
            for k in sorted(state)
        )
    )


class Checkpoint:
    """The checkpoint of one fit: its identity, and the state to resume from when there is one.

    Parameters
    ----------
    estimator : BaseEmbedder
        The estimator about to fit, before it initialises anything.
    X, y : ndarray
        The validated training data and the encoded labels, before any validation split.
    fresh : bool
        Whether the fit starts from scratch (rather than warm-starting a fitted estimator).
    """

    @classmethod
    def open(cls, estimator, X, y, *, fresh):
        """The checkpoint of a fit about to start, or None when it has no ``checkpoint``."""
        return None if estimator.checkpoint is None else cls(estimator, X, y, fresh=fresh)

    def __init__(self, estimator, X, y, *, fresh):
        self.path = os.fspath(estimator.checkpoint)
        self.every = int(estimator.checkpoint_every)
        self.where = repr(self.path)
        self.params, self.free = _encode_params(estimator)
        self.identity = {
            "params": self.params,
            "data": fingerprint(X, y),
            "start_epoch": 0 if fresh else int(estimator.n_iter_),
            "start_weights": None if fresh else weights_fingerprint(estimator.module_),
        }
        self.estimator_class = Encoder().encode(type(estimator), "the estimator's class")
        self.saved = self._read() if os.path.exists(self.path) else None
        self.start_epoch = self.identity["start_epoch"]
        self.loop_state = None

    # -- reading -----------------------------------------------------------------------------------

    def _read(self):
        try:
            document, tensors = read_file(self.path)
            section = document["checkpoint"]
            saved = section["identity"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"Cannot resume from the checkpoint {self.where}: {_reason(exc)} Delete it, or "
                "pass another checkpoint path, to start afresh."
            ) from exc
        missing = object()
        differences = [
            label
            for label, same in (
                ("estimator", document.get("estimator") == self.estimator_class),
                *(
                    (
                        f"parameter {name}",
                        saved["params"].get(name, missing) == self.params.get(name, missing),
                    )
                    for name in sorted(set(saved["params"]) | set(self.params))
                ),
                ("data (X or y)", saved.get("data") == self.identity["data"]),
                (
                    "starting point (a warm start from other weights)",
                    saved.get("start_epoch") == self.identity["start_epoch"]
                    and saved.get("start_weights") == self.identity["start_weights"],
                ),
            )
            if not same
        ]
        if differences:
            raise ValueError(
                f"Cannot resume from the checkpoint {self.where}: it belongs to another fit "
                f"(different {', '.join(differences)}). Delete it, or pass another checkpoint "
                "path, to start afresh."
            )
        decoder = Decoder(self.where, tensors, {})
        try:
            return {
                "fitted": {name: decoder.decode(document["fitted"][name]) for name in RESTORED},
                "start_rng": decoder.decode(section["start_rng"]),
                "loop": decoder.decode(section["loop"]),
                "torch_rng": decoder.decode(section["torch_rng"]),
            }
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"Cannot resume from the checkpoint {self.where}: {_reason(exc)} Delete it, or "
                "pass another checkpoint path, to start afresh."
            ) from exc

    # -- resuming ----------------------------------------------------------------------------------

    def begin(self, estimator):
        """Record where the fit starts; when resuming, go back to where the interrupted one did."""
        if self.saved is not None:
            estimator._rng.bit_generator.state = self.saved["start_rng"]
        self.start_rng = estimator._rng.bit_generator.state

    def restore(self, estimator, n_epochs, start_time):
        """Give ``estimator`` the saved state, once the fit has drawn its validation split and seed.

        Returns the epochs left to train of the ``n_epochs`` the fit asked for, and ``start_time``
        moved back by the time the interrupted fit had run, so the ``"time"`` column continues.
        """
        if self.saved is None:
            return n_epochs, start_time
        fitted = self.saved["fitted"]
        estimator.module_.load_state_dict(fitted["module_"])
        estimator._optimizer_state = fitted["_optimizer_state"]
        estimator.history_ = fitted["history_"]
        estimator.n_iter_ = fitted["n_iter_"]
        estimator._rng.bit_generator.state = fitted["_rng"].bit_generator.state
        self.loop_state = self.saved["loop"]
        elapsed = estimator.history_[-1]["time"] if estimator.history_ else 0.0
        return max(0, self.start_epoch + n_epochs - estimator.n_iter_), start_time - elapsed

    def restore_torch_generators(self, device):
        """Set torch's generators (already forked and seeded by the fit) to the saved states."""
        if self.saved is None:
            return
        states = self.saved["torch_rng"]
        torch.set_rng_state(states["cpu"])
        if "cuda" in states and device.type == "cuda":
            torch.cuda.set_rng_state(states["cuda"], device)

    # -- writing -----------------------------------------------------------------------------------

    def due(self, epoch):
        return (epoch - self.start_epoch) % self.every == 0

    def write(self, estimator, optimizer, loop, device):
        """Write the fit's state atomically (temporary file, fsync, rename)."""
        encoder = Encoder(lenient=True)
        params = {**self.free, **_encode_now(estimator, encoder, self.params)}
        params = {name: params[name] for name in estimator._get_param_names()}
        document = document_of(
            estimator,
            encoder,
            params=params,
            fitted={"_optimizer_state": optimizer.state_dict()},
        )
        torch_rng = {"cpu": torch.get_rng_state()}
        if device.type == "cuda":
            torch_rng["cuda"] = torch.cuda.get_rng_state(device)
        document["checkpoint"] = {
            "identity": self.identity,
            "start_rng": encoder.encode(self.start_rng, "start_rng"),
            "loop": encoder.encode(loop, "loop"),
            "torch_rng": encoder.encode(torch_rng, "torch_rng"),
        }
        write_file(self.path, document, encoder.tensors)

    def finish(self):
        """The fit ended without an error: the checkpoint is no longer needed."""
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass


def _encode_params(estimator):
    """``(identity params, free params)``, encoded as ``save`` would.

    A parameter that ``save`` cannot store (a lambda, a module instance) is recorded by its type
    and name in the identity, and as None among the free parameters.
    """
    lenient, strict = Encoder(lenient=True), Encoder()
    identity, free = {}, {}
    params = estimator.get_params(deep=False)
    # A learning-rate schedule spans max_iter epochs: with one, max_iter sets the rate of every
    # epoch already trained, and a resumed fit must keep it.
    scheduled = params.get("learning_rate", "constant") != "constant"
    for name, value in params.items():
        if name not in FREE_PARAMETERS or (scheduled and name == "max_iter"):
            identity[name] = lenient.encode(value, name)
            continue
        try:
            free[name] = strict.encode(value, name)
        except TypeError:  # a lambda callback
            free[name] = None
    if lenient.tensors:  # a RandomState's key: compare it by value
        identity = _inline_tensors(identity, lenient.tensors)
    return identity, free


def _encode_now(estimator, encoder, identity):
    """The identity parameters as the checkpoint's document stores them (tensors in the file)."""
    return {
        name: encoder.encode(value, name)
        for name, value in estimator.get_params(deep=False).items()
        if name in identity
    }


def _inline_tensors(node, tensors) -> Any:
    if isinstance(node, list):
        return [_inline_tensors(item, tensors) for item in node]
    if isinstance(node, dict):
        if set(node) == {"__ndarray__"}:
            return {"__inline__": tensors[node["__ndarray__"]].tolist()}
        return {key: _inline_tensors(value, tensors) for key, value in node.items()}
    return node


def _reason(exc):
    text = str(exc)
    prefix = "Cannot load "
    if text.startswith(prefix) and ": " in text:
        return text.split(": ", 1)[1]
    return f"it is not a checkpoint ({exc!r})."
