"""The parameters of every public estimator, in the order of their signatures, with defaults.

One table, read by the tests: each estimator's ``__init__`` signature, its docstring's Parameters
section and its ``_parameter_constraints`` must list exactly these names, in this order (the
constraints in any order), with these defaults. Adding a parameter starts with a line here.
"""

ESTIMATORS = ("TripletEmbedder", "SiameseEmbedder", "PairEmbedder", "ComparisonEmbedder")


class _Absent:
    """The estimator does not take the parameter."""

    def __repr__(self):
        return "-"


_ = _Absent()

# name, then its default in TripletEmbedder, SiameseEmbedder, PairEmbedder, ComparisonEmbedder
# (``_``: the estimator does not take it).
TABLE = (
    ("n_components", 32, 32, None, None),
    ("backbone", "mlp", "mlp", "residual", "residual"),
    ("hidden_layer_sizes", (256,), (256,), (256,), (256,)),
    ("backbone_params", None, None, None, None),
    ("normalize", True, True, False, False),
    ("metric", "euclidean", "euclidean", "euclidean", "euclidean"),
    ("margin", 0.5, 1.0, 1.0, 0.2),
    ("mining", "auto", "all", _, _),
    ("average", "active", "active", "active", "active"),
    ("squared", _, False, False, _),
    ("do_no_harm", True, True, True, True),
    ("points", _, _, None, None),
    ("threshold", _, _, "accuracy", _),
    ("target_far", _, _, None, _),
    ("loss", None, None, _, _),
    ("loss_params", None, None, _, _),
    ("init", "auto", "auto", _, _),
    ("batch_size", 128, 128, 128, 128),
    ("samples_per_class", 4, 2, _, _),
    ("augment", "auto", "auto", _, _),
    ("max_iter", 50, 50, 50, 50),
    ("learning_rate", "cosine", "cosine", "cosine", "cosine"),
    ("learning_rate_init", 3e-3, 3e-3, 3e-4, 3e-4),
    ("weight_decay", 0.0, 0.0, 0.0, 0.0),
    ("mixed_precision", False, False, False, False),
    ("early_stopping", False, False, False, False),
    ("validation_fraction", 0.1, 0.1, 0.1, 0.1),
    ("n_iter_no_change", 10, 10, 10, 10),
    ("tol", 1e-4, 1e-4, 1e-4, 1e-4),
    ("warm_start", False, False, False, False),
    ("callback", None, None, None, None),
    ("checkpoint", None, None, None, None),
    ("checkpoint_every", 1, 1, 1, 1),
    ("device", "auto", "auto", "auto", "auto"),
    ("n_threads", None, None, None, None),
    ("random_state", None, None, None, None),
    ("verbose", 0, 0, 0, 0),
)


def parameters(estimator):
    """``{name: default}`` of the estimator named ``estimator``, in the order of its signature."""
    column = 1 + ESTIMATORS.index(estimator)
    return {row[0]: row[column] for row in TABLE if row[column] is not _}
