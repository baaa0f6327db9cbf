"""Saving an estimator to one file, loading it back without running code from it, ONNX export.

The file is a safetensors file. Its tensors are the network's weights, the optimiser's state and
the numeric fitted arrays, all on the CPU. Its metadata holds four strings: ``"format"`` (always
``"sklearn-triplet"``), ``"format_version"``, ``"sklearn_triplet"``, a JSON document with the
estimator's class, its parameters and its other fitted attributes, and ``"sha256"``, a checksum of
the document and of every tensor.

Inside the document, values that JSON lacks are objects with a single key starting with ``__``:
``{"__tuple__": [...]}``, ``{"__float__": "nan"}``, ``{"__tensor__": name}`` and
``{"__ndarray__": name}`` (a tensor of the file), ``{"__array__": {...}}`` (a non-numeric array,
e.g. feature names), ``{"__device__": "cuda:0"}``, ``{"__generator__": {...}}`` and
``{"__random_state__": {...}}`` (NumPy random states), ``{"__dict__": [[key, value], ...]}`` (a dict
whose keys are not all plain strings), ``{"__unstored__": name}`` (in checkpoints: a function or
module instance recorded by name only) and ``{"__import__": {"module": ..., "name": ...}}``: a
class or function, stored by its import path. Loading resolves an ``__import__`` only when its
path is trusted, and checks every path of the file before importing any of them; nothing else in
the file can name code.
"""

import contextlib
import hashlib
import importlib
import json
import logging
import math
import os
import secrets
import sys
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ._threads import seeded_global_generator

FORMAT = "sklearn-triplet"
FORMAT_VERSION = 1

# Paths trusted without being listed: what this package itself may write into a file.
_TRUSTED_BY_DEFAULT = (
    "sklearn_triplet.backbones.L2Normalize",
    "sklearn_triplet.backbones.make_cnn",
    "sklearn_triplet.backbones.make_linear",
    "sklearn_triplet.backbones.make_mlp",
    "sklearn_triplet.losses.contrastive_loss",
    "sklearn_triplet.losses.triplet_loss",
)

# The NumPy bit generators a file may name (looked up in numpy.random, never imported by path).
_BIT_GENERATORS = ("MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64")

# Fitted attributes not stored: resolved again on the loading machine.
_NOT_STORED = ("device_",)

_TAGS = (
    "__array__",
    "__device__",
    "__dict__",
    "__float__",
    "__generator__",
    "__import__",
    "__ndarray__",
    "__random_state__",
    "__tensor__",
    "__tuple__",
    "__unstored__",
)


# -- saving ----------------------------------------------------------------------------------------


def save(estimator, path):
    """Write ``estimator`` to ``path`` (see ``BaseEmbedder.save``)."""
    encoder = Encoder()
    write_file(path, document_of(estimator, encoder), encoder.tensors)


def document_of(estimator, encoder, *, params=None, fitted=None):
    """The JSON document of ``estimator``, its tensors collected by ``encoder``.

    ``params`` replaces the encoded parameters; ``fitted`` overrides fitted attributes (a
    checkpoint stores the optimiser's live state).
    """
    if params is None:
        backbone = estimator.backbone
        if isinstance(backbone, torch.nn.Module):
            name = type(backbone).__name__
            raise TypeError(
                f"save() cannot store backbone={name}(...), a module instance: the network is "
                "rebuilt from the parameters at load time. Pass the class or a factory instead, "
                f"with its arguments in backbone_params (backbone={name}, "
                "backbone_params={...}), or use pickle or joblib."
            )
        params = {
            name: encoder.encode(value, name)
            for name, value in estimator.get_params(deep=False).items()
        }
    document = {
        "estimator": encoder.encode(type(estimator), "the estimator's class"),
        "sklearn_triplet_version": _package_version(),
        "params": params,
        "fitted": None,
    }
    if hasattr(estimator, "module_"):
        names = estimator._get_param_names()
        attributes = {
            name: value
            for name, value in vars(estimator).items()
            if name not in names and name not in _NOT_STORED
        }
        attributes["module_"] = estimator.module_.state_dict()
        attributes.update(fitted or {})
        document["fitted"] = {
            name: encoder.encode(value, name) for name, value in attributes.items()
        }
    return document


def write_file(path, document, tensors):
    """Write a safetensors file atomically: a temporary file in the same directory, fsync, rename.

    A reader never sees a half-written ``path``: until the rename it finds the previous file (or
    none), afterwards the new one. A process killed mid-write leaves at most a stray
    ``*.tmp`` file next to it.
    """
    path = os.fspath(path)
    text = json.dumps(document, allow_nan=False, separators=(",", ":"))
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "sklearn_triplet": text,
        "sha256": _checksum(str(FORMAT_VERSION), text, tensors),
    }
    directory, name = os.path.split(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"Cannot save to {path!r}: it is a directory.")
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"Cannot save to {path!r}: the directory {directory!r} does not exist."
        )
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
    try:
        # safetensors writes its files -rw-------; the file gets the permissions the umask gives
        # any new file, read here from a file created the ordinary way (os.umask, which would
        # tell them too, changes them for every thread of the process while it runs).
        mode = _new_file_mode(temporary)
        save_file(tensors, temporary, metadata=metadata)
        os.chmod(temporary, mode)
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    _fsync_directory(directory)


def _new_file_mode(path):
    """Create ``path`` empty with the permissions of a new file (0o666 less the umask); return
    them."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    try:
        return os.fstat(fd).st_mode & 0o777
    finally:
        os.close(fd)


def _fsync_directory(directory):
    """Make a rename durable (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Encoder:
    """Turns Python values into JSON values, collecting tensors aside; see the module docstring.

    A value with no JSON form (a lambda, a module instance) is a TypeError naming it, or, when
    ``lenient`` (for checkpoints), ``{"__unstored__": name}``.
    """

    def __init__(self, *, lenient=False):
        self.tensors = {}
        self.lenient = lenient

    def encode(self, value, where):
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, Integral):
            return int(value)
        if isinstance(value, Real):
            value = float(value)
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return self._encode_dict(value, where)
        if isinstance(value, torch.Tensor):
            return {"__tensor__": self._add_tensor(value, where)}
        if isinstance(value, np.ndarray):
            return self._encode_array(value, where)
        if isinstance(value, torch.device):
            return {"__device__": str(value)}
        if isinstance(value, os.PathLike):  # a checkpoint path: loaded as a str
            return os.fspath(value)
        if isinstance(value, np.random.Generator):
            state = value.bit_generator.state
            return {"__generator__": self.encode(state, f"{where}.bit_generator.state")}
        if isinstance(value, np.random.RandomState):
            state = value.get_state(legacy=False)
            return {"__random_state__": self.encode(state, f"{where}.state")}
        if isinstance(value, type) or callable(value):
            try:
                module, name = _import_path(value, where)
            except TypeError:
                if self.lenient:
                    return {"__unstored__": describe(value)}
                raise
            return {"__import__": {"module": module, "name": name}}
        if self.lenient:
            return {"__unstored__": describe(value)}
        raise TypeError(
            f"save() cannot store {where}, a {type(value).__module__}.{type(value).__qualname__}; "
            "use pickle or joblib for this estimator."
        )

    def _encode_dict(self, value, where):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: self.encode(v, f"{where}.{k}") for k, v in value.items()}
        return {
            "__dict__": [
                [self.encode(k, f"{where} key {k!r}"), self.encode(v, f"{where}[{k!r}]")]
                for k, v in value.items()
            ]
        }

    def _encode_array(self, value, where):
        if value.dtype.kind in "biuf":
            return {"__ndarray__": self._add_tensor(torch.from_numpy(value.copy()), where)}
        if value.dtype.kind in "UO":
            data = self.encode(value.ravel().tolist(), where)
            dtype = value.dtype.str if value.dtype.kind == "U" else "object"
            return {"__array__": {"dtype": dtype, "shape": list(value.shape), "data": data}}
        raise TypeError(
            f"save() cannot store {where}, an array of dtype {value.dtype}; use pickle or joblib."
        )

    def _add_tensor(self, tensor, where):
        name = where if where not in self.tensors else f"{where}#{len(self.tensors)}"
        self.tensors[name] = tensor.detach().to("cpu", copy=True).contiguous()
        return name


def _import_path(obj, where):
    """``(module, qualified name)`` under which ``obj`` can be imported, the shortest first.

    ``torch.nn.modules.linear.Linear`` is stored as ``("torch.nn", "Linear")``. Objects that cannot
    be imported by name (lambdas, local functions, instances) raise a TypeError naming ``where``.
    """
    module_name = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not (isinstance(obj, type) or callable(obj)) or module_name is None or qualname is None:
        raise TypeError(
            f"save() cannot store {where}={obj!r}: it is an object, and save() stores functions "
            "and classes by their import path only. Pass a function or a class, or use pickle or "
            "joblib (which run code when loading)."
        )
    if "<" in qualname:  # <lambda>, <locals>
        raise TypeError(
            f"save() cannot store {where}={obj!r}: a lambda or a function defined inside another "
            "function cannot be imported by name. Define it at the top level of a module, or use "
            "pickle or joblib."
        )
    parts = module_name.split(".")
    for end in range(1, len(parts) + 1):
        candidate = ".".join(parts[:end])
        module = sys.modules.get(candidate)
        if module is not None and _lookup(module, qualname) is obj:
            return candidate, qualname
    raise TypeError(
        f"save() cannot store {where}={obj!r}: it is not reachable as {module_name}.{qualname}. "
        "Define it at the top level of a module, or use pickle or joblib."
    )


def describe(value):
    """``module.qualname`` of a function or a class, or of an object's class."""
    kind = value if hasattr(value, "__qualname__") else type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def _lookup(module, qualname):
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj


def _checksum(version, text, tensors):
    """SHA-256 of the format version, the JSON document and every tensor (name, dtype, shape,
    bytes)."""
    digest = hashlib.sha256(f"{version}\0{text}".encode())
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _package_version():
    from . import __version__

    return __version__


# -- loading ---------------------------------------------------------------------------------------


def load(path, *, trusted=None):
    """Load an estimator written by ``save``, running no code from the file.

    The network is rebuilt from the saved parameters and given the saved weights; the parameters
    and fitted attributes come from JSON. A class or function named in the file (a backbone class
    or factory, a ``loss`` or a ``callback``) is imported only when its path is in ``trusted``; the
    built-in backbones and this package's estimators need no trust. Every path is checked before
    anything is imported, so an untrusted module is never imported.

    Parameters
    ----------
    path : str or path-like
        A file written by :meth:`TripletEmbedder.save` or :meth:`SiameseEmbedder.save`.
    trusted : list of str, default=None
        Import paths (``"module.Name"``) of the classes and functions the file may use. Pass a path
        only when you trust whoever wrote the file: importing it runs its module's code. The error
        raised for an untrusted path lists them all.

    Returns
    -------
    estimator : TripletEmbedder or SiameseEmbedder
        Fitted when it was saved fitted. ``device="auto"`` is resolved on this machine; a device it
        lacks falls back to the CPU with a warning.

    Raises
    ------
    ValueError
        When the file names a class or function that is not trusted, is not a file written by
        ``save``, is truncated or corrupted, or was written in a newer format version.

    See Also
    --------
    TripletEmbedder.save : Write the file.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_triplet import SiameseEmbedder, load
    >>> X, y = load_digits(return_X_y=True)
    >>> embedder = SiameseEmbedder(n_components=4, max_iter=2, random_state=0).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "embedder.safetensors")
    >>> embedder.save(path)
    >>> load(path).transform(X[:2]).shape
    (2, 4)
    """
    trusted = _check_trusted(trusted)
    where = repr(os.fspath(path))
    document, tensors = read_file(path)
    if not (
        isinstance(document, dict)
        and {"estimator", "params", "fitted"} <= set(document)
        and isinstance(document["params"], dict)
        and isinstance(document["fitted"], (dict, type(None)))
    ):
        raise ValueError(f"Cannot load {where}: its document lacks the estimator's description.")
    # The callback runs only during fit: a file whose callback cannot be imported here still loads.
    document["params"] = dict(document["params"])
    callback = document["params"].pop("callback", None)
    imports = _find_imports(where, document)
    _check_trust(where, imports, trusted)
    decoder = Decoder(where, tensors, {key: _import(where, *key) for key in imports})
    if callback is not None:
        document["params"]["callback"] = _callback_or_none(where, callback, decoder, trusted)
    cls = decoder.decode(document["estimator"])
    from ._base import BaseEmbedder

    if not (isinstance(cls, type) and issubclass(cls, BaseEmbedder)):
        # A ValueError, as for every other fault of the file.
        raise ValueError(f"Cannot load {where}: {cls!r} is not an sklearn-triplet estimator.")  # noqa: TRY004
    params = {name: decoder.decode(value) for name, value in document["params"].items()}
    unknown = sorted(set(params) - set(cls._get_param_names()))
    if unknown:
        raise ValueError(
            f"Cannot load {where}: it sets parameters {unknown} that {cls.__name__} does not have "
            f"in sklearn-triplet {_package_version()} (the file was written by sklearn-triplet "
            f"{document.get('sklearn_triplet_version')})."
        )
    estimator = cls(**params)
    try:
        estimator._validate_params()
    except ValueError as exc:
        raise ValueError(f"Cannot load {where}: {exc}") from exc
    if document["fitted"] is None:
        return estimator
    fitted = {name: decoder.decode(value) for name, value in document["fitted"].items()}
    missing = [name for name in ("module_", "n_features_in_") if name not in fitted]
    if missing:
        raise ValueError(f"Cannot load {where}: the fitted attributes {missing} are missing.")
    state_dict = fitted.pop("module_")
    # The weights are replaced: the built-in backbones draw from a throwaway generator, a trusted
    # user factory from torch's global one, forked under the lock concurrent fits take.
    with seeded_global_generator(0, torch.device("cpu")):
        module = estimator._build_module(
            fitted["n_features_in_"], fitted.get("_input_shape"), generator=torch.Generator()
        )
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise ValueError(
            f"Cannot load {where}: its weights do not fit the network its parameters describe: "
            f"{exc}"
        ) from exc
    # The state an unpickled estimator gets: the device is resolved and the network moved there the
    # same way.
    estimator.__setstate__({**vars(estimator), **fitted, "module_": module.eval()})
    return estimator


def _callback_or_none(where, callback, decoder, trusted):
    """The encoded ``callback`` parameter, or None, with a warning, when it cannot be loaded here.

    A callback runs only during ``fit``: the weights, ``history_`` and ``transform`` do not need it,
    so a model or a checkpoint whose callback was defined in a script (``__main__.cb``), or is not
    trusted, loads with ``callback=None`` rather than not at all. An untrusted callback is still
    never imported.
    """
    imports = _find_imports(where, callback)
    try:
        _check_trust(where, imports, trusted)
        decoder.imports.update({key: _import(where, *key) for key in imports})
    except ValueError as exc:
        reason = str(exc).split(": ", 1)[1]
        warnings.warn(
            f"Loading {where} with callback=None: {reason} A callback runs only during fit, so "
            "the estimator, its weights and history_ need none; set one with set_params(callback="
            "...) before fitting it again. To keep a callback in saved files, define it in an "
            "importable module rather than in a script.",
            UserWarning,
            stacklevel=3,
        )
        return None
    return callback


def read_file(path):
    """The JSON document and the tensors of a file written by ``write_file``, checked.

    Raises ValueError naming the file for anything but a complete, intact file of a known format
    version; OSError (a missing file, a permission) passes through.
    """
    where = repr(os.fspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"Cannot load {where}: it is a directory.")
    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise ValueError(
                    f"Cannot load {where}: it is a safetensors file, but not one written by "
                    "save() of sklearn-triplet (its metadata lacks format='sklearn-triplet')."
                )
            _check_version(where, metadata)
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (not iterable)
    except SafetensorError as exc:
        raise ValueError(
            f"Cannot load {where}: the file is truncated, corrupted or not a safetensors file "
            f"({exc}).{_pickle_hint(path)}"
        ) from exc
    text = metadata.get("sklearn_triplet", "")
    if metadata.get("sha256") != _checksum(metadata["format_version"], text, tensors):
        raise ValueError(
            f"Cannot load {where}: the file is corrupted (its SHA-256 checksum does not match its "
            "contents)."
        )
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"Cannot load {where}: its JSON document is invalid ({exc}).") from exc
    return document, tensors


def _pickle_hint(path):
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80" or head == b"PK":
        return (
            " It looks like a pickle, joblib or torch.save file: open it with joblib.load or "
            "torch.load only if you trust whoever wrote it, since loading it can run code."
        )
    return ""


def _check_version(where, metadata):
    version = metadata.get("format_version", "")
    if not version.isdigit():
        raise ValueError(f"Cannot load {where}: its format version {version!r} is not a number.")
    if int(version) > FORMAT_VERSION:
        raise ValueError(
            f"Cannot load {where}: it was written in format version {version}, and sklearn-triplet "
            f"{_package_version()} reads format versions up to {FORMAT_VERSION}. Upgrade "
            "sklearn-triplet (pip install -U sklearn-triplet)."
        )


def _check_trusted(trusted):
    if trusted is None:
        return frozenset()
    if isinstance(trusted, str) or not all(isinstance(t, str) for t in trusted):
        raise TypeError(
            f"trusted must be a list of import paths such as ['mypackage.MyNet']; got {trusted!r}."
        )
    return frozenset(trusted)


def _find_imports(where, node, found=None):
    """Every ``(module, name)`` an ``__import__`` of the document names, in order of appearance."""
    found = {} if found is None else found
    if isinstance(node, list):
        for item in node:
            _find_imports(where, item, found)
    elif isinstance(node, dict):
        if "__import__" in node:
            spec = node["__import__"]
            if not (
                isinstance(spec, dict)
                and isinstance(spec.get("module"), str)
                and isinstance(spec.get("name"), str)
            ):
                raise ValueError(f"Cannot load {where}: an import in an unknown form, {spec!r}.")
            found.setdefault((spec["module"], spec["name"]), None)
        else:
            for value in node.values():
                _find_imports(where, value, found)
    return list(found)


def _check_trust(where, imports, trusted):
    from . import __all__ as public
    from ._base import BaseEmbedder

    package = sys.modules[__package__]
    estimators = {
        f"{__package__}.{name}"
        for name in public
        if isinstance(getattr(package, name), type)
        and issubclass(getattr(package, name), BaseEmbedder)
    }
    allowed = set(_TRUSTED_BY_DEFAULT) | estimators | trusted
    untrusted = sorted({f"{module}.{name}" for module, name in imports} - allowed)
    if untrusted:
        verb = "is" if len(untrusted) == 1 else "are"
        raise ValueError(
            f"Cannot load {where}: it names {untrusted}, which {verb} not trusted. Loading would "
            "import and run their code. If you trust whoever wrote the file, pass them: "
            f"load({where}, trusted={untrusted})."
        )


def _import(where, module_name, name):
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"Cannot load {where}: it needs {module_name}.{name}, but {module_name} cannot be "
            f"imported here ({exc})."
        ) from exc
    obj = _lookup(module, name)
    if obj is None:
        raise ValueError(
            f"Cannot load {where}: it needs {module_name}.{name}, which {module_name} does not "
            "define."
        )
    return obj


class Decoder:
    """The inverse of ``Encoder``, with imports resolved beforehand (after the trust check)."""

    def __init__(self, where, tensors, imports):
        self.where, self.tensors, self.imports = where, tensors, imports

    def decode(self, node):
        if isinstance(node, list):
            return [self.decode(item) for item in node]
        if not isinstance(node, dict):
            return node
        tags = [key for key in node if key.startswith("__")]
        if not tags:
            return {key: self.decode(value) for key, value in node.items()}
        if len(node) != 1 or tags[0] not in _TAGS:
            raise ValueError(
                f"Cannot load {self.where}: unknown entry {sorted(node)} in its document."
            )
        tag, value = tags[0], node[tags[0]]
        try:
            return getattr(self, "_" + tag.strip("_"))(value)
        except (AttributeError, IndexError, KeyError, TypeError) as exc:
            raise ValueError(
                f"Cannot load {self.where}: malformed {tag} entry {value!r} ({exc!r})."
            ) from exc

    def _tuple(self, value):
        return tuple(self.decode(value))

    def _float(self, value):
        return float(value)

    def _dict(self, value):
        return {self.decode(k): self.decode(v) for k, v in value}

    def _tensor(self, name):
        try:
            return self.tensors[name]
        except KeyError:
            raise ValueError(f"Cannot load {self.where}: the tensor {name!r} is missing.") from None

    def _ndarray(self, name):
        return self._tensor(name).numpy()

    def _array(self, value):
        data = self.decode(value["data"])
        if value["dtype"] == "object":
            array = np.empty(len(data), dtype=object)
            array[:] = data
        else:
            array = np.array(data, dtype=np.dtype(value["dtype"]))
        return array.reshape(value["shape"])

    def _device(self, value):
        return torch.device(value)

    def _generator(self, value):
        state = self.decode(value)
        name = state.get("bit_generator") if isinstance(state, dict) else None
        if name not in _BIT_GENERATORS:
            raise ValueError(
                f"Cannot load {self.where}: unknown NumPy bit generator {name!r}; expected one of "
                f"{list(_BIT_GENERATORS)}."
            )
        bit_generator = getattr(np.random, name)()
        bit_generator.state = state
        return np.random.Generator(bit_generator)

    def _random_state(self, value):
        random_state = np.random.RandomState()
        random_state.set_state(self.decode(value))
        return random_state

    def _import(self, value):
        return self.imports[(value["module"], value["name"])]

    def _unstored(self, value):
        raise ValueError(
            f"Cannot load {self.where}: it is a checkpoint that records {value} by name only (a "
            "lambda, a local function or a module instance), which load() cannot rebuild."
        )


# -- ONNX ------------------------------------------------------------------------------------------


def export_onnx(estimator, path, *, opset_version=None):
    """Export the fitted network to ONNX with a dynamic batch size (see ``export_onnx``)."""
    for package in ("onnx", "onnxscript"):
        try:
            importlib.import_module(package)
        except ImportError:
            raise ImportError(
                f"export_onnx needs the {package} package, which is not installed: "
                "pip install 'sklearn-triplet[onnx]'."
            ) from None
    module = estimator.export_module()
    example = torch.zeros(2, estimator.n_features_in_)
    with _exporter_noise_silenced():
        torch.onnx.export(
            module,
            (example,),
            os.fspath(path),
            input_names=["X"],
            output_names=["embedding"],
            opset_version=opset_version,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            external_data=False,
            verbose=False,  # the exporter's own progress messages
        )


# What torch's ONNX exporter emits on every export that says nothing about the user's model, and
# that verbose=False leaves on: its registry skips the operators of torchvision when torchvision is
# not installed (one log record per operator), and torch.export deprecates a class of its own
# internally. Each is matched by its message; anything else the exporter says is shown.
_EXPORTER_LOGGER = "torch.onnx._internal.exporter._registration"
_EXPORTER_LOG_NOISE = "torchvision is not installed. Skipping "
_EXPORTER_WARNING_NOISE = r"`isinstance\(treespec, LeafSpec\)` is deprecated"


class _DropExporterNoise(logging.Filter):
    def filter(self, record):
        return not str(record.msg).startswith(_EXPORTER_LOG_NOISE)


@contextlib.contextmanager
def _exporter_noise_silenced():
    """Drop the exporter's known noise (above) while the block runs."""
    logger = logging.getLogger(_EXPORTER_LOGGER)
    drop = _DropExporterNoise()
    logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=_EXPORTER_WARNING_NOISE, category=FutureWarning
            )
            yield
    finally:
        logger.removeFilter(drop)
