"""Shared, session-scoped models for the adapter tests.

Until trained weights ship, the tests use deterministic random FFEM-AM weights with
calibrated batch norm (``calibrated_model_dir``): an uncalibrated network maps every face
to nearly the same vector, which would make every parity test pass vacuously.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def golden() -> Any:
    from faceid_adapters.parity import Golden

    return Golden.load()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder (model.json + float16 weights.npz) in the shipped layout."""
    pytest.importorskip("tensorflow", reason="needs faceid-sdk[tensorflow]")
    from faceid_adapters._keras_model import calibrated_model_dir

    return calibrated_model_dir(tmp_path_factory.mktemp("model"), seed=0)


@pytest.fixture(scope="session")
def keras_extractor(model_dir: Path) -> Any:
    from faceid_adapters.tensorflow import KerasExtractor

    return KerasExtractor(model_dir)


@pytest.fixture(scope="session")
def reference(keras_extractor: Any, golden: Any) -> Any:
    """TensorFlow's vectors for the golden faces."""
    return keras_extractor.embed_aligned(golden.faces)


@pytest.fixture(scope="session")
def onnx_file(keras_extractor: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("tf2onnx", reason="needs faceid-sdk[export]")
    from faceid_adapters.export import export_model

    out = tmp_path_factory.mktemp("onnx")
    return Path(export_model("onnx", out, model=keras_extractor.loaded).path)
