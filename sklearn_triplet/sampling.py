"""Class-balanced batches: P classes x K samples.

Triplet and contrastive losses learn only from batches that hold positive pairs (two samples of one
class) next to negatives (a sample of another class). Uniform batches of a data set with many classes
hold few positive pairs; the samplers here draw *P* classes and then up to *K* samples of each, so that
every batch has something to train on.

Every function takes a :class:`numpy.random.Generator`, so a fit seeded with ``random_state`` draws the
same batches every time and the user's global random state is left alone.
"""

import numpy as np


def class_index(y):
    """Group sample indices by encoded class.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Labels encoded as ``0 .. n_classes - 1``.

    Returns
    -------
    order : ndarray of shape (n_samples,)
        Sample indices sorted by class (stable, so ties keep their order).
    starts : ndarray of shape (n_classes,)
        Where each class starts in ``order``.
    counts : ndarray of shape (n_classes,)
        How many samples each class has.

    Examples
    --------
    >>> import numpy as np
    >>> order, starts, counts = class_index(np.array([1, 0, 1, 1]))
    >>> order.tolist(), starts.tolist(), counts.tolist()
    ([1, 0, 2, 3], [0, 1], [1, 3])
    """
    order = np.argsort(y, kind="stable")
    counts = np.bincount(y)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return order, starts, counts


def class_balanced_batches(y, *, batch_size, samples_per_class, n_batches, rng):
    """Yield batches of sample indices, each drawn as P classes x K samples.

    Each batch draws ``P = batch_size // samples_per_class`` classes (at most the number of classes)
    without replacement, with probability proportional to class size, so that over an epoch every
    sample is about equally likely to be seen. Two of the classes are always drawn among those with at
    least two samples, so every batch holds a positive pair and a negative. Each drawn class then gives
    ``K = batch_size // P`` distinct samples, or all of its samples when it has fewer. Classes with a
    single sample thus enter batches as negatives only.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Labels encoded as ``0 .. n_classes - 1``; at least one class must have two samples and there must
        be at least two classes.
    batch_size : int
        Target number of samples per batch (a batch can be smaller when classes are small).
    samples_per_class : int
        The minimum K: P is chosen as ``batch_size // samples_per_class``.
    n_batches : int
        How many batches to yield.
    rng : numpy.random.Generator
        Source of randomness.

    Yields
    ------
    indices : ndarray of shape (batch_size_actual,)
        Indices into ``y``, grouped by class.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.repeat(np.arange(5), 10)
    >>> batches = class_balanced_batches(y, batch_size=8, samples_per_class=2, n_batches=3,
    ...                                  rng=np.random.default_rng(0))
    >>> [np.bincount(y[b], minlength=5).max() for b in batches]
    [2, 2, 2]
    """
    order, starts, counts = class_index(y)
    n_classes = counts.shape[0]
    eligible = np.flatnonzero(counts >= 2)
    n_per_batch = int(min(n_classes, max(2, batch_size // samples_per_class)))
    k = max(2, batch_size // n_per_batch)
    weights = counts / counts.sum()
    eligible_weights = counts[eligible] / counts[eligible].sum()
    n_first = min(2, eligible.shape[0])
    for _ in range(n_batches):
        first = rng.choice(eligible, size=n_first, replace=False, p=eligible_weights)
        rest_weights = weights.copy()
        rest_weights[first] = 0.0
        n_rest = min(n_per_batch - n_first, int(np.count_nonzero(rest_weights)))
        rest = (
            rng.choice(n_classes, size=n_rest, replace=False, p=rest_weights / rest_weights.sum())
            if n_rest > 0
            else np.empty(0, dtype=np.intp)
        )
        chosen = np.concatenate([first, rest])
        yield np.concatenate([_draw_from_class(order, starts[c], counts[c], k, rng) for c in chosen])


def _draw_from_class(order, start, count, k, rng):
    if count <= k:
        return order[start : start + count]
    return order[start + rng.choice(count, size=k, replace=False)]
