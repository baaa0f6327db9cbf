import math

import pytest
import torch

from sklearn_triplet.distances import METRICS, pairwise_distances

DTYPES = [torch.float32, torch.float64]


def brute_force_distance(u, v, metric):
    """One distance from the definition, in float64 Python arithmetic."""
    u = [float(value) for value in u]
    v = [float(value) for value in v]
    squared = sum((a - b) ** 2 for a, b in zip(u, v))
    if metric == "euclidean":
        return math.sqrt(squared)
    if metric == "sqeuclidean":
        return squared
    norm_u = math.sqrt(sum(a * a for a in u))
    norm_v = math.sqrt(sum(b * b for b in v))
    if norm_u == 0 or norm_v == 0:
        return 0.0 if norm_u == norm_v else 1.0
    return 1 - sum(a * b for a, b in zip(u, v)) / (norm_u * norm_v)


def embeddings(kind, dtype, n=17, d=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    if kind == "normal":
        x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    else:  # integer values: exact ties, duplicate rows and a zero row
        x = torch.randint(-2, 3, (n, d), generator=generator).double()
        x[3] = x[5]
        x[7] = 0
    return x.to(dtype)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["normal", "integer"])
def test_matches_brute_force(metric, dtype, kind):
    x = embeddings(kind, dtype)
    y = embeddings(kind, dtype, n=9, seed=1)
    for other, result in [(x, pairwise_distances(x, metric=metric)),
                          (y, pairwise_distances(x, y, metric=metric))]:
        assert result.dtype == dtype and result.shape == (len(x), len(other))
        expected = torch.tensor(
            [[brute_force_distance(u, v, metric) for v in other] for u in x], dtype=torch.float64
        )
        tolerance = 1e-5 if dtype == torch.float32 else 1e-12
        scale = 10 if metric == "sqeuclidean" else 1
        torch.testing.assert_close(result.double(), expected, rtol=0, atol=tolerance * scale)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_self_distances_symmetric_with_zero_diagonal(metric, dtype):
    # 700 rows: more than one block of the in-place symmetrisation.
    x = torch.randn(700, 16, generator=torch.Generator().manual_seed(0)).to(dtype) * 3
    distances = pairwise_distances(x, metric=metric)
    assert torch.equal(distances, distances.T)
    assert torch.all(distances.diagonal() == 0)
    assert torch.all(distances >= 0)


def test_integer_duplicates_are_exactly_zero():
    x = embeddings("integer", torch.float32)
    for metric in METRICS:
        distances = pairwise_distances(x, metric=metric)
        assert distances[3, 5] == 0 and distances[5, 3] == 0


def test_cosine_of_zero_vectors():
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0], [-3.0, -4.0]])
    expected = torch.tensor(
        [[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 2.0], [1.0, 1.0, 2.0, 0.0]]
    )
    torch.testing.assert_close(pairwise_distances(x, metric="cosine"), expected)
    torch.testing.assert_close(pairwise_distances(x, x, metric="cosine"), expected)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_finite_at_zero_distance(metric, dtype):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(40, 8, generator=generator).to(dtype)
    x = torch.cat([x, x[:10], torch.zeros(2, 8, dtype=dtype)]).requires_grad_()
    weights = torch.rand(len(x), len(x), generator=generator).to(dtype)
    (pairwise_distances(x, metric=metric) * weights).sum().backward()
    assert torch.isfinite(x.grad).all()
    y = x.detach()[:10].clone().requires_grad_()
    (pairwise_distances(x, y, metric=metric) * weights[:, :10]).sum().backward()
    assert torch.isfinite(y.grad).all()


def test_euclidean_gradient_is_zero_between_duplicates():
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0]], requires_grad=True)
    pairwise_distances(x).sum().backward()
    assert torch.equal(x.grad, torch.zeros(2, 2))


@pytest.mark.parametrize("metric", METRICS)
def test_gradcheck(metric):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: pairwise_distances(x, metric=metric), (x,))
    assert torch.autograd.gradcheck(lambda x, y: pairwise_distances(x, y, metric=metric), (x, y))


def test_empty_and_single_inputs():
    assert pairwise_distances(torch.zeros(0, 3)).shape == (0, 0)
    assert torch.equal(pairwise_distances(torch.ones(1, 3)), torch.zeros(1, 1))


def test_unknown_metric():
    message = "metric must be one of 'euclidean', 'sqeuclidean', 'cosine'; got 'manhattan'."
    with pytest.raises(ValueError, match=f"^{message}$".replace("(", r"\(")):
        pairwise_distances(torch.ones(2, 2), metric="manhattan")


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"^x must be a 2-D floating-point tensor of shape "
                       r"\(n_samples, n_features\); got shape \(3,\) and dtype torch.float32.$"):
        pairwise_distances(torch.ones(3))
    with pytest.raises(ValueError, match=r"^x must be a 2-D floating-point tensor of shape "
                       r"\(n_samples, n_features\); got shape \(3, 2\) and dtype torch.int64.$"):
        pairwise_distances(torch.ones(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"^y must have the number of columns, dtype and device "
                       r"of x; got x: \(3, 2\), torch.float32, cpu and "
                       r"y: \(3, 4\), torch.float32, cpu.$"):
        pairwise_distances(torch.ones(3, 2), torch.ones(3, 4))
