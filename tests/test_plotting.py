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
    display = EmbeddingDisplay.from_estimator(embedder, X, y, random_state=0)
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
        "projection='umap' is not supported; choose one of ['pca', 'tsne'] "
        "or pass an object with fit_transform."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        EmbeddingDisplay.from_embedding(embedding, [0, 0, 1, 1], projection="umap")
    with pytest.raises(ValueError, match=re.escape("inconsistent numbers of samples: [4, 3]")):
        EmbeddingDisplay.from_embedding(embedding, [0, 0, 1])
    message = "projection PCA must return two columns; got an array of shape (4, 3)."
    with pytest.raises(ValueError, match=re.escape(message)):
        EmbeddingDisplay.from_embedding(embedding, [0, 0, 1, 1], projection=PCA(3))


# HistoryDisplay ---------------------------------------------------------------------


def test_history_display_full_history():
    history = _full_history()
    display = HistoryDisplay.from_history(history)
    assert len(display.axes_) == 3
    assert [axis.get_title() for axis in display.axes_] == [
        "Training loss",
        "Triplet types",
        "Validation",
    ]
    assert [len(axis.get_lines()) for axis in display.axes_] == [1, 4, 1]
    assert sorted(display.lines_) == sorted(
        [
            "loss",
            "easy_fraction",
            "semi_hard_fraction",
            "hard_fraction",
            "active_fraction",
            "validation_score",
        ]
    )
    for key, line in display.lines_.items():
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
    assert [len(axis.get_lines()) for axis in display.axes_] == [1, 1, 1]


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
    message = (
        "history has no curve to plot against 'epoch': no epoch holds both 'epoch' and "
        "one of ['loss', 'easy_fraction', 'semi_hard_fraction', 'hard_fraction', "
        "'active_fraction', 'validation_score']."
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
