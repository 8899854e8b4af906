"""The TF.js graph model, run in Node with the wasm backend, gives TensorFlow's vectors.

Needs the converter venv and node_modules: `make tfjs-setup` (CI runs it first).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]


@pytest.fixture(scope="module")
def tfjs_ready() -> None:
    from faceid_adapters.tfjs import converter_path, node_modules_ready

    from faceid_sdk.errors import BackendUnavailableError

    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed")
    if not node_modules_ready():
        pytest.skip("adapters/tfjs/node_modules is missing: run `make tfjs-setup`")
    try:
        converter_path()
    except BackendUnavailableError:
        pytest.skip("the TF.js converter (.venv-tfjs) is missing: run `make tfjs-setup`")


@pytest.mark.parametrize("quantize", [None, "float16"])
def test_tfjs_in_node_matches_keras(tfjs_ready: None, quantize: str | None, model_dir: Path,
                                    golden: Any, tmp_path: Path) -> None:
    """run_parity on the tfjs backend is within the golden tolerances, decisions identical."""
    from faceid_adapters.parity import run_parity

    report = run_parity(weights=model_dir, backends=("tfjs",), quantize=quantize,
                        workdir=tmp_path)
    (result,) = report.results
    assert result.backend == "tfjs-wasm"
    assert report.ok, report.to_text()
    export = tmp_path / f"ffem_am{'.' + quantize if quantize else ''}.tfjs"
    assert (export / "model.json").is_file()
    assert result.note == ""  # the export's metadata names the same model_id
