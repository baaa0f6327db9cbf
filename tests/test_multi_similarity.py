"""The multi-similarity loss: against a loop written from the paper, against
pytorch-metric-learning, its gradient, and as the built-in choice ``loss="multi-similarity"``."""

import math
import re

import numpy as np
import pytest
import torch

from sklearn_triplet import SiameseEmbedder, TripletEmbedder, load
from sklearn_triplet._multi_similarity import MULTI_SIMILARITY, multi_similarity_kernel

OPTIONS = {"alpha": 2.0, "beta": 50.0, "base": 0.5, "epsilon": 0.1}


def _batch(seed, n=24, d=6, n_classes=5, dtype=torch.float64, normalize=True):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(n, d, generator=generator, dtype=dtype)
    if normalize:
        embeddings = torch.nn.functional.normalize(embeddings, dim=1)
    labels = torch.randint(n_classes, (n,), generator=generator)
    return embeddings, labels


def _loss(embeddings, labels, metric, **options):
    return multi_similarity_kernel(
        embeddings, labels, margin=0.2, metric=metric, **{**OPTIONS, **options}
    ).loss


def _brute_force(embeddings, labels, metric, alpha, beta, base, epsilon):
    """Wang et al. (2019), eq. 6 with the mining of section 3.3, written in distances, one anchor
    at a time, in plain Python."""
    x = embeddings.tolist()
    y = labels.tolist()

    def distance(a, b):
        if metric == "cosine":
            dot = sum(p * q for p, q in zip(a, b))
            norms = math.sqrt(sum(p * p for p in a)) * math.sqrt(sum(q * q for q in b))
            return 1.0 - dot / norms
        squared = sum((p - q) ** 2 for p, q in zip(a, b))
        return squared if metric == "sqeuclidean" else math.sqrt(squared)

    total = 0.0
    for i in range(len(x)):
        positives = [distance(x[i], x[j]) for j in range(len(x)) if j != i and y[j] == y[i]]
        negatives = [distance(x[i], x[j]) for j in range(len(x)) if y[j] != y[i]]
        if positives and negatives:
            kept_positives = [d for d in positives if d + epsilon > min(negatives)]
            kept_negatives = [d for d in negatives if d - epsilon < max(positives)]
        else:
            kept_positives = kept_negatives = []
        total += math.log(1 + sum(math.exp(alpha * (d - base)) for d in kept_positives)) / alpha
        total += math.log(1 + sum(math.exp(-beta * (d - base)) for d in kept_negatives)) / beta
    return total / len(x)


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "sqeuclidean"])
@pytest.mark.parametrize("seed", range(4))
def test_matches_a_loop_written_from_the_paper(metric, seed):
    embeddings, labels = _batch(seed)
    options = {"alpha": 2.0, "beta": 10.0 + 10 * seed, "base": 0.4 + 0.1 * seed, "epsilon": 0.1}
    expected = _brute_force(embeddings, labels, metric, **options)
    assert _loss(embeddings, labels, metric, **options).item() == pytest.approx(expected, abs=1e-9)


def _pml(embeddings, labels, metric, alpha, beta, base, epsilon):
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
    from pytorch_metric_learning.miners import MultiSimilarityMiner

    if metric == "cosine":
        distance, base = CosineSimilarity(), 1.0 - base  # similarity 1 - d
    else:
        power = 2 if metric == "sqeuclidean" else 1
        distance = LpDistance(normalize_embeddings=False, power=power)
    miner = MultiSimilarityMiner(epsilon=epsilon, distance=distance)
    loss = losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=base, distance=distance)
    mined = miner(embeddings, labels)
    # pytorch-metric-learning's loss is 0 when at most one pair of each kind is mined
    assert len(mined[0]) > 1 and len(mined[2]) > 1
    return loss(embeddings, labels, mined)


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "sqeuclidean"])
@pytest.mark.parametrize("seed", range(6))
def test_equals_pytorch_metric_learning_with_its_miner(metric, seed):
    # random batches, unnormalised for the Lp distances, at the paper's and at other settings
    embeddings, labels = _batch(seed, n=16 + 8 * seed, normalize=metric == "cosine")
    options = (
        OPTIONS if seed % 2 == 0 else {"alpha": 1.0, "beta": 20.0, "base": 0.7, "epsilon": 0.3}
    )
    ours = embeddings.clone().requires_grad_(True)
    theirs = embeddings.clone().requires_grad_(True)
    loss = _loss(ours, labels, metric, **options)
    expected = _pml(theirs, labels, metric, **options)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=0, atol=1e-6)


def test_float32_batches_equal_pytorch_metric_learning():
    embeddings, labels = _batch(7, n=64, d=16, n_classes=8, dtype=torch.float32)
    expected = _pml(embeddings, labels, "cosine", **OPTIONS)
    assert _loss(embeddings, labels, "cosine").item() == pytest.approx(expected.item(), abs=1e-6)


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "sqeuclidean"])
def test_gradient_in_float64(metric):
    embeddings, labels = _batch(3, n=10, d=4, n_classes=3)
    embeddings.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda e: _loss(e, labels, metric), (embeddings,))


def test_nothing_mined_is_a_zero_attached_to_the_graph():
    # one class: no negatives, so no anchor keeps a pair
    embeddings = torch.randn(6, 3, requires_grad=True)
    batch = multi_similarity_kernel(
        embeddings, torch.zeros(6, dtype=torch.int64), margin=0.2, metric="euclidean", counts=True
    )
    assert batch.loss.item() == 0.0 and batch.loss.requires_grad
    batch.loss.backward()
    assert torch.equal(embeddings.grad, torch.zeros(6, 3))
    counts = MULTI_SIMILARITY.statistics.as_dict(batch.counts)
    assert counts["n_negative_pairs"] == 0 and counts["n_mined_positive_pairs"] == 0


def test_counts_the_mined_pairs():
    embeddings, labels = _batch(1)
    batch = multi_similarity_kernel(
        embeddings, labels, margin=0.2, metric="euclidean", counts=True, **OPTIONS
    )
    counts = MULTI_SIMILARITY.statistics.as_dict(batch.counts)
    same = (labels[:, None] == labels[None, :]).sum().item()
    assert counts["n_positive_pairs"] == same - len(labels)
    assert counts["n_negative_pairs"] == len(labels) ** 2 - same
    a1, _, a2, _ = _pml_pairs(embeddings, labels)
    assert (counts["n_mined_positive_pairs"], counts["n_mined_negative_pairs"]) == (a1, a2)


def _pml_pairs(embeddings, labels):
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.miners import MultiSimilarityMiner

    miner = MultiSimilarityMiner(epsilon=0.1, distance=LpDistance(normalize_embeddings=False))
    return [len(part) for part in miner(embeddings, labels)]


# -- the built-in choice of the class-label estimators --------------------------------------------


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X[:400] / 16, y[:400]


FAST = {
    "n_components": 8,
    "hidden_layer_sizes": (32,),
    "max_iter": 2,
    "margin": 0.2,
    "random_state": 0,
}


@pytest.mark.parametrize("Estimator", [TripletEmbedder, SiameseEmbedder])
def test_estimators_train_with_the_named_loss(Estimator, digits, tmp_path):
    X, y = digits
    est = Estimator(**FAST, loss="multi-similarity", loss_params={"beta": 40.0}).fit(X, y)
    row = est.history_[-1]
    assert {"mined_positive_fraction", "mined_negative_fraction", "n_hard"} <= set(row)
    assert 0 < row["mined_negative_fraction"] < 1 and math.isfinite(row["loss"])
    # its own mining and average are not used: another value trains the same network
    other = Estimator(**FAST, loss="multi-similarity", loss_params={"beta": 40.0}, mining="all")
    np.testing.assert_array_equal(other.fit(X, y).transform(X[:5]), est.transform(X[:5]))
    path = tmp_path / "ms.safetensors"
    est.save(path)
    np.testing.assert_array_equal(load(path).transform(X[:5]), est.transform(X[:5]))


def test_the_options_are_those_of_the_declaration(digits):
    X, y = digits
    est = TripletEmbedder(**FAST, loss="multi-similarity", loss_params={"gamma": 1.0})
    message = (
        "loss_params of loss='multi-similarity' must be a dict with keys among "
        "['alpha', 'base', 'beta', 'epsilon']; got unknown key(s) ['gamma']."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        est.fit(X, y)
    message = (
        "loss_params applies to a built-in loss named by loss (one of ['multi-similarity']); got "
        "loss=None. Set loss='multi-similarity', or loss_params=None."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        TripletEmbedder(**FAST, loss_params={"beta": 1.0}).fit(X, y)
    with pytest.raises(ValueError, match="The 'loss' parameter of TripletEmbedder must be"):
        TripletEmbedder(**FAST, loss="multi-similarty").fit(X, y)
