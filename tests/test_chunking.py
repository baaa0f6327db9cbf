"""Chunked transform of inputs larger than memory, and transform_dask."""

import re
import tracemalloc
import warnings

import numpy as np
import pytest

import sklearn_triplet._base
from sklearn_triplet import SiameseEmbedder, TripletEmbedder, _inference, chunking

BATCH = 32  # inference batch in the chunking tests; chunks are then BATCH rows


@pytest.fixture(scope="module")
def fitted(digits_module, tiny):
    X, y = digits_module
    return TripletEmbedder(**tiny).fit(X, y)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of one inference batch of BATCH rows, so that digits spans 57 of them."""
    monkeypatch.setattr(_inference, "INFERENCE_BATCH_SIZE", BATCH)
    monkeypatch.setattr(_inference, "CHUNK_BYTES", 1)


def _unchunked(est, X, monkeypatch):
    """transform through the former path: one validate_data call on the whole input."""
    with monkeypatch.context() as m:
        m.setattr(_inference, "CHUNK_BYTES", 2**62)
        return est.transform(X)


# -- chunked transform -----------------------------------------------------------------------------


def test_chunk_rows_are_whole_batches():
    assert _inference.chunk_rows(64, 4096) == 4096 * (_inference.CHUNK_BYTES // (64 * 4 * 4096))
    assert _inference.chunk_rows(10**7, 4096) == 4096
    assert _inference.chunk_rows(0, 32) % 32 == 0


@pytest.mark.parametrize(
    "make",
    [
        lambda X, tmp: X.astype(np.float32),
        lambda X, tmp: np.asfortranarray(X),
        lambda X, tmp: X.astype(np.int64),
        lambda X, tmp: _memmap(tmp / "X.f64", X.astype(np.float64)),
        lambda X, tmp: _memmap(tmp / "X.f32", X.astype(np.float32)),
    ],
    ids=["float32", "fortran", "int64", "memmap-float64", "memmap-float32"],
)
def test_chunked_transform_equals_unchunked(
    make, fitted, digits_module, small_chunks, monkeypatch, tmp_path
):
    X = make(digits_module[0], tmp_path)
    expected = _unchunked(fitted, X, monkeypatch)
    got = fitted.transform(X)
    assert got.dtype == np.float32 and got.shape == (X.shape[0], 4)
    np.testing.assert_array_equal(got, expected)


def test_chunked_transform_of_a_memmap_bounds_memory(fitted, monkeypatch, tmp_path):
    """The float64 file is never converted whole: numpy's allocations stay near one chunk."""
    monkeypatch.setattr(_inference, "INFERENCE_BATCH_SIZE", 512)
    monkeypatch.setattr(_inference, "CHUNK_BYTES", 512 * 64 * 4)  # 128 KiB chunks
    rng = np.random.default_rng(0)
    X = _memmap(tmp_path / "big.f64", rng.normal(size=(20_000, 64)))  # 10 MiB on disk
    output_bytes = 20_000 * 4 * 4

    def peak_of(transform):
        tracemalloc.start()
        try:
            transform(X)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    chunked = peak_of(fitted.transform)
    unchunked = peak_of(lambda X: _unchunked(fitted, X, monkeypatch))
    assert unchunked > X.nbytes // 2  # the former path holds a whole float32 copy
    assert chunked < output_bytes + 4 * 512 * 64 * 8


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (np.nan, "Input X contains NaN."),
        (np.inf, "Input X contains infinity or a value too large for dtype('float32')."),
        (1e300, "Input X contains infinity or a value too large for dtype('float32')."),
    ],
    ids=["nan", "inf", "overflow"],
)
@pytest.mark.parametrize("where", [0, -1], ids=["first-chunk", "last-chunk"])
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_non_finite_in_any_chunk_same_error(
    corrupt, message, where, fitted, digits_module, small_chunks, monkeypatch
):
    X = digits_module[0].copy()
    X[where, 5] = corrupt
    with pytest.raises(ValueError) as unchunked:
        _unchunked(fitted, X, monkeypatch)
    with pytest.raises(ValueError, match=re.escape(message)) as chunked:
        fitted.transform(X)
    assert str(chunked.value) == str(unchunked.value)


@pytest.mark.parametrize(
    "bad, error",
    [
        (lambda X: X[:, :10], ValueError),
        (lambda X: X.astype(complex), ValueError),
        (
            lambda X: np.where(np.arange(X.shape[0])[:, None] == 1000, "a", X.astype(str)),
            ValueError,
        ),
    ],
    ids=["n_features", "complex", "string"],
)
def test_other_input_errors_unchanged_when_chunked(
    bad, error, fitted, digits_module, small_chunks, monkeypatch
):
    X = bad(digits_module[0])
    with pytest.raises(error) as unchunked:
        _unchunked(fitted, X, monkeypatch)
    with pytest.raises(error) as chunked:
        fitted.transform(X)
    # The complex-data message goes on with the array's repr, which is the chunk's.
    assert str(chunked.value).splitlines()[0] == str(unchunked.value).splitlines()[0]


def test_wrong_number_of_features_message(fitted, digits_module, small_chunks):
    with pytest.raises(
        ValueError,
        match=re.escape(
            "X has 10 features, but TripletEmbedder is expecting 64 features as input."
        ),
    ):
        fitted.transform(digits_module[0][:, :10])


def test_chunked_dataframe_names_and_set_output(digits_module, small_chunks, monkeypatch, tiny):
    pd = pytest.importorskip("pandas")
    X, y = digits_module
    df = pd.DataFrame(X, columns=[f"px{i}" for i in range(64)], index=np.arange(X.shape[0]) * 3)
    est = SiameseEmbedder(**tiny).fit(df, y)
    np.testing.assert_array_equal(est.transform(df), _unchunked(est, df, monkeypatch))

    out = est.set_output(transform="pandas").transform(df)
    assert list(out.columns) == [f"siameseembedder{i}" for i in range(4)]
    assert out.index.equals(df.index)
    est.set_output(transform="default")

    with warnings.catch_warnings(record=True) as caught:  # checked once, not once per chunk
        warnings.simplefilter("always")
        est.transform(X)
    assert [str(w.message) for w in caught] == [
        "X does not have valid feature names, but SiameseEmbedder was fitted with feature names"
    ]
    renamed = df.rename(columns={"px0": "other"})
    with pytest.raises(
        ValueError, match="The feature names should match those that were passed during fit."
    ):
        est.transform(renamed)


class _RowsOnDisk:
    """A minimal h5py- or zarr-like dataset: shape, dtype and row slicing, never read whole."""

    def __init__(self, values):
        self._values, self.shape, self.dtype, self.ndim = values, values.shape, values.dtype, 2
        self.reads = []

    def __getitem__(self, key):
        self.reads.append(key)
        return np.array(self._values[key])

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("the whole dataset was read")


def test_chunked_transform_of_a_dataset_reads_row_slices(fitted, digits_module, small_chunks):
    X = digits_module[0]
    dataset = _RowsOnDisk(X)
    np.testing.assert_array_equal(fitted.transform(dataset), fitted.transform(X))
    assert dataset.reads == [slice(start, start + BATCH) for start in range(0, X.shape[0], BATCH)]


def test_small_and_unsliceable_inputs_take_the_whole_path(fitted, digits_module, monkeypatch):
    """Lists, sparse matrices and 1-D arrays are validated whole, with the former errors."""
    calls = []
    monkeypatch.setattr(sklearn_triplet._base, "check_array", lambda *a, **k: calls.append(1))
    X = digits_module[0]
    np.testing.assert_array_equal(fitted.transform(X[:50].tolist()), fitted.transform(X[:50]))
    with pytest.raises(TypeError, match="Sparse data was passed for X, but dense data is required"):
        from scipy import sparse

        fitted.transform(sparse.csr_matrix(X))
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array instead"):
        fitted.transform(X[0])
    assert calls == []


def _memmap(path, values):
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=values.dtype, shape=values.shape)
    mm[:] = values
    mm.flush()
    del mm
    return np.load(path, mmap_mode="r")


# -- dask arrays -----------------------------------------------------------------------------------


def test_transform_dask_is_lazy_and_equals_transform(fitted, digits_module):
    da = pytest.importorskip("dask.array")
    X = digits_module[0]
    darr = da.from_array(X, chunks=(500, 16))  # column blocks are merged before embedding
    emb = chunking.transform_dask(fitted, darr)
    assert emb.shape == (X.shape[0], 4) and emb.dtype == np.float32
    assert emb.chunks == ((500, 500, 500, 297), (4,))
    np.testing.assert_array_equal(emb.compute(scheduler="synchronous"), fitted.transform(X))


def test_transform_dask_errors(fitted, digits_module):
    da = pytest.importorskip("dask.array")
    X = digits_module[0]
    with pytest.raises(TypeError, match=re.escape("X must be a dask.array.Array; got ndarray.")):
        chunking.transform_dask(fitted, X)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "X has 10 features, but TripletEmbedder is expecting 64 features as input."
        ),
    ):
        chunking.transform_dask(fitted, da.from_array(X[:, :10]))
    with pytest.raises(
        ValueError,
        match=re.escape("X must be 2-D, of shape (n_samples, n_features); got shape (64,)."),
    ):
        chunking.transform_dask(fitted, da.from_array(X[0]))
    bad = X.copy()
    bad[1500, 3] = np.nan
    with pytest.raises(ValueError, match=re.escape("Input X contains NaN.")):
        chunking.transform_dask(fitted, da.from_array(bad, chunks=500)).compute(
            scheduler="synchronous"
        )
