"""The benchmark tasks, shared by ``peers.py`` and ``sweep.py``.

Every task is a function ``make(sizes, seed) -> Task`` returning raw (unstandardised) training and
evaluated splits; the benchmarks standardise them. The data come from scikit-learn's bundled digits
or are generated here from ``seed``; nothing is downloaded.

- ``digits``: scikit-learn's ``load_digits``, stratified 75/25 split.
- ``digits + noise``: the same with ``n_noise_features`` standard Gaussian features added.
- ``unseen classes``: trained on all digits 0-6, evaluated on all digits 7-9 (leave-one-out).
- ``500 classes``: Gaussian clusters in 16 dimensions seen through a fixed random non-linear map
  into 64 (:func:`make_many_classes`), 8 samples per class, stratified 75/25 split.
- ``signals``: 1-D signals (:func:`make_signals`): each class has a few templates (modes) of smooth
  random bumps; a sample is one of its class's templates, shifted, scaled, on an offset, with
  noise. Flattened ``(channels, length)`` rows, stratified 75/25 split. ``Task.input_shape`` says
  the shape, for a convolutional backbone.
- ``open set``: a generated many-class problem whose classes share structure
  (:func:`make_open_set`); trained on the first ``open_set_classes - open_set_unseen`` classes,
  evaluated leave-one-out among the unseen rest.

    >>> from tasks import SIZES, make
    >>> task = make("signals", SIZES, seed=0)
    >>> task.X_train.shape[1] == 128 and task.input_shape
    (1, 128)
"""

import dataclasses

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Sizes of the generated tasks, and an optional cap on every task's samples (smoke tests)."""

    n_noise_features: int = 200
    synthetic_classes: int = 500
    synthetic_per_class: int = 8
    signal_classes: int = 10
    signal_modes: int = 3
    signal_per_class: int = 120
    signal_shape: tuple = (1, 128)
    open_set_classes: int = 500
    open_set_unseen: int = 100
    open_set_per_class: int = 8
    max_samples: int = None  # stratified subsample of each task's data set


#: The sizes of the benchmarks.
SIZES = Sizes()


@dataclasses.dataclass
class Task:
    """One task: a training split and an evaluated split."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    leave_one_out: bool  # evaluate the test set against itself rather than against the training set
    input_shape: tuple = None  # (channels, length) of a sample, for the signal task
    name: str = None  # the key of TASKS, set by make()


def _subsample(X, y, max_samples, seed):
    if max_samples is None or max_samples >= y.shape[0]:
        return X, y
    keep, _ = train_test_split(
        np.arange(y.shape[0]), train_size=max_samples, stratify=y, random_state=seed
    )
    keep = np.sort(keep)
    return X[keep], y[keep]


def _split(X, y, seed, **extra):
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=seed
    )
    return Task(X_train, y_train, X_test, y_test, leave_one_out=False, **extra)


def _split_classes(X, y, unseen):
    """Train on the classes not in ``unseen``; evaluate among ``unseen``, leave-one-out."""
    held_out = np.isin(y, unseen)
    return Task(X[~held_out], y[~held_out], X[held_out], y[held_out], leave_one_out=True)


def make_digits_task(sizes, seed):
    X, y = load_digits(return_X_y=True)
    return _split(*_subsample(X, y, sizes.max_samples, seed), seed)


def make_noisy_digits_task(sizes, seed):
    X, y = load_digits(return_X_y=True)
    noise = np.random.default_rng(seed).standard_normal((X.shape[0], sizes.n_noise_features))
    return _split(*_subsample(np.hstack([X, noise]), y, sizes.max_samples, seed), seed)


def make_unseen_classes_task(sizes, seed):
    X, y = _subsample(*load_digits(return_X_y=True), sizes.max_samples, seed)
    return _split_classes(X, y, unseen=[7, 8, 9])


def make_many_classes(n_classes, n_per_class, *, n_latent=16, n_features=64, spread=0.7, seed=0):
    """Gaussian clusters in ``n_latent`` dimensions seen through a random map ``tanh(z W1) W2``.

    With ``spread=0.7`` the nearest true centre in the latent space names the class of about 91% of
    the samples, while KNN (k=5) on the standardised 64 features gets about 48% (500 classes, 8
    each, a 75/25 split).
    """
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    centres = rng.standard_normal((n_classes, n_latent))
    z = centres[y] + spread * rng.standard_normal((y.shape[0], n_latent))
    W1 = rng.standard_normal((n_latent, n_features)) * 2.0 / np.sqrt(n_latent)
    W2 = rng.standard_normal((n_features, n_features)) / np.sqrt(n_features)
    return np.tanh(z @ W1) @ W2, y


def make_many_classes_task(sizes, seed):
    X, y = make_many_classes(sizes.synthetic_classes, sizes.synthetic_per_class, seed=seed)
    return _split(*_subsample(X, y, sizes.max_samples, seed), seed)


def make_signals(
    n_classes=10,
    n_per_class=120,
    *,
    n_modes=3,
    shape=(1, 128),
    n_bumps=4,
    max_shift=12,
    scale=(0.6, 1.4),
    offset=0.5,
    noise=0.6,
    seed=0,
):
    """Shifted, scaled templates with noise: a 1-D signal classification problem.

    Each class has ``n_modes`` templates; a template is, in each channel, a sum of ``n_bumps``
    Gaussian bumps of random sign, height, width (3 to 10 steps) and position. A sample picks one
    of its class's templates at random, shifts it by up to ``max_shift`` steps either way,
    multiplies it by a factor drawn uniformly in ``scale``, adds a constant drawn from
    ``N(0, offset**2)`` and white noise of standard deviation ``noise``. Classes with several
    modes cannot be pulled into one point by a linear map, and the shifts defeat a pixel-wise
    comparison.

    Parameters
    ----------
    n_classes, n_per_class : int
        Number of classes and samples per class.
    n_modes : int, default=3
        Templates per class.
    shape : tuple of int, default=(1, 128)
        ``(channels, length)`` of a sample.
    n_bumps, max_shift, scale, offset, noise
        The generator's settings, as described above.
    seed : int, default=0

    Returns
    -------
    X : ndarray of shape (n_classes * n_per_class, channels * length)
        Rows are the samples flattened in C order (channel by channel).
    y : ndarray of shape (n_classes * n_per_class,)
    """
    rng = np.random.default_rng(seed)
    n_channels, length = shape
    padded = length + 2 * max_shift
    t = np.arange(padded)[None, None, None, :]
    n_templates = n_classes * n_modes
    tshape = (n_templates, n_channels, n_bumps, 1)
    centres = rng.uniform(max_shift, padded - max_shift, tshape)
    widths = rng.uniform(3.0, 10.0, tshape)
    heights = rng.choice([-1.0, 1.0], tshape) * rng.uniform(0.5, 1.5, tshape)
    templates = (heights * np.exp(-0.5 * ((t - centres) / widths) ** 2)).sum(axis=2)

    y = np.repeat(np.arange(n_classes), n_per_class)
    n = y.shape[0]
    which = y * n_modes + rng.integers(n_modes, size=n)
    start = max_shift + rng.integers(-max_shift, max_shift + 1, size=n)
    window = start[:, None] + np.arange(length)[None, :]  # (n, length)
    signals = np.take_along_axis(templates[which], window[:, None, :], axis=2)
    signals = signals * rng.uniform(*scale, size=(n, 1, 1))
    signals = signals + offset * rng.standard_normal((n, 1, 1))
    signals = signals + noise * rng.standard_normal(signals.shape)
    return signals.reshape(n, -1), y


def make_signals_task(sizes, seed):
    X, y = make_signals(
        sizes.signal_classes,
        sizes.signal_per_class,
        n_modes=sizes.signal_modes,
        shape=sizes.signal_shape,
        seed=seed,
    )
    X, y = _subsample(X, y, sizes.max_samples, seed)
    return _split(X, y, seed, input_shape=tuple(sizes.signal_shape))


def make_open_set(
    n_classes=500,
    n_per_class=8,
    *,
    n_factors=6,
    n_latent=16,
    n_nuisance=6,
    n_features=64,
    spread=0.8,
    seed=0,
):
    """Many classes that share structure: for open-set retrieval of classes unseen in training.

    Class centres are built from ``n_factors`` shared latent factors (``centre = f A``, with
    ``f ~ N(0, I)`` per class and one ``A`` for all), so every class lives on the same
    low-dimensional subspace of an ``n_latent``-dimensional identity space. A sample is its class
    centre plus isotropic noise of standard deviation ``spread`` in that space, next to
    ``n_nuisance`` standard Gaussian nuisance variables that carry no class information; both go
    through one fixed random non-linear map ``tanh([z, u] W1) W2`` into ``n_features``. What a
    model learns from some classes (which directions are identity and which are nuisance, how the
    map bends) carries over to the others.

    Returns
    -------
    X : ndarray of shape (n_classes * n_per_class, n_features)
    y : ndarray of shape (n_classes * n_per_class,)
    """
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    A = rng.standard_normal((n_factors, n_latent)) / np.sqrt(n_factors)
    centres = rng.standard_normal((n_classes, n_factors)) @ A
    z = centres[y] + spread * rng.standard_normal((y.shape[0], n_latent)) / np.sqrt(n_latent / 4)
    u = rng.standard_normal((y.shape[0], n_nuisance))
    h = np.hstack([z, u])
    W1 = rng.standard_normal((h.shape[1], n_features)) * 1.5 / np.sqrt(h.shape[1])
    W2 = rng.standard_normal((n_features, n_features)) / np.sqrt(n_features)
    return np.tanh(h @ W1) @ W2, y


def make_open_set_task(sizes, seed):
    X, y = make_open_set(sizes.open_set_classes, sizes.open_set_per_class, seed=seed)
    X, y = _subsample(X, y, sizes.max_samples, seed)
    unseen = np.arange(sizes.open_set_classes - sizes.open_set_unseen, sizes.open_set_classes)
    return _split_classes(X, y, unseen)


#: Task name -> ``make(sizes, seed) -> Task``.
TASKS = {
    "digits": make_digits_task,
    "digits + noise": make_noisy_digits_task,
    "unseen classes": make_unseen_classes_task,
    "500 classes": make_many_classes_task,
    "signals": make_signals_task,
    "open set": make_open_set_task,
}


def make(name, sizes=SIZES, seed=0):
    """The task ``name`` (one of :data:`TASKS`) for ``seed``."""
    if name not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}; got {name!r}.")
    return dataclasses.replace(TASKS[name](sizes, seed), name=name)
