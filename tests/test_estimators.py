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
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline

from sklearn_triplet import SiameseEmbedder, TripletEmbedder
from sklearn_triplet._class_labels import MIN_BATCHES_PER_EPOCH, ClassLabelEmbedder
from sklearn_triplet._kernels import CONTRASTIVE
from sklearn_triplet._validation import StrOptions
from sklearn_triplet.backbones import initial_linear_weights

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


def test_unknown_average_and_schedule(small_digits, fast):
    X, y = small_digits
    with pytest.raises(
        ValueError,
        match=r"The 'average' parameter of TripletEmbedder must be a str among "
        r"\{('active'|'all'), ('active'|'all')\}. Got 'nonzero' instead.",
    ):
        TripletEmbedder(**fast, average="nonzero").fit(X, y)
    with pytest.raises(
        ValueError,
        match=r"The 'learning_rate' parameter of SiameseEmbedder must be a str among "
        r"\{('constant'|'cosine'), ('constant'|'cosine')\}. Got 'adaptive' instead.",
    ):
        SiameseEmbedder(**fast, learning_rate="adaptive").fit(X, y)


@pytest.mark.parametrize("mining", ["semi-hard", "easy-positive"])
def test_average_divides_by_the_active_triplets_or_all_mined(
    mining, small_digits, fast, monkeypatch
):
    X, y = small_digits
    # One batch holding every sample (300 < batch_size) and one epoch: both fits see the same
    # weights and the same triplets, and differ only in the denominator of the loss.
    monkeypatch.setattr("sklearn_triplet._class_labels.MIN_BATCHES_PER_EPOCH", 1)
    params = {**fast, "max_iter": 1, "batch_size": 512, "mining": mining, "margin": 0.05}
    mean_all = TripletEmbedder(**params, average="all").fit(X, y).history_[0]
    mean_active = TripletEmbedder(**params, average="active").fit(X, y).history_[0]
    assert mean_all["n_mined"] == mean_active["n_mined"] > mean_active["n_mined_active"] > 0
    share = mean_active["n_mined_active"] / mean_active["n_mined"]
    assert mean_all["loss"] == pytest.approx(mean_active["loss"] * share, rel=1e-5)


@pytest.mark.parametrize("backbone, expected", [("linear", "easy-positive"), ("mlp", "semi-hard")])
def test_auto_mining_pulls_the_closest_positive_for_the_linear_backbone(
    backbone, expected, small_digits, fast
):
    X, y = small_digits
    # Batches holding every sample (an epoch has at least MIN_BATCHES_PER_EPOCH of them):
    # easy-positive mines one triplet per anchor, semi-hard one per positive pair.
    params = {**fast, "max_iter": 1, "batch_size": 512, "backbone": backbone}
    auto = TripletEmbedder(**params).fit(X, y).history_[0]
    explicit = TripletEmbedder(**params, mining=expected).fit(X, y).history_[0]
    assert auto["loss"] == explicit["loss"] and auto["n_mined"] == explicit["n_mined"]
    counts = np.bincount(y)
    n_mined = len(y) if expected == "easy-positive" else int((counts * (counts - 1)).sum())
    assert auto["n_mined"] == MIN_BATCHES_PER_EPOCH * n_mined


@pytest.mark.parametrize(
    "n_components, init, expected",
    [(8, "auto", "lda"), (16, "auto", "pca"), (16, "pca", "pca"), (8, "lda", "lda")],
)
def test_linear_backbone_starts_from_the_data(n_components, init, expected, small_digits):
    X, y = small_digits
    X = (X / 16).astype(np.float32)
    # A negligible learning rate: after one epoch the weights are the initial ones.
    est = TripletEmbedder(
        n_components,
        backbone="linear",
        init=init,
        max_iter=1,
        learning_rate_init=1e-12,
        random_state=0,
        do_no_harm=False,  # the weights start from all of X, y (none held out)
    ).fit(X, y)
    weights = est.module_.backbone.weight.detach().numpy()
    reference = initial_linear_weights(X, y, n_components, init=expected, random_state=0)
    np.testing.assert_allclose(weights, reference, rtol=1e-4, atol=1e-6)


def test_random_init_and_too_many_components_start_from_torch(small_digits):
    X, y = small_digits
    params = {"backbone": "linear", "max_iter": 1, "learning_rate_init": 1e-12, "random_state": 0}
    random = TripletEmbedder(8, **params, init="random").fit(X, y).module_.backbone.weight
    # auto falls back to torch's initialisation when PCA cannot give 80 components of 64 features
    wide = TripletEmbedder(80, **params).fit(X, y).module_.backbone.weight
    again = TripletEmbedder(80, **params, init="random").fit(X, y).module_.backbone.weight
    torch.testing.assert_close(wide, again)
    lda = TripletEmbedder(8, **params).fit(X, y).module_.backbone.weight  # auto: 8 <= 10 - 1
    assert not torch.allclose(random, lda)


def test_init_errors(small_digits, fast):
    X, y = small_digits
    with pytest.raises(
        ValueError,
        match=re.escape(
            "init='pca' sets the weights of backbone='linear' only; got backbone='mlp'. Use "
            "init='auto' or 'random'."
        ),
    ):
        TripletEmbedder(**fast, init="pca").fit(X, y)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "init='lda' gives at most min(n_features and n_classes - 1) = 9 components; got "
            "n_components=16. Use init='auto' or 'random'."
        ),
    ):
        TripletEmbedder(16, backbone="linear", init="lda", max_iter=1).fit(X, y)


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
            f"{name} needs at least two classes to learn from; y has only one class, 3."
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
    with warnings.catch_warnings():
        # converged: no ConvergenceWarning (the test configuration ignores the ones of tiny fits)
        warnings.simplefilter("error", ConvergenceWarning)
        model.fit(X_train, y_train)
    assert model.score(X_test, y_test) >= 0.98


# -- warm starts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, value, built, shown",
    [
        ("n_components", np.int64(16), "8", "16"),
        ("normalize", False, "True", "False"),
        ("hidden_layer_sizes", [64, 32], "(32,)", "(64, 32)"),
        ("backbone", "linear", "'mlp'", "'linear'"),
        ("backbone_params", {"activation": "tanh"}, "None", "{'activation': 'tanh'}"),
    ],
)
def test_warm_start_refuses_to_change_the_network(name, value, built, shown, small_digits, fast):
    X, y = small_digits
    est = TripletEmbedder(**fast, warm_start=True).fit(X, y)
    before = est.transform(X)
    est.set_params(**{name: value})
    message = (
        f"{name} must stay {built} while warm_start=True trains the fitted network further; got "
        f"{shown}. Set warm_start=False to build and train a new network, or set it back."
    )
    for method in (est.fit, est.partial_fit):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            method(X, y)
    # the fitted model is untouched, and a cold fit builds the new network
    np.testing.assert_array_equal(est.transform(X), before)
    assert est.n_iter_ == fast["max_iter"]
    est.set_params(warm_start=False).fit(X, y)
    assert est.n_iter_ == fast["max_iter"]


def test_warm_start_names_every_changed_parameter(small_digits, fast):
    X, y = small_digits
    est = TripletEmbedder(**fast, warm_start=True).fit(X, y)
    est.set_params(n_components=16, normalize=False)
    message = (
        "n_components and normalize must stay 8 and True while warm_start=True trains the fitted "
        "network further; got 16 and False. Set warm_start=False to build and train a new "
        "network, or set them back."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        est.fit(X, y)


def test_warm_start_applies_the_training_parameters(small_digits, fast):
    # What does not define the network applies to the epochs to come. Two estimators fitted alike
    # continue alike, unless a training parameter of one of them changes.
    X, y = small_digits

    def continued(**changes):
        est = TripletEmbedder(**fast, warm_start=True).fit(X, y)
        return est.set_params(**changes).fit(X, y).transform(X)

    reference = continued()
    np.testing.assert_array_equal(continued(), reference)
    np.testing.assert_array_equal(continued(hidden_layer_sizes=[32]), reference)  # equal value
    for changes in ({"margin": 0.3}, {"mining": "hard"}, {"metric": "cosine"}, {"batch_size": 32}):
        assert not np.array_equal(continued(**changes), reference), changes
    # a width that a linear backbone does not use is no change to its network
    linear = TripletEmbedder(**fast, backbone="linear", warm_start=True).fit(X, y)
    linear.set_params(hidden_layer_sizes=(5,)).fit(X, y)
    assert linear.n_iter_ == 2 * fast["max_iter"]


def test_warm_start_on_a_device_that_is_not_there_is_an_error(small_digits, fast):
    # The device applies to the epochs to come: a warm fit moves the network (here: refuses).
    X, y = small_digits
    est = TripletEmbedder(**fast, device="cpu", warm_start=True).fit(X, y)
    if torch.cuda.is_available():
        est.set_params(device="cuda").fit(X, y)
        assert est.device_.type == "cuda" and next(est.module_.parameters()).is_cuda
    else:
        with pytest.raises(ValueError, match=re.escape("device='cuda' was requested but is not")):
            est.set_params(device="cuda").fit(X, y)


# -- batches ---------------------------------------------------------------------------------------


def test_batch_size_must_hold_two_classes_of_samples_per_class(small_digits, fast):
    X, y = small_digits
    message = (
        "batch_size must be at least 2 * samples_per_class = 16, so that a batch holds two classes "
        "of samples_per_class=8 samples each; got batch_size=6. Lower samples_per_class or raise "
        "batch_size."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        TripletEmbedder(**{**fast, "batch_size": 6}, samples_per_class=8).fit(X, y)
    # at the limit, every class drawn gives samples_per_class samples
    TripletEmbedder(**{**fast, "batch_size": 16}, samples_per_class=8).fit(X, y)


# -- messages --------------------------------------------------------------------------------------


def test_messages_show_numpy_scalars_as_plain_numbers(small_digits, fast):
    # values from a NumPy grid: "Got 0", not "Got np.int64(0)"
    X, y = small_digits
    message = "The 'max_iter' parameter of TripletEmbedder must be an int in the range [1, inf). "
    with pytest.raises(ValueError, match=re.escape(message + "Got 0 instead.")):
        TripletEmbedder(max_iter=np.int64(0)).fit(X, y)
    with pytest.raises(ValueError, match=re.escape("Got -0.5 instead.")):
        TripletEmbedder(margin=np.float64(-0.5)).fit(X, y)
    with pytest.raises(ValueError, match=re.escape("y has only one class, 0.")):
        TripletEmbedder(**fast).fit(X, np.zeros(300, dtype=np.int64))


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


def test_init_takes_n_components_by_position_and_the_rest_by_keyword():
    names = list(inspect.signature(SiameseEmbedder).parameters)
    assert names[:1] == ["n_components"] and names.index("mining") == names.index("margin") + 1
    assert inspect.signature(SiameseEmbedder).parameters["margin"].default == 1.0
    assert inspect.signature(TripletEmbedder).parameters["mining"].default == "auto"
    est = TripletEmbedder(8, margin=0.3)
    assert est.get_params()["n_components"] == 8 and est.margin == 0.3 and est.mining == "auto"
    message = "TripletEmbedder.__init__() takes from 1 to 2 positional arguments but 3 were given"
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        TripletEmbedder(8, 0.3)  # type: ignore[misc]
    message = "TripletEmbedder.__init__() got an unexpected keyword argument 'alpha'"
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        TripletEmbedder(alpha=1)  # type: ignore[call-arg]


def test_a_new_estimator_fills_in_its_kind_and_writes_its_init(small_digits):
    class _PairsEmbedder(ClassLabelEmbedder):
        """A third embedder, for the test."""

        _loss = CONTRASTIVE
        # The loss's options (CONTRASTIVE.options) are parameters of the estimator.
        _parameter_constraints = {
            **ClassLabelEmbedder._parameter_constraints,
            "mining": [StrOptions(set(CONTRASTIVE.minings))],
            "average": [StrOptions({"all", "active"})],
            "squared": ["boolean"],
            "alpha": [float],
        }

        def __init__(
            self,
            n_components=32,
            *,
            margin=0.5,
            mining="hard",
            average="all",
            squared=True,
            alpha=2.0,
            max_iter=50,
            random_state=None,
        ):
            self.n_components = n_components
            self.margin = margin
            self.mining = mining
            self.average = average
            self.squared = squared
            self.alpha = alpha
            self.max_iter = max_iter
            self.random_state = random_state

        # the parameters of the other embedders it does not take, at their defaults
        backbone, hidden_layer_sizes, backbone_params, normalize = "mlp", (64,), None, True
        metric, loss, loss_params, init = "euclidean", None, None, "auto"
        batch_size, samples_per_class = 128, 2
        learning_rate, learning_rate_init, weight_decay = "cosine", 3e-3, 0.0
        mixed_precision, early_stopping, validation_fraction = False, False, 0.1
        n_iter_no_change, tol, warm_start, callback, checkpoint = 10, 1e-4, False, None, None
        checkpoint_every, device, n_threads, verbose, augment = 1, "cpu", None, 0, None

    assert list(inspect.signature(_PairsEmbedder).parameters)[1:6] == [
        "margin",
        "mining",
        "average",
        "squared",
        "alpha",
    ]
    est = clone(_PairsEmbedder(n_components=4, max_iter=1, random_state=0, alpha=3.0))
    assert est.alpha == 3.0 and est.mining == "hard"
    X, y = small_digits
    assert est.fit(X / 16, y).transform(X[:5]).shape == (5, 4)
    assert "n_active_pairs" in est.history_[0]


# -- samples given as arrays (images, signals) -----------------------------------------------------

SMALL_CNN = {"channels": (4,), "hidden_size": 16}


@pytest.fixture
def digit_images(digits_module):
    from sklearn.datasets import load_digits

    images = load_digits().images[:300] / 16.0  # (300, 8, 8), as scikit-learn ships them
    return images, digits_module[1][:300]


def test_cnn_reads_images_and_their_shape_from_X(digit_images, fast):
    images, y = digit_images
    est = TripletEmbedder(**fast, backbone="cnn", backbone_params=SMALL_CNN).fit(images, y)
    assert est.n_features_in_ == 64
    assert tuple(est.module_.backbone[0].unflattened_size) == (1, 8, 8)
    flat = images.reshape(300, 64)
    np.testing.assert_array_equal(est.transform(images), est.transform(flat))
    np.testing.assert_array_equal(est.transform(images[:, None]), est.transform(flat))
    # the same network as from flattened rows with the shape given
    params = {**SMALL_CNN, "input_shape": (1, 8, 8)}
    from_rows = TripletEmbedder(**fast, backbone="cnn", backbone_params=params).fit(flat, y)
    np.testing.assert_array_equal(from_rows.transform(flat), est.transform(flat))
    np.testing.assert_array_equal(from_rows.transform(images), est.transform(flat))
    # channels first, as torch has them: (n, C, H, W)
    stacked = np.stack([images, 1 - images], axis=1)
    two = TripletEmbedder(**fast, backbone="cnn", backbone_params=SMALL_CNN).fit(stacked, y)
    assert tuple(two.module_.backbone[0].unflattened_size) == (2, 8, 8)
    assert two.transform(stacked).shape == (300, 8) and two.n_features_in_ == 128
    assert two.score(stacked, y) > 0


def test_cnn_reads_signals_with_their_shape_given(fast):
    # (n_samples, channels, length): a 3-D X is read as images unless input_shape says (C, L)
    rng = np.random.default_rng(0)
    steps = np.arange(40)
    y = np.repeat(np.arange(3), 30)
    signals = np.stack(
        [np.sin(steps / (2 + c)) + 0.3 * rng.normal(size=(2, 40)) for c in y]
    )  # (90, 2, 40)
    params = {**SMALL_CNN, "input_shape": (2, 40)}
    est = TripletEmbedder(**fast, backbone="cnn", backbone_params=params).fit(signals, y)
    assert isinstance(est.module_.backbone[1], torch.nn.Conv1d) and est.n_features_in_ == 80
    np.testing.assert_array_equal(est.transform(signals), est.transform(signals.reshape(90, 80)))
    as_images = TripletEmbedder(**fast, backbone="cnn", backbone_params=SMALL_CNN).fit(signals, y)
    assert tuple(as_images.module_.backbone[0].unflattened_size) == (1, 2, 40)


def test_arrays_of_samples_need_a_convolutional_backbone(digit_images, fast):
    images, y = digit_images
    message = (
        "X must be 2-D, (n_samples, n_features), with backbone='mlp'; got shape (300, 8, 8). "
        "Flatten each sample, X.reshape(len(X), -1), or use backbone='fcn', 'resnet' or 'cnn', "
        "which read images "
        "(n_samples, channels, height, width) or (n_samples, height, width), and signals "
        "(n_samples, channels, length) with backbone_params={'input_shape': (channels, length)}."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        TripletEmbedder(**fast).fit(images, y)
    est = TripletEmbedder(**fast).fit(images.reshape(300, 64), y)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        est.transform(images)
    with pytest.raises(ValueError, match=re.escape("with a Linear module as backbone; got shape")):
        TripletEmbedder(**fast, backbone=torch.nn.Linear(64, 8)).fit(images, y)


def test_sample_shape_errors_say_which_shapes_fit(digit_images, fast):
    images, y = digit_images
    params = {**SMALL_CNN, "input_shape": (2, 4, 8)}
    message = (
        "X must be of shape (n_samples, 2, 4, 8) to match backbone_params['input_shape']="
        "(2, 4, 8); got shape (300, 8, 8)."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        TripletEmbedder(**fast, backbone="cnn", backbone_params=params).fit(images, y)
    est = TripletEmbedder(**fast, backbone="cnn", backbone_params=SMALL_CNN).fit(images, y)
    message = (
        "X must be of shape (n_samples, 1, 8, 8) or (n_samples, 8, 8), or (n_samples, 64), like "
        "the samples this TripletEmbedder was fitted on; got shape (5, 7, 7)."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        est.transform(np.zeros((5, 7, 7)))
    with pytest.raises(ValueError, match=re.escape("got shape (5, 1, 1, 8, 8)")):
        TripletEmbedder(**fast, backbone="cnn").fit(np.zeros((5, 1, 1, 8, 8)), y[:5])


def test_pairs_of_images_for_a_verifier(digit_images, fast):
    from sklearn_triplet.verification import PairVerifier, make_pairs

    images, y = digit_images
    est = TripletEmbedder(**fast, backbone="cnn", backbone_params=SMALL_CNN).fit(images, y)
    X1, X2, same = make_pairs(images, y, n_pairs=100, random_state=0)
    pairs = np.stack([X1, X2], axis=1)  # (100, 2, 8, 8)
    verifier = PairVerifier(est).fit(pairs, same)
    flat = PairVerifier(est).fit(np.hstack([X1.reshape(100, -1), X2.reshape(100, -1)]), same)
    assert verifier.threshold_ == flat.threshold_


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_nan_error_advises_imputing(Estimator, small_digits, fast):
    X, y = small_digits
    X = X.copy()
    X[3, 5] = np.nan
    name = Estimator.__name__
    message = (
        f"Input X contains NaN. {name} does not accept missing values: impute them first, for "
        f"example with make_pipeline(SimpleImputer(), {name}()) (SimpleImputer from "
        "sklearn.impute), or drop the samples with missing values. See "
        "https://scikit-learn.org/stable/modules/impute.html"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Estimator(**fast).fit(X, y)
    fitted = Estimator(**fast).fit(np.nan_to_num(X), y)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        fitted.transform(X)
