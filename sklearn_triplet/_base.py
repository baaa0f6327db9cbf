"""The contract every embedder shares: the abstract base and the steps of ``fit``.

:class:`BaseEmbedder` owns what does not depend on the kind of training data (as scikit-learn's
``BaseMultilayerPerceptron`` does for its two estimators): the parameters common to every embedder
and their constraints, the ``_fit`` skeleton, the network, the optimiser, the training loop, the
warnings after training, ``transform``, export, ``save`` and the scikit-learn tags. Two kinds of
estimator fill in the steps that depend on the data:

- :class:`~sklearn_triplet._class_labels.ClassLabelEmbedder`: samples ``X`` and class labels ``y``
  (TripletEmbedder, SiameseEmbedder);
- :class:`~sklearn_triplet._tuples.TupleEmbedder`: given pairs or triplets (PairEmbedder,
  ComparisonEmbedder).

The steps a kind fills in (abstract here, each documented where it is declared):
``_check_fit_parameters``, ``_check_training_data``, ``_split_validation``,
``_initialise_from_data``, ``_training_data``, ``_batch_loss`` and ``_statistics``, and the class
attribute ``_validation_score_name``; ``_after_training`` may be filled in too.

Adding a parameter, an estimator
--------------------------------
Every public estimator writes its own ``__init__``, as scikit-learn writes them: the first parameter
positional, the others keyword-only, each assigned and nothing else; the table in
:mod:`sklearn_triplet._parameters` lists every estimator's parameters in order, with their defaults,
and a test checks each signature, docstring and ``_parameter_constraints`` against it. To add a
parameter: a line in the table, a keyword in each ``__init__`` that takes it (and its assignment),
its constraint in the ``_parameter_constraints`` of the class that declares it (this base for a
parameter of every embedder), its description in the docstring (the shared sections live in
:mod:`sklearn_triplet._docstrings`), then use ``self.name`` in the step that needs it.

To add an estimator, subclass the kind it belongs to, declare its loss (``_loss``, a
:class:`~sklearn_triplet._kernels.LossDeclaration`), its constraints merged with its base's, and
write its ``__init__`` and docstring; ``__init__.py`` exports it and ``_loading.TRUSTED`` lists it.
"""

import contextlib
import copy
import functools
import os
import time
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import (
    _checkpoint,
    _distributed,
    _docstrings,
    _export,
    _format,
    _guard,
    _inference,
    _threads,
    _training,
)
from ._kernels import METRICS, BatchLoss, LossDeclaration, PartialLoss, Statistics
from ._training import TrainingData
from ._validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
    check_array,
    invalid,
    plain,
    validate_data,
    validate_estimator_params,
)
from .backbones import BACKBONES, WEIGHT_LAYERS, L2Normalize, build_backbone, find_head

# Warnings raised after training point at the caller of fit: _warn_after_training, _fit, fit, the
# wrapper of scikit-learn's _fit_context, then the caller.
_USER_FRAME = 5


class EmbeddingCollapseWarning(UserWarning):
    """Warned when training ends with the embeddings collapsed towards a single point."""


class BaseEmbedder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator, ABC):
    """The abstract base of the embedders; see the module documentation for its contract."""

    # The parameters every embedder takes (each concrete class assigns them in its __init__).
    n_components: int
    backbone: "str | torch.nn.Module | Callable[..., torch.nn.Module]"
    hidden_layer_sizes: "int | Sequence[int]"
    backbone_params: "dict | None"
    normalize: bool
    metric: str
    margin: float
    batch_size: int
    max_iter: int
    learning_rate: str
    learning_rate_init: float
    weight_decay: float
    mixed_precision: bool
    early_stopping: bool
    validation_fraction: float
    n_iter_no_change: int
    tol: float
    warm_start: bool
    callback: "Callable | list | tuple | None"
    checkpoint: "str | os.PathLike | None"
    checkpoint_every: int
    device: "str | torch.device"
    n_threads: "int | None"
    random_state: "int | np.random.RandomState | None"
    verbose: int

    # The fitted attributes (set by fit).
    module_: torch.nn.Sequential
    device_: torch.device
    n_components_: int
    n_features_in_: int
    history_: list
    n_iter_: int
    _rng: np.random.Generator

    # The built-in loss: a LossDeclaration (its kernel, its options, its statistics).
    _loss: "LossDeclaration | None" = None
    # What the validation score of early stopping is, for the console, plots and docs.
    _validation_score_name = "validation score"
    # What ``history_``'s ``mean_distance`` measures, for the collapse warning.
    _negatives = "embeddings of different classes"

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "backbone": [StrOptions(set(BACKBONES)), torch.nn.Module, callable],
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "backbone_params": [dict, None],
        "normalize": ["boolean"],
        "metric": [StrOptions(set(METRICS))],
        "margin": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions(set(_training.SCHEDULES))],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "mixed_precision": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "warm_start": ["boolean"],
        "callback": [callable, list, tuple, None],
        "checkpoint": [str, os.PathLike, None],
        "checkpoint_every": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__doc__ and cls._loss is not None and "%(" in cls.__doc__:
            cls.__doc__ = _docstrings.fill(
                cls.__doc__, cls._loss.statistics, **cls._docstring_sections()
            )

    @classmethod
    def _docstring_sections(cls):
        """The shared docstring sections this kind words its own way (``{name: text}``)."""
        return {}

    # -- the steps a kind of estimator fills in ----------------------------------------------------

    @abstractmethod
    def _check_fit_parameters(self) -> None:
        """Check the rules between parameters, at fit."""

    @abstractmethod
    def _check_training_data(self, X, y, /, *, reset) -> tuple:
        """``(X, data, input_shape)``: the validated float32 rows the network embeds, the targets
        in the kind's form (encoded labels; tuples and their targets) and a CNN's input shape."""

    @abstractmethod
    def _split_validation(self, X, data, /) -> tuple:
        """``(X, data, X_val, data_val)``: the training data and that held out for early stopping,
        by :func:`stratified_split`."""

    @abstractmethod
    def _initialise_from_data(self, X, data, /) -> None:
        """Set initial weights from the training data (after the network is built), if any."""

    @abstractmethod
    def _training_data(self, X, data, X_val, data_val, /) -> TrainingData:
        """The :class:`~sklearn_triplet._training.TrainingData` the loop reads: the data on the
        device, the batches of an epoch and the validation score (None without ``X_val``)."""

    @abstractmethod
    def _batch_loss(self, embeddings, targets, /, *, taxonomy, spread) -> BatchLoss:
        """The loss of a batch and its statistics (a ``BatchLoss``)."""

    def _anchor_loss(self) -> "Callable[..., PartialLoss] | None":
        """The loss split by anchors for a process group (see ``_training.train``), or None."""
        return None

    @property
    @abstractmethod
    def _statistics(self) -> Statistics:
        """The declaration of the statistics of the loss in use."""

    def _after_training(self, X, data, X_val, data_val, /) -> None:
        """Called once training is over, with the data of ``_train``; nothing to do here."""

    # -- fitting -----------------------------------------------------------------------------------

    def _validate_params(self):
        # scikit-learn's check, with "Got 0" rather than "Got np.int64(0)" in its messages
        validate_estimator_params(self)

    def _fit(self, X, y, *, n_epochs, incremental, validate):
        X_given, y_given = X, y
        reset = not (incremental and hasattr(self, "module_"))
        if not reset:
            self._continue_warm_start()
        self._check_fit_parameters()
        callbacks = _callbacks(self.callback)
        _training.warm_up()  # torch's one-time start-up (seconds), before the clock starts
        start_time = time.perf_counter()
        X, data, input_shape = self._check_training_data(X, y, reset=reset)
        # fit only: a checkpoint of this fit, resumed from when the file holds one.
        checkpoint = _checkpoint.Checkpoint.open(self, X, data, fresh=reset) if validate else None
        if reset:
            self._initialise(X.shape[1], input_shape)
        ranks = _distributed.current()
        if ranks is not None:
            self._join_ranks(ranks, X, data)
        if checkpoint:
            checkpoint.begin(self)
        X, data, X_val, data_val, held_out = self._split_off(X, data, validate=validate)
        # 0 when nothing was held out
        n_samples = X.shape[0] + np.shape(held_out[0])[0] if held_out is not None else 0
        # a network that wins the check is trained again on all the data: the check may be shorter
        refits = self._refits(n_samples, reset, checkpoint)
        n_epochs_asked = n_epochs
        if refits:
            n_epochs = self._check_epochs(n_epochs)
        if reset:
            self._initialise_from_data(X, data)
        seed = int(self._rng.integers(2**31))
        first_row = len(self.history_)
        # fit only (partial_fit trains at learning_rate_init); drawn before a checkpoint restores
        schedule = self._schedule(n_epochs) if validate else None
        stopping = None
        if checkpoint:
            n_epochs, start_time = checkpoint.restore(self, n_epochs, start_time)
            if ranks is not None:
                ranks.check_same(
                    "checkpoint",
                    f"{self.n_iter_}",
                    f"Put the checkpoint ({checkpoint.where}) on a file system every rank sees.",
                )
            if checkpoint.loop_state:
                stopping = _training.EarlyStopping(**checkpoint.loop_state)
        # Built-in networks and losses draw from generators of this fit alone; user code may draw
        # from torch's global generator, which is then seeded from random_state under a lock (and,
        # when resuming, set to the state the checkpoint saved).
        user_code = not isinstance(self.backbone, str) or callable(getattr(self, "loss", None))
        with (
            self._thread_limit(min(self.batch_size, X.shape[0])),
            _threads.seeded_global_generator(seed, self.device_)
            if user_code
            else contextlib.nullcontext(),
        ):
            if checkpoint and user_code:
                checkpoint.restore_torch_generators(self.device_)
            stop_reason = self._train(
                self._training_data(X, data, X_val, data_val),
                self._loop_settings(n_epochs, schedule),
                start_time=start_time,
                callbacks=callbacks,
                checkpoint=checkpoint,
                stopping=stopping,
            )
        if checkpoint:
            checkpoint.finish()
        if validate or reset:  # partial_fit keeps the scores of the last fit
            self._record_validation_scores(first_row, with_validation=X_val is not None)
        self._choose_embedding(X, data, held_out)
        if refits and not getattr(self, "raw_kept_", True):
            return self._refit(X_given, y_given, n_epochs_asked)
        self._after_training(X, data, X_val, data_val)
        self._warn_after_training(stop_reason, X_val is not None, check_convergence=validate)
        return self

    def _join_ranks(self, ranks, X, data):
        """One model on several processes: every rank holds the same data, and draws rank 0's
        plan from a generator they agree on."""
        ranks.check_same(
            "data (the shape of X, and y)",
            _checkpoint.fingerprint(np.asarray(np.shape(X)), data),
            "Pass the whole X and y on every rank: each rank reads the rows of its share.",
        )
        ranks.agree_generator(self._rng)

    def _split_off(self, X, data, *, validate):
        """``X, data, X_val, data_val, held_out``: the training data, early stopping's validation
        split (None when it is off) and the data ``do_no_harm`` scores on (None when it is off):
        early stopping's split when the kind scores on it, else a split of its own, drawn first."""
        guarded = validate and self._guarded()
        reuses_validation = self.early_stopping and self._guard_uses_validation_split()
        held_out = None
        if guarded and not reuses_validation:
            X, data, *held_out = self._split_held_out(X, data)
        X_val = data_val = None
        if validate and self.early_stopping:
            X, data, X_val, data_val = self._split_validation(X, data)
            if guarded and reuses_validation:
                held_out = (X_val, data_val)
        return X, data, X_val, data_val, held_out

    def _record_validation_scores(self, first_row, *, with_validation):
        """``validation_scores_`` and ``best_validation_score_``: the epochs from ``first_row``."""
        new_rows = self.history_[first_row:]
        scores = [row["validation_score"] for row in new_rows] if with_validation else None
        self.validation_scores_ = scores
        self.best_validation_score_ = max(scores) if scores else None

    def _refit(self, X, y, n_epochs):
        """Trained on part of the data for ``do_no_harm``'s check (a small set, held-out classes),
        and better than the raw features: a new network on all of it for ``n_epochs``, the one
        ``do_no_harm=False`` trains, keeping the check's scores."""
        scores = self.held_out_scores_
        self._refitting = True
        try:
            self._fit(X, y, n_epochs=n_epochs, incremental=False, validate=True)
        finally:
            del self._refitting
        self.held_out_scores_ = scores
        return self

    def _schedule(self, n_epochs):
        """The learning rate's schedule over the ``n_epochs`` epochs of a fit from now on (a
        resumed fit keeps it); None for ``"constant"``."""
        if self.learning_rate == "constant":
            return None
        return _training.LearningRateSchedule(
            self.learning_rate, self.learning_rate_init, self.n_iter_ + 1, n_epochs
        )

    def _loop_settings(self, n_epochs, schedule):
        """How the loop runs the ``n_epochs`` epochs left, from the epoch after ``n_iter_``."""
        return _training.LoopSettings(
            n_epochs=n_epochs,
            first_epoch=self.n_iter_ + 1,
            schedule=schedule,
            n_iter_no_change=self.n_iter_no_change,
            tol=self.tol,
            mixed_precision=self.mixed_precision,
            verbose=self.verbose if _distributed.is_writer() else 0,
            score_name=self._validation_score_name,
        )

    # do_no_harm, for the estimators that take it (see _class_labels.ClassLabelEmbedder)

    def _guarded(self) -> bool:
        """Whether ``fit`` holds out data for ``do_no_harm`` (then ``_split_held_out`` splits)."""
        return False

    def _split_held_out(self, X, data, /):
        """``X, data, X_held, data_held``: the part ``do_no_harm`` scores on, held out."""
        raise NotImplementedError  # only called when _guarded() is True

    def _guard_uses_validation_split(self) -> bool:
        """Whether early stopping's validation split, when it is on, is what ``do_no_harm``
        scores on (else ``_split_held_out`` splits first, and validation from the rest)."""
        return True

    def _choose_embedding(self, X, data, held_out, /):
        """Keep the trained network or the raw features; nothing to choose here."""

    def _refits(self, n_samples, reset, checkpoint, /) -> bool:
        """Whether a network that beats the raw features on the held-out data is then trained
        again, from new weights, on all the data (``_refit``); never here."""
        return False

    def _check_epochs(self, n_epochs, /) -> int:
        """Epochs of the network ``do_no_harm`` checks, when a new one trains on all the data
        after it (``_refits``); here all ``n_epochs``."""
        return n_epochs

    def _continue_warm_start(self):
        """Check that the network may be trained further as it is; move it to today's device.

        The parameters that define the network must keep the values it was built with; the others
        (margin, mining, learning rate, batches, device...) apply to the epochs to come.
        """
        built = getattr(self, "_architecture", None)  # absent from estimators saved before it was
        if built is not None:
            now = _architecture(self)
            changed = [name for name in built if name in now and not _same(built[name], now[name])]
            if changed:
                raise ValueError(
                    f"{' and '.join(changed)} must stay "
                    f"{' and '.join(_describe(built[name]) for name in changed)} while "
                    "warm_start=True trains the fitted network further; got "
                    f"{' and '.join(_describe(now[name]) for name in changed)}. Set "
                    "warm_start=False to build and train a new network, or set "
                    f"{'it' if len(changed) == 1 else 'them'} back."
                )
        device = _resolve_device(self.device)
        if device != self.device_:
            self.module_.to(device)  # the optimiser's state follows its parameters when loaded
            self.device_ = device

    def _rows(self, X, *, reset):
        """``X`` with one row per sample, and the input shape of a convolutional backbone.

        The convolutional backbones (``"cnn"``, ``"fcn"``, ``"resnet"``) and classifiers given
        as modules read samples given as arrays: images ``(n_samples, channels, height, width)``
        or ``(n_samples, height, width)``, and signals ``(n_samples, channels, length)`` with
        ``backbone_params={"input_shape": (channels, length)}``. They are flattened here (C
        order), and the network unflattens them. Without ``input_shape``, a fit reads it from
        ``X``: ``(channels, height, width)``, or ``(1, height, width)`` for a 3-D ``X``.
        """
        shape = _shape(X)
        sample = tuple(int(n) for n in shape[1:]) if len(shape) > 2 else None
        convolutional = _reads_shapes(self.backbone)
        if reset:
            given = (self.backbone_params or {}).get("input_shape") if convolutional else None
            input_shape = tuple(int(n) for n in given) if given is not None else None
        else:
            input_shape = getattr(self, "_input_shape", None)
            convolutional = input_shape is not None
        if sample is None:
            # a classifier given as a module may read rows as they are; the built-in nets may not
            builtin = isinstance(self.backbone, str)
            if reset and convolutional and builtin and input_shape is None:
                raise invalid(
                    "X",
                    "images, (n_samples, channels, height, width) or (n_samples, height, width), "
                    f"when backbone={self.backbone!r} has no backbone_params['input_shape']",
                    f"shape {tuple(shape)}. Give X as images, or the shape of one sample as "
                    "backbone_params={'input_shape': (channels, height, width)}, or "
                    "(channels, length) for signals",
                )
            return X, input_shape
        if not convolutional:
            raise invalid(
                "X",
                f"2-D, (n_samples, n_features), with {_backbone_name(self.backbone)}",
                f"shape {tuple(shape)}. Flatten each sample, X.reshape(len(X), -1), or use "
                "backbone='fcn', 'resnet' or 'cnn', which read images (n_samples, channels, "
                "height, width) or "
                "(n_samples, height, width), and signals (n_samples, channels, length) with "
                "backbone_params={'input_shape': (channels, length)}",
            )
        if input_shape is None:
            if len(sample) not in (2, 3):
                raise invalid(
                    "X",
                    "images, (n_samples, channels, height, width) or (n_samples, height, width), "
                    f"for {_backbone_name(self.backbone)}",
                    f"shape {tuple(shape)}",
                )
            input_shape = sample if len(sample) == 3 else (1, *sample)
        if sample != input_shape and (1, *sample) != input_shape:
            accepted = [input_shape, input_shape[1:]] if input_shape[0] == 1 else [input_shape]
            accepted = " or ".join(str(("n_samples", *a)).replace("'", "") for a in accepted)
            allowed = (
                f"of shape {accepted} to match backbone_params['input_shape']={input_shape}"
                if reset
                else f"of shape {accepted}, or (n_samples, {self.n_features_in_}), like the "
                f"samples this {type(self).__name__} was fitted on"
            )
            raise invalid("X", allowed, f"shape {tuple(shape)}")
        X = np.asarray(X)
        return np.reshape(X, (X.shape[0], -1)), input_shape

    def _initialise(self, n_features, input_shape=None):
        """Resolve the device, seed, build the network and the optimiser state for a fresh fit.

        The fitted attributes are set only once the network has passed its probe, so a backbone that
        fails leaves no half-fitted estimator behind.
        """
        device = _resolve_device(self.device)
        rng = _make_rng(self.random_state)
        module = self._build_module(
            n_features,
            input_shape,
            generator=torch.Generator().manual_seed(int(rng.integers(2**31))),
        ).to(device)
        probe, flops_per_row = _threads.probe(module, n_features, device, WEIGHT_LAYERS)
        if probe.ndim != 2:
            raise ValueError(
                "The backbone must map (batch, n_features) to (batch, n_components); got output "
                f"shape {tuple(probe.shape)} for input shape (2, {n_features})."
            )
        self.device_, self._rng, self.module_ = device, rng, module
        self.n_components_ = int(probe.shape[1])
        self._input_shape, self._architecture = input_shape, _architecture(self)
        self._flops_per_row = flops_per_row
        self._optimizer_state = None
        self.history_ = []
        self.n_iter_ = 0

    def _build_module(self, n_features, input_shape=None, *, generator=None):
        """The network the parameters describe, freshly initialised.

        ``input_shape``, the shape of a sample read from ``X``, goes to the backbone when the
        parameters do not give it. The built-in backbones draw their initial weights from
        ``generator`` (None: torch's global generator, as ``torch.nn.Linear`` does).
        """
        params = dict(self.backbone_params or {})
        if input_shape is not None:  # read from X when not given
            params["input_shape"] = input_shape
        backbone = build_backbone(
            self.backbone,
            n_features,
            self._embedding_width(n_features),
            hidden_layer_sizes=tuple(np.atleast_1d(self.hidden_layer_sizes).tolist()),
            params=params,
            generator=generator,
        )
        normalize = L2Normalize() if self.normalize else torch.nn.Identity()
        return torch.nn.Sequential(OrderedDict(backbone=backbone, normalize=normalize))

    def _embedding_width(self, n_features):
        """The output width asked of the built-in backbones: ``n_components``."""
        return self.n_components

    def _train(self, data, settings, *, start_time, callbacks, checkpoint=None, stopping=None):
        module = self.module_
        # foreach: one kernel per operation for all the parameters (the same numbers as Adam's
        # default loop over them on the CPU, several times faster for large networks)
        optimizer = torch.optim.Adam(
            module.parameters(),
            lr=self.learning_rate_init,
            weight_decay=self.weight_decay,
            foreach=True,
        )
        if self._optimizer_state is not None:
            optimizer.load_state_dict(self._optimizer_state)
            for group in optimizer.param_groups:  # the moments carry over, the settings are today's
                group.update(
                    lr=self.learning_rate_init, weight_decay=self.weight_decay, foreach=True
                )

        def on_epoch_end(epoch, logs):
            self.n_iter_ = epoch
            # every callback sees every epoch; any of them can stop training
            return any([bool(callback(self, epoch, logs)) for callback in callbacks])

        write_checkpoint = None
        if checkpoint is not None:
            write_checkpoint = functools.partial(self._write_checkpoint, checkpoint, optimizer)

        keep_optimizer_state = True
        try:
            return _training.train(
                module,
                optimizer,
                self._batch_loss,
                self._statistics,
                data,
                settings,
                history=self.history_,
                on_epoch_end=on_epoch_end,
                start_time=start_time,
                stopping=stopping,
                checkpoint=write_checkpoint,
                ranks=_distributed.current(),
                anchor_loss=self._anchor_loss(),
            )
        except FloatingPointError:
            keep_optimizer_state = False  # its moments may hold NaN; a warm start begins afresh
            raise
        finally:
            # Also on KeyboardInterrupt: the estimator keeps the weights and history trained so far.
            module.eval()
            self._optimizer_state = optimizer.state_dict() if keep_optimizer_state else None

    def _write_checkpoint(self, checkpoint, optimizer, epoch, stopping):
        if checkpoint.due(epoch):
            checkpoint.write(self, optimizer, stopping.as_dict(), self.device_)

    def _warn_after_training(self, stop_reason, early_stopping, *, check_convergence=True):
        if early_stopping and stop_reason == _training.STOP_MAX_ITER:
            warnings.warn(
                f"{type(self).__name__} reached max_iter={self.max_iter} while the validation "
                "score was still improving; increase max_iter.",
                ConvergenceWarning,
                stacklevel=_USER_FRAME,
            )
        elif (
            check_convergence
            and stop_reason == _training.STOP_MAX_ITER
            and self.learning_rate != "constant"
        ):
            # A schedule anneals the rate: the end of the curve is judged against the curve.
            falling = _training.still_falling_at_the_end(self.history_, tol=self.tol)
            if falling:
                key, span, fall, rate = falling
                warnings.warn(
                    f"{type(self).__name__} reached max_iter={self.max_iter} while the training "
                    f"{key.replace('_', ' ')} was still falling: by {fall:.3g} per epoch over the "
                    f"last {span} epoch{'s' if span > 1 else ''}, {rate:.0%} of its mean fall per "
                    f"epoch over the fit, with the learning rate of the {self.learning_rate!r} "
                    "schedule almost spent. Increase max_iter: the schedule spans it.",
                    ConvergenceWarning,
                    stacklevel=_USER_FRAME,
                )
        elif check_convergence and stop_reason == _training.STOP_MAX_ITER:
            window = min(self.n_iter_no_change, len(self.history_) - 1)
            improving = _training.still_improving(self.history_, window=window, tol=self.tol)
            if improving:
                warnings.warn(
                    f"{type(self).__name__} reached max_iter={self.max_iter} while the training "
                    f"{improving.replace('_', ' ')} was still falling by more than tol={self.tol} "
                    f"per epoch over the last {window} epochs; increase max_iter, or set "
                    "early_stopping=True to train until a validation score stops improving.",
                    ConvergenceWarning,
                    stacklevel=_USER_FRAME,
                )
        last = self.history_[-1] if self.history_ else {}
        spread = last.get("mean_distance", np.nan)
        if spread < 0.5 * self.margin:
            mining = (
                "hard mining from the start (mining='hard': try 'semi-hard'); "
                if hasattr(self, "mining")
                else ""
            )
            warnings.warn(
                f"The embeddings collapsed towards a single point: the mean {self.metric} distance "
                f"between {self._negatives} in the last batch is {spread:.3g}, less "
                f"than half the margin={self.margin}, so most negatives sit inside the margin and "
                "the loss stays near it. Likely causes: a learning rate too high "
                f"(learning_rate_init={self.learning_rate_init}); a margin too large for the "
                f"metric (metric={self.metric!r}); {mining}input features on a large common "
                "offset or scale (standardise them, e.g. with StandardScaler); too few epochs for "
                f"a network that starts near-constant (max_iter={self.max_iter}); or a backbone "
                "whose output is constant.",
                EmbeddingCollapseWarning,
                stacklevel=_USER_FRAME,
            )

    # -- using a fitted estimator ------------------------------------------------------------------

    def transform(self, X):
        """Embed ``X`` with the trained network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples to embed. A large array (a :class:`numpy.memmap` of any dtype, a DataFrame, an
            h5py or zarr array) is validated and converted to float32 a chunk of rows at a time,
            so memory beyond the output stays bounded; see :mod:`sklearn_triplet.chunking`. A
            convolutional network also takes its samples as arrays, of the shape seen in ``fit``.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components), float32
            The embeddings (unit-norm rows when ``normalize=True``).
        """
        check_is_fitted(self)
        X, _ = self._rows(X, reset=False)
        shape = getattr(X, "shape", None) or (_inference.INFERENCE_BATCH_SIZE,)  # lists: a batch
        n_rows = shape[0] if isinstance(shape[0], Integral) else _inference.INFERENCE_BATCH_SIZE
        with self._thread_limit(min(n_rows, _inference.INFERENCE_BATCH_SIZE)):
            return _inference.embed_in_chunks(
                X,
                embed_chunk=self._embed,
                validate=lambda X: validate_data(self, X, reset=False, dtype=np.float32),
                check=lambda X: check_array(X, dtype=np.float32, input_name="X", estimator=self),
                n_components=self.n_components_,
                batch_size=_inference.INFERENCE_BATCH_SIZE,
            )

    def _embed(self, X):
        """Embed a validated float32 array with the network, in inference batches."""
        return _inference.embed(
            self._serving_module(),
            X,
            batch_size=_inference.INFERENCE_BATCH_SIZE,
            device=self.device_,
        )

    def _serving_module(self):
        """The network ``transform`` runs: the trained one, or the identity when the raw features
        were kept (``raw_kept_``)."""
        return _guard.RawFeatures() if getattr(self, "raw_kept_", False) else self.module_

    def _thread_limit(self, n_rows):
        """PyTorch's intra-op threads here for passes of ``n_rows`` rows, restored on exit."""
        n_threads = _threads.choose_n_threads(
            self.n_threads,
            # 0 (one thread) for an estimator saved before the work was measured
            flops_per_row=getattr(self, "_flops_per_row", 0.0),
            n_rows=n_rows,
            device=self.device_,
        )
        return _threads.limit_threads(n_threads)

    def export_module(self):
        """The fitted network, its normalisation included, as a plain module on the CPU.

        Returns
        -------
        module : torch.nn.Sequential
            A copy in eval mode with children ``backbone`` and ``normalize``; it maps a float32
            tensor ``(batch, n_features)`` to embeddings and can be scripted or exported with
            :func:`torch.export.export`. When ``do_no_harm`` kept the raw features, both children
            are identities.
        """
        check_is_fitted(self)
        return copy.deepcopy(self._serving_module()).cpu().eval()

    def export_onnx(self, path, *, opset_version=None):
        """Write the fitted network, its normalisation included, to an ONNX file.

        The graph has one input ``"X"``, float32 of shape ``(batch, n_features_in_)`` with a dynamic
        batch size, and one output ``"embedding"``, float32 of shape ``(batch, n_components_)``,
        equal to what ``transform`` returns up to float rounding. It runs under onnxruntime or any
        ONNX runtime, without Python, PyTorch or this package. Needs the ``onnx`` extra
        (``pip install "sklearn-triplet[onnx]"``: onnx, onnxscript and onnxruntime).

        Parameters
        ----------
        path : str or path-like
            Where to write the ``.onnx`` file.
        opset_version : int, default=None
            ONNX opset to target; None lets PyTorch choose.
        """
        check_is_fitted(self)
        _export.export_onnx(self, path, opset_version=opset_version)

    def save(self, path):
        """Save to a file that :func:`sklearn_triplet.load` loads without running code.

        The file is a `safetensors <https://huggingface.co/docs/safetensors>`_ file: the network's
        weights, the optimiser's state and the numeric fitted arrays as tensors (on the CPU, so a
        model trained on a GPU loads anywhere), and in its metadata one JSON document with the
        class, the parameters, the other fitted attributes (``history_`` included), the format
        version and a SHA-256 checksum of the whole. Functions and classes among the parameters
        (``backbone``, ``loss``, ``callback``) are stored by their import path only; an unfitted
        estimator saves its parameters alone. The file is written to a temporary file in the same
        directory, flushed to disk and renamed over ``path``, so an existing file is never left
        half-written.

        Parameters
        ----------
        path : str or path-like
            Where to write (``.safetensors`` is the usual extension).

        Raises
        ------
        TypeError
            When a parameter or attribute cannot be stored without pickle: a lambda or a function
            defined inside another function, an object such as a loss-module instance, or a
            backbone given as a module instance (pass its class or a factory with
            ``backbone_params`` instead). Pickle and joblib still store such estimators.

        See Also
        --------
        sklearn_triplet.load : Read the file back.

        Examples
        --------
        >>> import os, tempfile
        >>> from sklearn.datasets import load_digits
        >>> from sklearn_triplet import TripletEmbedder, load
        >>> X, y = load_digits(return_X_y=True)
        >>> embedder = TripletEmbedder(n_components=8, max_iter=2, random_state=0).fit(X, y)
        >>> path = os.path.join(tempfile.mkdtemp(), "embedder.safetensors")
        >>> embedder.save(path)
        >>> loaded = load(path)
        >>> bool((loaded.transform(X) == embedder.transform(X)).all())
        True
        """
        _distributed.write_once(lambda: _format.save(self, path))

    @property
    def _n_features_out(self):
        return self.n_components_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # -- persistence -------------------------------------------------------------------------------

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: object.__getstate__ returns __dict__ itself
        if "module_" in state:
            # Store CPU weights so a model trained on a GPU loads on any machine.
            state["module_"] = copy.deepcopy(self.module_).cpu()
            state["_optimizer_state"] = _tensors_to_cpu(state.get("_optimizer_state"))
            state.pop("device_", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "module_" in state:
            self.device_ = _resolve_device(self.device, on_load=True)
            self.module_.to(self.device_)


def _backbone_name(backbone):
    """``backbone='cnn'`` or ``a Linear module as backbone``, for messages."""
    if isinstance(backbone, str):
        return f"backbone={backbone!r}"
    return f"{_describe(backbone)} as backbone"


def _reads_shapes(backbone):
    """Whether ``backbone`` reads samples in their shape: a convolutional network, a classifier."""
    if isinstance(backbone, str):
        return BACKBONES[backbone].reads_arrays
    return isinstance(backbone, torch.nn.Module) and find_head(backbone) is not None


def _is_builtin(backbone, name):
    return isinstance(backbone, str) and backbone == name


def _resolve_device(device, *, on_load=False):
    """``"auto"``: CUDA, else Apple MPS, else the CPU; other values name an available device."""
    if isinstance(device, str) and device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise invalid(
            "device", "'auto', 'cpu', 'cuda', 'cuda:N', 'mps' or a torch.device", repr(device)
        ) from exc
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }.get(resolved.type, True)
    if not available:
        if on_load:
            warnings.warn(
                f"This estimator was saved with device={device!r}, which is not available here; it "
                "was loaded on the CPU. Use set_params(device='auto') before refitting.",
                UserWarning,
                stacklevel=3,  # _resolve_device, __setstate__, then the caller of pickle.load
            )
            return torch.device("cpu")
        raise ValueError(
            f"device={device!r} was requested but is not available on this machine; use "
            "device='auto' or 'cpu'."
        )
    return resolved


def _shape(X) -> tuple[int, ...]:
    """The shape of an array or of nested lists, else ``()``.

    ``X`` is not converted to read it; when its shape cannot be read so, scikit-learn's validation
    reports what it finds.
    """
    shape = getattr(X, "shape", None)
    if shape is None and isinstance(X, (list, tuple)):
        try:
            shape = np.shape(X)
        except ValueError:  # ragged
            shape = None
    return tuple(shape) if shape is not None else ()


def _callbacks(callback):
    """``callback`` as a list of callables (None: none; one callable; a list or tuple of them)."""
    if callback is None:
        return []
    if callable(callback):
        return [callback]
    for i, item in enumerate(callback):
        if not callable(item):
            raise invalid(
                "callback",
                "a callable or a list of callables",
                f"a {type(callback).__name__} whose item {i} is of type {type(item).__name__}",
                InvalidParameterError,
            )
    return list(callback)


def _architecture(estimator):
    """The parameters that define the network an estimator builds, with their values.

    ``n_components`` is left out when the backbone is a module instance without a head to
    replace (whose own output width counts), and ``hidden_layer_sizes`` unless the backbone is
    ``"mlp"``.
    """
    backbone = estimator.backbone
    values = {
        "n_components": estimator.n_components,
        "backbone": backbone,
        "hidden_layer_sizes": tuple(np.atleast_1d(estimator.hidden_layer_sizes).tolist()),
        "backbone_params": copy.copy(estimator.backbone_params),
        "normalize": estimator.normalize,
    }
    if isinstance(backbone, torch.nn.Module) and find_head(backbone) is None:
        del values["n_components"]
    if not (isinstance(backbone, str) and BACKBONES[backbone].hidden_layer_sizes):
        del values["hidden_layer_sizes"]
    return values


def _same(a, b):
    """Whether two parameter values are equal (identity for modules and other objects)."""
    if a is b:
        return True
    try:
        return bool(a == b)
    except (TypeError, ValueError, RuntimeError):  # e.g. arrays, whose == is elementwise
        return False


def _describe(value):
    """A parameter value for a message: modules and callables by name, NumPy scalars plainly."""
    if isinstance(value, torch.nn.Module):
        return f"a {type(value).__name__} module"
    if callable(value):
        return getattr(value, "__name__", type(value).__name__)
    return repr(plain(value))


def _make_rng(random_state):
    """A numpy Generator derived from ``random_state``, leaving the global random state alone."""
    if random_state is None:
        return np.random.default_rng()
    return np.random.default_rng(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _tensors_to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _tensors_to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_tensors_to_cpu(v) for v in obj)
    return obj


def stratified_split(groups, fraction, rng, *, min_per_side):
    """Hold out ``fraction`` of every group, keeping ``min_per_side`` members of it on each side.

    The one validation split of early stopping: class-label estimators split by class
    (``min_per_side=2``, so that a held-out sample has a positive to be scored against), the
    estimators of given pairs by kind of pair, similar or dissimilar (``min_per_side=1``).

    Parameters
    ----------
    groups : ndarray of shape (n_samples,), int
        The group of each sample, ``0 .. n_groups - 1``; the groups are split in that order.
    fraction : float in (0, 1)
        Share of each group held out, rounded and clipped to ``[min_per_side, n - min_per_side]``.
    rng : numpy.random.Generator
        Draws the held-out members (one permutation per group, in the order of the groups).
    min_per_side : int
        Groups with fewer than ``2 * min_per_side`` members stay in training whole.

    Returns
    -------
    train, validation : ndarray of int
        Sorted indices of the two sides.
    n_held_out : ndarray of shape (n_groups,), int
        Members of each group held out (0 for the groups kept whole).
    """
    train_parts, val_parts = [], []
    n_groups = int(groups.max()) + 1 if groups.shape[0] else 0
    for group in range(n_groups):
        members = rng.permutation(np.flatnonzero(groups == group))
        n = members.shape[0]
        n_val = 0
        if n >= 2 * min_per_side:
            n_val = int(np.clip(round(fraction * n), min_per_side, n - min_per_side))
        val_parts.append(members[:n_val])
        train_parts.append(members[n_val:])
    n_held_out = np.array([part.shape[0] for part in val_parts], dtype=np.int64)
    train, validation = (np.sort(np.concatenate(parts)) for parts in (train_parts, val_parts))
    return train, validation, n_held_out
