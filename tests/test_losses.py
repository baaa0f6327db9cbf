import math
import re

import numpy as np
import pytest
import torch

from sklearn_triplet import _kernels
from sklearn_triplet.distances import METRICS, pairwise_distances
from sklearn_triplet.losses import (
    contrastive_loss,
    contrastive_loss_on_pairs,
    triplet_loss,
    triplet_loss_on_triplets,
)

DTYPES = [torch.float32, torch.float64]
TRIPLET_MINING = ["all", "hard", "semi-hard", "easy-positive"]
TRIPLET_KEYS = [
    "n_triplets",
    "n_easy",
    "n_semi_hard",
    "n_hard",
    "n_active",
    "n_mined",
    "n_mined_active",
]
CONTRASTIVE_KEYS = TRIPLET_KEYS + [
    "n_pairs",
    "n_positive_pairs",
    "n_negative_pairs",
    "n_active_pairs",
]


# ----------------------------------------------------------------------------------------
# Brute force, written from the definitions with plain loops. Comparisons are made in the
# dtype of the distances (NumPy scalars), sums in float64.


def _as_numpy(distances, margin):
    d = distances.detach().cpu().numpy()
    return d, d.dtype.type(margin)


def brute_force_taxonomy(d, labels, m):
    counts = dict.fromkeys(["n_triplets", "n_easy", "n_semi_hard", "n_hard", "n_active"], 0)
    n = len(labels)
    for a in range(n):
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            for k in range(n):
                if labels[k] == labels[a]:
                    continue
                counts["n_triplets"] += 1
                if d[a, k] > d[a, p] + m:
                    counts["n_easy"] += 1
                elif d[a, p] < d[a, k]:
                    counts["n_semi_hard"] += 1
                else:
                    counts["n_hard"] += 1
                if d[a, k] < d[a, p] + m:
                    counts["n_active"] += 1
    return counts


def hinge(d_ap, d_an, m):
    """max(0, d(a, p) - d(a, n) + m): above 0 exactly when d(a, n) < d(a, p) + m."""
    return float(d_ap + m) - float(d_an) if d_an < d_ap + m else 0.0


def brute_force_triplet(distances, labels, margin, mining, average="all"):
    d, m = _as_numpy(distances, margin)
    labels = labels.tolist()
    n = len(labels)
    positives = [[p for p in range(n) if p != a and labels[p] == labels[a]] for a in range(n)]
    negatives = [[k for k in range(n) if labels[k] != labels[a]] for a in range(n)]
    terms = []
    if mining == "all":
        for a in range(n):
            for p in positives[a]:
                for k in negatives[a]:
                    loss = hinge(d[a, p], d[a, k], m)
                    if loss > 0:
                        terms.append(loss)
    elif mining == "hard":
        for a in range(n):
            if positives[a] and negatives[a]:
                farthest = max(d[a, p] for p in positives[a])
                closest = min(d[a, k] for k in negatives[a])
                terms.append(hinge(farthest, closest, m))
    elif mining == "easy-positive":
        for a in range(n):
            if positives[a] and negatives[a]:
                closest_positive = min(d[a, p] for p in positives[a])
                closest_negative = min(d[a, k] for k in negatives[a])
                terms.append(hinge(closest_positive, closest_negative, m))
    else:  # semi-hard
        for a in range(n):
            if not negatives[a]:
                continue
            for p in positives[a]:
                beyond = [k for k in negatives[a] if d[a, k] > d[a, p]]
                if beyond:
                    chosen = min(beyond, key=lambda k: d[a, k])
                else:
                    chosen = max(negatives[a], key=lambda k: d[a, k])
                terms.append(hinge(d[a, p], d[a, chosen], m))
    stats = brute_force_taxonomy(d, labels, m)
    stats["n_mined"] = len(terms)
    stats["n_mined_active"] = sum(term > 0 for term in terms)
    count = stats["n_mined_active"] if average == "active" else stats["n_mined"]
    return (sum(terms) / count if count else 0.0), stats


def brute_force_contrastive(distances, labels, margin, mining, average="all", squared=True):
    d, m = _as_numpy(distances, margin)
    labels = labels.tolist()
    n = len(labels)
    closest_negative = [
        min([d[i, k] for k in range(n) if labels[k] != labels[i]], default=math.inf)
        for i in range(n)
    ]
    farthest_positive = [
        max([d[i, p] for p in range(n) if p != i and labels[p] == labels[i]], default=-math.inf)
        for i in range(n)
    ]
    terms = []
    stats = dict.fromkeys(["n_pairs", "n_positive_pairs", "n_negative_pairs", "n_active_pairs"], 0)
    for i in range(n):
        for j in range(i + 1, n):
            same = labels[i] == labels[j]
            if same:
                loss = float(d[i, j])
                active = d[i, j] > 0
                hard = d[i, j] > min(closest_negative[i], closest_negative[j])
            else:
                loss = max(0.0, float(m - d[i, j]))
                active = d[i, j] < m
                hard = d[i, j] < max(farthest_positive[i], farthest_positive[j])
            if squared:
                loss = loss**2
            stats["n_pairs"] += 1
            stats["n_positive_pairs" if same else "n_negative_pairs"] += 1
            stats["n_active_pairs"] += bool(active)
            if mining == "all" or hard:
                terms.append((loss, active, same))
    stats.update(brute_force_taxonomy(d, labels, m))
    stats["n_mined"] = len(terms)
    stats["n_mined_active"] = sum(bool(active) for _, active, _ in terms)
    if average == "all":
        value = sum(loss for loss, _, _ in terms) / len(terms) if terms else 0.0
    else:  # the mean over the active positive pairs plus the mean over the active negative ones
        value = 0.0
        for kind in (True, False):
            active_terms = [loss for loss, active, same in terms if active and same == kind]
            value += sum(active_terms) / len(active_terms) if active_terms else 0.0
    return value, stats


# ----------------------------------------------------------------------------------------
# Batches


def make_batch(kind, dtype, seed):
    """Random batches with singleton classes; "integer" ones also have ties and duplicates."""
    generator = torch.Generator().manual_seed(seed)
    n = int(torch.randint(12, 31, (1,), generator=generator))
    labels = torch.randint(0, 4, (n,), generator=generator) * 7 - 3  # any integer values
    labels[0] = 100  # a singleton class
    labels[1] = -50  # another one
    if kind == "normal":
        x = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    else:
        x = torch.randint(-2, 3, (n, 3), generator=generator).double()
        x[2] = x[3]  # duplicate points
        x[4] = x[9]
    return x.to(dtype), labels


BATCHES = [(kind, seed) for kind in ["normal", "integer"] for seed in range(3)]


def check_stats(stats, expected, device):
    assert list(stats) == list(expected)
    for key, value in stats.items():
        assert value.dtype == torch.int64 and value.shape == () and value.device == device
        assert int(value) == expected[key], key


@pytest.mark.parametrize("average", ["all", "active"])
@pytest.mark.parametrize("mining_mode", TRIPLET_MINING)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,seed", BATCHES)
def test_triplet_loss_matches_brute_force(average, mining_mode, metric, dtype, kind, seed):
    x, labels = make_batch(kind, dtype, seed)
    margin = 1.0 if kind == "integer" else 0.3  # 1.0: exact ties at d(a, p) + margin
    loss, stats = triplet_loss(
        x,
        labels,
        margin=margin,
        mining=mining_mode,
        metric=metric,
        average=average,
        return_stats=True,
    )
    expected_loss, expected_stats = brute_force_triplet(
        pairwise_distances(x, metric=metric), labels, margin, mining_mode, average
    )
    assert loss.dtype == dtype and loss.shape == ()
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    assert float(loss) == pytest.approx(expected_loss, rel=tolerance, abs=tolerance)
    expected = {key: expected_stats[key] for key in TRIPLET_KEYS}
    check_stats(stats, expected, x.device)


@pytest.mark.parametrize(
    "average,squared", [("all", True), ("active", True), ("all", False), ("active", False)]
)
@pytest.mark.parametrize("mining_mode", ["all", "hard"])
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,seed", BATCHES)
def test_contrastive_loss_matches_brute_force(
    average, squared, mining_mode, metric, dtype, kind, seed
):
    x, labels = make_batch(kind, dtype, seed)
    margin = 2.0 if kind == "integer" else 0.8
    loss, stats = contrastive_loss(
        x,
        labels,
        margin=margin,
        mining=mining_mode,
        metric=metric,
        average=average,
        squared=squared,
        return_stats=True,
    )
    expected_loss, expected_stats = brute_force_contrastive(
        pairwise_distances(x, metric=metric), labels, margin, mining_mode, average, squared
    )
    assert loss.dtype == dtype and loss.shape == ()
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    assert float(loss) == pytest.approx(expected_loss, rel=tolerance, abs=tolerance)
    expected = {key: expected_stats[key] for key in CONTRASTIVE_KEYS}
    check_stats(stats, expected, x.device)


def test_loss_without_stats_is_the_same_tensor_value():
    x, labels = make_batch("normal", torch.float32, 0)
    for mode in TRIPLET_MINING:
        loss, _ = triplet_loss(x, labels, mining=mode, return_stats=True)
        assert torch.equal(triplet_loss(x, labels, mining=mode), loss)
    for mode in ["all", "hard"]:
        loss, _ = contrastive_loss(x, labels, mining=mode, return_stats=True)
        assert torch.equal(contrastive_loss(x, labels, mining=mode), loss)


def test_full_width_layout_gives_the_same_results(monkeypatch):
    # Off the CPU, the positives are laid out B wide to avoid a host synchronisation.
    x, labels = make_batch("integer", torch.float32, 1)
    results = [
        triplet_loss(x, labels, mining=mode, margin=1.0, return_stats=True)
        for mode in TRIPLET_MINING
    ]
    monkeypatch.setattr(_kernels, "_layout_width", len)
    for mode, (loss, stats) in zip(TRIPLET_MINING, results):
        wide_loss, wide_stats = triplet_loss(x, labels, mining=mode, margin=1.0, return_stats=True)
        assert float(wide_loss) == pytest.approx(float(loss), rel=1e-6)
        assert {k: int(v) for k, v in wide_stats.items()} == {k: int(v) for k, v in stats.items()}


@pytest.mark.parametrize("average", ["all", "active"])
@pytest.mark.parametrize("mining_mode", TRIPLET_MINING)
@pytest.mark.parametrize("metric", METRICS)
def test_triplet_gradcheck(average, mining_mode, metric):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(10, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3, 4])
    margin = 0.5 if metric == "cosine" else 1.0
    options = {"margin": margin, "mining": mining_mode, "metric": metric, "average": average}
    assert triplet_loss(x, labels, **options) > 0
    assert torch.autograd.gradcheck(lambda x: triplet_loss(x, labels, **options), (x,))


@pytest.mark.parametrize(
    "average,squared", [("all", True), ("active", True), ("all", False), ("active", False)]
)
@pytest.mark.parametrize("mining_mode", ["all", "hard"])
@pytest.mark.parametrize("metric", METRICS)
def test_contrastive_gradcheck(average, squared, mining_mode, metric):
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(10, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3, 4])
    options = {
        "margin": 1.5,
        "mining": mining_mode,
        "metric": metric,
        "average": average,
        "squared": squared,
    }
    assert contrastive_loss(x, labels, **options) > 0
    assert torch.autograd.gradcheck(lambda x: contrastive_loss(x, labels, **options), (x,))


def _assert_attached_zero(loss, x):
    assert loss.requires_grad and float(loss.detach()) == 0.0
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("average", ["all", "active"])
@pytest.mark.parametrize("mining_mode", TRIPLET_MINING)
@pytest.mark.parametrize("metric", METRICS)
def test_all_easy_batch_gives_attached_zero(average, mining_mode, metric):
    x = torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    loss, stats = triplet_loss(
        x,
        labels,
        margin=0.1,
        mining=mining_mode,
        metric=metric,
        average=average,
        return_stats=True,
    )
    assert int(stats["n_easy"]) == int(stats["n_triplets"]) == 8
    _assert_attached_zero(loss, x)


@pytest.mark.parametrize(
    "labels", [[3, 3, 3, 3, 3], [0, 1, 2, 3, 4]], ids=["one-class", "singletons"]
)
@pytest.mark.parametrize("mining_mode", TRIPLET_MINING)
def test_nothing_to_train_on_gives_attached_zero(labels, mining_mode):
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    loss, stats = triplet_loss(x, torch.tensor(labels), mining=mining_mode, return_stats=True)
    assert int(stats["n_triplets"]) == int(stats["n_mined"]) == 0
    _assert_attached_zero(loss, x)


@pytest.mark.parametrize("n_samples", [0, 1])
def test_tiny_batches(n_samples):
    x = torch.ones(n_samples, 3, requires_grad=True)
    labels = torch.zeros(n_samples, dtype=torch.int64)
    loss, stats = triplet_loss(x, labels, return_stats=True)
    assert list(stats) == TRIPLET_KEYS and all(int(v) == 0 for v in stats.values())
    _assert_attached_zero(loss, x)
    x.grad = None
    loss, stats = contrastive_loss(x, labels, return_stats=True)
    assert list(stats) == CONTRASTIVE_KEYS and all(int(v) == 0 for v in stats.values())
    _assert_attached_zero(loss, x)


def test_contrastive_all_easy_and_single_class():
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [5.0, 0.0], [5.0, 0.0]], requires_grad=True)
    _assert_attached_zero(contrastive_loss(x, torch.tensor([0, 0, 1, 1]), margin=1.0), x)
    x.grad = None
    _assert_attached_zero(contrastive_loss(x, torch.tensor([0, 0, 1, 1]), mining="hard"), x)
    x.grad = None
    y = torch.zeros(4, 2, requires_grad=True)
    _assert_attached_zero(contrastive_loss(y, torch.tensor([2, 2, 2, 2])), y)


def _exact(message):
    return "^" + "".join("\\" + c if c in r"()[]{}.*+?^$|\\" else c for c in message) + "$"


def _invalid_parameter(name, function, allowed_pattern, value):
    """scikit-learn's message; the options of a set are listed in an order Python does not fix."""
    return (
        "^"
        + re.escape(f"The '{name}' parameter of {function.__name__} must be ")
        + allowed_pattern
        + re.escape(f". Got {value!r} instead.")
        + "$"
    )


def _str_among(n):
    return r"a str among \{" + r"'[a-z-]+', " * (n - 1) + r"'[a-z-]+'\}"


@pytest.mark.parametrize("loss_function", [triplet_loss, contrastive_loss])
def test_bad_options(loss_function):
    x, labels = torch.zeros(4, 2), torch.tensor([0, 0, 1, 1])
    n_minings = 4 if loss_function is triplet_loss else 2
    pattern = _invalid_parameter("mining", loss_function, _str_among(n_minings), "seminard")
    with pytest.raises(ValueError, match=pattern):
        loss_function(x, labels, mining="seminard")
    with pytest.raises(
        ValueError, match=_invalid_parameter("metric", loss_function, _str_among(3), "l1")
    ):
        loss_function(x, labels, metric="l1")
    for margin in [0, -1.0, float("inf"), float("nan"), "1"]:
        allowed = re.escape("a float in the range (0.0, inf)")
        with pytest.raises(
            ValueError, match=_invalid_parameter("margin", loss_function, allowed, margin)
        ):
            loss_function(x, labels, margin=margin)
    assert float(loss_function(x, labels, margin=np.float32(0.5))) >= 0


def test_bad_average():
    x, labels = torch.zeros(4, 2), torch.tensor([0, 0, 1, 1])
    pattern = _invalid_parameter("average", triplet_loss, _str_among(2), "nonzero")
    with pytest.raises(ValueError, match=pattern):
        triplet_loss(x, labels, average="nonzero")


def test_active_average_keeps_the_gradient_as_triplets_turn_easy():
    # Some of the mined triplets are easy: averaged over all of them, the loss and its gradient
    # are those averaged over the active ones times the share of active ones.
    x = torch.tensor([[0.0], [0.1], [0.65], [3.0], [3.3]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 1])
    results = {}
    for average in ["all", "active"]:
        loss, stats = triplet_loss(
            x, labels, margin=0.5, mining="semi-hard", average=average, return_stats=True
        )
        (gradient,) = torch.autograd.grad(loss, x)
        results[average] = (loss.detach(), gradient)
    n_mined, n_active = int(stats["n_mined"]), int(stats["n_mined_active"])
    assert n_mined == 8 and 0 < n_active < n_mined
    share = n_active / n_mined
    torch.testing.assert_close(results["all"][0], results["active"][0] * share)
    torch.testing.assert_close(results["all"][1], results["active"][1] * share)


def test_easy_positive_lets_a_class_keep_two_clusters():
    # Class 0 sits in two clusters, each next to a point of its own class; class 1 far away.
    x = torch.tensor([[0.0], [0.1], [5.0], [5.1], [10.0], [10.1]], requires_grad=True)
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    easy = triplet_loss(x, labels, margin=0.5, mining="easy-positive")
    assert float(easy) == 0.0  # every anchor is nearer to a sample of its class than to class 1
    assert float(triplet_loss(x, labels, margin=0.5, mining="semi-hard")) > 0
    assert float(triplet_loss(x, labels, margin=0.5, mining="hard")) > 0


@pytest.mark.parametrize("loss_function", [triplet_loss, contrastive_loss])
def test_bad_inputs(loss_function):
    labels = torch.tensor([0, 0, 1, 1])
    with pytest.raises(
        ValueError,
        match=_exact(
            "embeddings must be a 2-D floating-point tensor of shape (batch_size, n_components); "
            "got shape (4,) and dtype torch.float32."
        ),
    ):
        loss_function(torch.zeros(4), labels)
    with pytest.raises(
        ValueError,
        match=_exact(
            "labels must be a 1-D tensor of integers; got shape (4,) and dtype torch.float32."
        ),
    ):
        loss_function(torch.zeros(4, 2), labels.float())
    with pytest.raises(
        ValueError, match=_exact("labels must be of length 5, one entry per sample; got 4.")
    ):
        loss_function(torch.zeros(5, 2), labels)
    with pytest.raises(
        TypeError,
        match=_exact(
            f"The 'labels' parameter of {loss_function.__name__} must be an instance of "
            "'torch.Tensor'. Got [0, 0, 1, 1] instead."
        ),
    ):
        loss_function(torch.zeros(4, 2), [0, 0, 1, 1])


def test_large_batch_semi_hard_trains():
    # B = 8192 embeddings of dimension 128: forward and backward in O(B²) memory.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8192, 128, generator=generator).requires_grad_()
    labels = torch.randint(0, 50, (8192,), generator=generator)
    loss, stats = triplet_loss(x, labels, mining="semi-hard", return_stats=True)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    assert int(stats["n_mined"]) == int((labels[:, None] == labels[None, :]).sum()) - 8192


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_label_dtypes(dtype):
    x, labels = make_batch("integer", torch.float32, 2)
    labels = labels - labels.min()
    for mode in ["all", "hard", "semi-hard"]:
        expected, expected_stats = triplet_loss(
            x, labels, mining=mode, margin=1.0, return_stats=True
        )
        loss, stats = triplet_loss(x, labels.to(dtype), mining=mode, margin=1.0, return_stats=True)
        assert torch.equal(loss, expected)
        assert {k: int(v) for k, v in stats.items()} == {
            k: int(v) for k, v in expected_stats.items()
        }


def test_backward_twice_with_retained_graph():
    x, labels = make_batch("normal", torch.float64, 0)
    x.requires_grad_()
    loss = triplet_loss(x, labels, mining="all")
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    loss.backward()
    torch.testing.assert_close(x.grad, 2 * first)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("metric", METRICS)
def test_cuda_matches_cpu(metric):
    x, labels = make_batch("integer", torch.float32, 0)
    cases = [(triplet_loss, mode) for mode in ["all", "hard", "semi-hard"]]
    cases += [(contrastive_loss, mode) for mode in ["all", "hard"]]
    for loss_function, mode in cases:
        results = []
        for device in ["cpu", "cuda"]:
            embeddings = x.to(device).requires_grad_()
            loss, stats = loss_function(
                embeddings,
                labels.to(device),
                mining=mode,
                metric=metric,
                margin=1.0,
                return_stats=True,
            )
            loss.backward()
            assert all(value.device == embeddings.device for value in stats.values())
            results.append(
                (loss.item(), embeddings.grad.cpu(), {k: int(v) for k, v in stats.items()})
            )
        (cpu_loss, cpu_grad, cpu_stats), (cuda_loss, cuda_grad, cuda_stats) = results
        assert cuda_loss == pytest.approx(cpu_loss, rel=1e-5, abs=1e-6)
        torch.testing.assert_close(cuda_grad, cpu_grad, rtol=1e-4, atol=1e-5)
        assert cuda_stats == cpu_stats


def test_unsquared_active_contrastive_is_pytorch_metric_learnings():
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    from pytorch_metric_learning.distances import LpDistance

    generator = torch.Generator().manual_seed(3)
    x = torch.randn(24, 5, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 5, (24,), generator=generator)
    theirs_loss = pml_losses.ContrastiveLoss(
        pos_margin=0, neg_margin=1, distance=LpDistance(normalize_embeddings=False)
    )
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    loss = contrastive_loss(ours, labels, margin=1.0, average="active", squared=False)
    expected = theirs_loss(theirs, labels)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(ours.grad, theirs.grad)


# ----------------------------------------------------------------------------------------
# The losses of given pairs and triplets, against the papers' formulas written as plain loops.


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
    n_active = sum((d > 0) if label == 1 else (d < 1.5) for d, label in zip(distances, y.tolist()))
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


def test_bad_inputs_of_the_losses_of_given_tuples():
    x = torch.zeros(4, 2)
    y = torch.tensor([1, -1, 1, -1])
    message = (
        "The 'margin' parameter of contrastive_loss_on_pairs must be a float in the range "
        "(0.0, inf). Got 0 instead."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        contrastive_loss_on_pairs(x, x, y, margin=0)
    message = "The 'metric' parameter of triplet_loss_on_triplets must be a str among"
    with pytest.raises(ValueError, match=re.escape(message)):
        triplet_loss_on_triplets(x, x, x, metric="manhattan")
    message = "y must be +1 (similar pair) or -1 (dissimilar pair); got also [0, 2]."
    with pytest.raises(ValueError, match=re.escape(message)):
        contrastive_loss_on_pairs(x, x, torch.tensor([1, 0, 2, -1]))
    message = (
        "y must be a real or integer tensor of shape (4,) on cpu; got shape (4,), dtype "
        "torch.bool on cpu."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        contrastive_loss_on_pairs(x, x, y > 0)
    message = (
        "second must be of the shape, dtype and device of first; got first: (4, 2), "
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
    message = "The 'anchors' parameter of triplet_loss_on_triplets must be an instance of"
    with pytest.raises(ValueError, match=re.escape(message)):
        triplet_loss_on_triplets([[0.0]], x, x)
