"""scikit-learn's own estimator checks over both embedders."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_triplet import SiameseEmbedder, TripletEmbedder

# A tiny configuration: the checks exercise the API, not the quality of the embedding.
TINY = dict(n_components=2, hidden_layer_sizes=(8,), max_iter=2, batch_size=16, random_state=0)


def _expected_failed_checks(estimator):
    return {}


# Two epochs of a tiny network on the checks' data (some of it unscaled, e.g. centred at 100) leave
# the embeddings bunched together, and the estimators rightly say so; that is not under test here.
@pytest.mark.filterwarnings("ignore::sklearn_triplet.EmbeddingCollapseWarning")
@parametrize_with_checks(
    [TripletEmbedder(**TINY), SiameseEmbedder(**TINY)],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
