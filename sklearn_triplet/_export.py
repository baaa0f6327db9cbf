"""Exporting a fitted estimator's network: ONNX."""

import importlib
import os

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
        verbose=False,
    )
