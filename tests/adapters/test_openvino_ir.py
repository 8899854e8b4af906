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


def test_ssd_decoding_matches_openvino() -> None:
    """The detector's head outputs decoded outside OpenVINO (the reference for pipeline.js)
    give OpenVINO's own boxes on a real photo, at every input size the product uses."""
    import cv2
    import numpy as np
    import openvino
    import tensorflow as tf
    from faceid_adapters.tfjs.openvino_ir import (
        DETECTOR_HEADS,
        decode_ssd,
        ir_function,
        ssd_parameters,
    )

    from faceid_sdk.alignment import load_image
    from faceid_sdk.face_models import DETECTOR_FILE, DETECTOR_SIZES

    xml = MODELS_DIR / DETECTOR_FILE
    fn, _ = ir_function(xml, DETECTOR_HEADS)
    params = ssd_parameters(xml)
    photo = load_image(sorted((Path(__file__).parents[1] / "fixtures" / "faces" / "raw").glob(
        "*.jpg"))[0])
    core = openvino.Core()
    for size in DETECTOR_SIZES:
        model = core.read_model(str(xml))
        model.reshape([1, 3, size, size])
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        x = cv2.resize(photo, (size, size))[:, :, ::-1].astype(np.float32)
        ref = np.asarray(compiled(x[None].transpose(0, 3, 1, 2))[0]).reshape(-1, 7)
        ref = ref[ref[:, 2] >= 0.5]
        loc, conf = fn(tf.constant(x[None]))
        got = decode_ssd(np.asarray(loc)[0], np.asarray(conf)[0], size, params, 0.5)
        assert len(got) == len(ref) >= 1, size
        np.testing.assert_allclose(sorted(b[:4] for b in got), sorted(ref[:, 3:7].tolist()),
                                   atol=1e-4)
