"""Augmentations: their statistics, shapes and determinism, and the estimators' ``augment=``."""

import re

import numpy as np
import pytest
import torch

from sklearn_triplet import SiameseEmbedder, TripletEmbedder
from sklearn_triplet import augment as aug


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_jitter_adds_noise_of_the_given_std():
    x = torch.full((2000, 2, 50), 3.0)
    out = aug.jitter(0.2)(x, gen())
    noise = out - x
    assert abs(noise.mean().item()) < 0.005
    assert abs(noise.std().item() - 0.2) < 0.005
    assert out.shape == x.shape and out.dtype == x.dtype


def test_scaling_draws_one_gain_per_sample_and_channel():
    x = torch.ones(5000, 3, 20)
    out = aug.scaling(0.1)(x, gen())
    gains = out[:, :, 0]
    assert torch.equal(out, gains[:, :, None].expand_as(out))  # one gain along the length
    assert abs(gains.mean().item() - 1.0) < 0.005
    assert abs(gains.std().item() - 0.1) < 0.005


def test_window_slice_stretches_a_window_back_to_the_length():
    length, ratio = 101, 0.5
    ramp = torch.linspace(0.0, 1.0, length).repeat(200, 2, 1)
    out = aug.window_slice(ratio)(ramp, gen())
    assert out.shape == ramp.shape
    # a window of a ramp is a ramp, stretched: it spans (window - 1) steps of the original
    window = round(ratio * length)
    spans = out[..., -1] - out[..., 0]
    torch.testing.assert_close(spans, torch.full_like(spans, (window - 1) / (length - 1)))
    torch.testing.assert_close(
        out.diff(dim=-1), spans[..., None].expand(-1, -1, length - 1) / (length - 1)
    )
    starts = out[:, 0, 0]
    assert starts.min() >= 0 and starts.max() <= (length - window) / (length - 1) + 1e-6
    assert starts.unique().numel() > 10
    torch.testing.assert_close(out[:, 0], out[:, 1])  # one window for all channels of a sample
    assert torch.equal(aug.window_slice(1.0)(ramp, gen()), ramp)


def test_shift_rolls_each_sample_within_the_fraction():
    x = torch.arange(20.0).repeat(300, 2, 1)
    out = aug.shift(0.2)(x, gen())
    steps = {int((row[0] == torch.roll(x[0, 0], s)).all()) * s for row in out for s in range(-4, 5)}
    for row in out:
        assert any(torch.equal(row, torch.roll(x[0], s, dims=-1)) for s in range(-4, 5))
    assert len(steps) > 1


def test_crop_translates_images_within_the_padding():
    x = torch.zeros(500, 1, 9, 9)
    x[:, :, 4, 4] = 1.0  # one bright pixel at the centre
    out = aug.crop(2)(x, gen())
    where = out[:, 0].flatten(1).argmax(1)
    rows, cols = where // 9, where % 9
    assert out.sum() == 500  # the pixel stays in the image: never cropped out
    assert set(rows.tolist()) == set(range(2, 7)) and set(cols.tolist()) == set(range(2, 7))
    message = "crop augments images, batches (B, channels, height, width); got a batch of shape"
    with pytest.raises(ValueError, match=re.escape(message)):
        aug.crop(2)(torch.zeros(4, 1, 9), gen())


def test_flip_mirrors_about_the_given_share():
    x = torch.arange(4.0).repeat(4000, 1, 2, 1)
    out = aug.flip(0.3)(x, gen())
    flipped = (out == x.flip(-1)).all(-1).all(-1).all(-1)
    assert ((out == x).all(-1).all(-1).all(-1) | flipped).all()
    assert abs(flipped.float().mean().item() - 0.3) < 0.03


@pytest.mark.parametrize(
    "augmentation",
    [
        aug.jitter(),
        aug.scaling(),
        aug.window_slice(),
        aug.shift(),
        aug.flip(),
        aug.crop(),
        aug.RECIPES["signals"],
    ],
    ids=repr,
)
def test_the_generator_alone_decides(augmentation):
    x = torch.randn(8, 2, 12, 12) if "crop" in repr(augmentation) else torch.randn(8, 2, 30)
    state = torch.get_rng_state()
    a, b, c = (augmentation(x, gen(seed)) for seed in (0, 0, 1))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == x.shape


@pytest.mark.parametrize(
    "make, value, message",
    [
        (aug.jitter, 0, "sigma must be positive; got sigma=0."),
        (aug.window_slice, 1.5, "ratio must be in (0, 1]; got ratio=1.5."),
        (aug.crop, 0, "padding must be a positive integer; got padding=0."),
    ],
)
def test_settings_are_checked(make, value, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make(value)


def test_resolve_and_compose():
    assert aug.resolve("signals") == aug.compose(aug.jitter(0.03), aug.scaling(0.1))
    assert aug.resolve("images") == aug.crop(2)
    with pytest.raises(ValueError, match=re.escape("Unknown augment 'audio'; expected one of")):
        aug.resolve("audio")
    with pytest.raises(TypeError, match=re.escape("compose takes callables")):
        aug.compose(3)


# -- the estimators --------------------------------------------------------------------------------


@pytest.fixture
def signals():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 10)
    t = np.linspace(0, 1, 40)
    X = np.sin(2 * np.pi * (y[:, None] + 1) * t) + 0.2 * rng.standard_normal((30, 40))
    return X[:, None, :].astype(np.float32), y


@pytest.fixture
def small():
    return dict(
        n_components=4,
        max_iter=2,
        batch_size=16,
        random_state=0,
        backbone="fcn",
        backbone_params={"width": 0.1, "input_shape": (1, 40)},
        do_no_harm=False,  # the tests read the network's batches and outputs
    )


@pytest.mark.filterwarnings("ignore::sklearn_triplet.EmbeddingCollapseWarning")
@pytest.mark.parametrize("Estimator", [TripletEmbedder, SiameseEmbedder])
def test_augmented_fits_are_deterministic_and_differ(Estimator, signals, small):
    X, y = signals
    plain = Estimator(**small, augment=None).fit(X, y)
    first = Estimator(**small, augment="signals").fit(X, y)
    again = Estimator(**small, augment="signals").fit(X, y)
    np.testing.assert_array_equal(first.transform(X), again.transform(X))
    assert not np.allclose(first.transform(X), plain.transform(X))


def test_the_hook_sees_training_batches_in_their_shape(signals, small):
    X, y = signals
    seen = []

    def record(batch, generator):
        seen.append((tuple(batch.shape), isinstance(generator, torch.Generator)))
        return batch

    est = TripletEmbedder(**small, augment=record).fit(X, y)
    assert seen and all(shape[1:] == (1, 40) and ok for shape, ok in seen)
    n_seen = len(seen)
    assert n_seen == 2 * 4  # max_iter epochs of MIN_BATCHES_PER_EPOCH batches (30 samples)
    est.transform(X)  # transform is never augmented
    assert len(seen) == n_seen


def test_rows_without_a_shape_are_handed_as_rows(signals):
    X, y = signals
    shapes = []

    def record(batch, generator):
        shapes.append(tuple(batch.shape[1:]))
        return batch

    TripletEmbedder(n_components=4, max_iter=1, random_state=0, augment=record).fit(
        X.reshape(30, -1), y
    )
    assert set(shapes) == {(40,)}


def test_a_hook_that_changes_the_shape_is_an_error(signals, small):
    X, y = signals
    message = "augment must return a tensor of the batch's shape (30, 1, 40); got (30, 1, 20)."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        TripletEmbedder(**{**small, "batch_size": 32}, augment=lambda b, g: b[..., :20]).fit(X, y)


def test_augment_is_validated(signals, small):
    X, y = signals
    with pytest.raises(ValueError, match=re.escape("The 'augment' parameter of TripletEmbedder")):
        TripletEmbedder(**small, augment="audio").fit(X, y)


@pytest.mark.filterwarnings("ignore::sklearn_triplet.EmbeddingCollapseWarning")
def test_auto_takes_the_recipe_of_the_kind_with_the_standard_networks(signals, small):
    X, y = signals

    def fits_alike(params, *augments, X=X):
        first, *others = (TripletEmbedder(**params, augment=a).fit(X, y) for a in augments)
        return all(np.array_equal(first.transform(X), o.transform(X)) for o in others)

    # The FCN and the ResNet on signals: the signals' recipe.
    assert fits_alike(small, "auto", "signals")
    assert not fits_alike(small, "auto", None)
    resnet = {**small, "backbone": "resnet"}
    assert fits_alike(resnet, "auto", "signals") and not fits_alike(resnet, "auto", None)
    # Images: the images' recipe.
    images = np.random.default_rng(0).normal(size=(30, 1, 8, 8)).astype(np.float32)
    image_params = {**small, "backbone_params": {"width": 0.1}}
    first, again, plain = (
        TripletEmbedder(**image_params, augment=a).fit(images, y) for a in ("auto", "images", None)
    )
    assert np.array_equal(first.transform(images), again.transform(images))
    assert not np.array_equal(first.transform(images), plain.transform(images))
    # Any other backbone: nothing, with the draws of the fit unchanged.
    rows = X.reshape(len(X), -1)
    assert fits_alike({**small, "backbone": "mlp", "backbone_params": None}, "auto", None, X=rows)
    cnn = {**small, "backbone": "cnn", "backbone_params": {"input_shape": (1, 40)}}
    assert fits_alike(cnn, "auto", None)
