"""Plots of embeddings and of training histories, in scikit-learn's Display style.

Each display is built from an estimator (``from_estimator``) or from data
(``from_embedding``, ``from_history``), draws with ``plot`` and keeps the
matplotlib objects as attributes ending in ``_``. matplotlib is optional: it
is imported only when a plot is drawn.
"""

import numpy as np
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.manifold import TSNE
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_consistent_length, column_or_1d

from ._kernels import CALLABLE_STATISTICS, CONTRASTIVE_STATISTICS, TRIPLET_STATISTICS

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
    return _PROJECTIONS[projection](embedding, random_state)


def _check_projection(projection):
    if hasattr(projection, "fit_transform"):
        return
    if not (isinstance(projection, str) and projection in _PROJECTIONS):
        raise ValueError(
            f"projection={projection!r} is not supported; choose one of "
            f"{sorted(_PROJECTIONS)} or pass an object with fit_transform."
        )


def _class_colors(n_classes):
    from matplotlib import colormaps

    if n_classes <= 10:
        return colormaps["tab10"].colors[:n_classes]
    if n_classes <= 20:
        return colormaps["tab20"].colors[:n_classes]
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
    >>> display = EmbeddingDisplay.from_estimator(embedder, X[:500], y[:500])
    >>> len(display.scatters_)
    10
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
            Whether to draw a legend of the classes; None draws one when there
            are at most 20 classes.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.scatter`.

        Returns
        -------
        display : EmbeddingDisplay
            The display, with its matplotlib objects stored.
        """
        plt = _import_pyplot("EmbeddingDisplay.plot")
        if ax is None:
            _, ax = plt.subplots()
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
            self.legend_ = ax.legend(title="class", markerscale=1.5, fontsize="small")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_embedding(
        cls, embedding, y, *, projection="pca", ax=None, random_state=None, legend=None, **kwargs
    ):
        """Plot an embedding, projected to two dimensions when wider.

        Parameters
        ----------
        embedding : array-like of shape (n_samples, n_components)
            Embedded samples. Two components are plotted as they are; one is
            plotted against random vertical jitter; more are projected.
        y : array-like of shape (n_samples,)
            Class of each sample.
        projection : {"pca", "tsne"} or object with ``fit_transform``, default="pca"
            Projection used when ``n_components > 2``: scikit-learn's
            :class:`~sklearn.decomposition.PCA` or
            :class:`~sklearn.manifold.TSNE`, or any transformer whose
            ``fit_transform`` returns two columns.
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
        >>> display = EmbeddingDisplay.from_embedding(embedding, [0, 1, 2] * 20)
        >>> display.points.shape, display.ax_.get_xlabel()[:5]
        ((60, 2), 'PCA 1')
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
        cls, estimator, X, y, *, projection="pca", ax=None, random_state=None, legend=None, **kwargs
    ):
        """Embed ``X`` with ``estimator.transform`` and plot it.

        Parameters
        ----------
        estimator : estimator with ``transform``
            A fitted embedder, or a Pipeline ending in one.
        X : array-like of shape (n_samples, n_features)
            Samples to embed.
        y : array-like of shape (n_samples,)
            Class of each sample.
        projection : {"pca", "tsne"} or object with ``fit_transform``, default="pca"
            Projection used when the embedding has more than two components.
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
        return cls.from_embedding(
            estimator.transform(X),
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
    "validation": ("Validation", "score", [("validation_score", "validation score")]),
}
_X_AXES = {"epoch": "epoch", "time": "time (s)"}


def _curve(history, x, key):
    """Points (x, value) of the rows that hold both, as two float arrays."""
    rows = [
        (row[x], row[key]) for row in history if row.get(x) is not None and row.get(key) is not None
    ]
    return np.array(rows, dtype=np.float64).reshape(-1, 2).T


class HistoryDisplay:
    """Training curves of an embedder: loss, mined triplet types, validation score.

    Reads a history as stored in the fitted attribute ``history_`` of the
    embedders: a list with one dict per epoch, with keys among ``"epoch"``,
    ``"loss"``, ``"easy_fraction"``, ``"semi_hard_fraction"``,
    ``"hard_fraction"``, ``"active_fraction"``, ``"validation_score"`` and
    ``"time"``. A panel is drawn for each group of keys present (loss;
    triplet types; validation score); missing keys, or ``None`` values, are
    skipped.

    Parameters
    ----------
    history : list of dict
        One dict per epoch.

    Attributes
    ----------
    lines_ : dict of str to matplotlib Line2D
        The curves, keyed by history key (``"loss"``, ``"hard_fraction"``, ...).
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

    def __init__(self, history):
        self.history = history

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
        if not isinstance(self.history, (list, tuple)) or not self.history:
            raise ValueError(
                f"history must be a non-empty list of dicts, one per epoch; got {self.history!r}."
            )
        history = self.history
        if x == "epoch" and not any("epoch" in row for row in history):
            history = [{**row, "epoch": i} for i, row in enumerate(history, start=1)]
        curves = {
            panel: [(key, label, _curve(history, x, key)) for key, label in spec[2]]
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
                figsize=(4.5 * len(panels), 3.5),
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
            axis.set_ylabel(ylabel)
            if panel == "triplets":
                axis.set_ylim(-0.02, 1.02)
                axis.legend(fontsize="small")
        self.axes_ = np.asarray(axes, dtype=object)
        self.figure_ = self.axes_[0].figure
        return self

    @classmethod
    def from_history(cls, history, *, ax=None, x="epoch"):
        """Plot a history given as a list of per-epoch dicts.

        Parameters
        ----------
        history : list of dict
            One dict per epoch (see the class documentation for the keys).
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
        >>> from sklearn_triplet.plotting import HistoryDisplay
        >>> history = [{"epoch": e, "loss": 1 / e, "time": 0.5 * e} for e in (1, 2, 3)]
        >>> display = HistoryDisplay.from_history(history, x="time")
        >>> display.axes_[0].get_xlabel()
        'time (s)'
        """
        _import_pyplot("HistoryDisplay.from_history")
        return cls(history).plot(ax=ax, x=x)

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, x="epoch"):
        """Plot the ``history_`` of a fitted embedder.

        Parameters
        ----------
        estimator : estimator
            A fitted embedder with a ``history_`` attribute.
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
        return cls(history).plot(ax=ax, x=x)
