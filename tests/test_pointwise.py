"""PointwiseTransformer: a transformer of points in front of the embedders of tuples."""

import re
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_triplet import ComparisonEmbedder, PairEmbedder, PointwiseTransformer

TINY = dict(n_components=2, hidden_layer_sizes=(8,), max_iter=2, batch_size=32, random_state=0)


@pytest.fixture
def pairs():
    rng = np.random.default_rng(0)
    X = rng.normal(loc=100.0, scale=[1.0, 10.0, 1000.0], size=(60, 2, 3))
    y = np.where(np.arange(60) % 2 == 0, 1, -1)
    return X, y


def test_fits_on_the_points_and_transforms_each_point(pairs):
    X, _ = pairs
    step = PointwiseTransformer(StandardScaler()).fit(X)
    reference = StandardScaler().fit(X.reshape(-1, 3))
    np.testing.assert_allclose(step.transformer_.mean_, reference.mean_)
    np.testing.assert_allclose(step.transformer_.scale_, reference.scale_)
    out = step.transform(X)
    assert out.shape == X.shape
    for k in range(2):
        np.testing.assert_allclose(out[:, k], reference.transform(X[:, k]))
    # single points, as the embedder's transform takes them
    np.testing.assert_allclose(step.transform(X[:, 1]), reference.transform(X[:, 1]))
    assert step.n_features_in_ == 3
    assert not hasattr(PointwiseTransformer(StandardScaler()), "transformer_")  # a clone is fitted


def test_a_scaler_in_a_pipeline_and_a_grid_search(pairs):
    X, y = pairs
    with pytest.raises(ValueError, match="Found array with dim 3"):
        make_pipeline(StandardScaler(), PairEmbedder(**TINY)).fit(X, y)  # what users try first
    model = make_pipeline(PointwiseTransformer(StandardScaler()), PairEmbedder(**TINY))
    search = GridSearchCV(model, {"pairembedder__margin": [0.5, 1.0]}, cv=2, error_score="raise")
    with warnings.catch_warnings():  # two epochs: a ConvergenceWarning, or none
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    best = search.best_estimator_
    # what the embedder saw is the scaled data: the same as scaling by hand and fitting it alone
    scaled = StandardScaler().fit(X.reshape(-1, 3))
    alone = PairEmbedder(**{**TINY, "margin": search.best_params_["pairembedder__margin"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        alone.fit(scaled.transform(X.reshape(-1, 3)).reshape(X.shape), y)
    np.testing.assert_allclose(
        best.transform(X[:, 0]), alone.transform(scaled.transform(X[:, 0])), rtol=1e-5, atol=1e-6
    )
    assert best.predict(X).shape == (60,)


def test_triplets_and_an_imputer():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 3, 4))
    X[0, 1, 2] = np.nan
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Input X contains NaN. ComparisonEmbedder does not accept missing values: impute them "
            "first, for example with make_pipeline(PointwiseTransformer(SimpleImputer()), "
            "ComparisonEmbedder()) (SimpleImputer from sklearn.impute), or drop the samples with "
            "missing values. See https://scikit-learn.org/stable/modules/impute.html"
        ),
    ):
        ComparisonEmbedder(**TINY).fit(X)
    model = make_pipeline(PointwiseTransformer(SimpleImputer()), ComparisonEmbedder(**TINY))
    with pytest.warns():
        model.fit(X)
    assert np.isfinite(model.transform(X[:, 1])).all()


def test_errors(pairs):
    X, _ = pairs
    with pytest.raises(
        ValueError,
        match=re.escape(
            "X must be tuples of points for PointwiseTransformer.fit, an array of shape "
            "(n_tuples, k, n_features). Index tuples into an embedder's points need no such step: "
            "transform the points themselves, e.g. "
            "PairEmbedder(points=StandardScaler().fit_transform(points)); got shape (60, 2)."
        ),
    ):
        PointwiseTransformer(StandardScaler()).fit(np.zeros((60, 2), dtype=int))
    step = PointwiseTransformer(StandardScaler()).fit(X)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "X must be tuples of shape (n_tuples, k, 3) or points of shape (n_samples, 3), with "
            "the n_features of the points PointwiseTransformer was fitted on; got shape (5, 2, 4)."
        ),
    ):
        step.transform(np.zeros((5, 2, 4)))
    with pytest.raises(ValueError, match="The 'transformer' parameter of PointwiseTransformer"):
        PointwiseTransformer("scale").fit(X)
