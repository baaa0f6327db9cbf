"""The multi-similarity loss with its pair mining (Wang et al., CVPR 2019): one built-in loss.

Everything about this loss is here: its kernel, the statistics it reports, its options with their
defaults and its name, in one :class:`~sklearn_triplet._kernels.LossDeclaration`. The registry of
built-in losses (:data:`sklearn_triplet._kernels.BUILTIN_LOSSES`) lists it; the estimators, the
training loop, the console report, the history plots, the documentation and the trust policy of
``load`` read it from there.

Written in distances, as everything inside the package (``metric``; for ``"cosine"``, ``d = 1 -
cos``, so the paper's similarities are ``S = 1 - d``). For an anchor ``i``, with ``P_i`` its
mined positives and ``N_i`` its mined negatives, the loss is the mean over the anchors of::

    1/alpha * log(1 + sum_{p in P_i} exp(alpha * (d_ip - base)))
        + 1/beta * log(1 + sum_{n in N_i} exp(-beta * (d_in - base)))

Mining (the paper's pair mining, pytorch-metric-learning's ``MultiSimilarityMiner``): a positive
``p`` of anchor ``i`` is kept when ``d_ip + epsilon > min_n d_in`` (it is not already closer than
the closest negative by ``epsilon``), a negative ``n`` when ``d_in - epsilon < max_p d_ip``; an
anchor without positives or without negatives keeps none. With ``metric="cosine"`` this is
pytorch-metric-learning's ``MultiSimilarityLoss(alpha, beta, base=1 - base)`` with
``MultiSimilarityMiner(epsilon)`` over its default ``CosineSimilarity`` (``base=0.5`` is the same
in both), and with ``"euclidean"`` or ``"sqeuclidean"`` the same over ``LpDistance`` (``power=2``)
without normalisation, up to one difference: pytorch-metric-learning returns 0 when at most one
positive and one negative pair are mined in the whole batch, where this takes their terms.
"""

import torch

from ._kernels import (
    SAMPLED_TAXONOMY,
    TAXONOMY,
    TAXONOMY_FRACTIONS,
    BatchLoss,
    Count,
    Fraction,
    LossDeclaration,
    Statistics,
    TripletIndex,
    distance_matrix,
    negative_distances,
    nothing_to_train_on,
)

STATISTICS = Statistics(
    TAXONOMY
    + (
        Count("n_positive_pairs", "the ordered same-class pairs ``(i, p)``, ``p != i``"),
        Count("n_negative_pairs", "the ordered different-class pairs ``(i, n)``"),
        Count("n_mined_positive_pairs", "the positive pairs the mining kept"),
        Count("n_mined_negative_pairs", "the negative pairs the mining kept"),
    ),
    TAXONOMY_FRACTIONS
    + (
        Fraction(
            "mined_positive_fraction",
            "n_mined_positive_pairs",
            "n_positive_pairs",
            "mined positives",
            "``n_mined_positive_pairs / n_positive_pairs``",
        ),
        Fraction(
            "mined_negative_fraction",
            "n_mined_negative_pairs",
            "n_negative_pairs",
            "mined negatives",
            "``n_mined_negative_pairs / n_negative_pairs``",
        ),
    ),
    SAMPLED_TAXONOMY,
)


def multi_similarity_kernel(
    embeddings,
    labels,
    *,
    margin,
    metric,
    alpha=2.0,
    beta=50.0,
    base=0.5,
    epsilon=0.1,
    counts=False,
    taxonomy=True,
    spread=False,
):
    """The multi-similarity loss of a batch, its pairs mined; see the module documentation.

    Parameters
    ----------
    embeddings : Tensor of shape (B, n_components)
    labels : int64 Tensor of shape (B,)
    margin : float
        For the triplet statistics only (the taxonomy of ``history_``).
    metric : {"euclidean", "sqeuclidean", "cosine"}
    alpha, beta : float
        The weights of the positive and negative terms.
    base : float
        The distance positive pairs are pulled below and negative pairs pushed above.
    epsilon : float
        The slack of the mining.
    counts, taxonomy, spread : bool
        Return the counts of :data:`STATISTICS` (the taxonomy when ``taxonomy`` too), and the sum
        and number of the distances between different classes.

    Returns
    -------
    BatchLoss
    """
    if len(labels) < 2:
        return nothing_to_train_on(embeddings, STATISTICS, counts, spread)
    distances = distance_matrix(embeddings, None, metric)
    with torch.no_grad():
        same = labels[:, None] == labels[None, :]
        positives = same.clone()
        positives.fill_diagonal_(False)
        negatives = ~same
        detached = distances.detach()
        closest_negative = torch.where(negatives, detached, torch.inf).amin(dim=1, keepdim=True)
        farthest_positive = torch.where(positives, detached, -torch.inf).amax(dim=1, keepdim=True)
        mined_positives = positives & (detached + epsilon > closest_negative)
        mined_negatives = negatives & (detached - epsilon < farthest_positive)
    positive_terms = _log_one_plus_sum_exp(alpha * (distances - base), mined_positives) / alpha
    negative_terms = _log_one_plus_sum_exp(-beta * (distances - base), mined_negatives) / beta
    loss = (positive_terms + negative_terms).mean()
    spread_out = negative_distances(detached, same) if spread else None
    if not counts:
        return BatchLoss(loss, None, spread_out)
    with torch.no_grad():
        if taxonomy:
            type_counts = TripletIndex(detached, labels).type_counts(margin)
        else:
            type_counts = torch.zeros(len(TAXONOMY), dtype=torch.int64, device=labels.device)
        vector = STATISTICS.vector(
            type_counts,
            n_positive_pairs=torch.count_nonzero(positives),
            n_negative_pairs=torch.count_nonzero(negatives),
            n_mined_positive_pairs=torch.count_nonzero(mined_positives),
            n_mined_negative_pairs=torch.count_nonzero(mined_negatives),
        )
    return BatchLoss(loss, vector, spread_out)


def _log_one_plus_sum_exp(exponents, mask):
    """``log(1 + sum_j exp(exponents[i, j]))`` over the ``j`` of ``mask[i]``, per row (B,).

    A row with nothing in ``mask`` gives 0, with a zero gradient.
    """
    masked = torch.where(mask, exponents, -torch.inf)
    return torch.logsumexp(torch.cat([masked, masked.new_zeros(len(masked), 1)], dim=1), dim=1)


MULTI_SIMILARITY = LossDeclaration(
    name="multi-similarity",
    kernel=multi_similarity_kernel,
    statistics=STATISTICS,
    minings=(),
    options=(),
    params={"alpha": 2.0, "beta": 50.0, "base": 0.5, "epsilon": 0.1},
    summary=(
        "the multi-similarity loss with its pair mining, Wang et al. (CVPR 2019): options "
        "``alpha``, ``beta``, ``base`` (in units of ``metric``) and ``epsilon``, by default 2, 50, "
        "0.5 and 0.1 (pytorch-metric-learning's defaults)"
    ),
)
