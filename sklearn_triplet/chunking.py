"""Embedding data larger than memory.

The embedders' ``transform`` validates and converts a large input one chunk of rows at a time (about
16 MiB of float32, in whole inference batches): a :class:`numpy.memmap` of any dtype, a pandas
DataFrame, or another 2-D array that slices by rows (h5py, zarr) is never copied whole into memory,
and memory beyond the output stays that of one chunk. :func:`transform_dask` embeds a dask array
lazily, block by block, on a cluster or out of core, so that the output need not fit in memory
either; it uses the estimator through its public API only (``transform``,
``get_feature_names_out`` and ``n_features_in_``), so any fitted scikit-learn transformer works.
"""

import numpy as np

__all__ = ["transform_dask"]


def transform_dask(estimator, X):
    """Embed a dask array lazily, one block of rows per task.

    Each block goes through the estimator's ``transform`` (validation included), on the dask workers
    when a :class:`distributed.Client` is active. Memory per task is that of one block, so arrays
    larger than memory (from :func:`dask.array.from_zarr`, or HDF5 through
    :func:`dask.array.from_array`) can be embedded and written out with
    :meth:`dask.array.Array.to_zarr` or :func:`dask.array.store`. (``from_array`` copies a
    :class:`numpy.memmap` into memory whole: give a memory map to ``transform`` instead.)

    Parameters
    ----------
    estimator : TripletEmbedder or SiameseEmbedder
        A fitted embedder. It travels once to each worker.
    X : dask.array.Array of shape (n_samples, n_features)
        Samples to embed. Column blocks are merged first, so each task sees whole rows.

    Returns
    -------
    embeddings : dask.array.Array of shape (n_samples, n_components), float32
        Row blocks as in ``X``; nothing is computed until asked.

    Examples
    --------
    >>> import dask.array as da
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_triplet import TripletEmbedder
    >>> from sklearn_triplet.chunking import transform_dask
    >>> X, y = load_digits(return_X_y=True)
    >>> est = TripletEmbedder(n_components=8, max_iter=2, do_no_harm=False, random_state=0)
    >>> est = est.fit(X, y)
    >>> emb = transform_dask(est, da.from_array(X, chunks=500))
    >>> emb
    dask.array<..., shape=(1797, 8), dtype=float32, chunksize=(500, 8), chunktype=numpy.ndarray>
    >>> bool((emb.compute() == est.transform(X)).all())
    True
    """
    import dask.array as da
    from dask.delayed import delayed

    n_components = len(estimator.get_feature_names_out())  # raises NotFittedError when unfitted
    if not isinstance(X, da.Array):
        raise TypeError(f"X must be a dask.array.Array; got {type(X).__name__}.")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, of shape (n_samples, n_features); got shape {X.shape}.")
    if X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
    # (dask has no annotations: a checker reads its parameters' types from their defaults)
    X = X.rechunk({1: -1})  # pyright: ignore[reportArgumentType]
    return da.map_blocks(
        _transform_block,
        X,
        delayed(estimator, pure=True),
        dtype=np.float32,
        chunks=(X.chunks[0], (n_components,)),
        meta=np.empty((0, n_components), dtype=np.float32),
    )


def _transform_block(block, estimator):
    return estimator.transform(block)
