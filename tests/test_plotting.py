import re
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_triplet.plotting import EmbeddingDisplay, HistoryDisplay

plt = pytest.importorskip("matplotlib.pyplot")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def digits_400():
    X, y = load_digits(return_X_y=True)
    return X[:400], y[:400]


def _full_history(n_epochs=4, validation=True):
    history = []
    for epoch in range(1, n_epochs + 1):
        row = {
            "epoch": epoch,
            "loss": 1.0 / epoch,
            "n_triplets": 1000,
            "active_fraction": 0.9 - 0.1 * epoch,
            "easy_fraction": 0.1 + 0.1 * epoch,
            "semi_hard_fraction": 0.3,
            "hard_fraction": 0.6 - 0.1 * epoch,
            "time": 0.25 * epoch,
        }
        if validation:
            row["validation_score"] = 0.5 + 0.05 * epoch
        history.append(row)
    return history


# EmbeddingDisplay -------------------------------------------------------------------


def test_embedding_display_from_estimator_projects_with_pca(digits_400):
    X, y = digits_400
    embedder = make_pipeline(StandardScaler(), PCA(n_components=6, random_state=0)).fit(X)
    display = EmbeddingDisplay.from_estimator(embedder, X, y, projection="pca", random_state=0)
    assert len(display.scatters_) == 10 == len(display.ax_.collections)
    np.testing.assert_array_equal(display.classes_, np.arange(10))
    expected = PCA(n_components=2, random_state=0).fit_transform(embedder.transform(X))
    np.testing.assert_allclose(display.points, expected)
    for label, scatter in zip(display.classes_, display.scatters_):
        np.testing.assert_allclose(scatter.get_offsets(), expected[y == label])
        assert scatter.get_label() == str(label)
    assert len(display.legend_.get_texts()) == 10
    assert display.ax_.get_xlabel().startswith("PCA 1 (")
    assert display.figure_ is display.ax_.figure


def test_embedding_display_plots_two_components_as_they_are():
    embedding = np.random.default_rng(0).normal(size=(30, 2))
    y = np.repeat(["a", "b", "c"], 10)
    display = EmbeddingDisplay.from_embedding(embedding, y, projection="tsne")
    np.testing.assert_array_equal(display.points, embedding)
    np.testing.assert_array_equal(display.scatters_[1].get_offsets(), embedding[10:20])
    assert display.ax_.get_xlabel() == "component 1"
    assert [text.get_text() for text in display.legend_.get_texts()] == ["a", "b", "c"]


def test_embedding_display_plots_one_component_against_jitter():
    embedding = np.arange(20.0)[:, None]
    display = EmbeddingDisplay.from_embedding(embedding, [0, 1] * 10, random_state=0)
    np.testing.assert_array_equal(display.points[:, 0], np.arange(20.0))
    assert np.all(np.abs(display.points[:, 1]) <= 0.5)
    again = EmbeddingDisplay.from_embedding(embedding, [0, 1] * 10, random_state=0)
    np.testing.assert_array_equal(again.points, display.points)
    assert display.ax_.get_ylabel() == "jitter"


def test_embedding_display_tsne_and_custom_projection(digits_400):
    X, y = digits_400
    X, y = X[:60], y[:60]
    display = EmbeddingDisplay.from_embedding(X, y, projection="tsne", random_state=0)
    assert display.points.shape == (60, 2)
    assert display.ax_.get_xlabel() == "t-SNE 1"
    svd = TruncatedSVD(n_components=2, random_state=0)
    display = EmbeddingDisplay.from_embedding(X, y, projection=svd)
    assert display.ax_.get_xlabel() == "TruncatedSVD 1"


def test_embedding_display_on_given_axes_with_scatter_options():
    _, (left, right) = plt.subplots(1, 2)
    embedding = np.random.default_rng(1).normal(size=(25, 3))
    display = EmbeddingDisplay.from_embedding(
        embedding, np.arange(25) % 5, ax=right, legend=False, marker="x", s=4
    )
    assert display.ax_ is right and len(left.collections) == 0
    assert display.legend_ is None and right.get_legend() is None
    np.testing.assert_array_equal(display.scatters_[0].get_sizes(), [4])


def test_embedding_display_legend_only_for_few_classes():
    embedding = np.random.default_rng(2).normal(size=(50, 2))
    display = EmbeddingDisplay.from_embedding(embedding, np.arange(50) % 25)
    assert len(display.scatters_) == 25 and display.legend_ is None
    colors = {tuple(s.get_facecolor()[0]) for s in display.scatters_}
    assert len(colors) == 25


def test_embedding_display_from_constructor():
    display = EmbeddingDisplay([[0, 0], [1, 1]], ["x", "y"], axis_labels=("u", "v")).plot()
    assert len(display.scatters_) == 2
    assert (display.ax_.get_xlabel(), display.ax_.get_ylabel()) == ("u", "v")


def test_embedding_display_errors():
    embedding = np.random.default_rng(3).normal(size=(4, 3))
    message = (
        "projection='umap' is not supported; choose one of ['auto', 'pca', 'tsne'] "
        "or pass an object with fit_transform."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        EmbeddingDisplay.from_embedding(embedding, [0, 0, 1, 1], projection="umap")
    with pytest.raises(ValueError, match=re.escape("inconsistent numbers of samples: [4, 3]")):
        EmbeddingDisplay.from_embedding(embedding, [0, 0, 1])
    message = "projection PCA must return two columns; got an array of shape (4, 3)."
    with pytest.raises(ValueError, match=re.escape(message)):
        EmbeddingDisplay.from_embedding(embedding, [0, 0, 1, 1], projection=PCA(3))


def _leave_one_out_knn_accuracy(points, y, k=5):
    from sklearn.neighbors import NearestNeighbors

    _, neighbours = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    votes = y[neighbours[:, 1:]]
    predicted = np.array([np.bincount(row, minlength=10).argmax() for row in votes])
    return np.mean(predicted == y)


def test_default_projection_shows_the_classes_a_knn_separates(digits_400):
    # In the standardised pixels a 5-NN is right about 90 % of the time; the first two principal
    # components overlap the classes (about 50 %), t-SNE keeps what the KNN sees.
    X, y = digits_400
    X, y = StandardScaler().fit_transform(X[:300]), y[:300]
    display = EmbeddingDisplay.from_embedding(X, y, random_state=0)
    assert display.ax_.get_xlabel() == "t-SNE 1"
    in_full = _leave_one_out_knn_accuracy(X, y)
    assert _leave_one_out_knn_accuracy(display.points, y) >= in_full - 0.05
    pca = EmbeddingDisplay.from_embedding(X, y, projection="pca").points
    assert _leave_one_out_knn_accuracy(pca, y) < in_full - 0.2


def test_default_projection_is_pca_beyond_the_tsne_size_limit(monkeypatch, digits_400):
    from sklearn_triplet import plotting

    X, y = digits_400
    monkeypatch.setattr(plotting, "_TSNE_MAX_SAMPLES", 99)
    display = EmbeddingDisplay.from_embedding(X[:100], y[:100], random_state=0)
    assert display.ax_.get_xlabel().startswith("PCA 1 (")
    display = EmbeddingDisplay.from_embedding(X[:99], y[:99], random_state=0)
    assert display.ax_.get_xlabel() == "t-SNE 1"


def _covers_a_point(legend, ax, points):
    ax.figure.canvas.draw()
    box = legend.get_window_extent()
    pixels = ax.transData.transform(points)
    return bool(
        np.any(
            (pixels[:, 0] >= box.x0)
            & (pixels[:, 0] <= box.x1)
            & (pixels[:, 1] >= box.y0)
            & (pixels[:, 1] <= box.y1)
        )
    )


def test_embedding_legend_sits_beside_the_points():
    # points everywhere in the axes: a legend inside them would cover some
    grid = np.stack(np.meshgrid(np.linspace(0, 1, 40), np.linspace(0, 1, 40)), -1).reshape(-1, 2)
    y = np.arange(len(grid)) % 10
    display = EmbeddingDisplay.from_embedding(grid, y)
    assert len(display.legend_.get_texts()) == 10
    assert not _covers_a_point(display.legend_, display.ax_, grid)
    # and it stays inside the figure
    figure_box = display.figure_.bbox
    box = display.legend_.get_window_extent()
    assert box.x1 <= figure_box.x1 + 1 and box.x0 >= figure_box.x0 - 1


def test_embedding_display_from_the_readme_pipeline(digits_400):
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline

    X, y = digits_400
    pipeline = Pipeline(
        [("pca", PCA(n_components=5, random_state=0)), ("knn", KNeighborsClassifier())]
    ).fit(X, y)
    display = EmbeddingDisplay.from_estimator(pipeline, X, y, projection="pca", random_state=0)
    expected = PCA(n_components=2, random_state=0).fit_transform(pipeline[:-1].transform(X))
    np.testing.assert_allclose(display.points, expected)


# HistoryDisplay ---------------------------------------------------------------------


def test_history_display_reads_a_data_frame_as_the_list_it_came_from():
    pd = pytest.importorskip("pandas")
    history = _full_history()
    del history[0]["validation_score"]  # a key missing in one row becomes NaN in the frame
    from_list = HistoryDisplay.from_history(history)
    from_frame = HistoryDisplay.from_history(pd.DataFrame(history))
    assert sorted(from_frame.lines_) == sorted(from_list.lines_)
    for key, line in from_list.lines_.items():
        np.testing.assert_array_equal(from_frame.lines_[key].get_xdata(), line.get_xdata())
        np.testing.assert_array_equal(from_frame.lines_[key].get_ydata(), line.get_ydata())
    np.testing.assert_array_equal(from_frame.lines_["validation_score"].get_xdata(), [2, 3, 4])


def test_history_errors_describe_the_input_without_printing_it():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"epoch": [], "loss": []})
    cases = {
        "a DataFrame with 0 rows": frame,
        "an empty list": [],
        "a list whose item 1 is of type DataFrame": [{"loss": 1.0}, pd.DataFrame(_full_history())],
        "an object of type dict": {"loss": [1.0, 0.5]},
    }
    for description, history in cases.items():
        message = (
            "history must be a non-empty list of dicts, one per epoch (as an embedder's "
            "history_), or a pandas DataFrame with one row per epoch; got "
            f"{description}."
        )
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            HistoryDisplay.from_history(history)


def test_validation_panel_names_the_metric_and_marks_the_best_epoch():
    history = _full_history(n_epochs=6)
    scores = [0.5, 0.7, 0.9, 0.8, 0.9, 0.85]  # best 0.9, first reached at epoch 3
    for row, score in zip(history, scores):
        row["validation_score"] = score
    display = HistoryDisplay.from_history(history)
    validation = display.axes_[2]
    assert validation.get_ylabel() == "MAP@R"
    best = display.lines_["best_validation_score"]
    assert (list(best.get_xdata()), list(best.get_ydata())) == ([3], [0.9])
    assert best.get_label() == "best: 0.900 at epoch 3"
    texts = [text.get_text() for text in validation.get_legend().get_texts()]
    assert texts == ["validation MAP@R", "best: 0.900 at epoch 3"]
    # against time, the marker moves with the best epoch's time
    display = HistoryDisplay.from_history(history, x="time")
    assert list(display.lines_["best_validation_score"].get_xdata()) == [0.75]


def test_history_legends_sit_below_their_panel():
    display = HistoryDisplay.from_history(_full_history())
    display.figure_.canvas.draw()
    for axis in display.axes_[1:]:
        legend, panel = axis.get_legend().get_window_extent(), axis.get_window_extent()
        assert legend.y1 < panel.y0  # wholly below the plotting area


def test_history_display_full_history():
    history = _full_history()
    display = HistoryDisplay.from_history(history)
    assert len(display.axes_) == 3
    assert [axis.get_title() for axis in display.axes_] == [
        "Training loss",
        "Triplet types",
        "Validation",
    ]
    # the validation panel: the curve, the best epoch's marker and its vertical line
    assert [len(axis.get_lines()) for axis in display.axes_] == [1, 4, 3]
    assert sorted(display.lines_) == sorted(
        [
            "loss",
            "easy_fraction",
            "semi_hard_fraction",
            "hard_fraction",
            "active_fraction",
            "validation_score",
            "best_validation_score",
        ]
    )
    for key, line in display.lines_.items():
        if key == "best_validation_score":
            continue
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4])
        np.testing.assert_allclose(line.get_ydata(), [row[key] for row in history])
    legend = [text.get_text() for text in display.axes_[1].get_legend().get_texts()]
    assert legend == ["easy", "semi-hard", "hard", "active"]
    assert display.figure_ is display.axes_[0].figure


def test_history_display_without_validation_or_triplet_stats():
    display = HistoryDisplay.from_history(_full_history(validation=False))
    assert [axis.get_title() for axis in display.axes_] == ["Training loss", "Triplet types"]
    # a SiameseEmbedder-like history with the loss alone
    display = HistoryDisplay.from_history([{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.0}])
    assert len(display.axes_) == 1 and list(display.lines_) == ["loss"]


def test_history_display_skips_missing_keys_and_values():
    history = [
        {"epoch": 1, "loss": 1.0, "hard_fraction": 0.5},
        {"epoch": 2, "loss": 0.8},
        {"epoch": 3, "loss": None, "hard_fraction": 0.3, "validation_score": 0.7},
    ]
    display = HistoryDisplay.from_history(history)
    np.testing.assert_array_equal(display.lines_["loss"].get_xdata(), [1, 2])
    np.testing.assert_array_equal(display.lines_["hard_fraction"].get_xdata(), [1, 3])
    np.testing.assert_array_equal(display.lines_["validation_score"].get_xdata(), [3])
    assert [len(axis.get_lines()) for axis in display.axes_] == [1, 1, 3]


def test_history_display_numbers_epochs_when_absent_and_plots_against_time():
    history = [{"loss": 3.0, "time": 0.1}, {"loss": 2.0, "time": 0.3}]
    display = HistoryDisplay.from_history(history)
    np.testing.assert_array_equal(display.lines_["loss"].get_xdata(), [1, 2])
    display = HistoryDisplay.from_history(history, x="time")
    np.testing.assert_allclose(display.lines_["loss"].get_xdata(), [0.1, 0.3])
    assert display.axes_[0].get_xlabel() == "time (s)"


def test_history_display_from_estimator_and_given_axes():
    fitted = SimpleNamespace(history_=_full_history(validation=False))
    _, axes = plt.subplots(1, 2)
    display = HistoryDisplay.from_estimator(fitted, ax=axes)
    assert list(display.axes_) == list(axes)
    assert len(axes[1].get_lines()) == 4
    message = "ax must hold one Axes per panel: 2 for ['loss', 'triplets']; got 1."
    with pytest.raises(ValueError, match=re.escape(message)):
        HistoryDisplay.from_estimator(fitted, ax=axes[0])


def test_history_display_errors():
    message = "This SimpleNamespace has no history_; fit it before plotting its history."
    with pytest.raises(NotFittedError, match=re.escape(message)):
        HistoryDisplay.from_estimator(SimpleNamespace())
    with pytest.raises(ValueError, match=re.escape("history must be a non-empty list of dicts")):
        HistoryDisplay.from_history([])
    # the fractions of every built-in loss, in the order of the registry, then the score
    fractions = ["easy_fraction", "semi_hard_fraction", "hard_fraction", "active_fraction"]
    fractions += ["mined_positive_fraction", "mined_negative_fraction"]  # multi-similarity
    message = (
        "history has no curve to plot against 'epoch': no epoch holds both 'epoch' and "
        f"one of {['loss', *fractions, 'validation_score']}."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        HistoryDisplay.from_history([{"epoch": 1, "n_triplets": 10}])
    message = "x='step' is not supported; choose one of ['epoch', 'time']."
    with pytest.raises(ValueError, match=re.escape(message)):
        HistoryDisplay.from_history(_full_history(), x="step")


# matplotlib is optional -------------------------------------------------------------


@pytest.mark.parametrize(
    "caller, draw",
    [
        (
            "EmbeddingDisplay.from_embedding",
            lambda: EmbeddingDisplay.from_embedding(np.zeros((2, 2)), [0, 1]),
        ),
        (
            "EmbeddingDisplay.from_estimator",
            lambda: EmbeddingDisplay.from_estimator(PCA(1), np.zeros((2, 2)), [0, 1]),
        ),
        (
            "HistoryDisplay.from_history",
            lambda: HistoryDisplay.from_history([{"epoch": 1, "loss": 1.0}]),
        ),
        (
            "HistoryDisplay.from_estimator",
            lambda: HistoryDisplay.from_estimator(SimpleNamespace(history_=[])),
        ),
        ("EmbeddingDisplay.plot", lambda: EmbeddingDisplay([[0, 0]], [0]).plot()),
        ("HistoryDisplay.plot", lambda: HistoryDisplay([{"loss": 1.0}]).plot()),
    ],
)
def test_missing_matplotlib_says_how_to_install_it(monkeypatch, caller, draw):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    message = (
        f"{caller} requires matplotlib, which is not installed. "
        "Install it with `pip install matplotlib`."
    )
    with pytest.raises(ImportError, match=re.escape(message)):
        draw()


def test_embedding_display_without_labels_draws_one_scatter_of_every_point(digits_400):
    """The embedders of pairs and triplets have no classes: the picture is of the points alone."""
    from sklearn_triplet import PairEmbedder

    X, _ = digits_400
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, len(X), size=(100, 2))
    embedder = PairEmbedder(
        points=X / 16, n_components=3, hidden_layer_sizes=(8,), max_iter=1, random_state=0
    )
    embedder.fit(pairs, np.where(rng.random(100) < 0.5, 1, -1))  # (a schedule: no warning)
    display = EmbeddingDisplay.from_estimator(embedder, X / 16, projection="pca", random_state=0)
    embedding = embedder.transform(X / 16).astype(np.float64)
    expected = PCA(n_components=2, random_state=0).fit_transform(embedding)
    assert display.classes_ is None and display.legend_ is None
    assert len(display.scatters_) == 1 == len(display.ax_.collections)
    np.testing.assert_allclose(display.scatters_[0].get_offsets(), expected)
    assert display.ax_.get_xlabel().startswith("PCA 1 (")

    two = np.random.default_rng(1).normal(size=(30, 2))
    display = EmbeddingDisplay.from_embedding(two)
    np.testing.assert_allclose(display.scatters_[0].get_offsets(), two)
    assert EmbeddingDisplay(two).plot().classes_ is None
    with pytest.raises(
        ValueError,
        match=re.escape(
            "legend=True draws a legend of the classes, and this display has none (y=None); pass "
            "y, or legend=None."
        ),
    ):
        EmbeddingDisplay.from_embedding(two, legend=True)
