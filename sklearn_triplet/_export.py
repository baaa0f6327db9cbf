"""Exporting a fitted estimator's network: ONNX."""

import contextlib
import importlib
import logging
import os
import warnings

import torch


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
