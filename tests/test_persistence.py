"""Persistence: save / load (safetensors + JSON, no code run at load) and ONNX export."""

import json
import os
import re
import sys
import warnings

import joblib
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_triplet import SiameseEmbedder, TripletEmbedder, _format, load
from sklearn_triplet.losses import triplet_loss

ESTIMATORS = [TripletEmbedder, SiameseEmbedder]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# Module-level backbone, loss and callback: save() stores them by import path.
class Net(torch.nn.Module):
    def __init__(self, n_features, n_components, width=16):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n_features, width),
            torch.nn.ReLU(),
            torch.nn.Linear(width, n_components),
        )

    def forward(self, x):
        return self.net(x)


def batch_hard_loss(embeddings, labels):
    return triplet_loss(embeddings, labels, margin=0.3, mining="hard")


def stop_never(estimator, epoch, logs):
    return False


def path_of(obj):
    return f"{obj.__module__}.{obj.__qualname__}"


def assert_same_fit(loaded, est, X):
    assert type(loaded) is type(est)
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))
    np.testing.assert_equal(loaded.history_, est.history_)  # NaN-aware
    for name in ("n_iter_", "n_components_", "n_features_in_", "device_"):
        assert getattr(loaded, name) == getattr(est, name), name


# -- save / load round trips -----------------------------------------------------------------------


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_save_load_round_trip(Estimator, digits_300, tmp_path, fast):
    X, y = digits_300
    est = Estimator(**fast).fit(X, y)
    est.save(tmp_path / "est.safetensors")
    loaded = load(tmp_path / "est.safetensors")
    assert_same_fit(loaded, est, X)
    assert loaded.get_params() == est.get_params()
    assert not loaded.module_.training


@pytest.mark.parametrize(
    "params",
    [
        {"backbone": "cnn", "backbone_params": {"input_shape": (1, 8, 8), "channels": (4,)}},
        {"backbone": "linear", "normalize": False, "metric": "cosine", "mining": "hard"},
        {"backbone_params": {"activation": "tanh"}, "hidden_layer_sizes": (16, 8)},
        {"early_stopping": True, "validation_fraction": 0.2},  # NaN-free float history columns
        {"random_state": np.random.RandomState(3)},
    ],
    ids=["cnn", "linear-cosine", "mlp-tanh", "early-stopping", "RandomState"],
)
def test_save_load_round_trip_of_parameters(params, digits_300, tmp_path, fast):
    X, y = digits_300
    est = TripletEmbedder(**{**fast, **params}).fit(X, y)
    est.save(tmp_path / "est.safetensors")
    loaded = load(tmp_path / "est.safetensors")
    assert_same_fit(loaded, est, X)
    for name, value in est.get_params().items():
        if isinstance(value, np.random.RandomState):
            np.testing.assert_equal(
                loaded.get_params()[name].get_state(), value.get_state(), err_msg=name
            )
        else:
            assert loaded.get_params()[name] == value and type(loaded.get_params()[name]) is type(
                value
            ), name


def test_feature_names_and_output_config_survive(digits_300, tmp_path, fast):
    pd = pytest.importorskip("pandas")
    X, y = digits_300
    df = pd.DataFrame(X, columns=[f"pixel_{i}" for i in range(64)])
    est = TripletEmbedder(**fast).fit(df, y).set_output(transform="pandas")
    est.save(tmp_path / "est.safetensors")
    loaded = load(tmp_path / "est.safetensors")
    assert loaded.feature_names_in_.dtype == object
    np.testing.assert_array_equal(loaded.feature_names_in_, est.feature_names_in_)
    out = loaded.transform(df)
    assert isinstance(out, pd.DataFrame)
    pd.testing.assert_frame_equal(out, est.transform(df))


def test_non_finite_history_values_survive(digits_300, tmp_path, fast):
    X, y = digits_300
    est = TripletEmbedder(**fast).fit(X, y)
    # A fraction is NaN when an epoch held no triplet; the JSON stays strict.
    est.history_[-1].update(easy_fraction=float("nan"), a=float("inf"), b=-float("inf"))
    est.save(tmp_path / "est.safetensors")
    document, _ = _format.read_file(tmp_path / "est.safetensors")
    json.dumps(document, allow_nan=False)
    last = load(tmp_path / "est.safetensors").history_[-1]
    assert np.isnan(last["easy_fraction"]) and last["a"] == np.inf and last["b"] == -np.inf
    np.testing.assert_equal(load(tmp_path / "est.safetensors").history_, est.history_)


def test_unfitted_estimator_saves_its_parameters(tmp_path):
    est = SiameseEmbedder(margin=0.7, hidden_layer_sizes=(10, 5), device="cpu")
    est.save(tmp_path / "est.safetensors")
    loaded = load(tmp_path / "est.safetensors")
    assert isinstance(loaded, SiameseEmbedder) and loaded.get_params() == est.get_params()
    # A path-like parameter comes back as a str.
    est.set_params(checkpoint=tmp_path / "fit.ckpt").save(tmp_path / "est.safetensors")
    assert load(tmp_path / "est.safetensors").checkpoint == str(tmp_path / "fit.ckpt")
    with pytest.raises(NotFittedError):
        loaded.transform(np.zeros((1, 4)))


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_warm_start_after_load_continues_as_the_original(Estimator, digits_300, tmp_path, fast):
    X, y = digits_300
    est = Estimator(**fast).fit(X, y)
    est.save(tmp_path / "est.safetensors")
    loaded = load(tmp_path / "est.safetensors")
    # The optimiser's moments and the sampler's generator carried over: the same weights after
    # more epochs.
    for model in (est, loaded):
        model.set_params(warm_start=True, max_iter=2).fit(X, y)
    for (name, a), b in zip(est.module_.state_dict().items(), loaded.module_.state_dict().values()):
        assert torch.equal(a, b), name
    assert loaded.n_iter_ == est.n_iter_ == fast["max_iter"] + 2


def test_load_leaves_global_random_state_alone(digits_300, tmp_path, fast):
    X, y = digits_300
    TripletEmbedder(**fast).fit(X, y).save(tmp_path / "est.safetensors")
    np.random.seed(0)
    torch.manual_seed(0)
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    load(tmp_path / "est.safetensors")
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_overwriting_a_file_replaces_it_whole(digits_300, tmp_path, fast):
    X, y = digits_300
    path = tmp_path / "est.safetensors"
    TripletEmbedder(**fast).fit(X, y).save(path)
    second = SiameseEmbedder(**fast).fit(X, y)
    second.save(str(path))  # a str path works too
    assert isinstance(load(str(path)), SiameseEmbedder)
    assert os.listdir(tmp_path) == ["est.safetensors"]  # no temporary file left behind


def test_a_failed_write_leaves_the_previous_file(digits_300, tmp_path, monkeypatch, fast):
    X, y = digits_300
    path = tmp_path / "est.safetensors"
    first = TripletEmbedder(**fast).fit(X, y)
    first.save(path)
    before = path.read_bytes()

    def write_half_then_fail(tensors, filename, metadata):
        with open(filename, "wb") as f:
            f.write(before[: len(before) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(_format, "save_file", write_half_then_fail)
    with pytest.raises(OSError, match="No space left on device"):
        SiameseEmbedder(**fast).fit(X, y).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["est.safetensors"]


# -- user code: stored by import path, loaded only when trusted ------------------------------------


def test_user_backbone_loss_and_callback_load_when_trusted(digits_300, tmp_path, fast):
    X, y = digits_300
    est = TripletEmbedder(
        **fast,
        backbone=Net,
        backbone_params={"width": 8},
        loss=batch_hard_loss,
        callback=stop_never,
    ).fit(X, y)
    est.save(tmp_path / "est.safetensors")
    names = sorted([path_of(Net), path_of(batch_hard_loss), path_of(stop_never)])
    message = (
        f"Cannot load {str(tmp_path / 'est.safetensors')!r}: it names {names}, which are not "
        "trusted. Loading would import and run their code. If you trust whoever wrote the file, "
        f"pass them: load({str(tmp_path / 'est.safetensors')!r}, trusted={names})."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load(tmp_path / "est.safetensors")
    with pytest.raises(ValueError, match=re.escape(f"it names {names[:2]}, which are not trusted")):
        load(tmp_path / "est.safetensors", trusted=names[2:])
    loaded = load(tmp_path / "est.safetensors", trusted=names)
    assert loaded.backbone is Net and loaded.loss is batch_hard_loss
    assert loaded.callback is stop_never
    assert_same_fit(loaded, est, X)


def test_builtin_backbone_factories_and_losses_need_no_trust(digits_300, tmp_path, fast):
    from sklearn_triplet.backbones import make_linear

    X, y = digits_300
    est = TripletEmbedder(**fast, backbone=make_linear, loss=triplet_loss).fit(X, y)
    est.save(tmp_path / "est.safetensors")
    doc, _ = _format.read_file(tmp_path / "est.safetensors")
    assert doc["params"]["backbone"] == {
        "__import__": {"module": "sklearn_triplet.backbones", "name": "make_linear"}
    }
    assert doc["params"]["loss"] == {
        "__import__": {"module": "sklearn_triplet.losses", "name": "triplet_loss"}
    }
    loaded = load(tmp_path / "est.safetensors")
    assert loaded.backbone is make_linear and loaded.loss is triplet_loss


def test_a_class_is_stored_under_its_shortest_import_path(digits_300, tmp_path, fast):
    X, y = digits_300
    TripletEmbedder(**fast, backbone=torch.nn.Linear).fit(X, y).save(tmp_path / "est.safetensors")
    doc, _ = _format.read_file(tmp_path / "est.safetensors")
    assert doc["params"]["backbone"] == {"__import__": {"module": "torch.nn", "name": "Linear"}}
    assert doc["estimator"] == {
        "__import__": {"module": "sklearn_triplet", "name": "TripletEmbedder"}
    }
    loaded = load(tmp_path / "est.safetensors", trusted=["torch.nn.Linear"])
    assert loaded.backbone is torch.nn.Linear


def rewrite(path, edit):
    """Apply ``edit(document)`` to a saved file, checksum recomputed: a crafted file."""
    document, tensors = _format.read_file(path)
    edit(document)
    _format.write_file(path, document, tensors)


@pytest.fixture
def booby_trapped_module(tmp_path, monkeypatch):
    """A module that leaves a mark and raises when imported; its name is returned."""
    name = "booby_trap_" + os.urandom(4).hex()
    (tmp_path / f"{name}.py").write_text(
        "import pathlib\n"
        "pathlib.Path(__file__).with_suffix('.imported').touch()\n"
        "raise RuntimeError('this module must never be imported')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


@pytest.mark.parametrize("where", ["backbone", "loss", "callback", "estimator"])
def test_untrusted_import_is_refused_without_importing_it(
    where, booby_trapped_module, digits_300, tmp_path, fast
):
    X, y = digits_300
    path = tmp_path / "est.safetensors"
    TripletEmbedder(**fast).fit(X, y).save(path)
    trap = {"__import__": {"module": booby_trapped_module, "name": "Net"}}

    def plant(document):
        if where == "estimator":
            document["estimator"] = trap
        else:
            document["params"][where] = trap

    rewrite(path, plant)
    message = (
        f"Cannot load {str(path)!r}: it names ['{booby_trapped_module}.Net'], which is not "
        "trusted. Loading would import and run their code."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load(path)
    assert booby_trapped_module not in sys.modules
    assert not (tmp_path / f"{booby_trapped_module}.imported").exists()
    # Only the trust check stood in the way: trusting the path imports the module.
    with pytest.raises(RuntimeError, match="this module must never be imported"):
        load(path, trusted=[f"{booby_trapped_module}.Net"])
    assert (tmp_path / f"{booby_trapped_module}.imported").exists()


def test_trusted_estimator_class_must_be_an_embedder(digits_300, tmp_path, fast):
    X, y = digits_300
    path = tmp_path / "est.safetensors"
    TripletEmbedder(**fast).fit(X, y).save(path)
    rewrite(path, lambda d: d.update(estimator={"__import__": {"module": "os", "name": "system"}}))
    with pytest.raises(
        ValueError, match=re.escape("is not an sklearn-triplet estimator")
    ) as excinfo:
        load(path, trusted=["os.system"])
    assert "<built-in function system>" in str(excinfo.value)


@pytest.mark.parametrize(
    "trusted", ["mymodule.MyNet", ["mymodule.MyNet", Net]], ids=["a-string", "not-strings"]
)
def test_trusted_must_be_a_list_of_strings(trusted, tmp_path):
    message = (
        f"trusted must be a list of import paths such as ['mypackage.MyNet']; got {trusted!r}."
    )
    with pytest.raises(TypeError, match=re.escape(message)):
        load(tmp_path / "missing.safetensors", trusted=trusted)


def _local_factory():
    def factory(n_features, n_components):
        return torch.nn.Linear(n_features, n_components)

    return factory


class CallableLoss:
    def __call__(self, embeddings, labels):
        return triplet_loss(embeddings, labels)


@pytest.mark.parametrize(
    "params, message",
    [
        (
            {"loss": lambda e, labels: e.sum()},
            "save() cannot store loss=<function",
        ),
        (
            {"backbone": _local_factory()},
            "save() cannot store backbone=<function _local_factory.<locals>.factory",
        ),
        (
            {"loss": CallableLoss()},
            f"save() cannot store loss=<{CallableLoss.__module__}.CallableLoss object",
        ),
        (
            {"backbone": Net(64, 8)},
            (
                "save() cannot store backbone=Net(...), a module instance: the network is rebuilt "
                "from the parameters at load time. Pass the class or a factory instead, with its "
                "arguments in backbone_params (backbone=Net, backbone_params={...}), or use "
                "pickle or joblib."
            ),
        ),
    ],
    ids=["lambda", "local-function", "callable-object", "module-instance"],
)
def test_save_refuses_what_it_cannot_store_by_name(params, message, tmp_path, fast):
    est = TripletEmbedder(**{**fast, "max_iter": 1, **params})
    with pytest.raises(TypeError, match=re.escape(message)):
        est.save(tmp_path / "est.safetensors")
    assert not (tmp_path / "est.safetensors").exists()


def test_save_refusal_messages_say_what_to_do(tmp_path):
    est = TripletEmbedder(loss=lambda e, labels: e.sum())
    with pytest.raises(TypeError) as excinfo:
        est.save(tmp_path / "est.safetensors")
    assert str(excinfo.value).endswith(
        ": a lambda or a function defined inside another function cannot be imported by name. "
        "Define it at the top level of a module, or use pickle or joblib."
    )
    est = TripletEmbedder(loss=CallableLoss())
    with pytest.raises(TypeError) as excinfo:
        est.save(tmp_path / "est.safetensors")
    assert str(excinfo.value).endswith(
        ": it is an object, and save() stores functions and classes by their import path only. "
        "Pass a function or a class, or use pickle or joblib (which run code when loading)."
    )


# -- damaged, foreign and future files -------------------------------------------------------------


@pytest.fixture
def saved(digits_300, tmp_path, fast):
    X, y = digits_300
    path = tmp_path / "est.safetensors"
    TripletEmbedder(**fast).fit(X, y).save(path)
    return path


@pytest.mark.parametrize("keep", [0, 5, 8, 100, 0.5, -1], ids=lambda k: f"keep={k}")
def test_truncated_file_gets_a_clear_error(keep, saved):
    data = saved.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    saved.write_bytes(data[:n])
    message = (
        f"Cannot load {str(saved)!r}: the file is truncated, corrupted or not a safetensors file ("
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load(saved)


def test_flipped_byte_in_the_weights_is_detected(saved):
    data = bytearray(saved.read_bytes())
    data[-3] ^= 0xFF  # in the last tensor's bytes
    saved.write_bytes(bytes(data))
    message = (
        f"Cannot load {str(saved)!r}: the file is corrupted (its SHA-256 checksum does not "
        "match its contents)."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load(saved)


def test_a_flipped_bit_anywhere_is_a_clear_error(saved, tmp_path):
    data = saved.read_bytes()
    header = int.from_bytes(data[:8], "little")
    rng = np.random.default_rng(0)
    positions = [
        *range(8),  # the length of the header
        *rng.integers(8, 8 + header, 60),  # the header: tensor offsets and the JSON document
        *rng.integers(8 + header, len(data), 30),  # the tensors' bytes
        data.index(b'"format_version":"1"') + len(b'"format_version":"'),  # "1" becomes "0"
    ]
    damaged = tmp_path / "damaged.safetensors"
    for position in positions:
        flipped = bytearray(data)
        flipped[position] ^= 0x01
        damaged.write_bytes(bytes(flipped))
        with pytest.raises(ValueError, match=re.escape(f"Cannot load {str(damaged)!r}: ")):
            load(damaged)


def test_changed_character_in_the_document_is_detected(saved):
    data = saved.read_bytes()
    assert data.count(b'margin\\":0.5') == 1  # the document is a JSON string in the header
    saved.write_bytes(data.replace(b'margin\\":0.5', b'margin\\":0.3'))
    with pytest.raises(ValueError, match=re.escape("the file is corrupted (its SHA-256 checksum")):
        load(saved)


def test_pickle_file_gets_a_hint(digits_300, tmp_path, fast):
    X, y = digits_300
    joblib.dump(TripletEmbedder(**fast).fit(X, y), tmp_path / "est.joblib")
    with pytest.raises(ValueError, match=re.escape("It looks like a pickle, joblib or torch.save")):
        load(tmp_path / "est.joblib")


def test_foreign_safetensors_file(tmp_path):
    save_file({"weight": torch.zeros(2, 2)}, tmp_path / "model.safetensors")
    message = (
        f"Cannot load {str(tmp_path / 'model.safetensors')!r}: it is a safetensors file, but not "
        "one written by save() of sklearn-triplet (its metadata lacks format='sklearn-triplet')."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load(tmp_path / "model.safetensors")


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.safetensors")


def test_paths_that_are_not_files(tmp_path):
    est = TripletEmbedder()
    missing = tmp_path / "missing" / "est.safetensors"
    message = (
        f"Cannot save to {str(missing)!r}: the directory {str(missing.parent)!r} does not exist."
    )
    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        est.save(missing)
    with pytest.raises(
        IsADirectoryError, match=re.escape(f"Cannot save to {str(tmp_path)!r}: it is")
    ):
        est.save(tmp_path)
    with pytest.raises(IsADirectoryError, match=re.escape(f"Cannot load {str(tmp_path)!r}: it is")):
        load(tmp_path)
    assert os.listdir(tmp_path) == []


def test_newer_format_version_asks_for_an_upgrade(saved, monkeypatch):
    document, tensors = _format.read_file(saved)
    monkeypatch.setattr(_format, "FORMAT_VERSION", _format.FORMAT_VERSION + 1)
    _format.write_file(saved, document, tensors)
    monkeypatch.undo()
    from sklearn_triplet import __version__

    message = (
        f"Cannot load {str(saved)!r}: it was written in format version "
        f"{_format.FORMAT_VERSION + 1}, and sklearn-triplet {__version__} reads format "
        f"versions up to {_format.FORMAT_VERSION}. Upgrade sklearn-triplet "
        "(pip install -U sklearn-triplet)."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load(saved)


def test_unknown_parameter_names_the_versions(saved):
    rewrite(saved, lambda d: d["params"].update(temperature=0.5))
    rewrite(saved, lambda d: d.update(sklearn_triplet_version="9.0"))
    from sklearn_triplet import __version__

    message = (
        f"Cannot load {str(saved)!r}: it sets parameters ['temperature'] that TripletEmbedder "
        f"does not have in sklearn-triplet {__version__} (the file was written by "
        "sklearn-triplet 9.0)."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load(saved)


def test_invalid_parameter_value_is_reported(saved):
    rewrite(saved, lambda d: d["params"].update(margin=-1.0))
    with pytest.raises(ValueError, match=re.escape(f"Cannot load {str(saved)!r}: The 'margin'")):
        load(saved)


def test_weights_that_do_not_fit_the_network(saved):
    rewrite(saved, lambda d: d["params"].update(hidden_layer_sizes={"__tuple__": [33]}))
    message = (
        f"Cannot load {str(saved)!r}: its weights do not fit the network its parameters describe: "
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load(saved)


@pytest.mark.parametrize(
    "node, problem",
    [
        ({"__eval__": "print(1)"}, "unknown entry ['__eval__'] in its document."),
        ({"__tensor__": "nothing"}, "the tensor 'nothing' is missing."),
        (
            {"__generator__": {"bit_generator": "Evil"}},
            "unknown NumPy bit generator 'Evil'; expected one of",
        ),
        ({"__array__": {"dtype": "object"}}, "malformed __array__ entry"),
        ({"__import__": "os.system"}, "an import in an unknown form, 'os.system'."),
    ],
    ids=["unknown-tag", "missing-tensor", "bit-generator", "malformed", "import-form"],
)
def test_malformed_documents_are_refused(node, problem, saved):
    rewrite(saved, lambda d: d["params"].update(backbone_params={"x": node}))
    with pytest.raises(ValueError, match=re.escape(f"Cannot load {str(saved)!r}: {problem}")):
        load(saved)


def test_the_document_is_strict_json(saved):
    document, tensors = _format.read_file(saved)
    json.dumps(document, allow_nan=False)  # no NaN or Infinity literals
    assert all(t.device.type == "cpu" for t in tensors.values())


# -- devices -----------------------------------------------------------------------------


def _fake_gpu_trained(estimator):
    """Make a CPU-fitted estimator look as if it had been trained with device='cuda'."""
    estimator.device = "cuda"
    estimator.device_ = torch.device("cuda")
    return estimator


@pytest.mark.skipif(torch.cuda.is_available(), reason="fakes a machine without CUDA")
@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_gpu_trained_estimator_loads_on_a_cpu_machine(Estimator, digits_300, tmp_path, fast):
    X, y = digits_300
    est = Estimator(**fast).fit(X, y)
    expected = est.transform(X)
    _fake_gpu_trained(est).save(tmp_path / "est.safetensors")
    message = "saved with device='cuda', which is not available here; it was loaded on the CPU"
    with pytest.warns(UserWarning, match=re.escape(message)):
        loaded = load(tmp_path / "est.safetensors")
    assert loaded.device_ == torch.device("cpu")
    np.testing.assert_array_equal(loaded.transform(X), expected)


@needs_cuda
@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_saved_on_a_gpu_loads_on_either_device(device, digits_300, tmp_path, fast):
    X, y = digits_300
    est = TripletEmbedder(**fast, device="cuda").fit(X, y)
    est.save(tmp_path / "est.safetensors")
    _, tensors = _format.read_file(tmp_path / "est.safetensors")
    assert all(t.device.type == "cpu" for t in tensors.values())
    rewrite(tmp_path / "est.safetensors", lambda d: d["params"].update(device=device))
    loaded = load(tmp_path / "est.safetensors")
    assert next(loaded.module_.parameters()).device.type == device
    np.testing.assert_allclose(loaded.transform(X), est.transform(X), rtol=1e-5, atol=1e-6)


# -- a pipeline: skops for the rest, save() for the embedder ---------------------------------------


def test_pipeline_with_skops_for_the_other_steps(digits_300, tmp_path, fast):
    sio = pytest.importorskip("skops.io")
    X, y = digits_300
    pipe = make_pipeline(StandardScaler(), TripletEmbedder(**fast), KNeighborsClassifier())
    pipe.fit(X, y)
    name, embedder = pipe.steps[1]
    embedder.save(tmp_path / "embedder.safetensors")
    rest = Pipeline(pipe.steps[:1] + [(name, "passthrough")] + pipe.steps[2:])
    sio.dump(rest, tmp_path / "rest.skops")

    # skops asks to trust some of scikit-learn's own types (the KNN's KD-tree), nothing else.
    untrusted = sio.get_untrusted_types(file=tmp_path / "rest.skops")
    assert all(name.startswith("sklearn.") for name in untrusted), untrusted
    loaded = sio.load(tmp_path / "rest.skops", trusted=untrusted)
    loaded.set_params(**{name: load(tmp_path / "embedder.safetensors")})
    np.testing.assert_array_equal(loaded.predict(X), pipe.predict(X))


# -- ONNX ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"backbone": "cnn", "backbone_params": {"input_shape": (1, 8, 8), "channels": (4,)}},
    ],
    ids=["mlp", "cnn"],
)
def test_onnx_export_matches_transform(params, digits_300, tmp_path, fast):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    X, y = digits_300
    est = TripletEmbedder(**{**fast, **params}).fit(X, y)
    est.export_onnx(tmp_path / "est.onnx")
    session = ort.InferenceSession(str(tmp_path / "est.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["X"]
    assert [o.name for o in session.get_outputs()] == ["embedding"]
    for rows in (X[:1], X):  # the batch size is dynamic
        (out,) = session.run(None, {"X": rows.astype(np.float32)})
        np.testing.assert_allclose(out, est.transform(rows), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_onnx_export_without_the_extra(digits_300, tmp_path, monkeypatch, fast):
    X, y = digits_300
    est = TripletEmbedder(**{**fast, "max_iter": 1}).fit(X, y)
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # makes `import onnxscript` fail
    with pytest.raises(ImportError, match=re.escape("pip install 'sklearn-triplet[onnx]'.")):
        est.export_onnx(tmp_path / "est.onnx")


def test_onnx_export_needs_a_fitted_estimator(tmp_path):
    with pytest.raises(NotFittedError):
        TripletEmbedder().export_onnx(tmp_path / "est.onnx")


# -- the benchmark ---------------------------------------------------------------------------------


def test_benchmark_script_runs_and_writes_its_table():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "persistence.py"
    spec = importlib.util.spec_from_file_location("persistence_benchmark", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    rows, n_parameters = benchmark.run(repeats=1, onnx_repeats=1, onnx=False)
    assert 190_000 < n_parameters < 210_000
    assert [row[0] for row in rows] == ["pickle", "joblib", "save / load"]
    sizes = {name: size for name, _, _, size in rows}
    # The weights and Adam's two moments, float32, in every format that keeps the optimiser.
    assert all(size > 3 * 4 * n_parameters for size in sizes.values())
    table = benchmark.rst(rows, n_parameters, "python benchmarks/persistence.py")
    assert table.count("   * - ") == 1 + len(rows)
    assert f"An MLP of {n_parameters:,} parameters" in table


@pytest.mark.parametrize("kind", ["pairs", "triplets"])
def test_save_load_round_trip_of_the_pair_and_triplet_learners(tmp_path, kind):
    from sklearn_triplet import ComparisonEmbedder, PairEmbedder

    X, y = load_digits(return_X_y=True)
    X, y = X[:200] / 16.0, y[:200]
    rng = np.random.default_rng(0)
    if kind == "pairs":
        tuples = rng.integers(0, 200, size=(300, 2))
        targets = np.where(y[tuples[:, 0]] == y[tuples[:, 1]], 1, -1)
        est = PairEmbedder(points=X, max_iter=2, random_state=0)
    else:
        anchors, positives, negatives = rng.integers(0, 200, size=(3, 3000))
        keep = (y[anchors] == y[positives]) & (y[anchors] != y[negatives]) & (anchors != positives)
        tuples, targets = np.stack([anchors, positives, negatives], axis=1)[keep][:300], None
        est = ComparisonEmbedder(points=X, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(tuples, targets)
    est.save(tmp_path / "model.safetensors")
    loaded = load(tmp_path / "model.safetensors")
    assert type(loaded) is type(est)
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))
    np.testing.assert_array_equal(loaded.decision_function(tuples), est.decision_function(tuples))


def test_the_trust_list_names_every_public_estimator():
    import sklearn_triplet
    from sklearn_triplet import _loading
    from sklearn_triplet._base import BaseEmbedder

    public = {
        f"sklearn_triplet.{name}"
        for name in sklearn_triplet.__all__
        if isinstance(getattr(sklearn_triplet, name), type)
        and issubclass(getattr(sklearn_triplet, name), BaseEmbedder)
    }
    trusted = {path for path in _loading.TRUSTED if path.count(".") == 1}
    assert trusted == public
