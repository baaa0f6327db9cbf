"""Backbone networks and how a ``backbone`` parameter becomes a :class:`torch.nn.Module`.

A backbone maps a batch of flattened samples ``(batch, n_features)`` to embeddings
``(batch, n_components)``. The estimators accept:

- ``"mlp"``: :func:`make_mlp`, fully connected layers with ReLU (the default);
- ``"linear"``: :func:`make_linear`, a learned linear map (the deep analogue of scikit-learn's
  :class:`~sklearn.neighbors.NeighborhoodComponentsAnalysis`), which the estimators initialise
  from the data as NCA does (:func:`initial_linear_weights`);
- ``"cnn"``: :func:`make_cnn`, a small convolutional network for images given as flattened pixels,
  with ``backbone_params={"input_shape": (channels, height, width)}``, or for 1-D signals, with
  ``backbone_params={"input_shape": (channels, length)}``;
- a :class:`torch.nn.Module` instance, deep-copied at fit so the user's module is never changed;
- a class or factory, called as ``factory(n_features, n_components, **backbone_params)``.
"""

import copy
import math

from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
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


def make_linear(n_features, n_components):
    """A learned linear map ``x -> x @ W.T`` without bias, like NCA's ``components_``.

    Examples
    --------
    >>> make_linear(64, 2)
    Linear(in_features=64, out_features=2, bias=False)
    """
    return nn.Linear(n_features, n_components, bias=False)


def make_cnn(
    n_features, n_components, *, input_shape, channels=(32, 64), hidden_size=128, kernel_size=None
):
    """Small convolutional network for images or 1-D signals passed as flattened rows.

    ``input_shape=(channels, height, width)`` builds 2-D convolutions (images);
    ``input_shape=(channels, length)`` builds 1-D convolutions (time series, spectra, sensor data).
    Each entry of ``channels`` adds a block ``Conv -> ReLU -> Conv -> ReLU -> MaxPool2`` (the pool
    only while the image or signal is at least 4 steps wide along every axis), followed by average
    pooling to 2 x 2 cells (4 cells for a signal), a hidden linear layer with ReLU and the output
    layer. The convolutions are padded to keep the width.

    Parameters
    ----------
    n_features : int
        Must equal the product of ``input_shape``.
    n_components : int
        Embedding width.
    input_shape : tuple of int
        ``(channels, height, width)`` of an image or ``(channels, length)`` of a signal; rows of X
        are reshaped to it (C order: for a signal, all the steps of the first channel come first).
    channels : tuple of int, default=(32, 64)
        Output channels of each convolutional block.
    hidden_size : int, default=128
        Width of the hidden fully connected layer.
    kernel_size : int, default=None
        Width of the (odd) convolution kernels along each axis; ``None`` means 3 for images (3 x 3
        kernels) and 7 for signals, whose features (peaks, edges, oscillations) usually span more
        steps than an image's span pixels.

    Returns
    -------
    module : torch.nn.Sequential

    Examples
    --------
    >>> import torch
    >>> net = make_cnn(64, 16, input_shape=(1, 8, 8))
    >>> net(torch.zeros(5, 64)).shape
    torch.Size([5, 16])
    >>> signal_net = make_cnn(3 * 50, 16, input_shape=(3, 50), kernel_size=5)
    >>> signal_net(torch.zeros(5, 150)).shape
    torch.Size([5, 16])
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) not in (2, 3) or min(shape) < 1 or math.prod(shape) != n_features:
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
    layers = [nn.Unflatten(1, shape)]
    for out_channels in channels:
        layers += [
            conv(in_channels, int(out_channels), int(kernel_size), padding=int(kernel_size) // 2),
            nn.ReLU(),
            conv(
                int(out_channels),
                int(out_channels),
                int(kernel_size),
                padding=int(kernel_size) // 2,
            ),
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
        nn.Linear(in_channels * math.prod(cells), hidden_size),
        nn.ReLU(),
        nn.Linear(hidden_size, n_components),
    ]
    return nn.Sequential(*layers)


# Convolution, max pooling and adaptive average pooling, for signals (1) and images (2).
_CONV_LAYERS = {
    1: (nn.Conv1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d),
    2: (nn.Conv2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d),
}


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
        ``hidden_size``, ``kernel_size``; for ``"mlp"``: ``activation``).

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
                "backbone='cnn' needs backbone_params={'input_shape': (channels, height, width)} "
                "for images or {'input_shape': (channels, length)} for 1-D signals."
            )
        backbone = _BUILTIN[backbone]
    module = backbone(n_features, n_components, **params)
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"The backbone factory must return a torch.nn.Module; got {type(module).__name__}."
        )
    return module
