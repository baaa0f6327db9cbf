"""The embedders as scikit-learn estimators: API, pipelines, searches and input errors."""

import re

import joblib
import numpy as np
import pytest
import torch
from scipy import sparse
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline

from sklearn_triplet import SiameseEmbedder, TripletEmbedder

FAST = dict(n_components=8, hidden_layer_sizes=(32,), max_iter=3, batch_size=64, random_state=0)
ESTIMATORS = [TripletEmbedder, SiameseEmbedder]


@pytest.fixture
def small_digits(digits):
    X, y = digits
    return X[:300], y[:300]


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_fit_transform_shapes_and_attributes(Estimator, small_digits):
    X, y = small_digits
    est = Estimator(**FAST)
    Xt = est.fit_transform(X, y)
    assert Xt.shape == (300, 8) and Xt.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(Xt, axis=1), 1.0, rtol=1e-5)
    assert est.n_features_in_ == 64
    assert est.n_components_ == 8
    assert est.n_iter_ == 3 and len(est.history_) == 3
    assert est.device_ == torch.device("cpu")
    np.testing.assert_allclose(est.transform(X), Xt, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_same_random_state_same_transform_and_global_rng_untouched(Estimator, small_digits):
    X, y = small_digits
    np.random.seed(123)
    torch.manual_seed(123)
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    a = Estimator(**FAST).fit(X, y).transform(X)
    b = Estimator(**FAST).fit(X, y).transform(X)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.get_rng_state(), torch_state)
    c = Estimator(**{**FAST, "random_state": 1}).fit(X, y).transform(X)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_clone_and_params(Estimator):
    est = Estimator(margin=0.3, random_state=0)
    params = est.get_params()
    assert params["margin"] == 0.3
    copy = clone(est).set_params(margin=0.5)
    assert copy.margin == 0.5 and est.margin == 0.3
    assert not hasattr(clone(est), "module_")


def test_pandas_feature_names_and_set_output(small_digits):
    pd = pytest.importorskip("pandas")
    X, y = small_digits
    df = pd.DataFrame(X, columns=[f"pixel_{i}" for i in range(64)])
    est = TripletEmbedder(**FAST).fit(df, pd.Series(y))
    assert list(est.feature_names_in_) == list(df.columns)
    names = est.get_feature_names_out()
    assert list(names) == [f"tripletembedder{i}" for i in range(8)]
    out = est.set_output(transform="pandas").transform(df)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(names)
    np.testing.assert_array_equal(out.index, df.index)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_string_labels(Estimator, small_digits):
    X, y = small_digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    a = Estimator(**FAST).fit(X, names[y]).transform(X)
    b = Estimator(**FAST).fit(X, y).transform(X)
    # the same classes in a different sort order give a different but valid embedding
    assert a.shape == b.shape and np.isfinite(a).all()
    assert 0 <= Estimator(**FAST).fit(X, names[y]).score(X, names[y]) <= 1


def test_pipeline_with_knn(small_digits):
    X, y = small_digits
    model = Pipeline([("emb", TripletEmbedder(**FAST)), ("knn", KNeighborsClassifier())])
    model.fit(X[:200], y[:200])
    assert model.score(X[200:], y[200:]) > 0.5


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_grid_search_over_margin_in_pipeline(n_jobs, small_digits):
    X, y = small_digits
    model = Pipeline([("emb", TripletEmbedder(**FAST)), ("knn", KNeighborsClassifier())])
    search = GridSearchCV(model, {"emb__margin": [0.1, 0.5]}, cv=2, n_jobs=n_jobs)
    search.fit(X, y)
    assert search.best_params_["emb__margin"] in (0.1, 0.5)
    assert search.cv_results_["mean_test_score"].shape == (2,)


def _torch_threads(estimator, X, y):
    """A 'scorer' that reports how many threads torch uses where the fit ran."""
    return float(torch.get_num_threads())


def test_grid_search_workers_do_not_oversubscribe(small_digits):
    X, y = small_digits
    search = GridSearchCV(
        TripletEmbedder(**FAST), {"margin": [0.1, 0.5]}, cv=2, n_jobs=2, scoring=_torch_threads
    )
    search.fit(X, y)
    threads = search.cv_results_["mean_test_score"]
    assert (threads <= max(1, joblib.cpu_count() // 2)).all(), threads


def test_grid_search_with_own_score(small_digits):
    X, y = small_digits
    search = GridSearchCV(TripletEmbedder(**FAST), {"margin": [0.1, 0.2, 0.5]}, cv=2)
    search.fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert np.all((scores > 0) & (scores <= 1))
    assert search.best_estimator_.margin == search.best_params_["margin"]


def test_score_is_map_at_r_of_embedding(small_digits):
    from sklearn_triplet.metrics import map_at_r

    X, y = small_digits
    est = TripletEmbedder(**{**FAST, "metric": "cosine"}).fit(X, y)
    assert est.score(X, y) == pytest.approx(map_at_r(est.transform(X), y, metric="cosine"))


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_singleton_classes_serve_as_negatives(Estimator, small_digits):
    X, y = small_digits
    y = y.copy()
    y[:5] = np.arange(100, 105)  # five classes of a single sample each
    est = Estimator(**FAST).fit(X, y)
    assert np.isfinite(est.transform(X)).all()


# -- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("Estimator", ESTIMATORS)
@pytest.mark.parametrize(
    "X_fn, message",
    [
        (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), "Input X contains NaN."),
        (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 7, np.inf, X), "Input X contains infinity"),
        (lambda X: X[:, 0], "Expected 2D array, got 1D array instead"),
        (lambda X: sparse.csr_matrix(X), "Sparse data was passed for X, but dense data is required"),
    ],
    ids=["nan", "inf", "1d", "sparse"],
)
def test_bad_X(Estimator, X_fn, message, small_digits):
    X, y = small_digits
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        Estimator(**FAST).fit(X_fn(X), y)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_unknown_options(Estimator, small_digits):
    X, y = small_digits
    with pytest.raises(ValueError, match=r"The 'metric' parameter of .* must be a str among .*Got 'manhattan' instead"):
        Estimator(**FAST, metric="manhattan").fit(X, y)
    with pytest.raises(ValueError, match=r"The 'mining' parameter of .* must be a str among"):
        Estimator(**FAST, mining="seminard").fit(X, y)
    with pytest.raises(ValueError, match=r"The 'margin' parameter of .* must be a float in the range \(0.0, inf\)"):
        Estimator(**FAST, margin=0).fit(X, y)
    with pytest.raises(ValueError, match=re.escape("device must be 'auto', 'cpu', 'cuda', 'cuda:N', 'mps' or a torch.device; got 'gpu0'.")):
        Estimator(**FAST, device="gpu0").fit(X, y)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_an_error(small_digits):
    X, y = small_digits
    msg = "device='cuda' was requested but is not available on this machine; use device='auto' or 'cpu'."
    with pytest.raises(ValueError, match=re.escape(msg)):
        TripletEmbedder(**FAST, device="cuda").fit(X, y)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_bad_y(Estimator, small_digits):
    X, y = small_digits
    name = Estimator.__name__
    with pytest.raises(ValueError, match=re.escape(f"{name} needs at least two classes to learn from; y has only one class, np.int64(3).")):
        Estimator(**FAST).fit(X, np.full(300, 3))
    with pytest.raises(ValueError, match=re.escape(f"{name} needs at least one class with two or more samples to form a positive pair; all 300 classes in y have a single sample.")):
        Estimator(**FAST).fit(X, np.arange(300))
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        Estimator(**FAST).fit(X, np.linspace(0, 1, 300))


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_wrong_number_of_features_at_transform(Estimator, small_digits):
    X, y = small_digits
    est = Estimator(**FAST).fit(X, y)
    with pytest.raises(ValueError, match=re.escape("X has 10 features, but " + Estimator.__name__ + " is expecting 64 features as input.")):
        est.transform(X[:, :10])


@pytest.mark.slow
def test_default_pipeline_on_digits_reaches_098(digits):
    X, y = digits
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    model = Pipeline([("emb", TripletEmbedder(random_state=0)), ("knn", KNeighborsClassifier())])
    assert model.fit(X_train, y_train).score(X_test, y_test) >= 0.98
