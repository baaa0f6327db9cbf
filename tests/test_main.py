"""The command line: ``python -m sklearn_triplet``."""

import pytest

from sklearn_triplet.__main__ import main


def test_help_is_plain_text_that_says_what_the_job_does(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and ":class:" not in text  # no reStructuredText markup
    assert "usage: python -m sklearn_triplet" in text
    for words in ("TripletEmbedder", "digits", "test accuracy", "fit time"):
        assert words in " ".join(text.split())
