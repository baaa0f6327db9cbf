import math
import re

import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import cosine_distances

from sklearn_triplet.distances import METRICS, paired_distances, pairwise_distances
from sklearn_triplet.losses import contrastive_loss

DTYPES = [torch.float32, torch.float64]


def brute_force_distance(u, v, metric, same_row=False):
    """One distance from the definition, in float64 Python arithmetic.

    A zero row is at cosine distance 1 from every other row (scikit-learn's convention), and 0
    from itself.
    """
    if same_row:
        return 0.0
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
        return 1.0
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
    for other, result in [
        (x, pairwise_distances(x, metric=metric)),
        (y, pairwise_distances(x, y, metric=metric)),
    ]:
        assert result.dtype == dtype and result.shape == (len(x), len(other))
        expected = torch.tensor(
            [
                [
                    brute_force_distance(u, v, metric, other is x and i == j)
                    for j, v in enumerate(other)
                ]
                for i, u in enumerate(x)
            ],
            dtype=torch.float64,
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
    # scikit-learn's convention: a zero row is at distance 1 from every other row, zero or not.
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0], [-3.0, -4.0]])
    expected = torch.tensor(
        [[0.0, 1.0, 1.0, 1.0], [1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 2.0], [1.0, 1.0, 2.0, 0.0]]
    )
    torch.testing.assert_close(pairwise_distances(x, metric="cosine"), expected)
    torch.testing.assert_close(pairwise_distances(x, x, metric="cosine"), expected)
    np.testing.assert_allclose(cosine_distances(x.numpy()), expected.numpy(), atol=1e-7)
    np.testing.assert_allclose(pairwise_distances(x.numpy(), metric="cosine"), expected.numpy())
    # Against a copy (not x itself), each zero row is at 1 from its copy too, as in scikit-learn.
    copy = x.clone()
    expected[0, 0] = expected[1, 1] = 1.0
    torch.testing.assert_close(pairwise_distances(x, copy, metric="cosine"), expected)
    np.testing.assert_allclose(
        cosine_distances(x.numpy(), copy.numpy()), expected.numpy(), atol=1e-7
    )


@pytest.mark.parametrize("metric", METRICS)
def test_tensors_and_arrays_give_the_same_distances(metric):
    x = embeddings("integer", torch.float64)
    y = embeddings("integer", torch.float64, n=9, seed=1)
    np.testing.assert_allclose(
        pairwise_distances(x, y, metric=metric).numpy(),
        pairwise_distances(x.numpy(), y.numpy(), metric=metric),
        atol=1e-12,
    )


def test_training_kernel_puts_zero_embeddings_of_different_classes_at_cosine_distance_1():
    # The contrastive loss of two zero embeddings of different classes is (margin - 1)²: at 0
    # apart, it would be margin².
    x = torch.zeros(2, 3, requires_grad=True)
    loss = contrastive_loss(x, torch.tensor([0, 1]), margin=1.5, metric="cosine")
    assert loss.item() == pytest.approx(0.25)


def _plain_paired_distance(a, b, metric):
    if metric == "cosine":
        norms = math.sqrt(sum(u * u for u in a)) * math.sqrt(sum(v * v for v in b))
        return 1.0 - (sum(u * v for u, v in zip(a, b)) / norms if norms else 0.0)
    squared = sum((u - v) ** 2 for u, v in zip(a, b))
    return squared if metric == "sqeuclidean" else math.sqrt(squared)


@pytest.mark.parametrize("metric", METRICS)
def test_paired_distances_match_plain_python(metric):
    rng = np.random.default_rng(0)
    X1, X2 = rng.normal(size=(20, 3)), rng.normal(size=(20, 3))
    X1[0] = X1[1] = X2[1] = 0.0  # zero rows: cosine 0, distance 1, from zero rows too
    expected = [_plain_paired_distance(a, b, metric) for a, b in zip(X1.tolist(), X2.tolist())]
    np.testing.assert_allclose(paired_distances(X1, X2, metric=metric), expected, rtol=1e-12)
    diagonal = np.diag(pairwise_distances(X1, X2, metric=metric))
    np.testing.assert_allclose(paired_distances(X1, X2, metric=metric), diagonal, atol=1e-12)


def test_unknown_metric():
    pattern = (
        re.escape("The 'metric' parameter of pairwise_distances must be a str among ")
        + r"\{('[a-z]+', ){2}'[a-z]+'\}"
        + re.escape(". Got 'manhattan' instead.")
    )
    with pytest.raises(ValueError, match=f"^{pattern}$"):
        pairwise_distances(torch.ones(2, 2), metric="manhattan")


def test_bad_shapes():
    message = (
        "x must be a 2-D floating-point tensor of shape (n_samples, n_features); "
        "got shape (3,) and dtype torch.float32."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        pairwise_distances(torch.ones(3))
    with pytest.raises(ValueError, match=re.escape("got shape (3, 2) and dtype torch.int64.")):
        pairwise_distances(torch.ones(3, 2, dtype=torch.int64))
    message = (
        "y must be a tensor with the number of columns, dtype and device of x; got "
        "x: (3, 2), torch.float32, cpu and y: (3, 4), torch.float32, cpu."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        pairwise_distances(torch.ones(3, 2), torch.ones(3, 4))
    message = "y must be a torch.Tensor when x is one; got ndarray."
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        pairwise_distances(torch.ones(3, 2), np.ones((3, 2)))


def test_paired_distances_errors():
    message = "X1 and X2 must be of the same shape; got (2, 1) and (3, 1)."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        paired_distances([[0.0], [1.0]], [[0.0], [1.0], [2.0]])
    with pytest.raises(ValueError, match=re.escape("The 'metric' parameter of paired_distances")):
        paired_distances([[0.0]], [[1.0]], metric="l1")
    with pytest.raises(ValueError, match="Input X2 contains NaN"):
        paired_distances([[0.0]], [[np.nan]])
