"""The built-in losses and backbones are registered once; everything else reads the registries."""

import inspect

import pytest

from sklearn_triplet import ComparisonEmbedder, PairEmbedder, SiameseEmbedder, TripletEmbedder
from sklearn_triplet._loading import TRUSTED
from sklearn_triplet._registry import LOSSES, NAMED_LOSSES
from sklearn_triplet.backbones import BACKBONES, WEIGHT_LAYERS, build_backbone
from sklearn_triplet.plotting import _HISTORY_PANELS

ESTIMATORS = [TripletEmbedder, SiameseEmbedder, PairEmbedder, ComparisonEmbedder]


def test_each_loss_is_declared_once_under_its_name():
    assert list(LOSSES) == [
        "triplet",
        "contrastive",
        "given-pairs",
        "given-triplets",
        "multi-similarity",
    ]
    assert list(NAMED_LOSSES) == ["multi-similarity"]
    for loss in LOSSES.values():
        # the counts the fractions divide are among the loss's counts
        for fraction in loss.statistics.fractions:
            assert {fraction.numerator, fraction.denominator} <= set(loss.statistics.names)


def test_the_plots_show_the_fractions_of_every_loss():
    plotted = [key for key, _ in _HISTORY_PANELS["triplets"][2]]
    for loss in LOSSES.values():
        assert {fraction.name for fraction in loss.statistics.fractions} <= set(plotted)
    assert len(plotted) == len(set(plotted))


@pytest.mark.parametrize("cls", [TripletEmbedder, SiameseEmbedder])
def test_the_class_label_estimators_take_and_document_every_named_loss(cls):
    (options, *_) = cls._parameter_constraints["loss"]
    assert options.options == set(NAMED_LOSSES)
    doc = inspect.getdoc(cls)
    header = doc[doc.index("\nloss : ") :].splitlines()[1]
    names = ", ".join(f'"{name}"' for name in NAMED_LOSSES)
    kinds = f"{{{names}}}, " if names else ""
    assert header == f"loss : {kinds}callable or None, default=None"
    for name, loss in NAMED_LOSSES.items():
        assert f'``"{name}"``' in doc and (loss.params or {})


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_every_estimator_takes_and_documents_every_backbone(cls):
    (options, *_) = cls._parameter_constraints["backbone"]
    assert options.options == set(BACKBONES)
    doc = inspect.getdoc(cls)
    names = ", ".join(f'"{name}"' for name in BACKBONES)
    assert f"backbone : {{{names}}}, torch.nn.Module or callable" in doc
    assert all(f'``"{name}"``:' in doc for name in BACKBONES)


def test_load_trusts_the_registered_factories_and_loss_functions():
    for name, spec in BACKBONES.items():
        assert f"sklearn_triplet.backbones.{spec.factory.__name__}" in TRUSTED, name
    functions = [loss.function for loss in LOSSES.values() if loss.function]
    assert functions == [
        "sklearn_triplet.losses.triplet_loss",
        "sklearn_triplet.losses.contrastive_loss",
    ]
    assert set(functions) <= set(TRUSTED)


def test_a_backbone_is_built_from_its_registration():
    for name, spec in BACKBONES.items():
        params = {"input_shape": (1, 4, 4)} if spec.reads_arrays else {}
        module = build_backbone(name, 16, 3, hidden_layer_sizes=(8,), params=params)
        assert any(isinstance(layer, WEIGHT_LAYERS) for layer in module.modules())
    message = "backbone='cnn' needs backbone_params={'input_shape': (channels, height, width)}."
    with pytest.raises(ValueError, match=f"^{message.replace('(', '[(]').replace(')', '[)]')}$"):
        build_backbone("cnn", 16, 3)
