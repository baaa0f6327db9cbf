"""Class-balanced P x K batches."""

import numpy as np
import pytest

from sklearn_triplet.sampling import batch_shape, class_balanced_batches


def _batches(y, seed=0, **kwargs):
    kwargs = {"batch_size": 16, "samples_per_class": 4, "n_batches": 200, **kwargs}
    return list(class_balanced_batches(y, rng=np.random.default_rng(seed), **kwargs))


def test_batches_are_p_classes_by_k_distinct_samples():
    y = np.repeat(np.arange(10), 20)
    for batch in _batches(y):
        classes, counts = np.unique(y[batch], return_counts=True)
        assert classes.shape[0] == 4 and (counts == 4).all()
        assert np.unique(batch).shape[0] == batch.shape[0]  # no sample twice in a batch


def test_small_classes_give_all_their_samples_and_singletons_appear_as_negatives():
    y = np.concatenate([np.repeat([0, 1], 10), [2], [3], [4, 4, 4]])
    seen = np.zeros(y.shape[0], dtype=int)
    for batch in _batches(y, batch_size=20, samples_per_class=4):
        classes, counts = np.unique(y[batch], return_counts=True)
        # two classes with two or more samples are always there
        assert (counts >= 2).sum() >= 2
        for c, n in zip(classes, counts):
            assert n == min(4, np.sum(y == c))
        seen[batch] += 1
    assert seen[20] > 0 and seen[21] > 0  # the singletons take part


def test_few_classes_raise_k():
    y = np.repeat(np.arange(3), 50)
    for batch in _batches(y, batch_size=30, samples_per_class=4):
        assert np.unique(y[batch], return_counts=True)[1].tolist() == [10, 10, 10]


def test_classes_drawn_in_proportion_to_their_size():
    y = np.repeat(np.arange(4), [10, 10, 10, 70])
    drawn = np.zeros(4)
    for batch in _batches(y, batch_size=4, samples_per_class=2, n_batches=4000):
        drawn[np.unique(y[batch])] += 1
    # class 3 is seven times bigger: it is in nearly every pair of classes drawn
    assert drawn[3] / 4000 > 0.9
    assert np.allclose(drawn[:3] / drawn[:3].sum(), 1 / 3, atol=0.03)


def test_every_sample_of_a_class_is_seen_before_one_repeats():
    y = np.repeat(np.arange(2), 12)
    batches = _batches(y, batch_size=8, samples_per_class=4, n_batches=3)
    firsts = np.concatenate(batches)
    for c in (0, 1):
        members = firsts[y[firsts] == c]
        assert np.unique(members).shape[0] == 12  # 3 batches x 4 = all 12, no repeats


def test_same_seed_same_batches_and_different_seed_different():
    y = np.repeat(np.arange(10), 20)
    a, b, c = _batches(y, seed=1), _batches(y, seed=1), _batches(y, seed=2)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))


def test_classes_absent_from_the_subset_are_never_drawn():
    y = np.array([0, 0, 0, 2, 2, 2])  # class 1 has no sample here
    for batch in _batches(y, batch_size=8, samples_per_class=2, n_batches=20):
        assert set(np.unique(y[batch])) == {0, 2}


@pytest.mark.parametrize("n_classes", [7, 10, 500])
def test_batch_shape_is_what_the_sampler_draws(n_classes):
    # benchmarks/peers.py trains pytorch-metric-learning on batches of this shape.
    y = np.repeat(np.arange(n_classes), 20)
    batch = next(
        class_balanced_batches(
            y, batch_size=128, samples_per_class=4, n_batches=1, rng=np.random.default_rng(0)
        )
    )
    counts = np.bincount(y[batch])
    n_per_batch, k = batch_shape(n_classes, batch_size=128, samples_per_class=4)
    assert (np.count_nonzero(counts), counts.max()) == (n_per_batch, k)
