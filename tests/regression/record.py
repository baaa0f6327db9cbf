"""Record the regression reference of the two embedders: ``python tests/regression/record.py``.

Fits both estimators on scikit-learn's digits on the CPU in float32 with fixed seeds and every
parameter that shapes training spelled out (so that a later change of a default does not invalidate
the reference), and stores, per configuration, the transform of the first 300 digits and
``history_`` without its ``time`` column; and, on a fixed batch, the value, gradient and statistics
of the public losses for every mining rule and metric. ``tests/test_regression.py`` compares the
current code against the stored values.

Re-record only when a change of the arithmetic is intended, and say so in the commit message.
"""

import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REFERENCE_ARRAYS = HERE / "reference.npz"
REFERENCE_JSON = HERE / "reference.json"

# Every parameter that shapes training, spelled out.
COMMON = dict(
    n_components=8,
    backbone="mlp",
    hidden_layer_sizes=(32,),
    backbone_params=None,
    init="random",
    normalize=True,
    batch_size=64,
    samples_per_class=4,
    max_iter=3,
    learning_rate="constant",
    learning_rate_init=1e-3,
    weight_decay=0.0,
    mixed_precision=False,
    early_stopping=False,
    do_no_harm=False,
    device="cpu",
    random_state=0,
)


def callable_loss(embeddings, labels):
    """A user loss in plain torch: squared distances of positives, squared hinge of negatives."""
    distances = torch.cdist(embeddings, embeddings)
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive = distances[same & off_diagonal].square().mean()
    negative = (0.5 - distances[~same]).clamp_min(0).square().mean()
    return positive + negative


CONFIGS = {
    "triplet_semi_hard_euclidean": (
        "TripletEmbedder",
        dict(metric="euclidean", margin=0.2, mining="semi-hard", loss=None, average="all"),
    ),
    "triplet_hard_cosine": (
        "TripletEmbedder",
        dict(metric="cosine", margin=0.2, mining="hard", loss=None, average="all"),
    ),
    "triplet_all_sqeuclidean": (
        "TripletEmbedder",
        dict(metric="sqeuclidean", margin=0.3, mining="all", loss=None, average="all"),
    ),
    "siamese_all_euclidean": (
        "SiameseEmbedder",
        dict(metric="euclidean", margin=1.0, mining="all", loss=None, average="all", squared=True),
    ),
    "siamese_hard_cosine": (
        "SiameseEmbedder",
        dict(metric="cosine", margin=0.5, mining="hard", loss=None, average="all", squared=True),
    ),
    "triplet_callable_loss": (
        "TripletEmbedder",
        dict(metric="euclidean", margin=0.2, mining="semi-hard", loss=callable_loss, average="all"),
    ),
}

LOSS_CASES = [
    (loss, mining, metric)
    for loss, minings in (
        ("triplet_loss", ("semi-hard", "hard", "all")),
        ("contrastive_loss", ("all", "hard")),
    )
    for mining in minings
    for metric in ("euclidean", "sqeuclidean", "cosine")
]


def fixed_batch():
    """64 float32 embeddings of width 8 (8 classes x 8), unit norm, from a fixed generator."""
    generator = torch.Generator().manual_seed(12345)
    embeddings = torch.randn(64, 8, generator=generator)
    embeddings = embeddings / torch.linalg.vector_norm(embeddings, dim=1, keepdim=True)
    labels = torch.arange(8).repeat_interleave(8)[torch.randperm(64, generator=generator)]
    return embeddings, labels


def compute():
    """The reference values of the current code: (arrays, json-able dict)."""
    import warnings

    from sklearn.datasets import load_digits

    import sklearn_triplet
    from sklearn_triplet import losses

    X, y = load_digits(return_X_y=True)
    arrays, histories = {}, {}
    for name, (estimator, params) in CONFIGS.items():
        Estimator = getattr(sklearn_triplet, estimator)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = Estimator(**COMMON, **params).fit(X, y)
        arrays[f"{name}/transform"] = model.transform(X[:300])
        histories[name] = [
            {key: value for key, value in row.items() if key != "time"} for row in model.history_
        ]
    embeddings, labels = fixed_batch()
    batch_losses = {}
    for loss, mining, metric in LOSS_CASES:
        x = embeddings.clone().requires_grad_(True)
        margin = 0.2 if loss == "triplet_loss" else 0.7
        value, stats = getattr(losses, loss)(
            x, labels, margin=margin, mining=mining, metric=metric, return_stats=True
        )
        value.backward()
        key = f"{loss}/{mining}/{metric}"
        arrays[f"{key}/grad"] = x.grad.numpy()
        batch_losses[key] = {
            "loss": value.item(),
            "stats": {stat: int(count) for stat, count in stats.items()},
        }
    return arrays, {"histories": histories, "batch_losses": batch_losses}


def environment():
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
    }


def main():
    torch.set_num_threads(1)
    arrays, values = compute()
    np.savez_compressed(REFERENCE_ARRAYS, **arrays)
    values["environment"] = environment()
    REFERENCE_JSON.write_text(json.dumps(values, indent=1, sort_keys=True) + "\n")
    print(f"wrote {REFERENCE_ARRAYS} and {REFERENCE_JSON}", file=sys.stderr)


if __name__ == "__main__":
    main()
