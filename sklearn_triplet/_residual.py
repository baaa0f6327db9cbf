"""A network that starts at the geometry of the points it is given, and learns from there.

:class:`ResidualMLP` maps ``x`` to ``scale * (W x + mlp(x))``: a linear path ``W`` (no bias) plus a
fully connected network whose output layer starts at zero, so that before training the embedding
is the linear map alone. :func:`initial_residual_weights` sets ``W`` from the points: their leading
principal axes, as unit rows (rows of zeros beyond the number of features), so that distances
start as those of the points projected on their ``n_components`` leading axes, which are the raw
distances themselves when ``n_components >= n_features``; and ``scale``, a fixed factor, so that
the root mean square distance between two of the points is 1, the unit of the losses' margins.
Training then moves away from that start only as far as the tuples pull it; the do-no-harm rule of
the estimators (:meth:`~sklearn_triplet._tuples.TupleEmbedder._choose_embedding`) keeps the raw
features when it moved nowhere better.

The estimators that learn from given pairs and triplets use it as ``backbone="residual"``.
"""

import numpy as np
import torch
from sklearn.decomposition import PCA
from torch import nn


def _linear(n_in, n_out, generator, *, bias=True):
    """``nn.Linear`` with PyTorch's default initialisation, drawn from ``generator`` (None:
    torch's global generator, as ``nn.Linear`` draws it)."""
    if generator is None:
        return nn.Linear(n_in, n_out, bias=bias)
    # built on the meta device, so that nothing is drawn from the global generator
    layer = nn.Linear(n_in, n_out, bias=bias, device="meta").to_empty(device="cpu")
    with torch.no_grad():
        nn.init.kaiming_uniform_(layer.weight, a=5**0.5, generator=generator)
        if bias:
            bound = 1 / n_in**0.5
            nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return layer


class ResidualMLP(nn.Module):
    """``x -> scale * (linear(x) + mlp(x))``, with ``mlp``'s output layer at zero at the start.

    Parameters
    ----------
    n_features, n_components : int
        Input and embedding widths.
    hidden_layer_sizes : tuple of int, default=(256,)
        Hidden widths of the non-linear part.
    generator : torch.Generator, default=None
        Source of the initial weights (torch's default initialisation of each layer, the output
        layer of ``mlp`` then set to zero); None draws from torch's global generator.

    Examples
    --------
    >>> import torch
    >>> net = ResidualMLP(4, 2, hidden_layer_sizes=(8,))
    >>> x = torch.randn(3, 4)
    >>> torch.equal(net(x), net.linear(x))  # the non-linear part starts at zero
    True
    """

    scale: torch.Tensor

    def __init__(self, n_features, n_components, *, hidden_layer_sizes=(256,), generator=None):
        super().__init__()
        self.linear = _linear(n_features, n_components, generator, bias=False)
        layers, width = [], n_features
        for size in hidden_layer_sizes:
            layers += [_linear(width, int(size), generator), nn.ReLU()]
            width = int(size)
        output = _linear(width, n_components, generator)
        with torch.no_grad():
            output.weight.zero_()
            output.bias.zero_()
        self.mlp = nn.Sequential(*layers, output)
        self.register_buffer("scale", torch.ones(()))

    def forward(self, x):
        return self.scale * (self.linear(x) + self.mlp(x))


def initial_residual_weights(points, n_components, *, random_state=None):
    """``(W, scale)`` that start a :class:`ResidualMLP` at the geometry of ``points``.

    Parameters
    ----------
    points : ndarray of shape (n_points, n_features)
        The points the tuples use.
    n_components : int
        Rows of ``W``.
    random_state : int, default=None
        Seeds PCA's randomised solver, when it uses one.

    Returns
    -------
    W : ndarray of shape (n_components, n_features)
        The leading principal axes of ``points`` as unit rows, then rows of zeros when
        ``n_components`` exceeds their number (``min(n_points, n_features)``).
    scale : float
        ``1 / sqrt(2 * total variance along W)``: the root mean square distance between two
        distinct points, mapped by ``scale * W``, is 1 (1 when the points do not vary).

    Examples
    --------
    >>> import numpy as np
    >>> points = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.1], [0.0, -0.1]])
    >>> W, scale = initial_residual_weights(points, 3)
    >>> np.abs(W).round(6)
    array([[1., 0.],
           [0., 1.],
           [0., 0.]])
    >>> Z = scale * points @ W.T
    >>> d2 = ((Z[:, None] - Z[None]) ** 2).sum(-1)
    >>> round(float(d2.sum() / (4 * 3)), 6)  # mean squared distance between distinct points
    1.0
    """
    n_points, n_features = points.shape
    n_axes = min(n_components, n_features, n_points)
    W = np.zeros((n_components, n_features))
    if n_axes < 1 or n_points < 2:
        return W, 1.0
    pca = PCA(n_components=n_axes, random_state=random_state).fit(points)
    W[:n_axes] = pca.components_
    variance = float(np.sum(pca.explained_variance_))
    return W, (1.0 / np.sqrt(2 * variance) if variance > 0 else 1.0)
