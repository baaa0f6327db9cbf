"""Class-balanced batches: P classes x K samples.

Triplet and contrastive losses learn only from batches that hold positive pairs (two samples of one
class) next to negatives (a sample of another class). Uniform batches of a data set with many
classes hold few positive pairs; the samplers here draw *P* classes and then up to *K* samples of
each, so that every batch has something to train on.

Every function takes a :class:`numpy.random.Generator`, so a fit seeded with ``random_state`` draws
the same batches every time and the user's global random state is left alone.
"""

import numpy as np

__all__ = ["batch_shape", "class_balanced_batches"]


def batch_shape(n_classes, *, batch_size, samples_per_class):
    """``(P, K)``: the classes per batch and the samples per class that the sampler aims for.

    ``P = batch_size // samples_per_class`` classes (at least 2, at most ``n_classes``) and
    ``K = batch_size // P`` samples of each (at least 2); a class with fewer than ``K`` samples
    gives them all.

    Parameters
    ----------
    n_classes : int
        Number of classes with at least one sample.
    batch_size : int
        Target number of samples per batch.
    samples_per_class : int
        The minimum K.

    Returns
    -------
    n_classes_per_batch, samples_per_class : int

    Examples
    --------
    >>> batch_shape(10, batch_size=128, samples_per_class=4)
    (10, 12)
    >>> batch_shape(500, batch_size=128, samples_per_class=4)
    (32, 4)
    """
    n_per_batch = int(min(n_classes, max(2, batch_size // samples_per_class)))
    return n_per_batch, max(2, batch_size // n_per_batch)


def class_balanced_batches(y, *, batch_size, samples_per_class, n_batches, rng):
    """Yield batches of sample indices, each drawn as P classes x K samples.

    Each batch draws ``P = batch_size // samples_per_class`` classes (see :func:`batch_shape`)
    without replacement, with probability proportional to class size, so that over an epoch every
    sample is about equally likely to be seen. Two of the classes are always drawn among those with
    at least two samples, so every batch holds a positive pair and a negative. Each drawn class then
    gives ``K = batch_size // P`` distinct samples, or all of its samples when it has fewer. Within
    a class, samples are taken in a random order and cycled through, so a class is seen whole before
    any of its samples repeats. Classes with a single sample thus enter batches as negatives only.

    The work per batch is a handful of vectorised NumPy calls, whatever P and K are.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Labels encoded as ``0 .. n_classes - 1``; at least one class must have two samples and there
        must be at least two classes.
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
    >>> [np.unique(y[b], return_counts=True)[1].tolist() for b in batches]
    [[2, 2, 2, 2], [2, 2, 2, 2], [2, 2, 2, 2]]
    """
    y = np.asarray(y)
    shuffled = rng.permutation(y.shape[0])
    order = shuffled[np.argsort(y[shuffled], kind="stable")]  # grouped by class, random within
    counts = np.bincount(y)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    cursors = np.zeros_like(counts)
    eligible = np.flatnonzero(counts >= 2)
    n_per_batch, k = batch_shape(
        np.count_nonzero(counts), batch_size=batch_size, samples_per_class=samples_per_class
    )
    with np.errstate(divide="ignore"):
        log_weights = np.log(counts)  # a class absent from y gets -inf: never drawn
    n_first = min(2, eligible.shape[0])
    for _ in range(n_batches):
        chosen = _weighted_sample(log_weights, n_first, n_per_batch, eligible, rng)
        taken = np.minimum(k, counts[chosen])
        owner = np.repeat(np.arange(chosen.shape[0]), taken)
        rank = np.arange(taken.sum()) - np.repeat(np.cumsum(taken) - taken, taken)
        c = chosen[owner]
        yield order[starts[c] + (cursors[c] + rank) % counts[c]]
        cursors[chosen] = (cursors[chosen] + taken) % counts[chosen]


def _weighted_sample(log_weights, n_first, n_total, eligible, rng):
    """``n_total`` classes without replacement, with probability proportional to their weights.

    The first ``n_first`` come from ``eligible``. Uses the Gumbel-top-k trick: the classes with the
    largest ``log(weight) + Gumbel noise`` are a weighted sample without replacement.
    """
    keys = log_weights - np.log(-np.log(rng.random(log_weights.shape[0])))
    first = eligible[np.argsort(-keys[eligible], kind="stable")[:n_first]]
    keys[first] = -np.inf
    rest = np.argsort(-keys, kind="stable")[: n_total - n_first]
    return np.concatenate([first, rest])
