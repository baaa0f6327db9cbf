"""Embedding data larger than memory.

The embedders' ``transform`` validates and converts a large input one chunk of rows at a time (about
16 MiB of float32, in whole inference batches): a :class:`numpy.memmap` of any dtype, a pandas
DataFrame, or another 2-D array that slices by rows (h5py, zarr) is never copied whole into memory,
and memory beyond the output stays that of one chunk. :func:`transform_dask` embeds a dask array
lazily, block by block, on a cluster or out of core, so that the output need not fit in memory
either.
"""

from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from . import _training

__all__ = ["transform_dask"]

# float32 bytes of one validated chunk of rows (rounded to whole inference batches).
_CHUNK_BYTES = 16 * 2**20


def _chunk_rows(n_features, batch_size):
    """Rows per validated chunk: whole inference batches, about ``_CHUNK_BYTES`` of float32.

    Parameters
    ----------
    n_features : int
        Columns of the input.
    batch_size : int
        Rows per forward pass; a chunk holds at least one batch.

    Returns
    -------
    n_rows : int
        A positive multiple of ``batch_size``.

    Examples
    --------
    >>> from sklearn_triplet.chunking import _chunk_rows
    >>> _chunk_rows(64, 4096)  # 64 features: 16 batches of 4096 rows, 16 MiB
    65536
    >>> _chunk_rows(100_000, 4096)  # very wide rows: one batch per chunk
    4096
    """
    row_bytes = 4 * max(int(n_features), 1)
    return batch_size * max(1, _CHUNK_BYTES // (row_bytes * batch_size))


def _embed_in_chunks(estimator, X, *, batch_size):
    """Validate and embed ``X`` chunk by chunk with a fitted embedder's network.

    Inputs of at most one chunk of rows, and inputs that are not sliced by rows (lists, sparse
    matrices, 1-D arrays...), are validated whole by scikit-learn's ``validate_data``, as before
    chunking existed. Longer inputs have their first chunk validated by ``validate_data`` (feature
    names, number of features, dtype, finiteness) and each later chunk by
    :func:`~sklearn.utils.check_array`, with the same error messages. Memory beyond the output is
    that of one float32 chunk; the embeddings are those of an unchunked pass, as the chunks are
    whole inference batches.

    Parameters
    ----------
    estimator : TripletEmbedder or SiameseEmbedder
        A fitted embedder.
    X : array-like of shape (n_samples, n_features)
        Samples to embed, of any dtype that converts to float32.
    batch_size : int
        Rows per forward pass.

    Returns
    -------
    embeddings : ndarray of shape (n_samples, n_components), float32
    """
    rows = _row_slicer(X)
    n_samples, n_features = X.shape if rows is not None else (0, 0)
    step = _chunk_rows(n_features, batch_size)

    def embed(Xc):
        # A read-only chunk (of a memory map opened with mode "r") would make torch warn that it
        # cannot write to it; a chunk-sized copy avoids that.
        Xc = Xc if Xc.flags.writeable else Xc.copy()
        return _training.embed(
            estimator.module_, Xc, batch_size=batch_size, device=estimator.device_
        )

    if rows is None or n_samples <= step or n_features == 0:
        return embed(validate_data(estimator, X, reset=False, dtype=np.float32))
    first = validate_data(estimator, rows(0, step), reset=False, dtype=np.float32)
    out = np.empty((n_samples, estimator.n_components_), dtype=np.float32)
    out[:step] = embed(first)
    del first
    for start in range(step, n_samples, step):
        chunk = check_array(
            rows(start, start + step), dtype=np.float32, input_name="X", estimator=estimator
        )
        out[start : start + chunk.shape[0]] = embed(chunk)
    return out


def _row_slicer(X):
    """``slicer(start, stop)`` returning rows of a 2-D ``X``, or None when ``X`` is not sliced."""
    shape = getattr(X, "shape", None)
    if (
        sp.issparse(X)
        or not isinstance(shape, tuple)
        or len(shape) != 2
        or not all(isinstance(n, Integral) for n in shape)  # a dask array of unknown length
    ):
        return None
    if hasattr(X, "iloc") and hasattr(X, "columns"):  # pandas DataFrame
        return lambda start, stop: X.iloc[start:stop]
    if isinstance(X, np.ndarray) or (
        # h5py, zarr, dask... arrays; not other data frames, whose rows slice differently
        hasattr(X, "__array__") and hasattr(X, "__getitem__") and not hasattr(X, "columns")
    ):
        return lambda start, stop: X[start:stop]
    return None


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
    >>> est = TripletEmbedder(n_components=8, max_iter=2, random_state=0).fit(X, y)
    >>> emb = transform_dask(est, da.from_array(X, chunks=500))
    >>> emb
    dask.array<..., shape=(1797, 8), dtype=float32, chunksize=(500, 8), chunktype=numpy.ndarray>
    >>> bool((emb.compute() == est.transform(X)).all())
    True
    """
    import dask
    import dask.array as da

    check_is_fitted(estimator)
    if not isinstance(X, da.Array):
        raise TypeError(f"X must be a dask.array.Array; got {type(X).__name__}.")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, of shape (n_samples, n_features); got shape {X.shape}.")
    if X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
    X = X.rechunk({1: -1})
    n_components = estimator.n_components_
    return da.map_blocks(
        _transform_block,
        X,
        dask.delayed(estimator, pure=True),
        dtype=np.float32,
        chunks=(X.chunks[0], (n_components,)),
        meta=np.empty((0, n_components), dtype=np.float32),
    )


def _transform_block(block, estimator):
    return estimator.transform(block)
