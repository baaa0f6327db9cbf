"""The losses of given pairs and triplets, against the papers' formulas written as plain loops."""

import math
import re

import pytest
import torch

from sklearn_triplet.distances import METRICS
from sklearn_triplet.losses import contrastive_loss_on_pairs, triplet_loss_on_triplets

DTYPES = [torch.float32, torch.float64]


def plain_distance(u, v, metric):
    """The distance between two vectors, from its definition, in float64."""
    u, v = [float(a) for a in u], [float(b) for b in v]
    if metric == "cosine":
        norms = math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v))
        return 1.0 - (sum(a * b for a, b in zip(u, v)) / norms if norms else 0.0)
    squared = sum((a - b) ** 2 for a, b in zip(u, v))
    return squared if metric == "sqeuclidean" else math.sqrt(squared)


def hadsell_contrastive(first, second, y, margin, metric):
    """Hadsell et al. 2006 with the paper's label: Y = 0 similar, Y = 1 dissimilar.

    metric-learn's y = +1 (similar) is Y = 0 and y = -1 (dissimilar) is Y = 1. The paper's
    factors of 1/2 are left out, as in the library.
    """
    total = 0.0
    for u, v, label in zip(first.tolist(), second.tolist(), y.tolist()):
        Y = 0 if label == 1 else 1
        D = plain_distance(u, v, metric)
        total += (1 - Y) * D**2 + Y * max(0.0, margin - D) ** 2
    return total / len(y)


def facenet_triplet(anchors, positives, negatives, margin, metric):
    """Schroff et al. 2015: the mean of max(d(a, p) - d(a, n) + margin, 0)."""
    terms = [
        max(plain_distance(a, p, metric) - plain_distance(a, n, metric) + margin, 0.0)
        for a, p, n in zip(anchors.tolist(), positives.tolist(), negatives.tolist())
    ]
    return sum(terms) / len(terms)


def taxonomy(anchors, positives, negatives, margin, metric):
    counts = dict.fromkeys(["n_triplets", "n_easy", "n_semi_hard", "n_hard", "n_active"], 0)
    for a, p, n in zip(anchors.tolist(), positives.tolist(), negatives.tolist()):
        d_ap, d_an = plain_distance(a, p, metric), plain_distance(a, n, metric)
        counts["n_triplets"] += 1
        if d_an > d_ap + margin:
            counts["n_easy"] += 1
        elif d_ap < d_an:
            counts["n_semi_hard"] += 1
        else:
            counts["n_hard"] += 1
        counts["n_active"] += d_an < d_ap + margin
    return counts


def random_pairs(seed, dtype, n=40, d=3):
    generator = torch.Generator().manual_seed(seed)
    first = torch.randn(n, d, generator=generator, dtype=dtype)
    second = torch.randn(n, d, generator=generator, dtype=dtype)
    first[:3] = second[:3] = torch.eye(3, d, dtype=dtype)  # pairs at distance 0, exactly
    first[3] = 0.0  # a zero vector (cosine distance 1 from everything)
    y = torch.where(torch.rand(n, generator=generator) < 0.5, 1, -1)
    return first, second, y


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_contrastive_loss_on_pairs_matches_hadsell(metric, dtype, seed):
    first, second, y = random_pairs(seed, dtype)
    loss, stats = contrastive_loss_on_pairs(
        first, second, y, margin=1.5, metric=metric, return_stats=True
    )
    assert loss.dtype == dtype
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    assert loss.item() == pytest.approx(
        hadsell_contrastive(first, second, y, 1.5, metric), rel=rtol
    )
    n_similar = int((y == 1).sum())
    distances = [plain_distance(u, v, metric) for u, v in zip(first.tolist(), second.tolist())]
    n_active = sum(
        (d > 0) if label == 1 else (d < 1.5) for d, label in zip(distances, y.tolist())
    )
    assert {key: int(value) for key, value in stats.items()} == {
        "n_pairs": 40,
        "n_positive_pairs": n_similar,
        "n_negative_pairs": 40 - n_similar,
        "n_active_pairs": n_active,
    }


def test_contrastive_label_mapping_on_a_toy_case():
    # One pair at distance 0.5 (a 3-4-5 triangle scaled by 0.1) and one at distance 5.
    first = torch.zeros(2, 2)
    second = torch.tensor([[0.3, 0.4], [3.0, 4.0]])
    margin = 1.0
    # y = +1 (similar, Y = 0) costs D², y = -1 (dissimilar, Y = 1) costs max(0, m - D)².
    cases = {(1, 1): (0.25 + 25.0) / 2, (-1, -1): (0.25 + 0.0) / 2, (1, -1): 0.25 / 2}
    for labels, expected in cases.items():
        loss = contrastive_loss_on_pairs(first, second, torch.tensor(labels), margin=margin)
        assert loss.item() == pytest.approx(expected)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_triplet_loss_on_triplets_matches_facenet(metric, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    anchors, positives, negatives = torch.randn(3, 50, 4, generator=generator, dtype=dtype)
    negatives[:2] = positives[:2]  # ties: hard, and active
    anchors[2] = 0.0
    loss, stats = triplet_loss_on_triplets(
        anchors, positives, negatives, margin=0.3, metric=metric, return_stats=True
    )
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    expected = facenet_triplet(anchors, positives, negatives, 0.3, metric)
    assert loss.item() == pytest.approx(expected, rel=rtol)
    assert {key: int(value) for key, value in stats.items()} == taxonomy(
        anchors, positives, negatives, 0.3, metric
    )


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean"])
def test_triplet_loss_on_triplets_matches_torch(metric):
    # torch's own triplet loss with a distance function, as a second reference.
    generator = torch.Generator().manual_seed(0)
    anchors, positives, negatives = torch.randn(3, 30, 5, generator=generator, dtype=torch.float64)

    def distance(u, v):
        squared = (u - v).square().sum(dim=1)
        return squared if metric == "sqeuclidean" else squared.sqrt()

    expected = torch.nn.functional.triplet_margin_with_distance_loss(
        anchors, positives, negatives, distance_function=distance, margin=0.4
    )
    loss = triplet_loss_on_triplets(anchors, positives, negatives, margin=0.4, metric=metric)
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("metric", METRICS)
def test_contrastive_loss_on_pairs_gradcheck(metric):
    generator = torch.Generator().manual_seed(0)
    first, second = torch.randn(2, 12, 3, generator=generator, dtype=torch.float64)
    first.requires_grad_(True)
    second.requires_grad_(True)
    y = torch.tensor([1, -1] * 6)
    # Margin 1.5: some dissimilar pairs are inside it and some beyond, away from the kink.
    assert torch.autograd.gradcheck(
        lambda a, b: contrastive_loss_on_pairs(a, b, y, margin=1.5, metric=metric), (first, second)
    )


@pytest.mark.parametrize("metric", METRICS)
def test_triplet_loss_on_triplets_gradcheck(metric):
    generator = torch.Generator().manual_seed(0)
    members = torch.randn(3, 12, 3, generator=generator, dtype=torch.float64)
    anchors, positives, negatives = (m.clone().requires_grad_(True) for m in members)
    assert torch.autograd.gradcheck(
        lambda a, p, n: triplet_loss_on_triplets(a, p, n, margin=0.5, metric=metric),
        (anchors, positives, negatives),
    )


@pytest.mark.parametrize("label", [1, -1])
def test_gradient_is_finite_at_distance_zero(label):
    # A pair at distance 0: the Euclidean distance's gradient there is taken to be 0.
    first = torch.tensor([[1.0, 2.0]], requires_grad=True)
    second = torch.tensor([[1.0, 2.0]], requires_grad=True)
    loss = contrastive_loss_on_pairs(first, second, torch.tensor([label]), margin=1.0)
    loss.backward()
    assert loss.item() == (0.0 if label == 1 else 1.0)
    assert torch.equal(first.grad, torch.zeros_like(first))
    assert torch.equal(second.grad, torch.zeros_like(second))


def test_no_tuples_gives_an_attached_zero():
    empty = torch.zeros(0, 3, requires_grad=True)
    loss = contrastive_loss_on_pairs(empty, empty, torch.zeros(0))
    assert loss.item() == 0.0 and loss.requires_grad
    loss = triplet_loss_on_triplets(empty, empty, empty)
    assert loss.item() == 0.0 and loss.requires_grad


def test_bad_inputs():
    x = torch.zeros(4, 2)
    y = torch.tensor([1, -1, 1, -1])
    with pytest.raises(ValueError, match=re.escape("margin must be a real number > 0; got 0.")):
        contrastive_loss_on_pairs(x, x, y, margin=0)
    message = "metric must be one of 'euclidean', 'sqeuclidean', 'cosine'; got 'manhattan'."
    with pytest.raises(ValueError, match=re.escape(message)):
        triplet_loss_on_triplets(x, x, x, metric="manhattan")
    message = "y must hold +1 (similar pair) or -1 (dissimilar pair); got also the values [0, 2]."
    with pytest.raises(ValueError, match=re.escape(message)):
        contrastive_loss_on_pairs(x, x, torch.tensor([1, 0, 2, -1]))
    message = (
        "y must be a real or integer tensor of shape (4,) on cpu; got shape (4,), dtype "
        "torch.bool on cpu."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        contrastive_loss_on_pairs(x, x, y > 0)
    message = (
        "second must have the shape, dtype and device of first; got first: (4, 2), "
        "torch.float32, cpu and second: (3, 2), torch.float32, cpu."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        contrastive_loss_on_pairs(x, x[:3], y)
    message = (
        "negatives must be a 2-D floating-point tensor of shape (n, n_components); got shape "
        "(4,) and dtype torch.float32."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        triplet_loss_on_triplets(x, x, x[:, 0])
    with pytest.raises(TypeError, match=re.escape("anchors must be a torch.Tensor; got list.")):
        triplet_loss_on_triplets([[0.0]], x, x)
