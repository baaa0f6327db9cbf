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
        ("cnn", {"input_shape": (2, 32), "channels": (4,), "hidden_size": 16}, 8),
        (TwoLayer(64, 5), None, 5),
        (TwoLayer, {"width": 8}, 8),
        (factory, None, 8),
    ],
    ids=["mlp", "mlp-gelu", "linear", "cnn", "cnn-1d", "module", "class", "factory"],
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
            dict(backbone="cnn", backbone_params={"input_shape": (2, 30)}),
            ValueError,
            "input_shape must be (channels, height, width) or (channels, length), with a product "
            "equal to n_features=64; got input_shape=(2, 30).",
        ),
        (
            dict(backbone="cnn", backbone_params={"input_shape": (1, 1, 8, 8)}),
            ValueError,
            "input_shape must be (channels, height, width) or (channels, length), with a product "
            "equal to n_features=64; got input_shape=(1, 1, 8, 8).",
        ),
        (
            dict(backbone="cnn", backbone_params={"input_shape": (2, 32), "kernel_size": 4}),
            ValueError,
            "kernel_size must be an odd positive integer; got 4.",
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
        "cnn-bad-signal-shape",
        "cnn-4d-shape",
        "cnn-even-kernel",
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
        match=re.escape(
            "Unknown backbone 'rnn'; expected one of ['cnn', 'fcn', 'linear', 'mlp', 'residual', "
            "'resnet']."
        ),
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


@pytest.mark.parametrize(
    "input_shape, conv, pool, n_pools",
    [
        ((3, 20), torch.nn.Conv1d, torch.nn.MaxPool1d, 2),  # 20 -> 10 -> 5
        ((3, 4, 5), torch.nn.Conv2d, torch.nn.MaxPool2d, 1),  # 4 x 5 -> 2 x 2, then too small
    ],
    ids=["signal", "image"],
)
def test_cnn_convolves_along_the_axes_of_its_input_shape(input_shape, conv, pool, n_pools):
    net = make_cnn(60, 7, input_shape=input_shape, channels=(4, 6), kernel_size=5)
    convs = [layer for layer in net if isinstance(layer, (torch.nn.Conv1d, torch.nn.Conv2d))]
    assert [type(layer) for layer in convs] == [conv] * 4
    assert [layer.in_channels for layer in convs] == [3, 4, 4, 6]
    assert all(layer.kernel_size == (5,) * (len(input_shape) - 1) for layer in convs)
    # A block pools only while every axis is at least 4 steps wide.
    assert sum(isinstance(layer, pool) for layer in net) == n_pools
    # Then average pooling to 2 x 2 cells of an image, 4 of a signal.
    average = next(layer for layer in net if "AdaptiveAvgPool" in type(layer).__name__)
    assert tuple(np.atleast_1d(average.output_size)) == ((4,) if len(input_shape) == 2 else (2, 2))
    assert net(torch.zeros(2, 60)).shape == (2, 7)


def test_cnn_reads_a_row_channel_by_channel():
    # Row [x_0(t) for t] + [x_1(t) for t]: channel 0 holds the first `length` values.
    net = make_cnn(2 * 16, 4, input_shape=(2, 16), channels=(3,))
    row = torch.arange(32.0)[None, :]
    np.testing.assert_array_equal(net[0](row)[0].numpy(), row.view(2, 16).numpy())
    # A signal in channel 0 only: the first convolution sees nothing through channel 1's weights.
    with torch.no_grad():
        net[1].weight[:, 0].zero_()
        net[1].bias.zero_()
    only_first = torch.cat([torch.randn(1, 16), torch.zeros(1, 16)], dim=1)
    assert torch.count_nonzero(net[1](net[0](only_first))) == 0


def _shifted_signals(n_per_class, seed):
    """Two templates per class (bumps at random places), shifted by up to 16 steps, with noise.

    The templates are the same for every seed; the seed draws the samples.
    """
    template_rng, rng = np.random.default_rng(0), np.random.default_rng(seed)
    t = np.arange(64)
    templates = [
        sum(
            template_rng.choice([-1, 1]) * np.exp(-0.5 * ((t - c) / 3.0) ** 2)
            for c in template_rng.uniform(10, 54, 3)
        )
        for _ in range(8)
    ]
    y = np.repeat(np.arange(4), n_per_class)
    X = np.stack(
        [
            np.roll(templates[2 * c + rng.integers(2)], rng.integers(-16, 17))
            + 0.3 * rng.normal(size=64)
            for c in y
        ]
    )
    return X.astype(np.float32), y


@pytest.mark.slow
def test_1d_cnn_learns_shifted_signals_better_than_mlp():
    X_train, y_train = _shifted_signals(60, seed=0)
    X_test, y_test = _shifted_signals(40, seed=1)  # same templates (seeded), fresh samples
    scores = {}
    for name, kwargs in {
        "mlp": {},
        "cnn": {
            "backbone": "cnn",
            "backbone_params": {"input_shape": (1, 64), "channels": (8, 16)},
        },
    }.items():
        # the networks themselves, compared (do_no_harm could hand either the raw signals back)
        emb = TripletEmbedder(
            n_components=8, max_iter=15, random_state=0, do_no_harm=False, **kwargs
        )
        model = Pipeline([("emb", emb), ("knn", KNeighborsClassifier())])
        scores[name] = model.fit(X_train, y_train).score(X_test, y_test)
    assert scores["cnn"] > scores["mlp"], scores


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


@pytest.mark.parametrize(
    "build",
    [
        lambda g: make_mlp(64, 8, hidden_layer_sizes=(32, 16), generator=g),
        lambda g: build_backbone("linear", 64, 8, generator=g),
        lambda g: build_backbone("cnn", 64, 8, params={"input_shape": (1, 8, 8)}, generator=g),
        lambda g: make_cnn(3 * 20, 8, input_shape=(3, 20), generator=g),
    ],
)
def test_builtin_backbones_draw_their_init_from_their_generator(build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        expected = build(None).state_dict()  # the same draws, from the global generator
    torch.manual_seed(11)
    state = torch.get_rng_state()
    got = build(torch.Generator().manual_seed(3)).state_dict()
    assert torch.equal(torch.get_rng_state(), state)  # the global generator was not touched
    assert list(got) == list(expected)
    for name in expected:
        assert torch.equal(got[name], expected[name]), name
        assert got[name].device == torch.device("cpu")


def test_factory_is_seeded_from_the_generator_and_the_global_state_restored():
    torch.manual_seed(11)
    state = torch.get_rng_state()
    first = build_backbone(factory, 64, 8, generator=torch.Generator().manual_seed(3))
    second = build_backbone(factory, 64, 8, generator=torch.Generator().manual_seed(3))
    other = build_backbone(factory, 64, 8, generator=torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first.weight, second.weight)
    assert not torch.equal(first.weight, other.weight)
