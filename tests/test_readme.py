"""The README's "30-second example" runs, and its training stays within a budget.

Its time is measured by ``benchmarks/readme_example.py`` (no timing here): this test runs the code
with every fit cut to one epoch, counting the work it asks for in sample-epochs, so that a change of
defaults that makes the example slower fails here and sends someone to measure it again.
"""

import dataclasses
import re
from pathlib import Path

from sklearn_triplet import _training

README = Path(__file__).resolve().parents[1] / "README.md"
# The default TripletEmbedder fitted once on the example's training set (1,347 digits, 50 epochs).
ONE_FIT = 1347 * 50


def test_readme_example_runs_within_its_training_budget(monkeypatch, capsys):
    code = re.search(r"## 30-second example.*?```python\n(.*?)```", README.read_text(), re.S)[1]
    sample_epochs = []
    train = _training.train

    def one_epoch(module, optimizer, batch_loss, statistics, data, settings, **kwargs):
        sample_epochs.append(data.X.shape[0] * settings.n_epochs)
        settings = dataclasses.replace(settings, n_epochs=1)
        return train(module, optimizer, batch_loss, statistics, data, settings, **kwargs)

    monkeypatch.setattr(_training, "train", one_epoch)
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("KNN test accuracy on the embedding: ")
    assert printed[1].startswith("best margin ")
    # 11 fits: the pipeline, 3 margins x 3 folds on two thirds of the training set, the refit
    assert len(sample_epochs) == 11
    assert sum(sample_epochs) <= 8.5 * ONE_FIT
