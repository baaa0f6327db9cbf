"""Plots of embeddings and of training histories, in scikit-learn's Display style.

Each display is built from an estimator (``from_estimator``) or from data
(``from_embedding``, ``from_history``), draws with ``plot`` and keeps the
matplotlib objects as attributes ending in ``_``. matplotlib is optional: it
is imported only when a plot is drawn.
"""

from collections.abc import Mapping

import numpy as np
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.manifold import TSNE
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_consistent_length, column_or_1d

from ._kernels import CALLABLE_STATISTICS, CONTRASTIVE_STATISTICS, TRIPLET_STATISTICS
from ._validation import check_array, embedding_part

__all__ = ["EmbeddingDisplay", "HistoryDisplay"]

# Legends are drawn by default up to this many classes.
_MAX_LEGEND_CLASSES = 20


def _import_pyplot(caller):
    """matplotlib.pyplot, or an ImportError that says how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            f"{caller} requires matplotlib, which is not installed. "
            "Install it with `pip install matplotlib`."
        ) from error
    return plt


def _pca(embedding, random_state):
    pca = PCA(n_components=2, random_state=random_state)
    points = pca.fit_transform(embedding)
    share = 100 * pca.explained_variance_ratio_
    return points, (f"PCA 1 ({share[0]:.0f}% variance)", f"PCA 2 ({share[1]:.0f}% variance)")


def _tsne(embedding, random_state):
    perplexity = min(30.0, max(1.0, (embedding.shape[0] - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=random_state)
    return tsne.fit_transform(embedding), ("t-SNE 1", "t-SNE 2")


_PROJECTIONS = {"pca": _pca, "tsne": _tsne}

# projection="auto" draws t-SNE up to this many points, PCA beyond: t-SNE keeps each point's
# nearest neighbours near it (what a KNN sees) where PCA overlaps classes, but its cost grows
# faster than linearly (on one core: about 2 s for 450 points, 10 s for 2,000, 30 s for 5,000;
# see benchmarks/projections.py).
_TSNE_MAX_SAMPLES = 5000


def _auto(embedding, random_state):
    if embedding.shape[0] <= _TSNE_MAX_SAMPLES:
        return _tsne(embedding, random_state)
    return _pca(embedding, random_state)


def _project(embedding, projection, random_state):
    """Two-dimensional points and axis labels for an embedding of any width."""
    n_components = embedding.shape[1]
    if n_components == 1:
        jitter = check_random_state(random_state).uniform(-0.5, 0.5, embedding.shape[0])
        return np.column_stack([embedding[:, 0], jitter]), ("component 1", "jitter")
    if n_components == 2:
        return embedding, ("component 1", "component 2")
    if hasattr(projection, "fit_transform"):
        points = np.asarray(projection.fit_transform(embedding))
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(
                f"projection {type(projection).__name__} must return two columns; got "
                f"an array of shape {points.shape}."
            )
        name = type(projection).__name__
        return points, (f"{name} 1", f"{name} 2")
    if projection == "auto":
        return _auto(embedding, random_state)
    return _PROJECTIONS[projection](embedding, random_state)


def _check_projection(projection):
    if hasattr(projection, "fit_transform"):
        return
    if not (isinstance(projection, str) and (projection == "auto" or projection in _PROJECTIONS)):
        raise ValueError(
            f"projection={projection!r} is not supported; choose one of "
            f"{sorted(['auto', *_PROJECTIONS])} or pass an object with fit_transform."
        )


def _class_colors(n_classes):
    from matplotlib import color_sequences, colormaps

    if n_classes <= 20:
        return color_sequences["tab10" if n_classes <= 10 else "tab20"][:n_classes]
    return colormaps["turbo"](np.linspace(0, 1, n_classes))


class EmbeddingDisplay:
    """Two-dimensional view of an embedding, coloured by class.

    Build it with :meth:`from_estimator` or :meth:`from_embedding`, which
    project wider embeddings to two dimensions; the constructor takes points
    already in two dimensions.

    Parameters
    ----------
    points : ndarray of shape (n_samples, 2)
        Coordinates to plot.
    y : ndarray of shape (n_samples,)
        Class of each point.
    axis_labels : tuple of str, default=("component 1", "component 2")
        Labels of the horizontal and vertical axes.

    Attributes
    ----------
    scatters_ : list of matplotlib PathCollection
        One scatter per class, in the order of ``classes_``.
    classes_ : ndarray of shape (n_classes,)
        The classes, sorted.
    legend_ : matplotlib Legend or None
        The legend, when drawn.
    ax_ : matplotlib Axes
        Axes with the plot.
    figure_ : matplotlib Figure
        Figure containing the plot.

    See Also
    --------
    HistoryDisplay : Training curves of an embedder.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.decomposition import PCA
    >>> from sklearn_triplet.plotting import EmbeddingDisplay
    >>> X, y = load_digits(return_X_y=True)
    >>> embedder = PCA(n_components=8).fit(X)
    >>> display = EmbeddingDisplay.from_estimator(embedder, X[:200], y[:200], random_state=0)
    >>> len(display.scatters_), display.ax_.get_xlabel()
    (10, 't-SNE 1')
    """

    def __init__(self, points, y, *, axis_labels=("component 1", "component 2")):
        self.points = points
        self.y = y
        self.axis_labels = axis_labels

    def plot(self, ax=None, *, legend=None, **kwargs):
        """Draw one scatter per class.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; None makes a new figure.
        legend : bool, default=None
            Whether to draw a legend of the classes, beside the axes; None
            draws one when there are at most 20 classes.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.scatter`.

        Returns
        -------
        display : EmbeddingDisplay
            The display, with its matplotlib objects stored.
        """
        plt = _import_pyplot("EmbeddingDisplay.plot")
        if ax is None:
            _, ax = plt.subplots(layout="constrained")
        points, y = np.asarray(self.points), np.asarray(self.y)
        self.classes_ = np.unique(y)
        style = {"s": 12, "alpha": 0.8, **kwargs}
        self.scatters_ = [
            ax.scatter(*points[y == label].T, color=color, label=str(label), **style)
            for label, color in zip(self.classes_, _class_colors(len(self.classes_)))
        ]
        ax.set_xlabel(self.axis_labels[0])
        ax.set_ylabel(self.axis_labels[1])
        if legend is None:
            legend = len(self.classes_) <= _MAX_LEGEND_CLASSES
        self.legend_ = None
        if legend:
            # Beside the axes, never over the points.
            self.legend_ = ax.legend(
                title="class",
                markerscale=1.5,
                fontsize="small",
                loc="upper left",
                bbox_to_anchor=(1.01, 1.0),
                borderaxespad=0.0,
            )
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_embedding(
        cls, embedding, y, *, projection="auto", ax=None, random_state=None, legend=None, **kwargs
    ):
        """Plot an embedding, projected to two dimensions when wider.

        Parameters
        ----------
        embedding : array-like of shape (n_samples, n_components)
            Embedded samples. Two components are plotted as they are; one is
            plotted against random vertical jitter; more are projected.
        y : array-like of shape (n_samples,)
            Class of each sample.
        projection : {"auto", "tsne", "pca"} or object with ``fit_transform``, \
                default="auto"
            Projection used when the embedding has more than two components.
            ``"tsne"``: scikit-learn's :class:`~sklearn.manifold.TSNE`, which
            keeps each point's nearest neighbours near it, so that the view
            shows the classes as a nearest-neighbour classifier sees them; it
            takes seconds (on one core, about 2 s for 450 points, 30 s for
            5,000). ``"pca"``: the first two principal components
            (:class:`~sklearn.decomposition.PCA`), at once, but a linear view
            in which classes far apart in the embedding can overlap.
            ``"auto"``: t-SNE up to 5,000 samples, PCA beyond. Or any
            transformer whose ``fit_transform`` returns two columns.
        ax : matplotlib Axes, default=None
            Axes to draw on; None makes a new figure.
        random_state : int, RandomState instance or None, default=None
            Seed of the projection and of the jitter.
        legend : bool, default=None
            Whether to draw a legend; None draws one up to 20 classes.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.scatter`.

        Returns
        -------
        display : EmbeddingDisplay
            The drawn display.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_triplet.plotting import EmbeddingDisplay
        >>> embedding = np.random.default_rng(0).normal(size=(60, 5))
        >>> display = EmbeddingDisplay.from_embedding(embedding, [0, 1, 2] * 20, random_state=0)
        >>> display.points.shape, display.ax_.get_xlabel()
        ((60, 2), 't-SNE 1')
        >>> display = EmbeddingDisplay.from_embedding(embedding, [0, 1, 2] * 20, projection="pca")
        >>> display.ax_.get_xlabel()
        'PCA 1 (30% variance)'
        """
        _import_pyplot("EmbeddingDisplay.from_embedding")
        _check_projection(projection)
        embedding = check_array(embedding, dtype=np.float64, input_name="embedding")
        y = column_or_1d(y, warn=True)
        check_consistent_length(embedding, y)
        points, axis_labels = _project(embedding, projection, random_state)
        display = cls(points, y, axis_labels=axis_labels)
        return display.plot(ax=ax, legend=legend, **kwargs)

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        y,
        *,
        projection="auto",
        ax=None,
        random_state=None,
        legend=None,
        **kwargs,
    ):
        """Embed ``X`` with ``estimator.transform`` and plot it.

        Parameters
        ----------
        estimator : estimator with ``transform``, or Pipeline
            A fitted embedder, or a Pipeline holding one. A Pipeline whose
            last step is a neighbours estimator or a classifier (such as
            ``Pipeline([("emb", TripletEmbedder()), ("knn",
            KNeighborsClassifier())])``) is drawn through the steps before
            that one.
        X : array-like of shape (n_samples, n_features)
            Samples to embed.
        y : array-like of shape (n_samples,)
            Class of each sample.
        projection : {"auto", "tsne", "pca"} or object with ``fit_transform``, \
                default="auto"
            Projection used when the embedding has more than two components.
            ``"tsne"``: scikit-learn's :class:`~sklearn.manifold.TSNE`, which
            keeps each point's nearest neighbours near it, so that the view
            shows the classes as a nearest-neighbour classifier sees them; it
            takes seconds (on one core, about 2 s for 450 points, 30 s for
            5,000). ``"pca"``: the first two principal components
            (:class:`~sklearn.decomposition.PCA`), at once, but a linear view
            in which classes far apart in the embedding can overlap.
            ``"auto"``: t-SNE up to 5,000 samples, PCA beyond. Or any
            transformer whose ``fit_transform`` returns two columns.
        ax : matplotlib Axes, default=None
            Axes to draw on; None makes a new figure.
        random_state : int, RandomState instance or None, default=None
            Seed of the projection and of the jitter.
        legend : bool, default=None
            Whether to draw a legend; None draws one up to 20 classes.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.scatter`.

        Returns
        -------
        display : EmbeddingDisplay
            The drawn display.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from sklearn.decomposition import PCA
        >>> from sklearn_triplet.plotting import EmbeddingDisplay
        >>> X, y = load_digits(return_X_y=True)
        >>> embedder = PCA(n_components=2).fit(X)
        >>> display = EmbeddingDisplay.from_estimator(embedder, X, y, legend=False)
        >>> display.legend_ is None
        True
        """
        _import_pyplot("EmbeddingDisplay.from_estimator")
        embedder, _ = embedding_part(estimator)
        return cls.from_embedding(
            embedder.transform(X),
            y,
            projection=projection,
            ax=ax,
            random_state=random_state,
            legend=legend,
            **kwargs,
        )


# Panels of a history plot: title, y label, and the curves (history key, label).
_HISTORY_PANELS = {
    "loss": ("Training loss", "loss", [("loss", "loss")]),
    # The fractions the losses declare, once each.
    "triplets": (
        "Triplet types",
        "fraction",
        list(
            {
                fraction.name: (fraction.name, fraction.label)
                for statistics in (TRIPLET_STATISTICS, CONTRASTIVE_STATISTICS, CALLABLE_STATISTICS)
                for fraction in statistics.fractions
            }.values()
        ),
    ),
    # the validation score's name (MAP@R, ROC AUC...) is the estimator's: filled in by plot
    "validation": ("Validation", "{score}", [("validation_score", "validation {score}")]),
}
_X_AXES = {"epoch": "epoch", "time": "time (s)"}


def _curve(history, x, key):
    """Points (x, value) of the rows that hold both (not None, not NaN), as two float arrays."""
    points = np.array([(row.get(x), row.get(key)) for row in history], dtype=np.float64).reshape(
        -1, 2
    )  # None becomes NaN
    return points[~np.isnan(points).any(axis=1)].T


def _history_rows(history):
    """The history as a list of per-epoch dicts, from such a list or from a pandas DataFrame."""
    if hasattr(history, "columns") and hasattr(history, "to_dict"):  # pd.DataFrame(history_)
        rows = history.to_dict(orient="records")
    elif isinstance(history, (list, tuple)):
        rows = list(history)
    else:
        rows = None
    if not rows or not all(isinstance(row, Mapping) for row in rows):
        raise ValueError(
            "history must be a non-empty list of dicts, one per epoch (as an embedder's "
            "history_), or a pandas DataFrame with one row per epoch; got "
            f"{_describe_history(history)}."
        )
    return rows


def _describe_history(history):
    """What ``history`` is, in a few words (an error message never prints a whole table)."""
    kind = type(history).__name__
    if hasattr(history, "columns") and hasattr(history, "to_dict"):
        return f"a {kind} with {len(history)} rows"
    if isinstance(history, (list, tuple)):
        if not history:
            return f"an empty {kind}"
        first_bad = next(i for i, row in enumerate(history) if not isinstance(row, Mapping))
        return f"a {kind} whose item {first_bad} is of type {type(history[first_bad]).__name__}"
    return f"an object of type {kind}"


def _mark_best(axis, history, x, line):
    """Mark the first epoch with the highest validation score; return the marker."""
    rows = [
        row
        for row in history
        if row.get(x) is not None
        and row.get("validation_score") is not None
        and not np.isnan(row["validation_score"])
        and not np.isnan(row[x])
    ]
    best = max(rows, key=lambda row: row["validation_score"])  # max keeps the first of ties
    when = f"epoch {best['epoch']:g}" if best.get("epoch") is not None else f"{best[x]:g} s"
    (marker,) = axis.plot(
        [best[x]],
        [best["validation_score"]],
        marker="*",
        markersize=14,
        linestyle="none",
        color=line.get_color(),
        markeredgecolor="black",
        zorder=3,
        label=f"best: {best['validation_score']:.3f} at {when}",
    )
    axis.axvline(best[x], color="0.6", linestyle=":", linewidth=1, zorder=1)
    return marker


class HistoryDisplay:
    """Training curves of an embedder: loss, mined triplet types, validation score.

    Reads a history as stored in the fitted attribute ``history_`` of the
    embedders: a list with one dict per epoch, with keys among ``"epoch"``,
    ``"loss"``, ``"easy_fraction"``, ``"semi_hard_fraction"``,
    ``"hard_fraction"``, ``"active_fraction"``, ``"validation_score"`` and
    ``"time"``, or the same as a pandas DataFrame with one row per epoch,
    ``pd.DataFrame(history_)``. A panel is drawn for each group of keys
    present (loss; triplet types; validation score, with its best epoch
    marked); missing keys, ``None`` and NaN values are skipped. Legends sit
    below their panel, off the curves.

    Parameters
    ----------
    history : list of dict or pandas DataFrame
        One dict, or one row, per epoch.
    score_name : str, default="MAP@R"
        What ``"validation_score"`` is, for the labels of its panel: MAP@R for
        TripletEmbedder and SiameseEmbedder, ROC AUC for PairEmbedder, triplet
        accuracy for ComparisonEmbedder (``from_estimator`` reads it from the
        estimator).

    Attributes
    ----------
    lines_ : dict of str to matplotlib Line2D
        The curves, keyed by history key (``"loss"``, ``"hard_fraction"``, ...),
        and the marker of the best validation score, ``"best_validation_score"``.
    axes_ : ndarray of matplotlib Axes
        One Axes per panel, in the order loss, triplets, validation.
    figure_ : matplotlib Figure
        Figure containing the panels.

    See Also
    --------
    EmbeddingDisplay : View of the embedding itself.

    Examples
    --------
    >>> from sklearn_triplet.plotting import HistoryDisplay
    >>> history = [
    ...     {"epoch": 1, "loss": 0.9, "hard_fraction": 0.5, "active_fraction": 0.8},
    ...     {"epoch": 2, "loss": 0.5, "hard_fraction": 0.2, "active_fraction": 0.6},
    ... ]
    >>> display = HistoryDisplay.from_history(history)
    >>> len(display.axes_), sorted(display.lines_)
    (2, ['active_fraction', 'hard_fraction', 'loss'])
    """

    def __init__(self, history, *, score_name="MAP@R"):
        self.history = history
        self.score_name = score_name

    def plot(self, ax=None, *, x="epoch"):
        """Draw one panel per group of keys present in the history.

        Parameters
        ----------
        ax : matplotlib Axes or sequence of Axes, default=None
            One Axes per panel; None makes a figure with the panels side by side.
        x : {"epoch", "time"}, default="epoch"
            Horizontal axis: the epoch number, or seconds since the start of ``fit``.

        Returns
        -------
        display : HistoryDisplay
            The display, with its matplotlib objects stored.
        """
        plt = _import_pyplot("HistoryDisplay.plot")
        if not (isinstance(x, str) and x in _X_AXES):
            raise ValueError(f"x={x!r} is not supported; choose one of {sorted(_X_AXES)}.")
        history = _history_rows(self.history)
        if x == "epoch" and not any("epoch" in row for row in history):
            history = [{**row, "epoch": i} for i, row in enumerate(history, start=1)]
        curves = {
            panel: [
                (key, label.format(score=self.score_name), _curve(history, x, key))
                for key, label in spec[2]
            ]
            for panel, spec in _HISTORY_PANELS.items()
        }
        panels = [panel for panel, items in curves.items() if any(c.shape[1] for _, _, c in items)]
        if not panels:
            keys = [key for spec in _HISTORY_PANELS.values() for key, _ in spec[2]]
            raise ValueError(
                f"history has no curve to plot against {x!r}: no epoch holds both "
                f"{x!r} and one of {keys}."
            )
        if ax is None:
            _, axes = plt.subplots(
                1,
                len(panels),
                figsize=(5.0 * len(panels), 3.5),
                squeeze=False,
                layout="constrained",
            )
            axes = axes[0]
        else:
            axes = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()
            if len(axes) != len(panels):
                raise ValueError(
                    f"ax must hold one Axes per panel: {len(panels)} for {panels}; got {len(axes)}."
                )
        self.lines_ = {}
        for axis, panel in zip(axes, panels):
            title, ylabel, _ = _HISTORY_PANELS[panel]
            for key, label, (xs, ys) in curves[panel]:
                if xs.size:
                    (self.lines_[key],) = axis.plot(xs, ys, marker=".", label=label)
            axis.set_title(title)
            axis.set_xlabel(_X_AXES[x])
            axis.set_ylabel(ylabel.format(score=self.score_name))
            if panel == "triplets":
                axis.set_ylim(-0.02, 1.02)
            if panel == "validation":
                self.lines_["best_validation_score"] = _mark_best(
                    axis, history, x, self.lines_["validation_score"]
                )
            if panel != "loss":
                # Below the curves, never over them.
                axis.legend(
                    fontsize="small",
                    loc="upper center",
                    bbox_to_anchor=(0.5, -0.22),
                    ncols=4,
                    frameon=False,
                    handlelength=1.5,
                    columnspacing=1.0,
                )
        self.axes_ = np.asarray(axes, dtype=object)
        self.figure_ = self.axes_[0].figure
        return self

    @classmethod
    def from_history(cls, history, *, ax=None, x="epoch", score_name="MAP@R"):
        """Plot a history given as a list of per-epoch dicts.

        Parameters
        ----------
        history : list of dict or pandas DataFrame
            One dict, or one row, per epoch (see the class documentation for
            the keys).
        ax : matplotlib Axes or sequence of Axes, default=None
            One Axes per panel; None makes a new figure.
        x : {"epoch", "time"}, default="epoch"
            Horizontal axis.
        score_name : str, default="MAP@R"
            What the ``"validation_score"`` of the history is, for its panel's labels.

        Returns
        -------
        display : HistoryDisplay
            The drawn display.

        Examples
        --------
        >>> from sklearn_triplet.plotting import HistoryDisplay
        >>> history = [{"epoch": e, "loss": 1 / e, "time": 0.5 * e} for e in (1, 2, 3)]
        >>> display = HistoryDisplay.from_history(history, x="time")
        >>> display.axes_[0].get_xlabel()
        'time (s)'
        """
        _import_pyplot("HistoryDisplay.from_history")
        return cls(history, score_name=score_name).plot(ax=ax, x=x)

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, x="epoch"):
        """Plot the ``history_`` of a fitted embedder.

        Parameters
        ----------
        estimator : estimator
            A fitted embedder with a ``history_`` attribute; its validation score is labelled
            with the name the estimator gives it (MAP@R, ROC AUC...).
        ax : matplotlib Axes or sequence of Axes, default=None
            One Axes per panel; None makes a new figure.
        x : {"epoch", "time"}, default="epoch"
            Horizontal axis.

        Returns
        -------
        display : HistoryDisplay
            The drawn display.

        Examples
        --------
        >>> from types import SimpleNamespace
        >>> from sklearn_triplet.plotting import HistoryDisplay
        >>> fitted = SimpleNamespace(history_=[{"epoch": 1, "loss": 0.7, "validation_score": 0.4}])
        >>> [axis.get_title() for axis in HistoryDisplay.from_estimator(fitted).axes_]
        ['Training loss', 'Validation']
        """
        _import_pyplot("HistoryDisplay.from_estimator")
        history = getattr(estimator, "history_", None)
        if history is None:
            raise NotFittedError(
                f"This {type(estimator).__name__} has no history_; fit it before "
                "plotting its history."
            )
        score_name = getattr(type(estimator), "_validation_score_name", "MAP@R")
        return cls(history, score_name=score_name).plot(ax=ax, x=x)
