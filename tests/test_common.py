"""scikit-learn's own estimator checks over both embedders."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_triplet import SiameseEmbedder, TripletEmbedder

# A tiny configuration: the checks exercise the API, not the quality of the embedding.
TINY = dict(n_components=2, hidden_layer_sizes=(8,), max_iter=2, batch_size=16, random_state=0)


def _expected_failed_checks(estimator):
    return {}


@parametrize_with_checks(
    [TripletEmbedder(**TINY), SiameseEmbedder(**TINY)],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
