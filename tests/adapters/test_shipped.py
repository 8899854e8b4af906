"""The shipped ONNX file gives the shipped Keras weights' vectors, checked without TensorFlow.

Runs once the model is shipped: ``faceid_sdk/models/ffem_am/`` with ``model.json`` and
``ffem_am.onnx``, and ``tests/golden/reference-<model_id>.npy`` written by
``faceid-sdk parity --write-reference``. This is what a server with only
``faceid-sdk[onnx]`` relies on, so it runs in the fast suite.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest


def test_shipped_onnx_matches_the_keras_reference(golden: Any) -> None:
    """Max |diff|, min cosine and identify decisions within the float32 tolerances."""
    pytest.importorskip("onnxruntime")
    from faceid_adapters.onnx import OnnxExtractor, default_onnx_path
    from faceid_adapters.parity import compare, reference_path

    if not default_onnx_path().is_file():
        pytest.skip(f"no shipped ONNX model yet ({default_onnx_path()})")
    extractor = OnnxExtractor()
    ref_file = reference_path(golden, extractor.model_id)
    if not ref_file.is_file():
        pytest.fail(
            f"{ref_file.name} is missing for the shipped model {extractor.model_id}: run "
            "`faceid-sdk parity --write-reference` and commit it"
        )
    result = compare("onnx", "float32", np.load(ref_file),
                     extractor.embed_aligned(golden.faces), golden)
    assert result.ok, result
