"""The landmark model rebuilt from its OpenVINO IR for TF.js computes what OpenVINO computes."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("openvino")

from faceid_adapters.tfjs.openvino_ir import check_against_openvino

from faceid_sdk.face_models import LANDMARKS_FILE, MODELS_DIR


def test_rebuilt_landmark_model_matches_openvino() -> None:
    """Random 48x48 inputs: the TensorFlow rebuild and OpenVINO agree to float32 rounding."""
    assert check_against_openvino(MODELS_DIR / LANDMARKS_FILE, n=6) < 1e-4


def test_unsupported_ops_are_refused(tmp_path: Path) -> None:
    """An IR with an op the rebuild does not know is refused by name, not mistranslated."""
    from faceid_adapters.tfjs.openvino_ir import ir_function

    from faceid_sdk.face_models import DETECTOR_FILE

    with pytest.raises(ValueError, match="not supported"):
        ir_function(MODELS_DIR / DETECTOR_FILE)
