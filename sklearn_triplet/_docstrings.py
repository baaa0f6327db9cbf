"""Docstring sections shared by the embedders (one text, so the classes never drift apart).

The description of ``history_`` is written from the declaration of the loss's statistics.
"""

import inspect
import textwrap

from ._kernels import CALLABLE_STATISTICS, TAXONOMY
from ._registry import NAMED_LOSSES
from .backbones import BACKBONES

_BACKBONE_PARAMETERS = """\
    n_components : int, default=32
        Width of the embedding (for the built-in backbones).
%(backbone_entry)s
    hidden_layer_sizes : int or tuple of int, default=(256,)
        Hidden widths of the ``"mlp"`` backbone.
    backbone_params : dict, default=None
        Extra settings of the backbone builder, searchable by grid search as whole dicts (for
        ``"fcn"`` and ``"resnet"``: ``input_shape``, ``width``, ``kernel_sizes``, ``pool``,
        ``downsample``; for ``"cnn"``: ``input_shape``, ``channels``, ``hidden_size``,
        ``kernel_size``; for ``"mlp"``: ``activation``; for a classifier given as a module:
        ``input_shape`` and ``freeze``).
    normalize : bool, default=True
        Scale each embedding to unit Euclidean norm (as in FaceNet), in training and in
        ``transform``.
    metric : {"euclidean", "sqeuclidean", "cosine"}, default="euclidean"
        Distance between embeddings used by the loss, the mining and ``score``. ``"cosine"`` is
        ``1 - cos``."""


def _backbone_entry():
    """The entry of ``backbone``, with the built-in backbones read from the registry."""
    names = ", ".join(f'"{name}"' for name in BACKBONES)
    flat = [f'``"{name}"``' for name, spec in BACKBONES.items() if not spec.reads_arrays]
    flat = " and ".join([", ".join(flat[:-1]), flat[-1]] if len(flat) > 1 else flat)
    text = " ".join(
        ["The network mapping a sample to its embedding."]
        + [f'``"{name}"``: {spec.summary}' for name, spec in BACKBONES.items()]
        + [f"{flat} take 2-D ``X``."]
        + [
            "A module instance is deep-copied at fit (the given one is never changed); a "
            "classifier (a child named ``fc``, ``classifier``, ``head`` or ``heads``, as "
            "torchvision names them) has the last linear layer of its head replaced by a "
            "projection to ``n_components`` and reads samples in their shape "
            "(:func:`~sklearn_triplet.backbones.replace_head`). A class or factory is called as "
            "``backbone(n_features, n_components, **backbone_params)``."
        ]
    )
    default = next(iter(BACKBONES))
    return "\n".join(
        [
            f'    backbone : {{{names}}}, torch.nn.Module or callable, default="{default}"',
            textwrap.fill(text, **_WRAP),
        ]
    )


_WRAP = {
    "width": 100,
    "initial_indent": " " * 8,
    "subsequent_indent": " " * 8,
    "break_on_hyphens": False,
}

BACKBONE_PARAMETERS = _BACKBONE_PARAMETERS % {"backbone_entry": _backbone_entry()}

TRAINING_PARAMETERS = """\
    init : {"auto", "pca", "lda", "random"}, default="auto"
        How the weights of ``backbone="linear"`` start, as in
        :class:`~sklearn.neighbors.NeighborhoodComponentsAnalysis`. ``"pca"``: the leading
        principal axes of the training data; ``"lda"``: its leading linear discriminant
        directions; ``"random"``: torch's initialisation of the layer. ``"auto"``: ``"lda"`` when
        ``n_components <= min(n_features, n_classes - 1)``, else ``"pca"`` when ``n_components <=
        min(n_features, n_samples)``, else ``"random"``. Other backbones always start from their
        own initialisation (``"auto"`` or ``"random"``).
    batch_size : int, default=128
        Target samples per batch. Batches are class-balanced: ``P = batch_size //
        samples_per_class`` classes (at most all of them), drawn with probability proportional to
        their size and always including two classes with two or more samples, then up to
        ``batch_size // P`` samples of each.
    samples_per_class : int, default=%(samples_per_class)s
        The minimum K of the P x K batches: each class drawn gives that many samples, or all it
        has. ``batch_size`` must be at least ``2 * samples_per_class``.
    augment : {"auto", "signals", "images"}, callable or None, default="auto"
        Random changes applied to each training batch (never to ``transform``'s input), drawn
        from a generator seeded by the fit, so a fit with ``random_state`` stays deterministic. A
        callable is called as ``augment(batch, generator) -> batch`` on a float tensor of the
        samples in their shape, ``(B, channels, length)`` or ``(B, channels, height, width)``
        with the convolutional backbones, else ``(B, n_features)``, and returns the same shape.
        ``"signals"``: jitter and scaling; ``"images"``: random translations by up to 2 pixels
        (:mod:`sklearn_triplet.augment`). ``"auto"``: the recipe of the samples' kind with the
        standard networks (``backbone="fcn"`` or ``"resnet"``), where it was measured to help,
        and none with any other backbone. None: no augmentation.
    max_iter : int, default=50
        Number of epochs; an epoch is ``ceil(n_samples / batch_size)`` batches, and at least 4,
        so that a small data set still trains for ``4 * max_iter`` steps.
    learning_rate : {"cosine", "constant"}, default="cosine"
        Schedule of Adam's learning rate over the steps (batches) of a ``fit``. ``"cosine"``: a
        linear warm-up from ``learning_rate_init / n_warmup`` to ``learning_rate_init`` over the
        first ``n_warmup = max(1, round(0.05 * n_steps))`` steps, then half a cosine down to just
        above 0 at the last step, ``n_steps`` being ``max_iter`` times the batches per epoch (with
        early stopping too; a fit resumed from a checkpoint goes on where it stopped).
        ``"constant"``: ``learning_rate_init`` throughout. Each ``fit``, a warm start included,
        runs the whole schedule anew; ``partial_fit`` trains at ``learning_rate_init``.
    learning_rate_init : float, default=3e-3
        Initial (peak, with ``"cosine"``) learning rate of the Adam optimiser.
    weight_decay : float, default=0.0
        L2 penalty (Adam's ``weight_decay``).
    mixed_precision : bool, default=False
        Run the backbone under bfloat16 autocast (useful on recent GPUs); the loss stays float32.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified) and stop when its MAP@R has not
        improved by more than ``tol`` for ``n_iter_no_change`` epochs; the best weights are
        restored. Without it, training runs exactly ``max_iter`` epochs.
    validation_fraction : float, default=0.1
        Share of each class held out for early stopping. At least two samples of a class stay on
        each side; classes with fewer than four samples stay in training whole.
    n_iter_no_change : int, default=10
        Patience of early stopping, in epochs.
    tol : float, default=1e-4
        Smallest validation-score improvement that counts for early stopping. Without early
        stopping and with ``learning_rate="constant"``, when ``fit`` reaches ``max_iter`` while the
        training loss or the active fraction still falls by more than ``tol`` per epoch (on
        average over the last ``n_iter_no_change`` epochs), a
        :class:`~sklearn.exceptions.ConvergenceWarning` says to train longer. Under a schedule,
        whose decay flattens the last epochs of any fit, it warns when the last tenth of the
        epochs still fell by more than ``tol`` and half the fit's mean fall per epoch (see the
        User Guide).
    warm_start : bool, default=False
        When True, ``fit`` continues from the fitted weights, optimiser state and history. The
        parameters that define the network (``n_components``, ``backbone``,
        ``hidden_layer_sizes``, ``backbone_params``, ``normalize``) must keep their values: a
        change is an error that says to set ``warm_start=False``. The others (``margin``,
        ``mining``, ``metric``, ``learning_rate_init``, ``batch_size``, ``device``...) apply to the
        epochs to come (``init`` only to a fresh network).
    callback : callable or list of callables, default=None
        ``callback(estimator, epoch, logs)`` is called after each epoch with that epoch's history
        row; returning True stops training. Several are called in their order, every epoch, and
        any of them can stop training.
    checkpoint : str or path-like, default=None
        A file where ``fit`` saves the whole state of training every ``checkpoint_every`` epochs
        (weights, optimiser, ``history_``, early stopping and every random generator), written
        atomically, so that a fit killed by a crash, a pre-empted machine or a SIGKILL loses at
        most those epochs. When ``fit`` starts and the file exists, it resumes from it and ends
        with the weights an uninterrupted fit would have; a file from another fit (other
        parameters or data) is an error. The file is deleted when ``fit`` ends without error.
        ``partial_fit`` ignores it. See :ref:`checkpoints`.
    checkpoint_every : int, default=1
        Epochs between checkpoints.
    device : "auto", str or torch.device, default="auto"
        Where to train and embed. ``"auto"`` picks CUDA when available, else Apple MPS, else the
        CPU, and is resolved again when a saved estimator is loaded.
    n_threads : int, default=None
        PyTorch's intra-op CPU threads during ``fit``, ``partial_fit`` and ``transform``, set in
        the calling thread only and restored afterwards. None decides from the work: one thread
        until a layer gives each thread about 50 million floating-point operations per batch
        (the default network on small tabular data always runs on one), never more than the
        process's cores or ``OMP_NUM_THREADS``. The choice does not depend on how busy the machine
        is, so results stay reproducible; see :ref:`threads`.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, batch sampling and the validation split, through generators
        owned by the fit, so concurrent fits in threads do not disturb each other. An int gives the
        same transform on every CPU fit with the same thread count; the global numpy and torch
        random states are left untouched. A backbone class or factory, a module that draws random
        numbers in training and a callable ``loss`` draw from torch's global generator, which the
        fit seeds from ``random_state`` around them and restores (see :ref:`threads`).
    verbose : int, default=0
        0 silent; 1 a progress bar over epochs with the loss and validation score; 2 one line per
        epoch."""

ATTRIBUTES = """\
    Attributes
    ----------
    module_ : torch.nn.Sequential
        The trained network, with children ``backbone`` and ``normalize``, on ``device_``.
    n_components_ : int
        Width of the embedding (the backbone's output width).
    history_ : list of dict
%(history)s
    n_iter_ : int
        Number of epochs trained.
    validation_scores_ : list of float or None
        MAP@R on the validation split after each epoch of the last ``fit`` with
        ``early_stopping=True`` (as :class:`~sklearn.neural_network.MLPClassifier` has them);
        None without early stopping.
    best_validation_score_ : float or None
        The best of ``validation_scores_``, that of the weights kept; None without early stopping.
    device_ : torch.device
        The device in use.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string feature names."""


DO_NO_HARM_PARAMETER = """\
    do_no_harm : bool or "unseen-classes", default=True
        Never be worse than the features given, on held-out data: ``fit`` holds out
        ``validation_fraction`` of each class (a quarter of a set under 500 samples; the
        fractional sample rounded up or down at random, and at least one sample of the class left
        in training; with ``early_stopping=True``, its validation split), trains on the rest, and
        scores on the held-out samples, as queries retrieving among all the other samples given
        to ``fit``, both the trained embedding (in ``metric``) and the raw features (Euclidean
        distance, what a nearest-neighbour search on ``X`` uses). The embedding is kept only when
        it is at least as good on MAP@R and on precision@1 (1-NN accuracy, up to one held-out
        query, the noise of the split), and better on one; otherwise ``transform`` returns the
        features unchanged (as float32 rows, ``n_components_ = n_features_in_``), ``raw_kept_`` is
        True and a :class:`~sklearn_triplet.RawFeaturesKeptWarning` says so. On a small set (under
        500 samples) the network checked trains half of ``max_iter``; when it wins, a new
        network trains ``max_iter`` epochs on all the samples, the network ``do_no_harm=False``
        gives. The network (when the raw features are kept, the one checked) stays in
        ``module_`` either way (``warm_start`` goes on from it).

        ``"unseen-classes"`` guards retrieval among classes that training never saw (open-set
        search, new identities): ``validation_fraction`` of the classes (two at least; four
        classes are needed) are held out whole, the held-out samples retrieve among each other,
        and a network that wins is trained again on all the classes. Held-out samples of the
        training classes cannot tell this: a network may be far better than the raw features on
        the classes it learned and worse on new ones. False trains on all the data and always
        uses the network. ``partial_fit`` always uses the network."""

DO_NO_HARM_ATTRIBUTES = """\
    raw_kept_ : bool
        True when ``do_no_harm`` found the trained embedding no better than the raw features on
        the held-out samples (or classes), and ``transform`` returns the features unchanged.
    held_out_scores_ : dict or None
        ``{"trained": {...}, "raw": {...}}``, each ``{"precision_at_1": float, "map_at_r": float}``
        on the held-out samples of the last ``fit`` with ``do_no_harm=True``; None otherwise."""


def _every(n):
    return "every batch" if n == 1 else f"every {n}th batch (the first, the {n + 1}th...)"


def _counts_and_fractions(statistics):
    """The documentation of a loss's counts and fractions, two ``;``-separated lists."""
    counts = "; ".join(f"``{count.name}`` ({count.doc})" for count in statistics.counts)
    fractions = "; ".join(
        f"``{fraction.name}`` ({fraction.doc})" for fraction in statistics.fractions
    )
    return counts, fractions


def history_attributes(statistics, callable_statistics):
    """The ``Attributes`` section of an embedder whose loss reports ``statistics``."""
    counts, fractions = _counts_and_fractions(statistics)
    taxonomy = ", ".join(f"``{count.name}``" for count in TAXONOMY)
    text = (
        "One row per epoch: ``epoch``; ``loss``, the mean over the epoch's batches; the epoch's "
        f"counts, summed over its batches: {counts}; their fractions: {fractions}, NaN when the "
        "denominator is 0; ``mean_distance``, the mean distance between embeddings of different "
        "classes in the last batch, in units of ``metric`` (below half the margin at the end of "
        "training, a collapse is warned); ``validation_score``, with early stopping; and "
        "``time``, the seconds since the fit began (torch's one-time start-up in a process, "
        f"seconds, is paid before the clock starts). The taxonomy ({taxonomy}) is counted on "
        f"{_every(statistics.taxonomy_every)} of an epoch"
        + (
            ""
            if statistics.taxonomy_every == 1
            else ", to keep the statistics cheap; the other counts on every batch"
        )
        + ". With ``loss=callable``, the counts are the taxonomy's alone, counted on "
        f"{_every(callable_statistics.taxonomy_every)}, and ``active_fraction`` is "
        "``n_active / n_triplets``."
    )
    history = textwrap.fill(text, width=100, initial_indent=" " * 8, subsequent_indent=" " * 8)
    return ATTRIBUTES % {"history": history}


def training_section(defaults):
    """The shared training section with an estimator's ``defaults`` where they differ between
    estimators (``samples_per_class``)."""
    return TRAINING_PARAMETERS % {"samples_per_class": defaults["samples_per_class"]}


def loss_section():
    """The entries of ``loss`` and ``loss_params`` of the class-label estimators, with the built-in
    losses they can name, read from the registry."""
    named = "; ".join(f'``"{name}"``, {loss.summary}' for name, loss in NAMED_LOSSES.items())
    options = "; ".join(
        f'for ``"{name}"``: ' + ", ".join(f"``{key}``" for key in loss.params or {})
        for name, loss in NAMED_LOSSES.items()
    )
    choices = ", ".join(f'"{name}"' for name in NAMED_LOSSES)
    loss = (
        "None trains the estimator's own loss (above). The name of a built-in loss trains that "
        "loss, with its own mining, in its place; ``mining`` and ``average`` are then unused, and "
        f"``history_`` holds that loss's counts{f'. The names: {named}' if named else ''}. "
        "A callable replaces the loss: "
        "``loss(embeddings, labels) -> scalar tensor``, with embeddings of shape ``(batch, "
        "n_components)`` (normalised when ``normalize=True``) and integer labels of shape "
        "``(batch,)``; pytorch-metric-learning's losses have this signature, and ``metric`` then "
        "only drives the statistics of ``history_``. With a name or a callable, ``margin`` only "
        "drives the triplet statistics of ``history_``."
    )
    params = (
        f"Options of the built-in loss named by ``loss``, overriding its defaults ({options}); "
        "None keeps them all. Only with a loss name."
    )
    wrap = _WRAP
    return "\n".join(
        [
            f"    loss : {f'{{{choices}}}, ' if choices else ''}callable or None, default=None",
            textwrap.fill(loss, **wrap),
            "    loss_params : dict, default=None",
            textwrap.fill(params, **wrap),
        ]
    )


def fill(doc, statistics, **overrides):
    """Put the shared sections into ``doc`` where a line says ``%(name)s``.

    The docstring is cleaned of its indentation first (as Python 3.13 does when it compiles), and
    the sections with it, so the result does not depend on the Python version. ``overrides``
    replace sections by name (the estimators that learn from given tuples word their own).
    """
    sections = {
        "backbone": BACKBONE_PARAMETERS,
        "training": training_section({"samples_per_class": 4}),
        "loss": loss_section(),
        "attributes": history_attributes(statistics, CALLABLE_STATISTICS),
        "do_no_harm": DO_NO_HARM_PARAMETER,
        "do_no_harm_attributes": DO_NO_HARM_ATTRIBUTES,
        **overrides,
    }
    return inspect.cleandoc(doc) % {
        name: textwrap.dedent(section) for name, section in sections.items()
    }


# -- the estimators that learn from given pairs and triplets ---------------------------------------

# Their entries of the backbone section that differ from those of the embedders of labelled samples.
_TUPLE_BACKBONE_ENTRIES = {
    "n_components": """\
    n_components : int or None, default=None
        Width of the embedding (for the built-in backbones). None: as many components as the
        points have features, so that the ``"residual"`` backbone starts at the points' raw
        distances (scaled) rather than at their projection on fewer axes, which on the digits
        cost KNN 0.3 to 0.7 points of accuracy from 500 and 2,000 pairs or triplets. With many
        uninformative features fewer components can do better (32 on the digits with 200 noise
        features: 0.860 against 0.818 from 500 pairs).""",
    "backbone": """\
    backbone : {"mlp", "linear", "cnn", "fcn", "resnet", "residual"}, torch.nn.Module or \
callable, default="residual"
        The network mapping a point to its embedding. ``"residual"``: a linear map plus fully
        connected layers of ``hidden_layer_sizes`` with ReLU whose output layer starts at zero,
        the linear map started at the leading principal axes of the points the tuples use, scaled
        so that the root mean square distance between two of them is 1: training starts from the
        points' own geometry (their raw distances, scaled, when ``n_components`` is None or at
        least ``n_features``).
        ``"mlp"``: fully connected layers with ReLU, from random weights. ``"linear"``: a learned
        linear map, from random weights. ``"cnn"``: a small convolutional network, ``"fcn"``:
        the fully convolutional network, ``"resnet"``: the residual network (Wang, Yan & Oates
        2017), for images and signals as in :class:`TripletEmbedder`. A module instance is
        deep-copied at fit (the given one is never changed); a class or factory is called as
        ``backbone(n_features, n_components, **backbone_params)``.""",
    "hidden_layer_sizes": """\
    hidden_layer_sizes : int or tuple of int, default=(256,)
        Hidden widths of the ``"residual"`` and ``"mlp"`` backbones.""",
    "normalize": """\
    normalize : bool, default=False
        Scale each embedding to unit Euclidean norm, in training and in ``transform``. Off by
        default, so that the residual backbone starts at the points' geometry (on the digits,
        KNN on the normalised features loses one to two points of accuracy).""",
}

# Their entries that differ from those of the embedders of labelled samples; every other entry is
# taken from TRAINING_PARAMETERS and ATTRIBUTES as it stands there.
_TUPLE_TRAINING_ENTRIES = {
    "learning_rate": """\
    learning_rate : {"cosine", "constant"}, default="cosine"
        Schedule of Adam's learning rate over the steps (batches) of a ``fit``. ``"cosine"``: a
        linear warm-up over the first 5%% of the steps, then half a cosine down to just above 0
        at the last step, run anew by each ``fit``. ``"constant"``: ``learning_rate_init``
        throughout. ``partial_fit`` trains at ``learning_rate_init``.""",
    "learning_rate_init": """\
    learning_rate_init : float, default=3e-4
        Learning rate (the peak, with ``"cosine"``) of the Adam optimiser. Low by default: the
        residual backbone starts at the points' geometry, and 3e-4 keeps it from moving further
        than the %(kind)ss justify (from 2,000 pairs of the digits, KNN accuracy 0.980 against
        0.973 at 1e-3, where the raw pixels score 0.973).""",
    "batch_size": """\
    batch_size : int, default=128
        Number of %(kind)ss per batch; each distinct point of a batch is embedded once.""",
    "max_iter": """\
    max_iter : int, default=50
        Number of epochs; an epoch trains on every %(kind)s once, in a random order.""",
    "weight_decay": """\
    weight_decay : float, default=0.0
        L2 penalty (Adam's ``weight_decay``). With few %(kind)ss or many uninformative features,
        a value such as 0.01 often generalises better (see the benchmarks).""",
    "early_stopping": """\
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the %(kind)ss and stop when their %(score)s has not
        improved by more than ``tol`` for ``n_iter_no_change`` epochs; the best weights are
        restored. Without it, training runs exactly ``max_iter`` epochs.""",
    "validation_fraction": """\
    validation_fraction : float, default=0.1
        Share of the %(kind)ss held out for early stopping:
        %(split)s.""",
    "random_state": """\
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, the order of the %(kind)ss and the validation split. An int
        gives the same transform on every CPU fit; the global numpy and torch random states are
        left untouched.""",
}
_TUPLE_ATTRIBUTE_ENTRIES = {
    "history_": """\
    history_ : list of dict
%(history)s""",
    "validation_scores_": """\
    validation_scores_ : list of float or None
        The %(score)s of the held-out %(kind)ss after each epoch of the last ``fit`` with
        ``early_stopping=True``; None without early stopping.""",
    "n_features_in_": """\
    n_features_in_ : int
        Number of features of a point (the last axis of feature tuples, the columns of
        ``points``); ``transform`` takes points of this width.""",
    "feature_names_in_": """\
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features, when ``points`` is a DataFrame with string column names.""",
}


def _entries(section):
    """``{name: text}`` of a numpydoc section's entries (a header line at four spaces, then its
    description), in order."""
    entries, name = {}, None
    for line in section.splitlines():
        if line.startswith("    ") and not line.startswith("     ") and " : " in line:
            name = line.split(" : ", 1)[0].strip()
            entries[name] = line
        elif name is not None:
            entries[name] += "\n" + line
    return entries


def _refill(entry):
    """An entry with its description wrapped again at 100 columns."""
    header, *description = entry.splitlines()
    if description and not description[0].startswith(" " * 8 + "%"):
        text = " ".join(line.strip() for line in description)
        description = [
            textwrap.fill(text, width=100, initial_indent=" " * 8, subsequent_indent=" " * 8)
        ]
    return "\n".join([header, *description])


def tuple_sections(statistics, *, parameters, kind, score, split, negatives, own_attributes=""):
    """The ``training`` and ``attributes`` sections of an estimator learning from ``kind``s, with
    the entries of the training section that are among its ``parameters``."""
    values = {"kind": kind, "score": score, "split": split}
    training = {
        name: _refill(_TUPLE_TRAINING_ENTRIES[name] % values)
        if name in _TUPLE_TRAINING_ENTRIES
        else text
        for name, text in _entries(TRAINING_PARAMETERS).items()
        if name in parameters
    }
    training["warm_start"] = _refill(training["warm_start"].replace("``mining``, ", ""))
    counts, fractions = _counts_and_fractions(statistics)
    text = (
        "One row per epoch: ``epoch``; ``loss``, the mean over the epoch's batches; the epoch's "
        f"counts, summed over its batches: {counts}; their fractions: {fractions}, NaN when the "
        f"denominator is 0; ``mean_distance``, the mean distance between {negatives} in the last "
        "batch, in units of ``metric`` (below half the margin at the end of training, a collapse "
        "is warned); ``validation_score``, with early stopping; and ``time``, the seconds since "
        "the fit began."
    )
    values["history"] = textwrap.fill(
        text, width=100, initial_indent=" " * 8, subsequent_indent=" " * 8
    )
    attributes = {
        name: _refill(_TUPLE_ATTRIBUTE_ENTRIES[name] % values)
        if name in _TUPLE_ATTRIBUTE_ENTRIES
        else text
        for name, text in _entries(ATTRIBUTES).items()
    }
    backbone = {
        name: _TUPLE_BACKBONE_ENTRIES.get(name, text)
        for name, text in _entries(BACKBONE_PARAMETERS).items()
    }
    return {
        "backbone": "\n".join(str(text) for text in backbone.values()),
        "training": "\n".join(training.values()),
        "attributes": "    Attributes\n    ----------\n"
        + own_attributes
        + "\n".join(attributes.values()),
    }
