"""The standard networks (FCN, ResNet) and classifiers given as backbones, their heads replaced."""

import math
import pickle
import re
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from sklearn_triplet import SiameseEmbedder, TripletEmbedder, load
from sklearn_triplet.backbones import (
    HeadReplaced,
    ResidualBlock,
    find_head,
    make_fcn,
    make_resnet,
    replace_head,
)

BUILDERS = {"fcn": make_fcn, "resnet": make_resnet}


def _signals(n_per_class=12, channels=2, length=30, seed=0):
    """Two classes of noisy signals: a bump early or late along the length."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    X, y = [], []
    for label, centre in enumerate((length // 4, 3 * length // 4)):
        bump = np.exp(-0.5 * ((t - centre) / 2.0) ** 2)
        for _ in range(n_per_class):
            X.append(bump + 0.3 * rng.standard_normal((channels, length)))
            y.append(label)
    return np.asarray(X, dtype=np.float32), np.asarray(y)


@pytest.fixture
def small():
    # do_no_harm=False: the tests read the networks' outputs (a two-epoch network seldom beats
    # the raw samples, which do_no_harm would hand back); tests/test_guard.py tests do_no_harm.
    return dict(n_components=4, max_iter=2, batch_size=16, random_state=0, do_no_harm=False)


# -- the networks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("shape", [(1, 1), (1, 37), (5, 16), (1, 28, 28), (3, 7, 13), (2, 1, 9)])
def test_any_length_size_and_channel_count(name, shape):
    net = BUILDERS[name](math.prod(shape), 6, input_shape=shape, width=0.1)
    out = net(torch.randn(3, math.prod(shape)))
    assert out.shape == (3, 6) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("shapes", [((2, 20), (2, 300)), ((3, 8, 8), (3, 31, 17))])
def test_global_average_pooling_makes_the_weights_independent_of_the_size(name, shapes):
    first, second = (
        BUILDERS[name](math.prod(s), 6, input_shape=s, generator=torch.Generator().manual_seed(i))
        for i, s in enumerate(shapes)
    )
    second.load_state_dict(first.state_dict())  # same parameters, whatever the size
    assert second(torch.randn(2, math.prod(shapes[1]))).shape == (2, 6)


def test_fcn_at_width_one_is_the_papers_network():
    net = make_fcn(300, 8, input_shape=(3, 100), width=1, pool=False)
    convs = [m for m in net if isinstance(m, nn.Conv1d)]
    assert [c.out_channels for c in convs] == [128, 256, 128]
    assert [c.kernel_size for c in convs] == [(8,), (5,), (3,)]
    assert convs[0].in_channels == 3
    norms = [m for m in net if isinstance(m, nn.BatchNorm1d)]
    assert [n.num_features for n in norms] == [128, 256, 128]
    assert not any(isinstance(m, nn.MaxPool1d) for m in net)  # the paper's net: no pooling
    assert isinstance(net[-3], nn.AdaptiveAvgPool1d) and net[-3].output_size == 1
    assert net[-1].in_features == 128 and net[-1].out_features == 8


def test_resnet_at_width_one_is_the_papers_network():
    net = make_resnet(300, 8, input_shape=(3, 100), width=1, pool=False)
    blocks = [m for m in net if isinstance(m, ResidualBlock)]
    assert len(blocks) == 3
    for block, channels in zip(blocks, (64, 128, 128)):
        convs = [m for m in block.body if isinstance(m, nn.Conv1d)]
        assert [c.out_channels for c in convs] == [channels] * 3
        assert [c.kernel_size for c in convs] == [(8,), (5,), (3,)]
    # a 1 x 1 convolution and batch normalisation where the channels change, else the identity
    assert [type(b.shortcut) for b in blocks] == [nn.Sequential, nn.Sequential, nn.Identity]
    assert blocks[0].shortcut[0].kernel_size == (1,) and blocks[0].shortcut[0].in_channels == 3
    assert net[-1].in_features == 128


def test_residual_block_adds_its_shortcut():
    block = ResidualBlock(3, 3, (3, 3, 3), dims=1).eval()
    with torch.no_grad():
        for layer in block.body:
            if isinstance(layer, nn.Conv1d):
                layer.weight.zero_()  # the body's output is then its last BN's bias: zero
    x = torch.randn(2, 3, 10)
    torch.testing.assert_close(block(x), torch.relu(x))


def test_width_scales_the_filters():
    net = make_fcn(50, 4, input_shape=(1, 50), width=0.25)
    assert [m.out_channels for m in net if isinstance(m, nn.Conv1d)] == [32, 64, 32]
    with pytest.raises(
        ValueError, match=re.escape("width must be a positive number; got width=0.")
    ):
        make_fcn(50, 4, input_shape=(1, 50), width=0)


def test_images_take_a_quarter_of_the_filters_of_signals_by_default():
    signal = make_fcn(50, 4, input_shape=(1, 50))
    image = make_fcn(28 * 28, 4, input_shape=(1, 28, 28))
    assert [m.out_channels for m in signal if isinstance(m, nn.Conv1d)] == [64, 128, 64]
    assert [m.out_channels for m in image if isinstance(m, nn.Conv2d)] == [16, 32, 16]
    wide = make_fcn(28 * 28, 4, input_shape=(1, 28, 28), width=0.25)
    assert [m.out_channels for m in wide if isinstance(m, nn.Conv2d)] == [32, 64, 32]


@pytest.mark.parametrize("kernel_size", [8, 5])
def test_convolutions_keep_the_length_as_same_padding_does(kernel_size):
    net = make_fcn(
        40, 4, input_shape=(1, 40), kernel_sizes=(kernel_size,) * 3, width=0.1, pool=False
    )
    conv = next(m for m in net if isinstance(m, nn.Conv1d))
    x = torch.randn(2, 1, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch warns of the copy an even kernel needs
        expected = nn.functional.conv1d(x, conv.weight, padding="same")
    start = net.index(conv) if hasattr(net, "index") else list(net).index(conv)
    padded = nn.Sequential(*list(net)[1 : start + 1])  # the padding (for an even kernel) and conv
    torch.testing.assert_close(padded(x), expected)


def test_blocks_but_the_last_are_pooled_by_default():
    image = make_fcn(28 * 28, 4, input_shape=(1, 28, 28))
    kernels = [m.kernel_size for m in image if isinstance(m, nn.Conv2d)]
    assert kernels == [(5, 5), (3, 3), (3, 3)]  # the images' kernels
    assert sum(isinstance(m, nn.MaxPool2d) for m in image) == 2
    signal = make_fcn(500, 4, input_shape=(1, 500))
    assert sum(isinstance(m, nn.MaxPool1d) for m in signal) == 2
    assert isinstance(signal[-4], nn.ReLU)  # the last block is not pooled
    net = make_resnet(500, 4, input_shape=(1, 500), pool=False)
    assert not any(isinstance(m, nn.MaxPool1d) for m in net)


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize(
    ("shape", "factor"), [((1, 512), 1), ((2, 513), 2), ((1, 2000), 4), ((3, 28, 28), 1)]
)
def test_long_signals_are_averaged_down_to_at_most_512_steps(name, shape, factor):
    net = BUILDERS[name](math.prod(shape), 4, input_shape=shape)
    pools = [m for m in net if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d))]
    assert [p.kernel_size for p in pools] == ([(factor,)] if factor > 1 else [])


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("shape", [(2, 1003), (1, 10, 7)])
def test_downsample_averages_the_input_over_windows(name, shape):
    factor = 3
    net = BUILDERS[name](
        math.prod(shape), 4, input_shape=shape, downsample=factor, width=0.1
    ).eval()
    x = torch.randn(2, *shape)
    # by hand: the mean of each window of `factor` steps (pixels), a last partial one alone
    coarse = x
    for axis in range(2, x.ndim):
        windows = torch.split(coarse, factor, dim=axis)
        coarse = torch.cat([w.mean(dim=axis, keepdim=True) for w in windows], dim=axis)
    reading = (nn.Unflatten, nn.AvgPool1d, nn.AvgPool2d)
    rest = nn.Sequential(*[m for m in net if not isinstance(m, reading)])
    torch.testing.assert_close(net(x.flatten(1)), rest(coarse), rtol=1e-4, atol=1e-5)
    assert [m.kernel_size for m in net if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d))] == [
        (factor,) if len(shape) == 2 else factor
    ]


@pytest.mark.parametrize(
    ("downsample", "error", "message"),
    [
        (0, ValueError, "downsample must be at least 1; got 0."),
        (2.5, TypeError, "downsample must be an int or None; got 2.5."),
        (True, TypeError, "downsample must be an int or None; got True."),
    ],
)
def test_downsample_must_be_a_positive_int(downsample, error, message):
    with pytest.raises(error, match=re.escape(message)):
        make_fcn(100, 4, input_shape=(1, 100), downsample=downsample)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_no_warning_when_building_and_running(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BUILDERS[name](60, 4, input_shape=(2, 30))(torch.randn(2, 60))


@pytest.mark.parametrize("name", list(BUILDERS))
def test_the_generator_alone_sets_the_weights(name):
    def build(seed):
        return BUILDERS[name](
            60, 4, input_shape=(2, 30), generator=torch.Generator().manual_seed(seed)
        )

    state = torch.get_rng_state()
    a, b, c = build(0).state_dict(), build(0).state_dict(), build(1).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


# -- in the estimators -----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::sklearn_triplet.EmbeddingCollapseWarning")
@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("Estimator", [TripletEmbedder, SiameseEmbedder])
def test_estimators_fit_signals_deterministically(name, Estimator, small):
    X, y = _signals()
    params = {**small, "backbone": name, "backbone_params": {"input_shape": (2, 30), "width": 0.1}}
    first = Estimator(**params).fit(X, y)
    again = Estimator(**params).fit(X, y)
    np.testing.assert_array_equal(first.transform(X), again.transform(X))
    other = Estimator(**{**params, "random_state": 1}).fit(X, y)
    assert not np.allclose(first.transform(X), other.transform(X))
    assert first.transform(X).shape == (24, 4)
    # rows flattened in C order are the same samples
    np.testing.assert_array_equal(first.transform(X.reshape(24, -1)), first.transform(X))


@pytest.mark.parametrize("name", list(BUILDERS))
def test_images_give_their_shape(name, small):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 3, 9, 11)).astype(np.float32), np.repeat([0, 1], 10)
    params = {**small, "backbone": name, "backbone_params": {"width": 0.1}}
    est = TripletEmbedder(**params).fit(X, y)
    assert tuple(est.module_.backbone[0].unflattened_size) == (3, 9, 11)
    assert est.transform(X).shape == (20, 4)


def test_a_shaped_backbone_needs_the_shape_of_its_samples(small):
    X, y = _signals()
    message = (
        "X must be images, (n_samples, channels, height, width) or (n_samples, height, width), "
        "when backbone='fcn' has no backbone_params['input_shape']; got shape (24, 60)."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        TripletEmbedder(**small, backbone="fcn").fit(X.reshape(24, -1), y)


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("shape", [(2, 30), (1, 6, 10)])
def test_save_load_round_trip(name, shape, small, tmp_path):
    X, y = _signals()
    X = X.reshape(len(X), *shape)
    est = TripletEmbedder(
        **small, backbone=name, backbone_params={"input_shape": shape, "width": 0.1}
    ).fit(X, y)
    est.save(tmp_path / "est.safetensors")
    loaded = load(tmp_path / "est.safetensors")
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))
    assert loaded.get_params() == est.get_params()
    # batch normalisation's running statistics came back too
    for key, value in est.module_.state_dict().items():
        assert torch.equal(loaded.module_.state_dict()[key], value), key


@pytest.mark.parametrize("name, shape", [("fcn", (2, 30)), ("resnet", (1, 6, 10))])
def test_onnx_export_matches_transform(name, shape, small, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    X, y = _signals()
    X = X.reshape(len(X), -1)
    est = TripletEmbedder(
        **small, backbone=name, backbone_params={"input_shape": shape, "width": 0.1}
    ).fit(X, y)
    est.export_onnx(tmp_path / "est.onnx")
    session = ort.InferenceSession(str(tmp_path / "est.onnx"), providers=["CPUExecutionProvider"])
    for rows in (X[:1], X):
        (out,) = session.run(None, {"X": rows})
        np.testing.assert_allclose(out, est.transform(rows), rtol=1e-4, atol=1e-5)


# -- classifiers given as backbones: the head-replacement rule -------------------------------------


class TinyResNet(nn.Module):
    """torchvision's ResNet in miniature: the same child names and order."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(2)
        self.layer1 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.avgpool(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(x, 1))


class TinyVGG(nn.Module):
    """torchvision's VGG in miniature: ``features``, ``avgpool``, a three-layer ``classifier``."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(
            nn.Linear(16, 12),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(12, 12),
            nn.ReLU(),
            nn.Linear(12, 10),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class TinyViT(nn.Module):
    """torchvision's VisionTransformer's naming: ``heads`` holding a Linear named ``head``."""

    def __init__(self):
        super().__init__()
        self.conv_proj = nn.Conv2d(3, 8, 4, stride=4)
        self.encoder = nn.Sequential(nn.Flatten(2), nn.LayerNorm(4))
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(32, 1000)))

    def forward(self, x):
        return self.heads(torch.flatten(self.encoder(self.conv_proj(x)), 1))


class TinySqueezeNet(nn.Module):
    """A convolutional classifier, as torchvision's SqueezeNet has: no linear layer to replace."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(3, 4, 3)
        self.classifier = nn.Sequential(nn.Conv2d(4, 10, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return self.classifier(self.features(x))


def test_find_head_follows_torchvisions_names():
    assert find_head(TinyResNet()) == ("fc", "fc")
    assert find_head(TinyVGG()) == ("classifier", "classifier.5")
    assert find_head(TinyViT()) == ("heads", "heads.head")
    assert find_head(nn.Sequential(nn.Linear(4, 2))) is None
    message = (
        "The backbone's head 'classifier' (Sequential) holds no torch.nn.Linear layer to replace "
        "by a projection to n_components."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        find_head(TinySqueezeNet())


@pytest.mark.parametrize("Model", [TinyResNet, TinyVGG, TinyViT])
def test_replace_head_replaces_the_last_linear_layer_only(Model):
    model = Model()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    net = replace_head(model, 5, input_shape=(3, 8, 8), generator=torch.Generator().manual_seed(0))
    _, path = find_head(model)
    new = net.model.get_submodule(path)
    old = model.get_submodule(path)
    assert isinstance(new, nn.Linear) and new.out_features == 5
    assert new.in_features == old.in_features
    # every other weight is the model's own; the model itself is unchanged
    for key, value in net.model.state_dict().items():
        if not key.startswith(path + "."):
            assert torch.equal(value, original[key]), key
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())
    assert old.out_features in (10, 1000)
    assert net(torch.randn(2, 3 * 8 * 8)).shape == (2, 5)


def test_replace_head_without_a_head():
    message = "Sequential has no child named fc, classifier, head, heads: no head to replace."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        replace_head(nn.Sequential(nn.Linear(4, 2)), 3)


@pytest.mark.parametrize(
    "freeze, frozen",
    [
        (False, ()),
        (0, ()),
        (True, ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "avgpool")),
        ("layer1", ("conv1", "bn1", "relu", "maxpool", "layer1")),
        (2, ("conv1", "bn1")),
        (np.int64(2), ("conv1", "bn1")),
    ],
)
def test_freeze_selects_the_early_children(freeze, frozen):
    net = replace_head(TinyResNet(), 4, input_shape=(3, 8, 8), freeze=freeze)
    assert net.frozen == frozen
    for name, child in net.model.named_children():
        assert all(p.requires_grad != (name in frozen) for p in child.parameters()), name
    net.train()
    for name, child in net.model.named_children():
        assert child.training != (name in frozen), name


@pytest.mark.parametrize(
    "freeze, message",
    [
        (
            "fc",
            "freeze='fc' names no child of the backbone before its head 'fc'; expected one of "
            "['conv1', 'bn1', 'relu', 'maxpool', 'layer1', 'layer2', 'avgpool'].",
        ),
        (
            8,
            "freeze must be a bool, the name of a child of the backbone before its head or a "
            "number of children from 0 to 7; got freeze=8.",
        ),
        (
            1.5,
            "freeze must be a bool, the name of a child of the backbone before its head or a "
            "number of children from 0 to 7; got freeze=1.5.",
        ),
    ],
)
def test_freeze_errors(freeze, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        replace_head(TinyResNet(), 4, freeze=freeze)


def _images(n=24, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], n // 3)
    X = rng.standard_normal((n, 3, 8, 8)) + y[:, None, None, None]
    return X.astype(np.float32), y


def test_a_classifier_backbone_embeds_images_without_surgery(small):
    X, y = _images()
    model = TinyResNet()
    est = TripletEmbedder(**small, backbone=model, backbone_params={"freeze": "layer1"}).fit(X, y)
    assert est.n_components_ == 4 and est.transform(X).shape == (24, 4)
    assert isinstance(est.module_.backbone, HeadReplaced)
    assert est.module_.backbone.model.fc.out_features == 4
    assert model.fc.out_features == 1000  # the user's module is left alone
    trained = est.module_.backbone.model
    # the frozen layers kept their weights and their batch-normalisation statistics
    for name in ("conv1", "bn1", "layer1"):
        for key, value in getattr(trained, name).state_dict().items():
            assert torch.equal(value, getattr(model, name).state_dict()[key]), (name, key)
    assert not torch.equal(trained.layer2[0].weight, model.layer2[0].weight)
    # deterministic with random_state, the new head included
    again = TripletEmbedder(**small, backbone=model, backbone_params={"freeze": "layer1"}).fit(X, y)
    np.testing.assert_array_equal(again.transform(X), est.transform(X))
    # a pickle round trip (save() stores no module instance, as for any user module)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(est)).transform(X), est.transform(X))
    with pytest.raises(TypeError, match=re.escape("save() cannot store backbone=TinyResNet(...)")):
        est.save("unused.safetensors")


def test_a_classifier_backbone_exports_to_onnx(small, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    X, y = _images()
    est = TripletEmbedder(**small, backbone=TinyVGG()).fit(X, y)
    est.export_onnx(tmp_path / "est.onnx")
    session = ort.InferenceSession(str(tmp_path / "est.onnx"), providers=["CPUExecutionProvider"])
    rows = X.reshape(len(X), -1)
    (out,) = session.run(None, {"X": rows})
    np.testing.assert_allclose(out, est.transform(X), rtol=1e-4, atol=1e-5)


def test_a_classifier_backbone_params_errors(small):
    X, y = _images()
    message = (
        "backbone_params of a classifier given as backbone take 'input_shape' and 'freeze' "
        "only; got ['width']."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        TripletEmbedder(**small, backbone=TinyResNet(), backbone_params={"width": 2}).fit(X, y)


def test_a_module_without_head_is_used_as_it_is(small):
    X, y = _images()
    X = X.reshape(len(X), -1)
    est = TripletEmbedder(**small, backbone=nn.Sequential(nn.Linear(192, 7))).fit(X, y)
    assert est.n_components_ == 7  # its own output width, not n_components


def test_warm_start_keeps_n_components_of_a_replaced_head(small):
    X, y = _images()
    est = TripletEmbedder(**small, backbone=TinyResNet(), warm_start=True).fit(X, y)
    est.set_params(n_components=6)
    with pytest.raises(ValueError, match=re.escape("n_components must stay 4")):
        est.fit(X, y)


def test_real_torchvision_resnet(small):
    try:
        import torchvision
    except Exception:  # missing, or built for another torch ("operator torchvision::nms ...")
        pytest.skip("torchvision is not importable")
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    X, y = _images(n=12)
    X = np.repeat(np.repeat(X, 4, axis=2), 4, axis=3)  # 32 x 32
    est = TripletEmbedder(
        **{**small, "max_iter": 1}, backbone=model, backbone_params={"freeze": "layer2"}
    ).fit(X, y)
    assert est.transform(X).shape == (12, 4)
    assert est.module_.backbone.model.fc.out_features == 4
