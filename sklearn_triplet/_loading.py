"""Loading a saved estimator without running code from the file: the trust policy.

A file names classes and functions by import path (the estimator's class, a backbone factory, a
``loss``, a ``callback``). :func:`load` imports one only when its path is trusted: listed in
``TRUSTED`` (this package's estimators, built-in backbones and losses, written out here so that the
policy changes only when this list does) or passed by the caller in ``trusted``. Every path of the
file is checked before any is imported.
"""

import importlib
import os
import warnings

import torch

from ._base import BaseEmbedder
from ._format import Decoder, find_imports, lookup, package_version, read_file
from ._registry import LOSSES
from ._threads import seeded_global_generator
from .backbones import BACKBONES

# What this package itself may write into a file, trusted without being passed: its estimators,
# the normalisation layer of its networks, and the factories and public loss functions of the
# built-in backbones and losses, read from their registries.
TRUSTED = (
    "sklearn_triplet.ComparisonEmbedder",
    "sklearn_triplet.PairEmbedder",
    "sklearn_triplet.SiameseEmbedder",
    "sklearn_triplet.TripletEmbedder",
    "sklearn_triplet.backbones.L2Normalize",
    *(f"{spec.factory.__module__}.{spec.factory.__qualname__}" for spec in BACKBONES.values()),
    *(loss.function for loss in LOSSES.values() if loss.function is not None),
)


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
    >>> embedder = SiameseEmbedder(n_components=4, max_iter=2, do_no_harm=False, random_state=0)
    >>> embedder = embedder.fit(X, y)
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
    imports = find_imports(where, document)
    _check_trust(where, imports, trusted)
    decoder = Decoder(where, tensors, {key: _import(where, *key) for key in imports})
    if callback is not None:
        document["params"]["callback"] = _callback_or_none(where, callback, decoder, trusted)
    cls = decoder.decode(document["estimator"])
    if not (isinstance(cls, type) and issubclass(cls, BaseEmbedder)):
        # A ValueError, as for every other fault of the file.
        raise ValueError(f"Cannot load {where}: {cls!r} is not an sklearn-triplet estimator.")  # noqa: TRY004
    params = {name: decoder.decode(value) for name, value in document["params"].items()}
    unknown = sorted(set(params) - set(cls._get_param_names()))
    if unknown:
        raise ValueError(
            f"Cannot load {where}: it sets parameters {unknown} that {cls.__name__} does not have "
            f"in sklearn-triplet {package_version()} (the file was written by sklearn-triplet "
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
    imports = find_imports(where, callback)
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


def _check_trusted(trusted):
    if trusted is None:
        return frozenset()
    if isinstance(trusted, str) or not all(isinstance(t, str) for t in trusted):
        raise TypeError(
            f"trusted must be a list of import paths such as ['mypackage.MyNet']; got {trusted!r}."
        )
    return frozenset(trusted)


def _check_trust(where, imports, trusted):
    allowed = set(TRUSTED) | trusted
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
    obj = lookup(module, name)
    if obj is None:
        raise ValueError(
            f"Cannot load {where}: it needs {module_name}.{name}, which {module_name} does not "
            "define."
        )
    return obj
