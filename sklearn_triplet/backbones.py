"""Backbone networks and how a ``backbone`` parameter becomes a :class:`torch.nn.Module`.

A backbone maps a batch of flattened samples ``(batch, n_features)`` to embeddings
``(batch, n_components)``. The estimators accept:

- ``"mlp"``: :func:`make_mlp`, fully connected layers with ReLU (the default);
- ``"linear"``: :func:`make_linear`, a learned linear map (the deep analogue of scikit-learn's
  :class:`~sklearn.neighbors.NeighborhoodComponentsAnalysis`);
- ``"cnn"``: :func:`make_cnn`, a small convolutional network for images or signals, with
  ``backbone_params={"input_shape": (channels, height, width)}`` or ``(channels, length)`` (the
  estimators read the shape of images from ``X`` given as arrays);
- a :class:`torch.nn.Module` instance, deep-copied at fit so the user's module is never changed;
- a class or factory, called as ``factory(n_features, n_components, **backbone_params)``.
"""

import copy
import math

from torch import nn


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


def make_mlp(n_features, n_components, *, hidden_layer_sizes=(256,), activation="relu"):
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
    layers = []
    width = n_features
    for size in hidden_layer_sizes:
        layers += [nn.Linear(width, int(size)), _activation(activation)]
        width = int(size)
    layers.append(nn.Linear(width, n_components))
    return nn.Sequential(*layers)


def make_linear(n_features, n_components):
    """A learned linear map ``x -> x @ W.T`` without bias, like NCA's ``components_``.

    Examples
    --------
    >>> make_linear(64, 2)
    Linear(in_features=64, out_features=2, bias=False)
    """
    return nn.Linear(n_features, n_components, bias=False)


def make_cnn(n_features, n_components, *, input_shape, channels=(32, 64), hidden_size=128):
    """Small convolutional network for images or signals passed as flattened rows.

    ``input_shape=(channels, height, width)`` builds 2-D convolutions (images),
    ``input_shape=(channels, length)`` 1-D ones (signals). Each entry of ``channels`` adds a block
    ``Conv3 -> ReLU -> Conv3 -> ReLU -> MaxPool2`` (3 x 3 kernels for images; the pool only while
    the image or signal is at least 4 steps wide along every axis), followed by average pooling to
    2 x 2 cells (2 for a signal), a hidden linear layer with ReLU and the output layer. Weights
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

    Examples
    --------
    >>> import torch
    >>> net = make_cnn(64, 16, input_shape=(1, 8, 8))
    >>> net(torch.zeros(5, 64)).shape
    torch.Size([5, 16])
    >>> make_cnn(3 * 50, 16, input_shape=(3, 50))(torch.zeros(5, 150)).shape
    torch.Size([5, 16])
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) not in (2, 3) or math.prod(shape) != n_features:
        raise ValueError(
            "input_shape must be (channels, height, width) or (channels, length), with a product "
            f"equal to n_features={n_features}; got input_shape={tuple(input_shape)}."
        )
    conv, pool, average = _CONV_LAYERS[len(shape) - 1]
    in_channels, sizes = shape[0], list(shape[1:])
    layers = [nn.Unflatten(1, shape)]
    for out_channels in channels:
        layers += [
            conv(in_channels, int(out_channels), 3, padding=1),
            nn.ReLU(),
            conv(int(out_channels), int(out_channels), 3, padding=1),
            nn.ReLU(),
        ]
        if min(sizes) >= 4:
            layers.append(pool(2))
            sizes = [size // 2 for size in sizes]
        in_channels = int(out_channels)
    cells = (2,) * len(sizes)
    layers += [
        average(cells),
        nn.Flatten(),
        nn.Linear(in_channels * math.prod(cells), hidden_size),
        nn.ReLU(),
        nn.Linear(hidden_size, n_components),
    ]
    return _relu_init(nn.Sequential(*layers))


# Convolution, max pooling and adaptive average pooling, for signals (1) and images (2).
_CONV_LAYERS = {
    1: (nn.Conv1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d),
    2: (nn.Conv2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d),
}


def _relu_init(module):
    """He (Kaiming) normal weights, fan-in, and zero biases for each conv and linear layer."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def _activation(name):
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"Unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}."
        ) from None


_BUILTIN = {"mlp": make_mlp, "linear": make_linear, "cnn": make_cnn}


def build_backbone(backbone, n_features, n_components, *, hidden_layer_sizes=(256,), params=None):
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
        ``hidden_size``; for ``"mlp"``: ``activation``).

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
        if backbone not in _BUILTIN:
            raise ValueError(f"Unknown backbone {backbone!r}; expected one of {sorted(_BUILTIN)}.")
        if backbone == "mlp":
            params.setdefault("hidden_layer_sizes", tuple(hidden_layer_sizes))
        if backbone == "cnn" and "input_shape" not in params:
            raise ValueError(
                "backbone='cnn' needs backbone_params={'input_shape': (channels, height, width)}."
            )
        backbone = _BUILTIN[backbone]
    module = backbone(n_features, n_components, **params)
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"The backbone factory must return a torch.nn.Module; got {type(module).__name__}."
        )
    return module
