"""Every export format writes a file that loads and computes the reference's vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

# Each needs TensorFlow, a model build and an ONNX conversion: ~10-40 s on 2 busy cores.
pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_export_paths() -> None:
    """File names encode format and precision so exports can sit side by side."""
    from faceid_adapters.export import export_path

    assert export_path("o", "onnx").name == "ffem_am.onnx"
    assert export_path("o", "onnx", "uint8").name == "ffem_am.uint8.onnx"
    assert export_path("o", "tfjs", "float16").name == "ffem_am.float16.tfjs"
    assert export_path("o", "keras").name == "ffem_am.keras"


@pytest.mark.parametrize(("fmt", "quantize"), [("pdf", None), ("onnx", "int4"), ("keras", "uint8")])
def test_bad_export_arguments(fmt: str, quantize: str | None, tmp_path: Path) -> None:
    """Unknown formats and unsupported precisions raise ValueError before any work."""
    from faceid_adapters.export import export_model

    with pytest.raises(ValueError, match="must be"):
        export_model(fmt, tmp_path, quantize, weights=tmp_path / "unused")


def test_keras_exports_load(keras_extractor: Any, reference: np.ndarray, golden: Any,
                            tmp_path: Path) -> None:
    """The .keras file and the float16 model folder load back and give the same vectors."""
    from faceid_adapters.export import export_model
    from faceid_adapters.tensorflow import KerasExtractor

    full = export_model("keras", tmp_path, model=keras_extractor.loaded)
    half = export_model("keras", tmp_path, "float16", model=keras_extractor.loaded)
    assert full.path.is_file() and (half.path / "weights.npz").is_file()
    for result in (full, half):
        again = KerasExtractor(result.path).embed_aligned(golden.faces)
        # The test weights are themselves float16-exact, so even the half export is exact.
        np.testing.assert_allclose(again, reference, atol=1e-5)


@pytest.mark.parametrize(("quantize", "ratio"), [("float16", 0.5), ("uint8", 0.25)])
def test_quantized_onnx_size_and_cosine(quantize: str, ratio: float, onnx_file: Path,
                                        keras_extractor: Any, reference: np.ndarray,
                                        golden: Any, tmp_path: Path) -> None:
    """Quantized ONNX files shrink by the bit ratio and stay within their tolerances."""
    from faceid_adapters.export import export_model
    from faceid_adapters.onnx import OnnxExtractor
    from faceid_adapters.parity import compare

    result = export_model("onnx", tmp_path, quantize, model=keras_extractor.loaded)
    assert result.size_bytes < onnx_file.stat().st_size * (ratio + 0.03)
    got = OnnxExtractor(result.path).embed_aligned(golden.faces)
    parity = compare("onnx", quantize, reference, got, golden)
    assert parity.max_abs_diff <= parity.tolerance.max_abs_diff
    assert parity.min_cosine >= parity.tolerance.min_cosine


def test_uint8_affine_round_trip() -> None:
    """Per-tensor affine uint8 keeps zero exact and errs by at most half a step."""
    from faceid_adapters.export import affine_uint8

    w = np.random.default_rng(0).normal(size=1000).astype(np.float32)
    w[0] = 0.0
    q, scale, zero = affine_uint8(w)
    back = (q.astype(np.float32) - zero) * scale
    assert back[0] == 0.0
    assert np.abs(back - w).max() <= scale / 2 + 1e-6
