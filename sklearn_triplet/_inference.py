"""Inference: embedding arrays with a trained network, in batches and in chunks of rows.

The embedders' ``transform`` (and the validation score during training) come here. A large input
(a :class:`numpy.memmap` of any dtype, a pandas DataFrame, or another 2-D array that slices by rows,
such as h5py or zarr) is validated and converted to float32 one chunk of rows at a time, about
``CHUNK_BYTES`` of float32 in whole inference batches, so memory beyond the output stays that of one
chunk; the embeddings are those of an unchunked pass.
"""

from numbers import Integral

import numpy as np
import scipy.sparse as sp
import torch

# Rows per forward pass at transform time.
INFERENCE_BATCH_SIZE = 4096
# float32 bytes of one validated chunk of rows (rounded to whole inference batches).
CHUNK_BYTES = 16 * 2**20


def embed(module, X, *, batch_size, device):
    """Embed a float32 array in batches under inference mode.

    Parameters
    ----------
    module : torch.nn.Module
        The network (its final normalisation included), already on ``device``.
    X : ndarray of shape (n_samples, n_features)
        float32 input.
    batch_size : int
        Rows per forward pass.
    device : torch.device

    Returns
    -------
    embeddings : ndarray of shape (n_samples, n_components), float32
    """
    module.eval()
    chunks = []
    with torch.inference_mode():
        for start in range(0, X.shape[0], batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(X[start : start + batch_size])).to(device)
            chunks.append(module(xb).float().cpu().numpy())
    if not chunks:
        return np.empty((0, 0), dtype=np.float32)
    return np.concatenate(chunks)


def embed_in_chunks(X, *, embed_chunk, validate, check, n_components, batch_size):
    """Validate and embed ``X`` chunk by chunk.

    Inputs of at most one chunk of rows, and inputs that are not sliced by rows (lists, sparse
    matrices, 1-D arrays...), are validated whole by ``validate``. Longer inputs have their first
    chunk validated by ``validate`` (feature names, number of features, dtype, finiteness) and each
    later chunk by ``check``, with the same error messages.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Samples to embed, of any dtype that converts to float32.
    embed_chunk : callable
        ``embed_chunk(X) -> ndarray (n_rows, n_components)`` for a validated float32 array.
    validate : callable
        ``validate(X) -> float32 ndarray``: scikit-learn's ``validate_data`` with the estimator.
    check : callable
        ``check(X) -> float32 ndarray``: scikit-learn's ``check_array`` for the later chunks.
    n_components : int
        Width of the output.
    batch_size : int
        Rows per forward pass; a chunk is whole batches.

    Returns
    -------
    embeddings : ndarray of shape (n_samples, n_components), float32
    """
    rows = row_slicer(X)
    n_samples, n_features = X.shape if rows is not None else (0, 0)
    step = chunk_rows(n_features, batch_size)

    def writable(Xc):
        # A read-only chunk (of a memory map opened with mode "r") would make torch warn that it
        # cannot write to it; a chunk-sized copy avoids that.
        return Xc if Xc.flags.writeable else Xc.copy()

    if rows is None or n_samples <= step or n_features == 0:
        return embed_chunk(writable(validate(X)))
    out = np.empty((n_samples, n_components), dtype=np.float32)
    out[:step] = embed_chunk(writable(validate(rows(0, step))))
    for start in range(step, n_samples, step):
        chunk = check(rows(start, start + step))
        out[start : start + chunk.shape[0]] = embed_chunk(writable(chunk))
    return out


def chunk_rows(n_features, batch_size):
    """Rows per validated chunk: whole inference batches, about ``CHUNK_BYTES`` of float32.

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
    >>> from sklearn_triplet._inference import chunk_rows
    >>> chunk_rows(64, 4096)  # 64 features: 16 batches of 4096 rows, 16 MiB
    65536
    >>> chunk_rows(100_000, 4096)  # very wide rows: one batch per chunk
    4096
    """
    row_bytes = 4 * max(int(n_features), 1)
    return batch_size * max(1, CHUNK_BYTES // (row_bytes * batch_size))


def row_slicer(X):
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
