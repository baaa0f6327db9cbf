"""The estimator shared by the embedders, and how to add a parameter or an estimator.

Common parameters and their constraints, ``__init__``, the fit / transform / score skeleton, the
``loss=`` path, inference, persistence across devices and the scikit-learn tags live here. An
estimator module declares only its own parameters, its docstring and its loss (a
:class:`~sklearn_triplet._kernels.LossDeclaration`: the kernel, its mining rules and the statistics
it reports).

How ``__init__`` is made
------------------------
scikit-learn reads an estimator's parameters from the signature of its ``__init__``, which must
assign them and do nothing else. :class:`BaseEmbedder` holds the common parameters and their
defaults once, in ``_common_parameters``; a subclass lists its own in ``_own_parameters`` (new ones,
and common ones whose default it changes). When the subclass is defined, ``__init_subclass__`` gives
it an ``__init__`` that assigns every parameter, with an explicit ``__signature__`` (the first
parameter positional, the others keyword-only), so that ``get_params``, ``clone``, ``help()``,
Sphinx and scikit-learn's estimator checks all see the full signature.

To add a parameter common to every embedder (say ``n_threads``):

1. one line in ``_common_parameters``, at its place in the signature: ``"n_threads": None,``;
2. one line in ``_parameter_constraints``: ``"n_threads": [Interval(Integral, 1, None,
   closed="left"), None],``;
3. its description in :mod:`sklearn_triplet._docstrings` (the shared parameter sections);
4. use ``self.n_threads`` in ``fit``.

A parameter of one estimator goes in that estimator's ``_own_parameters`` (and its constraints and
docstring) instead; new names there come right after ``metric``, before ``loss``.

To add an estimator, write a module with the class alone::

    class PairsEmbedder(BaseEmbedder):
        # A numpydoc docstring here, with %(backbone)s, %(training)s and %(attributes)s.

        _loss = PAIRS  # a LossDeclaration from sklearn_triplet._kernels
        _own_parameters = {"margin": 0.5, "mining": "all"}
        _parameter_constraints = {
            **BaseEmbedder._parameter_constraints,
            "mining": [StrOptions(set(PAIRS.minings))],
        }

Every name in the declaration's ``options`` (here ``("mining",)``) must be a parameter of the
estimator: ``fit`` hands its value to the loss kernel under that name. The docstring's shared
sections are filled in by ``__init_subclass__`` too, and
``__init__.py`` exports the class. The training loop, the console report, the history plots and the
``history_`` documentation follow the declaration's statistics.
"""

import contextlib
import copy
import inspect
import os
import time
import warnings
from collections import OrderedDict
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted

from . import _checkpoint, _docstrings, _guard, _inference, _persistence, _threads, _training
from . import augment as _augment
from ._kernels import CALLABLE_STATISTICS, METRICS, callable_kernel
from ._validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
    fit_context,
    invalid,
    plain,
    validate_data,
    validate_estimator_params,
)
from .backbones import (
    BUILTIN_BACKBONES,
    SHAPED_BACKBONES,
    L2Normalize,
    build_backbone,
    find_head,
    initial_linear_weights,
)
from .metrics import map_at_r
from .sampling import class_balanced_batches

# Warnings raised after training point at the caller of fit: _warn_after_training, _fit, fit, the
# wrapper of scikit-learn's _fit_context, then the caller.
_USER_FRAME = 5


class EmbeddingCollapseWarning(UserWarning):
    """Warned when training ends with the embeddings collapsed towards a single point."""


class BaseEmbedder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Base class of the embedders; see TripletEmbedder for the parameters."""

    # The common parameters and their defaults, in the order of the signature. See the module
    # documentation before adding one.
    _common_parameters = {
        "n_components": 32,
        "backbone": "mlp",
        "hidden_layer_sizes": (256,),
        "backbone_params": None,
        "normalize": True,
        "metric": "euclidean",
        "margin": 0.2,
        "loss": None,
        "init": "auto",
        "batch_size": 128,
        "samples_per_class": 4,
        "augment": None,
        "max_iter": 50,
        "learning_rate": "cosine",
        "learning_rate_init": 3e-3,
        "weight_decay": 0.0,
        "mixed_precision": False,
        "early_stopping": False,
        "validation_fraction": 0.1,
        "n_iter_no_change": 10,
        "tol": 1e-4,
        "warm_start": False,
        "callback": None,
        "checkpoint": None,
        "checkpoint_every": 1,
        "device": "auto",
        "n_threads": None,
        "random_state": None,
        "verbose": 0,
    }
    _n_positional = 1
    # A subclass's own parameters (new, or common ones with another default).
    _own_parameters = {}
    # A subclass's built-in loss: a LossDeclaration.
    _loss = None
    # Common parameters a subclass does not take (left out of its signature).
    _removed_parameters = ()
    # What ``history_``'s ``mean_distance`` measures, for the collapse warning.
    _negatives = "embeddings of different classes"

    _parameter_constraints = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "backbone": [StrOptions(set(BUILTIN_BACKBONES)), torch.nn.Module, callable],
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "backbone_params": [dict, None],
        "init": [StrOptions({"auto", "pca", "lda", "random"})],
        "normalize": ["boolean"],
        "metric": [StrOptions(set(METRICS))],
        "margin": [Interval(Real, 0, None, closed="neither")],
        "loss": [callable, None],
        "batch_size": [Interval(Integral, 4, None, closed="left")],
        "samples_per_class": [Interval(Integral, 2, None, closed="left")],
        "augment": [StrOptions(set(_augment.RECIPES)), callable, None],
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
        if "__init__" not in vars(cls):
            cls.__init__ = _assigning_init(cls)
        if cls.__doc__ and cls._loss is not None:
            cls.__doc__ = _docstrings.fill(
                cls.__doc__, cls._loss.statistics, **cls._docstring_sections()
            )

    @classmethod
    def _docstring_sections(cls):
        """Shared docstring sections this class words its own way: the shared training section,
        with this class's default of ``samples_per_class``."""
        return {"training": _docstrings.training_section(cls._parameter_defaults())}

    @classmethod
    def _parameter_defaults(cls):
        """``{name: default}`` in the order of the signature: the common parameters, with the
        subclass's own overriding them in place and its new ones inserted before ``loss``, without
        its ``_removed_parameters``."""
        own = cls._own_parameters
        defaults = {}
        for name, default in cls._common_parameters.items():
            if name == "loss":
                defaults.update({k: v for k, v in own.items() if k not in cls._common_parameters})
            if name not in cls._removed_parameters:
                defaults[name] = own.get(name, default)
        return defaults

    # -- fitting -----------------------------------------------------------------------------------

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train the backbone on ``X, y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; with ``backbone="cnn"``, also images ``(n_samples, channels, height,
            width)`` or ``(n_samples, height, width)``, or signals ``(n_samples, channels,
            length)``.
        y : array-like of shape (n_samples,)
            Class labels (any type that :func:`numpy.unique` can sort).

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, n_epochs=self.max_iter, incremental=self.warm_start, validate=True)

    @fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y):
        """Train one epoch on ``X, y``, starting from the current weights when fitted.

        Early stopping does not apply: no validation set is split off.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data (arrays of samples with ``backbone="cnn"``, as in ``fit``).
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : object
            The estimator, trained one more epoch.
        """
        return self._fit(X, y, n_epochs=1, incremental=True, validate=False)

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
        X, y, input_shape = self._check_training_data(X, y, reset=reset)
        # fit only: a checkpoint of this fit, resumed from when the file holds one.
        checkpoint = _checkpoint.Checkpoint.open(self, X, y, fresh=reset) if validate else None
        if reset:
            self._initialise(X.shape[1], input_shape)
        if checkpoint:
            checkpoint.begin(self)
        X_val = y_val = None
        if validate and self.early_stopping:
            X, y, X_val, y_val = self._split_validation(X, y)
        # do_no_harm: the data the trained embedding must beat the raw features on
        held_out = None
        if validate and self._guarded():
            held_out = (X_val, y_val) if X_val is not None else None
            if held_out is None:
                X, y, *held_out = self._split_held_out(X, y)
        if reset:
            self._initialise_from_data(X, y)
        seed = int(self._rng.integers(2**31))
        first_row = len(self.history_)
        # The learning rate's schedule spans the epochs of one fit (a resumed one included);
        # partial_fit trains at learning_rate_init.
        schedule = None
        if validate and self.learning_rate != "constant":
            schedule = _training.LearningRateSchedule(
                self.learning_rate, self.learning_rate_init, self.n_iter_ + 1, n_epochs
            )
        if checkpoint:
            n_epochs, start_time = checkpoint.restore(self, n_epochs, start_time)
        # Built-in networks and losses draw from generators of this fit alone; user code may draw
        # from torch's global generator, which is then seeded from random_state under a lock (and,
        # when resuming, set to the state the checkpoint saved).
        user_code = not isinstance(self.backbone, str) or getattr(self, "loss", None) is not None
        with (
            self._thread_limit(min(self.batch_size, X.shape[0])),
            _threads.seeded_global_generator(seed, self.device_)
            if user_code
            else contextlib.nullcontext(),
        ):
            if checkpoint and user_code:
                checkpoint.restore_torch_generators(self.device_)
            stop_reason = self._train(
                X,
                y,
                X_val,
                y_val,
                n_epochs=n_epochs,
                start_time=start_time,
                callbacks=callbacks,
                checkpoint=checkpoint,
                schedule=schedule,
                seed=seed,
            )
        if checkpoint:
            checkpoint.finish()
        if validate or reset:  # partial_fit keeps the scores of the last fit
            scores = None
            if X_val is not None:
                scores = [row["validation_score"] for row in self.history_[first_row:]]
            self.validation_scores_ = scores
            self.best_validation_score_ = max(scores) if scores else None
        self._choose_embedding(X, y, held_out)
        if self._refits(X.shape[0] + len(held_out[1]) if held_out else 0, reset, checkpoint):
            # A small set trained on three quarters of itself: train again on all of it.
            scores = self.held_out_scores_
            self._refitting = True
            try:
                self._fit(X_given, y_given, n_epochs=n_epochs, incremental=False, validate=True)
            finally:
                del self._refitting
            self.held_out_scores_ = scores
            return self
        self._after_training(X, y, X_val, y_val)
        self._warn_after_training(stop_reason, X_val is not None, check_convergence=validate)
        return self

    # The steps of _fit that an estimator learning from other data than labelled samples replaces.

    def _check_fit_parameters(self):
        """Rules between parameters, checked at fit."""
        _check_batch_shape(self.batch_size, self.samples_per_class)
        if self.init in ("pca", "lda") and not _is_builtin(self.backbone, "linear"):
            raise ValueError(
                f"init={self.init!r} sets the weights of backbone='linear' only; got "
                f"backbone={self.backbone!r}. Use init='auto' or 'random'."
            )

    def _initialise_from_data(self, X, y):
        """Set the linear backbone's weights from the training data, as ``init`` says.

        ``"auto"`` follows :class:`~sklearn.neighbors.NeighborhoodComponentsAnalysis`: LDA when
        there are more classes than components, else PCA when the data has enough samples and
        features, else the random initialisation of the layer.
        """
        if not _is_builtin(self.backbone, "linear"):
            return
        n_samples, n_features = X.shape
        n_classes = int(y.max()) + 1
        n_components = self.n_components_
        init = self.init
        if init == "auto":
            if n_components <= min(n_features, n_classes - 1):
                init = "lda"
            elif n_components <= min(n_features, n_samples):
                init = "pca"
            else:
                init = "random"
        if init == "random":
            return
        limit = min(n_features, n_classes - 1) if init == "lda" else min(n_features, n_samples)
        if n_components > limit:
            what = "n_features and n_classes - 1" if init == "lda" else "n_features and n_samples"
            raise ValueError(
                f"init={init!r} gives at most min({what}) = {limit} components; got "
                f"n_components={n_components}. Use init='auto' or 'random'."
            )
        weights = initial_linear_weights(
            X, y, n_components, init=init, random_state=int(self._rng.integers(2**31))
        )
        with torch.no_grad():
            layer = self.module_.backbone
            layer.weight.copy_(torch.as_tensor(weights, dtype=layer.weight.dtype))

    def _check_training_data(self, X, y, *, reset):
        """``X`` (float32, one row per sample), encoded ``y`` and the input shape of a CNN."""
        X, input_shape = self._rows(X, reset=reset)
        X, y = validate_data(self, X, y, reset=reset, dtype=np.float32)
        return X, self._encode_labels(y), input_shape

    def _split_validation(self, X, y):
        """``X, y, X_val, y_val``: the training data and the data held out for early stopping."""
        train_idx, val_idx = _validation_split(y, self.validation_fraction, self._rng)
        return X[train_idx], y[train_idx], X[val_idx], y[val_idx]

    def _guarded(self):
        """Whether ``fit`` keeps the raw features when training did not beat them (``do_no_harm``,
        a parameter of the estimators that learn from labelled samples)."""
        return bool(getattr(self, "do_no_harm", False)) and not getattr(self, "_refitting", False)

    def _split_held_out(self, X, y):
        """``X, y, X_held, y_held``: the training data and the data ``do_no_harm`` scores on.

        A small set (fewer than ``_guard.SMALL_SET`` samples) holds out at least a quarter, and is
        trained again on all its samples when the network wins (see ``_refits``).
        """
        fraction = self.validation_fraction
        if X.shape[0] < _guard.SMALL_SET and not self.early_stopping:
            fraction = max(fraction, _guard.SMALL_SET_FRACTION)
        train_idx, held_idx = _guard.held_out_split(y, fraction, self._rng)
        return X[train_idx], y[train_idx], X[held_idx], y[held_idx]

    def _refits(self, n_samples, reset, checkpoint):
        """Whether a fresh fit of a small set whose network beat the raw features is trained
        again on all its samples (not with early stopping, whose split is its own, nor with a
        checkpoint, which holds the first fit)."""
        return (
            self._guarded()
            and reset
            and not checkpoint
            and not self.early_stopping
            and 0 < n_samples < _guard.SMALL_SET
            and not getattr(self, "raw_kept_", True)
        )

    def _choose_embedding(self, X, y, held_out):
        """Keep the trained network, or the raw features when it did not beat them on ``held_out``.

        Sets ``raw_kept_``, ``held_out_scores_`` and ``n_components_`` (the features' number when
        the raw features are kept). Without ``held_out`` (``do_no_harm=False``, ``partial_fit``)
        the trained network is used.
        """
        if not hasattr(self, "do_no_harm"):  # an estimator without the parameter
            return
        self.raw_kept_, self.held_out_scores_ = False, None
        if held_out is not None and held_out[0].shape[0]:
            X_held, y_held = held_out
            trained = _guard.held_out_scores(
                self._embed(X_held), y_held, self._embed(X), y, metric=self.metric
            )
            raw = _guard.held_out_scores(X_held, y_held, X, y)
            self.held_out_scores_ = {"raw": raw, "trained": trained}
            self.raw_kept_ = not _guard.keeps_trained(trained, raw, X_held.shape[0])
            if self.raw_kept_:
                warnings.warn(
                    f"{type(self).__name__} did not beat the raw features on the held-out samples "
                    f"(precision@1 / MAP@R {trained['precision_at_1']:.3f} / "
                    f"{trained['map_at_r']:.3f} trained, {raw['precision_at_1']:.3f} / "
                    f"{raw['map_at_r']:.3f} raw), so transform returns the features unchanged "
                    f"({self.n_features_in_} columns) rather than {self.n_components} "
                    "components; see raw_kept_. A larger max_iter or another backbone may beat "
                    "them; do_no_harm=False always uses the network.",
                    _guard.RawFeaturesKeptWarning,
                    stacklevel=_USER_FRAME,
                )
            if self.verbose:
                kept = "the raw features" if self.raw_kept_ else "the trained embedding"
                print(
                    f"do_no_harm: held-out precision@1 / MAP@R {trained['precision_at_1']:.3f} / "
                    f"{trained['map_at_r']:.3f} trained, {raw['precision_at_1']:.3f} / "
                    f"{raw['map_at_r']:.3f} raw; keeping {kept}.",
                    flush=True,
                )
        self.n_components_ = (
            self.n_features_in_ if self.raw_kept_ else int(self._embed(X[:1]).shape[1])
        )

    def _after_training(self, X, y, X_val, y_val):
        """Called once training is over, with the data of ``_train``; nothing to do here."""

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
        return np.reshape(np.asarray(X), (shape[0], -1)), input_shape

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
        probe, flops_per_row = _threads.probe(module, n_features, device)
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
            self.n_components,
            hidden_layer_sizes=tuple(np.atleast_1d(self.hidden_layer_sizes).tolist()),
            params=params,
            generator=generator,
        )
        normalize = L2Normalize() if self.normalize else torch.nn.Identity()
        return torch.nn.Sequential(OrderedDict(backbone=backbone, normalize=normalize))

    def _training_data(self, X, y, X_val, y_val):
        """What the training loop reads: ``(X_t, y_t, batches, validation_score)``.

        The training data on the device, ``batches() -> iterable`` of one epoch's batches (see
        :func:`sklearn_triplet._training.train`) and ``validation_score() -> float`` (None
        without a validation set): here class-balanced batches and the MAP@R of the validation
        samples.
        """
        X_t, y_t = _to_device(X, y, self.device_)
        n_batches = max(1, -(-X.shape[0] // self.batch_size))

        def batches():
            return class_balanced_batches(
                y,
                batch_size=self.batch_size,
                samples_per_class=self.samples_per_class,
                n_batches=n_batches,
                rng=self._rng,
            )

        validation_score = None
        if X_val is not None:

            def validation_score():
                return map_at_r(self._embed(X_val), y_val, metric=self.metric)

        return X_t, y_t, batches, validation_score

    def _train(
        self,
        X,
        y,
        X_val,
        y_val,
        *,
        n_epochs,
        start_time,
        callbacks,
        checkpoint=None,
        schedule=None,
        seed=0,
    ):
        module = self.module_
        optimizer = torch.optim.Adam(
            module.parameters(), lr=self.learning_rate_init, weight_decay=self.weight_decay
        )
        if self._optimizer_state is not None:
            optimizer.load_state_dict(self._optimizer_state)
            for group in optimizer.param_groups:  # the moments carry over, the settings are today's
                group.update(lr=self.learning_rate_init, weight_decay=self.weight_decay)
        X_t, y_t, batches, validation_score = self._training_data(X, y, X_val, y_val)

        def on_epoch_end(epoch, logs):
            self.n_iter_ = epoch
            # every callback sees every epoch; any of them can stop training
            return any([bool(callback(self, epoch, logs)) for callback in callbacks])

        def write_checkpoint(epoch, state):
            if checkpoint.due(epoch):
                checkpoint.write(self, optimizer, state, self.device_)

        keep_optimizer_state = True
        try:
            return _training.train(
                augment=self._augmentation(seed),
                module=module,
                optimizer=optimizer,
                batch_loss=self._batch_loss,
                statistics=self._statistics,
                X=X_t,
                y=y_t,
                batches=batches,
                n_epochs=n_epochs,
                first_epoch=self.n_iter_ + 1,
                history=self.history_,
                schedule=schedule,
                validation_score=validation_score,
                n_iter_no_change=self.n_iter_no_change,
                tol=self.tol,
                on_epoch_end=on_epoch_end,
                mixed_precision=self.mixed_precision,
                verbose=self.verbose,
                start_time=start_time,
                state=checkpoint.loop_state if checkpoint else None,
                checkpoint=write_checkpoint if checkpoint else None,
            )
        except FloatingPointError:
            keep_optimizer_state = False  # its moments may hold NaN; a warm start begins afresh
            raise
        finally:
            # Also on KeyboardInterrupt: the estimator keeps the weights and history trained so far.
            module.eval()
            self._optimizer_state = optimizer.state_dict() if keep_optimizer_state else None

    def _augmentation(self, seed):
        """``augment`` as the training loop calls it, on rows: None, or ``batch -> batch``.

        The samples are handed over in their shape (``_input_shape``, when the backbone reads
        one) with a generator on the device seeded from the fit's ``seed`` (no draw from the
        estimator's generator, so the batches are those of a fit without ``augment``), and
        flattened back.
        """
        augmentation = _augment.resolve(getattr(self, "augment", None))
        if augmentation is None:
            return None
        generator = torch.Generator(device=self.device_)
        generator.manual_seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))
        shape = self._input_shape

        def augment_rows(rows):
            batch = rows if shape is None else rows.reshape(rows.shape[0], *shape)
            out = augmentation(batch, generator)
            if not isinstance(out, torch.Tensor) or out.shape != batch.shape:
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(
                    f"augment must return a tensor of the batch's shape {tuple(batch.shape)}; "
                    f"got {got}."
                )
            return out.reshape(rows.shape)

        return augment_rows

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
            # A schedule ends training by design, its annealing lowering the last epochs' losses.
            and self.learning_rate == "constant"
        ):
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

    def _encode_labels(self, y):
        check_classification_targets(y)
        classes, y_encoded, counts = np.unique(y, return_inverse=True, return_counts=True)
        name = type(self).__name__
        if classes.shape[0] < 2:
            raise ValueError(
                f"{name} needs at least two classes to learn from; y has only one class, "
                f"{plain(classes[0])!r}."
            )
        if counts.max() < 2:
            raise ValueError(
                f"{name} needs at least one class with two or more samples to form a positive "
                f"pair; all {classes.shape[0]} classes in y have a single sample."
            )
        return y_encoded.astype(np.int64)

    @property
    def _statistics(self):
        """The declaration of the statistics of the loss in use."""
        return CALLABLE_STATISTICS if self.loss is not None else self._loss.statistics

    def _resolve_loss_options(self):
        """The built-in loss kernel's options (``self._loss.options``), ``"auto"`` resolved."""
        return {name: getattr(self, name) for name in self._loss.options}

    def _batch_loss(self, embeddings, labels, *, taxonomy, spread):
        """The loss of a batch and its statistics: a :class:`~sklearn_triplet._kernels.BatchLoss`.

        A user's ``loss`` is trained as given, its statistics counted with ``margin`` and
        ``metric``; otherwise the estimator's built-in loss kernel, with its options.
        """
        options = {"counts": True, "taxonomy": taxonomy, "spread": spread}
        if self.loss is not None:
            return callable_kernel(
                self.loss, embeddings, labels, margin=self.margin, metric=self.metric, **options
            )
        return self._loss.kernel(
            embeddings,
            labels,
            margin=self.margin,
            metric=self.metric,
            **self._resolve_loss_options(),
            **options,
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

    def score(self, X, y):
        """MAP@R of leave-one-out retrieval among the embeddings of ``X``.

        Each sample queries all the others; see :func:`sklearn_triplet.metrics.map_at_r`. Higher is
        better, 1.0 is perfect; usable by :class:`~sklearn.model_selection.GridSearchCV` without a
        downstream classifier.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples to embed.
        y : array-like of shape (n_samples,)
            Their labels.

        Returns
        -------
        score : float
        """
        return map_at_r(self.transform(X), y, metric=self.metric)

    def export_module(self):
        """The fitted network, its normalisation included, as a plain module on the CPU.

        Returns
        -------
        module : torch.nn.Sequential
            A copy in eval mode with children ``backbone`` and ``normalize``; it maps a float32
            tensor ``(batch, n_features)`` to embeddings and can be scripted or exported with
            :func:`torch.export.export`.
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
        _persistence.export_onnx(self, path, opset_version=opset_version)

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
        _persistence.save(self, path)

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
        return backbone in SHAPED_BACKBONES
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


def _shape(X):
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


def _check_batch_shape(batch_size, samples_per_class):
    """A batch must hold two classes of ``samples_per_class`` samples each."""
    if batch_size < 2 * samples_per_class:
        raise invalid(
            "batch_size",
            f"at least 2 * samples_per_class = {2 * samples_per_class}, so that a batch holds two "
            f"classes of samples_per_class={plain(samples_per_class)} samples each",
            f"batch_size={plain(batch_size)}. Lower samples_per_class or raise batch_size",
        )


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
    if not (isinstance(backbone, str) and backbone == "mlp"):
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


def _to_device(X, y, device):
    """Move the training data to the device once; pinned host memory when it does not fit there."""
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if X_t.nbytes * 2 < free:
            return X_t.to(device), y_t.to(device)
        return X_t.pin_memory(), y_t.pin_memory()
    return X_t.to(device), y_t.to(device)


def _tensors_to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _tensors_to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_tensors_to_cpu(v) for v in obj)
    return obj


def _validation_split(y, fraction, rng):
    """Stratified split keeping at least two samples of a class on each side.

    Classes with fewer than four samples cannot be split that way and stay in training whole (as
    queries they could not be scored on the validation side). ``fraction`` of every other class,
    rounded and clipped to ``[2, n_class - 2]``, goes to validation.
    """
    train_parts, val_parts = [], []
    for c in range(int(y.max()) + 1):
        members = rng.permutation(np.flatnonzero(y == c))
        n = members.shape[0]
        n_val = int(np.clip(round(fraction * n), 2, n - 2)) if n >= 4 else 0
        val_parts.append(members[:n_val])
        train_parts.append(members[n_val:])
    val_idx = np.sort(np.concatenate(val_parts))
    if np.unique(y[val_idx]).shape[0] < 2:
        counts = np.bincount(y)
        raise ValueError(
            "early_stopping needs at least two classes with four or more samples each, so that two "
            "of each stay on both sides of the validation split; got class sizes "
            f"{sorted(counts.tolist(), reverse=True)[:10]}. Use early_stopping=False."
        )
    return np.sort(np.concatenate(train_parts)), val_idx


def _assigning_init(cls):
    """An ``__init__`` for ``cls`` that assigns its parameters, with their explicit signature."""
    kinds = [inspect.Parameter.POSITIONAL_OR_KEYWORD] * cls._n_positional
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)] + [
        inspect.Parameter(
            name,
            kinds[i] if i < len(kinds) else inspect.Parameter.KEYWORD_ONLY,
            default=default,
        )
        for i, (name, default) in enumerate(cls._parameter_defaults().items())
    ]
    signature = inspect.Signature(parameters)

    def __init__(self, *args, **kwargs):
        arguments = signature.bind(self, *args, **kwargs)
        arguments.apply_defaults()
        for name, value in list(arguments.arguments.items())[1:]:
            setattr(self, name, value)

    __init__.__signature__ = signature
    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    __init__.__module__ = cls.__module__
    __init__.__doc__ = f"Store the parameters; see :class:`{cls.__name__}`."
    return __init__
