"""What the API reference documents, module by module.

``conf.py`` turns this list into ``api/index.rst`` and one page per module (``api/<module>.rst``)
at every build. The objects listed for a module are its ``__all__`` (without ``__version__``), or,
for a module without ``__all__``, the public functions and classes it defines; so a new public
function appears in the reference as soon as its module exports it. A module that cannot be
imported (one that has not been written yet) is left out.
"""

API_REFERENCE = [
    {
        "module": "sklearn_triplet",
        "title": "Estimators",
        "summary": "The embedders, scikit-learn transformers that train a PyTorch backbone: two "
        "from class labels, two from given pairs or triplets alone; :func:`~sklearn_triplet.load` "
        "for the files their ``save`` writes; and the warning they raise when the embeddings "
        "collapse.",
    },
    {
        "module": "sklearn_triplet.losses",
        "title": "Losses",
        "summary": "The triplet and contrastive losses with online mining, as pure functions of "
        "a batch of embeddings and its labels, and the same losses of given pairs and "
        "triplets.",
    },
    {
        "module": "sklearn_triplet.mining",
        "title": "Mining",
        "summary": "Which triplets or pairs of a batch the losses train on, and the easy / "
        "semi-hard / hard counts recorded in ``history_``.",
    },
    {
        "module": "sklearn_triplet.distances",
        "title": "Distances",
        "summary": "Pairwise distance matrices between embeddings, with stable gradients.",
    },
    {
        "module": "sklearn_triplet.metrics",
        "title": "Retrieval metrics",
        "summary": "Precision@1, R-precision and MAP@R of an embedding, and scorers for "
        ":class:`~sklearn.model_selection.GridSearchCV`.",
    },
    {
        "module": "sklearn_triplet.verification",
        "title": "Pair verification",
        "summary": "Labelled pairs, paired distances and a thresholded same / different "
        "classifier.",
    },
    {
        "module": "sklearn_triplet.plotting",
        "title": "Plotting",
        "summary": "Displays of an embedding and of a training history.",
    },
    {
        "module": "sklearn_triplet.chunking",
        "title": "Data larger than memory",
        "summary": "Embedding inputs too large to hold at once: chunked ``transform`` and dask "
        "arrays.",
    },
    {
        "module": "sklearn_triplet.backbones",
        "title": "Backbones",
        "summary": "The built-in networks and how a ``backbone`` parameter becomes a module.",
    },
    {
        "module": "sklearn_triplet.augment",
        "title": "Augmentation",
        "summary": "Random changes of training batches (``augment=``): jitter, scaling, window "
        "slicing and shifts for signals, crops and flips for images.",
    },
    {
        "module": "sklearn_triplet.sampling",
        "title": "Sampling",
        "summary": "Class-balanced batches of P classes x K samples.",
    },
]
