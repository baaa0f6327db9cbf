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
- ``"fcn"`` and ``"resnet"``: :func:`make_fcn` and :func:`make_resnet`, the fully convolutional
  and residual networks of Wang, Yan & Oates (2017), the standard baselines of time-series
  classification, for signals ``(channels, length)`` and images ``(channels, height, width)``
  given the same way;
- a :class:`torch.nn.Module` instance, deep-copied at fit so the user's module is never changed;
  a classifier (a torchvision model, or one with a child named ``fc``, ``classifier``, ``head``
  or ``heads``) gets its head replaced by a projection to ``n_components``
  (:func:`replace_head`) and reads samples in their shape;
- a class or factory, called as ``factory(n_features, n_components, **backbone_params)``.

The built-in networks take a :class:`torch.Generator` and draw their initial weights from it alone,
the same weights as they would draw from torch's global generator seeded alike; torch's global
random state is neither read nor changed.
"""

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import torch
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from torch import nn

from ._residual import ResidualMLP
from ._threads import seeded_global_generator

# The default widths of make_fcn and make_resnet (multiples of the paper's filter counts), chosen
# by measurement on a CPU (user guide, "The standard networks"). The FCN for signals: half the
# paper's filters, with augment="signals" as good as a quarter on Coffee, GunPoint and
# BasicMotions over ten seeds and better on PigCVP (1-NN 0.896 against 0.861 over six), at
# about twice the time (9 s and 31 s a fit).
FCN_DEFAULT_WIDTH = 0.5
RESNET_DEFAULT_WIDTH = 0.25
# The FCN's for images: a 2-D convolution does k times the work of a 1-D one of the same kernel
# width k, so images take a quarter of the signals' filters (on 4,000 MNIST digits, 5-NN 0.980
# in 38 s of CPU time against 0.984 in 95 s at 0.25).
FCN_IMAGE_WIDTH = 0.125
#: Signals longer than this many steps are averaged over windows (``downsample=None``) so that
#: the FCN and the ResNet see at most this many: their receptive field is a few dozen steps,
#: and on series of 2,000 steps (PigCVP) averaging over 4 lifted 1-NN from 0.76 to 0.85 in a
#: third of the time (user guide, "The standard networks").
MAX_SIGNAL_LENGTH = 512


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

_NORMS = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
_PADS = {1: nn.ZeroPad1d, 2: nn.ZeroPad2d}

# The filters and kernel widths of Wang, Yan & Oates (2017), at width=1.
FCN_FILTERS, FCN_KERNELS = (128, 256, 128), (8, 5, 3)
RESNET_FILTERS, RESNET_KERNELS = (64, 128, 128), (8, 5, 3)
# Their kernels for images, chosen by measurement (the paper has no images).
IMAGE_KERNELS = (5, 3, 3)


def _check_shape(input_shape, n_features):
    shape = tuple(int(s) for s in input_shape)
    if len(shape) not in (2, 3) or math.prod(shape) != n_features:
        raise ValueError(
            "input_shape must be (channels, height, width) or (channels, length), with a product "
            f"equal to n_features={n_features}; got input_shape={tuple(input_shape)}."
        )
    return shape


def _scaled(filters, width):
    if not (isinstance(width, Real) and float(width) > 0):
        raise ValueError(f"width must be a positive number; got width={width!r}.")
    return [max(1, round(f * width)) for f in filters]


def _conv_bn(dims, in_channels, out_channels, kernel_size, on):
    """Convolution (no bias: the batch normalisation after it has one) and batch normalisation.

    The input is zero-padded to keep its length (or size), ``(kernel_size - 1) // 2`` steps
    before and ``kernel_size // 2`` after along each axis, as Keras's ``padding="same"`` pads;
    an even kernel gets an explicit padding layer (PyTorch's own ``padding="same"`` warns then).
    """
    layers = []
    before, after = (kernel_size - 1) // 2, kernel_size // 2
    if before != after:
        layers.append(_PADS[dims]((before, after) * dims))
    layers += [
        _CONV_LAYERS[dims][0](
            in_channels,
            out_channels,
            kernel_size,
            padding=before if before == after else 0,
            bias=False,
            **on,
        ),
        _NORMS[dims](out_channels, **on),
    ]
    return layers


class ResidualBlock(nn.Module):
    """Three convolution layers with batch normalisation, added to a shortcut, then ReLU.

    ``conv -> BN -> ReLU -> conv -> BN -> ReLU -> conv -> BN``, plus the input (through a 1 x 1
    convolution and batch normalisation when the number of channels changes), then ReLU: a block
    of the residual network of Wang, Yan & Oates (2017).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the block's input and output.
    kernel_sizes : tuple of int
        Kernel widths of the three convolutions (along each axis for images).
    dims : {1, 2}
        1 for signals ``(batch, channels, length)``, 2 for images ``(batch, channels, h, w)``.
    device : torch.device, default=None
        Where the layers are built (``"meta"`` to initialise them later).

    Examples
    --------
    >>> import torch
    >>> ResidualBlock(3, 8, (8, 5, 3), dims=1)(torch.zeros(2, 3, 50)).shape
    torch.Size([2, 8, 50])
    """

    def __init__(self, in_channels, out_channels, kernel_sizes, *, dims, device=None):
        super().__init__()
        on = {"device": device}
        layers, channels = [], in_channels
        for i, kernel_size in enumerate(kernel_sizes):
            layers += _conv_bn(dims, channels, out_channels, int(kernel_size), on)
            if i < len(kernel_sizes) - 1:
                layers.append(nn.ReLU())
            channels = out_channels
        self.body = nn.Sequential(*layers)
        self.shortcut = (
            nn.Sequential(*_conv_bn(dims, in_channels, out_channels, 1, on))
            if in_channels != out_channels
            else nn.Identity()
        )
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


def make_fcn(
    n_features,
    n_components,
    *,
    input_shape,
    width=None,
    kernel_sizes=None,
    pool=True,
    downsample=None,
    generator=None,
):
    """The fully convolutional network of Wang, Yan & Oates (2017), for signals or images.

    Three blocks ``conv -> BN -> ReLU`` with ``128 * width``, ``256 * width`` and ``128 * width``
    filters and kernels of widths 8, 5 and 3 (padded to keep the length), global average pooling
    and a linear projection to ``n_components``. Global average pooling makes the network
    independent of the length of a signal or the size of an image, and the first convolution takes
    any number of channels (multivariate signals, colour images). ``input_shape=(channels,
    length)`` builds 1-D convolutions, ``(channels, height, width)`` 2-D ones (square kernels).

    Parameters
    ----------
    n_features : int
        Must equal the product of ``input_shape``.
    n_components : int
        Embedding width.
    input_shape : tuple of int
        ``(channels, length)`` of a signal or ``(channels, height, width)`` of an image; rows of X
        are reshaped to it (C order).
    width : float, default=None
        Multiplies the paper's filter counts (rounded, at least 1); ``width=1`` is the paper's
        network. None means 0.5 for signals (64, 128, 64 filters) and 0.125 for images (16, 32,
        16), sized for a CPU (see the user guide's measurements).
    kernel_sizes : tuple of int, default=None
        Kernel width of each block (its length sets the number of blocks). None means the
        paper's (8, 5, 3) for signals and (5, 3, 3) for images: on 28 x 28 digits, 8 x 8 kernels
        cost 1.7 times the time of 5 x 5 ones for no better accuracy (user guide).
    pool : bool, default=True
        Whether a max pooling of 2 (2 x 2 for images; a last odd step or row is pooled alone)
        follows each block but the last. False is the paper's network; pooling is the default,
        measured on a CPU as faster and as accurate or more (PigCVP, series of 2,000 steps:
        1-NN 0.789 in 34 s against 0.760 in 85 s; see the user guide).
    downsample : int, default=None
        Average the input over windows of this many steps (pixels, for images: ``downsample x
        downsample``) before the first block; a last partial window is averaged alone. 1 keeps
        the input as it is. None means 1 for images and, for a signal of ``length`` steps,
        ``ceil(length / MAX_SIGNAL_LENGTH)`` (``MAX_SIGNAL_LENGTH = 512``): a long signal is seen
        at a coarser step, which widens what the network sees, in steps, by that factor and
        divides its work by it (user guide).
    generator : torch.Generator, default=None
        Source of the initial weights; None draws from torch's global generator.

    Returns
    -------
    module : torch.nn.Sequential

    References
    ----------
    Z. Wang, W. Yan and T. Oates, "Time series classification from scratch with deep neural
    networks: a strong baseline", IJCNN 2017.

    Examples
    --------
    >>> import torch
    >>> net = make_fcn(3 * 50, 16, input_shape=(3, 50), width=0.25)
    >>> net(torch.zeros(5, 150)).shape
    torch.Size([5, 16])
    >>> make_fcn(28 * 28, 16, input_shape=(1, 28, 28))(torch.zeros(5, 784)).shape
    torch.Size([5, 16])
    """
    shape = _check_shape(input_shape, n_features)
    dims = len(shape) - 1
    max_pool = _CONV_LAYERS[dims][1]
    on = _where(generator)
    if kernel_sizes is None:
        kernel_sizes = FCN_KERNELS if dims == 1 else IMAGE_KERNELS
    if width is None:
        width = FCN_DEFAULT_WIDTH if dims == 1 else FCN_IMAGE_WIDTH
    filters = _scaled(FCN_FILTERS if len(kernel_sizes) == 3 else [128] * len(kernel_sizes), width)
    pool = bool(pool)
    layers = _input_layers(shape, downsample)
    channels = shape[0]
    for i, (out_channels, kernel_size) in enumerate(zip(filters, kernel_sizes)):
        layers += _conv_bn(dims, channels, out_channels, int(kernel_size), on)
        layers.append(nn.ReLU())
        if pool and i < len(filters) - 1:
            layers.append(max_pool(2, ceil_mode=True))
        channels = out_channels
    layers += _global_average_projection(dims, channels, n_components, on)
    return _memory_format(_relu_init(_initialised(nn.Sequential(*layers), generator), generator))


def make_resnet(
    n_features,
    n_components,
    *,
    input_shape,
    width=RESNET_DEFAULT_WIDTH,
    kernel_sizes=None,
    pool=True,
    downsample=None,
    generator=None,
):
    """The residual network of Wang, Yan & Oates (2017), for signals or images.

    Three :class:`ResidualBlock` with ``64 * width``, ``128 * width`` and ``128 * width`` filters,
    each of three ``conv -> BN -> ReLU`` layers with kernels of widths 8, 5 and 3 and a shortcut
    (a 1 x 1 convolution and batch normalisation where the number of channels changes, else the
    identity), then global average pooling and a linear projection to ``n_components``. Like
    :func:`make_fcn`, independent of the length or image size, any number of channels.

    Parameters
    ----------
    n_features : int
        Must equal the product of ``input_shape``.
    n_components : int
        Embedding width.
    input_shape : tuple of int
        ``(channels, length)`` of a signal or ``(channels, height, width)`` of an image.
    width : float, default=0.25
        Multiplies the paper's filter counts (rounded, at least 1); ``width=1`` is the paper's
        network.
    kernel_sizes : tuple of int, default=None
        Kernel widths of the three convolutions of each block; None means (8, 5, 3) for signals
        and (5, 3, 3) for images, as in :func:`make_fcn`.
    pool : bool, default=True
        Whether a max pooling of 2 follows each block but the last, as in :func:`make_fcn`;
        False is the paper's network.
    downsample : int, default=None
        Average the input over windows of this many steps before the first block, as in
        :func:`make_fcn` (None: ``ceil(length / MAX_SIGNAL_LENGTH)`` for signals, 1 for images).
    generator : torch.Generator, default=None
        Source of the initial weights; None draws from torch's global generator.

    Returns
    -------
    module : torch.nn.Sequential

    References
    ----------
    Z. Wang, W. Yan and T. Oates, "Time series classification from scratch with deep neural
    networks: a strong baseline", IJCNN 2017.

    Examples
    --------
    >>> import torch
    >>> make_resnet(2 * 40, 8, input_shape=(2, 40))(torch.zeros(3, 80)).shape
    torch.Size([3, 8])
    """
    shape = _check_shape(input_shape, n_features)
    dims = len(shape) - 1
    on = _where(generator)
    if kernel_sizes is None:
        kernel_sizes = RESNET_KERNELS if dims == 1 else IMAGE_KERNELS
    filters = _scaled(RESNET_FILTERS, width)
    pool = bool(pool)
    layers = _input_layers(shape, downsample)
    channels = shape[0]
    for i, out_channels in enumerate(filters):
        layers.append(ResidualBlock(channels, out_channels, kernel_sizes, dims=dims, **on))
        if pool and i < len(filters) - 1:
            layers.append(_CONV_LAYERS[dims][1](2, ceil_mode=True))
        channels = out_channels
    layers += _global_average_projection(dims, channels, n_components, on)
    return _memory_format(_relu_init(_initialised(nn.Sequential(*layers), generator), generator))


def _downsample_factor(input_shape, downsample=None):
    """The window over which :func:`make_fcn` and :func:`make_resnet` average their input.

    Parameters
    ----------
    input_shape : tuple of int
        ``(channels, length)`` or ``(channels, height, width)``.
    downsample : int, default=None
        The factor asked for; None chooses: ``ceil(length / MAX_SIGNAL_LENGTH)`` for a signal, 1
        for an image.

    Returns
    -------
    factor : int

    Examples
    --------
    >>> _downsample_factor((1, 2000)), _downsample_factor((1, 512)), _downsample_factor((1, 28, 28))
    (4, 1, 1)
    """
    if downsample is None:
        return -(-int(input_shape[1]) // MAX_SIGNAL_LENGTH) if len(input_shape) == 2 else 1
    if isinstance(downsample, bool) or not isinstance(downsample, Integral):
        raise TypeError(f"downsample must be an int or None; got {downsample!r}.")
    if downsample < 1:
        raise ValueError(f"downsample must be at least 1; got {downsample}.")
    return int(downsample)


def _input_layers(shape, downsample):
    """The layers that read a flattened sample: unflatten, average pooling when ``downsample``
    asks for it (see :func:`_downsample_factor`), channels last for images."""
    dims = len(shape) - 1
    layers: list[nn.Module] = [nn.Unflatten(1, shape)]
    factor = _downsample_factor(shape, downsample)
    if factor > 1:
        layers.append((nn.AvgPool1d, nn.AvgPool2d)[dims - 1](factor, ceil_mode=True))
    if dims == 2:
        layers.append(ChannelsLast())
    return layers


class ChannelsLast(nn.Module):
    """Lay images out channels last in memory (same values, same shape).

    With the convolution weights laid out alike, a training step of the 2-D networks on a CPU
    takes about 0.75 of the time (user guide, "The standard networks").
    """

    def forward(self, x):
        return x.contiguous(memory_format=torch.channels_last)


def _memory_format(module):
    """The 4-D weights of a network that holds :class:`ChannelsLast`, laid out channels last."""
    if any(isinstance(layer, ChannelsLast) for layer in module.modules()):
        module = module.to(memory_format=torch.channels_last)
    return module


def _global_average_projection(dims, channels, n_components, on):
    """Global average pooling over the length (or the image), then a linear layer."""
    return [
        _CONV_LAYERS[dims][2](1),
        nn.Flatten(),
        nn.Linear(channels, n_components, **on),
    ]


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


#: The names of a classification head among a model's children, as torchvision names them: ``fc``
#: (ResNet, RegNet, ShuffleNet), ``classifier`` (VGG, DenseNet, MobileNet, EfficientNet, ConvNeXt),
#: ``head`` (Swin) and ``heads`` (vision transformers).
HEAD_NAMES = ("fc", "classifier", "head", "heads")


def find_head(model):
    """The name of ``model``'s classification head and the path of the linear layer to replace.

    The head is the last child of ``model`` (in the order the children were registered) named
    in :data:`HEAD_NAMES`; the layer replaced is the head itself when it is a
    :class:`~torch.nn.Linear`, else the last :class:`~torch.nn.Linear` inside it (a VGG's
    ``classifier`` keeps its first two layers and their weights).

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    head : tuple of (str, str) or None
        ``(child_name, layer_path)``, with ``layer_path`` the dotted name of the layer inside
        ``model``; None when no child bears a head's name.

    Raises
    ------
    ValueError
        When the head holds no linear layer (e.g. SqueezeNet's convolutional classifier).

    Examples
    --------
    >>> from torch import nn
    >>> model = nn.Sequential()
    >>> model.features = nn.Conv2d(3, 8, 3)
    >>> model.classifier = nn.Sequential(nn.Dropout(), nn.Linear(8, 10))
    >>> find_head(model)
    ('classifier', 'classifier.1')
    """
    names = [name for name, _ in model.named_children() if name in HEAD_NAMES]
    if not names:
        return None
    name = names[-1]
    head = getattr(model, name)
    linears = [path for path, layer in head.named_modules() if isinstance(layer, nn.Linear)]
    if not linears:
        raise ValueError(
            f"The backbone's head {name!r} ({type(head).__name__}) holds no torch.nn.Linear layer "
            "to replace by a projection to n_components. Replace the head yourself, or pass a "
            "module whose output is the embedding, under another name than "
            f"{', '.join(HEAD_NAMES)}."
        )
    return name, ".".join(part for part in (name, linears[-1]) if part)


class HeadReplaced(nn.Module):
    """A classifier whose head now projects to the embedding, fed samples in their shape.

    Built by :func:`replace_head`. ``model`` keeps its own structure and weights; the children
    named in ``frozen`` take no gradient and stay in eval mode (their batch normalisation keeps
    its running statistics, their dropout is off) whatever mode the network is put in.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier, its head's last linear layer already replaced.
    input_shape : tuple of int or None
        Each row of the input is reshaped to it (C order) before ``model``; None passes the rows
        as they are.
    frozen : tuple of str, default=()
        Names of ``model``'s children to freeze.
    """

    def __init__(self, model, input_shape, frozen=()):
        super().__init__()
        self.unflatten = nn.Unflatten(1, tuple(input_shape)) if input_shape else nn.Identity()
        self.model = model
        self.frozen = tuple(frozen)
        for name in self.frozen:
            getattr(model, name).requires_grad_(False)

    def train(self, mode=True):
        super().train(mode)
        for name in self.frozen:
            getattr(self.model, name).eval()
        return self

    def forward(self, x):
        return self.model(self.unflatten(x))


def replace_head(model, n_components, *, input_shape=None, freeze=False, generator=None):
    """A copy of a classifier whose head projects to ``n_components``, with early layers frozen.

    The rule: the last linear layer of ``model``'s head (:func:`find_head`: a child named
    ``fc``, ``classifier``, ``head`` or ``heads``, the names torchvision gives them) becomes
    ``Linear(in_features, n_components)``, freshly initialised; every other layer keeps its
    weights. ``model`` itself is left unchanged.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier, torchvision's or built alike (e.g. ``torchvision.models.resnet18()`` with
        the user's own weights loaded).
    n_components : int
        Width of the new projection.
    input_shape : tuple of int, default=None
        The shape of one sample, ``(channels, height, width)`` for images; rows are reshaped to
        it before ``model``. None passes rows as they are.
    freeze : bool, int or str, default=False
        Which children of ``model`` (in the order they were registered) take no gradient and keep
        their batch-normalisation statistics: False or 0 none; an int ``n``, the first ``n``
        children; a str, the child of that name and those before it (``"layer3"`` freezes a
        torchvision ResNet up to and including its third stage); True, every child but the head
        (training then fits the projection alone: a linear probe).
    generator : torch.Generator, default=None
        Source of the new layer's initial weights (PyTorch's default initialisation); None draws
        from torch's global generator.

    Returns
    -------
    module : HeadReplaced

    Raises
    ------
    ValueError
        When ``model`` has no head (:func:`find_head` returns None), its head holds no linear
        layer, or ``freeze`` names no child before the head.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential()
    >>> model.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    >>> model.fc = nn.Linear(8, 1000)
    >>> net = replace_head(model, 16, input_shape=(3, 10, 10), freeze="features")
    >>> net.model.fc
    Linear(in_features=8, out_features=16, bias=True)
    >>> net(torch.zeros(2, 300)).shape
    torch.Size([2, 16])
    """
    found = find_head(model)
    if found is None:
        raise ValueError(
            f"{type(model).__name__} has no child named {', '.join(HEAD_NAMES)}: no head to "
            "replace."
        )
    head, path = found
    model = copy.deepcopy(model)
    *parents, leaf = path.split(".")
    parent = model.get_submodule(".".join(parents))
    old = getattr(parent, leaf)
    linear = nn.Linear(old.in_features, int(n_components), bias=old.bias is not None)
    if generator is not None:
        with torch.no_grad():
            _default_init(linear, generator)
    setattr(parent, leaf, linear.to(old.weight.device, old.weight.dtype))
    return HeadReplaced(model, input_shape, _frozen_children(model, head, freeze))


def _frozen_children(model, head, freeze):
    """The names of the children that ``freeze`` selects (see :func:`replace_head`)."""
    names = [name for name, _ in model.named_children()]
    before = names[: names.index(head)]
    if freeze is True:
        return tuple(before)
    if freeze is None or freeze is False:
        return ()
    if isinstance(freeze, str):
        if freeze not in before:
            raise ValueError(
                f"freeze={freeze!r} names no child of the backbone before its head {head!r}; "
                f"expected one of {before}."
            )
        return tuple(before[: before.index(freeze) + 1])
    if isinstance(freeze, Integral) and 0 <= int(freeze) <= len(before):
        return tuple(before[: int(freeze)])
    raise ValueError(
        "freeze must be a bool, the name of a child of the backbone before its head or a number "
        f"of children from 0 to {len(before)}; got freeze={freeze!r}."
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
            "fcn",
            make_fcn,
            "the fully convolutional network of Wang, Yan & Oates (2017), for signals and images "
            'given as ``"cnn"`` takes them (the user guide says which backbone to use).',
            reads_arrays=True,
        ),
        Backbone(
            "resnet",
            make_resnet,
            "the residual network of Wang, Yan & Oates (2017), for signals and images given as "
            '``"cnn"`` takes them.',
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


def build_backbone(
    backbone, n_features, n_components, *, hidden_layer_sizes=(256,), params=None, generator=None
):
    """Resolve a ``backbone`` parameter into a fresh module.

    Parameters
    ----------
    backbone : {"mlp", "linear", "cnn", "fcn", "resnet"}, torch.nn.Module or callable
        What to build. A module instance is deep-copied; one with a classification head
        (:func:`find_head`) becomes :func:`replace_head`'s copy, its head projecting to
        ``n_components``. A callable is called as ``backbone(n_features, n_components,
        **params)``.
    n_features, n_components : int
        Input and embedding widths.
    hidden_layer_sizes : tuple of int, default=(256,)
        Used by ``"mlp"`` only.
    params : dict, default=None
        Extra keyword arguments of the builder (for ``"fcn"`` and ``"resnet"``: ``input_shape``,
        ``width``, ``kernel_sizes``, ``pool``, ``downsample``; for ``"cnn"``: ``input_shape``,
        ``channels``, ``hidden_size``, ``kernel_size``; for ``"mlp"``: ``activation``; for a
        classifier given as a module: ``input_shape`` and ``freeze``, see :func:`replace_head`).
    generator : torch.Generator, default=None
        Source of the initial weights of a built-in network. A class or factory is called with
        torch's global generator seeded from ``generator.initial_seed()`` (and restored afterwards,
        under a lock shared by all fits of the process); a module instance is copied as it is
        (a replaced head draws from ``generator``).
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
        if find_head(backbone) is not None:
            unknown = sorted(set(params) - {"input_shape", "freeze"})
            if unknown:
                raise ValueError(
                    f"backbone_params of a classifier given as backbone take 'input_shape' and "
                    f"'freeze' only; got {unknown}."
                )
            return replace_head(backbone, n_components, **params, generator=generator)
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
