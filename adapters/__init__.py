"""faceid_adapters: the extractor backends of faceid-sdk and the checks that they agree.

Installed from the ``adapters/`` folder under a distinct import name. The core finds the
backends through its registry (:mod:`faceid_sdk.extractors`), by dotted path, so neither
``import faceid_sdk`` nor ``import faceid_adapters`` loads a framework::

    faceid_adapters.tensorflow   KerasExtractor   the Keras weights (reference)   [tensorflow]
    faceid_adapters.onnx         OnnxExtractor    ONNX Runtime, no TensorFlow     [onnx]
    faceid_adapters.tfjs         export_tfjs      TF.js graph model + Node runner [export]
    faceid_adapters.export       export_model     keras | onnx | tfjs, quantized or not
    faceid_adapters.parity       run_parity       TensorFlow vs ONNX vs TF.js on golden faces
    faceid_adapters.milvus       MilvusMatcher    the Matcher API over Milvus / milvus-lite [milvus]
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .export import ExportResult, export_model
    from .milvus import MilvusMatcher
    from .onnx import OnnxExtractor
    from .parity import ParityReport, run_parity
    from .tensorflow import KerasExtractor

__all__ = [
    "ExportResult",
    "KerasExtractor",
    "MilvusMatcher",
    "OnnxExtractor",
    "ParityReport",
    "export_model",
    "run_parity",
]

_LAZY = {
    "ExportResult": ".export",
    "export_model": ".export",
    "MilvusMatcher": ".milvus",
    "OnnxExtractor": ".onnx",
    "ParityReport": ".parity",
    "run_parity": ".parity",
    "KerasExtractor": ".tensorflow",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'faceid_adapters' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
