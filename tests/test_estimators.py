"""The embedders as scikit-learn estimators: API, persistence, pipelines, searches, input errors."""

import inspect
import pickle
import re
import warnings

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
from sklearn_triplet._base import BaseEmbedder
from sklearn_triplet._kernels import CONTRASTIVE
from sklearn_triplet._validation import StrOptions

ESTIMATORS = [TripletEmbedder, SiameseEmbedder]


@pytest.fixture
def small_digits(digits):
    X, y = digits
    return X[:300], y[:300]


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_fit_transform_shapes_and_attributes(Estimator, small_digits, fast):
    X, y = small_digits
    est = Estimator(**fast)
    Xt = est.fit_transform(X, y)
    assert Xt.shape == (300, 8) and Xt.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(Xt, axis=1), 1.0, rtol=1e-5)
    assert est.n_features_in_ == 64
    assert est.n_components_ == 8
    assert est.n_iter_ == 3 and len(est.history_) == 3
    assert est.device_ == torch.device("cpu")
    np.testing.assert_allclose(est.transform(X), Xt, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_same_random_state_same_transform_and_global_rng_untouched(Estimator, small_digits, fast):
    X, y = small_digits
    np.random.seed(123)
    torch.manual_seed(123)
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    a = Estimator(**fast).fit(X, y).transform(X)
    b = Estimator(**fast).fit(X, y).transform(X)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.get_rng_state(), torch_state)
    c = Estimator(**{**fast, "random_state": 1}).fit(X, y).transform(X)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_clone_and_params(Estimator):
    est = Estimator(margin=0.3, random_state=0)
    params = est.get_params()
    assert params["margin"] == 0.3
    copy = clone(est).set_params(margin=0.5)
    assert copy.margin == 0.5 and est.margin == 0.3
    assert not hasattr(clone(est), "module_")


@pytest.mark.parametrize("Estimator", ESTIMATORS)
@pytest.mark.parametrize("dump", ["pickle", "joblib"])
def test_persistence_round_trip(Estimator, dump, small_digits, tmp_path, fast):
    X, y = small_digits
    est = Estimator(**fast).fit(X, y)
    if dump == "pickle":
        loaded = pickle.loads(pickle.dumps(est))
    else:
        joblib.dump(est, tmp_path / "est.joblib")
        loaded = joblib.load(tmp_path / "est.joblib")
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))
    assert loaded.history_ == est.history_
    # the original keeps working after being pickled
    assert est.device_ == torch.device("cpu")


def test_pandas_feature_names_and_set_output(small_digits, fast):
    pd = pytest.importorskip("pandas")
    X, y = small_digits
    df = pd.DataFrame(X, columns=[f"pixel_{i}" for i in range(64)])
    est = TripletEmbedder(**fast).fit(df, pd.Series(y))
    assert list(est.feature_names_in_) == list(df.columns)
    names = est.get_feature_names_out()
    assert list(names) == [f"tripletembedder{i}" for i in range(8)]
    out = est.set_output(transform="pandas").transform(df)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(names)
    np.testing.assert_array_equal(out.index, df.index)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_string_labels(Estimator, small_digits, fast):
    X, y = small_digits
    names = np.array(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
    a = Estimator(**fast).fit(X, names[y]).transform(X)
    b = Estimator(**fast).fit(X, y).transform(X)
    # the same classes in a different sort order give a different but valid embedding
    assert a.shape == b.shape and np.isfinite(a).all()
    assert 0 <= Estimator(**fast).fit(X, names[y]).score(X, names[y]) <= 1


def test_pipeline_with_knn(small_digits, fast):
    X, y = small_digits
    model = Pipeline([("emb", TripletEmbedder(**fast)), ("knn", KNeighborsClassifier())])
    model.fit(X[:200], y[:200])
    assert model.score(X[200:], y[200:]) > 0.5


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_grid_search_over_margin_in_pipeline(n_jobs, small_digits, fast):
    X, y = small_digits
    model = Pipeline([("emb", TripletEmbedder(**fast)), ("knn", KNeighborsClassifier())])
    search = GridSearchCV(model, {"emb__margin": [0.1, 0.5]}, cv=2, n_jobs=n_jobs)
    search.fit(X, y)
    assert search.best_params_["emb__margin"] in (0.1, 0.5)
    assert search.cv_results_["mean_test_score"].shape == (2,)


def _torch_threads(estimator, X, y):
    """A 'scorer' that reports how many threads torch uses where the fit ran."""
    return float(torch.get_num_threads())


def test_grid_search_workers_do_not_oversubscribe(small_digits, fast):
    X, y = small_digits
    search = GridSearchCV(
        TripletEmbedder(**fast), {"margin": [0.1, 0.5]}, cv=2, n_jobs=2, scoring=_torch_threads
    )
    search.fit(X, y)
    threads = search.cv_results_["mean_test_score"]
    assert (threads <= max(1, joblib.cpu_count() // 2)).all(), threads


def test_grid_search_with_own_score(small_digits, fast):
    X, y = small_digits
    search = GridSearchCV(TripletEmbedder(**fast), {"margin": [0.1, 0.2, 0.5]}, cv=2)
    search.fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert np.all((scores > 0) & (scores <= 1))
    assert search.best_estimator_.margin == search.best_params_["margin"]


def test_score_is_map_at_r_of_embedding(small_digits, fast):
    from sklearn_triplet.metrics import map_at_r

    X, y = small_digits
    est = TripletEmbedder(**{**fast, "metric": "cosine"}).fit(X, y)
    assert est.score(X, y) == pytest.approx(map_at_r(est.transform(X), y, metric="cosine"))


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_singleton_classes_serve_as_negatives(Estimator, small_digits, fast):
    X, y = small_digits
    y = y.copy()
    y[:5] = np.arange(100, 105)  # five classes of a single sample each
    est = Estimator(**fast).fit(X, y)
    assert np.isfinite(est.transform(X)).all()


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("Estimator", ESTIMATORS)
@pytest.mark.parametrize(
    "X_fn, message",
    [
        (
            lambda X: np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X),
            "Input X contains NaN.",
        ),
        (
            lambda X: np.where(np.arange(X.size).reshape(X.shape) == 7, np.inf, X),
            "Input X contains infinity",
        ),
        (lambda X: X[:, 0], "Expected 2D array, got 1D array instead"),
        (
            lambda X: sparse.csr_matrix(X),
            "Sparse data was passed for X, but dense data is required",
        ),
    ],
    ids=["nan", "inf", "1d", "sparse"],
)
def test_bad_X(Estimator, X_fn, message, small_digits, fast):
    X, y = small_digits
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        Estimator(**fast).fit(X_fn(X), y)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_unknown_options(Estimator, small_digits, fast):
    X, y = small_digits
    with pytest.raises(
        ValueError,
        match=r"The 'metric' parameter of .* must be a str among .*Got 'manhattan' instead",
    ):
        Estimator(**fast, metric="manhattan").fit(X, y)
    with pytest.raises(ValueError, match=r"The 'mining' parameter of .* must be a str among"):
        Estimator(**fast, mining="seminard").fit(X, y)
    with pytest.raises(
        ValueError, match=r"The 'margin' parameter of .* must be a float in the range \(0.0, inf\)"
    ):
        Estimator(**fast, margin=0).fit(X, y)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "device must be 'auto', 'cpu', 'cuda', 'cuda:N', 'mps' or a torch.device; got 'gpu0'."
        ),
    ):
        Estimator(**fast, device="gpu0").fit(X, y)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_an_error(small_digits, fast):
    X, y = small_digits
    msg = (
        "device='cuda' was requested but is not available on this machine; use device='auto' or "
        "'cpu'."
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        TripletEmbedder(**fast, device="cuda").fit(X, y)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_bad_y(Estimator, small_digits, fast):
    X, y = small_digits
    name = Estimator.__name__
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"{name} needs at least two classes to learn from; y has only one class, np.int64(3)."
        ),
    ):
        Estimator(**fast).fit(X, np.full(300, 3))
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"{name} needs at least one class with two or more samples to form a positive pair; "
            "all 300 classes in y have a single sample."
        ),
    ):
        Estimator(**fast).fit(X, np.arange(300))
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        Estimator(**fast).fit(X, np.linspace(0, 1, 300))


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_wrong_number_of_features_at_transform(Estimator, small_digits, fast):
    X, y = small_digits
    est = Estimator(**fast).fit(X, y)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "X has 10 features, but " + Estimator.__name__ + " is expecting 64 features as input."
        ),
    ):
        est.transform(X[:, :10])


@pytest.mark.slow
def test_default_pipeline_on_digits_reaches_098(digits):
    X, y = digits
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    model = Pipeline([("emb", TripletEmbedder(random_state=0)), ("knn", KNeighborsClassifier())])
    assert model.fit(X_train, y_train).score(X_test, y_test) >= 0.98


# -- persistence across machines -----------------------------------------------------------------


def _fake_gpu_trained(estimator):
    """Make a CPU-fitted estimator look as if it had been trained with device='cuda'."""
    estimator.device = "cuda"
    estimator.device_ = torch.device("cuda")
    return estimator


@pytest.mark.skipif(torch.cuda.is_available(), reason="fakes a machine without CUDA")
@pytest.mark.parametrize("Estimator", [TripletEmbedder, SiameseEmbedder])
def test_gpu_trained_estimator_loads_on_a_cpu_machine(Estimator, digits_300, fast):
    X, y = digits_300
    est = Estimator(**fast).fit(X, y)
    expected = est.transform(X)
    blob = pickle.dumps(_fake_gpu_trained(est))
    with pytest.warns(
        UserWarning,
        match=re.escape(
            "saved with device='cuda', which is not available here; it was loaded on the CPU"
        ),
    ):
        loaded = pickle.loads(blob)
    assert loaded.device_ == torch.device("cpu")
    np.testing.assert_array_equal(loaded.transform(X), expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="fakes a machine without CUDA")
def test_auto_device_is_resolved_again_at_load(digits_300, monkeypatch, fast):
    X, y = digits_300
    model = Pipeline([("emb", TripletEmbedder(**fast)), ("knn", KNeighborsClassifier())]).fit(X, y)
    expected = model.predict(X)
    model.named_steps["emb"].device_ = torch.device("cuda")  # as if trained on a GPU machine
    blob = pickle.dumps(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = pickle.loads(blob)
    assert loaded.named_steps["emb"].device_ == torch.device("cpu")
    np.testing.assert_array_equal(loaded.predict(X), expected)


def test_pickled_weights_are_on_the_cpu(digits_300, fast):
    X, y = digits_300
    est = TripletEmbedder(**fast).fit(X, y)
    state = est.__getstate__()
    assert "device_" not in state
    assert all(p.device.type == "cpu" for p in state["module_"].parameters())
    assert est.device_ == torch.device("cpu")  # the live estimator is untouched


# -- export --------------------------------------------------------------------------------------


def test_export_module_matches_transform(digits_300, fast):
    X, y = digits_300
    est = TripletEmbedder(**fast).fit(X, y)
    module = est.export_module()
    assert isinstance(module, torch.nn.Sequential) and not module.training
    with torch.no_grad():
        out = module(torch.from_numpy(X[:10].astype(np.float32))).numpy()
    np.testing.assert_allclose(out, est.transform(X[:10]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    # a copy: changing it leaves the estimator alone
    torch.nn.init.zeros_(module.backbone[0].weight)
    assert np.abs(est.transform(X[:10]) - out).max() < 1e-6


def test_exported_module_can_be_traced_and_exported(digits_300, fast):
    X, y = digits_300
    est = TripletEmbedder(**fast).fit(X, y)
    module = est.export_module()
    example = torch.from_numpy(X[:4].astype(np.float32))
    exported = torch.export.export(module, (example,))
    np.testing.assert_allclose(
        exported.module()(example).detach().numpy(), est.transform(X[:4]), rtol=1e-5, atol=1e-6
    )


# -- the generated __init__ ----------------------------------------------------------------------


def test_generated_init_has_the_explicit_signature_and_only_assigns():
    names = list(inspect.signature(SiameseEmbedder).parameters)
    assert names[:1] == ["n_components"] and names.index("mining") == names.index("margin") + 1
    assert inspect.signature(SiameseEmbedder).parameters["margin"].default == 1.0
    assert inspect.signature(TripletEmbedder).parameters["mining"].default == "semi-hard"
    est = TripletEmbedder(8, margin=0.3)
    assert est.get_params()["n_components"] == 8 and est.margin == 0.3 and est.mining == "semi-hard"
    with pytest.raises(TypeError, match="^too many positional arguments$"):
        TripletEmbedder(8, 0.3)
    with pytest.raises(TypeError, match="^got an unexpected keyword argument 'alpha'$"):
        TripletEmbedder(alpha=1)


def test_a_new_estimator_declares_its_own_parameters_only(small_digits):
    class _PairsEmbedder(BaseEmbedder):
        """A third embedder, for the test."""

        _loss = CONTRASTIVE
        _own_parameters = {"margin": 0.5, "mining": "hard", "alpha": 2.0}
        _parameter_constraints = {
            **BaseEmbedder._parameter_constraints,
            "mining": [StrOptions(set(CONTRASTIVE.minings))],
            "alpha": [float],
        }

    parameters = inspect.signature(_PairsEmbedder).parameters
    assert list(parameters)[list(parameters).index("margin") :][:4] == [
        "margin",
        "mining",
        "alpha",
        "loss",
    ]
    est = clone(_PairsEmbedder(n_components=4, max_iter=1, random_state=0, alpha=3.0))
    assert est.alpha == 3.0 and est.mining == "hard"
    X, y = small_digits
    assert est.fit(X / 16, y).transform(X[:5]).shape == (5, 4)
    assert "n_active_pairs" in est.history_[0]
