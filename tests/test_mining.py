import math

import pytest
import torch

from sklearn_triplet import _kernels
from sklearn_triplet.mining import (
    easiest_positive_negative,
    hard_pairs,
    hardest_positive_negative,
    semi_hard_negatives,
    triplet_type_counts,
)

DTYPES = [torch.float32, torch.float64]


def make_case(dtype, seed, negative_values=False):
    """An integer-valued distance matrix (many exact ties) and labels with singletons."""
    generator = torch.Generator().manual_seed(seed)
    n = int(torch.randint(12, 31, (1,), generator=generator))
    distances = torch.randint(0, 6, (n, n), generator=generator).to(dtype)
    if negative_values:
        distances -= 2
        distances[0, 1] = -0.0
    labels = torch.randint(0, 4, (n,), generator=generator)
    labels[0] = 10
    labels[1] = 11
    return distances, labels


CASES = [(dtype, seed) for dtype in DTYPES for seed in range(4)]


def brute_force_taxonomy(d, labels, margin):
    d = d.numpy()
    m = d.dtype.type(margin)
    labels = labels.tolist()
    counts = dict.fromkeys(["n_triplets", "n_easy", "n_semi_hard", "n_hard", "n_active"], 0)
    for a in range(len(labels)):
        for p in range(len(labels)):
            if p == a or labels[p] != labels[a]:
                continue
            for k in range(len(labels)):
                if labels[k] == labels[a]:
                    continue
                counts["n_triplets"] += 1
                counts["n_easy"] += bool(d[a, k] > d[a, p] + m)
                counts["n_semi_hard"] += bool(d[a, p] < d[a, k] <= d[a, p] + m)
                counts["n_hard"] += bool(d[a, k] <= d[a, p])
                counts["n_active"] += bool(d[a, k] < d[a, p] + m)
    return counts


@pytest.mark.parametrize("negative_values", [False, True])
@pytest.mark.parametrize("margin", [1.0, 0.5, 2.0])
@pytest.mark.parametrize("dtype,seed", CASES)
def test_type_counts_match_brute_force(dtype, seed, margin, negative_values):
    distances, labels = make_case(dtype, seed, negative_values)
    counts = triplet_type_counts(distances, labels, margin=margin)
    expected = brute_force_taxonomy(distances, labels, margin)
    assert {key: int(value) for key, value in counts.items()} == expected
    assert all(v.dtype == torch.int64 and v.shape == () for v in counts.values())
    assert counts["n_easy"] + counts["n_semi_hard"] + counts["n_hard"] == counts["n_triplets"]


def test_type_counts_do_not_track_gradients():
    distances, labels = make_case(torch.float64, 0)
    distances.requires_grad_()
    counts = triplet_type_counts(distances, labels, margin=1.0)
    assert not any(value.requires_grad for value in counts.values())


def _negatives(labels, a):
    return [k for k in range(len(labels)) if labels[k] != labels[a]]


@pytest.mark.parametrize("negative_values", [False, True])
@pytest.mark.parametrize("dtype,seed", CASES)
def test_semi_hard_negatives_invariants(dtype, seed, negative_values):
    distances, labels = make_case(dtype, seed, negative_values)
    anchors, positives, negatives = semi_hard_negatives(distances, labels)
    d = distances.tolist()
    labels_list = labels.tolist()
    expected_pairs = [
        (a, p)
        for a in range(len(labels_list))
        for p in range(len(labels_list))
        if a != p and labels_list[a] == labels_list[p] and _negatives(labels_list, a)
    ]
    assert list(zip(anchors.tolist(), positives.tolist())) == expected_pairs
    for a, p, n in zip(anchors.tolist(), positives.tolist(), negatives.tolist()):
        assert labels_list[a] == labels_list[p] != labels_list[n] and a != p
        others = _negatives(labels_list, a)
        beyond = [k for k in others if d[a][k] > d[a][p]]
        if beyond:  # the closest negative strictly past d(a, p), lowest index among ties
            assert d[a][n] > d[a][p]
            assert d[a][n] == min(d[a][k] for k in beyond)
            assert n == min(k for k in beyond if d[a][k] == d[a][n])
        else:  # none: the farthest negative, lowest index among ties
            assert d[a][n] == max(d[a][k] for k in others)
            assert n == min(k for k in others if d[a][k] == d[a][n])


@pytest.mark.parametrize("dtype,seed", CASES)
@pytest.mark.parametrize(
    "miner, positive_rule",
    [(easiest_positive_negative, min), (hardest_positive_negative, max)],
    ids=["easiest", "hardest"],
)
def test_positive_negative_miner_invariants(miner, positive_rule, dtype, seed):
    """Each anchor with a positive and a negative: its closest (easiest) or farthest (hardest)
    positive and its closest negative, lowest index among ties."""
    distances, labels = make_case(dtype, seed)
    anchors, positives, negatives = miner(distances, labels)
    d = distances.tolist()
    labels_list = labels.tolist()
    n_samples = len(labels_list)
    expected_anchors = [
        a
        for a in range(n_samples)
        if _negatives(labels_list, a) and labels_list.count(labels_list[a]) > 1
    ]
    assert anchors.tolist() == expected_anchors
    for a, p, n in zip(anchors.tolist(), positives.tolist(), negatives.tolist()):
        assert labels_list[a] == labels_list[p] != labels_list[n] and a != p
        others = _negatives(labels_list, a)
        same = [k for k in range(n_samples) if k != a and labels_list[k] == labels_list[a]]
        assert d[a][p] == positive_rule(d[a][k] for k in same)
        assert p == min(k for k in same if d[a][k] == d[a][p])
        assert d[a][n] == min(d[a][k] for k in others)
        assert n == min(k for k in others if d[a][k] == d[a][n])


@pytest.mark.parametrize("dtype,seed", CASES)
def test_hard_pairs_match_brute_force(dtype, seed):
    distances, labels = make_case(dtype, seed)
    distances = torch.minimum(distances, distances.T)  # a symmetric matrix
    d = distances.tolist()
    labels_list = labels.tolist()
    n = len(labels_list)
    closest = [
        min([d[i][k] for k in _negatives(labels_list, i)], default=math.inf) for i in range(n)
    ]
    farthest = [
        max(
            [d[i][k] for k in range(n) if k != i and labels_list[k] == labels_list[i]],
            default=-math.inf,
        )
        for i in range(n)
    ]
    expected = []
    for i in range(n):
        for j in range(i + 1, n):
            if labels_list[i] == labels_list[j]:
                hard = d[i][j] > min(closest[i], closest[j])
            else:
                hard = d[i][j] < max(farthest[i], farthest[j])
            if hard:
                expected.append((i, j))
    rows, columns = hard_pairs(distances, labels)
    assert list(zip(rows.tolist(), columns.tolist())) == expected


@pytest.mark.parametrize("seed", range(3))
def test_packed_sort_agrees_with_torch_sort(seed):
    distances, labels = make_case(torch.float32, seed, negative_values=True)
    distances[2, 3] = -0.0
    distances[4, :] = torch.inf
    same = labels[:, None] == labels[None, :]
    packed = _kernels._PackedSortedRows(distances, same)
    plain = _kernels._SortedRows(distances, same)
    assert torch.equal(packed.columns(), plain.columns())
    thresholds = torch.tensor([-3.0, -0.0, 0.0, 0.5, 1.0, 3.0, torch.inf]).repeat(len(labels), 1)
    for inclusive in [False, True]:
        assert torch.equal(
            packed.count(thresholds, inclusive=inclusive),
            plain.count(thresholds, inclusive=inclusive),
        )
    below = packed.count(thresholds, inclusive=False)
    at_most = plain.count(thresholds, inclusive=True)
    assert torch.equal(packed.count_ties(thresholds, below), at_most)
    assert torch.equal(plain.count_ties(thresholds, below), at_most)
    # Many equal entries: past the few steps, a second search.
    many = _kernels._PackedSortedRows(torch.zeros(9, 9), torch.eye(9, dtype=torch.bool))
    zeros = torch.zeros(9, 2)
    assert torch.equal(
        many.count_ties(zeros, many.count(zeros, inclusive=False)), torch.full((9, 2), 8)
    )
    positions = torch.randint(0, len(labels), (len(labels), 5))
    assert torch.equal(packed.first_equal(positions), plain.first_equal(positions))


def test_empty_batch():
    distances, labels = torch.zeros(0, 0), torch.zeros(0, dtype=torch.int64)
    assert all(t.numel() == 0 for t in semi_hard_negatives(distances, labels))
    assert all(t.numel() == 0 for t in hardest_positive_negative(distances, labels))
    assert all(t.numel() == 0 for t in easiest_positive_negative(distances, labels))
    assert all(t.numel() == 0 for t in hard_pairs(distances, labels))
    assert all(int(v) == 0 for v in triplet_type_counts(distances, labels, margin=1).values())


def test_bad_inputs():
    labels = torch.tensor([0, 0, 1])
    with pytest.raises(
        ValueError,
        match=r"^distances must be a square 2-D floating-point "
        r"tensor; got shape \(3, 2\) and dtype torch.float32.$",
    ):
        semi_hard_negatives(torch.zeros(3, 2), labels)
    with pytest.raises(
        ValueError,
        match=r"^labels must be of length 2, one entry per sample; "
        r"got 3.$",
    ):
        hard_pairs(torch.zeros(2, 2), labels)
    with pytest.raises(
        ValueError,
        match=r"^The 'margin' parameter of triplet_type_counts must be "
        r"a float in the range \(0.0, inf\). Got -1 instead.$",
    ):
        triplet_type_counts(torch.zeros(3, 3), labels, margin=-1)
