"""The embedders that learn from samples and their class labels: TripletEmbedder, SiameseEmbedder.

:class:`ClassLabelEmbedder` fills in the steps of :class:`~sklearn_triplet._base.BaseEmbedder` for
``X`` of shape ``(n_samples, n_features)`` (or images and signals for ``backbone="cnn"``) and class
labels ``y``:

- ``_check_fit_parameters``: a batch holds two classes of ``samples_per_class``; ``init`` only
  for ``backbone="linear"``;
- ``_check_training_data``: float32 rows and labels encoded ``0 .. n_classes - 1``;
- ``_split_validation``: ``validation_fraction`` of each class, two samples at least on each side;
- ``_initialise_from_data``: the linear backbone's weights from PCA or LDA (``init``);
- ``_training_data``: class-balanced P x K batches (at least ``MIN_BATCHES_PER_EPOCH`` an epoch),
  the ``augment`` of the training batches, and MAP@R of the held-out samples;
- ``_batch_loss``: the built-in loss kernel with the estimator's options, or the user's ``loss``.

Its own parameters are ``loss``, ``init``, ``samples_per_class`` and ``augment``; a concrete
estimator adds its
loss's options (``mining``, ``average``...), declares ``_loss`` and writes its ``__init__``.
"""

import inspect
import warnings
from collections.abc import Callable
from numbers import Integral

import numpy as np
import torch
from sklearn.utils.multiclass import check_classification_targets

from . import _distributed, _docstrings, _guard
from . import augment as _augment
from ._base import _USER_FRAME, BaseEmbedder, _describe, _is_builtin, stratified_split
from ._kernels import CALLABLE_STATISTICS, callable_kernel, triplet_kernel, triplet_part_kernel
from ._registry import NAMED_LOSSES
from ._training import TrainingData
from ._validation import Interval, StrOptions, fit_context, invalid, plain, validate_data
from .backbones import initial_linear_weights
from .metrics import map_at_r
from .sampling import class_balanced_batches

# The fewest batches in an epoch: a small data set (36 samples, one batch) still trains for
# max_iter * 4 optimiser steps, 200 with the defaults (user guide, "Small data sets").
MIN_BATCHES_PER_EPOCH = 4


class ClassLabelEmbedder(BaseEmbedder):
    """The base of the embedders that learn from class labels; see the module documentation."""

    loss: "str | Callable | None"
    loss_params: "dict | None"
    init: str
    samples_per_class: int
    augment: "str | Callable | None"

    _validation_score_name = "MAP@R"
    _negatives = "embeddings of different classes"

    _parameter_constraints: dict = {
        **BaseEmbedder._parameter_constraints,
        "loss": [StrOptions(set(NAMED_LOSSES)), callable, None],
        "loss_params": [dict, None],
        "init": [StrOptions({"auto", "pca", "lda", "random"})],
        "batch_size": [Interval(Integral, 4, None, closed="left")],
        "samples_per_class": [Interval(Integral, 2, None, closed="left")],
        "augment": [StrOptions({"auto", *_augment.RECIPES}), callable, None],
    }

    @classmethod
    def _docstring_sections(cls):
        """The shared training section, with this class's default of ``samples_per_class``."""
        default = inspect.signature(cls).parameters["samples_per_class"].default
        return {"training": _docstrings.training_section({"samples_per_class": default})}

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

    # -- the steps of BaseEmbedder._fit ----------------------------------------------------------

    def _check_fit_parameters(self):
        """A batch holds two classes; ``init`` sets the weights of ``backbone="linear"`` only."""
        _check_batch_shape(self.batch_size, self.samples_per_class)
        if self.init in ("pca", "lda") and not _is_builtin(self.backbone, "linear"):
            raise ValueError(
                f"init={self.init!r} sets the weights of backbone='linear' only; got "
                f"backbone={self.backbone!r}. Use init='auto' or 'random'."
            )
        self._named_loss_options()

    def _check_training_data(self, X, y, *, reset):
        """``X`` (float32, one row per sample), encoded ``y`` and the input shape of a CNN."""
        X, input_shape = self._rows(X, reset=reset)
        if _distributed.reads_shares(X):  # a memory map, read a share at a time
            X, y = _distributed.SharedRows.validated(self, X, y, reset=reset)
        else:
            X, y = validate_data(self, X, y, reset=reset, dtype=np.float32)
        return X, self._encode_labels(y), input_shape

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

    def _split_validation(self, X, y):
        """Hold out ``validation_fraction`` of each class, two samples of it at least on each side;
        classes with fewer than four samples stay in training whole (as queries they could not be
        scored on the validation side)."""
        train, val, n_held_out = stratified_split(
            y, self.validation_fraction, self._rng, min_per_side=2
        )
        if np.count_nonzero(n_held_out) < 2:
            counts = np.bincount(y)
            raise ValueError(
                "early_stopping needs at least two classes with four or more samples each, so that "
                "two of each stay on both sides of the validation split; got class sizes "
                f"{sorted(counts.tolist(), reverse=True)[:10]}. Use early_stopping=False."
            )
        return X[train], y[train], X[val], y[val]

    def _guarded(self) -> bool:
        """Whether ``fit`` keeps the raw features when training did not beat them (``do_no_harm``,
        a parameter of the estimators that learn from labelled samples)."""
        return bool(getattr(self, "do_no_harm", False)) and not getattr(self, "_refitting", False)

    def _unseen_classes(self) -> bool:
        """Whether ``do_no_harm`` holds out whole classes (``"unseen-classes"``)."""
        return getattr(self, "do_no_harm", False) == "unseen-classes"

    def _guard_uses_validation_split(self) -> bool:
        """Held-out samples of the training classes are early stopping's validation split when it
        is on; held-out classes are split before it."""
        return not self._unseen_classes()

    def _split_held_out(self, X, y, /):
        """``X, y, X_held, y_held``: the training data and the data ``do_no_harm`` scores on.

        A small set (fewer than ``_guard.SMALL_SET`` samples) holds out at least a quarter, and
        when its network wins, a new one trains on all the samples (see ``_refits``). With
        ``"unseen-classes"``, ``validation_fraction`` of the classes are held out whole.
        """
        fraction = self.validation_fraction
        if self._unseen_classes():
            train_idx, held_idx = _guard.held_out_classes_split(y, fraction, self._rng)
            return X[train_idx], y[train_idx], X[held_idx], y[held_idx]
        if X.shape[0] < _guard.SMALL_SET and not self.early_stopping:
            fraction = max(fraction, _guard.SMALL_SET_FRACTION)
        train_idx, held_idx = _guard.held_out_split(y, fraction, self._rng)
        return X[train_idx], y[train_idx], X[held_idx], y[held_idx]

    def _refits(self, n_samples, reset, checkpoint, /) -> bool:
        """Whether a fresh fit whose network beats the raw features trains a new one on all the
        data: always after held-out classes (the network must learn them too); a small set's
        (not with early stopping, whose split is its own). Never with a checkpoint, which holds
        the first fit."""
        if not (self._guarded() and reset and not checkpoint):
            return False
        if self._unseen_classes():
            return True
        return not self.early_stopping and 0 < n_samples < _guard.SMALL_SET

    def _check_epochs(self, n_epochs, /) -> int:
        """A small set's check trains ``_guard.SMALL_SET_CHECK_EPOCHS`` of the epochs: it judges
        the recipe, and the network used is the new one trained on all the samples. Held-out
        classes are checked with the whole schedule."""
        if self._unseen_classes():
            return n_epochs
        return max(1, round(n_epochs * _guard.SMALL_SET_CHECK_EPOCHS))

    def _choose_embedding(self, X, y, held_out, /):
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
            # held-out classes retrieve among each other; held-out samples among all the others
            X_train, y_train = (None, None) if self._unseen_classes() else (X, y)
            E_train = None if X_train is None else self._embed(X_train)
            trained = _guard.held_out_scores(
                self._embed(X_held), y_held, E_train, y_train, metric=self.metric
            )
            raw = _guard.held_out_scores(X_held, y_held, X_train, y_train)
            self.held_out_scores_ = {"raw": raw, "trained": trained}
            self.raw_kept_ = not _guard.keeps_trained(trained, raw, X_held.shape[0])
            if self.raw_kept_:
                warnings.warn(
                    f"{type(self).__name__} did not beat the raw features on the held-out "
                    f"{'classes' if self._unseen_classes() else 'samples'} "
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
            weight = self.module_.get_parameter("backbone.weight")
            weight.copy_(torch.as_tensor(weights, dtype=weight.dtype))

    def _training_data(self, X, y, X_val, y_val):
        """Class-balanced batches (:func:`~sklearn_triplet.sampling.class_balanced_batches`) and
        the MAP@R of the validation samples among themselves."""
        X_t, y_t = _to_device(X, y, self.device_)
        n_batches = max(MIN_BATCHES_PER_EPOCH, -(-X.shape[0] // self.batch_size))

        def batches():
            return class_balanced_batches(
                y,
                batch_size=self.batch_size,
                samples_per_class=self.samples_per_class,
                n_batches=n_batches,
                rng=self._rng,
            )

        def validation_map_at_r():
            return map_at_r(self._embed(X_val), y_val, metric=self.metric)

        return TrainingData(
            X_t,
            y_t,
            batches,
            None if X_val is None else validation_map_at_r,
            self._augmentation(),
        )

    def _augment_recipe(self):
        """``augment``, with ``"auto"`` made concrete: the recipe of the samples' kind for the
        standard networks (``backbone="fcn"`` or ``"resnet"``), ``"signals"`` for ``(channels,
        length)`` and ``"images"`` for ``(channels, height, width)``; None for any other
        backbone."""
        if self.augment != "auto":
            return self.augment
        standard = _is_builtin(self.backbone, "fcn") or _is_builtin(self.backbone, "resnet")
        if not standard or self._input_shape is None:
            return None
        return "signals" if len(self._input_shape) == 2 else "images"

    def _augmentation(self):
        """``augment`` as the training loop calls it, on rows: None, or ``batch -> batch``.

        The samples are handed over in their shape (``_input_shape``, when the backbone reads
        one) with a generator on the device seeded from the fit's, and flattened back.
        """
        augmentation = _augment.resolve(self._augment_recipe())
        if augmentation is None:
            return None
        generator = torch.Generator(device=self.device_)
        generator.manual_seed(int(self._rng.integers(2**31)))
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

    def _named_loss_options(self):
        """The options of the built-in loss named by ``loss``: its defaults, then ``loss_params``
        ({} for the estimator's own loss or a callable, which take none)."""
        if not isinstance(self.loss, str):
            if self.loss_params is not None:
                names = sorted(NAMED_LOSSES)
                raise ValueError(
                    f"loss_params applies to a built-in loss named by loss (one of {names}); got "
                    f"loss={_describe(self.loss)}. Set "
                    + (f"loss={names[0]!r}" if len(names) == 1 else "loss to one of them")
                    + ", or loss_params=None."
                )
            return {}
        defaults = NAMED_LOSSES[self.loss].params or {}
        given = self.loss_params or {}
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ValueError(
                f"loss_params of loss={self.loss!r} must be a dict with keys among "
                f"{sorted(defaults)}; got unknown key(s) {unknown}."
            )
        return {**defaults, **given}

    @property
    def _statistics(self):
        """The declaration of the statistics of the loss in use."""
        if isinstance(self.loss, str):
            return NAMED_LOSSES[self.loss].statistics
        if self.loss is not None:
            return CALLABLE_STATISTICS
        assert self._loss is not None  # every concrete estimator declares its loss
        return self._loss.statistics

    def _resolve_loss_options(self):
        """The built-in loss kernel's options (``self._loss.options``), ``"auto"`` resolved."""
        assert self._loss is not None  # every concrete estimator declares its loss
        return {name: getattr(self, name) for name in self._loss.options}

    def _batch_loss(self, embeddings, labels, *, taxonomy, spread):
        """The loss of a batch and its statistics: a :class:`~sklearn_triplet._kernels.BatchLoss`.

        A built-in loss named by ``loss`` is its kernel with its options (``loss_params``); a
        user's ``loss`` is trained as given, its statistics counted with ``margin`` and ``metric``;
        otherwise the estimator's own loss kernel, with its options.
        """
        options = {"counts": True, "taxonomy": taxonomy, "spread": spread}
        if isinstance(self.loss, str):
            return NAMED_LOSSES[self.loss].kernel(
                embeddings,
                labels,
                margin=self.margin,
                metric=self.metric,
                **self._named_loss_options(),
                **options,
            )
        if self.loss is not None:
            return callable_kernel(
                self.loss, embeddings, labels, margin=self.margin, metric=self.metric, **options
            )
        assert self._loss is not None  # every concrete estimator declares its loss
        return self._loss.kernel(
            embeddings,
            labels,
            margin=self.margin,
            metric=self.metric,
            **self._resolve_loss_options(),
            **options,
        )

    def _anchor_loss(self):
        """The triplet loss in use, split by anchors (``_kernels.triplet_part_kernel``), or None.

        In a process group the ranks then split each batch's anchors between them rather than
        every rank computing the whole loss (see :mod:`sklearn_triplet._distributed`). The other
        losses, and a user's, are computed whole on every rank.
        """
        if isinstance(self.loss, str):
            declaration, options = NAMED_LOSSES[self.loss], self._named_loss_options()
        elif self.loss is None:
            assert self._loss is not None  # every concrete estimator declares its loss
            declaration, options = self._loss, self._resolve_loss_options()
        else:
            return None
        if declaration.kernel is not triplet_kernel:
            return None

        def anchor_loss(embeddings, labels, anchors, *, taxonomy, spread):
            return triplet_part_kernel(
                embeddings,
                labels,
                anchors,
                margin=self.margin,
                metric=self.metric,
                **options,
                counts=True,
                taxonomy=taxonomy,
                spread=spread,
            )

        return anchor_loss

    # -- using a fitted estimator ------------------------------------------------------------------

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


def _check_batch_shape(batch_size, samples_per_class):
    """A batch must hold two classes of ``samples_per_class`` samples each."""
    if batch_size < 2 * samples_per_class:
        raise invalid(
            "batch_size",
            f"at least 2 * samples_per_class = {2 * samples_per_class}, so that a batch holds two "
            f"classes of samples_per_class={plain(samples_per_class)} samples each",
            f"batch_size={plain(batch_size)}. Lower samples_per_class or raise batch_size",
        )


def _to_device(X, y, device):
    """Move the training data to the device once; pinned host memory when it does not fit there.

    Rows read a share at a time stay where they are.
    """
    if isinstance(X, _distributed.SharedRows):
        return X, torch.from_numpy(y).to(device)
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if X_t.nbytes * 2 < free:
            return X_t.to(device), y_t.to(device)
        return X_t.pin_memory(), y_t.pin_memory()
    return X_t.to(device), y_t.to(device)
