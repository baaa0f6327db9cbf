"""The built-in losses, registered once each.

A built-in loss is one declaration (:class:`~sklearn_triplet._kernels.LossDeclaration`: its name,
kernel, statistics and options, in its own module) and one line here. Everything else reads this
registry: the class-label estimators (``loss="multi-similarity"``, its constraint and its options),
the training loop and the console (a declaration's statistics), the history plots (the fractions
of every loss), the documentation of ``loss`` and of ``history_``, and the trust list of ``load``
(a loss's public function). The built-in backbones are registered the same way, in
:data:`sklearn_triplet.backbones.BACKBONES`.
"""

from ._kernels import CONTRASTIVE, GIVEN_PAIRS, GIVEN_TRIPLETS, TRIPLET
from ._multi_similarity import MULTI_SIMILARITY

LOSSES = {
    loss.name: loss
    for loss in (
        TRIPLET,
        CONTRASTIVE,
        GIVEN_PAIRS,
        GIVEN_TRIPLETS,
        MULTI_SIMILARITY,
    )
}

#: The losses a class-label estimator selects by name, ``loss="..."``.
NAMED_LOSSES = {name: loss for name, loss in LOSSES.items() if loss.params is not None}
