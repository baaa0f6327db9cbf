"""Gallery examples whose figures the text states: they run and show what the text says.

The docs build runs every example (sphinx-build -W); here only those whose prose quotes results.
"""

import re
import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def no_show(monkeypatch):
    plt = pytest.importorskip("matplotlib.pyplot")
    monkeypatch.setattr(plt, "show", lambda: None)
    yield plt
    plt.close("all")


def test_given_triplets_in_two_dimensions(no_show, capsys):
    """The classic exercise: given (anchor, positive, negative) triplets, squared Euclidean
    distance, a 2-D embedding after two epochs, plotted."""
    path = EXAMPLES / "plot_9_given_triplets_2d.py"
    source = path.read_text(encoding="utf-8")
    assert 'metric="sqeuclidean"' in source and "n_components=2" in source
    with pytest.warns(Warning, match="ComparisonEmbedder reached max_iter=2"):
        namespace = runpy.run_path(str(path), run_name="__gallery__")
    model = namespace["model"]
    assert type(model).__name__ == "ComparisonEmbedder" and model.n_iter_ == 2
    assert namespace["train_triplets"].shape == (10_000, 3, 64)
    assert model.transform(namespace["X_test"]).shape == (len(namespace["X_test"]), 2)
    out = capsys.readouterr().out
    in_order = float(re.search(r"held-out triplets in the right order: ([\d.]+)", out)[1])
    accuracy = {
        name: float(value)
        for name, value in re.findall(r"5-NN test accuracy, (.+?): ([\d.]+)", out)
    }
    assert in_order > 0.9
    # the learned plane separates the digits better than the best linear plane of the pixels
    assert accuracy["triplet embedding (2-D)"] > accuracy["PCA (2-D)"] + 0.1
    assert len(no_show.gcf().axes) >= 2
