"""Data augmentation of training batches: random changes a sample's class survives.

An augmentation is a callable ``augment(batch, generator) -> batch``: ``batch`` is a float tensor of
samples in their shape, ``(B, channels, length)`` for signals and ``(B, channels, height, width)``
for images (or ``(B, n_features)`` rows when the backbone reads rows), and ``generator`` a
:class:`torch.Generator` on the batch's device, the only source of randomness, so that a fit
seeded with ``random_state`` draws the same augmentations every time. It returns a batch of the
same shape. The estimators' ``augment=`` parameter takes such a callable, or the name of a built-in
recipe (:data:`RECIPES`); training batches only are augmented, never ``transform``'s input.

Signals (Um et al. 2017; Le Guennec, Malinowski & Tavenard 2016): :func:`jitter` (additive
Gaussian noise), :func:`scaling` (a random gain per sample and channel), :func:`window_slice` (a
random window stretched back to the full length) and :func:`shift` (a random circular shift).
Images: :func:`crop` (random translations: pad, then crop back) and :func:`flip` (mirror left to
right; it changes digits and letters, so no recipe uses it). :func:`compose` chains them.
"""

import torch
from torch.nn import functional as F

__all__ = [
    "RECIPES",
    "compose",
    "crop",
    "flip",
    "jitter",
    "resolve",
    "scaling",
    "shift",
    "window_slice",
]


class _Augmentation:
    """An augmentation with its settings, comparable and readable (``repr``) in a parameter grid."""

    def __init__(self, **settings):
        self.settings = settings

    def __eq__(self, other):
        return type(other) is type(self) and other.settings == self.settings

    def __hash__(self):
        return hash((type(self).__name__, tuple(sorted(self.settings.items()))))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"{type(self).__name__.lstrip('_').lower()}({args})"


class _Jitter(_Augmentation):
    def __call__(self, batch, generator):
        noise = torch.randn(batch.shape, generator=generator, device=batch.device)
        return batch + self.settings["sigma"] * noise.to(batch.dtype)


class _Scaling(_Augmentation):
    def __call__(self, batch, generator):
        shape = batch.shape[:2] + (1,) * (batch.ndim - 2)  # one gain per sample and channel
        gain = 1 + self.settings["sigma"] * torch.randn(
            shape, generator=generator, device=batch.device
        )
        return batch * gain.to(batch.dtype)


class _WindowSlice(_Augmentation):
    def __call__(self, batch, generator):
        length = batch.shape[-1]
        window = max(1, round(self.settings["ratio"] * length))
        if window >= length:
            return batch
        starts = torch.randint(
            0, length - window + 1, (batch.shape[0],), generator=generator, device=batch.device
        )
        index = starts[:, None] + torch.arange(window, device=batch.device)  # (B, window)
        rows = batch.reshape(batch.shape[0], -1, length)
        sliced = torch.gather(rows, 2, index[:, None, :].expand(-1, rows.shape[1], -1))
        stretched = F.interpolate(sliced, size=length, mode="linear", align_corners=True)
        return stretched.reshape(batch.shape)


class _Shift(_Augmentation):
    def __call__(self, batch, generator):
        length = batch.shape[-1]
        most = int(self.settings["fraction"] * length)
        if most < 1:
            return batch
        steps = torch.randint(
            -most, most + 1, (batch.shape[0],), generator=generator, device=batch.device
        )
        index = (torch.arange(length, device=batch.device) - steps[:, None]) % length
        rows = batch.reshape(batch.shape[0], -1, length)
        return torch.gather(rows, 2, index[:, None, :].expand(-1, rows.shape[1], -1)).reshape(
            batch.shape
        )


class _Crop(_Augmentation):
    def __call__(self, batch, generator):
        pad = self.settings["padding"]
        if batch.ndim != 4:
            raise ValueError(
                "crop augments images, batches (B, channels, height, width); got a batch of shape "
                f"{tuple(batch.shape)}. Give X as images, or backbone_params={{'input_shape': "
                "(channels, height, width)}."
            )
        n, _, height, width = batch.shape
        padded = F.pad(batch, (pad, pad, pad, pad))
        dy, dx = (
            torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=batch.device)
            for _ in range(2)
        )
        rows = (dy[:, None] + torch.arange(height, device=batch.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(width, device=batch.device))[:, None, None, :]
        samples = torch.arange(n, device=batch.device)[:, None, None, None]
        channels = torch.arange(batch.shape[1], device=batch.device)[None, :, None, None]
        return padded[samples, channels, rows, cols]


class _Flip(_Augmentation):
    def __call__(self, batch, generator):
        flipped = torch.rand(batch.shape[0], generator=generator, device=batch.device)
        flipped = (flipped < self.settings["p"]).reshape((-1,) + (1,) * (batch.ndim - 1))
        return torch.where(flipped, batch.flip(-1), batch)


class _Compose(_Augmentation):
    def __call__(self, batch, generator):
        for augmentation in self.settings["augmentations"]:
            batch = augmentation(batch, generator)
        return batch

    def __repr__(self):
        return f"compose({', '.join(map(repr, self.settings['augmentations']))})"


def _positive(name, value, upper=None):
    if not (value > 0 and (upper is None or value <= upper)):
        allowed = "positive" if upper is None else f"in (0, {upper}]"
        raise ValueError(f"{name} must be {allowed}; got {name}={value!r}.")
    return float(value)


def jitter(sigma=0.03):
    """Add Gaussian noise of standard deviation ``sigma`` to every value.

    Parameters
    ----------
    sigma : float, default=0.03
        Standard deviation of the noise, in the units of the data (z-normalised series: about
        3% of their spread, as Um et al. 2017 use).

    Returns
    -------
    augmentation : callable
        ``augmentation(batch, generator) -> batch``.

    Examples
    --------
    >>> import torch
    >>> out = jitter(0.5)(torch.zeros(1000, 1, 100), torch.Generator().manual_seed(0))
    >>> round(out.std().item(), 1)
    0.5
    """
    return _Jitter(sigma=_positive("sigma", sigma))


def scaling(sigma=0.1):
    """Multiply each sample's channel by a random gain drawn from ``N(1, sigma**2)``.

    Parameters
    ----------
    sigma : float, default=0.1
        Standard deviation of the gain.

    Returns
    -------
    augmentation : callable

    Examples
    --------
    >>> import torch
    >>> out = scaling(0.2)(torch.ones(4, 2, 5), torch.Generator().manual_seed(0))
    >>> bool((out == out[:, :, :1]).all())  # one gain along the length
    True
    """
    return _Scaling(sigma=_positive("sigma", sigma))


def window_slice(ratio=0.9):
    """Keep a random window of ``ratio`` of the length, stretched back to the full length.

    The window slicing of Le Guennec, Malinowski & Tavenard (2016), one window per sample (the
    same for all its channels), stretched by linear interpolation.

    Parameters
    ----------
    ratio : float, default=0.9
        Share of the length kept, in (0, 1].

    Returns
    -------
    augmentation : callable

    Examples
    --------
    >>> import torch
    >>> ramp = torch.linspace(0, 1, 11).repeat(3, 1, 1)
    >>> out = window_slice(0.5)(ramp, torch.Generator().manual_seed(0))
    >>> out.shape, bool((out.diff(dim=-1) > 0).all())  # still a rising ramp, half as steep
    (torch.Size([3, 1, 11]), True)
    """
    return _WindowSlice(ratio=_positive("ratio", ratio, 1))


def shift(fraction=0.1):
    """Shift each sample circularly along its length by up to ``fraction`` of it, either way.

    Parameters
    ----------
    fraction : float, default=0.1
        The largest shift, as a share of the length, in (0, 1].

    Returns
    -------
    augmentation : callable

    Examples
    --------
    >>> import torch
    >>> out = shift(0.5)(torch.arange(6.0).repeat(2, 1, 1), torch.Generator().manual_seed(0))
    >>> sorted(out[0, 0].tolist())
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    """
    return _Shift(fraction=_positive("fraction", fraction, 1))


def crop(padding=2):
    """Translate each image by up to ``padding`` pixels along each axis (pad with zeros, crop back).

    Parameters
    ----------
    padding : int, default=2
        The largest translation, in pixels.

    Returns
    -------
    augmentation : callable

    Examples
    --------
    >>> import torch
    >>> crop(1)(torch.ones(2, 3, 8, 8), torch.Generator().manual_seed(0)).shape
    torch.Size([2, 3, 8, 8])
    """
    if int(padding) != padding or padding < 1:
        raise ValueError(f"padding must be a positive integer; got padding={padding!r}.")
    return _Crop(padding=int(padding))


def flip(p=0.5):
    """Mirror each image left to right (a signal end to start) with probability ``p``.

    Parameters
    ----------
    p : float, default=0.5
        Probability of a flip, in (0, 1].

    Returns
    -------
    augmentation : callable

    Examples
    --------
    >>> import torch
    >>> flip(1.0)(torch.tensor([[[[1.0, 2.0]]]]), torch.Generator())
    tensor([[[[2., 1.]]]])
    """
    return _Flip(p=_positive("p", p, 1))


def compose(*augmentations):
    """Apply ``augmentations`` in turn.

    Examples
    --------
    >>> compose(jitter(), scaling())
    compose(jitter(sigma=0.03), scaling(sigma=0.1))
    """
    for augmentation in augmentations:
        if not callable(augmentation):
            raise TypeError(
                f"compose takes callables (batch, generator) -> batch; got {augmentation!r}."
            )
    return _Compose(augmentations=tuple(augmentations))


#: The recipes ``augment=`` takes by name, chosen by measurement (see the user guide):
#: ``"signals"`` for series ``(channels, length)``, ``"images"`` for ``(channels, height, width)``.
#: Window slicing is left out of ``"signals"``: it cost Coffee, whose spectra are aligned, as
#: much as it gave GunPoint.
RECIPES = {
    "signals": compose(jitter(0.03), scaling(0.1)),
    "images": crop(2),
}


def resolve(augment):
    """The augmentation that an ``augment`` parameter names: a recipe's, the callable, or None.

    Examples
    --------
    >>> resolve("images")
    crop(padding=2)
    >>> resolve(None) is None
    True
    """
    if isinstance(augment, str):
        try:
            return RECIPES[augment]
        except KeyError:
            raise ValueError(
                f"Unknown augment {augment!r}; expected one of {sorted(RECIPES)}."
            ) from None
    return augment
