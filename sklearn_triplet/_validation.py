"""Validation: the one module that imports scikit-learn's private helpers, and the shared checks.

Two kinds of rules, each with one message format:

- Rules on a parameter's own value (a type, a range, a set of strings) are declared with
  scikit-learn's constraints, ``_parameter_constraints`` on an estimator and :func:`validate_params`
  on a public function. scikit-learn words the error: "The 'margin' parameter of triplet_loss must
  be a float in the range (0.0, inf). Got -1 instead."
- Rules on data and between parameters (shapes, dtypes, devices, labels) are the ``check_*``
  functions below. Their errors read ``"{name} must be {what is allowed}; got {what was
  received}."``

Inner functions trust what they are given: validate once, at the boundary.
"""

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    InvalidParameterError,
    StrOptions,
    validate_parameter_constraints,
    validate_params,
)
from sklearn.utils.validation import check_array as _check_array
from sklearn.utils.validation import validate_data as _validate_data

from ._kernels import METRICS

__all__ = [
    "HasMethods",
    "Interval",
    "InvalidParameterError",
    "StrOptions",
    "check_array",
    "check_distance_matrix",
    "check_embeddings",
    "check_labels",
    "check_option",
    "embedding_part",
    "encode_labels",
    "final_estimator",
    "fit_context",
    "invalid",
    "plain",
    "safe_indexing",
    "validate_data",
    "validate_estimator_params",
    "validate_function_params",
]

# scikit-learn ships no type annotations, and a type checker reads the types of the parameters of
# its functions from their defaults (``dtype="numeric"``: a str); typed loosely here, once.
check_array: Callable[..., Any] = _check_array
validate_data: Callable[..., Any] = _validate_data
# scikit-learn's decorator of ``fit`` (parameter validation, then the fit itself).
fit_context = _fit_context
# Rows of an array, a DataFrame or a list by index (scikit-learn documents it, under this name).
safe_indexing = _safe_indexing


def validate_function_params(constraints):
    """Validate a public function's parameters with scikit-learn's constraints.

    Parameters
    ----------
    constraints : dict
        Parameter name -> list of constraints, as in ``_parameter_constraints``.

    Returns
    -------
    decorator : callable
        NumPy scalars among the arguments reach the function as the Python scalars they hold, so
        that an error shows ``Got 0``, not ``Got np.int64(0)`` (a value from a NumPy grid).
    """

    def decorator(function):
        validated = validate_params(constraints, prefer_skip_nested_validation=True)(function)

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            return validated(*map(plain, args), **{k: plain(v) for k, v in kwargs.items()})

        return wrapper

    return decorator


def validate_estimator_params(estimator):
    """scikit-learn's check of ``estimator``'s parameters against its ``_parameter_constraints``.

    Run by ``fit`` (through :data:`fit_context`) as ``estimator._validate_params()``. The values are
    checked as plain Python values, so that an error shows ``Got 0``, not ``Got np.int64(0)``.
    """
    validate_parameter_constraints(
        estimator._parameter_constraints,
        {name: plain(value) for name, value in estimator.get_params(deep=False).items()},
        caller_name=type(estimator).__name__,
    )


def plain(value):
    """A NumPy scalar as the Python scalar it holds, for messages; any other value as it is.

    Examples
    --------
    >>> import numpy as np
    >>> repr(plain(np.int64(0))), repr(plain(np.float32(0.5))), plain([1])
    ('0', '0.5', [1])
    """
    return value.item() if isinstance(value, np.generic) else value


def invalid(name, allowed, received, error: type[Exception] = ValueError):
    """The error for ``name`` when it is not ``allowed``: ``"{name} must be ...; got ..."``.

    Parameters
    ----------
    name : str
        What was checked (a parameter, or a parameter's property).
    allowed : str
        What is allowed, as a phrase that follows "must be".
    received : str
        What was received, as a phrase that follows "got".
    error : type, default=ValueError
        The exception class.

    Returns
    -------
    error : Exception
        To be raised by the caller.
    """
    return error(f"{name} must be {allowed}; got {received}.")


def check_option(name, value, allowed):
    """``allowed[value]`` for a dict, or ``value``, when ``value`` is one of ``allowed``.

    Raises
    ------
    ValueError
        Listing the allowed values.
    """
    if not isinstance(value, str) or value not in allowed:
        raise invalid(
            name, f"one of {', '.join(repr(option) for option in allowed)}", repr(plain(value))
        )
    return allowed[value] if isinstance(allowed, dict) else value


def check_embeddings(name, tensor, *, rows="n_samples", columns="n_features"):
    """A 2-D floating-point torch tensor."""
    if not isinstance(tensor, torch.Tensor):
        raise invalid(name, "a torch.Tensor", type(tensor).__name__, TypeError)
    if tensor.ndim != 2 or not tensor.is_floating_point():
        raise invalid(
            name,
            f"a 2-D floating-point tensor of shape ({rows}, {columns})",
            f"shape {tuple(tensor.shape)} and dtype {tensor.dtype}",
        )
    return tensor


def check_labels(labels, n_samples, device):
    """A 1-D integer torch tensor of ``n_samples`` entries on ``device``."""
    if not isinstance(labels, torch.Tensor):
        raise invalid("labels", "a torch.Tensor", type(labels).__name__, TypeError)
    if (
        labels.ndim != 1
        or labels.is_floating_point()
        or labels.is_complex()
        or labels.dtype == torch.bool
    ):
        raise invalid(
            "labels",
            "a 1-D tensor of integers",
            f"shape {tuple(labels.shape)} and dtype {labels.dtype}",
        )
    if len(labels) != n_samples:
        raise invalid("labels", f"of length {n_samples}, one entry per sample", str(len(labels)))
    if labels.device != device:
        raise invalid("labels", f"on the device {device}", str(labels.device))
    return labels


def check_distance_matrix(distances, labels):
    """A square floating-point matrix and its labels; returns them, the matrix detached."""
    if not isinstance(distances, torch.Tensor):
        raise invalid("distances", "a torch.Tensor", type(distances).__name__, TypeError)
    if (
        distances.ndim != 2
        or distances.shape[0] != distances.shape[1]
        or not distances.is_floating_point()
    ):
        raise invalid(
            "distances",
            "a square 2-D floating-point tensor",
            f"shape {tuple(distances.shape)} and dtype {distances.dtype}",
        )
    check_labels(labels, distances.shape[0], distances.device)
    return distances.detach(), labels


def encode_labels(y, y_reference):
    """Integer codes for query and reference labels in one shared encoding."""
    labels = np.concatenate([y, y_reference])
    try:
        _, codes = np.unique(labels, return_inverse=True)
    except TypeError:  # labels of types that do not sort together
        mapping = {}
        codes = np.array([mapping.setdefault(label, len(mapping)) for label in labels])
    codes = codes.reshape(-1)
    return codes[: len(y)], codes[len(y) :]


def final_estimator(estimator):
    """The last step of a (possibly nested) Pipeline, else the estimator."""
    while hasattr(estimator, "steps"):
        estimator = estimator.steps[-1][1]
    return estimator


def embedding_part(estimator, metric=None):
    """What embeds ``X`` for ``estimator``, and the distance its embeddings are measured in.

    An estimator with ``transform`` embeds ``X`` itself. A Pipeline whose last step searches or
    predicts (it has ``kneighbors``, or no ``transform``), such as
    ``Pipeline([("emb", TripletEmbedder()), ("knn", KNeighborsClassifier())])``, is represented by
    the steps before that last one: their output is the embedding the last step works on.

    Parameters
    ----------
    estimator : estimator
        A fitted embedder, or a Pipeline that holds one.
    metric : str, default=None
        The distance to use; None takes the ``metric`` attribute of the embedding part's last step
        when it has one, else ``"euclidean"``.

    Returns
    -------
    embedder : estimator with ``transform``
        ``estimator`` itself, or a Pipeline of its steps before the last one (sharing the fitted
        steps).
    metric : str
        One of :data:`~sklearn_triplet.distances.METRICS`.

    Raises
    ------
    TypeError
        If nothing in ``estimator`` embeds ``X``.
    ValueError
        If the embedder's metric is not one of :data:`~sklearn_triplet.distances.METRICS`.
    """
    embedder = estimator
    steps = getattr(estimator, "steps", None) or []
    if steps and (hasattr(steps[-1][1], "kneighbors") or not hasattr(estimator, "transform")):
        embedder = Pipeline(steps[:-1]) if len(steps) > 1 else None
    if embedder is None or not hasattr(embedder, "transform"):
        raise invalid(
            "estimator",
            "an embedder (with transform), or a Pipeline whose steps before its last one embed X, "
            "such as Pipeline([('emb', TripletEmbedder()), ('knn', KNeighborsClassifier())])",
            f"{type(estimator).__name__}, which has no transform",
            TypeError,
        )
    if metric is None:
        final = final_estimator(embedder)
        metric = check_option(
            f"{type(final).__name__}.metric", getattr(final, "metric", "euclidean"), METRICS
        )
    return embedder, metric
