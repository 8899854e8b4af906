"""ONNX Runtime gives TensorFlow's vectors, within the golden float32 tolerances."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

# Each needs TensorFlow, a model build and an ONNX conversion: ~10-40 s on 2 busy cores.
pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]


def test_keras_vectors_are_unit_and_distinct(reference: np.ndarray) -> None:
    """The test model is meaningful: unit rows, and different faces get different vectors."""
    np.testing.assert_allclose(np.linalg.norm(reference, axis=1), 1.0, atol=1e-5)
    cos = reference @ reference.T
    off_diagonal = cos[~np.eye(len(cos), dtype=bool)]
    assert off_diagonal.max() < 0.99


def test_onnx_matches_keras(onnx_file: Path, reference: np.ndarray, golden: Any,
                            keras_extractor: Any) -> None:
    """Max |diff|, min cosine and every identify decision agree with TensorFlow."""
    from faceid_adapters.onnx import OnnxExtractor
    from faceid_adapters.parity import compare

    onnx = OnnxExtractor(onnx_file, threads=1)
    assert onnx.model_id == keras_extractor.model_id
    assert onnx.dim == keras_extractor.dim == 128
    result = compare("onnx", "float32", reference, onnx.embed_aligned(golden.faces), golden)
    assert result.ok, result
    assert result.decisions_agree == result.decisions_total == len(golden.query)


def test_registry_builds_the_onnx_backend(onnx_file: Path, golden: Any) -> None:
    """get_extractor('onnx', ...) returns a working Extractor."""
    from faceid_sdk.extractors import Extractor, get_extractor

    ex = get_extractor("onnx", model_path=onnx_file)
    assert isinstance(ex, Extractor)
    assert ex.embed_aligned(golden.faces[:2]).shape == (2, 128)


def test_batch_size_does_not_change_vectors(onnx_file: Path, keras_extractor: Any,
                                            golden: Any) -> None:
    """Batching is invisible: batches of 3 give the vectors of one big batch."""
    from faceid_adapters.onnx import OnnxExtractor
    from faceid_adapters.tensorflow import KerasExtractor

    small = OnnxExtractor(onnx_file, batch_size=3).embed_aligned(golden.faces)
    big = OnnxExtractor(onnx_file).embed_aligned(golden.faces)
    np.testing.assert_allclose(small, big, atol=1e-6)
    k3 = KerasExtractor(model=keras_extractor.model, model_id="x", batch_size=3)
    np.testing.assert_allclose(
        k3.embed_aligned(golden.faces), keras_extractor.embed_aligned(golden.faces), atol=1e-6
    )


def test_onnx_refuses_a_file_of_another_model(onnx_file: Path) -> None:
    """Asking for another model_id than the file's raises ModelMismatchError."""
    from faceid_adapters.onnx import OnnxExtractor

    from faceid_sdk.errors import ModelMismatchError

    with pytest.raises(ModelMismatchError, match="must be 'ffem-am-128-000000000000'"):
        OnnxExtractor(onnx_file, model_id="ffem-am-128-000000000000")
