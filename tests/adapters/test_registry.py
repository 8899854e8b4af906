"""Backends are found lazily; the ONNX path never loads TensorFlow; inputs are checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from faceid_sdk.errors import BackendUnavailableError


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print('\\n'.join(sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout
    return set(out.split())


def test_onnx_adapter_does_not_import_tensorflow() -> None:
    """`import faceid_adapters.onnx` loads onnxruntime but neither TensorFlow nor Keras."""
    pytest.importorskip("onnxruntime")
    mods = _modules_after("import faceid_adapters.onnx, onnxruntime")
    assert "onnxruntime" in mods
    assert not {"tensorflow", "keras", "tf2onnx"} & mods


def test_package_and_registry_import_no_framework() -> None:
    """The façade and the registry import no framework until a backend is asked for."""
    mods = _modules_after(
        "import faceid_adapters, faceid_sdk.extractors as e; e.available_backends()"
    )
    assert not {"tensorflow", "keras", "onnxruntime"} & mods


def test_registry_names_the_adapter_classes() -> None:
    """The core's registry points at the classes this package defines."""
    from faceid_adapters.onnx import OnnxExtractor

    from faceid_sdk.extractors import _REGISTRY

    assert _REGISTRY["onnx"][0] == "faceid_adapters.onnx:OnnxExtractor"
    assert _REGISTRY["tensorflow"][0] == "faceid_adapters.tensorflow:KerasExtractor"
    assert OnnxExtractor.__name__ == "OnnxExtractor"


def test_missing_onnx_file_says_how_to_make_one(tmp_path: Path) -> None:
    """A missing model file is a BackendUnavailableError naming the export command."""
    pytest.importorskip("onnxruntime")
    from faceid_sdk.extractors import get_extractor

    with pytest.raises(BackendUnavailableError, match="faceid-sdk export --format onnx"):
        get_extractor("onnx", model_path=tmp_path / "nope.onnx")


@pytest.mark.parametrize(
    ("faces", "message"),
    [
        (np.zeros((2, 96, 96, 3), np.float32), "must be uint8"),
        (np.zeros((2, 64, 64, 3), np.uint8), r"must have shape \(n, 96, 96, 3\)"),
        (np.zeros((96, 96), np.uint8), "must have shape"),
    ],
)
def test_bad_faces_are_refused(faces: np.ndarray, message: str) -> None:
    """Wrong dtype or shape raises ValueError saying what was expected and what came."""
    from faceid_adapters._common import as_faces

    with pytest.raises(ValueError, match=message):
        as_faces(faces)


def test_one_face_becomes_a_batch() -> None:
    """A single (96, 96, 3) face is accepted as a batch of one."""
    from faceid_adapters._common import as_faces

    assert as_faces(np.zeros((96, 96, 3), np.uint8)).shape == (1, 96, 96, 3)


def test_public_names() -> None:
    """`faceid_adapters.__all__` lists exactly the lazily exported names, sorted."""
    import faceid_adapters

    assert sorted(faceid_adapters.__all__) == faceid_adapters.__all__
    assert set(faceid_adapters.__all__) == set(faceid_adapters._LAZY)
