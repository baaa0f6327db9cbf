"""Backbones, devices, persistence across machines and export."""

import pickle
import re
import warnings

import numpy as np
import pytest
import torch
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline

from sklearn_triplet import EmbeddingCollapseWarning, TripletEmbedder
from sklearn_triplet.backbones import build_backbone, make_cnn, make_mlp

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class TwoLayer(torch.nn.Module):
    def __init__(self, n_features, n_components, width=16):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n_features, width),
            torch.nn.ReLU(),
            torch.nn.Linear(width, n_components),
        )

    def forward(self, x):
        return self.net(x)


def factory(n_features, n_components):
    return torch.nn.Linear(n_features, n_components)


@pytest.mark.parametrize(
    "backbone, params, n_out",
    [
        ("mlp", None, 8),
        ("mlp", {"activation": "gelu"}, 8),
        ("linear", None, 8),
        ("cnn", {"input_shape": (1, 8, 8), "channels": (4,), "hidden_size": 16}, 8),
        (TwoLayer(64, 5), None, 5),
        (TwoLayer, {"width": 8}, 8),
        (factory, None, 8),
    ],
    ids=["mlp", "mlp-gelu", "linear", "cnn", "module", "class", "factory"],
)
def test_each_backbone_fits_and_transforms(backbone, params, n_out, digits_300, fast):
    X, y = digits_300
    est = TripletEmbedder(**fast, backbone=backbone, backbone_params=params).fit(X, y)
    Xt = est.transform(X)
    assert Xt.shape == (300, n_out) and np.isfinite(Xt).all()
    assert est.n_components_ == n_out
    assert est.get_feature_names_out().shape == (n_out,)


def test_cnn_starts_with_embeddings_apart_and_does_not_collapse(digits_300, fast):
    # With PyTorch's default initialisation the CNN mapped every digit to nearly one point (mean
    # distance between different classes about 0.02 after normalisation), and a short fit ended
    # with an EmbeddingCollapseWarning.
    X, y = digits_300
    X_t, y_t = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y)
    different = y_t[:, None] != y_t[None, :]
    with torch.random.fork_rng(devices=[]):
        for seed in range(3):
            torch.manual_seed(seed)
            cnn = make_cnn(64, 8, input_shape=(1, 8, 8), channels=(4,), hidden_size=16)
            with torch.no_grad():
                embeddings = torch.nn.functional.normalize(cnn(X_t), dim=1)
            assert torch.cdist(embeddings, embeddings)[different].mean() > 0.2
    params = {"input_shape": (1, 8, 8), "channels": (4,), "hidden_size": 16}
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmbeddingCollapseWarning)
        TripletEmbedder(**fast, backbone="cnn", backbone_params=params).fit(X, y)


def test_linear_backbone_is_a_linear_map(digits_300, fast):
    X, y = digits_300
    est = TripletEmbedder(**fast, backbone="linear", normalize=False).fit(X, y)
    W = est.module_.backbone.weight.detach().numpy()
    np.testing.assert_allclose(est.transform(X), X.astype(np.float32) @ W.T, rtol=1e-4, atol=1e-5)


def test_user_module_is_not_mutated(digits_300, fast):
    X, y = digits_300
    module = TwoLayer(64, 8)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    est = TripletEmbedder(**fast, backbone=module).fit(X, y)
    assert est.module_.backbone is not module
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key])
    # the fitted copy did train
    assert any(not torch.equal(v, before[k]) for k, v in est.module_.backbone.state_dict().items())


def test_module_instance_with_random_state_is_reproducible(digits_300, fast):
    X, y = digits_300
    module = TwoLayer(64, 8)
    a = TripletEmbedder(**fast, backbone=module).fit(X, y).transform(X)
    b = TripletEmbedder(**fast, backbone=module).fit(X, y).transform(X)
    np.testing.assert_array_equal(a, b)


def test_backbone_params_are_searchable(digits_300, fast):
    from sklearn.model_selection import GridSearchCV

    X, y = digits_300
    grid = {"backbone_params": [{"activation": "relu"}, {"activation": "tanh"}]}
    search = GridSearchCV(TripletEmbedder(**fast), grid, cv=2).fit(X, y)
    assert search.best_params_["backbone_params"] in grid["backbone_params"]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            dict(backbone="cnn"),
            ValueError,
            "X must be images, (n_samples, channels, height, width) or (n_samples, height, "
            "width), when backbone='cnn' has no backbone_params['input_shape']; got shape "
            "(300, 64). Give X as images, or the shape of one sample as "
            "backbone_params={'input_shape': (channels, height, width)}, or (channels, length) "
            "for signals.",
        ),
        (
            dict(backbone="cnn", backbone_params={"input_shape": (1, 7, 7)}),
            ValueError,
            "input_shape must be (channels, height, width) or (channels, length), with a product "
            "equal to n_features=64; got input_shape=(1, 7, 7).",
        ),
        (
            dict(backbone=TwoLayer(64, 8), backbone_params={"width": 3}),
            ValueError,
            "backbone_params cannot be used with a backbone given as a module instance; got "
            "backbone_params={'width': 3}. Pass a class or factory instead.",
        ),
        (
            dict(backbone=lambda n, k: "not a module"),
            TypeError,
            "The backbone factory must return a torch.nn.Module; got str.",
        ),
        (
            dict(backbone_params={"activation": "swish"}),
            ValueError,
            "Unknown activation 'swish'; expected one of ['gelu', 'relu', 'tanh'].",
        ),
        (
            dict(backbone=torch.nn.Unflatten(1, (8, 8))),
            ValueError,
            "The backbone must map (batch, n_features) to (batch, n_components); got output shape "
            "(2, 8, 8) for input shape (2, 64).",
        ),
    ],
    ids=[
        "cnn-no-shape",
        "cnn-bad-shape",
        "module-with-params",
        "factory-not-module",
        "bad-activation",
        "3d-output",
    ],
)
def test_backbone_errors(kwargs, error, message, digits_300, fast):
    X, y = digits_300
    est = TripletEmbedder(**{**fast, **kwargs})
    with pytest.raises(error, match=re.escape(message)):
        est.fit(X, y)
    assert not hasattr(est, "module_") and not hasattr(est, "device_")


def test_build_backbone_unknown_name():
    with pytest.raises(
        ValueError,
        match=re.escape("Unknown backbone 'rnn'; expected one of ['cnn', 'linear', 'mlp']."),
    ):
        build_backbone("rnn", 4, 2)


@pytest.mark.slow
def test_cnn_learns_digits_at_least_as_well_as_mlp(digits):
    X, y = digits
    X_train, X_test, y_train, y_test = train_test_split(
        X / 16.0, y, test_size=0.25, stratify=y, random_state=0
    )
    scores = {}
    for name, kwargs in {
        "mlp": {},
        "cnn": {
            "backbone": "cnn",
            "backbone_params": {"input_shape": (1, 8, 8), "channels": (16, 32)},
        },
    }.items():
        emb = TripletEmbedder(max_iter=20, random_state=0, **kwargs)
        model = Pipeline([("emb", emb), ("knn", KNeighborsClassifier())])
        scores[name] = model.fit(X_train, y_train).score(X_test, y_test)
    assert scores["cnn"] >= scores["mlp"], scores


def test_mixed_precision_runs_on_cpu(digits_300, fast):
    X, y = digits_300
    est = TripletEmbedder(**fast, mixed_precision=True).fit(X, y)
    assert est.transform(X).dtype == np.float32 and np.isfinite(est.history_[-1]["loss"])


def test_make_mlp_shapes():
    net = make_mlp(10, 3, hidden_layer_sizes=(7, 5))
    assert [m.out_features for m in net if isinstance(m, torch.nn.Linear)] == [7, 5, 3]


# -- GPU -------------------------------------------------------------------------------------------


@needs_cuda
def test_fit_and_transform_on_cuda(digits_300, fast):
    X, y = digits_300
    est = TripletEmbedder(**fast, device="cuda").fit(X, y)
    assert est.device_.type == "cuda"
    assert next(est.module_.parameters()).device.type == "cuda"
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_allclose(loaded.transform(X), est.transform(X), rtol=1e-5, atol=1e-6)


@needs_cuda
def test_mixed_precision_on_cuda(digits_300, fast):
    X, y = digits_300
    est = TripletEmbedder(**fast, device="cuda", mixed_precision=True).fit(X, y)
    assert np.isfinite(est.transform(X)).all()
