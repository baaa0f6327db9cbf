"""Backbone networks and how a ``backbone`` parameter becomes a :class:`torch.nn.Module`.

A backbone maps a batch of flattened samples ``(batch, n_features)`` to embeddings
``(batch, n_components)``. The estimators accept:

- ``"mlp"``: :func:`make_mlp`, fully connected layers with ReLU (the default);
- ``"linear"``: :func:`make_linear`, a learned linear map (the deep analogue of scikit-learn's
  :class:`~sklearn.neighbors.NeighborhoodComponentsAnalysis`), which the estimators initialise
  from the data as NCA does (:func:`initial_linear_weights`);
- ``"cnn"``: :func:`make_cnn`, a small convolutional network for images or signals, with
  ``backbone_params={"input_shape": (channels, height, width)}`` or ``(channels, length)`` (the
  estimators read the shape of images from ``X`` given as arrays);
- a :class:`torch.nn.Module` instance, deep-copied at fit so the user's module is never changed;
- a class or factory, called as ``factory(n_features, n_components, **backbone_params)``.

The built-in networks take a :class:`torch.Generator` and draw their initial weights from it alone,
the same weights as they would draw from torch's global generator seeded alike; torch's global
random state is neither read nor changed.
"""

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from torch import nn

from ._residual import ResidualMLP
from ._threads import seeded_global_generator


class L2Normalize(nn.Module):
    """Scale each row to unit Euclidean norm (rows of zeros stay zero).

    Examples
    --------
    >>> import torch
    >>> L2Normalize()(torch.tensor([[3.0, 4.0]]))
    tensor([[0.6000, 0.8000]])
    """

    def forward(self, x):
        return nn.functional.normalize(x, p=2.0, dim=1)


def make_mlp(
    n_features, n_components, *, hidden_layer_sizes=(256,), activation="relu", generator=None
):
    """Fully connected network from ``n_features`` through the hidden layers to ``n_components``.

    Parameters
    ----------
    n_features : int
        Input width.
    n_components : int
        Embedding width.
    hidden_layer_sizes : tuple of int, default=(256,)
        Width of each hidden layer; ``()`` gives a linear map with bias.
    activation : {"relu", "gelu", "tanh"}, default="relu"
        Non-linearity after each hidden layer.
    generator : torch.Generator, default=None
        Source of the initial weights (PyTorch's default initialisation of each layer, drawn in
        order); None draws from torch's global generator, as ``torch.nn.Linear`` does.

    Returns
    -------
    module : torch.nn.Sequential

    Examples
    --------
    >>> make_mlp(64, 2, hidden_layer_sizes=(32,))
    Sequential(
      (0): Linear(in_features=64, out_features=32, bias=True)
      (1): ReLU()
      (2): Linear(in_features=32, out_features=2, bias=True)
    )
    """
    on = _where(generator)
    layers = []
    width = n_features
    for size in hidden_layer_sizes:
        layers += [nn.Linear(width, int(size), **on), _activation(activation)]
        width = int(size)
    layers.append(nn.Linear(width, n_components, **on))
    return _initialised(nn.Sequential(*layers), generator)


def initial_linear_weights(X, y, n_components, *, init, random_state=None):
    """Initial weights of a linear map from data, as NCA's ``init="pca"`` or ``"lda"`` gives them.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Training data.
    y : ndarray of shape (n_samples,)
        Its labels (used by ``"lda"``).
    n_components : int
        Rows of the map; at most ``min(n_samples, n_features)`` for ``"pca"`` and
        ``min(n_features, n_classes - 1)`` for ``"lda"``.
    init : {"pca", "lda"}
        ``"pca"``: the leading principal axes of ``X`` (unit rows). ``"lda"``: the leading
        discriminant directions (the ``scalings_``) of
        :class:`~sklearn.discriminant_analysis.LinearDiscriminantAnalysis`, which separate the
        class means.
    random_state : int, default=None
        Seeds PCA's randomised solver, when it uses one.

    Returns
    -------
    weights : ndarray of shape (n_components, n_features)
        The weight matrix ``W`` of ``x -> x @ W.T``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.1], [0.0, -0.1]])
    >>> np.abs(initial_linear_weights(X, np.array([0, 0, 1, 1]), 1, init="pca")).round(6)
    array([[1., 0.]])
    """
    if init == "lda":
        lda = LinearDiscriminantAnalysis(n_components=n_components).fit(X, y)
        return lda.scalings_.T[:n_components]
    return PCA(n_components=n_components, random_state=random_state).fit(X).components_


def make_linear(n_features, n_components, *, generator=None):
    """A learned linear map ``x -> x @ W.T`` without bias, like NCA's ``components_``.

    Parameters
    ----------
    n_features : int
        Input width.
    n_components : int
        Embedding width.
    generator : torch.Generator, default=None
        Source of the initial weights; None draws from torch's global generator.

    Returns
    -------
    module : torch.nn.Linear

    Examples
    --------
    >>> make_linear(64, 2)
    Linear(in_features=64, out_features=2, bias=False)
    """
    linear = nn.Linear(n_features, n_components, bias=False, **_where(generator))
    return _initialised(linear, generator)


def make_cnn(
    n_features,
    n_components,
    *,
    input_shape,
    channels=(32, 64),
    hidden_size=128,
    kernel_size=None,
    generator=None,
):
    """Small convolutional network for images or signals passed as flattened rows.

    ``input_shape=(channels, height, width)`` builds 2-D convolutions (images),
    ``input_shape=(channels, length)`` 1-D ones (signals). Each entry of ``channels`` adds a block
    ``Conv -> ReLU -> Conv -> ReLU -> MaxPool2`` (kernels of ``kernel_size`` along each axis,
    padded to keep the width; the pool only while the image or signal is at least 4 steps wide
    along every axis), followed by average pooling to 2 x 2 cells (4 for a signal, which keeps
    more of where along it a pattern lies), a hidden linear layer with ReLU and the output
    layer. Weights
    start as He et al. (2015) advise for ReLU networks (normal, fan-in), biases at zero: with
    PyTorch's default initialisation the signal fades through the layers and every image starts
    at nearly the same embedding.

    Parameters
    ----------
    n_features : int
        Must equal the product of ``input_shape``.
    n_components : int
        Embedding width.
    input_shape : tuple of int
        ``(channels, height, width)`` of an image or ``(channels, length)`` of a signal; rows of X
        are reshaped to it (C order).
    channels : tuple of int, default=(32, 64)
        Output channels of each convolutional block.
    hidden_size : int, default=128
        Width of the hidden fully connected layer.
    kernel_size : int, default=None
        Width of the (odd) convolution kernels along each axis; None means 3 for images (3 x 3
        kernels) and 7 for signals, whose features (peaks, edges, oscillations) usually span more
        steps than an image's span pixels.
    generator : torch.Generator, default=None
        Source of the initial weights; None draws from torch's global generator.

    Returns
    -------
    module : torch.nn.Sequential

    Examples
    --------
    >>> import torch
    >>> net = make_cnn(64, 16, input_shape=(1, 8, 8))
    >>> net(torch.zeros(5, 64)).shape
    torch.Size([5, 16])
    >>> make_cnn(3 * 50, 16, input_shape=(3, 50))(torch.zeros(5, 150)).shape
    torch.Size([5, 16])
    >>> make_cnn(3 * 50, 16, input_shape=(3, 50), kernel_size=5)[1]
    Conv1d(3, 32, kernel_size=(5,), stride=(1,), padding=(2,))
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) not in (2, 3) or math.prod(shape) != n_features:
        raise ValueError(
            "input_shape must be (channels, height, width) or (channels, length), with a product "
            f"equal to n_features={n_features}; got input_shape={tuple(input_shape)}."
        )
    if kernel_size is None:
        kernel_size = 3 if len(shape) == 3 else 7
    if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
        raise ValueError(f"kernel_size must be an odd positive integer; got {kernel_size!r}.")
    conv, pool, average = _CONV_LAYERS[len(shape) - 1]
    in_channels, sizes = shape[0], list(shape[1:])
    on = {**_where(generator), "padding": int(kernel_size) // 2}
    layers = [nn.Unflatten(1, shape)]
    for out_channels in channels:
        layers += [
            conv(in_channels, int(out_channels), int(kernel_size), **on),
            nn.ReLU(),
            conv(int(out_channels), int(out_channels), int(kernel_size), **on),
            nn.ReLU(),
        ]
        if min(sizes) >= 4:
            layers.append(pool(2))
            sizes = [size // 2 for size in sizes]
        in_channels = int(out_channels)
    cells = (2, 2) if len(sizes) == 2 else (4,)
    layers += [
        average(cells),
        nn.Flatten(),
        nn.Linear(in_channels * math.prod(cells), hidden_size, **_where(generator)),
        nn.ReLU(),
        nn.Linear(hidden_size, n_components, **_where(generator)),
    ]
    # Built as PyTorch builds it (its default initialisation), then He's, from one generator.
    return _relu_init(_initialised(nn.Sequential(*layers), generator), generator)


# Convolution, max pooling and adaptive average pooling, for signals (1) and images (2).
_CONV_LAYERS = {
    1: (nn.Conv1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d),
    2: (nn.Conv2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d),
}


def _relu_init(module, generator=None):
    """He (Kaiming) normal weights, fan-in, and zero biases for each conv and linear layer."""
    for layer in module.modules():
        if isinstance(layer, _RANDOM_INIT_LAYERS):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu", generator=generator)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


def _default_init(layer, generator):
    """PyTorch's own ``reset_parameters`` of a linear or convolution layer, from ``generator``."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    if layer.bias is not None:
        bound = 1 / math.sqrt(layer.weight[0].numel())  # 1 / sqrt(fan_in)
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


def _where(generator) -> dict[str, Any]:
    """Layer keyword arguments: on the meta device (no values drawn) when a generator fills them."""
    return {} if generator is None else {"device": "meta"}


def _initialised(module, generator):
    """``module``, built on the meta device, with PyTorch's initialisation drawn from ``generator``.

    The meta device draws nothing; the layers get CPU memory here and are filled in order, weight
    then bias, as their ``reset_parameters`` would fill them from the global generator.
    Normalisation layers have no random initialisation and reset themselves. None leaves the
    module as it is (built on the CPU, from the global generator).
    """
    if generator is None:
        return module
    module = module.to_empty(device="cpu")
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, _RANDOM_INIT_LAYERS):
                _default_init(layer, generator)
            elif isinstance(layer, _FIXED_INIT_LAYERS):
                layer.reset_parameters()
            elif list(layer.parameters(recurse=False)) or list(layer.buffers(recurse=False)):
                raise TypeError(f"No initialisation from a generator for {type(layer).__name__}.")
    return module


_RANDOM_INIT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_FIXED_INIT_LAYERS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.LayerNorm,
    nn.GroupNorm,
)


_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def _activation(name):
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"Unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}."
        ) from None


def make_residual_mlp(n_features, n_components, *, hidden_layer_sizes=(256,), generator=None):
    """A :class:`~sklearn_triplet._residual.ResidualMLP`: a linear map plus fully connected layers
    whose output layer starts at zero (the built-in backbone ``"residual"``).

    Examples
    --------
    >>> make_residual_mlp(4, 2, hidden_layer_sizes=(8,)).mlp[-1].weight.abs().sum().item()
    0.0
    """
    return ResidualMLP(
        n_features, n_components, hidden_layer_sizes=hidden_layer_sizes, generator=generator
    )


@dataclass(frozen=True)
class Backbone:
    """A built-in backbone, registered once in :data:`BACKBONES`.

    The estimators, their constraints and documentation, the trust list of ``load`` and the choice
    of the thread count read it there.

    Attributes
    ----------
    name : str
        The value of ``backbone`` that selects it.
    factory : callable
        ``factory(n_features, n_components, *, generator=None, **backbone_params)``.
    summary : str
        Its description in the documentation of ``backbone``.
    hidden_layer_sizes : bool, default=False
        Whether it takes the estimators' ``hidden_layer_sizes``.
    reads_arrays : bool, default=False
        Whether it takes samples given as arrays (images, signals) and needs their shape,
        ``backbone_params["input_shape"]``, read from ``X`` when not given.
    weight_layers : tuple of type, default=()
        Layer types of its own whose forward pass is a product with a weight, beside
        :data:`WEIGHT_LAYERS`' linear and convolution layers (their work sets the thread count).
    """

    name: str
    factory: Callable[..., nn.Module]
    summary: str
    hidden_layer_sizes: bool = False
    reads_arrays: bool = False
    weight_layers: tuple = ()


#: The built-in backbones, one registration each.
BACKBONES = {
    backbone.name: backbone
    for backbone in (
        Backbone(
            "mlp",
            make_mlp,
            "fully connected layers of ``hidden_layer_sizes`` with ReLU.",
            hidden_layer_sizes=True,
        ),
        Backbone(
            "linear",
            make_linear,
            "a learned linear map, the deep analogue of "
            ":class:`~sklearn.neighbors.NeighborhoodComponentsAnalysis`.",
        ),
        Backbone(
            "cnn",
            make_cnn,
            "a small convolutional network. It reads images as arrays, ``X`` of shape "
            "``(n_samples, channels, height, width)`` or ``(n_samples, height, width)`` (one "
            "channel), the shape of a sample taken from ``X``; signals (time series, spectra) "
            '``(n_samples, channels, length)`` with ``backbone_params={"input_shape": (channels, '
            "length)}``, which builds 1-D convolutions; and flattened rows with "
            '``backbone_params={"input_shape": (channels, height, width)}`` or ``(channels, '
            "length)``.",
            reads_arrays=True,
        ),
        Backbone(
            "residual",
            make_residual_mlp,
            "a linear map plus fully connected layers of ``hidden_layer_sizes`` with ReLU whose "
            "output layer starts at zero, so that it starts as the linear map alone "
            "(:class:`~sklearn_triplet.PairEmbedder` and "
            ":class:`~sklearn_triplet.ComparisonEmbedder` start that map at the points' own "
            "geometry; here it starts random).",
            hidden_layer_sizes=True,
        ),
    )
}

#: Layers whose forward pass is a matrix product of the weight with each output position.
WEIGHT_LAYERS = tuple(
    dict.fromkeys(
        (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
        + tuple(layer for backbone in BACKBONES.values() for layer in backbone.weight_layers)
    )
)


def reads_arrays(backbone):
    """Whether a ``backbone`` parameter names a built-in backbone that reads samples as arrays."""
    return isinstance(backbone, str) and backbone in BACKBONES and BACKBONES[backbone].reads_arrays


def build_backbone(
    backbone, n_features, n_components, *, hidden_layer_sizes=(256,), params=None, generator=None
):
    """Resolve a ``backbone`` parameter into a fresh module.

    Parameters
    ----------
    backbone : {"mlp", "linear", "cnn"}, torch.nn.Module or callable
        What to build. A module instance is deep-copied; a callable is called as
        ``backbone(n_features, n_components, **params)``.
    n_features, n_components : int
        Input and embedding widths.
    hidden_layer_sizes : tuple of int, default=(256,)
        Used by ``"mlp"`` only.
    params : dict, default=None
        Extra keyword arguments of the builder (for ``"cnn"``: ``input_shape``, ``channels``,
        ``hidden_size``, ``kernel_size``; for ``"mlp"``: ``activation``).
    generator : torch.Generator, default=None
        Source of the initial weights of a built-in network. A class or factory is called with
        torch's global generator seeded from ``generator.initial_seed()`` (and restored afterwards,
        under a lock shared by all fits of the process); a module instance is copied as it is.
        None leaves torch's global generator to all of them.

    Returns
    -------
    module : torch.nn.Module

    Examples
    --------
    >>> build_backbone("linear", 4, 2)
    Linear(in_features=4, out_features=2, bias=False)
    """
    params = dict(params or {})
    if isinstance(backbone, nn.Module):
        if params:
            raise ValueError(
                "backbone_params cannot be used with a backbone given as a module instance; got "
                f"backbone_params={params}. Pass a class or factory instead."
            )
        return copy.deepcopy(backbone)
    if isinstance(backbone, str):
        if backbone not in BACKBONES:
            raise ValueError(f"Unknown backbone {backbone!r}; expected one of {sorted(BACKBONES)}.")
        spec = BACKBONES[backbone]
        if spec.hidden_layer_sizes:
            params.setdefault("hidden_layer_sizes", tuple(hidden_layer_sizes))
        if spec.reads_arrays and "input_shape" not in params:
            raise ValueError(
                f"backbone={backbone!r} needs backbone_params={{'input_shape': (channels, height, "
                "width)}."
            )
        module = spec.factory(n_features, n_components, generator=generator, **params)
    elif generator is None:
        module = backbone(n_features, n_components, **params)
    else:
        with seeded_global_generator(generator.initial_seed(), torch.device("cpu")):
            module = backbone(n_features, n_components, **params)
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"The backbone factory must return a torch.nn.Module; got {type(module).__name__}."
        )
    return module
