"""The file format of ``save`` and of checkpoints: one safetensors file, written atomically.

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
class or function, stored by its import path. The decoder resolves an ``__import__`` only from the
imports it is handed: which paths may be imported is the loader's decision
(:mod:`sklearn_triplet._loading`); nothing else in the file can name code.

This module knows estimators only through what they have in common (``get_params``, the fitted
attributes, ``module_``); it imports none of them, so checkpoints and the loader depend on it and it
depends on neither.
"""

import hashlib
import json
import math
import os
import secrets
import sys
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ._version import __version__

FORMAT = "sklearn-triplet"
FORMAT_VERSION = 1

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
        "sklearn_triplet_version": package_version(),
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
        save_file(tensors, temporary, metadata=metadata)
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    _fsync_directory(directory)


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
        if module is not None and lookup(module, qualname) is obj:
            return candidate, qualname
    raise TypeError(
        f"save() cannot store {where}={obj!r}: it is not reachable as {module_name}.{qualname}. "
        "Define it at the top level of a module, or use pickle or joblib."
    )


def describe(value):
    """``module.qualname`` of a function or a class, or of an object's class."""
    kind = value if hasattr(value, "__qualname__") else type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def lookup(module, qualname):
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


def package_version():
    return __version__


def read_file(path) -> tuple[Any, dict[str, torch.Tensor]]:
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
            f"{package_version()} reads format versions up to {FORMAT_VERSION}. Upgrade "
            "sklearn-triplet (pip install -U sklearn-triplet)."
        )


def find_imports(where, node, found=None):
    """Every ``(module, name)`` an ``__import__`` of the document names, in order of appearance."""
    found = {} if found is None else found
    if isinstance(node, list):
        for item in node:
            find_imports(where, item, found)
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
                find_imports(where, value, found)
    return list(found)


class Decoder:
    """The inverse of ``Encoder``, with imports resolved beforehand (after the trust check)."""

    def __init__(self, where, tensors, imports):
        self.where, self.tensors, self.imports = where, tensors, imports

    def decode(self, node) -> Any:
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
